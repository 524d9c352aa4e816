"""Many images at once: inputs, per-image seeds, batches, shards, ranks under ``torchrun``, devices.

``opkit restore`` and ``opkit eval`` share this machinery:

* :func:`expand_inputs` turns files, folders and glob patterns into one sorted list of files;
* :func:`image_seed` derives each image's seed from ``--seed`` and its file name, so an image's
  result does not depend on the order, the batch or the shard it is restored in;
* :func:`make_batches` groups images of one size into batches of at most ``--batch``; the batches
  (not the images) are dealt to the shards, so every image is restored in the same batch whatever
  the number of processes, and a sharded run writes the very bytes a single process writes;
* :class:`Ranks` is this process's place: ``--shard i/n`` and the ranks of ``torchrun``
  (``torch.distributed``, gloo on CPU and NCCL on GPU) compose into one shard of ``n × world``;
* :func:`resolve_device` reads ``--device auto|cpu|cuda[:i]`` (``auto``: this rank's GPU when
  there is one, else the CPU).
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import io
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from opkit.files import write_atomic
from opkit.messages import printable
from opkit_cli.errors import EXIT_ERROR, EXIT_OK, fail
from opkit_cli.io import IMAGE_SUFFIXES


def shard_spec(text: str) -> tuple[int, int]:
    """argparse type: ``i/n`` with ``0 <= i < n`` (shard ``i`` of ``n``)."""
    i, sep, n = text.partition("/")
    try:
        a, b = int(i), int(n)
    except ValueError:
        a, b = -1, 0
    if not sep or b < 1 or not 0 <= a < b:
        raise argparse.ArgumentTypeError(f"expected i/n with 0 <= i < n, got {text!r}")
    return a, b


def is_many(specs: Sequence[str]) -> bool:
    """Whether the inputs name many images (several, a folder or a glob) rather than one file."""
    if len(specs) != 1:
        return True
    p = Path(specs[0])
    return p.is_dir() or (not p.exists() and glob.has_magic(specs[0]))


def expand_inputs(specs: Sequence[str]) -> list[Path]:
    """The image files named by files, folders (their images, not recursive) and glob patterns.

    Parameters
    ----------
    specs : sequence of str
        Paths and patterns, as given on the command line.

    Returns
    -------
    list of pathlib.Path
        Every file once, sorted by name (then path): the order never depends on the shell or the
        file system. A symbolic link is an input of its own, under its own name, beside the file
        it points to (``l.png -> a.png`` gives both ``l.png`` and ``a.png``); a path named twice
        (a folder and one of its files) counts once. A broken link with an image suffix is kept,
        so that it is reported as a file that cannot be read.
    """
    files: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = [
                q
                for q in p.iterdir()
                if q.suffix.lower() in IMAGE_SUFFIXES and (q.is_file() or (q.is_symlink() and not q.exists()))
            ]
            if not found:
                fail(f"{p} is a folder with no images ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif p.exists():
            files.append(p)
        elif glob.has_magic(spec):
            found = [Path(m) for m in glob.glob(spec)]
            found = [q for q in found if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES]
            if not found:
                fail(f"no images match {spec}")
            files += found
        else:
            fail(f"no such file: {spec}")
    unique = {os.path.abspath(f): f for f in files}  # links are not resolved: each name is an input
    return sorted(unique.values(), key=lambda f: (f.name, str(f)))


def check_unique_stems(files: Sequence[Path]) -> None:
    """Refuse inputs whose outputs ``<stem>.png`` would collide (``a.png`` and ``a.jpg``)."""
    counts = Counter(f.stem for f in files)
    clash = sorted(stem for stem, n in counts.items() if n > 1)
    if clash:
        names = ", ".join(str(f) for f in files if f.stem in clash[:3])
        fail(f"several inputs would write the same output <stem>.png: {names}")


def image_seed(seed: int, name: str) -> int:
    """The seed of the image called ``name`` in a run with ``--seed seed``.

    The first 63 bits of SHA-256 of ``"{seed}/{name}"`` (the name's bytes as the file system
    holds them, so that a name that is not valid UTF-8 has a seed too): the same for an image
    whatever the other images, their order, the batch or the shard.

    Parameters
    ----------
    seed : int
        ``--seed``.
    name : str
        The image's file name (without its folder).

    Returns
    -------
    int
        A seed for :meth:`torch.Generator.manual_seed`.
    """
    digest = hashlib.sha256(f"{seed}/".encode() + os.fsencode(name)).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def image_key(path: Path) -> Hashable:
    """The batching key of an image file: ``(width, height, grey)`` from its header, without decoding.

    A file whose header cannot be read gets a key of its own (it is reported when it is read).
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            grey = im.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F", "LA")
            return (im.size, grey)
    except Exception:  # a damaged file: alone in its batch, reported later
        return ("unreadable", str(path))


