"""A writer killed at any point never damages the checkpoint at its path.

A child process saves a 64 MiB state (16 RAW frames of 2 MiB and 8 LZ4 frames of 4 MiB, so
both styles and many frames) over a good checkpoint, and the parent SIGKILLs it at many
points of the save:

- *between frames*: the child's progress callback stops it (SIGSTOP) after frame k, for every
  k; the parent then kills it;
- *mid-frame*: the parent watches the temporary file grow and kills the child when it reaches
  k% of the final size, for several k (the size actually reached is recorded);
- *around the rename*: ``os.fsync``/``os.replace`` are wrapped in the child so that it stops
  itself right before the file's fsync, right before the rename and right after it.

After every kill the path must load (and ``verify``) as exactly the old checkpoint, or (only
once the rename happened) exactly the new one: every array's bytes, dtype and shape, and the
metadata. Temporary files a killed writer leaves behind must not disturb the next save, which
never reuses them, and a save that fails in-process removes its own temporary file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import digest

import ndckpt
from ndckpt import CheckptIOError, _files

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals")

STATE_CODE = textwrap.dedent(
    """
    import numpy as np

    STYLE = {f"z/{i}": "lz4" for i in range(8)}

    def state(seed):
        # 16 RAW arrays of 2 MiB (a frame each) and 8 LZ4 arrays of 4 MiB (a frame each).
        raw = {str(i): (np.arange(1 << 18, dtype="<u8") * (2 * seed + 1) + i) for i in range(16)}
        z = {str(i): (np.arange(1 << 19, dtype="<u8") // (seed + 7) + i) for i in range(8)}
        return {"r": raw, "z": z, "seed": np.array(seed)}
    """
)
_NS: dict[str, Any] = {}
exec(STATE_CODE, _NS)  # the same code the child runs
state, STYLE = _NS["state"], _NS["STYLE"]

#: A long-lived helper process: it imports ndckpt and builds the new state once, then forks one
#: writer per crash point (starting a fresh interpreter per point would cost most of the test).
#: Protocol, one line each: parent -> "path stop"; helper -> "pid N", then "status S" once the
#: writer is gone (S as os.waitpid reports it).
HELPER = STATE_CODE + textwrap.dedent(
    """
    import os, signal, sys
    import ndckpt

    NEW = state(2)

    def write(path, stop):
        me = os.getpid()

        def pause():
            os.kill(me, signal.SIGSTOP)  # the test SIGKILLs us while we are stopped

        progress = None
        if stop.startswith("frame:"):
            target, frames = int(stop[6:]), [0]

            def progress(done, total):
                if done:
                    frames[0] += 1
                    if frames[0] == target:
                        pause()

        elif stop in ("before-fsync", "before-replace", "after-replace"):
            real_fsync, real_replace = os.fsync, os.replace

            def fsync(fd):
                if stop == "before-fsync":
                    pause()
                return real_fsync(fd)

            def replace(src, dst):
                if stop == "before-replace":
                    pause()
                real_replace(src, dst)
                if stop == "after-replace":
                    pause()

            os.fsync, os.replace = fsync, replace
        ndckpt.save(path, NEW, style=STYLE, metadata={"seed": 2}, progress=progress, threads=2)

    print("ready", flush=True)
    for line in sys.stdin:
        path, stop = line.split()
        pid = os.fork()
        if pid == 0:
            try:
                write(path, stop)
            except BaseException:
                os._exit(1)
            os._exit(0)
        print(f"pid {pid}", flush=True)
        print(f"status {os.waitpid(pid, 0)[1]}", flush=True)
    """
)

OLD, NEW = 1, 2


DIGESTS = {s: digest(state(s)) for s in (OLD, NEW)}


def which(path: Path) -> int:
    """OLD or NEW: the checkpoint at ``path``, checked whole (any other content fails)."""
    with ndckpt.open(path, verify=True) as r:  # every frame's checksum
        seed = r.metadata["seed"]
        got = digest(r.load())
    assert seed in DIGESTS, seed
    assert got == DIGESTS[seed], f"the file says seed {seed} but its arrays differ"
    return int(seed)


def temps(d: Path) -> list[Path]:
    return sorted(d.glob(".*.ndckpt-tmp-*"))


@pytest.fixture(scope="module")
def sizes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The old checkpoint's bytes and the new one's size."""
    d = tmp_path_factory.mktemp("ref")
    ndckpt.save(d / "old", state(OLD), style=STYLE, metadata={"seed": OLD})
    ndckpt.save(d / "new", state(NEW), style=STYLE, metadata={"seed": NEW})
    with ndckpt.open(d / "new") as r:
        nframes = len({f for row in r.info() for f in row["frames"]})
    return {"old": (d / "old").read_bytes(), "new_size": (d / "new").stat().st_size, "nframes": nframes}


class Helper:
    """The helper process (see HELPER); one per module."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HELPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"helper died ({self.proc.poll()})"
        return line.strip()

    def start(self, path: Path, stop: str) -> Writer:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{path} {stop}\n")
        self.proc.stdin.flush()
        key, pid = self._line().split()
        assert key == "pid"
        return Writer(self, int(pid))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


class Writer:
    """A forked writer saving NEW over a path, stopped or killed by the test."""

    def __init__(self, helper: Helper, pid: int) -> None:
        self.helper, self.pid = helper, pid
        self.status: int | None = None

    def state(self) -> str:
        """The process state letter from /proc ("T" stopped, "R"/"S"/"D" running, "" gone)."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return ""

    def wait_stopped(self, timeout: float = 60.0) -> None:
        """Until the writer has stopped itself (SIGSTOP)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            st = self.state()
            if st == "T":
                return
            assert st not in ("", "Z"), "the writer exited before stopping"
            time.sleep(0.001)
        pytest.fail("the writer did not stop")

    def running(self) -> bool:
        return self.state() not in ("", "Z")

    def kill(self) -> None:
        """SIGKILL the writer (if still there) and collect how it ended."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.finish()

    def finish(self) -> int:
        if self.status is None:
            key, status = self.helper._line().split()
            assert key == "status"
            self.status = int(status)
        return self.status


@pytest.fixture(scope="module")
def helper() -> Any:
    h = Helper()
    yield h
    h.close()


def _fresh(d: Path, sizes: dict[str, Any]) -> Path:
    path = d / "ckpt"
    path.write_bytes(sizes["old"])
    return path


def test_kill_between_frames(tmp_path: Path, sizes: dict[str, Any], helper: Helper) -> None:
    """Stopped and killed after each frame (each is a crash point): the old checkpoint, whole."""
    points = 0
    for k in range(1, sizes["nframes"] + 1):
        path = _fresh(tmp_path, sizes)
        w = helper.start(path, f"frame:{k}")
        w.wait_stopped()
        written = sum(p.stat().st_size for p in temps(tmp_path))
        w.kill()
        assert os.WIFSIGNALED(w.status or 0)
        assert which(path) == OLD, f"killed after frame {k} ({written} bytes written)"
        points += 1
    assert points == sizes["nframes"] >= 24


@pytest.mark.parametrize("percent", [0, 1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99, 100])
def test_kill_mid_write(tmp_path: Path, sizes: dict[str, Any], helper: Helper, percent: int) -> None:
    """Killed as soon as the temporary file reaches ``percent``% of the final size (0: as soon
    as it exists; 100: once fully written, before or during fsync/rename): old or new, whole."""
    path = _fresh(tmp_path, sizes)
    goal = sizes["new_size"] * percent // 100
    w = helper.start(path, "run")
    reached = -1
    end = time.monotonic() + 60
    while time.monotonic() < end and w.running():
        tmp = temps(tmp_path)
        try:
            size = tmp[0].stat().st_size if tmp else -1
        except FileNotFoundError:  # renamed just now
            size = sizes["new_size"]
        if size >= goal:
            reached = size
            break
    w.kill()
    got = which(path)
    if os.WIFSIGNALED(w.status or 0):
        assert got == OLD or (got == NEW and reached == sizes["new_size"]), (percent, reached, got)
    else:  # the save won the race and finished: the new checkpoint, whole
        assert w.status == 0
        assert got == NEW


@pytest.mark.parametrize(("stop", "expect"), [("before-fsync", OLD), ("before-replace", OLD), ("after-replace", NEW)])
def test_kill_around_rename(tmp_path: Path, sizes: dict[str, Any], helper: Helper, stop: str, expect: int) -> None:
    """Right before fsync, right before os.replace, right after it: old, old, new."""
    path = _fresh(tmp_path, sizes)
    w = helper.start(path, stop)
    w.wait_stopped()
    left = temps(tmp_path)
    w.kill()
    assert which(path) == expect
    if stop == "after-replace":
        assert left == []
    else:
        assert len(left) == 1
        assert left[0].stat().st_size == sizes["new_size"], "the temporary file was complete"


def test_stale_temporary_files_do_not_disturb_the_next_save(
    tmp_path: Path, sizes: dict[str, Any], helper: Helper
) -> None:
    """A killed writer leaves its temporary file; the next save of that target (in another
    process, or in this one) removes it since its pid is gone, never reuses or renames one,
    and the path holds exactly what that save wrote."""
    path = _fresh(tmp_path, sizes)
    left: list[list[Path]] = []
    for stop in ("frame:3", "before-replace"):
        w = helper.start(path, stop)
        w.wait_stopped()
        w.kill()
        left.append(temps(tmp_path))
    assert len(left[0]) == len(left[1]) == 1
    assert left[0] != left[1]
    assert path.read_bytes() == sizes["old"]
    # Files whose names look like temporary files of this target but that no dead writer of
    # this host left: one of *this* process, one of the pre-host-tag form. Never touched.
    kept = {
        tmp_path / _files.temp_name("ckpt"): b"junk",
        tmp_path / f".ckpt.ndckpt-tmp-{os.getpid()}-00000000": b"old form",
    }
    for p, data in kept.items():
        p.write_bytes(data)
    ndckpt.save(path, {"x": np.arange(5)}, metadata={"seed": 99})
    assert ndckpt.load(path)["x"].tolist() == [0, 1, 2, 3, 4]
    assert {p: p.read_bytes() for p in temps(tmp_path)} == kept
    assert helper.start(path, "run").finish() == 0
    assert which(path) == NEW
    assert {p: p.read_bytes() for p in temps(tmp_path)} == kept


@pytest.mark.parametrize("fail_at", ["write", "fsync", "replace", "array"])
def test_failed_save_removes_its_temporary_file(
    tmp_path: Path, sizes: dict[str, Any], monkeypatch: pytest.MonkeyPatch, fail_at: str
) -> None:
    """A save that fails (write error mid-way, fsync error, rename error, a bad array found
    after the temporary file was created) raises, removes its temporary file and leaves the
    old checkpoint untouched."""
    path = _fresh(tmp_path, sizes)
    arrays: dict[str, Any] = state(NEW)
    if fail_at == "write":
        real = os.write
        budget = [20 << 20]

        def write(fd: int, data: Any) -> int:
            if os.fstat(fd).st_size + len(memoryview(data)) > budget[0]:
                raise OSError(28, "No space left on device")
            return real(fd, data)

        monkeypatch.setattr(os, "write", write)
    elif fail_at == "fsync":

        def fsync(fd: int) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fsync", fsync)
    elif fail_at == "replace":

        def replace(src: Any, dst: Any) -> None:
            raise OSError(18, "Invalid cross-device link")

        monkeypatch.setattr(os, "replace", replace)
    else:
        arrays["r"]["bad"] = np.array([object()])  # rejected before anything is written
    with pytest.raises(ndckpt.CheckptError) as ei:
        ndckpt.save(path, arrays, style=STYLE, metadata={"seed": NEW})
    monkeypatch.undo()
    if fail_at != "array":
        assert isinstance(ei.value, CheckptIOError)
        assert ei.value.errno == {"write": 28, "fsync": 5, "replace": 18}[fail_at]
    assert temps(tmp_path) == []
    assert path.read_bytes() == sizes["old"]
