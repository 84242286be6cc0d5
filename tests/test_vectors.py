"""Golden fd_checkpt vectors: ndckpt writes and reads exactly Firedancer's bytes.

Every case in ``tests/data/fd_checkpt`` (read only from there) is replayed in every write mode
(stream into BytesIO, a real file and an int fd; mmio into a bytearray, a
numpy array and an np.memmap) and must give the ``.ckpt`` bytes and the
JSON's offsets; it is restored in every read mode, across modes, frame by
frame after a seek, and from copies cut down to one frame.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fdvectors import VECTORS_DIR, cases, check_files, content, decode_lz4_frame, gen, load_case
from strategies import FrameSpec, Offsets, literal, read_frames, write_frames

from ndckpt import Checkpt, FrameStyle, Restore
from ndckpt.format import META_MAX, chunk_sizes, lz4_frame_bound

CASES = cases()
SENTINEL = 0xA5
SLACK = 64  # bytes past the bound that must stay untouched


#: The 14 cases of the vectors' README; a case that disappears from SHA256SUMS fails here.
EXPECTED_CASES = {
    "big_1mib_plus7_lz4", "compressible_lz4", "empty_checkpoint", "empty_frame_lz4", "empty_frame_raw",
    "exact_64k", "gather_threshold_crossing", "incompressible_lz4", "lz4_stream_reuse", "many_tiny_lz4",
    "mixed_frames", "tiny_lz4", "tiny_raw", "zero_size_buffers",
}


def test_vectors_present() -> None:
    """Every vector file is in the repository and matches SHA256SUMS; nothing is read from outside it."""
    assert set(CASES) == EXPECTED_CASES, (
        f"golden vectors missing in {VECTORS_DIR}: found {CASES}; restore them with "
        f"`git checkout -- tests/data/fd_checkpt`"
    )
    assert check_files() == []
    assert VECTORS_DIR.is_relative_to(Path(__file__).resolve().parent)


@functools.cache
def golden(name: str) -> tuple[dict[str, Any], bytes, list[FrameSpec], Offsets]:
    """The JSON, the bytes, the frames to replay and the expected offsets of a case."""
    d, data = load_case(name)
    frames: list[FrameSpec] = []
    offs = Offsets()
    for fr in d["frames"]:
        bufs = []
        for b in fr["bufs"]:
            c = content(b["content"])
            assert len(c or b"") == b["size"]
            bufs.append(literal(c or b"", meta=b["api"] == "meta"))
        frames.append(FrameSpec(fr["style_code"], tuple(bufs)))
        offs.opens.append(fr["off_open"])
        offs.afters.append([b["off_after"] for b in fr["bufs"]])
        offs.closes.append(fr["off_close"])
    return d, data, frames, offs


def bound(frames: list[FrameSpec]) -> int:
    return sum(f.bound() for f in frames)


# ----------------------------------------------------------------------------------------------
# The files themselves
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_sha256_and_size(name: str) -> None:
    d, data, _, offs = golden(name)
    assert d["format"] == "fd_checkpt"
    assert len(data) == d["checkpt_size"]
    assert hashlib.sha256(data).hexdigest() == d["checkpt_sha256"]
    # The JSON's offsets tile the file: frames back to back from 0 to the end.
    ends = [0, *offs.closes]
    assert offs.opens == ends[:-1]
    assert ends[-1] == len(data)


def test_generator_self_checks() -> None:
    """The self-check values from the vectors' README."""
    assert gen("splitmix64", 8, 0).hex() == "afcd1d7b39a820e2"
    assert gen("splitmix64", 16, 1).hex() == "c15c0289ec2d0a9167ec8e65a18debbe"
    assert gen("mul32", 8, 0).hex() == "009e3cda7817b553"
    assert gen("text", 5, 4) == b"quick"
    assert gen("text", 10, 44) == b" The quick"
    assert gen("words", 24, 0) == b"pi xi xi mu kappa iota a"
    assert gen("fill", 3, 257).hex() == "010101"


