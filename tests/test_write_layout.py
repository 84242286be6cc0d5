"""ndckpt.container.write: one byte layout for the sequential writer and for positional writers.

``ndckpt.save`` writes through :func:`write_checkpoint` (in file order, pads written as zeros);
``ndckpt.mpi`` places every piece itself with :func:`place`, :func:`write_head`,
:func:`write_record` and :func:`write_tail` (pads left as holes). Here a positional writer
into a zero-filled buffer, writing the frames in any order, must give exactly the bytes of the
sequential writer, leave unwritten only the pads, and never write a byte twice.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import GENERATORS, array_trees, generate

from ndckpt import _lz4
from ndckpt._backend import StreamSink
from ndckpt.container.layout import parse_layout
from ndckpt.container.plan import Prepared, prepare
from ndckpt.container.spec import INDEX_DTYPE, SUPERBLOCK, TRAILER
from ndckpt.container.write import (
    SequentialAt,
    encode_frame,
    frame_input,
    index_table,
    place,
    superblock,
    write_checkpoint,
    write_head,
    write_record,
    write_tail,
)
from ndckpt.format import FrameStyle
from ndckpt.parallel import ScratchPool

FRAME = 1 << 16


def sequential(prep: Prepared, threads: int = 1) -> bytes:
    buf = io.BytesIO()
    write_checkpoint(StreamSink(buf, 1 << 20), prep, threads, None)
    return buf.getvalue()


def positional(prep: Prepared, order: list[int]) -> tuple[bytes, np.ndarray[Any, Any]]:
    """The file as a positional writer makes it (frames written in ``order``), and a mask of
    the bytes it wrote. Fails on a write that overlaps an earlier one or leaves the file."""
    frames = prep.head.frames
    encoded = [
        encode_frame(f, fi, prep.array_bytes) if f.style == FrameStyle.LZ4 else None for fi, f in enumerate(frames)
    ]
    stored = [e.stored if e is not None else f.nbytes for e, f in zip(encoded, frames, strict=True)]
    where = place(len(prep.head_json), frames, stored)
    size = where.index_offset + len(frames) * INDEX_DTYPE.itemsize + TRAILER.size
    out = bytearray(size)
    written = np.zeros(size, bool)

    def at(offset: int, buf: memoryview) -> None:
        n = buf.nbytes
        assert offset >= 0, offset
        assert offset + n <= size, (offset, n, size)
        assert not written[offset : offset + n].any(), f"bytes [{offset}, {offset + n}) written twice"
        written[offset : offset + n] = True
        out[offset : offset + n] = buf

    hashes = [0] * len(frames)
    for fi in order:
        f, enc = frames[fi], encoded[fi]
        if enc is not None:
            data_at = write_record(at, where.starts[fi], f.style, enc.stored, enc.xxh)
            at(data_at, memoryview(enc.data))
            hashes[fi] = enc.xxh
            for b in enc.hold:
                ScratchPool.put(b)
        else:
            src, gathered = frame_input(f, prep.array_bytes)
            hashes[fi] = _lz4.xxh64(src)
            data_at = write_record(at, where.starts[fi], f.style, f.nbytes, 0)
            at(data_at, memoryview(src))
            if gathered is not None:
                ScratchPool.put(gathered)
        assert data_at == where.offsets[fi]
    assert write_head(at, prep.head_json) == SUPERBLOCK.size + len(prep.head_json)
    assert write_tail(at, index_table(where.offsets, stored, hashes), where.index_offset) == size
    return bytes(out), written


def holds_arrays(v: Any) -> bool:
    """Whether ``v`` is an array or a group with an array somewhere below (a style key may name it)."""
    return not isinstance(v, dict) or any(map(holds_arrays, v.values()))


@st.composite
def states(draw: st.DrawFn) -> tuple[dict[str, Any], Any]:
    """Small arrays of every layout and dtype, plus large byte arrays of several frames whose
    contents compress well, badly (LZ4 frames stored verbatim) or not at all; mixed styles."""
    tree: dict[str, Any] = draw(array_trees(max_leaves=4))
    for i in range(draw(st.integers(0, 3))):
        n = draw(st.sampled_from([FRAME // 4 + 1, FRAME - 1, FRAME, 2 * FRAME + 123, 3 * FRAME + 4097]))
        data = generate(draw(st.sampled_from(GENERATORS)), n, draw(st.integers(0, 2**32 - 1)))
        tree[f"big{i}"] = np.frombuffer(data, np.uint8).copy()
    style = draw(st.sampled_from(["raw", "lz4", "mixed"]))
    if style == "mixed":
        style = {k: draw(st.sampled_from(["raw", "lz4"])) for k, v in tree.items() if holds_arrays(v)}
    return tree, style


@settings(max_examples=60, deadline=None)
@given(states(), st.randoms(use_true_random=False), st.sampled_from([1, 2]))
def test_positional_writes_give_the_sequential_file(state: Any, rnd: Any, threads: int) -> None:
    tree, style = state
    prep = prepare(tree, style, {"m": [1, 2]}, FRAME, FRAME)
    want = sequential(prep, threads)
    order = list(range(len(prep.head.frames)))
    rnd.shuffle(order)
    got, written = positional(prep, order)
    assert got == want
    lay = parse_layout(memoryview(want))
    where = place(len(prep.head_json), prep.head.frames, [lay.index_value(fi) for fi in range(len(lay.offsets))])
    assert where.offsets == lay.offsets
    assert where.index_offset == TRAILER.unpack_from(want, len(want) - TRAILER.size)[0]
    # What a positional writer leaves unwritten is exactly the pads, which read as zeros.
    pads = np.zeros(len(want), bool)
    for fi in range(len(lay.offsets)):
        a, b = lay.pad_range(fi)
        pads[a:b] = True
    assert (~written == pads).all()
    assert not np.frombuffer(want, np.uint8)[pads].any()


def test_verbatim_and_compressed_frames_written_backwards() -> None:
    rng = np.random.default_rng(3)
    tree = {
        "noise": rng.integers(0, 256, 3 * FRAME + 4097, dtype=np.uint8),  # LZ4 does not pay: verbatim
        "smooth": np.arange(2 * FRAME // 8, dtype=np.float64),
        "small": {"a": np.arange(5, dtype=np.int16), "b": np.zeros((2, 3), np.complex64, order="F")},
        "plain": np.arange(FRAME + 9, dtype=np.uint8),
    }
    prep = prepare(tree, {"noise": "lz4", "smooth": "lz4", "small": "lz4"}, None, FRAME, FRAME)
    want = sequential(prep, 2)
    lay = parse_layout(memoryview(want))
    styles = [f.style for f in prep.head.frames]
    verbatim = [fi for fi, s in enumerate(styles) if s == FrameStyle.LZ4 and lay.verbatim[fi]]
    compressed = [fi for fi, s in enumerate(styles) if s == FrameStyle.LZ4 and not lay.verbatim[fi]]
    assert len(verbatim) >= 3
    assert compressed
    assert FrameStyle.RAW in styles
    got, written = positional(prep, list(reversed(range(len(styles)))))
    assert got == want
    assert not written[lay.pad_range(verbatim[0])[0] : lay.offsets[verbatim[0]]].any()


def test_place_without_frames_puts_the_index_after_the_head() -> None:
    where = place(10, [], [])
    assert (where.starts, where.offsets, where.index_offset) == ([], [], SUPERBLOCK.size + 10)


def test_an_empty_checkpoint_is_the_same_both_ways() -> None:
    prep = prepare({}, "raw", None, FRAME)
    got, written = positional(prep, [])
    assert got == sequential(prep)
    assert written.all()
    assert got[: SUPERBLOCK.size] == superblock(prep.head_json)


def test_sequential_at_writes_pads_and_refuses_other_gaps() -> None:
    buf = io.BytesIO()
    sink = StreamSink(buf, 1 << 16)
    at = SequentialAt(sink)
    at(0, memoryview(b"ab"))
    at(4096, memoryview(b"cd"))  # a pad: 4094 zeros first
    with pytest.raises(ValueError, match="sequential write at offset 4097"):
        at(4097, memoryview(b"x"))  # behind the sink
    with pytest.raises(ValueError, match="sequential write at offset 8194"):
        at(8194, memoryview(b"x"))  # a gap no pad can be
    sink.flush()
    assert buf.getvalue() == b"ab" + bytes(4094) + b"cd"
