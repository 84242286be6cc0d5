"""Where a checkpoint is read from and written to: paths, buffers, file objects, fds and URLs.

The one place that tells them apart, for :mod:`ndckpt.api`:

* :func:`file_region`: a path (mapped), an in-memory buffer (viewed), a URL or,
  with ``files``, a seekable file object (read in part, :mod:`.container.ranged`);
  None for what is read as a stream.
* :func:`save_to`: a path (atomic, :func:`ndckpt._files.open_output`), a URL
  (through fsspec; atomic where the file system allows, see :func:`save_url`)
  or a binary file object / fd (streamed, never seeked).
"""

from __future__ import annotations

import io
import mmap
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from . import _files
from ._backend import StreamSink
from ._memory import buffer_view
from .container.mapped import FileRegion, map_path
from .container.plan import Prepared
from .container.ranged import is_url, open_ranged, open_url, url_fs
from .container.write import write_checkpoint
from .errors import InvalidArgumentError
from .parallel import ProgressCallback, progress_phase

__all__ = ["OBJECT_STORES", "file_region", "is_pathlike", "save_to", "save_url"]

#: Write buffer of streamed saves.
WBUF = 1 << 20
#: fsspec protocols whose objects appear whole when the upload completes, never in part.
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2"})


def is_pathlike(x: Any) -> bool:
    return isinstance(x, str | os.PathLike) and not is_url(x)


def file_region(source: Any, files: bool = False) -> FileRegion | None:
    """``source`` mapped read-only (a path: with its fd), viewed (an in-memory buffer) or, for a URL
    and (with ``files``) a seekable file object, read in part; None for a stream (a file object or
    fd). InvalidArgumentError for anything else, naming ``source``."""
    if is_url(source):
        return open_ranged(open_url(source), owned=True)
    if is_pathlike(source):
        return map_path(source)
    if isinstance(source, bytes | bytearray | memoryview | mmap.mmap | np.ndarray):
        mv = buffer_view(source)
        if not mv.c_contiguous:
            raise InvalidArgumentError("source: in-memory buffer must be C-contiguous")
        return FileRegion(mv.cast("B").toreadonly() if mv.format != "B" or mv.ndim != 1 else mv.toreadonly())
    if isinstance(source, bool | io.TextIOBase) or not (
        isinstance(source, int) or hasattr(source, "read") or hasattr(source, "readinto")
    ):
        raise InvalidArgumentError(
            f"source: expected a path, a binary file object, an fd or a bytes-like buffer, got {type(source).__name__}"
        )
    if isinstance(source, int) and source < 0:
        raise InvalidArgumentError(f"source: bad file descriptor {source}")
    if files and not isinstance(source, int):
        return open_ranged(source)
    return None


def save_to(target: Any, prep: Prepared, threads: int, progress: ProgressCallback | None, durable: bool) -> None:
    """Write ``prep`` to ``target`` (see the module docstring); InvalidArgumentError for anything else."""
    if is_url(target):
        save_url(target, prep, threads, progress, durable)
    elif is_pathlike(target):
        save_path(Path(os.fspath(target)), prep, threads, progress, durable)
    elif isinstance(target, bool | io.TextIOBase) or not (isinstance(target, int) or hasattr(target, "write")):
        raise InvalidArgumentError(
            f"target: expected a path, a URL, a binary file object or an fd, got {type(target).__name__}"
        )
    elif isinstance(target, int) and target < 0:
        raise InvalidArgumentError(f"target: bad file descriptor {target}")
    else:
        write_checkpoint(StreamSink(target, WBUF), prep, threads, progress)


def save_path(path: Path, prep: Prepared, threads: int, progress: ProgressCallback | None, durable: bool) -> None:
    def before_sync() -> None:
        progress_phase(progress, "fsync")

    with _files.open_output(path, durable=durable, before_sync=before_sync) as fd:
        write_checkpoint(StreamSink(fd, WBUF), prep, threads, progress)


def save_url(url: str, prep: Prepared, threads: int, progress: ProgressCallback | None, durable: bool) -> None:
    """Write to a URL through fsspec, so that a failed save leaves what the URL held before:

    * ``file://``: as a path (a temporary file, fsync, rename: :func:`save_path`);
    * object stores (:data:`OBJECT_STORES`): straight to the object, which appears only when the
      upload completes; on an error the upload is discarded;
    * any other file system (``memory://``, ``sftp://``, ...): to a temporary name beside the
      target, then ``fs.mv`` over it (as atomic as that file system's rename), and the temporary
      is removed on an error.
    """
    fs, target = url_fs(url)  # (InvalidArgumentError without fsspec)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        save_path(Path(target), prep, threads, progress, durable)
        return
    if protocol in OBJECT_STORES:
        f = fs.open(target, "wb")
        try:
            write_checkpoint(StreamSink(f, WBUF), prep, threads, progress)
        except BaseException:
            if hasattr(f, "discard"):
                f.discard()  # abort the upload: nothing appears
            raise
        f.close()
        return
    tmp = f"{target}.ndckpt-tmp-{secrets.token_hex(8)}"
    try:
        with fs.open(tmp, "wb") as out:
            write_checkpoint(StreamSink(out, WBUF), prep, threads, progress)
        fs.mv(tmp, target)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise
