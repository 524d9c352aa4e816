"""Speed and memory of the linear operators against the native torch call, in one run.

For every registered linear operator among ``denoise``, ``inpaint``, ``sr_block``,
``sr_bicubic``, ``colorize`` and ``blur`` (a 9-tap uniform and a Gaussian kernel), on batches
``4 × 3 × 256²`` and ``1 × 3 × 1024²``, this measures the median wall time of ``H``, ``Hᵀ``,
``H†``, ``V`` and ``Vᵀ`` beside the single native torch call computing the same degradation
(``x * mask``, ``avg_pool2d``, strided ``conv2d``, ``(w * x).sum(1)``, depthwise ``conv2d``), the
construction time at ``256²`` and ``2048²``, and the peak extra memory of each call. Operators
that are not registered are skipped with a note.

Peak extra memory is measured with ``torch.profiler`` (``profile_memory=True``): the allocation
and free events of torch's allocator during one call are replayed in time order and the
largest number of live bytes is reported, in units of one input batch ``x`` (outputs
included). It counts every tensor torch allocates, temporaries inside a single op included,
but not scratch memory that libraries such as MKL allocate on their own. On CUDA the
allocator's own peak statistic is used.

Targets (issue 3): ``H`` within 2× of native; ``V``, ``Vᵀ``, ``H†`` within 4× (``Hᵀ`` is held to
4× too); construction under 10 ms at 256² and under 0.5 s at 2048²; peak extra memory under
3 images. A ``✗`` marks a miss and the misses are listed under the tables.

Usage::

    python benchmarks/bench_linear.py                  # CPU (and CUDA if available), markdown
    python benchmarks/bench_linear.py --repeats 3 --format rst --no-2048

The machine may be shared with other jobs: times are medians over ``--repeats`` runs, and
``--threads`` (default 1) fixes torch's intra-op threads, because OpenMP threads that
compete for cores with other processes add ~10 ms stalls to every parallel op.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Fixed allocator behaviour for fair timings: glibc otherwise serves large tensors with fresh
# mmap()s whose page faults (~10 ms for 12 MB) land on whichever call happens to allocate after
# a trim, operator or native peer alike. With high mmap/trim thresholds freed blocks are reused.
# These must be set before start-up, hence the re-execution (skipped with --no-reexec).
_ENV = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**31)}
if __name__ == "__main__" and "--no-reexec" not in sys.argv and any(k not in os.environ for k in _ENV):
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_ENV})

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402, N812
from torch import Tensor  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

import opkit  # noqa: E402
from opkit.files import write_atomic  # noqa: E402

H_TARGET = 2.0
SVD_TARGET = 4.0
BUILD_TARGET_S = {256: 0.010, 2048: 0.5}
MEM_TARGET = 3.0
KEYS = ("H", "Hᵀ", "H†", "V", "Vᵀ")

Native = Callable[[Any, Tensor], Tensor]


@dataclass
class Case:
    """One operator configuration and its native peer."""

    label: str
    name: str
    params: dict[str, Any]
    native: Native  # (op, x) -> y, one torch call (buffers prepared outside the timed call)
    prepare: Callable[[Any, Tensor], Any] = lambda op, x: None
    notes: list[str] = field(default_factory=list)


def _prep_mask(op: Any, x: Tensor) -> Tensor:
    return op.mask.to(device=x.device, dtype=x.dtype)


def _prep_weights(op: Any, x: Tensor) -> Tensor:
    return torch.tensor(op.weights, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)


def _prep_bicubic(op: Any, x: Tensor) -> Tensor:
    k = op.kernel.to(device=x.device, dtype=x.dtype)
    return torch.outer(k, k).expand(x.shape[1], 1, k.numel(), k.numel()).contiguous()


def _prep_blur(op: Any, x: Tensor) -> Tensor:
    kc = op.col_kernel.to(device=x.device, dtype=x.dtype)
    kr = op.row_kernel.to(device=x.device, dtype=x.dtype)
    return torch.outer(kc, kr).expand(x.shape[1], 1, kc.numel(), kr.numel()).contiguous()


def _symmetric_pad_index(n: int, before: int, after: int) -> Tensor:
    """Indices of numpy's ``mode="symmetric"`` padding of a length-``n`` axis (the peer's padding)."""
    import numpy as np

    return torch.from_numpy(np.pad(np.arange(n), (before, after), mode="symmetric"))


def _prep_reflect_blur(op: Any, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    weight = _prep_blur(op, x)
    lc, lr = op.col_kernel.numel(), op.row_kernel.numel()
    h, w = x.shape[-2:]
    rows = _symmetric_pad_index(h, (lc - 1) // 2, lc - 1 - (lc - 1) // 2).to(x.device)
    cols = _symmetric_pad_index(w, (lr - 1) // 2, lr - 1 - (lr - 1) // 2).to(x.device)
    return weight, rows, cols


def _depthwise_same(b: Tensor, x: Tensor) -> Tensor:
    """The peer of a zero-padded blur: one depthwise conv2d with "same" padding."""
    return F.conv2d(x, b, padding="same", groups=x.shape[1])


def _cases() -> list[Case]:
    f = 4
    return [
        Case("denoise", "denoise", {}, lambda b, x: x.clone()),
        Case("inpaint (missing 0.5)", "inpaint", {"missing": 0.5, "seed": 0}, lambda b, x: x * b, _prep_mask),
        Case(f"sr_block (f={f})", "sr_block", {"factor": f}, lambda b, x: F.avg_pool2d(x, f)),
        Case(
            f"sr_bicubic (f={f})",
            "sr_bicubic",
            {"factor": f},
            # zero padding ⌊3f/2⌋ = 3f − ⌊3f/2⌋ for even f: one strided depthwise conv2d
            lambda b, x: F.conv2d(x, b, stride=f, padding=(3 * f) // 2, groups=x.shape[1]),
            _prep_bicubic,
        ),
        Case("colorize (mean)", "colorize", {}, lambda b, x: (b * x).sum(1, keepdim=True), _prep_weights),
        *(
            Case(f"blur {label}", "blur", params, _depthwise_same, _prep_blur)
            for label, params in (
                ("uniform 9, threshold 0", {"kernel": "uniform", "size": 9, "threshold": 0.0}),
                ("uniform 9, threshold 3e-2", {"kernel": "uniform", "size": 9, "threshold": 3e-2}),
                ("gaussian σ=2, threshold 0", {"kernel": "gaussian", "sigma": 2.0, "threshold": 0.0}),
            )
        ),
        Case(
            "blur gaussian σ=2, reflect, threshold 0",
            "blur",
            {"kernel": "gaussian", "sigma": 2.0, "threshold": 0.0, "boundary": "reflect"},
            # half-sample symmetric padding by one gather per axis, then the depthwise conv2d
            lambda b, x: F.conv2d(x[..., b[1], :][..., b[2]], b[0], groups=x.shape[1]),
            _prep_reflect_blur,
        ),
    ]


# -- measuring ------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(
    calls: dict[str, Callable[[], Any]], repeats: int, device: torch.device, clock: Callable[[], float]
) -> dict[str, float]:
    """Median wall time of each call in milliseconds.

    After one warm-up call each, the calls are timed in interleaved rounds (one of each per
    round), so that a burst of load from other processes hits the operator and its native peer
    alike.
    """
    for fn in calls.values():
        fn()
    _sync(device)
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(repeats):
        for key, fn in calls.items():
            t0 = clock()
            out = fn()
            _sync(device)
            times[key].append(clock() - t0)
            del out
    return {key: 1e3 * statistics.median(ts) for key, ts in times.items()}


def peak_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak bytes allocated by torch during one call of ``fn()`` (output included)."""
    gc.collect()
    if device.type == "cuda":
        _sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        del out
        return int(peak)
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # the profiler writes start/stop lines on stderr
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                out = fn()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    del out
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]  # type: ignore[union-attr]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return peak


