"""Bytes in, a validated layout out: THE validator of a file's physical layout.

:func:`parse_layout` checks a whole file held in memory (a mapping or a buffer) as
``docs/format.md`` §2-§3 says: superblock, head, trailer, index, every record and pad
position and every frame's stored size, raising FormatError naming the offset for anything
else. What it returns, a :class:`Layout`, is what every reader reads through: frame offsets,
stored sizes, checksums and where each array's bytes are (:class:`ArrayLocation`). The
stream reader (:mod:`.stream`), which cannot see the end of a file before its frames, builds
a Layout frame by frame from the same steps: :func:`parse_superblock`, :func:`parse_head`,
:func:`data_offset` (where records, pads and data are), :func:`check_frame_sizes`,
:func:`parse_trailer` and :func:`parse_index`; :func:`ndckpt.verify` checks the pads
:meth:`Layout.pad_range` gives.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import _lz4
from ..errors import FormatError
from ..format import FrameStyle
from .head import FrameSpec, Head, Part, stored_bound
from .spec import (
    END_MAGIC,
    HEAD_MAX,
    INDEX_DTYPE,
    MAGIC,
    RAW_ALIGN,
    RECORD,
    STORED_VERBATIM,
    SUPERBLOCK,
    TRAILER,
    VERSION,
    align_up,
    lz4_decoded_max,
)

__all__ = [
    "MANY_ARRAYS",
    "ArrayLocation",
    "Layout",
    "Trailer",
    "check_frame_sizes",
    "data_offset",
    "frame_offsets",
    "looks_complete",
    "parse_head",
    "parse_index",
    "parse_layout",
    "parse_superblock",
    "parse_trailer",
]

#: Loads of at least this many arrays sort them with numpy (:class:`ndckpt.container.read.Loader`); for fewer, the
#: per-array path is cheaper (numpy's per-call overhead would dominate a one-array read).
MANY_ARRAYS = 64


class ArrayLocation:
    """Where an array's stored bytes are: its (frame index, part) pairs in order, and their style."""

    __slots__ = ("file_start", "parts", "style")

    def __init__(self, parts: list[tuple[int, Part]], style: FrameStyle) -> None:
        self.parts = parts
        self.style = style
        self.file_start: int | None = None  # offset of its first byte when its parts are contiguous

    @property
    def frames(self) -> list[int]:
        return [fi for fi, _ in self.parts]


def _contiguous_start(parts: list[tuple[int, Part]], offsets: list[int]) -> int | None:
    """File offset of an array's first byte if its parts follow each other in the file, else None."""
    pos: int | None = None
    start: int | None = None
    for fi, p in parts:
        off = offsets[fi] + p.at
        if pos is None:
            start = off
        elif off != pos:
            return None
        pos = off + p.nbytes
    return start


