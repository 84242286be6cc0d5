"""A table of malformed files, each with the error every reader must raise.

Every case mutates one valid file (or builds a hostile one) and is run through every entry
point: ``load`` of the bytes, ``load`` of a path, ``open(path).load()``, ``verify(path)`` (the
random-access readers) and ``load`` / ``verify`` of a BytesIO (the one-pass stream reader).
Each case states the exception type and a message fragment for the random-access readers and
for the stream reader, which sees the bytes in order and so reports some problems differently
(a truncated stream is an I/O error: EOF; bytes after a stream's trailer are not its business).

The files here are built by a small independent writer (:func:`build`) that follows
``docs/format.md``; it reproduces ndckpt's own output byte for byte, so a case can change one
field (a shape, a version, a frame size) with every checksum and offset still consistent.
"""

from __future__ import annotations

import io
import json
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ndckpt
from ndckpt import CheckptIOError, CompressionError, FormatError, _lz4

MAGIC = b"\x93NDCKPT\n"
END_MAGIC = b"NDCKEND\n"
SB = struct.Struct("<8sIIQQ")
TR = struct.Struct("<QQQQII8s")
REC = struct.Struct("<QQ")
IDX = struct.Struct("<QQQ")
RAW, LZ4 = 1, 2
VERSION = 2
VERBATIM = 1 << 63  # bit 63 of a record's stored_nbytes: an LZ4 frame stored verbatim


# ----------------------------------------------------------------------------------------------
# An independent reader/writer of the container layout (docs/format.md, section 2)
# ----------------------------------------------------------------------------------------------


@dataclass
class Parsed:
    doc: dict[str, Any]
    stored: list[bytes]  # each data frame's stored bytes
    offsets: list[int]  # each data frame's first byte
    head_end: int
    index_offset: int
    size: int


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def parse(data: bytes) -> Parsed:
    magic, version, flags, hn, _ = SB.unpack_from(data, 0)
    assert (magic, version, flags) == (MAGIC, VERSION, 0)
    doc = json.loads(data[SB.size : SB.size + hn])
    pos = SB.size + hn
    stored, offsets = [], []
    for fr in doc["frames"]:
        if fr["style"] == LZ4:
            n, _ = REC.unpack_from(data, pos)
            pos += REC.size
            if n & VERBATIM:  # an LZ4 frame stored verbatim: a pad, then the plain bytes
                pos += -pos % 4096
                n &= ~VERBATIM
        else:
            pos += -pos % 4096
            n = fr["nbytes"]
        offsets.append(pos)
        stored.append(data[pos : pos + n])
        pos += n
    io_ = TR.unpack_from(data, len(data) - TR.size)[0]
    assert io_ == pos
    return Parsed(doc, stored, offsets, SB.size + hn, io_, len(data))


def build(doc: Any, stored: list[bytes], claims: list[int] | None = None, head: bytes | None = None) -> bytes:
    """A file of head ``doc`` and frames ``stored``; ``claims`` overrides stored sizes in records/index."""
    h = canonical(doc) if head is None else head
    out = bytearray(SB.pack(MAGIC, VERSION, 0, len(h), _lz4.xxh64(h))) + h
    index = bytearray()
    for i, fr in enumerate(doc["frames"]):
        data = stored[i]
        n = len(data) if claims is None else claims[i]
        x = _lz4.xxh64(data)
        if fr["style"] == LZ4:
            out += REC.pack(n, x)
        else:
            out += bytes(-len(out) % 4096)
        index += IDX.pack(len(out), n, x)
        out += data
    io_ = len(out)
    out += index
    out += TR.pack(io_, len(doc["frames"]), _lz4.xxh64(bytes(index)), len(out) + TR.size, VERSION, 0, END_MAGIC)
    return bytes(out)


# ----------------------------------------------------------------------------------------------
# The valid file every case starts from
# ----------------------------------------------------------------------------------------------

