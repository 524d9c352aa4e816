"""Messages: an error or any text written on one line, the way every part of opkit reports it.

Plugin warnings, read errors, the command line's ``opkit: ...`` lines and the solvers' file errors
all quote exceptions whose text may span several lines (a traceback-like message from a library,
a JSON decoder's context). :func:`one_line` is the one place that collapses such text.
"""

from __future__ import annotations

__all__ = ["one_line", "printable"]


def printable(text: str) -> str:
    """``text`` with the bytes of a file name that is not valid UTF-8 shown as ``\\xNN``.

    Python gives such a name's undecodable bytes as lone surrogates (``os.fsdecode``), which no
    terminal, log or UTF-8 file can take; this writes each as its byte's escape instead. Valid
    text is returned unchanged.

    Parameters
    ----------
    text : str
        Any text, e.g. a path.

    Returns
    -------
    str
        Text that encodes as UTF-8.

    Examples
    --------
    >>> import os
    >>> printable(os.fsdecode(b"caf\\xe9.png"))
    'caf\\\\xe9.png'
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


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
        One line, in UTF-8 (:func:`printable`). When the text is empty (e.g. ``SystemExit()``),
        the type's name alone.

    Examples
    --------
    >>> one_line(ValueError("bad\\n   value"))
    'bad value'
    >>> one_line(KeyError(), with_type=True)
    'KeyError'
    >>> one_line(OSError("no space left"), with_type=True)
    'OSError: no space left'
    """
    message = printable(" ".join(str(text).split()))
    name = type(text).__name__
    if not message:
        return name
    return f"{name}: {message}" if with_type else message
