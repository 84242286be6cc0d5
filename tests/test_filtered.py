"""Filtered LZ4 frames in files (format §2.8, issue 15): styles "lz4+shuffle", "lz4+delta", "auto".

What is checked: the head's "filter" key and every malformed case of §2.8 (through every
reader); round trips over dtypes, shapes around the 64 KiB block and 4 MiB frame sizes,
layouts, styles and thread counts, with every reader and with ``out=``; bytes independent of
threads and of the sink; region reads equal slices of whole loads and decode only the chunks
they need; frames stored verbatim hold unfiltered bytes; the reader's extra memory.
"""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from forge import build, canonical, parse
from helpers import READERS, assert_same_array, assert_same_tree, save_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ndckpt
from ndckpt import FormatError, InvalidArgumentError, UnsupportedError, _lz4
from ndckpt.container import head as head_mod
from ndckpt.filters import BLOCK, filter_into

pytestmark = pytest.mark.skipif(not _lz4.available(), reason="LZ4 unavailable")

STYLES = ["lz4+shuffle", "lz4+delta", "auto"]
_rng = np.random.default_rng(15)


def _smooth(n: int, dtype: str = "f8") -> np.ndarray[Any, Any]:
    return (np.sin(np.arange(n) / 5000.0) * 1000 + 300).astype(dtype)


#: A state with a filtered array of several frames, packed small arrays of two item sizes,
#: a noise array (its delta frames do not pay: stored verbatim) and a spiky one (auto: plain).
STATE = {
    "smooth": _smooth(1_200_000),  # 9.6 MB: 3 frames of 4 MiB
    "t32": _smooth(30_000, "f4"),
    "i16": np.arange(999, dtype="i2"),
    "noise": _rng.random(70_000),
    "spikes": np.where(np.arange(200_000) % 9973 == 0, 1.0, 0.0),
    "raw": np.arange(10.0),
}


def _frames(data: bytes) -> list[dict[str, Any]]:
    return list(parse(data).head["frames"])


# ----------------------------------------------------------------------------------------------
# The head
# ----------------------------------------------------------------------------------------------


def test_filtered_frames_are_recorded_and_unfiltered_files_are_unchanged() -> None:
    plain = save_bytes(STATE, style={k: "lz4" for k in STATE if k != "raw"})
    assert "features" not in parse(plain).head
    assert all("filter" not in f for f in _frames(plain))
    data = save_bytes(STATE, style={"smooth": "lz4+delta", "t32": "lz4+shuffle", "i16": "lz4+shuffle"})
    head = parse(data).head
    assert head["features"] == ["filters"]
    filters = [f.get("filter") for f in _frames(data)]
    assert filters.count(["delta", 8]) == 3  # the three frames of "smooth"
    assert ["shuffle", 4] in filters  # one pack frame per group
    assert ["shuffle", 2] in filters
    raw = head_mod.Head.from_json(data[32 : 32 + len(canonical(head))])
    assert raw.to_json() == canonical(head)  # the fast writer equals the canonical JSON
    assert raw.to_json() == raw._to_json_reference()
    assert_same_tree(ndckpt.load(data), STATE)


def test_canonical_json_puts_the_filter_key_first() -> None:
    data = save_bytes({"a": _smooth(1000)}, style="lz4+shuffle")
    hn = int.from_bytes(data[20:28], "little")
    assert b'{"filter":["shuffle",8],"nbytes":8000,' in data[32 : 32 + hn]


def _base() -> tuple[Any, bytes]:
    data = save_bytes({"a": _smooth(20_000), "r": np.arange(5.0)}, style={"a": "lz4+delta"})
    return parse(data), data


def _mutated(mutate: Any) -> bytes:
    p, _ = _base()
    head = json.loads(json.dumps(p.head))
    mutate(head)
    return build(head, p.stored, verbatim=p.verbatim)


def _lz4_frame(head: dict[str, Any]) -> dict[str, Any]:
    return next(f for f in head["frames"] if f["style"] == 2)


def _raw_frame(head: dict[str, Any]) -> dict[str, Any]:
    return next(f for f in head["frames"] if f["style"] == 1)


def _set_filter(v: Any) -> Any:
    return lambda h: _lz4_frame(h).__setitem__("filter", v)


