"""Arrays in, a plan out: validate the caller's tree, choose styles, cut frames.

:func:`prepare` turns the mapping given to :func:`ndckpt.save` into a :class:`Prepared`
(the head, its JSON, and the stored bytes of every array in storage order);
:func:`prepare_specs` does the same for arrays described by the caller (global arrays stored
as blocks). Both validate everything a reader would refuse, raising
InvalidArgumentError (or UnsupportedError for LZ4 without a library) before a byte is written.
:func:`build_head` makes the head and its JSON for both and for :mod:`ndckpt.mpi`, which plans
each rank's frames with :func:`plan` and joins them: the one place a head is built, checked
and held to the size readers accept.
Per-array code paths are kept to a few operations per array: states of tens of thousands of
small arrays are common (``benchmarks/peers.py``, its ``many_small`` dataset).

Frame planning (:func:`plan`) is pure: which bytes of which array go into which frame.

The plan depends only on the arrays' paths, dtypes, shapes and styles and on
the frame size, never on thread count, dict order or memory addresses, so
the bytes of a checkpoint are a pure function of its content and options.

Rules (``docs/format.md`` section "Plan"):

1. Arrays are ordered by path (tuples of strings, compared component-wise),
   RAW arrays first, then LZ4 arrays.
2. An array of at most ``pack_max`` bytes is *packed*: it goes into the
   current pack frame of its style at the next multiple of 64 bytes (of 4096
   bytes when the array has at least 4096 bytes, so that every mapped or
   decoded array of a page or more is page-aligned), or opens a new pack
   frame when it would not fit in ``frame_bytes``.
3. A larger array gets frames of its own: ``frame_bytes`` bytes each for LZ4
   and ``raw_frame_bytes`` for RAW (multiples of 65536, hence of 4096), plus a
   last, shorter one. Consecutive RAW frames of one array are therefore
   contiguous in the file.
4. Zero-byte arrays get no part at all.
"""

from __future__ import annotations

import bisect
import itertools
import math
import sys
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _lz4
from ..errors import CheckptError, InvalidArgumentError, UnsupportedError
from ..format import FrameStyle, parse_style
from .dtype import encode_dtype
from .head import ArraySpec, FrameSpec, Head, Part, check_name
from .objects import MARKER, array_like, is_dask, is_description, is_object, to_tree
from .spec import ARRAYS_MAX, HEAD_MAX, NAME_MAX, PART_ALIGN, PATH_DEPTH_MAX, RAW_ALIGN
from .values import encode as encode_value
from .values import json_metadata

__all__ = [
    "DEFAULT_FRAME_BYTES",
    "DEFAULT_RAW_FRAME_BYTES",
    "DaskBytes",
    "Prepared",
    "StoredBytes",
    "StridedBytes",
    "as_array",
    "build_head",
    "bytes_of",
    "check_dtype",
    "check_metadata",
    "flat_names",
    "flatten_tree",
    "parse_style_arg",
    "plan",
    "prepare",
    "prepare_specs",
    "resolve_styles",
    "stored_bytes",
]

#: Uncompressed bytes per LZ4 frame (and per frame of packed small arrays). Frames are the unit
#: of parallel work and of scratch memory: 4 MiB keeps 2 threads busy from 8 MiB on and bounds
#: a save's scratch memory at a few frames.
DEFAULT_FRAME_BYTES = 4 << 20
#: Uncompressed bytes per RAW frame of a large array. RAW frames need no scratch memory and their
#: checksums are computed while they are written, and large copies are split across threads on
#: load, so small RAW frames buy nothing; but every frame costs a head entry that each open
#: parses, so large RAW arrays get few frames.
DEFAULT_RAW_FRAME_BYTES = 1 << 30


