"""LZ4 frames that LZ4 cannot shrink are stored verbatim (format §2.3).

The writer compresses every LZ4 frame; when the encoding is larger than
``nbytes - nbytes // 32`` it writes the record with bit 63 set, a zero pad and
the frame's plain bytes. These tests check the decision against an
independent compression of each frame, that the bytes still do not depend on
thread count or target, that every reader returns the same arrays (never
views: they are LZ4 arrays), and that damage to a verbatim frame is caught
like damage to an LZ4 frame.
"""

from __future__ import annotations

import io
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from forge import Unseekable, parse, parts4, rows, save_small_frames
from helpers import flat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ndckpt
from ndckpt.container import RAW_ALIGN, RECORD, STORED_RAW, stored_raw
from ndckpt.engine import Checkpt
from ndckpt.errors import FormatError
from ndckpt.format import FrameStyle

FRAME = 1 << 16  # small frames, so that small states span several


def lz4_size(plain: bytes) -> int:
    """Size of the fd_checkpt LZ4 frame a fresh writer makes of ``plain`` (one buffer)."""
    out = bytearray(len(plain) + len(plain) // 255 + 64 * (len(plain) // 65536 + 1) + 64)
    ck = Checkpt.mmio(out)
    ck.frame_open(FrameStyle.LZ4)
    ck.buf(plain)
    end = ck.frame_close()
    ck.fini()
    return end


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


def test_threshold_is_one_32nd_of_the_frame() -> None:
    n = 4 << 20
    assert not stored_raw(n, n - n // 32)
    assert stored_raw(n, n - n // 32 + 1)
    assert stored_raw(8, 12)  # tiny frames never shrink
    assert not stored_raw(65536, 100)


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
def states(draw: st.DrawFn) -> dict[str, np.ndarray[Any, Any]]:
    count = draw(st.integers(1, 5))
    out = {}
    for i in range(count):
        kind = draw(st.sampled_from(KINDS))
        n = draw(st.sampled_from([1, 100, 4096, 40_000, 70_000, 200_000]))
        out[f"a{i}"] = make(kind, n, draw(st.integers(0, 3)))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays=states())
def test_verbatim_exactly_when_lz4_does_not_pay(arrays: dict[str, np.ndarray[Any, Any]]) -> None:
    data = save_small_frames(arrays, style="lz4", frame_bytes=FRAME)
    lay = parse(data)
    for fi in range(len(lay.head["frames"])):
        plain = frame_plain(lay, fi, arrays)
        want = stored_raw(len(plain), lz4_size(plain))
        assert (fi in lay.verbatim) == want, f"frame {fi}: verbatim={fi in lay.verbatim}, rule says {want}"
        if fi in lay.verbatim:
            assert lay.stored[fi] == plain
            assert [r.start % RAW_ALIGN for r in lay.regions if r.kind == "data" and r.frame == fi] == [0]
    got = ndckpt.load(data)
    for k, v in arrays.items():
        np.testing.assert_array_equal(got[k], v)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays=states(), threads=st.sampled_from([2, 3]))
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
    for how in ("path-mmap", "path-copy", "bytes", "stream", "pipe-like", "verify"):
        if how == "path-mmap":
            got = flat(ndckpt.load(path))
        elif how == "path-copy":
            got = flat(ndckpt.load(path, mmap=False))
        elif how == "bytes":
            got = flat(ndckpt.load(data, threads=2))
        elif how == "stream":
            with open(path, "rb") as f:
                got = flat(ndckpt.load(f))
        elif how == "pipe-like":
            got = flat(ndckpt.load(Unseekable(data)))
        else:
            got = flat(ndckpt.load(path, verify=True, threads=2))
        assert sorted(got) == sorted(want), how
        for k, v in want.items():
            np.testing.assert_array_equal(got[k], v, err_msg=f"{how}: {k}")
            if k != "raw":
                assert got[k].flags.writeable, f"{how}: LZ4 array {k} came back as a read-only view"
    ndckpt.verify(path)
    ndckpt.verify(Unseekable(data))


def test_regions_and_out_across_the_boundary(mixed_file: tuple[Path, dict[str, Any]]) -> None:
    path, arrays = mixed_file
    big = arrays["big"]
    with ndckpt.open(path) as r:
        for rows in (slice(0, 5), slice(1020, 1030), slice(1530, 1536), slice(None)):
            np.testing.assert_array_equal(r.read("big", region=rows), big[rows])
        out = np.empty_like(big)
        assert r.read("big", out=out) is out
        np.testing.assert_array_equal(out, big)
        row = {x["name"]: x for x in r.info()}["big"]
        assert row["style"] == "lz4"
        # 4 MiB stored verbatim plus a small LZ4 frame of zeros
        assert 4 << 20 < row["stored_nbytes"] < (4 << 20) + (64 << 10)
        assert row["offsets"][0] % RAW_ALIGN == 0


def _verbatim_record(data: bytes) -> tuple[int, int, int]:
    """(record offset, data offset, nbytes) of the first frame stored verbatim."""
    lay = parse(data)
    fi = min(lay.verbatim)
    rec = next(r for r in lay.regions if r.kind == "record" and r.frame == fi)
    dat = next(r for r in lay.regions if r.kind == "data" and r.frame == fi)
    return rec.start, dat.start, dat.end - dat.start


def test_damaged_verbatim_data_is_caught_like_lz4(mixed_file: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, arrays = mixed_file
    data = bytearray(path.read_bytes())
    _, start, n = _verbatim_record(bytes(data))
    data[start + n // 2] ^= 0x10
    bad = tmp_path / "bad.ndckpt"
    bad.write_bytes(bytes(data))
    for src in (lambda: bad, lambda: bytes(data), lambda: Unseekable(bytes(data))):
        with pytest.raises(FormatError, match="checksum"):
            ndckpt.load(src())
    with pytest.raises(FormatError, match="checksum"):
        ndckpt.verify(bad)
    with ndckpt.open(bad) as r, pytest.raises(FormatError, match="checksum"):
        r.read("big", region=slice(0, 2))  # a region of a verbatim frame checks the whole frame
    got = ndckpt.load(bad, verify=False)  # told not to check: only the damaged array differs
    np.testing.assert_array_equal(got["small"]["steps"], arrays["small"]["steps"])
    assert (got["big"] != arrays["big"]).sum() == 1


def test_record_and_pad_damage(mixed_file: tuple[Path, dict[str, Any]]) -> None:
    path, arrays = mixed_file
    data = path.read_bytes()
    rec, start, n = _verbatim_record(data)
    stored, _ = RECORD.unpack_from(data, rec)
    assert stored == n | STORED_RAW
    # Bit 63 cleared: the record now claims an LZ4 frame of n bytes, disagreeing with the index.
    cleared = bytearray(data)
    struct.pack_into("<Q", cleared, rec, n)
    for src in (bytes(cleared), Unseekable(bytes(cleared))):
        with pytest.raises(FormatError):
            ndckpt.load(src)
    # A non-zero pad byte between the record and the data: loads ignore it, verify reports it.
    assert start - (rec + RECORD.size) > 0
    padded = bytearray(data)
    padded[rec + RECORD.size] = 1
    np.testing.assert_array_equal(ndckpt.load(bytes(padded))["big"], arrays["big"])
    for src in (bytes(padded), Unseekable(bytes(padded))):
        with pytest.raises(FormatError, match="padding"):
            ndckpt.verify(src)


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
