"""Rule-based state machines for Checkpt and Restore.

Each machine drives one engine object through random sequences of
``frame_open`` / ``buf`` / ``frame_close`` / ``fini`` (and, for Restore,
``seek`` / ``view``), legal and illegal, next to a model of the fd_checkpt
state machine (idle, in a frame, failed, finished) and of the offsets:

- illegal calls raise InvalidArgumentError (a buffer outside a frame even with
  0 bytes, open inside a frame, close outside a frame, fini inside a frame,
  seek inside a frame or beyond the end, view outside mmio RAW frames, meta
  buffers over 65536 bytes, non-contiguous arrays); unknown style ints raise
  UnsupportedError;
- any error moves the object to failed, and then every call except fini
  raises InvalidArgumentError; fini then succeeds (and a second fini too);
- offsets follow the model: RAW buffers advance by their size, LZ4 buffers by
  at most their bound, frames are contiguous, restore offsets equal the
  writer's;
- whatever frames a Checkpt closed before an error restore exactly.

Each machine has one rule, ``step``, that draws an action from those that make
sense in the model's state, with weights: legal calls are frequent, and an
illegal call or ``fini`` (an "ending") is rarer, since it ends the object's
useful life; ``restart`` then begins a new object. (Per-action rules with
preconditions made hypothesis reject most rule draws and abort examples.)
"""

from __future__ import annotations

import io
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from strategies import (
    BufSpec,
    Content,
    FrameSpec,
    Offsets,
    buffer_sizes,
    checkpoint_specs,
    checkpt_mmio,
    contents,
    read_frames,
)

from ndckpt import Checkpt, FrameStyle, InvalidArgumentError, Restore, UnsupportedError
from ndckpt.errors import ERR_UNSUP
from ndckpt.format import META_MAX, chunk_sizes, lz4_frame_bound

IDLE, FRAME, FAILED, DONE = "idle", "frame", "failed", "done"
_EMPTY = BufSpec(Content("fill", 0, 0))
REGION = 8 << 20  # mmio region: larger than any sequence of steps below can fill
UNKNOWN_STYLES = st.one_of(st.integers(3, 2**40), st.integers(-(2**40), -1))
BAD_STYLE_TYPES = st.sampled_from([1.5, "zstd", None, b"raw", True])
SMALL_CONTENTS = contents(buffer_sizes(small_only=True))
ANY_CONTENTS = contents(buffer_sizes(200_000))

#: Ways to end an object's life, by the state they apply in.
ENDINGS = {
    IDLE: ("fini", "unknown_style", "bad_style_type", "buf_outside_frame",
           "zero_buf_outside_frame", "close_outside_frame", "meta_too_big"),
    FRAME: ("fini_in_frame", "open_in_frame", "unknown_style_in_frame", "meta_too_big",
            "not_contiguous", "bad_buffer_type"),
}


