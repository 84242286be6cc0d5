"""Shuffle and delta before LZ4 (issue 15): ratios on the zoo, the chooser, speeds vs blosc2.

    .venv/bin/python benchmarks/bench_filters.py                  # everything, ~2-4 min
    .venv/bin/python benchmarks/bench_filters.py --no-speed       # ratios and chooser only
    .venv/bin/python benchmarks/bench_filters.py --fields smooth_f64,counters_i64 --repeat 9
    .venv/bin/python benchmarks/bench_filters.py --real-only      # ndckpt.save/load vs blosc2, memory

Ratios (uncompressed / stored; stored = the data frames' stored bytes, LZ4 records and the
head left out, which are the same for every column):

- ``lz4``: today's path, ``ndckpt.save(..., style="lz4")``, stored sizes from the file's index;
- ``shuf``, ``delta``: every 4 MiB frame (the writer's frame plan) filtered by
  ``ndckpt.filters`` with the item size ``filter_itemsize(dtype.itemsize)``, then LZ4-encoded
  by the engine (``Checkpt.mmio``, frame_open LZ4, buf, frame_close), with the writer's
  stored-verbatim rule (format §2.3);
- ``shuf/frame``: shuffle defined on the whole frame instead of per 64 KiB block (what the
  block choice costs in ratio);
- ``best``: per frame the smallest of lz4, shuf, delta (the oracle); ``auto``: per frame what
  ``filters.choose`` picks from 4 sampled chunks;
- ``choose cost``: time of ``choose`` on every frame / time of the frames' plain LZ4 encoding;
- ``b2 shuf``, ``b2 bd``: blosc2 ``compress2`` LZ4 clevel 5 with SHUFFLE, and SHUFFLE +
  BYTEDELTA, typesize = the dtype's item size.

Targets (issue 15): ``auto >= 0.98 b2 shuf`` on every field, ``auto >= max(b2 shuf, b2 bd)``
on the smooth ones (``_zoo.SMOOTH``), and auto never more than 1 % worse than lz4.

Speeds (GB/s of uncompressed bytes, best of ``--repeat``, on ``--speed-n`` square fields),
for each filter implementation of ``--impl`` (``numpy``, and ``accel``: the optional compiled
kernels of ``accel/``, selected with ``ndckpt._accel.use``):
filter and unfilter alone (4 MiB frames; ``--clock cpu`` times 1-thread runs in CPU time), memcpy of the same frames; *save* = filter into a
scratch buffer + engine LZ4 per frame, *load* = engine LZ4 decode of each frame into a
scratch buffer + unfilter into the destination, at 1 and 2 threads (frames split between
threads), against blosc2 ``compress2`` / ``decompress2(dst=)`` with the same filter and
``nthreads``. Targets: save and load >= 0.8x blosc2 at equal threads. A second table gives
filter and unfilter alone at 1 and 2 threads (frames split between threads) as fractions of
memcpy at the same thread count, and the load (LZ4 decode + unfilter, what a filtered load
into ``out=`` does per frame) against blosc2's decompress.

    .venv/bin/python benchmarks/bench_filters.py --no-ratio --impl numpy,accel --fields smooth_f64
"""

from __future__ import annotations

import argparse
import gc
import io
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _zoo
from _datasets import aligned_empty

import ndckpt
from ndckpt import _accel, filters
from ndckpt.engine import Checkpt, Restore
from ndckpt.format import FrameStyle, lz4_frame_bound

FRAME = 4 << 20  # the writer's LZ4 frame size (container.plan.DEFAULT_FRAME_BYTES)
KINDS: tuple[str | None, ...] = (None, "shuffle", "delta")
Array = np.ndarray[Any, Any]


def u8(a: Array) -> Array:
    return a.reshape(-1).view(np.uint8)


def spans(nbytes: int) -> list[tuple[int, int]]:
    return [(a, min(a + FRAME, nbytes)) for a in range(0, nbytes, FRAME)]


def lz4_stored(buf: Array, region: Array) -> int:
    """Stored size of ``buf`` as one LZ4 data frame, the stored-verbatim rule applied."""
    ck = Checkpt.mmio(region)
    ck.frame_open(FrameStyle.LZ4)
    ck.buf(buf)
    end = ck.frame_close()
    ck.fini()
    n = buf.nbytes
    return n if end > n - n // 32 else end


