"""A checkpoint read in part from a seekable file object (a local file, an fsspec file over HTTP or S3).

:func:`open_ranged` reads the superblock and head, then the trailer and
index (two to four reads), for :func:`parse_layout` (``records=False``) to
validate; the frames' records are checked when their frames are fetched. Readers then
call :meth:`RangedFile.want` with the frames they are about to read, and
only those are fetched: one read per run of adjacent frames (an array's
frames are adjacent), records included. What is fetched lands in an
anonymous mapping of the file's size (untouched pages cost no memory), so
the readers work on it exactly as on a mapped file: RAW arrays come back as
views of the fetched bytes.

The file object is the caller's unless this module opened it (a URL): it is
closed with the reader then. It must not change while it is read; a file
that shrinks gives CheckptIOError, never a wrong array (checksums of LZ4
frames are checked as for files; RAW frames with ``verify=True``).
"""

from __future__ import annotations

import bisect
import importlib
import mmap
import sys
import threading
from typing import Any

from ..errors import CheckptIOError, FormatError, InvalidArgumentError
from ..format import FrameStyle
from .layout import Layout
from .mapped import FileRegion
from .spec import INDEX_DTYPE, RECORD, STORED_VERBATIM, SUPERBLOCK, TRAILER

__all__ = ["RangedFile", "is_url", "open_ranged", "open_url", "url_fs"]

#: Bytes read at each end of the file first (the head, and the trailer and index, usually fit):
#: together at most 64 KiB beyond what a reader needs.
FIRST_READ = 1 << 15


#: mmap's MAP_NORESERVE (Linux's value; Python < 3.13 does not name it): address space without a
#: swap reservation, so a remote file larger than RAM + swap can still be read in part.
_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform.startswith("linux") else 0)


class RangedFile(FileRegion):
    """A FileRegion whose bytes are fetched from a file object on demand (:meth:`want`)."""

    fetches = True

    def __init__(self, fobj: Any, size: int, owned: bool) -> None:
        try:  # anonymous, private, unreserved: pages are allocated only where bytes are fetched
            self._map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | getattr(mmap, "MAP_ANONYMOUS", 0) | _NORESERVE)
        except (OSError, OverflowError, ValueError) as e:
            code = getattr(e, "errno", None)
            raise CheckptIOError(code, f"cannot map a {size}-byte file's worth of memory: {e}") from e
        super().__init__(memoryview(self._map).toreadonly(), None)
        self.fobj, self.size, self.owned = fobj, size, owned
        self._have: list[tuple[int, int]] = []  # fetched [lo, hi) runs, sorted, disjoint
        self._lock = threading.Lock()
        #: Reads made and bytes read (for tests and benchmarks).
        self.reads = 0
        self.bytes_read = 0

    def _missing(self, lo: int, hi: int) -> list[tuple[int, int]]:
        out = []
        i = bisect.bisect_right(self._have, (lo, hi)) - 1
        pos = lo
        for a, b in self._have[max(i, 0) :]:
            if a >= hi:
                break
            if b <= pos:
                continue
            if a > pos:
                out.append((pos, a))
            pos = max(pos, b)
        if pos < hi:
            out.append((pos, hi))
        return out

    def fetch(self, lo: int, hi: int) -> None:
        """Make bytes ``[lo, hi)`` present; CheckptIOError if the file object fails or ends early."""
        lo, hi = max(0, lo), min(self.size, hi)
        with self._lock:
            for a, b in self._missing(lo, hi):
                self._read(a, b)
                bisect.insort(self._have, (a, b))
                self._merge()

    def _read(self, a: int, b: int) -> None:
        view = memoryview(self._map)[a:b]
        try:
            self.fobj.seek(a)
            done = 0
            while done < b - a:
                got = self.fobj.readinto(view[done:]) if hasattr(self.fobj, "readinto") else None
                if got is None:
                    data = self.fobj.read(b - a - done)
                    got = len(data)
                    view[done : done + got] = data
                if not got:
                    raise CheckptIOError(f"unexpected end of file at offset {a + done} (the file shrank?)")
                done += got
        except OSError as e:
            if isinstance(e, CheckptIOError):
                raise
            raise CheckptIOError(e.errno, f"read of bytes [{a}, {b}) failed: {e}") from e
        finally:
            view.release()
        self.reads += 1
        self.bytes_read += b - a

    def _merge(self) -> None:
        merged: list[tuple[int, int]] = []
        for a, b in self._have:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        self._have = merged

    def want(self, lay: Layout, frames: list[int]) -> None:
        """Fetch these frames of ``lay`` (records included), one read per run of adjacent frames, and
        check each LZ4 frame's record against the index (FormatError naming the frame if not)."""
        if not frames:
            return
        runs: list[list[int]] = []
        lz4 = [lay.head.frames[fi].style == FrameStyle.LZ4 for fi in range(len(lay.head.frames))]
        for fi in sorted(set(frames)):
            lo = _record_offset(lay, fi) if lz4[fi] else lay.offsets[fi]
            hi = lay.offsets[fi] + lay.stored[fi]
            if runs and lo - runs[-1][1] <= 4096:  # adjacent (at most a pad apart): one read
                runs[-1][1] = max(runs[-1][1], hi)
            else:
                runs.append([lo, hi])
        for lo, hi in runs:
            self.fetch(lo, hi)
        for fi in frames:
            if lz4[fi]:
                pos = _record_offset(lay, fi)
                stored = lay.stored[fi] | (STORED_VERBATIM if lay.verbatim[fi] else 0)
                if RECORD.unpack(self.region[pos : pos + RECORD.size]) != (stored, lay.xxh[fi]):
                    raise FormatError(f"frame {fi}: record at offset {pos} disagrees with the index")

    def close(self) -> None:
        if self.owned:
            self.fobj.close()
        self.owned = False


