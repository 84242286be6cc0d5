"""Reading incremental checkpoints (:mod:`ndckpt._incremental`): a manifest's arrays from its packs.

RAW arrays come back as zero-copy views where the pieces allow it (one view when they lie back
to back in one pack, else the pack ranges mapped side by side by :mod:`ndckpt._stitch`); other
arrays are assembled into new page-aligned arrays or the caller's ``out`` (LZ4 decoded in place,
RAW pieces read with ``pread`` in a thread pool). Nothing here writes or deletes a file.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import _platform
from ._incremental import PACK_KEY, ArrayEntry, Manifest, piece_name, read_manifest
from ._lz4 import xxh64
from ._memory import aligned_empty, buffer_view
from ._stitch import stitch
from .api import MmapMode
from .api import open as open_checkpoint
from .errors import CheckptIOError, FormatError, InvalidArgumentError

__all__ = ["array_bytes", "checked_arrays", "load_manifest"]


class _Packs:
    """Open readers of a manifest's packs, opened on first use; missing ones raise naming the piece."""

    def __init__(self, directory: Path, where: str, mmap: MmapMode, verify: bool | None) -> None:
        self.directory, self.where, self.mmap, self.verify = directory, where, mmap, verify
        self.readers: dict[str, Any] = {}
        self.infos: dict[str, dict[str, dict[str, Any]]] = {}
        self.futures: list[Any] = []
        self.fds: dict[str, int] = {}
        self.views: dict[str, dict[str, Any]] = {}

    def piece(self, pack: str, piece: str, array: str) -> dict[str, Any]:
        """``{"style": "raw" | ...}`` of ``piece``: from the pack's metadata (``PACK_KEY``: one
        character per piece, ``R`` for RAW), or its ``Reader.info()`` rows when that is absent."""
        rows = self.infos.get(pack)
        if rows is None:
            r = self.get(pack, piece, array)
            md = r.metadata
            flags = md.get(PACK_KEY, {}).get("raw") if isinstance(md, dict) else None
            if isinstance(flags, str) and len(flags) == len(r):
                rows = {piece_name(i): {"style": "raw" if c == "R" else "lz4"} for i, c in enumerate(flags)}
            else:
                rows = {row["name"]: row for row in r.info()}
            self.infos[pack] = rows
        row = rows.get(piece)
        if row is None:
            raise FormatError(f"{self.where}: piece {piece} of array {array!r} is missing from pack {pack!r}")
        return row

    def get(self, pack: str, piece: str, array: str) -> Any:
        r = self.readers.get(pack)
        if r is None:
            p = self.directory / pack
            try:
                r = open_checkpoint(p, mmap=self.mmap, verify=self.verify)
            except CheckptIOError as e:
                raise CheckptIOError(
                    e.errno or errno.EIO,
                    f"{self.where}: piece {piece} of array {array!r} is in pack {pack!r}, which cannot be read: {e}",
                ) from e
            self.readers[pack] = r
        if piece not in r:
            raise FormatError(f"{self.where}: piece {piece} of array {array!r} is missing from pack {pack!r}")
        return r

    def view(self, pack: str, piece: str, array: str) -> Any:
        """RAW ``piece`` of ``pack`` as a view of its mapping. A pack of RAW pieces only is loaded
        once (one call makes every view); others are read piece by piece."""
        views = self.views.get(pack)
        if views is None:
            self.piece(pack, piece, array)
            rows = self.infos[pack]
            r = self.get(pack, piece, array)
            views = self.views[pack] = r.load() if all(row["style"] == "raw" for row in rows.values()) else {}
        v = views.get(piece)
        return self.get(pack, piece, array)[piece] if v is None else v

    def fd(self, pack: str) -> int:
        """A read-only fd of ``pack`` (opened once, closed by :meth:`close`)."""
        fd = self.fds.get(pack)
        if fd is None:
            try:
                fd = self.fds[pack] = os.open(self.directory / pack, os.O_RDONLY)
            except OSError as e:
                raise CheckptIOError(e.errno, f"{self.where}: cannot open pack {pack!r}: {e.strerror}") from e
        return fd

    def close(self) -> None:
        for r in self.readers.values():
            r.close()
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def _flat_out(out: Any) -> dict[str, Any]:
    res: dict[str, Any] = {}

    def walk(m: Mapping[str, Any], prefix: str) -> None:
        for k, v in m.items():
            name = f"{prefix}/{k}" if prefix else k
            if isinstance(v, Mapping):
                walk(v, name)
            else:
                res[name] = v

    if out is not None:
        if not isinstance(out, Mapping):
            raise InvalidArgumentError(f"out: expected a mapping, got {type(out).__name__}")
        walk(out, "")
    return res


