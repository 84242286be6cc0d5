"""Loads of many arrays (at least ``MANY_ARRAYS``) take a numpy path that sorts arrays into mapped
views, views of packed frames and the rest; loads of a few take the per-array path. Both must
return the same arrays, honour ``out=``, and check what ``verify`` asks for."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from forge import parse
from helpers import flat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ndckpt
from ndckpt.container.layout import MANY_ARRAYS
from ndckpt.errors import FormatError


@st.composite
def states(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, str]]:
    n = draw(st.integers(MANY_ARRAYS, MANY_ARRAYS + 40))
    rng = np.random.default_rng(draw(st.integers(0, 9)))
    arrays: dict[str, Any] = {"g": {}}
    style: dict[str, str] = {}
    for i in range(n):
        kind = draw(st.sampled_from(["small", "tiny", "empty", "big", "fortran"]))
        if kind == "small":
            a: Any = rng.standard_normal(draw(st.integers(1, 300)))
        elif kind == "tiny":
            a = np.array(i, np.int16)  # 0-d (a numpy scalar would be a value in the head, not an array)
        elif kind == "empty":
            a = np.zeros((0, 3))
        elif kind == "big":
            a = rng.integers(0, 4, (2 << 20) // 8 + draw(st.integers(0, 999)))  # > 1 MiB: frames of its own
        else:
            a = np.asfortranarray(rng.standard_normal((5, 7)))
        name = f"a{i:03d}"
        (arrays["g"] if i % 3 == 0 else arrays)[name] = a
        if draw(st.booleans()):
            style[f"g/{name}" if i % 3 == 0 else name] = "lz4"
    return arrays, style


def per_array(data: bytes, mmap: bool) -> dict[str, Any]:
    """Every array read alone (the per-array path, one array at a time)."""
    with ndckpt.open(data, mmap=mmap) as r:
        return {k: r.read(k) for k in r.names()}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(state=states(), mmap=st.booleans(), threads=st.sampled_from([1, 2]))
def test_many_arrays_load_like_one_at_a_time(
    state: tuple[dict[str, Any], dict[str, str]], mmap: bool, threads: int
) -> None:
    arrays, style = state
    f = io.BytesIO()
    ndckpt.save(f, arrays, style=style)
    data = f.getvalue()
    want = flat(arrays)
    alone = per_array(data, mmap)
    for verify in (None, True, False):
        got = flat(ndckpt.load(data, mmap=mmap, threads=threads, verify=verify))
        assert sorted(got) == sorted(want)
        for k, v in want.items():
            np.testing.assert_array_equal(got[k], v, err_msg=k)
            assert got[k].dtype == np.asarray(v).dtype, k
            assert got[k].shape == np.asarray(v).shape, k
            np.testing.assert_array_equal(alone[k], v, err_msg=k)
            if style.get(k) == "lz4" and got[k].nbytes:
                assert got[k].flags.writeable, f"LZ4 array {k} came back read-only"
    # out= for every other array: filled in place, the rest as usual
    outs = {
        k: np.empty_like(
            np.asarray(v), order="F" if np.asarray(v).flags.f_contiguous and np.asarray(v).ndim > 1 else "C"
        )
        for k, v in list(want.items())[::2]
    }
    nested: dict[str, Any] = {}
    for k, v in outs.items():
        parts = k.split("/")
        d = nested
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = v
    got = flat(ndckpt.load(data, mmap=mmap, threads=threads, out=nested))
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)
        if k in outs:
            assert got[k] is outs[k]


def test_verify_true_checks_mapped_arrays_of_a_large_head() -> None:
    arrays = {f"a{i:03d}": np.arange(i, i + 100, dtype=np.float64) for i in range(MANY_ARRAYS * 2)}
    f = io.BytesIO()
    ndckpt.save(f, arrays)
    data = bytearray(f.getvalue())
    lay = parse(bytes(data))
    dat = next(r for r in lay.regions if r.kind == "data")
    data[dat.start + 8] ^= 1  # inside a00000, which loads as a view of the mapped file
    got = ndckpt.load(bytes(data))  # RAW views are not checked by default: the flip shows
    assert got["a000"][1] != arrays["a000"][1]
    with pytest.raises(FormatError, match="checksum"):
        ndckpt.load(bytes(data), verify=True)
    with pytest.raises(FormatError, match="checksum"):
        ndckpt.load(bytes(data), verify=True, mmap=False)