class _Machine(RuleBasedStateMachine):
    """The model's state, the invariant, and the actions both machines share."""

    #: Actions per model state; repeats weight the draw.
    ACTIONS: ClassVar[dict[str, tuple[str, ...]]]

    obj: Any
    state: str
    style: FrameStyle | None
    offset: int
    ever_failed: bool

    def _reset_model(self) -> None:
        self.state, self.style, self.offset, self.ever_failed = IDLE, None, 0, False

    def _mark_failed(self) -> None:
        self.state, self.style, self.ever_failed = FAILED, None, True

    def _expect_inval(self, call: Any, *args: Any, **kw: Any) -> None:
        """``call`` must raise InvalidArgumentError; the object is failed afterwards."""
        with pytest.raises(InvalidArgumentError):
            call(*args, **kw)
        if self.state != DONE:
            self._mark_failed()

    @invariant()
    def states_match(self) -> None:
        o = self.obj
        assert o.in_frame == (self.state == FRAME)
        assert o.can_open == (self.state == IDLE)
        assert o.failed == (self.state == FAILED)
        assert o.frame_style == (self.style if self.state == FRAME else None)
        if self.state in (IDLE, FRAME):
            assert o.offset == self.offset

    def _actions(self) -> tuple[str, ...]:
        return self.ACTIONS["dead" if self.state in (FAILED, DONE) else self.state]

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        action = data.draw(st.sampled_from(self._actions()), label="action")
        event(f"{self.state}: {action}")
        getattr(self, "do_" + action)(data)

    def _open(self, style: int) -> None:
        assert self.state == IDLE
        assert self.obj.frame_open(style) == self.offset
        self.state = FRAME
        self.style = FrameStyle.RAW if style == 0 else FrameStyle(style)

    def do_buf_zero(self, data: st.DataObject) -> None:
        """0 bytes in a frame: a no-op (outside a frame it is one of the endings)."""
        self.obj.buf(bytearray(), meta=data.draw(st.booleans(), label="meta"))
        self._after_zero()

    def _after_zero(self) -> None:
        return None

    def _endings(self) -> tuple[str, ...]:
        return ENDINGS[self.state]

    def do_end(self, data: st.DataObject) -> None:
        """fini, or one illegal call: each leaves the object finished or failed."""
        kind = data.draw(st.sampled_from(self._endings()), label="ending")
        event(f"ending: {kind}")
        o = self.obj
        if kind == "fini":
            o.fini()
            self.state, self.style = DONE, None
            o.fini()  # a second fini is a no-op
        elif kind == "fini_in_frame":
            self._expect_inval(o.fini)
        elif kind in ("unknown_style", "unknown_style_in_frame"):
            style = data.draw(UNKNOWN_STYLES, label="style")
            if self.state == IDLE:
                with pytest.raises(UnsupportedError) as ei:
                    o.frame_open(style)
                assert ei.value.code == ERR_UNSUP
                self._mark_failed()
            else:  # in a frame the state is checked first
                self._expect_inval(o.frame_open, style)
        elif kind == "bad_style_type":
            self._expect_inval(o.frame_open, data.draw(BAD_STYLE_TYPES, label="style"))
        elif kind == "open_in_frame":
            self._expect_inval(o.frame_open, data.draw(st.sampled_from([0, 1, 2]), label="style"))
        elif kind == "buf_outside_frame":
            self._expect_inval(o.buf, bytearray(data.draw(st.integers(1, 100), label="size")))
        elif kind == "zero_buf_outside_frame":
            self._expect_inval(o.buf, bytearray(), meta=data.draw(st.booleans(), label="meta"))
        elif kind == "close_outside_frame":
            self._expect_inval(o.frame_close)
        elif kind == "meta_too_big":
            self._expect_inval(o.buf, bytearray(META_MAX + 1), meta=True)
        elif kind == "not_contiguous":
            self._expect_inval(o.buf, np.zeros((8, 8), np.uint8)[:, ::2])
        elif kind == "bad_buffer_type":
            self._expect_inval(o.buf, data.draw(st.sampled_from(["text", 12, None, [1, 2]])))
        else:
            self._ending_extra(kind, data)
        assert o.failed == (self.state == FAILED)

    def _ending_extra(self, kind: str, data: st.DataObject) -> None:
        raise AssertionError(kind)

    def do_sticky(self, data: st.DataObject) -> None:
        """Failed or finished: every call except fini raises InvalidArgumentError (no UNSUP, no
        I/O error); then fini succeeds."""
        calls: list[tuple[Any, tuple[Any, ...]]] = [
            (self.obj.frame_open, (FrameStyle.LZ4,)),
            (self.obj.frame_open, (7,)),
            (self.obj.buf, (bytearray(8),)),
            (self.obj.buf, (bytearray(0),)),
            (self.obj.frame_close, ()),
        ]
        if isinstance(self.obj, Restore):
            calls += [(self.obj.seek, (0,)), (self.obj.view, (0,))]
        for call, args in calls:
            with pytest.raises(InvalidArgumentError):
                call(*args)
        assert self.obj.failed == (self.state == FAILED)
        self.obj.fini()
        self.state = DONE

    def do_restart(self, data: st.DataObject) -> None:
        if self.state == FAILED:
            self.obj.fini()
            self.state = DONE
        self._check_finished()
        self.mode = data.draw(st.sampled_from(["stream", "mmio"]), label="mode")
        self._new_object()

    def _check_finished(self) -> None:
        return None

    def _new_object(self) -> None:
        raise NotImplementedError


