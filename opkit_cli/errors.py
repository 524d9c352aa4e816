"""Errors and exit codes of the ``opkit`` command line: the leaf every other module imports.

Every error ends a command with one line on stderr starting with ``opkit:`` (:func:`fail`), and
one of the exit codes below.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any, NoReturn

from opkit.messages import one_line

#: Exit status of a command that succeeded.
EXIT_OK = 0
#: Exit status of a command that failed (one ``opkit: ...`` line on stderr says why).
EXIT_ERROR = 1
#: Exit status of a command line argparse refuses (a bad option or value).
EXIT_USAGE = 2
#: Exit status after Ctrl-C (128 + SIGINT); partial files are removed.
EXIT_INTERRUPTED = 130


def fail(message: object) -> NoReturn:
    """Stop the command with ``opkit: MESSAGE`` on stderr and exit status :data:`EXIT_ERROR`.

    Parameters
    ----------
    message : str or Exception
        What went wrong, naming the file, option or value.

    Raises
    ------
    SystemExit
        Always.
    """
    raise SystemExit(f"opkit: {one_line(message)}")


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show every warning as one ``opkit: warning: ...`` line on stderr while the block runs."""

    def show(
        message: Any, category: Any, filename: Any, lineno: Any, file: Any = None, line: Any = None
    ) -> None:
        print(f"opkit: warning: {one_line(message)}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def reason(exc: BaseException) -> str:
    """Why one image of a many-image run failed, for its ``opkit: NAME: why`` line.

    The message of a :func:`fail` exit (without ``opkit:``), an ``OSError``'s reason and file,
    or any other error's type and message.

    Parameters
    ----------
    exc : BaseException
        What the image raised.

    Returns
    -------
    str
        One line.
    """
    if isinstance(exc, SystemExit):
        return one_line(str(exc.code or "failed")).removeprefix("opkit: ")
    if isinstance(exc, OSError) and exc.strerror:
        return one_line(f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror)
    return f"{type(exc).__name__}: {one_line(exc)}"
