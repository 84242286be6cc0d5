"""Hypothesis strategies and replay helpers shared by the ndckpt tests.

Two layers:

- *Strategies* for the spaces the tests explore: buffer sizes biased small
  (0 included, some above 64 KiB), byte contents from a mix of compressible
  and random generators, frame sequences, numpy dtypes and arrays. Contents
  are drawn as small descriptions (:class:`Content`: generator, size, seed)
  and materialized on demand, so hypothesis shrinks and prints them cheaply
  and buffers of hundreds of KiB cost no entropy.
- *Replay helpers* that drive a :class:`~ndckpt.Checkpt` or
  :class:`~ndckpt.Restore` through a sequence of :class:`FrameSpec` and record
  the offsets each call returns, so tests compare modes, buffer sizes and
  offsets without repeating the loop.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fdvectors import gen as vector_gen
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ndckpt import Checkpt, Restore
from ndckpt.format import CHUNK_USZ_MAX, META_MAX, FrameStyle, lz4_frame_bound

# ----------------------------------------------------------------------------------------------
# Contents
# ----------------------------------------------------------------------------------------------

#: Generators from the golden vectors' README (exactly reproducible) plus ``runs``.
VECTOR_GENERATORS = ("fill", "text", "mul32", "splitmix64", "words")
#: ``runs``: random bytes broken by runs of one repeated byte (like upstream's unit test data).
GENERATORS = (*VECTOR_GENERATORS, "runs")
#: Sizes around the chunk and ring boundaries that matter to LZ4 frames.
BOUNDARY_SIZES = (1, 65535, 65536, 65537, 131071, 131072, 131073, 196608, 196609, 262144)


def _runs(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 256, n, dtype=np.uint8)
    if n == 0:
        return b""
    lengths = rng.geometric(1 / 48, size=n // 8 + 2)
    run_id = np.repeat(np.arange(lengths.size), lengths)[:n]
    if run_id.size < n:  # geometric lengths fell short: extend the last run
        run_id = np.concatenate([run_id, np.full(n - run_id.size, lengths.size - 1)])
    repeated = rng.random(lengths.size) < 0.6
    value = rng.integers(0, 256, lengths.size, dtype=np.uint8)
    return np.where(repeated[run_id], value[run_id], out).tobytes()


def generate(kind: str, n: int, seed: int) -> bytes:
    """``n`` bytes from generator ``kind`` (see :data:`GENERATORS`) with ``seed``."""
    if kind == "runs":
        return _runs(n, seed)
    return vector_gen(kind, n, seed)


@dataclass(frozen=True)
class Content:
    """A reproducible byte string: ``size`` bytes of generator ``gen`` with ``seed``."""

    gen: str
    size: int
    seed: int
    raw: bytes | None = field(default=None, repr=False)  # only for gen == "literal"

    @functools.cached_property
    def data(self) -> bytes:
        if self.gen == "literal":
            assert self.raw is not None
            assert len(self.raw) == self.size
            return self.raw
        return generate(self.gen, self.size, self.seed)


def buffer_sizes(max_size: int = 300 * 1024, *, small_only: bool = False) -> st.SearchStrategy[int]:
    """Buffer sizes biased small: 0, tiny, small, up to 64 KiB, chunk boundaries, large.

    With ``small_only`` (or ``max_size`` <= 64 KiB) large sizes are left out.
    """
    branches: list[st.SearchStrategy[int]] = [
        st.just(0),
        st.integers(1, 16),
        st.integers(17, 1024),
        st.integers(1025, min(max_size, CHUNK_USZ_MAX)),
    ]
    if not small_only and max_size > CHUNK_USZ_MAX:
        branches.append(st.sampled_from([s for s in BOUNDARY_SIZES if s <= max_size]))
        branches.append(st.integers(CHUNK_USZ_MAX + 1, max_size))
    return st.one_of(branches)


def contents(sizes: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[Content]:
    """:class:`Content` of a size from ``sizes`` (default :func:`buffer_sizes`)."""
    return st.builds(
        Content,
        gen=st.sampled_from(GENERATORS),
        size=buffer_sizes() if sizes is None else sizes,
        seed=st.integers(0, 2**32 - 1),
    )


# ----------------------------------------------------------------------------------------------
# Frames
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BufSpec:
    """One buffer call: its bytes and whether it goes through ``meta=True``."""

    content: Content
    meta: bool = False

    @property
    def size(self) -> int:
        return self.content.size

    @property
    def data(self) -> bytes:
        return self.content.data


@dataclass(frozen=True)
class FrameSpec:
    """One frame: the style passed to ``frame_open`` (0 means RAW) and its buffers."""

    style: int
    bufs: tuple[BufSpec, ...] = ()

    @property
    def kind(self) -> FrameStyle:
        return FrameStyle.RAW if self.style == 0 else FrameStyle(self.style)

    @property
    def sizes(self) -> list[int]:
        return [b.size for b in self.bufs]

    def bound(self) -> int:
        """Upper bound on the frame's stored size (exact for RAW)."""
        if self.kind == FrameStyle.RAW:
            return sum(self.sizes)
        return lz4_frame_bound(self.sizes)


