"""The head record (ndckpt/container/head.py): canonical JSON, blocks and tilings, the
collector pause while heads are built, and the numpy tiling check.

The numpy tiling check (``_tiling_ok_fast``, used for heads of 64 parts or more) never
accepts a head that :meth:`Head.check_tiling` rejects, and accepts every valid head.
Readers trust a head that passes it, so a miss here would let a malformed file load. The
heads are real (planned by the writer, many small arrays over several frames), then damaged
one field at a time."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import forge
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ndckpt
from ndckpt.container import SUPERBLOCK, ArraySpec, FrameSpec, Head, Part, check_blocks
from ndckpt.container.head import _tiling_ok_fast
from ndckpt.container.plan import plan
from ndckpt.errors import FormatError, InvalidArgumentError
from ndckpt.format import FrameStyle

names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=6)

dtypes = st.sampled_from(["<f8", ">i4", "|u1", "<M8[ms]", "<U3", "|S2", "|b1", "<c16"]).map(np.dtype)

shapes = st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple)


@st.composite
def heads(draw: Any) -> Head:
    paths = draw(st.lists(st.lists(names, min_size=1, max_size=3).map(tuple), min_size=0, max_size=6, unique=True))
    # Drop paths that are prefixes of others (a group cannot also be an array).
    paths = [p for p in paths if not any(q != p and q[: len(p)] == p for q in paths)]
    specs = [ArraySpec(p, draw(dtypes), draw(shapes), draw(st.sampled_from("CF"))) for p in paths]
    styles = [draw(st.sampled_from([FrameStyle.RAW, FrameStyle.LZ4])) for _ in specs]
    perm, frames = plan(specs, styles, 65536)
    meta = draw(st.none() | st.dictionaries(names, st.integers() | st.floats(allow_nan=False) | names, max_size=3))
    return Head([specs[i] for i in perm], frames, [], meta)


@settings(max_examples=150, deadline=None)
@given(heads())
def test_fast_head_json_equals_the_canonical_definition(head: Head) -> None:
    raw = head.to_json()
    assert raw == head._to_json_reference()
    back = Head.from_json(raw)
    assert back.to_json() == raw
    assert [a.name for a in back.arrays] == [a.name for a in head.arrays]


def test_head_json_with_blocks_equals_the_canonical_definition() -> None:
    spec = ArraySpec(("g",), np.dtype("<f4"), (4, 6), "C", (((0, 0), (4, 3)), ((0, 3), (4, 3))))
    _perm, frames = plan([spec], [FrameStyle.RAW], 65536)
    head = Head([spec], frames, [("e",)], {"k": [1, 2]})
    assert head.to_json() == head._to_json_reference()
    assert Head.from_json(head.to_json()).arrays[0].blocks == spec.blocks


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        ((((0, 0), (2, 4)),), "cover 8 elements"),
        ((((0, 0), (4, 4)), ((2, 0), (2, 4))), "cover 24"),
        ((((0, 0), (3, 4)), ((2, 0), (1, 4))), "overlap"),
        ((((0, 0), (5, 4)),), "outside"),
        ((((0, 0), (0, 4)), ((0, 0), (4, 4))), "empty"),
        ((((0,), (4,)),), "dimensions"),
    ],
)
def test_check_blocks_rejects_bad_tilings(blocks: Any, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        check_blocks((4, 4), blocks, "t")
    with pytest.raises(InvalidArgumentError, match=message):
        check_blocks((4, 4), blocks, "t", InvalidArgumentError)


def test_the_callers_garbage_collector_setting_is_kept() -> None:
    """save/load pause the cyclic collector while building heads; they restore its state, also on errors."""
    import gc

    arrays = {f"a{i}": np.arange(3) for i in range(50)}
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            f = io.BytesIO()
            ndckpt.save(f, arrays)
            blob = f.getvalue()
            assert ndckpt.load(blob)["a7"].tolist() == [0, 1, 2]
            with ndckpt.open(blob) as r:
                assert len(r) == 50
            with pytest.raises(FormatError):
                ndckpt.load(blob[:40] + b"x" * (len(blob) - 40))
            with pytest.raises(InvalidArgumentError):
                ndckpt.save(io.BytesIO(), {"bad": np.array([object()])})
            assert gc.isenabled() is enabled
        finally:
            gc.enable()


# The numpy tiling check against check_tiling.


def _head(n: int, seed: int, deep: bool) -> Head:
    rng = np.random.default_rng(seed)
    arrays: dict[str, Any] = {}
    for i in range(n):
        a = rng.integers(0, 9, int(rng.integers(1, 5000)), dtype=np.uint8)
        if deep and i % 4 == 0:
            arrays.setdefault("g", {})[f"x{i}"] = a
        else:
            arrays[f"a{i:04d}"] = a
    style = {f"a{i:04d}": "lz4" for i in range(0, n, 3) if not (deep and i % 4 == 0)}
    data = forge.save_small_frames(arrays, style=style, frame_bytes=1 << 16)
    hn = SUPERBLOCK.unpack_from(data, 0)[3]
    return Head.from_json(data[SUPERBLOCK.size : SUPERBLOCK.size + hn])


def _fresh(head: Head) -> Head:
    """A copy that shares nothing mutable and has no cached columns."""
    return Head(
        list(head.arrays),
        [FrameSpec(f.style, f.nbytes, list(f.parts)) for f in head.frames],
        list(head.groups),
        head.metadata,
    )


def _slow_ok(head: Head) -> bool:
    try:
        _fresh(head).check_tiling()
    except FormatError:
        return False
    return True


MUTATIONS = [
    "start",
    "nbytes",
    "at",
    "array",
    "swap",
    "drop",
    "dup",
    "style",
    "shape",
    "dtype",
    "name",
    "prefix",
    "group",
    "frame_nbytes",
]


def _mutate(head: Head, kind: str, data: st.DataObject) -> None:
    frames = [f for f in head.frames if f.parts]
    f = data.draw(st.sampled_from(frames), label="frame")
    k = data.draw(st.integers(0, len(f.parts) - 1), label="part")
    p = f.parts[k]
    delta = data.draw(st.sampled_from([-4097, -64, -1, 1, 63, 64, 4096]), label="delta")
    if kind in ("start", "nbytes", "at"):
        f.parts[k] = p._replace(**{kind: max(0, getattr(p, kind) + delta)})
    elif kind == "array":
        f.parts[k] = p._replace(array=data.draw(st.integers(0, len(head.arrays) - 1), label="array"))
    elif kind == "swap" and len(f.parts) > 1:
        j = (k + 1) % len(f.parts)
        f.parts[k], f.parts[j] = f.parts[j], f.parts[k]
    elif kind == "drop" and len(f.parts) > 1:
        del f.parts[k]
    elif kind == "dup":
        f.parts.insert(k, p)
    elif kind == "style":
        f.style = FrameStyle.LZ4 if f.style == FrameStyle.RAW else FrameStyle.RAW
    elif kind == "frame_nbytes":
        f.nbytes = max(1, f.nbytes + delta)
    else:
        i = data.draw(st.integers(0, len(head.arrays) - 1), label="array")
        a = head.arrays[i]
        j = (i + 1) % len(head.arrays)
        if kind == "shape":
            head.arrays[i] = a._replace(shape=(max(0, a.shape[0] + delta),))
        elif kind == "dtype":
            head.arrays[i] = a._replace(dtype=np.dtype("<u2"))
        elif kind == "name":
            head.arrays[i] = a._replace(path=head.arrays[j].path)
        elif kind == "prefix":
            head.arrays[i] = a._replace(path=(*head.arrays[j].path, "inner"))
        elif kind == "group":
            head.groups.append(head.arrays[j].path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(64, 160),
    seed=st.integers(0, 3),
    deep=st.booleans(),
    kinds=st.lists(st.sampled_from(MUTATIONS), min_size=0, max_size=2),
    data=st.data(),
)
def test_fast_check_never_accepts_what_check_tiling_rejects(
    n: int, seed: int, deep: bool, kinds: list[str], data: st.DataObject
) -> None:
    head = _fresh(_head(n, seed, deep))
    assert sum(len(f.parts) for f in head.frames) >= 64
    for kind in kinds:
        _mutate(head, kind, data)
    slow = _slow_ok(head)
    fast = _tiling_ok_fast(_fresh(head))
    if fast:
        assert slow, f"fast check accepted a head check_tiling rejects ({kinds})"
    if not kinds:
        assert fast, "a valid head must pass the fast check"


def test_small_heads_defer_to_check_tiling() -> None:
    head = Head(
        [ArraySpec(("a",), np.dtype("u1"), (4,), "C")],
        [FrameSpec(FrameStyle.RAW, 4, [Part(0, 0, 4, 0)])],
        [],
        None,
    )
    assert not _tiling_ok_fast(head)  # below 64 parts: the loops of check_tiling decide
    head.check_tiling()
    assert dataclasses.replace(head).arrays == head.arrays
