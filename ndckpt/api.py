"""save / load / open / verify: named numpy arrays in self-describing ndckpt files.

The layout is :mod:`ndckpt.container` (normative spec: ``docs/format.md``).
Frames come from the pure planner :mod:`ndckpt._plan`; LZ4 frames are
encoded and decoded by the frame engine (:mod:`ndckpt.engine`) in mmio mode,
one fresh writer per frame; RAW frames are written verbatim from the arrays'
own memory and mapped back as zero-copy views.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import io
import itertools
import math
import mmap
import os
import stat
import sys
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, ParamSpec, TypeVar, Union

import numpy as np

from . import _files, _lz4, _platform
from ._backend import StreamSink
from ._browse import ROWS_SHOWN, Group, Keys, Listing, Node, build_tree, short_repr, split_key, walk
from ._plan import DEFAULT_FRAME_BYTES, DEFAULT_RAW_FRAME_BYTES, plan
from ._values import decode as decode_value
from ._values import encode as encode_value
from ._values import json_metadata, type_name
from .container import (
    ARRAYS_MAX,
    END_MAGIC,
    HEAD_MAX,
    INDEX_DTYPE,
    MAGIC,
    NAME_MAX,
    PATH_DEPTH_MAX,
    RAW_ALIGN,
    RECORD,
    STORED_RAW,
    SUPERBLOCK,
    TRAILER,
    VERSION,
    ArraySpec,
    FrameSpec,
    Head,
    Part,
    align_up,
    block_offsets,
    check_name,
    encode_dtype,
    lz4_decoded_max,
    stored_bound,
    stored_raw,
)
from .engine import Checkpt, Restore
from .errors import (
    CheckptError,
    CheckptIOError,
    FormatError,
    InvalidArgumentError,
    UnsupportedError,
)
from .format import FrameStyle, parse_style
from .parallel import Progress, ProgressCallback, Staging, aligned_empty, progress_phase, resolve_threads, run_all

__all__ = ["Reader", "load", "open", "save", "verify"]

PathLike = Union[str, "os.PathLike[str]"]
_ZEROS = bytes(RAW_ALIGN)
_WBUF = 1 << 20

# ----------------------------------------------------------------------------------------------
# Input normalisation
# ----------------------------------------------------------------------------------------------


def _flatten(arrays: Any) -> tuple[list[tuple[tuple[str, ...], Any]], list[tuple[str, ...]]]:
    if not isinstance(arrays, Mapping):
        raise InvalidArgumentError(f"arrays: expected a mapping of names to numpy arrays, got {type(arrays).__name__}")
    items: list[tuple[tuple[str, ...], Any]] = []
    groups: list[tuple[str, ...]] = []

    ndarray = np.ndarray

    def walk(m: Mapping[Any, Any], prefix: tuple[str, ...]) -> None:
        if len(prefix) >= PATH_DEPTH_MAX:
            raise InvalidArgumentError(
                f"arrays: group {'/'.join(prefix)[:200]!r} is nested {len(prefix)} deep; names may have at most "
                f"{PATH_DEPTH_MAX} components (format §4.1)"
            )
        for k, v in m.items():  # per-array work stays minimal: a state may hold 20,000 arrays
            if (type(k) is not str and not isinstance(k, str)) or not k or "/" in k:
                _bad_key(k, prefix)
            path = (*prefix, k)
            if type(v) is not ndarray and isinstance(v, Mapping):  # (isinstance of an ABC is slow)
                if v:
                    walk(v, path)
                else:
                    groups.append(path)
            else:
                items.append((path, v))

    walk(arrays, ())
    paths = [p for p, _ in items] + groups
    if len(paths) > ARRAYS_MAX:
        raise InvalidArgumentError(f"arrays: {len(paths)} arrays, values and groups; the limit is {ARRAYS_MAX}")
    comps = list(itertools.chain.from_iterable(paths))
    if comps:
        try:
            ok = max(map(len, comps)) <= NAME_MAX // 4 and bool("".join(comps).encode("utf-8"))
        except UnicodeEncodeError:
            ok = False
        if not ok:
            for path in paths:
                for c in path:
                    check_name(c, f"arrays: {'/'.join(path)[:200]!r}", InvalidArgumentError)
    if len(set(map("/".join, paths))) != len(paths):
        seen: dict[str, tuple[str, ...]] = {}
        for path in paths:
            name = "/".join(path)
            if name in seen:
                raise InvalidArgumentError(f"arrays: names {seen[name]} and {path} both flatten to {name!r}")
            seen[name] = path
    return items, groups


def _bad_key(k: Any, prefix: tuple[str, ...]) -> None:
    """Raise InvalidArgumentError for a mapping key that cannot be a name component."""
    where = f"under group {'/'.join(prefix)!r}" if prefix else "at the top level"
    if isinstance(k, str) and k:
        nest = " ".join(f"{{{c!r}:" for c in k.split("/")) + " ..." + "}" * len(k.split("/"))
        raise InvalidArgumentError(
            f"arrays: key {k!r} {where} contains '/', which separates groups in ndckpt names; "
            f"nest it as {nest} or rename it"
        )
    what = "empty" if isinstance(k, str) else f"a {type(k).__name__}"
    raise InvalidArgumentError(f"arrays: key {k!r} {where} is {what}; keys must be non-empty str (e.g. str(key))")


def flat_names(tree: Mapping[str, Any]) -> dict[str, Any]:
    """A nested mapping flattened to ``{"group/name": leaf}`` (the names :class:`Reader` uses)."""
    out: dict[str, Any] = {}

    def walk(m: Mapping[str, Any], prefix: str) -> None:
        for k, v in m.items():
            name = f"{prefix}/{k}" if prefix else k
            if isinstance(v, Mapping):
                walk(v, name)
            else:
                out[name] = v

    walk(tree, "")
    return out


def _as_array(path: tuple[str, ...], v: Any, checked: set[np.dtype[Any]] | None = None) -> np.ndarray[Any, Any]:
    """``v`` as an ndarray, or InvalidArgumentError naming the array. ``checked``: dtypes known good."""
    ma = sys.modules.get("numpy.ma")  # not imported: nothing can be a masked array (importing costs 14 ms)
    if ma is not None and isinstance(v, ma.MaskedArray):
        raise InvalidArgumentError(f"array {'/'.join(path)!r}: masked arrays are not stored (the mask would be lost)")
    if isinstance(v, np.ndarray):
        a = np.asarray(v)  # subclasses (np.memmap, np.matrix) as plain ndarray views, no copy
    elif isinstance(v, np.generic | bool | int | float | complex):
        a = np.asarray(v)
    else:
        raise InvalidArgumentError(
            f"array {'/'.join(path)!r}: expected a numpy array or scalar, got {type(v).__name__}"
        )
    if checked is None or a.dtype not in checked:
        name = "/".join(path)
        if a.dtype.hasobject:
            raise InvalidArgumentError(
                f"array {name!r}: dtype {a.dtype} holds Python objects, which ndckpt does not store in arrays; "
                "convert it to a numeric, string or structured dtype, or store the objects themselves "
                "(int, float, str, bytes, lists, ...) as a Python value, e.g. a.tolist()"
            )
        encode_dtype(a.dtype, what=f"array {name!r}")
        if checked is not None:
            checked.add(a.dtype)
    return a


def _bytes_of(a: np.ndarray[Any, Any], order: str) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """The array's bytes in ``order`` as a flat uint8 view (no copy: ``a`` is contiguous in it)."""
    if a.nbytes == 0:
        return np.empty(0, np.uint8)
    c = a.T if order == "F" else a
    return c.reshape(-1).view(np.uint8)


class _Strided:
    """A non-contiguous array's bytes in C order, produced a frame at a time (never all at once)."""

    def __init__(self, a: np.ndarray[Any, Any]) -> None:
        # Copy whole items as opaque bytes: numpy copies structured items field by field and
        # leaves padding bytes uninitialised (nondeterministic output leaking stale memory).
        self.a = a.view(np.dtype((np.void, a.dtype.itemsize))) if a.dtype.itemsize else a

    def copy_into(self, dst: np.ndarray[Any, np.dtype[np.uint8]], start: int) -> None:
        """Fill ``dst`` with the C-order bytes ``[start, start + len(dst))`` of the array."""
        isz = self.a.dtype.itemsize
        e0, e1 = start // isz, -(-(start + dst.nbytes) // isz)
        block = np.ascontiguousarray(self.a.flat[e0:e1]).reshape(-1).view(np.uint8)
        lo = start - e0 * isz
        dst[:] = block[lo : lo + dst.nbytes]


_Source = np.ndarray[Any, np.dtype[np.uint8]] | _Strided


def _source(a: np.ndarray[Any, Any]) -> tuple[_Source, str]:
    """(the array's stored bytes, "C" or "F"): a flat view when contiguous, else a _Strided."""
    flags = a.flags
    if flags.c_contiguous:
        if a.ndim == 1 and a.dtype.itemsize:  # the common case of many small arrays: one view, no reshape
            return a.view(np.uint8), "C"
        return _bytes_of(a, "C"), "C"
    if flags.f_contiguous:
        return _bytes_of(a, "F"), "F"
    return _Strided(a), "C"


def _resolve_styles(style: Any, names: list[str], values: Collection[str] = ()) -> list[FrameStyle]:
    """One style per array. A mapping's keys name arrays or groups ("a/b", or nested mappings);
    a group's style applies to every array below it, the most specific key wins, unnamed arrays
    are RAW, and a key naming nothing that is being saved is an error (a typo would otherwise
    silently leave data uncompressed). Keys naming ``values`` (Python-value leaves, stored in
    the head) or groups of them are accepted and have no effect."""
    if not isinstance(style, Mapping):
        s = _parse_style_arg(style, "style")
        return [s] * len(names)
    flat: dict[str, FrameStyle] = {}

    def walk(m: Mapping[Any, Any], prefix: str) -> None:
        for k, v in m.items():
            key = f"{prefix}/{k}" if prefix else str(k)
            if isinstance(v, Mapping):
                walk(v, key)
            else:
                flat[key] = _parse_style_arg(v, f"style[{key!r}]")

    walk(style, "")
    used: set[str] = set()
    out = []
    for n in names:
        parts = n.split("/")
        for k in range(len(parts), 0, -1):
            key = "/".join(parts[:k])
            if key in flat:
                out.append(flat[key])
                used.add(key)
                break
        else:
            out.append(FrameStyle.RAW)
    unknown = set(flat) - used - {g for g in flat if any(n.startswith(g + "/") for n in names)}
    if unknown and values:
        unknown -= {g for g in unknown if g in values or any(n.startswith(g + "/") for n in values)}
    if unknown:
        bad = sorted(unknown)
        shown = ", ".join(map(repr, names[:6])) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
        raise InvalidArgumentError(
            f"style: {', '.join(map(repr, bad))} {'names' if len(bad) == 1 else 'name'} no array or group "
            f"being saved (arrays: {shown or 'none'}); keys of a style mapping are array or group names, "
            "nested or joined by '/': fix or remove the key"
        )
    return out


def _parse_style_arg(v: Any, what: str) -> FrameStyle:
    try:
        s = parse_style(v)
    except UnsupportedError:  # an int that is no frame style: a bad argument here, not a missing feature
        raise InvalidArgumentError(f"{what}: {v} is not a frame style; use 'raw' (or 0, 1) or 'lz4' (or 2)") from None
    except CheckptError as e:
        raise type(e)(f"{what}: {e}") from None
    if s == FrameStyle.LZ4 and not _lz4.available():
        raise UnsupportedError(f"{what}: LZ4 is unavailable (no LZ4 library found)")
    return s


