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


def py_chunk() -> int:
    """One unit of a GIL-bound pure-Python main loop (about 0.3 ms)."""
    x = 0
    for i in range(3000):
        x += i * i
    return x


_SMALL = np.ones(64)


def np_chunk() -> int:
    """One unit of a main loop of many small numpy calls (each releases and retakes the GIL quickly)."""
    a = _SMALL
    for _ in range(100):
        a = np.add(a, 1.0) * 0.5
    return int(a.size)


LOOPS = {"python": py_chunk, "numpy": np_chunk}


def loop_rate(chunk: Any, seconds: float) -> float:
    """Chunks per second of ``chunk`` run alone for ``seconds``."""
    n, t0 = 0, time.perf_counter()
    while (t := time.perf_counter()) - t0 < seconds:
        chunk()
        n += 1
    return n / (t - t0)


def timed_save(mgr: CheckpointManager, step: int, state: dict[str, Any], chunk: Any) -> tuple[float, float, float]:
    """(pause, save time, loop chunks per second meanwhile): ``save`` then ``chunk`` until the save is written."""
    t0 = time.perf_counter()
    mgr.save(step, state)
    t1 = time.perf_counter()
    job = mgr._writer.inflight
    n = 0
    if chunk is not None:
        while job is not None and not job.future.done():
            chunk()
            n += 1
    mgr.wait()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t0, n / (t2 - t1) if n else 0.0


def bench_beside(
    nbytes: int, rounds: int, root: Path, threads: int | None, modes: list[str], styles: list[str]
) -> dict[str, Any]:
    """Background saves beside a GIL-bound main loop, per style and writer, as ratios measured in this run.

    For each (style, writer): ``idle`` is save-to-written with the caller
    waiting; ``python``/``numpy`` the same while the caller runs that loop;
    ``save x`` is that over ``idle`` of the same writer (target <= 1.5),
    ``loop x`` the loop's speed meanwhile over its speed alone (measured
    around each save; target >= 0.95), ``pause x`` what ``save`` blocks over a
    1-thread ``np.copyto`` of the state (target <= 1.1). Medians of ``rounds``.
    """
    state = make_state(nbytes)
    src = leaves(state)
    total = sum(a.nbytes for a in src)
    dst = [np.empty_like(a) for a in src]
    for d in dst:
        d.fill(0)
    t_copy = statistics.median(copy_all(dst, src) for _ in range(max(rounds, 3)))
    print(
        f"\n== beside a main loop: state {total / 2**20:.0f} MiB, threads={resolve_threads(threads)}, "
        f"switchinterval {sys.getswitchinterval() * 1e3:g} ms, memcpy {t_copy * 1e3:.1f} ms"
    )
    alone = {name: statistics.median(loop_rate(fn, 0.3) for _ in range(3)) for name, fn in LOOPS.items()}
    out: dict[str, Any] = {"nbytes": total, "memcpy_s": t_copy, "loop_alone_per_s": alone, "cases": []}
    print(
        f"  {'style':<6}{'writer':<9}{'idle ms':>9}{'pause x':>9}"
        + "".join(f"{name + ' save x':>15}{name + ' loop x':>15}" for name in LOOPS)
    )
    for style in styles:
        for mode in modes:
            work = root / f"beside-{style}-{mode}"
            shutil.rmtree(work, ignore_errors=True)
            mgr = CheckpointManager(work, keep=1, async_save=mode, threads=threads, style=style)
            mgr.save(0, state)  # allocates staging, starts the writer
            mgr.wait()
            step = 1
            idle, pause = [], []
            save_x: dict[str, list[float]] = {n: [] for n in LOOPS}
            loop_x: dict[str, list[float]] = {n: [] for n in LOOPS}
            for _ in range(rounds):
                p, t, _r = timed_save(mgr, step, state, None)
                idle.append(t)
                pause.append(p)
                step += 1
                for name, fn in LOOPS.items():
                    before = loop_rate(fn, 0.2)
                    p, t, rate = timed_save(mgr, step, state, fn)
                    after = loop_rate(fn, 0.2)
                    step += 1
                    pause.append(p)
                    save_x[name].append(t)
                    loop_x[name].append(rate / ((before + after) / 2))
            mgr.close()
            shutil.rmtree(work, ignore_errors=True)
            idle_m = statistics.median(idle)
            case = {
                "style": style,
                "writer": mode,
                "idle_s": idle_m,
                "idle_times_s": idle,
                "pause_ratio": statistics.median(pause) / t_copy,
                "save_ratio": {n: statistics.median(v) / idle_m for n, v in save_x.items()},
                "save_times_s": save_x,
                "loop_ratio": {n: statistics.median(v) for n, v in loop_x.items()},
            }
            out["cases"].append(case)
            print(
                f"  {style:<6}{mode:<9}{idle_m * 1e3:9.1f}{case['pause_ratio']:9.2f}"
                + "".join(f"{case['save_ratio'][n]:15.2f}{case['loop_ratio'][n]:15.2f}" for n in LOOPS)
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--sizes", default="256M,1G", help="comma-separated state sizes (e.g. 256M,1G)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir in /tmp)")
    ap.add_argument("--threads", type=int, default=None, help="manager/save threads (default: all cores)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--beside", default="192M", help="state size for the saves beside a main loop ('' skips them)")
    ap.add_argument("--writers", default="thread,process", help="async_save writers compared beside the loop")
    ap.add_argument("--styles", default="raw,lz4", help="styles of the saves beside the loop")
    args = ap.parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="ndckpt-bench-async-", dir="/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    results = []
    try:
        if args.sizes:
            results.extend(
                bench_size(parse_size(size), args.rounds, root, args.threads) for size in args.sizes.split(",")
            )
        if args.beside:
            writers = args.writers.split(",")
            styles = args.styles.split(",")
            results.append(bench_beside(parse_size(args.beside), args.rounds, root, args.threads, writers, styles))
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
