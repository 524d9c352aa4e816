"""Test-only reference for the ADM network: DeepInverse's port of guided-diffusion's ``UNetModel``.

DeepInverse (``pip install --no-deps deepinv``) ships guided-diffusion's blocks and its ``DiffUNet``
in ``deepinv/models/diffunet.py``; they load the official state dicts. The package itself imports
torchvision, whose wheels do not load with this project's CPU torch, so the module file is loaded
on its own here, with a stub for the two trivial helpers it takes from ``deepinv.models.utils``
(``conv_nd``/``avgpool_nd``: the torch layer of a given dimension). Nothing here is used by opkit.

* :func:`diffunet_module` -- that module, or ``None`` when deepinv is not installed;
* :func:`reference_unet` -- guided-diffusion's ``UNetModel`` for any ``create_model`` settings,
  assembled from the reference's own blocks (``ResBlock``, ``AttentionBlock``, ``Downsample``,
  ``Upsample``, ``normalization``) and run by the reference's ``DiffUNet.forward_diffusion``
  (DeepInverse's ``DiffUNet`` itself fixes the settings to two checkpoints, so it serves as the
  reference of those two: see the tests);
* :func:`perturb` -- move every parameter away from its (partly zero) initialisation.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

_PKG = "_opkit_deepinv_reference"


def diffunet_module() -> types.ModuleType | None:
    """DeepInverse's ``diffunet`` module, loaded from its file; ``None`` if deepinv is absent."""
    if f"{_PKG}.diffunet" in sys.modules:
        return sys.modules[f"{_PKG}.diffunet"]
    spec = importlib.util.find_spec("deepinv")  # finds the package without importing it
    if spec is None or spec.origin is None:
        return None
    models = Path(spec.origin).parent / "models"
    if not (models / "diffunet.py").is_file():
        return None
    pkg = types.ModuleType(_PKG)
    pkg.__path__ = [str(models)]
    utils = types.ModuleType(f"{_PKG}.utils")

    def no_download(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the test reference never downloads weights")

    utils.conv_nd = lambda dims: {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]  # type: ignore[attr-defined]
    utils.avgpool_nd = lambda dims: {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}[dims]  # type: ignore[attr-defined]
    utils.get_weights_url = no_download  # type: ignore[attr-defined]
    utils.load_state_dict_from_url = no_download  # type: ignore[attr-defined]
    sys.modules[_PKG] = pkg
    sys.modules[f"{_PKG}.utils"] = utils
    for name in ("base", "diffunet"):
        mspec = importlib.util.spec_from_file_location(f"{_PKG}.{name}", models / f"{name}.py")
        assert mspec is not None and mspec.loader is not None
        module = importlib.util.module_from_spec(mspec)
        sys.modules[f"{_PKG}.{name}"] = module
        mspec.loader.exec_module(module)
    return sys.modules[f"{_PKG}.diffunet"]


class _Reference(nn.Module):
    """Holds the attributes ``DiffUNet.forward_diffusion`` reads; ``forward`` calls it."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self._forward_diffusion(self, x, t, y=y)  # type: ignore[no-any-return]


def reference_unet(
    *,
    image_size: int,
    num_channels: int,
    num_res_blocks: int,
    channel_mult: tuple[float, ...],
    attention_resolutions: tuple[int, ...],
    learn_sigma: bool = False,
    class_cond: bool = False,
    num_heads: int = 4,
    num_head_channels: int = -1,
    num_heads_upsample: int = -1,
    use_scale_shift_norm: bool = True,
    resblock_updown: bool = False,
    use_new_attention_order: bool = False,
    dropout: float = 0.0,
) -> nn.Module:
    """guided-diffusion's ``create_model(...)`` built from the reference's blocks (see the module)."""
    D = diffunet_module()
    assert D is not None
    net = _Reference()
    net._forward_diffusion = D.DiffUNet.forward_diffusion  # type: ignore[assignment]
    mc = num_channels
    net.model_channels = mc  # type: ignore[assignment]
    net.num_classes = 1000 if class_cond else None  # type: ignore[assignment]
    net.dtype = torch.float32  # type: ignore[assignment]
    attn = tuple(image_size // r for r in attention_resolutions)
    up_heads = num_heads if num_heads_upsample == -1 else num_heads_upsample
    emb = 4 * mc
    net.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
    if class_cond:
        net.label_emb = nn.Embedding(1000, emb)

    def res(ch: int, out: int, **kw: Any) -> nn.Module:
        return D.ResBlock(ch, emb, dropout, out_channels=out, use_scale_shift_norm=use_scale_shift_norm, **kw)

    def attention(ch: int, heads: int) -> nn.Module:
        return D.AttentionBlock(
            ch,
            num_heads=heads,
            num_head_channels=num_head_channels,
            use_new_attention_order=use_new_attention_order,
        )

    ch = input_ch = int(channel_mult[0] * mc)
    net.input_blocks = nn.ModuleList([D.TimestepEmbedSequential(nn.Conv2d(3, ch, 3, padding=1))])
    chans = [ch]
    ds = 1
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            layers = [res(ch, int(mult * mc))]
            ch = int(mult * mc)
            if ds in attn:
                layers.append(attention(ch, num_heads))
            net.input_blocks.append(D.TimestepEmbedSequential(*layers))
            chans.append(ch)
        if level != len(channel_mult) - 1:
            down = (
                res(ch, ch, down=True) if resblock_updown else D.Downsample(ch, True, dims=2, out_channels=ch)
            )
            net.input_blocks.append(D.TimestepEmbedSequential(down))
            chans.append(ch)
            ds *= 2
    net.middle_block = D.TimestepEmbedSequential(res(ch, ch), attention(ch, num_heads), res(ch, ch))
    net.output_blocks = nn.ModuleList()
    for level, mult in list(enumerate(channel_mult))[::-1]:
        for i in range(num_res_blocks + 1):
            layers = [res(ch + chans.pop(), int(mc * mult))]
            ch = int(mc * mult)
            if ds in attn:
                layers.append(attention(ch, up_heads))
            if level and i == num_res_blocks:
                layers.append(
                    res(ch, ch, up=True) if resblock_updown else D.Upsample(ch, True, dims=2, out_channels=ch)
                )
                ds //= 2
            net.output_blocks.append(D.TimestepEmbedSequential(*layers))
    net.out = nn.Sequential(
        D.normalization(ch), nn.SiLU(), nn.Conv2d(input_ch, 6 if learn_sigma else 3, 3, padding=1)
    )
    return net.eval()


@torch.no_grad()
def perturb(net: nn.Module, seed: int, scale: float = 0.02) -> nn.Module:
    """Add ``scale`` times standard normal noise to every parameter (zero-initialised ones too)."""
    g = torch.Generator().manual_seed(seed)
    for p in net.parameters():
        p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net