_rng = np.random.default_rng(5)
ARRAYS = {
    "raw": {"big": _rng.standard_normal(150_000), "small": np.arange(10, dtype=">u2")},
    "z": {"big": np.repeat(np.arange(160, dtype="<i8"), 1000), "small": np.ones((3, 4), order="F")},
    "empty": {},
}
_buf = io.BytesIO()
ndckpt.save(_buf, ARRAYS, style={"z": {"big": "lz4", "small": "lz4"}}, metadata={"m": 1})
BASE = _buf.getvalue()
P = parse(BASE)
FRAME_OF = {  # array name -> its (single) frame index
    "/".join(P.doc["arrays"]["path"][ai]): fi for fi, fr in enumerate(P.doc["frames"]) for ai in fr["parts"][::4]
}
RAW_BIG, LZ4_BIG = FRAME_OF["raw/big"], FRAME_OF["z/big"]


def test_the_independent_writer_reproduces_ndckpt_byte_for_byte() -> None:
    assert build(P.doc, P.stored) == BASE
    assert [P.doc["frames"][i]["style"] for i in (RAW_BIG, LZ4_BIG)] == [RAW, LZ4]


# ----------------------------------------------------------------------------------------------
# Mutations
# ----------------------------------------------------------------------------------------------

Mutation = Callable[[bytes], bytes]


def flip(off: int, mask: int = 0x01) -> Mutation:
    def m(b: bytes) -> bytes:
        x = bytearray(b)
        x[off] ^= mask
        return bytes(x)

    return m


def put(off: int, fmt: str, value: int) -> Mutation:
    """Overwrite an integer field; a negative ``off`` counts from the end of the file."""

    def m(b: bytes) -> bytes:
        x = bytearray(b)
        struct.pack_into(fmt, x, off if off >= 0 else len(x) + off, value)
        return bytes(x)

    return m


def truncate(at: int) -> Mutation:
    return lambda b: b[:at]


def with_doc(edit: Callable[[dict[str, Any]], None]) -> Mutation:
    """Rebuild the file with an edited head; everything else stays consistent."""

    def m(_: bytes) -> bytes:
        doc = json.loads(canonical(P.doc))
        edit(doc)
        return build(doc, P.stored)

    return m


def with_head_bytes(fn: Callable[[bytes], bytes]) -> Mutation:
    return lambda _: build(P.doc, P.stored, head=fn(canonical(P.doc)))


