""".npy and .npz files for ``ndckpt convert`` and ``ndckpt extract``: read them (untrusted), write them atomically.

Arrays are written by numpy's own .npy writer, in chunks that feed a progress
bar, to a file that replaces its target only when complete
(:func:`ndckpt._files.open_output`). Files read are refused, with a
:class:`~ndckpt.cli.common.UserError`, when they hold Python objects or
anything numpy cannot read without pickle.
"""

from __future__ import annotations

import contextlib
import math
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from .. import _files
from .._progress import ProgressBar, format_bytes
from .._text import show as _show
from ..errors import CheckptIOError, InvalidArgumentError
from .common import NPY_MAGIC, UserError, terminal_bar
from .names import npz_member

__all__ = ["flat_names", "nest_names", "read_numpy", "write_npy", "write_npz"]


def flat_names(tree: Any) -> dict[str, Any]:
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


def nest_names(arrays: dict[str, Any], where: str) -> dict[str, Any]:
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


class _ByteProgress:
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


def _npy_into(f: IO[bytes], name: str, arr: np.ndarray[Any, Any], count: _ByteProgress) -> None:
    """Write ``arr`` in .npy format to ``f`` (numpy's writer, in chunks that feed ``count``)."""
    try:
        np.lib.format.write_array(_CountingWriter(f, count), arr, allow_pickle=False)
    except ValueError as e:  # dtypes .npy cannot describe, e.g. out-of-order structured fields
        raise UserError(f"array {name!r} ({arr.dtype}) cannot be stored in a .npy file: {e}") from None


def write_npy(path: str, name: str, arr: np.ndarray[Any, Any], label: str) -> None:
    with terminal_bar(label) as bar, _atomic_output(path) as f:
        _npy_into(f, name, arr, _ByteProgress(bar, arr.nbytes))


def write_npz(path: str, arrays: dict[str, np.ndarray[Any, Any]], label: str) -> None:
    members = {name: npz_member(name) for name in arrays}
    for name, member in members.items():
        if len(member.encode()) > 0xFFFF:
            raise UserError(f"array {_show(repr(name[:60]))}... : name too long for a zip member (64 KiB)")
    with terminal_bar(label) as bar, _atomic_output(path) as f:
        count = _ByteProgress(bar, sum(a.nbytes for a in arrays.values()))
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


def read_numpy(path: str, kind: str) -> dict[str, np.ndarray[Any, Any]]:
    """All arrays of a .npy (memory-mapped, key = file stem) or .npz file (read, with a bar)."""
    try:
        if kind == "npy":
            with open(path, "rb") as f:
                _no_objects(f"{path}:", _npy_dtype(f)[1])
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            return {Path(path).stem or "array": arr}
        with np.load(path, allow_pickle=False) as z, terminal_bar(f"read {path}") as bar:
            sizes = {i.filename: i.file_size for i in z.zip.infolist()}
            count = _ByteProgress(bar, sum(sizes.values()))
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
