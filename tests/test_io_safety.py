"""opkit.files and opkit.images: atomic writes, output checks, the pixel limit and full-precision reading."""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from opkit import files as ofiles
from opkit.files import atomic_directory, atomic_path, check_folder, check_output, same_file, write_atomic
from opkit.images import ImageReadWarning, ImageTooLargeError, load_image, save_image


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders that a write left behind."""
    return sorted(p.name for p in folder.rglob("*") if ".part" in p.name)


def png16(path: Path, arr: np.ndarray, filt: int) -> Path:
    """Write a 16-bit PNG (grey, grey+alpha, RGB or RGBA) with one PNG filter type on every row."""
    h, w, c = arr.shape
    bpp = 2 * c
    rows, prev = [], np.zeros(w * bpp, np.int64)
    for i in range(h):
        cur = np.frombuffer(arr[i].astype(">u2").tobytes(), np.uint8).astype(np.int64)
        left = np.concatenate([np.zeros(bpp, np.int64), cur[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
        if filt == 0:
            f = cur
        elif filt == 1:
            f = cur - left
        elif filt == 2:
            f = cur - prev
        elif filt == 3:
            f = cur - (left + prev) // 2
        else:  # Paeth
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            f = cur - np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        rows.append(bytes([filt]) + (f % 256).astype(np.uint8).tobytes())
        prev = cur

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    color = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    head = struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", head)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )
    return path


# -- atomic writes -------------------------------------------------------------------------------
def test_atomic_path_replaces_whole_and_keeps_the_suffix(tmp_path: Path) -> None:
    target = tmp_path / "a.png"
    target.write_bytes(b"old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name.startswith(".a.")
        assert target.read_bytes() == b"old"  # untouched while the new file is written
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_atomic_path_failure_keeps_the_old_file_and_removes_the_partial_one(
    tmp_path: Path, exc: type[BaseException]
) -> None:
    target = tmp_path / "a.csv"
    target.write_bytes(b"old")
    with pytest.raises(exc):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise exc()
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_write_atomic_text_and_bytes(tmp_path: Path) -> None:
    assert write_atomic(tmp_path / "t.txt", "héllo").read_text(encoding="utf-8") == "héllo"
    assert write_atomic(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert leftovers(tmp_path) == []


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    mode = write_atomic(tmp_path / "p.txt", "x").stat().st_mode & 0o777
    assert mode == 0o666 & ~umask


def test_save_image_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.png"
    save_image(torch.zeros(1, 3, 4, 4), target)
    before = target.read_bytes()

    def broken_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        Path(str(fp)).write_bytes(b"\x89PNG truncated")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_image(torch.ones(1, 3, 4, 4), target)
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_atomic_directory_new_folder_appears_complete(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_directory(target) as staging:
        (staging / "sub").mkdir()
        (staging / "sub" / "w.bin").write_bytes(b"w")
        (staging / "c.json").write_text("{}")
        assert not target.exists()
    assert (target / "sub" / "w.bin").read_bytes() == b"w" and (target / "c.json").read_text() == "{}"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_atomic_directory_replaces_an_existing_folder_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "stale.txt").write_text("from the old run")
    (target / "a.bin").write_text("old a")
    if not exchange:  # a system without renameat2: the old folder is moved aside, then removed
        monkeypatch.setattr(ofiles, "_exchange", lambda a, b: False)
    with atomic_directory(target) as staging:
        (staging / "state.json").write_text("step 2")
        (staging / "a.bin").write_text("new a")
        assert (target / "a.bin").read_text() == "old a"  # untouched while the new one is written
    assert sorted(p.name for p in target.iterdir()) == ["a.bin", "state.json"]
    assert (target / "a.bin").read_text() == "new a"
    assert leftovers(tmp_path) == []


def test_atomic_directory_puts_the_old_folder_back_when_the_swap_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "a.bin").write_text("old")
    monkeypatch.setattr(ofiles, "_exchange", lambda a, b: False)
    real_rename, refused = os.rename, []

    def refuse_the_new_folder(src: str | Path, dst: str | Path) -> None:
        if Path(dst) == target and not refused:  # the staging folder's rename; not the way back
            refused.append(src)
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(ofiles.os, "rename", refuse_the_new_folder)
    with pytest.raises(OSError, match="No space left"):
        with atomic_directory(target) as staging:
            (staging / "a.bin").write_text("new")
    assert refused and sorted(p.name for p in target.iterdir()) == ["a.bin"]
    assert (target / "a.bin").read_text() == "old"
    assert leftovers(tmp_path) == []


def test_atomic_writes_refuse_a_target_of_the_other_kind(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(IsADirectoryError), atomic_path(tmp_path / "folder"):
        pass
    with pytest.raises(NotADirectoryError), atomic_directory(tmp_path / "file"):
        pass
    assert leftovers(tmp_path) == []


def test_atomic_directory_failure_leaves_the_folder_untouched(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "a.bin").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target) as staging:
            (staging / "a.bin").write_text("new")
            raise KeyboardInterrupt
    assert (target / "a.bin").read_text() == "old"
    assert leftovers(tmp_path) == []


# -- output checks -------------------------------------------------------------------------------
def test_same_file_sees_hard_and_symbolic_links(tmp_path: Path) -> None:
    a = tmp_path / "a.png"
    a.write_bytes(b"x")
    hard, soft = tmp_path / "hard.png", tmp_path / "soft.png"
    os.link(a, hard)
    soft.symlink_to(a)
    assert same_file(a, hard) and same_file(a, soft) and same_file(tmp_path / "n.png", tmp_path / "n.png")
    assert not same_file(a, tmp_path / "other.png")


def test_check_output_refuses_each_problem(tmp_path: Path) -> None:
    inp = tmp_path / "in.png"
    inp.write_bytes(b"x")
    link = tmp_path / "link.png"
    os.link(inp, link)
    (tmp_path / "dir.png").mkdir()
    cases = {
        tmp_path / "x.xyz": "unknown suffix '.xyz'",
        tmp_path / "x": "no suffix",
        tmp_path / "nodir" / "x.png": "the folder",
        inp / "x.png": "is not a folder",
        tmp_path / "dir.png": "is a folder",
        link: "refusing to overwrite the input",
        tmp_path / "models" / "w.png": "refusing to write into",
    }
    (tmp_path / "models").mkdir()
    for path, message in cases.items():
        with pytest.raises(ValueError, match=message):
            check_output(
                path,
                inputs=[inp],
                protected=[tmp_path / "models"],
                suffixes=[".png"],
                force=True,
            )
    with pytest.raises(FileExistsError):
        check_output(inp)
    assert check_output(tmp_path / "new.png", inputs=[inp], suffixes=[".png"]) == tmp_path / "new.png"
    assert leftovers(tmp_path) == []


def test_check_output_reports_an_unwritable_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(target: Path, *, directory: bool = False) -> Path:
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr(ofiles, "_temp_beside", denied)
    with pytest.raises(ValueError, match=r"cannot write into .*: Permission denied"):
        check_output(tmp_path / "x.png")


def test_check_folder_probes_the_folder_or_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "f.png").write_bytes(b"x")
    assert check_folder(tmp_path) == tmp_path
    assert check_folder(tmp_path / "new") == tmp_path / "new" and not (tmp_path / "new").exists()
    with pytest.raises(ValueError, match=r"f\.png is not a folder"):
        check_folder(tmp_path / "f.png")
    with pytest.raises(ValueError, match=r"the folder .*nodir does not exist"):
        check_folder(tmp_path / "nodir" / "new")
    assert leftovers(tmp_path) == []

    def denied(target: Path, *, directory: bool = False) -> Path:
        raise OSError(28, "No space left on device", str(target))

    monkeypatch.setattr(ofiles, "_temp_beside", denied)
    for folder, where in ((tmp_path, tmp_path), (tmp_path / "new", tmp_path)):
        with pytest.raises(ValueError) as info:
            check_folder(folder)
        assert str(info.value) == f"cannot write into {where}: No space left on device"


def test_messages_of_names_that_are_not_utf8_are_printable() -> None:
    from opkit.messages import one_line, printable

    name = os.fsdecode(b"caf\xe9 \xff.png")
    assert printable(name) == "caf\\xe9 \\xff.png"
    assert (
        one_line(ValueError(f"cannot read {name}\n at all")).encode("utf-8")
        == b"cannot read caf\\xe9 \\xff.png at all"
    )
    assert printable("d\u00e9j\u00e0 vu") == "d\u00e9j\u00e0 vu"  # valid text unchanged


# -- reading -------------------------------------------------------------------------------------
@pytest.mark.parametrize("filt", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_png_is_read_at_full_precision(tmp_path: Path, filt: int, channels: int) -> None:
    arr = np.random.default_rng(filt).integers(0, 65536, (9, 7, channels), dtype=np.uint16)
    arr[..., 3:] = 65535  # opaque
    x = load_image(png16(tmp_path / "c.png", arr, filt), dtype=torch.float64)
    want = torch.from_numpy(arr[..., :3].astype(np.float64) / 65535).permute(2, 0, 1)[None]
    assert torch.equal(x, want)


def test_16bit_grey_and_16bit_tiff_are_read_at_full_precision(tmp_path: Path) -> None:
    import tifffile

    grey = np.random.default_rng(1).integers(0, 65536, (5, 6, 1), dtype=np.uint16)
    x = load_image(png16(tmp_path / "g.png", grey, 4), dtype=torch.float64)
    assert torch.equal(x, torch.from_numpy(grey[..., 0] / 65535.0)[None, None])
    rgb = np.random.default_rng(2).integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    for compression in (None, "zlib"):
        tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb", compression=compression)
        t = load_image(tmp_path / "c.tif", dtype=torch.float64)
        assert torch.equal(t, torch.from_numpy(rgb / 65535.0).permute(2, 0, 1)[None])
    # and converted to RGB without losing the low byte
    assert torch.equal(load_image(tmp_path / "g.png", mode="RGB", dtype=torch.float64)[:, 1:2], x)


def test_alpha_is_dropped_with_a_warning_only_when_not_opaque(tmp_path: Path) -> None:
    rgba = np.random.default_rng(0).integers(0, 256, (4, 4, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "opaque.png")
    rgba[0, 0, 3] = 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = load_image(tmp_path / "opaque.png")
    assert x.shape == (1, 3, 4, 4)
    with pytest.warns(ImageReadWarning, match="alpha channel"):
        y = load_image(tmp_path / "clear.png")
    assert torch.equal(x, y)  # the stored colours, whatever the alpha
    Image.fromarray(rgba[..., [0, 3]], "LA").save(tmp_path / "la.png")
    with pytest.warns(ImageReadWarning, match="alpha channel"):
        assert load_image(tmp_path / "la.png").shape == (1, 1, 4, 4)


def test_pixel_limit_is_checked_from_the_header(tmp_path: Path) -> None:
    Image.new("L", (8, 8)).save(tmp_path / "s.jpg")
    data = bytearray((tmp_path / "s.jpg").read_bytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 10000, 10000)  # declares 10000x10000
    (tmp_path / "bomb.jpg").write_bytes(bytes(data))
    assert len(data) < 1000
    with pytest.raises(
        ImageTooLargeError, match=r"10000x10000 = 100\.0 megapixels, more than the limit of 50"
    ):
        load_image(tmp_path / "bomb.jpg")
    with pytest.raises(ImageTooLargeError, match=r"limit of 6\.3e-05 megapixels"):
        load_image(tmp_path / "s.jpg", max_pixels=63)
    assert load_image(tmp_path / "s.jpg", max_pixels=64).shape == (1, 1, 8, 8)


def test_unreadable_inputs_are_value_errors_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ValueError, match=r"d\.png is a folder"):
        load_image(tmp_path / "d.png")
    with pytest.raises(FileNotFoundError, match="no such image file"):
        load_image(tmp_path / "none.png")
    save_image(torch.rand(1, 3, 16, 16), tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cannot read .*cut\.png as an image"):
        load_image(tmp_path / "cut.png")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    with pytest.raises(ValueError, match=r"cannot read .*junk\.png as an image"):
        load_image(tmp_path / "junk.png")


# -- a save killed mid-write ---------------------------------------------------------------------
#: Run in a child process: start a real save, and stop in the middle of writing (half the bytes on
#: disk, "writing" on stdout) until the parent kills the process with SIGKILL.
KILLED_SAVES = {
    "image": """
