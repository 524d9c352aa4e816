r"""Diffusion priors for DDRM: the protocol, adapters, reference priors and the schedule helpers.

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

This module provides

* :class:`DiffusionPrior` -- the protocol above, for type checking and ``isinstance``;
* :class:`UNetPrior` -- an adapter for a diffusers ``UNet2DModel`` or an ADM network
  (:class:`solvers.ddrm.adm.ADMUNet`): learned-variance outputs, ``sample``/``v_prediction``
  parametrisations and class labels handled;
* :func:`load_prior` -- a pretrained model as a prior: a diffusers directory, a guided-diffusion
  (ADM) checkpoint with its configuration, a preset name, a Hugging Face hub id; never unpickling
  anything but tensors, never downloading unless asked;
* :func:`save_prior` -- a loaded prior written back as a safetensors model directory;
* :class:`OraclePrior` and :class:`GaussianPrior` -- exact priors for tests and sanity checks;
* :func:`linear_alphas_cumprod` and :func:`uniform_timesteps` -- the schedules of the papers.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from opkit.files import atomic_directory
from opkit.operators import per_sample
from opkit.params import check_positive_int
from solvers.common.state import WEIGHTS_NAME
from solvers.ddrm.adm import ADMConfig, ADMUNet, adm_alphas_cumprod
from solvers.ddrm.checkpoints import (
    PICKLE_SUFFIXES,
    PRESETS,
    checkpoint_path,
    hub_snapshot,
    preset_for_file,
    read_state_dict,
)

__all__ = [
    "DiffusionPrior",
    "GaussianPrior",
    "OraclePrior",
    "UNetPrior",
    "linear_alphas_cumprod",
    "load_prior",
    "save_prior",
    "uniform_timesteps",
]


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


# --------------------------------------------------------------------------------------------
# schedules
# --------------------------------------------------------------------------------------------


#: The linear β schedule of DDPM that DDRM assumes: β from 1e-4 to 0.02 over 1000 steps.
BETA_START, BETA_END = 1e-4, 0.02


def linear_alphas_cumprod(
    num_timesteps: int = 1000, beta_start: float = BETA_START, beta_end: float = BETA_END
) -> Tensor:
    r"""Cumulative products of the linear β schedule of DDPM (the DDRM papers' default).

    .. math::

        \beta_t = \beta_\text{start} + \frac{t}{T-1} (\beta_\text{end} - \beta_\text{start}), \qquad
        \bar\alpha_t = \prod_{s=0}^{t} (1 - \beta_s), \qquad t = 0, \dots, T-1.

    Parameters
    ----------
    num_timesteps : int
        ``T`` (1000 in DDPM).
    beta_start, beta_end : float
        First and last β, with ``0 < beta_start <= beta_end < 1``.

    Returns
    -------
    torch.Tensor
        ``(T,)`` float64 tensor, strictly decreasing, in ``(0, 1)``.

    Raises
    ------
    ValueError
        For a bad ``num_timesteps`` or β range.

    Examples
    --------
    >>> a = linear_alphas_cumprod()
    >>> a.shape, round(float(a[0]), 6)
    (torch.Size([1000]), 0.9999)
    """
    check_positive_int("num_timesteps", num_timesteps)
    if not (0.0 < beta_start <= beta_end < 1.0):
        raise ValueError(
            f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}"
        )
    betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def uniform_timesteps(num_timesteps: int, steps: int, t_start: int | None = None) -> list[int]:
    r"""The model timesteps a DDRM run visits, in decreasing order (one model call each).

    * ``t_start=None`` -- the DDRM paper's uniform skipping over the whole schedule:
      :math:`t_k = k \lfloor T / \text{steps} \rfloor` for :math:`k = \text{steps}-1, \dots, 0`
      (``T = 1000``, 20 steps: ``950, 900, …, 50, 0``).
    * ``t_start=S`` -- an SDEdit-style partial run: ``steps`` integers uniformly spaced from
      ``S`` down to ``0``, both included, :math:`t_k = \operatorname{round}(k S / (\text{steps}-1))`
      (``S = 300``, 20 steps: ``300, 284, …, 16, 0``).

    The last update of every run goes from the last timestep to noise level zero.

    Parameters
    ----------
    num_timesteps : int
        ``T``, the length of the prior's schedule.
    steps : int
        Number of model calls, ``1 <= steps <= T``.
    t_start : int, optional
        First timestep, ``steps - 1 <= t_start <= T - 1``.

    Returns
    -------
    list of int
        Strictly decreasing timesteps, ``steps`` of them.

    Raises
    ------
    ValueError
        If the numbers do not fit.

    Examples
    --------
    >>> uniform_timesteps(1000, 4)
    [750, 500, 250, 0]
    >>> uniform_timesteps(1000, 4, t_start=300)
    [300, 200, 100, 0]
    """
    check_positive_int("num_timesteps", num_timesteps)
    check_positive_int("steps", steps)
    if steps > num_timesteps:
        raise ValueError(f"steps must be at most the prior's {num_timesteps} timesteps, got {steps}")
    if t_start is None:
        skip = num_timesteps // steps
        return [k * skip for k in range(steps - 1, -1, -1)]
    if isinstance(t_start, bool) or not isinstance(t_start, int):
        raise ValueError(f"t_start must be an integer timestep, got {t_start!r}")
    if not steps - 1 <= t_start <= num_timesteps - 1:
        raise ValueError(
            f"t_start must lie in [steps - 1, T - 1] = [{steps - 1}, {num_timesteps - 1}], got {t_start}"
        )
    if steps == 1:
        return [t_start]
    ts = [round(k * t_start / (steps - 1)) for k in range(steps - 1, -1, -1)]
    return ts


def _check_alphas_cumprod(a: Any, who: str = "prior") -> Tensor:
    """Validate a prior's ``alphas_cumprod`` and return it as a float64 CPU tensor."""
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


def _t_index(t: Any, batch: int, device: torch.device) -> Tensor:
    """A timestep given as int or tensor, as a ``(batch,)`` long tensor on ``device``."""
    tt = torch.as_tensor(t, device=device)
    if tt.is_floating_point():
        tt = tt.round()
    tt = tt.to(torch.long)
    if tt.ndim == 0:
        tt = tt.expand(batch)
    return tt.reshape(batch)


# --------------------------------------------------------------------------------------------
# adapters
# --------------------------------------------------------------------------------------------


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
    float16 network can serve a float32 solver. Calls run without autograd. Images whose sides
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
        self.alphas_cumprod = _check_alphas_cumprod(alphas_cumprod, "UNetPrior")
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
        """Noise prediction ``ε`` for ``x_t`` at timestep(s) ``t``.

        As :meth:`DiffusionPrior.__call__`: ``x_t`` is a ``(B, C, H, W)`` VP input and ``t`` an
        int or a ``(B,)`` tensor of timesteps; ``ε`` has the shape of ``x_t``.
        Keyword arguments go to the network (e.g. ``class_labels``).
        """
        device, dtype = self._net_place()
        b, c = x_t.shape[:2]
        tt = _t_index(t, b, device)
        kw = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in kwargs.items()}
        h, w = x_t.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        inp = x_t.to(device=device, dtype=dtype)
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            inp = torch.nn.functional.pad(inp, (0, pw, 0, ph), mode=mode)
        if self.channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            if self._return_dict:
                kw["return_dict"] = False
            out: Any = self.net(inp, tt, **kw)
        if isinstance(out, tuple):
            out = out[0]
        elif hasattr(out, "sample"):
            out = out.sample
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

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.net.parameters())
        return (
            f"UNetPrior({type(self.net).__name__}, {n / 1e6:.2f}M parameters, "
            f"T={self.alphas_cumprod.numel()}, prediction_type={self.prediction_type!r})"
        )


