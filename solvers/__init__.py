"""Solvers that consume any :class:`opkit.Operator`: DDRM, DDRM for encode/decode pairs, DriftRec."""

from solvers import priors
from solvers._ddrm import ddrm
from solvers.priors import load_prior

__all__ = ["ddrm", "load_prior", "priors"]
