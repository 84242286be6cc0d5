"""I/O that fails part-way: saves raise the I/O error and keep the old checkpoint; loads raise
the I/O error and never return partial arrays as if they were whole.

Writes are failed in three ways: file objects that fail after N bytes (ENOSPC, EIO, EDQUOT,
EFBIG, a broken pipe) or accept only a few bytes per call (short writes, which are legal and
must produce identical bytes); ``os.write`` wrapped so that an fd fails after N bytes (how
``ndckpt._backend`` writes to fds and temporary files); and for real: a pipe whose reader went
away, ``/dev/full``, and a 2 MiB tmpfs that fills up. Reads are failed the same way: file
objects and ``os.readv`` (streams) or ``os.preadv`` (copies from a path) that fail after N
bytes or return a few bytes at a time, and a file that shrinks under an open reader.
"""

from __future__ import annotations

import errno
import io
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from forge import save_small_frames, write_small_frames
from helpers import READERS, flat, save_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

import ndckpt
from ndckpt import CheckptIOError

STATE = {
    "raw": {"a": np.arange(300000, dtype="<f8"), "b": np.arange(10, dtype="u1")},
    "z": (np.arange(400000) % 97).astype("<i4"),
    "r": np.frombuffer(np.random.default_rng(3).bytes(200000), "u1"),
    "meta": np.array([(1, 2.0)], [("x", "<i2"), ("y", "<f4")]),
}
STYLES = {"raw": "raw", "lz4": "lz4", "mixed": {"z": "lz4", "r": "lz4", "meta": "lz4"}}
REF = {k: save_small_frames(STATE, style=s, frame_bytes=1 << 18) for k, s in STYLES.items()}
#: What ndckpt.save writes for STATE (its own frame plan).
SAVED = {k: save_bytes(STATE, style=s) for k, s in STYLES.items()}
ERRNOS = [errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG, errno.EPIPE]


def same(got: dict[str, Any], want: dict[str, Any] = STATE) -> bool:
    g, w = flat(got), flat(want)
    return g.keys() == w.keys() and all(
        g[k].dtype == w[k].dtype and g[k].shape == w[k].shape and g[k].tobytes() == w[k].tobytes() for k in w
    )


def _save(target: Any, style: str) -> None:
    """Save STATE with the small frames of REF (so bytes can be compared with it)."""
    write_small_frames(target, STATE, style=STYLES[style], frame_bytes=1 << 18, threads=2)


# ----------------------------------------------------------------------------------------------
# Writes: file objects
# ----------------------------------------------------------------------------------------------


class FailingWriter(io.RawIOBase):
    """Accepts ``fail_after`` bytes, then raises ``OSError(err)``; ``chunk`` caps each write
    (short writes); ``partial``: the failing call first accepts what still fits."""

    def __init__(
        self, fail_after: int | None, err: int = errno.ENOSPC, chunk: int | None = None, *, partial: bool = False
    ):
        self.data = bytearray()
        self.fail_after, self.err, self.chunk, self.partial = fail_after, err, chunk, partial
        self.calls = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.calls += 1
        mv = memoryview(b).cast("B")
        n = mv.nbytes if self.chunk is None else min(mv.nbytes, self.chunk)
        if self.fail_after is not None and len(self.data) + n > self.fail_after:
            room = self.fail_after - len(self.data)
            if self.partial and room > 0:
                self.data += mv[:room]
                return room
            if self.err == errno.EPIPE:
                raise BrokenPipeError(errno.EPIPE, "Broken pipe")
            raise OSError(self.err, os.strerror(self.err))
        self.data += mv[:n]
        return n


@settings(max_examples=60)
@given(
    style=st.sampled_from(sorted(STYLES)),
    frac=st.floats(0, 1, exclude_max=True),
    err=st.sampled_from(ERRNOS),
    chunk=st.none() | st.integers(1, 70000),
    partial=st.booleans(),
)
def test_write_fails_after_n_bytes(style: str, frac: float, err: int, chunk: int | None, partial: bool) -> None:
    """The save raises CheckptIOError carrying the errno; what reached the file object is a
    prefix of the correct bytes (never garbage), and no more than it accepted."""
    ref = REF[style]
    n = int(frac * len(ref))
    w = FailingWriter(n, err, chunk, partial=partial)
    with pytest.raises(CheckptIOError) as ei:
        _save(w, style)
    assert ei.value.errno == err
    assert len(w.data) <= n
    assert bytes(w.data) == ref[: len(w.data)]
    assert str(n) in str(ei.value) or "write" in str(ei.value)


