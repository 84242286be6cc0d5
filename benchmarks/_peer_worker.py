"""One measurement of the peer benchmark, in a fresh process; prints one JSON line.

``benchmarks/peers.py`` starts this script once per (peer, op, dataset, size, dir,
round), so every run starts from a cold interpreter and its peak RSS is its own::

    python benchmarks/_peer_worker.py --op save --peer npy --dataset smooth \\
        --nbytes 268435456 --source /dev/shm/src.bin --path /dev/shm/x.npy

Ops:

- ``generate``: write the dataset's bytes to ``--path`` (the runner's input cache).
- ``save``: read the input into a page-aligned array (untimed), then time
  ``peer.save(path, arrays)``.
- ``load`` / ``mmap``: time ``peer.load`` / ``peer.mmap`` of the file at ``--path``.
  With ``--verify`` the result is then compared byte for byte with the input.
  For ``mmap`` the time to touch one byte per page afterwards is reported too.

Memory: the library is imported and the input read before the peak-RSS mark is
reset (``/proc/self/clear_refs``), so ``peak_rss`` (``VmHWM`` after the op; ``ru_maxrss``
is also recorded) is the process's peak during the op. ``extra_rss`` is that peak minus the RSS just before
the op, minus the result's bytes for ``load``: memory beyond the data itself.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
sys.path.append(str(_HERE.parent))  # the repo, in case ndckpt is not installed

import _datasets  # noqa: E402
from _peers_impl import Arrays, Layout, make_peers  # noqa: E402

#: dtype of each size-parameterised dataset (see _datasets.py).
BIG_DTYPES = {"smooth": np.float64, "ints": np.int64, "random": np.uint8}
SMALL_LENGTH = 64  # float32 elements per array of the many-small dataset
_PAGE = os.sysconf("SC_PAGE_SIZE")


def layout_of(dataset: str, nbytes: int, count: int) -> Layout:
    """Names, dtypes and shapes of the dict saved for ``dataset``."""
    if dataset == "small":
        return [(f"a{i:05d}", "<f4", (SMALL_LENGTH,)) for i in range(count)]
    dt = np.dtype(BIG_DTYPES[dataset])
    return [(dataset, dt.str, (nbytes // dt.itemsize,))]


def source_arrays(dataset: str, nbytes: int, count: int, source: str | None) -> Arrays:
    """The input dict: the cached dataset read into a page-aligned array, or many-small."""
    if dataset == "small":
        return dict(zip((n for n, _, _ in layout_of(dataset, 0, count)),
                        _datasets.many_small(count, SMALL_LENGTH), strict=True))
    if source is None:
        raise SystemExit("--source is required for the size-parameterised datasets")
    dt = np.dtype(BIG_DTYPES[dataset])
    arr = _datasets.aligned_empty(nbytes, dt)
    mv = memoryview(arr.reshape(-1).view(np.uint8))
    with open(source, "rb", buffering=0) as f:
        while mv:
            n = f.readinto(mv[: 1 << 30])
            if not n:
                raise SystemExit(f"{source}: input cache shorter than {nbytes} bytes")
            mv = mv[n:]
    return {dataset: arr}


def expected_arrays(dataset: str, nbytes: int, count: int, source: str | None) -> Arrays:
    """What a load must return (a read-only map of the cache for big datasets)."""
    if dataset == "small" or source is None:
        return source_arrays(dataset, nbytes, count, source)
    return {dataset: np.memmap(source, dtype=BIG_DTYPES[dataset], mode="r")}


def check_equal(got: Arrays, want: Arrays) -> str | None:
    """None if ``got`` equals ``want`` bit for bit (names, dtypes, shapes, bytes), else why not."""
    if set(got) != set(want):
        return f"names differ: got {len(got)} names, expected {len(want)}"
    step = 64 << 20
    for name, w in want.items():
        g = got[name]
        if g.dtype != w.dtype or g.shape != w.shape:
            return f"{name}: got {g.dtype}{g.shape}, expected {w.dtype}{w.shape}"
        gb = np.ascontiguousarray(g).reshape(-1).view(np.uint8)
        wb = np.ascontiguousarray(w).reshape(-1).view(np.uint8)
        for lo in range(0, wb.size, step):
            if not np.array_equal(gb[lo : lo + step], wb[lo : lo + step]):
                return f"{name}: bytes differ in [{lo}, {min(wb.size, lo + step)})"
    return None


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def reset_peak() -> bool:
    """Reset this process's peak-RSS mark to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss() -> int:
    """Peak RSS of this process's memory since the last ``reset_peak``, in bytes.

    Reads ``VmHWM``, not ``ru_maxrss``: at exec the kernel folds the *parent's* peak
    into ``ru_maxrss`` (signal->maxrss), which ``clear_refs`` does not reset, so a
    small child of a bigger parent would report the parent's peak.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def path_nbytes(path: str) -> int:
    p = Path(path)
    if p.is_dir():
        return sum(q.stat().st_size for q in p.rglob("*") if q.is_file())
    return p.stat().st_size


def touch_pages(arrays: Arrays) -> int:
    """Read one byte per page of every array (forces a lazy map in); returns a checksum."""
    total = 0
    for arr in arrays.values():
        flat = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
        total += int(flat[::_PAGE].sum(dtype=np.uint64))
    return total


def run(args: argparse.Namespace) -> dict[str, Any]:
    rec: dict[str, Any] = {"op": args.op, "peer": args.peer, "dataset": args.dataset,
                           "nbytes": args.nbytes, "count": args.count}
    if args.op == "generate":
        t0 = time.perf_counter()
        arr = _datasets.generate(args.dataset, args.nbytes)
        with open(args.path, "wb", buffering=0) as f:
            mv = memoryview(arr.reshape(-1).view(np.uint8))
            while mv:
                mv = mv[f.write(mv[: 1 << 30]) :]
        rec["time_s"] = time.perf_counter() - t0
        return rec

    peer = make_peers(args.threads)[args.peer]
    rec["version"] = peer.prepare()
    layout = layout_of(args.dataset, args.nbytes, args.count)
    data_nbytes = sum(int(np.prod(s)) * np.dtype(d).itemsize for _, d, s in layout)
    rec["data_nbytes"] = data_nbytes

    if args.op == "save":
        arrays = source_arrays(args.dataset, args.nbytes, args.count, args.source)
        base = rss_now()
        rec["peak_reset"] = reset_peak()
        t0 = time.perf_counter()
        peer.save(args.path, arrays)
        rec["time_s"] = time.perf_counter() - t0
        peak = peak_rss()
        rec["file_bytes"] = path_nbytes(args.path)
        extra = peak - base
    else:
        fn = peer.load if args.op == "load" else peer.mmap
        if fn is None:
            raise SystemExit(f"peer {peer.name} has no {args.op} op")
        base = rss_now()
        rec["peak_reset"] = reset_peak()
        t0 = time.perf_counter()
        out = fn(args.path, layout)
        rec["time_s"] = time.perf_counter() - t0
        peak = peak_rss()
        extra = peak - base - (data_nbytes if args.op == "load" else 0)
        if args.op == "mmap":
            t1 = time.perf_counter()
            touch_pages(out)
            rec["touch_s"] = time.perf_counter() - t1
        if args.verify:
            why = check_equal(out, expected_arrays(args.dataset, args.nbytes, args.count,
                                                   args.source))
            rec["verified"] = why is None
            if why is not None:
                rec["error"] = f"verification failed: {why}"
    rec["rss_base"] = base
    rec["peak_rss"] = peak
    rec["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rec["extra_rss"] = extra
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--op", required=True, choices=["generate", "save", "load", "mmap"])
    ap.add_argument("--peer", default="")
    ap.add_argument("--dataset", required=True, choices=[*BIG_DTYPES, "small"])
    ap.add_argument("--nbytes", type=int, default=0, help="size of smooth/ints/random")
    ap.add_argument("--count", type=int, default=20_000, help="arrays in the many-small dataset")
    ap.add_argument("--path", required=True, help="file the op writes or reads")
    ap.add_argument("--source", help="input cache written by --op generate")
    ap.add_argument("--threads", type=int, default=2, help="the runner's --threads")
    ap.add_argument("--verify", action="store_true", help="compare a load with the input")
    args = ap.parse_args(argv)
    rec = run(args)
    print(json.dumps(rec), flush=True)
    return 1 if "error" in rec else 0


if __name__ == "__main__":
    raise SystemExit(main())
