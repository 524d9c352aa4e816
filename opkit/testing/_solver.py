"""check_solver: the solver contract of :mod:`opkit.solver`, checked on small exact problems."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import Tensor

from opkit.operators import ComposedOperator, DiagonalOperator, EncodeDecodeOperator, Operator
from opkit.registry import SolverEntry, default_registry
from opkit.solver import KINDS, accepts

__all__ = ["SolverReport", "check_solver", "toy_operators"]


class _Gains(DiagonalOperator):
    """``H = diag(s)``: per-pixel gains, zero on about a third of the pixels (the null space)."""

    def __init__(self, shape: tuple[int, int, int], seed: int) -> None:
        super().__init__(shape)
        g = torch.Generator().manual_seed(seed)
        s = torch.rand(shape, generator=g, dtype=torch.float64) + 0.5
        s[torch.rand(shape, generator=g) < 1 / 3] = 0.0
        self._s = s
        self.name = f"gains{seed}"

    @property
    def singulars(self) -> Tensor:
        return self._s


class _Levels(EncodeDecodeOperator[Tensor]):
    """``Encode(x) = floor(8 x)`` clipped to ``0..7``; ``Decode(k) = (k + ½)/8``."""

    name = "levels"

    def encode(self, x: Tensor) -> Tensor:
        return torch.clamp(torch.floor(x * 8), 0, 7).to(torch.int64)

    def decode(self, y: Tensor) -> Tensor:
        return (y.to(torch.float64) + 0.5) / 8

    def relaxed_codes(self, x: Tensor) -> Tensor:
        """``8 x - ½``: the levels before the floor, centred (for solvers that need a gradient)."""
        return x * 8 - 0.5

    def roundtrip_tolerance(self) -> float:
        return 0.5 / 8


def toy_operators(shape: tuple[int, int, int] = (2, 4, 6)) -> dict[str, Operator[Any]]:
    """One small operator of each kind in :data:`opkit.solver.KINDS`.

    ``"svd"``: per-pixel gains with a null space; ``"linear"``: the composition of two of them
    (a linear operator without an SVD; ``H†`` by conjugate gradients); ``"encode_decode"``: 8
    levels per pixel, with the relaxation ``8 x - ½`` (:meth:`~opkit.EncodeDecodeOperator.relaxed_codes`).

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(C, H, W)``.

    Returns
    -------
    dict
        Kind to operator.
    """
    composed = ComposedOperator(_Gains(shape, 1), _Gains(shape, 2))
    composed.name = "gains1@gains2"
    return {"svd": _Gains(shape, 0), "linear": composed, "encode_decode": _Levels(shape)}


@attrs.define
class SolverReport:
    """What :func:`check_solver` checked.

    Attributes
    ----------
    solver : str
        Its name.
    checks : list of str
        The checks that passed.
    recovery_error : dict
        Operator kind to the largest error of the oracle recovery.
    """

    solver: str
    checks: list[str] = attrs.field(factory=list)
    recovery_error: dict[str, float] = attrs.field(factory=dict)


def _entry_of(solver: Any) -> SolverEntry | None:
    if isinstance(solver, str):
        return default_registry().solver_entry(solver)
    return solver if isinstance(solver, SolverEntry) else None


def _resolve(
    solver: Any, accepts_: Any, oracle: Any, atol: Any, options: dict[str, Any]
) -> tuple[str, Callable[..., Any], tuple[str, ...], Callable[[Tensor], Any], float]:
    entry = _entry_of(solver)
    if entry is not None:
        fn, name = entry.solver, entry.name
        accepts_ = entry.accepts if accepts_ is None else accepts_
        oracle = entry.oracle if oracle is None else oracle
        atol = entry.recovery_atol if atol is None else atol
        options.update({k: v for k, v in entry.check_options.items() if k not in options})
    else:
        fn, name = solver, getattr(solver, "__name__", repr(solver))
    if accepts_ is None or oracle is None:
        raise ValueError(
            "check_solver needs the operator kinds the solver accepts and an oracle model: pass a "
            "registered name (or its SolverEntry), or accepts= and oracle="
        )
    return name, fn, tuple(accepts_), oracle, float(atol or 0.0)


def check_solver(
    solver: Any,
    *,
    accepts: tuple[str, ...] | None = None,
    oracle: Callable[[Tensor], Any] | None = None,
    recovery_atol: float | None = None,
    steps: int = 8,
    stochastic: bool = True,
    options: dict[str, Any] | None = None,
    generator_per_image: bool | None = None,
) -> SolverReport:
    """Check that ``solver`` follows the solver contract (:class:`opkit.solver.Solver`).

    On a small problem of each accepted operator kind (:func:`toy_operators`), in float64:

    * **oracle recovery** -- with a model that knows the clean images, the result is those images
      (to ``recovery_atol``; ``num_samples`` 1 and 3) and every ``x0_pred`` is them exactly;
    * **callback** -- ``callback(step, t, x_t, x0_pred)`` once per step, steps counting from 0,
      tensors of batch ``B · num_samples`` and the image shape;
    * **seeding** -- the same seed gives the same iterates and result, another seed other
      iterates (unless ``stochastic=False``);
    * **batch independence** -- changing one measurement of a batch leaves the iterates of the
      others unchanged; with ``generator_per_image``, a batch run with one generator per
      measurement gives each image the iterates of a run of that image alone with its generator;
    * **return_info and progress** -- ``return_info`` gives the same result and an ``nfe``;
      ``progress=False`` writes nothing to stderr, ``progress=True`` does;
    * **errors** -- ``TypeError`` for an operator of a kind it does not accept and for a missing
      model; ``ValueError`` for bad ``steps`` or ``num_samples``, a measurement with NaN, one
      of the wrong shape and an empty batch.

    Parameters
    ----------
    solver : str, SolverEntry or callable
        A registered name (its entry supplies ``accepts``, ``oracle``, ``recovery_atol`` and
        ``check_options``) or the solver itself.
    accepts : tuple of str, optional
        Operator kinds (:data:`opkit.solver.KINDS`) it takes.
    oracle : callable, optional
        ``oracle(x)`` builds a model that knows the clean images ``x``.
    recovery_atol : float, optional
        Largest error allowed in the oracle recovery (besides ``1e-6`` for rounding).
    steps : int
        Steps of every run.
    stochastic : bool
        Whether another seed must give other iterates.
    options : dict, optional
        Further keywords for every call.
    generator_per_image : bool, optional
        Whether the solver takes a sequence of generators (default: the registered entry's
        :attr:`~opkit.SolverEntry.generator_per_image`, else ``False``).

    Returns
    -------
    SolverReport
        The checks done.

    Raises
    ------
    AssertionError
        Naming the first check that fails.
    """
    opts = dict(options or {})
    name, fn, kinds, make_oracle, atol = _resolve(solver, accepts, oracle, recovery_atol, opts)
    if generator_per_image is None:
        entry = _entry_of(solver)
        generator_per_image = entry is not None and entry.generator_per_image
    report = SolverReport(solver=name)
    toys = toy_operators()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((2, *toys["svd"].shape), generator=gen, dtype=torch.float64) * 0.8 + 0.1
    x_other = torch.rand((2, *toys["svd"].shape), generator=gen, dtype=torch.float64) * 0.8 + 0.1

    def run(op: Any, xx: Tensor, seed: int | list[int] = 0, **kw: Any) -> tuple[Any, list[tuple[Any, ...]]]:
        seen: list[tuple[Any, ...]] = []
        kw.setdefault("steps", steps)
        kw.setdefault("progress", False)
        if isinstance(seed, list):
            gen: Any = [torch.Generator().manual_seed(s) for s in seed]
        else:
            gen = torch.Generator().manual_seed(seed)
        out = fn(
            op,
            op(xx),
            make_oracle(xx),
            generator=gen,
            callback=lambda *a: seen.append(a),
            **opts,
            **kw,
        )
        return out, seen

    def fail(check: str, what: str) -> None:
        raise AssertionError(f"check_solver({name}): {check}: {what}")

    kinds_here = [k for k in KINDS if accepts_kind(k, kinds)]
    if not kinds_here:
        fail("accepts", f"no operator kind among {KINDS}: {kinds!r}")
    for kind in kinds_here:
        op = toys[kind]
        tag = f"[{kind}]"
        # -- oracle recovery and the callback contract ------------------------------------------
        for k in (1, 3):
            out, seen = run(op, x, num_samples=k)
            if not isinstance(out, Tensor) or tuple(out.shape) != tuple(x.shape):
                fail(f"recovery {tag}", f"expected a tensor of shape {tuple(x.shape)}, got {_desc(out)}")
            err = float((out.double() - x).abs().max())
            report.recovery_error[kind] = max(report.recovery_error.get(kind, 0.0), err)
            if not err <= atol + 1e-6:
                fail(
                    f"recovery {tag}",
                    f"oracle recovery error {err:.3g} > {atol + 1e-6:.3g} (num_samples={k})",
                )
            if len(seen) != steps:
                fail(f"callback {tag}", f"called {len(seen)} times for steps={steps}")
            for j, call in enumerate(seen):
                if len(call) != 4:
                    fail(f"callback {tag}", f"called with {len(call)} arguments, not (step, t, x_t, x0_pred)")
                step, t, x_t, x0p = call
                if step != j or isinstance(step, bool) or not isinstance(step, int):
                    fail(f"callback {tag}", f"step {step!r} at call {j}")
                if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(float(t)):
                    fail(f"callback {tag}", f"t must be a finite number, got {t!r}")
                want = (x.shape[0] * k, *x.shape[1:])
                for what, v in (("x_t", x_t), ("x0_pred", x0p)):
                    if not isinstance(v, Tensor) or tuple(v.shape) != want:
                        fail(f"callback {tag}", f"{what} must have shape {want}, got {_desc(v)}")
                perr = float((x0p.double() - x.repeat_interleave(k, dim=0)).abs().max())
                if not perr <= 1e-6:
                    fail(f"callback {tag}", f"x0_pred at step {j} is off the oracle's images by {perr:.3g}")
        report.checks += [f"recovery {tag}", f"callback {tag}"]

        # -- seeding ------------------------------------------------------------------------------
        out_a, seen_a = run(op, x, seed=7)
        out_b, seen_b = run(op, x, seed=7)
        if not torch.equal(out_a, out_b) or not all(
            torch.equal(a[2], b[2]) for a, b in zip(seen_a, seen_b, strict=True)
        ):
            fail(f"seeding {tag}", "the same seed gave different results")
        if stochastic:
            _, seen_c = run(op, x, seed=8)
            if all(torch.equal(a[2], c[2]) for a, c in zip(seen_a, seen_c, strict=True)):
                fail(f"seeding {tag}", "another seed gave the same iterates (pass stochastic=False if meant)")
        report.checks.append(f"seeding {tag}")

        # -- batch independence -------------------------------------------------------------------
        x_mixed = torch.cat([x[:1], x_other[1:]])
        _, seen_m = run(op, x_mixed, seed=7)
        for a, m in zip(seen_a, seen_m, strict=True):
            if not torch.allclose(a[2][:1], m[2][:1], rtol=0, atol=1e-10):
                fail(
                    f"batch independence {tag}",
                    f"changing image 1 changed the iterate of image 0 at step {a[0]}",
                )
        report.checks.append(f"batch independence {tag}")
        if generator_per_image:
            _, seen_list = run(op, x, seed=[7, 9])
            for i, seed_i in enumerate((7, 9)):
                _, seen_i = run(op, x[i : i + 1], seed=seed_i)
                for a, m in zip(seen_i, seen_list, strict=True):
                    if not torch.allclose(a[2], m[2][i : i + 1], rtol=0, atol=1e-10):
                        fail(
                            f"generator per image {tag}",
                            f"image {i} with its own generator in a batch differs from a run of it "
                            f"alone at step {a[0]}",
                        )
            report.checks.append(f"generator per image {tag}")

        # -- return_info, progress ----------------------------------------------------------------
        got = run(op, x, seed=7, return_info=True)[0]
        if not isinstance(got, tuple) or len(got) != 2 or not torch.equal(got[0], out_a):
            fail(f"return_info {tag}", "expected (the same result, info)")
        nfe = getattr(got[1], "nfe", None)
        if not isinstance(nfe, int) or nfe < 1:
            fail(f"return_info {tag}", f"info.nfe must be a positive int, got {nfe!r}")
        for show in (False, True):
            buf = io.StringIO()
            with contextlib.redirect_stderr(buf):
                run(op, x, progress=show)
            if bool(buf.getvalue().strip()) != show:
                fail(f"progress {tag}", f"progress={show} wrote {buf.getvalue()!r} to stderr")
        report.checks += [f"return_info {tag}", f"progress {tag}"]

        # -- errors -------------------------------------------------------------------------------
        y = op(x)
        model = make_oracle(x)
        quiet = {"progress": False, "steps": steps, **opts}
        bad: list[tuple[str, type[BaseException], Any, Any, dict[str, Any]]] = [
            ("steps=0", ValueError, y, model, {"steps": 0}),
            ("steps=2.5", ValueError, y, model, {"steps": 2.5}),
            ("num_samples=0", ValueError, y, model, {"num_samples": 0}),
            ("model=None", TypeError, y, None, {}),
        ]
        if isinstance(y, Tensor):
            bad.append(("y of the wrong shape", ValueError, y[..., :-1], model, {}))
            bad.append(("an empty batch y[:0]", ValueError, y[:0], model, {}))
        if isinstance(y, Tensor) and y.is_floating_point():
            y_nan = y.clone()
            y_nan.view(-1)[0] = float("nan")
            bad.append(("y with NaN", ValueError, y_nan, model, {}))
        for what, exc_type, yy, mm, kw in bad:
            _expect(name, f"errors {tag}", what, exc_type, fn, (op, yy, mm), {**quiet, **kw})
        report.checks.append(f"errors {tag}")

    for kind in KINDS:
        if not accepts_kind(kind, kinds):
            op = toys[kind]
            what = f"an operator of kind {kind}, which it does not accept"
            args = (op, op(x), make_oracle(x))
            _expect(
                name,
                f"errors [{kind}]",
                what,
                TypeError,
                fn,
                args,
                {"steps": steps, "progress": False, **opts},
            )
            report.checks.append(f"refuses [{kind}]")
    return report


def accepts_kind(kind: str, kinds: tuple[str, ...]) -> bool:
    """Whether a solver accepting ``kinds`` takes operators of ``kind``."""
    return accepts(kind, kinds)


def _desc(v: Any) -> str:
    return f"shape {tuple(v.shape)}" if isinstance(v, Tensor) else type(v).__name__


def _expect(
    name: str,
    check: str,
    what: str,
    exc_type: type[BaseException],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    try:
        fn(*args, **kwargs)
    except exc_type:
        return
    except Exception as exc:
        raise AssertionError(
            f"check_solver({name}): {check}: {what} raised {type(exc).__name__} ({exc}), "
            f"not {exc_type.__name__}"
        ) from exc
    raise AssertionError(f"check_solver({name}): {check}: {what} raised nothing, not {exc_type.__name__}")
