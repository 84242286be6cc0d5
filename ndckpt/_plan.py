"""Pure planning: which bytes of which array go into which frame.

The plan depends only on the arrays' paths, dtypes, shapes and styles and on
the frame size, never on thread count, dict order or memory addresses, so
the bytes of a checkpoint are a pure function of its content and options.

Rules (``docs/format.md`` section "Plan"):

1. Arrays are ordered by path (tuples of strings, compared component-wise),
   RAW arrays first, then LZ4 arrays.
2. An array of at most ``pack_max`` bytes is *packed*: it goes into the
   current pack frame of its style at the next multiple of 64 bytes (of 4096
   bytes when the array has at least 4096 bytes, so that every mapped or
   decoded array of a page or more is page-aligned), or opens a new pack
   frame when it would not fit in ``frame_bytes``.
3. A larger array gets frames of its own: ``frame_bytes`` bytes each for LZ4
   and ``raw_frame_bytes`` for RAW (multiples of 65536, hence of 4096), plus a
   last, shorter one. Consecutive RAW frames of one array are therefore
   contiguous in the file.
4. Zero-byte arrays get no part at all.
"""

from __future__ import annotations

import math

from .container import PART_ALIGN, RAW_ALIGN, ArraySpec, FrameSpec, Part
from .format import FrameStyle

__all__ = ["DEFAULT_FRAME_BYTES", "DEFAULT_RAW_FRAME_BYTES", "plan"]

#: Uncompressed bytes per LZ4 frame (and per frame of packed small arrays). Frames are the unit
#: of parallel work and of staging memory: 4 MiB keeps 2 threads busy from 8 MiB on and bounds
#: a save's staging memory at a few frames.
DEFAULT_FRAME_BYTES = 4 << 20
#: Uncompressed bytes per RAW frame of a large array. RAW frames need no staging memory and their
#: checksums are computed while they are written, and large copies are split across threads on
#: load, so small RAW frames buy nothing; but every frame costs a head entry that each open
#: parses (0.86 ms per GiB at 4 MiB frames against 0.08 ms for a 1 MiB file).
DEFAULT_RAW_FRAME_BYTES = 1 << 30


def plan(
    arrays: list[ArraySpec],
    styles: list[FrameStyle],
    frame_bytes: int = DEFAULT_FRAME_BYTES,
    raw_frame_bytes: int | None = None,
) -> tuple[list[int], list[FrameSpec]]:
    """Order the arrays and cut them into frames.

    ``raw_frame_bytes`` defaults to ``frame_bytes``. Returns ``(order,
    frames)``: ``order`` lists indices into ``arrays`` in storage order, and
    parts in ``frames`` refer to positions in ``order``.
    """
    if raw_frame_bytes is None:
        raw_frame_bytes = frame_bytes
    if frame_bytes <= 0 or frame_bytes % 65536 or raw_frame_bytes <= 0 or raw_frame_bytes % 65536:
        raise ValueError("frame sizes must be positive multiples of 65536")
    pack_max = frame_bytes // 4
    keys = [(int(styles[i]), a.path) for i, a in enumerate(arrays)]
    order = sorted(range(len(arrays)), key=keys.__getitem__)
    sizes = [math.prod(a.shape) * a.dtype.itemsize for a in arrays]
    frames: list[FrameSpec] = []
    pack: FrameSpec | None = None
    new_part, raw_align, part_align = tuple.__new__, RAW_ALIGN, PART_ALIGN
    for pos, i in enumerate(order):  # per-array work stays minimal: a state may hold 20,000 arrays
        n, style = sizes[i], styles[i]
        if n == 0:
            continue
        if pack is not None and pack.style is not style:
            pack = None
        if n <= pack_max:
            if pack is not None:
                a = raw_align if n >= raw_align else part_align
                at = -(-pack.nbytes // a) * a  # align_up, inlined
            if pack is None or at + n > frame_bytes:
                pack = FrameSpec(style, 0)
                frames.append(pack)
                at = 0
            pack.parts.append(new_part(Part, (pos, 0, n, at)))
            pack.nbytes = at + n
            continue
        pack = None
        step = raw_frame_bytes if style == FrameStyle.RAW else frame_bytes
        for start in range(0, n, step):
            m = min(step, n - start)
            frames.append(FrameSpec(style, m, [Part(pos, start, m, 0)]))
    return order, frames
