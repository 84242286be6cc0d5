"""Stored arrays as lazy dask arrays whose chunks follow the checkpoint's frames.

Saving needs no helper: ``ndckpt.save(path, {"x": dask_array})`` (also inside
an xarray Dataset) computes the array one block row along axis 0 at a time
while the frames are written, so memory stays within a few block rows
(:class:`ndckpt.container.plan.DaskBytes`). Loading is :func:`from_checkpoint`.

dask is the caller's dependency (``pip install dask``); this module imports it
when called.

Example
-------
>>> import io, numpy as np, dask.array as da, ndckpt
>>> from ndckpt.daskarray import from_checkpoint
>>> f = io.BytesIO()
>>> ndckpt.save(f, {"x": da.arange(12.0, chunks=4).reshape(3, 4)}, style="lz4")
>>> with ndckpt.open(f.getvalue()) as r:
...     x = from_checkpoint(r, "x")
...     print(x.chunks, float(x[1:].sum().compute()))
((3,), (4,)) 60.0
"""

from __future__ import annotations

import importlib
import math
from typing import Any

from .api import Reader
from .errors import InvalidArgumentError

__all__ = ["from_checkpoint"]


class _Frames:
    """What dask slices: one stored array, read region by region (only the frames a chunk needs)."""

    def __init__(self, reader: Reader, name: str, shape: tuple[int, ...], dtype: Any) -> None:
        self.reader, self.name, self.shape, self.dtype, self.ndim = reader, name, shape, dtype, len(shape)

    def __getitem__(self, key: tuple[slice, ...]) -> Any:
        if not self.shape:
            return self.reader.read(self.name)
        region = tuple(slice(*k.indices(n)[:2]) for k, n in zip(key, self.shape, strict=True))
        return self.reader.read(self.name, region=region)


def from_checkpoint(reader: Reader, name: str, *, rows: int | None = None) -> Any:
    """The array ``name`` of an open checkpoint as a lazy ``dask.array.Array``.

    Chunks split axis 0 only, into runs of ``rows`` rows; by default as many
    rows as one of the array's frames holds, so each chunk reads about one
    frame (RAW frames: zero-copy views of the mapped file; LZ4 frames:
    decoded when the chunk is computed). The reader must stay open while the
    array is computed. KeyError for an unknown name; InvalidArgumentError for
    ``rows`` < 1.
    """
    da = importlib.import_module("dask.array")
    row = next((r for r in reader.info() if r["name"] == name), None)
    if row is None:
        raise KeyError(name)
    shape = tuple(int(n) for n in row["shape"])
    probe = reader.read(name, region=(slice(0, 0),)) if shape else reader.read(name)
    if rows is None:
        row_nbytes = max(1, math.prod(shape[1:]) * probe.dtype.itemsize)
        frame_nbytes = -(-row["nbytes"] // max(1, len(row["frames"])))
        rows = max(1, frame_nbytes // row_nbytes)
    if type(rows) is not int or rows < 1:
        raise InvalidArgumentError(f"rows: expected a positive int, got {rows!r}")
    chunks = (min(rows, shape[0]) or 1, *shape[1:]) if shape else ()
    source = _Frames(reader, name, shape, probe.dtype)
    meta = probe[:0] if shape else probe
    key = f"ndckpt-{name}-{id(reader):x}"
    return da.from_array(source, chunks=chunks, name=key, asarray=False, fancy=False, meta=meta)
