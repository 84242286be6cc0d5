"""The planner (ndckpt/container/plan.py): how arrays are cut into frames."""

from __future__ import annotations

import numpy as np

from ndckpt.container import ArraySpec
from ndckpt.container.plan import plan
from ndckpt.format import FrameStyle


def test_raw_frames_of_large_arrays_are_one_gib_and_lz4_frames_four_mib() -> None:
    big = ArraySpec(("a",), np.dtype("u1"), (3 << 30,), "C")
    _, frames = plan([big], [FrameStyle.RAW], 4 << 20, 1 << 30)
    assert [f.nbytes for f in frames] == [1 << 30] * 3
    _, frames = plan([big], [FrameStyle.LZ4], 4 << 20, 1 << 30)
    assert len(frames) == 768
