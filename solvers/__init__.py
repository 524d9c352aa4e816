"""Solvers that consume any :class:`opkit.Operator`: DDRM, DDRM for encode/decode pairs, DriftRec, ΠGDM.

Every solver follows one contract, :class:`opkit.solver.Solver`, and registers through the
``opkit_register_solvers`` hook (:mod:`solvers._plugin`), like any third-party solver.

Priors for DDRM come from :func:`load_prior`: the bundled model, diffusers directories and hub ids,
and guided-diffusion (ADM) checkpoints (:mod:`solvers.adm`, :mod:`solvers.checkpoints`).
"""

from solvers import adm, checkpoints, common, priors, samplers, score_models, sdes, training
from solvers._ddrm import ddrm
from solvers._driftrec import driftrec, load_driftrec
from solvers._pigdm import pigdm
from solvers.priors import load_prior

__all__ = [
    "adm",
    "checkpoints",
    "common",
    "ddrm",
    "driftrec",
    "load_driftrec",
    "load_prior",
    "pigdm",
    "priors",
    "samplers",
    "score_models",
    "sdes",
    "training",
]
