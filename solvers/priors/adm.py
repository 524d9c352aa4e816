r"""The ADM ("guided-diffusion") U-Net of Dhariwal & Nichol (2021), able to load its checkpoints.

The network behind the DDRM, DDRM-CC, DPS, DiffPIR and ΠGDM experiments is OpenAI's
guided-diffusion ``UNetModel``. This module re-implements it so that its published state dicts
load unchanged (same parameter names and shapes) and give the same output:

* :class:`ADMConfig` -- the settings, under the keyword names of guided-diffusion's
  ``create_model`` / ``model_and_diffusion_defaults`` (``num_channels``, ``attention_resolutions``,
  ``resblock_updown``, ...), plus the two diffusion settings a prior needs (``diffusion_steps``,
  ``noise_schedule``);
* :class:`ADMUNet` -- the network: ``net(x, t, class_labels=None)`` returns ``(B, C, H, W)``, or
  ``(B, 2C, H, W)`` when the model learns its variance (ε first, then the variance interpolation);
* :func:`adm_alphas_cumprod` -- guided-diffusion's named β schedules (``linear`` and ``cosine``).

Architecture, in guided-diffusion's terms. A sinusoidal embedding of ``t`` (cosines first, then
sines, over ``num_channels`` frequencies :math:`10000^{-k/(d/2)}`) goes through a two-layer MLP
to ``4 · num_channels`` features, plus a class embedding for class-conditional models. The
encoder has ``len(channel_mult)`` levels of ``num_res_blocks`` residual blocks with
``num_channels · channel_mult[level]`` channels, separated by a down-sampling (a strided
convolution, or a residual block that average-pools when ``resblock_updown``); self-attention
follows every residual block whose down-sampling factor is in ``attention_resolutions``
(given as resolutions of an ``image_size`` input, e.g. ``"32,16,8"`` at 256² is factors 8, 16
and 32). A middle block (residual, attention, residual) and a mirrored decoder with skip
connections and ``num_res_blocks + 1`` blocks per level follow. Residual blocks inject the
embedding either as a bias or, with ``use_scale_shift_norm``, as
:math:`\mathrm{GN}(h)(1 + s) + b`. Every normalisation is a 32-group GroupNorm computed in
float32, and attention weights are computed in float32, so half-precision networks
(:meth:`ADMUNet.use_dtype`) keep guided-diffusion's numerics.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

import attrs
import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from opkit.params import check_positive_int, positive_int

__all__ = ["MAX_DIFFUSION_STEPS", "ADMConfig", "ADMUNet", "adm_alphas_cumprod"]

#: Channel multipliers guided-diffusion picks from ``image_size`` when ``channel_mult`` is empty.
DEFAULT_CHANNEL_MULT: dict[int, tuple[float, ...]] = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}

#: guided-diffusion flags that are accepted in a configuration but do not change ε at a timestep.
IGNORED_KEYS = frozenset(
    {"use_fp16", "use_checkpoint", "timestep_respacing", "use_kl", "rescale_learned_sigmas"}
)


def _int_tuple(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, Sequence):
        parts = list(value)
    else:
        raise ValueError(f"{name} must be a comma-separated string or a list of integers, got {value!r}")
    try:
        out = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold integers, got {value!r}") from None
    if not out or any(v < 1 for v in out):
        raise ValueError(f"{name} must hold positive integers, got {value!r}")
    return out


def _attention_tuple(value: Any) -> tuple[int, ...]:
    return _int_tuple("attention_resolutions", value)


def _mult_tuple(value: Any) -> tuple[float, ...]:
    if value in ("", None, ()):
        return ()
    parts = [p.strip() for p in value.split(",")] if isinstance(value, str) else list(value)
    try:
        out = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"channel_mult must hold numbers, got {value!r}") from None
    if any(m <= 0 for m in out):
        raise ValueError(f"channel_mult must hold positive numbers, got {value!r}")
    return tuple(int(m) if m == int(m) else m for m in out)


#: The longest training schedule a configuration may declare (guided-diffusion trains with 1000 or
#: 4000 steps); a longer one is refused before any memory is spent on it.
MAX_DIFFUSION_STEPS = 100_000


def _dropout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"dropout must be a number in [0, 1), got {value!r}")
    return float(value)


def _steps(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_positive_int(attribute.name, value)
    if value > MAX_DIFFUSION_STEPS:
        raise ValueError(
            f"{attribute.name} must be at most {MAX_DIFFUSION_STEPS} (guided-diffusion's models use 1000 "
            f"or 4000), got {value!r}"
        )


def _heads(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or (value < 1 and value != -1):
        raise ValueError(f"{attribute.name} must be a positive integer or -1, got {value!r}")


def _flag(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{attribute.name} must be true or false, got {value!r}")


@attrs.frozen
class ADMConfig:
    r"""Settings of a guided-diffusion network and its diffusion, under guided-diffusion's names.

    The defaults are those of guided-diffusion's ``model_and_diffusion_defaults()`` (what its
    scripts use for a flag that is not given), so the ``MODEL_FLAGS`` of its README translate
    one to one: ``--num_channels 256`` is ``num_channels=256``. Note that ``create_model``'s own
    keyword defaults differ in three places (``attention_resolutions="16"``, ``num_heads=1``,
    ``use_scale_shift_norm=False``); the scripts never use them.

    Parameters
    ----------
    image_size : int
        Training resolution; picks the default ``channel_mult`` and turns
        ``attention_resolutions`` into down-sampling factors. The network runs at any size.
    num_channels : int
        Base width ``model_channels``.
    num_res_blocks : int
        Residual blocks per encoder level (the decoder has one more).
    channel_mult : str or sequence of numbers
        Width multiplier per level, e.g. ``"1,1,2,2,4,4"``; ``""`` picks guided-diffusion's
        default for ``image_size`` (:data:`DEFAULT_CHANNEL_MULT`).
    learn_sigma : bool
        Whether the network also outputs its variance (``2 · in_channels`` output channels).
    class_cond : bool
        Class-conditional (``num_classes`` labels).
    attention_resolutions : str or sequence of int
        Resolutions (of an ``image_size`` input) with self-attention, e.g. ``"32,16,8"``.
    num_heads : int
        Attention heads (when ``num_head_channels == -1``).
    num_head_channels : int
        Channels per head; ``-1`` uses ``num_heads`` instead.
    num_heads_upsample : int
        Heads in the decoder; ``-1`` means ``num_heads``.
    use_scale_shift_norm : bool
        Inject the embedding as a scale and shift of the normalised features.
    resblock_updown : bool
        Down/up-sample with residual blocks instead of a strided / nearest-neighbour convolution.
    use_new_attention_order : bool
        Split the ``qkv`` projection into q, k, v before the heads (``QKVAttention``) rather than
        after (``QKVAttentionLegacy``, the default).
    dropout : float
        Dropout rate (inactive when sampling).
    diffusion_steps : int
        ``T`` of the training schedule, at most :data:`MAX_DIFFUSION_STEPS`.
    noise_schedule : {"linear", "cosine"}
        The β schedule (:func:`adm_alphas_cumprod`).
    predict_xstart : bool
        The network predicts :math:`x_0` instead of ε (the prior converts it).
    rescale_timesteps : bool
        The network sees :math:`t \cdot 1000 / T` instead of ``t``.
    in_channels : int
        Image channels (3 in guided-diffusion, whose ``create_model`` fixes it).
    num_classes : int
        Class count of a class-conditional model (1000 in guided-diffusion).

    Raises
    ------
    ValueError
        For a bad value, naming the setting.

    Examples
    --------
    >>> cfg = ADMConfig.from_dict({"image_size": 256, "num_channels": 256, "learn_sigma": True,
    ...                            "attention_resolutions": "32,16,8", "num_head_channels": 64})
    >>> cfg.channel_mults, cfg.attention_factors
    ((1, 1, 2, 2, 4, 4), (8, 16, 32))
    """

    image_size: int = attrs.field(default=64, validator=positive_int)
    num_channels: int = attrs.field(default=128, validator=positive_int)
    num_res_blocks: int = attrs.field(default=2, validator=positive_int)
    channel_mult: tuple[float, ...] = attrs.field(default=(), converter=_mult_tuple)
    learn_sigma: bool = attrs.field(default=False, validator=_flag)
    class_cond: bool = attrs.field(default=False, validator=_flag)
    attention_resolutions: tuple[int, ...] = attrs.field(default=(16, 8), converter=_attention_tuple)
    num_heads: int = attrs.field(default=4, validator=positive_int)
    num_head_channels: int = attrs.field(default=-1, validator=_heads)
    num_heads_upsample: int = attrs.field(default=-1, validator=_heads)
    use_scale_shift_norm: bool = attrs.field(default=True, validator=_flag)
    resblock_updown: bool = attrs.field(default=False, validator=_flag)
    use_new_attention_order: bool = attrs.field(default=False, validator=_flag)
    dropout: float = attrs.field(default=0.0, converter=_dropout)
    diffusion_steps: int = attrs.field(default=1000, validator=_steps)
    noise_schedule: str = attrs.field(default="linear")
    predict_xstart: bool = attrs.field(default=False, validator=_flag)
    rescale_timesteps: bool = attrs.field(default=False, validator=_flag)
    in_channels: int = attrs.field(default=3, validator=positive_int)
    num_classes: int = attrs.field(default=1000, validator=positive_int)

    def __attrs_post_init__(self) -> None:
        if self.noise_schedule not in ("linear", "cosine"):
            raise ValueError(f"noise_schedule must be 'linear' or 'cosine', got {self.noise_schedule!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if not self.channel_mult and self.image_size not in DEFAULT_CHANNEL_MULT:
            raise ValueError(
                f"channel_mult must be given for image_size={self.image_size} (guided-diffusion has "
                f"defaults for {sorted(DEFAULT_CHANNEL_MULT)} only)"
            )
        for res in self.attention_resolutions:
            if self.image_size % res:
                raise ValueError(f"attention_resolutions: {res} does not divide image_size={self.image_size}")
        if self.num_head_channels != -1:
            for ch in self.level_channels:
                if ch % self.num_head_channels:
                    raise ValueError(
                        f"num_head_channels={self.num_head_channels} does not divide the {ch} channels "
                        "of a level"
                    )

    @classmethod
    def from_dict(cls, config: ADMConfig | Mapping[str, Any]) -> ADMConfig:
        """Build a configuration from guided-diffusion keyword arguments.

        Parameters
        ----------
        config : mapping
            Any of the fields above; the flags in :data:`IGNORED_KEYS` (``use_fp16``,
            ``timestep_respacing``, ...) are accepted and ignored, since they do not change the
            network's prediction at a given timestep. Keys starting with ``_`` are metadata and
            ignored too.

        Returns
        -------
        ADMConfig

        Raises
        ------
        ValueError
            For an unknown key (a typo would otherwise fall back to a default silently) or a bad
            value.
        """
        if isinstance(config, ADMConfig):
            return config
        if not isinstance(config, Mapping):
            raise ValueError(f"an ADM configuration must be a mapping, got {type(config).__name__}")
        names = {a.name for a in attrs.fields(cls)}
        unknown = sorted(k for k in config if k not in names and k not in IGNORED_KEYS and k[:1] != "_")
        if unknown:
            raise ValueError(
                f"unknown ADM configuration key(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(names))}"
            )
        try:
            return cls(**{k: v for k, v in config.items() if k in names})
        except TypeError as exc:  # a value of a type no converter takes
            raise ValueError(f"bad ADM configuration: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON-ready guided-diffusion keyword arguments (lists for tuples)."""
        out = attrs.asdict(self)
        out["channel_mult"] = list(self.channel_mults)
        out["attention_resolutions"] = list(self.attention_resolutions)
        return out

    @property
    def channel_mults(self) -> tuple[float, ...]:
        """The multipliers in use (``channel_mult``, or the default for ``image_size``)."""
        return self.channel_mult or DEFAULT_CHANNEL_MULT[self.image_size]

    @property
    def level_channels(self) -> tuple[int, ...]:
        """Channels of each level, ``int(num_channels · mult)``."""
        return tuple(int(m * self.num_channels) for m in self.channel_mults)

    @property
    def attention_factors(self) -> tuple[int, ...]:
        """Down-sampling factors with attention, ``image_size // r`` for each resolution ``r``."""
        return tuple(sorted(self.image_size // r for r in self.attention_resolutions))

    @property
    def out_channels(self) -> int:
        """``2 · in_channels`` when the variance is learned, else ``in_channels``."""
        return self.in_channels * (2 if self.learn_sigma else 1)

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this (the total down-sampling)."""
        return int(2 ** (len(self.channel_mults) - 1))


def adm_alphas_cumprod(noise_schedule: str = "linear", diffusion_steps: int = 1000) -> Tensor:
    r"""Cumulative products :math:`\bar\alpha_t` of guided-diffusion's named β schedules.

    * ``"linear"`` -- DDPM's schedule rescaled to ``T`` steps:
      :math:`\beta_t` evenly spaced from :math:`10^{-4} \cdot 1000/T` to :math:`0.02 \cdot 1000/T`;
    * ``"cosine"`` -- Nichol & Dhariwal (2021):
      :math:`\beta_t = \min\big(1 - \bar f((t+1)/T) / \bar f(t/T),\ 0.999\big)` with
      :math:`\bar f(s) = \cos^2\big(\tfrac{s + 0.008}{1.008} \cdot \tfrac{\pi}{2}\big)`.

    Parameters
    ----------
    noise_schedule : {"linear", "cosine"}
        The schedule's name.
    diffusion_steps : int
        ``T``.

    Returns
    -------
    torch.Tensor
        ``(T,)`` float64, strictly decreasing.

    Raises
    ------
    ValueError
        For an unknown name or a bad ``T``.

    Examples
    --------
    >>> a = adm_alphas_cumprod("cosine", 1000)
    >>> a.shape, bool((a[1:] < a[:-1]).all())
    (torch.Size([1000]), True)
    """
    check_positive_int("diffusion_steps", diffusion_steps)
    if noise_schedule == "linear":
        scale = 1000 / diffusion_steps
        betas = torch.linspace(scale * 1e-4, scale * 0.02, diffusion_steps, dtype=torch.float64)
    elif noise_schedule == "cosine":
        s = torch.arange(diffusion_steps + 1, dtype=torch.float64) / diffusion_steps
        fbar = torch.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = (1 - fbar[1:] / fbar[:-1]).clamp(max=0.999)
    else:
        raise ValueError(f"noise_schedule must be 'linear' or 'cosine', got {noise_schedule!r}")
    return torch.cumprod(1.0 - betas, dim=0)


# --------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------


def _at_least_float32(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


class _GroupNorm32(nn.GroupNorm):
    """32-group normalisation evaluated in (at least) float32 whatever the input's dtype."""

    def __init__(self, channels: int) -> None:
        super().__init__(32, channels)

    def forward(self, x: Tensor) -> Tensor:
        dt = _at_least_float32(x.dtype)
        w = self.weight.to(dt) if self.weight is not None else None
        b = self.bias.to(dt) if self.bias is not None else None
        return nnf.group_norm(x.to(dt), self.num_groups, w, b, self.eps).to(x.dtype)


def _embed_timesteps(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding: ``[cos(t f_k), sin(t f_k)]``, ``f_k = 10000^(-k/half)``, float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) / half * torch.arange(half, dtype=torch.float32, device=t.device))
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return nnf.pad(emb, (0, dim % 2))


def _linear_in(layer: nn.Module, x: Tensor) -> Tensor:
    """Apply a linear ``layer`` in its own dtype (guided-diffusion keeps embeddings in float32)."""
    weight = cast(Tensor, layer.weight)
    out: Tensor = layer(x.to(weight.dtype))
    return out


class _Sequential(nn.Sequential):
    """Runs its children in turn, giving the embedding to the residual blocks."""

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            h = layer(h, emb) if isinstance(layer, _ResBlock) else layer(h)
        return h


class _Down(nn.Module):
    """Halve the resolution with a 3×3 convolution of stride 2 (key ``op``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)  # type: ignore[no-any-return]


class _Up(nn.Module):
    """Double the resolution (nearest neighbour), then a 3×3 convolution (key ``conv``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(nnf.interpolate(x, scale_factor=2.0, mode="nearest"))  # type: ignore[no-any-return]


class _ResBlock(nn.Module):
    """Residual block with the embedding as bias or scale/shift; optionally resamples by 2."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int,
        *,
        scale_shift: bool,
        dropout: float,
        resample: str | None = None,
    ) -> None:
        super().__init__()
        self.scale_shift = scale_shift
        self.resample = resample
        self.in_layers = nn.Sequential(
            _GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, out_channels * (2 if scale_shift else 1))
        )
        self.out_layers = nn.Sequential(
            _GroupNorm32(out_channels),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection: nn.Module = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def _resample(self, x: Tensor) -> Tensor:
        if self.resample == "down":
            return nnf.avg_pool2d(x, 2)
        if self.resample == "up":
            return nnf.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        norm, act, conv = self.in_layers
        h = conv(self._resample(act(norm(x))))  # resampling sits between the activation and the conv
        x = self._resample(x)
        e = _linear_in(self.emb_layers[1], self.emb_layers[0](emb)).to(h.dtype)[:, :, None, None]
        out_norm, rest = self.out_layers[0], self.out_layers[1:]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = rest(out_norm(h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h  # type: ignore[no-any-return]


class _Attention(nn.Module):
    """Multi-head self-attention over all positions, softmax(qᵀk/√d) in float32 (or wider), residual."""

    def __init__(self, channels: int, heads: int, *, new_order: bool) -> None:
        super().__init__()
        self.heads = heads
        self.new_order = new_order
        self.norm = _GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, hgt, wid = x.shape
        flat = x.reshape(b, c, hgt * wid)
        qkv = self.qkv(self.norm(flat))
        d = c // self.heads
        if self.new_order:  # [q heads | k heads | v heads]
            q, k, v = (t.reshape(b * self.heads, d, -1) for t in qkv.chunk(3, dim=1))
        else:  # per head [q | k | v]
            q, k, v = qkv.reshape(b * self.heads, 3 * d, -1).split(d, dim=1)
        dt = _at_least_float32(qkv.dtype)
        q, k, v = (t.to(dt).transpose(1, 2) for t in (q, k, v))  # (B·heads, positions, d)
        a = nnf.scaled_dot_product_attention(q, k, v)
        a = a.transpose(1, 2).reshape(b, c, -1).to(flat.dtype)
        out: Tensor = flat + self.proj_out(a)
        return out.reshape(b, c, hgt, wid)


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------


class ADMUNet(nn.Module):
    r"""guided-diffusion's ``UNetModel``, with its parameter names, so its state dicts load as they are.

    Parameters
    ----------
    config : ADMConfig or mapping
        The settings (guided-diffusion's names; see :class:`ADMConfig`).

    Attributes
    ----------
    config : ADMConfig
        The settings.

    Notes
    -----
    Build a large network on the ``meta`` device and load real weights with
    ``load_state_dict(state, assign=True)`` to avoid allocating (and initialising) it twice;
    :func:`solvers.load_prior` does so.

    Examples
    --------
    >>> net = ADMUNet({"image_size": 32, "num_channels": 32, "channel_mult": "1,2",
    ...                "num_res_blocks": 1, "attention_resolutions": "16", "learn_sigma": True})
    >>> net(torch.zeros(2, 3, 32, 32), torch.tensor([0, 999])).shape
    torch.Size([2, 6, 32, 32])
    """

    def __init__(self, config: ADMConfig | Mapping[str, Any]) -> None:
        super().__init__()
        cfg = ADMConfig.from_dict(config)
        self.config = cfg
        mc = cfg.num_channels
        emb_ch = 4 * mc
        attn_at = set(cfg.attention_factors)
        heads_down, heads_up = (
            cfg.num_heads,
            (cfg.num_heads if cfg.num_heads_upsample == -1 else cfg.num_heads_upsample),
        )

        def attention(ch: int, heads: int) -> _Attention:
            n = heads if cfg.num_head_channels == -1 else ch // cfg.num_head_channels
            return _Attention(ch, n, new_order=cfg.use_new_attention_order)

        def res(ch: int, out: int, resample: str | None = None) -> _ResBlock:
            return _ResBlock(
                ch,
                emb_ch,
                out,
                scale_shift=cfg.use_scale_shift_norm,
                dropout=cfg.dropout,
                resample=resample,
            )

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        if cfg.class_cond:
            self.label_emb = nn.Embedding(cfg.num_classes, emb_ch)

        widths = cfg.level_channels
        ch = widths[0]
        self.input_blocks = nn.ModuleList([_Sequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))])
        skips = [ch]
        factor = 1
        for level, width in enumerate(widths):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [res(ch, width)]
                ch = width
                if factor in attn_at:
                    layers.append(attention(ch, heads_down))
                self.input_blocks.append(_Sequential(*layers))
                skips.append(ch)
            if level < len(widths) - 1:
                down = res(ch, ch, "down") if cfg.resblock_updown else _Down(ch)
                self.input_blocks.append(_Sequential(down))
                skips.append(ch)
                factor *= 2

        self.middle_block = _Sequential(res(ch, ch), attention(ch, heads_down), res(ch, ch))

        self.output_blocks = nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + skips.pop(), width)]
                ch = width
                if factor in attn_at:
                    layers.append(attention(ch, heads_up))
                if level > 0 and i == cfg.num_res_blocks:
                    layers.append(res(ch, ch, "up") if cfg.resblock_updown else _Up(ch))
                    factor //= 2
                self.output_blocks.append(_Sequential(*layers))

        self.out = nn.Sequential(_GroupNorm32(ch), nn.SiLU(), nn.Conv2d(ch, cfg.out_channels, 3, padding=1))

    @classmethod
    def from_state_dict(
        cls, config: ADMConfig | Mapping[str, Any], state: Mapping[str, Tensor], *, source: str = "checkpoint"
    ) -> ADMUNet:
        """Build the network for ``config`` and load ``state`` into it without copying it.

        The network is built on the ``meta`` device, checked against ``state`` (every name and
        shape) and then takes the tensors of ``state`` as its parameters
        (``load_state_dict(assign=True)``): memory holds one copy of the weights, and a
        memory-mapped state dict stays mapped.

        Parameters
        ----------
        config : ADMConfig or mapping
            The settings.
        state : mapping of str to torch.Tensor
            A guided-diffusion state dict.
        source : str
            Named in error messages (e.g. the file).

        Returns
        -------
        ADMUNet
            In eval mode, without gradients, in the dtypes of ``state``.

        Raises
        ------
        ValueError
            When the configuration and the state dict disagree: the message names the first
            disagreeing key, both shapes and the setting that decides it. The settings that
            decide the network's size (base channels, blocks and their widths) are compared with
            the state dict's shapes before the network is built, so a configuration far larger
            than the checkpoint costs neither time nor memory.
        """
        cfg = ADMConfig.from_dict(config)
        _check_plan(cfg, {k: tuple(v.shape) for k, v in state.items()}, source)  # before building
        with torch.device("meta"):
            net = cls(cfg)
        _check_state_dict(net, state, source)
        net.load_state_dict(state, strict=True, assign=True)
        net.eval()
        net.requires_grad_(False)
        return net

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the body computes in (that of its convolutions; see :meth:`use_dtype`)."""
        conv: nn.Conv2d = self.input_blocks[0][0]  # type: ignore[index]
        return conv.weight.dtype

    def use_dtype(self, dtype: torch.dtype) -> ADMUNet:
        """Store the body's convolutions in ``dtype``, as guided-diffusion's ``convert_to_fp16``.

        The timestep and class embeddings, every normalisation layer and the output head stay
        in float32; the encoder, middle and decoder convolutions (attention projections
        included) compute in ``dtype``. Normalisation and attention weights are evaluated in
        float32 whatever ``dtype`` is.

        Parameters
        ----------
        dtype : torch.dtype
            E.g. ``torch.float16`` or ``torch.bfloat16``; ``torch.float32`` undoes it.

        Returns
        -------
        ADMUNet
            ``self``.
        """
        for part in (self.input_blocks, self.middle_block, self.output_blocks):
            for m in part.modules():
                if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                    m.to(dtype)
        return self

    def forward(self, x: Tensor, timesteps: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """The network's output for inputs ``x`` at integer (or real) timesteps.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, in_channels, H, W)``, sides multiples of ``config.multiple``.
        timesteps : torch.Tensor
            ``(B,)`` timesteps (a scalar is broadcast).
        class_labels : torch.Tensor, optional
            ``(B,)`` integer labels; required by a class-conditional model, refused otherwise.

        Returns
        -------
        torch.Tensor
            ``(B, out_channels, H, W)`` in the dtype of ``x``: ε (or :math:`x_0` with
            ``predict_xstart``), followed by the variance outputs when ``learn_sigma``.

        Raises
        ------
        ValueError
            For missing or unexpected class labels, or a side that is not a multiple.
        """
        cfg = self.config
        if x.shape[-1] % cfg.multiple or x.shape[-2] % cfg.multiple:
            raise ValueError(
                f"ADMUNet needs sides that are multiples of {cfg.multiple}, got {tuple(x.shape[-2:])}"
            )
        t = torch.as_tensor(timesteps, device=x.device).reshape(-1).expand(x.shape[0])
        if cfg.rescale_timesteps:
            t = t.float() * (1000.0 / cfg.diffusion_steps)
        emb = _linear_in(self.time_embed[0], _embed_timesteps(t, cfg.num_channels))
        emb = self.time_embed[2](self.time_embed[1](emb))
        if cfg.class_cond:
            if class_labels is None:
                raise ValueError(
                    "this ADM model is class-conditional: pass class_labels "
                    "(e.g. ddrm(..., model_kwargs={'class_labels': labels}) or --class-label)"
                )
            labels = torch.as_tensor(class_labels, device=x.device).long().reshape(-1).expand(x.shape[0])
            if bool(((labels < 0) | (labels >= cfg.num_classes)).any()):
                raise ValueError(f"class labels must lie in [0, {cfg.num_classes}), got {labels.tolist()}")
            emb = emb + self.label_emb(labels).to(emb.dtype)
        elif class_labels is not None:
            raise ValueError("this ADM model is unconditional: class_labels must not be given")

        h = x.to(self.dtype)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        out = self.out(h.to(self.out[2].weight.dtype))  # the head runs in float32, as in guided-diffusion
        return out.to(x.dtype)  # type: ignore[no-any-return]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.to_dict().items())


_MEANING = {
    "class_cond": "class embedding present",
    "num_classes": "classes",
    "num_channels": "base channels",
    "in_channels": "input channels",
    "learn_sigma": "output channels",
    "use_scale_shift_norm": "scale and shift",
    "resblock_updown": "resampling by residual blocks",
    "num_res_blocks or channel_mult": "encoder blocks",
    "channel_mult": "encoder block widths",
    "attention_resolutions": "attention block present",
}


def _fingerprint(shapes: Mapping[str, tuple[int, ...]]) -> list[tuple[str, str, Any]]:
    """``(setting, deciding key, value)`` for the settings a state dict shows directly."""

    def dim(key: str, axis: int) -> int | None:
        shape = shapes.get(key)
        return shape[axis] if shape is not None and len(shape) > axis else None

    emb, width = (
        dim("input_blocks.1.0.emb_layers.1.weight", 0),
        dim("input_blocks.1.0.out_layers.3.weight", 0),
    )
    ops = sorted(k for k in shapes if k.endswith(".op.weight"))
    widths = {}  # output channels of the first layer of every encoder block
    for k, shape in shapes.items():
        m = re.fullmatch(r"input_blocks\.(\d+)\.0\.(?:in_layers\.2\.|op\.)?weight", k)
        if m:
            widths[int(m.group(1))] = shape[0]
    n_in = max(widths, default=-1) + 1
    attention = sorted(k[: -len(".qkv.weight")] for k in shapes if k.endswith(".qkv.weight"))
    return [
        ("class_cond", "label_emb.weight", "label_emb.weight" in shapes),
        ("num_classes", "label_emb.weight", dim("label_emb.weight", 0)),
        ("num_channels", "time_embed.0.weight", dim("time_embed.0.weight", 1)),
        ("in_channels", "input_blocks.0.0.weight", dim("input_blocks.0.0.weight", 1)),
        ("learn_sigma", "out.2.weight", dim("out.2.weight", 0)),
        (
            "use_scale_shift_norm",
            "input_blocks.1.0.emb_layers.1.weight",
            None if emb is None or width is None else emb == 2 * width,
        ),
        ("resblock_updown", ops[0] if ops else "input_blocks.*.0.op.weight", not ops),
        ("num_res_blocks or channel_mult", f"input_blocks.{n_in - 1}", n_in),
        ("channel_mult", "input_blocks.*.0", [widths[i] for i in sorted(widths)]),
        ("attention_resolutions", ",".join(attention) or "*.qkv.weight", attention),
    ]


def _planned(cfg: ADMConfig) -> dict[str, tuple[str, Any]]:
    """``{setting: (deciding key, value)}`` of :func:`_fingerprint` for the network of ``cfg``,
    computed without building it.

    Every setting but ``attention_resolutions``: the class embedding, the widths and the number
    of encoder blocks, which together bound the size of the network.
    """
    widths = cfg.level_channels
    levels, n = len(widths), cfg.num_res_blocks
    count = 1 + levels * n + levels - 1
    blocks: list[int] | None = None  # output channels of the first layer of every encoder block
    if count <= 100_000:  # else the count alone cannot match any checkpoint
        blocks = [widths[0]]
        for level, width in enumerate(widths):
            blocks += [width] * n
            if level < levels - 1:
                blocks.append(width)  # the down-sampling block keeps the width
    downs = [f"input_blocks.{(level + 1) * (n + 1)}.0.op.weight" for level in range(min(levels - 1, 8))]
    strided = not cfg.resblock_updown and levels > 1
    return {
        "class_cond": ("label_emb.weight", cfg.class_cond),
        "num_classes": ("label_emb.weight", cfg.num_classes if cfg.class_cond else None),
        "num_channels": ("time_embed.0.weight", cfg.num_channels),
        "in_channels": ("input_blocks.0.0.weight", cfg.in_channels),
        "learn_sigma": ("out.2.weight", cfg.out_channels),
        "use_scale_shift_norm": ("input_blocks.1.0.emb_layers.1.weight", cfg.use_scale_shift_norm),
        "resblock_updown": (min(downs) if strided else "input_blocks.*.0.op.weight", not strided),
        "num_res_blocks or channel_mult": (f"input_blocks.{count - 1}", count),
        "channel_mult": ("input_blocks.*.0", blocks),
    }


def _check_plan(cfg: ADMConfig, theirs: Mapping[str, tuple[int, ...]], source: str) -> None:
    """Raise the ValueError of :func:`_check_state_dict` for a size setting that cannot match ``theirs``."""
    planned = _planned(cfg)
    for setting, key_s, got in _fingerprint(theirs):
        if setting not in planned or planned[setting][1] == got:
            continue
        key_c, want = planned[setting]
        if isinstance(want, list) and len(want) > 12:
            want = f"{len(want)} blocks {want[:4]}..."
        key = key_s if key_s in theirs else key_c
        raise ValueError(
            f"the ADM configuration does not match {source}: check {setting} -- key {key!r} gives "
            f"{_MEANING[setting]} {got!r} in {source} but {want!r} in the configuration"
        )


def _check_state_dict(net: ADMUNet, state: Mapping[str, Tensor], source: str) -> None:
    """Raise a ValueError naming the key (and setting) where ``state`` disagrees with the config."""
    own = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in state.items()}
    if own == theirs:
        return
    for (setting, key_c, want), (_, key_s, got) in zip(_fingerprint(own), _fingerprint(theirs)):
        if want != got:
            key = key_s if key_s in theirs else key_c
            if setting == "attention_resolutions":  # name the first block with attention on one side only
                block = sorted(set(want) ^ set(got))[0]
                key, got, want = f"{block}.qkv.weight", block in got, block in want
            raise ValueError(
                f"the ADM configuration does not match {source}: check {setting} -- key {key!r} gives "
                f"{_MEANING[setting]} {got!r} in {source} but {want!r} in the configuration"
            )
    key = next((k for k in own if own[k] != theirs.get(k)), None) or next(k for k in theirs if k not in own)
    raise ValueError(
        f"the ADM configuration does not match {source} at key {key!r} ({source}: "
        f"{theirs.get(key, 'absent')}, configuration: {own.get(key, 'absent')}); check num_res_blocks "
        "and channel_mult"
    )
