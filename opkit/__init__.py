"""opkit: typed degradation operators for image inverse problems.

Every degradation is an :class:`Operator` with a forward map ``H`` and a pseudo-inverse
``H†``; linear ones also expose their singular value decomposition, applied implicitly.
Operators come from plugins registered under the ``opkit`` entry-point group.

>>> import opkit
>>> "denoise" in opkit.available()
True
"""

from opkit import testing
from opkit.operators import (
    ComposedOperator,
    EncodeDecodeOperator,
    LinearOperator,
    Operator,
    SVDOperator,
    check_shape,
)
from opkit.registry import (
    DuplicateOperatorError,
    OperatorEntry,
    OpkitPluginWarning,
    Registry,
    available,
    create,
    default_registry,
    hookimpl,
    reload,
)

__version__ = "0.1.0"

__all__ = [
    "ComposedOperator",
    "DuplicateOperatorError",
    "EncodeDecodeOperator",
    "LinearOperator",
    "Operator",
    "OperatorEntry",
    "OpkitPluginWarning",
    "Registry",
    "SVDOperator",
    "__version__",
    "available",
    "check_shape",
    "create",
    "default_registry",
    "hookimpl",
    "reload",
    "testing",
]
