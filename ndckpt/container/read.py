"""A layout and a source in, arrays out: views, copies and decodes, regions, blocks, nesting.

:class:`Loader` materialises the arrays of a validated :class:`~ndckpt.container.layout.Layout`
from a :class:`~ndckpt.container.mapped.FileRegion`: zero-copy views of the mapping (RAW),
copies read with ``pread``, LZ4 decodes, in parallel over frames; :meth:`Loader.read_region`
reads part of an array; :func:`verify_frames` checks every frame of a file. The helpers
(:func:`new_array`, :func:`check_out`, :func:`decode_lz4`, :func:`verify_hash`,
:func:`scatter_blocks`, :func:`nest`, :func:`flatten_out`) are shared with the stream reader.
"""

from __future__ import annotations

import errno
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .. import _lz4
from .._backend import MmioSource, as_bytes
from .._codec import give_back_decoder, take_decoder
from .._memory import aligned_empty, buffer_view
from ..errors import CheckptError, CheckptIOError, FormatError, InvalidArgumentError
from ..format import FrameStyle
from ..parallel import Progress, ProgressCallback, ScratchPool, run_all
from .head import ArraySpec, Head, Part, block_offsets, stored_bound
from .layout import MANY_ARRAYS, Layout, parse_layout
from .mapped import FileRegion
from .objects import MARKER, rebuild
from .plan import bytes_of

__all__ = [
    "COW_MIN",
    "CopyJob",
    "Loader",
    "Where",
    "check_out",
    "decode_lz4",
    "flatten_out",
    "loader_for",
    "nest",
    "new_array",
    "normalise_region",
    "scatter_blocks",
    "verify_frames",
    "verify_hash",
    "where_text",
]


def new_array(spec: ArraySpec) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, np.dtype[np.uint8]]]:
    """A new page-aligned array for ``spec`` and its flat byte view in the stored order."""
    try:
        raw = aligned_empty(spec.nbytes)
    except MemoryError as e:  # a stream can claim any size before its data arrive
        raise CheckptIOError(errno.ENOMEM, f"array {spec.name!r}: cannot allocate its {spec.nbytes} bytes") from e
    arr: np.ndarray[Any, Any] = np.ndarray(spec.shape, spec.dtype, buffer=raw, order=spec.order)  # type: ignore[call-overload,arg-type,unused-ignore]
    return arr, raw


#: dtypes np.frombuffer can make views of: not zero-sized, no subarray (numpy would reshape those).
_FLAT_DTYPES: dict[np.dtype[Any], bool] = {}


def _array_at(buf: Any, spec: ArraySpec, offset: int) -> np.ndarray[Any, Any]:
    """Array ``spec`` as a view of ``buf`` at byte ``offset`` (read-only if ``buf`` is).

    Plain dtypes take ``np.frombuffer``, much cheaper per call than the general
    ``np.ndarray(shape, dtype, buffer=...)`` constructor that other dtypes take
    (loads of many small arrays make one call per array).
    """
    dt, shape = spec.dtype, spec.shape
    flat = _FLAT_DTYPES.get(dt)
    if flat is None:
        flat = _FLAT_DTYPES[dt] = dt.itemsize > 0 and dt.subdtype is None and len(_FLAT_DTYPES) < 4096
    if not flat:
        return np.ndarray(shape, dt, buffer=buf, offset=offset, order=spec.order)  # type: ignore[call-overload,arg-type,no-any-return,unused-ignore]
    a = np.frombuffer(buf, dt, math.prod(shape), offset)
    if len(shape) == 1:
        return a
    return a.reshape(shape) if spec.order == "C" else a.reshape(shape[::-1]).T


