"""The ndckpt container format, version 2 (normative spec: ``docs/format.md``).

One module per job, each importing only those before it:

- :mod:`.spec`: constants and limits of the byte layout;
- :mod:`.dtype`, :mod:`.values`: the head's codecs for dtypes and Python-value leaves;
- :mod:`.head`: ArraySpec, FrameSpec, Head, and the strict parse of the head;
- :mod:`.plan`: arrays in, a plan out (validation, styles, frames);
- :mod:`.layout`: bytes in, a validated Layout out (the one layout validator);
- :mod:`.mapped`: a file's bytes (mapping and fd) for the random-access readers;
- :mod:`.write`: a plan in, bytes out (the one writer, sequential and positional);
- :mod:`.read`: a Layout and a source in, arrays out;
- :mod:`.summary`: a Layout in, sizes, rows and listings for people out;
- :mod:`.stream`: the one-pass reader of streams, built on layout and read.

This package's namespace re-exports the spec, the codecs and the head, as the former
``ndckpt.container`` module defined them.
"""

from __future__ import annotations

from .dtype import decode_dtype, encode_dtype
from .head import (
    ArraySpec,
    Block,
    FrameSpec,
    Head,
    Part,
    PartTable,
    block_offsets,
    check_blocks,
    check_leaf_paths,
    check_name,
    json_depth,
    stored_bound,
)
from .layout import frame_offsets
from .spec import (
    ARRAYS_MAX,
    BLOCK_GRID_PER_BLOCK,
    BLOCKS_ANY_MAX,
    DTYPE_DEPTH_MAX,
    DTYPE_FIELDS_MAX,
    END_MAGIC,
    FEATURES,
    FRAME_MAX,
    HEAD_MAX,
    INDEX_DTYPE,
    MAGIC,
    METADATA_DEPTH_MAX,
    NAME_MAX,
    NDIM_MAX,
    OPEN_MEM_FIXED,
    OPEN_MEM_PER_HEAD_BYTE,
    PART_ALIGN,
    PATH_DEPTH_MAX,
    RAW_ALIGN,
    RAW_FALLBACK_SHIFT,
    RECORD,
    STORED_VERBATIM,
    SUPERBLOCK,
    TRAILER,
    VALUE_DEPTH_MAX,
    VERSION,
    align_up,
    lz4_decoded_max,
    stored_raw,
)

__all__ = [
    "ARRAYS_MAX",
    "BLOCKS_ANY_MAX",
    "BLOCK_GRID_PER_BLOCK",
    "DTYPE_DEPTH_MAX",
    "DTYPE_FIELDS_MAX",
    "END_MAGIC",
    "FEATURES",
    "FRAME_MAX",
    "HEAD_MAX",
    "INDEX_DTYPE",
    "MAGIC",
    "METADATA_DEPTH_MAX",
    "NAME_MAX",
    "NDIM_MAX",
    "OPEN_MEM_FIXED",
    "OPEN_MEM_PER_HEAD_BYTE",
    "PART_ALIGN",
    "PATH_DEPTH_MAX",
    "RAW_ALIGN",
    "RAW_FALLBACK_SHIFT",
    "RECORD",
    "STORED_VERBATIM",
    "SUPERBLOCK",
    "TRAILER",
    "VALUE_DEPTH_MAX",
    "VERSION",
    "ArraySpec",
    "Block",
    "FrameSpec",
    "Head",
    "Part",
    "PartTable",
    "align_up",
    "block_offsets",
    "check_blocks",
    "check_leaf_paths",
    "check_name",
    "decode_dtype",
    "encode_dtype",
    "frame_offsets",
    "json_depth",
    "lz4_decoded_max",
    "stored_bound",
    "stored_raw",
]
