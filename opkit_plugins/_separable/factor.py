"""The factor type: a 1-D matrix with its thresholded SVD, in float64."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

__all__ = ["CACHE_SIZE", "Factor"]

#: Factors kept by each cache of factors (:func:`~opkit_plugins._separable.dct.dct_factor`,
#: :func:`~opkit_plugins._separable.factorization.correlation_factor`), and SVDs by the cache of
#: SVDs; the least recently used go first.
CACHE_SIZE = 8


class Factor:
    """A 1-D matrix ``A`` (``m × n``, ``m ≤ n``) with its thresholded SVD, all in float64.

    ``A = U diag(σ) V[:, :m]ᵀ``; ``s`` is ``σ`` with the dropped values set to zero and the
    *truncated* operator ``A_t = U diag(s) V[:, :m]ᵀ`` is the one the separable operators apply.
    :attr:`truncated` and :attr:`pinv` are dense ``m × n`` / ``n × m`` products formed on first
    use (each one ``O(n² m)`` product) and kept.

    Parameters
    ----------
    matrix : torch.Tensor
        ``A``.
    U : torch.Tensor
        ``m × m`` orthogonal.
    sigma : torch.Tensor
        The ``m`` singular values, descending.
    V : torch.Tensor
        ``n × n`` orthogonal; its first ``m`` columns pair with ``sigma``.
    keep : torch.Tensor
        Boolean mask of the kept singular values.
    dropped : float
        Largest dropped singular value above the numerical-rank tolerance (``0.0`` if none): then
        ``A_t`` equals ``A`` to float64 rounding.
    """

    def __init__(
        self, matrix: Tensor, U: Tensor, sigma: Tensor, V: Tensor, keep: Tensor, dropped: float
    ) -> None:
        self.matrix, self.U, self.V, self.keep, self.dropped = matrix, U, V, keep, dropped
        self.sigma = sigma
        self.s = torch.where(keep, sigma, torch.zeros_like(sigma))
        """Singular values, zero where dropped."""

    @functools.cached_property
    def truncated(self) -> Tensor:
        """``A_t = A − U_d diag(σ_d) V_dᵀ`` over the dropped values ``d`` (a low-rank update of ``A``)."""
        m = self.s.numel()
        d = ~self.keep
        if not bool(d.any()):
            return self.matrix
        return self.matrix - (self.U[:, d] * self.sigma[d]) @ self.V[:, :m][:, d].mT

    @functools.cached_property
    def pinv(self) -> Tensor:
        """``A_t⁺ = V[:, :m] diag(s⁺) Uᵀ`` (``n × m``), ``s⁺ = 1/s`` where kept and ``0`` elsewhere."""
        m = self.s.numel()
        k = self.keep
        return (self.V[:, :m][:, k] / self.sigma[k]) @ self.U[:, k].mT
