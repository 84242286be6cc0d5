"""The head of an ndckpt file: ArraySpec, FrameSpec, Head, and strict validation of the head's JSON.

The head (docs/format.md §2.2) lists every array (path, dtype, shape, order,
blocks), the frame plan (style, size and parts of each frame), empty groups,
Python-value leaves and metadata. :meth:`Head.from_json` accepts only what a
writer produces and raises FormatError for anything else, within the memory and
time bounds of §4.1; the tiling and block checks here are shared by readers and
by writers that describe arrays themselves (:mod:`ndckpt.mpi`).
"""

from __future__ import annotations

import itertools
import json
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import numpy as np

from ..errors import FormatError, UnsupportedError
from ..format import FrameStyle, chunk_csz_max
from .blocks import Block, check_blocks
from .dtype import decode_dtype, encode_dtype
from .filtering import KNOWN_FILTERS, parse_filter
from .spec import (
    ARRAYS_MAX,
    FEATURES,
    FRAME_MAX,
    METADATA_DEPTH_MAX,
    NAME_MAX,
    NDIM_MAX,
    PATH_DEPTH_MAX,
)
from .values import decode

__all__ = [
    "ArraySpec",
    "Block",
    "FrameSpec",
    "Head",
    "Part",
    "PartTable",
    "block_offsets",
    "check_blocks",
    "check_leaf_paths",
    "check_name",
    "json_depth",
    "stored_bound",
]


# --------------------------------------------------------------------------------------------
# The head: what the file holds and how it is framed
# --------------------------------------------------------------------------------------------




class ArraySpec(NamedTuple):
    """One stored array: its path in the nested mapping, dtype, shape and memory order.

    ``blocks``, when set, makes this a *global array stored as blocks* (written
    by several MPI ranks): its stored bytes are the C-order bytes of each block
    ``array[start[0]:start[0]+shape[0], ...]`` one after the other, in list
    order, and the blocks tile the array exactly.
    """

    path: tuple[str, ...]
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    order: str  # "C" or "F": the order of the stored bytes
    blocks: tuple[Block, ...] | None = None

    @property
    def name(self) -> str:
        """The flat name, path components joined by "/"."""
        return "/".join(self.path)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class Part(NamedTuple):
    """Bytes ``[start, start+nbytes)`` of array ``array`` sit at byte ``at`` of a frame's buffer."""

    array: int
    start: int
    nbytes: int
    at: int


@dataclass
class FrameSpec:
    """One data frame: its style, its buffer's uncompressed size and the array parts in it.

    ``filter`` (format §2.8) is ``(kind, itemsize)`` for an LZ4 frame whose buffer was filtered
    before LZ4 encoding (``kind`` in :data:`ndckpt.filters.FILTERS`), None otherwise. A writer's
    plan may hold ``("auto", itemsize)`` until the chooser has decided the frame; such a head is
    never written (:meth:`Head.to_json` raises ValueError).
    """

    style: FrameStyle
    nbytes: int
    parts: list[Part] = field(default_factory=list)
    filter: tuple[str, int] | None = None


class PartTable(NamedTuple):
    """Every part of every frame as int64 columns, in frame order (see :meth:`Head.part_table`)."""

    array: np.ndarray[Any, np.dtype[np.int64]]
    start: np.ndarray[Any, np.dtype[np.int64]]
    nbytes: np.ndarray[Any, np.dtype[np.int64]]
    at: np.ndarray[Any, np.dtype[np.int64]]
    frame: np.ndarray[Any, np.dtype[np.int64]]  # the frame holding the part
    per_frame: list[int]  # number of parts of each frame


