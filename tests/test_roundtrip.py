"""Data fidelity of ndckpt.save / load: every dtype, layout and nesting comes back exactly.

Exact means: same dtype (byte order, fields, offsets, padding, alignment flag, datetime unit),
same shape, same bytes (padding included), and the same memory order for C- and
Fortran-contiguous inputs. Also: determinism of the bytes written, metadata, the style
mapping, and clear errors (with nothing written) for what ndckpt does not store.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_same_array, assert_same_tree, flatten_tree, logical_bytes, readers, save_bytes
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    LAYOUTS,
    SCALAR_DTYPES,
    STRUCTURED_DTYPES,
    array_trees,
    layout_arrays,
    make_layout,
)

import ndckpt
from ndckpt import InvalidArgumentError

STYLES = ("raw", "lz4")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory that hypothesis tests may reuse across examples."""
    return tmp_path_factory.mktemp("roundtrip")


#: The shared readers every roundtrip goes through (by name, from helpers.READERS).
ROUNDTRIP_READERS = readers(["load(bytes)", "load(path)", "load(BytesIO)", "open(path).load()"])


def load_all_ways(data: bytes, path: Path) -> dict[str, Any]:
    """Load ``data`` from every kind of source and mode; return {way: result}."""
    path.write_bytes(data)
    ways = {name: read(data, path) for name, read in ROUNDTRIP_READERS.items()}
    # Source types the shared readers do not vary: a bytearray, and a path given as a str.
    ways["load(bytearray, copy)"] = ndckpt.load(bytearray(data), mmap=False)
    ways["load(str path, copy, verify)"] = ndckpt.load(str(path), mmap=False, verify=True)
    return ways


def dtype_id(dt: np.dtype[Any]) -> str:
    return dt.str if dt.names is None else "struct:" + ",".join(dt.names) + f"/{dt.itemsize}"


# ----------------------------------------------------------------------------------------------
# dtypes and layouts
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("dtype", SCALAR_DTYPES + STRUCTURED_DTYPES, ids=dtype_id)
def test_every_dtype_round_trips(dtype: np.dtype[Any], style: str, tmp_path: Path) -> None:
    a = make_layout(dtype, (5, 3), "C", seed=7)
    b = make_layout(dtype, (2, 4), "F", seed=8)
    data = save_bytes({"a": a, "b": b}, style=style)
    for way, got in load_all_ways(data, tmp_path / "x.ndckpt").items():
        assert_same_array(got["a"], a, f"{way}: a")
        assert_same_array(got["b"], b, f"{way}: b")


