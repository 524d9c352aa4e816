"""Solvers that consume any :class:`opkit.Operator`: DDRM, DDRM for encode/decode pairs, DriftRec.

Priors for DDRM come from :func:`load_prior`: the bundled model, diffusers directories and hub ids,
and guided-diffusion (ADM) checkpoints (:mod:`solvers.adm`, :mod:`solvers.checkpoints`).
"""

from solvers import adm, checkpoints, priors, samplers, score_models, sdes, training
from solvers._ddrm import ddrm
from solvers._driftrec import driftrec, load_driftrec
from solvers.priors import load_prior

__all__ = [
    "adm",
    "checkpoints",
    "ddrm",
    "driftrec",
    "load_driftrec",
    "load_prior",
    "priors",
    "samplers",
    "score_models",
    "sdes",
    "training",
]
