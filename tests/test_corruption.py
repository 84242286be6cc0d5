"""Corrupt and hostile files: every reader raises an ndckpt error or returns the right arrays.

Valid checkpoints (both styles and mixed, many dtypes and shapes, several frames each: the
tests save with 64 KiB frames so small states still span frames) are damaged by flipping
bytes, truncating, duplicating or reordering frames, and rewriting header and head fields
with every checksum recomputed. Each damaged file goes through every reader: ``load`` of a
buffer (mapped views and copies) and of a seekable and an unseekable stream, ``open`` +
``get``, ``verify``, and the low-level ``Restore`` replaying the original call sequence.

**The rule** (what a reader may do with a damaged file; ``verify`` means the argument of
load/open, ``ndckpt.verify`` counts as ``verify=True``):

1. It raises a :class:`ndckpt.CheckptError` subclass, or it returns arrays; it never raises
   anything else, crashes the interpreter or hangs.
2. Truncation, duplicated frames, reordered frames around an LZ4 frame, and any damage to
   the superblock, head, LZ4 records, index or trailer always raise, whatever ``verify`` is.
3. A flipped byte inside a data frame raises when ``verify=True``, and for LZ4 frames also
   when ``verify=None`` (their checksums are checked because their bytes are read anyway).
4. Otherwise the returned arrays are exact:

   - a flip in a RAW data frame with ``verify`` not True gives the original arrays with that
     one byte flipped in the array the byte belongs to (nothing changes when the byte is
     packing between arrays): zero-copy views read nothing, so nothing can be checked;
   - a flip in an LZ4 data frame with ``verify=False`` changes at most the arrays with bytes
     in that frame (decoding may also fail with CompressionError);
   - two swapped frames with only RAW frames from one to the other and ``verify`` not True
     change at most the arrays in those frames (pads absorb a size difference).

5. **Pads**: no checksum covers the zero pad before a RAW frame. ``ndckpt.verify`` requires
   pads to be zero and reports a flipped pad byte; loads ignore pads (format section 4), so
   they return the original arrays unchanged.

The low-level ``Restore`` has no checksums: replaying the writer's call sequence over
damaged bytes raises CheckptIOError/CompressionError (and leaves the object failed) or
returns the stored bytes as they are; over a truncated file it always raises.

Hostile sizes: a file claiming a 1 TB array fails at once, before anything of that size is
allocated or mapped (checked in a child process under an address-space limit).
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from forge import (
    Layout,
    Region,
    Unseekable,
    build,
    canonical,
    column_doc,
    columns,
    harness,
    parse,
    parts4,
    row_doc,
    rows,
    save_small_frames,
    stored_order_bytes,
)
from helpers import READERS, flat, readers
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from strategies import ALL_DTYPES, generate

import ndckpt
from ndckpt import CheckptError, FormatError, FrameStyle, Restore
from ndckpt.container import INDEX_DTYPE, RECORD, SUPERBLOCK, TRAILER

# ----------------------------------------------------------------------------------------------
# Valid states and their files
# ----------------------------------------------------------------------------------------------

#: Dtypes of every kind the format stores (plus datetime, unicode, bytes and padded structs).
DTYPES = (
    *ALL_DTYPES,
    np.dtype("<M8[ns]"),
    np.dtype("<U3"),
    np.dtype("S5"),
    np.dtype({"names": ["x", "y"], "formats": ["u1", "<f8"], "offsets": [0, 8], "itemsize": 24}),
)


@st.composite
def states(draw: st.DrawFn) -> tuple[dict[str, Any], Any]:
    """(arrays, style): 1-5 arrays (some nested, some F-ordered, some >16 KiB so they get
    frames of their own at 64 KiB frames), style "raw", "lz4" or a per-array mapping."""
    n = draw(st.integers(1, 5))
    arrays: dict[str, Any] = {}
    names = []
    for i in range(n):
        dt = draw(st.sampled_from(DTYPES))
        big = draw(st.booleans())
        count = draw(st.integers(17000, 40000) if big else st.integers(0, 40)) // max(1, dt.itemsize // 4)
        shape: tuple[int, ...] = (count,)
        if count and count % 2 == 0 and draw(st.booleans()):
            shape = (2, count // 2)
        raw = generate(draw(st.sampled_from(["fill", "text", "splitmix64", "runs"])), count * dt.itemsize, i)
        a = np.frombuffer(bytearray(raw), dt).reshape(shape)
        if len(shape) == 2 and draw(st.booleans()):
            a = np.asfortranarray(a)
        name = f"a{i}"
        if draw(st.booleans()):
            arrays.setdefault("grp", {})[name] = a
            names.append(f"grp/{name}")
        else:
            arrays[name] = a
            names.append(name)
    if draw(st.booleans()):
        arrays["empty"] = {}
    kind = draw(st.sampled_from(["raw", "lz4", "mixed"]))
    style: Any = kind
    if kind == "mixed":
        style = {nm: draw(st.sampled_from(["raw", "lz4"])) for nm in names}
    return arrays, style


def _base(arrays: dict[str, Any], style: Any) -> tuple[bytes, Layout, dict[str, bytes]]:
    """The file, its layout, and each array's stored-order bytes."""
    data = save_small_frames(arrays, style=style)
    lay = parse(data)
    orders = {"/".join(a["path"]): a["order"] for a in rows(lay.head)}
    want = {k: stored_order_bytes(v, orders[k]) for k, v in flat(arrays).items()}
    return data, lay, want


