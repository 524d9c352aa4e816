"""The one place that assembles a solver call: :class:`Runner`.

``opkit restore`` (one image or many) and ``opkit eval`` call every solver through it. The
solver comes from the registry (``--solver``); its registry entry says which model it needs,
which operator kinds it takes, which options it has and which settings it runs with for a model
and an operator (:meth:`opkit.SolverEntry.defaults`). The command line adds the user's flags on
top (:data:`FLAGS`, and ``--solver-option K=V`` for any other keyword of the solver), checks
the result against the solver contract, and names the solver and its plugin when either fails.
No solver is special-cased by name.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

import torch

import opkit
from opkit.images import to_grey
from opkit.messages import one_line
from opkit.registry import BUILTIN_PACKAGES
from opkit.solver import accepts
from opkit_cli.entries import create_operator, quiet_registry, solver_entry
from opkit_cli.errors import fail
from opkit_cli.models import load_model
from opkit_cli.parsing import parse_params

#: Command-line flags that set solver keywords: ``(argparse dest, keyword, flag)``. A flag the
#: user gives for a solver without that keyword is refused, naming both.
FLAGS = (
    ("steps", "steps", "--steps"),
    ("samples", "num_samples", "--samples"),
    ("eta", "eta", "--eta"),
    ("eta_b", "eta_b", "--eta-b"),
    ("t_start", "t_start", "--t-start"),
    ("sigma_y", "sigma_y", "--sigma-y"),
)
#: Keywords of the solver contract every solver takes.
CONTRACT = ("steps", "num_samples")


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


def model_classes(model: Any) -> int | None:
    """The number of classes of a class-conditional prior, ``0`` for an unconditional one.

    Read from the network's configuration: an ADM network's ``class_cond`` and ``num_classes``,
    a diffusers ``UNet2DModel``'s ``num_class_embeds``. ``None`` when the model does not say.

    Parameters
    ----------
    model : object
        A loaded prior (or anything).

    Returns
    -------
    int or None
        The class count, ``0``, or ``None``.
    """
    cfg = getattr(getattr(model, "net", None), "config", None)
    if cfg is None:
        return None
    if isinstance(getattr(cfg, "class_cond", None), bool):  # ADM
        return int(cfg.num_classes) if cfg.class_cond else 0
    n = getattr(cfg, "num_class_embeds", None)
    if isinstance(n, int):
        return n
    return 0 if getattr(cfg, "class_embed_type", None) is None and hasattr(cfg, "num_class_embeds") else None


def solver_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--solver-option K=V`` keywords (values parsed as Python literals where they parse)."""
    return parse_params(getattr(args, "solver_option", None), "--solver-option")


def _flag_value(args: argparse.Namespace, dest: str) -> Any:
    value = getattr(args, dest, None)
    if dest == "sigma_y" and not value:
        return None  # --sigma-y 0 is the default: no noise, nothing asked of the solver
    return value