def _check_metadata(metadata: Any) -> Any:
    """``metadata`` as plain JSON data: any JSON value, numpy scalars converted (see _values.json_metadata)."""
    if isinstance(metadata, Mapping) and not isinstance(metadata, dict):
        metadata = dict(metadata)
    return json_metadata(metadata)


@dataclass
class _Prepared:
    head: Head
    sources: list[_Source]  # stored bytes per array, in storage order
    head_json: bytes


def _prepare(arrays: Any, style: Any, metadata: Any, frame_bytes: int, raw_frame_bytes: int | None = None) -> _Prepared:
    items, groups = _flatten(arrays)
    specs: list[ArraySpec] = []
    srcs: list[_Source] = []
    values: list[tuple[tuple[str, ...], Any]] = []
    src: _Source
    checked: set[np.dtype[Any]] = set()
    new_spec, ndarray, uint8 = tuple.__new__, np.ndarray, np.uint8
    for path, v in items:  # per-array work stays minimal: a state may hold 20,000 arrays
        if type(v) is ndarray and v.ndim == 1 and v.dtype in checked and v.flags.c_contiguous and v.itemsize:
            src, order, a = v.view(uint8), "C", v  # the common case of many small arrays
        elif not isinstance(v, ndarray):  # a Python value or numpy scalar: stored in the head
            values.append((path, encode_value(v, f"value {'/'.join(path)!r}")))
            continue
        else:
            a = _as_array(path, v, checked)
            src, order = _source(a)
        specs.append(new_spec(ArraySpec, (path, a.dtype, a.shape, order, None)))
        srcs.append(src)
    names = ["/".join(s.path) for s in specs] if values else ["/".join(p) for p, _ in items]
    styles = _resolve_styles(style, names, {"/".join(p) for p, _ in values})
    meta = _check_metadata(metadata)
    prep = prepare_specs(specs, srcs, styles, groups, meta, frame_bytes, raw_frame_bytes, check=False)
    if values:
        prep.head.values = sorted(values, key=lambda e: e[0])
        prep.head_json = prep.head.to_json()
    if len(prep.head_json) > HEAD_MAX:
        raise InvalidArgumentError(
            f"the head would be {len(prep.head_json)} bytes, more than the {HEAD_MAX}-byte limit readers "
            "accept: store large data as arrays, not as Python values or metadata"
        )
    return prep


def prepare_specs(
    specs: list[ArraySpec],
    sources: list[_Source],
    styles: list[FrameStyle],
    groups: list[tuple[str, ...]],
    metadata: Any,
    frame_bytes: int = DEFAULT_FRAME_BYTES,
    raw_frame_bytes: int | None = DEFAULT_RAW_FRAME_BYTES,
    *,
    check: bool = True,
) -> _Prepared:
    """Plan already-described arrays (``sources[i]`` holds the stored bytes of ``specs[i]``).

    The building block for writers that describe arrays themselves, such as
    global arrays stored as blocks (:mod:`ndckpt.mpi`). With ``check`` the
    head is validated as a reader would (names, paths, blocks, tiling), which
    :func:`save` skips: its inputs were validated on the way in.
    """
    perm, frames = plan(specs, styles, frame_bytes, raw_frame_bytes)
    head = Head([specs[i] for i in perm], frames, sorted(groups), metadata)
    if check:
        head.check_tiling()
    return _Prepared(head, [sources[i] for i in perm], head.to_json())


# ----------------------------------------------------------------------------------------------
# save
# ----------------------------------------------------------------------------------------------


def _frame_input(
    f: FrameSpec, sources: list[_Source]
) -> tuple[np.ndarray[Any, np.dtype[np.uint8]], np.ndarray[Any, np.dtype[np.uint8]] | None]:
    """The frame's single buffer: a slice of one array (no copy), or a gathered staging buffer."""
    p0 = f.parts[0]
    src0 = sources[p0.array]
    if len(f.parts) == 1 and p0.at == 0 and p0.nbytes == f.nbytes and not isinstance(src0, _Strided):
        return src0[p0.start : p0.start + p0.nbytes], None
    g = Staging.get(f.nbytes)
    if len(f.parts) > 1 or p0.nbytes != f.nbytes:
        g[:] = 0  # the padding around the parts (one memset, not one per gap)
    for ai, start, n, at in f.parts:  # per-part work stays minimal: a frame may pack 16,000 arrays
        src = sources[ai]
        if isinstance(src, _Strided):
            src.copy_into(g[at : at + n], start)
        elif start == 0 and n == len(src):
            g[at : at + n] = src
        else:
            g[at : at + n] = src[start : start + n]
    return g, g


@dataclass
class _Encoded:
    data: np.ndarray[Any, np.dtype[np.uint8]]  # stored bytes of the data frame
    xxh: int
    hold: list[np.ndarray[Any, np.dtype[np.uint8]]]  # staging buffers to give back after writing
    raw: bool = False  # an LZ4 frame stored verbatim (LZ4 did not pay): pad, then ``data``

    @property
    def stored(self) -> int:
        """The record's and index's stored_nbytes: the size, with bit 63 when stored verbatim."""
        return self.data.nbytes | STORED_RAW if self.raw else self.data.nbytes


def _encode(f: FrameSpec, fi: int, sources: list[_Source]) -> _Encoded:
    """Compress an LZ4 frame (or hash a RAW one) into its stored bytes.

    An LZ4 frame that compression does not shrink by 1/32 comes back as its
    input, ``raw`` set (format §2.3). The returned buffers stay valid until
    ``hold`` is given back to Staging.
    """
    src, gathered = _frame_input(f, sources)
    if f.style == FrameStyle.RAW:
        return _Encoded(src, _lz4.xxh64(src), [gathered] if gathered is not None else [])
    out = Staging.get(stored_bound(f))
    try:
        ck = Checkpt.mmio(out)
        ck.frame_open(FrameStyle.LZ4)
        ck.buf(src)
        end = ck.frame_close()
        ck.fini()
    except CheckptError as e:
        Staging.put(out)
        if gathered is not None:
            Staging.put(gathered)
        raise type(e)(f"frame {fi}: {e}") from e
    if stored_raw(f.nbytes, end):
        Staging.put(out)
        return _Encoded(src, _lz4.xxh64(src), [gathered] if gathered is not None else [], raw=True)
    if gathered is not None:
        Staging.put(gathered)
    data = out[:end]
    return _Encoded(data, _lz4.xxh64(data), [out])


def _write_checkpoint(sink: StreamSink, prep: _Prepared, threads: int, progress: ProgressCallback | None) -> None:
    """Emit a planned checkpoint through ``sink`` in file order, never seeking.

    With ``threads > 1`` a pool encodes LZ4 frames up to ``threads + 1`` frames
    ahead of the writer, and hashes each RAW frame while the calling thread
    writes it (a RAW frame's checksum is only needed for the index at the end).
    """
    head = prep.head
    sink.write(memoryview(SUPERBLOCK.pack(MAGIC, VERSION, 0, len(prep.head_json), _lz4.xxh64(prep.head_json))))
    sink.write(memoryview(prep.head_json))
    frames, sources = head.frames, prep.sources
    index = np.zeros(len(frames), INDEX_DTYPE)
    prog = Progress(progress, sum(f.nbytes for f in frames))
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ndckpt") if threads > 1 else None
    ahead: deque[Future[_Encoded]] = deque()
    lz4_frames = iter([fi for fi, f in enumerate(frames) if f.style == FrameStyle.LZ4])
    raw_hashes: list[tuple[int, Future[int] | int, np.ndarray[Any, np.dtype[np.uint8]] | None]] = []

    def encode(fi: int) -> _Encoded:
        return _encode(frames[fi], fi, sources)

    try:
        for fi, f in enumerate(frames):
            if f.style == FrameStyle.LZ4:
                if pool is None:
                    enc = encode(fi)
                else:
                    for nxt in lz4_frames:
                        ahead.append(pool.submit(encode, nxt))
                        if len(ahead) > threads:
                            break
                    enc = ahead.popleft().result()
                try:
                    sink.write(memoryview(RECORD.pack(enc.stored, enc.xxh)))
                    if enc.raw:
                        _write_pad(sink)
                    index[fi] = (sink.offset, enc.stored, enc.xxh)
                    sink.write(_mv(enc.data))
                finally:
                    for buf in enc.hold:
                        Staging.put(buf)
            else:
                src, gathered = _frame_input(f, sources)
                h: Future[int] | int = _lz4.xxh64(src) if pool is None else pool.submit(_lz4.xxh64, src)
                raw_hashes.append((fi, h, gathered))
                _write_pad(sink)
                index[fi] = (sink.offset, f.nbytes, 0)
                mv = _mv(src)
                cuts = prog.pieces(f.nbytes)
                if len(cuts) > 1:  # a large RAW frame: written and reported in pieces (views, no copies)
                    for a in cuts[:-1]:
                        sink.write(mv[a : a + cuts.step])
                        prog.advance(cuts.step)
                    a = cuts[-1]
                    sink.write(mv[a:])
                    prog.advance(f.nbytes - a)
                    continue
                sink.write(mv)
            prog.advance(f.nbytes)
        for fi, h, gathered in raw_hashes:
            index[fi]["xxh64"] = h if isinstance(h, int) else h.result()
            if gathered is not None:
                Staging.put(gathered)
        raw_hashes.clear()
    finally:
        for fut in ahead:
            fut.cancel()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    index_off = sink.offset
    ib = index.tobytes()
    sink.write(memoryview(ib))
    total = sink.offset + TRAILER.size
    sink.write(memoryview(TRAILER.pack(index_off, len(frames), _lz4.xxh64(ib), total, VERSION, 0, END_MAGIC)))
    sink.flush()


def _write_pad(sink: StreamSink) -> None:
    """Zero bytes up to the next multiple of RAW_ALIGN (before a verbatim data frame)."""
    pad = align_up(sink.offset, RAW_ALIGN) - sink.offset
    if pad:
        sink.write(memoryview(_ZEROS)[:pad])


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a head's objects are built.

    None of them can be cyclic garbage, but a head of 20,000 arrays makes a
    few hundred thousand objects, and the collector rescanning the growing heap
    every 700 allocations took 20-30% of such a load (8.2 -> 6.5 us per array).
    The caller's setting is restored, even on error.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _mv(a: Any) -> memoryview:
    """A memoryview of a buffer (numpy arrays included)."""
    return memoryview(a)


def _is_pathlike(x: Any) -> bool:
    return isinstance(x, str | os.PathLike)


