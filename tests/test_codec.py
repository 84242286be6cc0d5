"""The LZ4 frame codec (ndckpt._codec): reused across frames, it gives a fresh writer's bytes.

- An encoder started with ``fresh=True`` writes every frame exactly as a brand-new Checkpt
  (a never-used LZ4 stream) would, whatever it encoded before; with ``fresh=False`` it is
  one fd_checkpt writer (one Checkpt) over all the frames.
- A reused decoder reads every frame as a brand-new Restore does.
- Both, in memory and stream mode; and after a failed frame the codec is fine for the next.
- The container's bytes do not depend on the thread count (threads=1 == threads=2).
- Each thread gets its own spare codec, and a second taker gets a new one.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np
import pytest
from fdvectors import gen, load_case
from forge import save_small_frames, write_small_frames
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    BufSpec,
    Content,
    FrameSpec,
    buffer_sizes,
    checkpt_mmio,
    contents,
    generate,
    read_frames,
)

import ndckpt
from ndckpt import CompressionError, Restore
from ndckpt._backend import MmioSink, MmioSource, StreamSink, StreamSource
from ndckpt._codec import (
    FrameDecoder,
    FrameEncoder,
    give_back_decoder,
    give_back_encoder,
    take_decoder,
    take_encoder,
)
from ndckpt.container.plan import prepare
from ndckpt.container.write import encode_frame
from ndckpt.format import lz4_frame_bound

# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def encode(enc: FrameEncoder, bufs: list[bytes], *, fresh: bool, stream: bool = False) -> bytes:
    """One LZ4 frame of ``bufs`` from ``enc``, into a memory region or through a stream sink."""
    if stream:
        f = io.BytesIO()
        sink: Any = StreamSink(f, 1 << 17)
    else:
        region = bytearray(lz4_frame_bound([len(b) for b in bufs]))
        sink = MmioSink(region)
    enc.start(0, fresh=fresh)
    for b in bufs:
        if b:
            enc.write(sink, memoryview(b), len(b))
    if stream:
        sink.flush()
        return f.getvalue()
    return bytes(region[: sink.offset])


def decode(dec: FrameDecoder, data: bytes, sizes: list[int], *, stream: bool = False) -> list[bytes]:
    """The buffers of the LZ4 frame ``data`` read by ``dec``; asserts every byte was used."""
    src: Any = StreamSource(io.BytesIO(data), 1 << 17) if stream else MmioSource(data)
    dec.start(0)
    out = []
    for i, n in enumerate(sizes):
        b = bytearray(n)
        if n:
            dec.read(src, memoryview(b), n, i)
        out.append(bytes(b))
    assert src.offset == len(data), f"the frame's chunks end at {src.offset}, not at {len(data)}"
    return out


def fresh_checkpt(bufs: list[bytes]) -> bytes:
    """The frame as a brand-new Checkpt writes it (its first and only frame)."""
    return checkpt_mmio([lz4_frame(bufs)])[0]


def lz4_frame(bufs: list[bytes]) -> FrameSpec:
    return FrameSpec(2, tuple(BufSpec(Content("literal", len(b), 0, b)) for b in bufs))


#: A frame: a few buffers of any size (0, tiny, around and above 64 KiB), or many small ones.
frame_bufs = st.one_of(
    st.lists(contents(), max_size=4),
    st.lists(contents(buffer_sizes(small_only=True)), min_size=10, max_size=60),
    st.lists(contents(st.integers(1, 40)), min_size=50, max_size=400),
).map(lambda cs: [c.data for c in cs])
frame_seqs = st.lists(frame_bufs, min_size=1, max_size=5)

# ----------------------------------------------------------------------------------------------
# Encoder
# ----------------------------------------------------------------------------------------------


def test_fresh_start_is_a_new_stream_and_fast_start_is_upstream() -> None:
    """The golden vector whose second frame a new stream encodes differently (fd_checkpt.md
    §5.5): fresh=False reproduces upstream's two frames, fresh=True a brand-new writer's."""
    case, data = load_case("lz4_stream_reuse")
    first = gen("words", 3000, 10)
    second = bytes.fromhex(case["frames"][1]["bufs"][0]["content"]["hex"])
    enc = FrameEncoder()
    a = encode(enc, [first], fresh=False)
    b = encode(enc, [second], fresh=False)
    assert a + b == data
    encode(enc, [first], fresh=True)
    c = encode(enc, [second], fresh=True)
    assert c == fresh_checkpt([second])
    assert c != b, "the vector no longer tells a fresh stream from a reset one"


@settings(max_examples=40)
@given(frames=frame_seqs, stream=st.booleans())
def test_reused_fresh_encoder_gives_a_new_writers_bytes(frames: list[list[bytes]], stream: bool) -> None:
    enc = FrameEncoder()
    for i, bufs in enumerate(frames):
        assert encode(enc, bufs, fresh=True, stream=stream) == fresh_checkpt(bufs), f"frame {i}"


@settings(max_examples=25)
@given(frames=frame_seqs)
def test_reused_fast_encoder_is_one_checkpt(frames: list[list[bytes]]) -> None:
    """Without ``fresh`` the encoder is a Checkpt's: its frames are one writer's frames."""
    enc = FrameEncoder()
    got = b"".join(encode(enc, bufs, fresh=False) for bufs in frames)
    assert got == checkpt_mmio([lz4_frame(bufs) for bufs in frames])[0]


def test_encoder_after_a_failed_frame() -> None:
    """A frame that does not fit fails with CompressionError; the next fresh frame is exact."""
    data = generate("splitmix64", 200_000, 3)
    enc = FrameEncoder("X: ")
    sink = MmioSink(bytearray(1000))
    enc.start(0, fresh=True)
    with pytest.raises(CompressionError, match=r"^X: LZ4 frame at offset 0, chunk 0: "):
        enc.write(sink, memoryview(data), len(data))
    small = generate("text", 70_000, 1)
    assert encode(enc, [small], fresh=True) == fresh_checkpt([small])


# ----------------------------------------------------------------------------------------------
# Decoder
# ----------------------------------------------------------------------------------------------


@settings(max_examples=40)
@given(frames=frame_seqs, stream=st.booleans())
def test_reused_decoder_reads_as_a_new_restore(frames: list[list[bytes]], stream: bool) -> None:
    dec = FrameDecoder()
    for bufs in frames:
        data = fresh_checkpt(bufs)
        assert decode(dec, data, [len(b) for b in bufs], stream=stream) == bufs
        rs = Restore.mmio(data)
        rec = read_frames(rs, [lz4_frame(bufs)])  # a new Restore: asserts every buffer
        rs.fini()
        assert rec.closes == [len(data)]


def test_decoder_after_a_failed_frame() -> None:
    """A corrupt block fails with the engine's message shape; the next frame decodes."""
    good = [generate("text", 100_000, 2), generate("runs", 500, 4)]
    data = bytearray(fresh_checkpt(good))
    csz = int.from_bytes(data[:3], "little")
    del data[3 + csz - 1]  # the first block loses its last byte and its size says so
    data[:3] = (csz - 1).to_bytes(3, "little")
    dec = FrameDecoder("Y: ")
    with pytest.raises(CompressionError, match=r"^Y: LZ4 frame at offset 0, buffer 0, chunk 0 at offset 0: "):
        decode(dec, bytes(data), [len(b) for b in good])
    assert decode(dec, fresh_checkpt(good), [len(b) for b in good]) == good