class Runner:
    """The chosen solver with its model, loaded once: ``runner(op, y, params)`` restores ``y``.

    Any registered solver (``opkit solvers``) is called through the one solver contract,
    ``solver(op, y, model, steps=..., num_samples=..., generator=..., progress=...)``, with the
    keywords of :meth:`keywords`. The model is loaded by the kind the entry declares: a diffusion
    prior (:func:`~opkit_cli.models.load_model`), a DriftRec score model, or none. A greyscale
    problem and a three-channel model are bridged by :func:`lift_to_rgb`. Every failure ends
    the call with one line (:func:`~opkit_cli.errors.fail`) naming the solver, and its plugin
    when it is not a built-in.

    Parameters
    ----------
    args : argparse.Namespace
        ``solver``, ``op``, ``model`` and the flags of :data:`FLAGS` (plus ``class_label``,
        ``model_config``, ``download``, ``device``, ``dtype``).
    generator : torch.Generator
        Randomness of the solver (calls may pass their own).
    progress : bool
        Show the solver's progress bar.
    op : opkit.Operator, optional
        An operator to :meth:`check` the settings for before the model is loaded, so that a
        setting that cannot work costs no loading time.
    """

    def __init__(
        self, args: argparse.Namespace, generator: torch.Generator, *, progress: bool, op: Any = None
    ) -> None:
        import solvers

        self.args, self.generator, self.progress = args, generator, progress
        self.entry = solver_entry(args.solver)
        self.model: Any = None
        self.check_flags()
        if op is not None:
            self.check(op)
        label = getattr(args, "class_label", None)
        self.model_kwargs = {"class_labels": torch.tensor([label])} if label is not None else None
        try:
            if self.entry.model == "prior":
                self.model = load_model(args)
            elif self.entry.model == "driftrec":
                self.model = solvers.load_driftrec(args.model)
        except (FileNotFoundError, ValueError, NotImplementedError, ImportError) as exc:
            fail(exc)
        except Exception as exc:  # a damaged model folder raises anything
            fail(f"cannot load the model {args.model}: {one_line(exc)}")
        self.channels = _model_channels(self.model)
        if op is not None:
            self.check(op, self.model)  # with the model's own settings and schedule
        if label is not None and self.entry.model == "prior":
            classes = model_classes(self.model)
            if classes == 0:
                fail(f"--class-label: the model {args.model} is not class-conditional")
            if classes is not None and label >= classes:
                fail(
                    f"--class-label {label} is out of range: the model {args.model} has {classes} "
                    f"classes (0 to {classes - 1})"
                )

    # -- the solver's name in messages ------------------------------------------------------
    @property
    def builtin(self) -> bool:
        """Whether the solver is one of opkit's own (its failures are opkit's, not a plugin's)."""
        module = getattr(self.entry.solver, "__module__", "") or ""
        return module.split(".")[0] in BUILTIN_PACKAGES

    @property
    def who(self) -> str:
        """``--solver NAME``, with its plugin when it is a third party's."""
        plugin = "" if self.builtin else f" (plugin {self.entry.plugin!r})"
        return f"--solver {self.entry.name}{plugin}"

    # -- keywords ---------------------------------------------------------------------------
    def check_flags(self) -> None:
        """Refuse flags the solver has no keyword for, and model flags for solvers without a prior.

        Runs before the model is loaded, so a wrong flag costs no time.
        """
        args, entry = self.args, self.entry
        takes = {*CONTRACT, *entry.options()}
        for dest, key, flag in FLAGS:
            if _flag_value(args, dest) is not None and key not in takes:
                fail(f"{flag} does not apply to --solver {entry.name}")
        for key in solver_options(args):
            if key not in entry.options():
                fail(f"--solver-option {key} does not apply to --solver {entry.name} (see `opkit solvers`)")
        prior_only = ("class_label", "model_config", "download")
        if entry.model != "prior" and any(getattr(args, k, None) for k in prior_only):
            with_prior = [e.name for e in quiet_registry().solver_entries() if e.model == "prior"]
            fail(
                "--model-config, --download and --class-label apply to the solvers with a diffusion "
                f"prior ({', '.join(with_prior)}), not {entry.name}"
            )

    def keywords(self, op: Any, model: Any = None) -> dict[str, Any]:
        """The keywords the runner passes for ``op``: the solver's settings for the model and the
        operator (:attr:`opkit.SolverEntry.settings`), then the user's flags on top.

        Parameters
        ----------
        op : opkit.Operator
            The operator.
        model : object, optional
            The model (default: the loaded one).

        Returns
        -------
        dict
            Keyword arguments of the solver (the others keep the solver's defaults).
        """
        settings = self.entry.settings
        m = self.model if model is None else model
        kw: dict[str, Any] = {}
        if settings is not None:
            got = self._guarded(settings, m, op)
            if not isinstance(got, Mapping):
                fail(
                    f"{self.who} broke the solver contract: its settings(model, op) returned "
                    f"{type(got).__name__}, not a dict"
                )
            kw = dict(got)
        kw.update(solver_options(self.args))
        for dest, key, _ in FLAGS:
            value = _flag_value(self.args, dest)
            if value is not None:
                kw[key] = value
        return kw

    def effective(self, op: Any, model: Any = None) -> dict[str, Any]:
        """Every keyword's value in the call for ``op``: the solver's defaults and :meth:`keywords`."""
        m = self.model if model is None else model
        keywords = self.keywords(op, m)  # checks the entry's settings first
        return {**self._guarded(self.entry.defaults, m, op), **keywords}

    def _guarded(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` for the entry's settings: a plugin's failure is named, not an internal error."""
        try:
            return fn(*args)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            if self.builtin and not isinstance(exc, SystemExit):
                raise  # opkit's own bug: main reports it as an internal error
            fail(f"{self.who} failed in its settings(model, op): {one_line(exc, with_type=True)}")

    def check(self, op: Any, model: Any = None) -> None:
        """Refuse settings that cannot work for ``op``, in the command line's terms, before any work.

        * ``--sigma-y`` with an encode/decode operator, whose measurement is a noiseless code;
        * more ``--steps`` than a run starting at timestep ``t_start`` can take (``t_start + 1``);
        * more ``--steps`` than the prior has timesteps.

        Parameters
        ----------
        op : opkit.Operator
            The operator.
        model : object, optional
            The model (``None``: the checks that need none).
        """
        args = self.args
        if _flag_value(args, "sigma_y") is not None and isinstance(op, opkit.EncodeDecodeOperator):
            fail(f"--sigma-y does not apply to --op {args.op}: its measurement is a noiseless code")
        kw = self.effective(op, model)
        steps, t_start = kw.get("steps"), kw.get("t_start")
        if not isinstance(steps, int):
            return
        what = f"--steps {steps}"
        if _flag_value(args, "steps") is None:  # not the user's: the solver's settings for the model
            what = f"{steps} steps (the settings of --solver {self.entry.name} for this model)"
        if isinstance(t_start, int) and steps > t_start + 1:
            fail(
                f"{what} is too many for --op {args.op}: --solver {self.entry.name} starts at "
                f"timestep {t_start} (--t-start) and goes down to 0, so at most {t_start + 1} steps"
            )
        total = getattr(getattr(model, "alphas_cumprod", None), "numel", lambda: None)()
        if total is not None and steps > total:
            fail(f"{what} is more than the model's {total} timesteps")

    def steps(self, op: Any) -> int:
        """The number of steps the solver will run (for a progress bar; 0 when unknown)."""
        steps = self.effective(op).get("steps")
        return steps if isinstance(steps, int) else 0

    # -- the call -----------------------------------------------------------------------------
    def __call__(
        self,
        op: Any,
        y: Any,
        params: dict[str, Any] | None = None,
        *,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        callback: Any = None,
    ) -> torch.Tensor:
        """Restore ``y`` (see the class docstring); a failure ends the command with one line.

        Parameters
        ----------
        op : opkit.Operator
            The operator of ``y``.
        y : measurement
            A batch of measurements.
        params : dict, optional
            The operator's ``--param`` values (for the greyscale bridge).
        generator : torch.Generator or sequence of torch.Generator, optional
            The randomness (default: the constructor's); one generator per measurement restores
            each image with its own stream.
        callback : callable, optional
            The solver's per-step callback ``(step, t, x_t, x0_pred)``.

        Returns
        -------
        torch.Tensor
            The restorations, ``(B, C, H, W)`` on the CPU.
        """
        args, entry = self.args, self.entry
        kind = opkit.operator_kind(op)
        if not accepts(kind, entry.accepts):
            fail(
                f"--solver {entry.name} does not take --op {args.op} ({kind or type(op).__name__}); "
                f"it takes {', '.join(entry.accepts)} operators"
            )
        self.check(op, self.model)
        gen = self.generator if generator is None else generator
        device = getattr(args, "device", None)
        if device is not None and isinstance(y, torch.Tensor) and y.device != torch.device(device):
            y = y.to(device)  # the solver's algebra runs where the network runs
        settings = self.keywords(op)
        batch = y.shape[0] if isinstance(y, torch.Tensor) else 1
        if self.model_kwargs is not None and "model_kwargs" in entry.options():
            settings["model_kwargs"] = {k: v.expand(batch) for k, v in self.model_kwargs.items()}
        if callback is not None:  # a keyword of the solver contract, like generator
            settings["callback"] = callback
        grey = op.shape[0] == 1 and self.channels == 3
        if self.channels is not None and not grey and self.channels != op.shape[0]:
            fail(f"the model works on {self.channels}-channel images; this one has {op.shape[0]}")
        if grey:
            op, y = lift_to_rgb(args.op, params or {}, op, y)
        if isinstance(gen, Sequence) and not entry.generator_per_image:
            # one generator per measurement, and a solver that takes one: image by image
            one = dict(settings)
            if "model_kwargs" in one:
                one["model_kwargs"] = {k: v[:1] for k, v in one["model_kwargs"].items()}
            parts = [self._solve(op, y[i : i + 1], one, g) for i, g in enumerate(gen)]
            out = torch.cat(parts)
        else:
            out = self._solve(op, y, settings, gen)
        out = out.cpu()
        return to_grey(out) if grey else out

    def _solve(self, op: Any, y: Any, settings: dict[str, Any], generator: Any) -> torch.Tensor:
        """One solver call, its failures reported in one line, its result checked."""
        name = self.entry.name
        try:
            out = self.entry.solver(
                op, y, self.model, **settings, generator=generator, progress=self.progress
            )
        except KeyboardInterrupt:
            raise
        except (ValueError, NotImplementedError) as exc:
            fail(exc if self.builtin else f"{self.who} refused the problem: {one_line(exc)}")
        except RuntimeError as exc:
            fail(f"{name} failed: {one_line(exc)}" if self.builtin else f"{self.who} failed: {one_line(exc)}")
        except BaseException as exc:  # a plugin's bug, or its sys.exit(): the plugin failed, not opkit
            if self.builtin and not isinstance(exc, SystemExit):
                raise  # opkit's own bug: main reports it as an internal error
            fail(f"{self.who} failed: {type(exc).__name__}: {one_line(exc)}")
        batch = y.shape[0] if isinstance(y, torch.Tensor) else 1
        self.check_result(out, op, batch)
        return out  # type: ignore[no-any-return]

    def check_result(self, out: Any, op: Any, batch: int) -> None:
        """Check a solver's result against the contract: a finite floating ``(B, *op.shape)`` tensor.

        Parameters
        ----------
        out : object
            What the solver returned.
        op : opkit.Operator
            The operator it was given.
        batch : int
            The number of measurements it was given.
        """
        broke = f"{self.who} broke the solver contract:"
        if not isinstance(out, torch.Tensor):
            fail(f"{broke} it returned {type(out).__name__}, not an image tensor")
        want = (batch, *tuple(op.shape))
        if tuple(out.shape) != want:
            fail(f"{broke} it returned shape {tuple(out.shape)} for measurements of images {want}")
        if not out.is_floating_point():
            fail(f"{broke} it returned {out.dtype}, not a floating image")
        if out.device.type == "meta":
            fail(f"{broke} it returned a tensor without data (on the meta device)")
        if not bool(torch.isfinite(out).all()):
            fail(f"{broke} its result holds NaN or infinity")
