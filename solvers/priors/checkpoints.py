r"""Published diffusion checkpoints: presets, a safe weights reader, the download cache, hub ids.

* :data:`PRESETS` -- every official checkpoint opkit knows by name: the guided-diffusion ("ADM")
  ``.pt`` files behind DDRM, DDRM-CC and DPS with the configurations the papers used, and the DDPM
  models of Ho et al. as Hugging Face hub ids;
* :func:`read_state_dict` -- weights from ``.safetensors``, or from a pickle (``.pt``, ``.bin``,
  ...) read **only** with ``torch.load(weights_only=True)``: a file holding anything but tensors
  and plain containers is refused before any of it runs;
* :func:`checkpoint_path` -- where a named checkpoint lives in the cache (:func:`cache_dir`),
  fetched and checksummed when the caller opts in;
* :func:`hub_snapshot` -- a hub id resolved through the Hugging Face cache, offline unless the
  caller opts in (and never when ``HF_HUB_OFFLINE`` is set).

Nothing here downloads by default.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import urllib.request
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor

from opkit.files import atomic_path

__all__ = [
    "PRESETS",
    "Checkpoint",
    "cache_dir",
    "checkpoint_path",
    "hub_snapshot",
    "read_state_dict",
]

#: File suffixes read as pickles (always with ``weights_only=True``).
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


@attrs.frozen
class Checkpoint:
    """One official checkpoint: where it is published, which paper used it, how to build it.

    Attributes
    ----------
    name : str
        The preset name (``load_prior(name)``, ``--model-config name``).
    description : str
        What the model was trained on.
    paper : str
        The paper that trained it and the restoration paper(s) that used it.
    config : mapping or None
        guided-diffusion settings (:class:`solvers.priors.adm.ADMConfig`) of an ADM checkpoint, with
        ``diffusion_steps`` and ``noise_schedule``; ``None`` for a hub model.
    file : str or None
        The official file name of an ADM checkpoint.
    url : str or None
        Its direct download URL, where one is published.
    sha256 : str or None
        Its published SHA-256; ``None`` where the publisher gives none.
    page : str
        The page that publishes the file (and the configuration).
    hub_id : str or None
        The Hugging Face repository of a diffusers model.
    """

    name: str
    description: str
    paper: str
    page: str
    config: Mapping[str, Any] | None = None
    file: str | None = None
    url: str | None = None
    sha256: str | None = None
    hub_id: str | None = None


_GD_URL = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/"
_GD_PAGE = "https://github.com/openai/guided-diffusion"
_GD_PAPER = "Dhariwal & Nichol, Diffusion Models Beat GANs on Image Synthesis (2021)"
_DDPM_PAPER = "Ho, Jain & Abbeel, Denoising Diffusion Probabilistic Models (2020); used by DDRM"

# The 256² ImageNet/LSUN architecture: guided-diffusion README's MODEL_FLAGS, which DDRM's
# configs/imagenet_256*.yml repeat.
_ADM256: dict[str, Any] = {
    "image_size": 256,
    "num_channels": 256,
    "num_res_blocks": 2,
    "learn_sigma": True,
    "class_cond": False,
    "attention_resolutions": "32,16,8",
    "num_heads": 4,
    "num_head_channels": 64,
    "resblock_updown": True,
    "use_scale_shift_norm": True,
    "dropout": 0.0,
    "diffusion_steps": 1000,
    "noise_schedule": "linear",
}


def _adm(name: str, file: str, description: str, paper: str, **overrides: Any) -> Checkpoint:
    return Checkpoint(
        name=name,
        description=description,
        paper=paper,
        page=_GD_PAGE,
        config={**_ADM256, **overrides},
        file=file,
        url=_GD_URL + file,
    )


def _ddpm(name: str, hub_id: str, description: str) -> Checkpoint:
    return Checkpoint(
        name=name,
        description=description,
        paper=_DDPM_PAPER,
        page=f"https://huggingface.co/{hub_id}",
        hub_id=hub_id,
    )


#: The official checkpoints by preset name. OpenAI and the DPS authors publish no checksums,
#: so ``sha256`` is ``None`` throughout (a download then reports the file's hash instead).
PRESETS: dict[str, Checkpoint] = {
    c.name: c
    for c in (
        _adm(
            "imagenet256-uncond",
            "256x256_diffusion_uncond.pt",
            "ImageNet 256×256, unconditional",
            f"{_GD_PAPER}; used by DDRM (Kawar et al., 2022), ΠGDM, DiffPIR",
        ),
        _adm(
            "imagenet256-cond",
            "256x256_diffusion.pt",
            "ImageNet 256×256, class-conditional (1000 classes)",
            f"{_GD_PAPER}; used by DDRM-CC (Kawar et al., 2022)",
            class_cond=True,
        ),
        _adm(
            "imagenet512-cond",
            "512x512_diffusion.pt",
            "ImageNet 512×512, class-conditional (1000 classes)",
            f"{_GD_PAPER}; used by DDRM-CC at 512² (Kawar et al., 2022)",
            image_size=512,
            class_cond=True,
        ),
        _adm("lsun-bedroom", "lsun_bedroom.pt", "LSUN bedroom 256×256", _GD_PAPER, dropout=0.1),
        _adm("lsun-cat", "lsun_cat.pt", "LSUN cat 256×256", _GD_PAPER, dropout=0.1),
        _adm("lsun-horse", "lsun_horse.pt", "LSUN horse 256×256", _GD_PAPER, dropout=0.1),
        _adm(
            "lsun-horse-nodropout",
            "lsun_horse_nodropout.pt",
            "LSUN horse 256×256, trained without dropout",
            _GD_PAPER,
        ),
        Checkpoint(
            name="ffhq256",
            description="FFHQ 256×256, unconditional",
            paper="Choi et al., ILVR (2021); used by DPS (Chung et al., 2023) and DiffPIR",
            page="https://github.com/DPS2022/diffusion-posterior-sampling",
            config={
                **_ADM256,
                "num_channels": 128,
                "num_res_blocks": 1,
                "attention_resolutions": "16",
            },
            file="ffhq_10m.pt",
            url=None,  # published as a Google Drive folder, not a direct link
        ),
        _ddpm("ddpm-celebahq-256", "google/ddpm-ema-celebahq-256", "CelebA-HQ 256×256 (EMA weights)"),
        _ddpm("ddpm-church-256", "google/ddpm-ema-church-256", "LSUN church 256×256 (EMA weights)"),
        _ddpm("ddpm-bedroom-256", "google/ddpm-ema-bedroom-256", "LSUN bedroom 256×256 (EMA weights)"),
        _ddpm("ddpm-cat-256", "google/ddpm-ema-cat-256", "LSUN cat 256×256 (EMA weights)"),
    )
}


def preset_for_file(path: Path) -> Checkpoint | None:
    """The ADM preset whose official file name is ``path``'s name, if any."""
    return next((c for c in PRESETS.values() if c.file is not None and c.file == path.name), None)