class CheckptMachine(_Machine):
    """A Checkpt in either mode, against a model of its offsets and output."""

    ACTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        IDLE: ("open_raw", "open_lz4", "open_raw", "open_lz4", "end"),
        FRAME: ("buf_small", "buf_small", "buf_any", "buf_zero", "frame_close", "frame_close",
                "end"),
        "dead": ("sticky", "restart", "restart"),
    }

    @initialize(mode=st.sampled_from(["stream", "mmio"]), wbuf=st.sampled_from([69632, 1 << 20]))
    def start(self, mode: str, wbuf: int) -> None:
        self.mode, self.wbuf = mode, wbuf
        self._new_object()

    def _new_object(self) -> None:
        self.out = io.BytesIO()
        self.region = bytearray(REGION)
        self.obj = (
            Checkpt.stream(self.out, wbuf_size=self.wbuf)
            if self.mode == "stream"
            else Checkpt.mmio(self.region)
        )
        assert self.obj.mode == self.mode
        self._reset_model()
        self.closed: list[FrameSpec] = []
        self.closed_offsets = Offsets()
        self.cur: list[BufSpec] = []
        self.cur_afters: list[int] = []
        self.cur_open = 0

    def _open_frame(self, style: Any) -> None:
        code = {"raw": 1, "lz4": 2}[style] if isinstance(style, str) else int(style)
        self._open(code)
        self.cur, self.cur_afters, self.cur_open = [], [], self.offset

    def do_open_raw(self, data: st.DataObject) -> None:
        self._open_frame(data.draw(st.sampled_from([0, 1, FrameStyle.RAW, "raw"]), label="style"))

    def do_open_lz4(self, data: st.DataObject) -> None:
        self._open_frame(data.draw(st.sampled_from([2, FrameStyle.LZ4, "lz4"]), label="style"))

    def _buf(self, content: Content, meta: bool) -> None:
        meta = meta and content.size <= META_MAX
        self.obj.buf(content.data, meta=meta)
        got = self.obj.offset
        if self.style == FrameStyle.RAW:
            assert got == self.offset + content.size
        else:
            n = len(chunk_sizes(content.size))
            assert 4 * n <= got - self.offset <= lz4_frame_bound([content.size])
        self.offset = got
        self.cur.append(BufSpec(content, meta))
        self.cur_afters.append(got)

    def do_buf_small(self, data: st.DataObject) -> None:
        content = data.draw(SMALL_CONTENTS, label="content")
        self._buf(content, data.draw(st.booleans(), label="meta"))

    def do_buf_any(self, data: st.DataObject) -> None:
        self._buf(data.draw(ANY_CONTENTS, label="content"), data.draw(st.booleans(), label="meta"))

    def _after_zero(self) -> None:
        self.cur.append(_EMPTY)
        self.cur_afters.append(self.offset)

    def do_frame_close(self, data: st.DataObject) -> None:
        assert self.obj.frame_close() == self.offset
        assert self.style is not None
        if self.style == FrameStyle.RAW:
            assert self.offset - self.cur_open == sum(b.size for b in self.cur)
        else:
            assert self.offset - self.cur_open <= lz4_frame_bound([b.size for b in self.cur])
        self.closed.append(FrameSpec(int(self.style), tuple(self.cur)))
        self.closed_offsets.opens.append(self.cur_open)
        self.closed_offsets.afters.append(self.cur_afters)
        self.closed_offsets.closes.append(self.offset)
        self.state, self.style = IDLE, None
        if self.mode == "stream":  # close flushes: everything so far is in the file
            assert len(self.out.getvalue()) == self.offset

    def _check_finished(self) -> None:
        """The frames closed so far restore exactly, in the other mode than the writer's."""
        end = self.closed_offsets.closes[-1] if self.closed else 0
        data = self.out.getvalue() if self.mode == "stream" else bytes(self.region[:end])
        assert len(data) >= end
        if self.mode == "stream" and not self.ever_failed:
            assert len(data) == end  # nothing is left buffered outside a frame
        rs = Restore.mmio(data[:end]) if self.mode == "stream" else Restore.stream(io.BytesIO(data))
        assert read_frames(rs, self.closed) == self.closed_offsets
        assert rs.offset == end
        rs.fini()

    def teardown(self) -> None:
        if self.state == FRAME:
            self._expect_inval(self.obj.fini)
        self.obj.fini()
        self._check_finished()


