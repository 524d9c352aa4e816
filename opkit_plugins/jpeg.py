"""``jpeg``: the lossy part of baseline JPEG as an encode/decode operator, faithful to libjpeg-turbo.

Encode maps an RGB (or grayscale) image batch to the integer DCT coefficients JPEG stores;
Decode maps them back. The maths, per component (``v = 255 x``)::

    Y  =  0.299 R + 0.587 G + 0.114 B            (JFIF full-range YCbCr)
    Cb = -0.16874 R - 0.33126 G + 0.5 B + 128
    Cr =  0.5 R - 0.41869 G - 0.08131 B + 128
    chroma: fv x fh means ("4:2:0": 2x2, "4:2:2": 2x1, "4:4:4": none)
    pad each plane to whole 8x8 blocks by edge replication, subtract 128
    k[u, v] = round(DCT8x8(block)[u, v] / Q[u, v])       (orthonormal DCT-II, ties away from 0)

with the quantisation tables ``Q`` from the IJG quality formula. Two arithmetics implement it:
``"float"`` (the formula above, linear up to the final rounding) and ``"libjpeg"`` (what
libjpeg-turbo does on an 8-bit image: fixed-point colour conversion rounded to integers, chroma
means with libjpeg's alternating bias, the integer ``islow`` DCT and its reciprocal quantiser; it
agrees with Pillow's files bit for bit). The default ``"auto"`` uses the libjpeg arithmetic for
images that are exactly 8-bit (every value a multiple of 1/255 in [0, 1]) and the float
arithmetic otherwise, so that a photo encodes exactly as Pillow would encode it while the
pseudo-inverse law below holds on continuous images.

Decode ``"exact"`` (used by :meth:`JPEG.pinv`) is an exact right inverse of the float
arithmetic: ``Encode(Decode(y)) == y`` for every ``y = Encode(x)`` with ``x`` continuous. Decode
``"libjpeg"`` reproduces libjpeg-turbo's default decoder (``islow`` IDCT, "fancy" triangle
upsampling, integer colour conversion, clamping), i.e. what Pillow returns for a file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
import torch
from hypothesis import strategies as st
from torch import Tensor

import opkit
from opkit.images import DEFAULT_MAX_PIXELS, check_pixels
from opkit.params import in_range, one_of
from opkit.testing.strategies import shapes
from opkit_plugins import _jpeg_core as core
from opkit_plugins import _jpeg_native as native

__all__ = [
    "CHROMA_BAND",
    "JPEG",
    "MAX_CHROMA_GAIN",
    "JpegCoefficients",
    "JpegParams",
    "from_file",
    "quality_tables",
]

quality_tables = core.quality_tables

#: :meth:`JPEG.calibrate` keeps a restoration's mean chroma magnitude no more than this fraction
#: below the decode's (2.5 %: inside the 3 % the project's colour goal allows, with room for the
#: clamp to [0, 1] and for libjpeg's upsampling, whose chroma differs from the exact decode's).
CHROMA_BAND = 0.025

#: A decode whose mean chroma magnitude is below this (in [0, 1] units, 1/40 of an 8-bit level)
#: is a grey file (its chroma coefficients are all zero): its restoration is made grey.
GREY_CHROMA = 1e-4


def chroma_strength(x: Tensor) -> Tensor:
    """Each image's mean chroma magnitude ``mean √(Cb² + Cr²)`` (JFIF, centred, in [0, 1] units).

    Parameters
    ----------
    x : torch.Tensor
        ``(B, 3, H, W)`` RGB images in ``[0, 1]``.

    Returns
    -------
    torch.Tensor
        ``(B,)`` float64 (multiply by 255 for 8-bit levels).
    """
    chroma = core.RGB_TO_YCC.to(device=x.device, dtype=torch.float64)[1:]
    c = torch.einsum("kc,bchw->bkhw", chroma, x.double())
    return c.square().sum(1).sqrt().mean((-2, -1))


#: The largest factor :meth:`JPEG.calibrate` scales chroma up by: it restores colours a prior
#: paled, and does not blow up the faint chroma noise of a restoration that has lost its colour.
MAX_CHROMA_GAIN = 2.0

_MAX_TABLE = 32767


def _convert_tables(value: Any) -> tuple[tuple[int, ...], ...] | None:
    """Normalise explicit tables to a tuple of 64-tuples in natural (row-major) order."""
    if value is None:
        return None
    if isinstance(value, dict):  # Pillow's Image.quantization: {0: luma, 1: chroma, ...}
        value = [value[k] for k in sorted(value)]
    try:
        t = torch.as_tensor(value if not isinstance(value, Tensor) else value.detach().cpu())
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"tables must be (8, 8), (n, 8, 8), (n, 64) or a dict of 64 values, got {value!r}"
        ) from exc
    if t.is_floating_point():
        if not bool((t == t.round()).all()):
            raise ValueError("tables must hold integers")
    elif t.dtype == torch.bool:
        raise ValueError("tables must hold integers, got booleans")
    t = t.to(torch.int64)
    if t.numel() % 64 or t.numel() == 0 or t.numel() > 3 * 64 or t.shape[-1] not in (8, 64):
        raise ValueError(
            f"tables must be (8, 8), (n, 8, 8) or (n, 64) with n in 1..3, got shape {tuple(t.shape)}"
        )
    t = t.reshape(-1, 64)
    if bool(((t < 1) | (t > _MAX_TABLE)).any()):
        raise ValueError(f"tables entries must be integers in [1, {_MAX_TABLE}]")
    return tuple(tuple(int(v) for v in row) for row in t.tolist())


def _check_quality_and_tables(inst: JpegParams, _attr: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and inst.quality is not None:
        raise ValueError("give either quality or tables, not both")


@attrs.frozen
class JpegParams:
    """Parameters of :class:`JPEG`.

    Attributes
    ----------
    quality : int or None
        IJG quality 1..100 (tables ``clip((base * s + 50) // 100, 1, 255)`` with
        ``s = 5000 // q`` below 50 and ``200 - 2 q`` from 50). ``None`` means 75 unless
        ``tables`` is given.
    subsampling : str
        ``"4:2:0"`` (chroma 2x2 means), ``"4:2:2"`` (2x1) or ``"4:4:4"`` (none). Ignored for
        grayscale images.
    tables : tuple or None
        Explicit quantisation tables in natural order, one (used for every component), two
        (luma, chroma) or three (one per component); accepts ``(8, 8)``, ``(n, 8, 8)``,
        ``(n, 64)`` arrays or Pillow's ``Image.quantization`` dict. Entries 1..32767.
    decode : str
        ``"exact"`` (right inverse of the encoder) or ``"libjpeg"`` (libjpeg-turbo's decoder).
        :meth:`JPEG.pinv` always uses ``"exact"``.
    encoder : str
        ``"auto"`` (libjpeg arithmetic on 8-bit images, float otherwise), ``"float"`` or
        ``"libjpeg"`` (always rounds the input to 8 bits first).
    """

    quality: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(in_range(1, 100, integer=True))
    )
    subsampling: str = attrs.field(default="4:2:0", validator=one_of(*core.SAMPLINGS))
    tables: tuple[tuple[int, ...], ...] | None = attrs.field(
        default=None, converter=_convert_tables, validator=_check_quality_and_tables
    )
    decode: str = attrs.field(default="exact", validator=one_of("exact", "libjpeg"))
    encoder: str = attrs.field(default="auto", validator=one_of("auto", "float", "libjpeg"))


@attrs.frozen(eq=False)
class JpegCoefficients:
    """A JPEG measurement: the quantised DCT coefficients and what is needed to decode them.

    Attributes
    ----------
    components : tuple of torch.Tensor
        One integer tensor per component (Y, or Y, Cb, Cr), each ``(B, rows, cols, 8, 8)``:
        ``rows x cols`` blocks covering the component plane (libjpeg's ``height_in_blocks`` x
        ``width_in_blocks``, as ``jpeglib`` reads them), each block in natural order
        ``[u, v]`` (vertical, horizontal frequency), in units of the table entry.
    tables : torch.Tensor
        ``(C, 8, 8)`` int32 quantisation table of each component, natural order.
    sampling : str
        ``"4:2:0"``, ``"4:2:2"`` or ``"4:4:4"``.
    size : tuple of int
        Image ``(H, W)``.
    dtype : torch.dtype
        Floating dtype of the decoded images (that of the encoded input).
    """

    components: tuple[Tensor, ...]
    tables: Tensor
    sampling: str
    size: tuple[int, int]
    dtype: torch.dtype = torch.float32
    # the JPEG files an 8-bit CPU encode went through (opkit_plugins._jpeg_native), not part of
    # the value: not an init argument, dropped by attrs.evolve, used only while the components
    # are the very tensors it was made with, unmodified
    _native_source: Any = attrs.field(default=None, init=False, repr=False)

    @property
    def batch(self) -> int:
        """Number of images."""
        return int(self.components[0].shape[0])

    @property
    def device(self) -> torch.device:
        """Device of the coefficients."""
        return self.components[0].device


class JPEG(opkit.EncodeDecodeOperator[JpegCoefficients]):
    """Baseline JPEG's lossy part: ``Encode`` to quantised DCT coefficients, ``Decode`` back.

    See the module documentation for the maths. The measurement is a
    :class:`JpegCoefficients`; :meth:`codes` flattens its integers for exact comparison.

    Parameters
    ----------
    shape : tuple of int
        ``(C, H, W)`` with ``C`` 1 (grayscale) or 3 (RGB); any ``H, W >= 1``.
    params : JpegParams
        Quality or tables, subsampling, decoder and encoder arithmetic.
    """

    def __init__(self, shape: tuple[int, int, int], params: JpegParams | None = None) -> None:
        super().__init__(shape)
        self.params = params if params is not None else JpegParams()
        c, h, w = self.shape
        if c not in (1, 3):
            raise ValueError(
                f"jpeg: images must have 1 (grayscale) or 3 (RGB) channels, got shape {self.shape}"
            )
        self._geo = core.Geometry(h, w, c, core.SAMPLINGS[self.params.subsampling])
        if self.params.tables is not None:
            t = torch.tensor(self.params.tables, dtype=torch.int32).view(-1, 8, 8)
        else:
            q = 75 if self.params.quality is None else self.params.quality
            t = core.quality_tables(q)
        if t.shape[0] == 1:
            t = t.expand(c, 8, 8)
        elif t.shape[0] == 2:
            t = torch.stack([t[0], t[1], t[1]])[:c]
        elif c == 1:
            t = t[:1]
        self._tables = t.contiguous()

    # -- description ----------------------------------------------------------------------------
    @property
    def tables(self) -> Tensor:
        """``(C, 8, 8)`` int32 quantisation table of each component (natural order)."""
        return self._tables

    @property
    def sampling(self) -> str:
        """Effective chroma subsampling (``"4:4:4"`` for grayscale)."""
        return self.params.subsampling if self.shape[0] == 3 else "4:4:4"

    # -- the pair -------------------------------------------------------------------------------
    def encode(self, x: Tensor) -> JpegCoefficients:
        """Quantised DCT coefficients of an image batch (see the module docstring).

        Parameters
        ----------
        x : torch.Tensor
            ``(B, C, H, W)`` floating images in [0, 1].

        Returns
        -------
        JpegCoefficients
            The measurement; ``dtype`` records ``x.dtype``.
        """
        self.check_input(x)
        tables = self._tables  # on the CPU: the kernels key their cached device constants by it
        mode = self.params.encoder
        source = None
        if mode == "float":
            comps = core.encode_float(x, self._geo, tables)
        elif mode == "libjpeg":
            comps, source = self._encode_libjpeg(x, tables)
        else:
            comps, source = self._encode_auto(x, tables)
        y = JpegCoefficients(tuple(comps), tables, self.sampling, self.shape[1:], x.dtype)  # type: ignore[arg-type]
        if source is not None:
            native.attach(y, source)
        return y

    def _encode_libjpeg(
        self, x: Tensor, tables: Tensor, levels: Tensor | None = None
    ) -> tuple[list[Tensor], Any]:
        """libjpeg arithmetic: the library itself for CPU batches where it applies, else its emulation."""
        if native.usable(x, self._geo, tables):
            lv = torch.round(x * 255.0).clamp_(0, 255) if levels is None else levels
            return native.encode(lv, self._geo, tables)
        return core.encode_libjpeg(x, self._geo, tables, levels), None

    def _encode_auto(self, x: Tensor, tables: Tensor) -> tuple[list[Tensor], Any]:
        # A cheap necessary condition first: an image with a non-8-bit value among about 1024
        # evenly spread samples is not 8-bit. Continuous images (every DDRM-JPEG step) stop
        # here after one small check (one host synchronisation on CUDA) instead of four passes.
        c, h, w = x.shape[1:]
        step = max(1, int(math.sqrt(c * h * w / 1024)))
        probe = x[:, :, ::step, ::step]  # a strided view: no copy of the batch
        if not bool(_eight_bit(probe).any()):
            return core.encode_float(x, self._geo, tables), None
        v = x * 255.0
        levels = torch.round(v)
        eight_bit = _eight_bit(x, v, levels)
        if bool(eight_bit.all()):
            return self._encode_libjpeg(x, tables, levels)
        if not bool(eight_bit.any()):
            return core.encode_float(x, self._geo, tables), None
        lj = core.encode_libjpeg(x[eight_bit], self._geo, tables, levels[eight_bit])
        fl = core.encode_float(x[~eight_bit], self._geo, tables)
        out = []
        for a, b in zip(lj, fl):  # per component
            full = torch.empty((x.shape[0], *a.shape[1:]), dtype=a.dtype, device=a.device)
            full[eight_bit] = a
            full[~eight_bit] = b
            out.append(full)
        return out, None

    def decode(self, y: JpegCoefficients, mode: str | None = None) -> Tensor:
        """Decode a measurement; a pure function of ``y`` (its own tables, sampling and size).

        Parameters
        ----------
        y : JpegCoefficients
            A measurement of this operator's image shape.
        mode : str, optional
            ``"exact"`` or ``"libjpeg"``; defaults to the operator's ``decode`` parameter.

        Returns
        -------
        torch.Tensor
            ``(B, C, H, W)`` images of dtype ``y.dtype``. ``"exact"`` is not clamped;
            ``"libjpeg"`` returns multiples of 1/255 in [0, 1].
        """
        mode = self.params.decode if mode is None else mode
        if mode not in ("exact", "libjpeg"):
            raise ValueError(f"mode must be 'exact' or 'libjpeg', got {mode!r}")
        geo = self._check_measurement(y)
        tables = y.tables
        comps = list(y.components)
        if mode == "exact":
            return core.decode_exact(comps, geo, tables, y.dtype)
        if native.usable(comps[0], geo, tables):
            return native.decode(y, geo, tables, y.dtype)
        return core.decode_libjpeg(comps, geo, tables, y.dtype)

    def pinv(self, y: JpegCoefficients) -> Tensor:
        """``H†(y)``: the ``"exact"`` decode, whatever the ``decode`` parameter."""
        return self.decode(y, "exact")

    def display(self, y: JpegCoefficients) -> Tensor:
        """What an image viewer shows: libjpeg's decode (``"libjpeg"``), whatever ``decode`` is."""
        return self.decode(y, "libjpeg")

    def calibrate(self, x: Tensor, decoded: Tensor) -> Tensor:
        """Colours no paler than the decode's: the mean chroma magnitude at least ``(1 − band)`` of it.

        At low qualities the chroma table quantises Cb and Cr so coarsely that a prior, free
        inside those bins, pulls the colours toward grey (the full rocket at quality 10 came out
        7.5 % less colourful than its decode) or invents colour in a grey photo. For each row,
        with ``m = mean √(Cb² + Cr²)`` (JFIF, centred):

        * a restoration paler than ``(1 − band)·m_dec`` (``band`` = :data:`CHROMA_BAND`) has its
          chroma scaled up, about the unchanged luma, to that edge (by at most
          :data:`MAX_CHROMA_GAIN`), then clamped to ``[0, 1]``;
        * the restoration of a grey file (``m_dec`` below :data:`GREY_CHROMA`) is made grey;
        * a restoration more colourful than its decode is left alone: a JPEG's decode is often
          paler than the original (quality 10 took two thirds of ``hubble_deep_field``'s chroma
          away), and a restoration that brings colour back is nearer the truth.

        A one-channel operator changes nothing. This is a statistical correction for priors that
        pale colours: an image whose true colours are paler than its decode's (possible; the
        code at quality 10 admits colours a third paler) is moved off the truth, which is why
        the solvers that call it take ``calibrate=False`` (an oracle prior's exact answer then
        stays exact).

        Parameters
        ----------
        x : torch.Tensor
            ``(B, *shape)`` restorations in ``[0, 1]``.
        decoded : torch.Tensor
            ``(B, *shape)``: the decode of each row's measurement.

        Returns
        -------
        torch.Tensor
            ``x`` itself when no row needs a correction, else the corrected images.
        """
        if self.shape[0] != 3 or tuple(x.shape) != tuple(decoded.shape):
            return x
        m_x, m_dec = chroma_strength(x), chroma_strength(decoded)
        floor = (1.0 - CHROMA_BAND) * m_dec
        scale = (floor / m_x.clamp_min(1e-300)).clamp(1.0, MAX_CHROMA_GAIN)
        scale = torch.where(m_dec < GREY_CHROMA, torch.zeros_like(scale), scale)
        if bool((scale == 1.0).all()):
            return x
        # x = Y·1 + M⁻¹[:, 1:] c: scaling the chroma c by s adds (s − 1) M⁻¹[:, 1:] c.
        chroma = core.RGB_TO_YCC.to(device=x.device, dtype=torch.float64)[1:]
        back = core.YCC_TO_RGB.to(device=x.device, dtype=torch.float64)[:, 1:] @ chroma
        delta = torch.einsum("ck,bkhw->bchw", back, x.double()) * (scale - 1.0).view(-1, 1, 1, 1)
        return (x.double() + delta).clamp_(0.0, 1.0).to(x.dtype)

    def lift_to_rgb(self, y: JpegCoefficients) -> tuple[JPEG, JpegCoefficients] | None:
        """A grey JPEG as a colour one: its luma coefficients with zero chroma, 4:4:4.

        A grey RGB image has ``Cb = Cr = 128`` exactly, so its chroma coefficients are all zero
        whatever the chroma table; the lifted operator quantises all three components with the
        luma table, and the luma of its solutions fits ``y`` again.

        Parameters
        ----------
        y : JpegCoefficients
            A measurement of this (one-channel) operator.

        Returns
        -------
        (JPEG, JpegCoefficients) or None
            The three-channel operator and measurement; ``None`` for a colour operator.
        """
        if self.shape[0] != 1:
            return None
        self._check_measurement(y)
        luma = tuple(self.tables[0].flatten().tolist())
        op3 = JPEG((3, *self.shape[1:]), JpegParams(tables=(luma, luma), subsampling="4:4:4"))
        op3.name = self.name
        lum = y.components[0]
        y3 = attrs.evolve(
            y,
            components=(lum, torch.zeros_like(lum), torch.zeros_like(lum)),
            tables=op3.tables.clone(),
            sampling="4:4:4",
        )
        return op3, y3

    def _check_measurement(self, y: Any) -> core.Geometry:
        if not isinstance(y, JpegCoefficients):
            raise TypeError(f"{self.label}: expected JpegCoefficients, got {type(y).__name__}")
        c, h, w = self.shape
        if tuple(y.size) != (h, w) or len(y.components) != c:
            raise ValueError(
                f"{self.label}: measurement of a {len(y.components)}x{y.size[0]}x{y.size[1]} image, "
                f"operator shape is {self.shape}"
            )
        geo = core.Geometry(h, w, c, core.SAMPLINGS[y.sampling])
        for comp, blocks in zip(y.components, geo.blocks):
            if comp.ndim != 5 or tuple(comp.shape[1:]) != (*blocks, 8, 8) or comp.is_floating_point():
                raise ValueError(
                    f"{self.label}: expected integer coefficients (B, {blocks[0]}, {blocks[1]}, 8, 8),"
                    f" got {comp.dtype} {tuple(comp.shape)}"
                )
        if tuple(y.tables.shape) != (c, 8, 8):
            raise ValueError(
                f"{self.label}: expected tables of shape ({c}, 8, 8), got {tuple(y.tables.shape)}"
            )
        return geo

    def check_measurement(self, y: JpegCoefficients) -> None:
        """Raise ``ValueError`` unless ``y`` holds coefficients this operator's encoder makes.

        Beyond the shapes (:meth:`decode` checks those), the quantisation tables and the chroma
        sampling of ``y`` must be the operator's: coefficients made with other tables decode to
        an image, but re-encoding it with this operator does not give them back.

        Parameters
        ----------
        y : JpegCoefficients
            Candidate measurement.
        """
        self._check_measurement(y)
        if y.sampling != self.sampling:
            raise ValueError(
                f"{self.label}: the coefficients use {y.sampling} chroma sampling, the operator "
                f"{self.sampling}"
            )
        if not torch.equal(y.tables.to("cpu", torch.int64), self._tables.to(torch.int64)):
            raise ValueError(
                f"{self.label}: the coefficients were quantised with other tables than the operator's"
            )

    # -- helpers for the testing kit and the solvers ---------------------------------------------
    def codes(self, y: JpegCoefficients) -> Tensor:
        """All coefficients as one ``(B, N)`` integer tensor (components flattened, concatenated)."""
        return torch.cat([comp.flatten(1) for comp in y.components], 1)

    def relaxed_codes(self, x: Tensor) -> Tensor:
        r"""The coefficients before rounding, in the layout of :meth:`codes`: differentiable.

        The float arithmetic's level-shifted, colour-converted, chroma-averaged, edge-padded
        DCT coefficients divided by the tables, :math:`r(x) = \operatorname{DCT}(\ldots)/Q`
        (see the module documentation), unrounded: an affine map of ``x``, so autograd gives
        its exact gradient. Rounded half away from zero it is :meth:`encode` of every image the
        float arithmetic encodes (continuous images; the default ``encoder="auto"`` sends
        exactly 8-bit images through libjpeg's integer arithmetic instead, whose codes may
        differ from it by one in a few coefficients). Used by DPS for the residual
        :math:`\|\operatorname{codes}(y) - r(\hat x_0)\|` in units of the tables' steps.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, C, H, W)`` floating images.

        Returns
        -------
        torch.Tensor
            ``(B, N)`` coefficients of ``x``'s dtype (``N`` as in :meth:`codes`).
        """
        self.check_input(x)
        comps = core.coefficients_float(x, self._geo, self._tables)
        return torch.cat([comp.flatten(1) for comp in comps], 1)

    def map_measurement(self, y: JpegCoefficients, fn: Callable[[Tensor], Tensor]) -> JpegCoefficients:
        """Apply ``fn`` to each batched coefficient tensor (the tables follow them when decoding).

        Parameters
        ----------
        y : JpegCoefficients
            A measurement.
        fn : callable
            Tensor-to-tensor function, e.g. ``lambda t: t.to("cuda")`` or a batch repeat.

        Returns
        -------
        JpegCoefficients
            The measurement with ``fn`` applied to its coefficients.
        """
        return attrs.evolve(y, components=tuple(fn(comp) for comp in y.components))

    def roundtrip_tolerance(self) -> float:
        """An upper bound on the RMSE of ``pinv(encode(x))`` against ``x`` in [0, 1].

        Per plane (in 0..255 units) a coefficient is off by at most ``Q/2`` in inner blocks and
        ``Q`` in edge blocks (whose visible samples are re-solved), so the summed squared error
        of a plane is at most ``n_inner ΣQ²/4 + n_edge ΣQ²`` (Parseval), spread over its visible
        samples; chroma replication multiplies a sample's error by up to ``fh fv`` pixels, and
        the inverse colour matrix by its largest singular value. 1.5 levels per plane cover the
        libjpeg arithmetic's roundings (colour 0.5, biased means 0.75, ``islow`` 0.25).

        Returns
        -------
        float
            The bound, in [0, 1] image units.
        """
        geo = self._geo
        total = 0.0
        for c, ((h, w), (rows, cols)) in enumerate(zip(geo.planes, geo.blocks)):
            q2 = float((self._tables[c].double() ** 2).sum())
            n_edge = _edge_blocks(h, w, rows, cols)
            energy = (rows * cols - n_edge) * q2 / 4 + n_edge * q2
            rmse = math.sqrt(energy / (h * w)) + 1.5
            if c > 0 and (geo.fh, geo.fv) != (1, 1):
                rmse += 127.5  # detail removed by the chroma means: chroma spans 255 levels
            weight = 1.0 if c == 0 else geo.fh * geo.fv * h * w / (geo.height * geo.width)
            total += weight * rmse**2
        if geo.channels == 1:
            return math.sqrt(total) / 255.0
        smax = float(torch.linalg.matrix_norm(core.YCC_TO_RGB, ord=2))
        return smax * math.sqrt(total / 3.0) / 255.0


def _eight_bit(x: Tensor, v: Tensor | None = None, levels: Tensor | None = None) -> Tensor:
    """Per image (first axis): every value a multiple of 1/255 (to 1e-3 of a level) in [0, 1].

    ``v`` (``255 x``) is overwritten when given: large temporaries are costly (fresh pages).
    """
    v = x * 255.0 if v is None else v
    levels = torch.round(v) if levels is None else levels
    dims = tuple(range(1, x.ndim))  # reduce in place: flatten(1) would copy a channels-last batch
    lo, hi = levels.amin(dims), levels.amax(dims)  # (torch.aminmax is several times slower on CPU)
    off = v.sub_(levels).abs_().amax(dims)
    return (off <= 1e-3) & (lo >= 0) & (hi <= 255)


def _edge_blocks(h: int, w: int, rows: int, cols: int) -> int:
    n = 0
    if w % 8:
        n += rows
    if h % 8:
        n += cols - (1 if w % 8 else 0)
    return n


# ------------------------------------------------------------------------------------------------
# reading files
# ------------------------------------------------------------------------------------------------
_SOF_NAMES = {
    0xC0: "baseline",
    0xC1: "extended sequential",
    0xC2: "progressive",
    0xC3: "lossless",
    0xC5: "differential sequential",
    0xC6: "differential progressive",
    0xC7: "differential lossless",
    0xC9: "arithmetic-coded sequential",
    0xCA: "arithmetic-coded progressive",
    0xCB: "arithmetic-coded lossless",
    0xCD: "arithmetic-coded differential sequential",
    0xCE: "arithmetic-coded differential progressive",
    0xCF: "arithmetic-coded differential lossless",
}


@attrs.frozen
class _Header:
    sof: int
    precision: int
    height: int
    width: int
    components: tuple[tuple[int, int, int, int], ...]  # (id, h, v, table)
    tables: dict[int, tuple[int, ...]]
    adobe_transform: int | None


def _parse_header(data: bytes, name: str) -> _Header:
    """Walk the marker segments up to the first SOS; raise ValueError for what is unsupported."""
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        raise ValueError(f"{name}: not a JPEG file (no SOI marker)")
    pos, sof, frame, tables, adobe = 2, None, None, {}, None
    while True:
        while pos < len(data) and data[pos] != 0xFF:
            pos += 1
        while pos < len(data) and data[pos] == 0xFF:
            pos += 1
        if pos + 2 >= len(data):
            raise ValueError(f"{name}: truncated JPEG (ends before the image data)")
        marker = data[pos]
        pos += 1
        if marker in (0x01, *range(0xD0, 0xD8)):
            continue
        length = int.from_bytes(data[pos : pos + 2], "big")
        seg = data[pos + 2 : pos + length]
        if len(seg) != length - 2:
            raise ValueError(f"{name}: truncated JPEG (segment 0x{marker:02X} cut short)")
        if marker == 0xDB:
            i = 0
            while i < len(seg):
                pq, tq = seg[i] >> 4, seg[i] & 15
                n = 128 if pq else 64
                raw = seg[i + 1 : i + 1 + n]
                vals = [int.from_bytes(raw[2 * k : 2 * k + 2], "big") for k in range(64)] if pq else list(raw)
                natural = [0] * 64
                for k, idx in enumerate(core.ZIGZAG):
                    natural[idx] = vals[k]
                tables[tq] = tuple(natural)
                i += 1 + n
        elif marker in _SOF_NAMES:
            sof = marker
            precision, height, width, nc = (
                seg[0],
                int.from_bytes(seg[1:3], "big"),
                int.from_bytes(seg[3:5], "big"),
                seg[5],
            )
            comps = tuple(
                (seg[6 + 3 * k], seg[7 + 3 * k] >> 4, seg[7 + 3 * k] & 15, seg[8 + 3 * k]) for k in range(nc)
            )
            frame = (precision, height, width, comps)
        elif marker == 0xEE and seg[:5] == b"Adobe" and len(seg) >= 12:
            adobe = seg[11]
        elif marker == 0xDA:
            break
        elif marker == 0xD9:
            raise ValueError(f"{name}: JPEG without image data")
        pos += length
    if sof is None or frame is None:
        raise ValueError(f"{name}: JPEG without a frame header (SOF)")
    if b"\xff\xd9" not in data[pos:]:
        raise ValueError(f"{name}: truncated JPEG (no EOI marker after the image data)")
    precision, height, width, comps = frame
    return _Header(sof, precision, height, width, comps, tables, adobe)


def from_file(
    path: str | os.PathLike[str],
    *,
    decode: str = "exact",
    encoder: str = "auto",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> tuple[JPEG, JpegCoefficients]:
    """Read a baseline JPEG file: the operator with the file's tables and sampling, and its coefficients.

    The quantisation tables (natural order, as Pillow's ``Image.quantization`` gives them) and
    the chroma sampling are those stored in the file; the coefficients are read directly with
    ``jpeglib`` when it is installed, otherwise recovered by re-encoding Pillow's decode of the
    file with the file's tables in libjpeg arithmetic (exact for files written by libjpeg with
    the default ``islow`` DCT except where decoding and re-encoding do not round-trip).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    decode, encoder : str
        Passed to :class:`JpegParams`.
    max_pixels : int or None
        Refuse files whose header declares more pixels (before decoding anything;
        default :data:`opkit.images.DEFAULT_MAX_PIXELS`, ``None``: no limit).

    Returns
    -------
    (JPEG, JpegCoefficients)
        ``op`` for ``(C, H, W)`` images and the measurement ``y`` (batch 1, ``float32``), so that
        ``op.decode(y)`` decodes the file.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    opkit.images.ImageTooLargeError
        If the image declares more than ``max_pixels`` pixels.
    ValueError
        A folder; not a JPEG; progressive, lossless, hierarchical or arithmetic-coded; not 8-bit; CMYK/YCCK
        or Adobe-RGB colour; a sampling other than 4:4:4, 4:2:2 or 4:2:0; a truncated file.
    """
    from PIL import Image

    name = os.fspath(path)
    if os.path.isdir(name):
        raise ValueError(f"{name} is a folder, not a JPEG file")
    if not os.path.exists(name):
        raise FileNotFoundError(f"no such JPEG file: {name}")
    if not os.path.isfile(name):  # reading a FIFO or a device would wait forever, or never end
        raise ValueError(f"{name} is not a regular file (a pipe, device or socket), not a JPEG file")
    with open(name, "rb") as fh:
        data = fh.read()
    head = _parse_header(data, name)
    check_pixels(name, head.width, head.height, max_pixels)
    kind = _SOF_NAMES[head.sof]
    if head.sof not in (0xC0, 0xC1):
        raise ValueError(f"{name}: {kind} JPEG is not supported (only baseline/extended sequential Huffman)")
    if head.precision != 8:
        raise ValueError(f"{name}: {head.precision}-bit JPEG is not supported (8-bit only)")
    nc = len(head.components)
    if nc == 4:
        raise ValueError(f"{name}: CMYK/YCCK JPEG is not supported (grayscale or YCbCr only)")
    if nc not in (1, 3):
        raise ValueError(f"{name}: JPEG with {nc} components is not supported")
    if nc == 3 and head.adobe_transform == 0:
        raise ValueError(f"{name}: RGB-coded (Adobe transform 0) JPEG is not supported")
    if nc == 3:
        (_, h0, v0, _), *chroma = head.components
        if any((hh, vv) != (1, 1) for _, hh, vv, _ in chroma):
            raise ValueError(f"{name}: chroma sampling factors other than 1x1 are not supported")
        inverse = {f: s for s, f in core.SAMPLINGS.items()}
        if (h0, v0) not in inverse:
            raise ValueError(f"{name}: luma sampling {h0}x{v0} is not supported (4:4:4, 4:2:2, 4:2:0)")
        sampling = inverse[(h0, v0)]
    else:
        sampling = "4:4:4"
    try:
        tables = tuple(head.tables[t] for _, _, _, t in head.components)
    except KeyError as exc:
        raise ValueError(f"{name}: quantisation table {exc} is missing") from None
    try:
        with Image.open(name) as im:
            im.load()
            pixels = torch.from_numpy(np.array(im.convert("L" if nc == 1 else "RGB")))
    except OSError as exc:
        raise ValueError(f"{name}: cannot decode the JPEG ({exc}); the file may be truncated") from exc
    op = JPEG(
        (nc, head.height, head.width),
        JpegParams(subsampling=sampling, tables=tables, decode=decode, encoder=encoder),
    )
    comps = _read_coefficients(name, op)
    if comps is None:
        x = pixels.view(head.height, head.width, nc).permute(2, 0, 1)[None].to(torch.float64) / 255.0
        comps = core.encode_libjpeg(x, op._geo, op.tables)
    y = JpegCoefficients(
        tuple(comps), op.tables.clone(), op.sampling, (head.height, head.width), torch.float32
    )
    op._check_measurement(y)
    return op, y


def _read_coefficients(name: str, op: JPEG) -> list[Tensor] | None:
    try:
        import jpeglib
    except ImportError:  # pragma: no cover - optional dependency
        return None
    j = jpeglib.read_dct(name)
    arrays = [j.Y] if op.shape[0] == 1 else [j.Y, j.Cb, j.Cr]
    out = []
    for arr, blocks in zip(arrays, op._geo.blocks):
        a = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int32))[: blocks[0], : blocks[1]]
        out.append(a.unsqueeze(0))
    return out


# ------------------------------------------------------------------------------------------------
# registration
# ------------------------------------------------------------------------------------------------
def _factory(
    *,
    shape: tuple[int, int, int],
    quality: int | None = None,
    subsampling: str = "4:2:0",
    tables: Any = None,
    decode: str = "exact",
    encoder: str = "auto",
) -> JPEG:
    """JPEG compression (libjpeg-faithful): quality or tables, chroma subsampling, exact or libjpeg decode."""
    return JPEG(
        shape,
        JpegParams(quality=quality, subsampling=subsampling, tables=tables, decode=decode, encoder=encoder),
    )


def _strategy() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "shape": shapes(channels=(1, 3), max_side=20),
            "quality": st.integers(1, 100),
            "subsampling": st.sampled_from(sorted(core.SAMPLINGS)),
            "decode": st.sampled_from(["exact", "libjpeg"]),
            "encoder": st.sampled_from(["auto", "float"]),
        }
    )


