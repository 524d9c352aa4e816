"""``opkit eval --task ... --solver a,b,...``: the field's comparison table in one command.

Every named task (:mod:`opkit_cli.tasks`) × every solver × every image of the folder is one
*cell*: the image is degraded with the task's preset (its operator, parameters and σ_y), restored
by the solver through :class:`~opkit_cli.runner.Runner` with the solver's own settings for the
model and the operator (plus the user's flags), and scored (PSNR, SSIM), with the network calls
and the seconds it took. The table has one row per task and solver: the mean and the standard
deviation over the images. A solver that does not take a task's operator (an operator kind it does
not accept, or the contract's ``TypeError`` from the solver) has a row without numbers whose note
says why.

Like ``opkit eval --op``: with ``--csv`` the scores of each finished cell are kept in
``CSV.parts`` under a key naming the image, the task, the solver, their settings and the model, so
an interrupted run resumes; the cells are dealt to ``--shard i/n`` and the ranks of ``torchrun``,
and rank 0 (or the last shard to finish) writes the table.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

import opkit
from opkit.files import atomic_path, write_atomic
from opkit.messages import printable
from opkit.solver import accepts
from opkit_cli.entries import solver_entry
from opkit_cli.errors import EXIT_OK, fail, reason
from opkit_cli.folders import finish_scores, gathered, image_seed, running
from opkit_cli.io import read_input
from opkit_cli.models import file_digest, model_fingerprint
from opkit_cli.parsing import max_pixels_of
from opkit_cli.runner import FLAGS, Runner
from opkit_cli.tasks import PRESETS

#: Fields of a cell's scores (one image, one task, one solver).
CELL_FIELDS = ("image", "task", "solver", "PSNR", "SSIM", "calls", "seconds", "note")
#: Columns of the table's CSV.
TABLE_FIELDS = (
    "task", "solver", "images", "PSNR", "PSNR_sd", "SSIM", "SSIM_sd",
    "calls", "seconds", "seconds_sd", "note",
)  # fmt: skip
#: What an operator kind a solver lacks means, for the table's notes.
NEEDS = {
    "svd": "needs an SVD",
    "linear": "needs a linear operator",
    "encode_decode": "needs an encode/decode pair",
}


def solver_scoped(args: argparse.Namespace, solver: str, solvers: list[str]) -> argparse.Namespace:
    """The arguments of one solver's runs: the flags and options it takes, scoped ones included.

    ``--solver-option NAME.K=V`` applies to the solver ``NAME`` only (``dps.steps=100``: a step
    budget for DPS; ``steps`` and ``samples`` set ``--steps`` and ``--samples``); an unscoped option
    or flag applies to every solver that has it (and must fit one of them).
    """
    entry = solver_entry(solver)
    takes = {"steps", "num_samples", *entry.options()}
    mine = copy.copy(args)
    mine.solver, mine.param, mine.task = solver, None, None
    if entry.model == "driftrec":  # --model names the diffusion prior; DriftRec runs its bundled model
        mine.model, mine.model_config, mine.download = "default", None, False
    options: list[str] = []
    for text in args.solver_option or []:
        key, _, value = text.partition("=")
        scope, dot, bare = key.partition(".")
        if dot and scope in solvers:
            if scope != solver:
                continue
            if bare in ("steps", "samples", "num_samples"):
                setattr(mine, "steps" if bare == "steps" else "samples", int(value))
                continue
            if bare not in entry.options():
                fail(f"--solver-option {key} does not apply to --solver {solver} (see `opkit solvers`)")
            options.append(f"{bare}={value}")
        elif key in entry.options():
            options.append(text)
    mine.solver_option = options or None
    for dest, key, _ in FLAGS:
        if dest != "sigma_y" and getattr(mine, dest, None) is not None and key not in takes:
            setattr(mine, dest, None)
    return mine


def _check_scoped_options(args: argparse.Namespace, solvers: list[str]) -> None:
    """Refuse an option or flag that applies to none of the solvers, before any work."""
    entries = {s: solver_entry(s) for s in solvers}
    for text in args.solver_option or []:
        key = text.partition("=")[0]
        if "=" not in text:
            fail(f"--solver-option expects K=V, got {text!r}")
        scope, dot, bare = key.partition(".")
        if dot and scope in entries:
            if bare in ("steps", "samples", "num_samples"):
                try:
                    if int(text.partition("=")[2]) < 1:
                        raise ValueError
                except ValueError:
                    fail(f"--solver-option {key} must be a positive integer")
            continue
        if not any(key in e.options() for e in entries.values()):
            fail(
                f"--solver-option {key} applies to none of --solver {','.join(solvers)} (see `opkit solvers`)"
            )
    for dest, key, flag in FLAGS:
        if dest != "sigma_y" and getattr(args, dest, None) is not None:
            if not any(key in {"steps", "num_samples", *e.options()} for e in entries.values()):
                fail(f"{flag} applies to none of --solver {','.join(solvers)}")


def _cell_args(args: argparse.Namespace, task: str, solver: str, solvers: list[str]) -> argparse.Namespace:
    """The arguments of one task and solver: the preset's operator and σ_y (for a solver that takes σ_y)."""
    mine = solver_scoped(args, solver, solvers)
    preset = PRESETS[task]
    mine.op = preset.op
    takes_sigma = "sigma_y" in solver_entry(solver).options()
    mine.sigma_y = preset.sigma_y if takes_sigma else 0.0
    return mine


