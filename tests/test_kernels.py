"""opkit.kernels: every generator sums to one and is what its formula says; files; errors; seeding."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from opkit import kernels
from opkit_plugins.blur import gaussian_kernel

F64 = torch.float64


def _moments(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of a kernel as a distribution over (x to the right, y upwards)."""
    kh, kw = k.shape
    y = -(torch.arange(kh, dtype=F64) - (kh - 1) / 2)[:, None].expand(kh, kw)
    x = (torch.arange(kw, dtype=F64) - (kw - 1) / 2)[None, :].expand(kh, kw)
    pts = torch.stack([x.flatten(), y.flatten()])
    w = k.flatten() / k.sum()
    mean = pts @ w
    d = pts - mean[:, None]
    return mean, (d * w) @ d.T


@pytest.mark.parametrize(
    "k",
    [
        kernels.gaussian(61, 3.0),
        kernels.gaussian(8, 1.5),
        kernels.gaussian(9, sigma1=3.0, sigma2=0.7, angle=30.0),
        kernels.uniform(4),
        kernels.disk(2.5),
        kernels.motion(31, 0.5, generator=torch.Generator().manual_seed(1)),
    ],
)
def test_every_generator_is_a_normalised_non_negative_kernel(k: torch.Tensor) -> None:
    assert k.dtype == F64 and k.ndim == 2
    assert bool((k >= 0).all())
    assert abs(float(k.sum()) - 1.0) < 1e-12


def test_isotropic_gaussian_is_the_outer_product_of_the_1d_taps() -> None:
    for size, sigma in ((61, 3.0), (8, 1.3), (1, 2.0)):
        g1 = gaussian_kernel(sigma, size)
        torch.testing.assert_close(kernels.gaussian(size, sigma), torch.outer(g1, g1), rtol=0, atol=1e-15)
    assert kernels.gaussian(sigma=2.0).shape == (13, 13)  # default 2⌈3σ⌉ + 1
    assert kernels.gaussian(sigma1=2.0, sigma2=0.5).shape == (13, 13)