@settings(max_examples=30)
@given(style=st.sampled_from(sorted(STYLES)), chunk=st.integers(1, 16) | st.integers(997, 100000))
def test_short_writes_give_identical_bytes(style: str, chunk: int) -> None:
    """A file object that takes at most ``chunk`` bytes per call gets exactly the right bytes
    (with tiny chunks, a small state: one call per byte or so)."""
    arrays = STATE if chunk > 16 else {"x": np.arange(300), "z": np.arange(500) % 3}
    w = FailingWriter(None, chunk=chunk)
    ndckpt.save(w, arrays, style=STYLES[style] if chunk > 16 else "lz4")
    ref = io.BytesIO()
    ndckpt.save(ref, arrays, style=STYLES[style] if chunk > 16 else "lz4")
    assert bytes(w.data) == ref.getvalue()


@pytest.mark.parametrize("result", [0, None, -1])
def test_write_returning_nothing_raises(result: int | None) -> None:
    """write() returning 0 (no progress), None (non-blocking, would block) or garbage: an
    error, never an endless loop or a silently short file."""

    class Stuck(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> Any:
            return result

    with pytest.raises(CheckptIOError):
        ndckpt.save(Stuck(), STATE)


def test_closed_file_object_raises() -> None:
    f = io.BytesIO()
    f.close()
    with pytest.raises(CheckptIOError):
        ndckpt.save(f, STATE)


# ----------------------------------------------------------------------------------------------
# Writes: fds and paths
# ----------------------------------------------------------------------------------------------


def _fail_os_write(monkeypatch: pytest.MonkeyPatch, budget: int, err: int, chunk: int | None = None) -> list[int]:
    """Wrap os.write: every fd gets ``budget`` bytes in total, then OSError(err); ``chunk``
    caps each call. Returns the per-call byte counts."""
    real = os.write
    counts: list[int] = []

    def write(fd: int, data: Any) -> int:
        n = len(memoryview(data).cast("B"))
        if chunk is not None:
            n = min(n, chunk)
        if sum(counts) + n > budget:
            raise OSError(err, os.strerror(err))
        counts.append(real(fd, memoryview(data).cast("B")[:n]))
        return counts[-1]

    monkeypatch.setattr(os, "write", write)
    return counts


@settings(max_examples=25)
@given(style=st.sampled_from(sorted(STYLES)), frac=st.floats(0, 1, exclude_max=True), err=st.sampled_from(ERRNOS))
def test_path_save_fails_part_way(tmp_path_factory: pytest.TempPathFactory, style: str, frac: float, err: int) -> None:
    """os.write fails after N bytes during an atomic save: CheckptIOError with the errno, the
    previous checkpoint is byte-for-byte untouched, and no temporary file is left."""
    d = tmp_path_factory.mktemp("w")
    path = d / "ckpt"
    size = len(SAVED[style])
    ndckpt.save(path, {"old": np.arange(7)})
    old = path.read_bytes()
    mp = pytest.MonkeyPatch()
    try:
        _fail_os_write(mp, int(frac * size), err)
        with pytest.raises(CheckptIOError) as ei:
            ndckpt.save(path, STATE, style=STYLES[style])
    finally:
        mp.undo()
    assert ei.value.errno == err
    assert path.read_bytes() == old
    assert sorted(p.name for p in d.iterdir()) == ["ckpt"]


def test_fd_save_with_short_and_failing_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An int fd: short os.write results are continued (identical bytes); a failure raises."""
    counts = _fail_os_write(monkeypatch, 1 << 40, errno.EIO, chunk=4099)
    with open(tmp_path / "f", "wb") as f:
        _save(f.fileno(), "mixed")
    assert (tmp_path / "f").read_bytes() == REF["mixed"]
    assert max(counts) == 4099
    monkeypatch.undo()
    _fail_os_write(monkeypatch, 100000, errno.EIO)
    with open(tmp_path / "g", "wb") as f, pytest.raises(CheckptIOError) as ei:
        _save(f.fileno(), "mixed")
    assert ei.value.errno == errno.EIO
    assert (tmp_path / "g").read_bytes() == REF["mixed"][: (tmp_path / "g").stat().st_size]


def test_pipe_whose_reader_went_away() -> None:
    """A real pipe: the reader closes (at once, or after reading 10 KB) -> EPIPE, no signal death."""
    r, w = os.pipe()
    os.close(r)
    try:
        with pytest.raises(CheckptIOError) as ei:
            ndckpt.save(w, STATE)
        assert ei.value.errno == errno.EPIPE
    finally:
        os.close(w)
    r, w = os.pipe()

    def read_a_little() -> None:
        os.read(r, 10000)
        os.close(r)

    t = threading.Thread(target=read_a_little)
    t.start()
    with open(w, "wb", buffering=0, closefd=False) as f, pytest.raises(CheckptIOError) as ei:
        ndckpt.save(f, STATE, style="lz4")
    assert ei.value.errno == errno.EPIPE
    os.close(w)
    t.join(10)


def test_child_reader_exits_early(tmp_path: Path) -> None:
    """Saving into a subprocess's stdin while it exits after reading 1 byte: EPIPE."""
    proc = subprocess.Popen(["head", "-c", "1"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc.stdin is not None
    with pytest.raises(CheckptIOError) as ei:
        ndckpt.save(proc.stdin, {"big": np.zeros(8 << 20, "u1")})
    assert ei.value.errno == errno.EPIPE
    proc.wait(10)
    try:
        proc.stdin.close()
    except BrokenPipeError:
        pass


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_dev_full() -> None:
    """/dev/full fails every write with ENOSPC, as a full disk does."""
    with pytest.raises(CheckptIOError) as ei:
        ndckpt.save("/dev/full", STATE)
    assert ei.value.errno == errno.ENOSPC
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(CheckptIOError) as ei:
            ndckpt.save(fd, STATE)
        assert ei.value.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.fixture
def small_fs(tmp_path: Path) -> Any:
    """A real 2 MiB tmpfs (root only); skipped with the reason when it cannot be mounted."""
    d = tmp_path / "fs"
    d.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d)], capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip() or res.returncode}")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=False)


