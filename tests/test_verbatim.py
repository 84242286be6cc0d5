"""LZ4 frames that LZ4 cannot shrink are stored verbatim (record bit 63, format §2.3-2.6 and §4).

The writer compresses every LZ4 frame; when the encoding is larger than
``nbytes - nbytes // 32`` it writes the record with bit 63 set, a zero pad and the frame's
plain bytes. These tests check:

- the writer: the decision against an independent compression of each frame, bytes that do
  not depend on thread count or target, the size of an incompressible file, and files
  written by MPI ranks;
- the readers: each load of :data:`LOADS` (shared readers from ``helpers.READERS``: buffer,
  path, copies, seekable and unseekable streams, ``open().get``) returns the saved arrays (never views: they are LZ4
  arrays), with ``out=`` and regions, the split read of big frames, an array that spans a
  verbatim and an LZ4 frame, pads of every length, the empty one included;
- damage: to a verbatim frame's data or record it never loads under default options, to its
  pad it is only reported by ``verify``; hostile records (bit 63 on the wrong frame, with the
  wrong size, over compressed bytes, a pad running past the index) are refused;
- the fuzz harness's checksum repair of verbatim frames, and the CLI.
"""

from __future__ import annotations

import copy
import io
import struct
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from forge import Unseekable, build, fix_index_checksum, harness, lz4_frame, parse, parts4, rows, save_small_frames
from helpers import READERS, flat, mpiexec, nest, readers
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import ndckpt
import ndckpt.container.read
from ndckpt import _lz4, cli
from ndckpt.container import (
    END_MAGIC,
    INDEX_DTYPE,
    RAW_ALIGN,
    RECORD,
    STORED_VERBATIM,
    SUPERBLOCK,
    TRAILER,
    VERSION,
    Head,
    align_up,
    stored_raw,
)
from ndckpt.errors import CheckptError, FormatError

FRAME = 1 << 16  # small frames, so that small states span several

#: The loads every test here runs on a file (by name, from helpers.READERS).
LOADS = readers(
    [
        "load(bytes)",
        "load(bytes, copy)",
        "load(path)",
        "load(path, copy)",
        "load(BytesIO)",
        "load(pipe)",
        "open(path).get",
        "open(path, copy).get",
    ]
)
#: What a damaged file must never get past: the loads, the loads told not to verify, and verify.
GUARDS: list[tuple[str, dict[str, Any]]] = [
    *((name, {}) for name in LOADS),
    ("load(bytes)", {"verify": False}),
    ("load(pipe)", {"verify": False}),
    ("verify(path)", {}),
    ("verify(pipe)", {}),
]


def same(got: Any, want: np.ndarray[Any, Any], what: str) -> None:
    """Same dtype, shape and bytes (NaNs and structured padding included)."""
    assert isinstance(got, np.ndarray), what
    assert got.dtype == want.dtype, f"{what}: {got.dtype} vs {want.dtype}"
    assert got.shape == want.shape, f"{what}: {got.shape} vs {want.shape}"
    assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(want).tobytes(), f"{what}: bytes differ"


def outcome(fn: Any, *args: Any, **kw: Any) -> str:
    """ "ok", or the ndckpt error's class name (anything else propagates: a bug)."""
    try:
        fn(*args, **kw)
    except CheckptError as e:
        return type(e).__name__
    return "ok"


def verified(data: bytes, path: Path) -> None:
    """``ndckpt.verify`` of the path and of an unseekable stream both pass."""
    READERS["verify(path)"](data, path)
    READERS["verify(pipe)"](data, path)


# ----------------------------------------------------------------------------------------------
# The writer's decision
# ----------------------------------------------------------------------------------------------


