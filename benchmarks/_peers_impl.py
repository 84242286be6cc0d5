"""One small adapter per peer of the ndckpt peer benchmark (``benchmarks/peers.py``).

A peer is one way a user could save a dict of numpy arrays to a file and get it
back: ndckpt itself, a plain ``f.write`` reference, and the libraries users would
pick instead (numpy .npy/.npz, safetensors, joblib, blosc2, h5py). Each adapter is
the call a user would write, with the library's defaults except where the issue
fixes a setting (codec, compression level, thread count).

Every adapter has the same three entry points:

- ``save(path, arrays)`` writes the dict ``arrays`` (name -> C-contiguous array);
- ``load(path, layout)`` returns a dict of in-memory arrays;
- ``mmap(path, layout)`` (optional) returns a dict of arrays usable right away
  whose pages are read lazily (the "time to a usable dict").

``layout`` lists ``(name, dtype, shape)`` of what was saved. Only the plain
reference, which writes no metadata, needs it; the library adapters ignore it.

Libraries are imported lazily (``Peer.prepare``), so a worker pays only for the
library it measures, and its import never counts in the timed call.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from _datasets import aligned_empty

Arrays = dict[str, np.ndarray[Any, Any]]
Layout = list[tuple[str, str, tuple[int, ...]]]
SaveFn = Callable[[str, Arrays], None]
LoadFn = Callable[[str, Layout], Arrays]

_IO_STEP = 1 << 30  # bytes per os-level read/write call (Linux caps one call near 2 GiB)


@dataclass(frozen=True)
class Peer:
    """One row of the benchmark tables.

    ``family`` is "plain" (the f.write reference), "ndckpt", "raw" (an uncompressed
    peer) or "compressed". ``threads`` is the thread count the peer was configured
    with, or None when the library has no such knob (single-threaded).
    ``single_array`` peers store one array per file, so they do not run on the
    many-small dataset. ``slow`` peers only run when named in ``--peers`` or at
    sizes up to 256 MiB outside ``--quick``. ``optional`` peers only run when named.
    Peers with ``quick=False`` are left out of ``--quick`` unless named.
    """

    name: str
    title: str
    module: str
    ext: str
    family: str
    threads: int | None
    save: SaveFn
    load: LoadFn
    mmap: LoadFn | None = None
    single_array: bool = False
    slow: bool = False
    optional: bool = False
    quick: bool = True

    @property
    def compressed(self) -> bool:
        return self.family == "compressed" or self.name.startswith("ndckpt_lz4")

    def unavailable(self) -> str | None:
        """Why this peer cannot run here, or None when it can."""
        if importlib.util.find_spec(self.module.split(".")[0]) is None:
            return f"{self.module} is not installed (pip install -e '.[bench]')"
        if self.family == "ndckpt":
            ndckpt = importlib.import_module("ndckpt")
            if not hasattr(ndckpt, "save"):
                return "ndckpt.save not available yet"
        return None

    def prepare(self) -> str:
        """Import the peer's library (untimed); return its version."""
        mod = importlib.import_module(self.module)
        top = importlib.import_module(self.module.split(".")[0])
        return str(getattr(mod, "__version__", getattr(top, "__version__", "?")))


# --- helpers -------------------------------------------------------------------------


def _bytes_of(arr: np.ndarray[Any, Any]) -> memoryview:
    return memoryview(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))


def _write_all(f: Any, mv: memoryview) -> None:
    while mv:
        n = f.write(mv[:_IO_STEP])
        mv = mv[n:]


def _readinto_all(f: Any, mv: memoryview) -> None:
    while mv:
        n = f.readinto(mv[:_IO_STEP])
        if not n:
            raise EOFError(f"file ended with {len(mv)} bytes still expected")
        mv = mv[n:]


def _views(buf: np.ndarray[Any, Any], layout: Layout) -> Arrays:
    """Arrays of ``layout`` laid end to end in the byte buffer ``buf``."""
    out: Arrays = {}
    off = 0
    for name, dtype, shape in layout:
        dt = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        out[name] = np.ndarray(shape, dtype=dt, buffer=buf, offset=off)
        off += n
    return out


def _total_nbytes(layout: Layout) -> int:
    return sum(int(np.prod(s, dtype=np.int64)) * np.dtype(d).itemsize for _, d, s in layout)


def _only(arrays: Arrays) -> tuple[str, np.ndarray[Any, Any]]:
    if len(arrays) != 1:
        raise ValueError(f"this peer stores one array per file, got {len(arrays)}")
    return next(iter(arrays.items()))


# --- plain f.write reference ---------------------------------------------------------


def _plain_save(path: str, arrays: Arrays) -> None:
    with open(path, "wb", buffering=0) as f:
        for arr in arrays.values():
            _write_all(f, _bytes_of(arr))


