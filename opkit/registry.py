"""The registry: operators, solvers and file formats, filled by plugins through pluggy hooks.

A plugin is any module (or object) exposing functions decorated with :data:`hookimpl`, published
under the ``opkit`` entry-point group::

    # pyproject.toml of the plugin's distribution
    [project.entry-points.opkit]
    myops = "my_package.ops"

    # my_package/ops.py
    import opkit

    @opkit.hookimpl
    def opkit_register_operators(registry):
        registry.add_operator("my_op", MyOp, strategy=my_parameter_strategy)

The hooks (:class:`HookSpecs`): ``opkit_register_operators`` and ``opkit_register_solvers`` fill
the tables; ``opkit_read_measurement`` and ``opkit_write_measurement`` own file formats. The
names of a :class:`Registry` come in pairs, one per kind of entry:

=========================  =========================  ==================================
operators                  solvers                    what
=========================  =========================  ==================================
``add_operator``           ``add_solver``             register (in a plugin's hook)
``operator_names()``       ``solver_names()``         sorted names
``operator_entry(name)``   ``solver_entry(name)``     the entry; ``KeyError`` listing names
``operator_entries()``     ``solver_entries()``       every entry, sorted by name
=========================  =========================  ==================================

and, for file formats, ``read_measurement`` / ``write_measurement``. The module-level functions
work on the process-wide :func:`default_registry`: :func:`available` and :func:`create` for
operators (the public contract's names), :func:`solver_names` and :func:`get_solver` for solvers,
:func:`read_measurement` and :func:`write_measurement` for files.

A registry holds one :class:`pluggy.PluginManager`; every plugin is registered with it, so the
file-format hooks (``firstresult=True``) are answered by pluggy itself: the first result that is
not ``None`` wins, asked in load order (built-ins first; an implementation marked
``tryfirst=True`` is asked before the others).

The built-in operators in :mod:`opkit_plugins` and the solvers of :mod:`solvers` register through
exactly the same path. Loading is robust: a plugin that fails to import, fails while registering,
or registers a name that is already taken is reported with an :class:`OpkitPluginWarning` naming
it and skipped as a whole (nothing it registered stays, its file-format hooks included), while the
others load; this holds for any exception, ``SystemExit`` included (only ``KeyboardInterrupt``
goes through). Built-in plugins (entry points whose module lies in ``opkit_plugins`` or
``solvers``) load first, so a third party cannot shadow a built-in name. The environment variable
``OPKIT_DISABLE_PLUGINS`` (comma-separated entry-point names) blocks plugins by name.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import Any, TypeVar

import attrs
import pluggy

from opkit.messages import one_line
from opkit.operators import Operator

E = TypeVar("E")

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "DuplicateOperatorError",
    "DuplicateSolverError",
    "HookSpecs",
    "OperatorEntry",
    "OpkitPluginWarning",
    "Registry",
    "SolverEntry",
    "available",
    "create",
    "default_registry",
    "get_solver",
    "hookimpl",
    "hookspec",
    "read_measurement",
    "reload",
    "solver_names",
    "write_measurement",
]

ENTRY_POINT_GROUP = "opkit"
DISABLE_ENV = "OPKIT_DISABLE_PLUGINS"
#: Packages of this distribution whose entry points are built-ins (they load first).
BUILTIN_PACKAGES = ("opkit_plugins", "solvers")
BUILTIN_PACKAGE = BUILTIN_PACKAGES[0]
#: The hooks that fill the tables: run once, for the plugin being registered.
REGISTER_HOOKS = ("opkit_register_operators", "opkit_register_solvers")
#: File-format hooks (``firstresult``): asked in load order, the first result not ``None`` wins.
FILE_HOOKS = ("opkit_read_measurement", "opkit_write_measurement")
HOOKS = (*REGISTER_HOOKS, *FILE_HOOKS)

hookspec = pluggy.HookspecMarker("opkit")
hookimpl = pluggy.HookimplMarker("opkit")


class HookSpecs:
    """The hooks a plugin may implement (each decorated with :data:`hookimpl`)."""

    @hookspec
    def opkit_register_operators(self, registry: Registry) -> None:  # pragma: no cover - spec
        """Register operators with ``registry.add_operator(name, factory, strategy=...)``."""

    @hookspec
    def opkit_register_solvers(self, registry: Registry) -> None:  # pragma: no cover - spec
        """Register solvers with ``registry.add_solver(name, solver, accepts=..., model=...)``."""

    @hookspec(firstresult=True)
    def opkit_read_measurement(
        self, path: str, max_pixels: int | None
    ) -> tuple[Operator[Any], Any] | None:  # pragma: no cover - spec
        """``(operator, measurement)`` read from the file ``path``, or ``None`` if not this format."""

    @hookspec(firstresult=True)
    def opkit_write_measurement(
        self, op: Operator[Any], x: Any, suffix: str | None
    ) -> tuple[str, bytes] | None:  # pragma: no cover - spec
        """``(suffix, file bytes)``: ``op``'s measurement of the image ``x`` as a file, or ``None``.

        ``suffix`` is the format asked for (``".jpg"``); ``None`` asks for the plugin's own format
        for ``op``. ``None`` is returned for operators or suffixes the plugin does not write.
        """


class OpkitPluginWarning(UserWarning):
    """A plugin could not be loaded or registered and was skipped."""


class _InLoadOrder(pluggy.PluginManager):
    """A plugin manager that asks the implementations of a hook in the order they were registered.

    pluggy asks the last registered implementation first; marking each one ``trylast`` as it is
    registered (unless the plugin asked for ``tryfirst``) puts it behind the earlier ones, so the
    built-ins, loaded first, answer the ``firstresult`` file hooks first.
    """

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is not None and not opts.get("tryfirst"):
            opts = {**opts, "trylast": True}
        return opts


class DuplicateOperatorError(ValueError):
    """An operator name was registered twice; the message names both plugins."""


class DuplicateSolverError(ValueError):
    """A solver name was registered twice; the message names both plugins."""


@attrs.frozen
class OperatorEntry:
    """One registered operator.

    Attributes
    ----------
    name : str
        The registered name, e.g. ``"sr_block"``.
    factory : callable
        ``factory(shape=..., **params)`` returning an :class:`~opkit.Operator`.
    strategy : hypothesis strategy or None
        Strategy of keyword dicts (``shape`` included) valid for ``factory``.
    plugin : str
        Name of the plugin that registered it.
    description : str
        One line for listings (defaults to the factory docstring's first line).
    """

    name: str
    factory: Callable[..., Operator[Any]]
    strategy: Any
    plugin: str
    description: str

    def parameters(self) -> dict[str, Any]:
        """Keyword parameters of the factory (besides ``shape``) with their defaults.

        Returns
        -------
        dict
            ``{name: default}``; parameters without a default map to
            :data:`inspect.Parameter.empty`.
        """
        try:
            sig = inspect.signature(self.factory)
        except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
            return {}
        return {
            p.name: p.default
            for p in sig.parameters.values()
            if p.name != "shape" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }


@attrs.frozen
class SolverEntry:
    """One registered solver.

    Attributes
    ----------
    name : str
        The registered name, e.g. ``"ddrm"``.
    solver : callable
        The solver, following :class:`opkit.solver.Solver`.
    accepts : tuple of str
        Operator kinds it takes, from :data:`opkit.solver.KINDS`.
    model : str
        The model it needs, from :data:`opkit.solver.MODEL_KINDS` (``"prior"``: an ε-prediction
        diffusion prior; ``"driftrec"``: a conditional score model; ``"none"``).
    plugin : str
        Name of the plugin that registered it.
    description : str
        One line for listings (defaults to the solver docstring's first line).
    oracle : callable or None
        ``oracle(x)``: a model of kind ``model`` that knows the clean images ``x`` (``(B, C, H, W)``
        in ``[0, 1]``), for :func:`opkit.testing.check_solver`.
    recovery_atol : float
        How close the solver comes to ``x`` with that oracle (0 for exact recovery up to rounding).
    check_options : dict
        Options :func:`opkit.testing.check_solver` passes to every call.
    generator_per_image : bool
        The solver also takes ``generator`` as a sequence, one generator per measurement of the
        batch (each image's result then depends on its own generator only); callers batch
        images with their own seeds only for such solvers.
    settings : callable or None
        ``settings(model, op) -> dict``: the keywords the solver runs with for this model (or
        ``None`` before it is loaded) and this operator when the caller chooses none -- its own
        defaults for the operator, then the settings the model ships for it (DDRM: the tuned
        ``ddrm_settings.json`` of a model folder). Callers such as the command line put the
        user's choices on top. ``None``: the defaults of the solver's signature.
    fits : callable or None
        ``fits(model, op) -> str``: why the loaded ``model`` cannot restore ``op`` (``""`` when it
        can), for solvers whose model learned particular degradations (a blind model trained on
        JPEG pairs restores no blur). Comparison tables skip such cells with that note. ``None``:
        every model fits every operator the solver accepts.
    """

    name: str
    solver: Callable[..., Any]
    accepts: tuple[str, ...]
    model: str
    plugin: str
    description: str
    oracle: Callable[[Any], Any] | None = None
    recovery_atol: float = 0.0
    check_options: dict[str, Any] = attrs.field(factory=dict)
    generator_per_image: bool = False
    settings: Callable[[Any, Operator[Any]], dict[str, Any]] | None = None
    fits: Callable[[Any, Operator[Any]], str] | None = None

    def misfit(self, model: Any, op: Operator[Any]) -> str:
        """Why ``model`` cannot restore ``op`` with this solver, or ``""`` (see :attr:`fits`).

        Parameters
        ----------
        model : object
            The loaded model.
        op : opkit.Operator
            The operator.

        Returns
        -------
        str
            The reason, ``""`` when the model fits (always, without :attr:`fits`).
        """
        return "" if self.fits is None else str(self.fits(model, op))

    def defaults(self, model: Any, op: Operator[Any]) -> dict[str, Any]:
        """The keywords a call runs with when the caller chooses none (see :attr:`settings`).

        Parameters
        ----------
        model : object or None
            The loaded model, or ``None`` before it is loaded.
        op : opkit.Operator
            The operator.

        Returns
        -------
        dict
            The contract's ``steps`` and ``num_samples`` and the solver's options, each with the
            value a call without it uses (the signature's default, or :attr:`settings`'s).
        """
        try:
            sig = inspect.signature(self.solver)
        except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
            return {}
        out = {
            p.name: p.default
            for p in sig.parameters.values()
            if p.name in ("steps", "num_samples") or p.name in self.options()
        }
        out = {k: v for k, v in out.items() if v is not inspect.Parameter.empty}
        if self.settings is not None:
            out.update(self.settings(model, op))
        return out

    def options(self) -> dict[str, Any]:
        """Keyword options of the solver beyond the common contract, with their defaults.

        Returns
        -------
        dict
            ``{name: default}``.
        """
        try:
            sig = inspect.signature(self.solver)
        except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
            return {}
        common = {"op", "y", "model", "steps", "num_samples", "generator", "callback", "progress"}
        common.add("return_info")
        return {
            p.name: p.default
            for p in sig.parameters.values()
            if p.name not in common and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }


def _first_doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _lookup(kind: str, table: Mapping[str, E], name: str) -> E:
    """``table[name]``, or ``KeyError`` naming the unknown ``kind`` and listing the known ones."""
    try:
        return table[name]
    except KeyError:
        avail = ", ".join(sorted(table)) or "(none)"
        raise KeyError(f"unknown {kind} {name!r}; available: {avail}") from None


class Registry:
    """The tables of operators and solvers, and the file formats, filled by plugins.

    Most users never build one: :func:`opkit.available` and :func:`opkit.create` use the
    process-wide :func:`default_registry`, filled from the ``opkit`` entry points on first use.
    """

    def __init__(self) -> None:
        self._operators: dict[str, OperatorEntry] = {}
        self._solvers: dict[str, SolverEntry] = {}
        self._plugins = _InLoadOrder(ENTRY_POINT_GROUP)
        self._plugins.add_hookspecs(HookSpecs)
        self._current_plugin = "<direct>"
        self.skipped: dict[str, str] = {}
        """Plugins that were skipped while loading, with the reason."""

    # -- operators ----------------------------------------------------------------------------
    def add_operator(
        self,
        name: str,
        factory: Callable[..., Operator[Any]],
        *,
        strategy: Any = None,
        description: str | None = None,
    ) -> None:
        """Register ``factory`` under ``name``.

        Parameters
        ----------
        name : str
            Operator name: lowercase letters, digits and underscores, starting with a letter.
        factory : callable
            ``factory(shape=(C, H, W), **params)`` returning an :class:`~opkit.Operator`.
        strategy : hypothesis.strategies.SearchStrategy, optional
            Draws keyword dicts for ``factory``, ``shape`` included (see
            :func:`opkit.testing.strategies.shapes`). Without one, the generic property suite
            draws only shapes and uses the factory's defaults.
        description : str, optional
            One line for listings; defaults to the first line of the factory's docstring.

        Raises
        ------
        DuplicateOperatorError
            If ``name`` is already registered (the message names both plugins).
        ValueError
            If ``name`` is not a valid identifier or ``factory`` is not callable.
        """
        self._check_new("operator", name, self._operators, DuplicateOperatorError)
        if not callable(factory):
            raise ValueError(f"factory for {name!r} must be callable, got {factory!r}")
        self._operators[name] = OperatorEntry(
            name=name,
            factory=factory,
            strategy=strategy,
            plugin=self._current_plugin,
            description=description if description is not None else _first_doc_line(factory),
        )

    def _check_new(self, kind: str, name: Any, table: Mapping[str, Any], duplicate: type[Exception]) -> None:
        """``ValueError`` for a name that is not a lowercase identifier; ``duplicate`` if taken."""
        if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
            raise ValueError(f"{kind} name must be a lowercase identifier, got {name!r}")
        if name in table:
            raise duplicate(
                f"{kind} {name!r} from plugin {self._current_plugin!r} is already registered "
                f"by plugin {table[name].plugin!r}"
            )

    def operator_names(self) -> list[str]:
        """Sorted names of the registered operators."""
        return sorted(self._operators)

    def operator_entry(self, name: str) -> OperatorEntry:
        """The :class:`OperatorEntry` of ``name``; ``KeyError`` listing the operators if unknown."""
        return _lookup("operator", self._operators, name)

    def operator_entries(self) -> list[OperatorEntry]:
        """Every operator entry, sorted by name."""
        return [self._operators[n] for n in self.operator_names()]

    def create(self, name: str, *, shape: Iterable[int], **params: Any) -> Operator[Any]:
        """Build the operator ``name`` for images of ``shape`` with ``params``.

        Parameters
        ----------
        name : str
            A registered operator name.
        shape : tuple of int
            Image shape ``(C, H, W)``.
        **params
            Operator parameters.

        Returns
        -------
        Operator
            The operator; its :attr:`~opkit.Operator.name` is set to ``name``.
        """
        op = self.operator_entry(name).factory(shape=tuple(shape), **params)
        if not isinstance(op, Operator):
            raise TypeError(f"factory of {name!r} returned {type(op).__name__}, not an opkit.Operator")
        op.name = name
        return op

    # -- solvers ------------------------------------------------------------------------------
    def add_solver(
        self,
        name: str,
        solver: Callable[..., Any],
        *,
        accepts: Iterable[str],
        model: str,
        description: str | None = None,
        oracle: Callable[[Any], Any] | None = None,
        recovery_atol: float = 0.0,
        check_options: dict[str, Any] | None = None,
        generator_per_image: bool = False,
        settings: Callable[[Any, Operator[Any]], dict[str, Any]] | None = None,
        fits: Callable[[Any, Operator[Any]], str] | None = None,
    ) -> None:
        """Register ``solver`` under ``name``.

        Parameters
        ----------
        name : str
            Solver name: lowercase letters, digits and underscores, starting with a letter.
        solver : callable
            Follows :class:`opkit.solver.Solver`.
        accepts : iterable of str
            Operator kinds it takes, from :data:`opkit.solver.KINDS`.
        model : str
            The model it needs, from :data:`opkit.solver.MODEL_KINDS`.
        description : str, optional
            One line for listings; defaults to the first line of the solver's docstring.
        oracle : callable, optional
            ``oracle(x)`` builds a model that knows the clean images ``x``, for
            :func:`opkit.testing.check_solver`.
        recovery_atol : float
            Largest error of the solver's result with that oracle (0: exact up to rounding).
        check_options : dict, optional
            Options for every call :func:`opkit.testing.check_solver` makes.
        generator_per_image : bool
            ``generator`` may also be a sequence of generators, one per measurement (see
            :class:`SolverEntry`).
        settings : callable, optional
            ``settings(model, op) -> dict``: the solver's settings for a model and an operator
            (see :class:`SolverEntry`).
        fits : callable, optional
            ``fits(model, op) -> str``: why a model cannot restore an operator, ``""`` when it
            can (see :class:`SolverEntry`).

        Raises
        ------
        DuplicateSolverError
            If ``name`` is already registered (the message names both plugins).
        ValueError
            For a bad name, a solver that is not callable, or unknown kinds.
        """
        from opkit.solver import KINDS, MODEL_KINDS

        self._check_new("solver", name, self._solvers, DuplicateSolverError)
        if not callable(solver):
            raise ValueError(f"solver {name!r} must be callable, got {solver!r}")
        kinds = tuple(accepts)
        if not kinds or any(k not in KINDS for k in kinds):
            raise ValueError(f"accepts of solver {name!r} must be kinds from {KINDS}, got {kinds!r}")
        if settings is not None and not callable(settings):
            raise ValueError(f"settings of solver {name!r} must be callable, got {settings!r}")
        if fits is not None and not callable(fits):
            raise ValueError(f"fits of solver {name!r} must be callable, got {fits!r}")
        if model not in MODEL_KINDS:
            raise ValueError(f"model of solver {name!r} must be one of {MODEL_KINDS}, got {model!r}")
        self._solvers[name] = SolverEntry(
            name=name,
            solver=solver,
            accepts=kinds,
            model=model,
            plugin=self._current_plugin,
            description=description if description is not None else _first_doc_line(solver),
            oracle=oracle,
            recovery_atol=float(recovery_atol),
            check_options=dict(check_options or {}),
            generator_per_image=bool(generator_per_image),
            settings=settings,
            fits=fits,
        )

    def solver_names(self) -> list[str]:
        """Sorted names of the registered solvers."""
        return sorted(self._solvers)

    def solver_entry(self, name: str) -> SolverEntry:
        """The :class:`SolverEntry` of ``name``; ``KeyError`` listing the solvers if unknown."""
        return _lookup("solver", self._solvers, name)

    def solver_entries(self) -> list[SolverEntry]:
        """Every solver entry, sorted by name."""
        return [self._solvers[n] for n in self.solver_names()]

    # -- file formats -------------------------------------------------------------------------
    def read_measurement(
        self, path: str | os.PathLike[str], max_pixels: int | None = None
    ) -> tuple[Operator[Any], Any] | None:
        """The operator and measurement a file format plugin reads from ``path``.

        Plugins' ``opkit_read_measurement(path, max_pixels)`` hooks are asked in load order
        (built-ins first); the first that returns a result wins (pluggy's ``firstresult``).

        Parameters
        ----------
        path : str or path-like
            The file.
        max_pixels : int, optional
            Refuse larger images (the readers raise ``ImageTooLargeError``).

        Returns
        -------
        (Operator, measurement) or None
            ``None`` when no plugin reads this file (read it as a plain image then).
        """
        got = self._plugins.hook.opkit_read_measurement(path=str(path), max_pixels=max_pixels)
        if got is None:
            return None
        op, y = got
        return op, y

    def write_measurement(
        self, op: Operator[Any], x: Any, suffix: str | None = None
    ) -> tuple[str, bytes] | None:
        """``op``'s measurement of the image ``x`` as the bytes of a file a format plugin writes.

        Plugins' ``opkit_write_measurement(op, x, suffix)`` hooks are asked in load order
        (built-ins first); the first that returns a result wins (pluggy's ``firstresult``).

        Parameters
        ----------
        op : Operator
            The operator (e.g. a ``jpeg`` one, whose plugin writes ``.jpg`` files).
        x : torch.Tensor
            One image ``(1, C, H, W)`` in ``[0, 1]``.
        suffix : str, optional
            The format asked for, e.g. ``".jpg"``; ``None``: the operator's own format.

        Returns
        -------
        (str, bytes) or None
            The file's suffix and contents; ``None`` when no plugin writes ``op`` in that format.
        """
        got = self._plugins.hook.opkit_write_measurement(op=op, x=x, suffix=suffix)
        if got is None:
            return None
        suffix_out, data = got
        return suffix_out, data

    # -- plugin loading -----------------------------------------------------------------------
    def register_plugin(self, plugin: object, name: str) -> bool:
        """Run one plugin's hooks (operators, solvers, file readers), all or nothing.

        A plugin implements at least one of the hooks of :class:`HookSpecs`. It joins the
        registry's plugin manager under ``name``; its registering hooks run once, now; its
        file-format hooks answer from now on. Any failure (a duplicate name included) removes
        everything it registered and the plugin itself.

        Parameters
        ----------
        plugin : module or object
            Holds the hook implementations.
        name : str
            The plugin's name, used in messages.

        Returns
        -------
        bool
            ``True`` if it registered; ``False`` if it failed and was skipped (a warning says why).
        """
        pm = self._plugins
        before = dict(self._operators), dict(self._solvers)
        joined = False
        self._current_plugin = name
        try:
            pm.register(plugin, name=name)
            joined = True
            if not pm.get_hookcallers(plugin):
                raise ValueError(f"it defines none of the hooks {', '.join(HOOKS)}")
            others = [p for p in pm.get_plugins() if p is not plugin]
            for hook in REGISTER_HOOKS:  # this plugin's implementations only
                pm.subset_hook_caller(hook, remove_plugins=others)(registry=self)
        except BaseException as exc:  # SystemExit and the like too: one plugin never ends the program
            self._operators, self._solvers = before
            if joined:
                pm.unregister(plugin)
            if isinstance(exc, KeyboardInterrupt):
                raise
            self._skip(name, f"failed to register: {one_line(exc, with_type=True)}")
            return False
        finally:
            self._current_plugin = "<direct>"
        return True

    def _skip(self, name: str, why: str) -> None:
        self.skipped[name] = why
        warnings.warn(f"opkit plugin {name!r} skipped: {why}", OpkitPluginWarning, stacklevel=3)

    def load_entry_points(
        self, group: str = ENTRY_POINT_GROUP, disabled: Iterable[str] | None = None
    ) -> None:
        """Load every plugin published under the entry-point ``group``.

        Parameters
        ----------
        group : str
            Entry-point group (``"opkit"``).
        disabled : iterable of str, optional
            Entry-point names to skip; defaults to the comma-separated list in the
            ``OPKIT_DISABLE_PLUGINS`` environment variable.
        """
        if disabled is None:
            disabled = [s.strip() for s in os.environ.get(DISABLE_ENV, "").split(",")]
        blocked = {d for d in disabled if d}
        eps = sorted(
            metadata.entry_points(group=group),
            key=lambda ep: (not ep.value.startswith(BUILTIN_PACKAGES), ep.name, ep.value),
        )
        seen: set[str] = set()
        for ep in eps:
            if ep.name in blocked:
                self.skipped[ep.name] = f"blocked by {DISABLE_ENV}"
                continue
            if ep.name in seen:  # the same distribution installed twice: load once
                continue
            seen.add(ep.name)
            try:
                plugin = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit and the like too
                self._skip(ep.name, f"failed to import {ep.value!r}: {one_line(exc, with_type=True)}")
                continue
            self.register_plugin(plugin, ep.name)


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry, loaded from the entry points on first use.

    Returns
    -------
    Registry
        The shared registry.
    """
    global _DEFAULT
    if _DEFAULT is None:
        reg = Registry()
        reg.load_entry_points()
        _DEFAULT = reg
    return _DEFAULT


def reload() -> Registry:
    """Forget the process-wide registry and load the entry points again.

    Returns
    -------
    Registry
        The freshly loaded registry.
    """
    global _DEFAULT
    _DEFAULT = None
    return default_registry()


def available() -> list[str]:
    """Sorted names of all registered operators.

    Returns
    -------
    list of str
        E.g. ``['blur', 'colorize', 'denoise', ...]``.
    """
    return default_registry().operator_names()


def create(name: str, *, shape: Iterable[int], **params: Any) -> Operator[Any]:
    """Create a registered operator.

    Parameters
    ----------
    name : str
        Registered name, see :func:`available`.
    shape : tuple of int
        Image shape ``(C, H, W)``.
    **params
        Operator parameters (see the operator's documentation).

    Returns
    -------
    Operator
        The operator.

    Raises
    ------
    KeyError
        For an unknown name; the message lists the available operators.
    ValueError
        For invalid parameters or a shape the operator cannot handle.

    Examples
    --------
    >>> import opkit
    >>> op = opkit.create("denoise", shape=(3, 8, 8))
    >>> op.shape
    (3, 8, 8)
    """
    return default_registry().create(name, shape=shape, **params)


def solver_names() -> list[str]:
    """Sorted names of all registered solvers.

    Returns
    -------
    list of str
        E.g. ``['ddrm', 'diffpir', 'dps', 'driftrec', 'pigdm']``.
    """
    return default_registry().solver_names()


def get_solver(name: str) -> Any:
    """The registered solver ``name`` (a callable following :class:`opkit.solver.Solver`).

    Parameters
    ----------
    name : str
        Registered name, see :func:`solver_names`.

    Returns
    -------
    callable
        The solver.

    Raises
    ------
    KeyError
        For an unknown name; the message lists the available solvers.
    """
    return default_registry().solver_entry(name).solver


def read_measurement(
    path: str | os.PathLike[str], max_pixels: int | None = None
) -> tuple[Operator[Any], Any] | None:
    """``(operator, measurement)`` from a file a format plugin owns (e.g. a JPEG file), or ``None``.

    Parameters
    ----------
    path : str or path-like
        The file.
    max_pixels : int, optional
        Refuse larger images.

    Returns
    -------
    (Operator, measurement) or None
        ``None`` when no plugin reads this file.
    """
    return default_registry().read_measurement(path, max_pixels)


def write_measurement(op: Operator[Any], x: Any, suffix: str | None = None) -> tuple[str, bytes] | None:
    """``(suffix, bytes)`` of a file holding ``op``'s measurement of ``x`` (e.g. a JPEG file), or ``None``.

    Parameters
    ----------
    op : Operator
        The operator.
    x : torch.Tensor
        One image ``(1, C, H, W)`` in ``[0, 1]``.
    suffix : str, optional
        The format asked for (``".jpg"``); ``None``: the operator's own format.

    Returns
    -------
    (str, bytes) or None
        ``None`` when no format plugin writes ``op`` (in that format).
    """
    return default_registry().write_measurement(op, x, suffix)