#: Where the project's default prior lives inside the package (diffusers pipeline layout).
DEFAULT_PRIOR_DIR = Path(__file__).resolve().parent.parent / "weights" / "prior"

_WEIGHTS = WEIGHTS_NAME
_WEIGHTS_INDEX = "diffusion_pytorch_model.safetensors.index.json"
_WEIGHTS_PICKLE = "diffusion_pytorch_model.bin"
_ADM_CLASS = "ADMUNet"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# attention parameter names of diffusers before 0.14 (the google/ddpm-* .bin files) and today's
_LEGACY_ATTENTION = (
    (".query.", ".to_q."),
    (".key.", ".to_k."),
    (".value.", ".to_v."),
    (".proj_attn.", ".to_out.0."),
)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def _alphas_from_scheduler_config(cfg: Mapping[str, Any], path: Path) -> Tensor:
    """``alphas_cumprod`` from a diffusers scheduler config (DDPM, DDIM, ... share the keys)."""
    from diffusers import DDPMScheduler

    keys = {
        k: cfg[k]
        for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")
        if k in cfg
    }
    try:
        sched: Any = DDPMScheduler(**keys)  # type: ignore[no-untyped-call]
    except (ValueError, NotImplementedError, TypeError) as exc:
        raise ValueError(f"unsupported scheduler configuration in {path}: {exc}") from exc
    alphas: Tensor = sched.alphas_cumprod.to(torch.float64)
    return alphas