def test_threshold_is_one_32nd_of_the_frame() -> None:
    n = 4 << 20
    assert not stored_raw(n, n - n // 32)
    assert stored_raw(n, n - n // 32 + 1)
    assert stored_raw(8, 12)  # tiny frames never shrink
    assert not stored_raw(65536, 100)


def frame_plain(lay: Any, fi: int, arrays: dict[str, np.ndarray[Any, Any]]) -> bytes:
    """The uncompressed buffer of frame ``fi``, rebuilt from the arrays and the head."""
    f = lay.head["frames"][fi]
    buf = bytearray(f["nbytes"])
    for ai, start, n, at in parts4(f):
        a = rows(lay.head)[ai]
        src = np.asarray(arrays["/".join(a["path"])])
        raw = np.ascontiguousarray(src.T if a["order"] == "F" else src).tobytes()
        buf[at : at + n] = raw[start : start + n]
    return bytes(buf)


# Content kinds: incompressible, compressible, and half-and-half within one array.
KINDS = ("random", "zeros", "ramp", "half")


def make(kind: str, n: int, seed: int) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.integers(0, 256, n, dtype=np.uint8)
    if kind == "zeros":
        return np.zeros(n, np.uint8)
    if kind == "ramp":
        return (np.arange(n) // 7).astype(np.uint8)
    a = np.zeros(n, np.uint8)
    a[: n // 2] = rng.integers(0, 256, n // 2, dtype=np.uint8)
    return a


@st.composite
def byte_states(draw: st.DrawFn) -> dict[str, np.ndarray[Any, Any]]:
    """1-5 flat uint8 arrays of the content kinds, up to a few frames each."""
    count = draw(st.integers(1, 5))
    out = {}
    for i in range(count):
        kind = draw(st.sampled_from(KINDS))
        n = draw(st.sampled_from([1, 100, 4096, 40_000, 70_000, 200_000]))
        out[f"a{i}"] = make(kind, n, draw(st.integers(0, 3)))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays=byte_states())
def test_verbatim_exactly_when_lz4_does_not_pay(arrays: dict[str, np.ndarray[Any, Any]]) -> None:
    data = save_small_frames(arrays, style="lz4", frame_bytes=FRAME)
    lay = parse(data)
    for fi in range(len(lay.head["frames"])):
        plain = frame_plain(lay, fi, arrays)
        want = stored_raw(len(plain), len(lz4_frame(plain)))
        assert (fi in lay.verbatim) == want, f"frame {fi}: verbatim={fi in lay.verbatim}, rule says {want}"
        if fi in lay.verbatim:
            assert lay.stored[fi] == plain
            assert lay.find("data", fi).start % RAW_ALIGN == 0
    got = ndckpt.load(data)
    for k, v in arrays.items():
        np.testing.assert_array_equal(got[k], v)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays=byte_states(), threads=st.sampled_from([2, 3]))
def test_bytes_do_not_depend_on_threads_or_target(arrays: dict[str, np.ndarray[Any, Any]], threads: int) -> None:
    one = io.BytesIO()
    ndckpt.save(one, arrays, style="lz4", threads=1)
    many = io.BytesIO()
    ndckpt.save(many, arrays, style="lz4", threads=threads)
    assert one.getvalue() == many.getvalue()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.ndckpt"
        ndckpt.save(path, arrays, style="lz4", threads=threads)
        assert path.read_bytes() == one.getvalue()


def test_incompressible_lz4_file_is_barely_larger_than_raw(tmp_path: Path) -> None:
    a = np.random.default_rng(1).standard_normal(3 << 20)  # 24 MiB of float64: LZ4 does not pay
    lz4, raw = tmp_path / "z.ndckpt", tmp_path / "r.ndckpt"
    ndckpt.save(lz4, {"a": a}, style="lz4")
    ndckpt.save(raw, {"a": a})
    frames = len(parse(lz4.read_bytes()).verbatim)
    assert frames == 6
    # per frame: a 16-byte record and a pad of at most a page
    assert lz4.stat().st_size <= raw.stat().st_size + frames * (RECORD.size + RAW_ALIGN)
    np.testing.assert_array_equal(ndckpt.load(lz4)["a"], a)


# ----------------------------------------------------------------------------------------------
# Random states: every reader returns the saved arrays
# ----------------------------------------------------------------------------------------------

DTYPES = ["|u1", "<f8", ">i4", "<c8", [("a", "<i2"), ("b", "<f4")]]


@st.composite
def states(draw: st.DrawFn) -> tuple[dict[str, np.ndarray[Any, Any]], dict[str, str]]:
    """(arrays by "g0/a0"-style name, styles): random, half-zero and zero contents of several
    dtypes, C or F order, LZ4 or RAW."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    styles: dict[str, str] = {}
    for i in range(draw(st.integers(1, 5))):
        dt = np.dtype(draw(st.sampled_from(DTYPES)))
        nrows = draw(st.sampled_from([9000, 700, 3, 1, 0]))  # the first is the simplest: big
        cols = draw(st.sampled_from([5, 1]))
        kind = draw(st.sampled_from(["random", "half", "zeros"]))
        size = nrows * cols * dt.itemsize
        raw = bytearray(rng.bytes(size)) if kind != "zeros" else bytearray(size)
        if kind == "half":
            raw[len(raw) // 2 :] = bytes(len(raw) - len(raw) // 2)
        a = np.frombuffer(bytes(raw), dt).reshape(nrows, cols)
        a = np.asfortranarray(a) if draw(st.booleans()) else a.copy()
        name = f"g{i % 2}/a{i}"
        arrays[name] = a
        styles[name] = draw(st.sampled_from(["lz4", "lz4", "raw"]))
    return arrays, styles


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=states(), pick=st.randoms(use_true_random=False))
def test_every_reader_returns_the_saved_arrays(
    state: tuple[dict[str, np.ndarray[Any, Any]], dict[str, str]], pick: Any
) -> None:
    arrays, styles = state
    data = save_small_frames(nest(arrays), style=styles, frame_bytes=FRAME)
    lay = parse(data)
    event(f"frames stored verbatim: {min(len(lay.verbatim), 3)}")
    for fi in lay.verbatim:  # a verbatim frame starts on a page, after its record and a zero pad
        rec, dat = lay.find("record", fi), lay.find("data", fi)
        assert dat.start == align_up(rec.end, RAW_ALIGN)
        assert data[rec.end : dat.start] == bytes(dat.start - rec.end)
        assert RECORD.unpack_from(data, rec.start)[0] == lay.head["frames"][fi]["nbytes"] | STORED_VERBATIM
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.ndckpt"
        path.write_bytes(data)
        for how, read in LOADS.items():
            got = flat(read(data, path))
            assert sorted(got) == sorted(arrays), how
            for k, v in arrays.items():
                same(got[k], v, f"{how}: {k}")
                if styles[k] == "lz4" and v.size:
                    assert got[k].flags.writeable, f"{how}: LZ4 array {k} is a read-only view"
                    if how == "load(bytes)":
                        assert not np.shares_memory(got[k], np.frombuffer(data, np.uint8)), k
        verified(data, path)
        with ndckpt.open(path) as r:
            for k, v in arrays.items():
                lo = pick.randint(0, v.shape[0])
                hi = pick.randint(lo, v.shape[0])
                same(r.read(k, region=(slice(lo, hi),)), v[lo:hi], f"region {k}[{lo}:{hi}]")
                out = np.empty_like(v)
                assert r.read(k, out=out) is out
                same(out, v, f"out= {k}")
                part = np.empty_like(v[lo:hi])
                assert r.read(k, part, region=(slice(lo, hi), slice(None))) is part
                same(part, v[lo:hi], f"region out= {k}")
        # Frames above _SPLIT are read in pieces by several threads, then checked: make every
        # frame big enough for that path.
        with mock.patch.object(ndckpt.container.read, "_SPLIT", 4096):
            outs = {k: np.empty_like(v) for k, v in arrays.items()}
            got = flat(ndckpt.load(data, threads=2, out=nest(outs)))
            for k, v in arrays.items():
                same(got[k], v, f"split: {k}")
                same(outs[k], v, f"split out=: {k}")


# ----------------------------------------------------------------------------------------------
# One array across a verbatim and an LZ4 frame, as the writer plans them (4 MiB frames)
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A 6 MiB array whose first 4 MiB frame is random (verbatim) and second is zeros (LZ4),
    plus small packed arrays, one random, one compressible."""
    rng = np.random.default_rng(7)
    big = np.zeros(6 << 20, np.uint8)
    big[: 4 << 20] = rng.integers(0, 256, 4 << 20, dtype=np.uint8)
    arrays = {
        "big": big.view(np.uint16).reshape(1536, -1),
        "small": {"noise": rng.standard_normal(300), "steps": np.arange(500, dtype=np.int64)},
        "raw": np.arange(10.0),
    }
    path = tmp_path_factory.mktemp("verbatim") / "m.ndckpt"
    ndckpt.save(path, arrays, style={"big": "lz4", "small": "lz4"})
    return path, arrays


def test_one_array_across_verbatim_and_lz4_frames(mixed_file: tuple[Path, dict[str, Any]]) -> None:
    path, arrays = mixed_file
    data = path.read_bytes()
    lay = parse(data)
    big_frames = [
        fi
        for fi, f in enumerate(lay.head["frames"])
        if any(lay.head["arrays"]["path"][ai] == ["big"] for ai in f["parts"][::4])
    ]
    assert [fi in lay.verbatim for fi in big_frames] == [True, False]
    want = flat(arrays)
    ways = [*((name, {}) for name in LOADS), ("load(file)", {}), ("load(path)", {"verify": True, "threads": 2})]
    for name, kw in ways:
        how = f"{name} {kw}"
        got = flat(READERS[name](data, path, **kw))
        assert sorted(got) == sorted(want), how
        for k, v in want.items():
            np.testing.assert_array_equal(got[k], v, err_msg=f"{how}: {k}")
            if k != "raw":
                assert got[k].flags.writeable, f"{how}: LZ4 array {k} came back as a read-only view"
    verified(data, path)


def test_regions_and_out_across_the_boundary(mixed_file: tuple[Path, dict[str, Any]]) -> None:
    path, arrays = mixed_file
    big = arrays["big"]
    with ndckpt.open(path) as r:
        for region in (slice(0, 5), slice(1020, 1030), slice(1530, 1536), slice(None)):
            np.testing.assert_array_equal(r.read("big", region=region), big[region])
        out = np.empty_like(big)
        assert r.read("big", out=out) is out
        np.testing.assert_array_equal(out, big)
        row = {x["name"]: x for x in r.info()}["big"]
        assert row["style"] == "lz4"
        # 4 MiB stored verbatim plus a small LZ4 frame of zeros
        assert 4 << 20 < row["stored_nbytes"] < (4 << 20) + (64 << 10)
        assert row["offsets"][0] % RAW_ALIGN == 0


def test_verbatim_record_with_bit_63_cleared(mixed_file: tuple[Path, dict[str, Any]]) -> None:
    """Bit 63 cleared: the record now claims an LZ4 frame of n bytes, disagreeing with the index."""
    path, _ = mixed_file
    data = path.read_bytes()
    lay = parse(data)
    fi = min(lay.verbatim)
    rec, dat = lay.find("record", fi), lay.find("data", fi)
    n = dat.end - dat.start
    stored, _ = RECORD.unpack_from(data, rec.start)
    assert stored == n | STORED_VERBATIM
    cleared = bytearray(data)
    struct.pack_into("<Q", cleared, rec.start, n)
    for name in ("load(bytes)", "load(pipe)"):
        with pytest.raises(FormatError):
            READERS[name](bytes(cleared))


# ----------------------------------------------------------------------------------------------
# Damage: data and record never load by default; pads only fail verify
# ----------------------------------------------------------------------------------------------


def _damage_state() -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(11)
    return {
        "noise": rng.integers(0, 256, 150_000, dtype=np.uint8),  # 3 frames, all verbatim
        "small": {"r": rng.standard_normal(40), "t": rng.integers(0, 9, 9, dtype=np.int16)},  # packed
        "zeros": np.zeros(70_000, np.uint8),  # compressed
        "raw": np.arange(100.0),
    }


DAMAGE_ARRAYS = flat(_damage_state())
DAMAGE_FILE = save_small_frames(
    _damage_state(), style={"noise": "lz4", "small": "lz4", "zeros": "lz4"}, frame_bytes=FRAME
)
DAMAGE_LAYOUT = parse(DAMAGE_FILE)


def test_damage_file_has_the_cases() -> None:
    frames = DAMAGE_LAYOUT.head["frames"]
    kinds = {
        fi: ("verbatim" if fi in DAMAGE_LAYOUT.verbatim else "lz4" if f["style"] == 2 else "raw")
        for fi, f in enumerate(frames)
    }
    noise = [fi for fi in range(len(frames)) if "noise" in _names_in(fi)]
    assert [kinds[fi] for fi in noise] == ["verbatim"] * 3
    packed = [fi for fi in range(len(frames)) if len(_parts(fi)) > 1]
    assert packed
    assert all(kinds[fi] == "verbatim" for fi in packed)
    assert "lz4" in kinds.values()
    assert "raw" in kinds.values()


#: The damage file's head as ndckpt parses it (whatever the JSON layout of its columns).
DAMAGE_HEAD = Head.from_json(DAMAGE_FILE[SUPERBLOCK.size : DAMAGE_LAYOUT.head_end])


def _parts(fi: int) -> list[tuple[int, int, int, int]]:
    """Frame ``fi``'s parts as (array, start, nbytes, at)."""
    return [tuple(p) for p in DAMAGE_HEAD.frames[fi].parts]


def _names_in(fi: int) -> list[str]:
    return [DAMAGE_HEAD.arrays[p[0]].name for p in _parts(fi)]


def _first_item_in(fi: int, name: str) -> int:
    """Index of the first item of 1-D array ``name`` whose bytes frame ``fi`` holds."""
    p = next(p for p in _parts(fi) if DAMAGE_HEAD.arrays[p[0]].name == name)
    return int(p[1] // DAMAGE_ARRAYS[name].dtype.itemsize)


def _flip(which: int, at: float, bit: int) -> tuple[bytes, int]:
    """The damage file with one bit of verbatim frame ``which`` flipped; and 1 if an array
    byte changed, 0 if the byte was frame padding (covered by no part)."""
    dat = DAMAGE_LAYOUT.find("data", which)
    rel = int(at * (dat.end - dat.start))
    bad = bytearray(DAMAGE_FILE)
    bad[dat.start + rel] ^= 1 << bit
    return bytes(bad), int(any(p[3] <= rel < p[3] + p[2] for p in _parts(which)))


def _changed(got: dict[str, Any]) -> int:
    """How many array bytes of ``got`` differ from the damage file's arrays."""
    return sum(
        int((np.asarray(got[k]).view(np.uint8) != np.asarray(v).view(np.uint8)).sum()) for k, v in DAMAGE_ARRAYS.items()
    )


@settings(max_examples=30, deadline=None)
@given(
    which=st.sampled_from(sorted(DAMAGE_LAYOUT.verbatim)), at=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7)
)
def test_damaged_verbatim_data_never_loads_by_default(which: int, at: float, bit: int) -> None:
    data, covered = _flip(which, at, bit)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bad.ndckpt"
        path.write_bytes(data)
        for read in LOADS.values():
            with pytest.raises(FormatError, match="checksum"):
                read(data, path)
        for src in (path, data):
            with ndckpt.open(src) as r:
                for name in _names_in(which):
                    with pytest.raises(FormatError, match="checksum"):
                        r.get(name)
                    i = _first_item_in(which, name)
                    with pytest.raises(FormatError, match="checksum"):
                        r.read(name, region=(slice(i, i + 1),))  # a region checks its whole frame
                    with pytest.raises(FormatError, match="checksum"):
                        r.read(name, out=np.empty_like(DAMAGE_ARRAYS[name]))
                others = [n for n in DAMAGE_ARRAYS if n not in _names_in(which)]
                for name in others:  # frames that are intact still read
                    same(r.get(name), DAMAGE_ARRAYS[name], name)
        with mock.patch.object(ndckpt.container.read, "_SPLIT", 4096), pytest.raises(FormatError, match="checksum"):
            ndckpt.load(data, threads=2)
        for name in ("verify(path)", "verify(pipe)"):
            with pytest.raises(FormatError, match="checksum"):
                READERS[name](data, path)
    # Told not to check, the readers agree on the damaged bytes.
    got = [flat(READERS[name](data, verify=False)) for name in ("load(bytes)", "load(pipe)")]
    assert _changed(got[0]) == covered
    for k in DAMAGE_ARRAYS:
        same(got[1][k], got[0][k], f"verify=False stream vs buffer: {k}")


@settings(max_examples=30, deadline=None)
@given(which=st.sampled_from(sorted(DAMAGE_LAYOUT.verbatim)), byte=st.integers(0, 15), bit=st.integers(0, 7))
def test_damaged_verbatim_record_never_loads(which: int, byte: int, bit: int) -> None:
    rec = DAMAGE_LAYOUT.find("record", which)
    bad = bytearray(DAMAGE_FILE)
    bad[rec.start + byte] ^= 1 << bit
    data = bytes(bad)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bad.ndckpt"
        path.write_bytes(data)
        for name, kw in GUARDS:
            assert outcome(READERS[name], data, path, **kw) != "ok", (name, kw)


@settings(max_examples=20, deadline=None)
@given(
    which=st.sampled_from(sorted(DAMAGE_LAYOUT.verbatim)),
    at=st.floats(0, 1, exclude_max=True),
    value=st.integers(1, 255),
)
def test_damaged_verbatim_pad_loads_but_fails_verify(which: int, at: float, value: int) -> None:
    pad = DAMAGE_LAYOUT.find("pad", which)
    bad = bytearray(DAMAGE_FILE)
    bad[pad.start + int(at * (pad.end - pad.start))] = value
    data = bytes(bad)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "pad.ndckpt"
        path.write_bytes(data)
        for how, read in LOADS.items():
            got = flat(read(data, path))
            for k, v in DAMAGE_ARRAYS.items():
                same(got[k], v, f"{how}: {k}")
        for name in ("verify(path)", "verify(pipe)", "verify(bytes)"):
            with pytest.raises(FormatError, match="padding"):
                READERS[name](data, path)


# ----------------------------------------------------------------------------------------------
# Pads of every length
# ----------------------------------------------------------------------------------------------

_PAD_ARRAY = np.frombuffer(np.random.default_rng(3).bytes(5000), np.uint8)


def _with_metadata(n: int) -> bytes:
    return save_small_frames({"x": _PAD_ARRAY}, style="lz4", metadata={"m": "m" * n})


_HEAD0 = SUPERBLOCK.unpack_from(_with_metadata(0), 0)[3]


@settings(max_examples=20, deadline=None)
@given(pad=st.one_of(st.sampled_from([0, 1, 4095]), st.integers(0, RAW_ALIGN - 1)))
def test_verbatim_frame_after_a_pad_of_any_length(pad: int) -> None:
    # head grows by one byte per metadata character: choose it so that the pad is ``pad``
    n = (-(SUPERBLOCK.size + _HEAD0 + RECORD.size) - pad) % RAW_ALIGN
    data = _with_metadata(n)
    lay = parse(data)
    assert lay.verbatim == {0}
    rec, dat = lay.find("record"), lay.find("data")
    assert dat.start - rec.end == pad
    assert dat.start % RAW_ALIGN == 0
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.ndckpt"
        path.write_bytes(data)
        for how, read in LOADS.items():
            same(read(data, path)["x"], _PAD_ARRAY, how)
        verified(data, path)


# ----------------------------------------------------------------------------------------------
# Hostile records
# ----------------------------------------------------------------------------------------------


def _golden() -> tuple[bytes, Any]:
    """A file like tests/data/verbatim.ndckpt: a RAW frame, then one LZ4 frame stored verbatim
    holding two packed arrays (made here, so that it follows the current format version)."""
    rng = np.random.default_rng(9)
    arrays = {
        "noise": rng.integers(0, 2**63, 512, dtype="<u8"),
        "tag": np.array([3, 1, 4], dtype="<u1"),
        "plain": np.arange(4, dtype="<i2"),
    }
    data = save_small_frames(arrays, style={"noise": "lz4", "tag": "lz4"})
    lay = parse(data)
    assert [f["style"] for f in lay.head["frames"]] == [1, 2]
    assert lay.verbatim == {1}
    return data, lay


def _index_or(data: bytes, fi: int, mask: int) -> bytes:
    """``data`` with ``mask`` OR-ed into index entry ``fi``'s stored_nbytes (index checksum fixed)."""
    b = bytearray(data)
    io_ = TRAILER.unpack_from(b, len(b) - TRAILER.size)[0]
    at = io_ + fi * INDEX_DTYPE.itemsize + 8
    struct.pack_into("<Q", b, at, struct.unpack_from("<Q", b, at)[0] | mask)
    return fix_index_checksum(bytes(b))


def _record_and_index_or(data: bytes, fi: int, mask: int) -> bytes:
    rec = parse(data).find("record", fi)
    b = bytearray(_index_or(data, fi, mask))
    struct.pack_into("<Q", b, rec.start, struct.unpack_from("<Q", b, rec.start)[0] | mask)
    return bytes(b)


def _pad_past_index() -> bytes:
    """A file of one verbatim frame cut after its record: the index and trailer follow the
    record directly, so the frame's pad and data would run past the index and the file."""
    data = save_small_frames({"x": _PAD_ARRAY}, style="lz4")
    lay = parse(data)
    assert lay.verbatim == {0}
    rec = lay.find("record")
    index = lay.find("index")
    ib = data[index.start : index.end]  # the index entry, as written
    io_ = rec.end
    trailer = TRAILER.pack(io_, 1, _lz4.xxh64(ib), io_ + len(ib) + TRAILER.size, VERSION, 0, END_MAGIC)
    return data[:io_] + ib + trailer


def _hostile() -> dict[str, bytes]:
    data, lay = _golden()
    raw0, plain1 = lay.stored
    head_raw = copy.deepcopy(lay.head)
    head_raw["frames"][1]["style"] = 1
    head_lz4 = copy.deepcopy(lay.head)
    head_lz4["frames"][0]["style"] = 2
    return {
        "verbatim data 1 byte short": build(lay.head, [raw0, plain1[:-1]], verbatim={1}),
        "verbatim data 1 byte long": build(lay.head, [raw0, plain1 + b"\0"], verbatim={1}),
        "compressed bytes with bit 63": build(lay.head, [raw0, lz4_frame(plain1)], verbatim={1}),
        "plain bytes without bit 63": build(lay.head, [raw0, plain1]),
        "bit 63 in a RAW frame's index entry": _index_or(data, 0, STORED_VERBATIM),
        "bit 63 in the index only": _index_or(build(lay.head, [raw0, lz4_frame(plain1)]), 1, STORED_VERBATIM),
        "bit 62 with bit 63": _record_and_index_or(data, 1, 1 << 62),
        "bit 40 with bit 63": _record_and_index_or(data, 1, 1 << 40),
        "head RAW, file verbatim LZ4": build(head_raw, [raw0, plain1], styles=[1, 2], verbatim={1}),
        "head LZ4, file RAW": build(head_lz4, [raw0, plain1], styles=[1, 2], verbatim={1}),
        "pad past the index": _pad_past_index(),
    }


HOSTILE = _hostile()


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_verbatim_records_are_refused(case: str, tmp_path: Path) -> None:
    data = HOSTILE[case]
    path = tmp_path / "h.ndckpt"
    path.write_bytes(data)
    for name, kw in GUARDS:
        assert outcome(READERS[name], data, path, **kw) != "ok", (name, kw)
    harness().exercise_both(data)  # only ndckpt errors; readers agree


def test_expanding_lz4_frame_of_another_writer_still_loads(tmp_path: Path) -> None:
    """A writer may keep an LZ4 encoding larger than the frame (bit 63 is the writer's choice)."""
    data, lay = _golden()
    plain1 = lay.stored[1]
    enc = lz4_frame(plain1)
    assert len(enc) > len(plain1)
    other = build(lay.head, [lay.stored[0], enc])
    path = tmp_path / "o.ndckpt"
    path.write_bytes(other)
    want = flat(ndckpt.load(data))
    for how, read in LOADS.items():
        got = flat(read(other, path))
        for k, v in want.items():
            same(got[k], v, f"{how}: {k}")
    verified(other, path)


# ----------------------------------------------------------------------------------------------
# Fuzz harness, CLI
# ----------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    which=st.sampled_from(sorted(DAMAGE_LAYOUT.verbatim)), at=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7)
)
def test_fuzz_fixup_repairs_verbatim_frames(which: int, at: float, bit: int) -> None:
    """The fuzz target's repair makes a mutated verbatim frame's checksums fit again (record
    before the pad, index), so mutations of verbatim data reach the readers past the checksum."""
    bad, covered = _flip(which, at, bit)
    fixed = harness().fixup(bad)
    assert len(fixed) == len(bad)
    ndckpt.verify(fixed)
    ndckpt.verify(Unseekable(fixed))
    assert _changed(flat(ndckpt.load(fixed))) == covered
    harness().exercise(fixed)


def test_fuzz_fixup_still_repairs_compressed_frames() -> None:
    lz4 = next(
        fi for fi, f in enumerate(DAMAGE_LAYOUT.head["frames"]) if f["style"] == 2 and fi not in DAMAGE_LAYOUT.verbatim
    )
    rec, dat = DAMAGE_LAYOUT.find("record", lz4), DAMAGE_LAYOUT.find("data", lz4)
    bad = bytearray(DAMAGE_FILE)
    bad[dat.end - 1] ^= 0x01  # the last literal byte
    fixed = harness().fixup(bytes(bad))
    assert RECORD.unpack_from(fixed, rec.start)[1] == _lz4.xxh64(fixed[dat.start : dat.end])
    # Past the checksum: an LZ4 block ends with literals, so the flipped byte decodes as is.
    assert _changed(flat(ndckpt.load(fixed))) == 1


def test_cli_info_and_verify_on_verbatim_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.ndckpt"
    path.write_bytes(DAMAGE_FILE)
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    row = next(line.split() for line in out.splitlines() if line.startswith("noise "))
    assert row[3] == "lz4"
    assert row[-2] == "1.00"  # ratio: stored verbatim, the low 63 bits are the size
    with ndckpt.open(path) as r:
        info = {x["name"]: x for x in r.info()}
    assert info["noise"]["stored_nbytes"] == info["noise"]["nbytes"]
    assert all(o % RAW_ALIGN == 0 for o in info["noise"]["offsets"])
    assert info["zeros"]["stored_nbytes"] < info["zeros"]["nbytes"] // 10
    assert cli.main(["verify", str(path)]) == 0
    bad = bytearray(DAMAGE_FILE)
    pad = next(r for r in DAMAGE_LAYOUT.regions if r.kind == "pad" and r.frame in DAMAGE_LAYOUT.verbatim)
    bad[pad.start] = 7
    path.write_bytes(bytes(bad))
    assert cli.main(["verify", str(path)]) != 0
    assert "padding" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# MPI: records written at their own offsets, pads left as file holes
# ----------------------------------------------------------------------------------------------

MPIEXEC, _WHY = mpiexec()

_MPI_SCRIPT = """
import sys
import numpy as np
from mpi4py import MPI
from ndckpt import mpi as nm

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
rng = np.random.default_rng(5)
g = rng.integers(0, 256, (64, 50000), dtype=np.uint8)
z = np.zeros((64, 5000), np.uint8)
z[::7] = 3
s, e = rank * 64 // size, (rank + 1) * 64 // size
state = {
    "g": nm.Block(g[s:e], (s, 0), g.shape),
    "z": nm.Block(z[s:e], (s, 0), z.shape),
    "r": nm.Block(g[s:e, :9].copy(), (s, 0), (64, 9)),
}
nm.save(comm, sys.argv[1], state, style="lz4")
"""


@pytest.mark.skipif(MPIEXEC is None, reason=_WHY)
def test_mpi_writer_with_verbatim_frames(tmp_path: Path) -> None:
    script = tmp_path / "w.py"
    script.write_text(textwrap.dedent(_MPI_SCRIPT))
    target = tmp_path / "m.ndckpt"
    assert MPIEXEC is not None
    run = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, "-m", "mpi4py", str(script), str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    data = target.read_bytes()
    lay = parse(data)
    assert len(lay.verbatim) >= 2, "the random blocks of both ranks are stored verbatim"
    assert any(f["style"] == 2 and fi not in lay.verbatim for fi, f in enumerate(lay.head["frames"]))
    rng = np.random.default_rng(5)
    g = rng.integers(0, 256, (64, 50000), dtype=np.uint8)
    z = np.zeros((64, 5000), np.uint8)
    z[::7] = 3
    want = {"g": g, "z": z, "r": g[:, :9]}
    verified(data, target)
    for how, read in LOADS.items():
        got = flat(read(data, target))
        for k, v in want.items():
            same(got[k], v, f"{how}: {k}")
    with ndckpt.open(target) as r:
        same(r.read("g", region=(slice(20, 50), slice(100, 200))), g[20:50, 100:200], "region")
