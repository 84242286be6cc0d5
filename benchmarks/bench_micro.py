"""The measurements behind the hot-path choices in ndckpt's code, each an A/B pair in one process.

Code comments in ``ndckpt/`` state why a choice was made (a contract or a design reason); the
numbers that justified it are reproduced here instead of being written into the comments::

    .venv/bin/python benchmarks/bench_micro.py              # every case, best of 7 rounds
    .venv/bin/python benchmarks/bench_micro.py --case enum,copy --repeat 15
    .venv/bin/python benchmarks/bench_micro.py --quick      # a smoke run (noisy)

Each case times the variant ndckpt uses ("ours") and the alternative it avoids ("other") on the
same input, alternating in every round (GC off), and prints the best time per operation of each
and ``other / ours`` (above 1: ndckpt's choice is faster). Cases:

``enum``
    ``FrameStyle.RAW`` (an enum class attribute) against a module-level int constant: why
    ``ndckpt.engine`` compares frame styles with plain ints on its per-call paths.
``style``
    ``parse_style`` against the engine's dict lookup for the usual 0/1/2 and FrameStyle
    arguments: why ``frame_open`` has a fast path.
``ctypes_args``
    A liblz4 call whose pointer arguments are preallocated ``c_void_p`` slots (no
    ``argtypes``) against the same call with ``argtypes`` converting Python ints: why
    ``ndckpt._lz4`` binds its per-chunk functions without ``argtypes``. Needs LZ4.
``address``
    The address of a writable buffer through ``ctypes.c_char.from_buffer`` (ours) against
    numpy's ``ndarray.ctypes.data``, the path read-only buffers must take (``_memory.buffer_address``).
``copy``
    A memoryview slice copy (ours up to ``_codec.SMALL_COPY`` bytes) against a
    ``ctypes.memmove`` call, at sizes around the threshold: where a ctypes call starts to pay.
``alignment``
    A 4 MiB copy between page-aligned buffers (what ``ndckpt._memory.aligned_empty``
    gives) against the same copy with the destination 16 bytes off
    a page boundary (4K aliasing between source and destination addresses).
``first_touch``
    Copying 64 MiB into a reused, already touched buffer (``parallel.ScratchPool``) against
    copying into a fresh ``np.empty`` each time (first touch of new pages).
``tasks``
    XXH64 of 64 MiB as one executor task per 16 MiB frame (ours) against one task per 64 KiB
    chunk, on 2 threads: why ``parallel`` hands out whole frames.

Absolute times depend on the machine (a shared 2-core VM swings by 2x between runs); trust the
ratios, from several rounds.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ndckpt import _codec, _lz4, engine
from ndckpt.format import FrameStyle, parse_style
from ndckpt.parallel import aligned_empty

Case = Callable[[int], list[tuple[str, int, Callable[[], Any], Callable[[], Any]]]]


def _loop(fn: Callable[[], Any], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - t0


def case_enum(scale: int) -> list[tuple[str, int, Callable[[], Any], Callable[[], Any]]]:
    raw, st = engine._RAW, 0
    return [("style == RAW", 200_000 * scale, lambda: st == raw, lambda: st == FrameStyle.RAW)]


def case_style(scale: int) -> list[tuple[str, int, Callable[[], Any], Callable[[], Any]]]:
    styles = engine._STYLES

    def fast() -> Any:
        s: object = FrameStyle.LZ4
        return styles.get(s) if type(s) is int or type(s) is FrameStyle else None

    return [("FrameStyle.LZ4 -> style", 100_000 * scale, fast, lambda: parse_style(FrameStyle.LZ4))]


def case_ctypes_args(scale: int) -> list[tuple[str, int, Callable[[], Any], Callable[[], Any]]]:
    lib = _lz4._load()
    if lib is None:
        print("ctypes_args: skipped (no LZ4 library)")
        return []
    src, dst = aligned_empty(4096), aligned_empty(4096)
    src[:] = 0
    csz = int(lib.LZ4_compress_default(ctypes.c_void_p(src.ctypes.data), ctypes.c_void_p(dst.ctypes.data), 16, 4096))
    block = aligned_empty(csz)
    block[:] = dst[:csz]
    a_src, a_dst = int(block.ctypes.data), int(dst.ctypes.data)
    slots = lib["LZ4_decompress_safe"]  # as ndckpt._lz4 binds the per-chunk functions
    slots.restype = ctypes.c_int
    s_src, s_dst = ctypes.c_void_p(0), ctypes.c_void_p(0)
    typed = lib["LZ4_decompress_safe"]
    typed.argtypes, typed.restype = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int], ctypes.c_int

    def ours() -> Any:
        s_src.value = a_src
        s_dst.value = a_dst
        return slots(s_src, s_dst, csz, 16)

    def other() -> Any:
        return typed(a_src, a_dst, csz, 16)

    assert ours() == other() == 16
    return [("LZ4_decompress_safe of 16 B", 50_000 * scale, ours, other)]


def case_address(scale: int) -> list[tuple[str, int, Callable[[], Any], Callable[[], Any]]]:
    mv = memoryview(bytearray(4096))
    c_char, addressof = ctypes.c_char, ctypes.addressof
    return [
        (
            "address of a 4 KiB buffer",
            50_000 * scale,
            lambda: addressof(c_char.from_buffer(mv)),
            lambda: int(np.frombuffer(mv, dtype=np.uint8).ctypes.data),
        )
    ]


def case_copy(scale: int) -> list[tuple[str, int, Callable[[], Any], Callable[[], Any]]]:
    out = []
    src, dst = aligned_empty(1 << 16), aligned_empty(1 << 16)
    src[:] = 1
    smv, dmv = memoryview(src), memoryview(dst)
    sa, da = int(src.ctypes.data), int(dst.ctypes.data)
    memmove = ctypes.memmove
    for n in (256, 1024, _codec.SMALL_COPY, 4 * _codec.SMALL_COPY):

        def ours(n: int = n) -> None:
            dmv[:n] = smv[:n]

        def other(n: int = n) -> None:
            memmove(da, sa, n)

        out.append((f"copy {n} B: slice vs memmove", 50_000 * scale, ours, other))
    return out


def case_alignment(scale: int) -> list[tuple[str, int, Callable[[], Any], Callable[[], Any]]]:
    n = 4 << 20
    src = aligned_empty(n)
    src[:] = 7
    dst_raw = aligned_empty(n + 4096)
    dst_raw[:] = 0
    aligned, off = dst_raw[:n], dst_raw[16 : 16 + n]
    return [
        ("copy 4 MiB: aligned vs dst +16 B", 20 * scale, lambda: np.copyto(aligned, src), lambda: np.copyto(off, src))
    ]


def case_first_touch(scale: int) -> list[tuple[str, int, Callable[[], Any], Callable[[], Any]]]:
    n = 64 << 20
    src = aligned_empty(n)
    src[:] = 3
    reused = aligned_empty(n)
    reused[:] = 0

    def fresh() -> None:
        np.copyto(aligned_empty(n), src)

    return [("copy 64 MiB: reused vs fresh buffer", 2 * scale, lambda: np.copyto(reused, src), fresh)]


def case_tasks(scale: int) -> list[tuple[str, int, Callable[[], Any], Callable[[], Any]]]:
    data = aligned_empty(64 << 20)
    data[:] = np.arange(data.size, dtype=np.uint8)
    frame, chunk = 16 << 20, 64 << 10
    frames = [memoryview(data[i : i + frame]) for i in range(0, data.size, frame)]
    chunks = [memoryview(data[i : i + chunk]) for i in range(0, data.size, chunk)]
    ex = ThreadPoolExecutor(max_workers=2)

    def run(pieces: list[memoryview]) -> None:
        for f in [ex.submit(_lz4.xxh64, p) for p in pieces]:
            f.result()

    return [("xxh64 64 MiB, 2 threads: per frame vs per chunk", 2 * scale, lambda: run(frames), lambda: run(chunks))]


CASES: dict[str, Case] = {
    "enum": case_enum,
    "style": case_style,
    "ctypes_args": case_ctypes_args,
    "address": case_address,
    "copy": case_copy,
    "alignment": case_alignment,
    "first_touch": case_first_touch,
    "tasks": case_tasks,
}


def _fmt(seconds: float) -> str:
    for unit, f in (("s", 1.0), ("ms", 1e3), ("us", 1e6)):
        if seconds * f >= 1:
            return f"{seconds * f:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def measure(name: str, loops: int, ours: Callable[[], Any], other: Callable[[], Any], repeat: int) -> dict[str, Any]:
    """Best time per operation of each over ``repeat`` alternating rounds of ``loops`` calls."""
    ours(), other()  # warm-up
    best = {"ours": float("inf"), "other": float("inf")}
    gc.disable()
    try:
        for r in range(repeat):
            order = (("ours", ours), ("other", other)) if r % 2 == 0 else (("other", other), ("ours", ours))
            for key, fn in order:
                best[key] = min(best[key], _loop(fn, loops) / loops)
    finally:
        gc.enable()
    return {"case": name, "ours": best["ours"], "other": best["other"], "ratio": best["other"] / best["ours"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--case", default=",".join(CASES), help=f"comma-separated, of {','.join(CASES)}")
    ap.add_argument("--repeat", type=int, default=7, help="alternating rounds per case (default 7)")
    ap.add_argument("--quick", action="store_true", help="1/20 of the loop counts and 2 rounds: a smoke run")
    args = ap.parse_args(argv)
    names = [c for c in args.case.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; known: {list(CASES)}")
    repeat = 2 if args.quick else args.repeat
    print(f"| case | ours | other | other / ours |\n|---|---|---|---|  (best of {repeat} rounds)")
    for c in names:
        for name, loops, ours, other in CASES[c](1):
            n = max(1, loops // 20) if args.quick else loops
            row = measure(name, n, ours, other, repeat)
            print(f"| {c}: {name} | {_fmt(row['ours'])} | {_fmt(row['other'])} | {row['ratio']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