def test_dtype_details_survive() -> None:
    """Spot checks of what the generic comparison covers: byte order, units, offsets, alignment."""
    big = np.arange(6, dtype=">i4").reshape(2, 3)
    dt = np.array(["2001-01-01T00:00:00.123"], dtype="M8[ms]")
    td = np.array([5, -3], dtype=">m8[us]")
    padded = np.zeros(3, np.dtype({"names": ["x", "y"], "formats": ["u1", "<f4"], "offsets": [0, 8], "itemsize": 16}))
    aligned = np.zeros(2, np.dtype([("a", "u1"), ("b", "<i8")], align=True))
    ld = np.array([1.0, np.pi], dtype=np.longdouble) / 3
    got = ndckpt.load(save_bytes({"big": big, "dt": dt, "td": td, "padded": padded, "aligned": aligned, "ld": ld}))
    assert got["big"].dtype.byteorder == ">"
    assert got["big"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert got["dt"].dtype == np.dtype("M8[ms]")
    assert str(got["dt"][0]) == "2001-01-01T00:00:00.123"
    assert got["td"].dtype.str == ">m8[us]"
    assert got["td"].tolist() == td.tolist()
    assert got["padded"].dtype.fields == padded.dtype.fields
    assert got["padded"].dtype.itemsize == 16
    assert got["aligned"].dtype.isalignedstruct
    assert got["ld"].dtype == np.longdouble
    assert np.array_equal(got["ld"], ld)


@settings(max_examples=200)
@given(a=layout_arrays(), style=st.sampled_from(STYLES))
def test_any_array_in_any_layout_round_trips(a: np.ndarray[Any, Any], style: str, scratch: Path) -> None:
    data = save_bytes({"a": a}, style=style)
    for way, got in load_all_ways(data, scratch / "any.ndckpt").items():
        assert_same_array(got["a"], a, way)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_non_contiguous_inputs_span_frames(layout: str, style: str) -> None:
    """Strided inputs larger than a frame (4 MiB) are gathered frame by frame, correctly."""
    dt = np.dtype({"names": ["v", "k"], "formats": ["<f8", "u1"], "offsets": [0, 9], "itemsize": 12})
    a = make_layout(dt, (700, 3, 300), layout, seed=3)  # 7.6 MB of items, padding bytes random
    data = save_bytes({"a": a}, style=style)
    got = ndckpt.load(data)["a"]
    assert_same_array(got, a)
    assert save_bytes({"a": a}, style=style) == data, "padding bytes must not make the output vary"


def test_strided_struct_padding_is_copied_not_left_uninitialised() -> None:
    """Regression: numpy copies structs field by field, leaving padding undefined (stale memory)."""
    dt = np.dtype({"names": ["x"], "formats": ["u1"], "offsets": [0], "itemsize": 8})
    base = np.frombuffer(bytearray(np.random.default_rng(0).bytes(8 * 4000)), dt)
    a = base[::-2]  # negative stride: saved through the strided path
    got = ndckpt.load(save_bytes({"a": a}))["a"]
    assert logical_bytes(got) == logical_bytes(a)


@pytest.mark.parametrize("style", STYLES)
def test_zero_d_empty_and_scalars(style: str) -> None:
    arrays = {
        "zero_d": np.array(3.5, dtype=">f4"),
        "empty": np.empty((0,), np.int16),
        "empty_2d_f": np.empty((3, 0), np.complex64, order="F"),
        "empty_struct": np.empty((0, 2), STRUCTURED_DTYPES[0]),
        "np_scalar": np.float16(1.5),
        "py_int": 7,
        "py_float": 2.5,
        "py_bool": True,
        "py_complex": 1 - 2j,
        "dt_scalar": np.datetime64("2020-02-29", "D"),
        "empty_generic_td": np.ndarray((0, 2), np.dtype(">m8")),  # np.empty would make it "<m8"
    }
    got = ndckpt.load(save_bytes(arrays, style=style))
    for k, v in arrays.items():
        if isinstance(v, np.ndarray):
            assert_same_array(got[k], v, k)
        else:  # numpy scalars and Python values come back as themselves (tests/test_values.py)
            assert type(got[k]) is type(v), k
            assert np.asarray(got[k]).tobytes() == np.asarray(v).tobytes(), k
    assert got["py_int"] == 7
    assert got["py_bool"] is True
    assert got["np_scalar"] == np.float16(1.5)


def test_only_empty_arrays_and_no_arrays() -> None:
    got = ndckpt.load(save_bytes({"e": np.empty((0, 5), "<u8")}))
    assert_same_array(got["e"], np.empty((0, 5), "<u8"))
    assert ndckpt.load(save_bytes({})) == {}
    assert ndckpt.load(io.BytesIO(save_bytes({}))) == {}


# ----------------------------------------------------------------------------------------------
# Nesting, groups, metadata
# ----------------------------------------------------------------------------------------------


@st.composite
def trees_with_styles(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, str]]:
    tree = draw(array_trees(layout_arrays(shape=st.sampled_from([(), (0,), (4,), (3, 5), (2, 2, 3)]))))
    names = ["/".join(p) for p, v in flatten_tree(tree).items() if not isinstance(v, dict)]
    styles = {n: draw(st.sampled_from(STYLES)) for n in names if draw(st.booleans())}
    return tree, styles


@settings(max_examples=80)
@given(ts=trees_with_styles(), meta=st.none() | st.dictionaries(st.text(max_size=5), st.integers() | st.text()))
def test_nested_trees_round_trip(ts: tuple[dict[str, Any], dict[str, str]], meta: Any, scratch: Path) -> None:
    tree, styles = ts
    data = save_bytes(tree, style=styles, metadata=meta)
    for way, got in load_all_ways(data, scratch / "tree.ndckpt").items():
        try:
            assert_same_tree(got, tree)
        except AssertionError as e:
            raise AssertionError(f"{way}: {e}") from e
    with ndckpt.open(data) as r:
        assert r.metadata == meta
        info = {row["name"]: row["style"] for row in r.info() if row["nbytes"]}  # empty arrays have no frame
    for name, style in info.items():
        assert style == styles.get(name, "raw"), name


def test_empty_groups_come_back_nested() -> None:
    tree = {"a": {}, "b": {"c": {}, "d": {"e": np.arange(3)}}, "f": {"g": {"h": {}}}}
    got = ndckpt.load(save_bytes(tree))
    assert got.keys() == {"a", "b", "f"}
    assert got["a"] == {}
    assert got["b"]["c"] == {}
    assert got["f"] == {"g": {"h": {}}}
    assert got["b"]["d"]["e"].tolist() == [0, 1, 2]