def _plain_fsync_save(path: str, arrays: Arrays) -> None:
    """What a durable save costs at least: the same writes, then fsync (ndckpt.save also renames)."""
    with open(path, "wb", buffering=0) as f:
        for arr in arrays.values():
            _write_all(f, _bytes_of(arr))
        os.fsync(f.fileno())


def _plain_load(path: str, layout: Layout) -> Arrays:
    buf = aligned_empty(_total_nbytes(layout))
    with open(path, "rb", buffering=0) as f:
        _readinto_all(f, memoryview(buf))
    return _views(buf, layout)


def _plain_mmap(path: str, layout: Layout) -> Arrays:
    return _views(np.memmap(path, dtype=np.uint8, mode="r"), layout)


# --- ndckpt --------------------------------------------------------------------------


def _ndckpt() -> Any:
    return importlib.import_module("ndckpt")


def _ndckpt_save(style: str, threads: int, durable: bool = True) -> SaveFn:
    def save(path: str, arrays: Arrays) -> None:
        _ndckpt().save(path, arrays, style=style, threads=threads, durable=durable)

    return save


def _ndckpt_load(threads: int, verify: bool | None = None) -> LoadFn:
    def load(path: str, layout: Layout) -> Arrays:
        return dict(_ndckpt().load(path, mmap=False, threads=threads, verify=verify))

    return load


def _ndckpt_mmap(path: str, layout: Layout) -> Arrays:
    return dict(_ndckpt().load(path, mmap=True))


# --- numpy ---------------------------------------------------------------------------


def _npy_save(path: str, arrays: Arrays) -> None:
    np.save(path, _only(arrays)[1])


def _npy_load(path: str, layout: Layout) -> Arrays:
    return {layout[0][0]: np.load(path)}


def _npy_mmap(path: str, layout: Layout) -> Arrays:
    return {layout[0][0]: np.load(path, mmap_mode="r")}


def _npz_save(path: str, arrays: Arrays) -> None:
    np.savez(path, **arrays)


def _npz_compressed_save(path: str, arrays: Arrays) -> None:
    np.savez_compressed(path, **arrays)


def _npz_load(path: str, layout: Layout) -> Arrays:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


# --- safetensors ---------------------------------------------------------------------


def _st_save(path: str, arrays: Arrays) -> None:
    importlib.import_module("safetensors.numpy").save_file(arrays, path)


def _st_load(path: str, layout: Layout) -> Arrays:
    return dict(importlib.import_module("safetensors.numpy").load_file(path))


