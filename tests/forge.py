"""Build ndckpt files byte by byte, including hostile ones, for the corruption and fuzz tests.

:func:`parse` splits a valid file into its structures (superblock, head, per frame: record or
pad and the stored data, index, trailer) with their byte ranges; :func:`build` writes a file
from a head document and stored frame bytes with every checksum, offset and size recomputed, so
a test can change one field (a shape, a frame size, a version) and still get past every check
that does not concern that field.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ndckpt import _lz4
from ndckpt.container import (
    END_MAGIC,
    INDEX_DTYPE,
    MAGIC,
    RAW_ALIGN,
    RECORD,
    STORED_VERBATIM,
    SUPERBLOCK,
    TRAILER,
    VERSION,
    align_up,
)
from ndckpt.engine import Checkpt
from ndckpt.format import FrameStyle

__all__ = [
    "Layout",
    "Region",
    "Unseekable",
    "build",
    "canonical",
    "column_doc",
    "columns",
    "fix_index_checksum",
    "harness",
    "lz4_frame",
    "parse",
    "parts4",
    "row_doc",
    "rows",
    "save_small_frames",
    "stored_order_bytes",
    "write_small_frames",
]


def canonical(doc: Any) -> bytes:
    """The head's canonical JSON encoding (as the writer makes it)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def rows(head: dict[str, Any]) -> list[dict[str, Any]]:
    """The head's arrays as one dict per array (path, dtype, shape, order[, blocks]), for reading."""
    cols = head["arrays"]
    blocks = dict(cols["blocks"])
    out = []
    for i, path in enumerate(cols["path"]):
        row = {
            "path": path,
            "dtype": cols["dtypes"][cols["dtype"][i]],
            "shape": cols["shape"][i],
            "order": cols["order"][i],
        }
        if i in blocks:
            row["blocks"] = blocks[i]
        out.append(row)
    return out


def parts4(frame: dict[str, Any]) -> list[list[int]]:
    """A head frame's flat parts as [array, start, nbytes, at] lists."""
    flat_parts = frame["parts"]
    return [flat_parts[k : k + 4] for k in range(0, len(flat_parts), 4)]


def columns(arrays: Any) -> Any:
    """Rows (as :func:`rows` gives, possibly edited or malformed) back to the head's columns.

    Keys a row has beyond path/dtype/shape/order/blocks become extra columns, so an edit that
    adds a field stays visible to the reader; anything not a list of dicts passes through.
    """
    if not isinstance(arrays, list) or not all(isinstance(r, dict) for r in arrays):
        return arrays
    table: list[Any] = []
    index = []
    for r in arrays:
        d = r.get("dtype")
        if d not in table:
            table.append(d)
        index.append(table.index(d))
    cols: dict[str, Any] = {
        "blocks": [[i, r["blocks"]] for i, r in enumerate(arrays) if "blocks" in r],
        "dtype": index,
        "dtypes": table,
        "order": "".join(str(r.get("order")) for r in arrays),
        "path": [r.get("path") for r in arrays],
        "shape": [r.get("shape") for r in arrays],
    }
    for r in arrays:
        for k in set(r) - {"path", "dtype", "shape", "order", "blocks"}:
            cols.setdefault(k, []).append(r[k])
    return cols