def _place(
    net: torch.nn.Module, device: str | torch.device | None, dtype: torch.dtype | None
) -> torch.nn.Module:
    """Move a loaded network to ``device`` and ``dtype``; eval mode, no gradients.

    An ADM network asked for float16/bfloat16 keeps guided-diffusion's mixed layout
    (:meth:`solvers.ddrm.adm.ADMUNet.use_dtype`); any other network is converted whole.
    """
    net = net.to(device=torch.device(device) if device is not None else torch.device("cpu"))
    if dtype is not None:
        if isinstance(net, ADMUNet) and dtype in (torch.float16, torch.bfloat16):
            net = net.float().use_dtype(dtype)
        else:
            net = net.to(dtype=dtype)
    net.eval()
    net.requires_grad_(False)
    return net


def _adm_config(config: Any, weights: Path) -> ADMConfig:
    """The ADM configuration a caller gave (mapping, preset name, JSON file) or the file's preset."""
    adm_presets = ", ".join(n for n, c in PRESETS.items() if c.config)
    if config is None:
        preset = preset_for_file(weights)
        if preset is None:
            raise ValueError(
                f"load_prior: {weights} is an ADM (guided-diffusion) checkpoint without a preset: pass "
                "config= (a dict of guided-diffusion create_model settings, a JSON file holding one, or "
                f"a preset name: {adm_presets}); on the command line, --model-config"
            )
        config = preset.config
    elif isinstance(config, Path) or (isinstance(config, str) and config not in PRESETS):
        cfg_path = Path(config).expanduser()
        if not cfg_path.is_file():
            raise ValueError(f"config {str(config)!r} is neither a preset ({adm_presets}) nor a JSON file")
        config = _read_json(cfg_path)
    elif isinstance(config, str):
        preset_config = PRESETS[config].config
        if preset_config is None:
            raise ValueError(f"preset {config!r} is a diffusers hub model; it has no ADM configuration")
        config = preset_config
    return ADMConfig.from_dict(config)


def _load_adm_weights(
    weights: Path, config: Any, device: str | torch.device | None, dtype: torch.dtype | None
) -> UNetPrior:
    cfg = _adm_config(config, weights)
    net = ADMUNet.from_state_dict(cfg, read_state_dict(weights), source=str(weights))
    return UNetPrior(
        _place(net, device, dtype),
        adm_alphas_cumprod(cfg.noise_schedule, cfg.diffusion_steps),
        prediction_type="sample" if cfg.predict_xstart else "epsilon",
        multiple=cfg.multiple,
    )


def _unet_from_pickle(cfg: Mapping[str, Any], weights: Path) -> torch.nn.Module:
    """A diffusers ``UNet2DModel`` from its config and ``.bin`` weights read with weights_only."""
    from diffusers import UNet2DModel

    state = read_state_dict(weights)
    with torch.device("meta"):
        net = UNet2DModel.from_config(cfg)  # type: ignore[no-untyped-call]
    own = net.state_dict()
    for key in list(state):
        if key not in own:
            new = key
            for old, cur in _LEGACY_ATTENTION:
                new = new.replace(old, cur)
            if new in own:
                state[new] = state.pop(key)
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or wrong:
        if missing:
            what = f"lacks {missing[0]!r}"
        elif extra:
            what = f"has the unexpected key {extra[0]!r}"
        else:
            k = wrong[0]
            what = f"gives {k!r} the shape {tuple(state[k].shape)}, not {tuple(own[k].shape)}"
        raise ValueError(f"load_prior: {weights} does not match its config.json: it {what}")
    net.load_state_dict(state, strict=True, assign=True)
    module: torch.nn.Module = net
    return module


