"""Incremental checkpoints (CheckpointManager(incremental=True)) against whole ones: bytes, save and restore time.

States (issue 16):

- ``issue16``: 416 MiB: a 256 MiB array that never changes, a 32 MiB field that changes
  completely every step, a 128 MiB array of which four scattered 1 MiB pieces change per step;
- ``nothing``: the same state, nothing changed since the last save;
- ``grayscott``: the demo's Gray-Scott state (``--gs-n``), stepped 20 steps between saves;
- ``small``: 20,000 arrays of 4 KiB of which 1 % (200) change per step.

For each directory (``--dirs``, default ``/dev/shm`` (tmpfs) and ``/work`` (real disk, durable:
ndckpt fsyncs every file and its directory)) and state: median over ``--repeat`` steps of the
wall time of ``mgr.save`` for a whole (``incremental=False``) and an incremental manager,
the bytes each save added to the directory (new files' sizes), and the time of ``restore()``
with ``mmap=False`` (copies: every byte read) and ``mmap=True`` (RAW as views where possible)
of the newest checkpoint, page cache warm. Prints a markdown table.

    .venv/bin/python benchmarks/bench_incremental.py [--dirs /dev/shm,/work] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ndckpt import CheckpointManager
from ndckpt.demo import GrayScott

MiB = 1 << 20


def issue16(rng: np.random.Generator) -> tuple[dict[str, Any], Callable[[int], int]]:
    state = {
        "mesh": rng.random(256 * MiB // 8),
        "field": rng.random(32 * MiB // 8),
        "front": rng.random(128 * MiB // 8),
        "step": 0,
    }
    front = state["front"].reshape(128, -1)  # row i = bytes [i MiB, (i+1) MiB)

    def advance(step: int) -> int:
        state["field"][:] = rng.random(state["field"].size)
        for k in range(4):
            front[(step * 37 + k * 31) % 128, :] += 1.0
        state["step"] = step
        return 32 * MiB + 4 * MiB

    return state, advance


def nothing(rng: np.random.Generator) -> tuple[dict[str, Any], Callable[[int], int]]:
    state, _ = issue16(rng)
    return state, lambda step: 0


def grayscott(n: int) -> tuple[dict[str, Any], Callable[[int], int]]:
    sim = GrayScott(n, seed=1)
    holder: dict[str, Any] = {}

    def advance(step: int) -> int:
        sim.step(20)
        holder.clear()
        holder.update(sim.state(copy=True))
        return -1  # not known in advance

    advance(0)
    return holder, advance


def small(rng: np.random.Generator) -> tuple[dict[str, Any], Callable[[int], int]]:
    arrays = {f"a{i:05d}": rng.random(512) for i in range(20_000)}
    state = {"arrays": arrays}

    def advance(step: int) -> int:
        for i in rng.choice(20_000, 200, replace=False):
            arrays[f"a{i:05d}"][0] += 1.0
        return 200 * 4096

    return state, advance


def dir_bytes(d: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in d.iterdir() if p.is_file()}


def run(
    base: Path, name: str, make: Callable[[], tuple[dict[str, Any], Callable[[int], int]]], repeat: int
) -> dict[str, Any]:
    res: dict[str, Any] = {"state": name}
    for incremental in (False, True):
        state, advance = make()
        d = Path(tempfile.mkdtemp(prefix=f"bench-incr-{name}-", dir=base))
        try:
            times, written, changed = [], [], []
            with CheckpointManager(d, keep=2, incremental=incremental) as mgr:
                mgr.save(0, state)  # the first save is whole in both
                for step in range(1, repeat + 1):
                    c = advance(step) if name != "nothing" else 0
                    before = dir_bytes(d)
                    t0 = time.perf_counter()
                    mgr.save(step, state)
                    times.append(time.perf_counter() - t0)
                    after = dir_bytes(d)
                    written.append(sum(n for f, n in after.items() if before.get(f) != n))
                    changed.append(c)
                nbytes = sum(a.nbytes for a in _arrays(state))
                rt = {}
                for mmap in (False, True):
                    ts = []
                    for _ in range(3):
                        t0 = time.perf_counter()
                        got = mgr.restore(mmap=mmap)
                        ts.append(time.perf_counter() - t0)
                        del got
                    rt[mmap] = min(ts)
            key = "incr" if incremental else "full"
            res[key] = {
                "save_s": statistics.median(times),
                "written": statistics.median(written),
                "restore_copy_s": rt[False],
                "restore_map_s": rt[True],
            }
            res["nbytes"] = nbytes
            res["changed"] = statistics.median(changed)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return res


def _arrays(tree: Any) -> list[np.ndarray[Any, Any]]:
    out: list[np.ndarray[Any, Any]] = []
    for v in tree.values():
        if isinstance(v, dict):
            out += _arrays(v)
        elif isinstance(v, np.ndarray):
            out.append(v)
    return out


def fmt_b(n: float) -> str:
    return f"{n / MiB:.2f} MiB" if n >= 0.01 * MiB else f"{n / 1024:.1f} KiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dirs", default="/dev/shm,/work")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--states", default="issue16,nothing,grayscott,small")
    ap.add_argument("--gs-n", type=int, default=1024)
    args = ap.parse_args()
    makers: dict[str, Callable[[], tuple[dict[str, Any], Callable[[int], int]]]] = {
        "issue16": lambda: issue16(np.random.default_rng(0)),
        "nothing": lambda: nothing(np.random.default_rng(0)),
        "grayscott": lambda: grayscott(args.gs_n),
        "small": lambda: small(np.random.default_rng(0)),
    }
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores")
    print()
    print(
        "| dir | state | size | changed | full: written / save | incr: written / save | "
        "incr save / full | restore copy full / incr | restore map full / incr |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for base in args.dirs.split(","):
        for name in args.states.split(","):
            r = run(Path(base), name, makers[name], args.repeat)
            f, i = r["full"], r["incr"]
            ch = "?" if r["changed"] < 0 else fmt_b(r["changed"])
            print(
                f"| {base} | {name} | {fmt_b(r['nbytes'])} | {ch} | {fmt_b(f['written'])} / {f['save_s'] * 1e3:.0f} ms | "
                f"{fmt_b(i['written'])} / {i['save_s'] * 1e3:.0f} ms | {i['save_s'] / f['save_s']:.0%} | "
                f"{f['restore_copy_s'] * 1e3:.0f} / {i['restore_copy_s'] * 1e3:.0f} ms | "
                f"{f['restore_map_s'] * 1e3:.1f} / {i['restore_map_s'] * 1e3:.1f} ms |",
                flush=True,
            )


if __name__ == "__main__":
    main()