@dataclass
class Head:
    """The head record: arrays, frame plan, empty groups and user metadata."""

    arrays: list[ArraySpec]
    frames: list[FrameSpec]
    groups: list[tuple[str, ...]]
    metadata: Any
    #: Python-value leaves (format §2.2.1): (path, encoded JSON form), sorted by path. Decoded by
    #: :func:`ndckpt.container.values.decode`; empty in files without the "values" feature.
    values: list[tuple[tuple[str, ...], Any]] = field(default_factory=list)
    _table: PartTable | None = field(default=None, init=False, repr=False, compare=False)
    _names: list[str] | None = field(default=None, init=False, repr=False, compare=False)

    def decoded_values(self) -> list[tuple[tuple[str, ...], Any]]:
        """The value leaves decoded to Python values: new objects on every call (callers may mutate
        them). Raises FormatError for an encoding the writer cannot have produced."""
        return [(p, decode(v, f"value {'/'.join(p)!r}")) for p, v in self.values]

    def names(self) -> list[str]:
        """Every array's name (path joined by "/"), built once. The head must not change afterwards."""
        if self._names is None:
            self._names = list(map("/".join, map(_PATH, self.arrays)))
        return self._names

    def part_table(self) -> PartTable:
        """The parts as numpy columns, built once (validation and readers work on whole columns:
        a head may list tens of thousands of arrays). The head must not change afterwards."""
        if self._table is None:
            chain = itertools.chain.from_iterable
            flat = np.array(list(chain(chain(f.parts for f in self.frames))), dtype=np.int64).reshape(-1, 4)
            per_frame = [len(f.parts) for f in self.frames]
            frame = np.repeat(np.arange(len(self.frames), dtype=np.int64), per_frame)
            self._table = PartTable(flat[:, 0], flat[:, 1], flat[:, 2], flat[:, 3], frame, per_frame)
        return self._table

    def to_json(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces, ASCII): the same Head always gives the same bytes.

        Equal to ``json.dumps(doc, sort_keys=True, separators=(",", ":"),
        ensure_ascii=True)`` of :meth:`doc` (``_to_json_reference``, checked by
        the tests); the columns are encoded one at a time by the C encoder
        because heads of many small arrays are built on every save.
        """
        doc = self.doc()
        arrays, frames = doc.pop("arrays"), doc.pop("frames")
        columns = ",".join(f'"{k}":{_canonical(arrays[k])}' for k in sorted(arrays))
        frame_text = ",".join(
            # "filter" sorts before "nbytes": canonical JSON puts it first (format §2.8).
            f'{{{_filter_text(f)}"nbytes":{f["nbytes"]},"parts":{_canonical(f["parts"])},"style":{f["style"]}}}'
            for f in frames
        )
        features = f'"features":{_canonical(doc["features"])},' if "features" in doc else ""
        values = f',"values":{_canonical(doc["values"])}' if "values" in doc else ""
        return (
            f'{{"arrays":{{{columns}}},{features}"frames":[{frame_text}],'
            f'"groups":{_canonical(doc["groups"])},"metadata":{_canonical(doc["metadata"])}{values}}}'
        ).encode()

    def _to_json_reference(self) -> bytes:
        """The canonical JSON built the obvious way (the definition :meth:`to_json` must match)."""
        return _canonical(self.doc()).encode()

    def doc(self) -> dict[str, Any]:
        """The head as the JSON document of format §2.2 (columns of arrays, flat parts)."""
        arrays = self.arrays
        table: dict[np.dtype[Any], int] = {}
        index = [table.setdefault(a.dtype, len(table)) for a in arrays]
        filtered = False
        for f in self.frames:
            if f.filter is not None:
                if f.filter[0] not in KNOWN_FILTERS:
                    raise ValueError(f"frame filter {f.filter!r} is not a filter a file may record")
                filtered = True
        features = (["filters"] if filtered else []) + (["values"] if self.values else [])
        return {
            "arrays": {
                "blocks": [
                    [i, [[list(st), list(sh)] for st, sh in a.blocks]]
                    for i, a in enumerate(arrays)
                    if a.blocks is not None
                ],
                "dtype": index,
                "dtypes": [encode_dtype(dt) for dt in table],
                "order": "".join(map(_ORDER, arrays)),
                "path": list(map(list, map(_PATH, arrays))),
                "shape": list(map(list, map(_SHAPE, arrays))),
            },
            "frames": [
                {
                    **({"filter": [f.filter[0], f.filter[1]]} if f.filter is not None else {}),
                    "nbytes": f.nbytes,
                    "parts": list(itertools.chain.from_iterable(f.parts)),
                    "style": int(f.style),
                }
                for f in self.frames
            ],
            "groups": [list(g) for g in self.groups],
            "metadata": self.metadata,
            # Optional keys (format §5): present only when used, so files without them keep their bytes.
            **({"features": features} if features else {}),
            **({"values": [[list(p), v] for p, v in self.values]} if self.values else {}),
        }

    @classmethod
    def from_json(cls, raw: bytes | bytearray | memoryview) -> Head:
        """Parse and validate a head. Raises FormatError naming the first thing that is wrong."""
        try:
            doc = json.loads(bytes(raw).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise FormatError(f"head is not valid JSON: {e}") from None
        except RecursionError:  # "[[[[..." deeper than the interpreter's recursion limit
            raise FormatError("head: JSON nested too deeply") from None
        features = _parse_features(doc)  # first: a newer file's unknown keys must say "upgrade"
        if set(doc) != {"arrays", "frames", "groups", "metadata", *_FEATURE_KEYS[features]}:
            raise FormatError(
                "head: expected exactly the keys arrays, frames, groups, metadata"
                + "".join(f", {k}" for k in sorted(_FEATURE_KEYS[features]))
            )
        if json_depth(doc["metadata"], METADATA_DEPTH_MAX) > METADATA_DEPTH_MAX:
            raise FormatError(f"head.metadata: nested deeper than the limit of {METADATA_DEPTH_MAX}")
        arrays = _parse_arrays(doc["arrays"])
        filters = "filters" in features
        frames = [
            _parse_frame(i, f, len(arrays), filters) for i, f in enumerate(_list(doc["frames"], "head.frames"))
        ]
        if filters and not any(f.filter is not None for f in frames):
            raise FormatError("head.features: lists 'filters' but no frame has a filter")
        group_docs = _list(doc["groups"], "head.groups")
        if len(arrays) + len(group_docs) > ARRAYS_MAX:
            raise FormatError(f"head: {len(arrays)} arrays and {len(group_docs)} groups, more than {ARRAYS_MAX}")
        groups = [_parse_path(g, f"head.groups[{i}]") for i, g in enumerate(group_docs)]
        head = cls(arrays, frames, groups, doc["metadata"])
        if "values" in features:
            head.values = _parse_values(doc["values"])
            check_leaf_paths(head)
            head.decoded_values()  # every encoding is checked at open, not at first use
        if not _tiling_ok_fast(head):
            head.check_tiling()  # raises, naming the first problem
        return head

    def check_tiling(self) -> None:
        """Each array's parts tile it exactly, in order, all in frames of one style.

        Hot for heads of many small arrays (every load runs it): the loops use
        locals and build messages only on failure.
        """
        arrays = self.arrays
        names = ["/".join(a.path) for a in arrays]
        if len(set(names)) != len(names):
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise FormatError(f"head: array name {name!r} appears twice")
                seen.add(name)
        # Paths are leaves of one nested mapping: none may equal or contain another (an array
        # "a" and an array "a/b", or a group at an array's path, cannot both be returned).
        paths = sorted([a.path for a in arrays] + self.groups)
        for outer, inner in itertools.pairwise(paths):
            if inner[: len(outer)] == outer:
                if inner == outer:
                    raise FormatError(f"head: path {'/'.join(outer)!r} appears twice (as arrays or groups)")
                raise FormatError(f"head: path {'/'.join(inner)!r} is inside {'/'.join(outer)!r}, which is not a group")
        covered = [0] * len(arrays)
        styles: list[FrameStyle | None] = [None] * len(arrays)
        for fi, f in enumerate(self.frames):
            end, fn, fs = 0, f.nbytes, f.style
            for ai, start, n, at in f.parts:
                if at < end or n <= 0 or at + n > fn:
                    raise FormatError(f"frame {fi}: part of array {names[ai]!r} at {at} overlaps or overruns the frame")
                end = at + n
                if start != covered[ai]:
                    raise FormatError(
                        f"frame {fi}: array {names[ai]!r} part starts at byte {start}, expected {covered[ai]}"
                    )
                st = styles[ai]
                if st is not fs:
                    if st is not None:
                        raise FormatError(f"frame {fi}: array {names[ai]!r} is split across frames of different styles")
                    styles[ai] = fs
                covered[ai] = start + n
        for i, a in enumerate(arrays):
            if covered[i] != math.prod(a.shape) * a.dtype.itemsize:
                raise FormatError(
                    f"array {names[i]!r}: frames hold {covered[i]} bytes, its dtype and shape need {a.nbytes}"
                )


_FEATURE_KEYS: Final[dict[tuple[str, ...], frozenset[str]]] = {
    (): frozenset(),
    ("values",): frozenset({"features", "values"}),
    ("filters",): frozenset({"features"}),
    ("filters", "values"): frozenset({"features", "values"}),
}


def _parse_features(doc: Any) -> tuple[str, ...]:
    """The head's optional "features" list (format §5), checked before anything else in the head.

    Raises UnsupportedError naming the first feature this reader does not
    implement ("upgrade ndckpt"), and FormatError for a malformed list.
    """
    if not isinstance(doc, dict) or not {"arrays", "frames", "groups", "metadata"} <= set(doc):
        raise FormatError("head: expected exactly the keys arrays, frames, groups, metadata")
    if "features" not in doc:
        return ()
    feats = doc["features"]
    if type(feats) is not list or not feats or not all(type(f) is str for f in feats):
        raise FormatError("head.features: expected a non-empty list of strings")
    unknown = [f for f in feats if f not in FEATURES]
    if unknown:
        raise UnsupportedError(
            f"this file needs the feature {unknown[0][:100]!r}, which this version of ndckpt does not know; "
            "upgrade ndckpt to read it"
        )
    if feats != sorted(set(feats)):
        raise FormatError("head.features: must be sorted and without repeats")
    return tuple(feats)


def _parse_values(v: Any) -> list[tuple[tuple[str, ...], Any]]:
    """The head's "values" (format §2.2.1): [path, encoding] pairs, paths strictly increasing.

    Only the structure is checked here; :func:`ndckpt.container.values.decode` checks the encodings.
    """
    out: list[tuple[tuple[str, ...], Any]] = []
    entries = _list(v, "head.values")
    if len(entries) > ARRAYS_MAX:
        raise FormatError(f"head.values: {len(entries)} values, more than the limit of {ARRAYS_MAX}")
    if not entries:
        raise FormatError("head.values: empty, but the feature 'values' is listed")
    for i, e in enumerate(entries):
        if type(e) is not list or len(e) != 2:
            raise FormatError(f"head.values[{i}]: expected [path, value]")
        path = _parse_path(e[0], f"head.values[{i}] path")
        if out and path <= out[-1][0]:
            raise FormatError(f"head.values: {'/'.join(path)!r} is out of order or repeated")
        out.append((path, e[1]))
    return out


def check_leaf_paths(head: Head) -> None:
    """Arrays, value leaves and empty groups are leaves of one nested mapping: no path may equal
    another or lie inside one (format §2.2). Raises FormatError naming the two paths."""
    paths = sorted([a.path for a in head.arrays] + head.groups + [p for p, _ in head.values])
    for outer, inner in itertools.pairwise(paths):
        if inner[: len(outer)] == outer:
            if inner == outer:
                raise FormatError(f"head: path {'/'.join(outer)!r} appears twice (as arrays, values or groups)")
            raise FormatError(f"head: path {'/'.join(inner)!r} is inside {'/'.join(outer)!r}, which is not a group")


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _list(v: Any, what: str) -> list[Any]:
    if not isinstance(v, list):
        raise FormatError(f"{what}: expected a list")
    return v


def _int(v: Any, what: str, lo: int = 0, hi: int = 1 << 62) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise FormatError(f"{what}: expected an integer in [{lo}, {hi}], got {v!r}")
    return v


def _parse_path(v: Any, what: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not v or not all(isinstance(s, str) and s for s in v):
        raise FormatError(f"{what}: expected a non-empty list of non-empty strings")
    if len(v) > PATH_DEPTH_MAX:
        raise FormatError(f"{what}: path of {len(v)} components, more than the limit of {PATH_DEPTH_MAX}")
    for c in v:
        check_name(c, what, FormatError)
    return tuple(v)


def check_name(c: str, what: str, err: type[Exception]) -> None:
    """A path component must be valid Unicode (no lone surrogates) of at most NAME_MAX UTF-8 bytes."""
    try:
        n = len(c.encode("utf-8"))
    except UnicodeEncodeError:
        raise err(f"{what}: name {c[:100]!r} is not valid Unicode text (it holds a lone surrogate)") from None
    if n > NAME_MAX:
        raise err(f"{what}: name {c[:40]!r}... is {n} bytes of UTF-8, more than the limit of {NAME_MAX}")


def _paths_ok(paths: list[Any]) -> bool:
    """Whether every path is a list of 1..PATH_DEPTH_MAX non-empty valid names (C-level checks)."""
    if set(map(type, paths)) != _LIST_ONLY:
        return False
    lens = list(map(len, paths))
    if min(lens) == 0 or max(lens) > PATH_DEPTH_MAX:
        return False
    comps = list(itertools.chain.from_iterable(paths))
    if set(map(type, comps)) != _STR_ONLY or "" in set(comps):
        return False
    if max(map(len, comps)) > NAME_MAX // 4:  # 4 bytes of UTF-8 per character at most
        return False
    try:
        "".join(comps).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_depth(obj: Any, limit: int) -> int:
    """Nesting depth of a JSON value (a scalar: 0), counted level by level without recursion and
    stopping once past ``limit`` (then ``limit + 1`` is returned). Values holding themselves count
    as deep. Memory: two lists of the values of one level."""
    level = [obj] if isinstance(obj, dict | list | tuple) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return depth
        members: list[Any] = []
        for v in level:
            members.extend(v.values() if isinstance(v, dict) else v)
        level = [x for x in members if isinstance(x, dict | list | tuple)]
    return depth


def block_offsets(spec: ArraySpec) -> list[int]:
    """Byte offset of each block within the array's stored bytes (plus the total at the end)."""
    assert spec.blocks is not None
    out, pos = [], 0
    for _, sh in spec.blocks:
        out.append(pos)
        pos += math.prod(sh) * spec.dtype.itemsize
    out.append(pos)
    return out