# ----------------------------------------------------------------------------------------------
# The container
# ----------------------------------------------------------------------------------------------


@st.composite
def lz4_states(draw: st.DrawFn) -> dict[str, np.ndarray[Any, Any]]:
    """A few arrays (64 KiB frames make several LZ4 frames of them, small ones packed)."""
    sizes = draw(st.lists(st.one_of(st.integers(1, 5000), st.integers(60_000, 300_000)), min_size=1, max_size=6))
    return {
        f"a{i}": np.frombuffer(generate(draw(st.sampled_from(("text", "runs", "splitmix64", "mul32"))), n, i), np.uint8)
        for i, n in enumerate(sizes)
    }


@settings(max_examples=20)
@given(state=lz4_states())
def test_container_bytes_do_not_depend_on_threads(state: dict[str, np.ndarray[Any, Any]]) -> None:
    one = save_small_frames(state, style="lz4")
    buf = io.BytesIO()
    write_small_frames(buf, state, style="lz4", threads=2)
    assert buf.getvalue() == one
    for threads in (1, 2):
        got = ndckpt.load(io.BytesIO(one), threads=threads)
        assert {k: bytes(v) for k, v in got.items()} == {k: bytes(v) for k, v in state.items()}


def test_container_frames_are_fresh_writers_frames() -> None:
    """Every LZ4 data frame of a save is a brand-new Checkpt's frame of that array, although one
    spare encoder per thread wrote them one after another (the first frame primes it)."""
    arrays = {f"a{i}": np.frombuffer(generate("text", 70_000 + 1000 * i, i), np.uint8) for i in range(4)}
    prep = prepare(arrays, "lz4", None, 1 << 17)  # arrays above 32 KiB: a frame each, in path order
    assert len(prep.head.frames) == len(arrays)
    for fi, f in enumerate(prep.head.frames):
        enc = encode_frame(f, fi, prep.array_bytes)
        assert not enc.raw
        assert bytes(enc.data) == fresh_checkpt([bytes(arrays[f"a{fi}"])]), f"frame {fi}"


# ----------------------------------------------------------------------------------------------
# Spares
# ----------------------------------------------------------------------------------------------


def test_spares_are_per_thread_and_lent_once() -> None:
    enc = take_encoder()
    other = take_encoder()  # the spare is lent out: a new one
    assert other is not enc
    give_back_encoder(enc)
    give_back_encoder(other)  # a spare is kept already: dropped
    assert take_encoder() is enc
    give_back_encoder(enc)
    dec = take_decoder()
    assert take_decoder() is not dec
    give_back_decoder(dec)
    assert take_decoder() is dec
    give_back_decoder(dec)

    seen: list[FrameEncoder] = []
    t = threading.Thread(target=lambda: seen.append(take_encoder()))
    t.start()
    t.join()
    assert seen[0] is not enc
