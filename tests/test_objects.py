"""Array-likes, pandas and xarray objects: saved as groups of arrays plus a description, loaded back exactly."""

from __future__ import annotations

import array
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ndckpt
from ndckpt.container.objects import MARKER, array_like, from_tree
from ndckpt.errors import FormatError, InvalidArgumentError

pd = pytest.importorskip("pandas")
xr = pytest.importorskip("xarray")


def roundtrip(x: Any, **kw: Any) -> Any:
    b = io.BytesIO()
    ndckpt.save(b, {"state": {"x": x}}, **kw)
    return ndckpt.load(b.getvalue())["state"]["x"]


def strict_frame(a: Any, b: Any) -> None:
    pd.testing.assert_frame_equal(
        a, b, check_exact=True, check_index_type=True, check_column_type=True, check_freq=True, check_flags=True
    )
    assert a.attrs.keys() == b.attrs.keys()


# ------------------------------------------------------------------ array-likes


class WithArray:
    def __init__(self, a: np.ndarray) -> None:
        self.a = a

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.a


class WithInterface:
    def __init__(self, a: np.ndarray) -> None:
        self.a = a
        self.__array_interface__ = a.__array_interface__


class WithDlpack:
    def __init__(self, a: np.ndarray) -> None:
        self.a = a

    def __dlpack__(self, **kw: Any) -> Any:
        return self.a.__dlpack__(**kw)

    def __dlpack_device__(self) -> Any:
        return self.a.__dlpack_device__()


class BrokenArray:
    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise RuntimeError("tensor is on cuda:0")


@pytest.mark.parametrize("wrap", [WithArray, WithInterface, WithDlpack, memoryview])
@pytest.mark.parametrize("style", ["raw", "lz4"])
def test_array_likes_are_stored_as_numpy_arrays_without_a_copy(wrap: Any, style: str) -> None:
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    obj = wrap(a)
    conv = array_like(obj)
    assert conv is not None
    assert np.shares_memory(conv, a)
    back = roundtrip(obj, style=style)
    assert type(back) is np.ndarray
    assert back.dtype == a.dtype
    assert back.shape == a.shape
    np.testing.assert_array_equal(back, a)


def test_buffers_keep_their_item_type() -> None:
    np.testing.assert_array_equal(roundtrip(array.array("d", [1.5, 2.5])), np.array([1.5, 2.5]))
    assert roundtrip(array.array("i", [1, 2])).dtype == np.dtype("i")
    np.testing.assert_array_equal(roundtrip(bytearray(b"xy")), np.frombuffer(b"xy", np.uint8))
    assert roundtrip(b"xy") == b"xy"  # bytes stay a value


def test_failing_conversion_names_the_array_and_writes_nothing(tmp_path: Any) -> None:
    target = tmp_path / "t.ndckpt"
    with pytest.raises(InvalidArgumentError, match=r"'gpu'.*BrokenArray.*cuda:0"):
        ndckpt.save(target, {"gpu": BrokenArray()})
    assert not target.exists()


# ------------------------------------------------------------------ pandas


def test_a_frame_with_every_supported_kind_of_column() -> None:
    df = pd.DataFrame(
        {
            "i": np.arange(6, dtype=np.int16),
            "f": np.array([0.5, np.nan, -0.0, np.inf, 1e300, 2.0]),
            "b": [True, False, True, True, False, False],
            "t": pd.date_range("2020-01-01", periods=6, freq="h"),
            "dt": pd.to_timedelta(np.arange(6), unit="s"),
            "tz": pd.date_range("2021-03-28", periods=6, freq="30min", tz="Europe/Berlin"),
            "c": pd.Categorical(["a", "b", "a", None, "c", "b"], ordered=True),
            "s": pd.array(["x", None, "é", "", "long string " * 10, "z"], dtype="string"),
            "n": pd.array([1, None, 3, 4, None, 6], dtype="Int64"),
            "nb": pd.array([True, None, False, True, None, False], dtype="boolean"),
        },
        index=pd.Index([10, 20, 30, 40, 50, 60], name="step"),
    )
    df["o"] = pd.Series(["a", None, np.nan, "b", "", "c"], dtype=object, index=df.index)
    df.attrs = {"units": "K", "n": 3}
    for style in ("raw", "lz4"):
        back = roundtrip(df, style=style)
        strict_frame(df, back)
        assert back.attrs == df.attrs
    assert [type(x) for x in roundtrip(df)["o"]] == [str, type(None), float, str, str, str]


