"""Training data helpers: photographs, dead leaves, crops."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from solvers.common.data import EVAL_PHOTOS, TRAIN_PHOTOS, dead_leaves, photo, random_crops, training_photos


def test_train_and_eval_photos_are_disjoint_colour_images() -> None:
    assert not set(TRAIN_PHOTOS) & set(EVAL_PHOTOS)
    x = photo("chelsea")
    assert x.shape == (1, 3, 300, 451) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert photo("camera").shape[1] == 3  # greyscale repeated
    with pytest.raises(ValueError, match="unknown photograph"):
        photo("no_such_photo")


def test_dead_leaves_are_seeded_piecewise_constant_images() -> None:
    a = dead_leaves(3, (32, 48), generator=torch.Generator().manual_seed(1))
    b = dead_leaves(3, (32, 48), generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 3, 32, 48) and torch.equal(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    # opaque discs: far fewer distinct colours than pixels, and most neighbours equal
    assert torch.unique(a[0].flatten(1), dim=1).shape[1] < 32 * 48 / 4
    same = (a[:, :, :, 1:] == a[:, :, :, :-1]).all(1).float().mean()
    assert float(same) > 0.4  # uniform noise would give ~0


def test_random_crops_come_from_the_sources() -> None:
    g = torch.Generator().manual_seed(0)
    src = torch.arange(3 * 10 * 12, dtype=torch.float32).view(1, 3, 10, 12)
    crops = random_crops([src], 4, 5, g)
    assert crops.shape == (5, 3, 4, 4)
    for c in crops:  # each crop is a contiguous window of the source
        top, left = divmod(int(c[0, 0, 0]), 12)
        assert torch.equal(c, src[0, :, top : top + 4, left : left + 4])
    with pytest.raises(ValueError, match="exceeds"):
        random_crops([src], 11, 1, g)
    flipped = random_crops([src], 4, 64, torch.Generator().manual_seed(1), flips=True)
    firsts = {int(c[0, 0, 0]) - int(c[0, 0, 3]) for c in flipped}  # +3 flipped, -3 not
    assert firsts == {3, -3}


def test_training_photos_are_the_training_set_full_and_halved() -> None:
    ims = training_photos()
    n = len(TRAIN_PHOTOS)
    assert len(ims) == 2 * n
    for full, half, name in zip(ims[:n], ims[n:], TRAIN_PHOTOS, strict=True):
        assert torch.equal(full, photo(name))
        torch.testing.assert_close(half, torch.nn.functional.avg_pool2d(full, 2))


def test_folder_photos_reads_pngs_and_explains_an_empty_folder(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from solvers.common.data import folder_photos

    with pytest.raises(ValueError, match=r"fetch_photos\.py"):
        folder_photos(tmp_path)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (70, 80, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    Image.fromarray(rng.integers(0, 256, (40, 80, 3), dtype=np.uint8)).save(tmp_path / "a.png")  # too small
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "c.png")  # greyscale
    ims = folder_photos(tmp_path)
    assert [tuple(x.shape) for x in ims] == [(1, 3, 70, 80), (1, 3, 64, 64)]
    assert all(0 <= float(x.min()) and float(x.max()) <= 1 for x in ims)
