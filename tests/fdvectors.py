"""Golden fd_checkpt vectors: locate them and regenerate their buffer contents.

The generators follow ``../shared/vectors/fd_checkpt/README.md`` exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

PHRASE = b"The quick brown fox jumps over the lazy dog. "
WORDS = [w.encode() + b" " for w in (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi".split()
)]
_M64 = (1 << 64) - 1


def vectors_dir() -> Path:
    env = os.environ.get("NDCKPT_VECTORS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / "fd_checkpt"


def splitmix64(n: int, seed: int) -> bytes:
    k = (n + 7) // 8
    with np.errstate(over="ignore"):
        s = (np.uint64(seed & _M64) + np.arange(1, k + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        z = s
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z.astype("<u8").tobytes()[:n]


def gen(kind: str, n: int, seed: int) -> bytes:
    if kind == "fill":
        return bytes([seed % 256]) * n
    if kind == "text":
        reps = (n + seed % 45) // 45 + 2
        return (PHRASE * reps)[seed % 45 : seed % 45 + n]
    if kind == "mul32":
        i = np.arange(n, dtype=np.uint64)
        return (((i * np.uint64(2654435761) + np.uint64(seed)) & np.uint64(0xFFFFFFFF)) >> np.uint64(24)).astype(
            np.uint8
        ).tobytes()
    if kind == "splitmix64":
        return splitmix64(n, seed)
    if kind == "words":
        r = splitmix64(n + 1, seed)
        out = bytearray()
        k = 0
        while len(out) < n:
            out += WORDS[r[k] % 16]
            k += 1
        return bytes(out[:n])
    raise ValueError(f"unknown generator {kind!r}")


def content(c: dict[str, Any]) -> bytes | None:
    """The bytes of a CONTENT object; None for a NULL pointer."""
    if c["kind"] == "bytes":
        return bytes.fromhex(c["hex"])
    if c["kind"] == "null":
        return None
    if c["kind"] == "pattern":
        return gen(c["gen"], c["size"], c["seed"])
    raise ValueError(f"unknown content kind {c['kind']!r}")


def cases() -> list[str]:
    return sorted(p.stem for p in vectors_dir().glob("*.json"))


def load_case(name: str) -> tuple[dict[str, Any], bytes]:
    d = vectors_dir()
    return json.loads((d / f"{name}.json").read_text()), (d / f"{name}.ckpt").read_bytes()
