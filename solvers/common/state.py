"""Training state (optimizer, random generators, counters) saved with safetensors and JSON.

Shared by :mod:`solvers.sdes.training` and :mod:`solvers.priors.training`: the file names, the EMA
update, and the state files (nothing is pickled, and a resumed run continues bit for bit).
:func:`read_json` and :func:`read_safetensors` read the files
of a model folder and turn a damaged file into a ``ValueError`` that names it;
:func:`unet_for_weights` and :func:`check_unet_shapes` check a network's ``config.json`` against
its weights before the network is built.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from opkit.messages import one_line

#: Files of a resumable training run, beside the model's weights.
STATE_NAME = "training_state.safetensors"
STATE_JSON = "training_state.json"
#: The weights file of a diffusers model directory.
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def ema_update(ema_params: Any, params: Any, decay: float) -> None:
    """``e ← decay · e + (1 − decay) · p`` for every pair of parameters, in place, without grad."""
    with torch.no_grad():
        for e, p in zip(ema_params, params, strict=True):
            e.lerp_(p, 1.0 - decay)


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``ValueError`` naming the file if it is not one.

    This is the one JSON reader of the model and training files. A file that does not parse,
    is not UTF-8, nests deeper than Python's parser can follow (a hostile ``[[[[...]]]]``) or
    holds something other than an object raises ``ValueError`` naming ``path``.

    Parameters
    ----------
    path : pathlib.Path
        The file.

    Returns
    -------
    dict
        The object.

    Raises
    ------
    ValueError
        For anything but a readable JSON object; the message names the file.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {one_line(exc)}") from None
    except RecursionError:
        raise ValueError(f"{path} is not valid JSON: it is nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """The tensors in ``path``; ``ValueError`` naming the file if it is damaged or truncated."""
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise
    except Exception as exc:  # safetensors raises its own error type
        msg = one_line(exc)
        raise ValueError(f"{path} is not a readable safetensors file ({msg})") from None


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]] | None:
    """The name and shape of every tensor of a safetensors file, read from its header only.

    Parameters
    ----------
    path : pathlib.Path
        The file.

    Returns
    -------
    dict or None
        ``{name: shape}``; ``None`` for a damaged file (its loader reports it, naming the file).
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception:  # safetensors raises its own error type
        return None


def unet_for_weights(config: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]], where: str) -> Any:
    """The diffusers ``UNet2DModel`` of ``config`` on the ``meta`` device, bounded by its weights first.

    A network with more residual layers (``layers_per_block`` times the number of blocks) than
    the weights hold tensors, or whose first width is not that of ``conv_in.weight``, cannot
    match them; it is refused before it is built, so that a hostile ``config.json``
    (``"layers_per_block": 100000``) costs neither minutes nor gigabytes. The network built holds
    no data; compare it with :func:`check_unet_shapes`.

    Parameters
    ----------
    config : mapping
        The ``config.json`` of the network.
    shapes : mapping of str to tuple of int
        The weights' tensor shapes (:func:`safetensors_shapes`).
    where : str
        The start of every message, naming the files (``"W does not fit C"``).

    Returns
    -------
    diffusers.UNet2DModel
        On the ``meta`` device.

    Raises
    ------
    ValueError
        For a configuration that cannot fit the weights or that diffusers refuses.
    """
    from diffusers import UNet2DModel

    layers, widths = config.get("layers_per_block"), config.get("block_out_channels")
    if isinstance(layers, int) and isinstance(widths, (list, tuple)) and layers * len(widths) > len(shapes):
        raise ValueError(
            f"{where}: layers_per_block={layers} in {len(widths)} blocks needs more tensors than the "
            f"{len(shapes)} it holds"
        )
    first = shapes.get("conv_in.weight")
    if first and isinstance(widths, (list, tuple)) and widths and widths[0] != first[0]:
        raise ValueError(
            f"{where}: block_out_channels starts with {widths[0]!r}, 'conv_in.weight' with {first[0]}"
        )
    try:
        with torch.device("meta"):
            return UNet2DModel.from_config(dict(config))  # type: ignore[no-untyped-call]
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
        raise ValueError(f"{where}: unsupported UNet2DModel configuration: {one_line(exc)}") from None


def check_unet_shapes(net: Any, shapes: Mapping[str, tuple[int, ...]], where: str) -> None:
    """``ValueError`` naming the first key where the weights' ``shapes`` and ``net`` disagree.

    Parameters
    ----------
    net : torch.nn.Module
        The network (on any device, ``meta`` included).
    shapes : mapping of str to tuple of int
        The weights' tensor shapes.
    where : str
        The start of the message.

    Raises
    ------
    ValueError
        For a missing key, an unexpected one or another shape.
    """
    own = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    missing = [k for k in own if k not in shapes]
    extra = [k for k in shapes if k not in own]
    wrong = [k for k in own if k in shapes and tuple(shapes[k]) != own[k]]
    if missing:
        raise ValueError(f"{where}: it lacks {missing[0]!r}")
    if extra:
        raise ValueError(f"{where}: it has the unexpected key {extra[0]!r}")
    if wrong:
        k = wrong[0]
        raise ValueError(f"{where}: it gives {k!r} the shape {tuple(shapes[k])}, not {own[k]}")


def save_state(
    tensors_path: Path,
    json_path: Path,
    opt: torch.optim.Optimizer,
    gens: dict[str, torch.Generator],
    meta: dict[str, Any],
) -> None:
    """Write the optimizer state and generator states (tensors) and ``meta`` (JSON)."""
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {
        f"opt.{pid}.{k}": torch.as_tensor(v).detach().cpu().contiguous().clone()
        for pid, st in sd["state"].items()
        for k, v in st.items()
    }
    tensors.update({f"rng.{name}": g.get_state().clone() for name, g in gens.items()})
    save_file(tensors, str(tensors_path))
    json_path.write_text(json.dumps({**meta, "param_groups": sd["param_groups"]}))


def load_state(
    tensors_path: Path, json_path: Path, opt: torch.optim.Optimizer, gens: dict[str, torch.Generator]
) -> dict[str, Any]:
    """Restore what :func:`save_state` wrote into ``opt`` and ``gens``; return the JSON meta."""
    meta = read_json(json_path)
    tensors = read_safetensors(tensors_path)
    state: dict[int, dict[str, Tensor]] = {}
    try:
        for key, v in tensors.items():
            if key.startswith("opt."):
                _, pid, name = key.split(".", 2)
                state.setdefault(int(pid), {})[name] = v
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        for name, g in gens.items():
            g.set_state(tensors[f"rng.{name}"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        msg = one_line(exc)
        raise ValueError(
            f"{json_path} and {tensors_path.name} do not hold a training state ({msg})"
        ) from None
    return meta
