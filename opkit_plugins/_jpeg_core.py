"""Tensor kernels of the ``jpeg`` operator (private).

Everything here works on whole batches of planes; no Python loop visits a pixel, a block or a
channel. Two arithmetics are implemented:

* a *float* one (orthonormal DCT, JFIF colour matrix, 2x2 means), linear up to the final
  rounding of ``coefficient / Q``; its decoder ``decode_exact`` is an exact right inverse, and
* a *libjpeg* one that reproduces libjpeg-turbo's integer pipeline operation for operation
  (fixed-point colour conversion, biased chroma averaging, the ``islow`` forward and inverse
  DCTs, reciprocal quantisation, the "fancy" triangle upsampling and the clamps).

Blocks are stored as ``(B, rows, cols, 8, 8)`` tensors in natural order: ``block[u, v]`` is the
coefficient of vertical frequency ``u`` and horizontal frequency ``v``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache, lru_cache

import torch
from einops import rearrange
from torch import Tensor
from torch.nn import functional as tnf

from opkit.images import LUMA

__all__ = [
    "CHROMA_BASE",
    "LUMA_BASE",
    "RGB_FIXED",
    "SAMPLINGS",
    "YCC_FIXED",
    "ZIGZAG",
    "Geometry",
    "coefficients_float",
    "decode_exact",
    "decode_libjpeg",
    "encode_float",
    "encode_libjpeg",
    "quality_tables",
]

#: ITU-T T.81 Annex K.1 luminance table, natural (row-major) order.
LUMA_BASE = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
#: ITU-T T.81 Annex K.2 chrominance table, natural order.
CHROMA_BASE = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
)  # fmt: skip


def _zigzag() -> tuple[int, ...]:
    order = sorted(
        ((i, j) for i in range(8) for j in range(8)),
        key=lambda p: (p[0] + p[1], p[0] if (p[0] + p[1]) % 2 else p[1]),
    )
    return tuple(8 * i + j for i, j in order)


#: ``ZIGZAG[k]`` is the natural (row-major) index of the ``k``-th coefficient in zigzag order.
ZIGZAG = _zigzag()

#: Luma sampling factors ``(horizontal, vertical)`` of each chroma subsampling (chroma is 1x1).
SAMPLINGS: dict[str, tuple[int, int]] = {"4:4:4": (1, 1), "4:2:2": (2, 1), "4:2:0": (2, 2)}


def quality_tables(quality: int) -> Tensor:
    """IJG quality scaling of the Annex K tables, exactly as ``jpeg_set_quality`` does it.

    ``s = 5000 // q`` for ``q < 50`` else ``200 - 2 q``; entry ``clip((base * s + 50) // 100, 1, 255)``.

    Parameters
    ----------
    quality : int
        1..100.

    Returns
    -------
    torch.Tensor
        ``(2, 8, 8)`` int32: luminance then chrominance, natural order.
    """
    s = 5000 // quality if quality < 50 else 200 - 2 * quality
    base = torch.tensor([LUMA_BASE, CHROMA_BASE], dtype=torch.int64)
    return ((base * s + 50) // 100).clamp(1, 255).to(torch.int32).view(2, 8, 8)


# ------------------------------------------------------------------------------------------------
# geometry
# ------------------------------------------------------------------------------------------------
class Geometry:
    """Plane and block sizes of an ``H x W`` image with luma sampling factors ``(fh, fv)``.

    Component 0 is luma, full size ``H x W``; chroma planes are ``ceil(H/fv) x ceil(W/fh)``.
    Each plane is covered by ``ceil(h/8) x ceil(w/8)`` blocks (libjpeg's ``height_in_blocks``
    and ``width_in_blocks``; the dummy blocks that complete the last MCU are entropy-coding
    filler and are not part of the measurement).
    """

    def __init__(self, height: int, width: int, channels: int, factors: tuple[int, int]) -> None:
        self.height, self.width, self.channels = height, width, channels
        self.fh, self.fv = factors if channels == 3 else (1, 1)
        self.planes: list[tuple[int, int]] = [(height, width)]
        if channels == 3:
            chroma = (-(-height // self.fv), -(-width // self.fh))
            self.planes += [chroma, chroma]
        self.blocks = [(-(-h // 8), -(-w // 8)) for h, w in self.planes]

    def __repr__(self) -> str:
        return f"Geometry({self.height}x{self.width}, C={self.channels}, factors=({self.fh}, {self.fv}))"


def _pad_to(plane: Tensor, h: int, w: int) -> Tensor:
    """Edge-replicate ``(B, h0, w0)`` planes at the bottom/right to ``(B, h, w)``."""
    h0, w0 = plane.shape[-2:]
    if (h0, w0) == (h, w):
        return plane
    idx_r = torch.arange(h, device=plane.device).clamp_max(h0 - 1)
    idx_c = torch.arange(w, device=plane.device).clamp_max(w0 - 1)
    return plane.index_select(-2, idx_r).index_select(-1, idx_c)


# ------------------------------------------------------------------------------------------------
# float arithmetic
# ------------------------------------------------------------------------------------------------
def _fix(x: float) -> int:
    """libjpeg's ``FIX(x)``: ``x`` in 16-bit fixed point, rounded."""
    return int(x * 65536 + 0.5)


