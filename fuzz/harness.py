"""What the reader fuzz target does with one input; also replayed by ``tests/test_fuzz_corpus.py``.

:func:`exercise` feeds the bytes to every reading entry point of ndckpt and checks two things:

1. **Only ndckpt errors come out.** Any exception that is not a
   :class:`ndckpt.CheckptError` (an IndexError, a MemoryError, a numpy
   ValueError, a segfault, a hang) is a finding.
2. **The readers agree.** When two of them succeed on the same bytes they must
   return the same arrays, byte for byte: ``load`` of the buffer (mapped views
   and copies, ``verify`` None and True), ``load`` of a seekable and of an
   unseekable stream, ``open(...).load()`` and ``open(...).get(name)``. When
   ``verify`` succeeds, ``load(verify=True)`` of the buffer must succeed too
   (the stream reader may still refuse what the random-access reader accepts
   only in ways listed in :func:`exercise`).

Nothing here needs atheris, so the regression corpus replays in plain pytest.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

import ndckpt
from ndckpt import CheckptError, FrameStyle, Restore
from ndckpt._lz4 import xxh64
from ndckpt.container import INDEX_DTYPE, MAGIC, RAW_ALIGN, RECORD, STORED_VERBATIM, SUPERBLOCK, TRAILER

__all__ = ["exercise", "exercise_both", "fixup"]


class Unseekable(io.RawIOBase):
    """A read-only stream that cannot seek or tell its size (like a pipe), in memory."""

    def __init__(self, data: bytes, *, chunk: int = 1 << 30) -> None:
        self._data, self._pos, self._chunk = data, 0, chunk

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b: Any) -> int:
        mv = memoryview(b).cast("B")
        n = min(mv.nbytes, len(self._data) - self._pos, self._chunk)
        mv[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out[name + "/"] = None  # a group (empty or not): its name must match too
            out.update(_flat(v, name + "/"))
        else:
            out[name] = v
    return out


def _same(a: dict[str, Any], b: dict[str, Any], what: str) -> None:
    """Both nested results hold the same names, dtypes, shapes and bytes."""
    fa, fb = _flat(a), _flat(b)
    assert fa.keys() == fb.keys(), f"{what}: names differ: {sorted(fa)} vs {sorted(fb)}"
    for k, x in fa.items():
        y = fb[k]
        if x is None:
            assert y is None, f"{what}: {k!r} is a group in one result only"
            continue
        _same_array(x, y, f"{what}: {k!r}")


def _same_array(x: Any, y: Any, what: str) -> None:
    if not isinstance(x, np.ndarray) and not isinstance(y, np.ndarray):
        # A Python-value leaf (or numpy scalar): same type and same repr (-0.0, NaN and
        # container types included).
        assert type(x) is type(y), f"{what}: {type(x).__name__} vs {type(y).__name__}"
        assert repr(x) == repr(y), f"{what}: values differ"
        return
    assert isinstance(x, np.ndarray), what
    assert isinstance(y, np.ndarray), what
    assert x.dtype == y.dtype, f"{what}: {x.dtype} vs {y.dtype}"
    assert x.shape == y.shape, f"{what}: {x.shape} vs {y.shape}"
    # Compare bytes, not values: NaNs and unordered structured fields must match too.
    assert _raw(x) == _raw(y), f"{what}: contents differ"


def _raw(a: np.ndarray[Any, Any]) -> bytes:
    return np.ascontiguousarray(a).view(np.uint8).tobytes() if a.size else b""


def _attempt(fn: Any) -> Any:
    """``fn()``, or None when it raised an ndckpt error (anything else propagates: a finding)."""
    try:
        return fn()
    except CheckptError:
        return None


def _reader_pass(data: bytes) -> dict[str, Any] | None:
    """open(): metadata, keys, info, each get (views and verified), then load; None if refused."""

    def run() -> dict[str, Any]:
        with ndckpt.open(data, threads=1) as r:
            _ = r.metadata, r.nbytes, len(r), r.info()
            whole = r.load()
            flat = _flat(whole)
            for name in r.names():
                assert name in r
                _same_array(r.read(name), flat[name], f"open().read({name!r}) vs open().load()")
        with ndckpt.open(data, threads=1, mmap=False, verify=True) as r:
            for name in r.names():
                _same_array(r[name], flat[name], f"open(verify=True)[{name!r}]")
        return whole

    return _attempt(run)


def _restore_pass(data: bytes) -> None:
    """Drive the low-level Restore over the bytes with a fixed call sequence; errors must be ndckpt's."""
    recipe = [(FrameStyle.LZ4, [3, 1, 70000]), (FrameStyle.RAW, [5, 100]), (FrameStyle.LZ4, [65536])]
    for make in (lambda: Restore.mmio(data), lambda: Restore.stream(io.BytesIO(data))):
        rs = make()
        try:
            for style, sizes in recipe:
                rs.frame_open(style)
                for n in sizes:
                    rs.buf(bytearray(n))
                rs.frame_close()
        except CheckptError:
            assert rs.failed, "Restore raised but is not failed"
        rs.fini()