def frame_sizes(data: Array, kind: str | None, s: int, block: int = filters.BLOCK) -> list[int]:
    """Stored size of every 4 MiB frame of ``data`` filtered by ``kind`` (None: plain LZ4)."""
    region = np.empty(lz4_frame_bound([FRAME]), np.uint8)
    scratch = np.empty(FRAME, np.uint8)
    out = []
    for a, b in spans(data.nbytes):
        src = data[a:b]
        if kind is not None:
            filters.filter_into(kind, src, scratch[: b - a], s, block=block)
            src = scratch[: b - a]
        out.append(lz4_stored(src, region))
    return out


def save_ratio(arr: Array) -> float:
    f = io.BytesIO()
    ndckpt.save(f, {"a": arr}, style="lz4")
    with ndckpt.open(f.getvalue()) as r:
        (row,) = r.info()
    return arr.nbytes / row["stored_nbytes"]


def blosc2_params(kind: str, itemsize: int, threads: int) -> tuple[Any, Any]:
    import blosc2

    flt = [blosc2.Filter.SHUFFLE] + ([blosc2.Filter.BYTEDELTA] if kind == "delta" else [])
    meta = [0] + ([itemsize] if kind == "delta" else [])
    cp = blosc2.CParams(
        codec=blosc2.Codec.LZ4, clevel=5, filters=flt, filters_meta=meta, typesize=itemsize, nthreads=threads
    )
    return cp, blosc2.DParams(nthreads=threads)


def blosc2_ratio(arr: Array, kind: str) -> float:
    import blosc2

    cp, _ = blosc2_params(kind, arr.dtype.itemsize, 1)
    return arr.nbytes / len(blosc2.compress2(arr, cparams=cp))


# -- ratios ------------------------------------------------------------------------------------


def choose_cost(data: Array, s: int, samples: int) -> tuple[float, float]:
    """Seconds of ``choose`` on every frame and of the frames' plain LZ4 encoding (best of 3)."""
    frames = spans(data.nbytes)
    t_choose = best_of(lambda: [filters.choose(data[a:b], s, samples=samples) for a, b in frames], 3)
    return t_choose, best_of(lambda: frame_sizes(data, None, s), 3)


def ratios(names: tuple[str, ...], n: int, samples: tuple[int, ...]) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        arr = _zoo.field(name, n)
        data, s = u8(arr), filters.filter_itemsize(arr.dtype.itemsize)
        sizes = {k: frame_sizes(data, k, s) for k in KINDS}
        whole = frame_sizes(data, "shuffle", s, block=FRAME)
        nb = data.nbytes
        best = sum(min(sizes[k][i] for k in KINDS) for i in range(len(sizes[None])))
        choices = {m: [filters.choose(data[a:b], s, samples=m).kind for a, b in spans(nb)] for m in samples}
        # What choosing costs, relative to the frames' own plain LZ4 encoding (CPU time, best of 3).
        t_choose, t_lz4 = choose_cost(data, s, samples[0])
        auto = {m: sum(sizes[k][i] for i, k in enumerate(ch)) for m, ch in choices.items()}
        row = {
            "field": name,
            "dtype": str(arr.dtype),
            "s": s,
            "lz4 save": save_ratio(arr),
            "lz4": nb / sum(sizes[None]),
            "shuf": nb / sum(sizes["shuffle"]),
            "delta": nb / sum(sizes["delta"]),
            "shuf/frame": nb / sum(whole),
            "best": nb / best,
            **{f"auto{m}": nb / auto[m] for m in samples},
            "choices": choices[samples[0]],
            "b2 shuf": blosc2_ratio(arr, "shuffle"),
            "b2 bd": blosc2_ratio(arr, "delta"),
            "choose cost": t_choose / t_lz4,
        }
        rows.append(row)
        print(f"  {name}: done", file=sys.stderr)
    return rows