_MIXED = {
    "r8": np.arange(30000, dtype="<f8"),  # RAW, frames of its own
    "small": {"i": np.arange(7, dtype=">i4"), "s": np.array([b"ab", b"c"]), "e": np.zeros((0, 3))},
    "z": (np.arange(70000) % 251).astype("u1"),  # LZ4, frames of its own
    "p": np.array([(1, 2.5)], [("a", "<i2"), ("b", "<f4")]),
    "f": np.asfortranarray(np.arange(12, dtype="<u2").reshape(3, 4)),
}
_MIXED_STYLE = {"z": "lz4", "p": "lz4", "small/i": "lz4"}
#: Base files for the exhaustive (non-hypothesis) tests: RAW only, LZ4 only, mixed.
BASES = {
    "raw": (_MIXED, "raw"),
    "lz4": (_MIXED, "lz4"),
    "mixed": (_MIXED, _MIXED_STYLE),
}


@pytest.fixture(scope="module", params=sorted(BASES))
def base(request: pytest.FixtureRequest) -> tuple[bytes, Layout, dict[str, bytes]]:
    return _base(*BASES[request.param])


# ----------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------


def _stored(result: dict[str, Any], lay: Layout) -> dict[str, bytes]:
    """A reader's nested result as {name: stored-order bytes}, checking dtype and shape."""
    got = flat(result)
    out = {}
    for a in rows(lay.head):
        name = "/".join(a["path"])
        arr = got[name]
        assert list(arr.shape) == a["shape"], name
        out[name] = stored_order_bytes(arr, a["order"])
    assert set(got) == set(out)
    return out


#: The readers of a buffer every damaged file goes through, in every verify mode (by name,
#: from helpers.READERS): mapped and copying loads, a seekable and an unseekable stream, open + get.
BUFFER_READERS = readers(["load(bytes)", "load(bytes, copy)", "load(BytesIO)", "load(pipe)", "open(bytes).get"])
VERIFY_MODES = (None, True, False)


def outcomes(data: bytes, lay: Layout) -> dict[tuple[str, bool | None], dict[str, bytes] | CheckptError]:
    """Every reader x verify mode on ``data``: its arrays (stored bytes) or the ndckpt error it
    raised. Any other exception propagates and fails the test."""
    out: dict[tuple[str, bool | None], dict[str, bytes] | CheckptError] = {}
    for name, read in BUFFER_READERS.items():
        for v in VERIFY_MODES:
            try:
                out[name, v] = _stored(read(data, verify=v), lay)
            except CheckptError as e:
                out[name, v] = e
    try:
        ndckpt.verify(data, threads=1)
        out["verify", True] = {}
    except CheckptError as e:
        out["verify", True] = e
    for key, res in out.items():
        assert not isinstance(res, CheckptError) or len(str(res)) > 10, f"{key}: message {res!r} says nothing"
    return out


def _all_raise(data: bytes, lay: Layout, what: str) -> None:
    for key, res in outcomes(data, lay).items():
        assert isinstance(res, CheckptError), f"{what}: {key} returned arrays"


# ----------------------------------------------------------------------------------------------
# Expected results of a flip
# ----------------------------------------------------------------------------------------------


def _arrays_in_frame(lay: Layout, fi: int) -> set[str]:
    paths = lay.head["arrays"]["path"]
    return {"/".join(paths[p[0]]) for p in parts4(lay.head["frames"][fi])}


def _flip_target(lay: Layout, r: Region, off: int) -> tuple[str, int] | None:
    """(array name, byte index in its stored bytes) that file offset ``off`` of a RAW data
    frame holds, or None when the byte is packing between arrays."""
    pos = off - r.start
    for ai, start, n, at in parts4(lay.head["frames"][r.frame]):
        if at <= pos < at + n:
            return "/".join(lay.head["arrays"]["path"][ai]), start + pos - at
    return None


def check_flip(data: bytes, lay: Layout, want: dict[str, bytes], off: int, mask: int) -> str:
    """Apply the rule of the module docstring to the file with byte ``off`` XORed by ``mask``."""
    bad = bytearray(data)
    bad[off] ^= mask
    r = lay.region_at(off)
    results = outcomes(bytes(bad), lay)
    style = lay.head["frames"][r.frame]["style"] if r.frame >= 0 else 0
    for (reader, v), res in results.items():
        what = f"flip {mask:#04x} at {off} ({r.kind} of frame {r.frame}, style {style}), {reader} verify={v}"
        if isinstance(res, CheckptError):
            continue
        if r.kind == "pad":
            assert reader != "verify", what
            assert res == want, what
        elif r.kind == "data" and style == FrameStyle.RAW and v is not True:
            expect = dict(want)
            tgt = _flip_target(lay, r, off)
            if tgt is not None:
                name, i = tgt
                b = bytearray(expect[name])
                b[i] ^= mask
                expect[name] = bytes(b)
            assert res == expect, what
        elif r.kind == "data" and style == FrameStyle.LZ4 and v is False:
            touched = _arrays_in_frame(lay, r.frame)
            assert {k for k in want if res[k] != want[k]} <= touched, what
        else:
            pytest.fail(f"{what}: returned arrays")
    return r.kind