@pytest.mark.parametrize("name", CASES)
def test_independent_decoder_agrees_with_json(name: str) -> None:
    """python-lz4 decodes every golden chunk; chunk sizes match the JSON; RAW is verbatim."""
    d, data, frames, _ = golden(name)
    for fr_json, fr in zip(d["frames"], frames, strict=True):
        off = fr_json["off_open"]
        if fr.kind == FrameStyle.LZ4:
            bufs, chunks, end = decode_lz4_frame(data, off, fr.sizes)
            assert bufs == [b.data for b in fr.bufs]
            assert [[list(c) for c in cks] for cks in chunks] == [
                b["chunks"] for b in fr_json["bufs"]
            ]
            assert [[u for u, _ in cks] for cks in chunks] == [chunk_sizes(n) for n in fr.sizes]
            assert end - fr_json["off_open"] <= lz4_frame_bound(fr.sizes)
        else:
            end = off + sum(fr.sizes)
            assert data[off:end] == b"".join(b.data for b in fr.bufs)
        assert end == fr_json["off_close"]


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

WRITE_SINKS = ("bytesio", "file", "fd", "bytearray", "numpy", "memmap")



def write_with(
    sink: str, frames: list[FrameSpec], tmp_path: Path, *, exact_size: int | None = None, **kw: Any
) -> tuple[bytes, Offsets]:
    """Replay ``frames`` into a fresh Checkpt on ``sink``; return the bytes and the offsets.

    mmio sinks get a region of ``exact_size`` bytes (bytearray) or of the bound
    plus SLACK sentinel bytes (numpy, memmap), and the bytes past what was
    written must be untouched.
    """
    path = tmp_path / f"w_{sink}.ckpt"
    if sink == "bytesio":
        f = io.BytesIO()
        ck = Checkpt.stream(f, **kw)
        rec = write_frames(ck, frames)
        ck.fini()
        return f.getvalue(), rec
    if sink == "file":
        with open(path, "wb") as fo:
            ck = Checkpt.stream(fo, **kw)
            rec = write_frames(ck, frames)
            ck.fini()
        return path.read_bytes(), rec
    if sink == "fd":
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            ck = Checkpt.stream(fd, **kw)
            rec = write_frames(ck, frames)
            ck.fini()
        finally:
            os.close(fd)
        return path.read_bytes(), rec
    region: Any
    if sink == "bytearray":
        region = bytearray(bound(frames) if exact_size is None else exact_size)
    elif sink == "numpy":
        region = np.full(bound(frames) + SLACK, SENTINEL, dtype=np.uint8)
    elif sink == "memmap":
        region = np.memmap(path, dtype=np.uint8, mode="w+", shape=(bound(frames) + SLACK,))
        region[:] = SENTINEL
    else:
        raise AssertionError(sink)
    ck = Checkpt.mmio(region)
    rec = write_frames(ck, frames)
    end = ck.offset
    ck.fini()
    if sink != "bytearray":
        assert np.all(np.asarray(region)[end:] == SENTINEL), "mmio wrote past the checkpoint's end"
    out = bytes(memoryview(region)[:end])
    if sink == "memmap":
        region.flush()
        del region
        assert path.read_bytes()[:end] == out
    return out, rec


@pytest.mark.parametrize("sink", WRITE_SINKS)
@pytest.mark.parametrize("name", CASES)
def test_checkpt_writes_golden_bytes_and_offsets(name: str, sink: str, tmp_path: Path) -> None:
    """Every write mode gives the .ckpt bytes and the JSON's off_open/off_after/off_close.

    mmio offsets are exact after every buffer; a stream Checkpt's ``offset``
    counts buffered bytes too, so it matches off_after as well.
    """
    _, data, frames, offs = golden(name)
    out, rec = write_with(sink, frames, tmp_path, exact_size=len(data))
    assert out == data
    assert rec == offs


@pytest.mark.parametrize("name", CASES)
def test_mmio_region_of_exact_size_suffices(name: str) -> None:
    """A region exactly the checkpoint's size is enough for every vector (as upstream)."""
    _, data, frames, offs = golden(name)
    region = bytearray(len(data))
    ck = Checkpt.mmio(region)
    assert write_frames(ck, frames) == offs
    assert ck.offset == len(data)
    ck.fini()
    assert region == data


