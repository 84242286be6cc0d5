"""Review of LZ4 frames stored verbatim (record bit 63, format §2.3-2.6 and §4).

Complements ``test_verbatim.py``: every reader (buffer, path, copies, seekable and
unseekable streams, ``open().get`` with ``out=`` and regions, the split read of big
frames) against random states; damage to a verbatim frame's data or record never loads
under default options, damage to its pad is only reported by ``verify``; pads of every
length, the empty one included; hostile records (bit 63 on the wrong frame, with the
wrong size, over compressed bytes, a pad running past the index); the fuzz harness's
checksum repair of verbatim frames; the CLI; and files written by MPI ranks.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import shutil
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
from forge import Unseekable, build, harness, parse, save_small_frames
from helpers import flat
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import ndckpt
import ndckpt.api
from ndckpt import _lz4, cli
from ndckpt.container import (
    END_MAGIC,
    INDEX_DTYPE,
    RAW_ALIGN,
    RECORD,
    STORED_RAW,
    SUPERBLOCK,
    TRAILER,
    VERSION,
    Head,
    align_up,
)
from ndckpt.engine import Checkpt
from ndckpt.errors import CheckptError, FormatError
from ndckpt.format import FrameStyle

FRAME = 1 << 16


def same(got: Any, want: np.ndarray[Any, Any], what: str) -> None:
    """Same dtype, shape and bytes (NaNs and structured padding included)."""
    assert isinstance(got, np.ndarray), what
    assert got.dtype == want.dtype, f"{what}: {got.dtype} vs {want.dtype}"
    assert got.shape == want.shape, f"{what}: {got.shape} vs {want.shape}"
    assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(want).tobytes(), f"{what}: bytes differ"


def lz4_frame(plain: bytes) -> bytes:
    """``plain`` as the LZ4 frame a fresh fd_checkpt writer makes (one buffer)."""
    out = bytearray(2 * len(plain) + 1024)
    ck = Checkpt.mmio(out)
    ck.frame_open(FrameStyle.LZ4)
    ck.buf(plain)
    end = ck.frame_close()
    ck.fini()
    return bytes(out[:end])


def outcome(fn: Any) -> str:
    """ "ok", or the ndckpt error's class name (anything else propagates: a bug)."""
    try:
        fn()
    except CheckptError as e:
        return type(e).__name__
    return "ok"


def every_reader(data: bytes, path: Path) -> dict[str, Any]:
    """Each reading entry point on the same bytes (nested results flattened)."""

    def opened(**kw: Any) -> dict[str, Any]:
        with ndckpt.open(path, **kw) as r:
            return {name: r.read(name) for name in r.names()}

    return {
        "bytes": lambda: flat(ndckpt.load(data, threads=1)),
        "bytes-copy-2": lambda: flat(ndckpt.load(data, mmap=False, threads=2)),
        "path": lambda: flat(ndckpt.load(path)),
        "path-copy": lambda: flat(ndckpt.load(path, mmap=False, threads=2)),
        "stream": lambda: flat(ndckpt.load(io.BytesIO(data))),
        "pipe": lambda: flat(ndckpt.load(Unseekable(data, chunk=3001))),
        "open-get": lambda: opened(),
        "open-get-copy": lambda: opened(mmap=False),
    }


# ----------------------------------------------------------------------------------------------
# Random states: every reader returns the saved arrays
# ----------------------------------------------------------------------------------------------

DTYPES = ["|u1", "<f8", ">i4", "<c8", [("a", "<i2"), ("b", "<f4")]]


