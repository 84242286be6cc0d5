"""Asynchronous checkpoint saves: what the caller pays, and what the background write costs.

Run from the repository root::

    .venv/bin/python benchmarks/bench_async.py [--sizes 256M,1G] [--rounds 5] [--dir DIR]

For each state size the state is a simulation-like mapping: two float64 fields
(1/2 and 1/4 of the bytes), an int64 counter array (1/4) and a few 0-d
scalars, all ordinary ``np.empty`` arrays. Each round times, back to back
(the two writes in alternating order from round to round):

- ``copyto``: ``np.copyto`` of every array into preallocated, prefaulted
  ``np.empty_like`` arrays (1 thread): the baseline of the target;
- ``copyto aligned``: the same into page-aligned preallocated arrays;
- ``save() blocks``: ``CheckpointManager(async_save=True).save`` returning
  (nothing in flight), i.e. the time the simulation pays; then the state is
  modified at once, as a simulation would; and the same for a ``threads=1``
  manager, which copies with one thread (its write is waited for, not shown);
- ``background write``: from ``save`` returning until ``wait`` returns;
- ``sync ndckpt.save``: a synchronous ``ndckpt.save`` of the same state to the
  same directory (same size, same fsync), the speed the write should match.

The target: ``save() blocks`` at most 1.1x ``copyto`` (ratio of medians, and of
best times), and ``background write`` about ``sync ndckpt.save``. Then two
more measurements: a second ``save`` issued while the first is in flight
(it waits for it: the wait shows in its blocking time), and the background
write while the caller keeps computing (numpy arithmetic on another array).
The first save of a manager allocates its staging memory and is reported
separately. Files go to ``--dir`` (default: a temporary directory in /tmp,
a real disk here); at most two checkpoints exist at a time.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ndckpt
from ndckpt import CheckpointManager
from ndckpt.parallel import aligned_empty, resolve_threads


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * mult)


def make_state(nbytes: int) -> dict[str, Any]:
    n8 = nbytes // 8
    u = np.empty(n8 // 2, np.float64)
    v = np.empty(n8 // 4, np.float64)
    c = np.empty(n8 - n8 // 2 - n8 // 4, np.int64)
    u[:] = np.linspace(0.0, 1.0, u.size)
    v[:] = 0.25
    c[:] = 7
    return {
        "fields": {"u": u, "v": v},
        "stats": {"count": c},
        "step": np.int64(0),
        "time": np.float64(0.0),
        "params": {"F": np.float64(0.037), "k": np.float64(0.06)},
    }


def leaves(tree: dict[str, Any]) -> list[np.ndarray[Any, Any]]:
    out: list[np.ndarray[Any, Any]] = []
    for v in tree.values():
        if isinstance(v, dict):
            out += leaves(v)
        else:
            out.append(np.asarray(v))
    return out


def copy_all(dst: list[np.ndarray[Any, Any]], src: list[np.ndarray[Any, Any]]) -> float:
    t = time.perf_counter()
    for d, s in zip(dst, src, strict=True):
        np.copyto(d, s)
    return time.perf_counter() - t


def gbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e9


def row(name: str, nbytes: int, times: list[float]) -> dict[str, Any]:
    best, med = min(times), statistics.median(times)
    print(
        f"  {name:<34} best {best * 1e3:8.1f} ms  median {med * 1e3:8.1f} ms"
        f"  ({gbps(nbytes, best):5.2f} / {gbps(nbytes, med):5.2f} GB/s)"
        f"  rounds: {' '.join(f'{t * 1e3:.0f}' for t in times)}"
    )
    return {"name": name, "best_s": best, "median_s": med, "times_s": times}


def bench_size(nbytes: int, rounds: int, root: Path, threads: int | None) -> dict[str, Any]:
    state = make_state(nbytes)
    src = leaves(state)
    total = sum(a.nbytes for a in src)
    dst = [np.empty_like(a) for a in src]
    for d in dst:
        d.fill(0)  # prefault
    dst_al = [aligned_empty(a.nbytes).view(a.dtype).reshape(a.shape) for a in src]
    for d in dst_al:
        d.fill(0)
    work = root / f"async-{nbytes}"
    shutil.rmtree(work, ignore_errors=True)
    sync_dir = root / f"sync-{nbytes}"
    shutil.rmtree(sync_dir, ignore_errors=True)
    sync_dir.mkdir(parents=True)
    mgr = CheckpointManager(work, keep=1, async_save=True, threads=threads)
    mgr1 = CheckpointManager(root / f"async1-{nbytes}", keep=1, async_save=True, threads=1)  # 1 copy thread
    u = state["fields"]["u"]
    print(f"\n== state {total / 2**20:.0f} MiB ({len(src)} arrays), threads={resolve_threads(threads)}, dir {root}")

    t = time.perf_counter()
    mgr.save(0, state)
    first = time.perf_counter() - t
    mgr.wait()
    first_total = time.perf_counter() - t
    mgr1.save(0, state)
    mgr1.wait()

    t_copy, t_copy_al, t_block, t_write, t_sync, t_block1 = [], [], [], [], [], []
    for r in range(1, rounds + 1):
        t_copy.append(copy_all(dst, src))
        t_copy_al.append(copy_all(dst_al, src))
        if r % 2 == 0:  # alternate which write goes first, so drifting machine noise hits both
            t = time.perf_counter()
            ndckpt.save(sync_dir / "sync.ndckpt", state, threads=threads)
            t_sync.append(time.perf_counter() - t)
        t = time.perf_counter()
        mgr.save(r, state)
        t1 = time.perf_counter()
        u[r] += 1.0  # the caller modifies its state at once
        mgr.wait()
        t2 = time.perf_counter()
        t_block.append(t1 - t)
        t_write.append(t2 - t1)
        if r % 2 == 1:
            t = time.perf_counter()
            ndckpt.save(sync_dir / "sync.ndckpt", state, threads=threads)
            t_sync.append(time.perf_counter() - t)
        t = time.perf_counter()
        mgr1.save(r, state)
        t_block1.append(time.perf_counter() - t)
        mgr1.wait()
    print(f"  first save (allocates staging): blocks {first * 1e3:.1f} ms, written after {first_total * 1e3:.1f} ms")
    res: dict[str, Any] = {"nbytes": total, "first_save_block_s": first, "first_save_total_s": first_total}
    res["copyto"] = row("copyto (empty_like, 1T)", total, t_copy)
    res["copyto_aligned"] = row("copyto (page-aligned, 1T)", total, t_copy_al)
    res["save_blocks"] = row("save() blocks", total, t_block)
    res["save_blocks_1thread"] = row("save() blocks, threads=1 manager", total, t_block1)
    res["background_write"] = row("background write", total, t_write)
    res["sync_save"] = row("sync ndckpt.save", total, t_sync)
    base_best = min(min(t_copy), min(t_copy_al))
    base_med = min(statistics.median(t_copy), statistics.median(t_copy_al))
    per_round = [b / min(c, ca) for b, c, ca in zip(t_block, t_copy, t_copy_al, strict=True)]
    ratio_best = min(t_block) / base_best
    ratio_med = statistics.median(t_block) / base_med
    print(
        f"  -> save() blocks / best copyto: {ratio_best:.3f} (best times), {ratio_med:.3f} (medians), "
        f"per-round median {statistics.median(per_round):.3f}   [target <= 1.1]"
    )
    write_ratio = statistics.median(t_write) / statistics.median(t_sync)
    print(f"  -> background write / sync save (medians): {write_ratio:.3f}")
    res.update(ratio_best=ratio_best, ratio_median=ratio_med, write_ratio_median=write_ratio)

    # A second save while the first is in flight waits for it.
    step = rounds + 1
    t = time.perf_counter()
    mgr.save(step, state)
    t1 = time.perf_counter()
    mgr.save(step + 1, state)
    t2 = time.perf_counter()
    mgr.wait()
    t3 = time.perf_counter()
    print(
        f"  back-to-back saves: 1st blocks {(t1 - t) * 1e3:.1f} ms; 2nd blocks {(t2 - t1) * 1e3:.1f} ms "
        f"(waits for the 1st, then copies); 2nd written {(t3 - t2) * 1e3:.1f} ms later"
    )
    res["back_to_back"] = {"first_block_s": t1 - t, "second_block_s": t2 - t1, "second_write_s": t3 - t2}

    # The background write while the caller computes (numpy on a separate 64 MiB array).
    scratch = np.ones(8 << 20)
    t = time.perf_counter()
    mgr.save(step + 2, state)
    t1 = time.perf_counter()
    iters = 0
    job = mgr._writer.inflight
    while job is not None and not job.future.done():
        np.multiply(scratch, 1.0000001, out=scratch)
        iters += 1
    mgr.wait()
    t2 = time.perf_counter()
    print(f"  background write while the caller computes: {(t2 - t1) * 1e3:.1f} ms ({iters} numpy passes meanwhile)")
    res["write_while_computing_s"] = t2 - t1
    mgr.close()
    mgr1.close()
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(root / f"async1-{nbytes}", ignore_errors=True)
    shutil.rmtree(sync_dir, ignore_errors=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--sizes", default="256M,1G", help="comma-separated state sizes (e.g. 256M,1G)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir in /tmp)")
    ap.add_argument("--threads", type=int, default=None, help="manager/save threads (default: all cores)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="ndckpt-bench-async-", dir="/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    results = []
    try:
        results.extend(bench_size(parse_size(size), args.rounds, root, args.threads) for size in args.sizes.split(","))
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
