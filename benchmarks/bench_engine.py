"""Frame-engine benchmark: ndckpt Checkpt/Restore against the plain-Python baselines.

Run from the repository root::

    .venv/bin/python benchmarks/bench_engine.py [--size-mib N] [--repeat R]

Every measurement pairs one ndckpt operation with a baseline that moves the same
bytes between the same (page-aligned, prefaulted) buffers. In every round both are
timed back to back, in alternating order, so machine noise hits both alike. For each
pair the script prints GB/s (uncompressed bytes / 1e9 per second) best-of-R and
median for both, and the ratio ``baseline time / ndckpt time`` (above 1 means ndckpt is
faster): the ratio of the best times and the median of the per-round ratios.

Tables (see benchmarks/README.md): RAW mmio, LZ4 mmio, RAW stream (/dev/shm) and
many-small (20,000 buffers in one frame). Results also go to
``benchmarks/results/engine.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lz4
import lz4.block
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _datasets as D

import ndckpt
from ndckpt import Checkpt, Restore, _lz4
from ndckpt.format import CHUNK_USZ_MAX, lz4_frame_bound

RAW, LZ4 = 1, 2
CHUNK = CHUNK_USZ_MAX


@dataclass
class Pair:
    """One ndckpt-vs-baseline measurement."""

    table: str
    dataset: str
    ours: str
    base: str
    nbytes: int
    target: float | None
    ours_s: list[float] = field(default_factory=list)
    base_s: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio_best(self) -> float:
        return min(self.base_s) / min(self.ours_s)

    @property
    def ratio_median(self) -> float:
        return statistics.median(b / o for o, b in zip(self.ours_s, self.base_s, strict=True))

    def gbs(self, times: list[float]) -> tuple[float, float]:
        return self.nbytes / min(times) / 1e9, self.nbytes / statistics.median(times) / 1e9

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.ratio_best >= self.target

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        ob, om = self.gbs(self.ours_s)
        bb, bm = self.gbs(self.base_s)
        d.update(
            ours_gbs_best=ob,
            ours_gbs_median=om,
            base_gbs_best=bb,
            base_gbs_median=bm,
            ratio_best=self.ratio_best,
            ratio_median=self.ratio_median,
            target_met=self.met,
        )
        return d


#: The clock: wall time by default; ``--clock cpu`` uses this process's user+system CPU
#: time instead, which leaves out the time other processes take the core away (the work
#: measured is single-threaded, and kernel copies for file I/O count as system time).
CLOCK: Callable[[], float] = time.perf_counter


def _timed(fn: Callable[[], object]) -> float:
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


def measure(pair: Pair, ours: Callable[[], object], base: Callable[[], object], repeat: int) -> Pair:
    """One untimed warm-up of each, then ``repeat`` interleaved rounds (order alternates)."""
    ours()
    base()
    gc.collect()
    gc.disable()
    try:
        for r in range(repeat):
            if r % 2 == 0:
                pair.ours_s.append(_timed(ours))
                pair.base_s.append(_timed(base))
            else:
                pair.base_s.append(_timed(base))
                pair.ours_s.append(_timed(ours))
    finally:
        gc.enable()
    return pair


def _u8(a: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.uint8]]:
    return a.view(np.uint8).reshape(-1)


def _aligned(nbytes: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    return D.prefault(D.aligned_empty(nbytes))


def _frame_chunks(frame: memoryview, n: int) -> list[tuple[memoryview, int]]:
    """(block, usz) for each chunk of one LZ4 buffer of n bytes at the start of ``frame``."""
    out, off, pos = [], 0, 0
    while pos < n:
        usz = min(CHUNK, n - pos)
        csz = frame[off] | frame[off + 1] << 8 | frame[off + 2] << 16
        out.append((frame[off + 3 : off + 3 + csz], usz))
        off += 3 + csz
        pos += usz
    return out


# --------------------------------------------------------------------------------------
# Cases on one big buffer


def bench_raw_mmio(ds: str, data: np.ndarray[Any, Any], repeat: int) -> tuple[list[Pair], np.ndarray[Any, Any]]:
    src = _u8(data)
    n = src.nbytes
    region = _aligned(n)
    dst = _aligned(n)

    def ck() -> None:
        c = Checkpt.mmio(region)
        c.frame_open(RAW)
        c.buf(data)
        c.frame_close()
        c.fini()

    def rs() -> None:
        r = Restore.mmio(region)
        r.frame_open(RAW)
        r.buf(dst)
        r.frame_close()
        r.fini()

    views: list[memoryview] = []

    def rs_view() -> None:
        r = Restore.mmio(region)
        r.frame_open(RAW)
        views.append(r.view(n))
        r.frame_close()
        r.fini()

    p1 = measure(
        Pair("raw_mmio", ds, "Checkpt.mmio RAW", "np.copyto", n, 0.9),
        ck, lambda: np.copyto(region, src), repeat,
    )
    ck()
    assert np.array_equal(region, src), "RAW Checkpt.mmio wrote wrong bytes"
    p2 = measure(
        Pair("raw_mmio", ds, "Restore.mmio RAW buf", "np.copyto", n, 0.9),
        rs, lambda: np.copyto(dst, region), repeat,
    )
    dst.fill(0)
    rs()
    assert np.array_equal(dst, src), "RAW Restore.mmio read wrong bytes"
    p3 = measure(
        Pair("raw_mmio", ds, "Restore.mmio RAW view", "memoryview slice", n, None),
        rs_view, lambda: views.append(memoryview(region)[:n]), repeat,
    )
    assert bytes(views[0][:64]) == bytes(src[:64])
    views.clear()
    return [p1, p2, p3], region


def bench_lz4_mmio(ds: str, data: np.ndarray[Any, Any], repeat: int) -> list[Pair]:
    src = _u8(data)
    n = src.nbytes
    smv = memoryview(src)
    region = _aligned(lz4_frame_bound([n]))
    dst = _aligned(n)
    dmv = memoryview(dst)
    compress, decompress = lz4.block.compress, lz4.block.decompress
    fsz = [0]

    def ck() -> None:
        c = Checkpt.mmio(region)
        c.frame_open(LZ4)
        c.buf(data)
        fsz[0] = c.frame_close()
        c.fini()

    def base_ck() -> None:
        for i in range(0, n, CHUNK):
            compress(smv[i : i + CHUNK], mode="default", acceleration=1, store_size=False)

    p1 = measure(Pair("lz4_mmio", ds, "Checkpt.mmio LZ4", "lz4.block.compress", n, 0.7), ck, base_ck, repeat)
    ck()
    frame = memoryview(region)[: fsz[0]]
    pyl = sum(
        len(compress(smv[i : i + CHUNK], mode="default", acceleration=1, store_size=False))
        for i in range(0, n, CHUNK)
    )
    p1.extra.update(ours_ratio=n / fsz[0], pylz4_ratio=n / pyl, frame_bytes=fsz[0], pylz4_bytes=pyl)
    chunks = _frame_chunks(frame, n)

    def rs() -> None:
        r = Restore.mmio(frame)
        r.frame_open(LZ4)
        r.buf(dst)
        r.frame_close()
        r.fini()

    def base_rs_copy() -> None:
        pos = 0
        for blk, usz in chunks:
            out = decompress(blk, uncompressed_size=usz, dict=dmv[pos - CHUNK : pos] if pos else None)
            dmv[pos : pos + usz] = out
            pos += usz

    def base_rs_only() -> None:
        pos = 0
        for blk, usz in chunks:
            decompress(blk, uncompressed_size=usz, dict=smv[pos - CHUNK : pos] if pos else None)
            pos += usz

    p2 = measure(
        Pair("lz4_mmio", ds, "Restore.mmio LZ4", "lz4.block.decompress + copy", n, 1.0),
        rs, base_rs_copy, repeat,
    )
    dst.fill(0)
    base_rs_copy()
    assert np.array_equal(dst, src), "python-lz4 could not decode ndckpt's frame"
    dst.fill(0)
    rs()
    assert np.array_equal(dst, src), "LZ4 Restore.mmio read wrong bytes"
    p3 = measure(
        Pair("lz4_mmio", ds, "Restore.mmio LZ4", "lz4.block.decompress only", n, None),
        rs, base_rs_only, repeat,
    )
    for p in (p2, p3):
        p.extra.update(ours_ratio=n / fsz[0])
    return [p1, p2, p3]


def bench_stream(ds: str, data: np.ndarray[Any, Any], shm: Path, repeat: int) -> list[Pair]:
    src = _u8(data)
    n = src.nbytes
    smv = memoryview(src)
    dst = _aligned(n)
    dmv = memoryview(dst)
    fd, name = tempfile.mkstemp(prefix="ndckpt_bench_", suffix=".bin", dir=shm)
    os.close(fd)
    path = Path(name)
    try:
        path.write_bytes(smv)  # the file exists at full size: both sides overwrite in place

        def ck() -> None:
            with open(path, "r+b", buffering=0) as f:
                c = Checkpt.stream(f)
                c.frame_open(RAW)
                c.buf(data)
                c.frame_close()
                c.fini()

        def base_ck() -> None:
            with open(path, "r+b", buffering=0) as f:
                done = 0
                while done < n:
                    done += f.write(smv[done:])

        def rs() -> None:
            with open(path, "rb", buffering=0) as f:
                r = Restore.stream(f)
                r.frame_open(RAW)
                r.buf(dst)
                r.frame_close()
                r.fini()

        def base_rs() -> None:
            with open(path, "rb", buffering=0) as f:
                done = 0
                while done < n:
                    done += f.readinto(dmv[done:])

        p1 = measure(Pair("raw_stream", ds, "Checkpt.stream RAW", "f.write", n, None), ck, base_ck, repeat)
        ck()
        assert path.read_bytes() == smv, "RAW Checkpt.stream wrote wrong bytes"
        p2 = measure(Pair("raw_stream", ds, "Restore.stream RAW", "f.readinto", n, None), rs, base_rs, repeat)
        dst.fill(0)
        rs()
        assert np.array_equal(dst, src), "RAW Restore.stream read wrong bytes"
    finally:
        path.unlink(missing_ok=True)
    return [p1, p2]


# --------------------------------------------------------------------------------------
# Many small buffers in one frame


def bench_many_small(repeat: int) -> list[Pair]:
    arrays = D.many_small()
    ds = f"many-small ({len(arrays)} x {arrays[0].nbytes} B)"
    sizes = [a.nbytes for a in arrays]
    n = sum(sizes)
    offs = np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()
    outs = [D.prefault(np.empty_like(a)) for a in arrays]
    compress, decompress = lz4.block.compress, lz4.block.decompress
    pairs: list[Pair] = []

    # RAW
    region = _aligned(n)
    rmv = memoryview(region)

    def ck_raw() -> None:
        c = Checkpt.mmio(region)
        c.frame_open(RAW)
        for a in arrays:
            c.buf(a)
        c.frame_close()
        c.fini()

    def base_ck_raw() -> None:
        for a, o in zip(arrays, offs, strict=True):
            b = memoryview(a).cast("B")
            rmv[o : o + b.nbytes] = b

    def rs_raw() -> None:
        r = Restore.mmio(region)
        r.frame_open(RAW)
        for o in outs:
            r.buf(o)
        r.frame_close()
        r.fini()

    def base_rs_raw() -> None:
        for a, o in zip(outs, offs, strict=True):
            b = memoryview(a).cast("B")
            b[:] = rmv[o : o + b.nbytes]

    pairs.append(measure(Pair("many_small", ds, "Checkpt.mmio RAW", "memoryview slice loop", n, None), ck_raw, base_ck_raw, repeat))
    pairs.append(measure(Pair("many_small", ds, "Restore.mmio RAW", "memoryview slice loop", n, None), rs_raw, base_rs_raw, repeat))
    for o in outs:
        o.fill(0)
    rs_raw()
    assert all(np.array_equal(a, o) for a, o in zip(arrays, outs, strict=True))

    # LZ4
    lregion = _aligned(lz4_frame_bound(sizes))
    fsz = [0]

    def ck_lz4() -> None:
        c = Checkpt.mmio(lregion)
        c.frame_open(LZ4)
        for a in arrays:
            c.buf(a)
        fsz[0] = c.frame_close()
        c.fini()

    def base_ck_lz4() -> None:
        for a in arrays:
            compress(a, mode="default", acceleration=1, store_size=False)

    p = measure(Pair("many_small", ds, "Checkpt.mmio LZ4", "lz4.block.compress loop", n, 0.7), ck_lz4, base_ck_lz4, repeat)
    ck_lz4()
    blocks = [compress(a, mode="default", acceleration=1, store_size=False) for a in arrays]
    p.extra.update(ours_ratio=n / fsz[0], pylz4_ratio=n / sum(len(b) for b in blocks))
    pairs.append(p)
    frame = memoryview(lregion)[: fsz[0]]

    def rs_lz4() -> None:
        r = Restore.mmio(frame)
        r.frame_open(LZ4)
        for o in outs:
            r.buf(o)
        r.frame_close()
        r.fini()

    def base_rs_lz4() -> None:
        for blk, a in zip(blocks, outs, strict=True):
            b = memoryview(a).cast("B")
            b[:] = decompress(blk, uncompressed_size=b.nbytes)

    pairs.append(measure(Pair("many_small", ds, "Restore.mmio LZ4", "lz4.block.decompress + copy loop", n, 1.0), rs_lz4, base_rs_lz4, repeat))
    for o in outs:
        o.fill(0)
    rs_lz4()
    assert all(np.array_equal(a, o) for a, o in zip(arrays, outs, strict=True))
    for q in pairs:
        q.extra.update(buffers=len(arrays), ours_us_per_buffer_best=min(q.ours_s) / len(arrays) * 1e6,
                       base_us_per_buffer_best=min(q.base_s) / len(arrays) * 1e6)
    return pairs


# --------------------------------------------------------------------------------------
# --explain: where the LZ4 time goes (the engine against hand-written ctypes loops)


def explain_lz4(ds: str, data: np.ndarray[Any, Any], repeat: int) -> dict[str, list[float]]:
    """Time the LZ4 paths layer by layer, round-robin, on the same bytes.

    Compress: the engine; the same liblz4 streaming calls from a bare Python loop (ring copy
    + ``LZ4_compress_fast_continue``, i.e. the engine minus its Python overhead); that loop
    without the ring copy (NOT fd_checkpt's bytes: shows what the copy costs); a full
    ``LZ4_resetStream`` before every chunk, which is what ``lz4.block.compress`` does (no
    history: every chunk compressed alone, different bytes); python-lz4 itself. Decompress: the engine; a bare loop of
    ``LZ4_decompress_safe_usingDict`` into the destination; python-lz4 with and without
    the copy into numpy.
    """
    import ctypes

    src = _u8(data)
    n = src.nbytes
    smv = memoryview(src)
    sa = int(src.ctypes.data)
    region = _aligned(lz4_frame_bound([n]))  # the engine writes here
    scratch = _aligned(lz4_frame_bound([n]))  # the bare loops write here
    ra = int(scratch.ctypes.data)
    ring = _aligned(196608)
    ring_a = int(ring.ctypes.data)
    dst = _aligned(n)
    da = int(dst.ctypes.data)
    dmv = memoryview(dst)
    stream = _lz4.LZ4Stream()
    dec = _lz4.Decoder()
    lib = ctypes.CDLL(_lz4.library_path())
    reset_full = lib["LZ4_resetStream"]
    reset = lib["LZ4_resetStream_fast"]
    memmove = ctypes.memmove
    compress, decompress = lz4.block.compress, lz4.block.decompress
    cap = 1 << 17  # >= LZ4_compressBound(65536): output never limited

    def engine_ck() -> None:
        c = Checkpt.mmio(region)
        c.frame_open(LZ4)
        c.buf(data)
        c.frame_close()
        c.fini()

    def loop_ring() -> None:
        reset(stream.handle)
        fn, h, a_s, a_d = stream.compress_fn, stream.handle, stream.src, stream.dst
        cur, o = 0, ra
        for i in range(0, n, CHUNK):
            if 196608 - cur < CHUNK:
                cur = 0
            memmove(ring_a + cur, sa + i, CHUNK)
            a_s.value, a_d.value = ring_a + cur, o + 3
            o += fn(h, a_s, a_d, CHUNK, cap, 1) + 3
            cur += CHUNK

    def loop_nocopy() -> None:
        reset(stream.handle)
        fn, h, a_s, a_d = stream.compress_fn, stream.handle, stream.src, stream.dst
        o = ra
        for i in range(0, n, CHUNK):
            a_s.value, a_d.value = sa + i, o + 3
            o += fn(h, a_s, a_d, CHUNK, cap, 1) + 3

    def loop_fresh() -> None:
        fn, h, a_s, a_d = stream.compress_fn, stream.handle, stream.src, stream.dst
        o = ra
        for i in range(0, n, CHUNK):
            reset_full(h)
            a_s.value, a_d.value = sa + i, o + 3
            o += fn(h, a_s, a_d, CHUNK, cap, 1) + 3

    def pylz4_ck() -> None:
        for i in range(0, n, CHUNK):
            compress(smv[i : i + CHUNK], mode="default", acceleration=1, store_size=False)

    assert n % CHUNK == 0, "--explain needs a size that is a multiple of 64 KiB"
    c = Checkpt.mmio(region)
    c.frame_open(LZ4)
    c.buf(data)
    fsz = c.frame_close()
    c.fini()
    stored = _aligned(fsz)
    stored[:] = region[:fsz]
    chunks = _frame_chunks(memoryview(stored), n)
    base = int(stored.ctypes.data)
    addrs, off = [], 0
    for b, _ in chunks:
        addrs.append((base + off + 3, len(b)))
        off += 3 + len(b)

    def engine_rs() -> None:
        r = Restore.mmio(stored)
        r.frame_open(LZ4)
        r.buf(dst)
        r.frame_close()
        r.fini()

    def loop_dec() -> None:
        fn, a_s, a_d, a_h = dec.decompress_fn, dec.src, dec.dst, dec.dict
        pos = 0
        for ba, csz in addrs:
            a_s.value, a_d.value, a_h.value = ba, da + pos, da + pos - CHUNK if pos else None
            fn(a_s, a_d, csz, CHUNK, a_h, CHUNK if pos else 0)
            pos += CHUNK

    def pylz4_rs_copy() -> None:
        pos = 0
        for blk, usz in chunks:
            dmv[pos : pos + usz] = decompress(blk, uncompressed_size=usz, dict=dmv[pos - CHUNK : pos] if pos else None)
            pos += usz

    def pylz4_rs_only() -> None:
        pos = 0
        for blk, usz in chunks:
            decompress(blk, uncompressed_size=usz, dict=smv[pos - CHUNK : pos] if pos else None)
            pos += usz

    fns = [engine_ck, loop_ring, loop_nocopy, loop_fresh, pylz4_ck, engine_rs, loop_dec, pylz4_rs_copy, pylz4_rs_only]
    times: dict[str, list[float]] = {f.__name__: [] for f in fns}
    for f in fns:
        f()
    gc.disable()
    try:
        for r in range(repeat):
            for f in fns if r % 2 == 0 else fns[::-1]:
                times[f.__name__].append(_timed(f))
    finally:
        gc.enable()
    dst.fill(0)
    loop_dec()
    assert np.array_equal(dst, src), "explain: the bare decompress loop decoded wrong bytes"
    stream.free()
    return times


EXPLAIN_LABELS = {
    "engine_ck": "Checkpt.mmio LZ4 (engine)",
    "loop_ring": "bare loop: ring memmove + LZ4_compress_fast_continue",
    "loop_nocopy": "bare loop: LZ4_compress_fast_continue in place (not fd_checkpt bytes)",
    "loop_fresh": "bare loop: LZ4_resetStream + LZ4_compress_fast_continue per chunk (python-lz4's calls: no history, other bytes)",
    "pylz4_ck": "lz4.block.compress per chunk",
    "engine_rs": "Restore.mmio LZ4 (engine)",
    "loop_dec": "bare loop: LZ4_decompress_safe_usingDict into the destination",
    "pylz4_rs_copy": "lz4.block.decompress + copy into numpy",
    "pylz4_rs_only": "lz4.block.decompress, output dropped",
}


def explain_many_small(repeat: int) -> tuple[dict[str, list[float]], int]:
    """Per-buffer cost of the many-small LZ4 paths: the engine, a bare loop making the same
    liblz4 calls with none of the engine's checks (the floor for ctypes), and python-lz4."""
    import ctypes

    arrays = D.many_small()
    sizes = [a.nbytes for a in arrays]
    region = _aligned(lz4_frame_bound(sizes))
    rmv = memoryview(region)
    base = int(region.ctypes.data)
    ring = _aligned(196608)
    ring_mv = memoryview(ring)
    ring_a = int(ring.ctypes.data)
    hist = _aligned(1 << 18)
    hist_mv = memoryview(hist)
    hist_a = int(hist.ctypes.data)
    outs = [D.prefault(np.empty_like(a)) for a in arrays]
    stream = _lz4.LZ4Stream()
    dec = _lz4.Decoder()
    reset = ctypes.CDLL(_lz4.library_path())["LZ4_resetStream_fast"]
    compress, decompress = lz4.block.compress, lz4.block.decompress
    blocks = [compress(a, mode="default", acceleration=1, store_size=False) for a in arrays]

    def engine_ck() -> None:
        c = Checkpt.mmio(region)
        c.frame_open(LZ4)
        for a in arrays:
            c.buf(a)
        c.frame_close()
        c.fini()

    def loop_ck() -> None:
        reset(stream.handle)
        fn, h, a_s, a_d = stream.compress_fn, stream.handle, stream.src, stream.dst
        cur = off = 0
        for a in arrays:
            mv = memoryview(a).cast("B")
            k = mv.nbytes
            if 196608 - cur < k:
                cur = 0
            ring_mv[cur : cur + k] = mv
            a_s.value, a_d.value = ring_a + cur, base + off + 3
            c = fn(h, a_s, a_d, k, 1 << 17, 1)
            rmv[off], rmv[off + 1], rmv[off + 2] = c & 255, c >> 8 & 255, c >> 16
            off += c + 3
            cur += k

    def pylz4_ck() -> None:
        for a in arrays:
            compress(a, mode="default", acceleration=1, store_size=False)

    engine_ck()

    def engine_rs() -> None:
        r = Restore.mmio(region)
        r.frame_open(LZ4)
        for o in outs:
            r.buf(o)
        r.frame_close()
        r.fini()

    def loop_rs() -> None:
        fn, a_s, a_d, a_h = dec.decompress_fn, dec.src, dec.dst, dec.dict
        off = hl = 0
        for a in outs:
            mv = memoryview(a).cast("B")
            k = mv.nbytes
            if hl + k > 1 << 18:
                hl = 0  # (a real reader keeps the last 64 KiB; the floor skips that rare move)
            csz = rmv[off] | rmv[off + 1] << 8 | rmv[off + 2] << 16
            dl = hl if hl < CHUNK else CHUNK
            a_s.value, a_d.value, a_h.value = base + off + 3, hist_a + hl, hist_a + hl - dl
            fn(a_s, a_d, csz, k, a_h, dl)
            mv[:] = hist_mv[hl : hl + k]
            off += csz + 3
            hl += k

    def pylz4_rs() -> None:
        for blk, a in zip(blocks, outs, strict=True):
            b = memoryview(a).cast("B")
            b[:] = decompress(blk, uncompressed_size=b.nbytes)

    fns = [engine_ck, loop_ck, pylz4_ck, engine_rs, loop_rs, pylz4_rs]
    times: dict[str, list[float]] = {f.__name__: [] for f in fns}
    for f in fns:
        f()
    gc.disable()
    try:
        for r in range(repeat):
            for f in fns if r % 2 == 0 else fns[::-1]:
                times[f.__name__].append(_timed(f))
    finally:
        gc.enable()
    stream.free()
    return times, len(arrays)


def explain_table(results: dict[str, dict[str, list[float]]], nbytes: int) -> str:
    names = list(results)
    lines = ["### Where the LZ4 time goes (GB/s best / median; engine vs bare ctypes loops)", "",
             "| path | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, label in EXPLAIN_LABELS.items():
        cells = []
        for ds in names:
            t = results[ds][key]
            cells.append(f"{nbytes / min(t) / 1e9:.2f} / {nbytes / statistics.median(t) / 1e9:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Output


def _fmt_target(p: Pair) -> str:
    if p.target is None:
        return ""
    return f">= {p.target:g} {'met' if p.met else '**MISSED**'}"


def table(pairs: list[Pair], title: str, extra_cols: list[tuple[str, Callable[[Pair], str]]] | None = None) -> str:
    extra_cols = extra_cols or []
    head = ["dataset", "ndckpt", "baseline", "ndckpt GB/s best / med", "baseline GB/s best / med",
            "ratio best", "ratio med", "target"] + [c for c, _ in extra_cols]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in pairs:
        ob, om = p.gbs(p.ours_s)
        bb, bm = p.gbs(p.base_s)
        row = [p.dataset, p.ours, p.base, f"{ob:.2f} / {om:.2f}", f"{bb:.2f} / {bm:.2f}",
               f"{p.ratio_best:.2f}", f"{p.ratio_median:.2f}", _fmt_target(p)] + [f(p) for _, f in extra_cols]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=256, help="dataset size in MiB (default 256)")
    ap.add_argument("--repeat", type=int, default=5, help="timed rounds per pair (default 5)")
    ap.add_argument("--datasets", default="smooth,ints,random,many-small",
                    help="comma-separated subset of smooth,ints,random,many-small")
    ap.add_argument("--shm", type=Path, default=Path("/dev/shm"), help="directory for stream-mode files")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "engine.json")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time (default) or process CPU time (steadier on a busy machine)")
    ap.add_argument("--explain", action="store_true",
                    help="only time the LZ4 paths layer by layer (engine vs bare ctypes loops); no JSON")
    args = ap.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    nbytes = args.size_mib << 20
    names = [s.strip() for s in args.datasets.split(",") if s.strip()]
    started = time.time()
    load0 = os.getloadavg()

    if args.explain:
        res = {}
        for ds in [d for d in names if d != "many-small"]:
            res[ds] = explain_lz4(ds, D.generate(ds, nbytes), args.repeat)
            gc.collect()
        print(f"## LZ4 layers, {args.size_mib} MiB, best of {args.repeat}, {args.clock} clock\n")
        if res:
            print(explain_table(res, nbytes))
        if "many-small" in names:
            ms, count = explain_many_small(args.repeat)
            labels = {
                "engine_ck": "Checkpt.mmio LZ4, one buf() per array (engine)",
                "loop_ck": "bare loop: ring slice copy + LZ4_compress_fast_continue + header",
                "pylz4_ck": "lz4.block.compress per array",
                "engine_rs": "Restore.mmio LZ4, one buf() per array (engine)",
                "loop_rs": "bare loop: header + LZ4_decompress_safe_usingDict + copy out",
                "pylz4_rs": "lz4.block.decompress + copy per array",
            }
            print(f"### Many small buffers ({count} arrays): us per array, best / median\n")
            print("| path | us/array |\n|---|---|")
            for k, label in labels.items():
                t = ms[k]
                print(f"| {label} | {min(t) / count * 1e6:.2f} / {statistics.median(t) / count * 1e6:.2f} |")
        return 0

    all_pairs: list[Pair] = []
    for ds in names:
        if ds == "many-small":
            all_pairs += bench_many_small(args.repeat)
            continue
        t0 = time.perf_counter()
        data = D.generate(ds, nbytes)
        print(f"# {ds}: {data.nbytes / 2**20:.0f} MiB {data.dtype} generated in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
        raw, _region = bench_raw_mmio(ds, data, args.repeat)
        del _region
        all_pairs += raw
        all_pairs += bench_lz4_mmio(ds, data, args.repeat)
        all_pairs += bench_stream(ds, data, args.shm, args.repeat)
        del data
        gc.collect()

    def of(tab: str) -> list[Pair]:
        return [p for p in all_pairs if p.table == tab]

    def us(p: Pair) -> str:
        return f"{min(p.ours_s) * 1e6:.1f} / {min(p.base_s) * 1e6:.1f}"

    def ratios(p: Pair) -> str:
        if "pylz4_ratio" in p.extra:
            return f"{p.extra['ours_ratio']:.3f} / {p.extra['pylz4_ratio']:.3f}"
        return f"{p.extra['ours_ratio']:.3f}" if "ours_ratio" in p.extra else ""

    def per_buf(p: Pair) -> str:
        return f"{p.extra['ours_us_per_buffer_best']:.2f} / {p.extra['base_us_per_buffer_best']:.2f}"

    out = [
        f"## ndckpt frame engine, {args.size_mib} MiB, best of {args.repeat}, {args.clock} clock "
        f"(liblz4 {_lz4.library_version()}, python-lz4 {lz4.__version__}, numpy {np.__version__})",
        "",
        "ratio = baseline time / ndckpt time (>1: ndckpt faster); 'best' = ratio of best times, "
        "'med' = median of per-round ratios.",
        "",
    ]
    raw_rows = [p for p in of("raw_mmio") if p.target is not None]
    view_rows = [p for p in of("raw_mmio") if p.target is None]
    if raw_rows:
        out.append(table(raw_rows, "RAW, mmio (page-aligned, prefaulted region and destination)"))
        out.append("Restore.view (zero-copy) of the whole buffer, best time in us (ndckpt / memoryview slice): "
                   + ", ".join(f"{p.dataset} {us(p)}" for p in view_rows) + "\n")
    if of("lz4_mmio"):
        out.append(table(of("lz4_mmio"), "LZ4, mmio (one frame, one buffer; 64 KiB chunks)",
                         [("compression ratio ndckpt / python-lz4", ratios)]))
    if of("raw_stream"):
        out.append(table(of("raw_stream"), f"RAW, stream mode (file on {args.shm}, overwritten in place)"))
    if of("many_small"):
        out.append(table(of("many_small"), "Many small buffers in one frame (mmio)",
                         [("us/buffer best ndckpt / baseline", per_buf), ("compression ratio", ratios)]))
    text = "\n".join(out)
    print(text)

    result = {
        "benchmark": "engine",
        "started_unix": started,
        "seconds": time.time() - started,
        "args": {"size_mib": args.size_mib, "repeat": args.repeat, "datasets": names, "shm": str(args.shm),
                 "clock": args.clock},
        "env": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "python_lz4": lz4.__version__,
            "liblz4": _lz4.library_version(),
            "liblz4_path": _lz4.library_path(),
            "ndckpt": ndckpt.__version__,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "loadavg_start": load0,
            "loadavg_end": os.getloadavg(),
        },
        "pairs": [p.summary() for p in all_pairs],
        "markdown": text,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
