"""The ``opkit restore`` command: the solver with its model (:class:`Restorer`), settings, the
greyscale bridge to colour models.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import opkit
from opkit.images import (
    ImageTooLargeError,
    image_suffixes,
    save_image,
    to_grey,
)
from opkit.messages import one_line
from opkit_cli.folders import (
    Ranks,
    check_unique_stems,
    expand_inputs,
    image_key,
    image_seed,
    is_many,
    make_batches,
    resolve_device,
    start_ranks,
)
from opkit_cli.io import _is_sample, bundled_weights, check_outputs, read_input
from opkit_cli.models import load_model
from opkit_cli.operators import (
    check_params,
    create_operator,
    infer_image_shape,
    quiet_registry,
    solver_entry,
)
from opkit_cli.parsing import EXIT_ERROR, EXIT_OK, fail, max_pixels_of, parse_params


def _measurement(args: argparse.Namespace, params: dict[str, Any]) -> tuple[Any, Any, torch.Tensor]:
    """Operator, measurement and a displayable degraded image for ``restore``."""
    return measurement_of(args.image, args, params)


def measurement_of(
    image: str, args: argparse.Namespace, params: dict[str, Any]
) -> tuple[Any, Any, torch.Tensor]:
    """Operator, measurement and a displayable degraded image of the file ``image``.

    A file format plugin may own the file (:func:`opkit.read_measurement`: the jpeg plugin reads a
    ``.jpg`` with its own tables) when no ``--param`` is given and its operator is ``--op``; any
    other file is the measurement image, whose operator shape
    :func:`~opkit_cli.operators.infer_image_shape` finds.
    """
    if not params and not _is_sample(image):
        try:
            got = opkit.read_measurement(image, max_pixels_of(args))
        except ImageTooLargeError as exc:
            fail(f"{exc}; raise the limit with --max-pixels")
        except (FileNotFoundError, ValueError) as exc:
            fail(exc)
        if got is not None and got[0].name == args.op:
            op, y = got
            return op, y, read_input(image, max_pixels_of(args))  # the file as a viewer shows it
    img = read_input(image, max_pixels_of(args))
    shape = infer_image_shape(args.op, tuple(img.shape[1:]), params)
    created = create_operator(args.op, shape, params)
    if isinstance(created, opkit.EncodeDecodeOperator):
        y = created(img)  # Encode(Decode(Encode(x))) = Encode(x): re-encoding a decoded image recovers y
        return created, y, img
    return created, img, img


def _side_by_side(images: list[torch.Tensor]) -> torch.Tensor:
    """Images (1, C, h, w) scaled up by pixel replication to the largest height, in a row."""
    h = max(int(t.shape[-2]) for t in images)
    row = []
    for t in images:
        t = t.expand(1, 3, *t.shape[-2:]) if t.shape[1] == 1 else t
        k = max(1, h // int(t.shape[-2]))
        t = t.repeat_interleave(k, -2).repeat_interleave(k, -1)
        pad_h = h - int(t.shape[-2])
        row.append(torch.nn.functional.pad(t, (0, 4, 0, pad_h), value=1.0))
    return torch.cat(row, -1)[..., :-4]


def ddrm_settings(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    """DDRM keywords for ``args.op``: the model's tuned settings, then the user's flags on top.

    A model directory may ship ``ddrm_settings.json`` (the bundled default does: start time, η,
    η_b, steps and samples per operator, chosen on validation photographs); flags given on the
    command line (``--steps``, ``--samples``, ``--eta``, ``--eta-b``, ``--t-start``) win.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (``op`` and the flags above, ``None`` when not given).
    model : prior
        The loaded prior (``settings`` attribute, if any).

    Returns
    -------
    dict
        Keyword arguments for :func:`solvers.ddrm`.
    """
    kw: dict[str, Any] = dict(getattr(model, "settings", {}).get(args.op, {}))
    flags = {"steps": "steps", "num_samples": "samples", "eta": "eta", "eta_b": "eta_b", "t_start": "t_start"}
    for key, attr in flags.items():
        value = getattr(args, attr, None)
        if value is not None:
            kw[key] = value
    return kw


def lift_to_rgb(name: str, params: dict[str, Any], op: Any, y: Any) -> tuple[Any, Any]:
    """The three-channel problem whose solutions, in grey (:func:`opkit.images.to_grey`), solve ``(op, y)``.

    An operator with a lift of its own gives it (:meth:`opkit.Operator.lift_to_rgb`; JPEG: the
    luma coefficients with zero chroma). Otherwise a greyscale image ``x`` repeated to three
    channels has the measurement ``y`` repeated, for operators that treat the channels alike
    (checked on a random image). Every restoration of the lifted problem, converted to grey,
    fits ``y`` again: the luma of images that fit a per-channel measurement is a convex
    combination of them.

    Parameters
    ----------
    name : str
        Registered name of ``op``.
    params : dict
        Its parameters.
    op : opkit.Operator
        The operator for ``(1, H, W)`` images.
    y : measurement
        Its measurement.

    Returns
    -------
    (opkit.Operator, measurement)
        The operator for ``(3, H, W)`` images and its measurement.
    """
    own = op.lift_to_rgb(y)
    if own is not None:
        return own  # type: ignore[no-any-return]
    _, h, w = op.shape
    op3 = create_operator(name, (3, h, w), params)
    probe = torch.rand((1, 1, h, w), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    try:
        lifted = op3(probe.expand(1, 3, h, w))
        direct = op(probe)
        same = isinstance(direct, torch.Tensor) and torch.allclose(
            lifted.double(), direct.double().expand(1, 3, *direct.shape[2:]), atol=1e-9
        )
    except (ValueError, TypeError, RuntimeError):
        same = False
    if not same:
        fail(
            f"cannot restore a greyscale image with a colour model for {name} with these parameters "
            "(the operator treats the three channels differently)"
        )
    return op3, y.expand(y.shape[0], 3, *y.shape[2:]).contiguous()


def _model_channels(model: Any) -> int | None:
    """Image channels a loaded prior or DriftRec model works on, when it says."""
    for attr, key in (("net", "in_channels"), ("unet", "out_channels")):
        cfg = getattr(getattr(model, attr, None), "config", None)
        value = getattr(cfg, key, None)
        if isinstance(value, int):
            return value
    return None


def solver_name(text: str) -> str:
    """argparse type of ``--solver``: a registered solver name (see ``opkit solvers``)."""
    names = quiet_registry().solver_names()  # `opkit solvers` lists skipped plugins
    if text not in names:
        raise argparse.ArgumentTypeError(f"unknown solver {text!r}; available: {', '.join(names)}")
    return text


def check_solver_flags(args: argparse.Namespace) -> None:
    """Refuse ``--sigma-y`` for a solver without the option, before any work."""
    if args.sigma_y > 0 and "sigma_y" not in solver_entry(args.solver).options():
        fail(f"--sigma-y does not apply to --solver {args.solver}")


class Restorer:
    """The chosen solver with its model, loaded once: ``restorer(op, y, y_image, params)``.

    Any registered solver (``opkit solvers``) is called through the one solver contract,
    ``solver(op, y, model, steps=..., num_samples=..., generator=..., progress=...)``, with the
    options it declares (``sigma_y``, ``eta``, ...) from the flags. The model is loaded by the
    kind the solver declares: a diffusion prior (:func:`load_model`), a DriftRec score model, or
    none. A greyscale problem and a three-channel model are bridged by :func:`lift_to_rgb`.

    Parameters
    ----------
    args : argparse.Namespace
        ``solver``, ``model``, ``steps``, ``samples`` and ``sigma_y``.
    generator : torch.Generator
        Randomness of the solver.
    progress : bool
        Show the solver's progress bar.
    """

    def __init__(self, args: argparse.Namespace, generator: torch.Generator, *, progress: bool) -> None:
        import solvers

        self.args, self.generator, self.progress = args, generator, progress
        self.entry = solver_entry(args.solver)
        self.options = self.entry.options()
        label = getattr(args, "class_label", None)
        self.model_kwargs = {"class_labels": torch.tensor([label])} if label is not None else None
        if self.entry.model != "prior" and (label is not None or args.model_config or args.download):
            fail(
                "--model-config, --download and --class-label apply to --solver ddrm and the other "
                f"solvers with a diffusion prior, not {args.solver}"
            )
        try:
            if self.entry.model == "prior":
                self.model: Any = load_model(args)
            elif self.entry.model == "driftrec":
                self.model = solvers.load_driftrec(args.model)
            else:
                self.model = None
        except (FileNotFoundError, ValueError, NotImplementedError, ImportError) as exc:
            fail(exc)
        except Exception as exc:  # a damaged model folder raises anything
            fail(f"cannot load the model {args.model}: {one_line(exc)}")
        self.channels = _model_channels(self.model)

    def keywords(self, op: Any) -> dict[str, Any]:
        """The solver's keywords: the model's tuned DDRM settings (``ddrm`` only), then the flags."""
        args, opts = self.args, self.options
        kw: dict[str, Any] = ddrm_settings(args, self.model) if args.solver == "ddrm" else {}
        if args.steps is not None:
            kw["steps"] = args.steps
        if args.samples is not None:
            kw["num_samples"] = args.samples
        for key, flag in (("eta", "--eta"), ("eta_b", "--eta-b"), ("t_start", "--t-start")):
            value = getattr(args, key, None)
            if value is not None and key not in opts:
                fail(f"{flag} does not apply to --solver {args.solver}")
            if value is not None:
                kw[key] = value
        if "sigma_y" in opts:
            kw["sigma_y"] = args.sigma_y
        elif args.sigma_y > 0:
            fail(f"--sigma-y does not apply to --solver {args.solver}")
        return kw

    def steps(self, op: Any) -> int:
        """The number of steps the solver will run (for the progress bar; 0 when unknown)."""
        steps = self.keywords(op).get("steps")
        if steps is None:
            default = inspect.signature(self.entry.solver).parameters.get("steps")
            steps = default.default if default is not None else None
        return steps if isinstance(steps, int) else 0

    def __call__(
        self,
        op: Any,
        y: Any,
        y_image: torch.Tensor | None = None,
        params: dict[str, Any] | None = None,
        *,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        callback: Any = None,
    ) -> torch.Tensor:
        """Restore ``y`` (see the class docstring); errors end the command with one line.

        ``generator`` (default: the one given to the constructor) may be one generator per
        measurement of the batch; ``callback`` is the solver's per-step callback
        ``(step, t, x_t, x0_pred)``.
        """
        from opkit.solver import accepts

        args, entry = self.args, self.entry
        kind = opkit.operator_kind(op)
        if not accepts(kind, entry.accepts):
            fail(
                f"--solver {entry.name} does not take --op {args.op} ({kind or type(op).__name__}); "
                f"it takes {', '.join(entry.accepts)} operators"
            )
        gen = self.generator if generator is None else generator
        device = getattr(args, "device", None)
        if device is not None and isinstance(y, torch.Tensor) and y.device != torch.device(device):
            y = y.to(device)  # the solver's algebra runs where the network runs
        settings = self.keywords(op)
        batch = y.shape[0] if isinstance(y, torch.Tensor) else 1
        if self.model_kwargs is not None and "model_kwargs" in self.options:
            settings["model_kwargs"] = {k: v.expand(batch) for k, v in self.model_kwargs.items()}
        if callback is not None:  # a keyword of the solver contract, like generator
            settings["callback"] = callback
        check_steps(args, op, self.model, settings)
        grey = op.shape[0] == 1 and self.channels == 3
        if self.channels is not None and not grey and self.channels != op.shape[0]:
            fail(f"the model works on {self.channels}-channel images; this one has {op.shape[0]}")
        try:
            if grey:
                op, y = lift_to_rgb(args.op, params or {}, op, y)
            if isinstance(gen, Sequence) and not entry.generator_per_image:
                # one generator per measurement, and a solver that takes one: image by image
                one = dict(settings)
                if "model_kwargs" in one:
                    one["model_kwargs"] = {k: v[:1] for k, v in one["model_kwargs"].items()}
                parts = [
                    entry.solver(op, y[i : i + 1], self.model, **one, generator=g, progress=self.progress)
                    for i, g in enumerate(gen)
                ]
                out: Any = torch.cat(parts) if all(isinstance(t, torch.Tensor) for t in parts) else parts
            else:
                out = entry.solver(op, y, self.model, **settings, generator=gen, progress=self.progress)
        except (ValueError, NotImplementedError) as exc:
            fail(exc)
        except RuntimeError as exc:
            fail(f"{args.solver} failed: {one_line(exc)}")
        if not isinstance(out, torch.Tensor):
            fail(f"--solver {args.solver} returned {type(out).__name__}, not an image tensor")
        out = out.cpu()
        return to_grey(out) if grey else out


def check_steps(
    args: argparse.Namespace, op: Any, model: Any = None, settings: dict[str, Any] | None = None
) -> None:
    """Refuse DDRM settings (steps, start, ``--sigma-y``) the solver would reject, in CLI terms.

    Parameters
    ----------
    args : argparse.Namespace
        ``solver``, ``op``, ``steps`` and ``sigma_y``.
    op : opkit.Operator
        The operator.
    model : prior, optional
        The loaded DDRM prior (its schedule length bounds the steps).
    settings : dict, optional
        The DDRM keywords in effect (:func:`ddrm_settings`: the model's tuned ones and the flags).
    """
    if args.solver != "ddrm":
        return
    from solvers.ddrm.solver import DDRM_DEFAULTS

    kw = settings or {}
    coded = isinstance(op, opkit.EncodeDecodeOperator)
    if coded and args.sigma_y > 0:
        fail(f"--sigma-y does not apply to --op {args.op}: its measurement is a noiseless code")
    steps = kw.get("steps")
    if steps is None:
        return
    t_start = kw.get("t_start", DDRM_DEFAULTS["encode_decode" if coded else "svd"][2])
    if t_start is not None and steps > t_start + 1:
        fail(
            f"--steps {steps} is too many for --op {args.op}: DDRM starts at timestep {t_start} "
            f"(--t-start) and goes down to 0, so at most {t_start + 1} steps"
        )
    total = getattr(getattr(model, "alphas_cumprod", None), "numel", lambda: None)()
    if total is not None and steps > total:
        fail(f"--steps {steps} is more than the model's {total} timesteps")


def _protected_model(args: argparse.Namespace) -> list[Path]:
    return [] if args.model == "default" else [Path(args.model)]


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore a degraded image with any registered solver, or many (:func:`restore_many`)."""
    params = parse_params(args.param)
    check_params(args.op, params)
    check_solver_flags(args)
    images = [args.image] if isinstance(args.image, str) else list(args.image)
    if is_many(images) or getattr(args, "shard", None) is not None:
        args.image = images
        return restore_many(args, params)
    args.image = images[0]
    args.device = resolve_device(args.device)
    if args.truth and not args.compare:
        fail("--truth is only used with --compare")
    image_out = image_suffixes()
    check_outputs(
        [("-o", args.output, image_out), ("--compare", args.compare, image_out)],
        inputs=[args.image, args.truth],
        protected=_protected_model(args),
        force=args.force,
    )
    truth = read_input(args.truth, max_pixels_of(args)) if args.truth else None
    op, y, shown = _measurement(args, params)
    check_steps(args, op)
    g = torch.Generator().manual_seed(args.seed)
    restorer = Restorer(args, g, progress=not args.quiet)
    x = restorer(op, y, shown, params)
    out = Path(args.output)
    save_image(x, out)
    print(f"wrote {out} ({args.solver}, {args.op}, {tuple(x.shape[1:])})")
    if args.compare:
        panels = [shown.to(x.dtype), x]
        if truth is not None:
            panels.append(truth.to(x.dtype))
        save_image(_side_by_side(panels), Path(args.compare))
        print(f"wrote {args.compare} (input | restoration{' | truth' if truth is not None else ''})")
    return EXIT_OK


# ----------------------------------------------------------------------------------------------
# many images
# ----------------------------------------------------------------------------------------------
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


def _remove_stale_parts(outdir: Path, stems: set[str]) -> None:
    """Remove temporary files a killed run left beside the outputs of ``stems`` (this shard's)."""
    pattern = re.compile(r"^\.(.+)\.[0-9a-f]{8}\.part\.png$")
    for p in outdir.iterdir():
        m = pattern.match(p.name)
        if m and m.group(1) in stems and p.is_file():
            p.unlink(missing_ok=True)


def _check_outdir(args: argparse.Namespace, files: Sequence[Path]) -> tuple[Path, dict[Path, Path]]:
    """The ``-o`` folder of a many-image run and every input's output ``<stem>.png`` in it."""
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        fail(f"-o {outdir}: with several inputs -o names a folder, and {outdir} is a file")
    if not outdir.exists() and outdir.suffix.lower() in image_suffixes():
        fail(f"-o {outdir}: with several inputs -o names a folder, not an image file")
    if not outdir.exists() and not outdir.parent.is_dir():
        fail(f"-o {outdir}: the folder {outdir.parent} does not exist")
    for folder in [*bundled_weights(), *_protected_model(args)]:
        if outdir.resolve().is_relative_to(folder.resolve()):
            fail(f"-o {outdir}: refusing to write into the model folder {folder}")
    check_unique_stems(files)
    outputs = {f: outdir / f"{f.stem}.png" for f in files}
    for f, o in outputs.items():
        if o.exists() and o.resolve() == f.resolve():
            fail(f"-o {outdir}: the output {o} would overwrite the input {f}; choose another folder")
    return outdir, outputs


def _restore_group(
    restorer: Restorer,
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
    bars.start(restorer.steps(op))
    return restorer(op, y, None, params, generator=gens if len(gens) > 1 else gens[0], callback=bars.step)


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
    the others go on; the exit status is then :data:`~opkit_cli.parsing.EXIT_ERROR`.

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
    ranks: Ranks = start_ranks(args)
    try:
        outdir.mkdir(exist_ok=True)
        size = args.batch if solver_entry(args.solver).generator_per_image else 1
        mine = ranks.take(make_batches(files, size, image_key))
        _remove_stale_parts(outdir, {f.stem for b in mine for f in b})
        todo = [[f for f in b if args.force or not outputs[f].exists()] for b in mine]
        todo = [b for b in todo if b]
        total = sum(len(b) for b in mine)
        skipped = total - sum(len(b) for b in todo)
        failed: list[tuple[str, str]] = []
        bars = Bars(total, skipped, show=ranks.main and not args.quiet)
        restorer = Restorer(args, torch.Generator(), progress=False) if todo else None
        tic = time.perf_counter()  # the work, after start-up and model loading
        try:
            for batch in todo:
                assert restorer is not None
                loaded: list[tuple[Path, Any, Any]] = []
                for f in batch:
                    try:
                        op, y, _ = measurement_of(str(f), args, params)
                        loaded.append((f, op, y))
                    except (SystemExit, Exception) as exc:  # a bad file: reported, the rest go on
                        failed.append((f.name, _reason(exc)))
                        bars.advance(1)
                for group in _groups(loaded):
                    try:
                        x = _restore_group(restorer, args, params, group, bars)
                    except SystemExit as exc:
                        failed += [(f.name, _reason(exc)) for f, _, _ in group]
                        bars.advance(len(group))
                        continue
                    for i, (f, _, _) in enumerate(group):
                        save_image(x[i : i + 1], outputs[f])
                    bars.advance(len(group))
        finally:
            bars.close()
        done = total - skipped - len(failed)
        everyone = ranks.gather((done, skipped, failed, time.perf_counter() - tic))
    except BaseException:
        ranks.close(barrier=False)  # the other ranks keep their finished outputs
        raise
    ranks.close()
    if not ranks.main:
        return EXIT_ERROR if any(r[2] for r in everyone) else EXIT_OK
    n_done = sum(r[0] for r in everyone)
    n_skipped = sum(r[1] for r in everyone)
    all_failed = sorted(f for r in everyone for f in r[2])
    where = f" (shard {args.shard[0]}/{args.shard[1]})" if getattr(args, "shard", None) else ""
    seconds = max(r[3] for r in everyone)  # the slowest rank
    print(
        f"restored {n_done} image(s) into {outdir}{where}; {n_skipped} already done, "
        f"{len(all_failed)} failed; {seconds:.2f} s of work on {ranks.world} process(es) after start-up"
    )
    if all_failed:
        for name, why in all_failed:
            print(f"opkit: {name}: {why}", file=sys.stderr)
        print(
            f"opkit: {len(all_failed)} image(s) failed (listed above); the others are done", file=sys.stderr
        )
        return EXIT_ERROR
    return EXIT_OK


def _reason(exc: BaseException) -> str:
    """The message of a :func:`~opkit_cli.parsing.fail` exit (without ``opkit:``) or an error."""
    if isinstance(exc, SystemExit):
        return one_line(str(exc.code or "failed")).removeprefix("opkit: ")
    if isinstance(exc, OSError) and exc.strerror:
        return one_line(f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror)
    return f"{type(exc).__name__}: {one_line(exc)}"
