"""The fd_checkpt frame format: its constants, frame styles and size arithmetic.

The normative specification is ``docs/fd_checkpt.md`` (derived from Firedancer's
``src/util/checkpt``): RAW frames in §2, LZ4 chunks, history and size bound in §3, offsets in
§4. This module holds the numbers and the pure arithmetic that page defines, each pointing to
its section; it restates none of the rules.
"""

from __future__ import annotations

import enum

__all__ = [
    "CHUNK_USZ_MAX",
    "CSZ_HDR",
    "GBUF_SZ",
    "META_MAX",
    "RBUF_MIN",
    "WBUF_MIN",
    "FrameStyle",
    "chunk_csz_max",
    "chunk_sizes",
    "frame_style_is_supported",
    "lz4_frame_bound",
    "parse_style",
]

#: Largest buffer accepted by the ``meta`` call of fd_checkpt (and our ``buf(..., meta=True)``).
META_MAX = 65536
#: Uncompressed bytes per LZ4 chunk; a chunk never spans two buffers.
CHUNK_USZ_MAX = 65536
#: Bytes of the per-chunk header: the compressed size, 24-bit little-endian.
CSZ_HDR = 3
#: Smallest stream write / read buffer (fd_checkpt's WBUF_MIN / RBUF_MIN).
WBUF_MIN = 69632
RBUF_MIN = WBUF_MIN
#: Gather/scatter ring size. The ring wraps at chunk granularity; its size
#: guarantees a wrap never overwrites the most recent 64 KiB of history.
GBUF_SZ = 2 * META_MAX + 65536
#: Largest compressed size the 3-byte header can carry.
CSZ_LIMIT = (1 << 24) - 1


def chunk_csz_max(usz: int) -> int:
    """Largest stored size (header + block) of a chunk of ``usz`` bytes: LZ4_COMPRESSBOUND + 3."""
    return usz + usz // 255 + 19


def chunk_sizes(nbytes: int) -> list[int]:
    """The uncompressed chunk sizes an LZ4 frame uses for a buffer of ``nbytes`` bytes."""
    full, rem = divmod(nbytes, CHUNK_USZ_MAX)
    return [CHUNK_USZ_MAX] * full + ([rem] if rem else [])


def lz4_frame_bound(buffer_sizes: list[int]) -> int:
    """Exact upper bound on the stored size of an LZ4 frame holding these buffers."""
    full_bound = chunk_csz_max(CHUNK_USZ_MAX)
    total = 0
    for n in buffer_sizes:
        full, rem = divmod(n, CHUNK_USZ_MAX)
        total += full * full_bound + (chunk_csz_max(rem) if rem else 0)
    return total


# Static cross-checks of the constants, as fd_checkpt.h asserts them.
assert chunk_csz_max(CHUNK_USZ_MAX) <= WBUF_MIN, "a worst-case chunk must fit the stream buffer"
assert chunk_csz_max(CHUNK_USZ_MAX) - CSZ_HDR <= CSZ_LIMIT
assert GBUF_SZ == 196608
assert CHUNK_USZ_MAX <= META_MAX


class FrameStyle(enum.IntEnum):
    """Frame styles, with their on-disk fd_checkpt codes. Style 0 means the default, RAW."""

    RAW = 1
    LZ4 = 2


def parse_style(style: object) -> FrameStyle:
    """Turn ``0``, ``1``, ``2``, a :class:`FrameStyle` or ``"raw"``/``"lz4"`` into a FrameStyle.

    Raises :class:`~ndckpt.errors.UnsupportedError` for any other integer and
    :class:`~ndckpt.errors.InvalidArgumentError` for any other type or name.
    """
    from .errors import InvalidArgumentError, UnsupportedError

    if isinstance(style, str):
        try:
            return FrameStyle[style.upper()]
        except KeyError:
            raise InvalidArgumentError(
                f"unknown frame style {style!r}: expected 'raw' or 'lz4'"
            ) from None
    if isinstance(style, bool) or not isinstance(style, int):
        raise InvalidArgumentError(
            f"frame style must be an int, a FrameStyle or 'raw'/'lz4', got {type(style).__name__}"
        )
    if style == 0:
        return FrameStyle.RAW
    try:
        return FrameStyle(style)
    except ValueError:
        raise UnsupportedError(f"unsupported frame style {style}: expected 0, 1 (RAW) or 2 (LZ4)") from None


def frame_style_is_supported(style: int) -> bool:
    """True for RAW, and for LZ4 when an LZ4 library was found; False for anything else (0 too)."""
    if isinstance(style, bool) or not isinstance(style, int):
        return False
    if style == FrameStyle.RAW:
        return True
    if style == FrameStyle.LZ4:
        from . import _lz4

        return _lz4.available()
    return False