def _parse_blocks(v: Any, shape: tuple[int, ...], name: str) -> tuple[Block, ...]:
    what = f"array {name!r} blocks"
    out = []
    for b in _list(v, what):
        if not isinstance(b, list) or len(b) != 2:
            raise FormatError(f"{what}: each block must be [start, shape]")
        out.append((tuple(_int(x, what) for x in _list(b[0], what)), tuple(_int(x, what) for x in _list(b[1], what))))
    blocks = tuple(out)
    check_blocks(shape, blocks, what)
    return blocks


_ARRAYS_KEYS: Final = frozenset({"blocks", "dtype", "dtypes", "order", "path", "shape"})
_FRAME_KEYS: Final = frozenset({"style", "nbytes", "parts"})
_FILTERED_KEYS: Final = _FRAME_KEYS | {"filter"}
_LIM: Final = 1 << 62
_STR_ONLY: Final = {str}
_INT_ONLY: Final = {int}
_LIST_ONLY: Final = {list}
_ORDERS: Final = frozenset({"C", "F"})
_PATH: Final = operator.attrgetter("path")
_SHAPE: Final = operator.attrgetter("shape")
_DTYPE: Final = operator.attrgetter("dtype")
_ORDER: Final = operator.attrgetter("order")
_ITEMSIZE: Final = operator.attrgetter("itemsize")
_DTYPES: dict[str, np.dtype[Any]] = {}  # decoded dtype strings (a head often repeats one dtype)


