"""Safe file writing: the one atomic writer of the package, and checks of an output path.

Every file the package writes, images, CSV tables, JSON files, plots, priors, model folders,
training states and converted or downloaded checkpoints, goes through one writer in two forms:

* :func:`atomic_path` for a file (and :func:`write_atomic`, its shortcut for bytes or text),
* :func:`atomic_directory` for a folder of files.

Both yield a temporary path beside the target (``.NAME.XXXXXXXX.part.SUFFIX``, hidden, created
empty), which the block fills. When the block completes, the data is flushed to disk and the
temporary path takes the target's place in one step: a rename for a file, a rename or an exchange
of the two folders for a folder. When the block raises (``KeyboardInterrupt`` included), the
temporary path is removed and the target is untouched. So a target is always either the old
complete file (or folder) or the new one, never a mixture; a process killed while writing leaves
the old target as it was, plus at most a hidden ``.part`` leftover, which no later run touches
(its name could be a user's own file's).

:func:`check_output` checks an output path before any work starts, :func:`check_folder` a
folder to write into; :func:`same_file` tells whether two paths name one file.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from opkit.messages import one_line

__all__ = [
    "PathLike",
    "atomic_directory",
    "atomic_path",
    "check_folder",
    "check_output",
    "same_file",
    "write_atomic",
]

#: A path given as a string or a path-like object.
PathLike = str | os.PathLike[str]


# ----------------------------------------------------------------------------------------------
# the atomic writer
# ----------------------------------------------------------------------------------------------
def _temp_beside(target: Path, *, directory: bool = False) -> Path:
    """Create (exclusively) a hidden temporary file or folder beside ``target``, keeping its suffix."""
    stem = target.name[: -len(target.suffix)] if target.suffix else target.name
    for _ in range(100):
        tmp = target.with_name(f".{stem}.{secrets.token_hex(4)}.part{target.suffix}")
        try:
            if directory:
                tmp.mkdir()
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"cannot create a temporary file beside {target}")  # pragma: no cover


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def atomic_path(path: PathLike) -> contextlib.AbstractContextManager[Path]:
    """Write a file atomically: yield a temporary path beside ``path``, then rename it onto ``path``.

    The block writes the whole file to the yielded path, ``.NAME.XXXXXXXX.part.SUFFIX`` (created
    empty; it keeps ``path``'s suffix, so writers that pick the format from it work). When the
    block succeeds, the file is flushed to disk and renamed onto ``path`` in one step
    (:func:`os.replace`); when it raises, a :exc:`KeyboardInterrupt` included, the temporary file
    is removed and ``path`` is untouched.

    Parameters
    ----------
    path : str or path-like
        The target file; its folder must exist.

    Returns
    -------
    contextlib.AbstractContextManager of pathlib.Path
        Use it in a ``with`` statement; it gives the temporary file to write.

    Raises
    ------
    IsADirectoryError
        If ``path`` is a folder (at once, before any writing).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "hello.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> target.read_text()
    'hello'
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a folder, not a file")
    return _written_beside(target, directory=False)


@contextlib.contextmanager
def _written_beside(target: Path, *, directory: bool) -> Iterator[Path]:
    """The one writer: a temporary file (or folder) beside ``target``, put in its place when complete."""
    tmp = _temp_beside(target, directory=directory)
    try:
        yield tmp
        files = sorted(tmp.rglob("*")) if directory else [tmp]
        for f in files:
            if f.is_file() and not f.is_symlink():
                _fsync(f)
        if not directory:
            os.replace(tmp, target)
        elif target.is_dir():
            _replace_directory(tmp, target)
        else:
            os.rename(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def write_atomic(path: PathLike, data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` atomically (through :func:`atomic_path`).

    Parameters
    ----------
    path : str or path-like
        The target; its folder must exist.
    data : bytes or str
        The whole content; text is encoded with ``encoding``.
    encoding : str
        Encoding of text.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    target = Path(path)
    raw = data.encode(encoding) if isinstance(data, str) else bytes(data)
    with atomic_path(target) as tmp:
        tmp.write_bytes(raw)
    return target


#: ``renameat2``'s flag that exchanges two paths in one step (Linux 3.15 and later).
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@functools.cache
def _renameat2() -> Any:
    """The C library's ``renameat2``, or ``None`` (not Linux, or an old C library)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Exchange two existing paths in one step; ``False`` where the system cannot (nothing changed).

    Linux's ``renameat2(..., RENAME_EXCHANGE)``, through the C library; other systems, older
    kernels and file systems without it answer ``False``.
    """
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, f"cannot exchange {a} and {b}: {os.strerror(err)}")


def _replace_directory(staging: Path, target: Path) -> None:
    """Put the complete folder ``staging`` in the place of the existing folder ``target``.

    One exchange where the system has it (the old folder then sits at ``staging`` and is
    removed); elsewhere two renames, the old folder set aside under a temporary name first and
    put back if the second rename fails.
    """
    if not _exchange(staging, target):
        old = _temp_beside(target, directory=True)
        os.replace(target, old)  # onto the empty folder just made: a rename
        try:
            os.rename(staging, target)
        except BaseException:
            os.rename(old, target)
            raise
        staging = old
    _remove(staging)


def atomic_directory(path: PathLike) -> contextlib.AbstractContextManager[Path]:
    """Write a folder atomically: yield a staging folder beside ``path``, then swap it in whole.

    The block writes every file of the folder into the yielded staging folder,
    ``.NAME.XXXXXXXX.part`` (created empty, beside ``path``, whose parent must exist). When the
    block succeeds, every file is flushed to disk and the staging folder takes ``path``'s place in
    one step: a rename for a new ``path``; for an existing folder, the two folders are exchanged
    (Linux ``renameat2``; elsewhere two renames, the old folder moved aside first) and the old one
    is removed. Files of the old folder that the block did not write are *not* kept: the folder
    is replaced whole. When the block raises, a :exc:`KeyboardInterrupt` included, the staging
    folder is removed and ``path`` is untouched.

    Parameters
    ----------
    path : str or path-like
        The target folder.

    Returns
    -------
    contextlib.AbstractContextManager of pathlib.Path
        For a ``with`` statement, giving the staging folder.

    Raises
    ------
    NotADirectoryError
        If ``path`` exists and is not a folder (at once).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "model"
    >>> with atomic_directory(target) as tmp:
    ...     _ = (tmp / "config.json").write_text("{}")
    >>> sorted(p.name for p in target.iterdir())
    ['config.json']
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a folder")
    return _written_beside(target, directory=True)


# ----------------------------------------------------------------------------------------------
# output checks
# ----------------------------------------------------------------------------------------------
def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether two paths name the same file: one path, a symbolic link or a hard link.

    Parameters
    ----------
    a, b : str or path-like
        Paths; either may not exist.

    Returns
    -------
    bool
        ``True`` when both exist and are the same file (same device and inode), or when neither
        exists and both resolve to the same path.
    """
    pa, pb = Path(a), Path(b)
    try:
        return os.path.samefile(pa, pb)
    except OSError:
        return pa.resolve() == pb.resolve()


def check_output(
    path: PathLike,
    *,
    inputs: Iterable[PathLike] = (),
    protected: Iterable[PathLike] = (),
    suffixes: Iterable[str] | None = None,
    force: bool = False,
) -> Path:
    """Check, before any work starts, that a file can be written at ``path`` without losing data.

    In order: the suffix is one of ``suffixes`` (when given); the folder exists and is a folder;
    ``path`` is not a folder; it is none of ``inputs`` (the same path, a symbolic link or a hard
    link to one: :func:`same_file`); it lies in none of the ``protected`` folders; it does not
    exist unless ``force``; the folder accepts a new file (a probe file is created and removed).

    Parameters
    ----------
    path : str or path-like
        The output file.
    inputs : iterable of path
        Files the command reads; never overwritten, even with ``force``. (Two outputs of one
        command are compared with :func:`same_file`.)
    protected : iterable of path
        Folders nothing may be written into (e.g. a model folder).
    suffixes : iterable of str, optional
        Accepted lower-case suffixes, with the dot.
    force : bool
        Allow replacing an existing file.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``force`` is false.
    ValueError
        For every other problem; the message names it.
    """
    p = Path(path)
    if suffixes is not None:
        allowed = sorted(set(suffixes))
        if p.suffix.lower() not in allowed:
            what = f"an unknown suffix {p.suffix!r}" if p.suffix else "no suffix"
            raise ValueError(f"{p}: {what}; use one of {', '.join(allowed)}")
    folder = p.parent
    if not folder.exists():
        raise ValueError(f"{p}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"{p}: {folder} is not a folder")
    if p.is_dir():
        raise ValueError(f"{p}: is a folder")
    for inp in inputs:
        if same_file(p, inp):
            raise ValueError(f"{p}: refusing to overwrite the input {inp}")
    for folder_ in protected:
        if p.resolve().is_relative_to(Path(folder_).resolve()):
            raise ValueError(f"{p}: refusing to write into {folder_}")
    if p.exists() and not force:
        raise FileExistsError(f"{p} exists")
    try:
        _remove(_temp_beside(p))
    except OSError as exc:
        raise ValueError(f"{p}: cannot write into {folder}: {exc.strerror or one_line(exc)}") from None
    return p


def check_folder(path: PathLike) -> Path:
    """Check, before any work starts, that files can be written into the folder ``path``.

    For an existing folder, a probe file is created in it and removed; for a missing one, the
    same is done in its parent, which must exist (the folder itself is created later, by the
    command).

    Parameters
    ----------
    path : str or path-like
        The folder.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If ``path`` is a file, its parent does not exist, or the folder accepts no new file; the
        message names the folder and the reason.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{p} is not a folder")
    where = p if p.is_dir() else p.absolute().parent
    if not where.is_dir():
        raise ValueError(f"{p}: the folder {where} does not exist")
    try:
        _remove(_temp_beside(where / ".opkit-probe"))
    except OSError as exc:
        raise ValueError(f"cannot write into {where}: {exc.strerror or one_line(exc)}") from None
    return p
