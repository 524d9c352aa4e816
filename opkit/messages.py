"""Messages: an error or any text written on one line, the way every part of opkit reports it.

Plugin warnings, read errors, the command line's ``opkit: ...`` lines and the solvers' file errors
all quote exceptions whose text may span several lines (a traceback-like message from a library,
a JSON decoder's context). :func:`one_line` is the one place that collapses such text.
"""

from __future__ import annotations

__all__ = ["one_line"]


def one_line(text: object, *, with_type: bool = False) -> str:
    """``text`` (or an exception's message) with its whitespace, newlines included, collapsed.

    Parameters
    ----------
    text : object
        A string, an exception, or anything with a ``str``.
    with_type : bool
        Prefix the type's name, ``"ValueError: message"`` (meant for exceptions).

    Returns
    -------
    str
        One line. When the text is empty (e.g. ``SystemExit()``), the type's name alone.

    Examples
    --------
    >>> one_line(ValueError("bad\\n   value"))
    'bad value'
    >>> one_line(KeyError(), with_type=True)
    'KeyError'
    >>> one_line(OSError("no space left"), with_type=True)
    'OSError: no space left'
    """
    message = " ".join(str(text).split())
    name = type(text).__name__
    if not message:
        return name
    return f"{name}: {message}" if with_type else message