def test_anisotropic_gaussian_axes_and_angle() -> None:
    # angle 0: sigma1 along the width (columns), sigma2 along the height (rows): separable
    k0 = kernels.gaussian(11, sigma1=2.0, sigma2=0.8, angle=0.0)
    torch.testing.assert_close(
        k0, torch.outer(gaussian_kernel(0.8, 11), gaussian_kernel(2.0, 11)), rtol=0, atol=1e-15
    )
    # 90°: the transpose; 180°: the same kernel
    k90 = kernels.gaussian(11, sigma1=2.0, sigma2=0.8, angle=90.0)
    torch.testing.assert_close(k90, k0.T, rtol=0, atol=1e-15)
    torch.testing.assert_close(
        kernels.gaussian(11, sigma1=2.0, sigma2=0.8, angle=180.0), k0, rtol=0, atol=1e-15
    )
    # the covariance of a wide enough window is R diag(σ1², σ2²) Rᵀ, with the angle counter-
    # clockwise as displayed (y upwards): 30° up and to the right
    s1, s2, deg = 2.0, 1.0, 30.0
    k = kernels.gaussian(33, sigma1=s1, sigma2=s2, angle=deg)
    mean, cov = _moments(k)
    t = math.radians(deg)
    r = torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]], dtype=F64)
    want = r @ torch.diag(torch.tensor([s1**2, s2**2], dtype=F64)) @ r.T
    torch.testing.assert_close(mean, torch.zeros(2, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(cov, want, rtol=0, atol=1e-9)
    assert float(k[10, 22]) > float(k[22, 22])  # up-right of the centre beats down-right


def test_uniform_box() -> None:
    k = kernels.uniform(5)
    assert torch.equal(k, torch.full((5, 5), 1 / 25, dtype=F64))


def test_disk_is_the_exact_pixel_coverage() -> None:
    r = 2.3
    k = kernels.disk(r)
    assert k.shape == (5, 5)  # 2⌈r − ½⌉ + 1
    torch.testing.assert_close(k, k.flip(0), rtol=0, atol=1e-15)
    torch.testing.assert_close(k, k.T, rtol=0, atol=1e-15)
    # against a fine midpoint-rule estimate of each pixel's area inside the circle
    sub = 400
    offs = (torch.arange(sub, dtype=F64) + 0.5) / sub - 0.5
    centres = torch.arange(5, dtype=F64) - 2
    xs = (centres[:, None] + offs[None, :]).flatten()
    inside = (xs[None, :] ** 2 + xs[:, None] ** 2 <= r * r).to(F64)
    area = inside.view(5, sub, 5, sub).sum(dim=(1, 3)) / sub**2
    torch.testing.assert_close(k, area / area.sum(), rtol=0, atol=2e-4)
    # before normalisation the areas add up to π r² (the disk fits): check through the total
    # weight of a larger window, which must be the same kernel padded with zeros
    big = kernels.disk(r, size=9)
    torch.testing.assert_close(big[2:7, 2:7], k, rtol=0, atol=1e-15)
    assert float(big.sum() - big[2:7, 2:7].sum()) == 0.0
    # a disk inside one pixel is the identity
    assert torch.equal(kernels.disk(0.4), torch.ones((1, 1), dtype=F64))


def test_motion_is_seeded_and_leaves_the_global_generator_alone() -> None:
    state = torch.random.get_rng_state()
    a = kernels.motion(61, 0.5, generator=torch.Generator().manual_seed(3))
    b = kernels.motion(61, 0.5, generator=torch.Generator().manual_seed(3))
    c = kernels.motion(61, 0.5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == (61, 61)


def _spread(k: torch.Tensor) -> tuple[float, float]:
    """Eigenvalues (small, large) of the kernel's covariance, in pixels²."""
    _, cov = _moments(k)
    ev = torch.linalg.eigvalsh(cov)
    return float(ev[0]), float(ev[1])


def test_motion_intensity_zero_is_a_straight_line_and_one_is_not() -> None:
    # intensity 0: every step has direction 0 before the random rotation: a straight segment,
    # whose covariance has a small eigenvalue of the line's own width only (≈ 0.35 px²)
    small0 = [
        _spread(kernels.motion(41, 0.0, generator=torch.Generator().manual_seed(s)))[0] for s in range(8)
    ]
    assert max(small0) < 0.5
    # intensity 1: directions spread over ±U(0, π); the recipe's angles are absolute (not
    # cumulative), so many paths stay nearly straight, but some bend far off a line
    small1 = [
        _spread(kernels.motion(41, 1.0, generator=torch.Generator().manual_seed(s)))[0] for s in range(8)
    ]
    assert max(small1) > 10 * max(small0)


def test_motion_path_length_follows_the_recipe() -> None:
    # path length L = 0.75·D·(U(0,1) + U(0, I²)) and steps of mean (1 − I + 0.1)·D/31: the total
    # length of the drawn steps is at least L and exceeds it by less than one step
    from opkit.kernels import _motion_path

    lengths = []
    for s in range(200):
        g = torch.Generator().manual_seed(s)
        path = _motion_path(122.0, 122.0, 0.5, g)
        steps = (path[1:] - path[:-1]).abs()
        lengths.append(float(steps.sum()))
    d = math.hypot(122, 122)
    mean_len = float(np.mean(lengths))
    # E[L] = 0.75·D·(0.5 + 0.25/2); the sum overshoots L by under one step (≈ 3 px) and the
    # first step is not among the differences: the mean stays within a few percent of E[L]
    assert 0.75 * d * 0.625 * 0.85 < mean_len < 0.75 * d * 0.625 * 1.15


def test_from_file_npy_and_images(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.save(tmp_path / "k.npy", arr)
    torch.testing.assert_close(kernels.from_file(tmp_path / "k.npy"), torch.from_numpy(arr / arr.sum()))
    grey = (np.arange(20).reshape(4, 5) * 10).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "k.png")
    torch.testing.assert_close(kernels.from_file(tmp_path / "k.png"), torch.from_numpy(grey / grey.sum()))
    wide = (np.arange(6).reshape(2, 3) * 9000).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "k16.png")
    torch.testing.assert_close(kernels.from_file(tmp_path / "k16.png"), torch.from_numpy(wide / wide.sum()))
    rgb = np.zeros((3, 3, 3), dtype=np.uint8)
    rgb[1, 1] = (255, 255, 255)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert torch.equal(
        kernels.from_file(tmp_path / "rgb.png"), torch.eye(3, dtype=F64)[1:2].T @ torch.eye(3, dtype=F64)[1:2]
    )


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (np.array([[1.0, -0.5], [0.5, 1.0]]), "negative"),
        (np.zeros((3, 3)), "all zero"),
        (np.ones((2, 2, 2)), "2-D"),
        (np.array([[np.nan, 1.0]]), "NaN"),
        (np.array([["a", "b"]]), "real numbers"),
    ],
)
def test_from_file_refuses_bad_kernels(tmp_path: Path, content: np.ndarray, match: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, content)
    with pytest.raises(ValueError, match=match) as info:
        kernels.from_file(path)
    assert "bad.npy" in str(info.value)


def test_from_file_refuses_pickles_missing_files_and_unknown_suffixes(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="cannot read"):
        kernels.from_file(tmp_path / "obj.npy")
    with pytest.raises(ValueError, match="does not exist"):
        kernels.from_file(tmp_path / "none.npy")
    (tmp_path / "k.txt").write_text("1 2")
    with pytest.raises(ValueError, match=r"expected a \.npy"):
        kernels.from_file(tmp_path / "k.txt")
    Image.fromarray(np.zeros((2, 2), dtype=np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(ValueError, match="all zero"):
        kernels.from_file(tmp_path / "black.png")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: kernels.gaussian(5), "needs sigma"),
        (lambda: kernels.gaussian(5, 1.0, sigma1=1.0, sigma2=2.0), "not both"),
        (lambda: kernels.gaussian(5, -1.0), "sigma must be"),
        (lambda: kernels.gaussian(0, 1.0), "size must be"),
        (lambda: kernels.gaussian(5, sigma1=1.0, sigma2=1.0, angle=float("nan")), "angle"),
        (lambda: kernels.uniform(2.5), "size must be"),
        (lambda: kernels.disk(0.0), "radius must be"),
        (lambda: kernels.motion(61, 1.5), "intensity"),
        (lambda: kernels.motion(True, 0.5), "size must be"),
        (lambda: kernels.normalise(torch.ones(3)), "2-D"),
        (lambda: kernels.normalise(torch.ones(2, 2, dtype=torch.complex64)), "real"),
    ],
)
def test_generators_refuse_bad_parameters(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call()


def test_centre_convention() -> None:
    assert [kernels.centre(n) for n in (1, 2, 3, 4, 61)] == [0, 1, 1, 2, 30]
