"""What every ``ndckpt`` command shares: the one-line error, its input (a path or stdin), progress bars, wording."""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

from .._progress import ProgressBar, progress_bar
from ..container import MAGIC
from ..errors import CheckptError

__all__ = [
    "EMPTY_ZIP_MAGIC",
    "NPY_MAGIC",
    "PROG",
    "ZIP_MAGIC",
    "UserError",
    "input_label",
    "message_of",
    "plural",
    "ratio",
    "reader_input",
    "require_file",
    "sniff",
    "stdin",
    "stdout",
    "stdout_is_terminal",
    "terminal_bar",
]

PROG = "ndckpt"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"  # an archive with no members: np.savez() with no arrays


class UserError(Exception):
    """A problem to report in one line (exit status ``code``), never with a traceback."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@contextlib.contextmanager
def terminal_bar(label: str) -> Iterator[ProgressBar | None]:
    """A progress bar on stderr if it is a terminal (else None), closed on exit."""
    bar = progress_bar(label)
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def ratio(raw: int, stored: int) -> str:
    return f"{raw / stored:.2f}" if stored else "-"


def sniff(path: str) -> str:
    """``"ndckpt"``, ``"npy"``, ``"npz"`` or ``"unknown"`` from a file's first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    if head.startswith(MAGIC):
        return "ndckpt"
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC)):
        return "npz"
    return "unknown"


def require_file(path: str) -> None:
    """Raise a UserError unless ``path`` is an existing regular file."""
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise UserError(f"{path}: not a regular file")


def reader_input(path: str) -> str | bytes | memoryview:
    """What :func:`ndckpt.open` reads for the command's FILE: the path, or for ``-`` the bytes of
    stdin (a pipe or a file), copied to an unlinked temporary file and mapped (random access is
    needed; memory is the page cache, not the process). A path that is not a regular file (a FIFO,
    a device) is refused by the reader at once."""
    if path != "-":
        return path
    with tempfile.TemporaryFile(prefix="ndckpt-stdin-") as f:
        shutil.copyfileobj(stdin(), f, 1 << 20)
        f.flush()
        size = f.tell()
        return memoryview(mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)) if size else b""


def input_label(path: str) -> str:
    return "stdin" if path == "-" else path


def stdin() -> BinaryIO:
    return sys.stdin.buffer


def stdout() -> BinaryIO:
    return sys.stdout.buffer


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False


def message_of(e: CheckptError) -> str:
    """The error's text without OSError's ``[Errno N]`` prefix."""
    if isinstance(e, OSError) and e.strerror:
        return str(e.strerror)
    return str(e)