MALFORMED: dict[str, tuple[Any, type[Exception], str]] = {
    "filter without the feature": (lambda h: h.pop("features"), FormatError, "needs the head feature 'filters'"),
    "feature without a filtered frame": (
        lambda h: _lz4_frame(h).pop("filter"),
        FormatError,
        "lists 'filters' but no frame has a filter",
    ),
    "filter on a RAW frame": (
        lambda h: _raw_frame(h).__setitem__("filter", ["shuffle", 8]),
        FormatError,
        "only on an LZ4 frame",
    ),
    "item size 0": (_set_filter(["delta", 0]), FormatError, "item size must be an integer in [1, 255]"),
    "item size 256": (_set_filter(["delta", 256]), FormatError, "item size must be an integer in [1, 255]"),
    "item size a float": (_set_filter(["delta", 8.0]), FormatError, "item size must be an integer"),
    "item size a bool": (_set_filter(["delta", True]), FormatError, "item size must be an integer"),
    "kind not a string": (_set_filter([3, 8]), FormatError, "filter kind must be a string"),
    "one element": (_set_filter(["delta"]), FormatError, "filter must be a list [kind, itemsize]"),
    "three elements": (_set_filter(["delta", 8, 0]), FormatError, "filter must be a list [kind, itemsize]"),
    "not a list": (_set_filter("delta"), FormatError, "filter must be a list [kind, itemsize]"),
    "unknown kind": (_set_filter(["bitshuffle", 8]), UnsupportedError, "uses the filter 'bitshuffle'"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_filter_heads_are_refused_by_every_reader(case: str, tmp_path: Path) -> None:
    mutate, exc, fragment = MALFORMED[case]
    data = _mutated(mutate)
    path = tmp_path / "f.ndckpt"
    path.write_bytes(data)
    for name, reader in READERS.items():
        with pytest.raises(exc) as e:
            reader(data, path)
        assert fragment in str(e.value), (name, str(e.value))
        if exc is UnsupportedError:
            assert "frame 1" in str(e.value), name
            assert "upgrade ndckpt" in str(e.value), name


def test_a_reader_without_the_feature_says_upgrade(monkeypatch: pytest.MonkeyPatch) -> None:
    _, data = _base()
    monkeypatch.setattr(head_mod, "FEATURES", frozenset({"values"}))
    with pytest.raises(UnsupportedError, match=r"needs the feature 'filters'.*upgrade ndckpt"):
        ndckpt.load(data)


# ----------------------------------------------------------------------------------------------
# Styles as arguments
# ----------------------------------------------------------------------------------------------


def test_bad_style_names_list_the_filtered_styles() -> None:
    with pytest.raises(InvalidArgumentError, match=r"'lz4\+shuffle', 'lz4\+delta' or 'auto'"):
        save_bytes({"a": np.zeros(3)}, style="lz4+bitshuffle")
    with pytest.raises(InvalidArgumentError, match=r"style\['a'\]"):
        save_bytes({"a": np.zeros(3)}, style={"a": "shuffle"})


def test_styles_are_case_insensitive_and_mappable() -> None:
    a = save_bytes({"g": {"x": _smooth(9000)}, "y": _smooth(9000)}, style={"g": "LZ4+Delta", "y": "auto"})
    filters = [f.get("filter") for f in _frames(a)]
    assert ["delta", 8] in filters
    assert_same_tree(ndckpt.load(a), {"g": {"x": _smooth(9000)}, "y": _smooth(9000)})


def test_shuffle_by_one_byte_is_plain_lz4_and_packs_with_it() -> None:
    state = {"b": np.arange(5000, dtype="u1"), "c": np.arange(5000).astype("S3"), "d": np.arange(700, dtype="i1")}
    shuffled = save_bytes(state, style="lz4+shuffle")
    assert shuffled == save_bytes(state, style="lz4")
    delta = save_bytes(state, style="lz4+delta")
    assert [f.get("filter") for f in _frames(delta)] == [["delta", 1]]
    assert_same_tree(ndckpt.load(delta), state)


def test_auto_picks_per_frame_and_plain_lz4_where_shuffle_hurts() -> None:
    data = save_bytes(STATE, style="auto")
    p = parse(data)
    by_array: dict[str, set[Any]] = {}
    for f in p.head["frames"]:
        for ai in f["parts"][::4]:
            by_array.setdefault("/".join(p.head["arrays"]["path"][ai]), set()).add(str(f.get("filter")))
    assert by_array["spikes"] == {"None"}
    assert by_array["smooth"] <= {"['delta', 8]", "['shuffle', 8]"}
    assert_same_tree(ndckpt.load(data), STATE)
    assert len(data) < len(save_bytes(STATE, style="lz4"))


def test_verbatim_filtered_frames_hold_the_unfiltered_bytes() -> None:
    noise = _rng.integers(-(2**63), 2**63 - 1, 600_000, dtype=np.int64)  # 4.8 MB, two frames: random bytes
    data = save_bytes({"n": noise}, style="lz4+delta")
    p = parse(data)
    assert p.verbatim == {0, 1}
    assert [f["filter"] for f in p.head["frames"]] == [["delta", 8], ["delta", 8]]
    assert b"".join(p.stored) == noise.tobytes()
    assert_same_array(ndckpt.load(data)["n"], noise)


def test_a_filtered_frame_decodes_to_the_filtered_bytes() -> None:
    """fd_checkpt's restorer (LZ4 decoding alone) gives the filter of the frame's buffer."""
    from ndckpt.container.read import decode_lz4

    a = _smooth(70_000)
    data = save_bytes({"a": a}, style="lz4+shuffle")
    p = parse(data)
    plain = np.empty(a.nbytes, np.uint8)
    decode_lz4(memoryview(p.stored[0]), plain, "frame 0")
    want = np.empty(a.nbytes, np.uint8)
    filter_into("shuffle", a.view(np.uint8), want, 8)
    assert np.array_equal(plain, want)


# ----------------------------------------------------------------------------------------------
# Round trips
# ----------------------------------------------------------------------------------------------

DTYPES = [
    "f8", "f4", "f2", "c16", "c8", "i8", ">i4", "u2", "?", "u1", "S3", "M8[s]",
    np.dtype([("x", "f4"), ("y", "f4"), ("z", "f4")]),  # 12 bytes: shuffled by 4
    np.dtype([("a", "u1"), ("b", ">f8")]),  # 9 bytes: delta by 1
    np.dtype(("f8", (2,))),
]  # fmt: skip
#: Byte sizes around the block (64 KiB) and frame (4 MiB) boundaries, and small ones.
SIZES = [0, 1, 100, BLOCK - 8, BLOCK, BLOCK + 24, 4 * BLOCK + 8, (4 << 20) - 16, (4 << 20) + 48]


@st.composite
def arrays(draw: Any) -> np.ndarray[Any, Any]:
    dt = np.dtype(draw(st.sampled_from(DTYPES)))
    nbytes = draw(st.sampled_from(SIZES))
    n = nbytes // dt.itemsize
    layout = draw(st.sampled_from(["C", "F", "strided", "0-d"]))
    kind = draw(st.sampled_from(["smooth", "random", "zeros"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "smooth":
        raw = np.repeat(rng.integers(0, 256, max(n * dt.itemsize // 64, 1), dtype=np.uint8), 64)
        raw = np.resize(raw, n * dt.itemsize)
    elif kind == "random":
        raw = rng.integers(0, 256, n * dt.itemsize, dtype=np.uint8)
    else:
        raw = np.zeros(n * dt.itemsize, np.uint8)
    flat: np.ndarray[Any, Any] = np.ndarray((n,), dt, buffer=raw) if n else np.zeros(0, dt)
    if dt.kind == "b":
        flat = raw.astype(bool)
    if layout == "0-d" and dt.subdtype is None:
        return flat[:1].reshape(()) if flat.size else np.zeros((), dt)
    if layout == "strided":
        return flat[::2]
    if layout == "F" and n >= 6:
        return np.asfortranarray(flat[: n - n % 3].reshape(-1, 3))
    return flat


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(arrays(), min_size=1, max_size=3), st.sampled_from(STYLES), st.data())
def test_round_trip_every_reader_and_out(arrs: list[Any], style: str, data: Any) -> None:
    state = {f"a{i}": a for i, a in enumerate(arrs)}
    one = save_bytes(state, style=style, threads=1)
    two = save_bytes(state, style=style, threads=2)
    assert one == two
    name = data.draw(st.sampled_from(sorted(n for n in READERS if not n.startswith("verify") and "path" not in n)))
    if "file" in name or "fd" in name:
        name = "load(bytes)"
    assert_same_tree(READERS[name](one), state)
    outs = {k: np.empty_like(v, order="F" if v.flags.f_contiguous and not v.flags.c_contiguous else "C")
            for k, v in state.items()}
    ndckpt.load(one, out=outs)
    assert_same_tree(outs, state)
    ndckpt.verify(one)


@pytest.mark.parametrize("style", STYLES)
def test_bytes_do_not_depend_on_threads_or_the_sink(style: str, tmp_path: Path) -> None:
    path = tmp_path / "s.ndckpt"
    ndckpt.save(path, STATE, style=style, threads=2)
    buf = io.BytesIO()
    ndckpt.save(buf, STATE, style=style, threads=1)
    assert path.read_bytes() == buf.getvalue() == save_bytes(STATE, style=style, threads=3)
    for name in ("load(path)", "load(path, copy)", "load(file)", "load(pipe)", "open(path).get"):
        assert_same_tree(READERS[name](buf.getvalue(), path), STATE)
    ndckpt.verify(path)


def test_checkpoint_manager_takes_the_filtered_styles(tmp_path: Path) -> None:
    with ndckpt.CheckpointManager(tmp_path / "ck", style="auto") as m:
        m.save(1, STATE)
        m.wait()
        assert_same_tree(m.restore(1), STATE)


# ----------------------------------------------------------------------------------------------
# Regions
# ----------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 1499), st.integers(1, 1500), st.sampled_from(STYLES), st.sampled_from([None, "F"]))
def test_region_reads_equal_slices_of_whole_loads(lo: int, n: int, style: str, order: str | None) -> None:
    a = _smooth(1500 * 700).reshape(1500, 700)  # 8.4 MB: 3 frames; rows of 5600 bytes cross chunks
    if order == "F":
        a = np.asfortranarray(a)
    hi = min(lo + n, 1500)
    data = _region_file(style, order)
    with ndckpt.open(data) as r:
        got = r.read("a", region=(slice(lo, hi), slice(3, 500)))
    assert_same_array(got, a[lo:hi, 3:500])


_REGION_FILES: dict[tuple[str, str | None], bytes] = {}


def _region_file(style: str, order: str | None) -> bytes:
    key = (style, order)
    if key not in _REGION_FILES:
        a = _smooth(1500 * 700).reshape(1500, 700)
        _REGION_FILES[key] = save_bytes({"a": np.asfortranarray(a) if order else a}, style=style)
    return _REGION_FILES[key]


def test_a_region_read_decodes_only_up_to_its_last_chunk() -> None:
    """Corrupt the last chunk of a frame: a region in its first chunks still reads (verify=False)."""
    a = _smooth(500_000)  # 4 MB: one frame
    data = bytearray(save_bytes({"a": a}, style="lz4+delta"))
    p = parse(bytes(data))
    start = next(r for r in p.regions if r.kind == "data").start
    end = start + len(p.stored[0])
    data[end - 40 : end] = bytes(40)  # the last chunk's block: garbage
    with ndckpt.open(bytes(data), verify=False) as r:
        assert_same_array(r.read("a", region=(slice(9000, 20000),)), a[9000:20000])
        with pytest.raises(ndckpt.CheckptError):
            r.read("a")


# ----------------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["lz4+shuffle", "lz4+delta"])
def test_extra_memory_of_a_filtered_save_and_load_is_at_most_two_frames(style: str) -> None:
    a = _smooth(4_000_000)  # 32 MB: 8 frames
    out = np.empty_like(a)
    frame = 4 << 20
    data = save_bytes({"a": a}, style=style)
    tracemalloc.start()
    try:
        ndckpt.load(data, out={"a": out}, threads=1)
        load_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        buf = io.BytesIO()
        base = tracemalloc.get_traced_memory()[0]
        ndckpt.save(buf, {"a": a}, style=style, threads=1)
        save_peak = tracemalloc.get_traced_memory()[1] - base - buf.getbuffer().nbytes
    finally:
        tracemalloc.stop()
    assert_same_array(out, a)
    assert load_peak <= 2 * frame, load_peak
    assert save_peak <= 2 * frame, save_peak
