"""The ndckpt error tree.

Every error ndckpt raises on purpose is a :class:`CheckptError`. Its ``code`` is
fd_checkpt's error value, and each subclass also inherits the builtin a Python
caller would naturally catch:

    CheckptError (Exception)                 .code
    +-- InvalidArgumentError (ValueError)    ERR_INVAL  -1  bad argument or call in the wrong state
    +-- UnsupportedError (NotImplementedError) ERR_UNSUP -2  style or feature not available here
    +-- CheckptIOError (OSError)             ERR_IO     -3  read/write failure, truncation, region too small (RAW)
    +-- CompressionError (ValueError)        ERR_COMP   -4  LZ4 failure, corrupt chunk, region too small (LZ4)
    +-- FormatError (ValueError)             ERR_COMP   -4  container structure or checksum is wrong

:class:`FormatError` is raised by the container layer (``save``/``load``/``open``)
when a file is not an ndckpt file, has an unknown version, or its bytes do not
match its manifest or checksums. It carries ERR_COMP, fd_checkpt's code for
"the input bytes are not what the format requires".

Messages say what, where, what was expected and what was found, e.g.
``frame at offset 4096, chunk 3: block decoded to 100 bytes, expected 65536``.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ERR_COMP",
    "ERR_INVAL",
    "ERR_IO",
    "ERR_UNSUP",
    "SUCCESS",
    "CheckptError",
    "CheckptIOError",
    "CompressionError",
    "FormatError",
    "InvalidArgumentError",
    "UnsupportedError",
    "error_for_code",
    "strerror",
]

SUCCESS = 0
ERR_INVAL = -1
ERR_UNSUP = -2
ERR_IO = -3
ERR_COMP = -4

_STRINGS = {
    SUCCESS: "success",
    ERR_INVAL: "bad input args",
    ERR_UNSUP: "unsupported on this target",
    ERR_IO: "io error",
    ERR_COMP: "compression error",
}


def strerror(code: int) -> str:
    """Return fd_checkpt's string for ``code`` ("unknown" for any other value)."""
    return _STRINGS.get(code, "unknown")


class CheckptError(Exception):
    """Base of every ndckpt error; ``code`` is the fd_checkpt error value."""

    code: ClassVar[int] = ERR_INVAL


class InvalidArgumentError(CheckptError, ValueError):
    """A bad argument, or a call made in the wrong state (fd_checkpt ERR_INVAL)."""

    code = ERR_INVAL


class UnsupportedError(CheckptError, NotImplementedError):
    """A frame style or feature this build cannot provide (fd_checkpt ERR_UNSUP)."""

    code = ERR_UNSUP


class CheckptIOError(CheckptError, OSError):
    """An I/O failure: a failed or short read/write, EOF, a RAW region too small (ERR_IO)."""

    code = ERR_IO


class CompressionError(CheckptError, ValueError):
    """LZ4 failed, a chunk is corrupt, or an LZ4 region is too small (ERR_COMP)."""

    code = ERR_COMP


class FormatError(CheckptError, ValueError):
    """A container file is malformed, of an unknown version, or fails its checksums."""

    code = ERR_COMP


_BY_CODE: dict[int, type[CheckptError]] = {
    ERR_INVAL: InvalidArgumentError,
    ERR_UNSUP: UnsupportedError,
    ERR_IO: CheckptIOError,
    ERR_COMP: CompressionError,
}


def error_for_code(code: int) -> type[CheckptError]:
    """Return the exception class for an fd_checkpt error code (INVAL for unknown codes)."""
    return _BY_CODE.get(code, InvalidArgumentError)
