"""The ``ndckpt`` command: inspect, verify, extract and convert checkpoints; run the demo and benchmarks.

Installed as the ``ndckpt`` console script and runnable as ``python -m ndckpt``::

    ndckpt info FILE|- [--json]               format version, metadata, table of arrays
    ndckpt verify FILE|-                      check every frame; exit 1 naming the bad one
    ndckpt extract FILE|- NAME [-o OUT.npy]   one array to a .npy file
    ndckpt convert IN OUT [--style [NAME=]raw|lz4 ...] [--force]
                                              .npy/.npz <-> ndckpt (and ndckpt -> ndckpt)
    ndckpt demo [...]                         kill-and-resume simulation demo
    ndckpt bench [ARGS...]                    the peer benchmark suite (source checkout only)

Exit status: 0 on success; 1 when a checkpoint is unsound or a user error occurs
(missing file, not an ndckpt file, unknown array, bad input), with one line on
stderr and no traceback; 2 for bad command-line usage (and ``bench`` outside a
source checkout). Long operations draw a progress bar on stderr only when
stderr is a terminal (one line redrawn in place, fitted to the terminal's
width, with rate and time left); otherwise they print no progress at all.

Files are untrusted: whatever a file makes the command print (names, dtypes,
messages) is shown with control and other non-printable characters escaped
(``\\x1b``, ``\\u202e``, lone surrogates as ``\\udc80``), and any failure a file
causes (a malformed or hostile file, too little memory, nesting too deep for
Python) is reported as ``ndckpt COMMAND: error`` in one line with exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

from . import __version__, _files
from . import api as _api
from ._argtypes import positive_int
from ._browse import Group
from ._progress import ProgressBar, format_bytes, progress_bar
from ._text import show as _show
from .container import MAGIC, VERSION
from .errors import CheckptError, CheckptIOError, InvalidArgumentError

__all__ = ["UserError", "main"]

PROG = "ndckpt"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"  # an archive with no members: np.savez() with no arrays
STYLES = ("raw", "lz4")


class UserError(Exception):
    """A problem to report in one line (exit status ``code``), never with a traceback."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _bar(label: str) -> Iterator[ProgressBar | None]:
    """A progress bar on stderr if it is a terminal (else None), closed on exit."""
    bar = progress_bar(label)
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _ratio(raw: int, stored: int) -> str:
    return f"{raw / stored:.2f}" if stored else "-"


