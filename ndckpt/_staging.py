"""Staging: the copy of a state that an asynchronous :class:`ndckpt.CheckpointManager` save writes.

``CheckpointManager.save`` with ``async_save=True`` returns once the state is
copied here (:func:`capture`); the background writer then saves the staged
tree, and the caller may modify its own arrays at once. "Staging" in ndckpt
means only this copy (the per-call scratch buffers of a save or load are
:class:`ndckpt.parallel.ScratchPool`'s).

The memory is one :class:`StagingArena` per manager: page-aligned, reallocated
only when a state needs more bytes than it holds, its views rebuilt only when
the state's layout (dtypes, shapes, orders) changes, so memory is bounded by
the largest state saved. What is staged is exactly what :func:`ndckpt.save`
would write from the caller's arrays: the same bytes, order and dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Literal

import numpy as np

from ._memory import aligned_empty
from .container.plan import as_array, bytes_of, flatten_tree, resolve_styles
from .container.values import decode as decode_value
from .container.values import encode as encode_value
from .container.values import is_value

__all__ = ["PARALLEL_COPY_MIN", "StagingArena", "capture", "copy_pieces", "order_of", "run_copies"]

#: A staged array of at least this many bytes starts on a page boundary of the staging
#: arena; a smaller one starts on a ``_SMALL_ALIGN``-byte boundary. Alignment never changes
#: what is written, only where the staged copy lives.
_PAGE_ALIGN_MIN = 4096
_SMALL_ALIGN = 64
#: A state with fewer array bytes than this is copied into staging by the calling thread
#: alone; a larger one is split between it and a helper thread (when ``threads >= 2``).
PARALLEL_COPY_MIN = 8 << 20

Order = Literal["C", "F"]
#: What a staged array's view depends on: dtype, shape, storage order.
ArraySpec = tuple[np.dtype[Any], tuple[int, ...], Order]
#: One copy, ``np.copyto(dst, src)``: a staged view's bytes and the caller's.
CopyPiece = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]


class StagingArena:
    """Page-aligned memory for one in-flight save, reused across saves.

    Owned by one manager; not thread-safe (the manager never captures while
    its previous save still writes from the arena). ``allocate(nbytes)``
    returns the memory (a new page-aligned uint8 array of ``nbytes``; by
    default private memory, :func:`ndckpt._memory.aligned_empty`; a writer
    process passes memory it shares).
    """

    def __init__(self, allocate: Callable[[int], np.ndarray[Any, np.dtype[np.uint8]]] = aligned_empty) -> None:
        self._allocate = allocate
        self.arena: np.ndarray[Any, np.dtype[np.uint8]] | None = None
        self._key: tuple[ArraySpec, ...] | None = None
        self._views: list[np.ndarray[Any, Any]] = []
        self.allocations = 0  # arenas allocated so far (tests check reuse)

    @property
    def nbytes(self) -> int:
        """Bytes held (0 before the first capture and after :meth:`release`)."""
        return 0 if self.arena is None else int(self.arena.nbytes)

    def views(self, specs: list[ArraySpec]) -> list[np.ndarray[Any, Any]]:
        """One writable array per spec, in the arena (empty arrays outside it).

        The same list as the previous call when ``specs`` are equal; the
        views of an earlier call are invalid once the layout changes.
        """
        key = tuple(specs)
        if key == self._key:
            return self._views
        offsets: list[int] = []
        pos = 0
        for dtype, shape, _ in specs:
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            align = _PAGE_ALIGN_MIN if nbytes >= _PAGE_ALIGN_MIN else _SMALL_ALIGN
            off = -(-pos // align) * align
            offsets.append(off)
            pos = off + nbytes
        if self.arena is None or self.arena.nbytes < pos:
            self.arena = None  # let the old arena go before the new one is touched
            self._key, self._views = None, []
            self.arena = self._allocate(max(pos, 1))
            self.allocations += 1
        views: list[np.ndarray[Any, Any]] = []
        for (dtype, shape, order), off in zip(specs, offsets, strict=True):
            if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize == 0:
                views.append(np.empty(shape, dtype, order=order))
            else:
                views.append(np.ndarray(shape, dtype, buffer=self.arena, offset=off, order=order))
        self._key, self._views = key, views
        return views

    def release(self) -> None:
        """Free the arena (a later :meth:`views` allocates again)."""
        self.arena, self._key, self._views = None, None, []


def order_of(a: np.ndarray[Any, Any]) -> Order:
    """The order ``ndckpt.save`` stores ``a`` in: C if C-contiguous, else F if F-contiguous, else C."""
    if a.flags.c_contiguous:
        return "C"
    return "F" if a.flags.f_contiguous else "C"


def copy_pieces(
    pairs: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], Order]], nparts: int
) -> list[list[CopyPiece]]:
    """Split the copies of ``(staged, caller's, order)`` into ``nparts`` lists of about equal bytes.

    Contiguous arrays are copied as flat bytes (whole items, padding included,
    exactly as ``ndckpt.save`` writes them) and may be cut at page multiples;
    non-contiguous ones are copied item by item as opaque bytes, whole, in part 0.
    Every byte is in exactly one piece; every part but the last holds at most
    ``ceil(total / nparts)`` flat bytes.
    """
    parts: list[list[CopyPiece]] = [[] for _ in range(nparts)]
    flat: list[CopyPiece] = []
    for dst, src, order in pairs:
        if src.nbytes == 0:
            continue
        if src.flags.c_contiguous or src.flags.f_contiguous:
            flat.append((bytes_of(dst, order), bytes_of(src, order)))
        else:
            void = np.dtype((np.void, src.dtype.itemsize))
            parts[0].append((dst.view(void), src.view(void)))
    total = sum(d.nbytes for d, _ in flat)
    share = -(-total // nparts) if nparts else total
    k, room = 0, share
    for dst, src in flat:
        lo, n = 0, dst.nbytes
        while lo < n:
            take = n - lo
            if k < nparts - 1 and take > room:
                take = max(room // 4096 * 4096, 0)
                if take == 0:
                    k, room = k + 1, share
                    continue
            parts[k].append((dst[lo : lo + take], src[lo : lo + take]))
            lo += take
            room -= take
            if k < nparts - 1 and room <= 0:
                k, room = k + 1, share
    return parts


def run_copies(pieces: list[CopyPiece]) -> None:
    """Do the copies of one part of :func:`copy_pieces`."""
    for dst, src in pieces:
        np.copyto(dst, src)


def _nest(items: list[tuple[tuple[str, ...], Any]], groups: list[tuple[str, ...]]) -> dict[str, Any]:
    """The nested mapping of ``(path, leaf)`` items, with the (empty) groups ``groups`` present."""
    out: dict[str, Any] = {}
    for path, value in items:
        d = out
        for k in path[:-1]:
            d = d.setdefault(k, {})
        d[path[-1]] = value
    for path in groups:
        d = out
        for k in path:
            d = d.setdefault(k, {})
    return out


def capture(
    state: Any,
    style: Any,
    arena: StagingArena,
    helper: Callable[[Callable[[], None]], Future[None]] | None,
) -> dict[str, Any]:
    """Copy ``state`` into ``arena``; return the staged tree, which :func:`ndckpt.save` writes as it would ``state``.

    ``state`` and ``style`` are validated as :func:`ndckpt.save` validates
    them (InvalidArgumentError before anything is copied). Python values and
    numpy scalars are snapshotted by encoding them now and decoding a fresh
    copy, so a list the caller mutates afterwards does not change what is
    written. With ``helper`` (starts a task on an idle thread), a state of at
    least :data:`PARALLEL_COPY_MIN` array bytes is copied half by the calling
    thread and half by ``helper``; this call returns only when both are done.
    The staged arrays are valid until the arena's next capture or release.
    """
    items, groups = flatten_tree(state)
    values = [(p, decode_value(encode_value(v, f"value {'/'.join(p)!r}"), "")) for p, v in items if is_value(v)]
    arrays = [(path, as_array(path, v)) for path, v in items if not is_value(v)]
    resolve_styles(style, ["/".join(p) for p, _ in arrays], {"/".join(p) for p, _ in values})
    specs: list[ArraySpec] = [(a.dtype, tuple(int(n) for n in a.shape), order_of(a)) for _, a in arrays]
    views = arena.views(specs)
    pairs = [(v, a, spec[2]) for v, (_, a), spec in zip(views, arrays, specs, strict=True)]
    total = sum(a.nbytes for _, a in arrays)
    nparts = 2 if helper is not None and total >= PARALLEL_COPY_MIN else 1
    parts = copy_pieces(pairs, nparts)
    if helper is None or nparts == 1:
        run_copies(parts[0])
    else:
        second = parts[1]
        other = helper(lambda: run_copies(second))
        try:
            run_copies(parts[0])
        finally:
            other.result()
    return _nest([(path, v) for (path, _), v in zip(arrays, views, strict=True)] + values, groups)
