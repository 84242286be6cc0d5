"""The writer process of ``CheckpointManager(async_save="process")``: bytes, errors, crashes, lifecycle.

Timing is not asserted here (benchmarks/bench_async.py measures it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ndckpt
from ndckpt import CheckpointManager, CheckptIOError, InvalidArgumentError
from ndckpt._bgprocess import WriterDiedError, available

pytestmark = pytest.mark.skipif(not available(), reason="the writer process needs Linux")

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def hidden(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


def gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.005)
    return False


def mixed_state(seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    padded = np.dtype({"names": ["a", "b"], "formats": ["u1", "<f8"], "offsets": [0, 8], "itemsize": 24})
    raw = np.frombuffer(rng.bytes(24 * 1000), padded)
    return {
        "big": rng.random(300_001),
        "fortran": np.asfortranarray(rng.random((70, 90))),
        "strided": rng.random((90, 140))[:, ::2],
        "padded": raw.copy(),
        "empty": np.zeros((0, 3)),
        "group": {},
        "counts": np.arange(5000, dtype=np.int64) % 7,
        "values": {"name": "run", "list": [1, 2.5, None], "scalar": np.float32(3.5), "n": 7},
    }


def assert_same(got: Any, want: Any) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict)
        assert sorted(got) == sorted(want)
        for k in want:
            assert_same(got[k], want[k])
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype
        assert got.shape == want.shape
        assert np.asarray(got).tobytes() == np.ascontiguousarray(want).tobytes()
    else:
        assert got == want
        assert type(got) is type(want)


def test_true_means_the_process_writer_here(tmp_path: Path) -> None:
    with CheckpointManager(tmp_path, async_save=True) as mgr:
        assert "async_save='process'" in repr(mgr)
        assert mgr._process is not None
        assert mgr._process.pid is not None


@pytest.mark.parametrize("bad", [1, 0, "yes", "Process", None, 1.0])
def test_bad_async_save_is_refused(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="async_save"):
        CheckpointManager(tmp_path, async_save=bad)


@pytest.mark.parametrize("style", ["raw", "lz4", {"big": "lz4", "counts": "lz4"}])
def test_bytes_equal_a_synchronous_save_and_restore(tmp_path: Path, style: Any) -> None:
    state = mixed_state()
    meta = {"run": "r", "k": [1, 2]}
    with CheckpointManager(tmp_path / "p", async_save="process", style=style, keep=2) as p:
        for step in (1, 2, 3):
            assert p.save(step, state, metadata=meta)
        p.wait()
        assert p.steps() == [2, 3]  # rotation ran in the writer
        ndckpt.save(tmp_path / "sync.ndckpt", state, style=style, metadata=meta)
        assert p.path(3).read_bytes() == (tmp_path / "sync.ndckpt").read_bytes()
        assert_same(p.restore(), state)
        assert p.metadata() == meta


@settings(max_examples=25, deadline=None)
@given(
    arrays=st.lists(
        st.tuples(
            st.sampled_from(["<f8", ">i4", "u1", "<c16", "?", "<f2"]),
            st.lists(st.integers(0, 40), min_size=0, max_size=3),
            st.booleans(),
        ),
        min_size=1,
        max_size=5,
    ),
    style=st.sampled_from(["raw", "lz4"]),
    seed=st.integers(0, 2**16),
)
def test_any_layout_is_written_as_a_synchronous_save_would(
    shared_manager: tuple[CheckpointManager, Path], arrays: list[tuple[str, list[int], bool]], style: str, seed: int
) -> None:
    mgr, sync_path = shared_manager
    rng = np.random.default_rng(seed)
    state: dict[str, Any] = {}
    for i, (dtype, shape, fortran) in enumerate(arrays):
        a = np.frombuffer(rng.bytes(int(np.prod(shape)) * np.dtype(dtype).itemsize), dtype).reshape(shape)
        state[f"a{i}"] = np.asfortranarray(a) if fortran else a
    mgr._style = style  # one writer process across examples: its startup is paid once
    assert mgr.save(seed, state)
    mgr.wait()
    ndckpt.save(sync_path, state, style=style)
    assert mgr.path(seed).read_bytes() == sync_path.read_bytes()
    assert_same(mgr.restore(seed), state)


@pytest.fixture(scope="module")
def shared_manager(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("shared")
    with CheckpointManager(d / "ckpts", async_save="process", keep=1) as mgr:
        yield mgr, d / "sync.ndckpt"


def test_an_error_in_the_writer_is_raised_once_and_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    d = tmp_path / "ckpts"
    state = {"a": np.arange(1000)}
    mgr = CheckpointManager(d, async_save="process", keep=None)
    mgr.save(1, state)
    mgr.wait()
    shutil.rmtree(d)
    d.write_bytes(b"not a directory")  # the writer's save now fails: ENOTDIR
    mgr.save(2, state)
    with pytest.raises(CheckptIOError) as info:
        mgr.wait()
    assert any("background save of step 2" in n for n in info.value.__notes__)
    mgr.wait()  # raised once
    d.unlink()
    d.mkdir()
    mgr.save(3, state)  # the same writer goes on
    mgr.save(4, state)
    mgr.wait()
    assert mgr.steps() == [3, 4]
    mgr.close()


def test_an_error_surfaces_at_the_next_save_once(tmp_path: Path) -> None:
    d = tmp_path / "ckpts"
    state = {"a": np.arange(1000)}
    mgr = CheckpointManager(d, async_save="process")
    shutil.rmtree(d)
    d.write_bytes(b"x")
    mgr.save(1, state)
    time.sleep(0.01)
    deadline = time.monotonic() + 60
    while mgr._writer.inflight is not None and not mgr._writer.inflight.future.done():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(CheckptIOError):
        mgr.save(2, state)  # raises the error of step 1, saves nothing
    d.unlink()
    d.mkdir()
    assert mgr.save(3, state)
    mgr.close()
    assert CheckpointManager(d).steps() == [3]


def test_sigkill_of_the_writer_mid_save_is_a_clear_error_and_the_next_save_restarts_it(tmp_path: Path) -> None:
    big = {"x": np.random.default_rng(0).random(48 << 20 >> 3)}  # 48 MiB of incompressible LZ4 work
    mgr = CheckpointManager(tmp_path, async_save="process", style="lz4", keep=None)
    mgr.save(1, {"x": np.ones(10)})
    mgr.wait()
    pid = mgr._process.pid if mgr._process is not None else None
    assert pid is not None
    mgr.save(2, big)
    deadline = time.monotonic() + 60
    while not hidden(tmp_path):  # the writer has started the file
        assert time.monotonic() < deadline
        assert not mgr._writer.inflight.future.done()
        time.sleep(0.001)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WriterDiedError, match=r"pid \d+\) was killed by SIGKILL .* step 2") as info:
        mgr.wait()
    assert isinstance(info.value, CheckptIOError)
    assert mgr.latest() == 1
    assert_same(mgr.restore(), {"x": np.ones(10)})
    assert mgr.save(3, {"x": np.full(10, 3.0)})  # a new writer
    mgr.wait()
    assert mgr._process is not None
    assert mgr._process.pid != pid
    assert mgr.steps() == [1, 3]
    assert CheckpointManager(tmp_path).steps() == [1, 3]  # the dead writer's temporary is stale: removed
    assert hidden(tmp_path) == []
    mgr.close()


def test_a_writer_that_died_idle_is_replaced_silently(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, async_save="process")
    pid = mgr._process.pid if mgr._process is not None else None
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while "State:\tZ" not in Path(f"/proc/{pid}/status").read_text():  # dead, not yet reaped (our child)
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert mgr.save(1, {"a": np.arange(3)})  # nothing was lost: no error, a new writer
    mgr.wait()
    assert mgr.steps() == [1]
    mgr.close()


CHILD = """
import os, sys, numpy as np
from ndckpt import CheckpointManager
d = sys.argv[1]
mgr = CheckpointManager(d, async_save="process", style="lz4", keep=None)
mgr.save(1, {"x": np.ones(10)})
mgr.wait()
print(mgr._process.pid, flush=True)
mgr.save(2, {"x": np.random.default_rng(0).random(6 << 20)})
os.kill(os.getpid(), 9)
"""


def test_sigkill_of_the_parent_during_a_save_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    r = run_python(CHILD, str(tmp_path))
    assert r.returncode == -signal.SIGKILL, r.stderr
    writer = int(r.stdout.split()[0])
    assert gone(writer), "the writer outlived its parent"
    mgr = CheckpointManager(tmp_path)
    assert mgr.steps() in ([1], [1, 2])  # step 2 complete or absent, never partial
    assert hidden(tmp_path) == []
    assert_same(mgr.restore(1), {"x": np.ones(10)})


def test_interpreter_exit_finishes_the_save_in_flight(tmp_path: Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "from ndckpt import CheckpointManager\n"
        "mgr = CheckpointManager(sys.argv[1], async_save='process', style='lz4')\n"
        "mgr.save(5, {'a': np.arange(4 << 20)})\n"
    )
    r = run_python(code, str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    mgr = CheckpointManager(tmp_path)
    assert mgr.steps() == [5]
    assert_same(mgr.restore(), {"a": np.arange(4 << 20)})


def test_interpreter_exit_reports_a_failure_nobody_waited_for(tmp_path: Path) -> None:
    code = (
        "import shutil, sys, numpy as np\n"
        "from ndckpt import CheckpointManager\n"
        "mgr = CheckpointManager(sys.argv[1], async_save='process')\n"
        "shutil.rmtree(sys.argv[1]); open(sys.argv[1], 'wb').close()\n"
        "mgr.save(5, {'a': np.ones(100)})\n"
    )
    r = run_python(code, str(tmp_path / "d"))
    assert r.returncode == 0
    assert "background save of step 5" in r.stderr
    assert "never waited for" in r.stderr


def test_close_stops_the_writer_and_a_later_save_starts_another(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, async_save="process")
    mgr.save(1, {"a": np.arange(10)})
    first = mgr._process.pid if mgr._process is not None else None
    mgr.close()
    assert first is not None
    assert gone(first)
    assert mgr.staging_nbytes == 0
    mgr.save(2, {"a": np.arange(20)})
    mgr.wait()
    assert mgr._process is not None
    assert mgr._process.pid not in (None, first)
    assert_same(mgr.restore(), {"a": np.arange(20)})
    mgr.close()


def test_a_growing_state_gets_a_new_shared_arena(tmp_path: Path) -> None:
    with CheckpointManager(tmp_path, async_save="process", keep=None) as mgr:
        for step, n in enumerate([10, 1000, 10, 1 << 20, 1 << 20], start=1):
            mgr.save(step, {"a": np.arange(n)})
        mgr.wait()
        assert mgr._staging.allocations == 3
        for step, n in enumerate([10, 1000, 10, 1 << 20, 1 << 20], start=1):
            assert_same(mgr.restore(step), {"a": np.arange(n)})


def test_the_writer_ignores_preemption_signals(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, async_save="process")
    pid = mgr._process.pid if mgr._process is not None else None
    assert pid is not None
    mgr.save(1, {"a": np.arange(10)})
    mgr.wait()  # the writer is up and serving
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        os.kill(pid, sig)
    time.sleep(0.1)
    assert mgr.save(2, {"a": np.arange(20)})
    mgr.wait()
    assert mgr._process is not None
    assert mgr._process.pid == pid
    mgr.close()
