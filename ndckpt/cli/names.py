"""File and zip-member names made from array names: safe relative paths, distinct for distinct names. Stdlib only."""

from __future__ import annotations

import itertools

__all__ = ["extract_name", "npz_member", "safe_relative_name"]

#: Characters written as %XX in zip member and file names besides non-printable ones: the escape
#: character itself, and Windows' path separator and drive/stream separator.
_NAME_UNSAFE = frozenset("%\\:")


def _escape_part(part: str, dots: bool = True) -> str:
    """One path component with unsafe characters as %XX (UTF-8 bytes, lone surrogates as their
    three surrogatepass bytes); with ``dots``, a component of dots only (``.``, ``..``) gets its
    dots escaped (not needed where a suffix such as ``.npy`` follows)."""
    if dots and part and part.strip(".") == "":
        return "%2E" * len(part)
    if part.isprintable() and _NAME_UNSAFE.isdisjoint(part):
        return part
    return "".join(
        "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
        if ch in _NAME_UNSAFE or not ch.isprintable()
        else ch
        for ch in part
    )


def safe_relative_name(name: str, suffix: str = "") -> str:
    """``name`` ("group/array") plus ``suffix`` as a safe relative path: distinct names give
    distinct results, and names of printable characters without ``%``, ``\\`` or ``:`` and
    without empty, ``.`` or ``..`` components come back unchanged.

    Each component is escaped as :func:`_escape_part` does (the last one's dots only when there
    is no suffix), and a ``/`` stays a separator only between two non-empty components
    (otherwise it is ``%2F``), so the result has no leading ``/``, no ``.``/``..`` component, no
    backslash, drive letter, NUL or control character. Percent-decoding the result without
    ``suffix`` (UTF-8, surrogatepass) gives ``name`` back.
    """
    parts = name.split("/")
    last = len(parts) - 1
    out = [_escape_part(parts[0], dots=last > 0 or not suffix)]
    for i, (prev, part) in enumerate(itertools.pairwise(parts), 1):
        out.append("/" if prev and part else "%2F")
        out.append(_escape_part(part, dots=i < last or not suffix))
    return "".join(out) + suffix


def npz_member(name: str) -> str:
    """The zip member an array is written to in a .npz: ``safe_relative_name(name) + ".npy"``."""
    return safe_relative_name(name, ".npy")


def extract_name(name: str) -> str:
    """The default output file of ``ndckpt extract FILE NAME``: NAME with ``/`` as ``_``, escaped
    as :func:`safe_relative_name` escapes a component (one file name in the current directory)."""
    return _escape_part(name.replace("/", "_"), dots=False) + ".npy"