@pytest.mark.parametrize("wbuf_size", [69632, 100000, 1 << 20, 16 << 20])
@pytest.mark.parametrize("name", CASES)
def test_wbuf_size_does_not_change_bytes(name: str, wbuf_size: int, tmp_path: Path) -> None:
    _, data, frames, offs = golden(name)
    out, rec = write_with("fd", frames, tmp_path, wbuf_size=wbuf_size)
    assert out == data
    assert rec.opens == offs.opens
    assert rec.closes == offs.closes


@pytest.mark.parametrize("name", CASES)
def test_meta_and_data_encode_identically(name: str) -> None:
    """The ``meta`` flag changes only the size limit, never the bytes."""
    _, data, frames, _ = golden(name)
    for meta in (False, True):
        flipped = [
            FrameSpec(
                f.style,
                tuple(literal(b.data, meta=meta and b.size <= META_MAX) for b in f.bufs),
            )
            for f in frames
        ]
        out, _ = write_with("bytesio", flipped, Path("/nonexistent"))
        assert out == data, f"meta={meta}"


def test_lz4_stream_reuse_needs_one_writer() -> None:
    """spec 5.5: one Checkpt writing both frames gives the golden bytes; a fresh one would not.

    The second frame, written by a brand-new Checkpt (as a naive parallel
    writer would), encodes differently, yet both encodings restore the same.
    """
    d, data, frames, offs = golden("lz4_stream_reuse")
    assert d["independent_writer_identical"] is False
    assert [f.kind for f in frames] == [FrameStyle.LZ4, FrameStyle.LZ4]
    out, rec = write_with("bytesio", frames, Path("/nonexistent"))
    assert out == data
    assert rec == offs
    second = data[offs.opens[1] : offs.closes[1]]
    fresh, _ = write_with("bytesio", frames[1:], Path("/nonexistent"))
    assert fresh != second
    for blob in (fresh, second):
        rs = Restore.mmio(blob)
        read_frames(rs, frames[1:])
        assert rs.offset == len(blob)
        rs.fini()


# ----------------------------------------------------------------------------------------------
# Restoring
# ----------------------------------------------------------------------------------------------

READ_SOURCES = ("bytesio", "file", "fd", "bytes", "bytearray", "numpy", "memmap")


@contextlib.contextmanager
def source(kind: str, data: bytes, tmp_path: Path, **kw: Any) -> Iterator[Restore]:
    """A Restore over ``data`` held in a source of ``kind``; closes what it opened."""
    path = tmp_path / f"r_{kind}.ckpt"
    if kind in ("file", "fd", "memmap"):
        path.write_bytes(data)
    if kind == "bytesio":
        yield Restore.stream(io.BytesIO(data), **kw)
    elif kind == "file":
        with open(path, "rb") as f:
            yield Restore.stream(f, **kw)
    elif kind == "fd":
        fd = os.open(path, os.O_RDONLY)
        try:
            yield Restore.stream(fd, **kw)
        finally:
            os.close(fd)
    elif kind == "bytes":
        yield Restore.mmio(data)
    elif kind == "bytearray":
        yield Restore.mmio(bytearray(data))
    elif kind == "numpy":
        yield Restore.mmio(np.frombuffer(data, dtype=np.uint8).copy())
    elif kind == "memmap":
        # mmap cannot map an empty file: an empty checkpoint is an empty array.
        yield Restore.mmio(
            np.memmap(path, dtype=np.uint8, mode="r") if data else np.empty(0, np.uint8)
        )
    else:
        raise AssertionError(kind)


def mode_of(kind: str) -> str:
    return "stream" if kind in ("bytesio", "file", "fd") else "mmio"


@pytest.mark.parametrize("kind", READ_SOURCES)
@pytest.mark.parametrize("name", CASES)
def test_restore_golden(name: str, kind: str, tmp_path: Path) -> None:
    """Every read mode returns every buffer and the JSON's offsets, and ends at the file's end."""
    _, data, frames, offs = golden(name)
    with source(kind, data, tmp_path) as rs:
        assert rs.mode == mode_of(kind)
        assert rs.size == len(data)
        assert rs.offset == 0
        assert read_frames(rs, frames) == offs
        assert rs.offset == len(data)
        rs.fini()