# --------------------------------------------------------------------------------------------
# reading weights
# --------------------------------------------------------------------------------------------


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or, safely, from a pickle.

    Pickles (:data:`PICKLE_SUFFIXES`) are read with ``torch.load(weights_only=True)``, whose
    unpickler only rebuilds tensors and plain containers: a file that asks for anything else (a
    function call, an arbitrary class) is refused before any of it runs. Zip-format files are
    memory-mapped, so the tensors are not copied into memory until used.

    Parameters
    ----------
    path : str or pathlib.Path
        The weights file.

    Returns
    -------
    dict of str to torch.Tensor
        The tensors, on the CPU.

    Raises
    ------
    ValueError
        For a refused or unreadable pickle, an unknown suffix, or a file that is not a flat
        mapping of names to tensors.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise ValueError(f"{path} is not a readable safetensors file: {exc}") from exc
    elif suffix in PICKLE_SUFFIXES:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
        except pickle.UnpicklingError as exc:
            raise ValueError(
                f"refused to unpickle {path}: it holds objects other than tensors, and loading them "
                "could run code. opkit reads pickled weights only with torch.load(weights_only=True); "
                f"nothing of the file was run. torch said: {str(exc).splitlines()[0]}"
            ) from None
        except (RuntimeError, EOFError, OSError, ValueError) as exc:
            raise ValueError(f"{path} is not a readable PyTorch weights pickle: {exc}") from exc
    else:
        raise ValueError(
            f"{path}: unknown weights format {suffix!r}; expected .safetensors or a PyTorch pickle "
            f"({', '.join(PICKLE_SUFFIXES)})"
        )
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise ValueError(f"{path} does not hold a flat state dict (a mapping of names to tensors)")
    return dict(state)


