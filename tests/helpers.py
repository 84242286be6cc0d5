"""The helpers the tests share: trees, in-memory saves, exact comparisons, and every reader.

The shared test modules, each with one job:

- ``forge.py``: files byte by byte (parse a valid file into its structures, build a valid or
  hostile one with every checksum recomputed, save with small frames);
- ``strategies.py``: hypothesis strategies and the engine replay helpers;
- ``fdvectors.py``: the golden fd_checkpt vectors;
- ``hostile.py`` (and its runner ``hostile_run.py``): the attack run's file generator, which
  imports nothing of ndckpt on purpose (its own XXH64, JSON and LZ4 framing), so that it shares
  no bug with the writer or the reader; it keeps its own copies of what this module has;
- this module: everything else a test needs from another: flattening and nesting trees,
  saving into memory, digests and exact equality of results, :data:`READERS` (the one table
  of the ways to read a file; a test that needs some of them picks them by name), the CLI in
  process, and the MPI launcher probe.

The one private name used is ``ndckpt._lz4.xxh64`` (a fast hash for :func:`digest`).
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from forge import Unseekable

import ndckpt
from ndckpt import cli
from ndckpt._lz4 import xxh64

__all__ = [
    "MPI_EXTRA",
    "READERS",
    "Reader",
    "assert_same_array",
    "assert_same_tree",
    "assert_same_value",
    "digest",
    "dtype_key",
    "flat",
    "flatten_tree",
    "leftovers",
    "logical_bytes",
    "mpiexec",
    "nest",
    "readers",
    "run_main",
    "save_bytes",
    "void_view",
]

# ----------------------------------------------------------------------------------------------
# Trees
# ----------------------------------------------------------------------------------------------


def flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested result -> ``{"a/b": leaf}``; empty groups are left out."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def nest(leaves: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flat`: ``{"a/b": leaf}`` -> ``{"a": {"b": leaf}}``."""
    out: dict[str, Any] = {}
    for name, v in leaves.items():
        node = out
        *groups, leaf = name.split("/")
        for g in groups:
            node = node.setdefault(g, {})
        node[leaf] = v
    return out


