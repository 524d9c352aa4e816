"""The ``jpeg`` operator against libjpeg-turbo (through Pillow and jpeglib) and its own laws.

Fast tests sample qualities; the ``slow`` ones sweep all of them.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import opkit
from opkit.testing import check_operator
from opkit_plugins import _jpeg_core as core
from opkit_plugins import _jpeg_native as native
from opkit_plugins import jpeg
from opkit_plugins.jpeg import JPEG, JpegCoefficients, JpegParams

jpeglib = pytest.importorskip("jpeglib")
skdata = pytest.importorskip("skimage.data")

PIL_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _photo(name: str) -> np.ndarray:
    return np.ascontiguousarray(getattr(skdata, name)())


def _as_tensor(img: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    t = torch.from_numpy(img.copy())
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    return t.to(dtype) / 255.0


def _save(img: np.ndarray, path: Path, **kw: object) -> Path:
    Image.fromarray(img).save(path, format="JPEG", **kw)
    return path


def _jpeglib_coefficients(path: Path, channels: int) -> list[torch.Tensor]:
    j = jpeglib.read_dct(str(path))
    arrays = [j.Y] if channels == 1 else [j.Y, j.Cb, j.Cr]
    return [torch.from_numpy(np.asarray(a, dtype=np.int32)) for a in arrays]


def _agreement(y: JpegCoefficients, ref: list[torch.Tensor]) -> float:
    same = sum(int((c[0] == r).sum()) for c, r in zip(y.components, ref))
    return same / sum(r.numel() for r in ref)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float((a.double() - b.double()).pow(2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def _pillow_roundtrip(img: np.ndarray, quality: int, subsampling: str) -> torch.Tensor:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality, subsampling=PIL_SUBSAMPLING[subsampling])
    buf.seek(0)
    return _as_tensor(np.asarray(Image.open(buf)))


# ------------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------------
def test_tables_equal_pillows_for_every_quality() -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    for q in range(1, 101):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=q)
        buf.seek(0)
        pil = Image.open(buf).quantization  # natural (row-major) order
        ours = jpeg.quality_tables(q)
        assert ours[0].flatten().tolist() == list(pil[0]), q
        assert ours[1].flatten().tolist() == list(pil[1]), q


def test_tables_follow_the_ijg_formula_at_known_points() -> None:
    t50 = jpeg.quality_tables(50)
    assert t50[0, 0, 0] == 16 and t50[1, 7, 7] == 99  # q = 50 is the Annex K table itself
    assert bool((jpeg.quality_tables(100) == 1).all())
    assert bool((jpeg.quality_tables(1) == 255).all())  # 5000 % clipped to the baseline maximum
    assert jpeg.quality_tables(10)[0, 0, 0] == (16 * 500 + 50) // 100


# ------------------------------------------------------------------------------------------------
# encoder fidelity
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("subsampling", ["4:2:0", "4:4:4"])
@pytest.mark.parametrize("quality", [10, 50, 90])
def test_coefficients_agree_with_libjpeg_on_a_photo(tmp_path: Path, subsampling: str, quality: int) -> None:
    img = _photo("chelsea")  # 300 x 451: odd width, partial blocks and MCUs
    path = _save(img, tmp_path / "c.jpg", quality=quality, subsampling=PIL_SUBSAMPLING[subsampling])
    op = opkit.create("jpeg", shape=(3, *img.shape[:2]), quality=quality, subsampling=subsampling)
    ratio = _agreement(op(_as_tensor(img)), _jpeglib_coefficients(path, 3))
    assert ratio >= (0.9999 if quality <= 50 else 0.999), ratio
    assert ratio == 1.0  # the libjpeg arithmetic is bit-exact on these photos (measured)


def test_float_arithmetic_is_close_to_libjpeg(tmp_path: Path) -> None:
    """The linear float pipeline differs only by libjpeg's intermediate roundings."""
    img = _photo("chelsea")
    for quality, floor in ((10, 0.999), (50, 0.995), (90, 0.97)):
        path = _save(img, tmp_path / "c.jpg", quality=quality, subsampling=2)
        op = opkit.create("jpeg", shape=(3, *img.shape[:2]), quality=quality, encoder="float")
        ratio = _agreement(op(_as_tensor(img)), _jpeglib_coefficients(path, 3))
        assert floor <= ratio < 1.0, (quality, ratio)


