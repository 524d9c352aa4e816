"""``opkit restore`` over many images (files, folders, globs) into a folder: batches, seeds per image,
resumption, shards and ``torchrun`` ranks, and a bad image failing alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from opkit.files import check_folder, same_file
from opkit.images import image_suffixes, save_image
from opkit.messages import one_line, printable
from opkit_cli.entries import solver_entry
from opkit_cli.errors import EXIT_ERROR, EXIT_OK, fail, reason
from opkit_cli.folders import (
    check_unique_stems,
    expand_inputs,
    image_key,
    image_seed,
    make_batches,
    running,
)
from opkit_cli.io import bundled_weights
from opkit_cli.models import model_folders
from opkit_cli.problem import measurement_of
from opkit_cli.runner import Runner


class Bars:
    """One progress bar over the images and one over the steps of the batch being restored.

    Shown on rank 0 only, and not with ``--quiet``; the step bar is driven by DDRM's callback.
    """

    def __init__(self, total: int, done: int, show: bool) -> None:
        self.images: Any = None
        self.steps: Any = None
        if show:
            from tqdm.auto import tqdm

            self.images = tqdm(total=total, initial=done, desc="images", unit="img", position=0)
            self.steps = tqdm(total=0, desc="steps", unit="step", position=1, leave=False)

    def start(self, steps: int) -> None:
        """A new solver call of ``steps`` steps begins."""
        if self.steps is not None:
            self.steps.reset(total=steps)

    def step(self, *_: Any) -> None:
        """DDRM's callback: one step done."""
        if self.steps is not None:
            self.steps.update()

    def advance(self, n: int) -> None:
        """``n`` more images are finished (or failed)."""
        if self.images is not None:
            self.images.update(n)

    def close(self) -> None:
        """Close both bars."""
        for bar in (self.steps, self.images):
            if bar is not None:
                bar.close()


def _check_outdir(args: argparse.Namespace, files: Sequence[Path]) -> tuple[Path, dict[Path, Path]]:
    """The ``-o`` folder of a many-image run and every input's output ``<stem>.png`` in it.

    Refused before any work, ``--force`` or not: a file; an image name; a missing parent; a
    model folder; the folder of an input (its outputs would be inputs of the next run); two
    inputs with one output name; an output name taken by a folder; a folder that accepts no new
    file.
    """
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        fail(f"-o {outdir}: with several inputs -o names a folder, and {outdir} is a file")
    if not outdir.exists() and outdir.suffix.lower() in image_suffixes():
        fail(f"-o {outdir}: with several inputs -o names a folder, not an image file")
    if not outdir.exists() and not outdir.parent.is_dir():
        fail(f"-o {outdir}: the folder {outdir.parent} does not exist")
    for folder in [*bundled_weights(), *model_folders(args)]:
        if outdir.resolve().is_relative_to(folder.resolve()):
            fail(f"-o {outdir}: refusing to write into the model folder {folder}")
    for f in files:
        if same_file(outdir, f.parent):
            fail(
                f"-o {outdir} is the folder of the input {f}: its outputs would become inputs of the "
                "next run; choose another folder"
            )
    check_unique_stems(files)
    outputs = {f: outdir / f"{f.stem}.png" for f in files}
    for f, o in outputs.items():
        if o.exists() and same_file(o, f):
            fail(f"-o {outdir}: the output {o} would overwrite the input {f}; choose another folder")
        if o.is_dir():
            fail(f"-o {outdir}: the output {o} is a folder; move it away or choose another -o")
    try:
        check_folder(outdir)
    except ValueError as exc:
        fail(f"-o {outdir}: {exc}")
    return outdir, outputs


def _restore_group(
    runner: Runner,
    args: argparse.Namespace,
    params: dict[str, Any],
    group: list[tuple[Path, Any, Any]],
    bars: Bars,
) -> torch.Tensor:
    """Restore images that share one operator (same shape and settings) in one solver call."""
    op = group[0][1]
    ys = [y for _, _, y in group]
    y = torch.cat(ys) if len(ys) > 1 else ys[0]
    gens = [torch.Generator().manual_seed(image_seed(args.seed, f.name)) for f, _, _ in group]
    bars.start(runner.steps(op))
    return runner(op, y, params, generator=gens if len(gens) > 1 else gens[0], callback=bars.step)


def _restore_and_save(
    runner: Runner,
    args: argparse.Namespace,
    params: dict[str, Any],
    group: list[tuple[Path, Any, Any]],
    outputs: dict[Path, Path],
    bars: Bars,
) -> list[tuple[str, str]]:
    """Restore a group in one solver call and save each image; the failures ``(name, why)``.

    When the call fails (a solver that raises, or breaks the contract for the batch), each image
    of the group is tried alone, so that one bad image fails alone: an image's result does not
    depend on its batch (its own generator), so the innocent ones give what the batch would have.
    """
    try:
        x = _restore_group(runner, args, params, group, bars)
    except (SystemExit, Exception) as exc:
        if len(group) == 1:
            bars.advance(1)
            return [(group[0][0].name, reason(exc))]
        failed: list[tuple[str, str]] = []
        for item in group:
            failed += _restore_and_save(runner, args, params, [item], outputs, bars)
        return failed
    for i, (f, _, _) in enumerate(group):
        save_image(x[i : i + 1], outputs[f])
    bars.advance(len(group))
    return []