def _parse_arrays(obj: Any) -> list[ArraySpec]:
    """The arrays of a head (format §2.2: one column per field), validated.

    A head may list tens of thousands of arrays and every open parses it, so each
    column is checked at once with C-level builtins (``set(map(type, ...))``,
    ``min``/``max`` over all dimensions); only when a check fails does a loop
    find the first bad entry, to name it.
    """
    if type(obj) is not dict or obj.keys() != _ARRAYS_KEYS:
        raise FormatError("head.arrays: expected exactly the keys blocks, dtype, dtypes, order, path, shape")
    paths, index, table, orders, shapes = obj["path"], obj["dtype"], obj["dtypes"], obj["order"], obj["shape"]
    for key, want in (("path", list), ("dtype", list), ("dtypes", list), ("order", str), ("shape", list)):
        if type(obj[key]) is not want:
            raise FormatError(f"head.arrays.{key}: expected a {'string' if want is str else 'list'}")
    n = len(paths)
    if len(index) != n or len(orders) != n or len(shapes) != n:
        raise FormatError(
            f"head.arrays: columns of different lengths (path {n}, dtype {len(index)}, "
            f"order {len(orders)}, shape {len(shapes)})"
        )
    if not n:
        if table or obj["blocks"] != []:
            raise FormatError("head.arrays: dtypes or blocks without arrays")
        return []
    if n > ARRAYS_MAX:
        raise FormatError(f"head.arrays: {n} arrays, more than the limit of {ARRAYS_MAX}")
    # Paths: lists of 1..PATH_DEPTH_MAX valid names.
    if not _paths_ok(paths):
        for i, p in enumerate(paths):
            _parse_path(p, f"head.arrays.path[{i}]")
    path_tuples = list(map(tuple, paths))
    # dtypes: a table of distinct dtypes, and one index into it per array.
    dtypes = [_decode_cached(dt, f"head.arrays.dtypes[{k}]") for k, dt in enumerate(table)]
    if set(map(type, index)) != _INT_ONLY or min(index) < 0 or max(index) >= len(dtypes):
        for i, k in enumerate(index):
            _int(k, f"array {'/'.join(path_tuples[i])!r} dtype index", 0, len(dtypes) - 1)
    # Shapes: lists of integers in [0, 2**62].
    lists = set(map(type, shapes)) == _LIST_ONLY
    dims = list(itertools.chain.from_iterable(shapes)) if lists else []
    if not lists or (dims and (set(map(type, dims)) != _INT_ONLY or min(dims) < 0 or max(dims) > _LIM)):
        for i, sh in enumerate(shapes):
            what = f"array {'/'.join(path_tuples[i])!r} shape"
            for d in _list(sh, what):
                _int(d, what)
    shape_tuples = list(map(tuple, shapes))
    sub_ndim = [len(dt.shape) for dt in dtypes]
    if max(map(len, shapes)) + max(sub_ndim, default=0) > NDIM_MAX:
        for i, sh in enumerate(shapes):
            if len(sh) + sub_ndim[index[i]] > NDIM_MAX:
                raise FormatError(
                    f"array {'/'.join(path_tuples[i])!r}: {len(sh)} dimensions"
                    + (f" and {sub_ndim[index[i]]} of its sub-array dtype" if sub_ndim[index[i]] else "")
                    + f", more than the limit of {NDIM_MAX}"
                )
    if not set(orders) <= _ORDERS:
        i = next(i for i, o in enumerate(orders) if o not in _ORDERS)
        raise FormatError(f"array {'/'.join(path_tuples[i])!r}: order must be 'C' or 'F', got {orders[i]!r}")
    # Sizes: numpy bounds the product of the non-zero dimensions too (shape (0, 2**62) is "too big").
    itemsizes = [max(dt.itemsize, 1) for dt in dtypes]
    counts = list(map(math.prod, shape_tuples))
    if max(map(operator.mul, counts, map(itemsizes.__getitem__, index))) > _LIM or 0 in counts:
        for i, (shape, k, count) in enumerate(zip(shape_tuples, index, counts, strict=True)):
            extent = count if count else math.prod(d for d in shape if d)
            if extent * itemsizes[k] > _LIM:
                raise FormatError(
                    f"array {'/'.join(path_tuples[i])!r}: shape {list(shape)} of {dtypes[k]} claims too many bytes"
                )
    blocks: list[tuple[Block, ...] | None] = [None] * n
    prev = -1
    for entry in _list(obj["blocks"], "head.arrays.blocks"):
        if type(entry) is not list or len(entry) != 2:
            raise FormatError("head.arrays.blocks: each entry must be [array, blocks]")
        i = _int(entry[0], "head.arrays.blocks array", 0, n - 1)
        name = "/".join(path_tuples[i])
        if i <= prev:
            raise FormatError(f"head.arrays.blocks: array {name!r} listed out of order or twice")
        prev = i
        if orders[i] != "C":
            raise FormatError(f"array {name!r}: a blocked array must have order 'C'")
        blocks[i] = _parse_blocks(entry[1], shape_tuples[i], name)
    # tuple.__new__ builds the named tuples without a Python-level call per array.
    fields = zip(path_tuples, map(dtypes.__getitem__, index), shape_tuples, orders, blocks, strict=True)
    return list(map(tuple.__new__, itertools.repeat(ArraySpec), fields))


