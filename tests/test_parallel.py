"""Parallelism across frames: identical bytes for any thread count, equal loads, clean failure,
fork safety, and memory that does not grow with the data where none is needed.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import READERS, assert_same_array, assert_same_tree, save_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

import ndckpt
import ndckpt.container.write
from ndckpt import CompressionError, FormatError

MiB = 1 << 20
FRAME = 4 * MiB  # LZ4 frames (and packing frames) hold 4 MiB

pytestmark = pytest.mark.timeout(300)


def ndckpt_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("ndckpt")}


@pytest.fixture
def no_thread_left() -> Iterator[None]:
    """Fails the test if a thread named ndckpt* that it started is still alive afterwards."""
    before = ndckpt_threads()
    yield
    deadline = time.monotonic() + 5
    while (left := ndckpt_threads() - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not left, f"threads left running: {sorted(t.name for t in left)}"


def _content(kind: str, nbytes: int, seed: int) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return np.frombuffer(rng.bytes(nbytes), np.uint8).copy()
    if kind == "runs":  # compressible: small integers in runs
        return np.repeat(rng.integers(0, 4, nbytes // 64 + 1, dtype=np.uint8), 64)[:nbytes].copy()
    return (np.arange(nbytes, dtype=np.uint64) * 2654435761 >> 7).astype(np.uint8)  # "ramp"


SIZES = (0, 8, 1000, 70_000, MiB + 1, FRAME - 5, FRAME + 12_345, 9_000_000)


@st.composite
def array_sets(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, str]]:
    """1-4 arrays, some larger than a frame, at most ~12 MiB in all; a style for each."""
    sizes = draw(st.lists(st.sampled_from(SIZES), min_size=1, max_size=4).filter(lambda s: sum(s) <= 12_600_000))
    arrays: dict[str, Any] = {}
    styles: dict[str, str] = {}
    for i, n in enumerate(sizes):
        dt = draw(st.sampled_from(["u1", "<f8", ">i4", "<c8"]))
        itemsize = np.dtype(dt).itemsize
        data = _content(draw(st.sampled_from(["random", "runs", "ramp"])), n - n % itemsize, draw(st.integers(0, 99)))
        a = data.view(dt)
        if draw(st.booleans()) and a.size % 2 == 0 and a.size:
            a = a.reshape(2, -1, order="F") if draw(st.booleans()) else a.reshape(-1, 2)[::-1]
        name = f"g{i % 2}/a{i}"
        arrays.setdefault(f"g{i % 2}", {})[f"a{i}"] = a
        styles[name] = draw(st.sampled_from(["raw", "lz4"]))
    return arrays, styles


@settings(max_examples=10)
@given(case=array_sets(), threads=st.lists(st.integers(2, 4), min_size=1, max_size=3, unique=True))
def test_bytes_do_not_depend_on_thread_count(case: tuple[dict[str, Any], dict[str, str]], threads: list[int]) -> None:
    arrays, styles = case
    one = save_bytes(arrays, style=styles, threads=1)
    for n in threads:
        assert save_bytes(arrays, style=styles, threads=n) == one, f"threads={n} wrote different bytes"
    assert save_bytes(arrays, style=styles) == one, "threads=None (all cores)"
    base = ndckpt.load(one, threads=1, mmap=False)
    assert_same_tree(base, arrays)
    for n in threads:
        assert_same_tree(ndckpt.load(one, threads=n), arrays)
        assert_same_tree(ndckpt.load(one, threads=n, mmap=False, verify=True), arrays)
        ndckpt.verify(one, threads=n)


@pytest.mark.parametrize("style", ["raw", "lz4"])
def test_multi_frame_arrays_identical_for_1_to_4_threads(style: str, tmp_path: Path) -> None:
    """A 12 MiB array (three LZ4 frames) plus packed small ones, to a path and to a BytesIO."""
    arrays = {
        "big": _content("runs", 12 * MiB + 100, 1).view("<u2")[: 6 * MiB + 50],
        "small": {f"s{i}": _content("random", 3000 + i, i) for i in range(20)},
    }
    outs = []
    for n in (1, 2, 3, 4):
        path = tmp_path / f"t{n}.ndckpt"
        ndckpt.save(path, arrays, style=style, threads=n)
        outs.append(path.read_bytes())
        assert save_bytes(arrays, style=style, threads=n) == outs[0]
    assert all(o == outs[0] for o in outs)
    with ndckpt.open(outs[0]) as r:
        frames = {row["name"]: row["frames"] for row in r.info()}
    if style == "lz4":
        assert len(frames["big"]) == 4, "several LZ4 frames, so the threads share work"
    loads = [ndckpt.load(tmp_path / "t1.ndckpt", threads=n, mmap=False) for n in (1, 2, 4)]
    for got in loads:
        assert_same_tree(got, arrays)
    stream = ndckpt.load(io.BytesIO(outs[0]), threads=4)
    assert_same_tree(stream, arrays)
    with ndckpt.open(outs[0], threads=4, mmap=False) as r:
        assert_same_array(r.get("big"), arrays["big"])


# ----------------------------------------------------------------------------------------------
# Failures inside workers
# ----------------------------------------------------------------------------------------------


def _corrupt_frame(data: bytes, name: str, k: int) -> tuple[bytes, int]:
    """Flip a byte inside the k-th frame of array ``name``; return the bytes and that frame's index."""
    with ndckpt.open(data) as r:
        row = next(row for row in r.info() if row["name"] == name)
    b = bytearray(data)
    b[row["offsets"][k] + 100] ^= 0x10
    return bytes(b), row["frames"][k]


