"""Copy-on-write loading (``mmap="c"``): writable arrays whose writes never reach the file.

Each load (or Reader call) maps the file privately for itself, so writes to its arrays reach
neither the file nor the arrays of any other load; LZ4 arrays are new arrays as always.
"""

from __future__ import annotations

import hashlib
import mmap as _mmap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import flat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ndckpt
from ndckpt.container.read import COW_MIN
from ndckpt.errors import InvalidArgumentError
from ndckpt.manager import CheckpointManager


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def same(a: Any, b: Any) -> bool:
    """Equal dtype, shape and bytes (NaN payloads included)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def scribble(a: np.ndarray[Any, Any]) -> None:
    """Overwrite every byte of ``a`` (it must be writable)."""
    if a.nbytes:
        c = a if a.flags.c_contiguous else a.T  # loads are contiguous in the saved order
        np.frombuffer(c.reshape(-1).data, np.uint8)[...] = 0xA5


def backed_by_map(a: np.ndarray[Any, Any]) -> bool:
    """True if ``a`` views an mmap (zero-copy), False if it owns memory of its own."""
    b: Any = a
    while isinstance(b, np.ndarray):
        b = b.base
    return isinstance(b, memoryview) and isinstance(b.obj, _mmap.mmap)


@st.composite
def states(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, str]]:
    """Nested states of small, empty, 0-d, Fortran-order and > 1 MiB arrays, some LZ4, plus values."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    state: dict[str, Any] = {"g": {"h": {}}}
    style: dict[str, str] = {}
    for i in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["small", "big", "empty", "zero_d", "fortran", "int"]))
        if kind == "small":
            a: Any = rng.standard_normal(draw(st.integers(1, 500)))
        elif kind == "big":
            a = rng.integers(0, 7, (COW_MIN // 8) + draw(st.integers(0, 5000)), dtype=np.int64)
        elif kind == "empty":
            a = np.zeros((0, 4), np.float32)
        elif kind == "zero_d":
            a = np.array(i, np.int16)
        elif kind == "fortran":
            a = np.asfortranarray(rng.standard_normal((7, 5)))
        else:
            a = rng.integers(-100, 100, draw(st.integers(1, 3000)), dtype=np.int32)
        where = draw(st.sampled_from([(), ("g",), ("g", "h")]))
        d = state
        for k in where:
            d = d[k]
        name = f"a{i}"
        d[name] = a
        if draw(st.booleans()):
            style["/".join((*where, name))] = "lz4"
    state["step"] = np.int64(draw(st.integers(0, 10**6)))
    state["g"]["note"] = "hello"
    if not state["g"]["h"]:
        state["g"]["h"]["pad"] = np.zeros(3)
    return state, style


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(state=states(), verify=st.sampled_from([None, True, False]))
def test_cow_round_trip(tmp_path_factory: pytest.TempPathFactory, state: Any, verify: bool | None) -> None:
    arrays, style = state
    p = tmp_path_factory.mktemp("cow") / "s.ndckpt"
    ndckpt.save(p, arrays, style=style)
    before = sha(p)
    want = flat(arrays)
    got = ndckpt.load(p, mmap="c", verify=verify)
    other = ndckpt.load(p, mmap="c", verify=verify)  # another load of the same file
    ro = ndckpt.load(p)  # read-only views share the page cache with the private maps
    g, o = flat(got), flat(other)
    assert sorted(g) == sorted(want)
    arrays_written = 0
    for k, v in want.items():
        assert same(g[k], v), k
        if isinstance(v, np.ndarray):
            assert isinstance(g[k], np.ndarray), k
            assert g[k].flags.writeable, k
            scribble(g[k])
            arrays_written += 1
        else:
            assert g[k] == v, k
            assert type(g[k]) is type(v), k
    assert arrays_written
    # Writes reach neither the file, nor another load's arrays, nor read-only views.
    assert sha(p) == before
    for k, v in want.items():
        assert same(o[k], v), k
        assert same(flat(ro)[k], v), k
    assert ndckpt.verify(p) is None
    big = [k for k, v in want.items() if isinstance(v, np.ndarray) and v.nbytes >= COW_MIN and k not in style]
    for k in big:  # large RAW arrays are zero-copy until written
        assert backed_by_map(o[k]), k


def test_cow_views_are_private_mappings(tmp_path: Path) -> None:
    """A large RAW array is a writable view of a map; LZ4 and small loads are new arrays."""
    p = tmp_path / "s.ndckpt"
    big = np.arange(COW_MIN // 8 * 2, dtype=np.float64)
    ndckpt.save(p, {"big": big, "z": np.arange(100.0)}, style={"z": "lz4"})
    d = ndckpt.load(p, mmap="c")
    assert backed_by_map(d["big"])
    assert d["big"].flags.writeable
    assert not backed_by_map(d["z"])
    assert d["z"].flags.writeable
    ro = ndckpt.load(p, mmap="r")
    assert backed_by_map(ro["big"])
    assert not ro["big"].flags.writeable
    cp = ndckpt.load(p, mmap=False)
    assert not backed_by_map(cp["big"])
    assert cp["big"].flags.writeable
    # The map outlives every name but the view's: the view stays valid and written.
    v = d.pop("big")
    del d
    v[1::4096] = -1.0
    assert v[1] == -1.0
    assert v[0] == 0.0
    assert same(ndckpt.load(p)["big"], big)


def test_cow_small_load_copies(tmp_path: Path) -> None:
    """Under COW_MIN bytes a "c" load copies (no mapping, no fd held): still writable and private."""
    p = tmp_path / "s.ndckpt"
    ndckpt.save(p, {"a": np.arange(10), "b": np.ones((3, 3))})
    before = sha(p)
    d = ndckpt.load(p, mmap="c")
    assert not backed_by_map(d["a"])
    assert not backed_by_map(d["b"])
    d["a"] += 1
    d["b"][:] = 0
    assert sha(p) == before


def test_reader_cow(tmp_path: Path) -> None:
    """Each Reader call maps privately: writes to one call's arrays are invisible to the next,
    verify=True still checks the file's bytes (not the written pages), and regions are writable."""
    p = tmp_path / "s.ndckpt"
    big = np.arange(COW_MIN // 4, dtype=np.int64).reshape(-1, 64)
    small = np.arange(50, dtype=np.int32)
    ndckpt.save(p, {"big": big, "small": small, "z": np.zeros(1000)}, style={"z": "lz4"})
    before = sha(p)
    with ndckpt.open(p, mmap="c", verify=True) as r:
        a = r["big"]
        assert backed_by_map(a)
        assert a.flags.writeable
        a[:] = -5
        b = r.get("big")
        assert same(b, big)
        reg = r.read("big", region=(slice(3, 9), slice(1, 4)))
        assert reg.flags.writeable
        assert same(reg, big[3:9, 1:4])
        reg[:] = 0
        s = r["small"]
        s += 1
        assert same(r["small"], small)
        z = r["z"]
        z += 1
        whole = r.load()
        assert same(whole["big"], big)
        assert same(whole["small"], small)
        assert same(whole["z"], np.zeros(1000))
        for v in whole.values():
            assert v.flags.writeable
    # Views stay valid after close (their map is theirs).
    a[0, 0] = 11
    assert a[0, 0] == 11
    assert sha(p) == before


def test_cow_from_buffer_copies(tmp_path: Path) -> None:
    """From an in-memory buffer "c" copies: the caller's bytes are never written."""
    p = tmp_path / "s.ndckpt"
    ndckpt.save(p, {"big": np.arange(COW_MIN // 8 * 2, dtype=np.float64)})
    buf = bytearray(p.read_bytes())
    before = bytes(buf)
    d = ndckpt.load(buf, mmap="c")
    d["big"][:] = 3
    with ndckpt.open(buf, mmap="c") as r:
        e = r["big"]
        e[:] = 4
    assert bytes(buf) == before


def test_restore_cow(tmp_path: Path) -> None:
    big = np.arange(COW_MIN // 8 * 2, dtype=np.float64)
    with CheckpointManager(tmp_path / "ck") as m:
        m.save(1, {"u": big, "n": np.int64(3)})
        m.wait()
        path = m.path(1)
        before = sha(path)
        d = m.restore(mmap="c", verify=True)
        assert d["u"].flags.writeable
        assert backed_by_map(d["u"])
        d["u"] += 1
        assert same(m.restore(1, mmap="c")["u"], big)
        assert same(m.restore(mmap=True)["u"], big)
        assert sha(path) == before


@pytest.mark.parametrize("bad", ["w+", "r+", "C", "", 1, 0, None, b"c", ["c"]])
def test_bad_mmap_values_refused_before_opening(tmp_path: Path, bad: Any) -> None:
    """Anything but True, False, "r" and "c" is InvalidArgumentError, before the source is opened
    (a path that does not exist gives the argument error, not a missing-file one)."""
    missing = tmp_path / "nope.ndckpt"
    for call in (
        lambda: ndckpt.load(missing, mmap=bad),
        lambda: ndckpt.open(missing, mmap=bad),
    ):
        with pytest.raises(InvalidArgumentError, match=r"mmap must be True or 'r' .*'c' .*False"):
            call()
    with CheckpointManager(tmp_path / "empty") as m, pytest.raises(InvalidArgumentError, match="mmap must be"):
        m.restore(mmap=bad)


@pytest.mark.parametrize("good", [True, "r", "c", False])
def test_every_mode_loads(tmp_path: Path, good: Any) -> None:
    p = tmp_path / "s.ndckpt"
    state = {"a": np.arange(COW_MIN // 4, dtype=np.int32), "v": 2.5}
    ndckpt.save(p, state)
    d = ndckpt.load(p, mmap=good)
    assert same(d["a"], state["a"])
    assert d["v"] == 2.5
    assert d["a"].flags.writeable == (good is not True and good != "r")
