"""A hostile-file generator written from the format documents, independent of ndckpt's writer.

Files are built byte by byte from ``docs/format.md`` (container) and ``docs/fd_checkpt.md``
(LZ4 chunks), with this module's own XXH64 and the ``lz4`` package's block compressor: nothing
of ``ndckpt`` is imported, so a bug shared by ndckpt's writer and reader cannot hide here.
Every checksum is recomputed after a mutation unless the mutation is a checksum lie, so a
mutated field reaches the check that concerns it.

Each :class:`Case` knows what a reader may return: ``expect`` holds the exact leaves (name ->
array or value) when the file is valid, ``None`` when it is not; ``alt_unverified`` /
``alt_verified`` hold the leaves a reader may also return without (or with) RAW-checksum
verification (a flipped RAW data byte is invisible to a mapped load; a non-zero pad is only
reported by ``verify``). A reader may always refuse with a ``CheckptError``; any other success
must match exactly.

``cases(seed, n)`` yields ``n`` cases deterministically from ``seed``.
"""

from __future__ import annotations

import base64
import json
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import lz4.block
import numpy as np

MAGIC = b"\x93NDCKPT\n"
END_MAGIC = b"NDCKEND\n"
VERSION = 2
STORED_VERBATIM = 1 << 63
ALIGN = 4096
CHUNK = 65536

__all__ = ["Case", "Spec", "cases", "flat_leaves", "leaves_equal", "xxh64"]

# -- XXH64 (seed 0), straight from the xxHash specification ------------------------------------

_P1 = 0x9E3779B185EBCA87
_P2 = 0xC2B2AE3D27D4EB4F
_P3 = 0x165667B19E3779F9
_P4 = 0x85EBCA77C2B2AE63
_P5 = 0x27D4EB2F165667C5
_M = (1 << 64) - 1


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * _P2) & _M
    return (_rotl(acc, 31) * _P1) & _M


def _merge(acc: int, v: int) -> int:
    acc ^= _round(0, v)
    return (acc * _P1 + _P4) & _M


