"""Progress you can watch: reports inside large RAW frames, the fsync phase, and the terminal bar.

The library side: ``progress(done, total)`` comes at least every
``max(PROGRESS_STEP, total // 100)`` bytes (16 MiB by default) for saves to
paths, file objects and pipes, and for loads; values never decrease, start at 0
and end at the total; a callback's ``phase("fsync")`` comes before a durable
save's fsyncs; exceptions raised by either abort the save cleanly.

The bar side: :meth:`ProgressBar.render` never exceeds ``width - 1`` columns,
and on a pseudo-terminal of 50 and 80 columns (and one resized while drawing)
the bar redraws in place and ends with one newline.
"""

from __future__ import annotations

import fcntl
import io
import itertools
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from helpers import READERS, leftovers
from hypothesis import given, settings
from hypothesis import strategies as st

import ndckpt
from ndckpt import parallel
from ndckpt._progress import (
    ELLIPSIS,
    ProgressBar,
    display_width,
    format_duration,
    shorten,
    terminal_width,
)

SCRIPT = Path(sys.executable).with_name("ndckpt")
MiB = 1 << 20


class Recorder:
    """A progress callback that records its calls (and, as ``phase``, the phases)."""

    def __init__(self, fail_at: Callable[[int, int], bool] | None = None, fail_phase: bool = False) -> None:
        self.calls: list[tuple[int, int]] = []
        self.events: list[Any] = []
        self.threads: set[int] = set()
        self.fail_at, self.fail_phase = fail_at, fail_phase

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))
        self.events.append((done, total))
        self.threads.add(threading.get_ident())
        if self.fail_at is not None and self.fail_at(done, total):
            raise Boom(f"at {done}/{total}")

    def phase(self, name: str) -> None:
        self.events.append(name)
        if self.fail_phase:
            raise Boom(name)


class Boom(Exception):
    pass


def check_calls(calls: list[tuple[int, int]], total: int, step: int | None = None) -> None:
    """Start at 0, never decrease, end at ``total``, one total throughout, gaps of at most ``step``."""
    assert calls, "never called"
    assert calls[0] == (0, total)
    assert calls[-1] == (total, total)
    assert {t for _, t in calls} == {total}
    dones = [d for d, _ in calls]
    assert dones == sorted(dones), dones
    if step is not None:
        gaps = [b - a for a, b in itertools.pairwise(dones)]
        assert max(gaps, default=0) <= step, (max(gaps), step)


@pytest.fixture
def small_step() -> Iterator[int]:
    with mock.patch.object(parallel, "PROGRESS_STEP", 1 * MiB):
        yield 1 * MiB


# ----------------------------------------------------------------------------------------------
# Reports inside RAW frames, for every kind of target and for loads
# ----------------------------------------------------------------------------------------------


def test_a_raw_save_reports_inside_its_frame(tmp_path: Path, small_step: int) -> None:
    """One 16 MiB RAW frame, 1 MiB steps: 16 reports after the first (scaled-down 256 MiB / 16 MiB)."""
    a = {"x": np.arange(2 * MiB, dtype=np.float64)}  # 16 MiB: one RAW frame
    total = a["x"].nbytes
    r = Recorder()
    ndckpt.save(tmp_path / "p.ndckpt", a, progress=r)
    assert len(r.calls) >= 17
    check_calls(r.calls, total, small_step)
    assert ndckpt.load(tmp_path / "p.ndckpt")["x"].tobytes() == a["x"].tobytes()
    buf = io.BytesIO()
    r = Recorder()
    ndckpt.save(buf, a, progress=r, threads=1)
    check_calls(r.calls, total, small_step)
    assert buf.getvalue() == (tmp_path / "p.ndckpt").read_bytes()  # the pieces change no byte


def test_a_raw_save_into_a_pipe_reports_inside_its_frame(small_step: int) -> None:
    a = {"x": np.arange(MiB, dtype=np.int64)}  # 8 MiB
    rfd, wfd = os.pipe()
    got = bytearray()

    def drain() -> None:
        while chunk := os.read(rfd, 1 << 16):
            got.extend(chunk)

    t = threading.Thread(target=drain)
    t.start()
    r = Recorder()
    try:
        ndckpt.save(wfd, a, progress=r)
    finally:
        os.close(wfd)
        t.join()
        os.close(rfd)
    check_calls(r.calls, a["x"].nbytes, small_step)
    assert len(r.calls) >= 9
    assert ndckpt.load(bytes(got))["x"].tobytes() == a["x"].tobytes()