def _groups(loaded: list[tuple[Path, Any, Any]]) -> list[list[tuple[Path, Any, Any]]]:
    """Split a batch into runs that can share one solver call (tensor measurements, equal operators)."""
    out: list[list[tuple[Path, Any, Any]]] = []
    for item in loaded:
        _, op, y = item
        if out and isinstance(y, torch.Tensor):
            _, op0, y0 = out[-1][0]
            same = (
                isinstance(y0, torch.Tensor)
                and type(op0) is type(op)
                and tuple(op0.shape) == tuple(op.shape)
                and y0.shape[1:] == y.shape[1:]
                and y0.dtype == y.dtype
            )
            if same:
                out[-1].append(item)
                continue
        out.append([item])
    return out


def restore_many(args: argparse.Namespace, params: dict[str, Any]) -> int:
    """Restore many images (files, folders, globs) into the ``-o`` folder as ``<stem>.png``.

    Finished outputs are skipped (``--force`` redoes them), so a rerun resumes an interrupted
    run; every output is written atomically. Images of one size share solver calls
    (``--batch``); each image's randomness comes from :func:`~opkit_cli.folders.image_seed`.
    The batches are dealt to ``--shard i/n`` and to the ranks of ``torchrun``
    (:class:`~opkit_cli.folders.Ranks`). A file that cannot be read or restored is reported and
    the others go on (a batch whose solver call fails is retried image by image); the exit
    status is then :data:`~opkit_cli.errors.EXIT_ERROR`. Under ``torchrun`` rank 0 gathers every
    rank's failures, lists them once and exits 1; the other ranks exit 0.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``restore`` command line, ``image`` a list of inputs.
    params : dict
        The operator's ``--param`` values.

    Returns
    -------
    int
        Exit status.
    """
    if args.truth or args.compare:
        fail("--truth and --compare apply to one image, not to several inputs")
    files = expand_inputs(args.image)
    outdir, outputs = _check_outdir(args, files)
    with running(args) as ranks:
        outdir.mkdir(exist_ok=True)
        size = args.batch if solver_entry(args.solver).generator_per_image else 1
        mine = ranks.take(make_batches(files, size, image_key))
        todo = [[f for f in b if args.force or not outputs[f].is_file()] for b in mine]
        todo = [b for b in todo if b]
        total = sum(len(b) for b in mine)
        skipped = total - sum(len(b) for b in todo)
        failed: list[tuple[str, str]] = []
        bars = Bars(total, skipped, show=ranks.main and not args.quiet)
        runner = Runner(args, torch.Generator(), progress=False) if todo else None
        tic = time.perf_counter()  # the work, after start-up and model loading
        try:
            for batch in todo:
                assert runner is not None
                loaded: list[tuple[Path, Any, Any]] = []
                for f in batch:
                    try:
                        op, y, _ = measurement_of(str(f), args, params)
                        loaded.append((f, op, y))
                    except (SystemExit, Exception) as exc:  # a bad file: reported, the rest go on
                        failed.append((f.name, reason(exc)))
                        bars.advance(1)
                for group in _groups(loaded):
                    failed += _restore_and_save(runner, args, params, group, outputs, bars)
        finally:
            bars.close()
        done = total - skipped - len(failed)
        everyone = ranks.gather((done, skipped, failed, time.perf_counter() - tic))
    if not ranks.main:  # rank 0 reports every rank's failures, once, and exits 1 for them
        return EXIT_OK
    n_done = sum(r[0] for r in everyone)
    n_skipped = sum(r[1] for r in everyone)
    all_failed = sorted(f for r in everyone for f in r[2])
    where = f" (shard {args.shard[0]}/{args.shard[1]})" if getattr(args, "shard", None) else ""
    seconds = max(r[3] for r in everyone)  # the slowest rank
    print(
        f"restored {n_done} image(s) into {printable(str(outdir))}{where}; {n_skipped} already done, "
        f"{len(all_failed)} failed; {seconds:.2f} s of work on {ranks.world} process(es) after start-up"
    )
    if all_failed:
        for name, why in all_failed:
            print(f"opkit: {one_line(name)}: {why}", file=sys.stderr)
        print(
            f"opkit: {len(all_failed)} image(s) failed (listed above); the others are done", file=sys.stderr
        )
        ranks.outlive_peers()
        return EXIT_ERROR
    return EXIT_OK
