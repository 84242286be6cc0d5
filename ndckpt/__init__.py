"""ndckpt: fast, parallel, compressed checkpoint and restore of numpy state.

Frames are byte-for-byte Firedancer ``fd_checkpt`` frames (RAW or LZ4), written
and read in stream mode (file, fd, pipe, socket) or memory mode (a buffer,
``numpy.memmap``) with identical bytes.
"""

from . import errors
from ._browse import Group
from .api import Reader, load, open, save, verify
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
from .manager import CheckpointManager

__version__ = "0.1.0"

__all__ = [
    "CheckpointManager",
    "Checkpt",
    "CheckptError",
    "CheckptIOError",
    "CompressionError",
    "FormatError",
    "FrameStyle",
    "Group",
    "InvalidArgumentError",
    "Reader",
    "Restore",
    "UnsupportedError",
    "__version__",
    "errors",
    "frame_style_is_supported",
    "load",
    "open",
    "save",
    "strerror",
    "verify",
]