class RestoreMachine(_Machine):
    """A Restore over a random checkpoint, driven by legal and illegal calls.

    The model knows each frame's style, buffers and offsets, and which frame
    (if any) starts at the current offset, so reads happen only where their
    result is known. ``frame_close`` in mid-frame (legal: nothing is verified)
    leaves the reader misaligned until the next seek.
    """

    ACTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        IDLE: ("frame_open", "frame_open", "frame_open", "seek", "end"),
        FRAME: ("buf_next", "buf_next", "buf_next", "buf_zero", "frame_close", "frame_close",
                "end"),
        "dead": ("sticky", "restart", "restart"),
    }

    @initialize(
        frames=checkpoint_specs(max_frames=4, max_bufs=4, sizes=buffer_sizes(150_000)),
        mode=st.sampled_from(["stream", "mmio"]),
    )
    def start(self, frames: list[FrameSpec], mode: str) -> None:
        if not any(any(f.sizes) for f in frames):  # make sure there is something to read
            frames = [*frames, FrameSpec(1, (BufSpec(Content("text", 100, 0)),))]
        self.frames = frames
        self.data, self.rec = checkpt_mmio(frames)
        self.mode = mode
        self._new_object()

    def _new_object(self) -> None:
        self.obj = (
            Restore.stream(io.BytesIO(self.data), rbuf_size=69632)
            if self.mode == "stream"
            else Restore.mmio(np.frombuffer(self.data, dtype=np.uint8))
        )
        assert self.obj.mode == self.mode
        assert self.obj.size == len(self.data)
        self._reset_model()
        self.cur: tuple[int, int] | None = None  # (frame, next buffer) when aligned in a frame

    @invariant()
    def size_is_fixed(self) -> None:
        assert self.obj.size == len(self.data)

    def do_frame_open(self, data: st.DataObject) -> None:
        here = [i for i, o in enumerate(self.rec.opens) if o == self.offset]
        if here:
            i = data.draw(st.sampled_from(here), label="frame")
            self._open(self.frames[i].style)
            self.cur = (i, 0)
        else:  # nothing known to read here: only zero-size buffers and close
            self._open(data.draw(st.sampled_from([0, 1, 2]), label="style"))
            self.cur = None

    def _read_next(self, how: str) -> None:
        assert self.cur is not None
        fi, bi = self.cur
        fr = self.frames[fi]
        b = fr.bufs[bi]
        event(f"restore {fr.kind.name} buffer via {how} in {self.mode} mode")
        if how == "view":
            v = self.obj.view(b.size)
            assert v.readonly
            assert bytes(v) == b.data
        else:
            out: Any = bytearray(b.size) if how == "bytearray" else np.empty(b.size, np.int8)
            self.obj.buf(out, meta=b.meta)
            assert bytes(out) == b.data
        self.offset = self.rec.afters[fi][bi]
        self.cur = (fi, bi + 1)

    def _remaining(self) -> int:
        if self.cur is None:
            return 0
        return len(self.frames[self.cur[0]].bufs) - self.cur[1]

    def do_buf_next(self, data: st.DataObject) -> None:
        """Restore the next buffer of the frame into a bytearray or an array, or view it."""
        if not self._remaining():
            self.do_buf_zero(data)
            return
        assert self.cur is not None
        can_view = self.mode == "mmio" and self.style == FrameStyle.RAW
        hows = ["bytearray", "int8", "view"] if can_view else ["bytearray", "int8"]
        self._read_next(data.draw(st.sampled_from(hows), label="how"))

    def do_frame_close(self, data: st.DataObject) -> None:
        """Close the frame: mostly after reading its remaining buffers, sometimes right away."""
        if data.draw(st.integers(0, 3), label="read rest first") > 0:
            while self._remaining():
                self._read_next("int8")
        end = self.obj.frame_close()
        assert end == self.offset
        if self.cur is not None and not self._remaining():
            assert end == self.rec.closes[self.cur[0]]
        self.state, self.style, self.cur = IDLE, None, None

    def do_seek(self, data: st.DataObject) -> None:
        off = data.draw(st.sampled_from([*self.rec.opens, len(self.data), 0]), label="seek to")
        self.obj.seek(off)
        self.offset = off
        assert self.obj.offset == off

    def _endings(self) -> tuple[str, ...]:
        extra = ("seek_beyond_end", "seek_negative") if self.state == IDLE else ("seek_in_frame",)
        if not (self.state == FRAME and self.mode == "mmio" and self.style == FrameStyle.RAW):
            extra += ("view_not_allowed",)
        return (*ENDINGS[self.state], *extra)

    def _ending_extra(self, kind: str, data: st.DataObject) -> None:
        o = self.obj
        if kind == "seek_beyond_end":
            past = data.draw(st.one_of(st.just(1), st.integers(2, 1 << 40)), label="past end")
            self._expect_inval(o.seek, len(self.data) + past)
        elif kind == "seek_negative":
            self._expect_inval(o.seek, -1)
        elif kind == "seek_in_frame":
            self._expect_inval(o.seek, 0)
        elif kind == "view_not_allowed":  # idle, stream mode, or an LZ4 frame
            self._expect_inval(o.view, data.draw(st.integers(0, 100), label="nbytes"))
        else:
            raise AssertionError(kind)
        self.cur = None

    def teardown(self) -> None:
        if self.state == FRAME:
            self._expect_inval(self.obj.fini)
        self.obj.fini()
        # A fresh reader of the other mode restores the whole checkpoint with the same offsets.
        blob = self.data
        rs = Restore.stream(io.BytesIO(blob)) if self.mode == "mmio" else Restore.mmio(blob)
        assert read_frames(rs, self.frames) == self.rec
        rs.fini()


_STATEFUL = settings(max_examples=100, stateful_step_count=50)
TestCheckptMachine = CheckptMachine.TestCase
TestCheckptMachine.settings = _STATEFUL
TestRestoreMachine = RestoreMachine.TestCase
TestRestoreMachine.settings = _STATEFUL
