"""ndckpt.filters: shuffle and delta by blocks, their inverses, and the "auto" chooser.

The reference below is the definition of the module docstring written the obvious way (one
block at a time, numpy reshape/transpose, ``np.diff``); the fast blockwise code must equal it
byte for byte, for every item size 1..16 and lengths around every block boundary.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ndckpt import _lz4, filters
from ndckpt.errors import InvalidArgumentError
from ndckpt.filters import BLOCK, FILTERS, SCRATCH_MAX, choose, filter_into, unfilter_into

U8 = np.ndarray[Any, np.dtype[np.uint8]]


def reference(kind: str, x: U8, s: int, block: int = BLOCK) -> U8:
    """The filter of the whole buffer ``x``, block by block, as the module docstring defines it."""
    out = []
    for a in range(0, x.size, block):
        b = x[a : a + block]
        n = b.size // s
        planes = b[: n * s].reshape(n, s).T.copy()  # (s, n): byte j of every item
        if kind == "delta" and n:
            planes = np.concatenate([planes[:, :1], np.diff(planes, axis=1)], axis=1)
        out += [planes.reshape(-1), b[n * s :]]
    return np.concatenate(out) if out else np.zeros(0, np.uint8)


def data(seed: int, n: int, kind: str = "random") -> U8:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.integers(0, 256, n, dtype=np.uint8)
    if kind == "smooth":  # float64 bytes that shuffle well (a slowly varying field)
        v = 300 + np.sin(np.arange(-(-n // 8)) / 500.0)
        return v.view(np.uint8)[:n].copy()
    return np.zeros(n, np.uint8)


# Lengths around the block boundaries, biased to the ones that break code: 0, tails shorter than
# an item, one block, one block plus a byte, several batches of blocks and a partial block.
LENGTHS = st.one_of(
    st.sampled_from([0, 1, 2, 15, 16, 17, BLOCK - 1, BLOCK, BLOCK + 1, 5 * BLOCK + 3, 9 * BLOCK]),
    st.integers(0, 3 * BLOCK + 100),
)
ITEMSIZES = st.integers(1, 16)
KINDS = st.sampled_from(FILTERS)


@settings(max_examples=150)
@given(kind=KINDS, s=ITEMSIZES, n=LENGTHS, seed=st.integers(0, 2**32 - 1))
def test_inverse_of_forward_is_identity_and_forward_is_the_reference(kind: str, s: int, n: int, seed: int) -> None:
    x = data(seed, n)
    y = np.full(n, 0xAA, np.uint8)
    filter_into(kind, x, y, s)
    assert np.array_equal(y, reference(kind, x, s))
    z = np.full(n, 0x55, np.uint8)
    unfilter_into(kind, y, z, s)
    assert np.array_equal(z, x)


@settings(max_examples=100)
@given(kind=KINDS, s=st.integers(1, 40), n=st.integers(0, 3000), block=st.integers(1, 300), seed=st.integers(0, 99))
def test_any_block_size_and_item_size_matches_the_reference(kind: str, s: int, n: int, block: int, seed: int) -> None:
    # Small blocks make many batches and partial tails; item sizes above the block length make
    # blocks that are all tail; sizes that do not divide the block leave a tail in every block.
    x = data(seed, n)
    y = np.empty_like(x)
    filter_into(kind, x, y, s, block=block)
    assert np.array_equal(y, reference(kind, x, s, block))
    z = np.empty_like(x)
    unfilter_into(kind, y, z, s, block=block)
    assert np.array_equal(z, x)


@settings(max_examples=60)
@given(kind=KINDS, s=ITEMSIZES, n=LENGTHS, seed=st.integers(0, 99))
def test_every_byte_string_is_valid_filtered_input(kind: str, s: int, n: int, seed: int) -> None:
    # The filters are bijections: a reader never meets "impossible" filtered bytes (a corrupt
    # frame is caught by its checksum, not by the unfilter).
    y = data(seed, n)
    x = np.empty_like(y)
    unfilter_into(kind, y, x, s)
    again = np.empty_like(y)
    filter_into(kind, x, again, s)
    assert np.array_equal(again, y)


@settings(max_examples=40)
@given(
    kind=KINDS,
    s=st.sampled_from([1, 2, 4, 8, 16]),
    frame_blocks=st.integers(1, 9),
    tail=st.integers(0, BLOCK - 1),
    span=st.data(),
)
def test_a_span_of_blocks_unfilters_alone(kind: str, s: int, frame_blocks: int, tail: int, span: Any) -> None:
    """A region read decodes chunks c0..c1 and unfilters just them: same bytes as the whole frame."""
    n = frame_blocks * BLOCK + tail
    x = data(frame_blocks + tail, n, "smooth")
    whole = np.empty_like(x)
    filter_into(kind, x, whole, s)
    chunks = -(-n // BLOCK)
    c0 = span.draw(st.integers(0, chunks - 1))
    c1 = span.draw(st.integers(c0 + 1, chunks))
    a, b = c0 * BLOCK, min(c1 * BLOCK, n)
    part = np.empty(b - a, np.uint8)
    filter_into(kind, x[a:b], part, s)
    assert np.array_equal(part, whole[a:b])
    out = np.empty(b - a, np.uint8)
    unfilter_into(kind, whole[a:b], out, s)
    assert np.array_equal(out, x[a:b])


@pytest.mark.parametrize("kind", FILTERS)
@pytest.mark.parametrize("s", [1, 2, 3, 4, 8, 12, 16])
def test_planes_of_a_known_block(kind: str, s: int) -> None:
    # Items 0, 1, 2, ... as little-endian s-byte integers (mod 256 per byte): byte plane 0 counts
    # 0, 1, 2, ... so its delta is 0 then all ones; the other planes are 0 (s > 1).
    n = 1000
    x = np.zeros((n, s), np.uint8)
    x[:, 0] = np.arange(n) % 256
    y = np.empty(n * s, np.uint8)
    filter_into(kind, x.reshape(-1), y, s)
    planes = y.reshape(s, n)
    if kind == "shuffle":
        assert np.array_equal(planes[0], np.arange(n) % 256)
    else:
        assert planes[0, 0] == 0
        assert (planes[0, 1:] == 1).all()
    assert not planes[1:].any()


def test_delta_restarts_in_every_block() -> None:
    # A constant non-zero byte stream: each block's planes start with the value, then zeros.
    x = np.full(3 * BLOCK, 7, np.uint8)
    y = np.empty_like(x)
    filter_into("delta", x, y, 8)
    planes = y.reshape(3, 8, BLOCK // 8)
    assert (planes[:, :, 0] == 7).all()
    assert not planes[:, :, 1:].any()


@pytest.mark.parametrize("kind", FILTERS)
@pytest.mark.parametrize("direction", ["filter", "unfilter"])
def test_no_span_sized_temporary(kind: str, direction: str) -> None:
    """The contract "never a full-frame temporary": a 16 MiB span allocates at most SCRATCH_MAX."""
    x = data(3, 16 << 20, "smooth")
    y = np.empty_like(x)
    fn = filter_into if direction == "filter" else unfilter_into
    fn(kind, x, y, 8)  # warm-up: numpy's own caches
    tracemalloc.start()
    try:
        fn(kind, x, y, 8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= SCRATCH_MAX + (64 << 10), peak


def test_buffers_of_other_types() -> None:
    x = data(5, 3 * BLOCK + 5)
    y = bytearray(x.size)
    filter_into("shuffle", x.tobytes(), y, 4)
    z = memoryview(bytearray(x.size))
    unfilter_into("shuffle", memoryview(y), z, 4)
    assert bytes(z) == x.tobytes()
    assert bytes(y) == reference("shuffle", x, 4).tobytes()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("bitshuffle", 8), "unknown filter 'bitshuffle'"),
        (("shuffle", 0), r"item size must be an int in \[1, 255\], got 0"),
        (("shuffle", 256), "got 256"),
        (("shuffle", 8.0), "got 8.0"),
    ],
)
def test_bad_arguments_raise_and_leave_dst_untouched(args: tuple[str, Any], match: str) -> None:
    x = data(1, 100)
    y = np.full(100, 9, np.uint8)
    for fn in (filter_into, unfilter_into):
        with pytest.raises(InvalidArgumentError, match=match):
            fn(args[0], x, y, args[1])
        assert (y == 9).all()


def test_bad_buffers_raise() -> None:
    x = data(1, 100)
    with pytest.raises(InvalidArgumentError, match="src has 100 bytes, dst 99"):
        filter_into("shuffle", x, np.empty(99, np.uint8), 4)
    with pytest.raises(InvalidArgumentError, match="overlap"):
        filter_into("shuffle", x[:50], x[40:90], 4)
    with pytest.raises(InvalidArgumentError, match="read-only"):
        unfilter_into("delta", x, x.tobytes(), 4)
    with pytest.raises(InvalidArgumentError, match="C-contiguous uint8"):
        filter_into("shuffle", x.view(np.uint16), np.empty(50, np.uint16), 2)
    with pytest.raises(InvalidArgumentError, match="C-contiguous uint8"):
        filter_into("shuffle", x[::2], np.empty(50, np.uint8), 2)
    with pytest.raises(InvalidArgumentError, match="expected a numpy array or a buffer"):
        filter_into("shuffle", 12, np.empty(50, np.uint8), 2)
    with pytest.raises(InvalidArgumentError, match="block must be a positive int"):
        filter_into("shuffle", x, np.empty(100, np.uint8), 2, block=0)


@pytest.mark.parametrize(
    ("itemsize", "expect"), [(1, 1), (2, 2), (3, 1), (4, 4), (8, 8), (12, 4), (16, 16), (24, 8), (32, 16), (48, 16)]
)
def test_filter_itemsize(itemsize: int, expect: int) -> None:
    assert filters.filter_itemsize(itemsize) == expect
    assert BLOCK % expect == 0


def test_filter_itemsize_refuses_nonsense() -> None:
    with pytest.raises(InvalidArgumentError):
        filters.filter_itemsize(0)


@given(nbytes=st.integers(1, 64 * BLOCK), count=st.integers(1, 16))
def test_sample_chunks_are_distinct_sorted_and_in_the_frame(nbytes: int, count: int) -> None:
    picks = filters.sample_chunks(nbytes, count)
    chunks = -(-nbytes // BLOCK)
    assert picks == sorted(set(picks))
    assert len(picks) == min(count, chunks)
    assert all(0 <= c < chunks for c in picks)


needs_lz4 = pytest.mark.skipif(not _lz4.available(), reason="no LZ4 library")


@needs_lz4
def test_choose_picks_a_filter_for_a_smooth_field_and_none_for_noise_and_zeros() -> None:
    smooth = data(1, 4 << 20, "smooth")
    got = choose(smooth, 8)
    assert got.kind in FILTERS
    assert got.sizes[got.kind] < 0.97 * got.sizes[None]
    assert got.sampled == 4 * BLOCK
    assert choose(data(1, 4 << 20), 8).kind is None  # random bytes: nothing pays
    zeros = choose(np.zeros(1 << 20, np.uint8), 8)
    assert zeros.kind is None  # plain LZ4 is as good: no filter without a margin
    assert set(zeros.sizes) == {None, "shuffle", "delta"}
    assert set(choose(smooth, 1).sizes) == {None, "delta"}  # item size 1: shuffle is the identity


@needs_lz4
def test_choose_depends_only_on_the_bytes() -> None:
    smooth = data(2, 3 * BLOCK + 17, "smooth")
    a = choose(smooth, 8)
    moved = np.empty(smooth.size + 3, np.uint8)[3:]  # another address, another alignment
    moved[...] = smooth
    b = choose(moved, 8)
    assert (a.kind, a.sizes, a.sampled) == (b.kind, b.sizes, b.sampled)
    assert choose(smooth, 8, margin=0.99).kind is None
    with pytest.raises(InvalidArgumentError):
        choose(smooth, 8, samples=0)
    with pytest.raises(InvalidArgumentError):
        choose(smooth, 8, margin=1.0)
    with pytest.raises(InvalidArgumentError, match="item size"):
        choose(np.zeros(0, np.uint8), 0)
