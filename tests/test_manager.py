"""CheckpointManager: schedule, rotation, crash safety, preemption, asynchronous saves and their errors.

- Schedule and rotation: ``save`` writes exactly on multiples of ``every`` (or
  ``force``); after every save, over hundreds of steps, the directory holds
  exactly the newest ``keep`` steps plus the multiples of ``keep_every``, and
  ``latest()`` is the last step saved (a closed-form model, hypothesis).
- Crash safety: a child process running the Gray-Scott simulation with a
  manager is SIGKILLed at random points, many times, in synchronous and
  asynchronous mode; every checkpoint left restores to the state of the
  uninterrupted run at that step (digest), and resuming reproduces it bit for
  bit. A child sent SIGTERM saves a final checkpoint and exits 0.
- Asynchronous saves: mutating the arrays right after ``save`` returns (while
  the write is provably still in progress) does not change what is written;
  the bytes equal a synchronous save's for any tree of arrays; staging memory
  is allocated once and reused; a second save waits for the first; a failing
  background write (ENOSPC injected into the writer, and a real 1 MiB tmpfs)
  surfaces at ``wait()`` or the next ``save()`` and the previous checkpoint
  stays the latest; an interpreter exit finishes the writes in flight (of
  every manager, while they still submit work to thread pools), and reports
  an error nobody waited for.
- Exit hooks: importing ndckpt registers none; the first asynchronous save
  registers them, once per process.
- Listing and restore: only exact names of complete files count; a corrupt
  newest checkpoint is skipped with a warning; stale temporary files of dead
  writers are removed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import doctest
import errno
import gc
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_same_tree
from hypothesis import example, given, settings
from hypothesis import strategies as st

import ndckpt
import ndckpt._coordination
from ndckpt import CheckpointManager, CheckptIOError, FormatError, InvalidArgumentError, _backend, _files
from ndckpt._ckptdir import rotation_victims
from ndckpt._staging import copy_pieces, run_copies
from ndckpt.demo import GrayScott
from ndckpt.manager import CorruptCheckpointWarning

# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def fast_tmpdir() -> Iterator[Path]:
    """A fresh directory on tmpfs when there is one (fsync is free there), else in the temp dir."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    d = Path(tempfile.mkdtemp(prefix="ndckpt-mgr-", dir=base))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def hidden(d: Path) -> list[str]:
    """Names of temporary (dot) files in ``d``."""
    return sorted(n for n in os.listdir(d) if n.startswith("."))


class FaultyOS:
    """Stands in for the ``os`` module inside ndckpt._backend: its writes can stall or fail.

    ``gate``: every write waits until it is set. ``fail_after``: a write that would
    take the bytes written past this many raises ENOSPC (disk full).
    """

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.writing = threading.Event()  # set by the first write
        self.fail_after: int | None = None
        self.written = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: Any) -> int:
        self.writing.set()
        assert self.gate.wait(timeout=60), "test gate never opened"
        n = memoryview(data).nbytes
        if self.fail_after is not None and self.written + n > self.fail_after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        w = os.write(fd, data)
        self.written += w
        return w


@pytest.fixture
def faulty_os(monkeypatch: pytest.MonkeyPatch) -> FaultyOS:
    fake = FaultyOS()
    monkeypatch.setattr(_backend, "os", fake)
    return fake


#: Dtypes for the state trees: plain, big-endian, bool, complex, opaque, and a struct with padding.
PADDED = np.dtype({"names": ["a", "b"], "formats": ["u1", "<f8"], "offsets": [0, 8], "itemsize": 24})
DTYPES = [np.dtype(t) for t in ("<f8", ">i4", "u1", "?", "<c16", "<f2", "V3", "<M8[s]")] + [PADDED]
LAYOUTS = ("C", "F", "strided", "reversed")