def check_out(spec: ArraySpec, out: Any) -> np.ndarray[Any, np.dtype[np.uint8]]:
    name = spec.name
    if not isinstance(out, np.ndarray):
        raise InvalidArgumentError(f"out[{name!r}]: expected a numpy array, got {type(out).__name__}")
    if out.dtype != spec.dtype or out.shape != spec.shape:
        raise InvalidArgumentError(
            f"out[{name!r}]: expected dtype {spec.dtype} and shape {spec.shape}, got {out.dtype} and {out.shape}"
        )
    if not out.flags.writeable:
        raise InvalidArgumentError(f"out[{name!r}]: array is read-only")
    ok = out.flags.f_contiguous if spec.order == "F" else out.flags.c_contiguous
    if not ok:
        raise InvalidArgumentError(f"out[{name!r}]: must be {spec.order}-contiguous, as the array was saved")
    return bytes_of(out, spec.order)


#: Where a frame is, for error messages: the text, or a function making it (naming a frame's
#: arrays costs a join per array, so readers describe a frame only when something is wrong).
Where = str | Callable[[], str]


def where_text(where: Where) -> str:
    return where if isinstance(where, str) else where()


def decode_lz4(stored: memoryview, dst: np.ndarray[Any, np.dtype[np.uint8]], where: Where) -> None:
    """Decode the LZ4 data frame ``stored`` (all of it: FormatError otherwise) into ``dst``.

    Uses this thread's spare decoder (:func:`ndckpt._codec.take_decoder`). Errors name
    ``where``; ``dst`` may then be partly written. Holds no reference to ``stored`` afterwards.
    """
    src = dec = None
    try:
        src = MmioSource(stored)
        out = as_bytes(dst, writable=True, what="LZ4 frame destination")
        dec = take_decoder()
        dec.start(0)
        if out.nbytes:
            dec.read(src, out, out.nbytes, 0)
        end = src.offset
    except CheckptError as e:
        raise type(e)(f"{where_text(where)}: {e}") from e
    finally:
        if dec is not None:
            give_back_decoder(dec)
        if src is not None:
            src.release()  # an mmap behind ``stored`` may be closed once this returns
    if end != stored.nbytes:
        raise FormatError(f"{where_text(where)}: LZ4 data ends at byte {end} of {stored.nbytes} stored bytes")


def verify_hash(data: Any, expect: int, where: Where) -> None:
    if _lz4.xxh64(data) != expect:
        raise FormatError(f"{where_text(where)}: checksum mismatch (the file is corrupt)")


#: With ``mmap="c"``, a call whose mapped arrays hold fewer bytes than this copies them instead:
#: a private mapping costs a file descriptor and a kernel mapping for as long as its arrays live,
#: and a copy of a few pages costs what copy-on-write of them would.
COW_MIN = 1 << 20
CopyJob = tuple[Part, int, int, np.ndarray[Any, np.dtype[np.uint8]]]  # part, lo, hi (stored bytes), destination
#: Large RAW frames are copied in pieces of this size, so that one big array uses every thread.
_SPLIT = 64 << 20


def _run_task(task: Callable[[], None]) -> None:
    task()