def row_doc(head: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a head with arrays as rows and parts as [array, start, nbytes, at] lists:
    the shape tests edit. :func:`column_doc` turns it back into a head."""
    doc = json.loads(json.dumps(head))
    doc["arrays"] = rows(doc)
    for f in doc["frames"]:
        f["parts"] = parts4(f)
    return doc


def column_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`row_doc`, for a possibly edited (malformed) document."""
    out = dict(doc)
    if "arrays" in out:
        out["arrays"] = columns(out["arrays"])
    if isinstance(out.get("frames"), list):
        frames = []
        for f in out["frames"]:
            if isinstance(f, dict) and isinstance(f.get("parts"), list):
                f = {**f, "parts": [v for p in f["parts"] for v in (p if isinstance(p, list) else [p])]}
            frames.append(f)
        out["frames"] = frames
    return out


@dataclass(frozen=True)
class Region:
    """Bytes ``[start, end)`` of a file: what they are and, for data, which frame."""

    kind: str  # superblock, head, record, pad, data, index, trailer
    start: int
    end: int
    frame: int = -1


@dataclass
class Layout:
    """A parsed valid file."""

    head: dict[str, Any]
    stored: list[bytes]  # each data frame's stored bytes
    regions: list[Region] = field(default_factory=list)
    verbatim: set[int] = field(default_factory=set)  # LZ4 frames stored verbatim (record bit 63)

    def stored_style(self, fi: int) -> int:
        """The fd_checkpt style of frame ``fi``'s stored bytes (1 for an LZ4 frame stored verbatim)."""
        return 1 if fi in self.verbatim else int(self.head["frames"][fi]["style"])

    def region_at(self, off: int) -> Region:
        for r in self.regions:
            if r.start <= off < r.end:
                return r
        raise ValueError(f"offset {off} is outside the file")

    def find(self, kind: str, frame: int = -1) -> Region:
        """The first region of ``kind`` (of ``frame``, if given); a StopIteration if there is none."""
        return next(r for r in self.regions if r.kind == kind and (frame < 0 or r.frame == frame))

    @property
    def offsets(self) -> list[int]:
        """Each data frame's first byte, in frame order."""
        return [r.start for r in self.regions if r.kind == "data"]

    @property
    def head_end(self) -> int:
        """The first byte after the head."""
        return self.find("head").end

    @property
    def index_offset(self) -> int:
        """The index's first byte."""
        return self.find("index").start

    def frame_bounds(self) -> list[int]:
        """Every offset where one structure ends and the next begins (0 and the size included)."""
        return sorted({0} | {r.end for r in self.regions})


def parse(data: bytes) -> Layout:
    """Split a *valid* file into its structures (no validation: the reader is what is tested)."""
    magic, version, flags, hn, _hx = SUPERBLOCK.unpack_from(data, 0)
    assert magic == MAGIC
    assert version == VERSION
    assert not flags
    head = json.loads(data[SUPERBLOCK.size : SUPERBLOCK.size + hn])
    regions = [Region("superblock", 0, SUPERBLOCK.size), Region("head", SUPERBLOCK.size, SUPERBLOCK.size + hn)]
    io, nframes, *_ = TRAILER.unpack_from(data, len(data) - TRAILER.size)
    idx = np.frombuffer(data, INDEX_DTYPE, nframes, io)
    pos = SUPERBLOCK.size + hn
    stored, verbatim = [], set()
    for fi, fr in enumerate(head["frames"]):
        off, n = int(idx[fi]["offset"]), int(idx[fi]["stored"])
        if fr["style"] == 2:
            regions.append(Region("record", pos, pos + RECORD.size, fi))
            pos += RECORD.size
            if n & STORED_VERBATIM:
                verbatim.add(fi)
                n &= ~STORED_VERBATIM
        if off > pos:
            regions.append(Region("pad", pos, off, fi))
        regions.append(Region("data", off, off + n, fi))
        stored.append(bytes(data[off : off + n]))
        pos = off + n
    regions.append(Region("index", io, io + INDEX_DTYPE.itemsize * nframes))
    regions.append(Region("trailer", len(data) - TRAILER.size, len(data)))
    return Layout(head, stored, regions, verbatim)


def build(
    head: dict[str, Any] | bytes,
    stored: list[bytes],
    *,
    styles: list[int] | None = None,
    verbatim: set[int] | frozenset[int] = frozenset(),
    version: int = VERSION,
    trailer_version: int | None = None,
    claims: list[int] | None = None,
) -> bytes:
    """A file with ``head`` (a document, or raw head bytes) and these stored data frames.

    Every checksum, record, pad, index entry and trailer field is computed from what is
    written, so the result is self-consistent except for what ``head`` itself says. ``styles``
    gives each frame's style (default: from the head's frames); LZ4 frames listed in
    ``verbatim`` are written as stored verbatim (record bit 63, a pad, the plain bytes).
    ``claims`` replaces each frame's stored size in its record and index entry (the bytes
    written stay ``stored``), to forge sizes that disagree with the data.
    """
    hb = head if isinstance(head, bytes) else canonical(head)
    if styles is None:
        assert isinstance(head, dict)
        styles = [f["style"] for f in head["frames"]]
    out = bytearray(SUPERBLOCK.pack(MAGIC, version, 0, len(hb), _lz4.xxh64(hb)))
    out += hb
    index = np.zeros(len(stored), INDEX_DTYPE)
    for fi, (s, data) in enumerate(zip(styles, stored, strict=True)):
        n = len(data) if claims is None else claims[fi]
        if s == 2 and fi in verbatim:
            n |= STORED_VERBATIM
        if s == 2:
            out += RECORD.pack(n, _lz4.xxh64(data))
        if s != 2 or fi in verbatim:
            out += bytes(align_up(len(out), RAW_ALIGN) - len(out))
        index[fi] = (len(out), n, _lz4.xxh64(data))
        out += data
    io = len(out)
    ib = index.tobytes()
    out += ib
    tv = version if trailer_version is None else trailer_version
    out += TRAILER.pack(io, len(stored), _lz4.xxh64(ib), len(out) + TRAILER.size, tv, 0, END_MAGIC)
    return bytes(out)


def write_small_frames(
    target: Any, arrays: Any, *, style: Any = "raw", frame_bytes: int = 1 << 16, metadata: Any = None, threads: int = 1
) -> None:
    """``ndckpt.save(target, ...)`` into a writable binary file object or file descriptor, with
    frames of ``frame_bytes``, so that small states still span several frames. The planner's
    frame size is a writer choice, not part of the format: readers take frame sizes from the
    head. Errors are ``ndckpt.save``'s (a failed write raises CheckptIOError, whatever reached
    ``target`` stays there)."""

    from ndckpt.container.plan import prepare

    write_prepared(target, prepare(arrays, style, metadata, frame_bytes), threads)


def write_prepared(target: Any, prep: Any, threads: int = 1) -> None:
    """Write a :class:`ndckpt.container.plan.Prepared` plan (made by ``prepare`` or
    ``prepare_specs``, e.g. with blocks) into a writable binary file object, as ``save`` does.
    The one place the tests call the container's writer directly."""
    from ndckpt._backend import StreamSink
    from ndckpt.container.write import write_checkpoint

    write_checkpoint(StreamSink(target, 1 << 20), prep, threads, None)


def save_small_frames(arrays: Any, *, style: Any = "raw", frame_bytes: int = 1 << 16, metadata: Any = None) -> bytes:
    """The bytes :func:`write_small_frames` writes (``helpers.save_bytes`` keeps the writer's own
    frame plan instead)."""
    buf = io.BytesIO()
    write_small_frames(buf, arrays, style=style, frame_bytes=frame_bytes, metadata=metadata)
    return buf.getvalue()


def fix_index_checksum(data: bytes) -> bytes:
    """``data`` with the trailer's index checksum recomputed over the index it points at (after
    an edit of an index entry, so that only the edited field is wrong)."""
    b = bytearray(data)
    io_, nframes = TRAILER.unpack_from(b, len(b) - TRAILER.size)[:2]
    ib = bytes(b[io_ : io_ + nframes * INDEX_DTYPE.itemsize])
    struct.pack_into("<Q", b, len(b) - TRAILER.size + 16, _lz4.xxh64(ib))
    return bytes(b)


def lz4_frame(plain: bytes) -> bytes:
    """``plain`` as the fd_checkpt LZ4 frame a fresh engine writer makes of one buffer."""
    out = bytearray(2 * len(plain) + 1024)
    ck = Checkpt.mmio(out)
    ck.frame_open(FrameStyle.LZ4)
    ck.buf(plain)
    end = ck.frame_close()
    ck.fini()
    return bytes(out[:end])


def stored_order_bytes(a: Any, order: str) -> bytes:
    """The bytes of array ``a`` in the order the file stores them ("C" or "F")."""
    arr = np.asarray(a)
    return np.ascontiguousarray(arr.T if order == "F" else arr).tobytes()


def harness() -> Any:
    """The fuzz target's checks (``fuzz/harness.py``), loaded without atheris."""
    import importlib.util
    import sys
    from pathlib import Path

    mod = sys.modules.get("ndckpt_fuzz_harness")
    if mod is None:
        path = Path(__file__).resolve().parent.parent / "fuzz" / "harness.py"
        spec = importlib.util.spec_from_file_location("ndckpt_fuzz_harness", path)
        assert spec is not None
        assert spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules["ndckpt_fuzz_harness"] = mod
        spec.loader.exec_module(mod)
    return mod


#: An unseekable in-memory stream (as a pipe), shared with the fuzz harness rather than copied.
Unseekable = harness().Unseekable