def print_ratios(rows: list[dict[str, Any]], samples: tuple[int, ...]) -> None:
    m0 = samples[0]
    cols = ["field", "dtype", "s", "lz4 save", "lz4", "shuf", "delta", "shuf/frame", "best"]
    cols += [f"auto{m}" for m in samples] + ["b2 shuf", "b2 bd", "choose cost"]
    cols += ["auto/lz4", "auto/b2shuf", "auto/b2best", "met"]
    print("\n### Ratios (uncompressed / stored), 4 MiB frames; auto<m> samples m chunks per frame\n")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        auto = r[f"auto{m0}"]
        vs_lz4, vs_shuf = auto / r["lz4"], auto / r["b2 shuf"]
        vs_best = auto / max(r["b2 shuf"], r["b2 bd"])
        met = vs_lz4 >= 0.99 and vs_shuf >= 0.98 and (r["field"] not in _zoo.SMOOTH or vs_best >= 1.0)
        vals = [r[c] for c in cols[:3]] + [f"{r[c]:.3f}" for c in cols[3:-4]]
        vals += [f"{vs_lz4:.3f}", f"{vs_shuf:.3f}", f"{vs_best:.3f}", "yes" if met else "NO"]
        print("| " + " | ".join(map(str, vals)) + " |")
    print(f"\nChoices of auto{m0} per frame (None = plain LZ4):")
    for r in rows:
        print(f"  {r['field']}: {r['choices']}")


# -- speeds ------------------------------------------------------------------------------------


CLOCK: list[Callable[[], float]] = [time.perf_counter]  # set by --clock


def best_of(fn: Callable[[], Any], repeat: int, *, wall: bool = False) -> float:
    """Best of ``repeat`` timed runs after one warm-up, GC off. ``wall`` forces wall time (runs
    that use two threads: a process CPU clock would add both threads' time)."""
    clock = time.perf_counter if wall else CLOCK[0]
    fn()
    gc.disable()
    try:
        times = []
        for _ in range(repeat):
            t0 = clock()
            fn()
            times.append(clock() - t0)
    finally:
        gc.enable()
    return min(times)


def split(items: list[Any], threads: int) -> list[list[Any]]:
    return [items[i::threads] for i in range(threads)]


class Frames:
    """One field cut into 4 MiB frames, with per-thread scratch buffers and LZ4 regions."""

    def __init__(self, arr: Array) -> None:
        self.arr, self.data = arr, u8(arr)
        self.s = filters.filter_itemsize(arr.dtype.itemsize)
        self.spans = spans(arr.nbytes)
        self.dst = aligned_empty(arr.nbytes)
        self.dst.fill(0)
        self.scratch = [aligned_empty(FRAME) for _ in range(2)]
        self.regions = [np.zeros(lz4_frame_bound([FRAME]), np.uint8) for _ in range(2)]
        self.stored: list[Array] = []

    def encode(self, kind: str, i: int, t: int) -> int:
        a, b = self.spans[i]
        stage = self.scratch[t][: b - a]
        filters.filter_into(kind, self.data[a:b], stage, self.s)
        ck = Checkpt.mmio(self.regions[t])
        ck.frame_open(FrameStyle.LZ4)
        ck.buf(stage)
        end = ck.frame_close()
        ck.fini()
        return end

    def decode(self, kind: str, i: int, t: int) -> None:
        a, b = self.spans[i]
        stage = self.scratch[t][: b - a]
        rs = Restore.mmio(self.stored[i])
        rs.frame_open(FrameStyle.LZ4)
        rs.buf(stage)
        rs.frame_close()
        rs.fini()
        filters.unfilter_into(kind, stage, self.dst[a:b], self.s)