def xxh64(data: bytes | bytearray | memoryview, seed: int = 0) -> int:
    """XXH64 of ``data`` (pure Python; fast enough for the small files generated here)."""
    b = bytes(data)
    n = len(b)
    p = 0
    if n >= 32:
        v1 = (seed + _P1 + _P2) & _M
        v2 = (seed + _P2) & _M
        v3 = seed
        v4 = (seed - _P1) & _M
        lanes = struct.unpack_from(f"<{(n // 32) * 4}Q", b)
        for k in range(0, len(lanes), 4):
            v1 = _round(v1, lanes[k])
            v2 = _round(v2, lanes[k + 1])
            v3 = _round(v3, lanes[k + 2])
            v4 = _round(v4, lanes[k + 3])
        p = (n // 32) * 32
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _M
        for v in (v1, v2, v3, v4):
            h = _merge(h, v)
    else:
        h = (seed + _P5) & _M
    h = (h + n) & _M
    while p + 8 <= n:
        (k1,) = struct.unpack_from("<Q", b, p)
        h ^= _round(0, k1)
        h = (_rotl(h, 27) * _P1 + _P4) & _M
        p += 8
    if p + 4 <= n:
        (k4,) = struct.unpack_from("<I", b, p)
        h ^= (k4 * _P1) & _M
        h = (_rotl(h, 23) * _P2 + _P3) & _M
        p += 4
    while p < n:
        h ^= (b[p] * _P5) & _M
        h = (_rotl(h, 11) * _P1) & _M
        p += 1
    h ^= h >> 33
    h = (h * _P2) & _M
    h ^= h >> 29
    h = (h * _P3) & _M
    h ^= h >> 32
    return h


assert xxh64(b"") == 0xEF46DB3751D8E999
assert xxh64(b"abc") == 0x44BC2CF5AD770999


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def lz4_frame(buf: bytes) -> bytes:
    """An fd_checkpt LZ4 frame of one buffer: 64 KiB chunks, each a 3-byte size and a block.

    Blocks are compressed independently (no history), which any LZ4 decoder reads."""
    out = bytearray()
    for k in range(0, len(buf), CHUNK):
        blk = lz4.block.compress(buf[k : k + CHUNK], store_size=False)
        out += len(blk).to_bytes(3, "little") + blk
    return bytes(out)


def lz4_frame_decodes(frame: bytes, nbytes: int) -> bool:
    """Whether ``frame`` is a valid fd_checkpt LZ4 frame of ``nbytes`` bytes: 64 KiB chunks, each
    a 3-byte size and a block decoded with the previous 64 KiB of output as its history (the
    streaming decoder's dictionary), consuming the frame exactly."""
    out, pos = b"", 0
    while len(out) < nbytes:
        if pos + 3 > len(frame):
            return False
        csz = int.from_bytes(frame[pos : pos + 3], "little")
        blk = frame[pos + 3 : pos + 3 + csz]
        if csz == 0 or len(blk) != csz:
            return False
        want = min(CHUNK, nbytes - len(out))
        try:
            piece = lz4.block.decompress(blk, uncompressed_size=want, dict=out[-CHUNK:])
        except lz4.block.LZ4BlockError:
            return False
        if len(piece) != want:
            return False
        out += piece
        pos += 3 + csz
    return pos == len(frame)


def align_up(p: int, a: int = ALIGN) -> int:
    return (p + a - 1) // a * a


# -- a file as a mutable description ---------------------------------------------------------


@dataclass
class Spec:
    """Everything a file says, before it is turned into bytes by :meth:`build`.

    ``head`` is the head document (columns form); ``buffers`` each data frame's uncompressed
    buffer; ``stored`` overrides a frame's stored bytes (for LZ4 lies); ``verbatim`` the LZ4
    frames stored verbatim. The ``*_patch`` hooks change fields after they are computed.
    """

    head: dict[str, Any]
    buffers: list[bytes]
    stored: dict[int, bytes]
    verbatim: set[int]
    head_bytes: bytes | None = None
    sb_patch: dict[str, int] | None = None
    record_patch: dict[int, tuple[int | None, int | None]] | None = None
    index_patch: dict[tuple[int, int], int] | None = None
    trailer_patch: dict[str, int | bytes] | None = None
    pad_byte: tuple[int, int] | None = None  # (frame, value): first pad byte of that frame
    splices: dict[str, bytes] | None = None  # marker string in the head -> raw JSON text (deep nesting)

    def build(self) -> bytes:
        hb = self.head_bytes if self.head_bytes is not None else canonical(self.head)
        for marker, text in (self.splices or {}).items():
            hb = hb.replace(json.dumps(marker).encode(), text)
        sb = {"magic": MAGIC, "version": VERSION, "flags": 0, "hn": len(hb), "hx": xxh64(hb)}
        sb.update(self.sb_patch or {})
        out = bytearray(struct.pack("<8sIIQQ", sb["magic"], sb["version"], sb["flags"], sb["hn"], sb["hx"]))
        out += hb
        index: list[list[int]] = []
        styles = [f.get("style") if isinstance(f, dict) else 1 for f in self.head.get("frames", [])]
        for fi, buf in enumerate(self.buffers):
            style = styles[fi] if fi < len(styles) else 1
            if style == 2:
                data = self.stored.get(fi, buf if fi in self.verbatim else lz4_frame(buf))
                n = len(data) | (STORED_VERBATIM if fi in self.verbatim else 0)
                rn, rx = (self.record_patch or {}).get(fi, (None, None))
                out += struct.pack("<QQ", n if rn is None else rn, xxh64(data) if rx is None else rx)
            else:
                data = self.stored.get(fi, buf)
                n = len(data)
            if style != 2 or fi in self.verbatim:
                pad = align_up(len(out)) - len(out)
                padb = bytearray(pad)
                if self.pad_byte is not None and self.pad_byte[0] == fi and pad:
                    padb[0] = self.pad_byte[1]
                out += padb
            index.append([len(out), n, xxh64(data)])
            out += data
        for (fi, col), v in (self.index_patch or {}).items():
            if fi < len(index):
                index[fi][col] = v
        io = len(out)
        ib = b"".join(struct.pack("<QQQ", *e) for e in index)
        out += ib
        tr: dict[str, Any] = {
            "io": io,
            "nf": len(index),
            "ix": xxh64(ib),
            "fn": len(out) + 48,
            "v": VERSION,
            "fl": 0,
            "em": END_MAGIC,
        }
        tr.update(self.trailer_patch or {})
        out += struct.pack("<QQQQII8s", tr["io"], tr["nf"], tr["ix"], tr["fn"], tr["v"], tr["fl"], tr["em"])
        return bytes(out)


@dataclass
class Case:
    """One generated file and what readers may return for it."""

    name: str
    data: bytes
    expect: dict[str, Any] | None
    alt_unverified: dict[str, Any] | None = None
    alt_verified: dict[str, Any] | None = None


# -- dtypes ---------------------------------------------------------------------------------


def dtype_doc(dt: np.dtype[Any]) -> Any:
    """The format's DTYPE (§2.2) of a numpy dtype."""
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return {"base": dtype_doc(base), "shape": list(shape)}
    if dt.names is not None:
        d: dict[str, Any] = {
            "names": list(dt.names),
            "formats": [dtype_doc(dt.fields[n][0]) for n in dt.names],
            "offsets": [dt.fields[n][1] for n in dt.names],
            "itemsize": dt.itemsize,
        }
        titles = [dt.fields[n][2] if len(dt.fields[n]) > 2 else None for n in dt.names]
        if any(t is not None for t in titles):
            d["titles"] = titles
        if dt.isalignedstruct:
            d["aligned"] = True
        return d
    return dt.str


_SIMPLE = [
    "<i1",
    "|u1",
    "<i2",
    ">u2",
    "<i4",
    ">i4",
    "<u8",
    "<f2",
    "<f4",
    ">f8",
    "<c8",
    ">c16",
    "|b1",
    "<M8[ns]",
    ">m8[s]",
    "<U3",
    ">U1",
    "|S4",
    "|S0",
    "|V5",
    "<U0",
]


def rand_dtype(rng: random.Random, depth: int = 0) -> np.dtype[Any]:
    k = rng.random()
    if depth < 3 and k < 0.15:
        n = rng.randint(1, 3)
        names = [f"f{i}" if rng.random() < 0.7 else rand_name(rng) + str(i) for i in range(n)]
        fmts = [rand_dtype(rng, depth + 1) for _ in range(n)]
        titles = [None if rng.random() < 0.5 else f"t{i}{rng.randint(0, 9)}" for i in range(n)]
        spec: dict[str, Any] = {"names": names, "formats": fmts}
        if any(titles):
            spec["titles"] = titles
        try:
            return np.dtype(spec, align=rng.random() < 0.3)
        except (ValueError, TypeError):
            return np.dtype("<i4")
    if 0 < depth < 3 and k < 0.22:  # numpy absorbs a top-level subarray dtype into the shape
        base = rand_dtype(rng, depth + 1)
        if base.itemsize == 0:
            return base
        return np.dtype((base, tuple(rng.randint(1, 3) for _ in range(rng.randint(1, 2)))))
    return np.dtype(rng.choice(_SIMPLE))


def rand_name(rng: random.Random) -> str:
    k = rng.random()
    if k < 0.6:
        return rng.choice("abcdefgh") + str(rng.randint(0, 99))
    if k < 0.7:
        return rng.choice(["é", "名前", "\U0001f600", "ä\u0301", "Ω"])
    if k < 0.78:
        return rng.choice(["\x00", "\n", "\x1b[31m", "\t", "\x7f"]) + "c"
    if k < 0.86:
        return rng.choice(["..", ".", "-", " ", "~"])
    if k < 0.9:
        return "L" * rng.choice([200, 255])  # at most NAME_MAX bytes (format §4.1)
    return rng.choice(["x", "y", "z"]) + rng.choice(["", "_", "."])


def rand_array(rng: random.Random, nprng: np.random.Generator) -> np.ndarray[Any, Any]:
    dt = rand_dtype(rng)
    ndim = rng.choice([0, 1, 1, 2, 3])
    shape = tuple(
        rng.choice([0, 1, 2, 3, 5, 17]) if rng.random() < 0.9 else rng.randint(100, 3000) for _ in range(ndim)
    )
    n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    if n > 300_000:
        shape = (2,) * ndim
        n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    raw = nprng.integers(0, 256 if rng.random() < 0.5 else 3, n, dtype=np.uint8).tobytes()
    a = np.frombuffer(raw, dtype=dt).reshape(shape) if dt.itemsize else np.zeros(shape, dt)
    if rng.random() < 0.2 and a.ndim >= 2:
        a = np.asfortranarray(a)
    return a.copy(order="K")


# -- values (§2.2.1) ------------------------------------------------------------------------


def _f64hex(x: float) -> str:
    return struct.pack(">d", x).hex()


def encode_value(v: Any) -> Any:
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, np.generic):
        return {"numpy": [dtype_doc(v.dtype), base64.b64encode(v.tobytes()).decode()]}
    if isinstance(v, int):
        if -(1 << 63) <= v < 1 << 63:
            return v
        return {"int": ("-" if v < 0 else "") + format(abs(v), "x")}
    if isinstance(v, float):
        return {"float": _f64hex(v)}
    if isinstance(v, complex):
        return {"complex": [_f64hex(v.real), _f64hex(v.imag)]}
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return {"bytes": base64.b64encode(v).decode()}
    if isinstance(v, list):
        return [encode_value(x) for x in v]
    if isinstance(v, tuple):
        return {"tuple": [encode_value(x) for x in v]}
    if isinstance(v, dict):
        return {"dict": [[k, encode_value(x)] for k, x in v.items()]}
    raise TypeError(type(v))