def test_grayscale_coefficients_agree_with_libjpeg(tmp_path: Path) -> None:
    img = _photo("camera")[:123, :77]
    path = _save(img, tmp_path / "g.jpg", quality=40)
    op = opkit.create("jpeg", shape=(1, 123, 77), quality=40)
    assert _agreement(op(_as_tensor(img)), _jpeglib_coefficients(path, 1)) == 1.0


def test_encode_auto_mixes_arithmetics_per_image() -> None:
    img = _as_tensor(_photo("coffee")[:40, :56])
    noisy = (img + 0.3 / 255).clamp(0, 1)  # off the 8-bit grid
    op = opkit.create("jpeg", shape=(3, 40, 56), quality=90)
    lj = opkit.create("jpeg", shape=(3, 40, 56), quality=90, encoder="libjpeg")
    fl = opkit.create("jpeg", shape=(3, 40, 56), quality=90, encoder="float")
    both = op.codes(op(torch.cat([img, noisy])))
    assert torch.equal(both[0], lj.codes(lj(img))[0])
    assert torch.equal(both[1], fl.codes(fl(noisy))[0])


# ------------------------------------------------------------------------------------------------
# decoder fidelity
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(203, 317), (6, 4), (5, 7), (2, 1)])
@pytest.mark.parametrize("subsampling", ["4:2:0", "4:2:2", "4:4:4"])
def test_libjpeg_decode_of_a_files_coefficients_matches_pillow(
    tmp_path: Path, subsampling: str, size: tuple[int, int]
) -> None:
    """Odd sizes, and chroma planes at most two samples wide (replication instead of fancy)."""
    img = _photo("astronaut")[: size[0], : size[1]]
    path = _save(img, tmp_path / "a.jpg", quality=35, subsampling=PIL_SUBSAMPLING[subsampling])
    op, y = jpeg.from_file(path, decode="libjpeg")
    out = op.decode(y)
    pil = _as_tensor(np.asarray(Image.open(path)), torch.float32)
    assert _psnr(out, pil) >= 50.0
    assert torch.equal(out, pil)  # bit-exact (measured)


@pytest.mark.parametrize("subsampling", ["4:2:0", "4:4:4"])
@pytest.mark.parametrize("quality", [1, 37, 75, 100])
def test_encode_then_decode_matches_pillow_save_and_load(subsampling: str, quality: int) -> None:
    img = _photo("coffee")[:97, :130]
    op = opkit.create("jpeg", shape=(3, 97, 130), quality=quality, subsampling=subsampling, decode="libjpeg")
    out = op.decode(op(_as_tensor(img)))
    assert _psnr(out, _pillow_roundtrip(img, quality, subsampling)) >= 45.0


@pytest.mark.slow
@pytest.mark.parametrize("subsampling", ["4:2:0", "4:2:2", "4:4:4"])
def test_encode_then_decode_matches_pillow_at_every_quality(subsampling: str) -> None:
    img = _photo("astronaut")[100:260, 50:275]
    op_x = _as_tensor(img)
    for q in range(1, 101):
        op = opkit.create(
            "jpeg", shape=(3, *img.shape[:2]), quality=q, subsampling=subsampling, decode="libjpeg"
        )
        out = op.decode(op(op_x))
        pil = _pillow_roundtrip(img, q, subsampling)
        assert _psnr(out, pil) >= 45.0, q
        assert torch.equal(out.double(), pil), q