# --------------------------------------------------------------------------------------------
# the download cache
# --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where named checkpoints are kept: ``$OPKIT_CACHE``, else ``$XDG_CACHE_HOME/opkit``, else
    ``~/.cache/opkit``; the files go to its ``checkpoints`` folder.

    Returns
    -------
    pathlib.Path
        The ``checkpoints`` folder (not created).
    """
    root = os.environ.get("OPKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "opkit"
    )
    return Path(root).expanduser() / "checkpoints"


def _download(url: str, dest: Path, sha256: str | None) -> None:
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with atomic_path(dest) as part:  # a failed download or checksum leaves nothing behind
        try:
            with urllib.request.urlopen(url) as resp, part.open("wb") as fh:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
                    for chunk in iter(lambda: resp.read(1 << 20), b""):
                        fh.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
        except OSError as exc:
            raise OSError(f"could not download {url}: {exc}") from exc
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise ValueError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest}; the file was deleted"
            )
    if sha256 is None:
        warnings.warn(
            f"{dest.name}: its publisher gives no checksum to verify; the downloaded file has "
            f"sha256 {digest}",
            stacklevel=3,
        )


def checkpoint_path(preset: Checkpoint, *, download: bool = False) -> Path:
    """The local file of a named ADM checkpoint, fetched into :func:`cache_dir` on request.

    Parameters
    ----------
    preset : Checkpoint
        An entry of :data:`PRESETS` with a ``file``.
    download : bool
        Fetch the file when it is missing and verify its published SHA-256 (a mismatch deletes
        it and raises). Without it nothing is fetched.

    Returns
    -------
    pathlib.Path
        ``cache_dir() / preset.file``.

    Raises
    ------
    FileNotFoundError
        When the file is missing and ``download`` is false (the message says where to put it and
        where to get it), or when it has no direct download URL.
    ValueError
        On a checksum mismatch.
    OSError
        When the download fails.
    """
    if preset.file is None:
        raise ValueError(f"preset {preset.name!r} is a hub model ({preset.hub_id}), not a file")
    dest = cache_dir() / preset.file
    if dest.is_file():
        return dest
    source = preset.url or preset.page
    if not download or preset.url is None:
        how = (
            "or pass download=True (--download on the command line)"
            if preset.url is not None
            else "(no direct link is published, so it cannot be downloaded automatically)"
        )
        raise FileNotFoundError(
            f"the checkpoint {preset.file} of preset {preset.name!r} is not in the cache: download it "
            f"from {source} and put it at {dest} (the folder is $OPKIT_CACHE/checkpoints, or "
            f"~/.cache/opkit/checkpoints), pass the file's path instead, {how}"
        )
    _download(preset.url, dest, preset.sha256)
    return dest


# --------------------------------------------------------------------------------------------
# the Hugging Face hub
# --------------------------------------------------------------------------------------------


def hub_snapshot(repo_id: str, *, download: bool = False) -> Path:
    """The local snapshot of a Hugging Face model repository, from the hub cache.

    The cache is the one ``huggingface_hub`` uses (``HF_HUB_CACHE``, ``HF_HOME``). Without
    ``download`` (the default) nothing goes on the network. With it, the configuration files and
    the network's weights are fetched (safetensors when the repository has them, else its
    ``.bin``), unless ``HF_HUB_OFFLINE`` is set, which ``huggingface_hub`` honours by using the
    cache only. A repository with both layouts (root files and ``unet/``) gets ``unet/``'s weights
    only.

    Parameters
    ----------
    repo_id : str
        ``"org/name"``, e.g. ``"google/ddpm-ema-celebahq-256"``.
    download : bool
        Allow fetching what the cache lacks.

    Returns
    -------
    pathlib.Path
        The snapshot folder (its ``refs/main`` revision).

    Raises
    ------
    FileNotFoundError
        If the repository is not cached (and may not or cannot be downloaded).
    ImportError
        If ``huggingface_hub`` is missing.
    """
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError as exc:  # pragma: no cover - comes with diffusers
        raise ImportError("hub ids need huggingface_hub: pip install 'opkit[models]'") from exc
    offline = bool(getattr(constants, "HF_HUB_OFFLINE", False))
    try:
        if not download or offline:
            return Path(snapshot_download(repo_id, local_files_only=True))
        # the configurations first; then the weights of the one network, safetensors if published
        folder = Path(snapshot_download(repo_id, allow_patterns=["*.json"]))
        weights = (
            "unet/diffusion_pytorch_model"
            if (folder / "unet" / "config.json").is_file()
            else "diffusion_pytorch_model"
        )
        folder = Path(snapshot_download(repo_id, allow_patterns=[f"{weights}*.safetensors", "*.json"]))
        if not any(folder.glob(f"{weights}*.safetensors")):
            folder = Path(snapshot_download(repo_id, allow_patterns=[f"{weights}.bin", "*.json"]))
        return folder
    except (OSError, ValueError) as exc:
        if offline:
            why = "HF_HUB_OFFLINE is set, so nothing is downloaded"
        elif download:
            why = f"the download failed ({type(exc).__name__}: {exc})"
        else:
            why = "opkit never downloads unless asked: pass download=True (--download on the command line)"
        raise FileNotFoundError(
            f"{repo_id!r} is not a local path and not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); {why}"
        ) from exc
