"""Golden fd_checkpt vectors: locate them and regenerate their buffer contents.

The vectors live in the repository, in ``tests/data/fd_checkpt/`` (see its
``PROVENANCE.md``), and are read only from there: no environment variable or
path outside the repository is consulted. ``SHA256SUMS`` in that directory
lists every file; a listed file that is missing is a ``FileNotFoundError``
naming the path looked at, so a test fails instead of being skipped. The
generators follow ``tests/data/fd_checkpt/README.md`` exactly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

PHRASE = b"The quick brown fox jumps over the lazy dog. "
WORDS = [
    w.encode() + b" "
    for w in (
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
        "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi",
    )
]
_M64 = (1 << 64) - 1


#: The only place the vectors are read from.
VECTORS_DIR = Path(__file__).resolve().parent / "data" / "fd_checkpt"


def vectors_dir() -> Path:
    return VECTORS_DIR


def manifest() -> dict[str, str]:
    """``SHA256SUMS``: file name -> sha256 hex of every vector file (raises if the list is missing)."""
    sums = VECTORS_DIR / "SHA256SUMS"
    if not sums.is_file():
        raise FileNotFoundError(
            f"golden vectors missing: no {sums} (the fd_checkpt vectors are part of the repository, in "
            f"tests/data/fd_checkpt/; restore them with `git checkout -- tests/data/fd_checkpt`)"
        )
    out: dict[str, str] = {}
    for line in sums.read_text(encoding="ascii").splitlines():
        digest, name = line.split(maxsplit=1)
        out[name.lstrip("*")] = digest
    return out


def check_files() -> list[str]:
    """The problems with the vector files: each listed file missing or not matching its sha256."""
    problems = []
    for name, digest in manifest().items():
        p = VECTORS_DIR / name
        if not p.is_file():
            problems.append(f"missing {p}")
        elif hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            problems.append(f"{p} differs from its sha256 in SHA256SUMS")
    return problems


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
    """The case names, from ``SHA256SUMS`` (not from the files present, so a lost file fails its test)."""
    return sorted(n[: -len(".json")] for n in manifest() if n.endswith(".json"))


def _read(p: Path) -> bytes:
    if not p.is_file():
        raise FileNotFoundError(
            f"golden vector missing: {p} (listed in {VECTORS_DIR / 'SHA256SUMS'}; restore it with "
            f"`git checkout -- tests/data/fd_checkpt`)"
        )
    return p.read_bytes()


def load_case(name: str) -> tuple[dict[str, Any], bytes]:
    d = vectors_dir()
    return json.loads(_read(d / f"{name}.json")), _read(d / f"{name}.ckpt")


def decode_lz4_frame(
    data: bytes | memoryview, off: int, sizes: list[int]
) -> tuple[list[bytes], list[list[tuple[int, int]]], int]:
    """Decode an LZ4 frame at ``off`` holding buffers of ``sizes`` with python-lz4 only.

    An independent decoder (spec section 10): it parses the 3-byte headers and
    decodes each block with ``lz4.block.decompress(..., dict=last 64 KiB of
    the frame)``, which raises unless the block decodes to exactly ``usz``
    bytes. Returns the buffers, each buffer's ``(usz, stored)`` chunk list
    (stored = 3 + compressed size) and the offset just past the frame.
    Raises ValueError naming the chunk's offset on a bad header or block.
    """
    import lz4.block

    mv = memoryview(data)
    history = b""
    bufs: list[bytes] = []
    chunks: list[list[tuple[int, int]]] = []
    for n in sizes:
        out = bytearray()
        cks: list[tuple[int, int]] = []
        while len(out) < n:
            usz = min(65536, n - len(out))
            if off + 3 > len(mv):
                raise ValueError(f"truncated chunk header at offset {off}")
            csz = mv[off] | mv[off + 1] << 8 | mv[off + 2] << 16
            if not 1 <= csz <= usz + usz // 255 + 16 or off + 3 + csz > len(mv):
                raise ValueError(f"bad chunk header at offset {off}: csz {csz} for usz {usz}")
            block = bytes(mv[off + 3 : off + 3 + csz])
            try:
                piece = lz4.block.decompress(block, uncompressed_size=usz, dict=history)
            except lz4.block.LZ4BlockError as e:
                raise ValueError(f"chunk at offset {off}: {e}") from e
            if len(piece) != usz:  # python-lz4 returns a short decode without raising
                raise ValueError(f"chunk at offset {off}: decoded to {len(piece)} bytes, not {usz}")
            history = (history + piece)[-65536:]
            out += piece
            cks.append((usz, csz + 3))
            off += 3 + csz
        bufs.append(bytes(out))
        chunks.append(cks)
    return bufs, chunks, off