class Loader:
    """Materialises arrays of a validated file: views, copies or decodes, in parallel over frames."""

    def __init__(
        self,
        src: FileRegion,
        layout: Layout,
        *,
        mmap_views: bool,
        verify: bool | None,
        threads: int,
        progress: ProgressCallback | None = None,
        cow: bool = False,
    ) -> None:
        # cow: mapped arrays are views of a private (copy-on-write) mapping made for this load
        # (one per call, so that writes to them reach neither the file nor other loads' arrays);
        # only with an fd (a path).
        assert not cow or (mmap_views and src.fd is not None)
        self.src, self.region, self.layout = src, src.region, layout
        self.mmap_views, self.verify, self.threads = mmap_views, verify, threads
        self.progress = progress
        self.cow = cow

    # -- frames ------------------------------------------------------------------------------

    def _run(self, jobs: dict[int, list[CopyJob]], keep: set[int]) -> dict[int, np.ndarray[Any, np.dtype[np.uint8]]]:
        """Read every frame in ``jobs`` once and copy the listed byte ranges to their destinations.

        Returns the decoded buffers of the LZ4 frames listed in ``keep``.
        """
        lay, head = self.layout, self.layout.head
        kept: dict[int, np.ndarray[Any, np.dtype[np.uint8]]] = {}
        prog = Progress(self.progress, sum(head.frames[fi].nbytes for fi in jobs))

        def check(fi: int) -> bool:
            """RAW frames are checked when asked; LZ4 frames (verbatim ones too) unless told not to."""
            return bool(self.verify) if head.frames[fi].style == FrameStyle.RAW else self.verify is not False

        def work(fi: int) -> None:
            f, off, where = head.frames[fi], lay.offsets[fi], functools.partial(lay.where, fi)
            todo = jobs[fi]
            whole = len(todo) == 1 and todo[0][0].at == 0 and todo[0][2] - todo[0][1] == f.nbytes
            if lay.verbatim[fi]:
                lz4 = f.style == FrameStyle.LZ4
                if whole or fi in keep or (lz4 and check(fi)):
                    # The whole frame is read once: into the destination, or (packed, or an LZ4
                    # frame stored verbatim that must be checked) into a buffer the parts come from.
                    into = todo[0][3] if whole and fi not in keep else None
                    if into is not None:
                        buf = into
                    else:
                        buf = aligned_empty(f.nbytes) if fi in keep else ScratchPool.get(f.nbytes)
                    try:
                        self.src.read(buf, off)
                        if check(fi):
                            verify_hash(buf, lay.xxh[fi], where)
                        if into is None:
                            for p, lo, hi, part_dst in todo:
                                part_dst[:] = buf[p.at + lo - p.start : p.at + hi - p.start]
                    finally:
                        if into is None and fi not in keep:
                            ScratchPool.put(buf)
                    if fi in keep:
                        kept[fi] = buf
                else:
                    if check(fi) and self.src.hash(off, lay.stored[fi]) != lay.xxh[fi]:
                        # A RAW frame checked on request: read and hashed, never hashed through the
                        # mapping (see FileRegion.hash); the arrays may still be views of the mapping.
                        raise FormatError(f"{where()}: checksum mismatch (the file is corrupt)")
                    for p, lo, _hi, dst in todo:
                        self.src.read(dst, off + p.at + lo - p.start)
            else:
                n = lay.stored[fi]
                if self.src.fd is not None:
                    # Read, not mapped: a file truncated under an open reader must raise, not SIGBUS.
                    # ScratchPool is keyed by the frame's bound (the same for every full frame), not by its
                    # compressed size (different for every frame), so the buffer is reused, not faulted in.
                    stored_buf = ScratchPool.get(stored_bound(f))
                    self.src.read(stored_buf[:n], off)
                    stored = buffer_view(stored_buf[:n])
                else:
                    stored_buf, stored = None, self.region[off : off + n]
                try:
                    if self.verify is not False:
                        verify_hash(stored, lay.xxh[fi], where)
                    if whole and fi not in keep:
                        decode_lz4(stored, todo[0][3], where)
                    else:
                        plain = aligned_empty(f.nbytes)
                        decode_lz4(stored, plain, where)
                        for p, lo, hi, dst in todo:
                            a = p.at + lo - p.start
                            dst[:] = plain[a : a + hi - lo]
                        if fi in keep:
                            kept[fi] = plain
                finally:
                    if stored_buf is not None:
                        ScratchPool.put(stored_buf)
            prog.advance(f.nbytes)

        # A whole large RAW frame is read in pieces by several threads, then checked if asked
        # (pieces no larger than the progress step when progress is reported).
        split = min(_SPLIT, prog.step) if prog.step else _SPLIT
        tasks: list[Callable[[], None]] = []
        checks: list[tuple[int, np.ndarray[Any, np.dtype[np.uint8]]]] = []
        for fi in sorted(jobs):
            f, todo = head.frames[fi], jobs[fi]
            if (
                lay.verbatim[fi]
                and f.nbytes > split
                and len(todo) == 1
                and todo[0][2] - todo[0][1] == f.nbytes
                and fi not in keep
            ):
                dst, off = todo[0][3], lay.offsets[fi]
                pieces = range(0, f.nbytes, split)
                tasks.extend(functools.partial(self._piece, dst[a : a + split], off + a, prog) for a in pieces)
                if check(fi):
                    checks.append((fi, dst))
            else:
                tasks.append(functools.partial(work, fi))
        run_all(_run_task, tasks, self.threads)
        run_all(lambda c: verify_hash(c[1], lay.xxh[c[0]], lay.where(c[0])), checks, self.threads)
        return kept

    def _frames_of(self, which: list[int]) -> list[int]:
        """The frames holding arrays ``which`` (all frames for a whole load)."""
        if len(which) == len(self.layout.head.arrays):
            return list(range(len(self.layout.head.frames)))
        locs = self.layout.locs
        return sorted({fi for ai in which for fi, _ in locs[ai].parts})

    def _piece(self, dst: np.ndarray[Any, np.dtype[np.uint8]], off: int, prog: Progress) -> None:
        self.src.read(dst, off)
        prog.advance(dst.nbytes)

    def _jobs_for(
        self, ai: int, b0: int, b1: int, dst: np.ndarray[Any, np.dtype[np.uint8]], jobs: dict[int, list[CopyJob]]
    ) -> None:
        """Add jobs that fill ``dst`` with stored bytes ``[b0, b1)`` of array ``ai``."""
        for fi, p in self.layout.loc(ai).parts:
            lo, hi = max(b0, p.start), min(b1, p.start + p.nbytes)
            if lo < hi:
                jobs.setdefault(fi, []).append((p, lo, hi, dst[lo - b0 : hi - b0]))

    def _mapped(self, ai: int) -> bool:
        loc = self.layout.loc(ai)
        return self.mmap_views and loc.style == FrameStyle.RAW and loc.file_start is not None

    def _view(self, ai: int) -> np.ndarray[Any, Any]:
        spec, start = self.layout.head.arrays[ai], self.layout.loc(ai).file_start
        return np.ndarray(spec.shape, spec.dtype, buffer=self.region, offset=start, order=spec.order)  # type: ignore[call-overload,arg-type,unused-ignore]

    def _private_view(self, ai: int) -> np.ndarray[Any, Any]:
        """Array ``ai`` (mapped, whole) as a writable view of a new copy-on-write mapping."""
        spec, start = self.layout.head.arrays[ai], self.layout.loc(ai).file_start
        assert start is not None
        region, base = self.src.private_map(start, start + spec.nbytes)
        return np.ndarray(spec.shape, spec.dtype, buffer=region, offset=start - base, order=spec.order)  # type: ignore[call-overload,arg-type,unused-ignore]

    def _stored_view(self, ai: int, b0: int, b1: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
        start = self.layout.loc(ai).file_start
        assert start is not None
        return np.frombuffer(self.region, np.uint8, b1 - b0, start + b0)

    # -- whole arrays ----------------------------------------------------------------------

    def _sort_many(
        self, which: list[int], outs: dict[int, Any]
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int, int]], list[int], set[int]]:
        """Split ``which`` into mapped views, views of packed frames and the rest, with numpy.

        Returns ``(mapped, packed, rest, mapped_frames)``: the first three as
        :meth:`load` uses them, and the frames holding the mapped arrays.
        """
        lay = self.layout
        head = lay.head
        arrays, frames = head.arrays, head.frames
        t = head.part_table()
        sel = np.asarray(which, dtype=np.int64)
        single_part = np.bincount(t.array, minlength=len(arrays)) == 1
        frame_of = np.zeros(len(arrays), dtype=np.int64)
        at_of = np.zeros(len(arrays), dtype=np.int64)
        mask = single_part[t.array]
        frame_of[t.array[mask]] = t.frame[mask]
        at_of[t.array[mask]] = t.at[mask]
        fsel = frame_of[sel]
        raw_frame = np.array([f.style == FrameStyle.RAW for f in frames] or [False])
        shared = np.array([n > 1 for n in t.per_frame] or [False])
        simple = single_part[sel]
        if outs:
            simple &= ~np.isin(sel, np.fromiter(outs, dtype=np.int64, count=len(outs)))
        if any(a.blocks is not None for a in arrays):
            simple &= np.array([arrays[ai].blocks is None for ai in which], dtype=bool)
        is_mapped = simple & raw_frame[fsel] if self.mmap_views else np.zeros(len(sel), dtype=bool)
        is_packed = simple & ~is_mapped & shared[fsel]
        offsets = np.array(lay.offsets, dtype=np.int64)
        m_ai = sel[is_mapped]
        mapped = list(zip(m_ai.tolist(), (offsets[frame_of[m_ai]] + at_of[m_ai]).tolist(), strict=True))
        p_ai = sel[is_packed]
        packed = list(zip(p_ai.tolist(), frame_of[p_ai].tolist(), at_of[p_ai].tolist(), strict=True))
        return mapped, packed, sel[~(is_mapped | is_packed)].tolist(), set(frame_of[m_ai].tolist())

    def load(self, which: list[int], outs: dict[int, Any]) -> dict[int, np.ndarray[Any, Any]]:
        """Arrays ``which`` (indices), into ``outs[i]`` where given; views, copies or decodes.

        Heads may list many small arrays, so the arrays are sorted into kinds a
        column at a time (numpy over the part table); only arrays that need more
        than a view of a mapped or read frame go through the per-array path.
        """
        lay = self.layout
        head = lay.head
        arrays, frames = head.arrays, head.frames
        if self.src.fetches:
            self.src.want(lay, self._frames_of(which))
        result: dict[int, np.ndarray[Any, Any]] = {}
        jobs: dict[int, list[CopyJob]] = {}
        keep: set[int] = set()
        scatter: list[tuple[int, np.ndarray[Any, np.dtype[np.uint8]]]] = []  # blocked arrays: stored bytes
        # Arrays held whole by one part: mapped views (RAW, mmap) or views of a packed frame.
        mapped: list[tuple[int, int]] = []  # (array, file offset)
        packed: list[tuple[int, int, int]] = []  # (array, frame, offset in the frame)
        rest = which
        if len(which) >= MANY_ARRAYS:
            mapped, packed, rest, mapped_frames = self._sort_many(which, outs)
            if self.verify:  # mapped arrays are read by nobody else: check their frames here
                for fi in mapped_frames:
                    jobs.setdefault(fi, [])
        for ai in rest:  # per-array path: few arrays, or the few others
            spec, loc = arrays[ai], lay.loc(ai)
            out = outs.get(ai) if outs else None
            if spec.blocks is not None:
                result[ai] = _check_global_out(spec, out) if out is not None else new_array(spec)[0]
                if spec.nbytes:
                    if self._mapped(ai):
                        stored = self._stored_view(ai, 0, spec.nbytes)
                        if self.verify:
                            for fi, _ in loc.parts:
                                jobs.setdefault(fi, [])
                    else:
                        stored = aligned_empty(spec.nbytes)
                        self._jobs_for(ai, 0, spec.nbytes, stored, jobs)
                    scatter.append((ai, stored))
                continue
            if out is not None:
                self._jobs_for(ai, 0, spec.nbytes, check_out(spec, out), jobs)
                result[ai] = out
            elif not loc.parts:  # zero bytes
                # not np.empty: it turns a big-endian generic timedelta (">m8") native
                result[ai] = np.ndarray(spec.shape, spec.dtype, order=spec.order)  # type: ignore[call-overload,arg-type,unused-ignore]
            elif self._mapped(ai):
                assert loc.file_start is not None
                mapped.append((ai, loc.file_start))
                if self.verify:  # mapped arrays are read by nobody else: check their frames here
                    for fi, _ in loc.parts:
                        jobs.setdefault(fi, [])
            elif len(loc.parts) == 1 and len(frames[loc.parts[0][0]].parts) > 1:
                packed.append((ai, loc.parts[0][0], loc.parts[0][1].at))
            else:
                result[ai], raw = new_array(spec)
                self._jobs_for(ai, 0, spec.nbytes, raw, jobs)
        for _, fi, _ in packed:  # read (or decode) each such frame once; its arrays are views of it
            if fi not in keep:
                keep.add(fi)
                jobs.setdefault(fi, [])
        region, base = self.region, 0
        if self.cow and mapped:
            if sum(arrays[ai].nbytes for ai, _ in mapped) < COW_MIN:  # copies (see COW_MIN)
                for ai, _ in mapped:
                    result[ai], raw = new_array(arrays[ai])
                    self._jobs_for(ai, 0, arrays[ai].nbytes, raw, jobs)
                mapped = []
            else:
                lo = min(off for _, off in mapped)
                hi = max(off + arrays[ai].nbytes for ai, off in mapped)
                region, base = self.src.private_map(lo, hi)
        kept = self._run(jobs, keep)
        for ai, off in mapped:
            result[ai] = _array_at(region, arrays[ai], off - base)
        for ai, fi, at in packed:
            result[ai] = _array_at(kept[fi], arrays[ai], at)
        for ai, stored in scatter:
            scatter_blocks(arrays[ai], stored, result[ai])
        return result

    # -- regions ---------------------------------------------------------------------------

    def read_region(self, ai: int, region: Any, out: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        """Read ``array[region]`` reading only the frames that hold it (see Reader.read)."""
        spec = self.layout.head.arrays[ai]
        box = normalise_region(region, spec.shape, spec.name)
        shape = tuple(hi - lo for lo, hi in box)
        if self.src.fetches and self._mapped(ai):  # views of the array's bytes: fetch them first
            self.src.want(self.layout, self._frames_of([ai]))
        if out is not None:
            _check_region_out(spec, shape, out)
        if spec.blocks is None and self._mapped(ai) and not (self.cow and spec.nbytes < COW_MIN):
            whole = self._private_view(ai) if self.cow else self._view(ai)
            view = whole[tuple(slice(lo, hi) for lo, hi in box)]
            if out is None:
                return view
            _bitwise(out)[...] = _bitwise(view)
            return out
        res = out if out is not None else new_array(ArraySpec(spec.path, spec.dtype, shape, spec.order))[0]
        if 0 in shape:
            return res
        blocks = spec.blocks if spec.blocks is not None else (((0,) * len(spec.shape), spec.shape),)
        offs = block_offsets(spec) if spec.blocks is not None else [0, spec.nbytes]
        order = spec.order if spec.blocks is None else "C"
        pieces: list[
            tuple[tuple[slice, ...], tuple[slice, ...], tuple[int, ...], np.ndarray[Any, np.dtype[np.uint8]]]
        ] = []
        jobs: dict[int, list[CopyJob]] = {}
        for bi, (bstart, bshape) in enumerate(blocks):
            inter = [(max(lo, s), min(hi, s + n)) for (lo, hi), s, n in zip(box, bstart, bshape, strict=True)]
            if any(lo >= hi for lo, hi in inter):
                continue
            # Whole slabs of the block's slowest axis (axis 0 in C order, the last in F order).
            ax = 0 if order == "C" or not bshape else len(bshape) - 1
            slab = math.prod(bshape) // bshape[ax] * spec.dtype.itemsize if bshape else spec.dtype.itemsize
            k0, k1 = (inter[ax][0] - bstart[ax], inter[ax][1] - bstart[ax]) if bshape else (0, 1)
            b0, b1 = offs[bi] + k0 * slab, offs[bi] + k1 * slab
            sub_shape = list(bshape)
            if bshape:
                sub_shape[ax] = k1 - k0
            if self._mapped(ai):
                stored = self._stored_view(ai, b0, b1)
            else:
                stored = aligned_empty(b1 - b0)
                self._jobs_for(ai, b0, b1, stored, jobs)
            src_sel = tuple(
                slice(lo - s - (k0 if d == ax else 0), hi - s - (k0 if d == ax else 0))
                for d, ((lo, hi), s) in enumerate(zip(inter, bstart, strict=True))
            )
            dst_sel = tuple(slice(lo - blo, hi - blo) for (lo, hi), (blo, _) in zip(inter, box, strict=True))
            pieces.append((src_sel, dst_sel, tuple(sub_shape), stored))
        if self.src.fetches:
            self.src.want(self.layout, sorted(jobs))  # only the frames holding the region
        self._run(jobs, set())
        for src_sel, dst_sel, piece_shape, stored in pieces:
            sub = np.ndarray(piece_shape, spec.dtype, buffer=stored, order=order)  # type: ignore[call-overload,arg-type,unused-ignore]
            _bitwise(res)[dst_sel] = _bitwise(sub)[src_sel]
        return res


def normalise_region(region: Any, shape: tuple[int, ...], name: str) -> list[tuple[int, int]]:
    if not isinstance(region, tuple):
        region = (region,)
    if len(region) > len(shape):
        raise InvalidArgumentError(
            f"region for {name!r}: {len(region)} indices for an array of {len(shape)} dimensions"
        )
    box = []
    for d, n in enumerate(shape):
        s = region[d] if d < len(region) else slice(None)
        if not isinstance(s, slice):
            raise InvalidArgumentError(f"region for {name!r}: expected slices, got {s!r} in dimension {d}")
        lo, hi, step = s.indices(n)
        if step != 1:
            raise InvalidArgumentError(f"region for {name!r}: slice steps other than 1 are not supported")
        box.append((lo, max(lo, hi)))
    return box


def _check_region_out(spec: ArraySpec, shape: tuple[int, ...], out: Any) -> None:
    if not isinstance(out, np.ndarray) or out.dtype != spec.dtype or out.shape != shape or not out.flags.writeable:
        raise InvalidArgumentError(
            f"out for {spec.name!r}: expected a writable array of dtype {spec.dtype} and shape {shape}"
        )


def _check_global_out(spec: ArraySpec, out: Any) -> np.ndarray[Any, Any]:
    if not isinstance(out, np.ndarray) or out.dtype != spec.dtype or out.shape != spec.shape:
        raise InvalidArgumentError(
            f"out[{spec.name!r}]: expected dtype {spec.dtype} and shape {spec.shape}, got "
            f"{getattr(out, 'dtype', type(out).__name__)} and {getattr(out, 'shape', None)}"
        )
    if not out.flags.writeable:
        raise InvalidArgumentError(f"out[{spec.name!r}]: array is read-only")
    return out


def _bitwise(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``a`` viewed as opaque items of the same size: assignment then copies every byte, padding
    of structured dtypes included (numpy's field-wise assignment leaves padding undefined)."""
    return a.view(np.dtype((np.void, a.dtype.itemsize))) if a.dtype.itemsize else a


def scatter_blocks(spec: ArraySpec, stored: np.ndarray[Any, np.dtype[np.uint8]], dst: np.ndarray[Any, Any]) -> None:
    """Copy each block's C-order stored bytes to its place in the global array ``dst``."""
    assert spec.blocks is not None
    offs = block_offsets(spec)
    for (start, shape), off, end in zip(spec.blocks, offs, offs[1:], strict=False):
        block = np.ndarray(shape, spec.dtype, buffer=stored[off:end])  # type: ignore[call-overload,arg-type,unused-ignore]
        _bitwise(dst)[tuple(slice(s, s + n) for s, n in zip(start, shape, strict=True))] = _bitwise(block)


def nest(head: Head, arrays: dict[int, np.ndarray[Any, Any]], *, groups: bool = True) -> dict[str, Any]:
    """The nested result of a load: ``arrays`` by index, plus (with ``groups``) the empty groups and
    the head's Python-value leaves, decoded afresh (the caller owns them)."""
    out: dict[str, Any] = {}
    entries: list[tuple[tuple[str, ...], Any]] = [(head.arrays[i].path, a) for i, a in arrays.items()]
    if groups:
        entries += [(g, None) for g in head.groups]
        if head.values:
            entries += [(p, _Value(v)) for p, v in head.decoded_values()]
    for path, a in sorted(entries, key=lambda e: e[0]):
        d = out
        for k in path[:-1]:
            d = d.setdefault(k, {})
        d[path[-1]] = {} if a is None else a.v if type(a) is _Value else a
    if groups and head.values and any(p[-1] == MARKER for p, _ in head.values):
        rebuild(out)
    return out


class _Value:
    """A decoded value leaf while a result is assembled (``None`` there means an empty group)."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v


def flatten_out(out: Any, layout: Layout, prefix: tuple[str, ...] = ()) -> dict[int, Any]:
    """``out``'s arrays by array index; its names are relative to the group ``prefix``."""
    if out is None:
        return {}
    if not isinstance(out, Mapping):
        raise InvalidArgumentError(f"out: expected a mapping like the saved one, got {type(out).__name__}")
    flat: dict[int, Any] = {}

    def walk(m: Mapping[Any, Any], prefix: tuple[str, ...]) -> None:
        for k, v in m.items():
            path = (*prefix, str(k))
            if isinstance(v, Mapping):
                walk(v, path)
                continue
            name = "/".join(path)
            if name not in layout.by_name:
                if name in layout.value_names:
                    continue  # a Python value: immutable or rebuilt, never filled (load's docstring)
                raise InvalidArgumentError(f"out[{name!r}]: no array of that name in the checkpoint")
            flat[layout.by_name[name]] = v

    walk(out, prefix)
    return flat


# ----------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------


def loader_for(
    src: FileRegion,
    layout: Layout,
    mode: str | None,
    verify: bool | None,
    threads: int,
    progress: ProgressCallback | None = None,
) -> Loader:
    """A loader for read mode ``mode``: "c" maps privately from a path's fd and copies from a
    buffer (whose bytes belong to the caller and must never be written)."""
    cow = mode == "c" and src.fd is not None
    views = mode == "r" or cow
    return Loader(src, layout, mmap_views=views, verify=verify, threads=threads, progress=progress, cow=cow)


def verify_frames(src: FileRegion, threads: int, progress: ProgressCallback | None) -> Layout:
    """verify() of a path or buffer: every frame's checksum, LZ4 decodes, and zero pads.

    With an fd, what is hashed and checked is read (``pread``), never touched
    through the mapping, so a file that shrinks meanwhile gives CheckptIOError,
    not SIGBUS.
    """
    region = src.region
    layout = parse_layout(region, records=not src.fetches)
    src.want(layout, list(range(len(layout.head.frames))))

    def read(off: int, n: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
        buf = np.empty(n, np.uint8)
        src.read(buf, off)
        return buf

    def check(fi: int) -> None:
        f, where = layout.head.frames[fi], layout.where(fi)
        off, n = layout.offsets[fi], layout.stored[fi]
        if layout.verbatim[fi]:  # a pad precedes the data (after the record, for an LZ4 frame)
            prev, _ = layout.pad_range(fi)
            nz = np.flatnonzero(read(prev, off - prev))
            if nz.size:
                raise FormatError(f"{where}: non-zero padding byte at offset {prev + int(nz[0])} (the file is corrupt)")
            if src.hash(off, n) != layout.xxh[fi]:
                raise FormatError(f"{where}: checksum mismatch (the file is corrupt)")
            return
        stored_buf = ScratchPool.get(stored_bound(f)) if src.fd is not None else None
        scratch = ScratchPool.get(f.nbytes)
        try:
            if stored_buf is not None:
                src.read(stored_buf[:n], off)
                stored = buffer_view(stored_buf[:n])
            else:  # a caller's buffer: nothing can vanish under it
                stored = region[off : off + n]
            verify_hash(stored, layout.xxh[fi], where)
            decode_lz4(stored, scratch, where)
        finally:
            ScratchPool.put(scratch)
            if stored_buf is not None:
                ScratchPool.put(stored_buf)

    prog = Progress(progress, sum(f.nbytes for f in layout.head.frames))

    def step(fi: int) -> None:
        check(fi)
        prog.advance(layout.head.frames[fi].nbytes)

    run_all(step, list(range(len(layout.head.frames))), threads)
    return layout
