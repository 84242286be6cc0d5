"""What ``ndckpt verify`` and ``ndckpt info`` say about an incremental checkpoint (:mod:`ndckpt._incremental`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._incremental import array_bytes, checked_arrays, read_manifest, spot_hash
from .api import verify as verify_file

__all__ = ["describe", "verify_manifest"]


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