def save(
    target: PathLike | BinaryIO | int,
    arrays: Mapping[str, Any],
    *,
    style: Any = "raw",
    threads: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    durable: bool = True,
) -> None:
    """Write ``arrays`` (a possibly nested mapping of names to numpy arrays) as one ndckpt file.

    Parameters
    ----------
    target
        A path (written atomically: a temporary file in the same directory is
        written, flushed, fsynced and renamed over ``target``, then the
        directory is fsynced; see *Paths* below), or a binary file object /
        int file descriptor open for writing (pipes, sockets and stdout
        included; the writer never seeks and the bytes are identical to a
        file's). File objects stay open.
    arrays
        Mapping of non-empty str keys without "/" to leaves, possibly nested
        (a mapping is a group; nesting comes back on load; flat names join
        the path with "/"). A leaf is a numpy array (every dtype without Python
        objects is stored exactly: byte order, structured layouts and memory
        order kept), or a *value* stored in the head and given back as an
        equal object of the same type, bit for bit: a numpy scalar, ``int`` of
        any size, ``float``, ``bool``, ``complex``, ``str``, ``bytes``,
        ``None``, or a list, tuple or (inside those) dict with str keys of
        values (docs/guide.md, "Python values and numpy scalars").
    style
        ``"raw"`` (zero-copy on load), ``"lz4"``, a FrameStyle, or a mapping
        from array names (flat "a/b" or nested like ``arrays``) to styles;
        unnamed arrays are RAW.
    threads
        Worker threads for checksumming and compression (None: all cores).
        The bytes written never depend on it.
    metadata
        Any JSON value (dict with str keys, list, str, int, float, bool, None;
        numpy scalars are converted with ``.item()``, tuples become lists),
        stored with the arrays (``Reader.metadata``).
    progress
        Optional ``callback(done, total)``, in uncompressed bytes, called from
        the calling thread: once with ``done == 0`` before any frame, then
        after each frame is written and inside large RAW frames, at least
        every ``max(16 MiB, total // 100)`` bytes, with ``done`` never
        decreasing and the last call ``(total, total)``. If the callback also
        has a ``phase`` method, ``progress.phase("fsync")`` is called after
        that last call when the fsyncs begin (a path with ``durable=True``
        only). An exception raised by either aborts the save as a failed
        write does (for a path: the temporary file is removed, any previous
        file is untouched) and propagates.
    durable
        For a path: fsync the file before the rename and the directory after
        it (default), so that the new checkpoint survives a power failure or
        OS crash once ``save`` returns. ``False`` skips both fsyncs, which on
        a disk can cost more than the write itself: the save stays atomic for
        readers and survives a crash of this process, but after a power
        failure or OS crash the target may hold an incomplete file (readers
        then raise, never returning wrong arrays) or neither version. Ignored
        for file objects and descriptors, which are never fsynced.

    Raises
    ------
    InvalidArgumentError
        Bad arguments (the message names the array, value or argument): a key
        that is empty, not a str or contains "/", a leaf of a type not stored
        exactly, a head (values and metadata) beyond the readers' 256 MiB
        limit, or a ``target`` that is a directory or a symlink to one;
        nothing is written at ``target`` then.
    UnsupportedError
        LZ4 requested and no LZ4 library available; nothing is written.
    CheckptIOError
        The write failed (disk full, broken pipe, ...). For a path, the
        temporary file is removed and any previous file at ``target`` is
        untouched (except when only the final fsync of the directory fails:
        the new file is then in place, its durability unknown); for a file
        object, its content is undefined.

    Notes
    -----
    Output is deterministic: equal mappings (whatever their key order) and
    options give identical bytes.

    Paths: the temporary file is ``.<name>.ndckpt-tmp-<pid>-<host>-<random>``
    next to the file being replaced, created exclusively (a file or symlink
    planted there is never followed). Replacing an existing file keeps its
    permission bits (a ``0600`` file stays ``0600``); a new file gets
    ``0o666 & ~umask``. Owner, group, extended attributes and other hard
    links of the old file are not carried over (the file is a new inode).
    A symlink ``target`` is written through, like ``np.save``: the file it
    resolves to is replaced atomically (in that file's directory) and the
    link stays; a dangling link creates the file it names; a link to a
    directory raises InvalidArgumentError. A FIFO or device (``/dev/stdout``)
    is written in place as a stream, without rename or fsync.

    Before writing, temporary files of the same target left by writers that
    were killed are removed: only names of exactly the form above, in the
    target's directory, for this target's name, regular files (not
    symlinks), whose ``<host>`` is this host (and pid namespace) and whose
    pid no longer exists. A temporary file of another host on a shared file
    system, or of a live process, is never touched.

    Examples
    --------
    A nested mapping of arrays and values, written to a path and read back (the temporary
    file was renamed over ``state.ndckpt``):

    >>> import io, os, tempfile, ndckpt, numpy as np
    >>> state = {"fields": {"u": np.arange(6.0).reshape(2, 3)}, "step": 7}
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "state.ndckpt")
    ...     ndckpt.save(path, state, style="lz4", metadata={"run": "a"})
    ...     print(os.listdir(d), ndckpt.load(path)["fields"]["u"].tolist())
    ['state.ndckpt'] [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]

    To a binary file object (or a pipe, socket or fd: the writer never seeks):

    >>> f = io.BytesIO()
    >>> ndckpt.save(f, {"x": np.zeros(3, "f4")})
    >>> ndckpt.load(f.getvalue())["x"]
    array([0., 0., 0.], dtype=float32)
    """
    th = resolve_threads(threads)
    if not isinstance(durable, bool):
        raise InvalidArgumentError(f"durable must be a bool, got {durable!r}")
    with _no_gc():
        prep = _prepare(arrays, style, metadata, DEFAULT_FRAME_BYTES, DEFAULT_RAW_FRAME_BYTES)
    if _is_pathlike(target):
        _save_path(Path(os.fspath(target)), prep, th, progress, durable=durable)  # type: ignore[arg-type]
        return
    if isinstance(target, bool | io.TextIOBase) or not (isinstance(target, int) or hasattr(target, "write")):
        raise InvalidArgumentError(
            f"target: expected a path, a binary file object or an fd, got {type(target).__name__}"
        )
    if isinstance(target, int) and target < 0:
        raise InvalidArgumentError(f"target: bad file descriptor {target}")
    _write_checkpoint(StreamSink(target, _WBUF), prep, th, progress)


def _save_path(
    path: Path, prep: _Prepared, threads: int, progress: ProgressCallback | None, *, durable: bool = True
) -> None:
    def before_sync() -> None:
        progress_phase(progress, "fsync")

    with _files.open_output(path, durable=durable, before_sync=before_sync) as fd:
        _write_checkpoint(StreamSink(fd, _WBUF), prep, threads, progress)


def _fsync_dir(directory: Path) -> None:
    """fsync ``directory`` (:func:`ndckpt._files.fsync_dir`)."""
    _files.fsync_dir(directory)


# ----------------------------------------------------------------------------------------------
# Reading: layout validation
# ----------------------------------------------------------------------------------------------


class _Loc:
    """Where an array's stored bytes are: its (frame index, part) pairs in order, and their style."""

    __slots__ = ("file_start", "parts", "style")

    def __init__(self, parts: list[tuple[int, Part]], style: FrameStyle) -> None:
        self.parts = parts
        self.style = style
        self.file_start: int | None = None  # offset of its first byte when its parts are contiguous

    @property
    def frames(self) -> list[int]:
        return [fi for fi, _ in self.parts]


def _contiguous_start(parts: list[tuple[int, Part]], offsets: list[int]) -> int | None:
    """File offset of an array's first byte if its parts follow each other in the file, else None."""
    pos: int | None = None
    start: int | None = None
    for fi, p in parts:
        off = offsets[fi] + p.at
        if pos is None:
            start = off
        elif off != pos:
            return None
        pos = off + p.nbytes
    return start


class _Layout:
    """A validated file: head, frame offsets/sizes/checksums, and where every array lives."""

    def __init__(self, head: Head, offsets: list[int], stored: list[int], xxh: list[int]) -> None:
        """``stored`` holds the index's values: bit 63 marks an LZ4 frame stored verbatim."""
        self.head = head
        self.offsets, self.xxh = offsets, xxh
        self.stored, self.verbatim = [0] * len(stored), [False] * len(stored)
        for fi, n in enumerate(stored):
            self.set_stored(fi, n)
        self._locs: list[_Loc] | None = None
        self._some: dict[int, _Loc] = {}  # built one at a time by loc()
        self._by_array: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], list[int]] | None = None
        self.by_name = dict(zip(head.names(), range(len(head.arrays)), strict=True))
        #: Python-value leaves: flat name -> index into head.values.
        self.value_names = {"/".join(p): i for i, (p, _) in enumerate(head.values)}

    @property
    def locs(self) -> list[_Loc]:
        """Every array's location, built on first use (after the offsets are known).

        Whole loads of many small arrays do not need them (see _Loader.load);
        building them costs 0.5 us per array.
        """
        if self._locs is None:
            # Per part, not per array. (All of an array's frames have one style: Head checked
            # it.) Arrays of zero bytes share one empty location.
            empty = _Loc([], FrameStyle.RAW)
            locs: list[_Loc] = [empty] * len(self.head.arrays)
            for fi, f in enumerate(self.head.frames):
                style = f.style
                for p in f.parts:
                    loc = locs[p[0]]
                    if loc is empty:
                        locs[p[0]] = _Loc([(fi, p)], style)
                    else:
                        loc.parts.append((fi, p))
            self._locs = locs
            self._place()
        return self._locs

    def loc(self, ai: int) -> _Loc:
        """Array ``ai``'s location, without building every array's (see :attr:`locs`)."""
        if self._locs is not None or len(self.head.arrays) < _MANY:  # (small heads: build them all)
            return self.locs[ai]
        got = self._some.get(ai)
        if got is None:
            t = self.head.part_table()
            if self._by_array is None:
                order = np.argsort(t.array, kind="stable")
                bounds = np.searchsorted(t.array[order], np.arange(len(self.head.arrays) + 1))
                self._by_array = (order, bounds, np.cumsum([0, *t.per_frame]).tolist())
            order, bounds, first = self._by_array
            frames = self.head.frames
            parts = []
            for k in order[bounds[ai] : bounds[ai + 1]].tolist():
                fi = int(t.frame[k])
                parts.append((fi, frames[fi].parts[k - first[fi]]))
            got = self._some[ai] = _Loc(parts, frames[parts[0][0]].style if parts else FrameStyle.RAW)
            got.file_start = _contiguous_start(got.parts, self.offsets)
        return got

    def set_stored(self, fi: int, n: int) -> None:
        """Record frame ``fi``'s stored_nbytes as found in its record or index entry."""
        raw = bool(n & STORED_RAW)
        self.stored[fi] = n & ~STORED_RAW
        self.verbatim[fi] = raw or self.head.frames[fi].style == FrameStyle.RAW

    def index_value(self, fi: int) -> int:
        """Frame ``fi``'s stored_nbytes as written in its record and the index."""
        raw_lz4 = self.verbatim[fi] and self.head.frames[fi].style == FrameStyle.LZ4
        return self.stored[fi] | STORED_RAW if raw_lz4 else self.stored[fi]

    def _place(self) -> None:
        """Compute file_start for arrays whose parts are contiguous in the file (needs offsets)."""
        offsets = self.offsets
        assert self._locs is not None
        for loc in self._locs:
            parts = loc.parts
            if len(parts) == 1:  # the common case: one part, trivially contiguous
                fi, p = parts[0]
                loc.file_start = offsets[fi] + p[3]
            elif parts:
                loc.file_start = _contiguous_start(parts, offsets)

    def index_of(self, name: Any) -> int:
        key = "/".join(name) if isinstance(name, tuple) else name
        if not isinstance(key, str) or key not in self.by_name:
            raise KeyError(f"no array named {name!r} in this checkpoint")
        return self.by_name[key]

    def where(self, fi: int) -> str:
        names = sorted({self.head.arrays[p.array].name for p in self.head.frames[fi].parts})
        shown = ", ".join(repr(n) for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return f"frame {fi} at offset {self.offsets[fi]} (array {shown})"


def _check_frame_sizes(head: Head, fi: int, stored: int) -> None:
    """Check a record's or index entry's stored_nbytes (bit 63 included) against the head."""
    f = head.frames[fi]
    if f.style == FrameStyle.RAW and stored != f.nbytes:
        flag = " (with the stored-verbatim bit, which only LZ4 frames may have)" if stored & STORED_RAW else ""
        raise FormatError(f"frame {fi}: RAW frame stores {stored & ~STORED_RAW} bytes{flag}, the head says {f.nbytes}")
    if f.style == FrameStyle.LZ4:
        if stored & STORED_RAW:
            if stored & ~STORED_RAW != f.nbytes:
                n = stored & ~STORED_RAW
                raise FormatError(f"frame {fi}: LZ4 frame stored verbatim in {n} bytes, the head says {f.nbytes}")
        elif not (stored <= stored_bound(f) and f.nbytes <= lz4_decoded_max(stored)):
            raise FormatError(f"frame {fi}: LZ4 frame of {f.nbytes} bytes cannot be stored in {stored} bytes")


def _parse_superblock(sb: bytes | bytearray | memoryview) -> tuple[int, int]:
    magic, version, flags, hn, hx = SUPERBLOCK.unpack(sb)
    if magic != MAGIC:
        raise FormatError("not an ndckpt file: bad magic at offset 0")
    if version != VERSION:
        # Refused before anything else is read; a newer version is a reason to upgrade, not corruption.
        hint = "; upgrade ndckpt to read it" if version > VERSION else ""
        raise FormatError(f"unsupported ndckpt format version {version} (this ndckpt reads version {VERSION}){hint}")
    if flags:
        raise FormatError(f"superblock: unknown flags {flags:#x}")
    if hn > HEAD_MAX:
        raise FormatError(f"superblock: head of {hn} bytes exceeds the {HEAD_MAX}-byte limit")
    return hn, hx


def _parse_region(region: memoryview) -> _Layout:
    size = region.nbytes
    if size < SUPERBLOCK.size + TRAILER.size:
        raise FormatError(f"not an ndckpt file: {size} bytes is too small")
    hn, hx = _parse_superblock(region[: SUPERBLOCK.size])
    head_end = SUPERBLOCK.size + hn
    if head_end > size - TRAILER.size:
        raise FormatError(f"superblock: head of {hn} bytes runs past the end of the {size}-byte file")
    head_raw = region[SUPERBLOCK.size : head_end]
    if _lz4.xxh64(head_raw) != hx:
        raise FormatError(f"head at offset {SUPERBLOCK.size}: checksum mismatch")
    head = Head.from_json(head_raw)
    io, nframes, ix, total, version, flags, end_magic = TRAILER.unpack(region[size - TRAILER.size :])
    if end_magic != END_MAGIC:
        raise FormatError(f"trailer at offset {size - TRAILER.size}: bad end magic (truncated or not an ndckpt file)")
    if version != VERSION or flags:
        raise FormatError(f"trailer: version {version} / flags {flags:#x} do not match the superblock")
    if total != size:
        raise FormatError(f"trailer: file should be {total} bytes, it is {size}")
    if nframes != len(head.frames) or io + nframes * INDEX_DTYPE.itemsize != size - TRAILER.size or io < head_end:
        raise FormatError(f"trailer: index of {nframes} frames at offset {io} does not fit the file")
    ib = region[io : io + nframes * INDEX_DTYPE.itemsize]
    if _lz4.xxh64(ib) != ix:
        raise FormatError(f"index at offset {io}: checksum mismatch")
    idx = np.frombuffer(ib, INDEX_DTYPE)
    offsets, stored, xxh = idx["offset"].tolist(), idx["stored"].tolist(), idx["xxh64"].tolist()
    pos = head_end
    for fi, f in enumerate(head.frames):
        if f.style == FrameStyle.LZ4:
            if pos + RECORD.size > io:
                raise FormatError(f"frame {fi}: record at offset {pos} runs past the index")
            rs, rx = RECORD.unpack(region[pos : pos + RECORD.size])
            if (rs, rx) != (stored[fi], xxh[fi]):
                raise FormatError(f"frame {fi}: record at offset {pos} disagrees with the index")
            pos += RECORD.size
            if rs & STORED_RAW:
                pos = align_up(pos, RAW_ALIGN)
        else:
            pos = align_up(pos, RAW_ALIGN)
        if offsets[fi] != pos:
            raise FormatError(f"frame {fi}: index says offset {offsets[fi]}, the layout gives {pos}")
        _check_frame_sizes(head, fi, stored[fi])
        pos += stored[fi] & ~STORED_RAW
        if pos > io:
            n = stored[fi] & ~STORED_RAW
            raise FormatError(f"frame {fi} at offset {offsets[fi]}: {n} bytes run past the index")
    if pos != io:
        raise FormatError(f"{io - pos} unexplained bytes before the index at offset {io}")
    return _Layout(head, offsets, stored, xxh)


# ----------------------------------------------------------------------------------------------
# Reading: destinations and decoding
# ----------------------------------------------------------------------------------------------


def _new_array(spec: ArraySpec) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, np.dtype[np.uint8]]]:
    """A new page-aligned array for ``spec`` and its flat byte view in the stored order."""
    try:
        raw = aligned_empty(spec.nbytes)
    except MemoryError as e:  # a stream can claim any size before its data arrive
        raise CheckptIOError(errno.ENOMEM, f"array {spec.name!r}: cannot allocate its {spec.nbytes} bytes") from e
    arr: np.ndarray[Any, Any] = np.ndarray(spec.shape, spec.dtype, buffer=raw, order=spec.order)  # type: ignore[call-overload,arg-type,unused-ignore]
    return arr, raw