def _decode_cached(dt: Any, what: str) -> np.dtype[Any]:
    """decode_dtype, remembering dtype strings (heads repeat a few dtypes across files)."""
    d = _DTYPES.get(dt) if type(dt) is str else None
    if d is None:
        d = decode_dtype(dt, what=what)
        if type(dt) is str and len(_DTYPES) < 4096:
            _DTYPES[dt] = d
    return d


def _tiling_ok_fast(head: Head) -> bool:
    """Whether the head passes :meth:`Head.check_tiling`, checked with numpy over all parts at once.

    False means "run check_tiling": it raises with a precise message (and
    would accept a head this conservative check refuses).
    """
    arrays, frames = head.arrays, head.frames
    narr = len(arrays)
    if narr + sum(len(f.parts) for f in frames) < 64:
        return False  # a small head: check_tiling's loops cost less than numpy's per-call overhead
    # Names and paths: unique, and no path inside another (only possible with deeper paths or groups).
    paths = list(map(_PATH, arrays))
    if len(set(head.names())) != narr:
        return False
    if head.groups or (paths and max(map(len, paths)) > 1):
        every = sorted(paths + head.groups)
        for outer, inner in itertools.pairwise(every):
            if inner[: len(outer)] == outer:  # equal, or inner lies inside outer
                return False
    sizes = map(math.prod, map(_SHAPE, arrays))
    nbytes = np.array(list(map(operator.mul, sizes, map(_ITEMSIZE, map(_DTYPE, arrays)))), dtype=np.int64)
    table = head.part_table()
    if not len(table.array):
        return not nbytes.any()
    ai, start, n, at = table.array, table.start, table.nbytes, table.at
    counts = table.per_frame
    fsize = np.repeat(np.array([f.nbytes for f in frames], dtype=np.int64), counts)
    fstyle = np.repeat(np.array([int(f.style) for f in frames], dtype=np.int64), counts)
    first = np.zeros(len(ai), dtype=bool)
    first[np.cumsum([0, *counts[:-1]])] = True
    if (at > fsize).any() or (n > fsize).any():  # (frames are at most FRAME_MAX: no overflow below)
        return False
    end = at + n
    # Within a frame: positive sizes, in the frame, in increasing order without overlap.
    if (n <= 0).any() or (end > fsize).any() or (at[1:] < end[:-1])[~first[1:]].any():
        return False
    # Per array, in frame order: parts start at 0 and follow each other, in frames of one style,
    # and cover exactly the array's bytes.
    order = np.argsort(ai, kind="stable")
    sai, sstart, sn, sstyle = ai[order], start[order], n[order], fstyle[order]
    new = np.ones(len(sai), dtype=bool)
    new[1:] = sai[1:] != sai[:-1]
    if (sstart[new] != 0).any():
        return False
    cont = ~new[1:]
    if (sstart[1:][cont] != (sstart[:-1] + sn[:-1])[cont]).any() or (sstyle[1:][cont] != sstyle[:-1][cont]).any():
        return False
    last = np.ones(len(sai), dtype=bool)
    last[:-1] = new[1:]
    covered = np.zeros(narr, dtype=np.int64)
    covered[sai[last]] = sstart[last] + sn[last]
    return bool((covered == nbytes).all())