@pytest.mark.parametrize("style", sorted(STYLES))
def test_filesystem_fills_up(small_fs: Path, style: str) -> None:
    """A real full filesystem: ENOSPC, the previous checkpoint is untouched, the temporary file
    is removed (the space is free again), and a save that fits still works afterwards."""
    path = small_fs / "ckpt"
    old_state = {"old": np.arange(50000, dtype="<i8")}  # 400 KB
    ndckpt.save(path, old_state, style=STYLES[style] if style != "mixed" else "raw")
    old = path.read_bytes()
    free = os.statvfs(small_fs).f_bavail
    big = {"x": np.frombuffer(np.random.default_rng(1).bytes(3 << 20), "u1")}  # does not fit
    with pytest.raises(CheckptIOError) as ei:
        ndckpt.save(path, big, style="lz4" if style == "lz4" else "raw")
    assert ei.value.errno == errno.ENOSPC
    assert path.read_bytes() == old
    assert sorted(p.name for p in small_fs.iterdir()) == ["ckpt"]
    assert os.statvfs(small_fs).f_bavail == free
    ndckpt.save(path, {"new": np.arange(1000)})
    assert ndckpt.load(path)["new"].tolist() == list(range(1000))


# ----------------------------------------------------------------------------------------------
# Reads
# ----------------------------------------------------------------------------------------------


