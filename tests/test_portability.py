"""Fallbacks for platform-specific calls, proved on Linux by taking each call away.

Each test removes one call (``monkeypatch.delattr``, or a ``-c`` preamble in a
fresh interpreter when the call is used at import; ``os.fork`` goes with
``os.register_at_fork``, as on Windows, since the stdlib's own modules pair them) and checks that the
feature still works: ``import ndckpt`` without ``signal.SIGUSR1`` (Windows) or
``os.register_at_fork``, ``load(mmap=False)`` without ``os.preadv`` (and
without ``os.pread``), the thread count without ``os.sched_getaffinity``,
streaming loads without ``mmap.MAP_PRIVATE``, the manager's signal handlers
with SIGTERM only, its stale-temporary sweep where process ids cannot be
probed, and the demo's kill where there is no SIGKILL.
"""

from __future__ import annotations

import io
import json
import mmap
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ndckpt
from ndckpt import _files, _platform, parallel
from ndckpt.demo import job as demo
from ndckpt.manager import CheckpointManager


def _state() -> dict[str, Any]:
    rng = np.random.default_rng(5)
    return {
        "f": rng.random((300, 257)),
        "f2": rng.random(1 << 20).astype(np.float32),
        "i": np.arange(50_000, dtype=np.int64) % 7,
        "g": {"m": (rng.random(70_000) > 0.5).astype(np.uint8), "s": np.float32(2.5)},
    }


def _equal(a: Any, b: Any) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            _equal(a[k], b[k])
        else:
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
            assert np.asarray(a[k]).dtype == np.asarray(b[k]).dtype


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    p = tmp_path / "s.ndckpt"
    ndckpt.save(p, _state(), style={"i": "lz4", "g/m": "lz4"})
    return p


# ----------------------------------------------------------------------------------------------
# import ndckpt where calls used at import time are missing
# ----------------------------------------------------------------------------------------------

_WITHOUT = """
import mmap, os, signal
for mod, name in [(signal, "SIGUSR1"), (os, "fork"), (os, "register_at_fork"), (os, "preadv"), (os, "pread"),
                  (os, "sched_getaffinity"), (mmap, "MAP_PRIVATE")]:
    delattr(mod, name)
"""

_CHILD = """
import io, json, os, sys
import numpy as np
import ndckpt
from ndckpt.manager import CheckpointManager
d = sys.argv[1]
a = np.arange(200_000, dtype=np.float64)
ndckpt.save(os.path.join(d, "x.ndckpt"), {"a": a, "b": a.astype(np.int32)}, style={"b": "lz4"})
got = ndckpt.load(os.path.join(d, "x.ndckpt"), mmap=False, threads=3)
buf = io.BytesIO()
ndckpt.save(buf, {"b": a.astype(np.int32)}, style="lz4")
streamed = ndckpt.load(io.BytesIO(buf.getvalue()))
mgr = CheckpointManager(os.path.join(d, "run"))
mgr.install_signal_handlers()
mgr.save(1, {"a": a}, force=True)
mgr.restore_signal_handlers()
print(json.dumps({"equal": bool((got["a"] == a).all() and (got["b"] == a.astype(np.int32)).all()),
                  "streamed": bool((streamed["b"] == a.astype(np.int32)).all()),
                  "steps": mgr.steps(), "threads": ndckpt.parallel.resolve_threads(None)}))
"""


def test_import_and_use_without_platform_calls(tmp_path: Path) -> None:
    """Before the fallbacks, ``import ndckpt`` failed here (``signal.SIGUSR1`` in a default argument)."""
    code = textwrap.dedent(_WITHOUT) + textwrap.dedent(_CHILD)
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out == {"equal": True, "streamed": True, "steps": [1], "threads": max(1, os.cpu_count() or 1)}


# ----------------------------------------------------------------------------------------------
# Positioned reads
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", [("preadv",), ("preadv", "pread")], ids=["no-preadv", "no-preadv-no-pread"])
@pytest.mark.parametrize("threads", [1, 4])
def test_load_copies_without_preadv(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch, missing: tuple[str, ...], threads: int
) -> None:
    monkeypatch.setattr(_platform, "FALLBACK_CHUNK", 4096 + 3)  # many short reads per copy
    for name in missing:
        monkeypatch.delattr(os, name)
    got = ndckpt.load(ckpt, mmap=False, threads=threads)
    _equal(got, _state())
    assert got["f"].flags.writeable
    ndckpt.verify(ckpt, threads=threads)


def test_preadinto_fallbacks_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "b"
    data = bytes(range(256)) * 40
    p.write_bytes(data)
    fd = os.open(p, _platform.open_flags(os.O_RDONLY))
    try:
        results = []
        for remove in ((), ("preadv",), ("preadv", "pread")):
            with monkeypatch.context() as m:
                for name in remove:
                    m.delattr(os, name)
                buf = bytearray(1000)
                n = _platform.preadinto(fd, memoryview(buf), 5000)
                tail = bytearray(100)
                at_end = _platform.preadinto(fd, memoryview(tail), len(data) - 10)
                results.append((n, bytes(buf), at_end, bytes(tail[:10]), _platform.pread(fd, 4, len(data))))
        assert results == [(1000, data[5000:6000], 10, data[-10:], b"")] * 3
    finally:
        os.close(fd)