@opkit.hookimpl
def opkit_register_operators(registry: Any) -> None:
    """Register ``jpeg``."""
    registry.add_operator("jpeg", _factory, strategy=_strategy())


#: File suffixes the ``jpeg`` plugin reads as measurements.
JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")


def jpeg_file(x: Tensor, op: JPEG) -> bytes:
    """``x`` as a baseline JPEG file with ``op``'s quantisation tables and chroma sampling.

    libjpeg (through Pillow) does the encoding, so the file holds what libjpeg computes; the
    ``jpeg`` operator agrees with it on all but a few coefficients in ten thousand.

    Parameters
    ----------
    x : torch.Tensor
        One image ``(1, C, H, W)`` in ``[0, 1]``.
    op : JPEG
        The operator whose tables and sampling the file uses.

    Returns
    -------
    bytes
        The file's contents.
    """
    import io

    from PIL import Image

    from opkit.images import to_uint8

    tables = op.tables
    qtables = [tables[0].flatten().tolist()]
    if tables.shape[0] > 1:
        qtables.append(tables[1].flatten().tolist())
    sub = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}[op.sampling]
    buf = io.BytesIO()
    Image.fromarray(to_uint8(x)).save(buf, format="JPEG", qtables=qtables, subsampling=sub)
    return buf.getvalue()


