"""Byte filters applied to a frame's buffer before LZ4: shuffle and delta (issue 15).

Concepts
--------
A filter rewrites the bytes of one frame's buffer (format §2.2: the uncompressed bytes a
frame holds) into bytes of the same length that LZ4 compresses better; its inverse restores
them exactly. The filter of a frame is defined by its *kind* and its *item size* ``s``
(``1 <= s <= ITEMSIZE_MAX``) on **fixed blocks of the frame buffer**: block ``k`` is bytes
``[k * BLOCK, min((k + 1) * BLOCK, nbytes))``, exactly the frame's k-th 64 KiB LZ4 chunk
(format §1, ``CHUNK_USZ_MAX``). Every block is filtered on its own, so a reader unfilters only
the chunks it decodes, one cache-sized block at a time, straight into the destination.

In a block of ``L`` bytes, let ``n = L // s`` (its whole items) and ``body = n * s``:

* **shuffle**: output byte ``j * n + i`` is input byte ``i * s + j`` for ``0 <= i < n``,
  ``0 <= j < s`` (byte 0 of every item, then byte 1, ...: "byte planes");
* **delta**: shuffle, then within each byte plane every byte but the first is replaced by its
  difference from the previous byte of the plane, modulo 256 (blosc2's *bytedelta* applied
  after its shuffle): plane ``j`` of the output is ``p[0], p[1] - p[0], ..., p[n-1] - p[n-2]``
  where ``p`` is plane ``j`` of the shuffled block. Planes and blocks restart from zero: no
  byte of one block depends on another block.
* the **tail** ``[body, L)`` (fewer than ``s`` bytes) is copied verbatim, for both kinds.
  With ``s`` a power of two up to 64 only the last block of a frame can have a tail,
  since ``BLOCK`` is a multiple of ``s``; with ``s > L`` the whole block is tail.

Item size 1 makes shuffle the identity; delta with item size 1 is a plain byte delta.

Calls work on a *span*: bytes ``[a, a + len)`` of a frame buffer with ``a`` a multiple of
``BLOCK`` and ``len`` a multiple of ``BLOCK`` unless the span ends at the frame's end (the last,
shorter block). The frame's own first byte is not needed, so a region read passes just the
chunks it decoded.

Memory: both buffers are caller-given (the forward filter writes the frame's scratch buffer,
a :class:`ndckpt.parallel.ScratchPool` buffer; the inverse writes the array's bytes); a call allocates at most
``SCRATCH_MAX`` bytes of scratch, whatever the span's length, and never a span-sized
temporary. Blocks are processed ``BATCH`` at a time (one numpy call per byte plane and batch),
so what one call touches stays in the L2 cache.

Implementations: the numpy code below is the reference. When the optional compiled
accelerator is installed (``pip install ./accel``; see :mod:`ndckpt._accel`, and
``NDCKPT_NO_ACCEL=1`` to refuse it) :func:`filter_into` and :func:`unfilter_into` run its
kernels instead, after the same argument checks: the same bytes, with the GIL released, and
at most one block of scratch.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from . import _accel, _lz4
from .errors import InvalidArgumentError
from .format import CHUNK_USZ_MAX, chunk_csz_max

__all__ = [
    "BATCH",
    "BLOCK",
    "FILTERS",
    "ITEMSIZE_MAX",
    "SCRATCH_MAX",
    "Choice",
    "choose",
    "estimate",
    "filter_into",
    "filter_itemsize",
    "sample_chunks",
    "unfilter_into",
]

#: Bytes per filter block: one LZ4 chunk, so a decoded chunk is unfiltered on its own.
BLOCK: Final = CHUNK_USZ_MAX
#: The filter kinds, by the name the head and the ``style`` argument use (``"lz4+shuffle"``).
FILTERS: Final = ("shuffle", "delta")
#: Largest item size a filter takes (a byte; the writer uses 2, 4, 8 and 16).
ITEMSIZE_MAX: Final = 255
#: Blocks handled per numpy call: 4 x 64 KiB, within a core's L2 cache with its scratch.
BATCH: Final = 4
#: Most scratch one call allocates (delta's inverse: three 64-bit work arrays and an output).
SCRATCH_MAX: Final = 4 * BATCH * BLOCK

assert BLOCK == 65536, "filter blocks are the frame's LZ4 chunks (format §1)"

_U8 = np.dtype(np.uint8)
# Constants of the SWAR prefix sum (see _prefix_planes): even bytes of a 64-bit word held in
# 16-bit lanes, the lane broadcast multiplier, and shifts.
_EVEN: Final = np.uint64(0x00FF00FF00FF00FF)
_LANES: Final = np.uint64(0x0001000100010001)
_SH8: Final = np.uint64(8)
_SH16: Final = np.uint64(16)
_SH48: Final = np.uint64(48)
_BYTE: Final = np.uint64(0xFF)


def _as_u8(x: Any, what: str, *, writable: bool) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """``x`` as a flat uint8 array sharing its memory; InvalidArgumentError if it cannot be."""
    if isinstance(x, np.ndarray):
        a = x
    else:
        try:
            a = np.frombuffer(x, dtype=np.uint8)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"{what}: expected a numpy array or a buffer, got {type(x).__name__}") from None
    if a.dtype != _U8 or not a.flags.c_contiguous:
        raise InvalidArgumentError(f"{what}: expected C-contiguous uint8 bytes, got {a.dtype} (shape {a.shape})")
    if writable and not a.flags.writeable:
        raise InvalidArgumentError(f"{what}: the destination is read-only")
    return a.reshape(-1)


def _check(
    kind: str, src: Any, dst: Any, itemsize: int, block: int, call: str
) -> tuple[np.ndarray[Any, np.dtype[np.uint8]], np.ndarray[Any, np.dtype[np.uint8]]]:
    if kind not in FILTERS:
        raise InvalidArgumentError(f"{call}: unknown filter {kind!r}; expected one of {', '.join(FILTERS)}")
    if type(itemsize) is not int or not 1 <= itemsize <= ITEMSIZE_MAX:
        raise InvalidArgumentError(f"{call}: item size must be an int in [1, {ITEMSIZE_MAX}], got {itemsize!r}")
    if type(block) is not int or block < 1:
        raise InvalidArgumentError(f"{call}: block must be a positive int, got {block!r}")
    s = _as_u8(src, f"{call} src", writable=False)
    d = _as_u8(dst, f"{call} dst", writable=True)
    if s.nbytes != d.nbytes:
        raise InvalidArgumentError(f"{call}: src has {s.nbytes} bytes, dst {d.nbytes}; they must be equal")
    if s.nbytes and np.may_share_memory(s, d):
        raise InvalidArgumentError(f"{call}: src and dst overlap")
    return s, d


def _groups(nbytes: int, block: int) -> list[tuple[int, int, int]]:
    """(start, blocks, block length) of each batch: BATCH full blocks at a time, then the tail block."""
    full, rem = divmod(nbytes, block)
    out = [(k * block, min(BATCH, full - k), block) for k in range(0, full, BATCH)]
    if rem:
        out.append((full * block, 1, rem))
    return out


def filter_into(kind: str, src: Any, dst: Any, itemsize: int, *, block: int = BLOCK) -> None:
    """Write the ``kind`` filter ("shuffle" or "delta") of the span ``src`` into ``dst``.

    ``src`` (read only) and ``dst`` (written) are C-contiguous uint8 buffers of equal length
    that do not overlap, holding a span of a frame buffer as the module docstring defines it
    (it starts at a block boundary and ends at one or at the frame's end). ``block`` is for
    tests and measurements only; files use ``BLOCK``. Allocates at most ``SCRATCH_MAX`` bytes.

    Raises InvalidArgumentError for an unknown kind, an item size outside [1, ITEMSIZE_MAX],
    unequal lengths, overlapping or read-only buffers; ``dst`` is then untouched.
    """
    s, d = _check(kind, src, dst, itemsize, block, "filter_into")
    accel = _accel.kernels()
    if accel is not None:  # the same bytes from compiled code (ndckpt._accel)
        accel.filter(FILTERS.index(kind), s, d, itemsize, block)
        return
    scratch: np.ndarray[Any, np.dtype[np.uint8]] | None = None
    for start, k, blen in _groups(s.nbytes, block):
        n = blen // itemsize
        body = n * itemsize
        src2 = s[start : start + k * blen].reshape(k, blen)
        dst2 = d[start : start + k * blen].reshape(k, blen)
        if body < blen:
            dst2[:, body:] = src2[:, body:]
        if not n:
            continue
        items = src2[:, :body]
        if kind == "delta":
            if scratch is None:
                scratch = np.empty(min(s.nbytes, BATCH * block), np.uint8)
            diff = scratch[: k * body].reshape(k, body)
            # Byte-wise difference of consecutive items = delta along every byte plane.
            np.subtract(items[:, itemsize:], items[:, :-itemsize], out=diff[:, itemsize:])
            diff[:, :itemsize] = items[:, :itemsize]
            items = diff
        planes = dst2[:, :body].reshape(k, itemsize, n)
        np.copyto(planes, items.reshape(k, n, itemsize).transpose(0, 2, 1))


def unfilter_into(kind: str, src: Any, dst: Any, itemsize: int, *, block: int = BLOCK) -> None:
    """Write the inverse of the ``kind`` filter of the filtered span ``src`` into ``dst``.

    Same buffers and span rules as :func:`filter_into`: ``src`` is read only (so it may be the
    LZ4 decoder's output, still needed as history for the next chunk) and ``dst`` is the final
    destination (an array's bytes), written once per byte, block by block. Every byte pattern
    of ``src`` is valid input: the filters are bijections. Allocates at most ``SCRATCH_MAX``
    bytes.

    Raises InvalidArgumentError as :func:`filter_into`; ``dst`` is then untouched.
    """
    s, d = _check(kind, src, dst, itemsize, block, "unfilter_into")
    accel = _accel.kernels()
    if accel is not None:  # the same bytes from compiled code (ndckpt._accel)
        accel.unfilter(FILTERS.index(kind), s, d, itemsize, block)
        return
    work: list[np.ndarray[Any, Any]] = []
    for start, k, blen in _groups(s.nbytes, block):
        n = blen // itemsize
        body = n * itemsize
        src2 = s[start : start + k * blen].reshape(k, blen)
        dst2 = d[start : start + k * blen].reshape(k, blen)
        if body < blen:
            dst2[:, body:] = src2[:, body:]
        if not n:
            continue
        planes = src2[:, :body].reshape(k, itemsize, n)
        if kind == "delta":
            if not work:
                cap = min(s.nbytes, BATCH * block)
                work = [np.empty(cap, np.uint8)] + [np.empty(cap // 8, np.uint64) for _ in range(3)]
            summed = work[0][: k * body].reshape(k, itemsize, n)
            _prefix_planes(planes, summed, work[1:])
            planes = summed
        items = dst2[:, :body].reshape(k, n, itemsize)
        if itemsize <= 16:
            # One strided store per plane: numpy's transposed copy (copyto of a transposed view)
            # runs its inner loop along the destination's short item axis and is 2-10x slower.
            for j in range(itemsize):
                items[:, :, j] = planes[:, j, :]
        else:
            np.copyto(items, planes.transpose(0, 2, 1))


def _prefix_planes(
    src: np.ndarray[Any, np.dtype[np.uint8]],
    dst: np.ndarray[Any, np.dtype[np.uint8]],
    work: list[np.ndarray[Any, Any]],
) -> None:
    """``dst[..., i] = sum(src[..., :i + 1]) mod 256`` along the last axis (the byte planes).

    ``src`` is (k, s, n) with a contiguous last axis, ``dst`` a contiguous array of that shape,
    ``work`` three uint64 arrays of at least ``dst.size // 8`` elements. numpy's uint8
    ``add.accumulate`` is a scalar loop (about 0.4 GB/s); when ``n`` is a multiple of 8 this
    instead sums eight bytes per 64-bit word: each word's even and odd bytes go to 16-bit lanes,
    a multiplication by 0x0001000100010001 gives their prefix sums within the word, one uint64
    ``add.accumulate`` over word totals carries between words, and the lanes are masked back to
    bytes (every lane stays below 2**16, so no lane spills into the next).
    """
    n = src.shape[2]
    if n % 8:
        np.add.accumulate(src, axis=2, dtype=np.uint8, out=dst)
        return
    w = src.view(np.uint64)  # (k, s, n // 8): word i holds plane bytes 8i .. 8i+7
    shape = w.shape
    size = w.size
    even, odd, carry = (a[:size].reshape(shape) for a in work)
    out = dst.view(np.uint64)
    np.bitwise_and(w, _EVEN, out=even)
    np.right_shift(w, _SH8, out=odd)
    np.bitwise_and(odd, _EVEN, out=odd)
    np.multiply(even, _LANES, out=even)  # lane c: sum of even bytes 0, 2, .., 2c of the word
    np.multiply(odd, _LANES, out=odd)  # lane c: sum of odd bytes 1, 3, .., 2c+1
    np.add(even, odd, out=out)  # prefix at the odd bytes; lane 3 = the word's total
    np.left_shift(odd, _SH16, out=odd)
    np.add(odd, even, out=odd)  # prefix at the even bytes: odd sums of the lanes below
    np.right_shift(out, _SH48, out=carry)
    np.add.accumulate(carry, axis=2, out=carry)  # running totals, inclusive
    np.right_shift(out, _SH48, out=even)
    np.subtract(carry, even, out=carry)  # exclusive: the previous words' total
    np.bitwise_and(carry, _BYTE, out=carry)  # only its value mod 256 matters
    np.multiply(carry, _LANES, out=carry)  # broadcast to the four lanes
    # Whole-array adds: an add into a shifted slice of its own operand makes numpy copy it.
    np.add(out, carry, out=out)
    np.add(odd, carry, out=odd)
    np.bitwise_and(out, _EVEN, out=out)
    np.bitwise_and(odd, _EVEN, out=odd)
    np.left_shift(out, _SH8, out=out)
    np.bitwise_or(out, odd, out=out)


# --------------------------------------------------------------------------------------------
# Choosing a filter ("auto")
# --------------------------------------------------------------------------------------------


def filter_itemsize(itemsize: int) -> int:
    """The item size the writer filters an array of ``itemsize``-byte items by.

    The largest power of two dividing ``itemsize``, at most 16: 8 for float64 and int64, 16 for
    complex128, 4 for a 12-byte record of three float32, 1 (shuffle is then the identity) for
    odd sizes. Powers of two divide ``BLOCK``, the frame
    size and the pack alignment (format §3), so items never straddle blocks.
    """
    if type(itemsize) is not int or itemsize < 1:
        raise InvalidArgumentError(f"filter_itemsize: expected a positive int, got {itemsize!r}")
    return min(itemsize & -itemsize, 16)


def sample_chunks(nbytes: int, count: int) -> list[int]:
    """Indices of ``count`` LZ4 chunks spread evenly over a frame of ``nbytes`` (all when fewer).

    Chunk ``i`` of ``m`` picked is the middle one of the i-th m-th of the frame: a pure
    function of the frame's size, so the choice never depends on threads or addresses.
    """
    chunks = -(-nbytes // BLOCK)
    if chunks <= count:
        return list(range(chunks))
    return sorted({(2 * i + 1) * chunks // (2 * count) for i in range(count)})


class Choice:
    """What :func:`choose` decided for one frame, and the sampled sizes it decided from.

    ``kind`` is None (plain LZ4), "shuffle" or "delta"; ``sizes`` maps each candidate (None
    included) to its estimated LZ4 size of the sampled chunks, ``sampled`` is their length.
    """

    __slots__ = ("kind", "sampled", "sizes")

    def __init__(self, kind: str | None, sizes: dict[str | None, int], sampled: int) -> None:
        self.kind, self.sizes, self.sampled = kind, sizes, sampled

    def __repr__(self) -> str:
        return f"Choice({self.kind!r}, sizes={self.sizes}, sampled={self.sampled})"


def estimate(chunk: np.ndarray[Any, np.dtype[np.uint8]], stream: _lz4.LZ4Stream, out: np.ndarray[Any, Any]) -> int:
    """LZ4 size of one chunk of at most BLOCK bytes as a fresh stream encodes it (acceleration 1),
    its 3-byte header included. ``stream`` is reset first; ``out`` is scratch of at least
    ``chunk_csz_max(BLOCK)`` bytes. The frame's real encoding may also refer to the previous
    chunk, so it is usually a little smaller.
    """
    n = chunk.nbytes
    if not n:
        return 0
    cap = chunk_csz_max(n)
    stream.reset_fast()
    csz = stream.compress(int(chunk.ctypes.data), int(out.ctypes.data), n, cap)
    return csz + 3 if csz > 0 else cap  # csz <= 0 cannot happen with LZ4's bound as capacity


def choose(data: Any, itemsize: int, *, samples: int = 4, margin: float = 0.03) -> Choice:
    """Choose the filter for one frame's buffer ``data`` (C-contiguous bytes) by sampling.

    ``samples`` chunks (:func:`sample_chunks`) are LZ4-compressed plain, shuffled and delta'd
    by ``itemsize``; a filter is chosen when its sampled size beats plain LZ4's by more than
    ``margin`` (a fraction), the smaller of the two filters winning, else None (plain LZ4;
    the writer's stored-verbatim rule still applies after compression). The result is a
    pure function of the bytes and the arguments. With ``itemsize`` 1 shuffle is the identity,
    so only delta is tried. Scratch: two chunks and one LZ4 stream.

    Raises InvalidArgumentError for bad arguments and RuntimeError without an LZ4 library.
    """
    buf = _as_u8(data, "choose data", writable=False)
    if type(itemsize) is not int or not 1 <= itemsize <= ITEMSIZE_MAX:
        raise InvalidArgumentError(f"choose: item size must be an int in [1, {ITEMSIZE_MAX}], got {itemsize!r}")
    if type(samples) is not int or samples < 1:
        raise InvalidArgumentError(f"choose: samples must be a positive int, got {samples!r}")
    if not 0 <= margin < 1:
        raise InvalidArgumentError(f"choose: margin must be in [0, 1), got {margin!r}")
    kinds: tuple[str, ...] = FILTERS if itemsize > 1 else ("delta",)
    sizes: dict[str | None, int] = {None: 0, **dict.fromkeys(kinds, 0)}
    scratch = np.empty(min(buf.nbytes, BLOCK), np.uint8)
    out = np.empty(chunk_csz_max(BLOCK), np.uint8)
    stream = _lz4.LZ4Stream()
    sampled = 0
    try:
        for c in sample_chunks(buf.nbytes, samples):
            chunk = buf[c * BLOCK : (c + 1) * BLOCK]
            sampled += chunk.nbytes
            sizes[None] += estimate(chunk, stream, out)
            part = scratch[: chunk.nbytes]
            for kind in kinds:
                filter_into(kind, chunk, part, itemsize)
                sizes[kind] += estimate(part, stream, out)
    finally:
        stream.free()
    best = min(kinds, key=lambda k: (sizes[k], FILTERS.index(k)))
    chosen = best if sizes[best] < (1 - margin) * sizes[None] else None
    return Choice(chosen, sizes, sampled)
