"""A SIGKILL at any file operation of an incremental save, rotation or cleanup loses nothing committed.

A child runs an incremental manager (keep=2) over 5 steps and SIGKILLs itself at its N-th
``os.fsync`` / ``os.replace`` / ``os.unlink`` (Path.unlink calls it), for every N: mid-save
(before a pack's or a manifest's fsync or rename), mid-rotation (deleting a manifest) and
mid-cleanup (deleting a pack). After each kill a new manager must list a latest step at least
as new as the last save that returned, restore every listed step bit-exactly, and after one
more save hold exactly the packs its checkpoints reference.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import digest

from ndckpt import CheckpointManager
from ndckpt._incremental import PACK_RE, read_manifest

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

STATE = textwrap.dedent(
    """
    import numpy as np

    def state(step):
        rng = np.random.default_rng(0)
        mesh = rng.random(3 << 17)                      # 3 MiB, never changes
        front = np.zeros((256, 1024), np.int32)         # 1 MiB pieces, one changes per step
        front[: step + 1, 0] = np.arange(step + 1)
        field = np.random.default_rng(step + 1).random(40_000)
        return {"mesh": mesh, "front": front, "field": field, "step": step}
    """
)

CHILD = STATE + textwrap.dedent(
    """
    import os, signal, sys
    from ndckpt import CheckpointManager

    limit = int(sys.argv[2])
    count = 0

    def wrap(fn):
        def w(*a, **k):
            global count
            count += 1
            if count == limit:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*a, **k)
        return w

    os.fsync, os.replace, os.unlink = wrap(os.fsync), wrap(os.replace), wrap(os.unlink)
    with CheckpointManager(sys.argv[1], keep=2, incremental=True, style={"field": "lz4"}) as mgr:
        for step in range(5):
            mgr.save(step, state(step))
            print("saved", step, flush=True)
    print("events", count, flush=True)
    """
)

ns: dict[str, object] = {}
exec(STATE, ns)


def run_child(d: Path, limit: int) -> list[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.run([sys.executable, "-c", CHILD, str(d), str(limit)], capture_output=True, text=True, env=env)
    assert p.returncode in (0, -signal.SIGKILL), p.stderr
    return p.stdout.split("\n")


def test_kill_at_every_file_operation(tmp_path: Path) -> None:
    lines = run_child(tmp_path / "count", 10**9)
    events = int(next(x for x in lines if x.startswith("events")).split()[1])
    assert events > 25
    for limit in range(1, events + 1):
        d = tmp_path / f"k{limit}"
        lines = run_child(d, limit)
        saved = [int(x.split()[1]) for x in lines if x.startswith("saved")]
        with CheckpointManager(d, keep=2, incremental=True) as mgr:
            steps = mgr.steps()
            if saved:
                assert steps, (limit, saved)
                assert steps[-1] >= saved[-1], (limit, steps, saved)
            for s in steps:
                got = mgr.restore(s)
                want = ns["state"](s)  # type: ignore[operator]
                assert got["step"] == s
                arrays = {k: v for k, v in got.items() if isinstance(v, np.ndarray)}
                assert digest(arrays) == digest({k: want[k] for k in arrays}), (limit, s)
            mgr.save(99, ns["state"](4))  # type: ignore[operator]
        packs = {p.name for p in d.iterdir() if PACK_RE.fullmatch(p.name)}
        refs = {n for p in d.glob("ckpt-*.ndckpt") for n, _ in read_manifest(p).packs}
        assert packs == refs, limit
        assert not [p for p in d.iterdir() if "tmp" in p.name], limit
