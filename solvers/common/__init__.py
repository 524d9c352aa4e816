"""What the solvers share, in one place: running, noise, finiteness, measurements, training state and data.

* :mod:`solvers.common.run` -- the contract's checks, noise draws, the progress bar and
  :class:`SolveInfo` (solvers written as plugins may use these too);
* :mod:`solvers.common.finite` -- finite-input and finite-model-output checks;
* :mod:`solvers.common.measurements` -- a solver's measurement, checked, and its spectral form;
* :mod:`solvers.common.state` -- EMA, the resumable training-state files and the weights file name;
* :mod:`solvers.common.data` -- test photographs, dead-leaves images and random training crops.

The names of :mod:`solvers.common.run` are re-exported here (``solvers.common.normal_`` and so on),
as they were before the package was split.
"""

from solvers.common import data, finite, measurements, state
from solvers.common.run import (
    Progress,
    SolveInfo,
    callback_arity,
    check_batch,
    check_common,
    check_operator_kind,
    normal_,
    randn,
    repeat_rows,
)

__all__ = [
    "Progress",
    "SolveInfo",
    "callback_arity",
    "check_batch",
    "check_common",
    "check_operator_kind",
    "data",
    "finite",
    "measurements",
    "normal_",
    "randn",
    "repeat_rows",
    "state",
]