def make_batches(
    files: Sequence[Path], size: int, key: Callable[[Path], Hashable] = image_key
) -> list[list[Path]]:
    """Batches of at most ``size`` images with the same key, in the order of ``files``.

    Parameters
    ----------
    files : sequence of pathlib.Path
        The images, sorted (:func:`expand_inputs`).
    size : int
        ``--batch``.
    key : callable
        Images with equal keys may share a batch (:func:`image_key`: same size and channels).

    Returns
    -------
    list of list of pathlib.Path
        Deterministic for given files and size.
    """
    groups: dict[Hashable, list[Path]] = {}  # in the order of their first image
    for f in files:
        groups.setdefault(key(f), []).append(f)
    return [group[i : i + size] for group in groups.values() for i in range(0, len(group), size)]


@dataclass
class Ranks:
    """This process's place in a run: shard ``index`` of ``count``, and its ``torchrun`` rank.

    Attributes
    ----------
    rank, world, local_rank : int
        From ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); ``0, 1, 0`` alone.
    shard : tuple of int
        ``--shard i/n`` (``(0, 1)`` when not given).
    distributed : bool
        ``torch.distributed`` is initialised (``world > 1``).
    peers : list of (str, int)
        The host name and process id of every rank, in rank order (filled when the group starts).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    shard: tuple[int, int] = (0, 1)
    distributed: bool = False
    peers: list[tuple[str, int]] = field(default_factory=list)

    @property
    def index(self) -> int:
        """The shard this process takes, of :attr:`count`."""
        return self.shard[0] * self.world + self.rank

    @property
    def count(self) -> int:
        """The number of shards: ``n × world``."""
        return self.shard[1] * self.world

    @property
    def main(self) -> bool:
        """Rank 0: the process that prints summaries and gathers the rows."""
        return self.rank == 0

    def take(self, items: Sequence[Any]) -> list[Any]:
        """This shard's items: every :attr:`count`-th from :attr:`index` (deterministic)."""
        return list(items[self.index :: self.count])

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` in rank order (``[obj]`` alone)."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def close(self, *, barrier: bool = True) -> None:
        """Leave the process group (after a last barrier, unless this rank is failing)."""
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                if barrier:
                    dist.barrier()
                dist.destroy_process_group()
            self.distributed = False

    def outlive_peers(self, timeout: float = 30.0) -> None:
        """On rank 0, before it exits with a failure: wait until the other ranks of this machine
        have exited (they exit 0 once their work is gathered).

        torchrun stops the workers that are still running when one fails, and lists them as
        failed (killed by ``SIGTERM``) in its report; waiting for them leaves that report with
        rank 0 alone, whose exit status is the run's. Only processes of this machine can be
        watched (``/proc``; elsewhere nothing is waited for), and never longer than ``timeout``.

        Parameters
        ----------
        timeout : float
            Seconds to wait at most.
        """
        host = socket.gethostname()
        pids = [pid for h, pid in self.peers if h == host and pid != os.getpid()]
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if _running(pid)]
            if pids:
                time.sleep(0.02)


def _running(pid: int) -> bool:
    """Whether the process ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


#: Device types the command line runs on (``--device``).
DEVICE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(spec: str | None, local_rank: int = 0) -> str:
    """The device of ``--device``: ``auto`` (or none) is this rank's GPU when CUDA is there, else cpu.

    ``cuda`` without an index is ``cuda:LOCAL_RANK`` under ``torchrun``. Every other answer is a
    one-line error naming the flag: a device this machine lacks (``cuda`` without a GPU, an index
    past the last GPU, ``mps`` off a Mac), a device type opkit does not run on (``meta``, which
    holds no data, ``xla``, ...) and a name that is no device at all (``tpu``).

    Parameters
    ----------
    spec : str or None
        ``auto``, ``cpu``, ``cuda``, ``cuda:i``, ``mps``.
    local_rank : int
        The rank on this machine.

    Returns
    -------
    str
        A device string for :func:`torch.device`.
    """
    if spec in (None, "auto"):
        return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    choices = "use auto, cpu, cuda, cuda:INDEX or mps"
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        fail(f"--device {spec}: not a device; {choices}")
    if dev.type not in DEVICE_TYPES:
        fail(f"--device {spec}: opkit does not run on {dev.type} devices; {choices}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            fail(f"--device {spec}: CUDA is not available on this machine")
        index = local_rank if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            fail(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return f"cuda:{index}"
    if dev.type == "mps" and not torch.backends.mps.is_available():
        fail(f"--device {spec}: MPS is not available on this machine")
    return str(dev)


def planned_ranks(args: argparse.Namespace) -> Ranks:
    """This process's :class:`Ranks` from ``torchrun``'s environment and ``--shard``, without joining
    the process group: what :meth:`Ranks.take` gives it is known before any work, for checks.

    Parameters
    ----------
    args : argparse.Namespace
        ``shard``.

    Returns
    -------
    Ranks
        Not :attr:`~Ranks.distributed`.
    """
    return Ranks(
        rank=_env_int("RANK", 0),
        world=_env_int("WORLD_SIZE", 1),
        local_rank=_env_int("LOCAL_RANK", 0),
        shard=getattr(args, "shard", None) or (0, 1),
    )


def start_ranks(args: argparse.Namespace) -> Ranks:
    """This process's :class:`Ranks`, with ``args.device`` resolved; joins the ``torchrun`` group.

    Under ``torchrun`` (``WORLD_SIZE > 1``) the process group starts from torchrun's environment
    (``env://``), with NCCL when the device is a GPU and gloo otherwise.
    """
    ranks = planned_ranks(args)
    args.device = resolve_device(getattr(args, "device", None), ranks.local_rank)
    if ranks.world > 1:
        import torch.distributed as dist

        cuda = args.device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(torch.device(args.device))
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if cuda else "gloo")
        ranks.distributed = True
        ranks.peers = ranks.gather((socket.gethostname(), os.getpid()))
    return ranks


@contextmanager
def running(args: argparse.Namespace) -> Iterator[Ranks]:
    """This process's :class:`Ranks` for the duration of a many-image run (:func:`start_ranks`).

    On success every rank meets at a last barrier and leaves the process group; on any failure
    (an error, Ctrl-C) the failing rank leaves at once, so that the others keep their finished
    work and nobody waits for it.

    Parameters
    ----------
    args : argparse.Namespace
        ``device`` and ``shard`` (see :func:`start_ranks`).

    Yields
    ------
    Ranks
        This process's place in the run.
    """
    ranks = start_ranks(args)
    try:
        yield ranks
    except BaseException:
        ranks.close(barrier=False)
        raise
    ranks.close()


def finish_scores(
    args: argparse.Namespace,
    ranks: Ranks,
    failed: Sequence[tuple[str, str]],
    complete: bool,
    *,
    unit: str,
    product: str,
    fields: Sequence[str],
    rows: Iterable[dict[str, Any]],
) -> int | None:
    """The end every resumable scoring run shares (``opkit eval`` and its task table).

    Failures are listed once on stderr and the CSV is not written (exit 1; a rerun scores only
    what is missing); a shard that is not the last to finish says so (exit 0); otherwise
    ``--csv`` is written atomically and ``None`` lets the caller go on (its plot).

    Parameters
    ----------
    args : argparse.Namespace
        The command's arguments (``csv``).
    ranks : Ranks
        This process's ranks (a failing rank outlives its peers to report).
    failed : sequence of tuple
        What failed on every rank (:func:`gathered`): pairs of a file name and the reason.
    complete : bool
        Whether every shard's work is done.
    unit : str
        What failed: ``"image"`` or ``"cell"``.
    product : str
        What the last shard writes: ``"the CSV"`` or ``"the table"``.
    fields : sequence of str
        The CSV's columns.
    rows : iterable of dict
        The CSV's rows.

    Returns
    -------
    int or None
        The exit status to return now, or ``None``.
    """
    if failed:
        for name, why in failed:
            print(f"opkit: {printable(name)}: {why}", file=sys.stderr)
        kept = f"; {args.csv} is not written, a rerun scores only what is missing" if args.csv else ""
        print(f"opkit: {len(failed)} {unit}(s) failed (listed above){kept}", file=sys.stderr)
        ranks.outlive_peers()
        return EXIT_ERROR
    if not complete:
        print(
            f"shard {ranks.shard[0]}/{ranks.shard[1]} done; {product} is written when every shard is "
            "done (or rerun without --shard to gather)",
            file=sys.stderr,
        )
        return EXIT_OK
    if args.csv:
        buf = io.StringIO(newline="")
        writer = csv.DictWriter(buf, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(args.csv, buf.getvalue())
        print(f"wrote {args.csv}", file=sys.stderr)
    return None


def gathered(
    everyone: Sequence[tuple[int, list[Any], list[tuple[str, str]], dict[str, int]]],
) -> tuple[int, list[Any], list[tuple[str, str]], Counter[str]]:
    """Every rank's ``(resumed, rows, failed, part states)`` of a scoring run, summed on rank 0.

    Parameters
    ----------
    everyone : sequence of tuple
        What :meth:`Ranks.gather` returned: one ``(resumed count, rows, failures, state
        counts)`` per rank.

    Returns
    -------
    tuple
        The resumed count, all rows in rank order, the failures sorted, the state counts.
    """
    resumed = sum(n for n, _, _, _ in everyone)
    rows = [r for _, rs, _, _ in everyone for r in rs]
    failed = sorted(f for _, _, fs, _ in everyone for f in fs)
    counts = sum((Counter(c) for _, _, _, c in everyone), Counter[str]())
    return resumed, rows, failed, counts