def test_open_flags_adds_what_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "O_BINARY", 1 << 30, raising=False)
    assert _platform.open_flags(os.O_RDONLY) & (1 << 30)
    monkeypatch.delattr(os, "O_BINARY")
    monkeypatch.delattr(os, "O_CLOEXEC")
    assert _platform.open_flags(os.O_RDONLY) == os.O_RDONLY


def test_manager_reads_heads_without_pread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = CheckpointManager(tmp_path, async_save=False)
    mgr.save(3, {"a": np.arange(10)}, force=True)
    monkeypatch.delattr(os, "pread")
    assert CheckpointManager(tmp_path).steps() == [3]
    assert CheckpointManager(tmp_path).latest() == 3


# ----------------------------------------------------------------------------------------------
# Threads, fork, mappings
# ----------------------------------------------------------------------------------------------


def test_thread_count_without_sched_getaffinity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity")
    assert parallel.resolve_threads(None) == max(1, os.cpu_count() or 1)
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert parallel.resolve_threads(None) == 1


def test_at_fork_without_register_at_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(os, "register_at_fork", lambda **kw: calls.append(kw))
    assert _platform.at_fork_in_child(print) is True
    assert calls == [{"after_in_child": print}]
    monkeypatch.delattr(os, "register_at_fork")
    assert _platform.at_fork_in_child(print) is False


def test_streaming_load_without_map_private(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.BytesIO()
    ndckpt.save(buf, _state(), style="lz4")
    monkeypatch.delattr(mmap, "MAP_PRIVATE")
    m = _platform.anonymous_map(4096)
    assert len(m) == 4096
    assert m[:16] == bytes(16)
    m.close()
    _equal(ndckpt.load(io.BytesIO(buf.getvalue())), _state())


# ----------------------------------------------------------------------------------------------
# Signals and processes
# ----------------------------------------------------------------------------------------------


def test_default_signals_are_those_that_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _platform.default_preempt_signals() == (signal.SIGTERM, signal.SIGUSR1)
    monkeypatch.delattr(signal, "SIGUSR1")
    assert _platform.default_preempt_signals() == (signal.SIGTERM,)


def test_signal_handlers_without_sigusr1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usr1 = signal.SIGUSR1
    before_usr1, before_term = signal.getsignal(usr1), signal.getsignal(signal.SIGTERM)
    monkeypatch.delattr(signal, "SIGUSR1")
    mgr = CheckpointManager(tmp_path, every=1000, async_save=False)
    mgr.install_signal_handlers()
    try:
        assert signal.getsignal(usr1) == before_usr1  # not touched
        assert signal.getsignal(signal.SIGTERM) != before_term
        assert not mgr.save(1, {"a": np.arange(3)})
        signal.raise_signal(signal.SIGTERM)
        assert mgr.save(2, {"a": np.arange(3)})
        assert mgr.preempted
    finally:
        mgr.restore_signal_handlers()
    assert signal.getsignal(signal.SIGTERM) == before_term


def test_stale_sweep_keeps_files_where_pids_cannot_be_probed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    name = _files.temp_name("ckpt-000000000002.ndckpt", pid=pid)
    mgr = CheckpointManager(tmp_path)  # sweeps once on opening: create the leftover after it
    (tmp_path / name).write_bytes(b"partial")
    monkeypatch.setattr(_platform, "can_probe_pids", lambda: False)

    def no_kill(*args: Any) -> None:
        raise AssertionError("os.kill must not be called where it is not a probe")

    monkeypatch.setattr(os, "kill", no_kill)
    assert mgr.remove_stale_temporaries() == []
    assert (tmp_path / name).exists()
    monkeypatch.undo()
    assert mgr.remove_stale_temporaries() == [tmp_path / name]  # a dead pid, probed: removed


def test_can_probe_pids_only_on_posix(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _platform.can_probe_pids() is True
    monkeypatch.setattr(os, "name", "nt")
    assert _platform.can_probe_pids() is False


class _Proc:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def kill(self) -> None:
        self.calls.append("kill")

    def send_signal(self, sig: int) -> None:
        self.calls.append(sig)


def test_demo_kill_without_sigkill(monkeypatch: pytest.MonkeyPatch) -> None:
    p = _Proc()
    demo._hard_kill(p)  # type: ignore[arg-type]
    assert p.calls == [signal.SIGKILL]
    assert demo._was_hard_killed(-signal.SIGKILL)
    assert not demo._was_hard_killed(1)
    monkeypatch.delattr(signal, "SIGKILL")
    p = _Proc()
    demo._hard_kill(p)  # type: ignore[arg-type]
    assert p.calls == ["kill"]
    assert demo._was_hard_killed(1)
    assert not demo._was_hard_killed(0)
