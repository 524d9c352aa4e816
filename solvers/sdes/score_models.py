r"""Conditional score networks for DriftRec, built on diffusers' :class:`~diffusers.UNet2DModel`.

A DriftRec model is any callable ``model(x_t, y, t)`` returning the score
:math:`\nabla_{x_t}\log p_t(x_t \mid y)` (images in ``[0, 1]``, ``t`` a float tensor ``(B,)``).
:class:`ScoreModel` is the default one:

.. math::

    s_\theta(x_t, y, t) = \frac{\mathrm{UNet}_\theta\big([2x_t - 1,\; 2y - 1],\; \log\sigma_t\big)}{\sigma_t},

a U-Net with 6 input channels (the state and the corrupted image, concatenated on channels) and 3
output channels. The network output is trained to predict :math:`-z` (so the quotient is the
score of the perturbation kernel :math:`-(x_t - \mu_t)/\sigma_t^2 = -z/\sigma_t`); the noise level
enters through a Gaussian Fourier embedding of :math:`\log \sigma_t` (diffusers'
``time_embedding_type="fourier"``, which also performs the division by :math:`\sigma_t`).
Images whose sides are not multiples of the U-Net's total downsampling are padded by edge
replication and the score is cropped back.

Models are saved as a diffusers-style directory (no pickles anywhere)::

    config.json                             UNet2DModel config (diffusers' own format)
    diffusion_pytorch_model.safetensors     weights used for inference (the EMA weights)
    driftrec.json                           the SDE, the parameterization, the operator the
                                            model was trained on, its tuned settings and the
                                            format version
    raw_model.safetensors                   raw training weights (checkpoints only)
    training_state.safetensors/.json        optimizer, step and RNG state (checkpoints only)

so ``diffusers.UNet2DModel.from_pretrained(path)`` also opens the bare network.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DModel
from safetensors.torch import save_file
from torch import Tensor, nn

from opkit.files import atomic_directory
from opkit.messages import one_line
from opkit.operators import per_sample
from solvers.common.state import WEIGHTS_NAME as _WEIGHTS_NAME
from solvers.common.state import (
    check_unet_shapes,
    read_json,
    read_safetensors,
    safetensors_shapes,
    unet_for_weights,
)
from solvers.sdes.forward import DriftSDE, get_sde

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_DRIFTREC_DIR",
    "DRIFTREC_CONFIG_NAME",
    "PARAMETERIZATIONS",
    "PRESETS",
    "RAW_WEIGHTS_NAME",
    "WEIGHTS_NAME",
    "ScoreModel",
    "build_unet",
    "load_driftrec",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = _WEIGHTS_NAME
RAW_WEIGHTS_NAME = "raw_model.safetensors"
DRIFTREC_CONFIG_NAME = "driftrec.json"
#: Where the bundled default DriftRec JPEG model lives (``solvers/weights/driftrec``).
DEFAULT_DRIFTREC_DIR = Path(__file__).resolve().parent.parent / "weights" / "driftrec"
FORMAT_VERSION = 2  # 2 added "parameterization" and "sigma_data"; version 1 files are "noise"

#: What the U-Net's output means (see the module docstring): ``"noise"`` (the paper's), or
#: ``"preconditioned"`` (the clean image, through input/output scalings that keep the network's
#: input and target at unit variance at every noise level).
PARAMETERIZATIONS = ("noise", "preconditioned")


def _plain(n: int) -> tuple[str, ...]:
    return ("DownBlock2D",) * n


#: U-Net sizes. ``"tiny"`` (~0.17 M parameters) is for tests, ``"small"`` (~2.7 M) for quick
#: experiments, ``"compact"`` (~3.4 M, convolutional only, so it behaves the same at any image
#: size) for the shipped default model, ``"paper"`` (~64 M, the scale of the paper's 65.6 M
#: NCSN++) for real training.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "block_out_channels": (16, 32),
        "layers_per_block": 1,
        "down_block_types": _plain(2),
        "up_block_types": ("UpBlock2D",) * 2,
        "norm_num_groups": 8,
        "attention_head_dim": 8,
    },
    "small": {
        "block_out_channels": (32, 64, 128),
        "layers_per_block": 1,
        "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        "up_block_types": ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        "norm_num_groups": 16,
        "attention_head_dim": 32,
    },
    "compact": {
        "block_out_channels": (32, 64, 96, 128),
        "layers_per_block": 1,
        "down_block_types": _plain(4),
        "up_block_types": ("UpBlock2D",) * 4,
        "norm_num_groups": 16,
        "add_attention": False,
    },
    "paper": {
        "block_out_channels": (128, 128, 256, 256, 256, 256),
        "layers_per_block": 3,
        "down_block_types": (*_plain(4), "AttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "AttnUpBlock2D", *(("UpBlock2D",) * 4)),
        "norm_num_groups": 32,
        "attention_head_dim": 64,
    },
}


def build_unet(size: str = "tiny", *, seed: int = 0, **overrides: Any) -> UNet2DModel:
    """Build the conditional U-Net (6 channels in, 3 out, Fourier embedding of ``log σ``).

    Initialisation is reproducible: it runs under a forked global RNG seeded with ``seed``, so the
    caller's random state is left untouched.

    Parameters
    ----------
    size : str
        A key of :data:`PRESETS`.
    seed : int
        Seed of the weight initialisation.
    **overrides
        Any :class:`~diffusers.UNet2DModel` argument, replacing the preset's.

    Returns
    -------
    diffusers.UNet2DModel
        The network, in float32 on the CPU.
    """
    if size not in PRESETS:
        raise ValueError(f"size must be one of {sorted(PRESETS)}, got {size!r}")
    cfg: dict[str, Any] = {
        "in_channels": 6,
        "out_channels": 3,
        "time_embedding_type": "fourier",
        "flip_sin_to_cos": True,
        **PRESETS[size],
        **overrides,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DModel(**cfg)


class ScoreModel(nn.Module):
    """Conditional score network ``model(x_t, y, t)`` of DriftRec (see the module docstring).

    Parameters
    ----------
    unet : diffusers.UNet2DModel
        A U-Net with ``in_channels = 2 * C``, ``out_channels = C`` and
        ``time_embedding_type="fourier"`` (it receives :math:`\\sigma_t`, takes its logarithm for the
        embedding and divides its output by :math:`\\sigma_t`).
    sde : DriftSDE or str
        The forward SDE the model is trained for; it maps ``t`` to :math:`\\sigma_t`.
    parameterization : str
        ``"noise"`` (the paper's: the output predicts :math:`-z`) or ``"preconditioned"`` (the
        output predicts the clean image through the scalings of the module docstring).
    sigma_data : float
        Standard deviation assumed for the correction :math:`x_0 - y` (``"preconditioned"`` only).
    trained_on : str or None
        The registered name of the operator whose pairs the model learned (``"jpeg"``), set by
        :func:`~solvers.sdes.training.train_driftrec`; ``None`` when unknown. A blind model
        restores that degradation only (:func:`solvers.methods.driftrec.driftrec_fits`).
    settings : dict, optional
        Keywords of :func:`solvers.driftrec` tuned for this model, per operator name
        (``{"jpeg": {"grid_power": 0.5}}``); the solver's registry entry applies them
        (:func:`solvers.methods.driftrec.driftrec_settings`), as DDRM's applies a prior's
        ``ddrm_settings.json``.
    """

    def __init__(
        self,
        unet: UNet2DModel,
        sde: DriftSDE | str = "ouve",
        *,
        parameterization: str = "noise",
        sigma_data: float = 0.05,
        trained_on: str | None = None,
        settings: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if unet.config.time_embedding_type != "fourier":
            raise ValueError("unet must use time_embedding_type='fourier' (it receives sigma_t)")
        if unet.config.in_channels != 2 * unet.config.out_channels:
            raise ValueError(
                f"unet must take 2*C input channels for C output channels, got "
                f"in_channels={unet.config.in_channels}, out_channels={unet.config.out_channels}"
            )
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")
        if not (isinstance(sigma_data, int | float) and 0 < sigma_data < float("inf")):
            raise ValueError(f"sigma_data must be a positive number, got {sigma_data!r}")
        if trained_on is not None and not (isinstance(trained_on, str) and trained_on):
            raise ValueError(f"trained_on must be an operator name or None, got {trained_on!r}")
        self.trained_on = trained_on
        self.settings = _check_settings(settings or {}, "settings")
        self.unet = unet
        self.sde = get_sde(sde)
        self.parameterization = parameterization
        self.sigma_data = float(sigma_data)

    @classmethod
    def from_preset(
        cls,
        size: str = "tiny",
        sde: DriftSDE | str = "ouve",
        *,
        seed: int = 0,
        parameterization: str = "noise",
        sigma_data: float = 0.05,
        trained_on: str | None = None,
        settings: dict[str, dict[str, Any]] | None = None,
        **overrides: Any,
    ) -> ScoreModel:
        """A fresh model of a preset size (see :data:`PRESETS` and :func:`build_unet`).

        Parameters
        ----------
        size : str
            A key of :data:`PRESETS`.
        sde : DriftSDE or str
            The forward SDE.
        seed : int
            Seed of the initialisation.
        parameterization, sigma_data, trained_on, settings
            As for the class.
        **overrides
            :class:`~diffusers.UNet2DModel` arguments replacing the preset's.

        Returns
        -------
        ScoreModel
            The model (float32, CPU).
        """
        unet = build_unet(size, seed=seed, **overrides)
        return cls(
            unet,
            sde,
            parameterization=parameterization,
            sigma_data=sigma_data,
            trained_on=trained_on,
            settings=settings,
        )

    def scalings(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The preconditioning coefficients at times ``t`` (float64, shape ``(B,)``).

        Parameters
        ----------
        t : torch.Tensor
            Process times, shape ``(B,)``.

        Returns
        -------
        tuple of torch.Tensor
            :math:`(\\sigma_t, a_t, c_{in}, c_{skip}, c_{out})` with :math:`a_t = e^{-\\Phi(t)}`,
            :math:`v^2 = a_t^2 s^2 + \\sigma_t^2`, :math:`c_{in} = 1/v`,
            :math:`c_{skip} = a_t s^2 / v^2`, :math:`c_{out} = s\\sigma_t / v`
            (``s`` = :attr:`sigma_data`).
        """
        t = t.to(torch.float64)
        sigma = self.sde.std(t)
        a = self.sde.mean_weight(t)
        s2 = self.sigma_data**2
        v2 = a * a * s2 + sigma * sigma
        return sigma, a, v2.rsqrt(), a * s2 / v2, self.sigma_data * sigma * v2.rsqrt()

    def loss_weight(self, t: Tensor) -> Tensor:
        """Per-sample weight of the σ-weighted score-matching loss at times ``t`` (``(B,)``, float64).

        ``"noise"``: 1 (the paper's eq. 15). ``"preconditioned"``: :math:`v^2 / (a_t s)^2` (see
        :meth:`scalings`), which makes the loss the mean squared error of the network's output
        against its unit-variance target at every noise level.
        """
        if self.parameterization == "noise":
            return torch.ones_like(t, dtype=torch.float64)
        _, a, c_in, _, _ = self.scalings(t)
        return 1.0 / (c_in * a * self.sigma_data) ** 2

    @property
    def multiple(self) -> int:
        """Side lengths are padded to a multiple of this (the U-Net's total downsampling)."""
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    def num_parameters(self) -> int:
        """Number of parameters of the network.

        Returns
        -------
        int
            The count (trainable and fixed).
        """
        return sum(p.numel() for p in self.parameters())

    def _unet(self, first: Tensor, y: Tensor, sigma: Tensor) -> Tensor:
        # the U-Net on [first, 2y - 1] and the Fourier embedding of log(sigma); the output is
        # diffusers' (the raw output divided by sigma), cropped back to the input's size
        h, w = y.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        inp = torch.cat([first, 2 * y - 1], dim=1)
        if ph or pw:
            inp = torch.nn.functional.pad(inp, (0, pw, 0, ph), mode="replicate")
        # the network runs in its own precision; the score follows the input's dtype
        dtype = next(self.unet.parameters()).dtype
        inp = inp.to(dtype)
        sigma = sigma.to(device=inp.device, dtype=dtype).reshape(-1).expand(y.shape[0])
        out = self.unet(inp, sigma).sample
        return out[..., :h, :w].to(y.dtype)

    def forward(self, x_t: Tensor, y: Tensor, t: Tensor) -> Tensor:
        """Score :math:`s_\\theta(x_t, y, t) \\approx \\nabla \\log p_t(x_t \\mid y)`.

        Parameters
        ----------
        x_t, y : torch.Tensor
            State and corrupted image ``(B, C, H, W)`` in ``[0, 1]`` units.
        t : torch.Tensor or float
            Process times, shape ``(B,)`` (a scalar is broadcast).

        Returns
        -------
        torch.Tensor
            The score, like ``x_t``.
        """
        if x_t.shape != y.shape or x_t.ndim != 4:
            raise ValueError(
                f"x_t and y must be (B, C, H, W) of one shape, got {tuple(x_t.shape)}, {tuple(y.shape)}"
            )
        if x_t.shape[1] != self.unet.config.out_channels:
            raise ValueError(f"expected {self.unet.config.out_channels} channels, got {x_t.shape[1]}")
        if not isinstance(t, Tensor):
            t = torch.tensor(float(t), dtype=torch.float64)
        t = t.reshape(-1).expand(x_t.shape[0]).to(torch.float64)
        if self.parameterization == "noise":
            return self._unet(2 * x_t - 1, y, self.sde.std(t))
        sigma, a, c_in, c_skip, c_out = (per_sample(c, x_t) for c in self.scalings(t))
        d = x_t - y
        # diffusers divides the output by sigma: multiply it back to get the raw output F
        raw = self._unet((c_in * d).to(x_t.dtype), y, self.sde.std(t)) * sigma
        mean = y + a * (c_skip * d + c_out * raw)  # mu_t at the estimate x0 = y + c_skip d + c_out F
        return ((mean - x_t) / (sigma * sigma)).to(x_t.dtype)

    # -- persistence -------------------------------------------------------------------------
    def save_pretrained(
        self, path: str | os.PathLike[str], *, raw_state: dict[str, Tensor] | None = None
    ) -> Path:
        """Save as a diffusers-style directory (config JSON + safetensors, no pickles).

        The files are written atomically (:func:`opkit.files.atomic_directory`): a new directory
        appears complete, and an existing one is replaced whole, in one step.

        Parameters
        ----------
        path : str or path-like
            Target directory (its parents are created).
        raw_state : dict, optional
            Raw (non-EMA) U-Net weights to store beside this model's (EMA) weights.

        Returns
        -------
        pathlib.Path
            The directory.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_directory(path) as tmp:
            self.write_files(tmp, raw_state=raw_state)
        return path

    def write_files(self, folder: Path, *, raw_state: dict[str, Tensor] | None = None) -> None:
        """Write the files of :meth:`save_pretrained` into an existing ``folder``, as they are.

        Parameters
        ----------
        folder : pathlib.Path
            Existing directory, e.g. the staging folder of :func:`opkit.files.atomic_directory`.
        raw_state : dict, optional
            Raw (non-EMA) U-Net weights to store beside this model's (EMA) weights.
        """
        self.unet.save_config(folder)
        save_file(_contiguous(self.unet.state_dict()), str(folder / WEIGHTS_NAME))
        if raw_state is not None:
            save_file(_contiguous(raw_state), str(folder / RAW_WEIGHTS_NAME))
        meta = {
            "format_version": FORMAT_VERSION,
            "class": "ScoreModel",
            "sde": self.sde.config(),
            "parameterization": self.parameterization,
            "sigma_data": self.sigma_data,
        }
        if self.trained_on is not None:
            meta["trained_on"] = self.trained_on
        if self.settings:
            meta["settings"] = self.settings
        (folder / DRIFTREC_CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        ema: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> ScoreModel:
        """Load a directory written by :meth:`save_pretrained` (safetensors only).

        Parameters
        ----------
        path : str or path-like
            The directory.
        ema : bool
            Load the EMA (inference) weights; ``False`` loads the raw training weights, which only
            checkpoints contain.
        device, dtype : optional
            Where and in which precision to put the model.

        Returns
        -------
        ScoreModel
            The model, in eval mode.

        Raises
        ------
        FileNotFoundError
            If a required file is missing.
        ValueError
            If a file is damaged: invalid JSON, a missing or bad entry, truncated weights, or
            weights that do not fit the configuration (the message names the file).
        """
        path = Path(path)
        for name in (CONFIG_NAME, DRIFTREC_CONFIG_NAME):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path} is not a DriftRec model directory: {name} is missing")
        meta_path = path / DRIFTREC_CONFIG_NAME
        meta = read_json(meta_path)
        version = meta.get("format_version", 0)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(f"{meta_path}: format_version {version!r} is not one this version reads")
        if "sde" not in meta:
            raise ValueError(f'{meta_path} has no "sde" entry (the SDE the model was trained for)')
        try:
            sde = get_sde(meta["sde"])
        except (ValueError, TypeError) as exc:
            raise ValueError(f'{meta_path}: bad "sde" entry: {exc}') from None
        trained_on = meta.get("trained_on")
        if trained_on is not None and not (isinstance(trained_on, str) and trained_on):
            raise ValueError(f'{meta_path}: bad "trained_on" entry {trained_on!r} (an operator name)')
        try:
            settings = _check_settings(meta.get("settings", {}), '"settings" entry')
        except ValueError as exc:
            raise ValueError(f"{meta_path}: {exc}") from None
        weights = path / (WEIGHTS_NAME if ema else RAW_WEIGHTS_NAME)
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing")
        config_path = path / CONFIG_NAME
        read_json(config_path)  # a clear message for invalid JSON
        try:
            config = UNet2DModel.load_config(path)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{config_path} does not describe a UNet2DModel: {exc}") from None
        shapes = safetensors_shapes(weights)
        if shapes is not None:  # bounded by the weights and compared before anything is built
            where = f"{weights} does not fit {config_path}"
            check_unet_shapes(unet_for_weights(config, shapes, where), shapes, where)
        try:
            with torch.random.fork_rng(devices=[]):
                unet = UNet2DModel.from_config(config)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{config_path} does not describe a UNet2DModel: {exc}") from None
        state = read_safetensors(weights)
        try:
            unet.load_state_dict(state, strict=True)
            model = cls(
                unet,
                sde,
                parameterization=meta.get("parameterization", "noise"),
                sigma_data=meta.get("sigma_data", 0.05),
                trained_on=trained_on,
                settings=settings,
            )
        except (RuntimeError, ValueError) as exc:
            msg = one_line(exc)
            raise ValueError(f"{weights} does not fit {config_path}: {msg}") from None
        model.to(device=device, dtype=dtype)
        return model.eval()


def _check_settings(settings: Any, what: str) -> dict[str, dict[str, Any]]:
    """``settings`` when it maps operator names to dicts of keywords with plain JSON values."""
    ok = isinstance(settings, dict) and all(
        isinstance(k, str)
        and isinstance(v, dict)
        and all(isinstance(kk, str) and isinstance(vv, str | int | float | bool) for kk, vv in v.items())
        for k, v in settings.items()
    )
    if not ok:
        raise ValueError(
            f"bad {what} {settings!r}: operator names mapped to keywords, "
            "e.g. {'jpeg': {'grid_power': 0.5}}"
        )
    return {k: dict(v) for k, v in settings.items()}


def _contiguous(state: dict[str, Tensor]) -> dict[str, Tensor]:
    # safetensors refuses shared or non-contiguous storage; clone into independent buffers
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


def load_driftrec(
    path: str | os.PathLike[str],
    *,
    ema: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> ScoreModel:
    """Load a DriftRec score model: :meth:`ScoreModel.from_pretrained
    <ScoreModel.from_pretrained>`, plus the bundled model.

    ``path`` is a directory written by ``save_pretrained`` or by
    :func:`~solvers.sdes.training.train_driftrec`, or ``"default"``: the JPEG model bundled
    with the package (:data:`DEFAULT_DRIFTREC_DIR`; see the model card in the documentation).
    ``ema``, ``device`` and ``dtype`` are passed on. Raises ``FileNotFoundError`` if ``path`` is
    not a model directory, and ``ValueError`` for ``"default"`` in an installation without the
    bundled model (and for a damaged model, as ``from_pretrained`` does).
    """
    if isinstance(path, str) and path == "default":
        path = DEFAULT_DRIFTREC_DIR
        if not (path / "config.json").is_file():
            raise ValueError(
                "load_driftrec('default'): no default DriftRec model is bundled in this installation "
                f"(expected {path}); train one with solvers.sdes.training.train_driftrec "
                "(or scripts/train_default_driftrec.py) and pass its directory"
            )
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"DriftRec model directory not found: {p}")
    return ScoreModel.from_pretrained(p, ema=ema, device=device, dtype=dtype)