def _load_diffusers(
    root: Path,
    unet_dir: Path,
    cfg: dict[str, Any],
    device: str | torch.device | None,
    dtype: torch.dtype | None,
) -> UNetPrior:
    sched_dir = root / "scheduler" if (root / "scheduler").is_dir() else root
    has_safetensors = (unet_dir / _WEIGHTS).is_file() or (unet_dir / _WEIGHTS_INDEX).is_file()
    if not has_safetensors and not (unet_dir / _WEIGHTS_PICKLE).is_file():
        raise FileNotFoundError(f"load_prior: missing the weights {unet_dir / _WEIGHTS}")
    sched_cfg_path = sched_dir / "scheduler_config.json"
    if not sched_cfg_path.is_file():
        raise FileNotFoundError(f"load_prior: missing the scheduler configuration {sched_cfg_path}")
    cls = cfg.get("_class_name", "UNet2DModel")
    if cls != "UNet2DModel":
        raise ValueError(
            f"load_prior: {unet_dir / 'config.json'} describes a {cls}; only UNet2DModel and "
            f"{_ADM_CLASS} priors are supported"
        )
    sched_cfg = _read_json(sched_cfg_path)
    try:
        from diffusers import UNet2DModel
    except ImportError as exc:  # pragma: no cover - diffusers is installed in the project
        raise ImportError("load_prior needs diffusers, a dependency of opkit: pip install diffusers") from exc

    if has_safetensors:
        # low_cpu_mem_usage=False: small models gain nothing from accelerate's lazy loading, and
        # without it diffusers warns on every load that accelerate is missing.
        net = UNet2DModel.from_pretrained(  # type: ignore[no-untyped-call]
            str(unet_dir), use_safetensors=True, local_files_only=True, low_cpu_mem_usage=False
        )
    else:
        net = _unet_from_pickle(cfg, unet_dir / _WEIGHTS_PICKLE)
    alphas = _alphas_from_scheduler_config(sched_cfg, sched_cfg_path)
    prior = UNetPrior(
        _place(net, device, dtype),
        alphas,
        prediction_type=str(sched_cfg.get("prediction_type", "epsilon")),
        scheduler_config=sched_cfg,
    )
    if prior._net_place()[0].type == "cpu":
        prior.channels_last_()
    return prior


def _load_directory(
    root: Path, config: Any, device: str | torch.device | None, dtype: torch.dtype | None
) -> UNetPrior:
    unet_dir = root / "unet" if (root / "unet").is_dir() else root
    cfg_path = unet_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"load_prior: missing the network configuration {cfg_path}")
    cfg = _read_json(cfg_path)
    if cfg.get("_class_name") == _ADM_CLASS:
        weights = unet_dir / _WEIGHTS
        if not weights.is_file():
            raise FileNotFoundError(f"load_prior: missing the weights {weights}")
        prior = _load_adm_weights(weights, cfg if config is None else config, device, dtype)
    elif config is not None:
        raise ValueError(
            f"load_prior: config applies to ADM checkpoints; {root} is a diffusers model (its "
            "config.json decides)"
        )
    else:
        prior = _load_diffusers(root, unet_dir, cfg, device, dtype)
    if (root / SETTINGS_FILE).is_file():
        prior.settings = _read_settings(root / SETTINGS_FILE)
    return prior


#: Optional file of a model directory: recommended DDRM settings per operator name.
SETTINGS_FILE = "ddrm_settings.json"
_SETTING_KEYS = {"steps", "eta", "eta_b", "t_start", "num_samples"}


def _read_settings(path: Path) -> dict[str, dict[str, Any]]:
    """Read and check ``ddrm_settings.json``: ``{operator name: {ddrm keyword: value}}``."""
    data = _read_json(path)
    out: dict[str, dict[str, Any]] = {}
    for name, kw in data.items():
        if name.startswith("_"):  # comments and provenance
            continue
        if not isinstance(kw, dict) or not set(kw) <= _SETTING_KEYS:
            raise ValueError(
                f"{path}: settings for {name!r} must be an object with keys among {sorted(_SETTING_KEYS)}"
            )
        out[name] = dict(kw)
    return out