@pytest.mark.parametrize(
    "index",
    [
        pd.RangeIndex(3, 15, 4, name="r"),
        pd.date_range("2020", periods=3, freq="D", name="d"),
        pd.date_range("2020", periods=3, tz="UTC"),
        pd.timedelta_range("1s", periods=3, freq="s"),
        pd.MultiIndex.from_product([["a", "b", "c"], [1]], names=["k", None]),
        pd.CategoricalIndex(["x", "y", "x"]),
        pd.Index(["p", "q", "r"], dtype=object),
        pd.Index([0.5, 1.5, 2.5]),
    ],
    ids=lambda i: type(i).__name__,
)
def test_index_kinds(index: Any) -> None:
    s = pd.Series(np.arange(3.0), index=index, name=("tuple", "name"))
    back = roundtrip(s)
    pd.testing.assert_series_equal(s, back, check_exact=True, check_index_type=True, check_freq=True)
    df = pd.DataFrame(np.arange(9).reshape(3, 3), index=index, columns=index)
    strict_frame(df, roundtrip(df))


def test_duplicate_and_non_string_column_labels() -> None:
    df = pd.DataFrame(np.arange(6).reshape(2, 3), columns=[1, 1, "a"])
    strict_frame(df, roundtrip(df))
    strict_frame(pd.DataFrame(), roundtrip(pd.DataFrame()))


_COLUMNS = st.sampled_from(["i8", "f4", "bool", "M8[ns]", "m8[ms]", "category", "string", "Int32", "object-str"])