@pytest.mark.usefixtures("no_thread_left")
@pytest.mark.parametrize("threads", [2, 4])
def test_corrupt_frame_in_a_worker_surfaces_naming_the_frame(threads: int) -> None:
    arrays = {"big": _content("runs", 14 * MiB, 2), "other": _content("random", 5000, 3)}
    data, fi = _corrupt_frame(save_bytes(arrays, style="lz4"), "big", 2)
    for name, kw in (
        ("load(bytes)", {}),
        ("load(bytes, copy)", {"verify": True}),
        ("verify(bytes)", {}),
        ("open(bytes).get", {}),  # "big" comes first
        ("load(BytesIO)", {}),
    ):
        with pytest.raises(FormatError, match=rf"frame {fi}\b.*checksum"):
            READERS[name](data, threads=threads, **kw)
    with ndckpt.open(data, threads=threads) as r:
        assert_same_array(r.get("other"), arrays["other"])


@pytest.mark.usefixtures("no_thread_left")
def test_raw_checksum_failure_in_a_worker(tmp_path: Path) -> None:
    arrays = {"a": _content("random", 3 * MiB, 4), "b": _content("random", 3 * MiB, 5)}
    path = tmp_path / "r.ndckpt"
    ndckpt.save(path, arrays, threads=4)
    data, fi = _corrupt_frame(path.read_bytes(), "b", 0)
    path.write_bytes(data)
    with pytest.raises(FormatError, match=rf"frame {fi}\b.*'b'.*checksum"):
        ndckpt.verify(path, threads=4)
    with pytest.raises(FormatError, match=rf"frame {fi}\b"):
        ndckpt.load(path, threads=4, verify=True, mmap=False)


