"""Checkpoints through real pipes, both directions, between processes and between threads.

Stream mode never seeks, so a Checkpt writes into a pipe and a Restore reads from
one: the bytes that cross a pipe equal the bytes written to a file, a Restore
on a pipe reports ``size`` None, counts offsets from where it started, and
refuses ``seek``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from strategies import BufSpec, Content, FrameSpec, checkpt_mmio, read_frames, write_frames

from ndckpt import Checkpt, CheckptIOError, InvalidArgumentError, Restore

TESTS_DIR = Path(__file__).resolve().parent

#: (style, [(generator, size, seed, meta), ...]) per frame: ~1.3 MB, many times a pipe's buffer.
PLAN: list[tuple[int, list[tuple[str, int, int, bool]]]] = [
    (1, [("text", 100, 1, True), ("splitmix64", 300_000, 2, False), ("fill", 0, 0, False)]),
    (2, [("words", 70_000, 3, False), ("runs", 5, 4, True), ("splitmix64", 140_000, 5, False)]),
    (2, []),
    (0, [("mul32", 65_536, 6, True), ("runs", 400_000, 7, False)]),
    (2, [("text", 300_000, 8, False), ("fill", 1, 9, True), ("runs", 65_537, 10, False)]),
    (1, [("splitmix64", 3, 11, False)]),
]


def plan_frames(plan: list[Any]) -> list[FrameSpec]:
    return [
        FrameSpec(style, tuple(BufSpec(Content(g, n, s), meta) for g, n, s, meta in bufs))
        for style, bufs in plan
    ]


FRAMES = plan_frames(PLAN)
GOLDEN, GOLDEN_REC = checkpt_mmio(FRAMES)

# The child's prelude: argv[1] is this directory, argv[2] the plan, argv[3] the fd flag.
PRELUDE = """
    import io, json, os, sys
    sys.path.insert(0, sys.argv[1])
    from strategies import BufSpec, Content, FrameSpec, checkpt_mmio, read_frames, write_frames
    from ndckpt import Checkpt, CheckptIOError, InvalidArgumentError, Restore
    frames = [FrameSpec(st, tuple(BufSpec(Content(g, n, s), m) for g, n, s, m in bufs))
              for st, bufs in json.loads(sys.argv[2])]
    use_fd = sys.argv[3] == "fd"
"""

CHILD_WRITER = PRELUDE + """
    target = sys.stdout.fileno() if use_fd else sys.stdout.buffer
    ck = Checkpt.stream(target, wbuf_size=69632)
    write_frames(ck, frames)
    ck.fini()
    sys.stdout.flush()
"""

CHILD_READER = PRELUDE + """
    source = sys.stdin.fileno() if use_fd else sys.stdin.buffer
    rs = Restore.stream(source, rbuf_size=69632)
    assert rs.size is None, rs.size
    assert rs.offset == 0
    _, expected = checkpt_mmio(frames)
    assert read_frames(rs, frames) == expected  # asserts every buffer too
    try:
        rs.seek(0)
    except InvalidArgumentError:
        assert rs.failed
    else:
        raise AssertionError("seek on a pipe must fail")
    rs.fini()
    assert sys.stdin.buffer.read() == b""  # nothing after the checkpoint
    print("restored", len(frames), "frames")
