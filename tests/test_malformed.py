"""A table of malformed files, each with the error every reader must raise.

Every case mutates one valid file (or builds a hostile one) and is run through every entry
point: ``load`` of the bytes, ``load`` of a path, ``open(path).load()``, ``verify(path)`` (the
random-access readers) and ``load`` / ``verify`` of a BytesIO (the one-pass stream reader).
Each case states the exception type and a message fragment for the random-access readers and
for the stream reader, which sees the bytes in order and so reports some problems differently
(a truncated stream is an I/O error: EOF; bytes after a stream's trailer are not its business).

The files here are built by the tests' hostile-file forge (``forge.build``), a writer
independent of ndckpt's that follows ``docs/format.md``; it reproduces ndckpt's own output
byte for byte, so a case can change one field (a shape, a version, a frame size) with every
checksum and offset still consistent.
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
from forge import build, canonical, columns, fix_index_checksum, parse
from helpers import READERS, readers, save_bytes

import ndckpt
from ndckpt import CheckptIOError, CompressionError, FormatError

RAW, LZ4 = 1, 2  # frame styles


# ----------------------------------------------------------------------------------------------
# The valid file every case starts from
# ----------------------------------------------------------------------------------------------

_rng = np.random.default_rng(5)
ARRAYS = {
    "raw": {"big": _rng.standard_normal(150_000), "small": np.arange(10, dtype=">u2")},
    "z": {"big": np.repeat(np.arange(160, dtype="<i8"), 1000), "small": np.ones((3, 4), order="F")},
    "empty": {},
}
BASE = save_bytes(ARRAYS, style={"z": {"big": "lz4", "small": "lz4"}}, metadata={"m": 1})
P = parse(BASE)
STYLES = [fr["style"] for fr in P.head["frames"]]
FRAME_OF = {  # array name -> its (single) frame index
    "/".join(P.head["arrays"]["path"][ai]): fi for fi, fr in enumerate(P.head["frames"]) for ai in fr["parts"][::4]
}
RAW_BIG, LZ4_BIG = FRAME_OF["raw/big"], FRAME_OF["z/big"]


def test_the_independent_writer_reproduces_ndckpt_byte_for_byte() -> None:
    assert not P.verbatim
    assert build(P.head, P.stored) == BASE
    assert [STYLES[i] for i in (RAW_BIG, LZ4_BIG)] == [RAW, LZ4]


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
        doc = json.loads(canonical(P.head))
        edit(doc)
        return build(doc, P.stored)

    return m


def with_head_bytes(fn: Callable[[bytes], bytes]) -> Mutation:
    return lambda _: build(fn(canonical(P.head)), P.stored, styles=STYLES)


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
    return build(P.head, stored)


def lz4_claims(b: bytes) -> bytes:
    """An LZ4 frame whose record and index claim more stored bytes than it has (shifts all)."""
    claims = [len(s) for s in P.stored]
    claims[LZ4_BIG] += 1
    return build(P.head, P.stored, claims=claims)


def dup_array(doc: dict[str, Any]) -> None:
    doc["arrays"]["path"][1] = doc["arrays"]["path"][0]


def gap_in_parts(doc: dict[str, Any]) -> None:
    fr = doc["frames"][RAW_BIG]
    fr["parts"][1] = 8  # the first part starts at byte 8 of the array


def lz4_stored(raw: bytes) -> bytes:
    """The stored bytes of an LZ4 data frame holding ``raw`` (as ndckpt writes it)."""
    return parse(save_bytes({"x": np.frombuffer(raw, np.uint8)}, style="lz4")).stored[0]


def _columns(path: list[str], dtype: str, shape: list[int]) -> dict[str, Any]:
    """The head's "arrays" object for one C-order array."""
    return columns([{"path": path, "dtype": dtype, "shape": shape, "order": "C"}])


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
HEAD = P.find("head").start  # the head's first byte: the superblock's size
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
    Case("truncated in the head", truncate(HEAD + 100), FE, "runs past the end", IOE, EOF),
    Case("truncated before a RAW frame", truncate(P.head_end + 10), FE, "runs past the end", IOE, EOF),
    Case("truncated mid RAW frame", truncate(RAW_DATA + 1000), FE, "end magic", IOE, EOF),
    Case("truncated in an LZ4 record", truncate(LZ4_DATA - 8), FE, "end magic", IOE, EOF),
    Case("truncated mid LZ4 frame", truncate(LZ4_DATA + 100), FE, "end magic", IOE, EOF),
    Case("truncated in the index", truncate(P.index_offset + 10), FE, "end magic", IOE, EOF),
    Case("truncated in the trailer", truncate(SIZE - 10), FE, "end magic", IOE, EOF),
    Case("last byte missing", truncate(SIZE - 1), FE, "end magic", IOE, EOF),
    Case("head checksum wrong", flip(HEAD + 30), FE, "head.*checksum"),
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
        lambda b: fix_index_checksum(put(P.index_offset + 24 * RAW_BIG, "<Q", RAW_DATA + 4096)(b)),
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


#: The entry points every case runs (by name, from helpers.READERS): the random-access readers
#: and the one-pass stream reader (``Reader.one_pass``).
ENTRY_POINTS = readers(
    ["load(bytes)", "load(path, copy)", "open(path).load()", "verify(path)", "load(BytesIO)", "verify(BytesIO)"]
)
assert {READERS[n].one_pass for n in ENTRY_POINTS} == {False, True}


@pytest.mark.parametrize("case", CASES, ids=[c.desc for c in CASES])
def test_malformed(case: Case, tmp_path: Path) -> None:
    data = case.mutate(BASE)
    path = tmp_path / "bad.ndckpt"
    path.write_bytes(data)
    for name, read in ENTRY_POINTS.items():
        exc, match = case.expected(read.one_pass, name)
        kw = {} if name.startswith("verify") else case.load_kw
        if exc is None:
            got = read(data, path, **kw)
            if not name.startswith("verify"):
                assert got["raw"]["small"].tolist() == list(range(10)), name
            continue
        with pytest.raises(exc, match=match) as ei:
            read(data, path, **kw)
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
    for name, read in ENTRY_POINTS.items():
        e, m = (stream_exc, stream_match) if read.one_pass else (exc, match)
        before, t0 = _rss(), time.perf_counter()
        with pytest.raises(e, match=m):
            read(data, path)
        took, grew = time.perf_counter() - t0, _rss() - before
        assert took < 1.0, f"{name}: took {took:.2f} s"
        assert grew < 32 << 20, f"{name}: RSS grew by {grew >> 20} MiB"
    assert len(data) < 2 << 20
