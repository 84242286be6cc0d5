"""The edges of incremental checkpoints (:mod:`ndckpt._incremental`): the manager's argument
checks, and what ``ndckpt verify`` and ``ndckpt info`` say about a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._incremental import IncrementalStore, read_manifest, spot_hash
from ._incrload import array_bytes, checked_arrays
from .api import verify as verify_file
from .errors import InvalidArgumentError

__all__ = ["check_unchanged", "describe", "make_store", "verify_manifest"]


def make_store(directory: Path, incremental: Any, full_every: Any) -> IncrementalStore | None:
    """The store of a manager's ``incremental`` / ``full_every`` arguments (None: whole checkpoints);
    InvalidArgumentError for bad values or ``full_every`` without ``incremental``."""
    if not isinstance(incremental, bool):
        raise InvalidArgumentError(f"incremental must be a bool, got {incremental!r}")
    if full_every is not None and (isinstance(full_every, bool) or not isinstance(full_every, int) or full_every < 1):
        raise InvalidArgumentError(f"full_every must be None or a positive int, got {full_every!r}")
    if full_every is not None and not incremental:
        raise InvalidArgumentError("full_every applies to incremental=True managers only")
    return IncrementalStore(directory, full_every) if incremental else None


def check_unchanged(unchanged: Any, incremental: bool) -> tuple[str, ...]:
    """A save's ``unchanged`` argument as a tuple of names; InvalidArgumentError if it is malformed
    or given to a manager that is not incremental."""
    if unchanged is None:
        return ()
    if not incremental:
        raise InvalidArgumentError("unchanged= applies to incremental=True managers only")
    if isinstance(unchanged, str) or not all(isinstance(n, str) for n in unchanged):
        raise InvalidArgumentError(f"unchanged must be a sequence of array names, got {unchanged!r}")
    return tuple(unchanged)


def verify_manifest(path: Path, threads: int | None = None) -> list[str]:
    """Check everything the checkpoint at ``path`` references; return a line per problem (empty: sound).

    Every referenced pack is verified as an ndckpt file (all frame checksums),
    every piece must exist with its recorded size and XXH64, and every array
    that a save was told was unchanged must match the spot check recorded
    from the caller's data (a false hint). FormatError / CheckptIOError only
    when the manifest itself cannot be read.
    """
    problems: list[str] = []
    man = read_manifest(path)
    for pack in dict.fromkeys(n for n, _ in man.packs):
        try:
            verify_file(path.parent / pack, threads=threads)
        except Exception as err:  # every failure is a finding
            problems.append(f"pack {pack}: {err}")
    if problems:
        return problems
    for e, a in checked_arrays(path, man):
        if isinstance(a, Exception):
            problems.append(str(a))
        elif e.spot is not None and spot_hash(array_bytes(a, e.order)) != e.spot:
            problems.append(
                f"array {e.name!r} was declared unchanged when this step was saved, but the data it references "
                "differs from the caller's (a false 'unchanged' hint)"
            )
    return problems


def describe(path: Path) -> dict[str, Any]:
    """What the incremental checkpoint at ``path`` holds: per array, bytes written by its own save
    (``new``) and bytes referenced from earlier saves' packs (``shared``); FormatError if no manifest."""
    man = read_manifest(path)
    rows = []
    for e in man.arrays:
        new = sum(n for pi, _, _, n in man.refs(e) if pi == man.own)
        rows.append(
            {
                "name": e.name,
                "dtype": str(e.dtype),
                "shape": list(e.shape),
                "nbytes": e.nbytes,
                "pieces": e.count,
                "new": new,
                "shared": e.nbytes - new,
                "hinted": e.spot is not None,
            }
        )
    return {
        "seq": man.seq,
        "packs": [n for n, _ in man.packs],
        "own_pack": None if man.own is None else man.packs[man.own][0],
        "arrays": rows,
        "new": sum(r["new"] for r in rows),
        "shared": sum(r["shared"] for r in rows),
        "metadata": man.user,
    }