def _jfif_coefficients() -> dict[str, float]:
    """JFIF's colour transform from the luma weights (:data:`opkit.images.LUMA`), as libjpeg writes it.

    With ``(k_r, k_g, k_b)`` the luma weights, ``Cb = (B − Y) / (2(1 − k_b))`` and
    ``Cr = (R − Y) / (2(1 − k_r))``; libjpeg's constants are these, rounded to five decimals
    (``jccolor.c``: 0.16874, 0.33126, 0.41869, 0.08131; ``jdcolor.c``: 1.40200, 0.34414, 0.71414,
    1.77200), and so are these.
    """
    kr, kg, kb = LUMA
    exact = {
        "cb_r": kr / (2 * (1 - kb)),
        "cb_g": kg / (2 * (1 - kb)),
        "cr_g": kg / (2 * (1 - kr)),
        "cr_b": kb / (2 * (1 - kr)),
        "r_cr": 2 * (1 - kr),
        "g_cb": 2 * (1 - kb) * kb / kg,
        "g_cr": 2 * (1 - kr) * kr / kg,
        "b_cb": 2 * (1 - kb),
    }
    return {name: round(value, 5) for name, value in exact.items()}


_JFIF = _jfif_coefficients()

#: libjpeg's fixed-point RGB -> YCbCr coefficients (``jccolor.c``), integers (scaled by 2**16).
YCC_FIXED = (
    tuple(_fix(k) for k in LUMA),
    (-_fix(_JFIF["cb_r"]), -_fix(_JFIF["cb_g"]), _fix(0.5)),
    (_fix(0.5), -_fix(_JFIF["cr_g"]), -_fix(_JFIF["cr_b"])),
)

#: libjpeg's fixed-point chroma terms of YCbCr -> RGB (``jdcolor.c``): rows R, G, B; columns
#: Cb, Cr (scaled by 2**16).
RGB_FIXED = (
    (0, _fix(_JFIF["r_cr"])),
    (-_fix(_JFIF["g_cb"]), -_fix(_JFIF["g_cr"])),
    (_fix(_JFIF["b_cb"]), 0),
)

#: libjpeg's fixed-point RGB -> YCbCr coefficients (jccolor.c), as exact dyadic rationals.
RGB_TO_YCC = torch.tensor(YCC_FIXED, dtype=torch.float64) / 65536.0
YCC_TO_RGB = torch.linalg.inv(RGB_TO_YCC)


@cache
def dct_matrix() -> Tensor:
    """Orthonormal 8-point DCT-II matrix ``C[u, i] = a(u) cos((2i+1) u pi / 16)`` (float64)."""
    u = torch.arange(8, dtype=torch.float64)[:, None]
    i = torch.arange(8, dtype=torch.float64)[None, :]
    c = torch.cos((2 * i + 1) * u * math.pi / 16) * 0.5
    c[0] = math.sqrt(1 / 8)
    return c


@cache
def dct64() -> Tensor:
    """``kron(C, C)``: maps a row-major flattened block to its row-major coefficients."""
    c = dct_matrix()
    return torch.kron(c, c)


def _cached(t: Tensor, like: Tensor) -> Tensor:
    return t.to(device=like.device, dtype=like.dtype)


_CONSTANTS: dict[tuple[object, ...], Tensor] = {}


def _constant(key: tuple[object, ...], make: Callable[[], Tensor], like: Tensor) -> Tensor:
    """``make()`` on ``like``'s device and dtype, built once per (key, device, dtype).

    Keeps the per-call work of the hot paths free of host-to-device copies (each one a host
    synchronisation on CUDA) and of rebuilding small constant matrices.
    """
    full = (*key, like.device, like.dtype)
    hit = _CONSTANTS.get(full)
    if hit is None:
        if len(_CONSTANTS) > 512:  # many distinct tables: start over rather than grow forever
            _CONSTANTS.clear()
        hit = make().to(device=like.device, dtype=like.dtype).contiguous()
        _CONSTANTS[full] = hit
    return hit


