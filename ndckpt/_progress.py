"""A dependency-free progress bar for the command line, fed by ndckpt's ``progress`` callbacks.

The library reports progress through an optional ``callback(done, total)`` (in
bytes) on :func:`ndckpt.save`, :func:`ndckpt.load` and :func:`ndckpt.verify`;
this module turns such calls into one self-rewriting line on a terminal::

    write out.ndckpt  [=============>          ]  58%  148.0/256.0 MiB  1.21 GB/s

:func:`progress_bar` returns a bar only when the stream (stderr by default) is
a terminal, and ``None`` otherwise, so piped or logged output never contains
carriage returns and the library skips the callback entirely.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["ProgressBar", "format_bytes", "progress_bar"]

#: Width of the bar between the brackets, in characters.
BAR_WIDTH = 24
#: Minimum seconds between two redraws (the final 100% is always drawn).
MIN_INTERVAL = 0.1


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; binary units, one decimal, exact below 1 KiB."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


class ProgressBar:
    """One progress line on ``stream``, redrawn in place with ``\\r``; a ``callback(done, total)``.

    Calls may come from any thread (ndckpt serialises them; this class locks
    anyway). Redraws are throttled to one per ``MIN_INTERVAL`` seconds except
    the first and the one reaching ``total``. :meth:`close` ends the line (a
    newline) if anything was drawn; use the bar as a context manager.
    """

    def __init__(
        self,
        label: str,
        stream: TextIO,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.stream = stream
        self._clock = clock
        self._start = clock()
        self._last_draw: float | None = None
        self._drawn_width = 0
        self._lock = threading.Lock()
        self._closed = False

    def __call__(self, done: int, total: int) -> None:
        with self._lock:
            if self._closed:
                return
            now = self._clock()
            final = done >= total
            if not final and self._last_draw is not None and now - self._last_draw < MIN_INTERVAL:
                return
            self._last_draw = now
            self._draw(self.render(done, total, now - self._start))

    def render(self, done: int, total: int, elapsed: float) -> str:
        """The line for ``done`` of ``total`` bytes after ``elapsed`` seconds (no ``\\r``)."""
        done = max(0, min(done, total))
        frac = done / total if total > 0 else 1.0
        filled = int(frac * BAR_WIDTH)
        bar = "=" * filled + (">" if filled < BAR_WIDTH else "") + " " * (BAR_WIDTH - filled - 1)
        rate = f"  {done / elapsed / 1e9:.2f} GB/s" if elapsed > 0 and done > 0 else ""
        return f"{self.label}  [{bar[:BAR_WIDTH]}] {frac * 100:3.0f}%  {format_bytes(done)}/{format_bytes(total)}{rate}"

    def _draw(self, line: str) -> None:
        pad = " " * max(0, self._drawn_width - len(line))
        self.stream.write("\r" + line + pad)
        self.stream.flush()
        self._drawn_width = len(line)

    def close(self) -> None:
        """End the line (if one was drawn); later calls are ignored."""
        with self._lock:
            if not self._closed and self._last_draw is not None:
                self.stream.write("\n")
                self.stream.flush()
            self._closed = True

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(label: str, stream: TextIO | None = None) -> ProgressBar | None:
    """A :class:`ProgressBar` on ``stream`` (default ``sys.stderr``) if it is a terminal, else None."""
    s = sys.stderr if stream is None else stream
    try:
        tty = s.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        tty = False
    return ProgressBar(label, s) if tty else None