@pytest.mark.slow
@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
@pytest.mark.parametrize("subsampling", ["4:2:0", "4:2:2", "4:4:4"])
def test_coefficients_agree_with_libjpeg_at_every_quality(
    tmp_path: Path, name: str, subsampling: str
) -> None:
    img = _photo(name)
    x = _as_tensor(img)
    for q in range(1, 101):
        path = _save(img, tmp_path / "s.jpg", quality=q, subsampling=PIL_SUBSAMPLING[subsampling])
        op = opkit.create("jpeg", shape=(3, *img.shape[:2]), quality=q, subsampling=subsampling)
        ratio = _agreement(op(x), _jpeglib_coefficients(path, 3))
        assert ratio >= (0.9999 if q <= 50 else 0.999), (q, ratio)


# ------------------------------------------------------------------------------------------------
# laws
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 17, 23), (3, 9, 1), (1, 13, 7)])
@pytest.mark.parametrize("subsampling", ["4:2:0", "4:2:2", "4:4:4"])
def test_exact_law_for_odd_sizes_and_every_sampling(shape: tuple[int, int, int], subsampling: str) -> None:
    for quality, encoder in ((1, "auto"), (50, "float"), (100, "auto")):
        op = opkit.create("jpeg", shape=shape, quality=quality, subsampling=subsampling, encoder=encoder)
        for dtype in (torch.float64, torch.float32):
            report = check_operator(op, dtype=dtype, batch=2, seed=quality)
            assert report.errors["Encode(Decode(Encode(x))) == Encode(x) (max code difference)"] == 0.0


def test_exact_decode_is_a_right_inverse_of_a_real_photos_codes() -> None:
    img = _as_tensor(_photo("chelsea")[:61, :83]) + 0.1 / 255  # continuous: float arithmetic
    op = opkit.create("jpeg", shape=(3, 61, 83), quality=95)
    y = op(img)
    assert torch.equal(op.codes(op(op.pinv(y))), op.codes(y))


def test_roundtrip_tolerance_bounds_the_error_and_tightens_with_quality() -> None:
    tols = [opkit.create("jpeg", shape=(3, 16, 16), quality=q).roundtrip_tolerance() for q in (10, 50, 95)]
    assert tols[0] > tols[1] > tols[2]
    op = opkit.create("jpeg", shape=(1, 24, 40), quality=90)
    x = _as_tensor(_photo("camera")[:24, :40])
    err = float((op.pinv(op(x)) - x).pow(2).mean().sqrt())
    assert err <= op.roundtrip_tolerance() < 0.05


# ------------------------------------------------------------------------------------------------
# measurement plumbing
# ------------------------------------------------------------------------------------------------
def test_measurement_layout_codes_and_map() -> None:
    op = opkit.create("jpeg", shape=(3, 20, 35), quality=60)
    y = op(torch.rand(2, 3, 20, 35, generator=torch.Generator().manual_seed(0)))
    assert [tuple(c.shape) for c in y.components] == [(2, 3, 5, 8, 8), (2, 2, 3, 8, 8), (2, 2, 3, 8, 8)]
    assert y.sampling == "4:2:0" and y.size == (20, 35) and y.dtype == torch.float32
    assert op.codes(y).shape == (2, 64 * (15 + 6 + 6))
    twice = op.map_measurement(y, lambda t: t.repeat(2, 1, 1, 1, 1))
    assert twice.batch == 4 and torch.equal(op.decode(twice)[2:], op.decode(y))


def test_decode_is_a_pure_function_of_the_measurement() -> None:
    x = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = opkit.create("jpeg", shape=(3, 16, 24), quality=20).encode(x)
    other = opkit.create("jpeg", shape=(3, 16, 24), quality=90)  # its own tables are not used
    first = other.decode(y)
    assert first.dtype == torch.float64
    assert torch.equal(first, other.decode(y))
    assert torch.equal(first, opkit.create("jpeg", shape=(3, 16, 24), quality=20).decode(y))