def _cell_settings(cell: argparse.Namespace, task: str) -> dict[str, Any]:
    from opkit_cli.eval import _settings

    preset = PRESETS[task]
    spec = {"op": preset.op, "params": preset.params(256, 256, 0), "sigma_y": preset.sigma_y}
    mine: dict[str, Any] = json.loads(json.dumps({**_settings(cell), "task": task, "preset": spec}))
    return mine


def table_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What a resumed table run must not change: the settings of every cell but the task and solver lists."""
    from opkit_cli.eval import _settings

    mine = _settings(args)
    for k in ("op", "param", "solver", "qualities", "task"):
        mine.pop(k, None)
    return mine


def _cell_key(path: Path, settings: dict[str, Any], model: str) -> str:
    work = {"image": file_digest(path), "settings": settings, "model": model}
    return hashlib.sha256(json.dumps(work, sort_keys=True).encode()).hexdigest()


def _part_file(parts: Path, name: str, task: str, solver: str) -> Path:
    return parts / f"{name}.{task}.{solver}.json"


def _valid_cell(row: Any, name: str, task: str, solver: str) -> bool:
    if not isinstance(row, dict) or tuple(row) != CELL_FIELDS:
        return False
    if (row["image"], row["task"], row["solver"]) != (name, task, solver):
        return False
    if row["note"]:
        return isinstance(row["note"], str)
    return all(
        isinstance(row[k], (int, float)) and not isinstance(row[k], bool) for k in ("PSNR", "SSIM", "seconds")
    )


def _read_cell(parts: Path, name: str, task: str, solver: str, key: str) -> tuple[str, dict[str, Any] | None]:
    file = _part_file(parts, name, task, solver)
    if not file.is_file():
        return "missing", None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError, OSError):
        return "damaged", None
    if not isinstance(data, dict) or not _valid_cell(data.get("row"), name, task, solver):
        return "damaged", None
    if data.get("key") != key:
        return "other", None
    return "done", data["row"]


class CallCounter:
    """Counts the forward calls of a model's network (``net`` or ``unet``), batch by batch."""

    def __init__(self, model: Any) -> None:
        self.calls = 0
        self.handle = None
        for attr in ("net", "unet"):
            net = getattr(model, attr, None)
            if isinstance(net, torch.nn.Module):
                self.handle = net.register_forward_pre_hook(self._count)
                break

    def _count(self, *_: Any) -> None:
        self.calls += 1

    def take(self) -> int | None:
        """The calls since the last :meth:`take` (``None`` when the network could not be found)."""
        n, self.calls = self.calls, 0
        return n if self.handle is not None else None


def applies(solver: str, op: Any, model: Any = None) -> str:
    """``""`` when ``solver`` takes ``op``, else why not (``"needs an SVD"``).

    With its loaded ``model``, also why that model cannot restore ``op``
    (:meth:`opkit.SolverEntry.misfit`: a blind model trained on JPEG pairs restores no blur).
    """
    entry = solver_entry(solver)
    kind = opkit.operator_kind(op)
    if accepts(kind, entry.accepts):
        return entry.misfit(model, op) if model is not None else ""
    if len(entry.accepts) == 1:
        return NEEDS.get(entry.accepts[0], f"takes {entry.accepts[0]} operators")
    return f"takes {', '.join(entry.accepts)} operators, not {kind or type(op).__name__}"


