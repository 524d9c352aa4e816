"""The adapter that makes a denoising network (diffusers ``UNet2DModel``, ADM) a DDRM prior."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from opkit.operators import per_sample
from opkit.params import check_positive_int
from solvers.priors.protocol import check_alphas_cumprod, timestep_index

__all__ = ["MAX_BATCH_PIXELS", "UNetPrior", "batch_chunk"]

#: Default of :attr:`UNetPrior.max_batch_pixels`: one megapixel per network call. The README's
#: main job (8 samples of a 640×427 photograph, 2.2 Mpx) then runs in calls of 2 images.
MAX_BATCH_PIXELS = 2**20


def batch_chunk(batch: int, pixels: int, max_pixels: int | None) -> int:
    """How many images of ``pixels`` pixels one network call takes: ``batch`` halved (rounding
    up) until the call holds at most ``max_pixels`` pixels, and never fewer than one image.

    Parameters
    ----------
    batch : int
        Images in the batch.
    pixels : int
        Pixels per image (height × width).
    max_pixels : int or None
        The limit, at least 1; ``None`` for none.

    Returns
    -------
    int
        The chunk size, between 1 and ``batch``.

    Raises
    ------
    ValueError
        For a limit below 1.

    Examples
    --------
    >>> batch_chunk(8, 256 * 256, 2**20)  # 0.5 Mpx in all: one call
    8
    >>> batch_chunk(8, 432 * 640, 2**20)  # 2.2 Mpx: calls of 2 images
    2
    >>> batch_chunk(8, 432 * 640, 3 * 2**19)  # at most 1.5 Mpx per call: calls of 4
    4
    >>> batch_chunk(3, 4000 * 3000, 2**20)  # one image is more than the limit: one at a time
    1
    """
    size = batch
    if max_pixels is None:
        return size
    if max_pixels < 1:
        raise ValueError(f"max_batch_pixels must be at least 1 (or None), got {max_pixels!r}")
    while size > 1 and size * pixels > max_pixels:
        size = -(-size // 2)
    return size


def _rows(kw: dict[str, Any], batch: int, start: int, size: int) -> dict[str, Any]:
    """The network keywords for rows ``start : start + size``: per-image tensors are sliced."""
    return {
        k: (v[start : start + size] if isinstance(v, Tensor) and v.ndim and v.shape[0] == batch else v)
        for k, v in kw.items()
    }


class UNetPrior:
    r"""A diffusers ``UNet2DModel``, an ADM network or any network called alike, as a DDRM prior.

    The network is called as ``net(x_t, t, class_labels=...)`` (plus ``return_dict=False`` when
    its ``forward`` takes that argument, as diffusers models do); its output is turned into the
    noise prediction ε:

    * a network with ``2 C`` output channels for ``C`` input channels (learned variance, as in
      guided diffusion) contributes its first ``C`` channels;
    * ``prediction_type="epsilon"`` is used as is, ``"sample"`` (:math:`\hat x_0`) becomes
      :math:`\epsilon = (x_t - \sqrt{\bar\alpha_t}\hat x_0)/\sqrt{1-\bar\alpha_t}` and
      ``"v_prediction"`` becomes :math:`\epsilon = \sqrt{\bar\alpha_t}\, v + \sqrt{1-\bar\alpha_t}\, x_t`.

    Inputs are cast to the network's dtype and device and the output back to the input's, so a
    float16 network can serve a float32 solver. Calls run without autograd (:meth:`eps_with_grad`
    keeps it, for solvers that need the Jacobian). Images whose sides
    are not multiples of the network's total down-sampling (:attr:`multiple`) are padded by
    reflection before the call and cropped after it, so any image size works.

    Parameters
    ----------
    net : torch.nn.Module
        The denoising network.
    alphas_cumprod : torch.Tensor
        Its training schedule, ``(T,)``.
    prediction_type : {"epsilon", "sample", "v_prediction"}
        What the network predicts.
    multiple : int, optional
        Side lengths the network needs to be multiples of; by default ``2**(levels - 1)`` for a
        diffusers ``UNet2DModel`` (from its ``block_out_channels``) and 1 for anything else.
    scheduler_config : mapping, optional
        The diffusers scheduler configuration the schedule came from (kept by
        :func:`load_prior` so that :func:`save_prior` writes it back unchanged).

    Examples
    --------
    >>> from diffusers import UNet2DModel
    >>> net = UNet2DModel(sample_size=8, block_out_channels=(8, 16), norm_num_groups=4,
    ...                   down_block_types=("DownBlock2D", "DownBlock2D"),
    ...                   up_block_types=("UpBlock2D", "UpBlock2D"), layers_per_block=1)
    >>> from solvers.priors import linear_alphas_cumprod
    >>> prior = UNetPrior(net, linear_alphas_cumprod())
    >>> prior(torch.zeros(2, 3, 8, 8), 10).shape
    torch.Size([2, 3, 8, 8])
    >>> prior(torch.zeros(1, 3, 7, 5), 10).shape  # padded to 8 x 6 for the call, then cropped
    torch.Size([1, 3, 7, 5])
    """

    def __init__(
        self,
        net: torch.nn.Module,
        alphas_cumprod: Tensor,
        prediction_type: str = "epsilon",
        *,
        multiple: int | None = None,
        scheduler_config: Mapping[str, Any] | None = None,
    ) -> None:
        if prediction_type not in ("epsilon", "sample", "v_prediction"):
            raise ValueError(
                f"prediction_type must be 'epsilon', 'sample' or 'v_prediction', got {prediction_type!r}"
            )
        self.net = net
        self.alphas_cumprod = check_alphas_cumprod(alphas_cumprod, "UNetPrior")
        self.prediction_type = prediction_type
        if multiple is None:
            levels = getattr(getattr(net, "config", None), "block_out_channels", None)
            multiple = 2 ** (len(levels) - 1) if levels else 1
        check_positive_int("multiple", multiple)
        #: Side lengths are padded to a multiple of this for the network call.
        self.multiple = multiple
        #: The scheduler configuration of a diffusers model, or ``None``.
        self.scheduler_config = dict(scheduler_config) if scheduler_config is not None else None
        try:
            params = inspect.signature(getattr(net, "forward", net)).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            params = {}  # type: ignore[assignment]
        self._return_dict = "return_dict" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )
        #: Whether the network runs in channels-last memory layout (:meth:`channels_last_`).
        self.channels_last = False
        #: Recommended solver settings per operator name, tuned for this network on validation
        #: photographs (``ddrm_settings.json`` of a model directory; see :func:`load_prior`).
        self.settings: dict[str, dict[str, Any]] = {}
        #: Most pixels (batch × height × width, after padding) one network call is given; a
        #: larger batch is split in halves until each part fits (never below one image). The
        #: network's activations, not the solver's tensors, set a restoration's peak memory, and
        #: on the CPU a smaller call costs no more time per pixel
        #: (``docs/benchmarks/end_to_end.rst``). ``None`` calls the network on the whole batch.
        self.max_batch_pixels: int | None = MAX_BATCH_PIXELS

    def channels_last_(self, enable: bool = True) -> UNetPrior:
        """Run the network in channels-last (NHWC) memory layout, in place; returns ``self``.

        On CPU, oneDNN's convolutions are faster in this layout (1.1–1.5× for the bundled
        prior; ``benchmarks/bench_prior_speed.py``). The results agree with the default layout
        to float rounding. :func:`load_prior` enables it for diffusers networks placed on the
        CPU.

        Parameters
        ----------
        enable : bool
            Switch the layout on (``True``) or back to contiguous NCHW (``False``).

        Returns
        -------
        UNetPrior
            This prior.
        """
        fmt = torch.channels_last if enable else torch.contiguous_format
        self.net = self.net.to(memory_format=fmt)  # type: ignore[call-overload]
        self.channels_last = enable
        return self

    def _net_place(self) -> tuple[torch.device, torch.dtype]:
        p = next(self.net.parameters(), None)
        if p is None:
            return torch.device("cpu"), torch.float32
        return p.device, p.dtype

    def __call__(self, x_t: Tensor, t: Any, **kwargs: Any) -> Tensor:
        """Noise prediction ``ε`` for ``x_t`` at timestep(s) ``t``, without autograd.

        As :meth:`DiffusionPrior.__call__`: ``x_t`` is a ``(B, C, H, W)`` VP input and ``t`` an
        int or a ``(B,)`` tensor of timesteps; ``ε`` has the shape of ``x_t``.
        Keyword arguments go to the network (e.g. ``class_labels``).
        """
        return self._predict(x_t, t, False, kwargs)

    def eps_with_grad(self, x_t: Tensor, t: Any, **kwargs: Any) -> Tensor:
        r"""The same ``ε`` as :meth:`__call__`, with autograd through the network.

        For solvers that back-propagate through the denoiser
        :math:`\hat x_0(x_t) = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon_\theta)/\sqrt{\bar\alpha_t}`
        (DPS; see :func:`solvers.priors.predict_eps`). The network's parameters are not
        switched to ``requires_grad=False`` here (that would change the module for every
        caller); the solver takes the gradient with respect to ``x_t`` only
        (:func:`torch.autograd.grad`), so no parameter gradient is stored. The activations of
        the call are kept until then: memory grows with the batch and the image size.

        Parameters
        ----------
        x_t : torch.Tensor
            ``(B, C, H, W)`` VP input (typically with ``requires_grad``).
        t : int or torch.Tensor
            Timestep(s).
        **kwargs
            Passed to the network.

        Returns
        -------
        torch.Tensor
            ε, shaped like ``x_t``, attached to the autograd graph.
        """
        return self._predict(x_t, t, True, kwargs)

    def _predict(self, x_t: Tensor, t: Any, grad: bool, kwargs: dict[str, Any]) -> Tensor:
        device, dtype = self._net_place()
        b, c = x_t.shape[:2]
        tt = timestep_index(t, b, device)
        kw = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in kwargs.items()}
        h, w = x_t.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        inp = x_t.to(device=device, dtype=dtype)
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            inp = torch.nn.functional.pad(inp, (0, pw, 0, ph), mode=mode)
        if self.channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)
        if self._return_dict:
            kw["return_dict"] = False
        size = batch_chunk(b, inp.shape[-2] * inp.shape[-1], self.max_batch_pixels)
        with torch.set_grad_enabled(grad):
            if size >= b:
                out = self._net_output(inp, tt, kw)
            else:
                out = torch.cat(
                    [
                        self._net_output(inp[i : i + size], tt[i : i + size], _rows(kw, b, i, size))
                        for i in range(0, b, size)
                    ]
                )
        out = out[..., :h, :w].to(device=x_t.device, dtype=x_t.dtype, memory_format=torch.contiguous_format)
        if out.shape[1] == 2 * c:
            out = out[:, :c]
        if tuple(out.shape) != tuple(x_t.shape):
            raise ValueError(
                f"the network returned shape {tuple(out.shape)} for an input of shape {tuple(x_t.shape)}"
            )
        if self.prediction_type == "epsilon":
            return out  # type: ignore[no-any-return]
        a = per_sample(self.alphas_cumprod.to(x_t.device)[tt.to(x_t.device)].to(x_t.dtype), x_t)
        if self.prediction_type == "sample":
            return (x_t - a.sqrt() * out) / (1 - a).sqrt()  # type: ignore[no-any-return]
        return a.sqrt() * out + (1 - a).sqrt() * x_t  # type: ignore[no-any-return]

    def _net_output(self, inp: Tensor, tt: Tensor, kw: dict[str, Any]) -> Tensor:
        out: Any = self.net(inp, tt, **kw)
        if isinstance(out, tuple):
            out = out[0]
        elif hasattr(out, "sample"):
            out = out.sample
        return out  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.net.parameters())
        return (
            f"UNetPrior({type(self.net).__name__}, {n / 1e6:.2f}M parameters, "
            f"T={self.alphas_cumprod.numel()}, prediction_type={self.prediction_type!r})"
        )