def test_explicit_tables_in_every_accepted_form() -> None:
    t = jpeg.quality_tables(33)
    ref = opkit.create("jpeg", shape=(3, 8, 8), quality=33).tables
    pillow_dict = {0: t[0].flatten().tolist(), 1: t[1].flatten().tolist()}
    for form in (t, t.numpy(), t.view(2, 64).tolist(), pillow_dict):
        assert torch.equal(opkit.create("jpeg", shape=(3, 8, 8), tables=form).tables, ref)
    one = opkit.create("jpeg", shape=(3, 8, 8), tables=t[0])
    assert torch.equal(one.tables, t[0].expand(3, 8, 8))


# ------------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------------
def test_from_file_uses_the_files_own_tables_and_sampling(tmp_path: Path) -> None:
    img = _photo("coffee")[:75, :101]
    luma = [(i * 7) % 50 + 1 for i in range(64)]
    chroma = [(i * 3) % 40 + 2 for i in range(64)]
    path = _save(img, tmp_path / "t.jpg", qtables=[luma, chroma], subsampling=1)
    op, y = jpeg.from_file(path)
    assert op.sampling == "4:2:2" and op.shape == (3, 75, 101)
    pil = Image.open(path).quantization
    assert op.tables[0].flatten().tolist() == list(pil[0])
    assert op.tables[2].flatten().tolist() == list(pil[1])
    assert torch.equal(y.tables, op.tables)
    # the file's coefficients are what the operator computes from the original image
    assert torch.equal(op.codes(op(_as_tensor(img))), op.codes(y))


def test_from_file_grayscale(tmp_path: Path) -> None:
    img = _photo("camera")[:30, :45]
    path = _save(img, tmp_path / "g.jpg", quality=70)
    op, y = jpeg.from_file(path, decode="libjpeg")
    assert op.shape == (1, 30, 45) and len(y.components) == 1
    assert torch.equal(op.decode(y), _as_tensor(np.asarray(Image.open(path)), torch.float32))


def test_from_file_errors(tmp_path: Path) -> None:
    img = np.full((16, 16, 3), 100, np.uint8)
    png = tmp_path / "x.png"
    Image.fromarray(img).save(png)
    with pytest.raises(ValueError, match="not a JPEG"):
        jpeg.from_file(png)
    with pytest.raises(ValueError, match="progressive"):
        jpeg.from_file(_save(img, tmp_path / "p.jpg", progressive=True))
    cmyk = tmp_path / "k.jpg"
    Image.fromarray(img).convert("CMYK").save(cmyk, format="JPEG")
    with pytest.raises(ValueError, match="CMYK"):
        jpeg.from_file(cmyk)
    data = _save(img, tmp_path / "b.jpg").read_bytes()
    arith = tmp_path / "a.jpg"
    arith.write_bytes(data.replace(b"\xff\xc0", b"\xff\xc9", 1))  # SOF0 -> SOF9 (arithmetic)
    with pytest.raises(ValueError, match="arithmetic"):
        jpeg.from_file(arith)
    for cut in (len(data) // 2, len(data) - 2, 40):
        short = tmp_path / f"s{cut}.jpg"
        short.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="truncated"):
            jpeg.from_file(short)


# ------------------------------------------------------------------------------------------------
# parameters
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("quality", [0, 101, -5, 50.5, True, "75"])
def test_quality_outside_1_to_100_is_refused(quality: object) -> None:
    with pytest.raises(ValueError, match="quality"):
        opkit.create("jpeg", shape=(3, 8, 8), quality=quality)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subsampling": "4:1:1"}, "subsampling"),
        ({"decode": "fast"}, "decode"),
        ({"encoder": "ifast"}, "encoder"),
        ({"tables": [[0] * 64]}, "tables"),
        ({"tables": [[1] * 63]}, "tables"),
        ({"tables": [[1.5] * 64]}, "tables"),
        ({"tables": [[1] * 64], "quality": 50}, "either quality or tables"),
        ({"shape": (2, 8, 8)}, "channels"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, object], match: str) -> None:
    kw: dict[str, object] = {"shape": (3, 8, 8), **kwargs}
    with pytest.raises(ValueError, match=match):
        opkit.create("jpeg", **kw)