def _target(e: ArrayEntry, given: Any) -> np.ndarray[Any, Any]:
    """The array to fill for ``e``: the caller's ``out`` (checked) or a new page-aligned one."""
    if given is None:
        a = aligned_empty(e.nbytes).view(e.dtype) if e.nbytes else np.empty(0, e.dtype)
        return a.reshape(e.shape, order="F" if e.order == "F" else "C")
    if not isinstance(given, np.ndarray) or given.dtype != e.dtype or given.shape != e.shape:
        raise InvalidArgumentError(
            f"out[{e.name!r}]: expected an array of dtype {e.dtype} and shape {e.shape}, got "
            f"{getattr(given, 'dtype', type(given).__name__)} {getattr(given, 'shape', '')}"
        )
    ok = given.flags.f_contiguous if e.order == "F" else given.flags.c_contiguous
    if not ok or not given.flags.writeable:
        raise InvalidArgumentError(f"out[{e.name!r}]: must be writable and {e.order}-contiguous")
    return given


def array_bytes(a: np.ndarray[Any, Any], order: str) -> np.ndarray[Any, np.dtype[np.uint8]]:
    if a.nbytes == 0:
        return np.empty(0, np.uint8)
    return (a.T if order == "F" else a).reshape(-1).view(np.uint8)


def _read_entry(
    man: Manifest, e: ArrayEntry, packs: _Packs, given: Any, mmap: MmapMode, check: bool, pool: Any = None
) -> np.ndarray[Any, Any]:
    """Array ``e`` of ``man`` (see :func:`load_manifest`); RAW copies may be left running in ``pool``
    (an executor: the caller waits for every future it was given, through ``packs.futures``)."""
    refs = list(man.refs(e))
    shape_order: Literal["C", "F"] = "F" if e.order == "F" else "C"
    if given is None and mmap in (True, "r") and not check and refs:
        infos = [packs.piece(man.packs[pi][0], piece_name(o), e.name) for pi, o, _, _ in refs]
        if all(i["style"] == "raw" for i in infos):
            # Zero-copy: one view when the pieces lie back to back in one pack, else the pack
            # ranges mapped side by side (_stitch); a copy only where neither can be done.
            views = [packs.view(man.packs[pi][0], piece_name(o), e.name).view(np.uint8) for pi, o, _, _ in refs]
            addrs = [int(v.ctypes.data) for v in views]
            if all(addrs[k] + views[k].nbytes == addrs[k + 1] for k in range(len(views) - 1)):
                u8: np.ndarray[Any, Any] = views[0]
                if len(views) > 1:  # the same mapping holds the following pieces right behind the first
                    u8 = np.lib.stride_tricks.as_strided(u8, shape=(e.nbytes,), strides=(1,), writeable=False)
                return u8.view(e.dtype).reshape(e.shape, order=shape_order)
            parts = []
            for (pi, _, _, n), v in zip(refs, views, strict=True):
                off = _file_offset(v, packs.directory / man.packs[pi][0])
                if off is None:
                    break
                parts.append((str(packs.directory / man.packs[pi][0]), off, n))
            u8s = stitch(parts) if len(parts) == len(refs) else None
            if u8s is not None:
                return u8s.view(e.dtype).reshape(e.shape, order=shape_order)
    dst = _target(e, given)
    b = array_bytes(dst, e.order)
    off = 0
    for pi, o, h, n in refs:
        name = piece_name(o)
        r = packs.get(man.packs[pi][0], name, e.name)
        seg = b[off : off + n]
        off += n
        info = packs.piece(man.packs[pi][0], name, e.name)
        src = packs.view(man.packs[pi][0], name, e.name) if info["style"] == "raw" else None
        if isinstance(src, np.ndarray) and src.nbytes != n:
            raise FormatError(f"{packs.where}: piece {name} of array {e.name!r} holds {src.nbytes} bytes, not {n}")
        if src is not None and pool is not None:
            pack = man.packs[pi][0]
            foff = _file_offset(src, packs.directory / pack)
            job = (packs.fd(pack), foff) if foff is not None else None
            packs.futures.append(
                pool.submit(_copy_piece, src, job, seg, h if check else None, packs.where, name, e.name)
            )
            continue
        if not (e.dtype.itemsize and n % e.dtype.itemsize == 0 and _read_into(r, name, seg.view(e.dtype))):
            got = r[name].reshape(-1).view(np.uint8)  # stored with another dtype: the same bytes
            if got.nbytes != n:
                raise FormatError(f"{packs.where}: piece {name} of array {e.name!r} holds {got.nbytes} bytes, not {n}")
            seg[:] = got
        if check and xxh64(seg) != h:
            raise FormatError(f"{packs.where}: piece {name} of array {e.name!r} is damaged (its XXH64 differs)")
    if off != e.nbytes:
        raise FormatError(f"{packs.where}: the pieces of array {e.name!r} hold {off} bytes, not {e.nbytes}")
    return dst