def set_in(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        d: Any = doc
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return edit


def forged_lz4(b: bytes) -> bytes:
    """Corrupt the LZ4 frame's blocks and recompute its checksums: only decoding can tell."""
    stored = list(P.stored)
    x = bytearray(stored[LZ4_BIG])
    x[3:40] = bytes(37)  # the first chunk's block, after its 3-byte size
    stored[LZ4_BIG] = bytes(x)
    return build(P.doc, stored)


def lz4_claims(b: bytes) -> bytes:
    """An LZ4 frame whose record and index claim more stored bytes than it has (shifts all)."""
    claims = [len(s) for s in P.stored]
    claims[LZ4_BIG] += 1
    return build(P.doc, P.stored, claims=claims)


def dup_array(doc: dict[str, Any]) -> None:
    doc["arrays"]["path"][1] = doc["arrays"]["path"][0]


def gap_in_parts(doc: dict[str, Any]) -> None:
    fr = doc["frames"][RAW_BIG]
    fr["parts"][1] = 8  # the first part starts at byte 8 of the array


def lz4_stored(raw: bytes) -> bytes:
    """The stored bytes of an LZ4 data frame holding ``raw`` (as ndckpt writes it)."""
    f = io.BytesIO()
    ndckpt.save(f, {"x": np.frombuffer(raw, np.uint8)}, style="lz4")
    return parse(f.getvalue()).stored[0]


def _columns(path: list[str], dtype: str, shape: list[int]) -> dict[str, Any]:
    """The head's "arrays" object for one C-order array."""
    return {"blocks": [], "dtype": [0], "dtypes": [dtype], "order": "C", "path": [path], "shape": [shape]}


def _split_across_styles() -> bytes:
    """A valid-looking file whose one array has a RAW frame and an LZ4 frame."""
    doc = {
        "arrays": _columns(["a"], "|u1", [8192]),
        "frames": [
            {"style": RAW, "nbytes": 4096, "parts": [0, 0, 4096, 0]},
            {"style": LZ4, "nbytes": 4096, "parts": [0, 4096, 4096, 0]},
        ],
        "groups": [],
        "metadata": None,
    }
    z = lz4_stored(bytes(4096))  # zeros: compressed, not stored verbatim
    assert len(z) < 4096
    return build(doc, [bytes(4096), z])


@dataclass(frozen=True)
class Case:
    desc: str
    mutate: Mutation
    exc: type[Exception] | None  # random-access readers; None: the file loads
    match: str
    stream_exc: type[Exception] | None = None  # defaults to exc / match
    stream_match: str | None = None
    load_kw: dict[str, Any] = field(default_factory=dict)
    verify_exc: type[Exception] | None = None  # when only verify() must notice (pads)
    verify_match: str = ""

    def expected(self, stream: bool, entry: str = "") -> tuple[type[Exception] | None, str]:
        if entry.startswith("verify") and self.verify_exc is not None:
            return self.verify_exc, self.verify_match
        if stream and self.stream_match is not None:
            return self.stream_exc, self.stream_match
        return self.exc, self.match


FE, IOE, CE = FormatError, CheckptIOError, CompressionError
EOF = "unexpected EOF"
SIZE = len(BASE)
LZ4_DATA = P.offsets[LZ4_BIG]
RAW_DATA = P.offsets[RAW_BIG]

CASES = [
    Case("bad magic", flip(0), FE, "bad magic"),
    Case("magic of another format", lambda b: b"\x93NUMPY" + b[6:], FE, "bad magic"),
    Case("superblock version 3", put(8, "<I", 3), FE, "version 3"),
    Case("superblock version 1 (development builds)", put(8, "<I", 1), FE, "unsupported ndckpt format version 1"),
    Case("superblock version 0", put(8, "<I", 0), FE, "version 0"),
    Case("superblock flags", put(12, "<I", 4), FE, "flags"),
    Case("trailer version 3", put(-16, "<I", 3), FE, "version 3"),
    Case("trailer flags", put(-12, "<I", 1), FE, "flags"),
    Case("trailer end magic", flip(SIZE - 1), FE, "end magic"),
    Case("trailer file size", put(-24, "<Q", SIZE + 1), FE, "should be", FE, "disagree"),
    Case("trailer frame count", put(-40, "<Q", len(P.stored) + 1), FE, "index", FE, "disagree"),
    Case("trailer index offset", put(-48, "<Q", P.index_offset - 24), FE, "index", FE, "disagree"),
    Case("empty file", truncate(0), FE, "not an ndckpt file", IOE, EOF),
    Case("truncated in the superblock", truncate(16), FE, "too small", IOE, EOF),
    Case("truncated in the head", truncate(SB.size + 100), FE, "runs past the end", IOE, EOF),
    Case("truncated before a RAW frame", truncate(P.head_end + 10), FE, "runs past the end", IOE, EOF),
    Case("truncated mid RAW frame", truncate(RAW_DATA + 1000), FE, "end magic", IOE, EOF),
    Case("truncated in an LZ4 record", truncate(LZ4_DATA - 8), FE, "end magic", IOE, EOF),
    Case("truncated mid LZ4 frame", truncate(LZ4_DATA + 100), FE, "end magic", IOE, EOF),
    Case("truncated in the index", truncate(P.index_offset + 10), FE, "end magic", IOE, EOF),
    Case("truncated in the trailer", truncate(SIZE - 10), FE, "end magic", IOE, EOF),
    Case("last byte missing", truncate(SIZE - 1), FE, "end magic", IOE, EOF),
    Case("head checksum wrong", flip(SB.size + 30), FE, "head.*checksum"),
    Case("head checksum field wrong", flip(24), FE, "head.*checksum"),
    Case("head size beyond the limit", put(16, "<Q", 1 << 40), FE, "limit"),
    Case("head size past the end", put(16, "<Q", SIZE), FE, "runs past the end", IOE, EOF),
    Case("head not JSON", with_head_bytes(lambda h: b"[" + h[1:]), FE, "not valid JSON"),
    Case("head not UTF-8", with_head_bytes(lambda h: h[:-1] + b"\xff"), FE, "not valid JSON"),
    Case("head is a list", with_head_bytes(lambda h: b"[]"), FE, "exactly the keys"),
    Case("head unknown key", with_doc(lambda d: d.update(extra=1)), FE, "exactly the keys"),
    Case("head missing key", with_doc(lambda d: d.pop("groups")), FE, "exactly the keys"),
    Case("arrays unknown column", with_doc(set_in(("arrays", "endian"), "<")), FE, "exactly the keys"),
    Case("arrays missing column", with_doc(lambda d: d["arrays"].pop("blocks")), FE, "exactly the keys"),
    Case("arrays as a list", with_doc(set_in(("arrays",), [])), FE, "exactly the keys"),
    Case("arrays columns of different lengths", with_doc(lambda d: d["arrays"]["shape"].pop()), FE, "lengths"),
    Case("order column too short", with_doc(lambda d: d["arrays"].update(order="CCC")), FE, "lengths"),
    Case("order column not a string", with_doc(set_in(("arrays", "order"), ["C"] * 4)), FE, "expected a string"),
    Case("dtype index out of range", with_doc(set_in(("arrays", "dtype", 0), 9)), FE, "dtype index"),
    Case("dtype index negative", with_doc(set_in(("arrays", "dtype", 0), -1)), FE, "dtype index"),
    Case("dtype index a bool", with_doc(set_in(("arrays", "dtype", 0), False)), FE, "dtype index"),
    Case("blocks entry malformed", with_doc(set_in(("arrays", "blocks"), [[0]])), FE, r"\[array, blocks\]"),
    Case("blocks of an unknown array", with_doc(set_in(("arrays", "blocks"), [[7, [[[0], [1]]]]])), FE, "blocks array"),
    Case("frame unknown key", with_doc(set_in(("frames", 0, "codec"), "x")), FE, "exactly the keys"),
    Case("bad dtype string", with_doc(set_in(("arrays", "dtypes", 0), "<x8")), FE, "bad dtype"),
    Case("object dtype", with_doc(set_in(("arrays", "dtypes", 0), "|O")), FE, "dtype"),
    Case("dtype without byte order", with_doc(set_in(("arrays", "dtypes", 0), "f8")), FE, "bad dtype"),
    Case(
        "structured dtype with object field",
        with_doc(set_in(("arrays", "dtypes", 0), {"names": ["a"], "formats": ["|O"], "offsets": [0], "itemsize": 8})),
        FE,
        "dtype",
    ),
    Case("shape disagrees with parts", with_doc(set_in(("arrays", "shape", 0), [150_001])), FE, "need"),
    Case("shape with a float", with_doc(set_in(("arrays", "shape", 0), [150_000.0])), FE, "integer"),
    Case("shape negative", with_doc(set_in(("arrays", "shape", 0), [-150_000])), FE, "integer"),
    Case("shape with a bool", with_doc(set_in(("arrays", "shape", 1), [True, 10])), FE, "integer"),
    Case("order not C or F", with_doc(lambda d: d["arrays"].update(order="K" + d["arrays"]["order"][1:])), FE, "order"),
    Case("empty path", with_doc(set_in(("arrays", "path", 0), [])), FE, "non-empty"),
    Case("duplicate names", with_doc(dup_array), FE, "twice"),
    Case("frame style 3", with_doc(set_in(("frames", 0, "style"), 3)), FE, "style"),
    Case("frame nbytes 0", with_doc(set_in(("frames", 0, "nbytes"), 0)), FE, "nbytes"),
    Case("parts not in fours", with_doc(lambda d: d["frames"][0]["parts"].pop()), FE, "quadruples"),
    Case("parts nested as in version 1", with_doc(lambda d: d["frames"][0].update(parts=[[0, 0, 8, 0]])), FE, "part"),
    Case("part beyond its array", with_doc(set_in(("frames", 0, "parts", 0), 99)), FE, "part array"),
    Case("part leaves a gap", with_doc(gap_in_parts), FE, "expected 0"),
    Case("array split across styles", lambda b: _split_across_styles(), FE, "different styles"),
    Case("metadata not JSON", with_head_bytes(lambda h: h.replace(b'{"m":1}', b'{"m":N}')), FE, "not valid JSON"),
    Case("index checksum wrong", flip(P.index_offset + 3), FE, "index.*checksum"),
    Case("index checksum field wrong", flip(SIZE - 32), FE, "index.*checksum"),
    Case(
        "index offset disagrees with the layout",
        lambda b: _fix_index(put(P.index_offset + 24 * RAW_BIG, "<Q", RAW_DATA + 4096)(b)),
        FE,
        "index says offset",
    ),
    Case("record checksum disagrees with index", flip(LZ4_DATA - 8), FE, "disagrees with the index", FE, "checksum"),
    Case("record size disagrees with the index", flip(LZ4_DATA - 16), FE, "disagrees with the index", FE, "checksum"),
    Case("LZ4 sizes claim more bytes", lz4_claims, FE, "disagrees with the index", FE, "checksum"),
    Case("LZ4 frame byte flipped", flip(LZ4_DATA + 100), FE, r"frame \d+ at offset \d+ \(array 'z/big'\): checksum"),
    Case("LZ4 blocks corrupt, checksums forged", forged_lz4, CE, "'z/big'.*LZ4 block is malformed"),
    Case("RAW frame byte flipped, verify=True", flip(RAW_DATA + 7), FE, "raw/big.*checksum", load_kw={"verify": True}),
    # Pads carry no data and no checksum: loads ignore them (format §4); verify() reports them.
    Case(
        "RAW pad byte flipped, verify=True",
        flip(RAW_DATA - 1),
        None,
        "",
        load_kw={"verify": True},
        verify_exc=FE,
        verify_match="padding",
    ),
    Case("extra bytes appended", lambda b: b + b"\x00" * 7, FE, "end magic", None, ""),
    Case("a page appended", lambda b: b + b"x" * 4096, FE, "end magic", None, ""),
    Case("two files back to back", lambda b: b + b, FE, "end magic|should be", None, ""),
]


def _fix_index(b: bytes) -> bytes:
    x = bytearray(b)
    ib = bytes(x[P.index_offset : len(x) - TR.size])
    struct.pack_into("<Q", x, len(x) - TR.size + 16, _lz4.xxh64(ib))
    return bytes(x)


ENTRY_POINTS: dict[str, tuple[bool, Callable[[bytes, Path, dict[str, Any]], Any]]] = {
    "load(bytes)": (False, lambda d, p, kw: ndckpt.load(d, **kw)),
    "load(path)": (False, lambda d, p, kw: ndckpt.load(p, mmap=False, threads=2, **kw)),
    "open(path).load()": (False, lambda d, p, kw: _open_load(p, kw)),
    "verify(path)": (False, lambda d, p, kw: ndckpt.verify(p, threads=2)),
    "load(BytesIO)": (True, lambda d, p, kw: ndckpt.load(io.BytesIO(d), **kw)),
    "verify(BytesIO)": (True, lambda d, p, kw: ndckpt.verify(io.BytesIO(d))),
}


def _open_load(p: Path, kw: dict[str, Any]) -> Any:
    with ndckpt.open(p, **kw) as r:
        return r.load()


@pytest.mark.parametrize("case", CASES, ids=[c.desc for c in CASES])
def test_malformed(case: Case, tmp_path: Path) -> None:
    data = case.mutate(BASE)
    path = tmp_path / "bad.ndckpt"
    path.write_bytes(data)
    for name, (stream, fn) in ENTRY_POINTS.items():
        exc, match = case.expected(stream, name)
        if exc is None:
            got = fn(data, path, case.load_kw)
            if name.startswith("load"):
                assert got["raw"]["small"].tolist() == list(range(10)), name
            continue
        with pytest.raises(exc, match=match) as ei:
            fn(data, path, case.load_kw)
        assert not isinstance(ei.value, AssertionError)
        assert isinstance(ei.value, ndckpt.CheckptError), f"{name}: {type(ei.value)}"


def test_a_flipped_raw_byte_goes_unseen_without_verify() -> None:
    """RAW frames are mapped, not read: without verify=True the flip is returned, as documented."""
    data = flip(RAW_DATA + 7)(BASE)
    got = ndckpt.load(data)["raw"]["big"]
    assert not np.array_equal(got, ARRAYS["raw"]["big"])
    assert np.array_equal(got[1:], ARRAYS["raw"]["big"][1:])


def test_errors_name_frame_offset_and_array() -> None:
    with pytest.raises(FormatError) as ei:
        ndckpt.load(flip(LZ4_DATA + 100)(BASE))
    msg = str(ei.value)
    assert f"frame {LZ4_BIG}" in msg
    assert f"offset {LZ4_DATA}" in msg
    assert "'z/big'" in msg
    with pytest.raises(FormatError) as ei:
        ndckpt.load(io.BytesIO(flip(LZ4_DATA + 100)(BASE)))
    assert "'z/big'" in str(ei.value)
    assert f"frame {LZ4_BIG}" in str(ei.value)


# ----------------------------------------------------------------------------------------------
# Hostile sizes: fail fast, allocate nothing
# ----------------------------------------------------------------------------------------------

TB = 1 << 40
G4 = 1 << 32


def _huge_tiling_mismatch() -> bytes:
    """About 1 KB: a 1 TB array whose only frame holds 8 bytes."""
    doc = {
        "arrays": _columns(["huge"], "<f8", [TB // 8]),
        "frames": [{"style": LZ4, "nbytes": 8, "parts": [0, 0, 8, 0]}],
        "groups": [],
        "metadata": None,
    }
    stored = [b"\x80\x00\x00" + b"\x00" * 8]  # never reached
    return build(doc, stored)


def _huge_frames(style: int) -> bytes:
    """A 1 TB array in 256 frames of 4 GiB whose records/index claim their full size (RAW) or 5 bytes."""
    doc = {
        "arrays": _columns(["huge"], "|u1", [TB]),
        "frames": [{"style": style, "nbytes": G4, "parts": [0, i * G4, G4, 0]} for i in range(256)],
        "groups": [],
        "metadata": None,
    }
    n = 1 if style == RAW else 5
    claims = [G4] * 256 if style == RAW else None
    return build(doc, [b"\x00" * n] * 256, claims=claims)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


HOSTILE = [
    pytest.param(_huge_tiling_mismatch, FE, "need", FE, "need", id="1KB-claims-1TB"),
    pytest.param(lambda: _huge_frames(RAW), FE, "stores|past", IOE, "allocate|EOF", id="1TB-in-RAW-frames"),
    pytest.param(lambda: _huge_frames(LZ4), FE, "cannot be stored", FE, "cannot be stored", id="1TB-in-LZ4-frames"),
    pytest.param(lambda: put(16, "<Q", (1 << 28) - 1)(BASE[:2048]), FE, "runs past", IOE, EOF, id="256MiB-head"),
]


@pytest.mark.parametrize(("make", "exc", "match", "stream_exc", "stream_match"), HOSTILE)
def test_hostile_sizes_fail_fast_without_allocating(
    make: Callable[[], bytes],
    exc: type[Exception],
    match: str,
    stream_exc: type[Exception],
    stream_match: str,
    tmp_path: Path,
) -> None:
    data = make()
    path = tmp_path / "hostile.ndckpt"
    path.write_bytes(data)
    for name, (stream, fn) in ENTRY_POINTS.items():
        e, m = (stream_exc, stream_match) if stream else (exc, match)
        before, t0 = _rss(), time.perf_counter()
        with pytest.raises(e, match=m):
            fn(data, path, {})
        took, grew = time.perf_counter() - t0, _rss() - before
        assert took < 1.0, f"{name}: took {took:.2f} s"
        assert grew < 32 << 20, f"{name}: RSS grew by {grew >> 20} MiB"
    assert len(data) < 2 << 20