def test_bad_measurements_are_refused() -> None:
    op = JPEG((3, 16, 16), JpegParams(quality=50))
    y = op(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="operator shape"):
        JPEG((3, 16, 24)).decode(y)
    with pytest.raises(TypeError, match="JpegCoefficients"):
        op.decode(torch.zeros(1, 3, 16, 16))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        op.decode(y, mode="fancy")


@pytest.mark.parametrize("step", [pytest.param(51), pytest.param(1, marks=pytest.mark.slow)])
def test_colour_conversions_equal_libjpegs_integer_formulas(step: int) -> None:
    """The float32 convolutions behind the libjpeg arithmetic are exact (all 2**24 colours when slow)."""
    from opkit_plugins import _jpeg_core as core

    f = core._fix
    grid = torch.stack(torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij"))
    w, b = core._rgb_conv(torch.device("cpu"))
    terms = core.conv2d_exact(grid[None] - 128, w, b).mul_(1 / 65536).floor_()[0].long()
    cb, cr = grid.long() - 128
    ref = torch.stack(
        [
            (f(1.402) * cr + 32768) >> 16,
            (-f(0.34414) * cb + 32768 - f(0.71414) * cr) >> 16,
            (f(1.772) * cb + 32768) >> 16,
        ]
    )
    assert torch.equal(terms, ref)
    w, b = core._ycc_conv(torch.device("cpu"))
    for blue in torch.arange(0.0, 256.0, step).split(32):  # blue levels x all (red, green) pairs
        rgb = torch.cat(
            [grid.expand(len(blue), 2, 256, 256), blue.view(-1, 1, 1, 1).expand(-1, 1, 256, 256)], 1
        )
        ycc = core.conv2d_exact(rgb, w, b).mul_(1 / 65536).floor_().long()
        r, g, bl = rgb.long().unbind(1)
        ref = torch.stack(
            [
                (f(0.299) * r + f(0.587) * g + f(0.114) * bl + 32768) >> 16,
                (-f(0.16874) * r - f(0.33126) * g + 32768 * bl + (128 << 16) + 32767) >> 16,
                (32768 * r - f(0.41869) * g - f(0.08131) * bl + (128 << 16) + 32767) >> 16,
            ],
            1,
        )
        assert torch.equal(ycc, ref)


def test_from_file_without_jpeglib_recovers_almost_every_coefficient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback re-encodes Pillow's decode with the file's tables (99.99 % to 100 % at q = 20)."""
    img = _photo("chelsea")[:120, :161]
    path = _save(img, tmp_path / "f.jpg", quality=20)
    _, y = jpeg.from_file(path)
    monkeypatch.setattr(jpeg, "_read_coefficients", lambda name, op: None)
    op, y2 = jpeg.from_file(path)
    agree = float((op.codes(y) == op.codes(y2)).double().mean())
    assert agree >= 0.999


@pytest.mark.skipif(not native.available(), reason="needs jpeglib")
@pytest.mark.parametrize("shape", [(3, 32, 48), (3, 21, 30), (1, 17, 9), (3, 1, 2)])
@pytest.mark.parametrize("subsampling", ["4:2:0", "4:2:2", "4:4:4"])
def test_library_route_is_bit_exact_with_the_emulation(shape: tuple[int, int, int], subsampling: str) -> None:
    """8-bit CPU batches go through Pillow + jpeglib's C reader/writer: identical to the torch pipeline."""
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randint(0, 256, (2, *shape), generator=g).double() / 255.0
    for quality in (1, 37, 100):
        op = opkit.create("jpeg", shape=shape, quality=quality, subsampling=subsampling, decode="libjpeg")
        assert native.usable(x, op._geo, op.tables)
        y = op(x)
        assert y._native_source is not None  # it really took the library route
        ref = core.encode_libjpeg(x, op._geo, op.tables)
        assert all(torch.equal(a, b) for a, b in zip(y.components, ref))
        emulated = core.decode_libjpeg(list(y.components), op._geo, op.tables, torch.float64)
        assert torch.equal(op.decode(y), emulated)  # from the encoder's own files
        copy = op.map_measurement(y, lambda t: t.clone())
        assert copy._native_source is None and torch.equal(op.decode(copy), emulated)  # rewritten
        y.components[0][0, 0, 0, 0, 0] += 3  # an in-place change invalidates the files
        changed = core.decode_libjpeg(list(y.components), op._geo, op.tables, torch.float64)
        assert torch.equal(op.decode(y), changed)


def test_without_jpeglib_the_emulation_runs_with_identical_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """jpeglib is a dependency, but an install without it (or with a changed binding) still works."""
    native.available.cache_clear()
    monkeypatch.setitem(sys.modules, "jpeglib", None)  # every import of it fails, as if absent
    monkeypatch.setitem(sys.modules, "jpeglib._bind", None)
    try:
        assert not native.available()
        op = opkit.create("jpeg", shape=(3, 16, 24), quality=50, decode="libjpeg")
        x = torch.randint(0, 256, (2, 3, 16, 24), generator=torch.Generator().manual_seed(1)) / 255.0
        assert not native.usable(x, op._geo, op.tables)
        y = op(x)
        assert y._native_source is None
        ref = core.encode_libjpeg(x, op._geo, op.tables)
        assert all(torch.equal(a, b) for a, b in zip(y.components, ref))
        assert torch.equal(op.decode(y), core.decode_libjpeg(list(ref), op._geo, op.tables, torch.float32))
    finally:
        native.available.cache_clear()


@pytest.mark.skipif(not native.available(), reason="needs jpeglib")
def test_library_route_leaves_no_scratch_folder_behind() -> None:
    import subprocess

    code = (
        "import os, torch, opkit\n"
        "from opkit_plugins import _jpeg_native as native\n"
        "op = opkit.create('jpeg', shape=(3, 16, 16), decode='libjpeg')\n"
        "x = torch.randint(0, 256, (1, 3, 16, 16)) / 255.0\n"
        "assert op(x)._native_source is not None\n"
        "d = native._workdir()\n"
        "assert os.path.isdir(d)\n"
        "print(d)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    folder = out.stdout.strip().splitlines()[-1]
    assert folder and not Path(folder).exists()


def test_library_route_is_skipped_where_it_does_not_apply() -> None:
    op = opkit.create("jpeg", shape=(3, 16, 16), tables=[[300] * 64, [2] * 64, [3] * 64])
    x = torch.randint(0, 256, (1, 3, 16, 16), generator=torch.Generator().manual_seed(0)) / 255.0
    assert not native.usable(x, op._geo, op.tables)  # entries above 255 and distinct chroma tables
    y = op(x)
    assert y._native_source is None
    assert all(torch.equal(a, b) for a, b in zip(y.components, core.encode_libjpeg(x, op._geo, op.tables)))


# ------------------------------------------------------------------------------------------------
# calibrate: the restoration's colour strength kept to the decode's
# ------------------------------------------------------------------------------------------------
def _chroma_strength(x: torch.Tensor) -> torch.Tensor:
    return jpeg.chroma_strength(x)


def _luma(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("c,bchw->bhw", core.RGB_TO_YCC[0], x.double())


def _with_chroma_scaled(x: torch.Tensor, s: float) -> torch.Tensor:
    """``x`` with its JFIF chroma multiplied by ``s`` about its luma (no clamping needed here)."""
    ycc = torch.einsum("kc,bchw->bkhw", core.RGB_TO_YCC, x.double())
    ycc[:, 1:] *= s
    return torch.einsum("ck,bkhw->bchw", core.YCC_TO_RGB, ycc)


@pytest.fixture
def midtone_pair() -> tuple[JPEG, torch.Tensor]:
    """A colour crop squeezed into [0.25, 0.75] (so that scaling its chroma never clips) and its decode."""
    x = 0.25 + 0.5 * _as_tensor(_photo("astronaut"))[..., 100:164, 200:264]
    op = JPEG((3, 64, 64), JpegParams(quality=10))
    return op, op.decode(op(x))


@pytest.mark.parametrize("s", [0.99, 1.0, 1.02, 1.9])
def test_calibrate_returns_a_restoration_no_paler_than_the_band_itself(
    midtone_pair: tuple[JPEG, torch.Tensor], s: float
) -> None:
    op, dec = midtone_pair
    x = _with_chroma_scaled(dec, s)
    assert op.calibrate(x, dec) is x


@pytest.mark.parametrize(("s", "edge"), [(0.8, 1.0 - jpeg.CHROMA_BAND), (0.3, 2 * 0.3)])
def test_calibrate_scales_a_pale_chroma_up_to_the_band_at_most_by_the_gain_keeping_the_luma(
    midtone_pair: tuple[JPEG, torch.Tensor], s: float, edge: float
) -> None:
    op, dec = midtone_pair
    x = _with_chroma_scaled(dec, s)
    out = op.calibrate(x, dec)
    assert out.dtype == x.dtype and out.shape == x.shape
    torch.testing.assert_close(_chroma_strength(out), edge * _chroma_strength(dec), rtol=1e-12, atol=0)
    torch.testing.assert_close(_luma(out), _luma(x), rtol=0, atol=1e-12)


def test_calibrate_makes_the_restoration_of_a_grey_jpeg_grey_and_treats_rows_apart(
    midtone_pair: tuple[JPEG, torch.Tensor],
) -> None:
    op, dec = midtone_pair
    grey_dec = _luma(dec)[:, None].expand(-1, 3, -1, -1)  # R = G = B: Cb = Cr = 0 exactly
    x = torch.cat([_with_chroma_scaled(dec, 1.5), dec])  # a coloured restoration of a grey file; one in band
    out = op.calibrate(x, torch.cat([grey_dec, dec]))
    torch.testing.assert_close(out[0, 0], out[0, 1], rtol=0, atol=1e-12)
    torch.testing.assert_close(out[0, 1], out[0, 2], rtol=0, atol=1e-12)
    torch.testing.assert_close(_luma(out[:1]), _luma(x[:1]), rtol=0, atol=1e-12)
    assert torch.equal(out[1], x[1])


def test_calibrate_changes_nothing_for_grey_operators_and_by_default() -> None:
    grey = JPEG((1, 16, 16), JpegParams(quality=10))
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert grey.calibrate(x, 0.5 * x) is x
    toy = opkit.create("quantize", shape=(3, 8, 8), bits=2)
    x3 = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert toy.calibrate(x3, torch.zeros_like(x3)) is x3


@pytest.mark.parametrize("solver", ["ddrm", "pigdm"])
def test_a_prior_that_pulls_toward_grey_cannot_grey_a_jpeg_restoration(
    midtone_pair: tuple[JPEG, torch.Tensor], solver: str
) -> None:
    import solvers
    from solvers.oracles import OraclePrior

    op, dec = midtone_pair
    x = 0.25 + 0.5 * _as_tensor(_photo("astronaut"))[..., 100:164, 200:264]
    pale = _with_chroma_scaled(x, 0.7)  # the prior knows a paler image than the truth
    y = op(x)
    run = getattr(solvers, solver)
    out = run(op, y, OraclePrior(pale), steps=5, generator=torch.Generator().manual_seed(0))
    ratio = float(_chroma_strength(out) / _chroma_strength(dec))
    assert ratio >= 1.0 - jpeg.CHROMA_BAND - 1e-9, ratio
    raw = run(op, y, OraclePrior(pale), steps=5, generator=torch.Generator().manual_seed(0), calibrate=False)
    assert float(_chroma_strength(raw) / _chroma_strength(dec)) < 1.0 - jpeg.CHROMA_BAND  # the prior paled it
    torch.testing.assert_close(_luma(out), _luma(raw), rtol=0, atol=1e-9)  # the luma is the solver's own