#: dtypes np.frombuffer can make views of: not zero-sized, no subarray (numpy would reshape those).
_FLAT_DTYPES: dict[np.dtype[Any], bool] = {}


def _array_at(buf: Any, spec: ArraySpec, offset: int) -> np.ndarray[Any, Any]:
    """Array ``spec`` as a view of ``buf`` at byte ``offset`` (read-only if ``buf`` is).

    ``np.frombuffer`` takes 0.26 us where ``np.ndarray(shape, dtype, buffer=...)``
    takes 0.69 us, which matters for 20,000 small arrays; other dtypes take the
    general constructor.
    """
    dt, shape = spec.dtype, spec.shape
    flat = _FLAT_DTYPES.get(dt)
    if flat is None:
        flat = _FLAT_DTYPES[dt] = dt.itemsize > 0 and dt.subdtype is None and len(_FLAT_DTYPES) < 4096
    if not flat:
        return np.ndarray(shape, dt, buffer=buf, offset=offset, order=spec.order)  # type: ignore[call-overload,arg-type,no-any-return,unused-ignore]
    a = np.frombuffer(buf, dt, math.prod(shape), offset)
    if len(shape) == 1:
        return a
    return a.reshape(shape) if spec.order == "C" else a.reshape(shape[::-1]).T


def _check_out(spec: ArraySpec, out: Any) -> np.ndarray[Any, np.dtype[np.uint8]]:
    name = spec.name
    if not isinstance(out, np.ndarray):
        raise InvalidArgumentError(f"out[{name!r}]: expected a numpy array, got {type(out).__name__}")
    if out.dtype != spec.dtype or out.shape != spec.shape:
        raise InvalidArgumentError(
            f"out[{name!r}]: expected dtype {spec.dtype} and shape {spec.shape}, got {out.dtype} and {out.shape}"
        )
    if not out.flags.writeable:
        raise InvalidArgumentError(f"out[{name!r}]: array is read-only")
    ok = out.flags.f_contiguous if spec.order == "F" else out.flags.c_contiguous
    if not ok:
        raise InvalidArgumentError(f"out[{name!r}]: must be {spec.order}-contiguous, as the array was saved")
    return _bytes_of(out, spec.order)


#: Where a frame is, for error messages: the text, or a function making it (naming a frame's
#: arrays costs a join per array, so readers describe a frame only when something is wrong).
Where = str | Callable[[], str]


def _text(where: Where) -> str:
    return where if isinstance(where, str) else where()


def _decode_lz4(stored: memoryview, dst: np.ndarray[Any, np.dtype[np.uint8]], where: Where) -> None:
    try:
        rs = Restore.mmio(stored)
        rs.frame_open(FrameStyle.LZ4)
        rs.buf(dst)
        end = rs.frame_close()
        rs.fini()
    except CheckptError as e:
        raise type(e)(f"{_text(where)}: {e}") from e
    if end != stored.nbytes:
        raise FormatError(f"{_text(where)}: LZ4 data ends at byte {end} of {stored.nbytes} stored bytes")


def _verify_hash(data: Any, expect: int, where: Where) -> None:
    if _lz4.xxh64(data) != expect:
        raise FormatError(f"{_text(where)}: checksum mismatch (the file is corrupt)")


class _Src:
    """A checkpoint's bytes: a read-only mapping (or the caller's buffer) and, for files, an fd.

    Copies and LZ4 input are read with ``pread`` when an fd is there: reading
    into the destination is the fastest path here (aligned ``preadv`` ran at
    6-14 GB/s) and mapped pages never inflate the process's RSS. Where
    ``preadv`` is missing the read falls back as :mod:`ndckpt._platform` says.
    """

    def __init__(self, region: memoryview, fd: int | None = None) -> None:
        self.region, self.fd = region, fd

    def read(self, dst: np.ndarray[Any, np.dtype[np.uint8]], off: int) -> None:
        """Fill ``dst`` with the bytes at ``off``; CheckptIOError if the file ends first."""
        n = dst.nbytes
        if self.fd is None:
            np.copyto(dst, np.frombuffer(self.region, np.uint8, n, off))
            return
        done = 0
        mv = _mv(dst)
        while done < n:
            try:
                r = _platform.preadinto(self.fd, mv[done:], off + done)
            except OSError as e:
                raise CheckptIOError(e.errno, f"read of {n} bytes at offset {off} failed: {e.strerror}") from e
            if r <= 0:
                raise CheckptIOError(f"unexpected end of file at offset {off + done} (the file shrank?)")
            done += r

    def hash(self, off: int, n: int) -> int:
        """XXH64 of the ``n`` bytes at ``off``.

        With an fd the bytes are read (``pread``, in pieces of ``_HASH_PIECE``),
        never touched through the mapping: a file that shrinks meanwhile raises
        CheckptIOError instead of killing the process with SIGBUS. A caller's
        buffer is hashed in place.
        """
        if self.fd is None:
            return _lz4.xxh64(self.region[off : off + n])
        h = _lz4.XXH64()
        buf = Staging.get(min(n, _HASH_PIECE))
        try:
            for a in range(0, n, _HASH_PIECE):
                piece = buf[: min(_HASH_PIECE, n - a)]
                self.read(piece, off + a)
                h.update(piece)
        finally:
            Staging.put(buf)
        return h.digest()

    def private_map(self, lo: int, hi: int) -> tuple[memoryview, int]:
        """A new copy-on-write (``MAP_PRIVATE``) mapping of file bytes ``[lo, hi)`` and its file offset.

        The mapping starts at ``lo`` rounded down to the allocation granularity;
        the returned offset is that start. Writes through it stay in private
        pages and never reach the file. It is owned by whatever holds the
        memoryview (the arrays viewing it) and unmapped with the last of them;
        until then it also holds a duplicate of the fd (Python's mmap keeps one).
        CheckptIOError if the file cannot be mapped (it shrank, say).
        """
        assert self.fd is not None
        assert hi > lo
        base = lo - lo % mmap.ALLOCATIONGRANULARITY
        try:
            m = mmap.mmap(self.fd, hi - base, access=mmap.ACCESS_COPY, offset=base)
        except (OSError, ValueError) as e:
            code = getattr(e, "errno", None)
            raise CheckptIOError(code, f"cannot map bytes [{lo}, {hi}) copy-on-write: {e}") from e
        return memoryview(m), base

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


#: Pieces in which :meth:`_Src.hash` reads what it hashes.
_HASH_PIECE = 1 << 18


#: With ``mmap="c"``, a call whose mapped arrays hold fewer bytes than this copies them instead:
#: a private mapping costs a file descriptor and a kernel mapping for as long as its arrays live,
#: and a copy of a few pages costs what copy-on-write of them would.
_COW_MIN = 1 << 20
#: Loads of at least this many arrays sort them with numpy (_Loader._sort_many); for fewer, the
#: per-array path is cheaper (numpy's per-call overhead dominated a one-array open: 0.7 ms).
_MANY = 64
Job = tuple[Part, int, int, np.ndarray[Any, np.dtype[np.uint8]]]  # part, lo, hi (stored bytes), destination
#: Large RAW frames are copied in pieces of this size, so that one big array uses every thread.
_SPLIT = 64 << 20