def speed_row(name: str, fx: Frames, kind: str, repeat: int, pool: ThreadPoolExecutor) -> dict[str, Any]:
    import blosc2

    nb, data, dst, s = fx.arr.nbytes, fx.data, fx.dst, fx.s
    row: dict[str, Any] = {"field": name, "kind": kind, "MiB": nb >> 20}
    filtered = aligned_empty(nb)
    filters.filter_into(kind, data, filtered, s)

    def filt() -> None:
        for a, b in fx.spans:
            filters.filter_into(kind, data[a:b], fx.scratch[0][: b - a], s)

    def unfilt() -> None:
        for a, b in fx.spans:
            filters.unfilter_into(kind, filtered[a:b], dst[a:b], s)

    def memcpy() -> None:
        for a, b in fx.spans:
            np.copyto(dst[a:b], data[a:b])

    row["filter"] = nb / best_of(filt, repeat) / 1e9
    row["unfilter"] = nb / best_of(unfilt, repeat) / 1e9
    assert np.array_equal(dst, data)
    row["memcpy"] = nb / best_of(memcpy, repeat) / 1e9
    # The same three at 2 threads, each thread on every other frame (wall time).
    halves = split(fx.spans, 2)

    def two(fn: Callable[[list[tuple[int, int]], int], None]) -> float:
        return nb / best_of(lambda: list(pool.map(fn, halves, range(2))), repeat, wall=True) / 1e9

    def filt_part(part: list[tuple[int, int]], t: int) -> None:
        for a, b in part:
            filters.filter_into(kind, data[a:b], fx.scratch[t][: b - a], s)

    def unfilt_part(part: list[tuple[int, int]], t: int) -> None:
        for a, b in part:
            filters.unfilter_into(kind, filtered[a:b], dst[a:b], s)

    def memcpy_part(part: list[tuple[int, int]], t: int) -> None:
        for a, b in part:
            np.copyto(dst[a:b], data[a:b])

    dst.fill(0)
    row["filter2"], row["unfilter2"] = two(filt_part), two(unfilt_part)
    assert np.array_equal(dst, data)
    row["memcpy2"] = two(memcpy_part)
    fx.stored = [fx.regions[0][: fx.encode(kind, i, 0)].copy() for i in range(len(fx.spans))]
    for threads in (1, 2):
        parts = split(list(range(len(fx.spans))), threads)

        def run(fn: Callable[[str, int, int], Any], parts: list[list[int]] = parts) -> None:
            def work(part: list[int], t: int) -> None:
                for i in part:
                    fn(kind, i, t)

            if len(parts) == 1:
                work(parts[0], 0)
            else:
                list(pool.map(work, parts, range(len(parts))))

        dst.fill(0)
        wall = threads > 1
        row[f"save{threads}"] = nb / best_of(lambda: run(fx.encode), repeat, wall=wall) / 1e9
        row[f"load{threads}"] = nb / best_of(lambda: run(fx.decode), repeat, wall=wall) / 1e9
        assert np.array_equal(dst, data)
        cp, dp = blosc2_params(kind, fx.arr.dtype.itemsize, threads)
        comp = blosc2.compress2(fx.arr, cparams=cp)
        out = np.zeros_like(fx.arr)

        def b2c(cp: Any = cp) -> None:
            blosc2.compress2(fx.arr, cparams=cp)

        def b2d(dp: Any = dp, comp: Any = comp, out: Array = out) -> None:
            blosc2.decompress2(comp, dst=out, dparams=dp)

        row[f"b2c{threads}"] = nb / best_of(b2c, repeat, wall=wall) / 1e9
        row[f"b2d{threads}"] = nb / best_of(b2d, repeat, wall=wall) / 1e9
        assert np.array_equal(out, fx.arr)
    return row


def speeds(names: tuple[str, ...], n: int, repeat: int, impls: tuple[str, ...]) -> list[dict[str, Any]]:
    """Speed rows per field, kind and filter implementation ("numpy", or "accel": ndckpt_accel)."""
    rows = []
    with ThreadPoolExecutor(2) as pool:
        for name in names:
            fx = Frames(_zoo.field(name, n))
            for kind in ("shuffle", "delta"):
                for impl in impls:
                    _accel.use(impl == "accel")
                    try:
                        rows.append({"impl": impl, **speed_row(name, fx, kind, repeat, pool)})
                    finally:
                        _accel.use(None)
            print(f"  {name}: speeds done", file=sys.stderr)
    return rows


def print_speeds(rows: list[dict[str, Any]]) -> None:
    cols = ["field", "kind", "impl", "MiB", "memcpy", "filter", "unfilter", "save1", "b2c1", "save2", "b2c2"]
    cols += ["load1", "b2d1", "load2", "b2d2", "save/b2 1T", "save/b2 2T", "load/b2 1T", "load/b2 2T"]
    print("\n### Speeds, GB/s of uncompressed bytes (best of the rounds); ratios vs blosc2, target >= 0.8\n")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        rel = [r["save1"] / r["b2c1"], r["save2"] / r["b2c2"], r["load1"] / r["b2d1"], r["load2"] / r["b2d2"]]
        vals = [r["field"], r["kind"], r["impl"], r["MiB"]] + [f"{r[c]:.2f}" for c in cols[4:15]]
        vals += [f"{v:.2f}" for v in rel]
        print("| " + " | ".join(map(str, vals)) + " |")


# -- the real thing: ndckpt.save / ndckpt.load with the styles, against blosc2 -------------------

REAL_STYLES = ("lz4", "lz4+shuffle", "lz4+delta", "auto")