class Layout:
    """A validated file: head, frame offsets/sizes/checksums, and where every array lives."""

    def __init__(self, head: Head, offsets: list[int], stored: list[int], xxh: list[int], head_end: int) -> None:
        """``stored`` holds the index's values: bit 63 marks an LZ4 frame stored verbatim;
        ``head_end`` is the offset just past the head (where the first frame's record or pad is)."""
        self.head, self.head_end = head, head_end
        self.offsets, self.xxh = offsets, xxh
        self.stored, self.verbatim = [0] * len(stored), [False] * len(stored)
        for fi, n in enumerate(stored):
            self.set_stored(fi, n)
        self._locs: list[ArrayLocation] | None = None
        self._some: dict[int, ArrayLocation] = {}  # built one at a time by loc()
        self._by_array: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], list[int]] | None = None
        self.by_name = dict(zip(head.names(), range(len(head.arrays)), strict=True))
        #: Python-value leaves: flat name -> index into head.values.
        self.value_names = {"/".join(p): i for i, (p, _) in enumerate(head.values)}

    @property
    def locs(self) -> list[ArrayLocation]:
        """Every array's location, built on first use (after the offsets are known).

        Whole loads of many small arrays do not need them (see
        :meth:`ndckpt.container.read.Loader.load`), so they are not built eagerly.
        """
        if self._locs is None:
            # Per part, not per array. (All of an array's frames have one style: Head checked
            # it.) Arrays of zero bytes share one empty location.
            empty = ArrayLocation([], FrameStyle.RAW)
            locs: list[ArrayLocation] = [empty] * len(self.head.arrays)
            for fi, f in enumerate(self.head.frames):
                style = f.style
                for p in f.parts:
                    loc = locs[p[0]]
                    if loc is empty:
                        locs[p[0]] = ArrayLocation([(fi, p)], style)
                    else:
                        loc.parts.append((fi, p))
            self._locs = locs
            self._place()
        return self._locs

    def loc(self, ai: int) -> ArrayLocation:
        """Array ``ai``'s location, without building every array's (see :attr:`locs`)."""
        if self._locs is not None or len(self.head.arrays) < MANY_ARRAYS:  # (small heads: build them all)
            return self.locs[ai]
        got = self._some.get(ai)
        if got is None:
            t = self.head.part_table()
            if self._by_array is None:
                order = np.argsort(t.array, kind="stable")
                bounds = np.searchsorted(t.array[order], np.arange(len(self.head.arrays) + 1))
                self._by_array = (order, bounds, np.cumsum([0, *t.per_frame]).tolist())
            order, bounds, first = self._by_array
            frames = self.head.frames
            parts = []
            for k in order[bounds[ai] : bounds[ai + 1]].tolist():
                fi = int(t.frame[k])
                parts.append((fi, frames[fi].parts[k - first[fi]]))
            got = self._some[ai] = ArrayLocation(parts, frames[parts[0][0]].style if parts else FrameStyle.RAW)
            got.file_start = _contiguous_start(got.parts, self.offsets)
        return got

    def set_stored(self, fi: int, n: int) -> None:
        """Record frame ``fi``'s stored_nbytes as found in its record or index entry."""
        flagged = bool(n & STORED_VERBATIM)
        self.stored[fi] = n & ~STORED_VERBATIM
        self.verbatim[fi] = flagged or self.head.frames[fi].style == FrameStyle.RAW

    def index_value(self, fi: int) -> int:
        """Frame ``fi``'s stored_nbytes as written in its record and the index."""
        verbatim_lz4 = self.verbatim[fi] and self.head.frames[fi].style == FrameStyle.LZ4
        return self.stored[fi] | STORED_VERBATIM if verbatim_lz4 else self.stored[fi]

    def _place(self) -> None:
        """Compute file_start for arrays whose parts are contiguous in the file (needs offsets)."""
        offsets = self.offsets
        assert self._locs is not None
        for loc in self._locs:
            parts = loc.parts
            if len(parts) == 1:  # the common case: one part, trivially contiguous
                fi, p = parts[0]
                loc.file_start = offsets[fi] + p[3]
            elif parts:
                loc.file_start = _contiguous_start(parts, offsets)

    def pad_range(self, fi: int) -> tuple[int, int]:
        """The zero pad before frame ``fi``'s data, as ``[start, end)`` file offsets (format §2):
        after the previous frame (or the head) and, for an LZ4 frame, its record. Empty unless
        the frame is stored verbatim. Needs the offsets and stored sizes of frames ``<= fi``."""
        start = self.offsets[fi - 1] + self.stored[fi - 1] if fi else self.head_end
        if self.head.frames[fi].style == FrameStyle.LZ4:
            start += RECORD.size
        return start, self.offsets[fi]

    def index_of(self, name: Any) -> int:
        key = "/".join(name) if isinstance(name, tuple) else name
        if not isinstance(key, str) or key not in self.by_name:
            raise KeyError(f"no array named {name!r} in this checkpoint")
        return self.by_name[key]

    def where(self, fi: int) -> str:
        names = sorted({self.head.arrays[p.array].name for p in self.head.frames[fi].parts})
        shown = ", ".join(repr(n) for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return f"frame {fi} at offset {self.offsets[fi]} (array {shown})"


def check_frame_sizes(head: Head, fi: int, stored: int) -> None:
    """Check a record's or index entry's stored_nbytes (bit 63 included) against the head."""
    f = head.frames[fi]
    if f.style == FrameStyle.RAW and stored != f.nbytes:
        flag = " (with the stored-verbatim bit, which only LZ4 frames may have)" if stored & STORED_VERBATIM else ""
        raise FormatError(
            f"frame {fi}: RAW frame stores {stored & ~STORED_VERBATIM} bytes{flag}, the head says {f.nbytes}"
        )
    if f.style == FrameStyle.LZ4:
        if stored & STORED_VERBATIM:
            if stored & ~STORED_VERBATIM != f.nbytes:
                n = stored & ~STORED_VERBATIM
                raise FormatError(f"frame {fi}: LZ4 frame stored verbatim in {n} bytes, the head says {f.nbytes}")
        elif not (stored <= stored_bound(f) and f.nbytes <= lz4_decoded_max(stored)):
            raise FormatError(f"frame {fi}: LZ4 frame of {f.nbytes} bytes cannot be stored in {stored} bytes")


def parse_superblock(sb: bytes | bytearray | memoryview) -> tuple[int, int]:
    """``(head_nbytes, head_xxh64)`` of the 32-byte superblock ``sb``; FormatError for a bad
    magic, another format version (checked before anything else is read), unknown flags, or a
    head larger than HEAD_MAX."""
    magic, version, flags, hn, hx = SUPERBLOCK.unpack(sb)
    if magic != MAGIC:
        raise FormatError("not an ndckpt file: bad magic at offset 0")
    if version != VERSION:
        # Refused before anything else is read; a newer version is a reason to upgrade, not corruption.
        hint = "; upgrade ndckpt to read it" if version > VERSION else ""
        raise FormatError(f"unsupported ndckpt format version {version} (this ndckpt reads version {VERSION}){hint}")
    if flags:
        raise FormatError(f"superblock: unknown flags {flags:#x}")
    if hn > HEAD_MAX:
        raise FormatError(f"superblock: head of {hn} bytes exceeds the {HEAD_MAX}-byte limit")
    return hn, hx


def parse_head(raw: bytes | bytearray | memoryview, xxh: int) -> Head:
    """The head's bytes (at offset ``SUPERBLOCK.size``) checked against the superblock's
    checksum, then parsed; FormatError for either."""
    if _lz4.xxh64(raw) != xxh:
        raise FormatError(f"head at offset {SUPERBLOCK.size}: checksum mismatch")
    return Head.from_json(raw)


def data_offset(pos: int, style: FrameStyle, stored: int) -> int:
    """Where a frame's data starts when what precedes it starts at ``pos`` (format §2).

    An LZ4 frame's 16-byte record is at ``pos``; RAW frames, and LZ4 frames stored verbatim
    (``stored`` has bit 63), then have a zero pad to the next multiple of RAW_ALIGN. ``stored``
    is the record's or index's value (only its bit 63 matters here).
    """
    if style == FrameStyle.LZ4:
        pos += RECORD.size
        return align_up(pos, RAW_ALIGN) if stored & STORED_VERBATIM else pos
    return align_up(pos, RAW_ALIGN)


class Trailer(NamedTuple):
    """The trailer's fields that locate the index (its version and flags were checked)."""

    index_offset: int
    nframes: int
    index_xxh64: int
    file_nbytes: int


def parse_trailer(raw: bytes | bytearray | memoryview, at: int, hint: str = "") -> Trailer:
    """The trailer read at file offset ``at``: FormatError unless its end magic, version and
    flags are right (``hint`` ends the end-magic message). Where the index is and how large the
    file is are for the caller to check against what it knows."""
    io, nframes, ix, total, version, flags, end_magic = TRAILER.unpack(raw)
    if end_magic != END_MAGIC:
        raise FormatError(f"trailer at offset {at}: bad end magic{hint}")
    if version != VERSION or flags:
        raise FormatError(f"trailer: version {version} / flags {flags:#x} do not match the superblock")
    return Trailer(io, nframes, ix, total)


def looks_complete(start: bytes, tail: bytes, size: int) -> bool:
    """Whether a file of ``size`` bytes, whose first bytes are ``start`` and last
    ``TRAILER.size`` bytes are ``tail``, looks completely written: the magic at offset 0, a
    trailer whose end magic is right and whose file size is ``size``. A cheap test that reads no
    head (the checkpoint manager uses it to tell finished files from ones being written); it
    checks no version or checksum: a file that passes may still fail to load, with the reason.
    """
    if size < SUPERBLOCK.size + TRAILER.size or len(tail) != TRAILER.size or start[: len(MAGIC)] != MAGIC:
        return False
    fields = TRAILER.unpack(tail)
    return bool(fields[-1] == END_MAGIC and fields[3] == size)


def parse_index(raw: bytes | bytearray | memoryview, xxh: int, at: int) -> np.ndarray[Any, Any]:
    """The index read at file offset ``at``, checked against the trailer's checksum, as an
    INDEX_DTYPE array viewing ``raw``; FormatError on a mismatch."""
    if _lz4.xxh64(raw) != xxh:
        raise FormatError(f"index at offset {at}: checksum mismatch")
    return np.frombuffer(raw, INDEX_DTYPE)


def parse_layout(region: memoryview, records: bool = True) -> Layout:
    """Validate the whole file in ``region`` (docs/format.md §2-§3) and return its Layout.

    Checks, in this order: size, superblock, head (checksum, then its JSON), trailer, index
    (placement, checksum), then every frame in file order: its record (LZ4) agreeing with the
    index, its offset, its stored size against the head. FormatError names the first problem;
    nothing of the data frames is read (checksums are the readers' job, pads :func:`verify`'s).
    Without ``records`` the records are not read: the caller checks each frame's record before
    it reads the frame (:meth:`ndckpt.container.ranged.RangedFile.want`).
    """
    size = region.nbytes
    if size < SUPERBLOCK.size + TRAILER.size:
        raise FormatError(f"not an ndckpt file: {size} bytes is too small")
    hn, hx = parse_superblock(region[: SUPERBLOCK.size])
    head_end = SUPERBLOCK.size + hn
    if head_end > size - TRAILER.size:
        raise FormatError(f"superblock: head of {hn} bytes runs past the end of the {size}-byte file")
    head = parse_head(region[SUPERBLOCK.size : head_end], hx)
    at = size - TRAILER.size
    io, nframes, ix, total = parse_trailer(region[at:], at, " (truncated or not an ndckpt file)")
    if total != size:
        raise FormatError(f"trailer: file should be {total} bytes, it is {size}")
    if nframes != len(head.frames) or io + nframes * INDEX_DTYPE.itemsize != size - TRAILER.size or io < head_end:
        raise FormatError(f"trailer: index of {nframes} frames at offset {io} does not fit the file")
    idx = parse_index(region[io : io + nframes * INDEX_DTYPE.itemsize], ix, io)
    offsets, stored, xxh = idx["offset"].tolist(), idx["stored"].tolist(), idx["xxh64"].tolist()
    pos = head_end
    for fi, f in enumerate(head.frames):
        if f.style == FrameStyle.LZ4:
            if pos + RECORD.size > io:
                raise FormatError(f"frame {fi}: record at offset {pos} runs past the index")
            if records and RECORD.unpack(region[pos : pos + RECORD.size]) != (stored[fi], xxh[fi]):
                raise FormatError(f"frame {fi}: record at offset {pos} disagrees with the index")
        pos = data_offset(pos, f.style, stored[fi])
        if offsets[fi] != pos:
            raise FormatError(f"frame {fi}: index says offset {offsets[fi]}, the layout gives {pos}")
        check_frame_sizes(head, fi, stored[fi])
        pos += stored[fi] & ~STORED_VERBATIM
        if pos > io:
            n = stored[fi] & ~STORED_VERBATIM
            raise FormatError(f"frame {fi} at offset {offsets[fi]}: {n} bytes run past the index")
    if pos != io:
        raise FormatError(f"{io - pos} unexplained bytes before the index at offset {io}")
    return Layout(head, offsets, stored, xxh, head_end)


def frame_offsets(head_end: int, frames: list[FrameSpec], stored: list[int]) -> tuple[list[int], int]:
    """Offsets of the data frames, and of the index, for frames with these stored sizes (format §2).

    ``head_end`` is the offset just past the head; ``stored`` holds the index's
    values (bit 63 marks an LZ4 frame stored verbatim). LZ4 frames follow their
    16-byte record; RAW frames, and LZ4 frames stored verbatim, then follow a
    zero pad to the next multiple of 4096.
    """
    pos, offs = head_end, []
    for f, n in zip(frames, stored, strict=True):
        pos = data_offset(pos, f.style, n)
        offs.append(pos)
        pos += n & ~STORED_VERBATIM
    return offs, pos
