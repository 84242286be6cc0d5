"""The ndckpt container format, version 2: its layout constants and limits.

The normative specification is ``docs/format.md``: the file layout and why it has this shape
in §2, the superblock §2.1, the head §2.2, LZ4 records §2.3, pads §2.4, data frames §2.5, the
index §2.6, the trailer §2.7, limits §4.1. This module holds the numbers that page defines;
the rules live there (and in :mod:`.head` and :mod:`.layout`, which implement them), not here.
"""

from __future__ import annotations

import struct
from typing import Final

import numpy as np

__all__ = [
    "END_MAGIC",
    "INDEX_DTYPE",
    "MAGIC",
    "PART_ALIGN",
    "RAW_ALIGN",
    "RECORD",
    "STORED_VERBATIM",
    "SUPERBLOCK",
    "TRAILER",
    "VERSION",
    "align_up",
    "lz4_decoded_max",
    "stored_raw",
]

MAGIC: Final = b"\x93NDCKPT\n"
END_MAGIC: Final = b"NDCKEND\n"
VERSION: Final = 2
#: magic, version, flags, head_nbytes, head_xxh64
SUPERBLOCK: Final = struct.Struct("<8sIIQQ")
#: index_offset, nframes, index_xxh64, file_nbytes, version, flags, end magic
TRAILER: Final = struct.Struct("<QQQQII8s")
#: stored_nbytes, xxh64 -- written before every LZ4 data frame
RECORD: Final = struct.Struct("<QQ")
#: Bit of a record's (and the index's) stored_nbytes that marks an LZ4 frame stored verbatim.
STORED_VERBATIM: Final = 1 << 63
#: An LZ4 frame is stored verbatim when compression saves less than nbytes >> this.
RAW_FALLBACK_SHIFT: Final = 5
INDEX_DTYPE: Final = np.dtype([("offset", "<u8"), ("stored", "<u8"), ("xxh64", "<u8")])
#: RAW data frames start at multiples of this (the page size: mapped RAW arrays are page-aligned).
RAW_ALIGN: Final = 4096
#: Arrays packed together in one frame start at multiples of this within the frame.
PART_ALIGN: Final = 64
#: Readers refuse heads larger than this (a hostile size must not drive an allocation).
HEAD_MAX: Final = 1 << 28
#: Largest uncompressed frame a reader accepts.
FRAME_MAX: Final = 1 << 32
# Limits (format §4.1). Writers refuse what exceeds them (InvalidArgumentError), readers refuse
# it (FormatError) before building anything whose size the limit bounds.
#: Deepest nesting of lists, tuples and dicts inside one Python-value leaf (format §2.2.1) and
#: inside ``metadata``: bounded stack, no cycles.
VALUE_DEPTH_MAX: Final = 64
METADATA_DEPTH_MAX: Final = VALUE_DEPTH_MAX
#: Most components of an array's, group's or value's path.
PATH_DEPTH_MAX: Final = 64
#: Longest path component, in bytes of UTF-8 (valid Unicode: no lone surrogates).
NAME_MAX: Final = 255
#: Most dimensions of an array, counting those of a sub-array dtype (numpy's own limit).
NDIM_MAX: Final = 64
#: Deepest nesting of structured and sub-array dtypes, and most fields of one structured dtype.
DTYPE_DEPTH_MAX: Final = 32
DTYPE_FIELDS_MAX: Final = 1 << 16
#: Most arrays (plus values and groups) one file may list.
ARRAYS_MAX: Final = 1 << 20
#: An array with more blocks than this must tile its shape so that the grid of all its blocks'
#: boundaries has at most BLOCK_GRID_PER_BLOCK cells per block (any MPI block decomposition does);
#: fewer blocks may tile it in any way.
BLOCKS_ANY_MAX: Final = 1024
BLOCK_GRID_PER_BLOCK: Final = 16
#: Bound on what opening a file may cost beyond the file's own mapping (format §4.1): for a head
#: of h bytes, at most OPEN_MEM_PER_HEAD_BYTE * h + OPEN_MEM_FIXED bytes of memory, O(h log h) time.
OPEN_MEM_PER_HEAD_BYTE: Final = 64
OPEN_MEM_FIXED: Final = 48 << 20
#: Optional head features this reader implements (format §5): a head's "features" list may name
#: only these, and names exactly the optional keys it uses.
FEATURES: Final = frozenset({"filters", "values"})

assert (SUPERBLOCK.size, TRAILER.size, RECORD.size, INDEX_DTYPE.itemsize) == (32, 48, 16, 24)


def align_up(n: int, a: int) -> int:
    """Smallest multiple of ``a`` that is >= ``n``."""
    return -(-n // a) * a


def stored_raw(f_nbytes: int, lz4_nbytes: int) -> bool:
    """Whether an LZ4 frame of ``f_nbytes`` bytes that compressed to ``lz4_nbytes`` is stored verbatim.

    LZ4 must save at least 1/32 of the frame: below that the file is at most
    ~3% larger, and the frame loads at copy speed instead of through the
    decoder (smooth float64 fields and random bytes grow under LZ4).
    """
    return lz4_nbytes > f_nbytes - (f_nbytes >> RAW_FALLBACK_SHIFT)


def lz4_decoded_max(stored: int) -> int:
    """Upper bound on the uncompressed size an LZ4 frame of ``stored`` bytes can decode to."""
    # Each chunk costs at least 4 stored bytes (3 header + 1 block) and yields at most 64 KiB;
    # an LZ4 block expands at most ~255x.
    return min(255 * stored + 65536, (stored // 4) * 65536)