def make_array(dtype: np.dtype[Any], shape: tuple[int, ...], layout: str, seed: int) -> np.ndarray[Any, Any]:
    """Random bytes (padding included) of ``dtype`` and ``shape``, laid out in memory as ``layout``."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape, dtype=np.int64))
    if layout == "strided" and shape:
        base = np.frombuffer(bytearray(rng.bytes(2 * n * dtype.itemsize)), dtype).reshape((2 * shape[0], *shape[1:]))
        return base[::2]
    a = np.frombuffer(bytearray(rng.bytes(n * dtype.itemsize)), dtype).reshape(shape)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "reversed" and shape:
        return a[::-1]
    return a


@st.composite
def state_trees(draw: st.DrawFn, depth: int = 2) -> dict[str, Any]:
    """Nested mappings of arrays of any dtype, shape and layout, with 0-d arrays, scalars and empty groups."""
    tree: dict[str, Any] = {}
    for key in draw(st.lists(st.text("abxyz_é", min_size=1, max_size=3), max_size=4, unique=True)):
        kind = draw(st.sampled_from(["array", "array", "scalar", "group"] if depth else ["array", "scalar"]))
        if kind == "array":
            shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
            dtype, layout = draw(st.sampled_from(DTYPES)), draw(st.sampled_from(LAYOUTS))
            tree[key] = make_array(dtype, shape, layout, draw(st.integers(0, 2**32 - 1)))
        elif kind == "scalar":
            tree[key] = draw(st.sampled_from([np.float32(1.5), np.int64(-3), 7, 2.5, True]))
        else:
            tree[key] = draw(state_trees(depth - 1))
    return tree


def small_state(step: int) -> dict[str, Any]:
    return {
        "x": np.full(5, step, dtype=np.int64),
        "grid": {"u": np.arange(12.0).reshape(3, 4) + step},
        "step": np.int64(step),
    }


# ----------------------------------------------------------------------------------------------
# Arguments, schedule, rotation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"every": 0},
        {"every": True},
        {"every": 1.5},
        {"keep": 0},
        {"keep_every": 0},
        {"keep_every": "10"},
        {"async_save": 1},
        {"threads": 0},
        {"style": "zstd"},
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        CheckpointManager(tmp_path, **kwargs)


def test_directory_is_created_and_must_be_a_directory(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path / "a" / "b")
    assert mgr.directory.is_dir()
    assert mgr.steps() == []
    assert mgr.latest() is None
    f = tmp_path / "file"
    f.write_bytes(b"x")
    with pytest.raises(InvalidArgumentError, match="not a directory"):
        CheckpointManager(f)


@pytest.mark.parametrize("step", [-1, True, 1.0, "3", None])
def test_bad_steps(tmp_path: Path, step: Any) -> None:
    mgr = CheckpointManager(tmp_path)
    with pytest.raises(InvalidArgumentError, match="step"):
        mgr.save(step, small_state(0))


def test_schedule_every_and_force(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, every=4, keep=None)
    did = [mgr.save(s, small_state(s)) for s in range(10)]
    assert did == [s % 4 == 0 for s in range(10)]
    assert mgr.save(7, small_state(7), force=True)
    assert mgr.steps() == [0, 4, 7, 8]
    assert mgr.path(7).name == "ckpt-000000000007.ndckpt"
    assert mgr.save(np.int64(12), small_state(12))  # numpy integers are steps too
    assert mgr.latest() == 12


def rotation_model(saved: list[int], keep: int | None, keep_every: int | None) -> list[int]:
    """The checkpoints that must exist after in-order saves of ``saved``."""
    kept = set(saved if keep is None else saved[-keep:])
    if keep_every is not None:
        kept |= {s for s in saved if s % keep_every == 0}
    return sorted(kept)


@settings(max_examples=10)
@given(
    every=st.integers(1, 6),
    keep=st.one_of(st.none(), st.integers(1, 5)),
    keep_every=st.one_of(st.none(), st.integers(2, 40)),
    nsteps=st.integers(1, 250),
    async_save=st.booleans(),
)
@example(every=1, keep=3, keep_every=50, nsteps=400, async_save=False)
@example(every=3, keep=2, keep_every=25, nsteps=400, async_save=True)
def test_rotation_over_hundreds_of_steps(
    every: int, keep: int | None, keep_every: int | None, nsteps: int, async_save: bool
) -> None:
    with fast_tmpdir() as d:
        mgr = CheckpointManager(d, every=every, keep=keep, keep_every=keep_every, async_save=async_save)
        saved: list[int] = []
        for step in range(nsteps):
            did = mgr.save(step, small_state(step))
            assert did == (step % every == 0)
            if did:
                saved.append(step)
            mgr.wait()
            assert mgr.steps() == rotation_model(saved, keep, keep_every), step
            assert mgr.latest() == saved[-1]
        got = mgr.restore()
        assert mgr.restored_step == saved[-1]
        assert_same_tree(got, small_state(saved[-1]))
        assert hidden(d) == []
        mgr.close()


def test_rotation_never_deletes_the_checkpoint_just_written(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, keep=2)
    for s in (10, 20, 30):
        mgr.save(s, small_state(s))
    assert mgr.steps() == [20, 30]
    mgr.save(5, small_state(5))  # older than the kept ones (e.g. a rerun from an old checkpoint)
    assert mgr.steps() == [5, 20, 30]
    mgr.save(40, small_state(40))
    assert mgr.steps() == [30, 40]


@given(
    have=st.lists(st.integers(0, 60), max_size=20),
    keep=st.integers(1, 6),
    keep_every=st.one_of(st.none(), st.integers(1, 15)),
    just_written=st.integers(-1, 60),
)
def test_rotation_policy_keeps_exactly_the_newest_the_permanent_and_the_one_just_written(
    have: list[int], keep: int, keep_every: int | None, just_written: int
) -> None:
    victims = rotation_victims(have, keep, keep_every, just_written)
    steps = sorted(set(have))
    assert victims == sorted(victims)
    assert set(victims) <= set(steps)
    for s in steps:
        protected = s in steps[-keep:] or s == just_written or (keep_every is not None and s % keep_every == 0)
        assert (s in victims) == (not protected), s


# ----------------------------------------------------------------------------------------------
# Listing and restore
# ----------------------------------------------------------------------------------------------


def test_only_exact_names_of_complete_files_count(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, keep=None)
    for s in (1, 2, 3):
        mgr.save(s, small_state(s))
    good = mgr.path(1).read_bytes()
    (tmp_path / "ckpt-4.ndckpt").write_bytes(good)  # not zero-padded
    (tmp_path / "ckpt-000000000005.ndckpt.bak").write_bytes(good)
    (tmp_path / "ckpt-0000000000006.ndckpt").write_bytes(good)  # 13 digits for a 12-digit step
    (tmp_path / "ckpt-000000000007.ndckpt").mkdir()
    (tmp_path / ".ckpt-000000000008.ndckpt.ndckpt-tmp-1-abcd").write_bytes(good)
    (tmp_path / "ckpt-000000000009.ndckpt").write_bytes(good[: len(good) // 2])  # torn
    (tmp_path / "ckpt-000000000010.ndckpt").write_bytes(b"")
    assert mgr.steps() == [1, 2, 3]
    # A torn file that is later completed in place is picked up (the cache keys on size/mtime).
    (tmp_path / "ckpt-000000000009.ndckpt").write_bytes(good)
    assert mgr.steps() == [1, 2, 3, 9]
    assert mgr.latest() == 9


def test_restore_falls_back_from_a_corrupt_newest_checkpoint(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, keep=None)
    for s in (1, 2, 3):
        mgr.save(s, small_state(s), metadata={"s": s})
    p3 = mgr.path(3)
    data = bytearray(p3.read_bytes())
    data[40] ^= 0xFF  # inside the head JSON: its checksum fails; the trailer still looks fine
    p3.write_bytes(bytes(data))
    assert mgr.latest() == 3
    with pytest.warns(CorruptCheckpointWarning, match="step 3"):
        got = mgr.restore()
    assert mgr.restored_step == 2
    assert_same_tree(got, small_state(2))
    with pytest.raises(FormatError):
        mgr.restore(3)  # an explicit step never falls back
    with pytest.raises(CheckptIOError, match="no complete checkpoint for step 4") as ei:
        mgr.restore(4)
    assert ei.value.errno == errno.ENOENT
    assert mgr.metadata(2) == {"s": 2}
    for s in (1, 2):
        mgr.path(s).write_bytes(bytes(data))
    with pytest.warns(CorruptCheckpointWarning), pytest.raises(FormatError) as fe:
        mgr.restore()
    assert any("step 1 failed too" in note for note in fe.value.__notes__)


def test_restore_empty_directory_and_out(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path)
    with pytest.raises(CheckptIOError, match="no complete checkpoint"):
        mgr.restore()
    with pytest.raises(CheckptIOError):
        mgr.metadata()
    mgr.save(4, small_state(4), metadata={"note": "four"})
    out = {"x": np.zeros(5, np.int64)}
    got = mgr.restore(out=out, mmap=False, verify=True)
    assert got["x"] is out["x"]
    assert out["x"].tolist() == [4] * 5
    assert mgr.metadata() == {"note": "four"}
    assert mgr.metadata(4) == {"note": "four"}


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path: Path) -> None:
    # A real leftover: a writer SIGKILLs itself in the middle of ndckpt.save.
    child = (
        "import os, signal, sys, numpy as np, ndckpt\n"
        "from ndckpt import _backend\n"
        "class K:\n"
        "    def __getattr__(self, n): return getattr(os, n)\n"
        "    def write(self, fd, data):\n"
        "        os.write(fd, bytes(memoryview(data)[:100])); os.kill(os.getpid(), signal.SIGKILL)\n"
        "_backend.os = K()\n"
        "ndckpt.save(os.path.join(sys.argv[1], 'ckpt-000000000003.ndckpt'), {'a': np.ones(1000)})\n"
    )
    r = subprocess.run([sys.executable, "-c", child, str(tmp_path)], timeout=60, capture_output=True)
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()
    (leftover,) = hidden(tmp_path)
    assert leftover.startswith(".ckpt-000000000003.ndckpt.")
    # Temporaries of live processes (this one, and a running child) stay.
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as sleeper:
        try:
            mine = _files.temp_name("ckpt-000000000001.ndckpt")
            live = _files.temp_name("ckpt-000000000002.ndckpt", pid=sleeper.pid)
            # Never removed: another host's (its pid means nothing here), names of other forms
            # (the pre-host-tag form, not a checkpoint's), and a symlink of the exact form.
            foreign = _files.temp_name("ckpt-000000000004.ndckpt", pid=sleeper.pid, host="0badf00d")
            old_form = f".ckpt-000000000005.ndckpt.ndckpt-tmp-{sleeper.pid}-0a0b"
            other = _files.temp_name("unrelated.ndckpt", pid=sleeper.pid)
            link = _files.temp_name("ckpt-000000000006.ndckpt", pid=sleeper.pid)
            for name in (mine, live, foreign, old_form, other):
                (tmp_path / name).write_bytes(b"partial")
            (tmp_path / link).symlink_to(tmp_path / other)
            mgr = CheckpointManager(tmp_path)
            assert hidden(tmp_path) == sorted([mine, live, foreign, old_form, other, link])
            assert mgr.steps() == []
        finally:
            sleeper.kill()
        sleeper.wait()
    assert mgr.remove_stale_temporaries() == [tmp_path / live]
    assert hidden(tmp_path) == sorted([mine, foreign, old_form, other, link])
    assert (tmp_path / other).read_bytes() == b"partial"


# ----------------------------------------------------------------------------------------------
# Asynchronous saves
# ----------------------------------------------------------------------------------------------


def test_mutating_right_after_async_save_does_not_change_what_is_written(tmp_path: Path, faulty_os: FaultyOS) -> None:
    mgr = CheckpointManager(tmp_path, async_save="thread")
    u = np.arange(3 << 20, dtype=np.float64)  # 24 MiB: copied by two threads
    f = np.asfortranarray(np.arange(600.0).reshape(20, 30))
    strided = np.arange(1000, dtype=np.int32)[::3]
    scalar = np.float64(2.5)
    want = {"u": u.copy(), "f": f.copy(order="F"), "strided": strided.copy(), "scalar": scalar}
    faulty_os.gate.clear()  # the background write stalls at its first write
    assert mgr.save(1, {"u": u, "f": f, "strided": strided, "scalar": scalar})
    assert faulty_os.writing.wait(timeout=30)
    # The write is in progress (stalled inside os.write): clobber everything the caller owns.
    u.fill(-1.0)
    f.fill(-1.0)
    strided.fill(-1)
    assert mgr.latest() is None
    faulty_os.gate.set()
    mgr.wait()
    assert mgr.latest() == 1
    got = mgr.restore()
    assert_same_tree(got, want)
    assert got["f"].flags.f_contiguous


@settings(max_examples=30)
@given(tree=state_trees())
def test_async_save_writes_the_same_bytes_as_sync(tree: dict[str, Any]) -> None:
    with fast_tmpdir() as d:
        a = CheckpointManager(d / "async", async_save=True, style="lz4")
        s = CheckpointManager(d / "sync", style="lz4")
        meta = {"run": "r1", "k": [1, 2]}
        assert a.save(7, tree, metadata=meta)
        assert s.save(7, tree, metadata=meta)
        a.wait()
        assert a.path(7).read_bytes() == s.path(7).read_bytes()
        assert_same_tree(a.restore(7), tree)
        a.close()


def test_async_large_mixed_layouts_match_sync(tmp_path: Path) -> None:
    padded = np.dtype({"names": ["a", "b"], "formats": ["u1", "<f8"], "offsets": [0, 8], "itemsize": 24})
    raw = np.frombuffer(np.random.default_rng(1).bytes(24 * 300_000), padded)  # garbage in the padding
    tree = {
        "big": np.random.default_rng(2).random(1_300_001),  # 10.4 MiB, not a page multiple
        "fortran": np.asfortranarray(np.random.default_rng(3).random((700, 900))),
        "strided": np.random.default_rng(4).random((900, 1400))[:, ::2],
        "padded": raw.copy(),
        "padded_strided": raw[::2],
        "empty": np.zeros((0, 3)),
        "group": {},
        "scalar": 7,
    }
    a = CheckpointManager(tmp_path / "async", async_save=True, threads=2)
    s = CheckpointManager(tmp_path / "sync", threads=2)
    a.save(1, tree)
    s.save(1, tree)
    a.wait()
    assert a.path(1).read_bytes() == s.path(1).read_bytes()
    assert_same_tree(a.restore(1), tree)


@settings(max_examples=60)
@given(
    sizes=st.lists(st.integers(0, 40_000), min_size=0, max_size=6),
    nparts=st.integers(1, 3),
)
def test_copy_pieces_cover_every_byte_once_in_balanced_parts(sizes: list[int], nparts: int) -> None:
    rng = np.random.default_rng(len(sizes))
    srcs = [rng.integers(0, 256, n, dtype=np.uint8) for n in sizes]
    dsts = [np.zeros(n, np.uint8) for n in sizes]
    parts = copy_pieces([(d, s, "C") for d, s in zip(dsts, srcs, strict=True)], nparts)
    assert len(parts) == nparts
    total = sum(sizes)
    share = -(-total // nparts)
    per_part = [sum(d.nbytes for d, _ in p) for p in parts]
    assert sum(per_part) == total
    for k in range(nparts - 1):
        assert per_part[k] <= share
        if any(per_part[k + 1 :]):
            assert per_part[k] > share - 4096
    for p in parts:
        run_copies(p)
    for d, s in zip(dsts, srcs, strict=True):
        assert np.array_equal(d, s)


def test_staging_is_allocated_once_and_reused(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, async_save=True, keep=2, threads=2)
    a = np.arange(3 << 20, dtype=np.float64)  # 24 MiB
    b = np.ones((5, 7), np.float32, order="F")
    for step in range(4):
        mgr.save(step, {"a": a, "b": b})
        a[step] = -1.0
    mgr.wait()
    assert mgr._staging.allocations == 1
    arena = mgr._staging.arena
    assert mgr.staging_nbytes >= a.nbytes + b.nbytes
    assert mgr.restore(3)["a"][:5].tolist() == [-1.0, -1.0, -1.0, 3.0, 4.0]
    assert mgr.restore(2)["a"][:5].tolist() == [-1.0, -1.0, 2.0, 3.0, 4.0]
    mgr.save(10, {"a": np.arange(4 << 20, dtype=np.float64)})  # more bytes: a new arena
    mgr.save(11, {"x": np.zeros(10), "y": np.ones(3, np.int8)})  # fewer: the arena is reused
    mgr.wait()
    assert mgr._staging.allocations == 2
    assert mgr._staging.arena is not arena
    assert mgr.restore(11)["y"].tolist() == [1, 1, 1]
    with mgr:
        pass
    assert mgr.staging_nbytes == 0
    mgr.save(12, {"x": np.zeros(10)})  # usable after close
    mgr.close()
    assert mgr.latest() == 12


def test_a_save_while_one_is_in_flight_waits_for_it(tmp_path: Path, faulty_os: FaultyOS) -> None:
    mgr = CheckpointManager(tmp_path, async_save="thread", keep=None)
    x = np.full(1 << 16, 1.0)
    faulty_os.gate.clear()
    mgr.save(1, {"x": x})
    assert faulty_os.writing.wait(timeout=30)
    x[:] = 2.0
    opener = threading.Timer(0.3, faulty_os.gate.set)
    opener.start()
    t0 = time.perf_counter()
    mgr.save(2, {"x": x})  # must wait for save 1 before it may reuse the staging memory
    blocked = time.perf_counter() - t0
    assert blocked >= 0.2
    assert 1 in mgr.steps()
    mgr.wait()
    assert mgr.steps() == [1, 2]
    assert set(mgr.restore(1)["x"].tolist()) == {1.0}
    assert set(mgr.restore(2)["x"].tolist()) == {2.0}


def test_invalid_state_fails_synchronously_in_async_mode(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, async_save=True)
    with pytest.raises(InvalidArgumentError, match="Python objects"):
        mgr.save(1, {"a": np.array([None, 1], dtype=object)})
    with pytest.raises(InvalidArgumentError, match="metadata"):
        mgr.save(1, {"a": np.zeros(3)}, metadata={"bad": object()})
    with pytest.raises(InvalidArgumentError, match="style"):
        CheckpointManager(tmp_path, async_save=True, style={"nope": "lz4"}).save(1, {"a": np.zeros(3)})
    mgr.wait()
    assert mgr.steps() == []


def test_async_metadata_is_captured_at_save(tmp_path: Path, faulty_os: FaultyOS) -> None:
    mgr = CheckpointManager(tmp_path, async_save="thread")
    meta: dict[str, Any] = {"loss": [1.0]}
    faulty_os.gate.clear()
    mgr.save(1, small_state(1), metadata=meta)
    meta["loss"].append(2.0)
    faulty_os.gate.set()
    mgr.wait()
    assert mgr.metadata(1) == {"loss": [1.0]}


def test_disk_full_in_the_background_surfaces_at_wait(tmp_path: Path, faulty_os: FaultyOS) -> None:
    mgr = CheckpointManager(tmp_path, async_save="thread")
    mgr.save(1, small_state(1))
    mgr.wait()
    faulty_os.fail_after = faulty_os.written + 100
    assert mgr.save(2, small_state(2))
    with pytest.raises(CheckptIOError) as ei:
        mgr.wait()
    assert ei.value.errno == errno.ENOSPC
    assert any("step 2" in note for note in ei.value.__notes__)
    mgr.wait()  # raised once only
    assert mgr.latest() == 1
    assert hidden(tmp_path) == []
    assert_same_tree(mgr.restore(), small_state(1))
    faulty_os.fail_after = None
    assert mgr.save(3, small_state(3))
    mgr.wait()
    assert mgr.steps() == [1, 3]


def test_disk_full_in_the_background_surfaces_at_the_next_save(tmp_path: Path, faulty_os: FaultyOS) -> None:
    mgr = CheckpointManager(tmp_path, async_save="thread", every=2)
    faulty_os.fail_after = 1000
    assert mgr.save(2, small_state(2))
    job = mgr._writer.inflight
    assert job is not None
    concurrent.futures.wait([job.future], timeout=60)
    with pytest.raises(CheckptIOError) as ei:
        mgr.save(3, small_state(3))  # not due, yet the finished save's failure is reported
    assert ei.value.errno == errno.ENOSPC
    mgr.wait()  # raised once only
    assert mgr.latest() is None
    faulty_os.fail_after = None
    assert mgr.save(4, small_state(4))
    mgr.wait()
    assert mgr.latest() == 4


def test_disk_full_on_a_tiny_tmpfs(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot run mount: {e}")
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    try:
        mgr = CheckpointManager(mnt, async_save=True)
        small = {"a": np.arange(16384, dtype=np.float64)}  # 128 KiB
        mgr.save(1, small)
        mgr.wait()
        assert mgr.save(2, {"a": np.ones(2 << 17)})  # 2 MiB on a 1 MiB file system
        with pytest.raises(CheckptIOError) as ei:
            mgr.wait()
        assert ei.value.errno == errno.ENOSPC
        assert mgr.latest() == 1
        assert hidden(mnt) == []
        assert np.array_equal(mgr.restore(mmap=False)["a"], small["a"])
        mgr.close()
        del mgr
        gc.collect()
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)


def test_interpreter_exit_finishes_the_save_in_flight(tmp_path: Path) -> None:
    code = (
        "import os, sys, time, numpy as np\n"
        "from ndckpt import CheckpointManager, _backend\n"
        "class Slow:\n"
        "    def __getattr__(self, n): return getattr(os, n)\n"
        "    def write(self, fd, data): time.sleep(0.05); return os.write(fd, data)\n"
        "_backend.os = Slow()\n"
        "mgr = CheckpointManager(sys.argv[1], async_save=True)\n"
        "mgr.save(1, {'a': np.full(1 << 20, 3.0)})\n"
        "print('in flight' if not mgr._writer.inflight.future.done() else 'already done')\n"
    )
    r = run_python(code, str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "in flight"
    mgr = CheckpointManager(tmp_path)
    assert mgr.steps() == [1]
    assert set(mgr.restore()["a"].tolist()) == {3.0}


def test_interpreter_exit_reports_a_failure_nobody_waited_for(tmp_path: Path) -> None:
    code = (
        "import errno, os, sys, numpy as np\n"
        "from ndckpt import CheckpointManager, _backend\n"
        "class Full:\n"
        "    def __getattr__(self, n): return getattr(os, n)\n"
        "    def write(self, fd, data): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
        "_backend.os = Full()\n"
        "mgr = CheckpointManager(sys.argv[1], async_save='thread')\n"
        "mgr.save(5, {'a': np.ones(100)})\n"
    )
    r = run_python(code, str(tmp_path))
    assert r.returncode == 0
    assert "background save of step 5" in r.stderr
    assert "never waited for" in r.stderr
    assert "No space left on device" in r.stderr
    assert CheckpointManager(tmp_path).steps() == []


# Installed before ndckpt is imported: counts exit hooks that ndckpt registers (the hook is an
# ndckpt function, or the registering frame is ndckpt code) and prints them as JSON at the end.
_COUNT_EXIT_HOOKS = """
import atexit, json, sys, threading
calls = []
def counting(register, kind):
    def wrapper(fn, *args, **kwargs):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if str(getattr(fn, "__module__", "")).startswith("ndckpt") or caller.startswith("ndckpt"):
            calls.append([kind, fn.__qualname__])
        return register(fn, *args, **kwargs)
    return wrapper
