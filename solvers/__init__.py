"""Solvers that consume any :class:`opkit.Operator`: DDRM, DDRM for encode/decode pairs, DriftRec, ΠGDM.

One package per method, and one for what they share:

* :mod:`solvers.ddrm` -- DDRM, with its diffusion priors (schedules, adapters, the field's
  checkpoints, ADM) and their training;
* :mod:`solvers.driftrec` -- DriftRec: SDEs, samplers, the score model and its training;
* :mod:`solvers.pigdm` -- ΠGDM, on DDRM's priors;
* :mod:`solvers.common` -- noise, the contract's checks, progress, finiteness, EMA and training
  state, and data.

Every solver follows one contract, :class:`opkit.solver.Solver`, and registers through the
``opkit_register_solvers`` hook (:mod:`solvers._plugin`), like any third-party solver.

The public names of DESIGN.md section 2 stay where they were: ``solvers.ddrm``, ``solvers.driftrec``
and ``solvers.pigdm`` are the solver *functions* (the packages' modules stay reachable through them,
e.g. ``solvers.ddrm.priors``), and the modules that lived here before the split --
``solvers.priors``, ``solvers.sdes``, ``solvers.training`` and the rest -- are the same module
objects under their old names.
"""

import importlib as _importlib
import sys as _sys
from types import ModuleType as _ModuleType

from solvers import common
from solvers import ddrm as _ddrm_package
from solvers import driftrec as _driftrec_package
from solvers import pigdm as _pigdm_package
from solvers.ddrm import adm, checkpoints, priors
from solvers.ddrm.priors import load_prior
from solvers.driftrec import samplers, score_models, sdes, training
from solvers.driftrec.solver import load_driftrec

# The modules' names before the per-method split; each is the very same module object.
_MOVED = {
    "adm": "solvers.ddrm.adm",
    "checkpoints": "solvers.ddrm.checkpoints",
    "priors": "solvers.ddrm.priors",
    "prior_training": "solvers.ddrm.training",
    "sdes": "solvers.driftrec.sdes",
    "samplers": "solvers.driftrec.samplers",
    "score_models": "solvers.driftrec.score_models",
    "training": "solvers.driftrec.training",
    "data": "solvers.common.data",
}
for _old, _new in _MOVED.items():
    _sys.modules[f"{__name__}.{_old}"] = _importlib.import_module(_new)
prior_training = _sys.modules[f"{__name__}.prior_training"]
data = common.data


def _solver_of(package: _ModuleType, name: str) -> object:
    """The solver function ``package.name``, carrying the package's modules as attributes.

    ``solvers.ddrm`` must be the function (the public contract), while ``solvers/ddrm/`` is a
    package. Python binds the function over the package here; giving the function the package's
    modules keeps ``import solvers.ddrm.priors`` and ``solvers.ddrm.priors.load_prior`` working.
    """
    fn = getattr(package, name)
    for attr, value in vars(package).items():
        if isinstance(value, _ModuleType) and value.__name__.startswith(package.__name__ + "."):
            setattr(fn, attr, value)
    return fn


ddrm = _solver_of(_ddrm_package, "ddrm")
driftrec = _solver_of(_driftrec_package, "driftrec")
pigdm = _solver_of(_pigdm_package, "pigdm")

__all__ = [
    "adm",
    "checkpoints",
    "common",
    "data",
    "ddrm",
    "driftrec",
    "load_driftrec",
    "load_prior",
    "pigdm",
    "prior_training",
    "priors",
    "samplers",
    "score_models",
    "sdes",
    "training",
]