# ----------------------------------------------------------------------------------------------
# Flips
# ----------------------------------------------------------------------------------------------


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(state=states(), pick=st.data())
def test_flipped_byte_anywhere(state: tuple[dict[str, Any], Any], pick: st.DataObject) -> None:
    """Any one byte of any valid file, XORed with any mask, obeys the rule (docstring)."""
    data, lay, want = _base(*state)
    kinds = sorted({r.kind for r in lay.regions if r.end > r.start})
    kind = pick.draw(st.sampled_from(kinds), label="region kind")
    r = pick.draw(st.sampled_from([r for r in lay.regions if r.kind == kind and r.end > r.start]))
    off = pick.draw(st.integers(r.start, r.end - 1), label="offset")
    mask = pick.draw(st.sampled_from([1, 0x80, 0xFF]) | st.integers(1, 255), label="mask")
    event(f"region {check_flip(data, lay, want, off, mask)}")


def test_flip_every_structure_byte(base: tuple[bytes, Layout, dict[str, bytes]]) -> None:
    """Every byte of the superblock, LZ4 records, index and trailer, and a sample of the head:
    a flip is always detected by every reader in every verify mode."""
    data, lay, _want = base
    offs = [
        o for r in lay.regions if r.kind in ("superblock", "record", "index", "trailer") for o in range(r.start, r.end)
    ]
    head = next(r for r in lay.regions if r.kind == "head")
    offs += list(range(head.start, head.end, 7))
    for off in offs:
        bad = bytearray(data)
        bad[off] ^= 0x10
        _all_raise(bytes(bad), lay, f"flip at {off} ({lay.region_at(off).kind})")
    assert len(offs) > 200