def literal(data: bytes, *, meta: bool = False) -> BufSpec:
    """A BufSpec holding exactly ``data`` (for hand-written cases)."""
    return BufSpec(Content("literal", len(data), 0, bytes(data)), meta)


@st.composite
def buf_specs(draw: st.DrawFn, sizes: st.SearchStrategy[int] | None = None) -> BufSpec:
    c = draw(contents(sizes))
    meta = c.size <= META_MAX and draw(st.booleans())
    return BufSpec(c, meta)


def frame_specs(
    *,
    styles: tuple[int, ...] = (0, 1, 2),
    max_bufs: int = 6,
    sizes: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[FrameSpec]:
    """A frame of one of ``styles`` with 0..max_bufs buffers (empty frames included)."""
    return st.builds(
        FrameSpec,
        style=st.sampled_from(styles),
        bufs=st.lists(buf_specs(sizes), max_size=max_bufs).map(tuple),
    )


def checkpoint_specs(
    *,
    styles: tuple[int, ...] = (0, 1, 2),
    max_frames: int = 5,
    max_bufs: int = 6,
    sizes: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[list[FrameSpec]]:
    """A whole checkpoint: 0..max_frames frames."""
    return st.lists(
        frame_specs(styles=styles, max_bufs=max_bufs, sizes=sizes), max_size=max_frames
    )


def checkpoint_bound(frames: list[FrameSpec]) -> int:
    """An mmio region size that always fits the checkpoint."""
    return sum(f.bound() for f in frames)


# ----------------------------------------------------------------------------------------------
# numpy
# ----------------------------------------------------------------------------------------------

#: Plain dtypes of several item sizes and byte orders.
NUMERIC_DTYPES = tuple(
    np.dtype(s) for s in ("u1", "i1", "<i2", ">u2", "<i4", "<f4", "<i8", "<f8", ">f8", "<c16")
)
#: A structured dtype with padding-free mixed fields (itemsize 16).
STRUCT_DTYPE = np.dtype([("a", "<i4"), ("b", "<f8"), ("c", "u1", (4,))])
ALL_DTYPES = (*NUMERIC_DTYPES, STRUCT_DTYPE, np.dtype("?"), np.dtype("V3"))


def dtypes() -> st.SearchStrategy[np.dtype[Any]]:
    """Fixed-size dtypes ndckpt stores: numeric, bool, void and structured."""
    return st.sampled_from(ALL_DTYPES)


def shapes(max_dims: int = 3, max_side: int = 8) -> st.SearchStrategy[tuple[int, ...]]:
    """Array shapes, 0-d and zero-length axes included."""
    return hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side)


def arrays(
    dtype: st.SearchStrategy[np.dtype[Any]] | None = None,
    shape: st.SearchStrategy[tuple[int, ...]] | None = None,
) -> st.SearchStrategy[np.ndarray[Any, Any]]:
    """C-contiguous arrays of fixed-size dtypes with arbitrary bytes (NaNs, odd bits included)."""

    @st.composite
    def _arrays(draw: st.DrawFn) -> np.ndarray[Any, Any]:
        dt = draw(dtypes() if dtype is None else dtype)
        shp = draw(shapes() if shape is None else shape)
        n = int(np.prod(shp, dtype=np.int64)) * dt.itemsize
        raw = draw(st.binary(min_size=n, max_size=n)) if n <= 512 else generate(
            draw(st.sampled_from(GENERATORS)), n, draw(st.integers(0, 2**32 - 1))
        )
        return np.frombuffer(bytearray(raw), dtype=dt).reshape(shp)

    return _arrays()


def as_array(data: bytes, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """A fresh writable array of ``dtype`` holding ``data``, trimmed to a whole number of items."""
    n = len(data) // dtype.itemsize
    return np.frombuffer(bytearray(data[: n * dtype.itemsize]), dtype=dtype).copy()


# ----------------------------------------------------------------------------------------------
# Replay
# ----------------------------------------------------------------------------------------------


@dataclass
class Offsets:
    """Offsets a replay observed: per frame, the open, each buffer's end, and the close."""

    opens: list[int] = field(default_factory=list)
    afters: list[list[int]] = field(default_factory=list)
    closes: list[int] = field(default_factory=list)


def write_frames(ck: Checkpt, frames: list[FrameSpec], *, to_buffer: Any = None) -> Offsets:
    """Replay ``frames`` into ``ck`` (not finished) and return the offsets it reported.

    ``to_buffer`` optionally maps a BufSpec's bytes to the object passed to buf().
    """
    rec = Offsets()
    for fr in frames:
        rec.opens.append(ck.frame_open(fr.style))
        afters: list[int] = []
        for b in fr.bufs:
            ck.buf(b.data if to_buffer is None else to_buffer(b.data), meta=b.meta)
            afters.append(ck.offset)
        rec.afters.append(afters)
        rec.closes.append(ck.frame_close())
    return rec


def read_frames(rs: Restore, frames: list[FrameSpec], *, make_out: Any = None) -> Offsets:
    """Replay ``frames`` from ``rs``, assert every buffer's bytes, and return the offsets.

    ``make_out(size)`` optionally makes the output buffer (default a bytearray).
    """
    rec = Offsets()
    for i, fr in enumerate(frames):
        rec.opens.append(rs.frame_open(fr.style))
        afters: list[int] = []
        for j, b in enumerate(fr.bufs):
            out = bytearray(b.size) if make_out is None else make_out(b.size)
            rs.buf(out, meta=b.meta)
            got = bytes(memoryview(out).cast("B")) if b.size else b""
            assert got == b.data, f"frame {i} buffer {j} ({b.size} bytes) restored wrong"
            afters.append(rs.offset)
        rec.afters.append(afters)
        rec.closes.append(rs.frame_close())
    return rec


def checkpt_stream(
    frames: list[FrameSpec], *, wbuf_size: int = 1 << 20, to_buffer: Any = None
) -> tuple[bytes, Offsets]:
    """Write ``frames`` with a stream-mode Checkpt into memory; return bytes and offsets."""
    import io

    f = io.BytesIO()
    ck = Checkpt.stream(f, wbuf_size=wbuf_size)
    rec = write_frames(ck, frames, to_buffer=to_buffer)
    ck.fini()
    return f.getvalue(), rec


def checkpt_mmio(
    frames: list[FrameSpec], *, region_size: int | None = None, to_buffer: Any = None
) -> tuple[bytes, Offsets]:
    """Write ``frames`` with an mmio-mode Checkpt; return the bytes written and offsets."""
    size = checkpoint_bound(frames) if region_size is None else region_size
    region = bytearray(size)
    ck = Checkpt.mmio(region)
    rec = write_frames(ck, frames, to_buffer=to_buffer)
    end = ck.offset
    ck.fini()
    return bytes(region[:end]), rec


# ----------------------------------------------------------------------------------------------
# Containers (ndckpt.save / load / open)
# ----------------------------------------------------------------------------------------------

#: datetime64 / timedelta64 units ("" is the generic unit).
DATETIME_UNITS = ("", "Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as")


def _both_orders(codes: tuple[str, ...]) -> list[np.dtype[Any]]:
    return [np.dtype(e + c) for c in codes for e in "<>"]


#: Every kind of plain (non-structured) dtype ndckpt stores, in both byte orders where that exists.
SCALAR_DTYPES: tuple[np.dtype[Any], ...] = (
    np.dtype("?"),
    np.dtype("i1"),
    np.dtype("u1"),
    *_both_orders(("i2", "i4", "i8", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16")),
    np.dtype(np.longdouble),
    np.dtype(np.longdouble).newbyteorder(),
    np.dtype(np.clongdouble),
    np.dtype(np.clongdouble).newbyteorder(),
    *_both_orders(tuple(f"M8[{u}]" if u else "M8" for u in DATETIME_UNITS)),
    *_both_orders(tuple(f"m8[{u}]" if u else "m8" for u in DATETIME_UNITS)),
    np.dtype("S1"),
    np.dtype("S7"),
    *_both_orders(("U1", "U5")),
    np.dtype("V1"),
    np.dtype("V6"),
)

#: Hand-picked structured dtypes: nested, with explicit offsets, padding, subarrays, alignment, titles.
STRUCTURED_DTYPES: tuple[np.dtype[Any], ...] = (
    np.dtype([("a", "<i4"), ("b", ">f8"), ("c", "u1", (4,))]),
    np.dtype({"names": ["x", "y"], "formats": ["u1", ">i4"], "offsets": [0, 8], "itemsize": 16}),
    np.dtype({"names": ["y", "x"], "formats": ["<f2", "u1"], "offsets": [6, 1], "itemsize": 9}),
    np.dtype([("a", "u1"), ("b", "<i8"), ("c", "u2")], align=True),
    np.dtype([("outer", [("inner", "<i2", (2, 3)), ("t", "M8[ms]")]), ("s", "S3"), ("u", ">U2")]),
    np.dtype({"names": ["v"], "formats": ["<c8"], "offsets": [4], "itemsize": 12, "titles": ["The V"]}),
)


@st.composite
def structured_dtypes(draw: st.DrawFn, depth: int = 2) -> np.dtype[Any]:
    """Random structured dtypes: 1-3 fields, nested up to ``depth``, gaps, tail padding, subarrays."""
    names = draw(st.lists(st.sampled_from("abcdé"), min_size=1, max_size=3, unique=True))
    formats: list[np.dtype[Any]] = []
    for _ in names:
        branches = [st.sampled_from(SCALAR_DTYPES)]
        if depth > 0:
            branches.append(structured_dtypes(depth - 1))
        base = draw(st.one_of(branches))
        if draw(st.integers(0, 4)) == 0:
            base = np.dtype((base, tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))))
        formats.append(base)
    if draw(st.booleans()):
        return np.dtype(list(zip(names, formats, strict=True)), align=draw(st.booleans()))
    offsets, end = [], 0
    for f in formats:
        end += draw(st.integers(0, 3))  # padding before the field
        offsets.append(end)
        end += f.itemsize
    itemsize = end + draw(st.integers(0, 5))  # tail padding
    order = draw(st.permutations(range(len(names))))  # fields listed out of offset order too
    return np.dtype(
        {
            "names": [names[i] for i in order],
            "formats": [formats[i] for i in order],
            "offsets": [offsets[i] for i in order],
            "itemsize": itemsize,
        }
    )


def container_dtypes() -> st.SearchStrategy[np.dtype[Any]]:
    """Every dtype family ndckpt stores: plain, hand-picked structured, random structured."""
    return st.one_of(st.sampled_from(SCALAR_DTYPES), st.sampled_from(STRUCTURED_DTYPES), structured_dtypes())


#: Ways an input array can sit in memory.
LAYOUTS = ("C", "F", "transpose", "step", "reverse", "unaligned")


def make_layout(dtype: np.dtype[Any], shape: tuple[int, ...], layout: str, seed: int) -> np.ndarray[Any, Any]:
    """A writable array of ``dtype`` and ``shape`` with random bytes, laid out as ``layout``.

    ``layout`` is one of :data:`LAYOUTS`: C- or F-contiguous, a transposed view (axes rotated),
    every second item of a larger array, a view with negative strides, or a C-contiguous array
    starting one byte past an aligned address.
    """
    rng = np.random.default_rng(seed)
    isz, nd = dtype.itemsize, len(shape)
    n = math.prod(shape)
    if layout in ("C", "F") or nd == 0 or (layout == "transpose" and nd < 2):
        order = "F" if layout == "F" else "C"
        return np.ndarray(shape, dtype, buffer=bytearray(rng.bytes(n * isz)), order=order)  # type: ignore[call-overload]
    if layout == "transpose":
        axes = (*range(1, nd), 0)
        base_shape = [0] * nd
        for i, ax in enumerate(axes):
            base_shape[ax] = shape[i]
        base = np.ndarray(tuple(base_shape), dtype, buffer=bytearray(rng.bytes(n * isz)))
        return base.transpose(axes)
    if layout == "step":
        base = np.ndarray((shape[0] * 2, *shape[1:]), dtype, buffer=bytearray(rng.bytes(2 * n * isz)))
        return base[::2]
    if layout == "reverse":
        base = np.ndarray(shape, dtype, buffer=bytearray(rng.bytes(n * isz)))
        return base[..., ::-1]
    if layout == "unaligned":
        return np.ndarray(shape, dtype, buffer=bytearray(rng.bytes(n * isz + 1)), offset=1)
    raise ValueError(f"unknown layout {layout!r}")


@st.composite
def layout_arrays(
    draw: st.DrawFn,
    dtype: st.SearchStrategy[np.dtype[Any]] | None = None,
    shape: st.SearchStrategy[tuple[int, ...]] | None = None,
    layouts: tuple[str, ...] = LAYOUTS,
) -> np.ndarray[Any, Any]:
    """Arrays of any stored dtype (default :func:`container_dtypes`), shape and memory layout."""
    dt = draw(container_dtypes() if dtype is None else dtype)
    shp = draw(shapes(max_dims=3, max_side=6) if shape is None else shape)
    return make_layout(dt, shp, draw(st.sampled_from(layouts)), draw(st.integers(0, 2**32 - 1)))


#: Characters for mapping keys: ASCII, punctuation, non-ASCII (never "/", the flat-name separator).
KEY_ALPHABET = "abcxyz_0.-é€"


def keys() -> st.SearchStrategy[str]:
    return st.text(KEY_ALPHABET, min_size=1, max_size=4)


def array_trees(
    leaves: st.SearchStrategy[Any] | None = None, *, max_leaves: int = 6, max_depth: int = 2
) -> st.SearchStrategy[dict[str, Any]]:
    """Nested str-keyed mappings of arrays, with empty groups (``{}``) among the values."""
    leaf = layout_arrays() if leaves is None else leaves

    def level(depth: int) -> st.SearchStrategy[dict[str, Any]]:
        values = leaf if depth == 0 else st.one_of(leaf, st.just({}), level(depth - 1))
        return st.dictionaries(keys(), values, max_size=max_leaves)

    return level(max_depth)