def _crop(x: torch.Tensor, k: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return x[..., : h - h % k, : w - w % k]


def _score_cell(
    path: Path, task: str, solver: str, cell: argparse.Namespace, runner: Runner, counter: CallCounter
) -> dict[str, Any]:
    """One cell's scores: degrade the image with the task, restore it with the solver, score it."""
    from opkit import metrics
    from opkit_cli.tasks import degrade

    x = _crop(read_input(str(path), max_pixels_of(cell), mode="RGB"), cell.multiple)
    seed = image_seed(cell.seed, path.name)
    g = torch.Generator().manual_seed(seed)  # the same measurement for every solver of a task
    op, y, params = degrade(task, x, seed, g)
    row: dict[str, Any] = dict.fromkeys(CELL_FIELDS)
    row.update(image=path.name, task=task, solver=solver, note="")
    why = applies(solver, op, runner.model)
    if why:
        row["note"] = why
        return row
    runner.args = cell
    runner.generator = torch.Generator().manual_seed(seed + 1)
    counter.take()
    tic = time.perf_counter()
    try:
        out = runner(op, y, params)
    except TypeError as exc:  # the contract's refusal of an operator the solver cannot take
        row["note"] = reason(exc)
        return row
    seconds = time.perf_counter() - tic
    out = out.clamp(0, 1).to(x.dtype)
    row.update(
        PSNR=float(metrics.psnr(out, x)[0]),
        SSIM=float(metrics.ssim(out, x)[0]),
        calls=counter.take(),
        seconds=seconds,
    )
    print(f"{printable(path.name)} {task} {solver}: {row['PSNR']:.2f} dB, {seconds:.1f} s", file=sys.stderr)
    return row


def summarise(rows: list[dict[str, Any]], tasks: list[str], solvers: list[str]) -> list[dict[str, Any]]:
    """The table: one row per task and solver, the mean and standard deviation over the images."""
    out = []
    for task in tasks:
        for solver in solvers:
            cells = [r for r in rows if r["task"] == task and r["solver"] == solver]
            scored = [r for r in cells if not r["note"]]
            notes = sorted({r["note"] for r in cells if r["note"]})
            row: dict[str, Any] = dict.fromkeys(TABLE_FIELDS, "")
            row.update(task=task, solver=solver, images=len(scored), note="; ".join(notes))
            if scored:
                for k in ("PSNR", "SSIM", "seconds"):
                    vals = [float(r[k]) for r in scored]
                    row[k] = statistics.fmean(vals)
                    row[f"{k}_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
                calls = [r["calls"] for r in scored]
                row["calls"] = statistics.fmean(calls) if all(c is not None for c in calls) else ""
            out.append(row)
    return out


def _fmt(v: Any, digits: int) -> str:
    return f"{v:.{digits}f}" if isinstance(v, float) and math.isfinite(v) else str(v)


def print_table(table: list[dict[str, Any]]) -> None:
    """The table as Markdown on stdout: task, solver, PSNR ± sd, SSIM ± sd, calls, s/image ± sd."""
    print("| task | solver | PSNR (dB) | SSIM | network calls | s / image | images |")
    print("|---|---|---|---|---|---|---|")
    for r in table:
        if r["images"] == 0:
            why = r["note"] or "no image scored"
            print(f"| {r['task']} | {r['solver']} | — ({why}) | | | | 0 |")
            continue
        calls = _fmt(r["calls"], 0) if r["calls"] != "" else "?"
        print(
            f"| {r['task']} | {r['solver']} | {_fmt(r['PSNR'], 2)} ± {_fmt(r['PSNR_sd'], 2)} | "
            f"{_fmt(r['SSIM'], 3)} ± {_fmt(r['SSIM_sd'], 3)} | {calls} | "
            f"{_fmt(r['seconds'], 1)} ± {_fmt(r['seconds_sd'], 1)} | {r['images']} |"
        )


def plot_table(table: list[dict[str, Any]], path: Path, tasks: list[str], solvers: list[str]) -> None:
    """PSNR per task, one bar per solver (its standard deviation as the error bar); no bar: n/a."""
    from opkit_cli.eval import _plot_suffixes

    _plot_suffixes()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 1.0 + (0.25 * len(solvers) + 0.3) * len(tasks)), 3.5))
    width = 0.8 / max(1, len(solvers))
    for j, solver in enumerate(solvers):
        xs, ys, es = [], [], []
        for i, task in enumerate(tasks):
            r = next(r for r in table if r["task"] == task and r["solver"] == solver)
            if r["images"]:
                xs.append(i + (j - (len(solvers) - 1) / 2) * width)
                ys.append(r["PSNR"])
                es.append(r["PSNR_sd"])
        ax.bar(xs, ys, width, yerr=es, label=solver, capsize=2)
    ax.set_xticks(range(len(tasks)), tasks, rotation=20)
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)  # beside the bars
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".").lower())
    finally:
        plt.close(fig)


