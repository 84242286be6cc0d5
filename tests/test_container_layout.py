"""The layout rules (ndckpt/container/layout.py): frame offsets, records and pads, and the cheap completeness check."""

from __future__ import annotations

import io

import numpy as np

import ndckpt
from ndckpt.container import FrameSpec, Part, frame_offsets
from ndckpt.format import FrameStyle


def test_frame_offsets_follow_the_record_and_pad_rules() -> None:
    frames = [FrameSpec(FrameStyle.LZ4, 10, [Part(0, 0, 10, 0)]), FrameSpec(FrameStyle.RAW, 5, [Part(1, 0, 5, 0)])]
    offs, end = frame_offsets(100, frames, [7, 5])
    assert offs == [116, 4096]
    assert end == 4101


def test_looks_complete_is_the_cheap_end_check() -> None:
    """The manager's test for a finished file: magic, end magic and size; nothing else."""
    from ndckpt.container import MAGIC, TRAILER
    from ndckpt.container.layout import looks_complete

    f = io.BytesIO()
    ndckpt.save(f, {"a": np.arange(10)})
    data = f.getvalue()
    n = len(data)
    assert looks_complete(data[: len(MAGIC)], data[-TRAILER.size :], n)
    assert not looks_complete(data[: len(MAGIC)], data[-TRAILER.size :], n + 1), "size recorded in the trailer"
    assert not looks_complete(b"x" + data[1 : len(MAGIC)], data[-TRAILER.size :], n), "magic"
    assert not looks_complete(data[: len(MAGIC)], data[-TRAILER.size :][:-1] + b"?", n), "end magic"
    assert not looks_complete(data[: len(MAGIC)], data[-TRAILER.size : -1], n), "short tail"
    cut = data[: n // 2]
    assert not looks_complete(cut[: len(MAGIC)], cut[-TRAILER.size :], len(cut)), "a file still being written"