def matmul_exact(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` in full float32 precision: on CUDA, TF32 matrix products are switched off for the call.

    The exact decoder relies on float32 DCTs; TF32 (10-bit mantissa) would break its laws.
    """
    if a.device.type != "cuda" or torch.get_float32_matmul_precision() == "highest":
        return a @ b
    saved = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        return a @ b
    finally:
        torch.set_float32_matmul_precision(saved)


def conv2d_exact(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1) -> Tensor:
    """``conv2d`` in full precision: on CUDA, cuDNN's TF32 shortcut is switched off for the call.

    The libjpeg emulation relies on float32 sums of integers below ``2**24`` being exact, and the
    exact decoder on float32 DCTs; TF32 (10-bit mantissa) would break both.
    """
    if x.device.type != "cuda":
        return tnf.conv2d(x, weight, bias, stride=stride)
    cudnn = torch.backends.cudnn
    with cudnn.flags(
        enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=False
    ):
        return tnf.conv2d(x, weight, bias, stride=stride)


def round_half_away(v: Tensor) -> Tensor:
    """Round to nearest, ties away from zero (libjpeg's quantiser rounding)."""
    return torch.trunc(v + torch.where(v < 0, -0.5, 0.5))


def _chroma_mean(x: Tensor, fh: int, fv: int) -> Tensor:
    """``fv x fh`` means of ``(B, C, H, W)`` images, the last row/column replicated when odd."""
    h, w = x.shape[-2:]
    if h % fv or w % fh:
        x = _pad_to(x, h + h % fv, w + w % fh)
    if fh == 2:
        x = x[..., 0::2] + x[..., 1::2]
    if fv == 2:
        x = x[..., 0::2, :] + x[..., 1::2, :]
    return x * (1.0 / (fh * fv))


@lru_cache(maxsize=256)
def _scaled_dct(qkey: tuple[int, ...], inverse: bool) -> Tensor:
    """``diag(1/Q) kron(C, C)`` or ``diag(Q) kron(C, C)`` as ``(64, 1, 8, 8)`` stride-8 kernels."""
    q = torch.tensor(qkey, dtype=torch.float64)[:, None]
    return ((dct64() * q) if inverse else (dct64() / q)).reshape(64, 1, 8, 8).contiguous()


def _qkey(q: Tensor) -> tuple[int, ...]:
    return tuple(int(v) for v in q.flatten().tolist())


def coefficients_float(x: Tensor, geo: Geometry, tables: Tensor) -> list[Tensor]:
    """The float JPEG encoder before its rounding: ``DCT(pad(S(M 255 x - 128))) / Q`` per component.

    The colour matrix is libjpeg's fixed-point one (exact dyadic rationals); chroma is averaged
    before the colour conversion (the same linear map, on a quarter of the pixels), and the 2-D
    DCT with the division by ``Q`` is one product with the 64 kernels ``D[uv] / Q[uv]``. An
    affine map of ``x``, differentiable (autograd): the relaxation of :meth:`JPEG.relaxed_codes`,
    and what :func:`encode_float` rounds.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, H, W)`` images in [0, 1] (values outside extend the linear maps).
    geo : Geometry
        Sizes.
    tables : torch.Tensor
        ``(C, 8, 8)`` integer tables, one per component.

    Returns
    -------
    list of torch.Tensor
        Per component, ``(B, rows, cols, 8, 8)`` coefficients in units of the table entry, of
        ``x``'s dtype.
    """
    b = x.shape[0]
    if geo.channels == 3:
        m = _constant(("rgb_to_ycc",), lambda: RGB_TO_YCC * 255.0, x)
        planes = [(x * m[0].view(1, 3, 1, 1)).sum(1).sub_(128.0)]
        xs = x if (geo.fh, geo.fv) == (1, 1) else _chroma_mean(x, geo.fh, geo.fv)
        planes += [(xs * m[1].view(1, 3, 1, 1)).sum(1), (xs * m[2].view(1, 3, 1, 1)).sum(1)]
    else:
        planes = [x[:, 0] * 255.0 - 128.0]
    out = []
    for c, plane in enumerate(planes):  # at most three components
        rows, cols = geo.blocks[c]
        qkey = _qkey(tables[c])
        # (D / Q)ᵀ: a row-major flattened block times it gives its 64 coefficients in units of Q
        dq = _constant(("fdct", qkey), lambda qkey=qkey: _scaled_dct(qkey, False).view(64, 64).T, x)
        blocks = rearrange(_pad_to(plane, rows * 8, cols * 8), "b (r i) (c j) -> b r c (i j)", i=8, j=8)
        out.append(matmul_exact(blocks, dq).view(b, rows, cols, 8, 8))
    return out


def encode_float(x: Tensor, geo: Geometry, tables: Tensor) -> list[Tensor]:
    """Float JPEG encoder: ``round(DCT(pad(S(M 255 x - 128))) / Q)`` per component.

    :func:`coefficients_float`, rounded half away from zero.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, H, W)`` images in [0, 1] (values outside extend the linear maps).
    geo : Geometry
        Sizes.
    tables : torch.Tensor
        ``(C, 8, 8)`` integer tables, one per component.

    Returns
    -------
    list of torch.Tensor
        Per component, ``(B, rows, cols, 8, 8)`` int32 codes.
    """
    half = _constant(("half",), lambda: torch.tensor(0.5), x)
    out = []
    for coef in coefficients_float(x, geo, tables):
        # round half away from zero: add ±1/2, then the cast truncates toward zero
        out.append(coef.add_(torch.copysign(half, coef)).to(torch.int32))
    return out


@lru_cache(maxsize=64)
def _edge_system(r: int, c: int, qkey: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """For a block with ``r x c`` real samples (rest replicated): ``A``, ``A⁺`` and ``A A⁺``.

    ``A = diag(1/Q) D P`` maps the real samples to coefficients in units of ``Q``, with ``P``
    the edge replication and ``D`` the 2-D DCT (float64).
    """
    rows = torch.arange(8).clamp_max(r - 1)
    cols = torch.arange(8).clamp_max(c - 1)
    src = (rows[:, None] * c + cols[None, :]).reshape(64)
    p = torch.zeros(64, r * c, dtype=torch.float64)
    p[torch.arange(64), src] = 1.0
    q = torch.tensor(qkey, dtype=torch.float64)
    a = (dct64() @ p) / q[:, None]
    a_pinv = torch.linalg.pinv(a)
    return a, a_pinv, a @ a_pinv


def _solve_edge_blocks(k: Tensor, r: int, c: int, q: Tensor) -> Tensor:
    """Real samples ``s`` (``(N, r*c)``, float64) with ``round(A s) == k`` for each row of ``k``.

    The quantisation cell ``{z : |z - k| <= 1/2}`` meets the range of ``A`` (the original block
    is in both). Alternating projections onto the range and onto the cell shrunk by a margin find
    a point of the intersection for almost every block, all blocks together; the few that are
    left (thin cells: few visible samples and small ``Q``) are solved exactly by a linear
    programme that maximises the margin.
    """
    a, a_pinv, proj = (
        t.to(k.device) for t in _edge_system(r, c, tuple(int(v) for v in q.flatten().tolist()))
    )
    kf = k.to(torch.float64)
    z = kf @ proj.T
    done = torch.zeros(k.shape[0], dtype=torch.bool, device=k.device)
    for margin in (0.1, 0.02):
        for _ in range(30):
            ok = (round_half_away(z) == kf).all(dim=1) & ((z - kf).abs() <= 0.5 - margin / 2).all(dim=1)
            done = done | ok
            if bool(done.all()):
                return z @ a_pinv.T
            znew = (kf + (z - kf).clamp(-0.5 + margin, 0.5 - margin)) @ proj.T
            z = torch.where(done[:, None], z, znew)
    s = z @ a_pinv.T
    for i in torch.nonzero(~done).flatten().tolist():  # the rare stragglers only
        s[i] = _max_margin(a, kf[i])
    return s


def _max_margin(a: Tensor, k: Tensor) -> Tensor:
    """``argmax_s t`` subject to ``|A s - k| <= 1/2 - t`` (HiGHS), the most robust consistent block."""
    import numpy as np
    from scipy.optimize import linprog

    an = a.cpu().numpy()
    kn = k.cpu().numpy()
    n, m = an.shape
    ones = np.ones((n, 1))
    a_ub = np.vstack([np.hstack([an, ones]), np.hstack([-an, ones])])
    b_ub = np.concatenate([kn + 0.5, 0.5 - kn])
    cost = np.zeros(m + 1)
    cost[-1] = -1.0
    bounds = [(None, None)] * m + [(None, 0.5)]
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if res.x is None:  # pragma: no cover - infeasible only for codes no image produces
        sol: Tensor = torch.linalg.lstsq(a, k.unsqueeze(-1)).solution
        return sol.squeeze(-1)
    return torch.from_numpy(res.x[:m]).to(device=k.device, dtype=torch.float64)


def _fix_edges(plane: Tensor, k: Tensor, q: Tensor, h: int, w: int) -> Tensor:
    """Overwrite the visible samples of the edge blocks of an exact decode (see above).

    ``plane`` is ``(B, 8 rows, 8 cols)``; only its top-left ``h x w`` part is visible.
    """
    rows, cols = k.shape[1:3]
    rh, rw = h - 8 * (rows - 1), w - 8 * (cols - 1)
    if rh == 8 and rw == 8:
        return plane
    plane = plane.clone()
    kinds = [
        (slice(0, rows - 1), slice(cols - 1, cols), 8, rw),
        (slice(rows - 1, rows), slice(0, cols - 1), rh, 8),
    ]
    kinds.append((slice(rows - 1, rows), slice(cols - 1, cols), rh, rw))
    for sr, sc, r, c in kinds:  # the three kinds of edge block
        kk = k[:, sr, sc]
        if (r == 8 and c == 8) or kk.numel() == 0:
            continue
        n_r, n_c = kk.shape[1:3]
        s = _solve_edge_blocks(kk.reshape(-1, 64), r, c, q)
        s = rearrange(s, "(b ny nx) (i j) -> b (ny i) (nx j)", ny=n_r, nx=n_c, i=r, j=c)
        r0, c0 = sr.start * 8, sc.start * 8
        if r < 8:  # bottom blocks: only r visible rows; right blocks: only c visible columns
            row_idx = slice(r0, r0 + r)
        else:
            row_idx = slice(r0, r0 + 8 * n_r)
        col_idx = slice(c0, c0 + c) if c < 8 else slice(c0, c0 + 8 * n_c)
        plane[:, row_idx, col_idx] = s.to(plane.dtype)
    return plane


def decode_exact(comps: list[Tensor], geo: Geometry, tables: Tensor, dtype: torch.dtype) -> Tensor:
    """Exact right inverse of :func:`encode_float`.

    Inverse DCT of ``k Q``, replication upsampling, inverse colour matrix, no clamp; edge blocks
    (when the plane size is not a multiple of 8) are solved so that re-encoding their visible
    samples, padded again, gives back ``k``.

    Parameters
    ----------
    comps : list of torch.Tensor
        Codes per component, ``(B, rows, cols, 8, 8)``.
    geo : Geometry
        Sizes.
    tables : torch.Tensor
        ``(C, 8, 8)`` tables.
    dtype : torch.dtype
        Output dtype.

    Returns
    -------
    torch.Tensor
        ``(B, C, H, W)`` images.
    """
    device = comps[0].device
    work = torch.float64 if dtype == torch.float64 else torch.float32
    like = torch.empty((), device=device, dtype=work)
    planes = []
    for c, k in enumerate(comps):  # at most three components
        q = tables[c]
        b, rows, cols = k.shape[:3]
        qkey = _qkey(q)
        dq = _constant(
            ("idct", qkey), lambda qkey=qkey: _scaled_dct(qkey, True).view(64, 64), like
        )  # diag(Q) D
        blocks = matmul_exact(k.reshape(b, rows, cols, 64).to(work), dq)
        plane = rearrange(blocks, "b ny nx (i j) -> b (ny i) (nx j)", i=8, j=8)
        planes.append(_fix_edges(plane, k, q, *geo.planes[c]))
    h, w = geo.height, geo.width
    if geo.channels == 1:
        return ((planes[0][:, None, :h, :w] + 128.0) / 255.0).to(dtype)
    (hc, wc), fh, fv = geo.planes[1], geo.fh, geo.fv
    m = _constant(("ycc_to_rgb",), lambda: YCC_TO_RGB / 255.0, like)
    y = planes[0][:, None, : hc * fv, : wc * fh]
    cb, cr = planes[1][:, None, :hc, :wc], planes[2][:, None, :hc, :wc]
    m0, m1, m2 = (m[:, i].view(1, 3, 1, 1) for i in range(3))
    # chroma terms and the luma level shift (128 m0) at chroma resolution, then replicated
    chroma = torch.addcmul(torch.addcmul(128.0 * m0, cb, m1), cr, m2)
    if (fh, fv) != (1, 1):
        chroma = tnf.interpolate(chroma, scale_factor=(fv, fh), mode="nearest")
    out = torch.addcmul(chroma, y, m0)[:, :, :h, :w]
    return (out if out.is_contiguous() else out.contiguous()).to(dtype)


# ------------------------------------------------------------------------------------------------
# libjpeg-turbo integer arithmetic, emulated exactly with float64 integers and floor
# ------------------------------------------------------------------------------------------------
_F0298, _F0390, _F0541, _F0765 = 2446, 3196, 4433, 6270
_F0899, _F1175, _F1501, _F1847 = 7373, 9633, 12299, 15137
_F1961, _F2053, _F2562, _F3072 = 16069, 16819, 20995, 25172


def _fdct_islow_pre(d: list[int]) -> list[int]:
    """The linear part of one pass of libjpeg's ``jpeg_fdct_islow`` (before each DESCALE).

    Outputs 0 and 4 carry an extra factor ``2**13`` so that every output is then descaled by the
    same shift (11 bits in the row pass, 15 in the column pass), which reproduces libjpeg's
    ``<< PASS1_BITS`` and ``DESCALE(., PASS1_BITS)`` exactly.
    """
    tmp0, tmp7 = d[0] + d[7], d[0] - d[7]
    tmp1, tmp6 = d[1] + d[6], d[1] - d[6]
    tmp2, tmp5 = d[2] + d[5], d[2] - d[5]
    tmp3, tmp4 = d[3] + d[4], d[3] - d[4]
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    z1 = (tmp12 + tmp13) * _F0541
    o2, o6 = z1 + tmp13 * _F0765, z1 - tmp12 * _F1847
    z1, z2, z3, z4 = tmp4 + tmp7, tmp5 + tmp6, tmp4 + tmp6, tmp5 + tmp7
    z5 = (z3 + z4) * _F1175
    z1, z2, z3, z4 = z1 * -_F0899, z2 * -_F2562, z3 * -_F1961 + z5, z4 * -_F0390 + z5
    o7 = tmp4 * _F0298 + z1 + z3
    o5 = tmp5 * _F2053 + z2 + z4
    o3 = tmp6 * _F3072 + z2 + z3
    o1 = tmp7 * _F1501 + z1 + z4
    return [(tmp10 + tmp11) << 13, o1, o2, o3, (tmp10 - tmp11) << 13, o5, o6, o7]


def _idct_islow_pre(s: list[int]) -> list[int]:
    """The linear part of one pass of libjpeg's ``jpeg_idct_islow`` (before each DESCALE)."""
    z1 = (s[2] + s[6]) * _F0541
    tmp2, tmp3 = z1 - s[6] * _F1847, z1 + s[2] * _F0765
    tmp0, tmp1 = (s[0] + s[4]) << 13, (s[0] - s[4]) << 13
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    z1, z2, z3, z4 = s[7] + s[1], s[5] + s[3], s[7] + s[3], s[5] + s[1]
    z5 = (z3 + z4) * _F1175
    z1, z2, z3, z4 = z1 * -_F0899, z2 * -_F2562, z3 * -_F1961 + z5, z4 * -_F0390 + z5
    t0 = s[7] * _F0298 + z1 + z3
    t1 = s[5] * _F2053 + z2 + z4
    t2 = s[3] * _F3072 + z2 + z3
    t3 = s[1] * _F1501 + z1 + z4
    return [tmp10 + t3, tmp11 + t2, tmp12 + t1, tmp13 + t0, tmp13 - t0, tmp12 - t1, tmp11 - t2, tmp10 - t3]


@cache
def islow_matrices() -> tuple[Tensor, Tensor]:
    """Integer 8x8 matrices of the linear parts of the islow forward and inverse passes (float64)."""
    eye = [[int(i == j) for j in range(8)] for i in range(8)]
    fwd = torch.tensor([_fdct_islow_pre(e) for e in eye], dtype=torch.float64).T
    inv = torch.tensor([_idct_islow_pre(e) for e in eye], dtype=torch.float64).T
    return fwd, inv


def _descale(v: Tensor, n: int) -> Tensor:
    """libjpeg's ``DESCALE``: ``(v + 2**(n-1)) >> n`` on integer-valued float64."""
    return torch.floor((v + float(1 << (n - 1))) * (1.0 / (1 << n)))


def _plane_fdct(plane: Tensor, m: Tensor, descale: tuple[int, int] | None) -> Tensor:
    """Separable 8x8 transform of every block of ``(B, 8 ry, 8 rx)`` planes; rows first.

    Returns ``(B, ry, rx, 8, 8)`` coefficients ``m X mᵀ`` per block, each pass followed by
    ``_descale`` when ``descale`` gives the two shifts (libjpeg arithmetic).
    """
    b, h, w = plane.shape
    rows = plane.reshape(b, h, w // 8, 8) @ m.T
    if descale:
        rows = _descale(rows, descale[0])
    cols = m @ rows.reshape(b, h // 8, 8, w)
    if descale:
        cols = _descale(cols, descale[1])
    return rearrange(cols, "b ry u (rx v) -> b ry rx u v", v=8)


def _plane_idct(coef: Tensor, m: Tensor, descale: tuple[int, int] | None) -> Tensor:
    """Inverse of :func:`_plane_fdct` layout: ``(B, ry, rx, 8, 8)`` -> ``(B, 8 ry, 8 rx)``; columns first."""
    b, ry, rx = coef.shape[:3]
    x = rearrange(coef, "b ry rx u v -> b ry u (rx v)")
    cols = m @ x
    if descale:
        cols = _descale(cols, descale[0])
    rows = cols.reshape(b, ry, 8, rx, 8) @ m.T
    if descale:
        rows = _descale(rows, descale[1])
    return rows.reshape(b, ry * 8, rx * 8)


@lru_cache(maxsize=64)
def _reciprocals(qkey: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """libjpeg-turbo's ``compute_reciprocal`` for divisors ``8 Q``: (recip, correction, 2**-shift)."""
    fq, corr, scale = [], [], []
    for qv in qkey:  # the 64 table entries
        div = int(qv) << 3
        r = 16 + div.bit_length() - 1
        f, rem = divmod(1 << r, div)
        c = div // 2
        if rem == 0:
            f, r = f >> 1, r - 1
        elif rem <= div // 2:
            c += 1
        else:
            f += 1
        fq.append(f)
        corr.append(c)
        scale.append(2.0**-r)
    return tuple(torch.tensor(v, dtype=torch.float64).view(8, 8) for v in (fq, corr, scale))  # type: ignore[return-value]


@lru_cache(maxsize=8)
def _ycc_conv(device: torch.device) -> tuple[Tensor, Tensor]:
    """libjpeg's fixed-point RGB -> YCbCr (before the ``>> 16``) as a 1x1 convolution."""
    w = torch.tensor(YCC_FIXED, dtype=torch.float32).view(3, 3, 1, 1)
    b = torch.tensor([32768, 128 * 65536 + 32767, 128 * 65536 + 32767], dtype=torch.float32)
    return w.to(device), b.to(device)


@lru_cache(maxsize=8)
def _rgb_conv(device: torch.device) -> tuple[Tensor, Tensor]:
    """libjpeg's fixed-point chroma terms of YCbCr -> RGB (before the ``>> 16``) as a 1x1 convolution."""
    w = torch.tensor(RGB_FIXED, dtype=torch.float32)
    b = torch.full((3,), 32768.0)  # inputs centred (Cb - 128, Cr - 128): every sum stays below 2**24
    return w.view(3, 2, 1, 1).to(device), b.to(device)


def encode_libjpeg(x: Tensor, geo: Geometry, tables: Tensor, levels: Tensor | None = None) -> list[Tensor]:
    """libjpeg-turbo's baseline encoder, integer for integer, on ``round(255 x)`` clipped to 0..255.

    Fixed-point RGB -> YCbCr (``jccolor.c``), biased 2x2 / 2x1 means with libjpeg's edge
    padding (``jcsample.c``, ``jcprepct.c``), ``islow`` forward DCT (``jfdctint.c``) and the
    reciprocal quantiser of ``jcdctmgr.c``. Integers are held exactly in float64.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, H, W)`` images in [0, 1].
    geo : Geometry
        Sizes.
    tables : torch.Tensor
        ``(C, 8, 8)`` tables.
    levels : torch.Tensor, optional
        ``round(255 x)`` if already computed.

    Returns
    -------
    list of torch.Tensor
        Per component, ``(B, rows, cols, 8, 8)`` int32 codes.
    """
    # Integers below 2**24 are exact in float32: enough for the colour conversion (every partial
    # sum stays below 2**24) and the chroma means; the DCT passes need float64.
    v = torch.round(x * 255.0).clamp_(0, 255) if levels is None else levels
    v = v.to(torch.float32)
    if geo.channels == 3:
        # jccolor.c: Y = (FIX(.299) R + FIX(.587) G + FIX(.114) B + ONE_HALF) >> 16, and for
        # Cb, Cr the offset (128 << 16) + ONE_HALF - 1; one 1x1 convolution, exact in float32
        weight, bias = _ycc_conv(v.device)
        ycc = conv2d_exact(v, weight, bias).mul_(1 / 65536).floor_()
        planes = [ycc[:, 0], _downsample_libjpeg(ycc[:, 1], geo), _downsample_libjpeg(ycc[:, 2], geo)]
    else:
        planes = [v[:, 0]]
    f64 = torch.empty((), dtype=torch.float64, device=x.device)
    fwd = _constant(("islow_fwd",), lambda: islow_matrices()[0], f64)
    out = []
    for c, plane in enumerate(planes):  # at most three components
        rows, cols = geo.blocks[c]
        coef = _plane_fdct(_pad_to(plane, rows * 8, cols * 8).to(torch.float64) - 128.0, fwd, (11, 15))
        qkey = _qkey(tables[c])
        fq, corr, scale = (
            _constant(("reciprocal", qkey, i), lambda i=i, qkey=qkey: _reciprocals(qkey)[i], f64)
            for i in range(3)
        )
        mag = torch.floor((coef.abs() + corr) * fq * scale)
        out.append((torch.sign(coef) * mag).to(torch.int32))
    return out


def _downsample_libjpeg(plane: Tensor, geo: Geometry) -> Tensor:
    """jcsample.c / jcprepct.c: pad right to whole blocks and bottom to a row group, biased means."""
    fh, fv = geo.fh, geo.fv
    if (fh, fv) == (1, 1):
        return plane
    h = plane.shape[-2]
    p = _pad_to(plane, -(-h // fv) * fv, geo.blocks[1][1] * 8 * fh)
    if fv == 2:
        s = p[:, 0::2, 0::2] + p[:, 0::2, 1::2] + p[:, 1::2, 0::2] + p[:, 1::2, 1::2]
        bias = 1.0 + (torch.arange(s.shape[-1], device=p.device) % 2)
        return torch.floor((s + bias) * 0.25)
    s = p[:, :, 0::2] + p[:, :, 1::2]
    bias = (torch.arange(s.shape[-1], device=p.device) % 2).to(p.dtype)
    return torch.floor((s + bias) * 0.5)


@cache
def _fancy_kernels(fv: int) -> tuple[Tensor, Tensor, float]:
    """libjpeg's fancy upsampling as a 3x3 convolution with one output channel per phase.

    Phase ``(a, b)`` (output row parity ``a``, column parity ``b``) of a replicate-padded plane
    ``p``: for h2v2 the 3:1 triangle in both directions (weights 9, 3, 3, 1) plus 8 (``b = 0``) or
    7 (``b = 1``), then ``>> 4``; for h2v1 the horizontal 3:1 triangle plus 1 or 2, then ``>> 2``.
    Returns ``(weight (P, 1, 3, 3), bias (P,), 1 / divisor)``.
    """
    tri = {0: (1.0, 3.0, 0.0), 1: (0.0, 3.0, 1.0)}  # taps on (previous, this, next) sample
    phases = [(a, b) for a in range(fv) for b in range(2)]
    w = torch.zeros(len(phases), 1, 3, 3, dtype=torch.float64)
    for n, (a, b) in enumerate(phases):  # the (at most four) phases
        col = torch.tensor(tri[b], dtype=torch.float64)
        row = torch.tensor(tri[a], dtype=torch.float64) if fv == 2 else torch.tensor([0.0, 1.0, 0.0])
        w[n, 0] = row[:, None] * col[None, :]
    bias = torch.tensor([(8.0, 7.0)[b] if fv == 2 else (1.0, 2.0)[b] for _, b in phases], dtype=torch.float64)
    return w, bias, 1.0 / (16.0 if fv == 2 else 4.0)


def _upsample_libjpeg(c: Tensor, geo: Geometry) -> Tensor:
    """jdsample.c: fancy (triangle) upsampling when the plane is wider than 2, else replication.

    ``c`` is ``(B, k, h, w)`` integer-valued float32 chroma planes; the neighbour of an edge
    sample is the sample itself (libjpeg's special first and last rows and columns).
    """
    fh, fv = geo.fh, geo.fv
    if (fh, fv) == (1, 1):
        return c
    b, k, h, w = c.shape
    if w <= 2:
        up = c.repeat_interleave(fv, -2).repeat_interleave(fh, -1)
    else:
        kernel, offsets, scale = _fancy_kernels(fv)
        weight = _constant(("fancy_w", fv), lambda: kernel, c)
        bias = _constant(("fancy_b", fv), lambda: offsets, c)
        padded = tnf.pad(c.reshape(b * k, 1, h, w), (1, 1, 1, 1), mode="replicate")
        phases = torch.floor(conv2d_exact(padded, weight, bias) * scale)  # (B k, fv 2, h, w)
        up = rearrange(phases, "(b k) (a t) h w -> b k (h a) (w t)", k=k, a=fv, t=2)
    return up[..., : geo.height, : geo.width]


def decode_libjpeg(comps: list[Tensor], geo: Geometry, tables: Tensor, dtype: torch.dtype) -> Tensor:
    """libjpeg-turbo's default decoder: ``islow`` IDCT, fancy upsampling, integer YCbCr -> RGB.

    Parameters
    ----------
    comps : list of torch.Tensor
        Codes per component, ``(B, rows, cols, 8, 8)``.
    geo : Geometry
        Sizes.
    tables : torch.Tensor
        ``(C, 8, 8)`` tables.
    dtype : torch.dtype
        Output dtype; values are multiples of 1/255 in [0, 1].

    Returns
    -------
    torch.Tensor
        ``(B, C, H, W)`` images.
    """
    f64 = torch.empty((), dtype=torch.float64, device=comps[0].device)
    inv = _constant(("islow_inv",), lambda: islow_matrices()[1], f64)
    planes = []
    for c, k in enumerate(comps):  # at most three components
        qkey = _qkey(tables[c])
        q = _constant(("table", qkey), lambda qkey=qkey: torch.tensor(qkey).view(8, 8), f64)
        samples = (_plane_idct(k.to(torch.float64) * q, inv, (11, 18)) + 128.0).clamp_(0, 255)
        samples = samples.to(torch.float32)  # 8-bit integers from here on: exact in float32
        h, w = geo.planes[c]
        planes.append(samples[:, :h, :w])
    if geo.channels == 1:
        img = planes[0].unsqueeze(1)
    else:
        # jdcolor.c: R = y + ((FIX(1.402) cr + ONE_HALF) >> 16), G = y + ((-FIX(0.34414) cb
        # + ONE_HALF - FIX(0.71414) cr) >> 16), B = y + ((FIX(1.772) cb + ONE_HALF) >> 16)
        chroma = _upsample_libjpeg(torch.stack(planes[1:], 1), geo) - 128.0
        weight, bias = _rgb_conv(chroma.device)
        terms = conv2d_exact(chroma, weight, bias).mul_(1 / 65536).floor_()
        img = terms.add_(planes[0].unsqueeze(1)).clamp_(0, 255)
    return img.to(dtype) / 255.0