atexit.register = counting(atexit.register, "atexit")
threading._register_atexit = counting(threading._register_atexit, "threading")
"""


def test_import_registers_no_exit_hooks(tmp_path: Path) -> None:
    """Importing ndckpt, and using a manager without async saves, registers nothing for exit.

    The first asynchronous save registers both hooks, once per process (the
    same counter sees them, so the zero counts are not vacuous).
    """
    code = _COUNT_EXIT_HOOKS + textwrap.dedent(
        """
        import numpy as np
        import ndckpt
        import ndckpt.manager
        out = {"import": list(calls), "futures_first": "concurrent.futures.thread" in sys.modules}
        with ndckpt.CheckpointManager(sys.argv[1] + "/sync") as mgr:
            mgr.save(1, {"a": np.arange(3)})
            mgr.restore(mmap=False)
        out["sync"] = list(calls)
        for sub in ("a", "b"):
            with ndckpt.CheckpointManager(sys.argv[1] + "/" + sub, async_save=True) as mgr:
                mgr.save(1, {"a": np.arange(3)})
                mgr.save(2, {"a": np.arange(4)})
        out["async"] = list(calls)
        print(json.dumps(out))
        """
    )
    r = run_python(code, str(tmp_path))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["import"] == []
    assert out["futures_first"]  # concurrent.futures' hook exists before ndckpt can register its own
    assert out["sync"] == []
    assert out["async"] == [["threading", "_finish_in_flight"], ["atexit", "_report_unwaited"]]


def test_interpreter_exit_finishes_the_saves_in_flight_of_every_manager(tmp_path: Path) -> None:
    """One registration covers every manager, including ones made after it, and runs before pools refuse work.

    Each state has several arrays and every write stalls, so the writers are
    still submitting frames to ndckpt.save's thread pool when the interpreter
    starts to exit: a save finished after concurrent.futures' exit hook would
    fail ("cannot schedule new futures") and leave no file.
    """
    code = (
        "import os, sys, time, numpy as np\n"
        "from ndckpt import CheckpointManager, _backend\n"
        "class Slow:\n"
        "    def __getattr__(self, n): return getattr(os, n)\n"
        "    def write(self, fd, data): time.sleep(0.02); return os.write(fd, data)\n"
        "_backend.os = Slow()\n"
        "def state(v): return {k: np.full(1 << 16, v) for k in 'abcdefgh'}\n"
        "first = CheckpointManager(sys.argv[1] + '/a', async_save=True, threads=2)\n"
        "first.save(1, state(1.0))\n"
        "second = CheckpointManager(sys.argv[1] + '/b', async_save=True, threads=2)\n"
        "second.save(2, state(2.0))\n"
        "print('in flight' if not second._writer.inflight.future.done() else 'already done')\n"
    )
    r = run_python(code, str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "in flight"
    assert r.stderr == ""
    for sub, step in (("a", 1), ("b", 2)):
        mgr = CheckpointManager(tmp_path / sub)
        assert mgr.steps() == [step]
        got = mgr.restore()
        assert sorted(got) == list("abcdefgh")
        assert all(set(v.tolist()) == {float(step)} for v in got.values())


# ----------------------------------------------------------------------------------------------
# Preemption
# ----------------------------------------------------------------------------------------------


def test_preemption_signal_forces_the_next_save(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGUSR1)
    mgr = CheckpointManager(tmp_path, every=1000, async_save=True)
    mgr.install_signal_handlers()
    try:
        assert signal.getsignal(signal.SIGUSR1) != before
        assert not mgr.save(1, small_state(1))
        signal.raise_signal(signal.SIGUSR1)
        assert not mgr.preempted  # the flag means "a checkpoint after the signal is written"
        assert mgr.save(2, small_state(2))
        assert mgr.preempted
        assert mgr.latest() == 2  # written synchronously, even in async mode
        assert not mgr.save(3, small_state(3))  # one signal, one forced save
        signal.raise_signal(signal.SIGTERM)
        assert mgr.save(4, small_state(4))
        assert mgr.steps() == [2, 4]
    finally:
        mgr.restore_signal_handlers()
    assert signal.getsignal(signal.SIGUSR1) == before
    mgr.restore_signal_handlers()  # idempotent


def test_signal_handlers_only_from_the_main_thread(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path)
    errors: list[BaseException] = []

    def install() -> None:
        try:
            mgr.install_signal_handlers()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=install)
    t.start()
    t.join()
    assert len(errors) == 1
    assert isinstance(errors[0], InvalidArgumentError)
    with pytest.raises(InvalidArgumentError):
        mgr.install_signal_handlers(signals=(signal.SIGKILL,))


# ----------------------------------------------------------------------------------------------
# Child processes: SIGKILL at random points, SIGTERM for a clean exit
# ----------------------------------------------------------------------------------------------

SIM_CHILD = """
import sys
from ndckpt import CheckpointManager
from ndckpt.demo import GrayScott