def _ranges(idx: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``; ``[]`` -> ``"-"``."""
    if not idx:
        return "-"
    out: list[str] = []
    start = prev = idx[0]
    for i in [*idx[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(out)


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


def _flat(tree: Any) -> dict[str, Any]:
    """A nested mapping as ``{"group/name": leaf}``, in the mapping's order, without recursion
    (a hostile file's names may nest thousands deep)."""
    out: dict[str, Any] = {}
    stack: list[Iterator[tuple[str, Any]]] = [iter(tree.items())]
    prefixes = [""]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            prefixes.pop()
            continue
        k, v = item
        name = f"{prefixes[-1]}{k}"
        if isinstance(v, Mapping):
            stack.append(iter(v.items()))
            prefixes.append(name + "/")
        else:
            out[name] = v
    return out


def _nest(arrays: dict[str, Any], where: str) -> dict[str, Any]:
    """``{"group/name": array}`` (a numpy file's keys) as the nested mapping :func:`ndckpt.save`
    takes, so that ``/`` makes groups as in ndckpt names; UserError when one name is an array
    and a group of others (``a`` and ``a/b``). Iterative: keys may hold thousands of ``/``."""
    tree: dict[str, Any] = {}
    for name, arr in arrays.items():
        *groups, leaf = name.split("/")
        node = tree
        for g in groups:
            nxt = node.setdefault(g, {})
            if not isinstance(nxt, dict):
                raise UserError(f"{where}: {name!r} is inside {g!r}, which is an array, not a group")
            node = nxt
        if leaf in node:
            raise UserError(f"{where}: {name!r} is both an array and a group of arrays")
        node[leaf] = arr
    return tree


def _sniff(path: str) -> str:
    """``"ndckpt"``, ``"npy"``, ``"npz"`` or ``"unknown"`` from a file's first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    if head.startswith(MAGIC):
        return "ndckpt"
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC)):
        return "npz"
    return "unknown"


def _require_file(path: str) -> None:
    """Raise a UserError unless ``path`` is an existing regular file."""
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise UserError(f"{path}: not a regular file")


def _source(path: str) -> str | bytes | memoryview:
    """What :func:`ndckpt.open` reads for the command's FILE: the path, or for ``-`` the bytes of
    stdin (a pipe or a file), copied to an unlinked temporary file and mapped (random access is
    needed; memory is the page cache, not the process). A path that is not a regular file (a FIFO,
    a device) is refused by the reader at once."""
    if path != "-":
        return path
    with tempfile.TemporaryFile(prefix="ndckpt-stdin-") as f:
        shutil.copyfileobj(_stdin(), f, 1 << 20)
        f.flush()
        size = f.tell()
        return memoryview(mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)) if size else b""


def _label(path: str) -> str:
    return "stdin" if path == "-" else path


class _CountingWriter:
    """A write-only file wrapper that reports bytes written (for numpy's chunked .npy writer)."""

    def __init__(self, f: IO[bytes], advance: Callable[[int], None]) -> None:
        self._f = f
        self._advance = advance

    def write(self, b: Any) -> int:
        n = self._f.write(b)
        self._advance(len(memoryview(b).cast("B")))
        return n if n is not None else 0

    def flush(self) -> None:
        self._f.flush()


class _Counter:
    """Accumulates byte counts and forwards ``(done, total)`` to a progress callback."""

    def __init__(self, bar: ProgressBar | None, total: int) -> None:
        self.bar, self.total, self.done = bar, total, 0
        if bar is not None:
            bar(0, total)

    def __call__(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar(min(self.done, self.total), self.total)


@contextlib.contextmanager
def _atomic_output(path: str) -> Iterator[IO[bytes]]:
    """A binary file whose content replaces ``path`` only if the block succeeds.

    The library's atomic write (:func:`ndckpt._files.open_output`, as
    ``ndckpt.save`` does): a random, exclusively created temporary file next to
    the file being replaced, its permission bits kept, fsync, rename; a symlink
    is written through, a FIFO or device is written in place.
    """
    with contextlib.ExitStack() as stack:
        try:
            fd = stack.enter_context(_files.open_output(path))
        except InvalidArgumentError:  # the one argument open_output refuses: a directory
            raise UserError(f"{path}: is a directory") from None
        except CheckptIOError as e:
            raise UserError(f"{path}: cannot write: {e.strerror}") from None
        yield stack.enter_context(open(fd, "wb", closefd=False))  # closed (flushed) before the commit


def _npy_into(f: IO[bytes], name: str, arr: np.ndarray[Any, Any], count: _Counter) -> None:
    """Write ``arr`` in .npy format to ``f`` (numpy's writer, in chunks that feed ``count``)."""
    try:
        np.lib.format.write_array(_CountingWriter(f, count), arr, allow_pickle=False)
    except ValueError as e:  # dtypes .npy cannot describe, e.g. out-of-order structured fields
        raise UserError(f"array {name!r} ({arr.dtype}) cannot be stored in a .npy file: {e}") from None


def _write_npy(path: str, name: str, arr: np.ndarray[Any, Any], label: str) -> None:
    with _bar(label) as bar, _atomic_output(path) as f:
        _npy_into(f, name, arr, _Counter(bar, arr.nbytes))


def npz_member(name: str) -> str:
    """The zip member an array is written to in a .npz: ``safe_relative_name(name) + ".npy"``."""
    return safe_relative_name(name, ".npy")


def _write_npz(path: str, arrays: dict[str, np.ndarray[Any, Any]], label: str) -> None:
    members = {name: npz_member(name) for name in arrays}
    for name, member in members.items():
        if len(member.encode()) > 0xFFFF:
            raise UserError(f"array {_show(repr(name[:60]))}... : name too long for a zip member (64 KiB)")
    with _bar(label) as bar, _atomic_output(path) as f:
        count = _Counter(bar, sum(a.nbytes for a in arrays.values()))
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():
                with zf.open(members[name], "w", force_zip64=True) as mf:
                    _npy_into(mf, name, arr, count)


def _npy_dtype(f: IO[bytes]) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype from a .npy header (``f`` at its start), reading nothing else."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    else:  # 2.0 and 3.0 share the layout (3.0's utf-8 header decodes as latin-1: dtype codes are ASCII)
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    return tuple(shape), dtype


def _no_objects(where: str, dtype: np.dtype[Any]) -> None:
    if dtype.hasobject:
        raise UserError(
            f"{where} holds Python objects (dtype {dtype}), which ndckpt cannot store: re-save it with a "
            "plain dtype (numbers, bools, fixed-size strings, or structured records of these), e.g. "
            "arr.astype(np.float64) or, for strings, arr.astype(str)"
        )


def _read_numpy(path: str, kind: str) -> dict[str, np.ndarray[Any, Any]]:
    """All arrays of a .npy (memory-mapped, key = file stem) or .npz file (read, with a bar)."""
    try:
        if kind == "npy":
            with open(path, "rb") as f:
                _no_objects(f"{path}:", _npy_dtype(f)[1])
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            return {Path(path).stem or "array": arr}
        with np.load(path, allow_pickle=False) as z, _bar(f"read {path}") as bar:
            sizes = {i.filename: i.file_size for i in z.zip.infolist()}
            count = _Counter(bar, sum(sizes.values()))
            out: dict[str, np.ndarray[Any, Any]] = {}
            for n in z.files:
                member = f"{n}.npy" if f"{n}.npy" in sizes else n
                with z.zip.open(member) as mf:
                    if mf.read(len(NPY_MAGIC)) != NPY_MAGIC:
                        raise UserError(f"{path}: member {n!r} is not a .npy array")
                with z.zip.open(member) as mf:
                    shape, dtype = _npy_dtype(mf)
                _no_objects(f"{path}: array {n!r}", dtype)
                try:
                    a = z[n]
                except MemoryError:
                    claimed = math.prod(shape) * dtype.itemsize
                    raise UserError(
                        f"{path}: array {n!r}: not enough memory to read it (its header says {shape}, "
                        f"{format_bytes(claimed)})"
                    ) from None
                out[n] = a
                count(sizes.get(member, a.nbytes))
            return out
    except UserError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as e:
        raise UserError(f"{path}: cannot read as .{kind}: {e}") from None


def _stdin() -> BinaryIO:
    return sys.stdin.buffer


def _stdout() -> BinaryIO:
    return sys.stdout.buffer


# ----------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------


#: ``ndckpt info`` shows at most this many characters of a value's repr.
_VALUE_REPR_MAX = 100


def cmd_info(args: argparse.Namespace) -> int:
    path: str = args.file
    src = _source(path)
    with _api.open(src, verify=False) as r:
        rows = r.info()
        values = r.value_info()
        version = VERSION  # open() validated the superblock: it reads only this version
        metadata = r.metadata
        size = r.nbytes
    frames = sorted({fi for row in rows for fi in row["frames"]})
    raw = sum(int(row["nbytes"]) for row in rows)
    stored = sum(int(row["stored_nbytes"]) for row in rows)
    if args.json:  # json.dumps escapes every control and non-ASCII character
        doc = {
            "file": path,
            "format_version": version,
            "file_nbytes": size,
            "metadata": metadata,
            "nframes": len(frames),
            "nbytes": raw,
            "arrays": [{**row, "shape": list(row["shape"])} for row in rows],
        }
        if values:
            doc["values"] = [{**v, "value": repr(v["value"])} for v in values]
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    print(_show(f"file      {_label(path)}  ({format_bytes(size)}, ndckpt format version {version})"))
    print(_show(f"metadata  {json.dumps(metadata, sort_keys=True) if metadata is not None else '(none)'}"))
    print(
        f"arrays    {len(rows)} in {_plural(len(frames), 'frame')}; {format_bytes(raw)} raw -> "
        f"{format_bytes(stored)} stored (ratio {_ratio(raw, stored)})"
    )
    if values:
        print(f"values    {len(values)} (Python values and numpy scalars, stored in the head)")
        shown = [(_show(v["name"]), _show(v["type"]), _show(repr(v["value"]))) for v in values]
        vw = max(len(n) for n, _, _ in shown)
        tw = max(len(t) for _, t, _ in shown)
        for name, type_, text in shown:
            text = text if len(text) <= _VALUE_REPR_MAX else text[: _VALUE_REPR_MAX - 3] + "..."
            print(f"  {name.ljust(vw)}  {type_.ljust(tw)}  {text}")
    if not rows:
        return 0
    table = [("name", "dtype", "shape", "style", "raw", "stored", "ratio", "frames")]
    table += [
        (
            _show(row["name"]),
            _show(row["dtype"]),
            str(tuple(row["shape"])),
            row["style"],
            format_bytes(row["nbytes"]),
            format_bytes(row["stored_nbytes"]),
            _ratio(row["nbytes"], row["stored_nbytes"]),
            _ranges(row["frames"]),
        )
        for row in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    right = {4, 5, 6}
    print()
    for line in table:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        print("  ".join(cells).rstrip())
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    path: str = args.file
    src: Any = _stdin() if path == "-" else path
    label = _label(path)
    if path != "-":
        _require_file(path)
    t0 = time.perf_counter()
    try:
        with _bar(f"verify {label}") as bar:
            _api.verify(src, threads=args.threads, progress=bar)
    except CheckptError as e:
        print(_show(f"{PROG} verify: {label}: FAILED: {_message(e)}"), file=sys.stderr)
        return 1
    dt = time.perf_counter() - t0
    if path == "-":
        print(f"{label}: OK ({dt:.2f} s)")
        return 0
    with _api.open(path, verify=False) as r:
        rows = r.info()
        size = r.nbytes
    nframes = len({fi for row in rows for fi in row["frames"]})
    what = f"{_plural(len(rows), 'array')}, {_plural(nframes, 'frame')}, {format_bytes(size)}"
    print(_show(f"{label}: OK: {what} checked in {dt:.2f} s"))
    return 0


def extract_name(name: str) -> str:
    """The default output file of ``ndckpt extract FILE NAME``: NAME with ``/`` as ``_``, escaped
    as :func:`safe_relative_name` escapes a component (one file name in the current directory)."""
    return _escape_part(name.replace("/", "_"), dots=False) + ".npy"


def cmd_extract(args: argparse.Namespace) -> int:
    path: str = args.file
    name: str = args.name
    with _api.open(_source(path), mmap=True, threads=args.threads, verify=True) as r:
        if name not in r:
            names = r.names()
            shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
            raise UserError(f"{_label(path)}: no array named {name!r} (arrays: {shown or 'none'})")
        arr = r[name]
        if isinstance(arr, Group):
            members = [f"{name}/{m}" for m in arr.names()]
            shown = ", ".join(members[:8]) + (f", ... ({len(members)} in all)" if len(members) > 8 else "")
            raise UserError(f"{_label(path)}: {name!r} is a group; extract one of its arrays ({shown or 'none'})")
    if isinstance(arr, np.generic):
        arr = np.asarray(arr)  # a numpy scalar: its 0-d array
    if not isinstance(arr, np.ndarray):
        kind = type(arr).__name__
        raise UserError(f"{path}: {name!r} is a Python value ({kind}), not an array; 'ndckpt info' shows it")
    out: str = args.output or extract_name(name)
    _write_npy(out, name, arr, f"write {out}")
    print(_show(f"{name}: {arr.dtype} {tuple(arr.shape)} -> {out} ({format_bytes(arr.nbytes)})"))
    return 0


def _out_kind(out: str) -> str:
    if out == "-":
        return "ndckpt"
    suffix = Path(out).suffix.lower()
    return {".npy": "npy", ".npz": "npz"}.get(suffix, "ndckpt")


def style_arg(value: str) -> tuple[str | None, str]:
    """``--style`` values: ``STYLE`` (every array not named otherwise) or ``NAME=STYLE`` (an array or
    a group; split at the last ``=``), STYLE being raw or lz4."""
    name, eq, style = value.rpartition("=")
    if style not in STYLES:
        raise argparse.ArgumentTypeError(f"expected raw, lz4, NAME=raw or NAME=lz4, got {value!r}")
    if eq and not name:
        raise argparse.ArgumentTypeError(f"empty NAME in {value!r}")
    return (name if eq else None), style


def _style(specs: list[tuple[str | None, str]] | None, names: Sequence[str]) -> Any:
    """The ``style`` argument of :func:`ndckpt.save` for the ``--style`` values: a string, or a
    mapping of names (arrays or groups, most specific wins, as the library reads it) with the
    default filled in for every array no key covers."""
    specs = specs or []
    defaults = {st for n, st in specs if n is None}
    if len(defaults) > 1:
        raise UserError(f"--style: conflicting defaults {sorted(defaults)} (give one, plus NAME=STYLE pairs)", code=2)
    default = defaults.pop() if defaults else "raw"
    named = {n: st for n, st in specs if n is not None}
    if not named:
        return default
    style: dict[str, str] = dict(named)
    if default != "raw":  # the library's default for arrays no key covers
        for n in names:
            if not any(n == k or n.startswith(k + "/") for k in named):
                style[n] = default
    return style


def cmd_convert(args: argparse.Namespace) -> int:
    src: str = args.input
    dst: str = args.output
    if src != "-":
        _require_file(src)  # a FIFO or device: refused now, not read (which could block forever)
    in_kind = "ndckpt" if src == "-" else _sniff(src)
    out_kind = _out_kind(dst)
    if in_kind == "unknown":
        raise UserError(f"{src}: not an ndckpt, .npy or .npz file")
    if in_kind != "ndckpt" and out_kind != "ndckpt":
        raise UserError(f"one side must be an ndckpt file ({src} is .{in_kind}, {dst} is .{out_kind})")
    if args.style is not None and out_kind != "ndckpt":
        raise UserError(f"--style applies to ndckpt output, not .{out_kind}")
    if dst == "-" and not args.force and _stdout_is_terminal():
        raise UserError("ndckpt data not written to a terminal: redirect stdout to a file or a pipe (or use --force)")

    metadata: Any = None
    t0 = time.perf_counter()
    if in_kind == "ndckpt":
        label = _label(src)
        with _bar(f"read {label}") as bar:
            tree = _api.load(_stdin() if src == "-" else src, threads=args.threads, verify=True, progress=bar)
        arrays = _flat(tree)  # ndckpt output gets ``tree`` itself: the same paths and empty groups
        if src != "-":
            with _api.open(src, verify=False) as r:
                metadata = r.metadata
    else:
        arrays = _read_numpy(src, in_kind)
        tree = _nest(arrays, src) if out_kind == "ndckpt" else {}
    raw = sum(a.nbytes for a in arrays.values() if isinstance(a, np.ndarray | np.generic))

    if out_kind == "ndckpt":
        style = _style(args.style, list(arrays))
        with _bar(f"write {'stdout' if dst == '-' else dst}") as bar:
            target: Any = _stdout() if dst == "-" else dst
            _api.save(target, tree, style=style, threads=args.threads, metadata=metadata, progress=bar)
        if dst == "-":
            _stdout().flush()
    elif values := [n for n, a in arrays.items() if not isinstance(a, np.ndarray | np.generic)]:
        shown = ", ".join(values[:5]) + (f", ... ({len(values)} in all)" if len(values) > 5 else "")
        raise UserError(
            f"{src} holds Python values ({shown}), which .{out_kind} files cannot hold without pickle; "
            "'ndckpt info' shows them"
        )
    elif out_kind == "npy":
        if len(arrays) != 1:
            raise UserError(
                f"{src} holds {len(arrays)} arrays; a .npy holds one "
                f"(use .npz, or 'ndckpt extract {src} NAME -o {dst}')"
            )
        ((name, arr),) = arrays.items()
        _write_npy(dst, name, np.asarray(arr), f"write {dst}")
    else:  # numpy scalars as 0-d arrays, as np.savez writes them
        _write_npz(dst, {k: np.asarray(a) for k, a in arrays.items()}, f"write {dst}")
    dt = time.perf_counter() - t0
    if dst != "-":
        size = os.path.getsize(dst)
        print(
            _show(
                f"{_label(src)} -> {dst}: {_plural(len(arrays), 'array')}, {format_bytes(raw)} -> "
                f"{format_bytes(size)} (ratio {_ratio(raw, size)}) in {dt:.2f} s"
            )
        )
    return 0


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False


def bench_script() -> Path:
    """Where the peer benchmark suite is in a source checkout (it is not installed with the package)."""
    return Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


def cmd_bench(args: argparse.Namespace) -> int:
    script = bench_script()
    if not script.is_file():
        raise UserError(
            "ndckpt bench: the benchmark suite ships with the source repository "
            f"(benchmarks/peers.py, not found at {script}); run it from a clone",
            code=2,
        )
    extra = list(args.bench_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return subprocess.call([sys.executable, str(script), *extra])


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.run(args)


# ----------------------------------------------------------------------------------------------
# Argument parsing and main
# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ndckpt`` command (every subcommand has ``--help``)."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect, verify and convert ndckpt checkpoints; run the demo and benchmarks.",
        epilog="Run 'ndckpt COMMAND --help' for a command's options.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def threads_opt(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--threads", type=positive_int, default=None, metavar="N", help="worker threads (default: all cores)"
        )

    q = sub.add_parser(
        "info",
        help="format version, metadata and a table of arrays",
        description="Print a checkpoint's format version, metadata and a table of its arrays (name, dtype, shape, "
        "style, raw and stored size, ratio, frames). Reads only the head and index, not the data. "
        "Names and other text from the file are printed with non-printable characters escaped (\\x1b, \\u202e).",
    )
    q.add_argument("file", metavar="FILE", help="an ndckpt file, or - to read one from stdin")
    q.add_argument("--json", action="store_true", help="print the same as JSON (exact byte counts)")
    q.set_defaults(func=cmd_info)

    q = sub.add_parser(
        "verify",
        help="check every frame's checksum and structure",
        description="Check a checkpoint's structure and every frame's checksum (LZ4 frames are also decoded). "
        "Exit 0 when it is sound; exit 1 with one line naming the frame, its offset and its arrays when not.",
    )
    q.add_argument("file", metavar="FILE", help="an ndckpt file, or - to read one from stdin")
    threads_opt(q)
    q.set_defaults(func=cmd_verify)

    q = sub.add_parser(
        "extract",
        help="write one array to a .npy file",
        description="Write one array of a checkpoint to a .npy file (reads only the frames holding it).",
    )
    q.add_argument("file", metavar="FILE", help="an ndckpt file, or - to read one from stdin")
    q.add_argument("name", metavar="NAME", help="the array's name, as 'ndckpt info' lists it (e.g. fields/u)")
    q.add_argument(
        "-o",
        "--output",
        metavar="OUT.npy",
        help="output file (default: NAME with / -> _, plus .npy; %%, \\, : and non-printable characters as %%XX)",
    )
    threads_opt(q)
    q.set_defaults(func=cmd_extract)

    q = sub.add_parser(
        "convert",
        help="convert between .npy/.npz and ndckpt",
        description="Convert between numpy files and ndckpt. The input kind is read from its first bytes; the output "
        "kind comes from its suffix (.npy, .npz, anything else is ndckpt). One side must be ndckpt; ndckpt -> ndckpt "
        "rewrites the file (e.g. with another --style). Use - for an ndckpt stream on stdin/stdout (not written to a "
        "terminal unless --force). In a .npz every array NAME is the member NAME.npy; to keep member names safe "
        "relative paths, %%, \\, : and non-printable characters are written as %%XX (their UTF-8 bytes), a group "
        "named . or .. (dots only) as %%2E..., and a / that would start the name or make an empty component as %%2F; "
        "other names are unchanged, and distinct names stay distinct.",
    )
    q.add_argument("input", metavar="IN", help="a .npy, .npz or ndckpt file (- : ndckpt on stdin)")
    q.add_argument("output", metavar="OUT", help="a .npy, .npz or ndckpt file (- : ndckpt on stdout)")
    q.add_argument(
        "--style",
        type=style_arg,
        action="append",
        default=None,
        metavar="[NAME=]STYLE",
        help="frame style of ndckpt output, raw or lz4: STYLE for every array (default: raw), NAME=STYLE for an "
        "array or a group (the most specific name wins); repeat for several, e.g. --style lz4 --style step=raw",
    )
    q.add_argument("-f", "--force", action="store_true", help="write ndckpt data to stdout even if it is a terminal")
    threads_opt(q)
    q.set_defaults(func=cmd_convert)

    from .demo import add_arguments as demo_arguments

    q = sub.add_parser(
        "demo",
        help="checkpoint a simulation, kill it, resume it, prove the result is bit-identical",
        description="Run a Gray-Scott simulation in a child process that checkpoints every K steps, kill it with "
        "SIGKILL part-way, resume from the latest complete checkpoint, and check that the resumed run ends "
        "bit-identical to an uninterrupted run. Prints checkpoint sizes, save and load times, and np.savez for "
        "comparison. Exit 0 on PASS, 1 on FAIL. Needs no network.",
    )
    demo_arguments(q)
    q.set_defaults(func=cmd_demo)

    q = sub.add_parser(
        "bench",
        help="run the peer benchmark suite (source checkout)",
        description="Run benchmarks/peers.py (ndckpt against np.save, safetensors, ...) with this Python, passing "
        "ARGS through, e.g. 'ndckpt bench --quick'. The suite ships with the source repository, not with the "
        "installed package. 'ndckpt bench -- --help' shows the suite's own options.",
    )
    q.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for benchmarks/peers.py")
    q.set_defaults(func=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ndckpt`` command with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if args_list[:1] == ["bench"] and args_list[1:2] not in (["-h"], ["--help"]):
        # Everything after "bench" belongs to the suite, options included.
        args = argparse.Namespace(func=cmd_bench, bench_args=args_list[1:], command="bench")
    else:
        args = parser.parse_args(args_list)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return code
    except UserError as e:
        msg = str(e)
        _complain(msg if msg.startswith(PROG) else f"{PROG} {args.command}: {msg}")
        return e.code
    except KeyError as e:  # unknown array names from the library
        _complain(f"{PROG} {args.command}: {e.args[0] if e.args else e}")
        return 1
    except CheckptError as e:
        msg = _message(e)
        _complain(f"{PROG} {args.command}: {_path_prefix(args, msg)}{msg}{_numpy_hint(args, msg)}")
        return 1
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            _silence_stdout()
            return 1
        where = f"{e.filename}: " if e.filename else ""
        _complain(f"{PROG} {args.command}: {where}{e.strerror or e}")
        return 1
    except MemoryError:
        _complain(f"{PROG} {args.command}: {_path_prefix(args, '')}not enough memory")
        return 1
    except RecursionError:  # a hostile file's dtypes, names or metadata nested beyond Python's recursion limit
        _complain(f"{PROG} {args.command}: {_path_prefix(args, '')}nested too deeply to process")
        return 1
    except (ValueError, OverflowError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        # What numpy and the codecs raise on content they cannot represent (65 dimensions, a lone
        # surrogate in a name written to a file name): the file's doing, not the user's.
        msg = str(e) or type(e).__name__
        _complain(f"{PROG} {args.command}: {_path_prefix(args, msg)}cannot process: {msg}")
        return 1
    except KeyboardInterrupt:
        _complain(f"{PROG} {args.command}: interrupted")
        return 130


def _complain(line: str) -> None:
    """One line on stderr, escaped for a terminal (an error can quote what a file says)."""
    print(_show(line), file=sys.stderr)


def _message(e: CheckptError) -> str:
    """The error's text without OSError's ``[Errno N]`` prefix."""
    if isinstance(e, OSError) and e.strerror:
        return str(e.strerror)
    return str(e)


def _numpy_hint(args: argparse.Namespace, message: str) -> str:
    """For a numpy file given where an ndckpt file is expected: how to convert it."""
    path = getattr(args, "file", None)
    if not isinstance(path, str) or path == "-" or not message.startswith("not an ndckpt file"):
        return ""
    try:
        kind = _sniff(path)
    except UserError:
        return ""
    if kind not in ("npy", "npz"):
        return ""
    return f" (it is a .{kind} file; 'ndckpt convert {path} OUT.ndckpt' makes one)"


def _path_prefix(args: argparse.Namespace, message: str) -> str:
    """``"FILE: "`` for the command's input file, unless the message already names it."""
    for attr in ("file", "input"):
        v = getattr(args, attr, None)
        if isinstance(v, str):
            label = "stdin" if v == "-" else v
            return "" if repr(v) in message else f"{label}: "
    return ""


def _silence_stdout() -> None:
    """After a broken pipe (``ndckpt info f | head``), keep Python from complaining at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
