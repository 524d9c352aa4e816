"""Training state (optimizer, random generators, counters) saved with safetensors and JSON.

Shared by :mod:`solvers.sdes.training` and :mod:`solvers.priors.training`: the file names, the EMA
update, and the state files (nothing is pickled, and a resumed run continues bit for bit).
:func:`read_json` and :func:`read_safetensors` read the files
of a model folder and turn a damaged file into a ``ValueError`` that names it.
"""

from __future__ import annotations

import json
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