def _b2_kind(style: str) -> str | None:
    return {"lz4+shuffle": "shuffle", "lz4+delta": "delta"}.get(style)


def real_rows(names: tuple[str, ...], n: int, repeat: int) -> list[dict[str, Any]]:
    """Per field and style: the file's ratio (uncompressed / file size), save to memory and
    load into ``out=`` at 1 and 2 threads, and blosc2 compress2 / decompress2(dst=) with the
    matching filter (lz4: blosc2 shuffle; auto: the better of blosc2 shuffle and bytedelta for
    the ratio, shuffle for the speeds), LZ4 clevel 5, at the same threads."""
    rows = []
    for name in names:
        arr = _zoo.field(name, n)
        b2 = {k: blosc2_ratio(arr, k) for k in ("shuffle", "delta")}
        rows += [real_row(name, arr, style, b2, repeat) for style in REAL_STYLES]
        print(f"  {name}: save/load done", file=sys.stderr)
    return rows


def real_row(name: str, arr: Array, style: str, b2: dict[str, float], repeat: int) -> dict[str, Any]:
    import blosc2

    nb = arr.nbytes
    row: dict[str, Any] = {"field": name, "style": style}
    buf = io.BytesIO()
    ndckpt.save(buf, {"a": arr}, style=style)
    data = buf.getvalue()
    row["ratio"] = nb / len(data)
    kind = _b2_kind(style)
    row["b2 ratio"] = max(b2.values()) if kind is None else b2[kind]
    out = np.empty_like(arr)
    b2out = np.empty_like(arr)
    for threads in (1, 2):
        wall = threads > 1
        cp, dp = blosc2_params(kind or "shuffle", arr.dtype.itemsize, threads)
        comp = blosc2.compress2(arr, cparams=cp)
        row[f"save{threads}"] = nb / best_of(
            lambda t=threads: ndckpt.save(io.BytesIO(), {"a": arr}, style=style, threads=t), repeat, wall=wall
        ) / 1e9
        row[f"load{threads}"] = nb / best_of(
            lambda t=threads: ndckpt.load(data, out={"a": out}, threads=t), repeat, wall=wall
        ) / 1e9
        assert np.array_equal(out.view(np.uint8), arr.view(np.uint8))
        row[f"b2c{threads}"] = nb / best_of(lambda cp=cp: blosc2.compress2(arr, cparams=cp), repeat, wall=wall) / 1e9
        row[f"b2d{threads}"] = nb / best_of(
            lambda dp=dp, comp=comp: blosc2.decompress2(comp, dst=b2out, dparams=dp), repeat, wall=wall
        ) / 1e9
    return row


def print_real(rows: list[dict[str, Any]]) -> None:
    cols = ["field", "style", "ratio", "b2 ratio", "ratio/b2", "save1/b2", "save2/b2", "load1/b2", "load2/b2"]
    cols += ["save1", "b2c1", "save2", "b2c2", "load1", "b2d1", "load2", "b2d2"]
    print("\n### ndckpt.save / ndckpt.load(out=) vs blosc2 (LZ4 clevel 5), GB/s of uncompressed bytes\n")
    print("ratio = uncompressed / file size (head, records and index included); b2 ratio: blosc2 with the same")
    print("filter (lz4 and auto: the better of shuffle and bytedelta). Targets: auto ratio/b2 >= 0.98")
    print("(vs shuffle) everywhere; save and load >= 0.8x blosc2 at equal threads.\n")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        rel = [r["ratio"] / r["b2 ratio"]]
        rel += [r[f"{k}{t}"] / r[f"{b}{t}"] for k, b in (("save", "b2c"), ("load", "b2d")) for t in (1, 2)]
        vals = [r["field"], r["style"], f"{r['ratio']:.3f}", f"{r['b2 ratio']:.3f}"] + [f"{v:.2f}" for v in rel]
        vals += [f"{r[c]:.2f}" for c in cols[9:]]
        print("| " + " | ".join(vals) + " |")


