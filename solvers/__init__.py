"""Solvers that consume any :class:`opkit.Operator`: DDRM, DDRM for encode/decode pairs, DriftRec."""
