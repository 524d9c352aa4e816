r"""Exact oracles: models that know the answer, for tests and sanity checks of any solver.

* :class:`OraclePrior` -- a DDRM prior whose denoiser returns the true image (DDRM must then
  return it exactly, with the marginals of the paper's Proposition 3.1);
* :class:`GaussianPrior` -- a Gaussian image prior with its exact MMSE denoiser;
* :class:`PointScore` -- the exact DriftRec score of a point mass at the true image.

:func:`opkit.testing.check_solver` builds a solver's oracle from its registry entry
(``oracle=``) to check its recovery.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from opkit.operators import per_sample
from solvers.priors.protocol import check_alphas_cumprod, timestep_index
from solvers.priors.schedules import linear_alphas_cumprod
from solvers.sdes.forward import DriftSDE, get_sde

__all__ = ["GaussianPrior", "OraclePrior", "PointScore"]


class OraclePrior:
    r"""A prior that knows the answer: its denoiser returns the true image exactly.

    For a clean image :math:`x_0` (in :math:`[0, 1]`, mapped to :math:`m = 2 x_0 - 1`) it
    returns :math:`\epsilon = (x_t - \sqrt{\bar\alpha_t}\, m)/\sqrt{1 - \bar\alpha_t}`, so that
    Tweedie's estimate is :math:`\hat x_0 = m` whatever ``x_t`` is. With it DDRM must return
    :math:`x_0` exactly and its iterates must have the marginals of the paper's Proposition 3.1.

    A call batch that is a multiple ``k`` of the batch of ``x0`` is matched by repeating each
    image ``k`` times consecutively (the solvers' layout for ``num_samples``).

    Parameters
    ----------
    x0 : torch.Tensor
        ``(B, C, H, W)`` clean images in ``[0, 1]``.
    alphas_cumprod : torch.Tensor, optional
        Schedule; :func:`linear_alphas_cumprod` by default.
    """

    def __init__(self, x0: Tensor, alphas_cumprod: Tensor | None = None) -> None:
        if not isinstance(x0, Tensor) or x0.ndim != 4 or not x0.is_floating_point():
            raise ValueError("x0 must be a floating (B, C, H, W) tensor")
        self.x0 = x0
        self.alphas_cumprod = check_alphas_cumprod(
            linear_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod, "OraclePrior"
        )
        self.calls = 0

    def __call__(self, x_t: Tensor, t: Any, **kwargs: Any) -> Tensor:
        """``ε`` that makes the denoiser return the true image.

        As :meth:`DiffusionPrior.__call__`: ``x_t`` is a ``(B, C, H, W)`` VP input and ``t`` an
        int or a ``(B,)`` tensor of timesteps; ``ε`` has the shape of ``x_t``.
        Keyword arguments are ignored.
        """
        self.calls += 1
        b = x_t.shape[0]
        if b % self.x0.shape[0] != 0:
            raise ValueError(f"batch {b} is not a multiple of the oracle's {self.x0.shape[0]} images")
        m = (2 * self.x0 - 1).to(device=x_t.device, dtype=x_t.dtype)
        m = m.repeat_interleave(b // self.x0.shape[0], dim=0)
        a = per_sample(self.alphas_cumprod.to(x_t.device, x_t.dtype)[timestep_index(t, b, x_t.device)], x_t)
        return (x_t - a.sqrt() * m) / (1 - a).sqrt()


class GaussianPrior:
    r"""A Gaussian image prior with its exact MMSE denoiser, for small images.

    Data (in the model range) follow :math:`x_0 \sim \mathcal N(\mu, \Sigma)` on
    :math:`n = C H W` pixels. For :math:`x_t = \sqrt{\bar\alpha}\, x_0 + \sqrt{1-\bar\alpha}\,\epsilon`
    the posterior mean is

    .. math::

        \mathbb E[x_0 \mid x_t] = \mu + \sqrt{\bar\alpha}\, \Sigma
        \big(\bar\alpha \Sigma + (1 - \bar\alpha) I\big)^{-1} (x_t - \sqrt{\bar\alpha}\,\mu),

    and the returned noise is the matching
    :math:`\epsilon = (x_t - \sqrt{\bar\alpha}\,\mathbb E[x_0 \mid x_t])/\sqrt{1 - \bar\alpha}`,
    i.e. the optimal ε-predictor. The ``n × n`` gain of every timestep is computed once in
    float64 (memory ``T n²``: keep ``n`` in the hundreds).

    Parameters
    ----------
    mean : torch.Tensor
        :math:`\mu`, shape ``(C, H, W)``, in the model range.
    cov : torch.Tensor
        :math:`\Sigma`, ``(n, n)`` symmetric positive semi-definite.
    alphas_cumprod : torch.Tensor, optional
        Schedule; :func:`linear_alphas_cumprod` by default.
    """

    def __init__(self, mean: Tensor, cov: Tensor, alphas_cumprod: Tensor | None = None) -> None:
        if mean.ndim != 3:
            raise ValueError(f"mean must have shape (C, H, W), got {tuple(mean.shape)}")
        n = mean.numel()
        if tuple(cov.shape) != (n, n):
            raise ValueError(f"cov must have shape ({n}, {n}), got {tuple(cov.shape)}")
        self.alphas_cumprod = check_alphas_cumprod(
            linear_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod, "GaussianPrior"
        )
        self.mean = mean.detach().to("cpu", torch.float64)
        self.cov = cov.detach().to("cpu", torch.float64)
        self.cov = 0.5 * (self.cov + self.cov.T)
        a = self.alphas_cumprod.view(-1, 1, 1)
        eye = torch.eye(n, dtype=torch.float64)
        # gain_t = sqrt(a) Σ (a Σ + (1-a) I)^{-1}; solve with the symmetric system transposed.
        system = a * self.cov + (1 - a) * eye
        self._gain = a.sqrt() * torch.linalg.solve(system, self.cov.expand_as(system)).transpose(1, 2)
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

    def _on(self, like: Tensor) -> tuple[Tensor, Tensor]:
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = (
                self.mean.to(like.device, like.dtype),
                self._gain.to(like.device, like.dtype),
            )
        return self._cache[key]

    def denoise(self, x_t: Tensor, t: Any) -> Tensor:
        """The MMSE estimate :math:`\\mathbb E[x_0 \\mid x_t]` (model range).

        Parameters
        ----------
        x_t : torch.Tensor
            ``(B, C, H, W)`` VP input.
        t : int or torch.Tensor
            Timestep(s).

        Returns
        -------
        torch.Tensor
            The estimate, shaped like ``x_t``.
        """
        mean, gain = self._on(x_t)
        b = x_t.shape[0]
        tt = timestep_index(t, b, x_t.device)
        a = self.alphas_cumprod.to(x_t.device, x_t.dtype)[tt].view(b, 1)
        r = x_t.reshape(b, -1) - a.sqrt() * mean.reshape(1, -1)
        if bool((tt == tt[0]).all()):  # one timestep for the whole batch: one matrix product
            est = mean.reshape(1, -1) + r @ gain[tt[0]].T
        else:
            est = mean.reshape(1, -1) + torch.einsum("bij,bj->bi", gain[tt], r)
        return est.view_as(x_t)

    def __call__(self, x_t: Tensor, t: Any, **kwargs: Any) -> Tensor:
        """The optimal noise prediction for ``x_t`` at timestep(s) ``t``.

        As :meth:`DiffusionPrior.__call__`: ``x_t`` is a ``(B, C, H, W)`` VP input and ``t`` an
        int or a ``(B,)`` tensor of timesteps; ``ε`` has the shape of ``x_t``.
        Keyword arguments are ignored.
        """
        b = x_t.shape[0]
        a = per_sample(self.alphas_cumprod.to(x_t.device, x_t.dtype)[timestep_index(t, b, x_t.device)], x_t)
        return (x_t - a.sqrt() * self.denoise(x_t, t)) / (1 - a).sqrt()


class PointScore:
    r"""The exact score of DriftRec's perturbation kernel around known clean images.

    For clean images :math:`x_0` the kernel is :math:`\mathcal N(\mu_t(x_0, y), \sigma_t^2 I)`, whose
    score is :math:`-(x_t - \mu_t)/\sigma_t^2`: the score of a data distribution that is a point
    mass at :math:`x_0`. A batch that is a multiple ``k`` of ``x0``'s is matched by repeating each
    image ``k`` times consecutively.

    Parameters
    ----------
    x0 : torch.Tensor
        ``(B, C, H, W)`` clean images in ``[0, 1]``.
    sde : DriftSDE or str
        The forward SDE (``"ouve"`` by default, DriftRec's default).
    """

    def __init__(self, x0: Tensor, sde: DriftSDE | str = "ouve") -> None:
        self.x0 = x0
        self.sde = get_sde(sde)

    def __call__(self, x_t: Tensor, y: Tensor, t: Tensor) -> Tensor:
        """The score at ``x_t`` for the degraded images ``y`` at times ``t`` (``(B,)``)."""
        k = x_t.shape[0] // self.x0.shape[0]
        x0 = self.x0.to(x_t).repeat_interleave(k, dim=0)
        tt = float(t.reshape(-1)[0])
        return -(x_t - self.sde.mean(x0, y, tt)) / self.sde.std(tt) ** 2