@opkit.hookimpl
def opkit_write_measurement(op: Any, x: Tensor, suffix: str | None) -> tuple[str, bytes] | None:
    """A ``jpeg`` operator's measurement of ``x`` as a real ``.jpg`` file (:func:`jpeg_file`).

    Parameters
    ----------
    op : opkit.Operator
        Any operator; only :class:`JPEG` ones are written here.
    x : torch.Tensor
        One image ``(1, C, H, W)`` in ``[0, 1]``.
    suffix : str or None
        The file suffix asked for (``None``: this plugin's own, ``.jpg``).

    Returns
    -------
    (str, bytes) or None
        The suffix and the file's contents; ``None`` for other operators or suffixes.
    """
    if not isinstance(op, JPEG) or (suffix is not None and suffix.lower() not in JPEG_SUFFIXES):
        return None
    return (suffix or ".jpg"), jpeg_file(x, op)


@opkit.hookimpl
def opkit_read_measurement(path: str, max_pixels: int | None) -> tuple[JPEG, JpegCoefficients] | None:
    """Read a ``.jpg`` file as its own measurement: the ``jpeg`` operator with the file's tables.

    Parameters
    ----------
    path : str
        The file; other suffixes are left to other readers (``None``).
    max_pixels : int or None
        Refuse larger images.

    Returns
    -------
    (JPEG, JpegCoefficients) or None
        See :func:`from_file`.
    """
    if os.path.splitext(path)[1].lower() not in JPEG_SUFFIXES:
        return None
    op, y = from_file(path, max_pixels=max_pixels)
    op.name = "jpeg"
    return op, y
