"""The container's reader (ndckpt/container/read.py): region reads, blocks, padding bytes and verify."""

from __future__ import annotations

import io
import itertools
import math
from typing import Any

import forge
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ndckpt
from ndckpt.container import ArraySpec
from ndckpt.container.plan import prepare_specs
from ndckpt.errors import FormatError, InvalidArgumentError
from ndckpt.format import FrameStyle


def _blocked_file(g: np.ndarray[Any, Any], cuts: list[int], style: FrameStyle, frame_bytes: int) -> bytes:
    """A checkpoint holding ``g`` as row blocks cut at ``cuts`` (as MPI ranks would write it)."""
    edges = [0, *cuts, g.shape[0]]
    blocks = tuple(
        ((lo,) + (0,) * (g.ndim - 1), (hi - lo, *g.shape[1:])) for lo, hi in itertools.pairwise(edges) if hi > lo
    )
    stored = np.concatenate(
        [np.ascontiguousarray(g[s[0] : s[0] + n[0]]).reshape(-1).view(np.uint8) for s, n in blocks]
        or [np.empty(0, np.uint8)]
    )
    spec = ArraySpec(("g",), g.dtype, g.shape, "C", blocks)
    prep = prepare_specs([spec], [stored], [style], [], None, frame_bytes, frame_bytes)
    f = io.BytesIO()
    forge.write_prepared(f, prep, 2)
    return f.getvalue()


@st.composite
def region_cases(draw: Any) -> tuple[np.ndarray[Any, Any], tuple[slice, ...]]:
    shape = tuple(draw(st.lists(st.integers(1, 40), min_size=1, max_size=3)))
    g = np.arange(math.prod(shape), dtype=np.int32).reshape(shape) * 7 % 1000
    region = []
    for n in shape[: draw(st.integers(0, len(shape)))]:
        a = draw(st.integers(-n, n))
        b = draw(st.integers(-n, n) | st.none())
        region.append(slice(a, b))
    return g, tuple(region)


@settings(max_examples=60, deadline=None)
@given(region_cases(), st.sampled_from([FrameStyle.RAW, FrameStyle.LZ4]), st.data())
def test_region_reads_equal_numpy_slicing(case: Any, style: FrameStyle, data: Any) -> None:
    g, region = case
    fortran = data.draw(st.booleans())
    plain = np.asfortranarray(g) if fortran else g
    for frame_bytes in (65536, 1 << 20):
        blob = forge.save_small_frames({"g": plain}, style=style, frame_bytes=frame_bytes)
        with ndckpt.open(blob) as r:
            got = r.read("g", region=region)
            np.testing.assert_array_equal(got, g[region])
            out = np.full(g[region].shape, -1, g.dtype)
            assert r.read("g", out, region=region) is out
            np.testing.assert_array_equal(out, g[region])
    cuts = sorted(data.draw(st.lists(st.integers(0, g.shape[0]), max_size=3)))
    blob = _blocked_file(g, cuts, style, 65536)
    with ndckpt.open(blob) as r:
        np.testing.assert_array_equal(r.read("g", region=region), g[region])
        np.testing.assert_array_equal(r["g"], g)
    for src in (blob, io.BytesIO(blob)):
        np.testing.assert_array_equal(ndckpt.load(src)["g"], g)


def test_region_reads_only_the_frames_that_hold_it() -> None:
    g = np.arange(64 * 4096, dtype=np.int64).reshape(64, 4096)  # 2 MiB: 32 LZ4 frames of 64 KiB
    blob = bytearray(_blocked_file(g, [16, 40], FrameStyle.LZ4, 65536))
    with ndckpt.open(bytes(blob)) as r:
        info = r.info()[0]
        assert len(info["frames"]) == 32
        last = info["offsets"][-1]
    blob[last + 10] ^= 0xFF  # corrupt the last frame: reads that do not need it still work
    with ndckpt.open(bytes(blob)) as r:
        np.testing.assert_array_equal(r.read("g", region=(slice(0, 8),)), g[:8])
        with pytest.raises(FormatError, match="checksum"):
            r.read("g", region=(slice(60, 64),))


def test_bad_regions_are_rejected() -> None:
    with ndckpt.open(_blocked_file(np.zeros((4, 4)), [2], FrameStyle.RAW, 65536)) as r:
        with pytest.raises(InvalidArgumentError, match="steps"):
            r.read("g", region=(slice(0, 4, 2),))
        with pytest.raises(InvalidArgumentError, match="3 indices"):
            r.read("g", region=(slice(None),) * 3)
        with pytest.raises(InvalidArgumentError, match="expected slices"):
            r.read("g", region=(1,))
        with pytest.raises(InvalidArgumentError, match="shape"):
            r.read("g", np.empty((3, 3)), region=(slice(0, 2),))


def test_verify_checks_the_zero_pads_that_no_checksum_covers() -> None:
    b = io.BytesIO()
    ndckpt.save(b, {"a": np.arange(1000.0), "z": np.ones(5000)}, style={"z": "lz4"})
    blob = bytearray(b.getvalue())
    ndckpt.verify(bytes(blob))
    with ndckpt.open(bytes(blob)) as r:
        off = r.info()[0]["offsets"][0]
    assert blob[off - 1] == 0
    blob[off - 1] = 7
    for src in (bytes(blob), io.BytesIO(bytes(blob))):
        with pytest.raises(FormatError, match="padding"):
            ndckpt.verify(src)
    # Loads never read pads (the format says readers ignore them): the data is intact.
    np.testing.assert_array_equal(ndckpt.load(bytes(blob))["a"], np.arange(1000.0))


def test_region_reads_and_blocks_keep_the_padding_bytes_of_structured_dtypes() -> None:
    """numpy's field-wise assignment skips padding; ndckpt must return every stored byte."""
    dt = np.dtype([("a", "u1"), ("b", "<f8")], align=True)  # 7 padding bytes per item
    g = np.zeros((12, 5), dt)
    g["a"] = np.arange(60).reshape(12, 5)
    g["b"] = g["a"] * 1.5
    g.reshape(-1).view(np.uint8)[1::16] = 0xAB  # non-zero padding
    void = g.view(np.dtype((np.void, dt.itemsize)))  # (numpy's own tobytes() of a strided view drops padding)

    def raw(a: np.ndarray[Any, Any]) -> bytes:
        return np.ascontiguousarray(a.view(np.dtype((np.void, dt.itemsize)))).tobytes()

    for style in (FrameStyle.RAW, FrameStyle.LZ4):
        f = io.BytesIO()
        ndckpt.save(f, {"g": g}, style=style)
        with ndckpt.open(f.getvalue(), mmap=False) as r:
            assert raw(r.read("g", region=(slice(2, 9), slice(1, 4)))) == raw(void[2:9, 1:4])
        with ndckpt.open(_blocked_file(g, [4, 7], style, 65536)) as r:
            assert raw(r["g"]) == raw(void)
            assert raw(r.read("g", region=(slice(3, 10),))) == raw(void[3:10])
