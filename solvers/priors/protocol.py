r"""The DDRM prior protocol and its check.

A DDRM prior is any object with

* ``alphas_cumprod`` -- a length-``T`` tensor :math:`\bar\alpha_0 > \bar\alpha_1 > \dots > \bar\alpha_{T-1}`
  of the variance-preserving (VP, DDPM) forward process, and
* ``__call__(x_t, t, **kwargs)`` -- the noise prediction :math:`\epsilon_\theta(x_t, t)` for inputs

  .. math::

      x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon, \qquad
      \epsilon \sim \mathcal N(0, I),

  whose data :math:`x_0` lie in :math:`[-1, 1]` (the DDPM convention). ``t`` is an integer
  timestep, given as a Python ``int`` or as a tensor (the solvers pass a ``(B,)`` long tensor).
  Keyword arguments (e.g. class labels) are forwarded by the solvers untouched.

The solvers work with images in :math:`[0, 1]` and map them to the model range with
:math:`x \mapsto 2x - 1` themselves. The denoiser implied by a prior is Tweedie's estimate

.. math::

    \hat x_0(x_t) = \frac{x_t - \sqrt{1 - \bar\alpha_t}\, \epsilon_\theta(x_t, t)}{\sqrt{\bar\alpha_t}}.

A prior may run its network without autograd (:class:`~solvers.priors.UNetPrior` does: most
solvers need no gradient and save the memory). Such a prior offers ``eps_with_grad(x_t, t,
**kwargs)``, the same ε with autograd through the network, for the solvers that need the
Jacobian :math:`\partial \hat x_0 / \partial x_t` (DPS); :func:`predict_eps` with ``grad=True``
uses it, and calls any other prior (a plain differentiable callable) with autograd enabled.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["DiffusionPrior", "check_alphas_cumprod", "check_prior", "predict_eps", "timestep_index"]


@runtime_checkable
class DiffusionPrior(Protocol):
    """Protocol of a DDRM prior: ``alphas_cumprod`` and ``__call__(x_t, t, **kwargs) -> ε``.

    Any object with these two members works; nothing needs to inherit from this class.
    ``isinstance(obj, DiffusionPrior)`` checks that both exist.

    Attributes
    ----------
    alphas_cumprod : torch.Tensor
        The ``T`` cumulative products :math:`\\bar\\alpha_t = \\prod_{s \\le t} (1 - \\beta_s)`.
    """

    alphas_cumprod: Tensor

    def __call__(self, x_t: Tensor, t: Any, **kwargs: Any) -> Tensor:
        """Predict the noise ``ε`` of the VP input ``x_t`` (data in ``[-1, 1]``) at timestep ``t``."""
        ...


def check_alphas_cumprod(a: Any, who: str = "prior") -> Tensor:
    """Validate a prior's ``alphas_cumprod`` and return it as a float64 CPU tensor.

    Parameters
    ----------
    a : tensor-like
        The schedule: non-empty, 1-D, in :math:`(0, 1]`, strictly decreasing.
    who : str
        The owner's name, for the messages.

    Returns
    -------
    torch.Tensor
        ``(T,)`` float64 on the CPU.

    Raises
    ------
    TypeError
        If ``a`` is not tensor-like.
    ValueError
        If it breaks one of the rules above (the message names it).
    """
    if not isinstance(a, Tensor):
        try:
            a = torch.as_tensor(a)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{who}.alphas_cumprod must be a 1-D tensor, got {type(a).__name__}") from exc
    a = a.detach().to("cpu", torch.float64)
    assert isinstance(a, Tensor)
    if a.ndim != 1 or a.numel() == 0:
        raise ValueError(f"{who}.alphas_cumprod must be a non-empty 1-D tensor, got shape {tuple(a.shape)}")
    if not bool(torch.isfinite(a).all()) or not bool(((a > 0) & (a <= 1)).all()):
        raise ValueError(f"{who}.alphas_cumprod must lie in (0, 1]")
    if a.numel() > 1 and not bool((a[1:] < a[:-1]).all()):
        raise ValueError(f"{who}.alphas_cumprod must be strictly decreasing")
    return a


def timestep_index(t: Any, batch: int, device: torch.device) -> Tensor:
    """A timestep given as int or tensor, as a ``(batch,)`` long tensor on ``device``.

    Parameters
    ----------
    t : int or torch.Tensor
        One timestep, or one per batch item (floats are rounded).
    batch : int
        The batch size.
    device : torch.device
        Where the result lives.

    Returns
    -------
    torch.Tensor
        ``(batch,)`` long tensor.
    """
    tt = torch.as_tensor(t, device=device)
    if tt.is_floating_point():
        tt = tt.round()
    tt = tt.to(torch.long)
    if tt.ndim == 0:
        tt = tt.expand(batch)
    return tt.reshape(batch)


def check_prior(model: Any, who: str = "model") -> Tensor:
    """Check that ``model`` follows the prior protocol; return its schedule as float64.

    Solvers call this first (DDRM, ΠGDM, third-party solvers alike).

    Parameters
    ----------
    model : object
        A callable with ``alphas_cumprod``.
    who : str
        Its name in the messages.

    Returns
    -------
    torch.Tensor
        ``model.alphas_cumprod`` checked by :func:`check_alphas_cumprod`, ``(T,)`` float64.

    Raises
    ------
    TypeError
        If ``model`` is not callable or has no ``alphas_cumprod``.
    ValueError
        If the schedule is bad.
    """
    if not callable(model) or not hasattr(model, "alphas_cumprod"):
        raise TypeError(
            f"{who} must follow the prior protocol: an object with alphas_cumprod and "
            f"__call__(x_t, t) -> eps (see solvers.priors); got {type(model).__name__}"
        )
    return check_alphas_cumprod(model.alphas_cumprod, who)


def predict_eps(model: Any, x_t: Tensor, t: int, *, grad: bool = False, **kwargs: Any) -> Tensor:
    r"""The prior's noise prediction :math:`\epsilon_\theta(x_t, t)`, checked, for a solver step.

    Every solver with a prior calls it through this function: ``t`` is passed as a ``(B,)``
    long tensor; an output with ``2 C`` channels for ``C`` input channels (learned variance)
    contributes its first ``C``; the result must have the shape of ``x_t`` and is cast to its
    dtype and device. Finiteness is the caller's check (it knows the step, see
    :class:`solvers.common.finite.FiniteWatch`).

    Parameters
    ----------
    model : prior
        Follows :class:`DiffusionPrior`.
    x_t : torch.Tensor
        ``(B, C, H, W)`` VP input.
    t : int
        The timestep of the whole batch.
    grad : bool
        Keep the autograd graph through the network, so that
        :math:`\partial \epsilon_\theta / \partial x_t` can be back-propagated: the prior's
        ``eps_with_grad`` when it has one (:meth:`solvers.priors.UNetPrior.eps_with_grad`),
        else the call itself under :func:`torch.enable_grad`. Memory then grows with the
        network's activations, in proportion to the batch.
    **kwargs
        Passed to the model (e.g. ``class_labels``).

    Returns
    -------
    torch.Tensor
        ε, shaped like ``x_t``.

    Raises
    ------
    TypeError
        If the model returns something other than a tensor.
    ValueError
        If it returns another shape.
    """
    tt = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
    if grad:
        with torch.enable_grad():
            call = getattr(model, "eps_with_grad", None)
            eps = call(x_t, tt, **kwargs) if callable(call) else model(x_t, tt, **kwargs)
    else:
        eps = model(x_t, tt, **kwargs)
    if not isinstance(eps, Tensor):
        raise TypeError(f"the model returned {type(eps).__name__}, not a tensor")
    c = x_t.shape[1]
    if eps.ndim == 4 and eps.shape[1] == 2 * c:  # learned variance: ε is the first half
        eps = eps[:, :c]
    if eps.shape != x_t.shape:
        raise ValueError(f"the model returned shape {tuple(eps.shape)} for input {tuple(x_t.shape)}")
    if eps.dtype != x_t.dtype or eps.device != x_t.device:
        eps = eps.to(device=x_t.device, dtype=x_t.dtype)
    return eps