def _parse_frame(i: int, f: Any, narrays: int, filters: bool = False) -> FrameSpec:
    filt: tuple[str, int] | None = None
    if type(f) is not dict or f.keys() != _FRAME_KEYS:
        if not (filters and type(f) is dict and f.keys() == _FILTERED_KEYS):
            hint = ""
            if type(f) is dict and "filter" in f and not filters:
                hint = " (a 'filter' key needs the head feature 'filters')"
            elif filters:
                hint = ", and optionally filter"
            raise FormatError(f"head.frames[{i}]: expected exactly the keys style, nbytes, parts{hint}")
        filt = parse_filter(i, f["filter"], f["style"])
    style, nbytes, flat = f["style"], f["nbytes"], f["parts"]
    if type(style) is not int or style not in (1, 2):
        _int(style, f"frame {i} style", 1, 2)
    if type(nbytes) is not int or not 1 <= nbytes <= FRAME_MAX:
        _int(nbytes, f"frame {i} nbytes", 1, FRAME_MAX)
    if type(flat) is not list or not flat or len(flat) % 4:
        raise FormatError(f"frame {i}: parts must be a non-empty list of [array, start, nbytes, at] quadruples")
    if set(map(type, flat)) != _INT_ONLY or min(flat) < 0 or max(flat) > _LIM or max(flat[::4]) >= narrays:
        for k in range(0, len(flat), 4):
            _int(flat[k], f"frame {i} part array", 0, narrays - 1)
            for v, field_name in zip(flat[k + 1 : k + 4], ("start", "nbytes", "at"), strict=True):
                _int(v, f"frame {i} part {field_name}")
    it = iter(flat)
    parts = list(map(tuple.__new__, itertools.repeat(Part), zip(it, it, it, it, strict=True)))
    return FrameSpec(FrameStyle.RAW if style == 1 else FrameStyle.LZ4, nbytes, parts, filt)


def _filter_text(f: dict[str, Any]) -> str:
    """A frame's canonical ``"filter":[...],`` text, or "" for an unfiltered frame."""
    return f'"filter":{_canonical(f["filter"])},' if "filter" in f else ""


def stored_bound(f: FrameSpec) -> int:
    """Largest stored size the frame's data can have."""
    if f.style == FrameStyle.RAW:
        return f.nbytes
    full, rem = divmod(f.nbytes, 65536)
    return full * chunk_csz_max(65536) + (chunk_csz_max(rem) if rem else 0)
