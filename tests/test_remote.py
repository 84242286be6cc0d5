"""Reading in part: seekable file objects, URLs through fsspec, and an HTTP server honouring Range."""

from __future__ import annotations

import http.server
import io
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ndckpt
from ndckpt.container.ranged import open_ranged
from ndckpt.errors import CheckptIOError, FormatError, InvalidArgumentError


def _state() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "big": rng.random((512, 1024)),  # 4 MiB
        "ints": np.arange(2_000_000, dtype=np.int64),  # 16 MB, compressible
        "small": {f"s{i}": np.full(10, i, np.float32) for i in range(50)},
        "step": 12,
    }


@pytest.mark.parametrize("style", ["raw", "lz4"])
def test_open_a_file_object_reads_only_what_is_asked(style: str, tmp_path: Path) -> None:
    state = _state()
    ndckpt.save(tmp_path / "s.ndckpt", state, style=style)
    size = (tmp_path / "s.ndckpt").stat().st_size
    f = (tmp_path / "s.ndckpt").open("rb")
    with ndckpt.open(f) as r:
        src = r._mapped
        assert src is not None
        opened = src.bytes_read
        assert opened <= 64 << 10 or opened < size // 4
        np.testing.assert_array_equal(r["big"], state["big"])
        assert src.bytes_read - opened <= state["big"].nbytes + 2 * 4096 + 16
        assert r["step"] == 12
        assert r["small/s7"].tolist() == [7.0] * 10
        np.testing.assert_array_equal(r.read("ints", region=(slice(5, 9),)), state["ints"][5:9])
        whole = r.load()
        np.testing.assert_array_equal(whole["ints"], state["ints"])
        assert src.bytes_read <= size  # every byte at most once
    assert not f.closed  # the caller's file object stays the caller's
    f.close()


@settings(max_examples=30, deadline=None)
@given(cut=st.integers(0, 10_000), flip=st.integers(0, 10_000), style=st.sampled_from(["raw", "lz4"]))
def test_a_damaged_file_object_gives_typed_errors_never_wrong_arrays(cut: int, flip: int, style: str) -> None:
    state = {"a": np.arange(3000, dtype=np.int64), "b": np.linspace(0, 1, 500), "v": "x"}
    b = io.BytesIO()
    ndckpt.save(b, state, style=style)
    data = bytearray(b.getvalue())
    data[flip % len(data)] ^= 0x40
    data = data[: len(data) - cut % 64]
    try:
        with ndckpt.open(io.BytesIO(bytes(data)), verify=True) as r:
            got = r.load()
    except (FormatError, CheckptIOError, ndckpt.CheckptError):
        return
    np.testing.assert_array_equal(got["a"], state["a"])
    np.testing.assert_array_equal(got["b"], state["b"])