def _column(kind: str, n: int, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    if kind == "category":
        return pd.Categorical(rng.choice(["a", "b", "c"], n))
    if kind == "string":
        return pd.array([None if x < 0.2 else f"s{x:.3f}" for x in rng.random(n)], dtype="string")
    if kind == "Int32":
        return pd.array([None if x < 0.3 else int(x * 100) for x in rng.random(n)], dtype="Int32")
    if kind == "object-str":
        return pd.Series([None if x < 0.2 else chr(0x41 + int(x * 1000)) for x in rng.random(n)], dtype=object)
    if kind in ("M8[ns]", "m8[ms]"):
        return rng.integers(-(2**40), 2**40, n).astype(kind)
    return (rng.random(n) * 1000).astype(kind)


@settings(max_examples=40, deadline=None)
@given(
    kinds=st.lists(_COLUMNS, max_size=5),
    n=st.integers(0, 300),
    seed=st.integers(0, 2**32 - 1),
    style=st.sampled_from(["raw", "lz4"]),
)
def test_random_frames_roundtrip_exactly(kinds: list[str], n: int, seed: int, style: str) -> None:
    df = pd.DataFrame({f"c{i}": _column(k, n, seed + i) for i, k in enumerate(kinds)}, index=pd.RangeIndex(n))
    strict_frame(df, roundtrip(df, style=style))


def test_frames_through_a_file_a_reader_and_a_manager(tmp_path: Any) -> None:
    df = pd.DataFrame({"a": np.arange(1000.0), "b": pd.Categorical(["x", "y"] * 500)})
    ndckpt.save(tmp_path / "f.ndckpt", {"df": df, "step": 3})
    strict_frame(df, ndckpt.load(tmp_path / "f.ndckpt")["df"])
    with ndckpt.open(tmp_path / "f.ndckpt") as r:
        strict_frame(df, r["df"])  # a marked group comes back as its object
        np.testing.assert_array_equal(r.read("df/data/0/data"), df["a"].to_numpy())  # its arrays stay readable
        strict_frame(df, r.load()["df"])
    mgr = ndckpt.CheckpointManager(tmp_path / "ck", keep=2)
    mgr.save(1, {"df": df})
    strict_frame(df, mgr.restore()["df"])
    mgr.close()


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        (pd.DataFrame({"o": [{"a": 1}, 2]}), r"column 'o': item 0 is a dict"),
        (pd.Series([1, 2], index=pd.period_range("2020", periods=2, freq="M")), r"PeriodIndex is not stored"),
        (pd.Series(pd.arrays.IntervalArray.from_breaks([0, 1, 2])), r"dtype interval.* is not stored"),
        (pd.DataFrame({"a": [1]}).set_flags(allows_duplicate_labels=True).pipe(
            lambda d: d.__setattr__("attrs", {1: "x"}) or d), r"attrs key 1 is a int"),
    ],
)
def test_what_cannot_be_kept_is_refused(tmp_path: Any, obj: Any, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        ndckpt.save(tmp_path / "x.ndckpt", {"x": obj})
    assert not (tmp_path / "x.ndckpt").exists()


@pytest.mark.parametrize("leaf", [[1], np.zeros(2), {"a": np.zeros(1)}, [{"kind": 1}], "pandas.DataFrame"])
def test_the_marker_name_is_reserved(leaf: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="reserved"):
        ndckpt.save(io.BytesIO(), {"g": {MARKER: leaf}})


def test_objects_through_an_async_manager(tmp_path: Path) -> None:
    """The staged copy of a state is a plain tree holding the descriptions: saved as the object would be."""
    df = pd.DataFrame({"a": np.arange(5.0), "c": pd.Categorical(list("abcab"))})
    ds = _dataset()
    with ndckpt.CheckpointManager(tmp_path / "ck", async_save=True, keep=2) as mgr:
        mgr.save(1, {"df": df, "ds": ds})
        mgr.wait()
        got = mgr.restore()
    strict_frame(df, got["df"])
    xr.testing.assert_identical(ds, got["ds"])


def test_without_pandas_a_reader_gets_the_arrays_and_a_warning(monkeypatch: Any) -> None:
    b = io.BytesIO()
    ndckpt.save(b, {"s": pd.Series([1.0, 2.0])})
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.warns(UserWarning, match="pandas is not installed"):
        got = ndckpt.load(b.getvalue())["s"]
    assert isinstance(got, dict)
    assert MARKER in got
    np.testing.assert_array_equal(got["values"]["data"], [1.0, 2.0])


@pytest.mark.parametrize(
    ("box", "match"),
    [
        ([{"type": "pandas.Series", "version": 99}], "version 99; upgrade ndckpt"),
        ([{"type": "pandas.Panel", "version": 1}], "unknown object type 'pandas.Panel'"),
        ({"type": "pandas.Series"}, "not an object description"),
        ([{"type": "pandas.Series", "version": 1, "index": {"index": "bogus"}}], "malformed pandas.Series"),
    ],
)
def test_malformed_descriptions_are_format_errors(box: Any, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        from_tree({MARKER: box}, "g")


def test_corrupt_string_offsets_are_format_errors() -> None:
    group = {MARKER: [{"type": "pandas.Series", "version": 1, "name": None, "attrs": {},
                       "index": {"index": "range", "start": 0, "stop": 2, "step": 1, "name": None},
                       "values": {"kind": "string", "storage": "python", "na": "NA"}}],
             "index": {}, "values": {"utf8": np.frombuffer(b"abc", np.uint8),
                                     "offsets": np.array([0, 5, 3]), "missing": np.zeros(2, np.uint8)}}
    with pytest.raises(FormatError, match="offsets do not tile"):
        from_tree(group, "s")


# ------------------------------------------------------------------ xarray


def _dataset() -> Any:
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {
            "T": (("time", "x", "y"), rng.random((4, 3, 5)), {"units": "K", "valid_range": np.array([0.0, 1.0])}),
            "mask": (("x", "y"), rng.random((3, 5)) > 0.5),
            "name": ("x", np.array(["a", "bb", "ccc"], dtype=object)),
        },
        coords={
            "time": pd.date_range("2020-01-01", periods=4, freq="6h"),
            "x": [10, 20, 30],
            "y": np.linspace(0, 1, 5),
            "lat": (("x", "y"), rng.random((3, 5))),  # multi-dimensional, non-index
            "station": ("x", ["s1", "s2", "s3"]),  # non-index
        },
        attrs={"title": "test", "version": 2, "scale": np.float32(0.5)},
    )


@pytest.mark.parametrize("style", ["raw", "lz4"])
def test_datasets_and_dataarrays_roundtrip_identically(style: str) -> None:
    ds = _dataset()
    back = roundtrip(ds, style=style)
    xr.testing.assert_identical(ds, back)
    assert list(back.data_vars) == list(ds.data_vars)
    assert list(back.coords) == list(ds.coords)
    np.testing.assert_array_equal(back["T"].attrs["valid_range"], [0.0, 1.0])
    for da in (ds["T"], ds["T"].rename(None), xr.DataArray(np.arange(3), dims="z")):
        got = roundtrip(da, style=style)
        xr.testing.assert_identical(da, got)
        assert got.name == da.name


def test_xarray_encoding_is_kept() -> None:
    ds = _dataset()
    ds["T"].encoding = {"dtype": np.dtype("int16"), "scale_factor": 0.01, "_FillValue": -999, "chunksizes": (2, 3, 5),
                        "zlib": True, "source": "/data/x.nc"}
    ds.encoding = {"source": "/data/x.nc", "format": "NETCDF4"}
    back = roundtrip(ds)
    assert back["T"].encoding == ds["T"].encoding
    assert back.encoding == ds.encoding
    bad = _dataset()
    bad["T"].encoding = {"filters": object()}
    with pytest.raises(InvalidArgumentError, match=r"encoding"):
        ndckpt.save(io.BytesIO(), {"ds": bad})


def test_dataset_nested_in_a_state_with_a_frame(tmp_path: Any) -> None:
    state = {"fields": _dataset(), "table": pd.DataFrame({"a": [1, 2]}), "step": 7}
    ndckpt.save(tmp_path / "s.ndckpt", state)
    back = ndckpt.load(tmp_path / "s.ndckpt")
    xr.testing.assert_identical(state["fields"], back["fields"])
    strict_frame(state["table"], back["table"])
    assert back["step"] == 7


def test_xarray_multiindex_is_refused() -> None:
    ds = xr.Dataset({"v": ("z", [1, 2, 3, 4])}, coords={"a": ("z", [1, 1, 2, 2]), "b": ("z", [1, 2, 1, 2])})
    ds = ds.set_index(z=["a", "b"])
    with pytest.raises(InvalidArgumentError, match="PandasMultiIndex"):
        ndckpt.save(io.BytesIO(), {"ds": ds})
