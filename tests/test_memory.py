"""solvers.common.memory.heap_reuse: large tensors reused from the heap inside solver calls."""

from __future__ import annotations

import resource
from typing import Any

import pytest
import torch

import solvers
from solvers.common import memory
from solvers.oracles import OraclePrior


class FakeLibc:
    """Records mallopt and malloc_trim calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad, 0))
        return 1


def test_the_outermost_block_sets_and_resets_the_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeLibc()
    monkeypatch.setattr(memory, "_libc", lambda: fake)
    for name in memory.MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    with memory.heap_reuse():
        assert fake.calls == [("mallopt", -4, 0), ("mallopt", -1, 2**31 - 1)]
        with memory.heap_reuse():
            pass
        assert len(fake.calls) == 2  # the inner block changes nothing
    assert fake.calls[2:] == [
        ("mallopt", -4, memory.DEFAULT_MMAP_MAX),
        ("mallopt", -3, memory.ADAPTED_MMAP_THRESHOLD),
        ("mallopt", -1, 2 * memory.ADAPTED_MMAP_THRESHOLD),
        ("malloc_trim", 0, 0),
    ]


@pytest.mark.parametrize(
    "env",
    [
        {"MALLOC_ARENA_MAX": "2"},
        {"MALLOC_MMAP_THRESHOLD_": "1"},
        {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
    ],
)
def test_the_users_own_malloc_settings_are_left_alone(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    fake = FakeLibc()
    monkeypatch.setattr(memory, "_libc", lambda: fake)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert not memory.heap_reuse_applies()
    with memory.heap_reuse():
        pass
    assert fake.calls == []


def _faults(work: Any) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    work()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(memory._libc() is None, reason="glibc only")
def test_large_tensors_are_reused_without_page_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in memory.MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)

    def work() -> None:
        for _ in range(8):  # 64 MiB, above glibc's largest adapted mmap threshold
            torch.ones(16 * 1024 * 1024).sum()

    plain = _faults(work)
    with memory.heap_reuse():
        reused = _faults(work)
    # every 64 MiB tensor costs ~16k faults when mmapped afresh; from the heap only the first does
    assert plain > 8 * 15_000 and reused < plain / 3, (plain, reused)


def test_solvers_give_the_same_result_with_and_without(monkeypatch: pytest.MonkeyPatch) -> None:
    import opkit

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    op = opkit.create("sr_block", shape=(3, 16, 16), factor=2)

    def run() -> torch.Tensor:
        g = torch.Generator().manual_seed(1)
        return solvers.ddrm(op, op(x), OraclePrior(x * 0.5), steps=5, generator=g)

    with_reuse = run()
    monkeypatch.setattr(memory, "_libc", lambda: None)
    assert torch.equal(with_reuse, run())


def test_every_builtin_solver_runs_inside_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each solver the package registers sets the allocator for its call (a decorator that
    slipped to another function once left DriftRec without it)."""
    import opkit

    fake = FakeLibc()
    monkeypatch.setattr(memory, "_libc", lambda: fake)
    for name in memory.MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    op = opkit.create("sr_block", shape=(3, 8, 8), factor=2)
    entries = [e for e in opkit.default_registry().solver_entries() if e.plugin == "solvers"]
    assert {e.name for e in entries} >= {"ddrm", "pigdm", "diffpir", "dps", "driftrec"}
    for entry in entries:
        fake.calls.clear()
        assert entry.oracle is not None
        entry.solver(op, op(x), entry.oracle(x), steps=2, **entry.check_options)
        assert fake.calls[:2] == [("mallopt", -4, 0), ("mallopt", -1, 2**31 - 1)], entry.name
        assert fake.calls[-1] == ("malloc_trim", 0, 0), entry.name