def cmd_table(args: argparse.Namespace, files: list[Path]) -> int:
    """The comparison table of ``--task`` × ``--solver`` over the images ``files`` (see the module)."""
    from opkit_cli.eval import _check_eval_outputs, _check_parts, _parts_folder, _say_redone

    tasks: list[str] = args.task
    solvers: list[str] = args.solver
    for flag, value in (("--param", args.param), ("--qualities", args.qualities), ("--save", args.save)):
        if value:
            fail(f"{flag} does not apply with --task: each task's preset sets its operator")
    if args.sigma_y:
        fail("--sigma-y does not apply with --task: each task's preset sets its σ_y")
    _check_scoped_options(args, solvers)
    if args.plot:
        from opkit_cli.eval import _plot_suffixes

        _plot_suffixes()
    cells = [(t, s, f) for t in tasks for s in solvers for f in files]
    parts = _parts_folder(args)
    settings = table_settings(args)
    resume = _check_parts(parts, args, settings)
    _check_eval_outputs(args, files, {}, [], resume)
    keys: dict[tuple[str, str, Path], str] = {}
    if parts is not None:
        prints: dict[str, str] = {}
        for t in tasks:
            for s in solvers:
                c = _cell_args(args, t, s, solvers)
                fp = prints.setdefault(s, model_fingerprint(c) if solver_entry(s).model != "none" else "")
                cs = _cell_settings(c, t)
                for f in files:
                    keys[t, s, f] = _cell_key(f, cs, fp)
    with running(args) as ranks:  # sets --device auto to this rank's device
        cargs = {(t, s): _cell_args(args, t, s, solvers) for t in tasks for s in solvers}
        mine = ranks.take(cells)
        found: dict[tuple[str, str, str], dict[str, Any]] = {}
        status = Counter[str]()
        if parts is not None and not args.force:
            for t, s, f in mine:
                state, row = _read_cell(parts, f.name, t, s, keys[t, s, f])
                status[state] += 1
                if row is not None:
                    found[t, s, f.name] = row
        todo = [c for c in mine if (c[0], c[1], c[2].name) not in found]
        runners: dict[str, tuple[Runner, CallCounter]] = {}
        if parts is not None:
            parts.mkdir(exist_ok=True)
            if resume.settings != settings:
                write_atomic(parts / "settings.json", json.dumps(settings, indent=1))
        fresh: dict[tuple[str, str, str], dict[str, Any]] = {}
        failed: list[tuple[str, str]] = []
        for t, s, f in todo:
            cell = cargs[t, s]
            if s not in runners:  # a model that does not load stops the run
                r = Runner(cell, torch.Generator(), progress=False)
                runners[s] = (r, CallCounter(r.model))
            runner, counter = runners[s]
            try:
                row = _score_cell(f, t, s, cell, runner, counter)
            except (SystemExit, Exception) as exc:  # this cell fails; the others go on
                failed.append((f"{f.name} {t} {s}", reason(exc)))
                continue
            fresh[t, s, f.name] = row
            if parts is not None:
                write_atomic(_part_file(parts, f.name, t, s), json.dumps({"key": keys[t, s, f], "row": row}))
        done = {**found, **fresh}
        mine_rows = [done[t, s, f.name] for t, s, f in mine if (t, s, f.name) in done]
        everyone = ranks.gather((len(found), mine_rows, failed, dict(status)))
    if not ranks.main:
        return EXIT_OK
    resumed, rows, all_failed, counts = gathered(everyone)
    if parts is not None:
        _say_redone(parts, counts)
    complete = ranks.shard[1] == 1 and not all_failed
    if ranks.shard[1] > 1 and not all_failed and parts is not None:
        every = {(t, s, f): _read_cell(parts, f.name, t, s, keys[t, s, f]) for t, s, f in cells}
        if all(state == "done" for state, _ in every.values()):
            rows = [row for _, row in every.values() if row is not None]
            complete = True  # the last shard to finish writes the whole table
    table = summarise(rows, tasks, solvers)
    if rows:
        print_table(table)
        if resumed:
            print(f"{resumed} cell(s) scored by an earlier run (resumed)", file=sys.stderr)
    ended = finish_scores(
        args, ranks, all_failed, complete, unit="cell", product="the table", fields=TABLE_FIELDS, rows=table
    )
    if ended is not None:
        return ended
    if args.plot:
        plot_table(table, Path(args.plot), tasks, solvers)
        print(f"wrote {args.plot}", file=sys.stderr)
    if parts is not None:
        shutil.rmtree(parts, ignore_errors=True)
    return EXIT_OK