def test_metadata_round_trip() -> None:
    meta = {"step": 1200, "lr": 0.001, "tags": ["a", "β"], "nested": {"ok": True, "none": None}, "": 0}
    data = save_bytes({"x": np.ones(2)}, metadata=meta)
    with ndckpt.open(data) as r:
        assert r.metadata == meta
    with ndckpt.open(save_bytes({"x": np.ones(2)})) as r:
        assert r.metadata is None


@pytest.mark.parametrize(
    ("metadata", "match"),
    [
        ((1, float("nan")), "metadata"),
        ({"a": b"x"}, "metadata"),
        ({"a": object()}, "metadata"),
        ({"a": {1, 2}}, "metadata"),
        ({"a": np.ones(2)}, "metadata"),
    ],
)
def test_bad_metadata_rejected(metadata: Any, match: str, tmp_path: Path) -> None:
    target = tmp_path / "m.ndckpt"
    with pytest.raises(InvalidArgumentError, match=match):
        ndckpt.save(target, {"x": np.ones(2)}, metadata=metadata)
    assert not target.exists()
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# Style mapping
# ----------------------------------------------------------------------------------------------


def _styles_of(data: bytes) -> dict[str, str]:
    with ndckpt.open(data) as r:
        return {row["name"]: row["style"] for row in r.info()}


def test_style_mapping_flat_and_nested_keys() -> None:
    tree = {"a": np.zeros(100), "g": {"b": np.zeros(100), "c": np.zeros(100)}, "d": np.zeros(100)}
    flat = save_bytes(tree, style={"a": "lz4", "g/b": "lz4"})
    nested = save_bytes(tree, style={"a": "lz4", "g": {"b": "lz4"}})
    enum = save_bytes(tree, style={"a": ndckpt.FrameStyle.LZ4, "g": {"b": 2, "c": "raw"}})
    assert flat == nested == enum
    assert _styles_of(flat) == {"a": "lz4", "g/b": "lz4", "g/c": "raw", "d": "raw"}
    assert _styles_of(save_bytes(tree, style="lz4")) == dict.fromkeys(["a", "d", "g/b", "g/c"], "lz4")
    assert _styles_of(save_bytes(tree, style=ndckpt.FrameStyle.RAW)) == dict.fromkeys(["a", "d", "g/b", "g/c"], "raw")
    assert _styles_of(save_bytes(tree, style=0)) == dict.fromkeys(["a", "d", "g/b", "g/c"], "raw")
    # A group's style applies below it; the most specific key wins.
    assert _styles_of(save_bytes(tree, style={"g": "lz4"})) == {"a": "raw", "g/b": "lz4", "g/c": "lz4", "d": "raw"}
    grouped = save_bytes(tree, style={"g": "lz4", "g/c": "raw", "a": "lz4"})
    assert _styles_of(grouped) == {"a": "lz4", "g/b": "lz4", "g/c": "raw", "d": "raw"}
    assert grouped == flat


@pytest.mark.parametrize(
    ("style", "exc", "match"),
    [
        ({"nope": "lz4"}, InvalidArgumentError, "nope"),
        ({"g/zz": "raw"}, InvalidArgumentError, "g/zz"),
        ({"g": {"zz": "raw"}}, InvalidArgumentError, "g/zz"),
        ({"a": "zstd"}, InvalidArgumentError, "zstd"),
        ({"a": 7}, InvalidArgumentError, "7 is not a frame style"),
        ("gzip", InvalidArgumentError, "gzip"),
        (3.0, InvalidArgumentError, "style"),
        (None, InvalidArgumentError, "style"),
    ],
)
def test_bad_style_rejected(style: Any, exc: type[Exception], match: str, tmp_path: Path) -> None:
    target = tmp_path / "s.ndckpt"
    with pytest.raises(exc, match=match):
        ndckpt.save(target, {"a": np.zeros(3), "g": {"b": np.zeros(3)}}, style=style)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# Determinism
# ----------------------------------------------------------------------------------------------


def _reorder(tree: dict[str, Any], rnd: Any) -> dict[str, Any]:
    """An equal mapping built with a different insertion order at every level."""
    items = list(tree.items())
    rnd.shuffle(items)
    return {k: _reorder(v, rnd) if isinstance(v, dict) else v for k, v in items}