def fixup(data: bytes) -> bytes:
    """``data`` with every checksum and size field that can be located recomputed.

    Random mutations almost never get past the head's XXH64, so the fuzz target also feeds
    this repaired version: the head checksum, each index entry's checksum (and the LZ4 record
    before it, or before the pad of a frame stored verbatim, when the record matched the
    entry), the index checksum and the trailer's file
    size are made to fit the bytes. Offsets, counts and sizes are left as mutated.
    """
    b = bytearray(data)
    if len(b) < SUPERBLOCK.size + TRAILER.size or bytes(b[:8]) != MAGIC:
        return data
    hn = int.from_bytes(b[16:24], "little")
    if SUPERBLOCK.size + hn <= len(b):
        b[24:32] = xxh64(bytes(b[SUPERBLOCK.size : SUPERBLOCK.size + hn])).to_bytes(8, "little")
    end = len(b) - TRAILER.size
    io, nframes = (int.from_bytes(b[end + i : end + i + 8], "little") for i in (0, 8))
    b[end + 24 : end + 32] = len(b).to_bytes(8, "little")
    if io + nframes * INDEX_DTYPE.itemsize != end:
        return bytes(b)
    idx = np.frombuffer(b, INDEX_DTYPE, nframes, io).copy()
    for e in idx:
        off, n, old = int(e["offset"]), int(e["stored"]), int(e["xxh64"])
        size = n & ~STORED_VERBATIM  # bit 63: an LZ4 frame stored verbatim (its size is the low bits)
        if off + size > io:
            continue
        e["xxh64"] = x = xxh64(bytes(b[off : off + size]))
        # The record ends right before the data or (stored verbatim) before the pad up to it.
        lo = off - RECORD.size - (RAW_ALIGN - 1 if n & STORED_VERBATIM else 0)
        at = b.rfind(RECORD.pack(n, old), max(0, lo), off)
        if at >= 0:
            b[at : at + RECORD.size] = RECORD.pack(n, x)
    ib = idx.tobytes()
    b[io:end] = ib
    b[end + 16 : end + 24] = xxh64(ib).to_bytes(8, "little")
    return bytes(b)


def exercise(data: bytes) -> None:
    """Run every reader on ``data``; raise AssertionError (or the stray exception) on a finding."""
    loaded = _attempt(lambda: ndckpt.load(data, threads=1))
    copied = _attempt(lambda: ndckpt.load(data, threads=1, mmap=False, verify=True))
    verified = _verify_ok(data)
    streamed = _attempt(lambda: ndckpt.load(io.BytesIO(data), threads=1, verify=True))
    piped = _attempt(lambda: ndckpt.load(Unseekable(data, chunk=4093), threads=1))
    _attempt(lambda: ndckpt.verify(io.BytesIO(data), threads=1))
    opened = _reader_pass(data)
    if verified:
        assert copied is not None, "verify() passed but load(verify=True) failed"
    if copied is not None:
        assert loaded is not None, "load(verify=True) passed but load() failed"
        _same(loaded, copied, "load() vs load(mmap=False, verify=True)")
        # The random-access reader accepted the whole file with every checksum: the one-pass
        # reader, reading the same bytes, must accept it and agree.
        assert streamed is not None, "load(bytes, verify=True) passed but load(stream, verify=True) failed"
        assert opened is not None, "load(verify=True) passed but open() failed"
    for other, what in ((streamed, "stream"), (piped, "unseekable stream"), (opened, "open().load()")):
        if other is not None and loaded is not None:
            _same(loaded, other, f"load(bytes) vs {what}")
    _restore_pass(data)


def _verify_ok(data: bytes) -> bool:
    try:
        ndckpt.verify(data, threads=1)
    except CheckptError:
        return False
    return True


def exercise_both(data: bytes) -> None:
    """:func:`exercise` on ``data`` and, when it differs, on :func:`fixup` of it."""
    exercise(data)
    fixed = fixup(data)
    if fixed != data:
        exercise(fixed)
