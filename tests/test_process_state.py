"""Building or applying an operator changes no process-wide state: the caller's settings stay.

The caller sets torch's process-wide (or thread-wide) settings to values of its own, none of them
the defaults: denormals flushed to zero, three threads, float64 as the default dtype, a float32
matmul precision, deterministic algorithms (warn only). Every registered operator is then built
and applied (every law of the testing kit, which calls every map), and every setting must read as
before, the global random state included.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import opkit
from opkit.testing import check_operator, strategies


def flushes_denormals() -> bool:
    """Whether torch flushes denormals to zero on this thread (torch has no getter)."""
    return torch.tensor([5e-324], dtype=torch.float64).mul(1.0).item() == 0.0


def process_state() -> dict[str, Any]:
    """Every process-wide setting an operator could touch, as comparable values."""
    cudnn = torch.backends.cudnn
    return {
        "flush_denormal": flushes_denormals(),
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "default_dtype": torch.get_default_dtype(),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "grad_enabled": torch.is_grad_enabled(),
        "cuda_matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn": (cudnn.enabled, cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32),
        "rng": torch.random.get_rng_state().tolist(),
        "numpy_errors": np.geterr(),
        "pillow_max_pixels": Image.MAX_IMAGE_PIXELS,
    }


@pytest.fixture
def callers_own_settings() -> Iterator[dict[str, Any]]:
    """Settings of the caller's own, none of them torch's defaults; the old ones put back after."""
    saved = process_state()
    saved_flush = saved["flush_denormal"]
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    torch.set_num_threads(3)
    torch.set_default_dtype(torch.float64)
    torch.set_float32_matmul_precision("medium")
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield process_state()
    finally:
        torch.use_deterministic_algorithms(saved["deterministic"], warn_only=saved["deterministic_warn_only"])
        torch.set_float32_matmul_precision(saved["matmul_precision"])
        torch.set_default_dtype(saved["default_dtype"])
        torch.set_num_threads(saved["num_threads"])
        torch.set_flush_denormal(saved_flush)


def test_the_probe_reads_the_denormal_mode() -> None:
    before = flushes_denormals()
    try:
        if torch.set_flush_denormal(True):
            assert flushes_denormals()
        torch.set_flush_denormal(False)
        assert not flushes_denormals()
    finally:
        torch.set_flush_denormal(before)


def test_building_a_blur_s_svd_keeps_the_callers_settings(callers_own_settings: dict[str, Any]) -> None:
    # a kernel no earlier test used: its 1-D SVDs are computed now (no cache hit)
    taps = torch.rand(7, dtype=torch.float64, generator=torch.Generator().manual_seed(1234)) + 0.5
    row, col = (taps / taps.sum()).tolist(), (taps.flip(0) / taps.sum()).tolist()
    op = opkit.create("blur", shape=(3, 37, 41), row=row, col=col, threshold=0.01)
    op.pinv(op(torch.rand(1, 3, 37, 41, generator=torch.Generator().manual_seed(0))))
    op = opkit.create("sr_bicubic", shape=(1, 3 * 29, 3 * 31), factor=3)
    op.Vt(torch.zeros(1, 1, 3 * 29, 3 * 31))
    assert process_state() == callers_own_settings


@pytest.mark.parametrize("name", opkit.available())
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_building_and_applying_any_operator_keeps_the_callers_settings(
    name: str, data: st.DataObject, callers_own_settings: dict[str, Any]
) -> None:
    torch.set_flush_denormal(False)  # hypothesis refuses to draw floats while denormals flush
    kwargs: dict[str, Any] = data.draw(strategies.operator_kwargs(name), label="kwargs")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    torch.set_flush_denormal(True)
    assert process_state() == callers_own_settings
    op = opkit.create(name, **kwargs)
    check_operator(op, dtype=torch.float64, seed=seed)
    check_operator(op, dtype=torch.float32, seed=seed)
    assert process_state() == callers_own_settings