@st.composite
def states(draw: st.DrawFn) -> tuple[dict[str, np.ndarray[Any, Any]], dict[str, str]]:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    styles: dict[str, str] = {}
    for i in range(draw(st.integers(1, 5))):
        dt = np.dtype(draw(st.sampled_from(DTYPES)))
        rows = draw(st.sampled_from([9000, 700, 3, 1, 0]))  # the first is the simplest: big
        cols = draw(st.sampled_from([5, 1]))
        kind = draw(st.sampled_from(["random", "half", "zeros"]))
        raw = (
            bytearray(rng.bytes(rows * cols * dt.itemsize)) if kind != "zeros" else bytearray(rows * cols * dt.itemsize)
        )
        if kind == "half":
            raw[len(raw) // 2 :] = bytes(len(raw) - len(raw) // 2)
        a = np.frombuffer(bytes(raw), dt).reshape(rows, cols)
        a = np.asfortranarray(a) if draw(st.booleans()) else a.copy()
        name = f"g{i % 2}/a{i}"
        arrays[name] = a
        styles[name] = draw(st.sampled_from(["lz4", "lz4", "raw"]))
    return arrays, styles


def nest(arrays: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, a in arrays.items():
        g, leaf = name.split("/")
        out.setdefault(g, {})[leaf] = a
    return out


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
        rec = next(r for r in lay.regions if r.kind == "record" and r.frame == fi)
        dat = next(r for r in lay.regions if r.kind == "data" and r.frame == fi)
        assert dat.start == align_up(rec.end, RAW_ALIGN)
        assert data[rec.end : dat.start] == bytes(dat.start - rec.end)
        assert RECORD.unpack_from(data, rec.start)[0] == lay.head["frames"][fi]["nbytes"] | STORED_RAW
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.ndckpt"
        path.write_bytes(data)
        for how, fn in every_reader(data, path).items():
            got = fn()
            assert sorted(got) == sorted(arrays), how
            for k, v in arrays.items():
                same(got[k], v, f"{how}: {k}")
                if styles[k] == "lz4" and v.size:
                    assert got[k].flags.writeable, f"{how}: LZ4 array {k} is a read-only view"
                    if how == "bytes":
                        assert not np.shares_memory(got[k], np.frombuffer(data, np.uint8)), k
        ndckpt.verify(path)
        ndckpt.verify(Unseekable(data))
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
        with mock.patch.object(ndckpt.api, "_SPLIT", 4096):
            outs = {k: np.empty_like(v) for k, v in arrays.items()}
            got = flat(ndckpt.load(data, threads=2, out=nest(outs)))
            for k, v in arrays.items():
                same(got[k], v, f"split: {k}")
                same(outs[k], v, f"split out=: {k}")


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
DAMAGE_HEAD = Head.from_json(DAMAGE_FILE[SUPERBLOCK.size : SUPERBLOCK.size + SUPERBLOCK.unpack_from(DAMAGE_FILE, 0)[3]])


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
    dat = next(r for r in DAMAGE_LAYOUT.regions if r.kind == "data" and r.frame == which)
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
        for fn in every_reader(data, path).values():
            with pytest.raises(FormatError, match="checksum"):
                fn()
        for src in (path, data):
            with ndckpt.open(src) as r:
                for name in _names_in(which):
                    with pytest.raises(FormatError, match="checksum"):
                        r.get(name)
                    i = _first_item_in(which, name)
                    with pytest.raises(FormatError, match="checksum"):
                        r.read(name, region=(slice(i, i + 1),))
                    with pytest.raises(FormatError, match="checksum"):
                        r.read(name, out=np.empty_like(DAMAGE_ARRAYS[name]))
                others = [n for n in DAMAGE_ARRAYS if n not in _names_in(which)]
                for name in others:  # frames that are intact still read
                    same(r.get(name), DAMAGE_ARRAYS[name], name)
        with mock.patch.object(ndckpt.api, "_SPLIT", 4096), pytest.raises(FormatError, match="checksum"):
            ndckpt.load(data, threads=2)
        for v in (lambda: ndckpt.verify(path), lambda: ndckpt.verify(Unseekable(data))):
            with pytest.raises(FormatError, match="checksum"):
                v()
    # Told not to check, the readers agree on the damaged bytes.
    got = [flat(ndckpt.load(data, verify=False)), flat(ndckpt.load(Unseekable(data), verify=False))]
    assert _changed(got[0]) == covered
    for k in DAMAGE_ARRAYS:
        same(got[1][k], got[0][k], f"verify=False stream vs buffer: {k}")


@settings(max_examples=30, deadline=None)
@given(which=st.sampled_from(sorted(DAMAGE_LAYOUT.verbatim)), byte=st.integers(0, 15), bit=st.integers(0, 7))
def test_damaged_verbatim_record_never_loads(which: int, byte: int, bit: int) -> None:
    rec = next(r for r in DAMAGE_LAYOUT.regions if r.kind == "record" and r.frame == which)
    bad = bytearray(DAMAGE_FILE)
    bad[rec.start + byte] ^= 1 << bit
    data = bytes(bad)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bad.ndckpt"
        path.write_bytes(data)
        for how, fn in every_reader(data, path).items():
            assert outcome(fn) != "ok", how
        assert outcome(lambda: ndckpt.load(data, verify=False)) != "ok"
        assert outcome(lambda: ndckpt.load(Unseekable(data), verify=False)) != "ok"
        assert outcome(lambda: ndckpt.verify(path)) != "ok"
        assert outcome(lambda: ndckpt.verify(Unseekable(data))) != "ok"


@settings(max_examples=20, deadline=None)
@given(
    which=st.sampled_from(sorted(DAMAGE_LAYOUT.verbatim)),
    at=st.floats(0, 1, exclude_max=True),
    value=st.integers(1, 255),
)
def test_damaged_verbatim_pad_loads_but_fails_verify(which: int, at: float, value: int) -> None:
    pad = next(r for r in DAMAGE_LAYOUT.regions if r.kind == "pad" and r.frame == which)
    bad = bytearray(DAMAGE_FILE)
    bad[pad.start + int(at * (pad.end - pad.start))] = value
    data = bytes(bad)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "pad.ndckpt"
        path.write_bytes(data)
        for how, fn in every_reader(data, path).items():
            got = fn()
            for k, v in DAMAGE_ARRAYS.items():
                same(got[k], v, f"{how}: {k}")
        for v in (lambda: ndckpt.verify(path), lambda: ndckpt.verify(Unseekable(data)), lambda: ndckpt.verify(data)):
            with pytest.raises(FormatError, match="padding"):
                v()


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
    rec = next(r for r in lay.regions if r.kind == "record")
    dat = next(r for r in lay.regions if r.kind == "data")
    assert dat.start - rec.end == pad
    assert dat.start % RAW_ALIGN == 0
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.ndckpt"
        path.write_bytes(data)
        for how, fn in every_reader(data, path).items():
            same(fn()["x"], _PAD_ARRAY, how)
        ndckpt.verify(path)
        ndckpt.verify(Unseekable(data, chunk=777))


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
    io_, nfr = struct.unpack_from("<QQ", b, len(b) - TRAILER.size)
    at = io_ + fi * INDEX_DTYPE.itemsize + 8
    struct.pack_into("<Q", b, at, struct.unpack_from("<Q", b, at)[0] | mask)
    struct.pack_into("<Q", b, len(b) - TRAILER.size + 16, _lz4.xxh64(bytes(b[io_ : io_ + nfr * INDEX_DTYPE.itemsize])))
    return bytes(b)


def _record_and_index_or(data: bytes, fi: int, mask: int) -> bytes:
    lay = parse(data)
    rec = next(r for r in lay.regions if r.kind == "record" and r.frame == fi)
    b = bytearray(_index_or(data, fi, mask))
    struct.pack_into("<Q", b, rec.start, struct.unpack_from("<Q", b, rec.start)[0] | mask)
    return bytes(b)


def _pad_past_index() -> bytes:
    """A file of one verbatim frame cut after its record: the index and trailer follow the
    record directly, so the frame's pad and data would run past the index and the file."""
    data = save_small_frames({"x": _PAD_ARRAY}, style="lz4")
    lay = parse(data)
    assert lay.verbatim == {0}
    rec = next(r for r in lay.regions if r.kind == "record")
    ib = data[lay.regions[-2].start : lay.regions[-2].end]  # the index entry, as written
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
        "bit 63 in a RAW frame's index entry": _index_or(data, 0, STORED_RAW),
        "bit 63 in the index only": _index_or(build(lay.head, [raw0, lz4_frame(plain1)]), 1, STORED_RAW),
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
    calls = {
        **every_reader(data, path),
        "bytes-noverify": lambda: ndckpt.load(data, verify=False),
        "pipe-noverify": lambda: ndckpt.load(Unseekable(data), verify=False),
        "verify": lambda: ndckpt.verify(path),
        "verify-stream": lambda: ndckpt.verify(Unseekable(data)),
        "harness": lambda: harness().exercise_both(data),  # only ndckpt errors; readers agree
    }
    for how, fn in calls.items():
        if how == "harness":
            fn()
        else:
            assert outcome(fn) != "ok", how


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
    for how, fn in every_reader(other, path).items():
        got = fn()
        for k, v in want.items():
            same(got[k], v, f"{how}: {k}")
    ndckpt.verify(path)
    ndckpt.verify(Unseekable(other))


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
    rec = next(r for r in DAMAGE_LAYOUT.regions if r.kind == "record" and r.frame == lz4)
    dat = next(r for r in DAMAGE_LAYOUT.regions if r.kind == "data" and r.frame == lz4)
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


def _mpiexec() -> str | None:
    if importlib.util.find_spec("mpi4py") is None:
        return None
    exe = Path(sys.executable).parent / "mpiexec"
    return str(exe) if exe.exists() else shutil.which("mpiexec")


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


@pytest.mark.skipif(_mpiexec() is None, reason="mpi4py or mpiexec missing")
def test_mpi_writer_with_verbatim_frames(tmp_path: Path) -> None:
    script = tmp_path / "w.py"
    script.write_text(textwrap.dedent(_MPI_SCRIPT))
    target = tmp_path / "m.ndckpt"
    exe = _mpiexec()
    assert exe is not None
    run = subprocess.run(
        [exe, "-n", "2", sys.executable, "-m", "mpi4py", str(script), str(target)],
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
    ndckpt.verify(target)
    ndckpt.verify(Unseekable(data))
    for how, fn in every_reader(data, target).items():
        got = fn()
        for k, v in want.items():
            same(got[k], v, f"{how}: {k}")
    with ndckpt.open(target) as r:
        same(r.read("g", region=(slice(20, 50), slice(100, 200))), g[20:50, 100:200], "region")