@pytest.mark.parametrize("rbuf_size", [69632, 100000, 1 << 20, 16 << 20])
@pytest.mark.parametrize("name", CASES)
def test_rbuf_size_restores_the_same(name: str, rbuf_size: int, tmp_path: Path) -> None:
    _, data, frames, offs = golden(name)
    with source("fd", data, tmp_path, rbuf_size=rbuf_size) as rs:
        assert read_frames(rs, frames) == offs
        rs.fini()


@pytest.mark.parametrize(
    ("wmode", "rmode"),
    [("stream", "mmio"), ("mmio", "stream"), ("stream", "stream"), ("mmio", "mmio")],
)
@pytest.mark.parametrize("name", CASES)
def test_restore_in_other_mode_than_written(
    name: str, wmode: str, rmode: str, tmp_path: Path
) -> None:
    """What one mode wrote, the other mode restores (the writer's own output, not the golden
    file)."""
    _, data, frames, offs = golden(name)
    path = tmp_path / "x.ckpt"
    if wmode == "stream":
        with open(path, "wb") as f:
            ck = Checkpt.stream(f)
            write_frames(ck, frames)
            ck.fini()
        written: Any = np.memmap(path, dtype=np.uint8, mode="r") if data else b""
    else:
        written = np.zeros(len(data), dtype=np.uint8)
        ck = Checkpt.mmio(written)
        write_frames(ck, frames)
        ck.fini()
        path.write_bytes(written.tobytes())
    if rmode == "stream":
        with open(path, "rb") as f:
            rs = Restore.stream(f)
            assert read_frames(rs, frames) == offs
            rs.fini()
    else:
        rs = Restore.mmio(written)
        assert read_frames(rs, frames) == offs
        rs.fini()


def _restore_one(rs: Restore, fr: FrameSpec, start: int, end: int) -> None:
    assert rs.frame_open(fr.style) == start
    for b in fr.bufs:
        out = np.empty(b.size, dtype=np.uint8)
        rs.buf(out, meta=b.meta)
        assert out.tobytes() == b.data
    assert rs.frame_close() == end


@pytest.mark.parametrize("mode", ["stream", "mmio"])
@pytest.mark.parametrize("name", CASES)
def test_restore_single_frames(name: str, mode: str, tmp_path: Path) -> None:
    """Any frame restores alone: after seek(off_open) in the full file, in a copy cut after
    the frame, and in a copy holding only that frame (offsets then start at 0)."""
    _, data, frames, offs = golden(name)
    files: list[Any] = []

    def restore(blob: bytes) -> Restore:
        if mode == "mmio":
            return Restore.mmio(blob)
        path = tmp_path / f"f{len(files)}.ckpt"
        path.write_bytes(blob)
        f = open(path, "rb")  # noqa: SIM115 (closed below)
        files.append(f)
        return Restore.stream(f)

    try:
        # Backwards, so every seek goes somewhere new.
        rs_full = restore(data)
        for i in reversed(range(len(frames))):
            start, end = offs.opens[i], offs.closes[i]
            rs_full.seek(start)
            assert rs_full.offset == start
            _restore_one(rs_full, frames[i], start, end)

            rs = restore(data[:end])
            assert rs.size == end
            rs.seek(start)
            _restore_one(rs, frames[i], start, end)
            assert rs.offset == rs.size
            rs.fini()

            rs = restore(data[start:end])
            _restore_one(rs, frames[i], 0, end - start)
            assert rs.offset == rs.size == end - start
            rs.fini()
        rs_full.seek(len(data))  # seeking to the very end is allowed
        assert rs_full.offset == len(data)
        rs_full.fini()
    finally:
        for f in files:
            f.close()


def test_independent_decoder_refuses_a_short_block() -> None:
    """python-lz4 returns a block that decodes short without raising; the independent decoder must not.

    A flipped byte made a 65536-byte chunk decode to 65535 bytes: the engine refused it, the
    decoder accepted it and read on out of step (test_engine's flipped-bytes property).
    """
    import lz4.block

    block = lz4.block.compress(b"abc" * 10, store_size=False)
    data = len(block).to_bytes(3, "little") + block
    assert decode_lz4_frame(data, 0, [30])[0] == [b"abc" * 10]
    with pytest.raises(ValueError, match="chunk at offset 0: decoded to 30 bytes, not 40"):
        decode_lz4_frame(data, 0, [40])