@dataclass
class Row:
    """Measurements of one case at one size."""

    label: str
    size: str
    native_ms: float = float("nan")
    ms: dict[str, float] = field(default_factory=dict)
    mem: dict[str, float] = field(default_factory=dict)
    agree: float = float("nan")
    skipped: str = ""


def measure(
    case: Case,
    batch: tuple[int, int, int, int],
    device: torch.device,
    dtype: torch.dtype,
    repeats: int,
    clock: Callable[[], float],
    memory: bool = True,
) -> Row:
    """Time and memory of ``H, Hᵀ, H†, V, Vᵀ`` and of the native call for one batch shape."""
    b, c, h, w = batch
    row = Row(case.label, f"{b}×{c}×{h}×{w}")
    try:
        op = opkit.create(case.name, shape=(c, h, w), **case.params)
    except Exception as exc:  # report, keep going
        row.skipped = f"construction failed: {type(exc).__name__}: {exc}"
        return row
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    aux = case.prepare(op, x)
    y = op(x)
    v = op.Vt(x)
    ref = case.native(aux, x)
    row.agree = float((y.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-300))
    calls: dict[str, Callable[[], Any]] = {
        "native": lambda: case.native(aux, x),
        "H": lambda: op(x),
        "Hᵀ": lambda: op.adjoint(y),
        "H†": lambda: op.pinv(y),
        "V": lambda: op.V(v),
        "Vᵀ": lambda: op.Vt(x),
    }
    image = x.numel() * x.element_size()
    ms = median_ms(calls, repeats, device, clock)
    row.native_ms = ms.pop("native")
    row.ms = ms
    if memory:
        row.mem = {key: peak_bytes(fn, device) / image for key, fn in calls.items()}
    return row


