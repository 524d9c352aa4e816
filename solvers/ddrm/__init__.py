"""DDRM's room: the solver, its diffusion priors, their schedules, checkpoints and training.

* :mod:`solvers.ddrm.solver` -- :func:`ddrm`, for SVD operators and encode/decode pairs;
* :mod:`solvers.ddrm.priors` -- the prior protocol, adapters, :func:`load_prior` and the schedules;
* :mod:`solvers.ddrm.adm` -- the guided-diffusion (ADM) network;
* :mod:`solvers.ddrm.checkpoints` -- the field's pretrained checkpoints and their reading;
* :mod:`solvers.ddrm.training` -- training a prior (the bundled default model).

ΠGDM (:mod:`solvers.pigdm`) uses the same priors. ``solvers.ddrm`` itself is the solver function
(DESIGN.md section 2); reach this package's modules as ``from solvers.ddrm import priors`` or
``import solvers.ddrm.priors``.
"""

from solvers.ddrm import adm, checkpoints, priors, solver, training
from solvers.ddrm.priors import load_prior, save_prior
from solvers.ddrm.solver import ddrm

__all__ = ["adm", "checkpoints", "ddrm", "load_prior", "priors", "save_prior", "solver", "training"]