directory, n, seed, every, async_save, until = sys.argv[1:7]
n, seed, every, until = int(n), int(seed), int(every), int(until)
with CheckpointManager(directory, every=every, keep=3, async_save=False if async_save == "0" else async_save) as mgr:
    mgr.install_signal_handlers()
    sim = GrayScott(n, seed) if mgr.latest() is None else GrayScott.from_state(mgr.restore())
    writer = mgr._process.pid if mgr._process is not None else None
    print("start", sim.step_count, writer, flush=True)
    while sim.step_count < until:
        sim.step(1)
        mgr.save(sim.step_count, sim.state())
        if mgr.preempted:
            print("preempted", sim.step_count, flush=True)
            break
print("done", sim.step_count, sim.digest(), flush=True)
"""

N, SEED = 40, 11
FOREVER = 10**9
KILLS = 15  # per mode


def wait_gone(pid: int, timeout: float = 30.0) -> bool:
    """Whether process ``pid`` is gone (reaped: stale-file removal asks the kernel) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.005)
    return False


class Reference:
    """The uninterrupted run, stepped forward on demand; its digest at every step."""

    def __init__(self) -> None:
        self.sim = GrayScott(N, SEED)
        self.digests = {0: self.sim.digest()}

    def digest(self, step: int) -> str:
        while self.sim.step_count < step:
            self.sim.step(1)
            self.digests[self.sim.step_count] = self.sim.digest()
        return self.digests[step]