def _file_offset(v: np.ndarray[Any, Any], path: Path) -> int | None:
    """The file offset of ``v``, a RAW view into the mapping of the whole file ``path`` (None if it is not one)."""
    base = v.base
    while isinstance(base, np.ndarray):
        base = base.base
    if not isinstance(base, memoryview):
        return None
    try:
        if base.nbytes != path.stat().st_size:
            return None
    except OSError:
        return None
    return int(v.ctypes.data) - int(np.frombuffer(base, np.uint8).ctypes.data)


def _copy_piece(
    src: Any, at: tuple[int, int] | None, seg: np.ndarray[Any, Any], h: int | None, where: str, name: str, array: str
) -> None:
    """Copy a RAW piece into ``seg``: ``pread`` from ``at`` = (fd, file offset) when given (the
    bytes go straight into ``seg``), else from ``src``, its view; check its XXH64 when ``h`` is given.
    CheckptIOError if the file ends first."""
    if at is None:
        seg[:] = src.reshape(-1).view(np.uint8)
    else:
        mv, done = buffer_view(seg), 0
        while done < seg.nbytes:
            try:
                got = _platform.preadinto(at[0], mv[done:], at[1] + done)
            except OSError as ex:
                raise CheckptIOError(
                    ex.errno, f"{where}: reading piece {name} of array {array!r}: {ex.strerror}"
                ) from ex
            if got <= 0:
                raise CheckptIOError(errno.EIO, f"{where}: piece {name} of array {array!r}: the pack file ends early")
            done += got
    if h is not None and xxh64(seg) != h:
        raise FormatError(f"{where}: piece {name} of array {array!r} is damaged (its XXH64 differs)")


def _read_into(r: Any, name: str, dst: np.ndarray[Any, Any]) -> bool:
    """Read piece ``name`` into ``dst`` when its stored dtype and size are ``dst``'s; False when they are not."""
    try:
        r.read(name, out=dst)
    except InvalidArgumentError:
        return False  # stored with another dtype (the same bytes written by another array)
    return True


def _nest(tree: dict[str, Any], path: tuple[str, ...], v: Any) -> None:
    d = tree
    for k in path[:-1]:
        d = d.setdefault(k, {})
    d[path[-1]] = v


def load_manifest(
    path: Path,
    *,
    out: Any = None,
    mmap: MmapMode = True,
    verify: bool | None = None,
    man: Manifest | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Restore the incremental checkpoint whose manifest is ``path``: the nested state, bit-exact.

    RAW arrays whose pieces lie back to back in one pack come back as read-only
    zero-copy views with ``mmap=True``; others are assembled into new
    page-aligned arrays, or into the arrays of ``out`` (LZ4 pieces are
    decoded into them). ``verify=True`` also checks every piece's XXH64.
    Raises CheckptIOError naming the piece and pack when a pack is missing,
    FormatError when a piece is missing or damaged; nothing is returned then.
    """
    man = read_manifest(path) if man is None else man
    outs = _flat_out(out)
    packs = _Packs(path.parent, str(path), True, verify)
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    try:
        tree: dict[str, Any] = dict(man.values)
        for e in man.arrays:
            _nest(tree, e.path, _read_entry(man, e, packs, outs.get(e.name), mmap, verify is True, pool))
        for f in packs.futures:
            f.result()  # the first failed copy's error
        return tree
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        packs.close()


def checked_arrays(path: Path, man: Manifest) -> Iterator[tuple[ArrayEntry, np.ndarray[Any, Any] | Exception]]:
    """Each array of the manifest ``man`` (at ``path``) read as a new copy with every piece's XXH64
    checked, or the exception reading it raised (missing pack or piece, damaged data)."""
    packs = _Packs(path.parent, str(path), True, True)
    try:
        for e in man.arrays:
            try:
                yield e, _read_entry(man, e, packs, None, False, True)
            except Exception as ex:  # a finding, reported by the caller
                yield e, ex
    finally:
        packs.close()