def _record_offset(lay: Layout, fi: int) -> int:
    """Where LZ4 frame ``fi``'s record is: where the previous frame (or the head) ends (format §2)."""
    return lay.head_end if fi == 0 else lay.offsets[fi - 1] + lay.stored[fi - 1]


def open_ranged(fobj: Any, owned: bool = False) -> RangedFile:
    """``fobj`` (seekable, binary) with its superblock, head, trailer and index fetched (two to four
    reads), ready for ``parse_layout(src.region, records=False)``.

    InvalidArgumentError if it is not seekable; FormatError if it is empty; CheckptIOError if a
    read fails. Closes ``fobj`` on failure when ``owned``.
    """
    try:
        if not hasattr(fobj, "seek") or (hasattr(fobj, "seekable") and not fobj.seekable()):
            raise InvalidArgumentError("source: the file object is not seekable; use ndckpt.load to stream it")
        size = fobj.seek(0, 2)
        if not isinstance(size, int) or size <= 0:
            raise FormatError(f"not an ndckpt file: {size} bytes")
        src = RangedFile(fobj, size, owned)
        src.fetch(0, FIRST_READ)
        if size >= SUPERBLOCK.size:
            head_nbytes = SUPERBLOCK.unpack(src.region[: SUPERBLOCK.size])[3]
            if isinstance(head_nbytes, int) and SUPERBLOCK.size + head_nbytes <= size:
                src.fetch(0, SUPERBLOCK.size + head_nbytes)
        src.fetch(size - FIRST_READ, size)
        if size >= TRAILER.size:
            index_offset, nframes = TRAILER.unpack(src.region[size - TRAILER.size :])[:2]
            if index_offset + nframes * INDEX_DTYPE.itemsize == size - TRAILER.size:  # else parse_layout refuses it
                src.fetch(index_offset, size)
    except BaseException:
        if owned:
            fobj.close()
        raise
    return src


def is_url(source: Any) -> bool:
    """Whether ``source`` is a str of the form ``scheme://...`` (not a Windows drive path)."""
    if not isinstance(source, str):
        return False
    scheme, sep, _ = source.partition("://")
    return bool(sep) and len(scheme) > 1 and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum()


def url_fs(url: str) -> tuple[Any, str]:
    """(fsspec file system, path) of ``url``; InvalidArgumentError naming the URL if fsspec is missing
    or knows no such protocol."""
    try:
        core = importlib.import_module("fsspec.core")
    except ImportError:
        raise InvalidArgumentError(
            f"{url!r} is a URL: install fsspec (pip install 'ndckpt[remote]') to read and write URLs"
        ) from None
    try:
        fs, path = core.url_to_fs(url)
    except (ValueError, ImportError) as e:
        raise InvalidArgumentError(f"{url!r}: fsspec cannot open this URL ({e})") from None
    return fs, path


def open_url(url: str) -> Any:
    """``url`` opened for reading through fsspec; InvalidArgumentError as :func:`url_fs`,
    CheckptIOError if it cannot be opened."""
    fs, path = url_fs(url)
    try:
        try:  # no read-ahead cache: each read is one request for exactly the bytes wanted
            return fs.open(path, "rb", cache_type="none")
        except TypeError:  # a file system whose files take no cache options (local, memory)
            return fs.open(path, "rb")
    except FileNotFoundError as e:
        raise CheckptIOError(getattr(e, "errno", None), f"no such file: {url!r}") from e
    except OSError as e:
        raise CheckptIOError(getattr(e, "errno", None), f"cannot open {url!r}: {e}") from e