import sys, time
from pathlib import Path
import torch
from PIL import Image
from opkit.images import save_image

def half_then_hang(self, fp, *args, **kwargs):
    Path(str(fp)).write_bytes(b"\\x89PNG half of a new file")
    print("writing", flush=True)
    time.sleep(120)

Image.Image.save = half_then_hang
save_image(torch.ones(1, 3, 8, 8), sys.argv[1])
""",
    "model": """
import sys, time
from pathlib import Path
import torch
from diffusers import UNet2DModel
from solvers.priors import UNetPrior, linear_alphas_cumprod, save_prior

net = UNet2DModel(sample_size=8, layers_per_block=1, block_out_channels=(8, 16), norm_num_groups=4,
                  down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))

def half_then_hang(self, folder, **kwargs):
    Path(folder).mkdir(parents=True)
    (Path(folder) / "config.json").write_text("{")
    print("writing", flush=True)
    time.sleep(120)

UNet2DModel.save_pretrained = half_then_hang
save_prior(UNetPrior(net, linear_alphas_cumprod()), sys.argv[1])
""",
}


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("what", sorted(KILLED_SAVES))
def test_a_save_killed_mid_write_leaves_the_old_file_or_folder_intact(tmp_path: Path, what: str) -> None:
    import signal
    import subprocess
    import sys

    if what == "image":
        target = tmp_path / "out.png"
        save_image(torch.zeros(1, 3, 8, 8), target)
        before = {"": target.read_bytes()}
    else:
        target = tmp_path / "model"
        (target / "unet").mkdir(parents=True)
        (target / "unet" / "config.json").write_text('{"old": true}')
        (target / "scheduler").mkdir()
        (target / "scheduler" / "scheduler_config.json").write_text("{}")
        before = tree(target)
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_SAVES[what], str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        if line.strip() != "writing":
            pytest.fail(f"the child did not start writing: {child.communicate(timeout=60)[1]}")
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    after = {"": target.read_bytes()} if what == "image" else tree(target)
    assert after == before
    # what the killed save left is its hidden temporary path beside the target, named after it
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert len(left) == 1 and left[0].name.startswith(f".{target.stem}.") and ".part" in left[0].name
