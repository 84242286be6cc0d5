"""dask arrays: saved a block row at a time (bounded memory, same bytes), opened lazily frame by frame."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ndckpt

da = pytest.importorskip("dask.array")
from ndckpt.daskarray import from_checkpoint  # noqa: E402


def _bytes(state: Any, **kw: Any) -> bytes:
    b = io.BytesIO()
    ndckpt.save(b, state, **kw)
    return b.getvalue()


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(0, 40), min_size=0, max_size=3),
    chunk=st.integers(1, 17),
    dtype=st.sampled_from(["f8", "i2", "u1", "c8"]),
    style=st.sampled_from(["raw", "lz4"]),
    threads=st.sampled_from([1, 2]),
)
def test_a_dask_array_saves_the_bytes_of_its_computed_array(
    shape: list[int], chunk: int, dtype: str, style: str, threads: int
) -> None:
    n = int(np.prod(shape)) if shape else 1
    chunks = tuple(max(chunk, -(-d // 4)) for d in shape)  # at most 4 blocks per axis: dask's overhead is per block
    x = da.from_array(np.arange(n, dtype=dtype).reshape(shape), chunks=chunks)
    if shape:
        x = x[::-1]  # a graph, not only stored blocks
    computed = np.asarray(x.compute())  # (a 0-d result is a numpy scalar: stored as an array here too)
    contiguous = computed if computed.flags.c_contiguous else computed.copy()
    want = _bytes({"x": contiguous, "s": 1}, style=style, threads=threads)
    assert _bytes({"x": x, "s": 1}, style=style, threads=threads) == want


def test_saving_a_large_dask_array_holds_a_few_block_rows(tmp_path: Path) -> None:
    rows = 64  # block rows of 64 x 8192 float64 = 4 MiB
    peaks = []
    for total in (16, 64):  # MiB
        x = da.ones((total * 16, 8192), chunks=(rows, 8192))
        tracemalloc.start()
        ndckpt.save(tmp_path / f"{total}.ndckpt", {"x": x}, style="lz4", threads=1)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 40 << 20  # a few 4 MiB block rows and frames, not the 64 MiB array
    assert peaks[1] < peaks[0] * 1.5  # and independent of the array's size


@pytest.mark.parametrize("style", ["raw", "lz4"])
def test_from_checkpoint_chunks_follow_frames_and_read_only_them(style: str, tmp_path: Path, monkeypatch: Any) -> None:
    a = np.random.default_rng(0).random((3000, 1000))  # 24 MB: several 4 MiB LZ4 frames
    ndckpt.save(tmp_path / "a.ndckpt", {"a": a, "z": np.float32(2)}, style=style)
    calls: list[Any] = []
    real = ndckpt.Reader.read
    monkeypatch.setattr(ndckpt.Reader, "read", lambda self, n, out=None, *, region=None: (
        calls.append(region), real(self, n, out, region=region))[1])
    with ndckpt.open(tmp_path / "a.ndckpt") as r:
        x = from_checkpoint(r, "a")
        frames = len(next(row for row in r.info() if row["name"] == "a")["frames"])
        assert x.shape == a.shape
        assert x.dtype == a.dtype
        assert len(x.chunks[0]) == frames or style == "raw"
        calls.clear()
        np.testing.assert_array_equal(x[1000:1001].compute(), a[1000:1001])
        assert len(calls) == 1  # one chunk read
        np.testing.assert_array_equal(x.compute(scheduler="threads"), a)
        np.testing.assert_array_equal(from_checkpoint(r, "a", rows=7)[5:20].compute(), a[5:20])
        with pytest.raises(KeyError):
            from_checkpoint(r, "nope")
        with pytest.raises(ndckpt.InvalidArgumentError, match="rows"):
            from_checkpoint(r, "a", rows=0)