def test_flip_in_every_data_frame(base: tuple[bytes, Layout, dict[str, bytes]]) -> None:
    """First, middle and last byte of every data frame, and pad bytes: the rule holds."""
    data, lay, want = base
    for r in lay.regions:
        if r.kind in ("data", "pad"):
            for off in sorted({r.start, (r.start + r.end) // 2, r.end - 1}):
                check_flip(data, lay, want, off, 0x01)


def test_pad_flip_is_reported_by_verify_and_ignored_by_load() -> None:
    """No checksum covers the zero pad before a RAW frame: ``ndckpt.verify`` requires it to be
    zero (so a flipped pad byte is reported), while loads ignore pads (format §4) and the
    arrays are unaffected."""
    data, lay, want = _base({"x": np.arange(10)}, "raw")
    pad = next(r for r in lay.regions if r.kind == "pad")
    bad = bytearray(data)
    bad[pad.start] ^= 0xFF
    for src in (bytes(bad), io.BytesIO(bytes(bad))):
        with pytest.raises(ndckpt.FormatError, match="padding"):
            ndckpt.verify(src)
    assert _stored(ndckpt.load(bytes(bad), verify=True), lay) == want


# ----------------------------------------------------------------------------------------------
# Truncation, duplication, reordering
# ----------------------------------------------------------------------------------------------


def test_truncated_at_every_boundary(base: tuple[bytes, Layout, dict[str, bytes]]) -> None:
    """Cut at every structure boundary (and one byte either side): always an ndckpt error."""
    data, lay, _ = base
    cuts = sorted({c + d for c in lay.frame_bounds() for d in (-1, 0, 1)} & set(range(len(data))))
    for cut in cuts:
        _all_raise(data[:cut], lay, f"truncated to {cut} of {len(data)} bytes")
    assert len(cuts) > 20


@settings(max_examples=40)
@given(state=states(), frac=st.floats(0, 1, exclude_max=True))
def test_truncated_anywhere(state: tuple[dict[str, Any], Any], frac: float) -> None:
    data, lay, _ = _base(*state)
    cut = int(frac * len(data))
    _all_raise(data[:cut], lay, f"truncated to {cut}")
    _restore_raises(data[:cut], lay)


def _units(lay: Layout) -> list[tuple[int, int, int]]:
    """(start, end, frame) of each frame with its record or pad."""
    units = []
    for fi in range(len(lay.stored)):
        rs = [r for r in lay.regions if r.frame == fi]
        units.append((min(r.start for r in rs), max(r.end for r in rs), fi))
    return units


def test_duplicated_frame(base: tuple[bytes, Layout, dict[str, bytes]]) -> None:
    """A frame (with its record or pad) written twice in a row: always an ndckpt error."""
    data, lay, _ = base
    for start, end, fi in _units(lay):
        for lo in (start, next(r.start for r in lay.regions if r.frame == fi and r.kind == "data")):
            _all_raise(data[:end] + data[lo:end] + data[end:], lay, f"frame {fi} duplicated from {lo}")


def test_reordered_frames(base: tuple[bytes, Layout, dict[str, bytes]]) -> None:
    """Two frames' bytes (each with its record or pad) swapped. With ``verify=True``, or when
    an LZ4 frame lies between or at the two: always an error. With only RAW frames there and
    ``verify`` not True the structure can still parse (pads absorb the shift and every offset
    stays where it was), so only the arrays in frames i..j may change."""
    data, lay, want = base
    units = _units(lay)
    swaps = 0
    for i in range(len(units)):
        for j in range(i + 1, len(units)):
            (s1, e1, f1), (s2, e2, f2) = units[i], units[j]
            swapped = data[:s1] + data[s2:e2] + data[e1:s2] + data[s1:e1] + data[e2:]
            if swapped == data:
                continue
            swaps += 1
            span = range(f1, f2 + 1)
            styles = {lay.head["frames"][f]["style"] for f in span}
            touched = set().union(*(_arrays_in_frame(lay, f) for f in span))
            for (reader, v), res in outcomes(swapped, lay).items():
                what = f"frames {f1} and {f2} swapped, {reader} verify={v}"
                if isinstance(res, CheckptError):
                    continue
                assert styles == {FrameStyle.RAW}, what
                assert v is not True, what
                assert {k for k in want if res[k] != want[k]} <= touched, what
    assert swaps


# ----------------------------------------------------------------------------------------------
# Rewritten fields, checksums recomputed
# ----------------------------------------------------------------------------------------------


def _rebuild(lay: Layout, mutate: Any) -> bytes:
    """The file with its head edited by ``mutate``, which sees arrays as rows and parts as
    quadruples (:func:`forge.row_doc`); the edit is carried back to the head's columns."""
    head = row_doc(lay.head)
    mutate(head)
    styles = [f["style"] for f in lay.head["frames"]]
    return build(canonical(column_doc(head)), lay.stored, styles=styles, verbatim=lay.verbatim)


def _first(head: dict[str, Any], pred: Any) -> dict[str, Any]:
    return next(a for a in head["arrays"] if pred(a))


def _nonempty(a: dict[str, Any]) -> bool:
    return all(s > 0 for s in a["shape"])


#: (id, how to change the head, what the error message must mention). Every change makes the
#: head inconsistent; build() recomputes all checksums, offsets and sizes around it.
HEAD_REWRITES: list[tuple[str, Any, str]] = [
    (
        "shape-doubled",
        lambda h: _first(h, _nonempty)["shape"].__setitem__(0, 2 * _first(h, _nonempty)["shape"][0]),
        r"need|holds",
    ),
    ("shape-extra-dim", lambda h: _first(h, _nonempty)["shape"].append(3), r"need|holds"),
    ("shape-dim-dropped", lambda h: _first(h, lambda a: len(a["shape"]) == 2)["shape"].pop(), r"need|holds"),
    ("shape-negative", lambda h: _first(h, _nonempty)["shape"].__setitem__(0, -1), r"shape"),
    ("shape-float", lambda h: _first(h, _nonempty)["shape"].__setitem__(0, 3.0), r"shape"),
    ("shape-huge", lambda h: _first(h, _nonempty)["shape"].__setitem__(0, 1 << 61), r"bytes|need|holds|shape"),
    ("dtype-itemsize", lambda h: _first(h, lambda a: a["dtype"] == "<f8").__setitem__("dtype", "<f4"), r"need|holds"),
    ("dtype-object", lambda h: _first(h, _nonempty).__setitem__("dtype", "|O"), r"dtype"),
    ("dtype-garbage", lambda h: _first(h, _nonempty).__setitem__("dtype", "<zz"), r"dtype"),
    ("dtype-no-byteorder", lambda h: _first(h, _nonempty).__setitem__("dtype", "f8"), r"dtype"),
    ("order-unknown", lambda h: _first(h, _nonempty).__setitem__("order", "K"), r"order"),
    (
        "frame-nbytes-minus",
        lambda h: h["frames"][0].__setitem__("nbytes", h["frames"][0]["nbytes"] - 1),
        r"overruns|stores|nbytes|bytes",
    ),
    ("frame-nbytes-zero", lambda h: h["frames"][0].__setitem__("nbytes", 0), r"nbytes"),
    ("frame-nbytes-huge", lambda h: h["frames"][0].__setitem__("nbytes", 1 << 40), r"nbytes"),
    ("frame-style-3", lambda h: h["frames"][0].__setitem__("style", 3), r"style"),
    (
        "frame-style-swapped",
        lambda h: h["frames"][0].__setitem__("style", 3 - h["frames"][0]["style"]),
        r"stor|record|offset|LZ4|RAW|index|layout|compress|chunk|bytes",
    ),
    ("frame-dropped", lambda h: h["frames"].pop(), r"frames|hold|need|index"),
    ("frame-duplicated", lambda h: h["frames"].append(copy.deepcopy(h["frames"][-1])), r"frame|start|expected"),
    ("part-start", lambda h: h["frames"][0]["parts"][0].__setitem__(1, 8), r"starts at byte"),
    (
        "part-nbytes",
        lambda h: h["frames"][0]["parts"][0].__setitem__(2, h["frames"][0]["parts"][0][2] + 1),
        r"overlaps|overruns|need|holds",
    ),
    ("part-at-overrun", lambda h: h["frames"][0]["parts"][0].__setitem__(3, h["frames"][0]["nbytes"]), r"overruns"),
    ("part-array-range", lambda h: h["frames"][0]["parts"][0].__setitem__(0, len(h["arrays"])), r"part array"),
    ("part-short", lambda h: h["frames"][0]["parts"][0].pop(), r"part"),
    ("parts-empty", lambda h: h["frames"][0].__setitem__("parts", []), r"parts"),
    ("array-dropped", lambda h: h["arrays"].pop(0), r"part array|need|holds|expected"),
    ("array-duplicated", lambda h: h["arrays"].append(copy.deepcopy(h["arrays"][0])), r"twice"),
    ("path-empty", lambda h: h["arrays"][0].__setitem__("path", []), r"path"),
    ("path-collides", lambda h: h["arrays"][1].__setitem__("path", [*h["arrays"][0]["path"], "x"]), r"inside"),
    ("group-on-array", lambda h: h["groups"].append(h["arrays"][0]["path"]), r"twice"),
    ("extra-key", lambda h: h.__setitem__("extra", 1), r"keys"),
    ("array-extra-key", lambda h: h["arrays"][0].__setitem__("x", 1), r"keys"),
    (
        "not-an-object",
        lambda h: (h.clear(), h.update({"arrays": 5, "frames": [], "groups": [], "metadata": 0})),
        r"arrays",
    ),
]


@pytest.mark.parametrize(
    ("rewrite", "match"), [(m, r) for _, m, r in HEAD_REWRITES], ids=[i for i, _, _ in HEAD_REWRITES]
)
def test_rewritten_head_field(base: tuple[bytes, Layout, dict[str, bytes]], rewrite: Any, match: str) -> None:
    """One head field changed, every checksum recomputed: load, open+get, verify and the stream
    readers raise an ndckpt error whose message names the field or the inconsistency."""
    _data, lay, _ = base
    try:
        bad = _rebuild(lay, rewrite)
    except (StopIteration, IndexError, KeyError):
        pytest.skip("this base file has no field of that kind")
    msgs = []
    for (reader, v), res in outcomes(bad, lay).items():
        assert isinstance(res, CheckptError), f"{reader} verify={v} accepted the rewritten head"
        msgs.append(str(res))
    assert any(re.search(match, m) for m in msgs), msgs


def _trailer_rewrite(data: bytes, field: int, value: int, *, fix_index_hash: bool = False) -> bytes:
    b = bytearray(data)
    end = len(b) - TRAILER.size
    fields = list(TRAILER.unpack_from(b, end))
    fields[field] = value
    b[end:] = TRAILER.pack(*fields)
    return bytes(b)


def _superblock_rewrite(data: bytes, field: int, value: Any) -> bytes:
    b = bytearray(data)
    fields = list(SUPERBLOCK.unpack_from(b, 0))
    fields[field] = value
    b[: SUPERBLOCK.size] = SUPERBLOCK.pack(*fields)
    return bytes(b)


def _index_rewrite(data: bytes, fi: int, col: str, delta: int) -> bytes:
    """Change one index entry and recompute the index checksum (and the record, for LZ4)."""
    from ndckpt._lz4 import xxh64

    b = bytearray(data)
    end = len(b) - TRAILER.size
    io_, n, *_ = TRAILER.unpack_from(b, end)
    idx = np.frombuffer(b, INDEX_DTYPE, n, io_).copy()
    idx[fi][col] = int(idx[fi][col]) + delta
    b[io_:end] = idx.tobytes()
    fields = list(TRAILER.unpack_from(b, end))
    fields[2] = xxh64(idx.tobytes())
    b[end:] = TRAILER.pack(*fields)
    return bytes(b)


def test_rewritten_numbers_in_superblock_trailer_index(base: tuple[bytes, Layout, dict[str, bytes]]) -> None:
    """Version, flags, sizes, offsets and counts in the superblock, trailer and index (index
    checksum recomputed): always an ndckpt error that names what is wrong."""
    data, lay, _ = base
    n = len(data)
    hn = SUPERBLOCK.unpack_from(data, 0)[3]
    io_ = TRAILER.unpack_from(data, n - TRAILER.size)[0]
    cases: list[tuple[str, bytes, str]] = [
        ("version 3", build(lay.head, lay.stored, verbatim=lay.verbatim, version=3), r"version 3"),
        ("version 1", build(lay.head, lay.stored, verbatim=lay.verbatim, version=1), r"version 1"),
        ("version 0", _superblock_rewrite(data, 1, 0), r"version 0"),
        ("version max", _superblock_rewrite(data, 1, 0xFFFFFFFF), r"version"),
        ("trailer version 3", build(lay.head, lay.stored, verbatim=lay.verbatim, trailer_version=3), r"version"),
        ("superblock flags", _superblock_rewrite(data, 2, 1), r"flags"),
        ("magic", _superblock_rewrite(data, 0, b"\x93NDCKPX\n"), r"magic|not an ndckpt"),
        ("head_nbytes +1", _superblock_rewrite(data, 3, hn + 1), r"head"),
        ("head_nbytes -1", _superblock_rewrite(data, 3, hn - 1), r"head"),
        ("head_nbytes huge", _superblock_rewrite(data, 3, 1 << 60), r"head"),
        ("head_nbytes past end", _superblock_rewrite(data, 3, n), r"head"),
        ("index_offset +24", _trailer_rewrite(data, 0, io_ + 24), r"index|trailer"),
        ("index_offset -1", _trailer_rewrite(data, 0, io_ - 1), r"index|trailer"),
        ("index_offset huge", _trailer_rewrite(data, 0, 1 << 63), r"index|trailer"),
        ("nframes +1", _trailer_rewrite(data, 1, len(lay.stored) + 1), r"index|trailer|frame"),
        ("nframes huge", _trailer_rewrite(data, 1, 1 << 62), r"index|trailer|frame"),
        ("file_nbytes +1", _trailer_rewrite(data, 3, n + 1), r"bytes|size|trailer"),
        ("file_nbytes 0", _trailer_rewrite(data, 3, 0), r"bytes|size|trailer"),
        ("trailer flags", _trailer_rewrite(data, 5, 4), r"flags"),
        ("end magic", _trailer_rewrite(data, 6, b"NDCKENX\n"), r"magic"),
    ]
    for fi in range(len(lay.stored)):
        cases.append((f"index[{fi}].offset +1", _index_rewrite(data, fi, "offset", 1), r"offset|index|stream had"))
        cases.append((f"index[{fi}].stored -1", _index_rewrite(data, fi, "stored", -1), r"stor|index|record|bytes"))
        cases.append((f"index[{fi}].xxh64 +1", _index_rewrite(data, fi, "xxh64", 1), r"checksum|record|index"))
    for what, bad, match in cases:
        res = outcomes(bad, lay)
        msgs = []
        for key, r in res.items():
            if isinstance(r, CheckptError):
                msgs.append(str(r))
                continue
            # A wrong RAW checksum in the index is only seen when RAW checksums are checked.
            assert what.endswith("xxh64 +1"), f"{what}: {key} returned arrays"
            fi = int(what[6 : what.index("]")])
            assert lay.head["frames"][fi]["style"] == FrameStyle.RAW, f"{what}: {key} returned arrays"
            assert key[1] is not True, f"{what}: {key} returned arrays"
        assert any(re.search(match, m) for m in msgs), (what, msgs)


_JSON_ODD = [-1, 0, 1, 63, 64, 4095, 4096, 65536, 2**31, 2**32, 2**32 + 1, 2**62, 2**63, 2**64, -(2**63), 10**30]


def _int_leaves(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(doc, dict):
        return [p for k, v in doc.items() if k != "metadata" for p in _int_leaves(v, (*path, k))]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in _int_leaves(v, (*path, i))]
    return [path] if type(doc) is int else []


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.sampled_from(sorted(BASES)),
    pick=st.data(),
    value=st.sampled_from(_JSON_ODD) | st.integers(-(2**64), 2**64) | st.sampled_from([1.0, "1", None, True, [], {}]),
)
def test_any_head_number_rewritten(which: str, pick: st.DataObject, value: Any) -> None:
    """Any integer of the head replaced by any value (checksums recomputed): only ndckpt errors
    come out, and readers that succeed agree with each other (the fuzz harness's checks)."""
    _data, lay, _ = _BASE_CACHE.setdefault(which, _base(*BASES[which]))
    path = pick.draw(st.sampled_from(_int_leaves(lay.head)), label="field")
    head = copy.deepcopy(lay.head)
    node = head
    for k in path[:-1]:
        node = node[k]
    if node[path[-1]] == value and type(value) is int:
        value = value + 1
    node[path[-1]] = value
    try:
        bad = build(canonical(head), lay.stored, styles=[f["style"] for f in lay.head["frames"]], verbatim=lay.verbatim)
    except (TypeError, ValueError, OverflowError):
        return  # not encodable as JSON: nothing to feed
    event(f"field {'.'.join(str(p) for p in path if isinstance(p, str))}")
    harness().exercise(bad)


_BASE_CACHE: dict[str, tuple[bytes, Layout, dict[str, bytes]]] = {}


def test_malformed_json_heads() -> None:
    """Heads that are not JSON objects of the schema: an ndckpt error naming the head."""
    stored: list[bytes] = []
    for raw in [
        b"",
        b"{",
        b"[]",
        b"null",
        b'"x"',
        b"\xff\xfe",
        b'{"arrays":[]}',
        b"{" * 100000,
        b'{"arrays":[],"frames":[],"groups":[],"metadata":' + b"[" * 50000 + b"]" * 50000 + b"}",
        canonical({"arrays": columns([]), "frames": [], "groups": [], "metadata": None}).replace(b"null", b"NaN"),
    ]:
        bad = build(raw, stored, styles=[])
        for reader in ("load(bytes)", "load(BytesIO)", "open(bytes).get"):
            err = _error_of(lambda: READERS[reader](bad))  # noqa: B023
            if raw.endswith(b"NaN}"):  # readers accept NaN metadata (older writers wrote it); save refuses it
                assert err is None, err
            else:
                assert err is not None, raw[:20]
                assert "head" in str(err) or "JSON" in str(err), (raw[:20], str(err))


def _error_of(fn: Any) -> CheckptError | None:
    try:
        fn()
    except CheckptError as e:
        return e
    return None


# ----------------------------------------------------------------------------------------------
# The low-level Restore over damaged bytes
# ----------------------------------------------------------------------------------------------


def _recipe(lay: Layout) -> list[tuple[FrameStyle, int, bool]]:
    """The fd_checkpt call sequence that reads the whole file: (style, nbytes, is_data)."""
    calls: list[tuple[FrameStyle, int, bool]] = []
    for r in lay.regions:
        if r.kind == "data":
            f = lay.head["frames"][r.frame]
            calls.append((FrameStyle(lay.stored_style(r.frame)), f["nbytes"], True))
        else:
            calls.append((FrameStyle.RAW, r.end - r.start, False))
    return calls


def _replay(rs: Restore, lay: Layout) -> list[bytes]:
    out = []
    for style, n, _ in _recipe(lay):
        rs.frame_open(style)
        buf = bytearray(n)
        rs.buf(buf)
        rs.frame_close()
        out.append(bytes(buf))
    rs.fini()
    return out


def _restore_raises(data: bytes, lay: Layout) -> None:
    for make in (Restore.mmio, lambda d: Restore.stream(io.BytesIO(d)), lambda d: Restore.stream(Unseekable(d))):
        rs = make(data)
        with pytest.raises(CheckptError):
            _replay(rs, lay)
        assert rs.failed
        rs.fini()


def test_restore_replay_damaged(base: tuple[bytes, Layout, dict[str, bytes]]) -> None:
    """Restore replaying the writer's calls: truncated input always raises (and fails the
    object); flipped bytes raise or come back exactly as stored (RAW) -- the engine has no
    checksums, so flips are the container's to catch."""
    data, lay, _ = base
    good = _replay(Restore.mmio(data), lay)
    for cut in [*lay.frame_bounds()[1:-1], len(data) - 1]:
        _restore_raises(data[:cut], lay)
    flips = 0
    for r in lay.regions:
        for off in sorted({r.start, (r.start + r.end) // 2, r.end - 1}):
            bad = bytearray(data)
            bad[off] ^= 0x5A
            for make in (Restore.mmio, lambda d: Restore.stream(io.BytesIO(d))):
                rs = make(bytes(bad))
                try:
                    got = _replay(rs, lay)
                except CheckptError:
                    assert rs.failed
                    rs.fini()
                    continue
                flips += 1
                i = lay.regions.index(r)
                style = _recipe(lay)[i][0]
                if style == FrameStyle.RAW:
                    pos = off - r.start
                    assert got[i][pos] == good[i][pos] ^ 0x5A
                    assert got[:i] + got[i + 1 :] == good[:i] + good[i + 1 :]
                else:
                    assert got[:i] + got[i + 1 :] == good[:i] + good[i + 1 :]
    assert flips


# ----------------------------------------------------------------------------------------------
# Hostile sizes
# ----------------------------------------------------------------------------------------------

_TB = 1 << 40
_FRAME = 1 << 32


def _claims(style: int, nbytes: int, *, consistent: bool) -> bytes:
    """A small file whose head claims one ``nbytes`` uint8 array. ``consistent``: the head tiles
    it with frames of 4 GiB (the largest a reader accepts), each stored as 8 bytes."""
    if consistent:
        nfr = -(-nbytes // _FRAME)
        frames = [
            {
                "nbytes": min(_FRAME, nbytes - i * _FRAME),
                "parts": [0, i * _FRAME, min(_FRAME, nbytes - i * _FRAME), 0],
                "style": style,
            }
            for i in range(nfr)
        ]
    else:
        frames = [{"nbytes": 8, "parts": [0, 0, 8, 0], "style": style}]
    head = {
        "arrays": columns([{"dtype": "|u1", "order": "C", "path": ["big"], "shape": [nbytes]}]),
        "frames": frames,
        "groups": [],
        "metadata": None,
    }
    return build(head, [b"\0" * 8] * len(frames))


_HOSTILE_CHILD = textwrap.dedent(
    """
    import io, json, os, resource, sys, time
    import ndckpt
    path, limit_mb = sys.argv[1], int(sys.argv[2])
    data = open(path, "rb").read()
    def rss_mb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
    # Cap the address space: a reader that allocates or maps what the file claims fails with
    # MemoryError / ENOMEM instead of succeeding lazily.
    if limit_mb:
        vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize")) // 1024
        resource.setrlimit(resource.RLIMIT_AS, ((vm + limit_mb) << 20, resource.RLIM_INFINITY))
    readers = {
        "load": lambda: ndckpt.load(data), "load_path": lambda: ndckpt.load(path),
        "load_copy": lambda: ndckpt.load(path, mmap=False, verify=True),
        "open": lambda: ndckpt.open(path), "verify": lambda: ndckpt.verify(path),
        "stream": lambda: ndckpt.load(io.BytesIO(data)),
        "verify_stream": lambda: ndckpt.verify(io.BytesIO(data)),
    }
    out = {}
    for name, fn in readers.items():
        base, t = rss_mb(), time.perf_counter()
        try:
            fn()
            res = "returned"
        except ndckpt.CheckptError as e:
            res = f"{type(e).__name__}: errno={getattr(e, 'errno', None)}: {e}"
        except BaseException as e:
            res = f"STRAY {type(e).__name__}: {e}"
        out[name] = [res, time.perf_counter() - t, rss_mb() - base]
    print(json.dumps(out))
    """
)


def _run_hostile(tmp_path: Path, data: bytes, limit_mb: int) -> dict[str, list[Any]]:
    p = tmp_path / "hostile.ndckpt"
    p.write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-c", _HOSTILE_CHILD, str(p), str(limit_mb)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    res: dict[str, list[Any]] = json.loads(proc.stdout)
    return res


@pytest.mark.parametrize("style", [1, 2], ids=["raw", "lz4"])
@pytest.mark.parametrize("consistent", [False, True], ids=["one-frame", "tiled"])
def test_terabyte_claim(tmp_path: Path, style: int, consistent: bool) -> None:
    """A small file claiming a 1 TB array: every reader raises within 1 s, its peak RSS grows
    by < 50 MiB, and the random-access readers (which know the file's size) raise FormatError
    even with the address space capped at +512 MiB: nothing of the claimed size is allocated
    or mapped. The one-pass stream reader cannot know the size; it must raise an ndckpt error
    all the same (see test_stream_claims_bounded_by_received_bytes)."""
    data = _claims(style, _TB, consistent=consistent)
    assert len(data) < (1100 << 10)
    if not consistent:
        assert len(data) < 5000
    for limit in (0, 512):
        res = _run_hostile(tmp_path, data, limit)
        for name, (what, secs, rss) in res.items():
            assert not what.startswith(("STRAY", "returned")), (name, what)
            assert secs < 1.0, (name, secs, what)
            assert rss < 50, (name, rss, what)
            if not name.endswith("stream"):
                assert what.startswith("FormatError"), (name, what)


@pytest.mark.parametrize("style", [1, 2], ids=["raw", "lz4"])
def test_stream_claims_bounded_by_received_bytes(tmp_path: Path, style: int) -> None:
    """A stream claiming 16 GiB (less than RAM: an allocation that size would succeed lazily)
    and sending a few KB: the reader raises an ndckpt error within 1 s and its peak RSS grows
    by < 50 MiB, i.e. memory follows the bytes received, not the bytes claimed."""
    data = _claims(style, 16 << 30, consistent=True)
    res = _run_hostile(tmp_path, data, 0)
    for name in ("stream", "verify_stream"):
        what, secs, rss = res[name]
        assert what.split(":")[0] in ("FormatError", "CheckptIOError"), (name, what)
        assert secs < 1.0, (name, secs)
        assert rss < 50, (name, rss)


def test_lz4_record_claims_are_checked_before_reading() -> None:
    """An LZ4 record claiming more stored bytes than its frame can need, or too few to hold its
    uncompressed size, fails before the bytes are read (from a stream too)."""
    data, lay, _ = _base({"z": np.zeros(200000, "u1")}, "lz4")
    rec = next(r for r in lay.regions if r.kind == "record")
    for stored in (1 << 62, 0, 3):
        b = bytearray(data)
        b[rec.start : rec.start + 8] = stored.to_bytes(8, "little")
        for reader in ("load(bytes)", "load(BytesIO)", "load(pipe)"):
            with pytest.raises(FormatError, match=r"frame 0"):
                READERS[reader](bytes(b))


def test_source_is_any_buffer() -> None:
    """Hostile bytes given as bytearray, memoryview, numpy array or mmap behave as bytes."""
    data, _lay, _ = _base({"x": np.arange(100)}, "lz4")
    bad = bytearray(data)
    bad[-60] ^= 1
    for src in (bad, memoryview(bad), np.frombuffer(bad, np.uint8), np.frombuffer(bad, np.uint8)[::1]):
        with pytest.raises(FormatError, match="index"):
            ndckpt.load(src)


def test_record_size_cross_checked_with_layout() -> None:
    """The index and the records must describe the same frames (regression guard for the
    random-access walk): a record that disagrees with the index is refused by name."""
    data, lay, _ = _base({"z": np.arange(100000) % 13}, "lz4")
    rec = next(r for r in lay.regions if r.kind == "record")
    b = bytearray(data)
    b[rec.start + 8] ^= 1
    with pytest.raises(FormatError, match=r"record at offset \d+ disagrees with the index"):
        ndckpt.open(bytes(b))
    assert RECORD.size == 16


def test_directory_and_special_paths(tmp_path: Path) -> None:
    """Paths that are not regular files are refused by name, never mapped."""
    with pytest.raises(CheckptError, match="directory"):
        ndckpt.load(tmp_path)
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        ndckpt.load(tmp_path / "empty")
    with pytest.raises(CheckptError, match="no such file"):
        ndckpt.load(tmp_path / "missing")
    if os.path.exists("/dev/null"):
        with pytest.raises(CheckptError, match="not a regular file"):
            ndckpt.open("/dev/null")
