"""What a parsed checkpoint says about its arrays and values, for people: sizes, rows, listings.

Pure functions of a :class:`~ndckpt.container.layout.Layout` (no file access):
the stored size of each array, the rows of :meth:`ndckpt.Reader.info` and
:meth:`ndckpt.Reader.value_info`, and the :class:`~ndckpt._browse.Listing` a
Reader or a Group shows as its ``repr`` and notebook table.
"""

from __future__ import annotations

from typing import Any

from .._browse import ROWS_SHOWN, Listing, Node, short_repr, walk
from ..errors import CheckptError
from ..format import FrameStyle
from .layout import Layout
from .values import decode as decode_value
from .values import type_name

__all__ = ["array_rows", "listing", "stored_nbytes", "style_text", "value_rows"]


def style_text(layout: Layout, ai: int) -> str:
    """How array ``ai`` is stored, for people: "raw", "lz4", "lz4+delta/8" (every frame
    filtered alike, format §2.8: the kind and item size), or the mix of its frames' filters
    when they differ (what style "auto" makes): "auto: delta/8 x3, lz4 x1", most frames first."""
    loc = layout.locs[ai]
    if loc.style == FrameStyle.RAW:
        return "raw"
    counts: dict[str, int] = {}
    for fi in loc.frames:
        filt = layout.head.frames[fi].filter
        key = "lz4" if filt is None else f"{filt[0]}/{filt[1]}"
        counts[key] = counts.get(key, 0) + 1
    if len(counts) <= 1:
        key = next(iter(counts), "lz4")
        return key if key == "lz4" else f"lz4+{key}"
    mix = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return "auto: " + ", ".join(f"{k} x{n}" for k, n in mix)


def stored_nbytes(layout: Layout, ai: int) -> int:
    """Array ``ai``'s stored bytes; an LZ4 frame packing several arrays is shared in
    proportion to their bytes (rounded per frame)."""
    stored = 0
    for fi, p in layout.locs[ai].parts:
        f = layout.head.frames[fi]
        stored += layout.stored[fi] if p.nbytes == f.nbytes else round(layout.stored[fi] * p.nbytes / f.nbytes)
    return stored


def array_rows(layout: Layout) -> list[dict[str, Any]]:
    """One dict per array, in storage order: what :meth:`ndckpt.Reader.info` documents."""
    rows = []
    for ai, spec in enumerate(layout.head.arrays):
        loc = layout.locs[ai]
        rows.append(
            {
                "name": spec.name,
                "dtype": str(spec.dtype),
                "shape": spec.shape,
                "order": spec.order,
                "style": style_text(layout, ai),
                "nbytes": spec.nbytes,
                "stored_nbytes": stored_nbytes(layout, ai),
                "frames": loc.frames,
                "blocks": None if spec.blocks is None else [[list(a), list(b)] for a, b in spec.blocks],
                "offsets": [layout.offsets[fi] for fi in loc.frames],
            }
        )
    return rows


def value_rows(layout: Layout) -> list[dict[str, Any]]:
    """One dict per Python-value leaf, sorted by path: name, type name and the decoded value."""
    return [{"name": "/".join(p), "type": type_name(v), "value": v} for p, v in layout.head.decoded_values()]


def listing(layout: Layout, node: Node, title: str, top: bool) -> Listing:
    """The listing of the group ``node`` of the name tree (array leaves are indices >= 0, value
    leaves ``-1 - index``): totals over every leaf below it, the first :data:`ROWS_SHOWN` rows of
    each kind, and (``top``: the whole file) the metadata. A value that cannot be decoded is shown
    as unreadable, never raised."""
    out = Listing(title)
    for p, v in walk(node):
        if isinstance(v, dict):
            out.ngroups += 1
            continue
        rel = "/".join(p)
        if v >= 0:
            spec = layout.head.arrays[v]
            stored = stored_nbytes(layout, v)
            out.narrays += 1
            out.nbytes += spec.nbytes
            out.stored += stored
            if len(out.arrays) < ROWS_SHOWN:
                style = style_text(layout, v)
                out.arrays.append((rel, str(spec.dtype), str(spec.shape), style, spec.nbytes, stored))
            continue
        out.nvalues += 1
        if len(out.values) < ROWS_SHOWN:
            try:
                value = decode_value(layout.head.values[-1 - v][1], f"value {rel!r}")
                out.values.append((rel, type_name(value), short_repr(value)))
            except CheckptError as e:
                out.values.append((rel, "?", f"<unreadable: {e}>"))
    if top and layout.head.metadata is not None:
        out.metadata = short_repr(layout.head.metadata)
    return out
