"""A/B: the same save/load workloads timed on two versions of ndckpt, interleaved in one run.

Run from the repository root::

    .venv/bin/python benchmarks/ab.py OLD_REV [--new PATH] [--rounds 7] [--size-mib 256]
        [--workloads mixed,many,stream] [--clock wall|cpu] [--threads N]

``OLD_REV`` is any git revision of this repository (checked out into a temporary detached
worktree, removed afterwards); ``--new`` is a source tree (default: this checkout, with its
uncommitted changes). Each round runs every workload once per version, in alternating order,
each in a fresh child process with ``PYTHONPATH`` pointing at that version's tree, so both see
the same machine state. The machine is shared and noisy: the script prints, per workload and
operation, the best and the median time of each version and the ratios new/old (below 1 means
the new version is faster), from the best times and as the median of per-round ratios.
When other jobs share the cores, ``--clock cpu --threads 1`` (process CPU time of a
single-threaded call) is steadier than wall time.

Workloads (files in ``--dir``, default /dev/shm):

- ``mixed``: ``--size-mib`` of float64 fields (RAW) and int64 counters (LZ4), saved to a path
  (fsync included) and loaded with ``mmap=False`` and with ``verify=True``;
- ``many``: 20,000 small arrays (the per-array overhead), saved and loaded;
- ``lz4many``: ``--size-mib`` of LZ4 int64 counters in arrays of 1 MiB + 64 B, each its own
  frame (the per-LZ4-frame overhead: many frames of about 1 MiB);
- ``lz4big``: ``--size-mib`` of LZ4 int64 counters in one array (4 MiB frames);
- ``stream``: the mixed state saved to and loaded from a pipe-like stream (``io.BytesIO``);
- ``engine``: the version's own ``benchmarks/bench_engine.py --size-mib 64 --repeat 3`` (frame
  engine against memcpy and python-lz4); one op per pair, the ndckpt best time, and a
  ``÷base`` op, ndckpt's best time over the pair's baseline's (dimensionless, so its ratio
  new/old is immune to the machine's speed drifting between the two runs);
- ``peers``: the version's own ``benchmarks/peers.py --quick`` restricted to plain_write and
  ndckpt's rows; one op per ndckpt row (median time), and ``÷plain`` over the plain_write row
  of the same case.

The issue asks for "``bench_engine.py`` and ``ndckpt bench --quick`` against the old commit and the
new in the same run": ``--workloads engine,peers`` is that run.

Results also go to ``benchmarks/results/ab.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The child: builds one workload, times each operation once, prints {op: seconds} as JSON.
CHILD = r"""
import io, json, os, sys, time
import numpy as np
import ndckpt