def _st_mmap(path: str, layout: Layout) -> Arrays:
    safe_open = importlib.import_module("safetensors").safe_open
    with safe_open(path, framework="np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)


# --- joblib --------------------------------------------------------------------------


def _joblib() -> Any:
    return importlib.import_module("joblib")


def _joblib_save(compress: Any) -> SaveFn:
    def save(path: str, arrays: Arrays) -> None:
        _joblib().dump(arrays, path, compress=compress)

    return save


def _joblib_load(path: str, layout: Layout) -> Arrays:
    return dict(_joblib().load(path))


def _joblib_mmap(path: str, layout: Layout) -> Arrays:
    return dict(_joblib().load(path, mmap_mode="r"))


# --- blosc2 --------------------------------------------------------------------------


def _blosc2_params(shuffle: bool, threads: int) -> tuple[Any, Any]:
    b2 = importlib.import_module("blosc2")
    filt = b2.Filter.SHUFFLE if shuffle else b2.Filter.NOFILTER
    cparams = b2.CParams(codec=b2.Codec.LZ4, clevel=5, filters=[filt], nthreads=threads)
    return cparams, b2.DParams(nthreads=threads)


def _blosc2_frame_save(shuffle: bool, threads: int) -> SaveFn:
    def save(path: str, arrays: Arrays) -> None:
        cparams, dparams = _blosc2_params(shuffle, threads)
        importlib.import_module("blosc2").save_array(
            _only(arrays)[1], path, mode="w", cparams=cparams, dparams=dparams
        )

    return save


def _blosc2_frame_load(threads: int) -> LoadFn:
    def load(path: str, layout: Layout) -> Arrays:
        _, dparams = _blosc2_params(False, threads)
        return {layout[0][0]: importlib.import_module("blosc2").load_array(path, dparams=dparams)}

    return load


def _blosc2_nd_save(shuffle: bool, threads: int) -> SaveFn:
    def save(path: str, arrays: Arrays) -> None:
        cparams, dparams = _blosc2_params(shuffle, threads)
        importlib.import_module("blosc2").asarray(
            _only(arrays)[1], urlpath=path, mode="w", cparams=cparams, dparams=dparams
        )

    return save


def _blosc2_nd_load(threads: int) -> LoadFn:
    def load(path: str, layout: Layout) -> Arrays:
        _, dparams = _blosc2_params(False, threads)
        return {layout[0][0]: importlib.import_module("blosc2").open(path, dparams=dparams)[()]}

    return load


# --- h5py ----------------------------------------------------------------------------


def _h5_save(path: str, arrays: Arrays) -> None:
    with importlib.import_module("h5py").File(path, "w") as f:
        for name, arr in arrays.items():
            f.create_dataset(name, data=arr)


def _h5_load(path: str, layout: Layout) -> Arrays:
    with importlib.import_module("h5py").File(path, "r") as f:
        return {name: f[name][()] for name in f}


# --- the catalogue -------------------------------------------------------------------


def make_peers(threads: int) -> dict[str, Peer]:
    """All peers, by name, in table order; multi-threaded ones at 1 and ``threads`` threads."""
    ts = sorted({1, threads})
    peers = [
        Peer("plain_write", "f.write of the bytes / readinto page-aligned / np.memmap",
             "numpy", ".bin", "plain", None, _plain_save, _plain_load, _plain_mmap),
        Peer("plain_fsync", "f.write of the bytes + os.fsync (the floor of a durable save)",
             "numpy", ".bin", "plain", None, _plain_fsync_save, _plain_load),
    ]
    peers.extend(
        Peer(f"ndckpt_raw_t{t}", f"ndckpt.save(style='raw', threads={t}) / load(mmap=False|True)",
             "ndckpt", ".ndckpt", "ndckpt", t, _ndckpt_save("raw", t), _ndckpt_load(t),
             _ndckpt_mmap if t == threads else None)
        for t in ts
    )
    peers.extend(
        Peer(f"ndckpt_lz4_t{t}", f"ndckpt.save(style='lz4', threads={t}) / load",
             "ndckpt", ".ndckpt", "ndckpt", t, _ndckpt_save("lz4", t), _ndckpt_load(t))
        for t in ts
    )
    # Like for like with plain f.write, np.save and safetensors, which do not fsync: ndckpt's
    # default save fsyncs the file and its directory (durable; free on tmpfs, not on a disk).
    peers.extend(
        Peer(f"ndckpt_rawnd_t{t}", f"ndckpt.save(style='raw', threads={t}, durable=False) / load(mmap=False)",
             "ndckpt", ".ndckpt", "ndckpt", t, _ndckpt_save("raw", t, durable=False), _ndckpt_load(t),
             optional=True)
        for t in ts
    )
    # Like for like with blosc2, which keeps no checksums: ndckpt's default load checks the
    # XXH64 of every LZ4 frame (about 10 GB/s of one core); this one is told not to.
    peers.extend(
        Peer(f"ndckpt_lz4nv_t{t}", f"ndckpt.save(style='lz4', threads={t}) / load(verify=False)",
             "ndckpt", ".ndckpt", "ndckpt", t, _ndckpt_save("lz4", t), _ndckpt_load(t, verify=False),
             optional=True)
        for t in ts
    )
    peers += [
        Peer("npy", "np.save / np.load (mmap_mode='r')", "numpy", ".npy", "raw", None,
             _npy_save, _npy_load, _npy_mmap, single_array=True),
        Peer("npz", "np.savez / np.load", "numpy", ".npz", "raw", None, _npz_save, _npz_load),
        Peer("npz_compressed", "np.savez_compressed / np.load", "numpy", ".npz", "compressed",
             None, _npz_compressed_save, _npz_load, slow=True),
        Peer("safetensors", "safetensors.numpy save_file / load_file (safe_open)",
             "safetensors.numpy", ".safetensors", "raw", None, _st_save, _st_load, _st_mmap),
        Peer("joblib_raw", "joblib.dump / load (mmap_mode='r')", "joblib", ".joblib", "raw",
             None, _joblib_save(0), _joblib_load, _joblib_mmap),
        Peer("joblib_lz4", "joblib.dump(compress=('lz4', 1)) / load", "joblib", ".joblib",
             "compressed", None, _joblib_save(("lz4", 1)), _joblib_load),
    ]
    for shuffle in (False, True):
        tag = "lz4shuf" if shuffle else "lz4"
        filt = "SHUFFLE" if shuffle else "NOFILTER"
        for t in ts:
            peers.append(Peer(f"blosc2_{tag}_t{t}",
                              f"blosc2.save_array / load_array, LZ4 clevel 5 {filt}, nthreads={t}",
                              "blosc2", ".b2frame", "compressed", t,
                              _blosc2_frame_save(shuffle, t), _blosc2_frame_load(t),
                              single_array=True, quick=not shuffle))
        for t in ts:
            peers.append(Peer(f"blosc2nd_{tag}_t{t}",
                              f"blosc2.asarray(urlpath) / open()[()], LZ4 clevel 5 {filt}, nthreads={t}",
                              "blosc2", ".b2nd", "compressed", t,
                              _blosc2_nd_save(shuffle, t), _blosc2_nd_load(t),
                              single_array=True, optional=True))
    peers.append(Peer("h5py", "h5py create_dataset (contiguous, uncompressed) / [()]", "h5py",
                      ".h5", "raw", None, _h5_save, _h5_load))
    return {p.name: p for p in peers}