def test_one_percent_rule(small_step: int) -> None:
    """Steps are max(PROGRESS_STEP, total // 100): a big total is not reported 1 MiB at a time."""
    a = {"x": np.zeros(200 * MiB // 8)}  # 200 MiB: 1% is 2 MiB > the 1 MiB step
    r = Recorder()
    ndckpt.save(io.BytesIO(), a, progress=r, threads=1)
    check_calls(r.calls, 200 * MiB, 2 * MiB)
    assert 100 <= len(r.calls) <= 102


def test_default_rule_on_a_real_64_mib_file(tmp_path: Path) -> None:
    """Default settings: at least every 16 MiB for RAW and LZ4 saves, and for loads (mapped and streamed)."""
    x = np.arange(8 * MiB, dtype=np.float64)  # 64 MiB
    for style in ("raw", "lz4"):
        r = Recorder()
        ndckpt.save(tmp_path / f"{style}.ndckpt", {"x": x}, style=style, progress=r)
        check_calls(r.calls, x.nbytes, 16 * MiB)
        assert len(r.calls) >= 5
        r = Recorder()
        ndckpt.load(tmp_path / f"{style}.ndckpt", mmap=False, progress=r)
        check_calls(r.calls, x.nbytes, 16 * MiB)
        r = Recorder()
        with open(tmp_path / f"{style}.ndckpt", "rb") as f:
            got = ndckpt.load(f, progress=r)  # a file object: the one-pass stream reader
        check_calls(r.calls, x.nbytes, 16 * MiB)
        assert got["x"].tobytes() == x.tobytes()


def test_save_progress_comes_from_the_calling_thread(small_step: int) -> None:
    a = {"r": np.arange(MiB, dtype=np.int64), "z": np.zeros(3 * MiB // 8)}
    r = Recorder()
    ndckpt.save(io.BytesIO(), a, style={"z": "lz4"}, threads=2, progress=r)
    check_calls(r.calls, 11 * MiB)
    assert r.threads == {threading.get_ident()}


@st.composite
def array_sets(draw: st.DrawFn) -> tuple[dict[str, np.ndarray[Any, Any]], dict[str, str]]:
    n = draw(st.integers(0, 5))
    sizes = st.sampled_from([0, 1, 100, 4096, 65535, 65536, 200_000, 300_001, 1 << 20, (1 << 20) + 7])
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    styles: dict[str, str] = {}
    for i in range(n):
        size = draw(sizes)
        arrays[f"a{i}"] = (np.arange(size, dtype=np.uint32) % 251).astype(np.uint8)
        styles[f"a{i}"] = draw(st.sampled_from(["raw", "lz4"]))
    return arrays, styles


@given(case=array_sets(), threads=st.sampled_from([1, 2]))
@settings(max_examples=25)
def test_progress_values_property(case: tuple[dict[str, np.ndarray[Any, Any]], dict[str, str]], threads: int) -> None:
    """Any arrays and styles: saves and loads start at 0, never go back, end at the total;
    a RAW-only save reports at least every step."""
    arrays, styles = case
    step = 64 << 10
    with mock.patch.object(parallel, "PROGRESS_STEP", step):
        r = Recorder()
        buf = io.BytesIO()
        ndckpt.save(buf, arrays, style=styles, threads=threads, progress=r)
        total = r.calls[0][1]  # bytes of the frames: the arrays, and the gaps between packed ones
        assert total >= sum(a.nbytes for a in arrays.values())
        raw_only = all(s == "raw" for s in styles.values())
        check_calls(r.calls, total, max(step, total // 100) if raw_only else None)
        data = buf.getvalue()
        for name, kw in (
            ("load(bytes, copy)", {"threads": threads}),
            ("load(BytesIO)", {}),
            ("verify(bytes)", {"threads": threads}),
        ):
            r = Recorder()
            READERS[name](data, progress=r, **kw)
            check_calls(r.calls, total)


# ----------------------------------------------------------------------------------------------
# The fsync phase, and callbacks that raise
# ----------------------------------------------------------------------------------------------


def test_fsync_phase_comes_after_the_bytes_and_before_the_fsyncs(tmp_path: Path) -> None:
    a = {"x": np.arange(1000)}
    r = Recorder()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        r.events.append("os.fsync")
        real_fsync(fd)

    with mock.patch.object(os, "fsync", fsync):
        ndckpt.save(tmp_path / "d.ndckpt", a, progress=r)
    assert r.events[-4:] == [(8000, 8000), "fsync", "os.fsync", "os.fsync"]  # the file, then its directory
    for kw in ({"durable": False}, {}):
        r = Recorder()
        target: Any = tmp_path / "n.ndckpt" if kw else io.BytesIO()
        ndckpt.save(target, a, progress=r, **kw)
        assert "fsync" not in r.events, kw  # nothing is fsynced: no phase
        assert r.events[-1] == (8000, 8000)


def test_a_phase_attribute_that_is_not_callable_is_ignored(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []

    def cb(done: int, total: int) -> None:
        calls.append((done, total))

    cb.phase = "not a method"  # type: ignore[attr-defined]
    ndckpt.save(tmp_path / "p.ndckpt", {"x": np.arange(10)}, progress=cb)
    check_calls(calls, 80)


@pytest.mark.parametrize("where", ["inside-a-raw-frame", "fsync-phase"])
def test_a_raising_callback_aborts_the_save_cleanly(tmp_path: Path, small_step: int, where: str) -> None:
    path = tmp_path / "keep.ndckpt"
    ndckpt.save(path, {"old": np.arange(5)})
    before = path.read_bytes()
    # either phase("fsync") raises, or the first report inside the 8 MiB frame does
    r = Recorder(fail_phase=True) if where == "fsync-phase" else Recorder(fail_at=lambda d, t: 0 < d < t)
    with pytest.raises(Boom):
        ndckpt.save(path, {"new": np.arange(MiB, dtype=np.int64)}, progress=r, threads=2)
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []
    if where != "fsync-phase":
        assert r.calls[-1] == (small_step, 8 * MiB)  # it raised mid-frame, not after the frame


# ----------------------------------------------------------------------------------------------
# The formatter
# ----------------------------------------------------------------------------------------------

labels = st.one_of(
    st.sampled_from(["", "x", "write out.ndckpt", "write /a/rather/long/path/to/some/checkpoint-000123.ndckpt"]),
    st.text(st.characters(codec="utf-8"), max_size=80),  # wide, combining, control characters too
)


@given(
    label=labels,
    width=st.sampled_from([20, 40, 50, 80, 200]),
    total=st.integers(0, 10**13),
    frac=st.floats(0, 1),
    elapsed=st.floats(0, 1e6),
    rate=st.one_of(st.none(), st.floats(0, 1e13)),
    phase=st.sampled_from([None, "fsync"]),
)
@settings(max_examples=400)
def test_render_fits_the_width(
    label: str, width: int, total: int, frac: float, elapsed: float, rate: float | None, phase: str | None
) -> None:
    done = int(total * frac)
    bar = ProgressBar(label, io.StringIO())
    line = bar.render(done, total, elapsed, width, rate=rate, phase=phase)
    assert display_width(line) <= width - 1, (width, line)
    assert line.isprintable(), line  # no \r, \n or escape can come from a label
    status = "syncing" if phase == "fsync" else "in " if done >= total else "ETA "
    if width >= 40:
        assert status in line, (width, line)
    if width >= 50:
        assert "/s" in line, (width, line)
        assert "%" in line
    if width == 200 and display_width(bar.label) <= 60:
        assert line.startswith(bar.label + "  [")
        assert line.count("/") >= 2  # the byte counts, and the rate


def test_render_at_each_width_shows_what_fits() -> None:
    bar = ProgressBar("write /tmp/some/where/out.ndckpt", io.StringIO())
    lines = {w: bar.render(150 * MiB, 256 * MiB, 1.2, w, rate=125 * MiB) for w in (20, 40, 50, 80, 200)}
    assert lines[200] == (
        "write /tmp/some/where/out.ndckpt  [" + "=" * 14 + ">" + " " * 9 + "]  58%  150.0 MiB/256.0 MiB"
        "   125.0 MiB/s  ETA 0:01"
    )
    assert lines[80].startswith("writ...out.ndckpt  [====>   ]  58%")
    assert "150.0 MiB/256.0 MiB   125.0 MiB/s  ETA 0:01" in lines[80]
    assert lines[50].endswith(" 58%   125.0 MiB/s  ETA 0:01")
    assert "[" not in lines[50]  # the bar goes before the rate
    assert lines[40].endswith(" 58%  ETA 0:01")
    assert lines[20].endswith(" 58%")
    for w, line in lines.items():
        assert len(line) <= w - 1
        if w <= 80:
            assert ELLIPSIS in line
            assert line.startswith("wri")  # shortened in the middle: its start and
            assert ".ndckpt" in line  # its end (the file name) stay


@given(text=st.text(max_size=60), cols=st.integers(-2, 70))
@settings(max_examples=300)
def test_shorten(text: str, cols: int) -> None:
    got = shorten(text, cols)
    assert display_width(got) <= max(cols, 0) or got == text
    if display_width(text) <= cols:
        assert got == text
    elif cols >= len(ELLIPSIS):  # some start of text, the ellipsis, some end of text
        assert any(
            got[k : k + len(ELLIPSIS)] == ELLIPSIS
            and text.startswith(got[:k])
            and text.endswith(got[k + len(ELLIPSIS) :])
            for k in range(len(got))
        ), (text, got)


def test_display_width_counts_wide_and_combining_characters() -> None:
    assert display_width("abc") == 3
    assert display_width("漢字") == 4
    assert display_width("e\u0301") == 1
    assert display_width(shorten("漢" * 20, 9)) <= 9


def test_format_duration() -> None:
    assert format_duration(0) == "0:00"
    assert format_duration(7.4) == "0:07"
    assert format_duration(59.6) == "1:00"
    assert format_duration(3723) == "1:02:03"
    assert format_duration(float("nan")) == "--:--"
    assert format_duration(-1) == "--:--"
    assert format_duration(1e9) == "--:--"


def test_rate_is_smoothed_over_the_last_seconds() -> None:
    """After a slowdown, the rate (and so the time left) follows the last few seconds, not the average."""
    t = [0.0]
    s = io.StringIO()
    bar = ProgressBar("x", s, clock=lambda: t[0], width=lambda: 120)
    total, done = 10**12, 0
    for _ in range(80):  # 10 s at 100 MB/s (steps of 1/8 s: exact in binary)
        t[0] += 0.125
        done += 12_500_000
        bar(done, total)
    for _ in range(40):  # 5 s at 10 MB/s
        t[0] += 0.125
        done += 1_250_000
        bar(done, total)
    rate = bar._rate(t[0])
    assert rate is not None
    assert 0.9e7 <= rate <= 1.1e7  # the average since the start is ~70 MB/s
    last = s.getvalue().split("\r")[-1]
    assert "9.5 MiB/s" in last
    assert s.getvalue().count("\r") == 120  # 8 draws per second: none throttled at this pace


def test_close_after_failure_keeps_the_line_and_ends_it() -> None:
    s = io.StringIO()
    bar = ProgressBar("x", s, width=lambda: 60)
    bar(0, 100)
    bar(30, 100)
    bar.close()
    assert s.getvalue().endswith("\n")
    assert s.getvalue().count("\r") == 1  # 30% was throttled; close does not redraw an unfinished line


def test_phase_redraws_and_close_shows_the_final_line() -> None:
    t = [0.0]
    s = io.StringIO()
    bar = ProgressBar("x", s, clock=lambda: t[0], width=lambda: 100)
    bar(0, 100)
    t[0] = 1.0
    bar(100, 100)
    bar(100, 100)  # the same final state again: not redrawn
    bar.phase("fsync")
    t[0] = 3.0
    bar.close()
    draws = s.getvalue().split("\r")[1:]
    assert len(draws) == 4
    assert "in 0:01" in draws[1]
    assert "syncing" in draws[2]
    assert draws[3].rstrip().endswith("33 B/s  in 0:03")  # the fsync time counts in the total
    assert draws[3].endswith("\n")


def test_terminal_width_reads_the_streams_own_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 57, 0, 0))
        monkeypatch.delenv("COLUMNS", raising=False)
        with open(slave, "w", closefd=False) as f:
            assert terminal_width(f) == 57  # stdout (a pipe under pytest) is not asked
            monkeypatch.setenv("COLUMNS", "33")
            assert terminal_width(f) == 33
            monkeypatch.setenv("COLUMNS", "junk")
            assert terminal_width(f) == 57
    finally:
        os.close(master)
        os.close(slave)
    assert terminal_width(io.StringIO()) > 0


# ----------------------------------------------------------------------------------------------
# On a pseudo-terminal
# ----------------------------------------------------------------------------------------------


def run_on_pty(argv: list[str], cols: int, timeout: float = 120) -> tuple[int, str]:
    """Run ``argv`` with stderr on a pty of ``cols`` columns (stdout a pipe); (status, terminal text)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    seen = b""
    try:
        with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env) as p:
            os.close(slave)
            slave = -1
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 1.0)
                if not ready:
                    if p.poll() is not None:
                        break
                    continue
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed its end
                    break
                if not chunk:
                    break
                seen += chunk
            assert p.stdout is not None
            p.stdout.read()
            code = p.wait(timeout=60)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return code, seen.decode()


def redraws(tty: str) -> list[str]:
    """The one line's successive contents: what follows each ``\\r`` (the pty turns ``\\n`` into ``\\r\\n``)."""
    assert tty.count("\n") == 1, repr(tty)
    assert tty.endswith("\r\n"), repr(tty[-80:])
    return [seg for seg in tty[: -len("\r\n")].split("\r") if seg]


@pytest.mark.parametrize("cols", [50, 80])
def test_cli_convert_bar_fits_a_pty(tmp_path: Path, cols: int) -> None:
    src = tmp_path / "in.npy"
    np.save(src, np.arange(6 * MiB, dtype=np.float64))  # 48 MiB
    dst = tmp_path / ("a-rather-long-output-file-name-for-a-checkpoint-" * 2 + ".ndckpt")
    code, tty = run_on_pty([str(SCRIPT), "convert", str(src), str(dst)], cols)
    assert code == 0, tty
    draws = redraws(tty)
    assert len(draws) >= 4, draws  # 0%, 100%, syncing, and the final line at least
    for d in draws:
        assert len(d) <= cols - 1, (cols, d)  # never the last column: no wrap, no new line per redraw
    assert draws[0].startswith("write")
    assert ELLIPSIS in draws[0]  # the long label was shortened
    assert any("syncing" in d for d in draws)
    assert "ETA" in draws[0]
    assert "100%" in draws[-1]
    assert " in " in draws[-1]
    assert "/s" in draws[-1]
    assert ndckpt.load(dst)["in"].tobytes() == np.load(src).tobytes()


SAVE_WITH_BAR = textwrap.dedent(
    """
    import fcntl, struct, sys, termios
    import numpy as np
    import ndckpt
    from ndckpt import _progress, parallel

    parallel.PROGRESS_STEP = 1 << 20
    _progress.MIN_INTERVAL = 0.0  # draw every report
    bar = _progress.progress_bar("save " + sys.argv[1])
    assert bar is not None, "stderr is not a terminal"

    class Resizing:
        # Halfway through, the window shrinks to 40 columns.
        def __call__(self, done, total):
            if 2 * done >= total > 0 and not getattr(self, "resized", False):
                self.resized = True
                fcntl.ioctl(2, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 40, 0, 0))
            bar(done, total)

        def phase(self, name):
            bar.phase(name)

    with bar:
        ndckpt.save(sys.argv[1], {"x": np.arange(4 << 20, dtype=np.float64)}, progress=Resizing())
    """
)


@pytest.mark.parametrize("cols", [50, 80])
def test_save_with_the_cli_bar_redraws_in_place_and_follows_a_resize(tmp_path: Path, cols: int) -> None:
    path = tmp_path / "a-checkpoint-with-a-name-long-enough-to-be-shortened.ndckpt"
    code, tty = run_on_pty([sys.executable, "-c", SAVE_WITH_BAR, str(path)], cols)
    assert code == 0, tty
    draws = redraws(tty)
    assert len(draws) >= 33, len(draws)  # 0%, 32 MiB in 1 MiB pieces, syncing, final
    for d in draws:
        assert len(d) <= cols - 1, (cols, d)
    half = next(i for i, d in enumerate(draws) if " 50%" in d)
    assert all(len(d) <= 39 for d in draws[half:]), draws[half:]  # the width is read at every redraw
    assert any(len(d) > 39 for d in draws[:half])
    assert any("syncing" in d for d in draws)
    assert draws[-1].startswith("save ")
    assert "100%" in draws[-1]