@pytest.mark.usefixtures("no_thread_left")
def test_encoder_error_in_a_worker_aborts_the_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error while a worker compresses frame 2 propagates; the target keeps its old content."""
    real = ndckpt.container.write.encode_frame
    seen: list[str] = []

    def failing(f: Any, fi: int, sources: Any) -> Any:
        seen.append(threading.current_thread().name)
        if fi == 2:
            raise CompressionError(f"frame {fi}: injected failure")
        return real(f, fi, sources)

    monkeypatch.setattr(ndckpt.container.write, "encode_frame", failing)
    path = tmp_path / "s.ndckpt"
    path.write_bytes(b"previous")
    arrays = {"big": _content("runs", 5 * FRAME, 6)}
    with pytest.raises(CompressionError, match="frame 2: injected"):
        ndckpt.save(path, arrays, style="lz4", threads=3)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["s.ndckpt"]
    assert any(n.startswith("ndckpt") for n in seen), "frames were encoded by the pool's threads"
    with pytest.raises(CompressionError, match="frame 2: injected"):
        save_bytes(arrays, style="lz4", threads=1)


@pytest.mark.usefixtures("no_thread_left")
def test_progress_callback_error_in_a_worker_propagates() -> None:
    data = save_bytes({"big": _content("runs", 3 * FRAME, 7)}, style="lz4")

    def boom(done: int, total: int) -> None:
        if done:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        ndckpt.load(data, threads=3, progress=boom)
    with pytest.raises(RuntimeError, match="stop here"):
        ndckpt.verify(data, threads=3, progress=boom)


@pytest.mark.usefixtures("no_thread_left")
def test_no_thread_outlives_successful_calls(tmp_path: Path) -> None:
    arrays = {"a": _content("runs", 9 * MiB, 8), "b": _content("random", 2 * MiB, 9)}
    ndckpt.save(tmp_path / "x", arrays, style={"a": "lz4"}, threads=4)
    ndckpt.load(tmp_path / "x", threads=4, mmap=False)
    ndckpt.verify(tmp_path / "x", threads=4)
    with ndckpt.open(tmp_path / "x", threads=4) as r:
        r.get("a")
    ndckpt.load(io.BytesIO((tmp_path / "x").read_bytes()), threads=4)


# ----------------------------------------------------------------------------------------------
# fork
# ----------------------------------------------------------------------------------------------


def _wait_child(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        wpid, status = os.waitpid(pid, os.WNOHANG)
        if wpid:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"forked child did not finish within {timeout} s (deadlock after fork?)")
        time.sleep(0.02)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_save_and_load_after_fork_while_the_parent_is_busy(tmp_path: Path) -> None:
    """Fork while another thread of the parent is mid-save (pools and staging locks in use)."""
    arrays = {"z": _content("runs", 9 * MiB, 10), "r": _content("random", 6 * MiB, 11)}
    style = {"z": "lz4"}
    want = save_bytes(arrays, style=style, threads=2)  # warms the staging free list
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        try:
            while not stop.is_set():
                assert save_bytes(arrays, style=style, threads=2) == want
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=churn, name="churn")
    t.start()
    try:
        codes = []
        for i in range(3):
            time.sleep(0.05 * i)
            pid = os.fork()
            if pid == 0:  # child: only this thread exists here
                code = 1
                try:
                    path = tmp_path / f"child{i}.ndckpt"
                    ndckpt.save(path, arrays, style=style, threads=2)
                    got = ndckpt.load(path, threads=2, mmap=False)
                    ok = path.read_bytes() == want and all(
                        np.array_equal(got[k], v) for k, v in arrays.items()
                    )
                    code = 0 if ok else 2
                except BaseException:
                    code = 3
                finally:
                    os._exit(code)
            codes.append(_wait_child(pid, 60))
        assert codes == [0, 0, 0]
    finally:
        stop.set()
        t.join(60)
    assert not errors, errors


# ----------------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------------


def _traced_peak(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn`` under tracemalloc (numpy reports its allocations to it); return (result, peak bytes)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    arrays = {
        "raw": {"a": _content("random", 48 * MiB, 12).view("<f8"), "s": np.arange(100)},
        "lz": {"b": _content("runs", 24 * MiB, 13).view("<u4"), "t": np.arange(50.0)},
    }
    path = tmp_path_factory.mktemp("mem") / "big.ndckpt"
    ndckpt.save(path, arrays, style={"lz": {"b": "lz4", "t": "lz4"}})
    return path, arrays


def test_mapped_load_allocates_nothing_proportional_to_raw_data(big_file: tuple[Path, dict[str, Any]]) -> None:
    path, arrays = big_file
    out = {"lz": {"b": np.empty_like(arrays["lz"]["b"])}}  # the LZ4 array is not the point here
    got, peak = _traced_peak(lambda: ndckpt.load(path, out=out, threads=2))
    # Nothing for the mapped RAW array; the LZ4 array's compressed frames are read into at most one
    # reused staging buffer per thread (a 4 MiB frame's bound each).
    assert peak < 2 * MiB + 2 * 4.1 * MiB, f"load(mmap=True) allocated {peak / MiB:.1f} MiB for 48 MiB of RAW data"
    _, copied = _traced_peak(lambda: ndckpt.load(path, out=out, mmap=False))
    assert copied >= 48 * MiB, "the measurement sees numpy's allocations (a copy of the RAW data)"
    assert not got["raw"]["a"].flags.writeable
    assert_same_array(got["raw"]["a"], arrays["raw"]["a"])
    with ndckpt.open(path) as r:
        view, peak = _traced_peak(lambda: r.get("raw/a"))
    assert peak < MiB
    assert_same_array(view, arrays["raw"]["a"])


@pytest.mark.parametrize("kind", ["path", "path, mmap=False", "reader", "stream"])
def test_load_into_out_allocates_only_small_buffers(big_file: tuple[Path, dict[str, Any]], kind: str) -> None:
    path, arrays = big_file
    out = {"raw": {"a": np.empty_like(arrays["raw"]["a"])}, "lz": {"b": np.empty_like(arrays["lz"]["b"])}}
    for a in (out["raw"]["a"], out["lz"]["b"]):
        a.view(np.uint8).fill(1)  # fault the pages in before measuring
    data = path.read_bytes() if kind == "stream" else None

    def run() -> Any:
        if kind == "path":
            return ndckpt.load(path, out=out, threads=2)
        if kind == "path, mmap=False":
            return ndckpt.load(path, out=out, threads=2, mmap=False)
        if kind == "reader":
            with ndckpt.open(path, threads=2) as r:
                return r.load(out=out)
        return ndckpt.load(io.BytesIO(data), out=out, threads=2)  # type: ignore[arg-type]

    got, peak = _traced_peak(run)
    # 72 MiB land in the caller's arrays; staging is at most a few 4 MiB frames.
    assert peak < 12 * MiB, f"{kind}: load into out= allocated {peak / MiB:.1f} MiB"
    assert got["raw"]["a"] is out["raw"]["a"]
    assert got["lz"]["b"] is out["lz"]["b"]
    assert_same_tree(got, arrays)
