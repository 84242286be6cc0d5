"""Filtered LZ4 frames in the container (docs/format.md §2.8): the head's ``"filter"`` key,
filtering while encoding and unfiltering while decoding.

The filters themselves (bytes in, bytes out) are :mod:`ndckpt.filters`; this module is where the
container meets them, so that the head parser (:mod:`.head`), the writer (:mod:`.write`) and the
readers (:mod:`.read`, :mod:`.stream`) share one definition of each step:

- :func:`parse_filter` validates a frame's ``"filter": [kind, itemsize]``;
- :func:`write_filtered` feeds a frame buffer's filter to an LZ4 encoder a batch at a time;
- :func:`decode_unfilter` decodes a filtered frame a batch at a time and unfilters each batch
  straight into its destination.

Both batch loops use one :data:`STEP`-byte scratch buffer from
:class:`~ndckpt.parallel.ScratchPool` (and whatever :mod:`ndckpt.filters` allocates, at most
``SCRATCH_MAX``), never a frame-sized temporary.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from .._backend import MmioSink, MmioSource
from .._codec import FrameDecoder, FrameEncoder
from .._memory import buffer_view
from ..errors import FormatError, UnsupportedError
from ..filters import BATCH, BLOCK, FILTERS, ITEMSIZE_MAX, filter_into, unfilter_into
from ..format import FrameStyle
from ..parallel import ScratchPool

__all__ = ["KNOWN_FILTERS", "STEP", "decode_unfilter", "parse_filter", "write_filtered"]

#: Filter kinds a frame may record (format §2.8): those of :data:`ndckpt.filters.FILTERS`.
KNOWN_FILTERS: Final = FILTERS
#: Bytes filtered or unfiltered per step: whole filter blocks (= LZ4 chunks), a filters.py batch.
STEP: Final = BATCH * BLOCK


def parse_filter(i: int, v: Any, style: Any) -> tuple[str, int]:
    """Frame ``i``'s ``"filter"`` value (format §2.8), for a frame of style ``style``.

    Raises FormatError when it is malformed (not ``[str, int]``, an item size outside
    [1, ITEMSIZE_MAX], a frame that is not LZ4), and UnsupportedError ("upgrade ndckpt") for a
    well-formed kind this reader does not know.
    """
    if type(v) is not list or len(v) != 2:
        raise FormatError(f"frame {i}: filter must be a list [kind, itemsize], got {_short(v)}")
    kind, size = v
    if type(kind) is not str:
        raise FormatError(f"frame {i}: filter kind must be a string, got {_short(kind)}")
    if type(size) is not int or not 1 <= size <= ITEMSIZE_MAX:
        raise FormatError(f"frame {i}: filter item size must be an integer in [1, {ITEMSIZE_MAX}], got {_short(size)}")
    if type(style) is not int or style != int(FrameStyle.LZ4):
        raise FormatError(f"frame {i}: a filter is allowed only on an LZ4 frame (style 2), not style {_short(style)}")
    if kind not in KNOWN_FILTERS:
        raise UnsupportedError(
            f"frame {i} uses the filter {kind[:100]!r}, which this version of ndckpt does not know; "
            "upgrade ndckpt to read it"
        )
    return (kind, size)


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def write_filtered(
    enc: FrameEncoder, sink: MmioSink, src: np.ndarray[Any, np.dtype[np.uint8]], filt: tuple[str, int]
) -> None:
    """Write the ``filt`` filter of the frame buffer ``src`` (read only) to ``enc``, which has
    started the frame: :data:`STEP` bytes at a time are filtered into a scratch buffer and
    written. Batches are whole LZ4 chunks, so the frame's bytes are those of the whole filtered
    buffer written at once. ValueError for a kind that is not a filter ("auto" undecided);
    otherwise raises as :meth:`FrameEncoder.write`."""
    kind, s = filt
    if kind not in FILTERS:
        raise ValueError(f"frame filter {filt!r} was not decided")
    n = src.nbytes
    if not n:
        return
    scratch = ScratchPool.get(min(n, STEP))
    try:
        view = buffer_view(scratch)
        for a in range(0, n, STEP):
            m = min(STEP, n - a)
            filter_into(kind, src[a : a + m], scratch[:m], s)
            enc.write(sink, view[:m], m)
    finally:
        ScratchPool.put(scratch)


def decode_unfilter(
    dec: FrameDecoder,
    src: MmioSource,
    dst: np.ndarray[Any, np.dtype[np.uint8]],
    filt: tuple[str, int],
    span: tuple[int, int] | None = None,
) -> bool:
    """Decode the filtered LZ4 frame at ``src`` (``dec`` started) and unfilter it into ``dst``
    (the frame buffer's ``dst.nbytes`` bytes), :data:`STEP` bytes at a time.

    The decoded bytes stay in the scratch buffer as the next chunk's LZ4 history and are never
    modified. With ``span = (lo, hi)`` decoding stops after the block holding byte ``hi - 1``
    and only the blocks meeting ``[lo, hi)`` are unfiltered; other bytes of ``dst`` are left
    as they were. Returns whether the whole frame was decoded. Raises as
    :meth:`FrameDecoder.read` (``dst`` may then be partly written).
    """
    kind, s = filt
    n = dst.nbytes
    lo, hi = span if span is not None else (0, n)
    stop = min(n, -(-hi // BLOCK) * BLOCK)
    if stop <= 0:
        return n == 0
    first = lo // BLOCK * BLOCK
    scratch = ScratchPool.get(min(n, STEP))
    try:
        view = buffer_view(scratch)
        for k, a in enumerate(range(0, stop, STEP)):
            m = min(STEP, stop - a)
            dec.read(src, view[:m], m, k)
            b0 = max(a, first)
            if b0 < a + m:
                unfilter_into(kind, scratch[b0 - a : m], dst[b0 : a + m], s)
    finally:
        ScratchPool.put(scratch)
    return stop == n
