"""ndckpt: fast, parallel, compressed checkpoint and restore of numpy state.

Frames are byte-for-byte Firedancer ``fd_checkpt`` frames (RAW or LZ4), written
and read in stream mode (file, fd, pipe, socket) or memory mode (a buffer,
``numpy.memmap``) with identical bytes.
"""

from . import errors
from .engine import Checkpt, Restore
from .errors import (
    CheckptError,
    CheckptIOError,
    CompressionError,
    FormatError,
    InvalidArgumentError,
    UnsupportedError,
    strerror,
)
from .format import FrameStyle, frame_style_is_supported

__version__ = "0.1.0"

__all__ = [
    "CheckptError",
    "CheckptIOError",
    "Checkpt",
    "CompressionError",
    "FormatError",
    "FrameStyle",
    "InvalidArgumentError",
    "Restore",
    "UnsupportedError",
    "__version__",
    "errors",
    "frame_style_is_supported",
    "strerror",
]