def plan(
    arrays: list[ArraySpec],
    styles: list[FrameStyle],
    frame_bytes: int = DEFAULT_FRAME_BYTES,
    raw_frame_bytes: int | None = None,
) -> tuple[list[int], list[FrameSpec]]:
    """Order the arrays and cut them into frames.

    ``raw_frame_bytes`` defaults to ``frame_bytes``. Returns ``(order,
    frames)``: ``order`` lists indices into ``arrays`` in storage order, and
    parts in ``frames`` refer to positions in ``order``.
    """
    if raw_frame_bytes is None:
        raw_frame_bytes = frame_bytes
    if frame_bytes <= 0 or frame_bytes % 65536 or raw_frame_bytes <= 0 or raw_frame_bytes % 65536:
        raise ValueError("frame sizes must be positive multiples of 65536")
    pack_max = frame_bytes // 4
    keys = [(int(styles[i]), a.path) for i, a in enumerate(arrays)]
    order = sorted(range(len(arrays)), key=keys.__getitem__)
    sizes = [math.prod(a.shape) * a.dtype.itemsize for a in arrays]
    frames: list[FrameSpec] = []
    pack: FrameSpec | None = None
    new_part, raw_align, part_align = tuple.__new__, RAW_ALIGN, PART_ALIGN
    for pos, i in enumerate(order):  # per-array loop: kept minimal (see the module docstring)
        n, style = sizes[i], styles[i]
        if n == 0:
            continue
        if pack is not None and pack.style is not style:
            pack = None
        if n <= pack_max:
            if pack is not None:
                a = raw_align if n >= raw_align else part_align
                at = -(-pack.nbytes // a) * a  # align_up, inlined
            if pack is None or at + n > frame_bytes:
                pack = FrameSpec(style, 0)
                frames.append(pack)
                at = 0
            pack.parts.append(new_part(Part, (pos, 0, n, at)))
            pack.nbytes = at + n
            continue
        pack = None
        step = raw_frame_bytes if style == FrameStyle.RAW else frame_bytes
        for start in range(0, n, step):
            m = min(step, n - start)
            frames.append(FrameSpec(style, m, [Part(pos, start, m, 0)]))
    return order, frames


def flatten_tree(arrays: Any, lazy: bool = False) -> tuple[list[tuple[tuple[str, ...], Any]], list[tuple[str, ...]]]:
    """(leaves, empty groups) of a state tree, by path. pandas and xarray objects become their groups
    (:mod:`.objects`), array-likes numpy arrays; with ``lazy``, dask arrays stay dask arrays (for
    :class:`DaskBytes`), else they are computed."""
    if not isinstance(arrays, Mapping):
        raise InvalidArgumentError(f"arrays: expected a mapping of names to numpy arrays, got {type(arrays).__name__}")
    items: list[tuple[tuple[str, ...], Any]] = []
    groups: list[tuple[str, ...]] = []

    ndarray = np.ndarray

    def walk(m: Mapping[Any, Any], prefix: tuple[str, ...], own: bool = False) -> None:
        if len(prefix) >= PATH_DEPTH_MAX:
            raise InvalidArgumentError(
                f"arrays: group {'/'.join(prefix)[:200]!r} is nested {len(prefix)} deep; names may have at most "
                f"{PATH_DEPTH_MAX} components (format §4.1)"
            )
        for k, v in m.items():  # per-array loop: kept minimal (see the module docstring)
            if (type(k) is not str and not isinstance(k, str)) or not k or "/" in k:
                _bad_key(k, prefix)
            path = (*prefix, k)
            if k == MARKER and not own and not is_description(v):  # (a tree flattened before: a staged copy)
                raise InvalidArgumentError(
                    f"arrays: the name {'/'.join(path)[:200]!r} is reserved (ndckpt marks stored pandas and "
                    f"xarray objects with a leaf {MARKER!r}); rename it"
                )
            if type(v) is ndarray:
                items.append((path, v))
            elif is_object(v):
                walk(to_tree(v, f"array {'/'.join(path)[:200]!r}"), path, True)
            elif isinstance(v, Mapping):  # (isinstance of an ABC is slow)
                if v:
                    walk(v, path)
                else:
                    groups.append(path)
            elif lazy and is_dask(v):
                items.append((path, v))
            else:
                items.append((path, _leaf(path, v)))

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


def _leaf(path: tuple[str, ...], v: Any) -> Any:
    """A leaf as stored: an array-like converted to an ndarray (no copy where numpy allows), anything else as is
    (ndarray subclasses too: :func:`as_array` decides, and refuses masked arrays)."""
    if isinstance(v, np.ndarray):
        return v
    try:
        a = array_like(v)
    except Exception as e:  # the object's own conversion failed (a GPU tensor, a broken __array__...)
        raise InvalidArgumentError(
            f"array {'/'.join(path)[:200]!r}: {type(v).__name__} could not be converted to a numpy array "
            f"({type(e).__name__}: {e}); move it to host memory or convert it with np.asarray first"
        ) from e
    return v if a is None else a


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

    def walk(m: Mapping[Any, Any], prefix: str) -> None:
        for k, v in m.items():
            name = f"{prefix}/{k}" if prefix else str(k)
            if isinstance(v, Mapping):
                walk(v, name)
            else:
                out[name] = v

    walk(tree, "")
    return out


def as_array(path: tuple[str, ...], v: Any, checked: set[np.dtype[Any]] | None = None) -> np.ndarray[Any, Any]:
    """``v`` as an ndarray, or InvalidArgumentError naming the array. ``checked``: dtypes known good."""
    ma = sys.modules.get("numpy.ma")  # not imported: nothing can be a masked array (never import it)
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
        check_dtype(path, a.dtype, checked)
    return a


def check_dtype(path: tuple[str, ...], dtype: np.dtype[Any], checked: set[np.dtype[Any]] | None = None) -> None:
    """InvalidArgumentError naming the array unless ndckpt stores ``dtype``; adds it to ``checked``."""
    name = "/".join(path)
    if dtype.hasobject:
        raise InvalidArgumentError(
            f"array {name!r}: dtype {dtype} holds Python objects, which ndckpt does not store in arrays; "
            "convert it to a numeric, string or structured dtype, or store the objects themselves "
            "(int, float, str, bytes, lists, ...) as a Python value, e.g. a.tolist()"
        )
    encode_dtype(dtype, what=f"array {name!r}")
    if checked is not None:
        checked.add(dtype)


def bytes_of(a: np.ndarray[Any, Any], order: str) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """The array's bytes in ``order`` as a flat uint8 view (no copy: ``a`` is contiguous in it)."""
    if a.nbytes == 0:
        return np.empty(0, np.uint8)
    c = a.T if order == "F" else a
    return c.reshape(-1).view(np.uint8)


class StridedBytes:
    """A non-contiguous array's bytes in C order, produced a frame at a time (never all at once).

    The writer knows produced bytes only by :meth:`copy_into`; :class:`DaskBytes` produces them
    from a dask array."""

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


class DaskBytes(StridedBytes):
    """A dask array's bytes in C order, computed one block row (along axis 0) at a time.

    The writer asks for each frame's bytes in turn; the block rows that hold
    them are computed (``dask.compute`` of ``x.blocks[b]``) and the last
    :data:`DASK_ROWS_KEPT` are kept, so memory stays within a few block rows
    whatever the array's size, and each block row is computed once when
    frames are written in order. Errors of the computation propagate as
    raised by dask, and end the save as any writer error does. Thread-safe.
    """

    def __init__(self, x: Any) -> None:  # (no super().__init__: there is no ndarray)
        self.x, self.shape, self.dtype = x, tuple(int(n) for n in x.shape), np.dtype(x.dtype)
        self.row_nbytes = math.prod(self.shape[1:]) * self.dtype.itemsize
        bounds = [0, *itertools.accumulate(x.chunks[0])] if self.shape else [0, 1]
        self.bounds = [b * self.row_nbytes for b in bounds] if self.shape else [0, self.dtype.itemsize]
        self.kept: dict[int, np.ndarray[Any, np.dtype[np.uint8]]] = {}
        self.lock = threading.Lock()

    def _row(self, b: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
        with self.lock:
            got = self.kept.get(b)
            if got is None:
                block = self.x if not self.shape else self.x.blocks[b]
                a = np.asarray(block.compute())
                a = a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)
                if a.shape != (tuple(block.shape) if self.shape else ()) or a.dtype != self.dtype:
                    raise InvalidArgumentError(
                        f"dask array: block {b} computed to shape {a.shape} dtype {a.dtype}, "
                        f"not {tuple(block.shape)} {self.dtype}"
                    )
                got = a.reshape(-1).view(np.uint8) if a.nbytes else np.empty(0, np.uint8)
                self.kept[b] = got
                while len(self.kept) > DASK_ROWS_KEPT:
                    del self.kept[min(self.kept)]
            return got

    def copy_into(self, dst: np.ndarray[Any, np.dtype[np.uint8]], start: int) -> None:
        end = start + dst.nbytes
        b = bisect.bisect_right(self.bounds, start) - 1
        at = 0
        while at < dst.nbytes:
            lo, hi = self.bounds[b], self.bounds[b + 1]
            n = min(end, hi) - (start + at)
            if n > 0:
                dst[at : at + n] = self._row(b)[start + at - lo : start + at - lo + n]
                at += n
            b += 1


#: Block rows a DaskBytes keeps computed (the frames being written may straddle two).
DASK_ROWS_KEPT = 3


#: An array's stored bytes: a flat uint8 view of a contiguous array, or a StridedBytes.
StoredBytes = np.ndarray[Any, np.dtype[np.uint8]] | StridedBytes


def stored_bytes(a: np.ndarray[Any, Any]) -> tuple[StoredBytes, str]:
    """(the array's stored bytes, "C" or "F"): a flat view when contiguous, else a StridedBytes."""
    flags = a.flags
    if flags.c_contiguous:
        if a.ndim == 1 and a.dtype.itemsize:  # the common case of many small arrays: one view, no reshape
            return a.view(np.uint8), "C"
        return bytes_of(a, "C"), "C"
    if flags.f_contiguous:
        return bytes_of(a, "F"), "F"
    return StridedBytes(a), "C"


def resolve_styles(style: Any, names: list[str], values: Collection[str] = ()) -> list[FrameStyle]:
    """One style per array. A mapping's keys name arrays or groups ("a/b", or nested mappings);
    a group's style applies to every array below it, the most specific key wins, unnamed arrays
    are RAW, and a key naming nothing that is being saved is an error (a typo would otherwise
    silently leave data uncompressed). Keys naming ``values`` (Python-value leaves, stored in
    the head) or groups of them are accepted and have no effect."""
    if not isinstance(style, Mapping):
        s = parse_style_arg(style, "style")
        return [s] * len(names)
    flat = {key: parse_style_arg(v, f"style[{key!r}]") for key, v in flat_names(style).items()}
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


def parse_style_arg(v: Any, what: str) -> FrameStyle:
    try:
        s = parse_style(v)
    except UnsupportedError:  # an int that is no frame style: a bad argument here, not a missing feature
        raise InvalidArgumentError(f"{what}: {v} is not a frame style; use 'raw' (or 0, 1) or 'lz4' (or 2)") from None
    except CheckptError as e:
        raise type(e)(f"{what}: {e}") from None
    if s == FrameStyle.LZ4 and not _lz4.available():
        raise UnsupportedError(f"{what}: LZ4 is unavailable (no LZ4 library found)")
    return s


def check_metadata(metadata: Any) -> Any:
    """``metadata`` as plain JSON data: any JSON value, numpy scalars converted (see :func:`.values.json_metadata`)."""
    if isinstance(metadata, Mapping) and not isinstance(metadata, dict):
        metadata = dict(metadata)
    return json_metadata(metadata)


@dataclass
class Prepared:
    """A checkpoint ready to be written: its head, the head's JSON, and every array's stored bytes.

    ``array_bytes[i]`` holds the stored bytes of ``head.arrays[i]``; they are the caller's arrays
    (views, not copies) and must not change until the checkpoint is written.
    """

    head: Head
    array_bytes: list[StoredBytes]  # stored bytes per array, in storage order
    head_json: bytes


def prepare(arrays: Any, style: Any, metadata: Any, frame_bytes: int, raw_frame_bytes: int | None = None) -> Prepared:
    items, groups = flatten_tree(arrays, lazy=True)
    specs: list[ArraySpec] = []
    array_bytes: list[StoredBytes] = []
    values: list[tuple[tuple[str, ...], Any]] = []
    src: StoredBytes
    checked: set[np.dtype[Any]] = set()
    new_spec, ndarray, uint8 = tuple.__new__, np.ndarray, np.uint8
    for path, v in items:  # per-array loop: kept minimal (see the module docstring)
        if type(v) is ndarray and v.ndim == 1 and v.dtype in checked and v.flags.c_contiguous and v.itemsize:
            src, order, a = v.view(uint8), "C", v  # the common case of many small arrays
        elif not isinstance(v, ndarray):
            if is_dask(v):  # computed a block row at a time while frames are written
                src, order, a = DaskBytes(v), "C", v
                check_dtype(path, np.dtype(v.dtype), checked)
            else:  # a Python value or numpy scalar: stored in the head
                values.append((path, encode_value(v, f"value {'/'.join(path)!r}")))
                continue
        else:
            a = as_array(path, v, checked)
            src, order = stored_bytes(a)
        specs.append(new_spec(ArraySpec, (path, a.dtype, a.shape, order, None)))
        array_bytes.append(src)
    names = ["/".join(s.path) for s in specs] if values else ["/".join(p) for p, _ in items]
    styles = resolve_styles(style, names, {"/".join(p) for p, _ in values})
    meta = check_metadata(metadata)
    values.sort(key=lambda e: e[0])
    return prepare_specs(
        specs, array_bytes, styles, groups, meta, frame_bytes, raw_frame_bytes, check=False, values=values
    )


#: What :func:`build_head` tells a caller whose head is too large, by default (:func:`prepare`'s advice).
_HEAD_ADVICE = "store large data as arrays, not as Python values or metadata"


def build_head(
    arrays: list[ArraySpec],
    frames: list[FrameSpec],
    groups: list[tuple[str, ...]],
    metadata: Any,
    values: list[tuple[tuple[str, ...], Any]] | None = None,
    *,
    check: bool = True,
    advice: str = _HEAD_ADVICE,
) -> tuple[Head, bytes]:
    """The head of a planned file and its canonical JSON: the one place a writer's head is made.

    ``arrays`` are in storage order, ``frames`` their plan (parts index ``arrays``), ``groups``
    sorted, ``values`` the encoded Python-value leaves sorted by path. With ``check`` the head
    is validated as a reader would (names, paths, blocks, tiling: FormatError), which callers
    skip when their inputs were validated on the way in. A head larger than HEAD_MAX, which
    readers refuse, raises InvalidArgumentError ending with ``advice``. Nothing is kept.
    """
    head = Head(arrays, frames, groups, metadata, values if values is not None else [])
    if check:
        head.check_tiling()
    head_json = head.to_json()
    if len(head_json) > HEAD_MAX:
        raise InvalidArgumentError(
            f"the head would be {len(head_json)} bytes, more than the {HEAD_MAX}-byte limit readers accept: {advice}"
        )
    return head, head_json


def prepare_specs(
    specs: list[ArraySpec],
    array_bytes: list[StoredBytes],
    styles: list[FrameStyle],
    groups: list[tuple[str, ...]],
    metadata: Any,
    frame_bytes: int = DEFAULT_FRAME_BYTES,
    raw_frame_bytes: int | None = DEFAULT_RAW_FRAME_BYTES,
    *,
    check: bool = True,
    values: list[tuple[tuple[str, ...], Any]] | None = None,
) -> Prepared:
    """Plan already-described arrays (``array_bytes[i]`` holds the stored bytes of ``specs[i]``).

    The building block for writers that describe arrays themselves, such as
    global arrays stored as blocks. ``check`` and ``values`` are as in
    :func:`build_head` (:func:`prepare` skips the check: its inputs were
    validated on the way in). InvalidArgumentError for a head readers would refuse.
    """
    perm, frames = plan(specs, styles, frame_bytes, raw_frame_bytes)
    head, head_json = build_head([specs[i] for i in perm], frames, sorted(groups), metadata, values, check=check)
    return Prepared(head, [array_bytes[i] for i in perm], head_json)