@settings(max_examples=40)
@given(ts=trees_with_styles(), rnd=st.randoms(use_true_random=False))
def test_same_input_same_bytes_whatever_the_key_order(
    ts: tuple[dict[str, Any], dict[str, str]], rnd: Any, scratch: Path
) -> None:
    tree, styles = ts
    meta = {"z": 1, "a": [1, 2], "m": {"y": 0, "b": 1}}
    data = save_bytes(tree, style=styles, metadata=meta)
    assert save_bytes(tree, style=styles, metadata=meta) == data
    meta2 = dict(reversed(list(meta.items())))
    assert save_bytes(_reorder(tree, rnd), style=_reorder(styles, rnd), metadata=meta2) == data
    path = scratch / "det.ndckpt"
    ndckpt.save(path, tree, style=styles, metadata=meta)
    assert path.read_bytes() == data
    with open(path, "wb") as f:
        f.write(b"stale bytes that must not survive")
    ndckpt.save(str(path), tree, style=styles, metadata=meta)
    assert path.read_bytes() == data


def test_equal_arrays_at_different_addresses_give_equal_bytes() -> None:
    a = np.arange(1000, dtype=np.float32).reshape(20, 50)
    b = np.asfortranarray(a)  # same values, F order: stored differently, and says so
    c = a.copy()
    assert save_bytes({"x": a}) == save_bytes({"x": c})
    assert save_bytes({"x": a}) != save_bytes({"x": b})
    assert_same_array(ndckpt.load(save_bytes({"x": b}))["x"], b)


# ----------------------------------------------------------------------------------------------
# Unsupported inputs: a clear error naming the array, nothing written
# ----------------------------------------------------------------------------------------------

UNSUPPORTED = [
    pytest.param({"ok": np.ones(3), "bad": np.array([1, "x", None], dtype=object)}, "'bad'", id="object-array"),
    pytest.param(
        {"g": {"h": np.zeros(2, dtype=[("a", "<i4"), ("o", "O")])}}, "'g/h'", id="struct-with-object-field"
    ),
    pytest.param({"lst": [1, {2}, 3]}, "'lst'", id="python-list-of-a-set"),
    pytest.param({"s": "te\udcffxt"}, "'s'.*surrogate", id="python-str-lone-surrogate"),
    pytest.param({"f": {"x": 1, "y": object()}}, "'f/y'", id="dict-of-non-values"),
    pytest.param({1: np.ones(3)}, "1", id="int-key"),
    pytest.param({"": np.ones(3)}, "''", id="empty-key"),
    pytest.param({"a/b": np.ones(1), "a": {"b": np.ones(1)}}, "a/b", id="names-collide"),
    pytest.param({"v": np.zeros(3, "V0")}, "'v'", id="zero-size-void"),
    pytest.param({"g": {"m": np.ma.masked_array([1, 2], mask=[0, 1])}}, "'g/m'.*mask", id="masked-array"),
]


@pytest.mark.parametrize(("arrays", "match"), UNSUPPORTED)
def test_unsupported_input_rejected_and_nothing_written(arrays: Any, match: str, tmp_path: Path) -> None:
    target = tmp_path / "u.ndckpt"
    with pytest.raises(InvalidArgumentError, match=match):
        ndckpt.save(target, arrays)
    assert os.listdir(tmp_path) == [], "nothing may be left at the target"
    f = io.BytesIO()
    with pytest.raises(InvalidArgumentError, match=match):
        ndckpt.save(f, arrays)
    assert f.getvalue() == b"", "nothing may be written to a file object"


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_ndarray_subclasses_are_stored_as_plain_arrays(tmp_path: Path) -> None:
    mm = np.memmap(tmp_path / "mm.bin", dtype=">i2", mode="w+", shape=(3, 5), order="F")
    mm[:] = np.arange(15, dtype=">i2").reshape(3, 5)
    mat = np.matrix([[1.0, 2.0], [3.0, 4.0]])
    got = ndckpt.load(save_bytes({"mm": mm, "mat": mat}))
    assert type(got["mm"]) is np.ndarray
    assert type(got["mat"]) is np.ndarray
    assert_same_array(got["mm"], np.asarray(mm))
    assert_same_array(got["mat"], np.asarray(mat))


@pytest.mark.parametrize("arrays", [[np.ones(2)], np.ones(2), "x", None])
def test_arrays_must_be_a_mapping(arrays: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="mapping"):
        ndckpt.save(io.BytesIO(), arrays)