def test_unseekable_file_objects_are_refused_by_open() -> None:
    class Pipe(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

    with pytest.raises(InvalidArgumentError, match=r"not seekable; use ndckpt\.load"):
        ndckpt.open(Pipe())
    with pytest.raises(FormatError):
        open_ranged(io.BytesIO(b""))


fsspec = pytest.importorskip("fsspec")


def test_memory_urls_save_load_open_verify_and_commit_atomically(monkeypatch: Any) -> None:
    state = _state()
    url = "memory://ndckpt-test/run/ck.ndckpt"
    ndckpt.save(url, state, style="lz4")
    np.testing.assert_array_equal(ndckpt.load(url)["ints"], state["ints"])
    with ndckpt.open(url) as r:
        np.testing.assert_array_equal(r["big"], state["big"])
    ndckpt.verify(url)
    fs = fsspec.filesystem("memory")
    before = fs.cat_file("/ndckpt-test/run/ck.ndckpt")

    def boom(*a: Any, **k: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("ndckpt._sources.write_checkpoint", boom)
    with pytest.raises(OSError, match="disk full"):
        ndckpt.save(url, {"x": np.zeros(3)})
    assert fs.cat_file("/ndckpt-test/run/ck.ndckpt") == before  # the previous checkpoint is intact
    assert fs.ls("/ndckpt-test/run", detail=False) == ["/ndckpt-test/run/ck.ndckpt"]  # no temporary left


def test_file_urls_are_saved_as_paths(tmp_path: Path) -> None:
    ndckpt.save(f"file://{tmp_path}/a.ndckpt", {"x": np.arange(4)})
    assert ndckpt.load(tmp_path / "a.ndckpt")["x"].tolist() == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ndckpt"]


def test_unknown_url_schemes_are_refused_clearly() -> None:
    with pytest.raises(InvalidArgumentError, match="fsspec cannot open"):
        ndckpt.load("nosuchscheme://x/y")


# ---------------------------------------------------------------- a real HTTP server with Range


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    data = b""
    sent: ClassVar[list[int]] = []  # bytes of body sent, per request (each fixture makes its own class)
    lock = threading.Lock()

    def log_message(self, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.data)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self) -> None:
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if m is None:
            body, code = self.data, 200
        else:
            lo = int(m.group(1))
            hi = min(int(m.group(2)) + 1 if m.group(2) else len(self.data), len(self.data))
            body, code = self.data[lo:hi], 206
        self.send_response(code)
        if code == 206:
            self.send_header("Content-Range", f"bytes {lo}-{hi - 1}/{len(self.data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(body)
        with self.lock:
            self.sent.append(len(body))


@pytest.fixture
def http_url(tmp_path: Path) -> Iterator[tuple[str, type[_RangeHandler]]]:
    pytest.importorskip("aiohttp")
    handler = type("Handler", (_RangeHandler,), {"sent": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ck.ndckpt", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("style", ["raw", "lz4"])
def test_http_open_and_read_one_array_transfers_head_index_and_its_frames(
    style: str, http_url: tuple[str, type[_RangeHandler]]
) -> None:
    url, handler = http_url
    state = _state()
    b = io.BytesIO()
    ndckpt.save(b, state, style=style)
    handler.data = b.getvalue()
    with ndckpt.open(handler.data) as local:
        head_end = local._layout.head_end
        index_nbytes = len(local._layout.head.frames) * 24 + 48
        row = next(x for x in local.info() if x["name"] == "big")
        frames_nbytes = sum(
            local._layout.stored[fi] + 4096 + 16 for fi in row["frames"]
        )  # stored bytes plus at most a record and a pad each
    with ndckpt.open(url) as r:
        np.testing.assert_array_equal(r["big"], state["big"])
    sent = sum(handler.sent)
    assert sent <= head_end + index_nbytes + frames_nbytes + (64 << 10), (sent, handler.sent)
    assert sent < len(handler.data) // 2  # not the whole file (the other arrays are 16 MB)
    assert all(n > 64 << 10 for n in handler.sent[2:]), handler.sent  # frames come in large reads
    handler.sent.clear()
    np.testing.assert_array_equal(ndckpt.load(url)["ints"], state["ints"])  # load reads it all, in few reads
    assert len(handler.sent) <= 6
    if style == "lz4":  # a region read fetches only the frames holding the region
        handler.sent.clear()
        with ndckpt.open(url) as r:
            np.testing.assert_array_equal(r.read("ints", region=(slice(10, 20),)), state["ints"][10:20])
            frames = next(x for x in r.info() if x["name"] == "ints")["frames"]
        assert len(frames) > 2
        assert sum(handler.sent[2:]) <= r._layout.stored[frames[0]] + 4096 + 16, handler.sent


def test_a_huge_hostile_file_is_refused_after_reading_its_ends() -> None:
    """The fetch buffer is address space only, and a hostile trailer cannot make open read the file."""

    class Sparse(io.RawIOBase):
        """A 64 GiB file of zeros (its trailer says: index at offset 0): refused after reading its ends."""

        size = 64 << 30

        def __init__(self) -> None:
            self.pos = 0
            self.read_bytes = 0

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return True

        def seek(self, pos: int, whence: int = 0) -> int:
            self.pos = pos if whence == 0 else self.size + pos if whence == 2 else self.pos + pos
            return self.pos

        def readinto(self, b: Any) -> int:
            n = min(len(b), self.size - self.pos)
            b[:n] = bytes(n)
            self.pos += n
            self.read_bytes += n
            return n

    f = Sparse()
    with pytest.raises(FormatError):
        ndckpt.open(f)
    assert f.read_bytes <= 64 << 10
