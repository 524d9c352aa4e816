"""Solvers that consume any :class:`opkit.Operator`: DDRM, ΠGDM, DiffPIR, DPS, DriftRec.

The rooms:

* :mod:`solvers.methods` -- the solver loops, one module per method; the functions are
  :func:`solvers.ddrm`, :func:`solvers.pigdm`, :func:`solvers.diffpir`, :func:`solvers.dps` and
  :func:`solvers.driftrec`;
* :mod:`solvers.priors` -- diffusion priors, used alike by every solver that needs one: the
  protocol and its check, schedules, the UNet and ADM adapters, checkpoints, loading and saving,
  training (:func:`solvers.load_prior`);
* :mod:`solvers.sdes` -- DriftRec's models: the forward SDEs, samplers, the score network and its
  training (:func:`solvers.load_driftrec`);
* :mod:`solvers.oracles` -- exact oracles of both kinds, for tests and sanity checks;
* :mod:`solvers.common` -- noise, the contract's checks, progress, finiteness, EMA and training
  state, and data.

Every solver follows one contract, :class:`opkit.solver.Solver`, and registers through the
``opkit_register_solvers`` hook (:mod:`solvers._plugin`), like any third-party solver.
"""

from solvers import common, oracles, priors, sdes
from solvers.methods.ddrm import ddrm
from solvers.methods.diffpir import diffpir
from solvers.methods.dps import dps
from solvers.methods.driftrec import driftrec
from solvers.methods.pigdm import pigdm
from solvers.priors import load_prior
from solvers.sdes.score_models import load_driftrec

__all__ = [
    "common",
    "ddrm",
    "diffpir",
    "dps",
    "driftrec",
    "load_driftrec",
    "load_prior",
    "oracles",
    "pigdm",
    "priors",
    "sdes",
]
