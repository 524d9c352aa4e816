"""Solvers that consume any :class:`opkit.Operator`: DDRM, DDRM for encode/decode pairs, DriftRec."""

from solvers import priors, samplers, score_models, sdes, training
from solvers._ddrm import ddrm
from solvers._driftrec import driftrec, load_driftrec
from solvers.priors import load_prior

__all__ = [
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