def _call(task: Callable[[], None]) -> None:
    task()


class _Loader:
    """Materialises arrays of a validated file: views, copies or decodes, in parallel over frames."""

    def __init__(
        self,
        src: _Src,
        layout: _Layout,
        *,
        mmap_views: bool,
        verify: bool | None,
        threads: int,
        progress: ProgressCallback | None = None,
        cow: bool = False,
    ) -> None:
        # cow: mapped arrays are views of a private (copy-on-write) mapping made for this load
        # (one per call, so that writes to them reach neither the file nor other loads' arrays);
        # only with an fd (a path).
        assert not cow or (mmap_views and src.fd is not None)
        self.src, self.region, self.layout = src, src.region, layout
        self.mmap_views, self.verify, self.threads = mmap_views, verify, threads
        self.progress = progress
        self.cow = cow

    # -- frames ------------------------------------------------------------------------------

    def _run(self, jobs: dict[int, list[Job]], keep: set[int]) -> dict[int, np.ndarray[Any, np.dtype[np.uint8]]]:
        """Read every frame in ``jobs`` once and copy the listed byte ranges to their destinations.

        Returns the decoded buffers of the LZ4 frames listed in ``keep``.
        """
        lay, head = self.layout, self.layout.head
        kept: dict[int, np.ndarray[Any, np.dtype[np.uint8]]] = {}
        prog = Progress(self.progress, sum(head.frames[fi].nbytes for fi in jobs))

        def check(fi: int) -> bool:
            """RAW frames are checked when asked; LZ4 frames (verbatim ones too) unless told not to."""
            return bool(self.verify) if head.frames[fi].style == FrameStyle.RAW else self.verify is not False

        def work(fi: int) -> None:
            f, off, where = head.frames[fi], lay.offsets[fi], functools.partial(lay.where, fi)
            todo = jobs[fi]
            whole = len(todo) == 1 and todo[0][0].at == 0 and todo[0][2] - todo[0][1] == f.nbytes
            if lay.verbatim[fi]:
                lz4 = f.style == FrameStyle.LZ4
                if whole or fi in keep or (lz4 and check(fi)):
                    # The whole frame is read once: into the destination, or (packed, or an LZ4
                    # frame stored verbatim that must be checked) into a buffer the parts come from.
                    into = todo[0][3] if whole and fi not in keep else None
                    buf = into if into is not None else aligned_empty(f.nbytes) if fi in keep else Staging.get(f.nbytes)
                    try:
                        self.src.read(buf, off)
                        if check(fi):
                            _verify_hash(buf, lay.xxh[fi], where)
                        if into is None:
                            for p, lo, hi, part_dst in todo:
                                part_dst[:] = buf[p.at + lo - p.start : p.at + hi - p.start]
                    finally:
                        if into is None and fi not in keep:
                            Staging.put(buf)
                    if fi in keep:
                        kept[fi] = buf
                else:
                    if check(fi) and self.src.hash(off, lay.stored[fi]) != lay.xxh[fi]:
                        # A RAW frame checked on request: read and hashed, never hashed through the
                        # mapping (see _Src.hash); the arrays may still be views of the mapping.
                        raise FormatError(f"{where()}: checksum mismatch (the file is corrupt)")
                    for p, lo, _hi, dst in todo:
                        self.src.read(dst, off + p.at + lo - p.start)
            else:
                n = lay.stored[fi]
                if self.src.fd is not None:
                    # Read, not mapped: a file truncated under an open reader must raise, not SIGBUS.
                    # Staging is keyed by the frame's bound (the same for every full frame), not by its
                    # compressed size (different for every frame), so the buffer is reused, not faulted in.
                    stored_buf = Staging.get(stored_bound(f))
                    self.src.read(stored_buf[:n], off)
                    stored = _mv(stored_buf[:n])
                else:
                    stored_buf, stored = None, self.region[off : off + n]
                try:
                    if self.verify is not False:
                        _verify_hash(stored, lay.xxh[fi], where)
                    if whole and fi not in keep:
                        _decode_lz4(stored, todo[0][3], where)
                    else:
                        plain = aligned_empty(f.nbytes)
                        _decode_lz4(stored, plain, where)
                        for p, lo, hi, dst in todo:
                            a = p.at + lo - p.start
                            dst[:] = plain[a : a + hi - lo]
                        if fi in keep:
                            kept[fi] = plain
                finally:
                    if stored_buf is not None:
                        Staging.put(stored_buf)
            prog.advance(f.nbytes)

        # A whole large RAW frame is read in pieces by several threads, then checked if asked
        # (pieces no larger than the progress step when progress is reported).
        split = min(_SPLIT, prog.step) if prog.step else _SPLIT
        tasks: list[Callable[[], None]] = []
        checks: list[tuple[int, np.ndarray[Any, np.dtype[np.uint8]]]] = []
        for fi in sorted(jobs):
            f, todo = head.frames[fi], jobs[fi]
            if (
                lay.verbatim[fi]
                and f.nbytes > split
                and len(todo) == 1
                and todo[0][2] - todo[0][1] == f.nbytes
                and fi not in keep
            ):
                dst, off = todo[0][3], lay.offsets[fi]
                pieces = range(0, f.nbytes, split)
                tasks.extend(functools.partial(self._piece, dst[a : a + split], off + a, prog) for a in pieces)
                if check(fi):
                    checks.append((fi, dst))
            else:
                tasks.append(functools.partial(work, fi))
        run_all(_call, tasks, self.threads)
        run_all(lambda c: _verify_hash(c[1], lay.xxh[c[0]], lay.where(c[0])), checks, self.threads)
        return kept

    def _piece(self, dst: np.ndarray[Any, np.dtype[np.uint8]], off: int, prog: Progress) -> None:
        self.src.read(dst, off)
        prog.advance(dst.nbytes)

    def _jobs_for(
        self, ai: int, b0: int, b1: int, dst: np.ndarray[Any, np.dtype[np.uint8]], jobs: dict[int, list[Job]]
    ) -> None:
        """Add jobs that fill ``dst`` with stored bytes ``[b0, b1)`` of array ``ai``."""
        for fi, p in self.layout.loc(ai).parts:
            lo, hi = max(b0, p.start), min(b1, p.start + p.nbytes)
            if lo < hi:
                jobs.setdefault(fi, []).append((p, lo, hi, dst[lo - b0 : hi - b0]))

    def _mapped(self, ai: int) -> bool:
        loc = self.layout.loc(ai)
        return self.mmap_views and loc.style == FrameStyle.RAW and loc.file_start is not None

    def _view(self, ai: int) -> np.ndarray[Any, Any]:
        spec, start = self.layout.head.arrays[ai], self.layout.loc(ai).file_start
        return np.ndarray(spec.shape, spec.dtype, buffer=self.region, offset=start, order=spec.order)  # type: ignore[call-overload,arg-type,unused-ignore]

    def _private_view(self, ai: int) -> np.ndarray[Any, Any]:
        """Array ``ai`` (mapped, whole) as a writable view of a new copy-on-write mapping."""
        spec, start = self.layout.head.arrays[ai], self.layout.loc(ai).file_start
        assert start is not None
        region, base = self.src.private_map(start, start + spec.nbytes)
        return np.ndarray(spec.shape, spec.dtype, buffer=region, offset=start - base, order=spec.order)  # type: ignore[call-overload,arg-type,unused-ignore]

    def _stored_view(self, ai: int, b0: int, b1: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
        start = self.layout.loc(ai).file_start
        assert start is not None
        return np.frombuffer(self.region, np.uint8, b1 - b0, start + b0)

    # -- whole arrays ----------------------------------------------------------------------

    def _sort_many(
        self, which: list[int], outs: dict[int, Any]
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int, int]], list[int], set[int]]:
        """Split ``which`` into mapped views, views of packed frames and the rest, with numpy.

        Returns ``(mapped, packed, rest, mapped_frames)``: the first three as
        :meth:`load` uses them, and the frames holding the mapped arrays.
        """
        lay = self.layout
        head = lay.head
        arrays, frames = head.arrays, head.frames
        t = head.part_table()
        sel = np.asarray(which, dtype=np.int64)
        single_part = np.bincount(t.array, minlength=len(arrays)) == 1
        frame_of = np.zeros(len(arrays), dtype=np.int64)
        at_of = np.zeros(len(arrays), dtype=np.int64)
        mask = single_part[t.array]
        frame_of[t.array[mask]] = t.frame[mask]
        at_of[t.array[mask]] = t.at[mask]
        fsel = frame_of[sel]
        raw_frame = np.array([f.style == FrameStyle.RAW for f in frames] or [False])
        shared = np.array([n > 1 for n in t.per_frame] or [False])
        simple = single_part[sel]
        if outs:
            simple &= ~np.isin(sel, np.fromiter(outs, dtype=np.int64, count=len(outs)))
        if any(a.blocks is not None for a in arrays):
            simple &= np.array([arrays[ai].blocks is None for ai in which], dtype=bool)
        is_mapped = simple & raw_frame[fsel] if self.mmap_views else np.zeros(len(sel), dtype=bool)
        is_packed = simple & ~is_mapped & shared[fsel]
        offsets = np.array(lay.offsets, dtype=np.int64)
        m_ai = sel[is_mapped]
        mapped = list(zip(m_ai.tolist(), (offsets[frame_of[m_ai]] + at_of[m_ai]).tolist(), strict=True))
        p_ai = sel[is_packed]
        packed = list(zip(p_ai.tolist(), frame_of[p_ai].tolist(), at_of[p_ai].tolist(), strict=True))
        return mapped, packed, sel[~(is_mapped | is_packed)].tolist(), set(frame_of[m_ai].tolist())

    def load(self, which: list[int], outs: dict[int, Any]) -> dict[int, np.ndarray[Any, Any]]:
        """Arrays ``which`` (indices), into ``outs[i]`` where given; views, copies or decodes.

        Heads may list 20,000 small arrays, so the arrays are sorted into kinds a
        column at a time (numpy over the part table); only arrays that need more
        than a view of a mapped or read frame go through the per-array path.
        """
        lay = self.layout
        head = lay.head
        arrays, frames = head.arrays, head.frames
        result: dict[int, np.ndarray[Any, Any]] = {}
        jobs: dict[int, list[Job]] = {}
        keep: set[int] = set()
        scatter: list[tuple[int, np.ndarray[Any, np.dtype[np.uint8]]]] = []  # blocked arrays: stored bytes
        # Arrays held whole by one part: mapped views (RAW, mmap) or views of a packed frame.
        mapped: list[tuple[int, int]] = []  # (array, file offset)
        packed: list[tuple[int, int, int]] = []  # (array, frame, offset in the frame)
        rest = which
        if len(which) >= _MANY:
            mapped, packed, rest, mapped_frames = self._sort_many(which, outs)
            if self.verify:  # mapped arrays are read by nobody else: check their frames here
                for fi in mapped_frames:
                    jobs.setdefault(fi, [])
        for ai in rest:  # per-array path: few arrays, or the few others
            spec, loc = arrays[ai], lay.loc(ai)
            out = outs.get(ai) if outs else None
            if spec.blocks is not None:
                result[ai] = _check_global_out(spec, out) if out is not None else _new_array(spec)[0]
                if spec.nbytes:
                    if self._mapped(ai):
                        stored = self._stored_view(ai, 0, spec.nbytes)
                        if self.verify:
                            for fi, _ in loc.parts:
                                jobs.setdefault(fi, [])
                    else:
                        stored = aligned_empty(spec.nbytes)
                        self._jobs_for(ai, 0, spec.nbytes, stored, jobs)
                    scatter.append((ai, stored))
                continue
            if out is not None:
                self._jobs_for(ai, 0, spec.nbytes, _check_out(spec, out), jobs)
                result[ai] = out
            elif not loc.parts:  # zero bytes
                # not np.empty: it turns a big-endian generic timedelta (">m8") native
                result[ai] = np.ndarray(spec.shape, spec.dtype, order=spec.order)  # type: ignore[call-overload,arg-type,unused-ignore]
            elif self._mapped(ai):
                assert loc.file_start is not None
                mapped.append((ai, loc.file_start))
                if self.verify:  # mapped arrays are read by nobody else: check their frames here
                    for fi, _ in loc.parts:
                        jobs.setdefault(fi, [])
            elif len(loc.parts) == 1 and len(frames[loc.parts[0][0]].parts) > 1:
                packed.append((ai, loc.parts[0][0], loc.parts[0][1].at))
            else:
                result[ai], raw = _new_array(spec)
                self._jobs_for(ai, 0, spec.nbytes, raw, jobs)
        for _, fi, _ in packed:  # read (or decode) each such frame once; its arrays are views of it
            if fi not in keep:
                keep.add(fi)
                jobs.setdefault(fi, [])
        region, base = self.region, 0
        if self.cow and mapped:
            if sum(arrays[ai].nbytes for ai, _ in mapped) < _COW_MIN:  # copies (see _COW_MIN)
                for ai, _ in mapped:
                    result[ai], raw = _new_array(arrays[ai])
                    self._jobs_for(ai, 0, arrays[ai].nbytes, raw, jobs)
                mapped = []
            else:
                lo = min(off for _, off in mapped)
                hi = max(off + arrays[ai].nbytes for ai, off in mapped)
                region, base = self.src.private_map(lo, hi)
        kept = self._run(jobs, keep)
        for ai, off in mapped:
            result[ai] = _array_at(region, arrays[ai], off - base)
        for ai, fi, at in packed:
            result[ai] = _array_at(kept[fi], arrays[ai], at)
        for ai, stored in scatter:
            _scatter_blocks(arrays[ai], stored, result[ai])
        return result

    # -- regions ---------------------------------------------------------------------------

    def read_region(self, ai: int, region: Any, out: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        """Read ``array[region]`` reading only the frames that hold it (see Reader.read)."""
        spec = self.layout.head.arrays[ai]
        box = _normalise_region(region, spec.shape, spec.name)
        shape = tuple(hi - lo for lo, hi in box)
        if out is not None:
            _check_region_out(spec, shape, out)
        if spec.blocks is None and self._mapped(ai) and not (self.cow and spec.nbytes < _COW_MIN):
            whole = self._private_view(ai) if self.cow else self._view(ai)
            view = whole[tuple(slice(lo, hi) for lo, hi in box)]
            if out is None:
                return view
            _bitwise(out)[...] = _bitwise(view)
            return out
        res = out if out is not None else _new_array(ArraySpec(spec.path, spec.dtype, shape, spec.order))[0]
        if 0 in shape:
            return res
        blocks = spec.blocks if spec.blocks is not None else (((0,) * len(spec.shape), spec.shape),)
        offs = block_offsets(spec) if spec.blocks is not None else [0, spec.nbytes]
        order = spec.order if spec.blocks is None else "C"
        pieces: list[
            tuple[tuple[slice, ...], tuple[slice, ...], tuple[int, ...], np.ndarray[Any, np.dtype[np.uint8]]]
        ] = []
        jobs: dict[int, list[Job]] = {}
        for bi, (bstart, bshape) in enumerate(blocks):
            inter = [(max(lo, s), min(hi, s + n)) for (lo, hi), s, n in zip(box, bstart, bshape, strict=True)]
            if any(lo >= hi for lo, hi in inter):
                continue
            # Whole slabs of the block's slowest axis (axis 0 in C order, the last in F order).
            ax = 0 if order == "C" or not bshape else len(bshape) - 1
            slab = math.prod(bshape) // bshape[ax] * spec.dtype.itemsize if bshape else spec.dtype.itemsize
            k0, k1 = (inter[ax][0] - bstart[ax], inter[ax][1] - bstart[ax]) if bshape else (0, 1)
            b0, b1 = offs[bi] + k0 * slab, offs[bi] + k1 * slab
            sub_shape = list(bshape)
            if bshape:
                sub_shape[ax] = k1 - k0
            if self._mapped(ai):
                stored = self._stored_view(ai, b0, b1)
            else:
                stored = aligned_empty(b1 - b0)
                self._jobs_for(ai, b0, b1, stored, jobs)
            src_sel = tuple(
                slice(lo - s - (k0 if d == ax else 0), hi - s - (k0 if d == ax else 0))
                for d, ((lo, hi), s) in enumerate(zip(inter, bstart, strict=True))
            )
            dst_sel = tuple(slice(lo - blo, hi - blo) for (lo, hi), (blo, _) in zip(inter, box, strict=True))
            pieces.append((src_sel, dst_sel, tuple(sub_shape), stored))
        self._run(jobs, set())
        for src_sel, dst_sel, piece_shape, stored in pieces:
            sub = np.ndarray(piece_shape, spec.dtype, buffer=stored, order=order)  # type: ignore[call-overload,arg-type,unused-ignore]
            _bitwise(res)[dst_sel] = _bitwise(sub)[src_sel]
        return res


def _normalise_region(region: Any, shape: tuple[int, ...], name: str) -> list[tuple[int, int]]:
    if not isinstance(region, tuple):
        region = (region,)
    if len(region) > len(shape):
        raise InvalidArgumentError(
            f"region for {name!r}: {len(region)} indices for an array of {len(shape)} dimensions"
        )
    box = []
    for d, n in enumerate(shape):
        s = region[d] if d < len(region) else slice(None)
        if not isinstance(s, slice):
            raise InvalidArgumentError(f"region for {name!r}: expected slices, got {s!r} in dimension {d}")
        lo, hi, step = s.indices(n)
        if step != 1:
            raise InvalidArgumentError(f"region for {name!r}: slice steps other than 1 are not supported")
        box.append((lo, max(lo, hi)))
    return box


def _check_region_out(spec: ArraySpec, shape: tuple[int, ...], out: Any) -> None:
    if not isinstance(out, np.ndarray) or out.dtype != spec.dtype or out.shape != shape or not out.flags.writeable:
        raise InvalidArgumentError(
            f"out for {spec.name!r}: expected a writable array of dtype {spec.dtype} and shape {shape}"
        )


def _check_global_out(spec: ArraySpec, out: Any) -> np.ndarray[Any, Any]:
    if not isinstance(out, np.ndarray) or out.dtype != spec.dtype or out.shape != spec.shape:
        raise InvalidArgumentError(
            f"out[{spec.name!r}]: expected dtype {spec.dtype} and shape {spec.shape}, got "
            f"{getattr(out, 'dtype', type(out).__name__)} and {getattr(out, 'shape', None)}"
        )
    if not out.flags.writeable:
        raise InvalidArgumentError(f"out[{spec.name!r}]: array is read-only")
    return out


def _bitwise(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``a`` viewed as opaque items of the same size: assignment then copies every byte, padding
    of structured dtypes included (numpy's field-wise assignment leaves padding undefined)."""
    return a.view(np.dtype((np.void, a.dtype.itemsize))) if a.dtype.itemsize else a


def _scatter_blocks(spec: ArraySpec, stored: np.ndarray[Any, np.dtype[np.uint8]], dst: np.ndarray[Any, Any]) -> None:
    """Copy each block's C-order stored bytes to its place in the global array ``dst``."""
    assert spec.blocks is not None
    offs = block_offsets(spec)
    for (start, shape), off, end in zip(spec.blocks, offs, offs[1:], strict=False):
        block = np.ndarray(shape, spec.dtype, buffer=stored[off:end])  # type: ignore[call-overload,arg-type,unused-ignore]
        _bitwise(dst)[tuple(slice(s, s + n) for s, n in zip(start, shape, strict=True))] = _bitwise(block)


def _nest(head: Head, arrays: dict[int, np.ndarray[Any, Any]], *, groups: bool = True) -> dict[str, Any]:
    """The nested result of a load: ``arrays`` by index, plus (with ``groups``) the empty groups and
    the head's Python-value leaves, decoded afresh (the caller owns them)."""
    out: dict[str, Any] = {}
    entries: list[tuple[tuple[str, ...], Any]] = [(head.arrays[i].path, a) for i, a in arrays.items()]
    if groups:
        entries += [(g, None) for g in head.groups]
        if head.values:
            entries += [(p, _Value(v)) for p, v in head.decoded_values()]
    for path, a in sorted(entries, key=lambda e: e[0]):
        d = out
        for k in path[:-1]:
            d = d.setdefault(k, {})
        d[path[-1]] = {} if a is None else a.v if type(a) is _Value else a
    return out


class _Value:
    """A decoded value leaf while a result is assembled (``None`` there means an empty group)."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v


def _flatten_out(out: Any, layout: _Layout, prefix: tuple[str, ...] = ()) -> dict[int, Any]:
    """``out``'s arrays by array index; its names are relative to the group ``prefix``."""
    if out is None:
        return {}
    if not isinstance(out, Mapping):
        raise InvalidArgumentError(f"out: expected a mapping like the saved one, got {type(out).__name__}")
    flat: dict[int, Any] = {}

    def walk(m: Mapping[Any, Any], prefix: tuple[str, ...]) -> None:
        for k, v in m.items():
            path = (*prefix, str(k))
            if isinstance(v, Mapping):
                walk(v, path)
                continue
            name = "/".join(path)
            if name not in layout.by_name:
                if name in layout.value_names:
                    continue  # a Python value: immutable or rebuilt, never filled (load's docstring)
                raise InvalidArgumentError(f"out[{name!r}]: no array of that name in the checkpoint")
            flat[layout.by_name[name]] = v

    walk(out, prefix)
    return flat


# ----------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------


def _map_path(path: PathLike) -> _Src:
    p = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
        fd = os.open(p, _platform.open_flags(os.O_RDONLY) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as e:
        raise CheckptIOError(e.errno, f"no such file: {p!r}") from e
    except OSError as e:
        raise CheckptIOError(e.errno, f"cannot open {p!r}: {e.strerror}") from e
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InvalidArgumentError(f"{p!r} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgumentError(f"{p!r} is not a regular file; pass an open file object to stream it")
        if st.st_size == 0:
            raise FormatError(f"not an ndckpt file: {p!r} is empty")
        m = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except BaseException:
        os.close(fd)
        raise
    return _Src(memoryview(m), fd)


def _region_of(source: Any) -> _Src | None:
    """A read-only byte region (and fd) for paths and in-memory buffers; None for streams."""
    if _is_pathlike(source):
        return _map_path(source)
    if isinstance(source, bytes | bytearray | memoryview | mmap.mmap | np.ndarray):
        mv = _mv(source)
        if not mv.c_contiguous:
            raise InvalidArgumentError("source: in-memory buffer must be C-contiguous")
        return _Src(mv.cast("B").toreadonly() if mv.format != "B" or mv.ndim != 1 else mv.toreadonly())
    if isinstance(source, bool | io.TextIOBase) or not (
        isinstance(source, int) or hasattr(source, "read") or hasattr(source, "readinto")
    ):
        raise InvalidArgumentError(
            f"source: expected a path, a binary file object, an fd or a bytes-like buffer, got {type(source).__name__}"
        )
    if isinstance(source, int) and source < 0:
        raise InvalidArgumentError(f"source: bad file descriptor {source}")
    return None


#: What ``mmap=`` accepts: True or "r" (read-only views), "c" (copy-on-write views), False (copies).
MmapMode = bool | Literal["r", "c"]


def check_mmap(mmap: Any) -> str | None:
    """``mmap`` as ``"r"``, ``"c"`` or None (copies); InvalidArgumentError for anything else."""
    if mmap is True or (type(mmap) is str and mmap == "r"):
        return "r"
    if type(mmap) is str and mmap == "c":
        return "c"
    if mmap is False:
        return None
    raise InvalidArgumentError(
        f"mmap must be True or 'r' (read-only views), 'c' (copy-on-write: writable views whose writes "
        f"never reach the file) or False (copies), got {mmap!r}"
    )


def _check_read_options(mmap: Any, verify: Any) -> str | None:
    """Validate the read options; returns the mmap mode as :func:`check_mmap` does."""
    mode = check_mmap(mmap)
    if verify is not None and not isinstance(verify, bool):  # 1 and 0 too: a typo, not a choice
        raise InvalidArgumentError(f"verify must be None, True or False, got {verify!r}")
    return mode


def _loader_for(
    src: _Src,
    layout: _Layout,
    mode: str | None,
    verify: bool | None,
    threads: int,
    progress: ProgressCallback | None = None,
) -> _Loader:
    """A loader for read mode ``mode``: "c" maps privately from a path's fd and copies from a
    buffer (whose bytes belong to the caller and must never be written)."""
    cow = mode == "c" and src.fd is not None
    views = mode == "r" or cow
    return _Loader(src, layout, mmap_views=views, verify=verify, threads=threads, progress=progress, cow=cow)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _file_errors(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Readers' outer net: failures a file's content can still cause past the checks (an allocation
    the machine cannot make, nesting beyond the interpreter's stack) as ndckpt's errors."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except MemoryError as e:
            raise CheckptIOError(errno.ENOMEM, f"out of memory while reading the checkpoint ({e or '-'})") from e
        except RecursionError as e:
            raise FormatError(f"checkpoint structure nested too deeply to read ({e})") from e

    return wrapper


@_file_errors
def load(
    source: PathLike | BinaryIO | int | bytes | memoryview,
    *,
    mmap: MmapMode = True,
    out: Mapping[str, Any] | None = None,
    threads: int | None = None,
    verify: bool | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Read a whole checkpoint and return its arrays and values as a nested dict.

    Parameters
    ----------
    source
        A path (mapped), an in-memory buffer (bytes, bytearray, mmap, numpy
        array), or a binary file object / int fd read in one sequential pass
        (pipes work; the stream is consumed, possibly a little past the end).
    mmap
        How RAW arrays come back from a path or buffer (LZ4 arrays and
        streams always give new writable arrays). True or ``"r"``: read-only
        zero-copy views of the mapping (nothing is read until touched; writing
        to one raises numpy's "assignment destination is read-only"). ``"c"``
        (copy-on-write, as ``np.load(mmap_mode="c")``): writable views of a
        private mapping made for this call; written pages are copied, never
        written back to the file, and other loads never see them (a load whose
        mapped arrays total less than 1 MiB copies them instead; from a buffer,
        "c" copies). False: copies in new page-aligned arrays. Use "c" or
        False when you need writable arrays. Anything else is
        InvalidArgumentError, raised before the source is opened.
    out
        A (nested) mapping of arrays to fill instead of allocating, keyed like
        the saved mapping; any subset of names. Each must match dtype and shape
        and be contiguous in the saved order; the result holds these same
        objects. Works for RAW (copied) and LZ4 (decoded in place) arrays.
        Entries at the name of a value (Python value or numpy scalar) are
        skipped: the result holds the stored value.
        If the load raises, the contents of these arrays are undefined: data
        is read or decoded into them before its frame's checksum is checked.
    threads
        Worker threads (None: all cores). A stream is read and decoded in the
        calling thread (its arrays grow with the bytes that arrive).
    verify
        None: check LZ4 frames' checksums (their bytes are read anyway); True:
        check every frame, RAW too (reads mapped pages); False: check none.
        Structure, sizes and exact decoded sizes are always checked.
    progress
        Optional ``callback(done, total)`` in uncompressed bytes of the frames
        read (zero-copy views are not read and not counted): ``(0, total)``
        first, then after each frame and, inside large RAW frames, at least
        every ``max(16 MiB, total // 100)`` bytes, never decreasing, ending at
        ``(total, total)``. It may be called from worker threads, one call at
        a time (a stream is read in the calling thread). An exception it
        raises aborts the load and propagates.

    Raises
    ------
    FormatError
        Not an ndckpt file, unknown version, malformed structure, checksum
        mismatch; names the frame, offset and arrays. No arrays are returned.
    UnsupportedError
        The file needs a format feature this version does not implement
        ("upgrade ndckpt"; docs/format.md §5).
    CheckptIOError
        Missing file, read error or truncated stream.
    CompressionError
        An LZ4 chunk is malformed (names the frame, offset and chunk).
    InvalidArgumentError
        Bad arguments, or an ``out`` array that does not match.

    Notes
    -----
    Safe for untrusted files: nothing is unpickled or executed, time and
    memory are bounded by the file's real content, and a bad file raises one
    of the errors above. Not covered: RAW data of a mapped load is only
    checksummed with ``verify=True``, and the zero-copy views of a file that
    another program truncates raise SIGBUS when touched (as with
    ``np.load(mmap_mode=...)``; :func:`save`'s atomic replace never does).
    See "Untrusted files" in the user guide.

    Examples
    --------
    >>> import io, ndckpt, numpy as np
    >>> f = io.BytesIO()
    >>> ndckpt.save(f, {"u": np.arange(4.0), "params": {"dt": 0.5}, "step": 7})
    >>> state = ndckpt.load(f.getvalue())
    >>> state
    {'params': {'dt': 0.5}, 'step': 7, 'u': array([0., 1., 2., 3.])}

    RAW arrays of a buffer or path are read-only zero-copy views unless ``mmap`` says
    otherwise; ``out`` fills the caller's arrays; a stream is read in one pass:

    >>> state["u"].flags.writeable, ndckpt.load(f.getvalue(), mmap=False)["u"].flags.writeable
    (False, True)
    >>> u = np.empty(4)
    >>> ndckpt.load(f.getvalue(), out={"u": u})["u"] is u
    True
    >>> _ = f.seek(0)
    >>> ndckpt.load(f)["u"]
    array([0., 1., 2., 3.])
    """
    th = resolve_threads(threads)
    mode = _check_read_options(mmap, verify)
    src = _region_of(source)
    if src is None:
        from ._stream import load_stream

        return load_stream(source, out=out, verify=verify, progress=progress)
    with _no_gc():  # a head, its layout and the result: tens of thousands of acyclic objects
        try:
            layout = _parse_region(src.region)
            outs = _flatten_out(out, layout)
            loader = _loader_for(src, layout, mode, verify, th, progress)
            arrays = loader.load(list(range(len(layout.head.arrays))), outs)
        finally:
            src.close()
        return _nest(layout.head, arrays)


@_file_errors
def verify(
    source: PathLike | BinaryIO | int | bytes | memoryview,
    *,
    threads: int | None = None,
    progress: ProgressCallback | None = None,
) -> None:
    """Check a checkpoint's structure and every frame's checksum; raise on the first problem.

    LZ4 frames are also decoded (into scratch memory) so that a frame whose
    blocks are malformed fails even if its checksum was forged, and the zero
    pads before RAW frames (covered by no checksum; loads never read them) must
    be zero. An MPI subfile index must list only its writer's subfile names
    (``docs/mpi.md``; from a stream or buffer, whose name is unknown, names of
    that form for any one-component prefix), else FormatError. Raises as
    :func:`load`; returns None when the file is sound. A path's frames and
    pads are read with ``pread`` to be checked, never through the mapping, so
    a file that another program truncates meanwhile gives CheckptIOError, not
    SIGBUS (``load(verify=True)`` reads what it hashes the same way, while the
    arrays it returns may still be views of the mapping). ``progress`` is called
    as by :func:`load`, except that a path's or buffer's RAW frames are
    reported whole once checked (their checksum is computed in one pass),
    however large.

    Examples
    --------
    A sound checkpoint verifies (None); one flipped bit in an array's data does not, although
    a default load of the same bytes (RAW frames are not checksummed) returns the damaged array:

    >>> import io, ndckpt, numpy as np
    >>> f = io.BytesIO()
    >>> ndckpt.save(f, {"u": np.arange(4.0)})
    >>> data = bytearray(f.getvalue())
    >>> ndckpt.verify(data)
    >>> data[data.find(np.arange(4.0).tobytes())] ^= 1
    >>> ndckpt.load(data)["u"].tolist()
    [5e-324, 1.0, 2.0, 3.0]
    >>> ndckpt.verify(data)
    Traceback (most recent call last):
    ...
    ndckpt.errors.FormatError: frame 0 at offset 4096 (array 'u'): checksum mismatch (the file is corrupt)
    """
    th = resolve_threads(threads)
    src = _region_of(source)
    if src is None:
        from ._stream import load_stream

        load_stream(
            source,
            out=None,
            verify=True,
            progress=progress,
            check_pads=True,
            check_head=lambda head: _check_subfile_index(head.metadata, None),
        )
        return
    try:
        layout = _verify_frames(src, th, progress)
    finally:
        src.close()
    _check_subfile_index(layout.head.metadata, source)


def _verify_frames(src: _Src, threads: int, progress: ProgressCallback | None) -> _Layout:
    """verify() of a path or buffer: every frame's checksum, LZ4 decodes, and zero pads.

    With an fd, what is hashed and checked is read (``pread``), never touched
    through the mapping, so a file that shrinks meanwhile gives CheckptIOError,
    not SIGBUS.
    """
    region = src.region
    layout = _parse_region(region)
    head_end = SUPERBLOCK.size + _parse_superblock(region[: SUPERBLOCK.size])[0]

    def read(off: int, n: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
        buf = np.empty(n, np.uint8)
        src.read(buf, off)
        return buf

    def check(fi: int) -> None:
        f, where = layout.head.frames[fi], layout.where(fi)
        off, n = layout.offsets[fi], layout.stored[fi]
        if layout.verbatim[fi]:  # a pad precedes the data (after the record, for an LZ4 frame)
            prev = layout.offsets[fi - 1] + layout.stored[fi - 1] if fi else head_end
            if f.style == FrameStyle.LZ4:
                prev += RECORD.size
            nz = np.flatnonzero(read(prev, off - prev))
            if nz.size:
                raise FormatError(f"{where}: non-zero padding byte at offset {prev + int(nz[0])} (the file is corrupt)")
            if src.hash(off, n) != layout.xxh[fi]:
                raise FormatError(f"{where}: checksum mismatch (the file is corrupt)")
            return
        stored_buf = Staging.get(stored_bound(f)) if src.fd is not None else None
        scratch = Staging.get(f.nbytes)
        try:
            if stored_buf is not None:
                src.read(stored_buf[:n], off)
                stored = _mv(stored_buf[:n])
            else:  # a caller's buffer: nothing can vanish under it
                stored = region[off : off + n]
            _verify_hash(stored, layout.xxh[fi], where)
            _decode_lz4(stored, scratch, where)
        finally:
            Staging.put(scratch)
            if stored_buf is not None:
                Staging.put(stored_buf)

    prog = Progress(progress, sum(f.nbytes for f in layout.head.frames))

    def step(fi: int) -> None:
        check(fi)
        prog.advance(layout.head.frames[fi].nbytes)

    run_all(step, list(range(len(layout.head.frames))), threads)
    return layout


def _check_subfile_index(metadata: Any, source: Any) -> None:
    """FormatError if ``metadata`` is an MPI subfile index listing a name that is not one of its
    writer's subfile names (``<index name>.<token>.sub<k>`` next to the index): a tampered index.
    ``ndckpt.mpi.save`` never deletes such a name when it replaces the index."""
    from ._subfiles import foreign_subfiles

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


# ----------------------------------------------------------------------------------------------
# open(): the lazy reader
# ----------------------------------------------------------------------------------------------


class Reader(Mapping[str, Any]):
    """A lazily read checkpoint: a read-only ``Mapping`` of its nested names, read on access.

    Made by :func:`open`. Holds a read-only mapping of the file (or the caller's buffer); arrays
    returned as views keep the mapping alive after :meth:`close`. ``mmap`` is as in
    :func:`load`, per call: with ``"c"`` each :meth:`read` or :meth:`load` returns views of its
    own private mapping, so writes to them reach neither the file nor arrays returned by other
    calls.

    As a ``Mapping`` a Reader is the file's top level, like the dict :func:`load` returns:
    iteration and ``len`` give the top-level names (sorted); ``reader["name"]`` reads an array
    (as :meth:`read` does), returns a Python-value leaf, or gives a :class:`~ndckpt.Group`
    (a read-only ``Mapping`` of that group's members). A key may be a path, ``"group/name"`` or
    ``("group", "name")``. ``reader.get(key, default)`` is the ``Mapping``'s. :meth:`names`
    lists every leaf by its full path. Readers compare and hash by identity. In a notebook a
    Reader shows itself as a table (name, dtype, shape, style, size, stored size, ratio); the
    ``repr`` is the same table as text.

    >>> import io, ndckpt, numpy as np
    >>> f = io.BytesIO()
    >>> ndckpt.save(f, {"fields": {"u": np.zeros(4), "v": np.ones(2, "f4")}, "step": 7})
    >>> r = ndckpt.open(f.getvalue())
    >>> list(r), list(r["fields"]), r["step"], r["fields/v"].tolist()
    (['fields', 'step'], ['u', 'v'], 7, [1.0, 1.0])
    >>> r.names()
    ['fields/u', 'fields/v', 'step']
    """

    def __init__(
        self,
        source: PathLike | bytes | memoryview,
        *,
        mmap: MmapMode = True,
        threads: int | None = None,
        verify: bool | None = None,
    ) -> None:
        self._threads = resolve_threads(threads)
        self._mode = _check_read_options(mmap, verify)
        src = _region_of(source)
        if src is None:
            raise InvalidArgumentError(
                "open: needs a path or an in-memory buffer (random access); use ndckpt.load for streams"
            )
        self._src: _Src | None = src
        try:
            with _no_gc():
                self._layout = _parse_region(src.region)
        except BaseException:
            src.close()
            raise
        self._size = src.region.nbytes
        self._verify = verify
        self._root: Node | None = None  # the name tree, built on first use
        if isinstance(source, (str, os.PathLike)):
            self._title = f"ndckpt.Reader {os.fspath(source)!r}"
        else:
            self._title = f"ndckpt.Reader of a {self._size}-byte buffer"

    def _loader(self) -> _Loader:
        if self._src is None:
            raise InvalidArgumentError("Reader is closed")
        return _loader_for(self._src, self._layout, self._mode, self._verify, self._threads)

    @property
    def metadata(self) -> Any:
        """The metadata given to save: any JSON value (None if none was)."""
        return self._layout.head.metadata

    def names(self) -> list[str]:
        """Every leaf's full name ("group/name"): the arrays in storage order (sorted by path),
        then the Python-value leaves sorted by path. (Empty groups are not leaves.)"""
        return [a.name for a in self._layout.head.arrays] + list(self._layout.value_names)

    # -- the Mapping: the file's top level; groups are Group views --------------------------------

    def _tree(self) -> Node:
        if self._root is None:
            head = self._layout.head
            self._root = build_tree([a.path for a in head.arrays], [p for p, _ in head.values], head.groups)
        return self._root

    def _node(self, path: tuple[str, ...]) -> Node:
        """The group at ``path``; KeyError if there is none."""
        node = self._tree()
        for k in path:
            nxt = node.get(k)
            if not isinstance(nxt, dict):
                raise KeyError("/".join(path))
            node = nxt
        return node

    def _item(self, path: tuple[str, ...]) -> Any:
        key = "/".join(path)
        if key in self._layout.by_name or key in self._layout.value_names:
            return self.read(key)
        self._node(path)  # KeyError for a name that is neither a leaf nor a group
        return Group(self, path)

    def __getitem__(self, key: str | tuple[str, ...]) -> Any:
        return self._item(split_key(key))

    def __iter__(self) -> Iterator[str]:
        return iter(self._tree())

    def keys(self) -> Keys:
        return Keys(self)

    def __len__(self) -> int:
        return len(self._tree())

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str) and (key in self._layout.by_name or key in self._layout.value_names):
            return True
        return key in Group(self, ())

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def value_info(self) -> list[dict[str, Any]]:
        """Per Python-value leaf (numpy scalars included), sorted by path: name, type and value."""
        return [{"name": "/".join(p), "type": type_name(v), "value": v} for p, v in self._layout.head.decoded_values()]

    @_file_errors
    def read(self, name: str | tuple[str, ...], out: np.ndarray[Any, Any] | None = None, *, region: Any = None) -> Any:
        """Read one array, or a region of it: a zero-copy view (RAW), a new array, or into ``out``.

        For a Python-value leaf (or numpy scalar) returns a new copy of the value; ``out`` and
        ``region`` are then refused (InvalidArgumentError), as is the name of a group (use
        ``reader[name]`` or :meth:`load`).

        Reads only the frames holding this array (with ``region``, only those
        holding the region). ``region`` is a tuple of slices with step 1 (fewer
        than ``ndim`` means whole trailing axes); ``out`` must then have the
        region's shape. For RAW arrays mapped zero-copy the result is a view.
        Raises KeyError for an unknown name, InvalidArgumentError for a bad
        region or a mismatched ``out``, and the errors of :func:`load` for a
        corrupt frame.
        """
        key = "/".join(name) if isinstance(name, tuple) else name
        vi = self._layout.value_names.get(key) if isinstance(key, str) else None
        if vi is not None:
            if out is not None or region is not None:
                raise InvalidArgumentError(
                    f"{key!r} is a Python value stored in the head, not an array: out= and region= do not apply"
                )
            enc = self._layout.head.values[vi][1]
            return decode_value(enc, f"value {key!r}")
        if isinstance(key, str) and key not in self._layout.by_name and key in self:
            raise InvalidArgumentError(f"{key!r} is a group, not an array: index it (reader[{key!r}]) or load it")
        ai = self._layout.index_of(name)
        if region is not None:
            return self._loader().read_region(ai, region, out)
        outs = {ai: out} if out is not None else {}
        return self._loader().load([ai], outs)[ai]

    def load(self, *, out: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """All arrays as a nested dict, as :func:`load` does."""
        outs = _flatten_out(out, self._layout)
        arrays = self._loader().load(list(range(len(self._layout.head.arrays))), outs)
        return _nest(self._layout.head, arrays)

    def _load_group(self, path: tuple[str, ...], out: Mapping[str, Any] | None) -> dict[str, Any]:
        node = self._node(path)
        outs = _flatten_out(out, self._layout, path)
        arrays = self._loader().load([v for _, v in walk(node) if not isinstance(v, dict) and v >= 0], outs)
        values = self._layout.head.values

        def build(n: Node, where: tuple[str, ...]) -> dict[str, Any]:
            res: dict[str, Any] = {}
            for k, v in n.items():
                if isinstance(v, dict):
                    res[k] = build(v, (*where, k))
                elif v >= 0:
                    res[k] = arrays[v]
                else:
                    res[k] = decode_value(values[-1 - v][1], f"value {'/'.join((*where, k))!r}")
            return res

        return build(node, path)

    def _stored_of(self, ai: int) -> int:
        """Array ``ai``'s stored bytes; an LZ4 frame packing several arrays is shared in
        proportion to their bytes."""
        lay = self._layout
        stored = 0
        for fi, p in lay.locs[ai].parts:
            f = lay.head.frames[fi]
            stored += lay.stored[fi] if p.nbytes == f.nbytes else round(lay.stored[fi] * p.nbytes / f.nbytes)
        return stored

    def info(self) -> list[dict[str, Any]]:
        """Per array: name, dtype, shape, order, style, nbytes, stored_nbytes, frames, offsets.

        For arrays packed with others in one LZ4 frame, stored_nbytes is the
        frame's stored size shared in proportion to the array's bytes.
        """
        lay = self._layout
        rows = []
        for ai, spec in enumerate(lay.head.arrays):
            loc = lay.locs[ai]
            rows.append(
                {
                    "name": spec.name,
                    "dtype": str(spec.dtype),
                    "shape": spec.shape,
                    "order": spec.order,
                    "style": "raw" if loc.style == FrameStyle.RAW else "lz4",
                    "nbytes": spec.nbytes,
                    "stored_nbytes": self._stored_of(ai),
                    "frames": loc.frames,
                    "blocks": None if spec.blocks is None else [[list(a), list(b)] for a, b in spec.blocks],
                    "offsets": [lay.offsets[fi] for fi in loc.frames],
                }
            )
        return rows

    def _listing(self, path: tuple[str, ...]) -> Listing:
        lay = self._layout
        title = self._title + (f", group {'/'.join(path)!r}" if path else "")
        title += " (closed)" if self._src is None else ""
        listing = Listing(title)
        for p, v in walk(self._node(path)):
            if isinstance(v, dict):
                listing.ngroups += 1
                continue
            rel = "/".join(p)
            if v >= 0:
                spec = lay.head.arrays[v]
                stored = self._stored_of(v)
                listing.narrays += 1
                listing.nbytes += spec.nbytes
                listing.stored += stored
                if len(listing.arrays) < ROWS_SHOWN:
                    style = "raw" if lay.locs[v].style == FrameStyle.RAW else "lz4"
                    listing.arrays.append((rel, str(spec.dtype), str(spec.shape), style, spec.nbytes, stored))
                continue
            listing.nvalues += 1
            if len(listing.values) < ROWS_SHOWN:
                try:
                    value = decode_value(lay.head.values[-1 - v][1], f"value {rel!r}")
                    listing.values.append((rel, type_name(value), short_repr(value)))
                except CheckptError as e:
                    listing.values.append((rel, "?", f"<unreadable: {e}>"))
        if not path and lay.head.metadata is not None:
            listing.metadata = short_repr(lay.head.metadata)
        return listing

    def __repr__(self) -> str:
        return Group(self, ()).__repr__()

    def _repr_html_(self) -> str:
        return Group(self, ())._repr_html_()

    @property
    def nbytes(self) -> int:
        """Size of the checkpoint in bytes."""
        return self._size

    def close(self) -> None:
        """Close the file and drop the mapping (views already returned stay valid). Idempotent."""
        if self._src is not None:
            self._src.close()
            self._src = None

    def __del__(self) -> None:
        src = getattr(self, "_src", None)
        if src is not None:
            src.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@_file_errors
def open(
    source: PathLike | bytes | memoryview,
    *,
    mmap: MmapMode = True,
    threads: int | None = None,
    verify: bool | None = None,
) -> Reader:
    """Open a checkpoint for random access; see :class:`Reader`. Validates structure at once.

    Safe for untrusted files as :func:`load` is (typed errors, nothing unpickled, bounded time
    and memory); RAW data is only checksummed with ``verify=True``, and zero-copy views of a
    file that another program truncates raise SIGBUS when touched (``save``'s atomic replace
    never does that). See "Untrusted files" in the user guide.

    Examples
    --------
    >>> import io, ndckpt, numpy as np
    >>> f = io.BytesIO()
    >>> ndckpt.save(f, {"u": np.arange(12.0).reshape(3, 4), "step": 7}, metadata={"run": "a"})
    >>> with ndckpt.open(f.getvalue()) as r:
    ...     print(list(r), r.metadata, r["step"])
    ...     print(r.read("u", region=(slice(1, 2),)))  # row 1 only
    ['step', 'u'] {'run': 'a'} 7
    [[4. 5. 6. 7.]]
    """
    return Reader(source, mmap=mmap, threads=threads, verify=verify)
