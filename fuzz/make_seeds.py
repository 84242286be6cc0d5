"""Write the seed inputs of the reader fuzz corpus: small valid checkpoints of both styles.

Run from the repository root: ``.venv/bin/python fuzz/make_seeds.py fuzz/corpus``. The seeds
are deterministic (fixed content), named ``seed-<what>``, and kept in the corpus so the
fuzzer always starts from files that pass every check.

``fuzz/make_seeds.py --hostile 500 [--seed S] /tmp/fz`` writes hostile files of the
independent generator in ``tests/hostile.py`` instead (``hostile-*``): generated, so they
go into a scratch folder, not into the committed corpus.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np

import ndckpt
from ndckpt._backend import StreamSink
from ndckpt.container.plan import prepare
from ndckpt.container.write import write_checkpoint


def _save(arrays: Any, style: Any = "raw", frame_bytes: int = 1 << 16, metadata: Any = None) -> bytes:
    buf = io.BytesIO()
    write_checkpoint(StreamSink(buf, 1 << 20), prepare(arrays, style, metadata, frame_bytes), 1, None)
    return buf.getvalue()


def seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    small = {
        "i": np.arange(6, dtype="<i4").reshape(2, 3),
        "f": np.array([1.5, np.nan, -0.0], ">f8"),
        "s": np.array([(1, 2.0)], [("a", "<i2"), ("b", "<f4")]),
        "u": np.array(["ab", "c"], "<U2"),
        "b": np.array(True),
        "g": {"x": np.zeros(0, "u1"), "empty": {}},
    }
    out = {
        "empty": _save({}),
        "raw-small": _save(small),
        "lz4-small": _save(small, "lz4"),
        "mixed-small": _save(small, {"i": "lz4", "g/x": "lz4"}, metadata={"step": 3}),
        "fortran": _save({"F": np.asfortranarray(np.arange(12, dtype="u2").reshape(3, 4))}, "lz4"),
        # 16 KiB frames: arrays larger than 4 KiB get frames of their own, so these
        # small files still have several frames of each style.
        "raw-frames": _save({"a": np.arange(5000, dtype="<u4"), "b": np.ones(10, "u1")}, frame_bytes=1 << 16),
        "lz4-frames": _save(
            {"a": (np.arange(40000) % 7).astype("u1"), "b": np.frombuffer(rng.bytes(300), "u1")}, "lz4"
        ),
        "lz4-random": _save({"r": np.frombuffer(rng.bytes(20000), "u1")}, "lz4"),
    }
    for data in out.values():
        ndckpt.verify(data)
    return out


def hostile_seeds(n: int, seed: int, max_len: int = 65536) -> dict[str, bytes]:
    """``n`` files of the hostile generator (tests/hostile.py), at most ``max_len`` bytes each
    (the fuzz target's default ``-max_len``), named ``hostile-<seed>-<case>``.

    These are mostly invalid files that get past every check but one, so the fuzzer starts
    next to each check; they are not kept in the corpus (make them into a scratch folder)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import hostile

    out: dict[str, bytes] = {}
    for case in hostile.cases(seed):
        if len(out) >= n:
            break
        if len(case.data) <= max_len:
            out[f"hostile-{seed}-{case.name}"] = case.data
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write fuzz seed inputs into a folder.")
    p.add_argument("target", nargs="?", default="fuzz/corpus")
    p.add_argument(
        "--hostile",
        type=int,
        metavar="N",
        default=0,
        help="write N hostile files from tests/hostile.py instead of the valid seed-* files",
    )
    p.add_argument("--seed", type=int, default=1, help="generator seed for --hostile")
    args = p.parse_args(argv)
    target = Path(args.target)
    target.mkdir(parents=True, exist_ok=True)
    files = hostile_seeds(args.hostile, args.seed) if args.hostile else {f"seed-{k}": v for k, v in seeds().items()}
    for name, data in files.items():
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        (target / safe).write_bytes(data)
        print(f"{target / safe}: {len(data)} bytes")


if __name__ == "__main__":
    main()