def load_prior(
    path_or_name: str | Path,
    *,
    config: ADMConfig | Mapping[str, Any] | str | Path | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    download: bool = False,
) -> UNetPrior:
    """Load a pretrained diffusion model as a DDRM prior: a directory, a checkpoint, a preset, a hub id.

    ``path_or_name`` may be

    * ``"default"`` -- the small prior bundled with the package (:data:`DEFAULT_PRIOR_DIR`);
    * a **diffusers directory** (``UNet2DModel`` + scheduler), flat (``config.json``, weights and
      ``scheduler_config.json`` side by side) or a pipeline (``unet/`` and ``scheduler/``);
    * an **ADM (guided-diffusion) checkpoint** -- a ``.pt`` state dict as OpenAI and the DPS
      authors publish them, or the same tensors as ``.safetensors`` -- with ``config``; a file
      with an official name (``256x256_diffusion_uncond.pt``, ...) needs none;
    * an **ADM model directory** written by :func:`save_prior` / ``opkit convert``
      (``config.json`` with ``"_class_name": "ADMUNet"`` and safetensors weights);
    * a **preset name** of :data:`solvers.ddrm.checkpoints.PRESETS` (``"imagenet256-uncond"``,
      ``"ffhq256"``, ``"ddpm-celebahq-256"``, ...): an ADM file in the cache
      (:func:`solvers.ddrm.checkpoints.cache_dir`), or a diffusers model of the hub;
    * a **Hugging Face hub id** such as ``"google/ddpm-ema-celebahq-256"``, resolved through the
      Hugging Face cache (``HF_HUB_CACHE``/``HF_HOME``; ``HF_HUB_OFFLINE`` is honoured).

    Safe by construction: weights are read from safetensors, or from pickles (``.pt``,
    ``.bin``, ...) only with ``torch.load(weights_only=True)``, which refuses a file holding
    anything but tensors before any of it runs. Nothing is downloaded unless ``download=True``.

    Parameters
    ----------
    path_or_name : str or pathlib.Path
        What to load (see above).
    config : ADMConfig, mapping, str or pathlib.Path, optional
        For an ADM checkpoint: guided-diffusion settings (:class:`solvers.ddrm.adm.ADMConfig`, under
        ``create_model``'s keyword names), a JSON file holding them, or a preset name. It is
        checked against the state dict; a disagreement names the key. Not accepted for
        diffusers models (their ``config.json`` decides).
    device : str or torch.device, optional
        Where to put the network (default CPU).
    dtype : torch.dtype, optional
        Its dtype (default: as stored). For an ADM network ``torch.float16`` /
        ``torch.bfloat16`` keep its normalisation, attention weights, embeddings and output head
        in float32 as guided-diffusion does.
    download : bool
        Allow fetching a preset's file (checksummed where the publisher gives a checksum) or a
        hub model that is not cached yet.

    Returns
    -------
    UNetPrior
        The prior: ``alphas_cumprod`` of the model's training schedule, and
        ``prior(x_t, t, class_labels=None)`` returning ε (the first three of six channels for a
        model that learns its variance) at any image size. When a model directory holds
        ``ddrm_settings.json`` (``{operator name: {"steps", "eta", "eta_b", "t_start",
        "num_samples"}}``, the settings tuned for this network, as the bundled default has), they
        are in ``prior.settings``; the command line uses them unless told otherwise. A diffusers
        network placed on the CPU runs channels-last (:meth:`UNetPrior.channels_last_`).

    Raises
    ------
    FileNotFoundError
        If a path, a needed file, a preset's file or a hub model is missing (the message says
        what to do: for a preset, where to put the file).
    ValueError
        For a refused pickle, a configuration that does not match the weights, an unsupported
        model class or a bad config; ``"default"`` in an installation without the bundled model.
    ImportError
        If diffusers (for diffusers models) or huggingface_hub (for hub ids) is missing.

    Examples
    --------
    >>> prior = load_prior("default")
    >>> len(prior.alphas_cumprod)
    1000
    """
    name = path_or_name
    if isinstance(name, str) and name == "default":
        name = DEFAULT_PRIOR_DIR
        if not (name / "unet" / "config.json").is_file():
            raise ValueError(
                "load_prior('default'): no default DDRM prior is bundled in this installation "
                f"(expected {name}); pass a local diffusers directory (UNet2DModel + scheduler, "
                "safetensors weights) instead"
            )
    root = Path(name).expanduser()
    if isinstance(name, str) and name in PRESETS and not root.exists():
        preset = PRESETS[name]
        if preset.hub_id is not None:
            if config is not None:
                raise ValueError(f"load_prior: preset {name!r} is a diffusers model; config does not apply")
            return _load_directory(hub_snapshot(preset.hub_id, download=download), None, device, dtype)
        return _load_adm_weights(
            checkpoint_path(preset, download=download), name if config is None else config, device, dtype
        )
    if root.is_dir():
        return _load_directory(root, config, device, dtype)
    if root.is_file():
        if root.suffix.lower() not in (".safetensors", *PICKLE_SUFFIXES):
            raise ValueError(
                f"load_prior: {root} is a file but not a checkpoint (.safetensors, "
                f"{', '.join(PICKLE_SUFFIXES)}); a diffusers model is a directory"
            )
        return _load_adm_weights(root, config, device, dtype)
    if isinstance(name, str) and _HUB_ID.fullmatch(name):
        if config is not None:
            raise ValueError(f"load_prior: {name!r} is a hub id (a diffusers model); config does not apply")
        return _load_directory(hub_snapshot(name, download=download), None, device, dtype)
    raise FileNotFoundError(
        f"load_prior: {root} does not exist and is neither a preset ({', '.join(PRESETS)}) nor a hub id "
        "(load_prior never downloads unless download=True)"
    )