def build_seconds(case: Case, side: int, repeats: int, clock: Callable[[], float]) -> tuple[float, float]:
    """Construction time at ``3 × side²``: the first (cold) build and the median of later ones."""
    shape = (3, side, side)
    gc.collect()
    t0 = clock()
    opkit.create(case.name, shape=shape, **case.params)
    cold = clock() - t0
    warm = []
    for _ in range(max(0, repeats - 1)):
        t0 = clock()
        opkit.create(case.name, shape=shape, **case.params)
        warm.append(clock() - t0)
    return cold, statistics.median(warm) if warm else float("nan")


# -- reporting ------------------------------------------------------------------------------------


def _ms(t: float) -> str:
    return f"{t:.3g}" if t == t else "–"


def _ratio(t: float, native: float, target: float, misses: list[str], what: str) -> str:
    r = t / native
    bad = r > target
    if bad:
        misses.append(f"{what}: {r:.2f}× native (target {target:g}×)")
    return f"{_ms(t)} ({r:.2f}×{' ✗' if bad else ''})"


def _table(header: list[str], rows: list[list[str]], fmt: str) -> str:
    if fmt == "rst":
        empty = "\\ "  # an explicitly empty reStructuredText cell
        out = [".. list-table::", "   :header-rows: 1", ""]
        for r in [header, *rows]:
            out.append("   * - " + (r[0] or empty))
            out.extend("     - " + (cell or empty) for cell in r[1:])
        return "\n".join(out)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per call (median)")
    ap.add_argument("--build-repeats", type=int, default=3, help="constructions per size")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: leave as is)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--device", action="append", help="cpu / cuda (default: cpu, and cuda if available)")
    ap.add_argument("--only", action="append", help="restrict to operator names (repeatable)")
    ap.add_argument("--no-1024", action="store_true", help="skip the 1×3×1024² batch")
    ap.add_argument("--no-2048", action="store_true", help="skip construction at 2048²")
    ap.add_argument("--format", choices=["markdown", "rst"], default="markdown")
    ap.add_argument("--rst", metavar="FILE", help="also write the tables as reStructuredText to FILE")
    ap.add_argument("--no-memory", action="store_true", help="skip the (slow) memory profiling")
    ap.add_argument("--no-reexec", action="store_true", help="keep the allocator's default behaviour")
    ap.add_argument(
        "--clock",
        choices=["auto", "thread", "wall"],
        default="auto",
        help="thread: CPU time of the calling thread (robust on a shared machine, exact with "
        "--threads 1); wall: perf_counter. auto: thread on CPU with one thread, else wall",
    )
    args = ap.parse_args(argv)

    blocks: list[Any] = []

    def out(block: Any = "") -> None:
        blocks.append(block)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    available = opkit.available()
    cases = [c for c in _cases() if not args.only or c.name in args.only]
    batches = [(4, 3, 256, 256)] + ([] if args.no_1024 else [(1, 3, 1024, 1024)])
    sides = [256] + ([] if args.no_2048 else [2048])

    out(
        f"opkit bench_linear: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"threads {torch.get_num_threads()}, {args.dtype}, median of {args.repeats} "
        f"(times in ms, ratio to the native call in parentheses)\n"
    )
    skipped = [c.label for c in cases if c.name not in available]
    cases = [c for c in cases if c.name in available]
    misses: list[str] = []

    def clock_for(dev: str) -> Callable[[], float]:
        thread = args.clock == "thread" or (
            args.clock == "auto" and dev == "cpu" and torch.get_num_threads() == 1
        )
        return time.thread_time if thread else time.perf_counter

    # construction first, so that the first build of each shape is a cold one
    build_rows: list[list[str]] = []
    for case in cases:
        cells = [case.label]
        for side in sides:
            try:
                cold, warm = build_seconds(
                    case, side, args.build_repeats if side <= 256 else 1, clock_for("cpu")
                )
            except Exception as exc:
                cells.append(f"failed: {type(exc).__name__}")
                continue
            target = BUILD_TARGET_S[side]
            bad = cold > target
            if bad:
                misses.append(
                    f"{case.label}: construction at 3×{side}² took {1e3 * cold:.1f} ms "
                    f"(target {1e3 * target:g} ms)"
                )
            warm_s = f" (again: {1e3 * warm:.3g})" if warm == warm else ""
            cells.append(f"{1e3 * cold:.3g}{warm_s}{' ✗' if bad else ''}")
        build_rows.append(cells)

    for dev_name in devices:
        device = torch.device(dev_name)
        clock_name = "thread CPU time" if clock_for(dev_name) is time.thread_time else "wall time"
        time_rows: list[list[str]] = []
        mem_rows: list[list[str]] = []
        for case in cases:
            for batch in batches:
                r = measure(case, batch, device, dtype, args.repeats, clock_for(dev_name), not args.no_memory)
                if r.skipped:
                    time_rows.append([case.label, r.size, r.skipped, *[""] * 6])
                    continue
                tag = f"{case.label} @ {r.size} ({dev_name})"
                cells = [case.label, r.size, _ms(r.native_ms)]
                for key in KEYS:
                    target = H_TARGET if key == "H" else SVD_TARGET
                    cells.append(_ratio(r.ms[key], r.native_ms, target, misses, f"{tag} {key}"))
                cells.append(f"{r.agree:.1e}")
                time_rows.append(cells)
                if not r.mem:
                    continue
                mem_cells = [case.label, r.size, f"{r.mem['native']:.2f}"]
                for key in KEYS:
                    val = r.mem[key]
                    bad = val > MEM_TARGET
                    if bad:
                        misses.append(
                            f"{tag} {key}: peak extra memory {val:.2f} images (target {MEM_TARGET:g})"
                        )
                    mem_cells.append(f"{val:.2f}{' ✗' if bad else ''}")
                mem_rows.append(mem_cells)
        out(f"**{dev_name}: median {clock_name} per call, ms (ratio to the native call)**\n")
        header = ["operator", "batch", "native", *KEYS, "‖Hx − native‖/‖native‖"]
        out((header, time_rows))
        if mem_rows:
            out(f"\n**{dev_name}: peak extra memory per call, in input batches (outputs included)**\n")
            out((["operator", "batch", "native", *KEYS], mem_rows))
        out()

    build_clock = "thread CPU time" if clock_for("cpu") is time.thread_time else "wall time"
    out(f"**construction of a 3×N² operator ({build_clock}), ms: first build (later builds)**\n")
    header = ["operator", *[f"3×{s}² (target {1e3 * BUILD_TARGET_S[s]:g} ms)" for s in sides]]
    out((header, build_rows))
    out()
    if skipped:
        out("Not registered (skipped): " + ", ".join(skipped) + "\n")
    if misses:
        out("Targets missed:\n")
        for m in misses:
            out(f"- {m}")
    else:
        out("Every target met.")

    def render(fmt: str) -> str:
        return "\n".join(_table(*b, fmt) if isinstance(b, tuple) else b for b in blocks)

    print(render(args.format))
    if args.rst:
        write_atomic(args.rst, render("rst") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
