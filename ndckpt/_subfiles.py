"""Names of the subfiles of a subfiled MPI checkpoint (:mod:`ndckpt.mpi`), and which of them are ours.

``ndckpt.mpi.save(target, ..., subfiles=M)`` writes M subfiles named
``<target name>.<token>.sub<k>`` (token: 8 lowercase hex digits, k = 0..M-1)
in the target's own directory, and lists their names in the index's metadata
(``metadata["ndckpt.mpi.subfiles"]["files"]``). An index is read from a file,
so the list is untrusted: only names of exactly that form may ever be deleted
when a newer checkpoint replaces the index, and :func:`ndckpt.verify` reports
any other name. This module needs no MPI.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Final

from .errors import FormatError

__all__ = [
    "INDEX_KEY",
    "check_subfile_index",
    "foreign_subfiles",
    "listed_subfiles",
    "removable_subfile",
    "subfile_name",
]

#: Metadata key of a subfile index.
INDEX_KEY: Final = "ndckpt.mpi.subfiles"

#: ``.<token>.sub<k>`` after the target's name: the token as ``secrets.token_hex(4)`` makes it.
_SUFFIX: Final = r"\.[0-9a-f]{8}\.sub(?:0|[1-9][0-9]*)"


def subfile_name(target_name: str, token: str, k: int) -> str:
    """The name of subfile ``k`` of the checkpoint ``target_name`` written with ``token``."""
    return f"{target_name}.{token}.sub{k}"


def _own_form(name: str, target_name: str | None) -> bool:
    """``name`` is ``<target_name>.<token>.sub<k>`` (any single-component prefix when None)."""
    if target_name is None:
        return re.fullmatch(r"[^/\\\x00]+" + _SUFFIX, name) is not None
    return re.fullmatch(re.escape(target_name) + _SUFFIX, name) is not None


def listed_subfiles(metadata: Any) -> list[Any] | None:
    """The ``files`` list of a subfile index's metadata (entries as stored, any type), or None when
    ``metadata`` is not an index. Never raises: a malformed index lists nothing (``[]``)."""
    if not isinstance(metadata, dict) or INDEX_KEY not in metadata:
        return None
    desc = metadata[INDEX_KEY]
    files = desc.get("files") if isinstance(desc, dict) else None
    return list(files) if isinstance(files, list) else []


def removable_subfile(target: Path, name: Any) -> Path | None:
    """The path to delete for an old index's entry ``name`` when ``target`` is replaced, or None.

    Only a name of this writer's form for this target (``<target.name>.<token>.sub<k>``), in the
    target's own directory, naming something that is not a symbolic link, is removable; every
    other entry (``../victim``, an absolute path, another file's name, a non-string) is None.
    """
    if not isinstance(name, str) or not _own_form(name, target.name):
        return None
    p = target.parent / name
    if os.path.dirname(os.path.join(str(target.parent), name)) != str(target.parent):
        return None
    try:
        if p.is_symlink():
            return None
    except (OSError, ValueError):
        return None
    return p


def foreign_subfiles(metadata: Any, target_name: str | None) -> list[Any]:
    """The entries of an index's ``files`` list that are not of the writer's form (``[]`` when
    ``metadata`` is not an index). ``target_name``: the index file's name, or None when unknown
    (a buffer), then any single path component before ``.<token>.sub<k>`` is accepted."""
    files = listed_subfiles(metadata)
    if files is None:
        return []
    return [n for n in files if not isinstance(n, str) or not _own_form(n, target_name)]


def check_subfile_index(metadata: Any, source: Any) -> None:
    """FormatError if ``metadata`` is an MPI subfile index listing a name that is not one of its
    writer's subfile names (``<index name>.<token>.sub<k>`` next to the index): a tampered index.
    ``ndckpt.mpi.save`` never deletes such a name when it replaces the index."""
    name = os.path.basename(os.fsdecode(source)) if isinstance(source, str | os.PathLike) else None
    bad = foreign_subfiles(metadata, name)
    if bad:
        form = f"{name}.<token>.sub<k>" if name is not None else "<index name>.<token>.sub<k>"
        shown = repr(bad[0]) if len(repr(bad[0])) <= 200 else repr(bad[0])[:200] + "..."
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise FormatError(
            f"subfile index lists {shown}{more}, not a subfile name its writer makes ({form!r}, next to the "
            "index): the index was altered; ndckpt.mpi.save never deletes such files when it replaces it"
        )
