"""Loading pretrained diffusion models as DDRM priors, and saving them back.

* :func:`load_prior` -- a pretrained model as a prior: a diffusers directory, a guided-diffusion
  (ADM) checkpoint with its configuration, a preset name, a Hugging Face hub id; never unpickling
  anything but tensors, never downloading unless asked;
* :func:`save_prior` -- a loaded prior written back as a safetensors model directory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from opkit.files import atomic_directory
from solvers.common.state import (
    WEIGHTS_NAME,
    check_unet_shapes,
    read_json,
    safetensors_shapes,
    unet_for_weights,
)
from solvers.priors.adm import MAX_DIFFUSION_STEPS, ADMConfig, ADMUNet, adm_alphas_cumprod
from solvers.priors.checkpoints import (
    PICKLE_SUFFIXES,
    PRESETS,
    checkpoint_path,
    hub_snapshot,
    preset_for_file,
    read_state_dict,
)
from solvers.priors.unet import UNetPrior

__all__ = ["DEFAULT_PRIOR_DIR", "SETTINGS_FILE", "load_prior", "save_prior"]


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


def _alphas_from_scheduler_config(cfg: Mapping[str, Any], path: Path) -> Tensor:
    """``alphas_cumprod`` from a diffusers scheduler config (DDPM, DDIM, ... share the keys)."""
    from diffusers import DDPMScheduler

    keys = {
        k: cfg[k]
        for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")
        if k in cfg
    }
    steps = keys.get("num_train_timesteps", 1000)
    if not _is_int(steps) or not 1 <= steps <= MAX_DIFFUSION_STEPS:
        raise ValueError(
            f"{path}: num_train_timesteps must be an integer in 1..{MAX_DIFFUSION_STEPS}, got {steps!r}"
        )
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
    (:meth:`solvers.priors.adm.ADMUNet.use_dtype`); any other network is converted whole.
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
        return _config_from_file(read_json(cfg_path), cfg_path)
    elif isinstance(config, str):
        preset_config = PRESETS[config].config
        if preset_config is None:
            raise ValueError(f"preset {config!r} is a diffusers hub model; it has no ADM configuration")
        config = preset_config
    return ADMConfig.from_dict(config)


def _config_from_file(config: Mapping[str, Any], path: Path) -> ADMConfig:
    """:meth:`ADMConfig.from_dict` of a file's object, its errors naming the file."""
    try:
        return ADMConfig.from_dict(config)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


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
    state = read_state_dict(weights)
    where = f"load_prior: {weights} does not match its config.json"
    net = unet_for_weights(cfg, {k: tuple(v.shape) for k, v in state.items()}, where)
    own = net.state_dict()
    for key in list(state):
        if key not in own:
            new = key
            for old, cur in _LEGACY_ATTENTION:
                new = new.replace(old, cur)
            if new in own:
                state[new] = state.pop(key)
    check_unet_shapes(net, {k: tuple(v.shape) for k, v in state.items()}, where)
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
    sched_cfg = read_json(sched_cfg_path)
    try:
        from diffusers import UNet2DModel
    except ImportError as exc:  # pragma: no cover - diffusers is installed in the project
        raise ImportError("load_prior needs diffusers, a dependency of opkit: pip install diffusers") from exc

    if has_safetensors:
        shapes = safetensors_shapes(unet_dir / _WEIGHTS) if (unet_dir / _WEIGHTS).is_file() else None
        if shapes is not None:  # the configuration fits the weights, checked before building
            where = f"load_prior: {unet_dir / _WEIGHTS} does not match its config.json"
            check_unet_shapes(unet_for_weights(cfg, shapes, where), shapes, where)
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
    cfg = read_json(cfg_path)
    if cfg.get("_class_name") == _ADM_CLASS:
        weights = unet_dir / _WEIGHTS
        if not weights.is_file():
            raise FileNotFoundError(f"load_prior: missing the weights {weights}")
        own = _config_from_file(cfg, cfg_path) if config is None else config
        prior = _load_adm_weights(weights, own, device, dtype)
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
#: The keys of ``ddrm_settings.json`` and the values each takes.
_SETTING_KEYS = {
    "steps": ("a positive integer", lambda v: _is_int(v) and v >= 1),
    "num_samples": ("a positive integer", lambda v: _is_int(v) and v >= 1),
    "t_start": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "eta": ("a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1),
    "eta_b": ("a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _read_settings(path: Path) -> dict[str, dict[str, Any]]:
    """Read and check ``ddrm_settings.json``: ``{operator name: {ddrm keyword: value}}``.

    Every value is checked here, when the model loads, so that a wrong type (``"steps": "8"``)
    is a ``ValueError`` naming the file, the operator and the key, not an error in a solver call.
    """
    data = read_json(path)
    out: dict[str, dict[str, Any]] = {}
    for name, kw in data.items():
        if name.startswith("_"):  # comments and provenance
            continue
        if not isinstance(kw, dict) or not set(kw) <= set(_SETTING_KEYS):
            raise ValueError(
                f"{path}: settings for {name!r} must be an object with keys among {sorted(_SETTING_KEYS)}"
            )
        for key, value in kw.items():
            what, ok = _SETTING_KEYS[key]
            if not ok(value):
                raise ValueError(f"{path}: {name!r}: {key!r} must be {what}, got {value!r}")
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
    * a **preset name** of :data:`solvers.priors.checkpoints.PRESETS` (``"imagenet256-uncond"``,
      ``"ffhq256"``, ``"ddpm-celebahq-256"``, ...): an ADM file in the cache
      (:func:`solvers.priors.checkpoints.cache_dir`), or a diffusers model of the hub;
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
        For an ADM checkpoint: guided-diffusion settings (:class:`solvers.priors.adm.ADMConfig`, under
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
        From :func:`load_prior`, or built around an :class:`~solvers.priors.adm.ADMUNet` or a
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
