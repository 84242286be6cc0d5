"""Concurrent readers and writers: every read sees one whole checkpoint.

- Many threads load, open/get, verify and stream the same file at once (each call also
  using worker threads): every result is the saved state, byte for byte.
- One Reader shared by many threads: ``get`` is safe to call concurrently.
- A reader running while another *process* keeps atomically replacing the file (saving two
  states in turn) sees the old or the new checkpoint, whole, every time; a Reader opened
  before a replacement keeps reading the checkpoint it opened.
- Several threads saving to one path at once: the path ends up holding exactly one of their
  checkpoints, and no temporary file is left.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import READERS, digest

import ndckpt

STATE_CODE = textwrap.dedent(
    """
    import numpy as np

    STYLE = {"z": "lz4", "g/small": "lz4"}

    def state(seed):
        return {
            "big": np.arange(3 << 20, dtype="<u4") * (seed + 1),  # 12 MiB RAW
            "z": (np.arange(6 << 20, dtype="<u2") // (seed + 3)),  # 12 MiB LZ4, 3 frames
            "g": {"small": np.full(1000, seed, "<f8"), "t": np.array([(seed, 1.5)], [("a", "<i8"), ("b", "<f4")])},
            "seed": np.array(seed),
        }
    """
)
_NS: dict[str, Any] = {}
exec(STATE_CODE, _NS)
state, STYLE = _NS["state"], _NS["STYLE"]


DIGESTS = {s: digest(state(s)) for s in (1, 2)}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("c") / "ckpt"
    ndckpt.save(p, state(1), style=STYLE)
    return p


def _run_threads(n: int, fn: Any) -> list[Any]:
    """``fn(i)`` in ``n`` threads started together; re-raise the first error."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(30)
            results[i] = fn(i)
        except BaseException as e:
            errors.append(e)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    if errors:
        raise errors[0]
    return results


def test_many_threads_read_one_file(ckpt: Path) -> None:
    """16 threads, each loading the file its own way three times over, all at once."""
    data = ckpt.read_bytes()
    ways = [
        lambda: READERS["load(path)"](path=ckpt),
        lambda: READERS["load(path, copy)"](path=ckpt, verify=True),
        lambda: READERS["load(bytes)"](data),
        lambda: READERS["open(path).load()"](path=ckpt),
        lambda: READERS["open(path).get"](path=ckpt, verify=True),
        lambda: READERS["load(BytesIO)"](data, verify=True),
        lambda: READERS["load(file)"](path=ckpt),
        lambda: (READERS["verify(path)"](path=ckpt), READERS["load(path)"](path=ckpt))[1],
    ]

    def work(i: int) -> list[dict[str, str]]:
        return [digest(ways[(i + j) % len(ways)]()) for j in range(3)]

    for per_thread in _run_threads(16, work):
        assert per_thread == [DIGESTS[1]] * 3


def test_one_reader_shared_by_threads(ckpt: Path) -> None:
    """One Reader (copies, verified) used by 12 threads at once: every get is whole."""
    names = sorted(DIGESTS[1])
    with ndckpt.open(ckpt, mmap=False, verify=True, threads=2) as r:

        def work(i: int) -> dict[str, str]:
            got = {n: r.get(n) for n in names[i % len(names) :] + names[: i % len(names)]}
            return digest(got)

        for d in _run_threads(12, work):
            assert d == DIGESTS[1]


REPLACER = STATE_CODE + textwrap.dedent(
    """
    import sys, ndckpt
    path, rounds = sys.argv[1], int(sys.argv[2])
    states = [state(1), state(2)]
    for i in range(rounds):
        ndckpt.save(path, states[i % 2], style=STYLE, threads=1)
    print("done", rounds, flush=True)
    """
)


def test_reader_while_another_process_replaces_the_file(tmp_path: Path) -> None:
    """A child saves state 1, 2, 1, 2, ... over the path while this process loads it in a loop
    (mapped, copied, streamed, lazily via open). Every load is one of the two states, whole;
    both are seen. A Reader opened before replacements keeps its checkpoint."""
    path = tmp_path / "ckpt"
    ndckpt.save(path, state(1), style=STYLE)
    early = ndckpt.open(path, mmap=False)
    proc = subprocess.Popen([sys.executable, "-c", REPLACER, str(path), "40"], stdout=subprocess.PIPE, text=True)
    seen = {1: 0, 2: 0}
    loads = 0
    ways = [
        lambda: READERS["load(path)"](path=path),
        lambda: READERS["load(path, copy)"](path=path, verify=True),
        lambda: READERS["load(file)"](path=path),
        lambda: READERS["open(path).get"](path=path),
    ]
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            got = digest(ways[loads % len(ways)]())
            seed = next((s for s, d in DIGESTS.items() if d == got), None)
            assert seed is not None, f"load {loads} is neither checkpoint, whole"
            seen[seed] += 1
            loads += 1
    finally:
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert out.split() == ["done", "40"]
    assert loads >= 8
    assert seen[1], seen
    assert seen[2], seen
    assert digest(early.load()) == DIGESTS[1], "a Reader keeps the checkpoint it opened"
    early.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_threads_saving_to_one_path(tmp_path: Path) -> None:
    """8 threads save different states to one path at once: each save succeeds (atomic rename),
    the path holds exactly one of them, and no temporary file is left."""
    path = tmp_path / "ckpt"
    small = {i: {"x": np.arange(200000, dtype="<i8") + i, "i": np.array(i)} for i in range(8)}

    def work(i: int) -> None:
        ndckpt.save(path, small[i], style="lz4" if i % 2 else "raw", threads=2)

    _run_threads(8, work)
    got = ndckpt.load(path, verify=True)
    i = int(got["i"])
    assert np.array_equal(got["x"], small[i]["x"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert os.path.getsize(path) > 0
