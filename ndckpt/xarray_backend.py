"""The xarray backend: ``xr.open_dataset(path, engine="ndckpt")`` opens a stored Dataset lazily.

Registered as the ``xarray.backends`` entry point ``ndckpt`` (installed with
the package; xarray itself is the optional extra ``ndckpt[xarray]``), so
``xr.open_dataset(path)`` also finds it from the file's magic bytes.

What it opens: a Dataset or DataArray that :func:`ndckpt.save` stored as a
group (format §2.2.2). ``group=`` names that group ("fields", "run/state");
without it the file must hold exactly one. A DataArray opens as a Dataset of
one data variable (``xr.open_dataarray`` returns it).

Laziness: each numeric variable is backed by the checkpoint. Indexing one
reads only the frames that hold the selection (:meth:`ndckpt.Reader.read`
with ``region=``): RAW variables come back as zero-copy views of the mapped
file, LZ4 variables are decoded on access. Variables of strings (object
arrays) and array-valued attrs are read when the dataset is opened. The
file stays open until the dataset is closed (``ds.close()`` or a ``with``
block).

Errors: the typed errors of :func:`ndckpt.open` for a bad file;
InvalidArgumentError when ``group`` names nothing stored as an xarray object
or the file holds none (or several, without ``group``).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray, BackendEntrypoint
from xarray.core import indexing

from .api import Reader
from .api import open as open_checkpoint
from .container.objects import MARKER, decode_encoding, variable_data
from .container.spec import MAGIC
from .errors import InvalidArgumentError

__all__ = ["NdckptBackendEntrypoint"]


class _LazyVariable(BackendArray):
    """One stored array, read region by region (basic indexing; xarray applies the rest)."""

    def __init__(self, reader: Reader, name: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.reader, self.name, self.shape, self.dtype = reader, name, shape, dtype
        self.lock = threading.Lock()

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray[Any, Any]:
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.BASIC, self._read)  # type: ignore[no-any-return]

    def _read(self, key: tuple[Any, ...]) -> np.ndarray[Any, Any]:
        region: list[slice] = []
        after: list[Any] = []
        for k, n in zip(key, self.shape, strict=False):
            if isinstance(k, slice):
                start, stop, step = k.indices(n)
                if step < 0:  # read the covered run forward, then reverse it
                    lo, hi = (stop + 1, start + 1) if stop < start else (0, 0)
                    region.append(slice(lo, hi))
                    after.append(slice(None, None, step))
                else:
                    region.append(slice(start, max(start, stop)))
                    after.append(slice(None, None, step))
            else:
                i = int(k) + (n if int(k) < 0 else 0)
                region.append(slice(i, i + 1))
                after.append(0)
        if not self.shape:
            return np.asarray(self.reader.read(self.name))
        with self.lock:
            block = self.reader.read(self.name, region=tuple(region))
        return np.asarray(block[tuple(after)])


def _objects(reader: Reader) -> dict[str, str]:
    """Every group stored as an xarray object: its name -> its type."""
    found: dict[str, str] = {}
    for row in reader.value_info():
        name = row["name"]
        if name == MARKER or name.endswith("/" + MARKER):
            box = reader.read(name)
            if type(box) is list and len(box) == 1 and isinstance(box[0], dict):
                typ = box[0].get("type")
                if isinstance(typ, str) and typ.startswith("xarray."):
                    found[name[: -len(MARKER) - 1]] = typ
    return found


def _dataset(reader: Reader, group: str | None, drop: set[str]) -> xr.Dataset:
    found = _objects(reader)
    if group is None:
        if len(found) != 1:
            what = f"{len(found)} xarray objects: {sorted(found)}" if found else "no xarray Dataset or DataArray"
            raise InvalidArgumentError(f"the checkpoint holds {what}; name one with group=")
        group = next(iter(found))
    elif group.strip("/") not in found:
        raise InvalidArgumentError(
            f"group {group!r}: not an xarray Dataset or DataArray; the file holds {sorted(found)}"
        )
    group = group.strip("/")
    meta = reader.read(f"{group}/{MARKER}")[0]
    variables: dict[Any, Any] = {}
    coords: dict[Any, Any] = {}
    rows = {r["name"]: r for r in reader.info()}
    for i, m in enumerate(meta["vars"]):
        if m["role"] == "data" and m["name"] in drop:
            continue
        base = f"{group}/vars/{i}"
        attrs = dict(m.get("attrs", {}))
        for j, k in enumerate(m.get("array_attrs", [])):
            attrs[k] = np.asarray(reader.read(f"{base}/attrs/{j}"))
        if m["kind"] == "numpy" and f"{base}/data" in rows:
            row = rows[f"{base}/data"]
            lazy = _LazyVariable(reader, f"{base}/data", tuple(row["shape"]), _dtype_of(reader, row))
            data: Any = indexing.LazilyIndexedArray(lazy)
        else:  # strings: decoded now, as ndckpt.load does
            data = variable_data(m, functools.partial(_member, reader, base))
        var = xr.Variable(tuple(m["dims"]), data, attrs=attrs, encoding=decode_encoding(m.get("encoding", [])))
        name = m["name"] if m["name"] is not None else "__xarray_dataarray_variable__"  # xarray's own spelling
        (coords if m["role"] == "coord" else variables)[name] = var
    attrs = dict(meta.get("attrs", {}))
    for j, k in enumerate(meta.get("array_attrs", [])):
        attrs[k] = np.asarray(reader.read(f"{group}/attrs/{j}"))
    ds = xr.Dataset(variables, coords=coords, attrs=attrs)
    ds.encoding = decode_encoding(meta.get("encoding", []))
    return ds


def _member(reader: Reader, base: str, name: str) -> np.ndarray[Any, Any]:
    return np.asarray(reader.read(f"{base}/{name}"))


def _dtype_of(reader: Reader, row: dict[str, Any]) -> np.dtype[Any]:
    try:
        dt: np.dtype[Any] = np.dtype(row["dtype"])
        return dt
    except TypeError:  # a structured dtype, shown as its descr: ask the array itself (reads no frame)
        return np.asarray(reader.read(row["name"], region=(slice(0, 0),))).dtype


class NdckptBackendEntrypoint(BackendEntrypoint):
    """``engine="ndckpt"``: open a Dataset or DataArray stored in an ndckpt checkpoint, lazily."""

    description = "Open xarray objects stored in ndckpt checkpoints (lazy, zero-copy for RAW variables)"
    url = "https://github.com/ndckpt/ndckpt/blob/main/docs/ecosystem.md"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "group", "mmap", "verify")

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        if isinstance(filename_or_obj, str | os.PathLike):
            try:
                with open(filename_or_obj, "rb") as f:
                    return f.read(len(MAGIC)) == MAGIC
            except OSError:
                return False
        return False

    def open_dataset(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        group: str | None = None,
        mmap: bool = True,
        verify: bool | None = None,
    ) -> xr.Dataset:
        drop = {drop_variables} if isinstance(drop_variables, str) else set(drop_variables or ())
        reader = open_checkpoint(filename_or_obj, mmap=mmap, verify=verify)
        try:
            ds = _dataset(reader, group, drop)
        except BaseException:
            reader.close()
            raise
        ds.set_close(reader.close)
        return ds