def flatten_tree(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """``{path: array or {} }`` for every array and every empty group of a nested mapping."""
    out: dict[tuple[str, ...], Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(flatten_tree(v, (*prefix, k)))
        else:
            out[(*prefix, k)] = v
    return out


def save_bytes(tree: Any, **kw: Any) -> bytes:
    """``ndckpt.save(BytesIO, tree, **kw)``: the bytes the writer makes with its own frame plan
    (``forge.save_small_frames`` forces small frames instead)."""
    f = io.BytesIO()
    ndckpt.save(f, tree, **kw)
    return f.getvalue()


def digest(tree: Mapping[str, Any]) -> dict[str, str]:
    """``{"a/b": dtype, shape and XXH64 of the bytes}`` for every leaf of a nested tree: equal
    digests mean equal arrays, and a digest is small enough to compare across threads."""
    out: dict[str, str] = {}
    for k, v in flat(tree).items():
        a = np.asarray(v)
        out[k] = f"{a.dtype.str}{a.shape}{xxh64(np.ascontiguousarray(a).view(np.uint8)):x}"
    return out


# ----------------------------------------------------------------------------------------------
# Exact equality
# ----------------------------------------------------------------------------------------------


def void_view(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``a`` viewed as opaque items of its itemsize (compares every byte, padding included)."""
    return a.view(np.dtype((np.void, a.dtype.itemsize))) if a.dtype.itemsize else a


def logical_bytes(a: np.ndarray[Any, Any]) -> bytes:
    """The bytes of ``a``'s items in C index order, padding included, whatever its memory layout."""
    return np.ascontiguousarray(void_view(a)).tobytes()


def dtype_key(dt: np.dtype[Any]) -> Any:
    """Everything that defines a dtype's layout: str, fields with offsets and titles, subarrays, alignment."""
    if dt.subdtype is not None:
        return ("sub", dtype_key(dt.subdtype[0]), dt.subdtype[1])
    if dt.names is None:
        return ("plain", dt.str)
    fields = dt.fields
    assert fields is not None
    return (
        "struct",
        dt.itemsize,
        dt.isalignedstruct,
        tuple((n, dtype_key(fields[n][0]), fields[n][1], fields[n][2:]) for n in dt.names),
    )


def assert_same_array(got: Any, want: np.ndarray[Any, Any], what: str = "array") -> None:
    """``got`` equals ``want`` exactly: type, dtype (byte order, fields, offsets), shape, bytes, memory order.

    A C- (or F-) contiguous ``want`` must come back C- (or F-) contiguous; a non-contiguous one
    comes back contiguous in some order.
    """
    assert isinstance(got, np.ndarray), f"{what}: got {type(got).__name__}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    assert got.dtype.str == want.dtype.str, f"{what}: dtype str {got.dtype.str} != {want.dtype.str}"
    assert dtype_key(got.dtype) == dtype_key(want.dtype), f"{what}: dtype layout {got.dtype!r} != {want.dtype!r}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if want.flags.c_contiguous:
        assert got.flags.c_contiguous, f"{what}: C order lost"
    elif want.flags.f_contiguous:
        assert got.flags.f_contiguous, f"{what}: Fortran order lost"
    else:
        assert got.flags.c_contiguous or got.flags.f_contiguous, f"{what}: came back non-contiguous"
    assert logical_bytes(got) == logical_bytes(want), f"{what}: bytes differ"


def assert_same_tree(got: Any, want: dict[str, Any]) -> None:
    """Same nesting, same names, empty groups as ``{}``, every array equal by :func:`assert_same_array`."""
    assert isinstance(got, dict), f"expected a dict, got {type(got).__name__}"
    g, w = flatten_tree(got), flatten_tree(want)
    assert set(g) == set(w), f"names differ: {sorted(set(g) ^ set(w))}"
    for path, v in w.items():
        name = "/".join(path)
        if isinstance(v, dict):
            assert g[path] == {}, f"{name}: empty group came back as {g[path]!r}"
        elif isinstance(v, np.ndarray):
            assert_same_array(g[path], v, name)
        else:  # a numpy scalar or a Python value: same type and bits, recursively
            assert_same_value(g[path], v, name)


def assert_same_value(got: Any, want: Any, what: str = "value") -> None:
    """``got`` is ``want`` exactly: the same types all the way down (bool is not int, tuple is not
    list, np.float32 is not float), floats and numpy scalars bit for bit (-0.0, NaN payloads), dicts
    with the same keys in the same order."""
    assert type(got) is type(want), f"{what}: got {type(got).__name__}, expected {type(want).__name__}"
    if isinstance(want, np.generic):
        assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
        assert got.dtype.str == want.dtype.str, f"{what}: dtype {got.dtype.str} != {want.dtype.str}"
        assert dtype_key(got.dtype) == dtype_key(want.dtype), f"{what}: dtype layout differs"
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes(), f"{what}: {got!r} != {want!r} (bits)"
    elif isinstance(want, float):
        assert struct.pack("<d", got) == struct.pack("<d", want), f"{what}: {got!r} != {want!r} (bits)"
    elif isinstance(want, complex):
        assert struct.pack("<dd", got.real, got.imag) == struct.pack("<dd", want.real, want.imag), f"{what}: bits"
    elif isinstance(want, list | tuple):
        assert len(got) == len(want), f"{what}: length {len(got)} != {len(want)}"
        for i, (x, y) in enumerate(zip(got, want, strict=True)):
            assert_same_value(x, y, f"{what}[{i}]")
    elif isinstance(want, dict):
        assert list(got) == list(want), f"{what}: keys {list(got)} != {list(want)}"
        for k in want:
            assert_same_value(got[k], want[k], f"{what}[{k!r}]")
    else:
        assert got == want, f"{what}: {got!r} != {want!r}"


# ----------------------------------------------------------------------------------------------
# Every reader
# ----------------------------------------------------------------------------------------------

#: The chunk an in-memory pipe hands out per read: small and odd, so that reads end mid-structure.
PIPE_CHUNK = 3001


@dataclass(frozen=True)
class Reader:
    """One way to read a file, called as ``reader(data, path, **kw)``.

    ``data`` is the file's bytes and ``path`` a file holding the same bytes (readers of a path,
    a file object or a descriptor need only ``path``; the others only ``data``). ``kw`` goes to the ndckpt call
    (``verify=``, ``mmap=``, ``threads=``...) over the reader's own defaults. A load returns the
    nested tree ``ndckpt.load`` returns (readers that look arrays up by name nest them the same
    way); ``verify`` returns None. Whatever the call raises propagates.
    """

    call: Callable[..., Any]
    one_pass: bool  # the one-pass stream reader (sees the bytes in order, never the file's size)
    defaults: tuple[tuple[str, Any], ...] = ()

    def __call__(self, data: bytes = b"", path: Path | None = None, **kw: Any) -> Any:
        return self.call(data, path, **{**dict(self.defaults), **kw})


def _need(path: Path | None) -> Path:
    assert path is not None, "this reader reads a path: pass one holding the same bytes"
    return path


def _load_file(data: bytes, path: Path | None, **kw: Any) -> Any:
    with open(_need(path), "rb") as f:
        return ndckpt.load(f, **kw)


def _load_fd(data: bytes, path: Path | None, **kw: Any) -> Any:
    fd = os.open(_need(path), os.O_RDONLY)
    try:
        return ndckpt.load(fd, **kw)
    finally:
        os.close(fd)


def _open_get(src: Any, **kw: Any) -> dict[str, Any]:
    with ndckpt.open(src, **kw) as r:
        return nest({name: r.get(name) for name in r.names()})


def _open_load(src: Any, **kw: Any) -> Any:
    with ndckpt.open(src, **kw) as r:
        return r.load()


def _verify(src: Any, **kw: Any) -> None:
    ndckpt.verify(src, **kw)


#: Every way the tests read a file, by name. Thread counts differ between entries so that the
#: sequential and the parallel paths both run.
READERS: dict[str, Reader] = {
    "load(bytes)": Reader(lambda d, p, **kw: ndckpt.load(d, **kw), False, (("threads", 2),)),
    "load(bytes, copy)": Reader(lambda d, p, **kw: ndckpt.load(d, mmap=False, **kw), False, (("threads", 1),)),
    "load(path)": Reader(lambda d, p, **kw: ndckpt.load(_need(p), **kw), False),
    "load(path, copy)": Reader(lambda d, p, **kw: ndckpt.load(_need(p), mmap=False, **kw), False, (("threads", 2),)),
    "load(file)": Reader(_load_file, True, (("threads", 2),)),
    "load(fd)": Reader(_load_fd, True),
    "load(BytesIO)": Reader(lambda d, p, **kw: ndckpt.load(io.BytesIO(d), **kw), True, (("threads", 1),)),
    "load(pipe)": Reader(
        lambda d, p, **kw: ndckpt.load(Unseekable(d, chunk=PIPE_CHUNK), **kw), True, (("threads", 2),)
    ),
    "open(bytes).get": Reader(lambda d, p, **kw: _open_get(d, **kw), False, (("threads", 1),)),
    "open(path).get": Reader(lambda d, p, **kw: _open_get(_need(p), **kw), False),
    "open(path, copy).get": Reader(lambda d, p, **kw: _open_get(_need(p), mmap=False, **kw), False),
    "open(path).load()": Reader(lambda d, p, **kw: _open_load(_need(p), **kw), False),
    "open(path, copy).load()": Reader(lambda d, p, **kw: _open_load(_need(p), mmap=False, **kw), False),
    "verify(bytes)": Reader(lambda d, p, **kw: _verify(d, **kw), False),
    "verify(path)": Reader(lambda d, p, **kw: _verify(_need(p), **kw), False, (("threads", 2),)),
    "verify(BytesIO)": Reader(lambda d, p, **kw: _verify(io.BytesIO(d), **kw), True),
    "verify(pipe)": Reader(lambda d, p, **kw: _verify(Unseekable(d, chunk=PIPE_CHUNK), **kw), True),
}


def readers(names: Iterable[str]) -> dict[str, Reader]:
    """The entries of :data:`READERS` with these names, in this order (a KeyError for a name
    that is not there, so that a renamed reader cannot silently drop out of a test)."""
    return {name: READERS[name] for name in names}


def leftovers(d: Path) -> list[str]:
    """The names of the temporary files a save left in directory ``d`` (sorted)."""
    return sorted(p.name for p in d.iterdir() if ".ndckpt-tmp-" in p.name)


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``ndckpt.cli.main(argv)`` in this process: (exit code, stdout, stderr) as captured."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------------------------
# MPI
# ----------------------------------------------------------------------------------------------

#: How a user gets what ndckpt.mpi needs (named in the skip reasons and in ndckpt's ImportError).
MPI_EXTRA = "pip install -e '.[mpi]'"


def mpiexec() -> tuple[str | None, str]:
    """(mpiexec, "") when mpi4py and an MPI runtime are usable, else (None, why)."""
    if importlib.util.find_spec("mpi4py") is None:
        return None, f"mpi4py is not installed ({MPI_EXTRA})"
    exe = Path(sys.executable).parent / "mpiexec"
    found = str(exe) if exe.exists() else shutil.which("mpiexec")
    if found is None:
        return None, f"no mpiexec found ({MPI_EXTRA} brings MPICH's)"
    probe = subprocess.run(
        [sys.executable, "-c", "from mpi4py import MPI"], capture_output=True, text=True, timeout=60, check=False
    )
    if probe.returncode:
        return None, f"mpi4py cannot load an MPI library ({MPI_EXTRA}): {probe.stderr.strip()[-300:]}"
    return found, ""