def rand_value(rng: random.Random, depth: int = 0) -> Any:
    k = rng.randrange(14 if depth < 4 else 10)
    return [
        lambda: None,
        lambda: rng.random() < 0.5,
        lambda: rng.randint(-(1 << 63), (1 << 63) - 1),
        lambda: rng.choice([1 << 64, -(1 << 70) - 5, 1 << 63, -(1 << 63) - 1]),
        lambda: rng.choice([1.5, -0.0, float("inf"), 1e-310]),
        lambda: complex(rng.random(), -2.0),
        lambda: rng.choice(["", "abc", "é\x00", "\U0001f600"]),
        lambda: bytes(rng.randrange(256) for _ in range(rng.randint(0, 5))),
        lambda: np.float32(rng.random()),
        lambda: np.int16(rng.randint(-5, 5)),
        lambda: [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 3))],
        lambda: tuple(rand_value(rng, depth + 1) for _ in range(rng.randint(0, 3))),
        lambda: {f"k{i}": rand_value(rng, depth + 1) for i in range(rng.randint(0, 3))},
        lambda: [[rand_value(rng, depth + 1)]],
    ][k]()


# -- equality of results ----------------------------------------------------------------------


def flat_leaves(tree: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """A nested load result -> {path tuple: leaf}; empty groups give ``{path: {}}``.

    Iterative, so deep nesting does not exhaust the recursion limit."""
    out: dict[tuple[str, ...], Any] = {}
    stack = [(prefix, tree)]
    while stack:
        p, t = stack.pop()
        if isinstance(t, dict) and (not p or _is_group(t)):
            if p and not t:
                out[p] = {}
            for k, v in t.items():
                stack.append(((*p, k), v))
        else:
            out[p] = t
    return out


def _is_group(t: dict[str, Any]) -> bool:
    return True


def _leaf_equal(a: Any, b: Any) -> bool:
    if isinstance(b, np.ndarray):
        if not isinstance(a, np.ndarray) or a.dtype != b.dtype or a.shape != b.shape:
            return False
        return bool(np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())
    if isinstance(b, np.generic):
        return type(a) is type(b) and a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if type(a) is not type(b):
        return False
    if isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(b, complex):
        return struct.pack("<dd", a.real, a.imag) == struct.pack("<dd", b.real, b.imag)
    if isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_leaf_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(b, dict):
        return list(a) == list(b) and all(_leaf_equal(a[k], b[k]) for k in b)
    return bool(a == b)


def leaves_equal(got: dict[tuple[str, ...], Any], want: dict[tuple[str, ...], Any]) -> bool:
    """Bit-exact equality of two {path: leaf} maps (dtype, shape, bytes, Python types)."""
    if set(got) != set(want):
        return False
    return all(_leaf_equal(got[k], want[k]) for k in want)


# -- a valid file from leaves ---------------------------------------------------------------


def stored_bytes(a: np.ndarray[Any, Any], order: str) -> bytes:
    return np.ascontiguousarray(a.T if order == "F" else a).tobytes()


def valid_spec(
    rng: random.Random,
    arrays: dict[tuple[str, ...], np.ndarray[Any, Any]],
    *,
    values: dict[tuple[str, ...], Any] | None = None,
    groups: list[tuple[str, ...]] = (),  # type: ignore[assignment]
    metadata: Any = None,
    blocks: dict[tuple[str, ...], list[tuple[list[int], list[int]]]] | None = None,
    lz4_p: float = 0.4,
) -> Spec:
    """A valid file of these leaves, with a random (legal) frame plan: arrays packed into shared
    frames at random gaps, or split over several frames; RAW or LZ4, some LZ4 frames verbatim."""
    blocks = blocks or {}
    paths = list(arrays)
    cols: dict[str, Any] = {"path": [], "dtypes": [], "dtype": [], "shape": [], "order": "", "blocks": []}
    contents: list[bytes] = []
    styles: list[int] = []
    for i, p in enumerate(paths):
        a = arrays[p]
        d = dtype_doc(a.dtype)
        if d not in cols["dtypes"]:
            cols["dtypes"].append(d)
        order = "F" if (a.ndim >= 2 and a.flags.f_contiguous and not a.flags.c_contiguous and p not in blocks) else "C"
        cols["path"].append(list(p))
        cols["dtype"].append(cols["dtypes"].index(d))
        cols["shape"].append(list(a.shape))
        cols["order"] += order
        if p in blocks:
            cols["blocks"].append([i, [[list(s), list(sh)] for s, sh in blocks[p]]])
            body = b"".join(
                np.ascontiguousarray(a[tuple(slice(x, x + n) for x, n in zip(s, sh, strict=True))]).tobytes()
                for s, sh in blocks[p]
            )
        else:
            body = stored_bytes(a, order)
        contents.append(body)
        styles.append(2 if rng.random() < lz4_p else 1)
    frames: list[dict[str, Any]] = []
    buffers: list[bytes] = []
    verbatim: set[int] = set()
    for style in (1, 2):
        cur: bytearray | None = None
        cur_parts: list[int] = []
        for i, body in enumerate(contents):
            if styles[i] != style or not body:
                continue
            pieces = [body]
            if len(body) > 64 and rng.random() < 0.3:
                cut = sorted(rng.sample(range(1, len(body)), min(2, len(body) - 1)))
                pieces = [body[x:y] for x, y in zip([0, *cut], [*cut, len(body)], strict=True)]
            start = 0
            for piece in pieces:
                if cur is None or rng.random() < 0.4:
                    if cur is not None:
                        frames.append({"style": style, "nbytes": len(cur), "parts": cur_parts})
                        buffers.append(bytes(cur))
                    cur, cur_parts = bytearray(), []
                gap = rng.choice([0, 0, 1, 7, 64]) if cur else 0
                cur += bytes(gap)
                cur_parts += [i, start, len(piece), len(cur)]
                cur += piece
                start += len(piece)
        if cur is not None:
            if rng.random() < 0.2:
                cur += bytes(rng.randint(1, 9))  # trailing padding
            frames.append({"style": style, "nbytes": len(cur), "parts": cur_parts})
            buffers.append(bytes(cur))
    for fi, f in enumerate(frames):
        if f["style"] == 2 and rng.random() < 0.2:
            verbatim.add(fi)
    head: dict[str, Any] = {
        "arrays": cols,
        "frames": frames,
        "groups": sorted([list(g) for g in groups]),
        "metadata": metadata,
    }
    if values:
        head["features"] = ["values"]
        head["values"] = [[list(p), encode_value(v)] for p, v in sorted(values.items())]
    return Spec(head, buffers, {}, verbatim)


def _expected(arrays: dict[tuple[str, ...], Any], values: Any = None, groups: Any = ()) -> dict[Any, Any]:
    exp: dict[Any, Any] = dict(arrays)
    exp.update(values or {})
    for g in groups:
        exp[g] = {}
    return exp


def base_state(rng: random.Random, nprng: np.random.Generator) -> tuple[dict[Any, Any], dict[Any, Any], list[Any]]:
    arrays: dict[tuple[str, ...], Any] = {}
    used: set[tuple[str, ...]] = set()
    for _ in range(rng.randint(0, 6)):
        p = tuple(rand_name(rng) for _ in range(rng.choice([1, 1, 1, 2, 3])))
        if any(p[: k + 1] in used for k in range(len(p))) or any(u[: len(p)] == p for u in used):
            continue
        used.add(p)
        arrays[p] = rand_array(rng, nprng)
    values: dict[tuple[str, ...], Any] = {}
    if rng.random() < 0.3:
        for j in range(rng.randint(1, 3)):
            p = ("val", f"v{j}")
            if any(u[:1] == ("val",) for u in arrays):
                break
            v = rand_value(rng)
            values[p] = [v] if isinstance(v, dict) else v  # a dict leaf would be a group
            used.add(p)
    groups: list[Any] = []
    if rng.random() < 0.2 and ("emptyg",) not in used and not any(u[:1] == ("emptyg",) for u in used):
        groups.append(("emptyg",))
    return arrays, values, groups


# -- mutations ------------------------------------------------------------------------------

Mut = Callable[[random.Random, Spec], str | None]  # edits the spec; returns a label, None = unusable


def _arr(spec: Spec) -> dict[str, Any]:
    a: dict[str, Any] = spec.head["arrays"]
    return a


def m_shape(rng: random.Random, s: Spec) -> str | None:
    c = _arr(s)
    if not c["shape"]:
        return None
    i = rng.randrange(len(c["shape"]))
    sh = c["shape"][i]
    how = rng.choice(["grow", "huge", "neg", "float", "bool", "ndim65", "ndim200", "drop", "str", "mulover"])
    size = 1
    for d in sh:
        size *= d
    if how in ("grow", "huge", "drop", "mulover") and (size == 0 or (sh and sh[0] == 1)):
        return None  # the byte size might not change: the file could stay valid with another shape
    if how == "grow":
        c["shape"][i] = [*sh, 2]
    elif how == "huge":
        c["shape"][i] = [*sh[:-1], rng.choice([1 << 62, (1 << 64) - 1, 1 << 70, 1 << 31])]
    elif how == "neg":
        c["shape"][i] = [-1, *sh]
    elif how == "float":
        c["shape"][i] = [1.0, *sh]
    elif how == "bool":
        c["shape"][i] = [True, *sh]
    elif how == "ndim65":
        c["shape"][i] = [*sh, *([1] * (65 - len(sh)))]
    elif how == "ndim200":
        c["shape"][i] = [1] * 200
    elif how == "drop":
        c["shape"][i] = sh[1:] if sh else None
    elif how == "str":
        c["shape"][i] = "3"
    else:
        c["shape"][i] = [1 << 32, 1 << 32, 0]
    return f"shape-{how}"


_BAD_DTYPES: list[Any] = [
    "|O8",
    "<O",
    "O",
    "<f3",
    "<i0",
    "|V999999999999",
    "|V18446744073709551615",
    "<U9223372036854775807",
    "<M8[zz]",
    "xyz",
    "",
    "<q8",
    {"base": "<f8", "shape": [1 << 40, 1 << 40]},
    {"base": "|O8", "shape": [1]},
    {"base": "<f8"},
    {"base": "<f8", "shape": [-1]},
    {"names": ["a", "a"], "formats": ["<i4", "<i4"], "offsets": [0, 4], "itemsize": 8},
    {"names": ["a"], "formats": ["<i8"], "offsets": [4], "itemsize": 8},
    {"names": ["a"], "formats": ["<i4"], "offsets": [0], "itemsize": 1 << 62},
    {"names": ["a"], "formats": ["<i4"], "offsets": [-4], "itemsize": 8},
    {"names": ["a"], "formats": ["|O8"], "offsets": [0], "itemsize": 8},
    {"names": ["a"], "formats": ["<i4"], "offsets": [0], "itemsize": 4, "titles": [["x", "y"]]},
    {"names": ["a"], "formats": ["<i4"], "offsets": [0], "itemsize": 4, "titles": ["a"]},
    {"names": ["a", "b"], "formats": ["<i4", "<i4"], "offsets": [0, 4], "itemsize": 8, "titles": ["b", None]},
    {"names": ["a"], "formats": ["<i4"], "offsets": [0], "itemsize": 4, "titles": [1]},
    {"names": [["x"]], "formats": ["<i4"], "offsets": [0], "itemsize": 4},  # (an empty name is legal, as in numpy)
    {"names": [1], "formats": ["<i4"], "offsets": [0], "itemsize": 4},
    {"names": ["a"], "formats": ["<i4"], "offsets": [0]},
    {"names": ["a"], "formats": ["<i4"], "offsets": [0], "itemsize": 4, "extra": 1},
    [],
    5,
    None,
    ["<f8"],
]


def _deep_dtype(depth: int) -> bytes:
    """Canonical JSON of a structured dtype nested ``depth`` deep (built as text: json.dumps
    would exhaust the recursion limit)."""
    # An object dtype at the bottom: invalid whatever the depth (a plain base of the array's
    # itemsize would make a valid file with another dtype).
    return b'{"formats":[' * depth + b'"|O8"' + b'],"itemsize":8,"names":["a"],"offsets":[0]}' * depth


def m_dtype(rng: random.Random, s: Spec) -> str | None:
    c = _arr(s)
    if not c["dtypes"]:
        return None
    k = rng.randrange(len(c["dtypes"]))
    how = rng.random()
    if how < 0.6:
        j = rng.randrange(len(_BAD_DTYPES))
        c["dtypes"][k] = json.loads(json.dumps(_BAD_DTYPES[j]))
        return f"dtype-bad{j}"
    if how < 0.75:
        c["dtypes"][k] = "@@deep-dtype@@"
        s.splices = {"@@deep-dtype@@": _deep_dtype(rng.choice([40, 1000, 20000]))}
        return "dtype-deep"
    if how < 0.85:
        c["dtype"][rng.randrange(len(c["dtype"]))] = rng.choice([len(c["dtypes"]), -1, 1 << 40, 0.0])
        return "dtype-index"
    # a different but same-size dtype: valid iff itemsize matches; expectation unknown -> invalidate
    c["dtypes"].append(c["dtypes"][k])
    return "dtype-duplicate-entry"  # duplicate table entries are legal: stays valid


def m_name(rng: random.Random, s: Spec) -> str | None:
    c = _arr(s)
    if not c["path"]:
        return None
    i = rng.randrange(len(c["path"]))
    how = rng.choice(["empty", "emptylist", "dup", "inside", "nonstr", "notlist", "null", "surrogate"])
    if how == "empty":
        c["path"][i] = [*c["path"][i], ""]
    elif how == "emptylist":
        c["path"][i] = []
    elif how == "dup":
        if len(c["path"]) < 2:
            return None
        c["path"][i] = list(c["path"][(i + 1) % len(c["path"])])
    elif how == "inside":
        if len(c["path"]) < 2:
            return None
        c["path"][i] = [*c["path"][(i + 1) % len(c["path"])], "sub"]
    elif how == "nonstr":
        c["path"][i] = [1]
    elif how == "notlist":
        c["path"][i] = "a"
    elif how == "null":
        c["path"][i] = None
    else:
        c["path"][i] = ["\ud800x"]
        return "name-surrogate"
    return f"name-{how}"


def m_parts(rng: random.Random, s: Spec) -> str | None:
    fr = s.head["frames"]
    if not fr:
        return None
    f = fr[rng.randrange(len(fr))]
    p = f["parts"]
    how = rng.choice(
        [
            "gap",
            "overlap",
            "beyond",
            "arrayidx",
            "zero",
            "empty",
            "nbytes0",
            "nbytesbig",
            "nbytessmall",
            "style",
            "style3",
            "notint",
            "odd",
            "neg",
            "unsorted",
        ]
    )
    if how == "gap":
        p[1] += 1
    elif how == "overlap":
        if len(p) < 8:
            return None
        p[7] = p[3]
    elif how == "beyond":
        p[3] = f["nbytes"]
    elif how == "arrayidx":
        p[0] = rng.choice([len(_arr(s)["path"]), 1 << 40, -1])
    elif how == "zero":
        p[2] = 0
    elif how == "empty":
        f["parts"] = []
    elif how == "nbytes0":
        f["nbytes"] = 0
    elif how == "nbytesbig":
        f["nbytes"] = rng.choice([1 << 40, (1 << 63) + 5, 1 << 62])
    elif how == "nbytessmall":
        f["nbytes"] -= 1
    elif how == "style":
        f["style"] = 3 - f["style"]
        return "parts-style-swap"
    elif how == "style3":
        f["style"] = rng.choice([0, 3, "raw", None])
    elif how == "notint":
        p[2] = float(p[2])
    elif how == "odd":
        p.append(0)
    elif how == "neg":
        p[1] = -1
    else:
        if len(p) < 8:
            return None
        f["parts"] = p[4:8] + p[:4] + p[8:]
    return f"parts-{how}"


def m_head_keys(rng: random.Random, s: Spec) -> str | None:
    h = s.head
    how = rng.choice(
        [
            "extra",
            "missing",
            "arrays-extra",
            "order",
            "features-unknown",
            "features-empty",
            "features-unsorted",
            "values-nofeature",
            "groups-dup",
            "groups-clash",
            "col-len",
            "notobj",
            "blocks-bad",
        ]
    )
    if how == "extra":
        h["zzz"] = 1
    elif how == "missing":
        h.pop(rng.choice(["arrays", "frames", "groups", "metadata"]))
    elif how == "arrays-extra":
        h["arrays"]["extra"] = []
    elif how == "order":
        h["arrays"]["order"] = h["arrays"]["order"].replace("C", "X", 1) or "C"
    elif how == "features-unknown":
        h["features"] = ["zzfuture"]
    elif how == "features-empty":
        h["features"] = []
    elif how == "features-unsorted":
        h["features"] = ["values", "values"]
    elif how == "values-nofeature":
        h["values"] = [[["q"], 1]]
        h.pop("features", None)
    elif how == "groups-dup":
        h["groups"] = [["zg"], ["zg"]]
    elif how == "groups-clash":
        if not h["arrays"]["path"]:
            return None
        h["groups"] = sorted([h["arrays"]["path"][0]])
    elif how == "col-len":
        h["arrays"]["dtype"].append(0)
    elif how == "notobj":
        s.head_bytes = rng.choice([b"[]", b"null", b"{", b"\xff\xfe", b'{"a":1,"a":2}', b"1e999", b""])
    else:
        if not h["arrays"]["path"]:
            return None
        h["arrays"]["blocks"] = [[0, "x"]]
    return f"head-{how}"


_BAD_VALUES: list[Any] = [
    {"int": "5"},
    {"int": "0010000000000000000"},
    {"int": "1000000000000000A"},
    {"int": "-0"},
    {"float": "3FF0000000000000"},
    {"float": "3ff"},
    {"complex": ["3ff0000000000000"]},
    {"bytes": "YQ"},
    {"bytes": "Y Q=="},
    {"tuple": 1},
    {"dict": [["a", 1], ["a", 2]]},
    {"dict": [[1, 2]]},
    {"numpy": ["|O8", ""]},
    {"numpy": ["<f8", "AAAA"]},
    {"zz": 1},
    {"int": "1", "float": "0"},
    1 << 63,
    -(1 << 63) - 1,
    1.5,
    "\ud800",
]


def m_values(rng: random.Random, s: Spec) -> str | None:
    h = s.head
    how = rng.random()
    if how < 0.6:
        j = rng.randrange(len(_BAD_VALUES))
        v = _BAD_VALUES[j]
        tag = f"value-bad{j}"
    elif how < 0.8:
        depth = rng.choice([65, 1000, 50000])
        v = "@@deep-value@@"
        s.splices = {"@@deep-value@@": b"[" * depth + b"0" + b"]" * depth}
        tag = "value-deep"
    else:
        v = {"tuple": [1]}
        for _ in range(65):
            v = {"tuple": [v]}
        tag = "value-deep-tagged"
    h["features"] = ["values"]
    h["values"] = [*h.get("values", []), [["zzvalue"], v]]
    h["values"].sort(key=lambda pv: pv[0])
    return tag


def m_blocks(rng: random.Random, s: Spec) -> str | None:
    c = _arr(s)
    if not c["blocks"]:
        return None
    entry = c["blocks"][0]
    bl = entry[1]
    how = rng.choice(["overlap", "outside", "empty", "missing", "neg", "ndim", "forder", "dupentry", "huge"])
    if how == "overlap":
        bl.append(json.loads(json.dumps(bl[0])))
    elif how == "outside":
        bl[-1][0][0] += 1
    elif how == "empty":
        bl[-1][1][0] = 0
    elif how == "missing":
        if len(bl) < 2:
            return None
        bl.pop()
    elif how == "neg":
        bl[0][0][0] = -1
    elif how == "ndim":
        bl[0][0].append(0)
    elif how == "forder":
        c["order"] = c["order"][: entry[0]] + "F" + c["order"][entry[0] + 1 :]
    elif how == "dupentry":
        c["blocks"].append(entry)
    else:
        bl[0][1][0] = 1 << 62
    return f"blocks-{how}"


def m_metadata(rng: random.Random, s: Spec) -> str | None:
    how = rng.choice(["deep-list", "deep-obj", "huge-str", "huge-list", "bigint", "nan"])
    if how == "deep-list":
        depth = rng.choice([1000, 100000])
        s.head_bytes = canonical(s.head).replace(b'"metadata":null', b'"metadata":' + b"[" * depth + b"]" * depth)
    elif how == "deep-obj":
        depth = rng.choice([1000, 100000])
        s.head_bytes = canonical(s.head).replace(
            b'"metadata":null', b'"metadata":' + b'{"a":' * depth + b"1" + b"}" * depth
        )
    elif how == "huge-str":
        s.head["metadata"] = "x" * rng.choice([1 << 20, 8 << 20])
        return "metadata-huge-str"  # valid
    elif how == "huge-list":
        s.head["metadata"] = [0] * 500_000
        return "metadata-huge-list"  # valid
    elif how == "bigint":
        s.head_bytes = canonical(s.head).replace(b'"metadata":null', b'"metadata":' + b"9" * 100_000)
    else:
        s.head_bytes = canonical(s.head).replace(b'"metadata":null', b'"metadata":NaN')
    return f"metadata-{how}"


def m_lz4(rng: random.Random, s: Spec) -> str | None:
    lz = [fi for fi, f in enumerate(s.head["frames"]) if f["style"] == 2]
    if not lz:
        return None
    fi = rng.choice(lz)
    buf = s.buffers[fi]
    s.verbatim.discard(fi)
    how = rng.choice(
        [
            "csz-big",
            "csz-zero",
            "csz-beyond",
            "short-decode",
            "long-decode",
            "truncated",
            "garbage",
            "extra-bytes",
            "verbatim-size",
            "verbatim-bit-only",
            "record-size",
            "record-hash",
            "nbytes-lie-huge",
            "empty",
        ]
    )
    frame = lz4_frame(buf)
    if how == "csz-big":
        s.stored[fi] = (0xFFFFFF).to_bytes(3, "little") + frame[3:]
    elif how == "csz-zero":
        s.stored[fi] = bytes(3) + frame[3:]
    elif how == "csz-beyond":
        csz = int.from_bytes(frame[:3], "little")
        s.stored[fi] = (csz + 5).to_bytes(3, "little") + frame[3:]
    elif how == "short-decode":
        piece = buf[: min(len(buf), CHUNK)]
        if len(piece) < 2:
            return None
        blk = lz4.block.compress(piece[:-1], store_size=False)
        s.stored[fi] = len(blk).to_bytes(3, "little") + blk + frame[3 + int.from_bytes(frame[:3], "little") :]
    elif how == "long-decode":
        piece = buf[: min(len(buf), CHUNK)]
        blk = lz4.block.compress(piece + b"\x00" * 7, store_size=False)
        s.stored[fi] = len(blk).to_bytes(3, "little") + blk + frame[3 + int.from_bytes(frame[:3], "little") :]
    elif how == "truncated":
        if len(frame) < 5:
            return None
        s.stored[fi] = frame[: rng.randrange(1, len(frame))]
    elif how == "garbage":
        for _ in range(8):  # random bytes are, now and then, a valid LZ4 frame of the right size
            junk = frame[:3] + bytes(rng.randrange(256) for _ in range(len(frame) - 3))
            if not lz4_frame_decodes(junk, len(buf)):
                break
        else:
            return None
        s.stored[fi] = junk
    elif how == "extra-bytes":
        s.stored[fi] = frame + b"\x00\x00\x00\x00"
    elif how == "verbatim-size":
        s.verbatim.add(fi)
        s.stored[fi] = buf[:-1] if len(buf) > 1 else buf + b"\x00"
    elif how == "verbatim-bit-only":
        s.record_patch = {fi: (len(frame) | STORED_VERBATIM, None)}
    elif how == "record-size":
        s.record_patch = {fi: (rng.choice([len(frame) + 1, len(frame) - 1, 1 << 62, 0]), None)}
    elif how == "record-hash":
        s.record_patch = {fi: (None, xxh64(frame) ^ 1)}
    elif how == "nbytes-lie-huge":
        s.head["frames"][fi]["nbytes"] = 1 << 45
        s.head["frames"][fi]["parts"][2] = 1 << 45
    else:
        s.stored[fi] = b""
    return f"lz4-{how}"


def m_index_trailer(rng: random.Random, s: Spec) -> str | None:
    how = rng.choice(
        [
            "idx-offset",
            "idx-stored",
            "idx-hash",
            "tr-io",
            "tr-nf",
            "tr-ix",
            "tr-fn",
            "tr-v",
            "tr-fl",
            "tr-em",
            "sb-hn",
            "sb-hn-huge",
            "sb-hx",
            "sb-v1",
            "sb-v3",
            "sb-fl",
            "sb-magic",
            "tr-nf-huge",
        ]
    )
    nf = len(s.buffers)
    col = {"idx-offset": 0, "idx-stored": 1, "idx-hash": 2}
    if how in col:
        if not nf:
            return None
        s.index_patch = {(rng.randrange(nf), col[how]): rng.choice([0, 1, 4096, 1 << 63, 12345])}
    elif how.startswith("tr-"):
        key = {
            "tr-io": "io",
            "tr-nf": "nf",
            "tr-ix": "ix",
            "tr-fn": "fn",
            "tr-v": "v",
            "tr-fl": "fl",
            "tr-em": "em",
            "tr-nf-huge": "nf",
        }[how]
        val: Any = {
            "em": b"NDCKEN\x00\n",
            "v": 3,
            "fl": 1,
            "nf": rng.choice([nf + 1, nf - 1]) if nf else nf + 1,  # always a different count
            "io": 32,
            "ix": 7,
            "fn": 1 << 40,
        }[key]
        if how == "tr-nf-huge":
            val = 1 << 60
        s.trailer_patch = {key: val}
    else:
        key, val = {
            "sb-hn": ("hn", 7),
            "sb-hn-huge": ("hn", 1 << 62),
            "sb-hx": ("hx", 1),
            "sb-v1": ("version", 1),
            "sb-v3": ("version", 3),
            "sb-fl": ("flags", 1),
            "sb-magic": ("magic", b"\x93NDCKPX\n"),
        }[how]
        s.sb_patch = {key: val}
    return how


MUTATIONS: list[Mut] = [
    m_shape,
    m_dtype,
    m_name,
    m_parts,
    m_head_keys,
    m_values,
    m_blocks,
    m_metadata,
    m_lz4,
    m_index_trailer,
]
#: Mutations after which the file may be valid, with the same leaves: a reader may refuse it,
#: but a success must return exactly those leaves. (The format does not say whether JSON's
#: NaN extension or a lone surrogate in a path must be refused; a frame whose style is swapped
#: is re-encoded in the new style, which is valid unless the array has frames of both styles.)
SAME_LEAVES = {"dtype-duplicate-entry", "metadata-huge-str", "metadata-huge-list", "metadata-nan", "parts-style-swap"}


# -- special valid cases ------------------------------------------------------------------------


def special_valid(rng: random.Random, nprng: np.random.Generator) -> tuple[str, Spec, dict[Any, Any]]:
    k = rng.choice(
        [
            "deep-path",
            "deep-group",
            "many-arrays",
            "many-blocks",
            "blocks",
            "long-name",
            "many-frames",
            "titles",
            "nested-dtype",
            "slash-key",
            "huge-itemsize-empty",
        ]
    )
    arrays: dict[tuple[str, ...], Any] = {}
    groups: list[Any] = []
    blocks: dict[Any, Any] = {}
    if k == "deep-path":
        arrays[tuple(f"d{i}" for i in range(rng.choice([100, 2000, 20000])))] = np.arange(3, dtype="<i2")
    elif k == "deep-group":
        groups.append(tuple("g" for _ in range(rng.choice([100, 5000]))))
        arrays[("a",)] = np.ones(2, "u1")
    elif k == "many-arrays":
        for i in range(rng.choice([1000, 5000])):
            arrays[("m", f"{i:05d}")] = np.array([i], "<u4")
    elif k == "many-blocks":
        n = rng.choice([1000, 20000])
        arrays[("b",)] = np.arange(n, dtype="<u2")
        blocks[("b",)] = [([i], [1]) for i in range(n)]
    elif k == "blocks":
        a = np.arange(24, dtype="<f4").reshape(4, 6)
        arrays[("g",)] = a
        blocks[("g",)] = [([2, 0], [2, 6]), ([0, 3], [2, 3]), ([0, 0], [2, 3])]
    elif k == "long-name":
        arrays[("n" * rng.choice([10_000, 1_000_000]),)] = np.zeros(1, "u1")
    elif k == "many-frames":
        for i in range(300):
            arrays[(f"f{i:03d}",)] = np.full(5000, i % 256, "u1")
    elif k == "titles":
        dt = np.dtype({"names": ["a", "b"], "formats": ["<i2", ("<f4", (2,))], "titles": ["ta", None]})
        arrays[("t",)] = np.zeros(3, dt)
        arrays[("t",)]["a"] = [1, 2, 3]
    elif k == "nested-dtype":
        dt = np.dtype([("x", [("y", [("z", "<u1", (2,))])]), ("w", ">i8")], align=True)
        arrays[("nd",)] = np.frombuffer(bytes(range(dt.itemsize * 2)), dt).copy()
    elif k == "slash-key":
        arrays[("a/b",)] = np.array([1], "<i8")
    else:
        arrays[("e",)] = np.zeros((0,), "|V1000000")
    spec = valid_spec(rng, arrays, groups=groups, blocks=blocks, lz4_p=0.3)
    exp = _expected(arrays, None, groups)
    if k == "slash-key":
        # ``a/b`` is one key holding a slash; nested results cannot tell it from a/b: either is fine.
        pass
    return f"valid-{k}", spec, exp


# -- the generator ------------------------------------------------------------------------------


def _pad_frames(spec: Spec) -> list[int]:
    return [fi for fi, f in enumerate(spec.head["frames"]) if f["style"] == 1 or fi in spec.verbatim]


def one_case(rng: random.Random, nprng: np.random.Generator, idx: int) -> Case:
    kind = rng.random()
    if kind < 0.12:
        label, spec, exp = special_valid(rng, nprng)
        return Case(f"{idx}-{label}", spec.build(), exp)
    arrays, values, groups = base_state(rng, nprng)
    blocks: dict[Any, Any] = {}
    if rng.random() < 0.15:
        arrays[("blk",)] = np.arange(12, dtype="<i4").reshape(3, 4)
        blocks[("blk",)] = [([0, 0], [3, 2]), ([0, 2], [3, 2])]
    spec = valid_spec(rng, arrays, values=values, groups=groups, blocks=blocks)
    exp = _expected(arrays, values, groups)
    if kind < 0.3:
        return Case(f"{idx}-valid", spec.build(), exp)
    if kind < 0.42:
        data = spec.build()
        cut = rng.choice([rng.randrange(len(data)), len(data) - 1, len(data) - 48, 32, 0])
        return Case(f"{idx}-truncate", data[:cut], None)
    if kind < 0.5:
        data = bytearray(spec.build())
        # a byte flip in a RAW data frame (invisible without verification) or a pad
        raw = [fi for fi, f in enumerate(spec.head["frames"]) if f["style"] == 1]
        pads = _pad_frames(spec)
        if raw and rng.random() < 0.6:
            return _raw_flip(rng, spec, raw, arrays, values, groups, exp, idx)
        if pads:
            spec.pad_byte = (rng.choice(pads), rng.randint(1, 255))
            d2 = spec.build()
            if d2 != bytes(data):
                return Case(f"{idx}-pad-flip", d2, None, alt_unverified=exp, alt_verified=exp)
        pos = rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
        return Case(f"{idx}-flip-any", bytes(data), None, alt_unverified=None)
    if kind < 0.55:
        data = spec.build() + rng.choice([b"\x00", b"junk" * 10])
        return Case(f"{idx}-trailing-bytes", data, None)
    for _ in range(5):
        mut = rng.choice(MUTATIONS)
        label = mut(rng, spec)
        if label is not None:
            if label == "name-surrogate":  # maybe valid: then the renamed array must come back
                paths = [tuple(p) for p in spec.head["arrays"]["path"]]
                renamed = {new: exp[old] for old, new in zip(arrays, paths, strict=True)}
                others = {k: v for k, v in exp.items() if k not in arrays}
                return Case(f"{idx}-{label}", spec.build(), {**others, **renamed})
            # A lie in a RAW frame's index checksum is invisible to loads that skip RAW checksums.
            alt = exp if label == "idx-hash" else None
            return Case(f"{idx}-{label}", spec.build(), exp if label in SAME_LEAVES else None, alt_unverified=alt)
    return Case(f"{idx}-valid", spec.build(), exp)


def _raw_flip(
    rng: random.Random, spec: Spec, raw: list[int], arrays: Any, values: Any, groups: Any, exp: Any, idx: int
) -> Case:
    fi = rng.choice(raw)
    f = spec.head["frames"][fi]
    pblocks = {b[0]: b[1] for b in spec.head["arrays"]["blocks"]}
    parts = [f["parts"][k : k + 4] for k in range(0, len(f["parts"]), 4)]
    parts = [p for p in parts if p[0] not in pblocks]  # the flipped leaf is easy to predict
    if not parts:
        return Case(f"{idx}-valid", spec.build(), exp)
    ai, start, n, at = rng.choice(parts)
    off = rng.randrange(n)
    bit = 1 << rng.randrange(8)
    data = bytearray(spec.build())
    # locate the frame's data: recompute the index entry by rebuilding with a marker-free layout
    ib_off = struct.unpack_from("<Q", data, len(data) - 48)[0]
    fofs = struct.unpack_from("<Q", data, ib_off + 24 * fi)[0]
    data[fofs + at + off] ^= bit
    path = tuple(spec.head["arrays"]["path"][ai])
    a = arrays[path]
    order = spec.head["arrays"]["order"][ai]
    body = bytearray(np.ascontiguousarray(a.T if order == "F" else a).tobytes()) if ai not in pblocks else None
    alt = None
    if body is not None:
        body[start + off] ^= bit
        if order == "F":
            b2 = np.frombuffer(bytes(body), a.dtype).reshape(a.shape[::-1]).T
        else:
            b2 = np.frombuffer(bytes(body), a.dtype).reshape(a.shape)
        alt = dict(exp)
        alt[path] = b2
    return Case(f"{idx}-raw-flip", bytes(data), None, alt_unverified=alt)


def cases(seed: int, n: int | None = None) -> Iterator[Case]:
    """``n`` hostile cases (forever when None), deterministic in ``seed``."""
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    i = 0
    while n is None or i < n:
        yield one_case(rng, nprng, i)
        i += 1


if __name__ == "__main__":  # a quick look: python tests/hostile.py [seed] [n]
    import sys

    for c in cases(int(sys.argv[1]) if len(sys.argv) > 1 else 0, int(sys.argv[2]) if len(sys.argv) > 2 else 20):
        print(c.name, len(c.data), "valid" if c.expect is not None else "invalid")