def save_prior(prior: UNetPrior, path: str | Path) -> Path:
    """Write a loaded prior as a safetensors model directory that :func:`load_prior` reads back.

    * an ADM network: ``config.json`` (``"_class_name": "ADMUNet"`` and its guided-diffusion
      settings, schedule included) and ``diffusion_pytorch_model.safetensors``;
    * a diffusers ``UNet2DModel``: the pipeline layout, ``unet/`` (``save_pretrained`` with
      safetensors) and ``scheduler/scheduler_config.json`` (the configuration it was loaded with,
      or a ``DDPMScheduler`` with the prior's exact betas).

    This is what ``opkit convert`` runs: load any accepted checkpoint once (a ``.pt``, a
    ``.bin`` hub model), keep a directory that loads without unpickling anything.

    Parameters
    ----------
    prior : UNetPrior
        From :func:`load_prior`, or built around an :class:`~solvers.ddrm.adm.ADMUNet` or a
        ``UNet2DModel``.
    path : str or pathlib.Path
        The directory: created, or replaced whole. It is written atomically
        (:func:`opkit.files.atomic_directory`): an interrupted save leaves an existing directory as
        it was.

    Returns
    -------
    pathlib.Path
        The directory.

    Raises
    ------
    TypeError
        For a prior whose network is neither.
    """
    target = Path(path).expanduser()
    net = prior.net
    if isinstance(net, ADMUNet):
        from safetensors.torch import save_file

        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_directory(target) as out:
            cfg = {"_class_name": _ADM_CLASS, **net.config.to_dict()}
            (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
            state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
            save_file(state, str(out / _WEIGHTS), metadata={"format": "pt"})
        return target
    if not hasattr(net, "save_pretrained") or type(net).__name__ != "UNet2DModel":
        raise TypeError(f"save_prior: cannot save a prior around a {type(net).__name__}")
    sched = dict(prior.scheduler_config) if prior.scheduler_config is not None else None
    if sched is None:
        a = prior.alphas_cumprod
        betas = 1 - a / torch.cat([a.new_ones(1), a[:-1]])
        sched = {
            "_class_name": "DDPMScheduler",
            "num_train_timesteps": len(a),
            "trained_betas": betas.tolist(),
            "prediction_type": prior.prediction_type,
        }
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(target) as out:
        net.save_pretrained(str(out / "unet"), safe_serialization=True)  # type: ignore[operator]
        (out / "scheduler").mkdir()
        (out / "scheduler" / "scheduler_config.json").write_text(
            json.dumps(sched, indent=2) + "\n", encoding="utf-8"
        )
    return target


# --------------------------------------------------------------------------------------------
# exact priors (tests, sanity checks)
# --------------------------------------------------------------------------------------------


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
        self.alphas_cumprod = _check_alphas_cumprod(
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
        a = per_sample(self.alphas_cumprod.to(x_t.device, x_t.dtype)[_t_index(t, b, x_t.device)], x_t)
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
        self.alphas_cumprod = _check_alphas_cumprod(
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
        tt = _t_index(t, b, x_t.device)
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
        a = per_sample(self.alphas_cumprod.to(x_t.device, x_t.dtype)[_t_index(t, b, x_t.device)], x_t)
        return (x_t - a.sqrt() * self.denoise(x_t, t)) / (1 - a).sqrt()