def memory_case(style: str, threads: int, n: int) -> tuple[float, float]:
    """(save, load into out=) peak memory in frames, in a fresh process: tracemalloc (numpy's
    buffers included) from before the first call, so the scratch buffers the calls keep for
    reuse count; the array, the output array and the file's bytes are left out (the save
    writes to a sink that keeps nothing)."""
    import tracemalloc

    class Discard(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            return memoryview(b).nbytes

    arr = _zoo.field("smooth_f64", n)
    out = np.empty_like(arr)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    ndckpt.save(Discard(), {"a": arr}, style=style, threads=threads)
    save_peak = tracemalloc.get_traced_memory()[1] - base
    sink = io.BytesIO()
    ndckpt.save(sink, {"a": arr}, style=style, threads=threads)
    data = sink.getvalue()
    del sink
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    ndckpt.load(data, out={"a": out}, threads=threads)
    load_peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert np.array_equal(out, arr)
    return save_peak / FRAME, load_peak / FRAME


def memory_peaks(n: int) -> None:
    import json
    import subprocess

    print(f"\n### Extra peak memory, smooth_f64 {n}x{n} float64, in 4 MiB frames (tracemalloc, fresh process)\n")
    print("| style | threads | save | load(out=) |")
    print("|---|---|---|---|")
    for style in REAL_STYLES:
        for threads in (1, 2):
            code = (
                f"import sys, json; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); import bench_filters; "
                f"print(json.dumps(bench_filters.memory_case({style!r}, {threads}, {n})))"
            )
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            save_f, load_f = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"| {style} | {threads} | {save_f:.2f} | {load_f:.2f} |")


def print_impls(rows: list[dict[str, Any]]) -> None:
    """Filter and unfilter alone by implementation, as fractions of memcpy at the same threads."""
    cols = ["field", "kind", "impl", "memcpy1", "filter1", "unfilter1", "memcpy2", "filter2", "unfilter2"]
    cols += ["filt/cp 1T", "unf/cp 1T", "filt/cp 2T", "unf/cp 2T", "unf 2T/1T", "load1/b2d1", "load2/b2d2"]
    print("\n### Filter implementations: GB/s alone (4 MiB frames), x memcpy at equal threads; load vs blosc2\n")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        speeds = [r["memcpy"], r["filter"], r["unfilter"], r["memcpy2"], r["filter2"], r["unfilter2"]]
        rel = [r["filter"] / r["memcpy"], r["unfilter"] / r["memcpy"], r["filter2"] / r["memcpy2"]]
        rel += [r["unfilter2"] / r["memcpy2"], r["unfilter2"] / r["unfilter"], r["load1"] / r["b2d1"]]
        rel += [r["load2"] / r["b2d2"]]
        vals = [r["field"], r["kind"], r["impl"]] + [f"{v:.2f}" for v in speeds + rel]
        print("| " + " | ".join(vals) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fields", default=",".join(_zoo.FIELDS), help="comma-separated zoo fields")
    p.add_argument("--n", type=int, default=1024, help="side of the fields for ratios (default 1024)")
    p.add_argument("--speed-n", type=int, default=2048, help="side of the fields for speeds (default 2048)")
    p.add_argument("--samples", default="4,1,2,8", help="chooser sample counts; the first is 'auto'")
    p.add_argument("--repeat", type=int, default=5, help="timed rounds per speed (default 5)")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time 1-thread runs with wall time or this process's CPU time (steadier on a shared machine; "
        "2-thread runs always use wall time)",
    )
    p.add_argument(
        "--impl",
        default="numpy,accel" if _accel.available() else "numpy",
        help="filter implementations to time: numpy and/or accel (ndckpt_accel; default both when installed)",
    )
    p.add_argument("--no-speed", action="store_true", help="ratios and chooser only")
    p.add_argument("--no-real", action="store_true", help="skip ndckpt.save/load with the styles vs blosc2")
    p.add_argument("--real-only", action="store_true", help="only ndckpt.save/load vs blosc2 and memory")
    p.add_argument("--no-ratio", action="store_true", help="speeds only")
    args = p.parse_args(argv)
    if args.clock == "cpu":
        CLOCK[0] = time.process_time
    names = tuple(args.fields.split(","))
    samples = tuple(int(x) for x in args.samples.split(","))
    if not args.real_only:
        if not args.no_ratio:
            print_ratios(ratios(names, args.n, samples), samples)
        if not args.no_speed:
            impls = tuple(args.impl.split(","))
            if "accel" in impls and not _accel.available():
                p.error("--impl accel: ndckpt_accel is not installed (pip install ./accel)")
            rows = speeds(names, args.speed_n, args.repeat, impls)
            print_speeds(rows)
            print_impls(rows)
    if not args.no_real:
        print_real(real_rows(names, args.n, args.repeat))
        memory_peaks(args.n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