def spawn(d: Path, every: int, async_save: str, until: int) -> subprocess.Popen[str]:
    """The simulation child; ``async_save`` "0" (synchronous), "thread" or "process"."""
    args = [str(d), str(N), str(SEED), str(every), async_save, str(until)]
    return subprocess.Popen(
        [sys.executable, "-c", SIM_CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(d: Path, every: int, until: int) -> tuple[int, str]:
    """Run the child to ``until`` without interruption; its final (step, digest)."""
    r = run_python(SIM_CHILD, str(d), str(N), str(SEED), str(every), "0", str(until))
    assert r.returncode == 0, r.stderr
    _, step, digest = r.stdout.splitlines()[-1].split()
    return int(step), digest


@pytest.mark.parametrize("async_save", ["0", "thread", "process"])
def test_sigkill_at_random_points_never_loses_a_complete_checkpoint(tmp_path: Path, async_save: str) -> None:
    ref = Reference()
    rnd = random.Random(f"1234{async_save}")
    d = tmp_path / "ckpts"
    previous = -1
    torn = 0
    for kill in range(KILLS):
        with spawn(d, every=1, async_save=async_save, until=FOREVER) as p:
            assert p.stdout is not None
            assert p.stderr is not None
            line = p.stdout.readline()
            assert line.startswith("start"), p.stderr.read()
            deadline = time.monotonic() + 60
            while not list(d.glob("ckpt-*.ndckpt")) and time.monotonic() < deadline:
                time.sleep(0.005)  # a background writer's first checkpoint (a process writer starts first)
            time.sleep(rnd.uniform(0.0, 0.3))
            p.kill()
            p.wait(timeout=60)
        if line.split()[2] != "None":  # the writer process dies with its parent, a moment later
            assert wait_gone(int(line.split()[2])), "the writer process outlived its killed parent"
        torn += bool(hidden(d))
        mgr = CheckpointManager(d, keep=3)  # removes the killed writer's temporary file
        assert hidden(d) == []
        steps = mgr.steps()
        assert steps, f"kill {kill}: no checkpoint"
        assert len(steps) <= 4  # keep, plus one written just before the kill and not yet rotated
        latest = mgr.latest()
        assert latest is not None
        assert latest >= previous, "a newer checkpoint disappeared"
        previous = latest
        for s in steps:
            sim = GrayScott.from_state(mgr.restore(s))
            assert sim.step_count == s
            assert sim.digest() == ref.digest(s), f"kill {kill}: checkpoint {s} differs from the uninterrupted run"
        GrayScott.from_state(mgr.restore())  # the latest restores without a fallback warning
        assert mgr.restored_step == latest
    print(f"{torn} of {KILLS} kills left a partly written temporary file")
    step, digest = finish(d, every=5, until=previous + 25)
    assert step == previous + 25
    assert digest == ref.digest(step)


@pytest.mark.parametrize("async_save", ["0", "thread", "process"])
def test_sigterm_saves_a_final_checkpoint_and_exits_zero(tmp_path: Path, async_save: str) -> None:
    ref = Reference()
    d = tmp_path / "ckpts"
    every = 10**6  # regular saves never happen: only the preemption save writes
    with spawn(d, every=every, async_save=async_save, until=FOREVER) as p:
        assert p.stdout is not None
        assert p.stderr is not None
        assert p.stdout.readline().startswith("start"), p.stderr.read()
        time.sleep(0.3)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("preempted")
    step = int(lines[0].split()[1])
    assert lines[1] == f"done {step} {ref.digest(step)}"
    mgr = CheckpointManager(d)
    assert mgr.steps() == [step]
    assert step % every != 0
    assert GrayScott.from_state(mgr.restore()).digest() == ref.digest(step)
    final, digest = finish(d, every=7, until=step + 20)
    assert (final, digest) == (step + 20, ref.digest(step + 20))


def test_docs_page_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The python blocks of docs/manager.md run in page order in one namespace (``>>>`` ones via doctest).

    The SLURM script block (it calls ``sys.exit``) is only compiled.
    """
    text = (Path(__file__).resolve().parents[1] / "docs" / "manager.md").read_text(encoding="utf-8")
    blocks = [textwrap.dedent(m.group(2)) for m in re.finditer(r"^( *)```python\n(.*?)^\1```$", text, re.S | re.M)]
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    globs: dict[str, Any] = {"__name__": "docs_manager"}
    ran = 0
    for i, block in enumerate(blocks):
        where = f"docs/manager.md block {i}"
        if "sys.exit" in block:
            compile(block, where, "exec")
        elif block.lstrip().startswith(">>>"):
            test = doctest.DocTestParser().get_doctest(block, globs, where, where, 0)
            test.globs = globs
            runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
            out: list[str] = []
            runner.run(test, out=out.append, clear_globs=False)
            assert runner.failures == 0, "".join(out)
            ran += runner.tries
        else:
            exec(compile(block, where, "exec"), globs)
    assert ran >= 4
    assert CheckpointManager(tmp_path / "run1").steps() == [1000, 1100, 1200]


def test_ndckpt_exports_the_manager() -> None:
    assert ndckpt.CheckpointManager is CheckpointManager
    assert "CheckpointManager" in ndckpt.__all__


@pytest.mark.parametrize("async_save", [False, "thread"], ids=["sync", "async"])  # the spy is in this process
def test_first_save_trims_what_an_interrupted_run_left_beyond_keep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, async_save: bool | str
) -> None:
    """A run killed between a save and its rotation leaves keep + 1; a second such kill must not make it
    keep + 2: before its first write a manager rotates, so at most keep + 1 exist at any moment."""
    with CheckpointManager(tmp_path, keep=None) as old:
        for s in range(5):
            old.save(s, {"x": np.full(4, s)})
    seen: list[list[int]] = []
    real_save = ndckpt._coordination.save

    def spy(path: Any, *args: Any, **kwargs: Any) -> None:
        seen.append(sorted(int(p.name[5:17]) for p in tmp_path.glob("ckpt-*.ndckpt")))
        real_save(path, *args, **kwargs)

    monkeypatch.setattr(ndckpt._coordination, "save", spy)  # the local coordinator's save
    with CheckpointManager(tmp_path, keep=3, async_save=async_save) as mgr:
        assert mgr.steps() == [0, 1, 2, 3, 4]  # opening deletes nothing
        mgr.save(5, {"x": np.full(4, 5)})
        mgr.wait()
        mgr.save(6, {"x": np.full(4, 6)})
        mgr.wait()
        assert mgr.steps() == [4, 5, 6]
    assert seen == [[2, 3, 4], [3, 4, 5]]
