"""opkit: typed degradation operators for image inverse problems.

Every degradation is an :class:`Operator` with a forward map ``H`` and a pseudo-inverse
``H†``; linear ones also expose their singular value decomposition, applied implicitly.
Operators come from plugins registered under the ``opkit`` entry-point group.

>>> import opkit
>>> "denoise" in opkit.available()
True
"""

from opkit import solver, testing
from opkit.operators import (
    ComposedOperator,
    DiagonalOperator,
    EncodeDecodeOperator,
    LinearOperator,
    Operator,
    SVDOperator,
    check_shape,
)
from opkit.registry import (
    DuplicateOperatorError,
    DuplicateSolverError,
    OperatorEntry,
    OpkitPluginWarning,
    Registry,
    SolverEntry,
    available,
    create,
    default_registry,
    get_solver,
    hookimpl,
    read_measurement,
    reload,
    solver_names,
    write_measurement,
)
from opkit.solver import Solver, operator_kind

__version__ = "0.1.0"

__all__ = [
    "ComposedOperator",
    "DiagonalOperator",
    "DuplicateOperatorError",
    "DuplicateSolverError",
    "EncodeDecodeOperator",
    "LinearOperator",
    "Operator",
    "OperatorEntry",
    "OpkitPluginWarning",
    "Registry",
    "SVDOperator",
    "Solver",
    "SolverEntry",
    "__version__",
    "available",
    "check_shape",
    "create",
    "default_registry",
    "get_solver",
    "hookimpl",
    "operator_kind",
    "read_measurement",
    "reload",
    "solver",
    "solver_names",
    "testing",
    "write_measurement",
]