"""


def _child(code: str, use_fd: bool, **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), str(TESTS_DIR), json.dumps(PLAN),
         "fd" if use_fd else "file"],
        stderr=subprocess.PIPE,
        **kw,
    )


def test_file_bytes_are_the_golden_bytes(tmp_path: Path) -> None:
    """The reference for everything below: a stream Checkpt into a file writes the mmio bytes."""
    path = tmp_path / "c.ckpt"
    with open(path, "wb") as f:
        ck = Checkpt.stream(f)
        assert write_frames(ck, FRAMES) == GOLDEN_REC
        ck.fini()
    assert path.read_bytes() == GOLDEN
    assert len(GOLDEN) > 8 * 65536


@pytest.mark.parametrize("use_fd", [False, True], ids=["stdout.buffer", "fd 1"])
def test_child_writes_parent_reads_bytes(use_fd: bool) -> None:
    """The bytes a child writes through its stdout pipe are the file's bytes."""
    proc = _child(CHILD_WRITER, use_fd, stdout=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert out == GOLDEN


@pytest.mark.parametrize("reader_fd", [False, True], ids=["pipe object", "pipe fd"])
@pytest.mark.parametrize("writer_fd", [False, True], ids=["stdout.buffer", "fd 1"])
def test_child_writes_parent_restores(writer_fd: bool, reader_fd: bool) -> None:
    """Restore.stream straight from a child's stdout pipe: every buffer and offset, size None,
    and seek refused."""
    proc = _child(CHILD_WRITER, writer_fd, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        rs = Restore.stream(proc.stdout.fileno() if reader_fd else proc.stdout, rbuf_size=69632)
        assert rs.size is None
        assert rs.offset == 0
        assert read_frames(rs, FRAMES) == GOLDEN_REC
        assert rs.offset == len(GOLDEN)
        with pytest.raises(InvalidArgumentError, match="not seekable"):
            rs.seek(0)
        assert rs.failed
        rs.fini()
        assert proc.stdout.read() == b""
    finally:
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()


@pytest.mark.parametrize("reader_fd", [False, True], ids=["stdin.buffer", "fd 0"])
@pytest.mark.parametrize("writer_fd", [False, True], ids=["pipe object", "pipe fd"])
def test_parent_writes_child_restores(writer_fd: bool, reader_fd: bool) -> None:
    """The reverse: the parent writes into a child's stdin; the child restores and checks."""
    proc = _child(CHILD_READER, reader_fd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        ck = Checkpt.stream(proc.stdin.fileno() if writer_fd else proc.stdin, wbuf_size=69632)
        assert write_frames(ck, FRAMES) == GOLDEN_REC
        ck.fini()
    finally:
        with contextlib.suppress(BrokenPipeError):  # the child died: its stderr says why
            proc.stdin.close()
        assert proc.stdout is not None
        assert proc.stderr is not None
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait(timeout=120)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == f"restored {len(FRAMES)} frames"


def _drain(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _write_and_close(fd: int, wbuf_size: int) -> Any:
    try:
        ck = Checkpt.stream(fd, wbuf_size=wbuf_size)
        rec = write_frames(ck, FRAMES)
        ck.fini()
        return rec
    finally:
        os.close(fd)


@pytest.mark.parametrize("wbuf_size", [69632, 1 << 20])
def test_os_pipe_between_threads(wbuf_size: int) -> None:
    """os.pipe() int fds: one thread writes, the other restores; then the raw bytes."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        r, w = os.pipe()
        try:
            writer = pool.submit(_write_and_close, w, wbuf_size)
            rs = Restore.stream(r, rbuf_size=69632)
            assert rs.size is None
            assert read_frames(rs, FRAMES) == GOLDEN_REC
            with pytest.raises(InvalidArgumentError):
                rs.seek(len(GOLDEN))
            rs.fini()
            assert writer.result(timeout=120) == GOLDEN_REC
            assert _drain(r) == b""
        finally:
            os.close(r)

        r, w = os.pipe()
        try:
            writer = pool.submit(_write_and_close, w, wbuf_size)
            assert _drain(r) == GOLDEN  # bytes through the pipe == bytes to a file
            writer.result(timeout=120)
        finally:
            os.close(r)


def test_restore_from_pipe_counts_from_where_it_starts() -> None:
    """A Restore made after some bytes were consumed counts offsets from there (fd_restore on
    an unseekable fd), so offsets are checkpoint-relative."""
    r, w = os.pipe()
    prefix = b"HEADER!"
    done = threading.Event()

    def produce() -> None:
        try:
            os.write(w, prefix)
            ck = Checkpt.stream(w)
            write_frames(ck, FRAMES)
            ck.fini()
        finally:
            os.close(w)
            done.set()

    t = threading.Thread(target=produce)
    t.start()
    try:
        assert os.read(r, len(prefix)) == prefix
        rs = Restore.stream(r)
        assert rs.offset == 0
        assert read_frames(rs, FRAMES) == GOLDEN_REC
        rs.fini()
    finally:
        t.join(timeout=120)
        os.close(r)
    assert done.is_set()


def _write_all_and_close(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def test_truncated_pipe_is_io_error() -> None:
    """A writer that dies mid-checkpoint: the reader gets CheckptIOError, not a hang."""
    r, w = os.pipe()
    cut = GOLDEN_REC.afters[3][0] + 1000  # inside frame 3's second buffer
    with ThreadPoolExecutor(max_workers=1) as pool:
        fut = pool.submit(_write_all_and_close, w, GOLDEN[:cut])
        try:
            rs = Restore.stream(r)
            with pytest.raises(CheckptIOError, match="EOF"):
                read_frames(rs, FRAMES)
            assert rs.failed
            rs.fini()
        finally:
            fut.result(timeout=120)
            os.close(r)
