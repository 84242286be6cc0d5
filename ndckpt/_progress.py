"""A dependency-free progress bar for the command line, fed by ndckpt's ``progress`` callbacks.

The library reports progress through an optional ``callback(done, total)`` (in
bytes) on :func:`ndckpt.save`, :func:`ndckpt.load` and :func:`ndckpt.verify`,
and ``callback.phase("fsync")`` when a durable save starts its fsyncs; this
module turns such calls into one self-rewriting line on a terminal::

    write out.ndckpt  [=============>          ]  58%  148.0 MiB/256.0 MiB  1.2 GiB/s  ETA 0:03

The line fits the terminal's width, read again at every redraw (a resized
window is followed): it never reaches the last column (which wraps on many
terminals), and when the width is short the byte counts go first, then the
bar, then the rate; long labels are shortened in the middle with ``...``.
Each redraw starts with ``\\r`` and blanks what is left of the previous line,
redraws are throttled to ``1 / MIN_INTERVAL`` per second (the first, the final
one and phase changes always drawn), and :meth:`ProgressBar.close` ends the
line with one newline.

:func:`progress_bar` returns a bar only when the stream (stderr by default) is
a terminal, and ``None`` otherwise: piped or logged output gets no progress at
all (no carriage returns, no periodic lines), and the library skips the
callback entirely.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from typing import TextIO

__all__ = ["ProgressBar", "format_bytes", "format_duration", "progress_bar", "shorten", "terminal_width"]

#: Largest width of the bar between the brackets, in characters.
BAR_WIDTH = 24
#: Smallest bar worth drawing; below it the bar is left out.
BAR_MIN = 8
#: A label is shortened to no fewer than this many columns (shorter labels are kept whole).
LABEL_MIN = 16
#: Minimum seconds between two redraws (the first, the final state and phase changes are always drawn).
MIN_INTERVAL = 0.1
#: Seconds of history the displayed rate is averaged over.
RATE_WINDOW = 3.0
#: Width assumed when the stream's terminal size cannot be read.
DEFAULT_WIDTH = 80
ELLIPSIS = "..."
#: Rates from this on (bytes/s; a clock step, not a transfer) are shown as unknown.
MAX_RATE = float(1 << 50)


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; binary units, one decimal, exact below 1 KiB."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``7.4`` -> ``"0:07"``, ``3723`` -> ``"1:02:03"``; ``"--:--"`` if unknown or beyond 99 hours."""
    if not seconds >= 0 or seconds >= 100 * 3600:  # also NaN
        return "--:--"
    s = int(seconds + 0.5)
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _char_cols(c: str) -> int:
    if unicodedata.combining(c):
        return 0
    return 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal (wide East Asian characters count 2, combining marks 0)."""
    return sum(_char_cols(c) for c in text)


def _printable(text: str) -> str:
    """``text`` with control characters (a newline in a file name) and lone surrogates as ``?``."""
    return "".join(c if c.isprintable() else "?" for c in text)


def shorten(text: str, cols: int) -> str:
    """``text`` if it fits in ``cols`` columns, else its start and (longer) end around ``...``."""
    if display_width(text) <= cols:
        return text
    if cols <= len(ELLIPSIS):
        return ELLIPSIS[: max(cols, 0)]
    room = cols - len(ELLIPSIS)
    head_room = room // 3  # the end of a label (a file name) says more than its start
    head, used = "", 0
    for c in text:
        w = _char_cols(c)
        if used + w > head_room:
            break
        head, used = head + c, used + w
    tail: list[str] = []
    left = room - used
    for c in reversed(text):
        w = _char_cols(c)
        if w > left:
            break
        tail.append(c)
        left -= w
    return head + ELLIPSIS + "".join(reversed(tail))


def terminal_width(stream: TextIO) -> int:
    """Columns of the terminal ``stream`` writes to.

    ``$COLUMNS`` when set to a positive number (as :func:`shutil.get_terminal_size`
    honours it), else the size of the stream's own terminal (stderr's, even
    when stdout is a pipe), else :func:`shutil.get_terminal_size`'s answer.
    """
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cols = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        cols = 0
    if cols <= 0:
        cols = shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    return cols if cols > 0 else DEFAULT_WIDTH


class ProgressBar:
    """One progress line on ``stream``, redrawn in place with ``\\r``; a ``callback(done, total)``.

    Calls may come from any thread (ndckpt serialises them; this class locks
    anyway). Redraws are throttled to one per ``MIN_INTERVAL`` seconds except
    the first, the one reaching ``total`` and :meth:`phase` changes. The rate
    shown is averaged over the last ``RATE_WINDOW`` seconds, and the time left
    follows from it. ``width`` (default: :func:`terminal_width` of ``stream``)
    is asked at every redraw. :meth:`close` redraws a finished line with the
    total time and ends it with a newline if anything was drawn; use the bar
    as a context manager. Nothing here raises on a stream error except what
    the stream's ``write`` raises.
    """

    def __init__(
        self,
        label: str,
        stream: TextIO,
        *,
        clock: Callable[[], float] = time.monotonic,
        width: Callable[[], int] | None = None,
    ) -> None:
        self.label = _printable(label)
        self.stream = stream
        self._clock = clock
        self._width = width if width is not None else lambda: terminal_width(stream)
        self._start = clock()
        self._last_draw: float | None = None
        self._drawn_width = 0
        self._lock = threading.Lock()
        self._closed = False
        self._done = 0
        self._total = 0
        self._phase: str | None = None
        self._samples: deque[tuple[float, int]] = deque([(self._start, 0)])
        self._last_state: tuple[int, int, str | None] | None = None

    def __call__(self, done: int, total: int) -> None:
        with self._lock:
            if self._closed:
                return
            now = self._clock()
            self._done, self._total = done, total
            self._sample(now, done)
            final = done >= total
            state = (done, total, self._phase)
            if self._last_draw is not None and (
                (not final and now - self._last_draw < MIN_INTERVAL) or (final and state == self._last_state)
            ):
                return
            self._redraw(now)

    def phase(self, name: str) -> None:
        """A new phase begins (``"fsync"``: the bytes are written, the save waits for the disk); redrawn now."""
        with self._lock:
            if self._closed or name == self._phase:
                return
            self._phase = name
            if self._last_draw is not None:
                self._redraw(self._clock())

    def _sample(self, now: float, done: int) -> None:
        s = self._samples
        s.append((now, done))
        while len(s) > 2 and s[1][0] <= now - RATE_WINDOW:
            s.popleft()

    def _rate(self, now: float) -> float | None:
        t0, d0 = self._samples[0]
        if now - t0 <= 0 or self._done <= d0:
            return None
        return (self._done - d0) / (now - t0)

    def _redraw(self, now: float) -> None:
        self._last_draw = now
        self._last_state = (self._done, self._total, self._phase)
        final = self._done >= self._total
        rate = self._done / (now - self._start) if final and now > self._start else self._rate(now)
        width = self._width()
        self._draw(self.render(self._done, self._total, now - self._start, width, rate=rate, phase=self._phase), width)

    def render(
        self,
        done: int,
        total: int,
        elapsed: float,
        width: int = DEFAULT_WIDTH,
        *,
        rate: float | None = None,
        phase: str | None = None,
    ) -> str:
        """The line for ``done`` of ``total`` bytes after ``elapsed`` seconds (no ``\\r``).

        At most ``width - 1`` columns. ``rate`` (bytes/s; default: the average
        over ``elapsed``) gives the time left; ``phase`` ``"fsync"`` shows
        ``syncing`` instead. What does not fit is left out in this order: the
        byte counts, the bar, the rate, the time left; the label is shortened.
        """
        avail = max(width - 1, 0)
        done = max(0, min(done, total))
        frac = done / total if total > 0 else 1.0
        if rate is None and elapsed > 0 and done > 0:
            rate = done / elapsed
        # Fields keep their widths as the numbers change, so that the layout does not jump.
        pct = f"{int(frac * 100):3d}%"
        tot = format_bytes(total)
        size = f"{format_bytes(done).rjust(len(tot))}/{tot}"
        known = rate is not None and 0 < rate < MAX_RATE
        speed = (f"{format_bytes(rate)}/s" if known and rate is not None else "-- B/s").rjust(12)
        if phase == "fsync":
            status = "syncing"
        elif done >= total:
            status = f"in {format_duration(elapsed)}"
        else:
            status = f"ETA {format_duration((total - done) / rate) if rate else '--:--'}"
        status = status.ljust(8)
        label_w = display_width(self.label)
        layouts = (  # (with a bar, fields, fewest label columns)
            (True, [pct, size, speed, status], LABEL_MIN),
            (True, [pct, speed, status], LABEL_MIN),
            (False, [pct, speed, status], LABEL_MIN),
            (False, [pct, status], LABEL_MIN // 2),
            (False, [pct], LABEL_MIN // 2),
        )
        for with_bar, parts, least in layouts:
            tail = " " + "  ".join(parts)
            room = avail - len(tail)  # for the label, and the bar with its brackets and gap
            label_min = min(label_w, least)
            if with_bar and room >= label_min + 4 + BAR_MIN:  # "label  [bar]"
                label = shorten(self.label, room - 4 - BAR_MIN)
                bar_w = min(BAR_WIDTH, room - 4 - display_width(label))
                filled = int(frac * bar_w)
                bar = ("=" * filled + (">" if filled < bar_w else "")).ljust(bar_w)
                return f"{label}  [{bar}]{tail}".rstrip()
            if not with_bar and room >= label_min:
                return (shorten(self.label, room) + tail).rstrip()
        return (pct + " " + status)[:avail] if avail >= len(pct) else ""

    def _draw(self, line: str, width: int) -> None:
        avail = max(width - 1, 0)
        w = display_width(line)
        pad = " " * max(0, min(self._drawn_width, avail) - w)  # blank the rest of a longer previous line
        self.stream.write("\r" + line + pad)
        self.stream.flush()
        self._drawn_width = w

    def close(self) -> None:
        """Redraw a finished line with its total time, end the line (if one was drawn); later calls are ignored."""
        with self._lock:
            if not self._closed and self._last_draw is not None:
                if self._done >= self._total:
                    self._phase = None
                    self._redraw(self._clock())
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