class FlakyReader(io.RawIOBase):
    """Serves ``data`` at most ``chunk`` bytes per call (seeded random sizes when ``chunk`` is
    negative), then fails with OSError(err) after ``fail_after`` bytes, or returns ``eof_value``."""

    def __init__(
        self,
        data: bytes,
        *,
        chunk: int = 1 << 30,
        fail_after: int | None = None,
        err: int = errno.EIO,
        seekable: bool = False,
    ):
        self.data, self.pos, self.chunk = data, 0, chunk
        self.fail_after, self.err, self._seekable = fail_after, err, seekable
        self.rng = np.random.default_rng(abs(chunk))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._seekable

    def seek(self, off: int, whence: int = 0) -> int:
        if not self._seekable:
            raise io.UnsupportedOperation("seek")
        self.pos = {0: off, 1: self.pos + off, 2: len(self.data) + off}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, b: Any) -> int:
        mv = memoryview(b).cast("B")
        n = min(mv.nbytes, len(self.data) - self.pos)
        n = min(n, int(self.rng.integers(1, -self.chunk + 1)) if self.chunk < 0 else self.chunk)
        if self.fail_after is not None and self.pos + n > self.fail_after:
            if self.pos < self.fail_after:
                n = self.fail_after - self.pos  # a short read first, then the error
            else:
                raise OSError(self.err, os.strerror(self.err))
        mv[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


@settings(max_examples=40)
@given(
    style=st.sampled_from(sorted(STYLES)),
    chunk=st.integers(1, 16) | st.integers(500, 70000) | st.integers(-5000, -500),
    seekable=st.booleans(),
)
def test_short_reads_load_whole(style: str, chunk: int, seekable: bool) -> None:
    """Reads that return a few bytes at a time (as pipes and sockets do) load the same arrays
    (fixed or random sizes; with tiny sizes, a small state)."""
    if 0 < chunk <= 16:
        small = {"x": np.arange(300), "z": np.arange(500) % 3}
        data = save_small_frames(small, style=STYLES[style] if style != "mixed" else {"z": "lz4"})
        assert same(ndckpt.load(FlakyReader(data, chunk=chunk, seekable=seekable), verify=True), small)
        return
    got = ndckpt.load(FlakyReader(REF[style], chunk=chunk, seekable=seekable), verify=True)
    assert same(got)


@settings(max_examples=60)
@given(
    style=st.sampled_from(sorted(STYLES)),
    frac=st.floats(0, 1, exclude_max=True),
    err=st.sampled_from([errno.EIO, errno.ECONNRESET, errno.ETIMEDOUT]),
    verify=st.sampled_from([None, True, False]),
    use_out=st.booleans(),
)
def test_read_fails_part_way(style: str, frac: float, err: int, verify: bool | None, use_out: bool) -> None:
    """The read fails after N bytes: CheckptIOError with the errno, and no result at all (with
    out=, the caller's arrays may hold part of the data, but the call raises)."""
    n = int(frac * len(REF[style]))
    out = {"z": np.empty_like(STATE["z"]), "raw": {"a": np.empty_like(STATE["raw"]["a"])}} if use_out else None
    with pytest.raises(CheckptIOError) as ei:
        ndckpt.load(FlakyReader(REF[style], fail_after=n, err=err, chunk=-3000), verify=verify, out=out)
    assert ei.value.errno == err


def test_read_returning_none_raises() -> None:
    """A non-blocking source with no data yet (readinto returns None): an error, not a busy loop."""

    class Empty(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> Any:
            return None

    with pytest.raises(CheckptIOError, match="block"):
        ndckpt.load(Empty())


def _wrap(
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    *,
    chunk: int | None = None,
    fail_after: int | None = None,
    err: int = errno.EIO,
) -> list[int]:
    """Wrap os.readv or os.preadv: at most ``chunk`` bytes per call; OSError after ``fail_after``.
    Returns a one-element list counting the bytes read."""
    real = getattr(os, name)
    total = [0]

    lock = threading.Lock()  # loads read from several threads: count and check atomically

    def fn(fd: int, bufs: list[Any], *rest: Any) -> int:
        mv = memoryview(bufs[0]).cast("B")
        n = mv.nbytes if chunk is None else min(mv.nbytes, chunk)
        with lock:
            if fail_after is not None and total[0] + n > fail_after:
                raise OSError(err, os.strerror(err))
            total[0] += n
        r = int(real(fd, [mv[:n]], *rest))
        with lock:
            total[0] -= n - r
        return r

    monkeypatch.setattr(os, name, fn)
    return total


@pytest.mark.parametrize("style", sorted(STYLES))
def test_fd_reads_short_and_failing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, style: str) -> None:
    """Streams from an fd (os.readv) and copies from a path (os.preadv): short reads give the
    same arrays; a failure part-way raises CheckptIOError with the errno."""
    path = tmp_path / "c"
    path.write_bytes(REF[style])
    for name, load in (
        ("readv", lambda: READERS["load(fd)"](path=path)),
        ("preadv", lambda: READERS["load(path, copy)"](path=path, verify=True)),
        ("preadv", lambda: READERS["open(path, copy).load()"](path=path)),
    ):
        _wrap(monkeypatch, name, chunk=777)
        assert same(load())
        monkeypatch.undo()
        total = _wrap(monkeypatch, name)  # how much this load reads (without short reads)
        assert same(load())
        monkeypatch.undo()
        for fail_after in (0, 5000, total[0] // 2, total[0] - 1):
            _wrap(monkeypatch, name, fail_after=fail_after, err=errno.EIO)
            with pytest.raises(CheckptIOError) as ei:
                load()
            monkeypatch.undo()
            assert ei.value.errno == errno.EIO, (name, fail_after)


def test_file_shrinks_under_an_open_reader(tmp_path: Path) -> None:
    """Truncated after open(): reading copies (mmap=False) or LZ4 frames raises CheckptIOError
    naming the offset, instead of returning short arrays. (Touching a *mapped* view of a
    truncated file raises SIGBUS in any mmap-based reader; views are not tested here.)"""
    path = tmp_path / "c"
    path.write_bytes(REF["mixed"])
    for kw in ({"mmap": False}, {"mmap": False, "verify": True}, {}):
        path.write_bytes(REF["mixed"])
        r = ndckpt.open(path, **kw)
        os.truncate(path, 8192)
        names = [n for n in r.names() if kw or n in ("z", "r", "meta")]  # LZ4 arrays are read, not mapped
        for name in names:
            with pytest.raises(CheckptIOError, match="offset"):
                r.read(name)
        r.close()
