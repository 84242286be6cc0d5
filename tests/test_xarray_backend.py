"""xr.open_dataset(path, engine="ndckpt"): lazy, reads only the frames a selection needs."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ndckpt
from ndckpt.errors import InvalidArgumentError

xr = pytest.importorskip("xarray")
pd = pytest.importorskip("pandas")
from ndckpt.xarray_backend import NdckptBackendEntrypoint  # noqa: E402

ENGINE = NdckptBackendEntrypoint


def _ds() -> Any:
    rng = np.random.default_rng(1)
    return xr.Dataset(
        {
            "T": (("t", "x"), rng.random((700, 300)), {"units": "K", "range": np.array([0.0, 1.0])}),
            "q": (("t",), np.arange(700, dtype=np.int32)),
            "label": (("x",), np.array([f"p{i}" for i in range(300)], dtype=object)),
        },
        coords={"t": pd.date_range("2026-01-01", periods=700, freq="min"), "x": np.linspace(0, 1, 300)},
        attrs={"title": "lazy"},
    )


@pytest.fixture(params=["raw", "lz4"])
def saved(request: Any, tmp_path: Path) -> tuple[Path, Any, str]:
    ds = _ds()
    path = tmp_path / f"{request.param}.ndckpt"
    ndckpt.save(path, {"fields": ds, "step": 3, "other": np.zeros(4)}, style=request.param)
    return path, ds, request.param


def test_open_dataset_is_identical_and_lazy(saved: tuple[Path, Any, str], monkeypatch: Any) -> None:
    path, ds, style = saved
    calls: list[tuple[str, Any]] = []
    real = ndckpt.Reader.read

    def spy(self: Any, name: Any, out: Any = None, *, region: Any = None) -> Any:
        calls.append((name, region))
        return real(self, name, out, region=region)

    monkeypatch.setattr(ndckpt.Reader, "read", spy)
    with xr.open_dataset(path, engine=ENGINE) as opened:
        assert not [c for c in calls if c[0] == "fields/vars/0/data"]  # T not read at open
        part = opened["T"][100:110, 5:50:7].values
        np.testing.assert_array_equal(part, ds["T"].values[100:110, 5:50:7])
        reads = [r for n, r in calls if n == "fields/vars/0/data"]
        assert reads == [(slice(100, 110), slice(5, 50))]  # only the selection's rows and columns
        np.testing.assert_array_equal(opened["T"][-1, ::-3].values, ds["T"].values[-1, ::-3])
        np.testing.assert_array_equal(opened["T"].isel(t=[1, 5, 699]).values, ds["T"].values[[1, 5, 699]])
        full = opened["T"].values
        assert full.flags.writeable is (style != "raw")  # RAW: a read-only view of the mapped file
        xr.testing.assert_identical(opened.load(), ds)


def test_open_dataarray_and_group_selection(tmp_path: Path) -> None:
    ds = _ds()
    path = tmp_path / "two.ndckpt"
    ndckpt.save(path, {"a": ds, "b": {"T": ds["T"]}, "unnamed": ds["q"].rename(None)})
    with pytest.raises(InvalidArgumentError, match=r"3 xarray objects.*group="):
        xr.open_dataset(path, engine=ENGINE)
    with pytest.raises(InvalidArgumentError, match=r"group 'nope': not an xarray"):
        xr.open_dataset(path, engine=ENGINE, group="nope")
    with xr.open_dataset(path, engine=ENGINE, group="a", drop_variables="q") as opened:
        xr.testing.assert_identical(opened.load(), ds.drop_vars("q"))
    with xr.open_dataarray(path, engine=ENGINE, group="b/T") as da:
        xr.testing.assert_identical(da.load(), ds["T"])
    with xr.open_dataarray(path, engine=ENGINE, group="unnamed") as da:
        assert da.name is None
        xr.testing.assert_identical(da.load(), ds["q"].rename(None))


def test_a_file_without_xarray_objects_is_refused(tmp_path: Path) -> None:
    ndckpt.save(tmp_path / "plain.ndckpt", {"u": np.zeros(3)})
    with pytest.raises(InvalidArgumentError, match="no xarray Dataset or DataArray"):
        xr.open_dataset(tmp_path / "plain.ndckpt", engine=ENGINE)


def test_guess_can_open_reads_the_magic(tmp_path: Path) -> None:
    ndckpt.save(tmp_path / "x.bin", {"ds": _ds()})
    (tmp_path / "other.bin").write_bytes(b"CDF\x01" + bytes(100))
    assert ENGINE().guess_can_open(tmp_path / "x.bin")
    assert ENGINE().guess_can_open(str(tmp_path / "x.bin"))
    assert not ENGINE().guess_can_open(tmp_path / "other.bin")
    assert not ENGINE().guess_can_open(tmp_path / "missing.bin")


def test_the_entry_point_is_installed_and_guessed(tmp_path: Path) -> None:
    eps = importlib.metadata.entry_points(group="xarray.backends")
    assert "ndckpt" in eps.names, "reinstall the package (pip install -e .) to register the entry point"
    ndckpt.save(tmp_path / "x.anything", {"ds": _ds()})
    with xr.open_dataset(tmp_path / "x.anything") as opened:  # engine guessed from the magic bytes
        xr.testing.assert_identical(opened.load(), _ds())


def test_encoding_reaches_the_lazy_dataset(tmp_path: Path) -> None:
    ds = _ds()
    ds["T"].encoding = {"dtype": np.dtype("float32"), "zlib": True}
    ndckpt.save(tmp_path / "e.ndckpt", {"fields": ds})
    with xr.open_dataset(tmp_path / "e.ndckpt", engine=ENGINE) as opened:
        assert opened["T"].encoding == ds["T"].encoding