kind, size_mib, where = sys.argv[1], int(sys.argv[2]), sys.argv[3]
clock = time.process_time if sys.argv[4] == "cpu" else time.perf_counter
th = {"threads": int(sys.argv[5])} if sys.argv[5] else {}
rng = np.random.default_rng(7)
if kind in ("mixed", "stream"):
    n = size_mib * (1 << 20) // 16
    state = {"fields": {"u": rng.standard_normal(n // 2), "v": rng.standard_normal(n // 2)},
             "counts": np.cumsum(rng.integers(0, 3, n)).astype(np.int64), "step": 1000}
    style = {"counts": "lz4"}
elif kind in ("lz4many", "lz4big"):
    n = size_mib * (1 << 20) // 8
    counts = np.cumsum(rng.integers(0, 3, n)).astype(np.int64)
    per = ((1 << 20) + 64) // 8 if kind == "lz4many" else n
    state = {f"c{i:05d}": counts[a : a + per] for i, a in enumerate(range(0, n, per))}
    style = "lz4"
else:
    state = {"g": {f"a{i:05d}": np.arange(i % 17, dtype=np.int32) for i in range(20000)}}
    style = "raw"
t = {}
if kind == "stream":
    f = io.BytesIO()
    s = clock(); ndckpt.save(f, state, style=style, **th); t["save"] = clock() - s
    f.seek(0)
    s = clock(); ndckpt.load(f, **th); t["load"] = clock() - s
else:
    p = os.path.join(where, f"ab-{os.getpid()}.ndckpt")
    try:
        s = clock(); ndckpt.save(p, state, style=style, **th); t["save"] = clock() - s
        s = clock(); ndckpt.load(p, mmap=False, **th); t["load"] = clock() - s
        s = clock(); ndckpt.load(p, verify=True, **th); t["load-verify"] = clock() - s
    finally:
        os.unlink(p)
print(json.dumps({"version": ndckpt.__file__, "t": t}))
"""


def run_suite(tree: Path, kind: str, tmp: str) -> dict[str, float]:
    """Run the tree's own benchmark script (``engine`` or ``peers``) and reduce its JSON to {op: value}."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = Path(tmp) / f"{kind}-{os.getpid()}.json"
    if kind == "engine":
        cmd = [str(tree / "benchmarks" / "bench_engine.py"), "--size-mib", "64", "--repeat", "3", "--out", str(out)]
    else:
        cmd = [str(tree / "benchmarks" / "peers.py"), "--quick", "--json", str(out), "--no-mmap-probe",
               "--peers", "plain_write,ndckpt_raw_t1,ndckpt_raw_t2,ndckpt_lz4_t1,ndckpt_lz4_t2"]
    subprocess.run([sys.executable, *cmd], env=env, cwd=tree, check=True, capture_output=True, text=True)
    doc = json.loads(out.read_text())
    out.unlink()
    res: dict[str, float] = {}
    if kind == "engine":
        for p in doc["pairs"]:
            op = f"{p['table'][:10]}/{p['dataset']}/{p['ours']}"
            res[op] = min(p["ours_s"])
            res[op + " ÷base"] = min(p["ours_s"]) / min(p["base_s"])
        return res
    rows = [r for r in doc["rows"] if "median_s" in r]
    plain = {(r["op"], r["dataset"], r["size"], r["dir"]): r["median_s"] for r in rows if r["peer"] == "plain_write"}
    for r in rows:
        if r["peer"].startswith("ndckpt"):
            op = f"{r['op']}/{r['dataset']}/{r['peer'].removeprefix('ndckpt_')}"
            res[op] = r["median_s"]
            base = plain.get((r["op"], r["dataset"], r["size"], r["dir"]))
            if base:
                res[op + " ÷plain"] = r["median_s"] / base
    return res


def run_child(tree: Path, kind: str, size_mib: int, where: str, clock: str = "wall", threads: int | None = None) -> dict[str, float]:
    if kind in ("engine", "peers"):
        return run_suite(tree, kind, where)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(size_mib), where, clock, "" if threads is None else str(threads)],
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    if not doc["version"].startswith(str(tree)):
        raise SystemExit(f"the child imported {doc['version']}, not the tree {tree}")
    return {k: float(v) for k, v in doc["t"].items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", help="git revision of the old version")
    ap.add_argument("--new", type=Path, default=ROOT, help="source tree of the new version (default: this checkout)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--workloads", default="mixed,many,stream")
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    ap.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall", help="wall time, or process CPU time (steadier on a busy machine)"
    )
    ap.add_argument("--threads", type=int, default=None, help="threads= for save and load (default: theirs)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ab.json")
    args = ap.parse_args()
    kinds = [k for k in args.workloads.split(",") if k]
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(old), args.old], check=True)
        try:
            times: dict[tuple[str, str, str], list[float]] = {}
            for r in range(args.rounds):
                for kind in kinds:
                    order = [("old", old), ("new", args.new.resolve())]
                    if r % 2:
                        order.reverse()
                    for label, tree in order:
                        for op, sec in run_child(tree, kind, args.size_mib, args.dir, args.clock, args.threads).items():
                            times.setdefault((kind, op, label), []).append(sec)
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False)
    rows = []
    print(
        f"{'workload':<8} {'op':<44} {'old best':>9} {'new best':>9} {'old med':>9} {'new med':>9} "
        f"{'best ratio':>10} {'med ratio':>10}"
    )
    for kind in kinds:
        for op in sorted({op for (k, op, _) in times if k == kind}):
            o, n = times[(kind, op, "old")], times[(kind, op, "new")]
            per_round = statistics.median(b / a for a, b in zip(o, n, strict=True))
            row = {
                "workload": kind,
                "op": op,
                "old_best_s": min(o),
                "new_best_s": min(n),
                "old_median_s": statistics.median(o),
                "new_median_s": statistics.median(n),
                "ratio_best": min(n) / min(o),
                "ratio_median_of_rounds": per_round,
            }
            rows.append(row)
            print(
                f"{kind:<8} {op:<44} {min(o):9.4f} {min(n):9.4f} {row['old_median_s']:9.4f} "
                f"{row['new_median_s']:9.4f} {row['ratio_best']:10.3f} {per_round:10.3f}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"old": args.old, "new": str(args.new), "rounds": args.rounds, "size_mib": args.size_mib, "rows": rows},
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
