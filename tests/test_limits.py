"""Bounded work for bounded input: the head limits of docs/format.md §4.1 (issue 12 items 5, 6, 7, 9).

Every limit is tested at its edge on both sides: the largest accepted value opens (and the
writer writes it), one more is refused with a message naming the limit, by the reader
(FormatError, for a forged file whose checksums are all right) and by the writer
(InvalidArgumentError, nothing written). The attack run's quadratic cases are timed with
wide margins, and the documented memory bound is checked in a child process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from forge import build, canonical, parse, save_small_frames
from helpers import readers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ndckpt
from ndckpt import container
from ndckpt.container import (
    DTYPE_DEPTH_MAX,
    METADATA_DEPTH_MAX,
    NAME_MAX,
    NDIM_MAX,
    OPEN_MEM_FIXED,
    OPEN_MEM_PER_HEAD_BYTE,
    PATH_DEPTH_MAX,
)
from ndckpt.errors import CheckptError, FormatError, InvalidArgumentError

HERE = Path(__file__).parent


def forged(mutate: Any, arrays: Any = None, **kw: Any) -> bytes:
    """A valid file of ``arrays`` whose head document ``mutate`` changes (checksums recomputed)."""
    lay = parse(save_small_frames({"x": np.arange(3)} if arrays is None else arrays, **kw))
    doc = lay.head
    mutate(doc)
    return build(doc, lay.stored)


#: The readers a forged file goes through (by name, from helpers.READERS).
LIMIT_READERS = readers(["load(path)", "load(path, copy)", "open(path).get", "verify(path)", "load(BytesIO)"])


def every_reader(data: bytes, tmp_path: Path) -> list[BaseException | None]:
    """What load (mapped, copied), open + get, verify and load of a stream do with ``data``."""
    p = tmp_path / "f.ndckpt"
    p.write_bytes(data)
    out: list[BaseException | None] = []
    for read in LIMIT_READERS.values():
        try:
            read(data, p)
            out.append(None)
        except Exception as e:
            out.append(e)
    return out


def assert_refused(data: bytes, tmp_path: Path, match: str) -> None:
    for e in every_reader(data, tmp_path):
        assert isinstance(e, FormatError), repr(e)
        assert match in str(e), str(e)


# -- path depth (item 5) ------------------------------------------------------------------


def nested(depth: int, leaf: Any) -> Any:
    """A tree whose one leaf has a path of ``depth`` components."""
    d: Any = leaf
    for _ in range(depth):
        d = {"g": d}
    return d


def test_path_depth_edge_reader_and_writer(tmp_path: Path) -> None:
    deep = nested(PATH_DEPTH_MAX + 1, np.arange(2))
    with pytest.raises(InvalidArgumentError, match="at most 64 components"):
        ndckpt.save(tmp_path / "deep.ndckpt", deep)
    assert not (tmp_path / "deep.ndckpt").exists()
    good = nested(PATH_DEPTH_MAX, np.arange(2))
    ndckpt.save(tmp_path / "good.ndckpt", good)
    back = ndckpt.load(tmp_path / "good.ndckpt")
    leaf = back
    for _ in range(PATH_DEPTH_MAX):
        leaf = leaf["g"]
    np.testing.assert_array_equal(leaf, np.arange(2))

    def deepen(doc: dict[str, Any]) -> None:
        doc["arrays"]["path"][0] = ["a"] * (PATH_DEPTH_MAX + 1)

    assert_refused(forged(deepen), tmp_path, "limit of 64")


@pytest.mark.parametrize("depth", [40_000, 80_000])
def test_very_deep_group_paths_fail_fast(tmp_path: Path, depth: int) -> None:
    # The attack run: a 164 KiB file with a group 40,000 deep took 2.4 s, 80,000 deep 9.2 s.
    def deepen(doc: dict[str, Any]) -> None:
        doc["groups"] = [["g"] * depth]

    data = forged(deepen)
    t0 = time.perf_counter()
    assert_refused(data, tmp_path, "limit of 64")
    assert time.perf_counter() - t0 < 2.0  # five readers


def test_many_paths_at_the_depth_limit_open_in_time(tmp_path: Path) -> None:
    # 2,000 arrays 64 deep (about a 1 MiB head): the path checks are not quadratic in depth.
    tree: dict[str, Any] = {}
    for i in range(2000):
        d = tree
        for k in range(PATH_DEPTH_MAX - 1):
            d = d.setdefault(f"{i % 7}{k}" if k else f"r{i}", {})
        d["x"] = np.zeros(0)
    p = tmp_path / "deep.ndckpt"
    ndckpt.save(p, tree)
    t0 = time.perf_counter()
    with ndckpt.open(p):
        pass
    assert time.perf_counter() - t0 < 1.5


# -- names --------------------------------------------------------------------------------


def test_name_length_edge(tmp_path: Path) -> None:
    ok = "é" * (NAME_MAX // 2) + "a"  # 255 bytes of UTF-8
    assert len(ok.encode()) == NAME_MAX
    ndckpt.save(tmp_path / "ok.ndckpt", {ok: np.arange(1)})
    assert list(ndckpt.load(tmp_path / "ok.ndckpt")) == [ok]
    with pytest.raises(InvalidArgumentError, match="limit of 255"):
        ndckpt.save(tmp_path / "long.ndckpt", {ok + "a": np.arange(1)})
    assert not (tmp_path / "long.ndckpt").exists()

    def lengthen(doc: dict[str, Any]) -> None:
        doc["arrays"]["path"][0] = [ok + "a"]

    assert_refused(forged(lengthen), tmp_path, "limit of 255")


def test_lone_surrogates_are_refused_by_writer_and_reader(tmp_path: Path) -> None:
    # A pair of lone surrogates would come back as one character: a different name.
    with pytest.raises(InvalidArgumentError, match="lone surrogate"):
        ndckpt.save(tmp_path / "s.ndckpt", {"\ud83d\ude00": np.arange(1)})
    with pytest.raises(InvalidArgumentError, match="lone surrogate"):
        ndckpt.save(tmp_path / "s.ndckpt", {"g": {"\udcff": np.arange(1)}})

    def surrogate(doc: dict[str, Any]) -> None:
        doc["arrays"]["path"][0] = ["\udcff"]

    assert_refused(forged(surrogate), tmp_path, "lone surrogate")


# -- dimensions and dtypes (item 9) ------------------------------------------------------


def test_more_than_64_dimensions_is_a_format_error_everywhere(tmp_path: Path) -> None:
    def dims(doc: dict[str, Any]) -> None:
        doc["arrays"]["shape"][0] = [1] * (NDIM_MAX + 1)

    data = forged(dims, {"x": np.zeros(1, np.uint8)})
    assert_refused(data, tmp_path, "limit of 64")
    a = np.zeros((1,) * NDIM_MAX, np.uint8)
    ndckpt.save(tmp_path / "ok.ndckpt", {"x": a})
    assert ndckpt.load(tmp_path / "ok.ndckpt")["x"].shape == a.shape


def test_shape_plus_subarray_dtype_beyond_64_dimensions(tmp_path: Path) -> None:
    def sub(doc: dict[str, Any]) -> None:
        doc["arrays"]["shape"][0] = [1] * 60
        doc["arrays"]["dtypes"][0] = {"base": "|u1", "shape": [1] * 5}

    assert_refused(forged(sub, {"x": np.zeros(1, np.uint8)}), tmp_path, "sub-array dtype")


REC = np.dtype({"names": ["a", "b"], "formats": ["<i4", "<f8"], "offsets": [0, 8], "itemsize": 16})


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d.__setitem__("titles", [[5], None]), "titles"),
        (lambda d: d.__setitem__("titles", [5, None]), "titles"),
        (lambda d: d.__setitem__("titles", ["t"]), "titles"),
        (lambda d: d.__setitem__("aligned", "yes"), "aligned"),
        (lambda d: d.__setitem__("aligned", 1), "aligned"),
        (lambda d: d.__setitem__("names", ["a"]), "lengths"),
        (lambda d: d.__setitem__("names", "ab"), "lists"),
        (lambda d: d.__setitem__("itemsize", 1 << 63), "bad dtype"),
    ],
)
def test_malformed_structured_dtypes_are_format_errors(tmp_path: Path, change: Any, match: str) -> None:
    def mutate(doc: dict[str, Any]) -> None:
        change(doc["arrays"]["dtypes"][0])

    assert_refused(forged(mutate, {"r": np.zeros(2, REC)}), tmp_path, match)


def nested_dtype(depth: int) -> Any:
    d: Any = "<i4"
    for _ in range(depth):
        d = {"names": ["f"], "formats": [d], "offsets": [0], "itemsize": 4}
    return d


def test_dtype_depth_edge(tmp_path: Path) -> None:
    ok = container.decode_dtype(nested_dtype(DTYPE_DEPTH_MAX))
    ndckpt.save(tmp_path / "ok.ndckpt", {"r": np.zeros(2, ok)})
    assert ndckpt.load(tmp_path / "ok.ndckpt")["r"].dtype == ok
    too = np.dtype([("f", ok)])
    with pytest.raises(InvalidArgumentError, match="nested deeper"):
        ndckpt.save(tmp_path / "deep.ndckpt", {"r": np.zeros(2, too)})

    def deepen(doc: dict[str, Any]) -> None:
        doc["arrays"]["dtypes"][0] = nested_dtype(450)  # the attack run's RecursionError

    assert_refused(forged(deepen, {"r": np.zeros(2, np.int32)}), tmp_path, "nested deeper")


def test_too_many_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(container.dtype, "DTYPE_FIELDS_MAX", 3)
    dt = np.dtype([(f"f{i}", "u1") for i in range(4)])
    with pytest.raises(InvalidArgumentError, match="fields"):
        ndckpt.save(tmp_path / "x.ndckpt", {"r": np.zeros(1, dt)})
    monkeypatch.setattr(container.dtype, "DTYPE_FIELDS_MAX", 1 << 16)
    data = save_small_frames({"r": np.zeros(1, dt)})
    monkeypatch.setattr(container.dtype, "DTYPE_FIELDS_MAX", 3)
    assert_refused(data, tmp_path, "fields")


# -- metadata and counts (item 7) --------------------------------------------------------


def deep_list(depth: int) -> Any:
    v: Any = []
    for _ in range(depth - 1):
        v = [v]
    return v


def test_metadata_depth_edge(tmp_path: Path) -> None:
    ok = deep_list(METADATA_DEPTH_MAX)
    assert container.json_depth(ok, 1000) == METADATA_DEPTH_MAX
    ndckpt.save(tmp_path / "ok.ndckpt", {"x": np.arange(1)}, metadata=ok)
    with ndckpt.open(tmp_path / "ok.ndckpt") as r:
        assert r.metadata == ok
    with pytest.raises(InvalidArgumentError, match="nested deeper"):
        ndckpt.save(tmp_path / "deep.ndckpt", {"x": np.arange(1)}, metadata=[ok])

    def deepen(doc: dict[str, Any]) -> None:
        doc["metadata"] = [ok]

    assert_refused(forged(deepen), tmp_path, "limit of 64")


def test_array_count_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = {f"a{i}": np.zeros(0) for i in range(5)}
    data = save_small_frames(state)
    monkeypatch.setattr(container.head, "ARRAYS_MAX", 4)
    assert_refused(data, tmp_path, "limit of 4")
    import ndckpt.container.plan

    monkeypatch.setattr(ndckpt.container.plan, "ARRAYS_MAX", 4)
    with pytest.raises(InvalidArgumentError, match="limit is 4"):
        ndckpt.save(tmp_path / "n.ndckpt", state)
    monkeypatch.setattr(container.head, "ARRAYS_MAX", 5)
    monkeypatch.setattr(ndckpt.container.plan, "ARRAYS_MAX", 5)
    ndckpt.save(tmp_path / "n.ndckpt", state)
    assert len(ndckpt.load(tmp_path / "n.ndckpt")) == 5


# -- blocks (item 6) ----------------------------------------------------------------------


def blocked(n: int, blocks: list[list[list[int]]], shape: list[int]) -> bytes:
    data = np.arange(n, dtype=np.uint8)

    def mutate(doc: dict[str, Any]) -> None:
        doc["arrays"]["shape"][0] = shape
        doc["arrays"]["blocks"] = [[0, blocks]]

    return forged(mutate, {"x": data})


def test_40000_one_element_blocks_open_fast_and_exactly(tmp_path: Path) -> None:
    # The attack run: 40,000 one-element blocks (0.57 MiB) took 8.5 s and +259 MiB.
    n = 40_000
    order = np.random.default_rng(0).permutation(n).tolist()
    blocks = [[[k], [1]] for k in order]  # stored in a shuffled order
    data = blocked(n, blocks, [n])
    p = tmp_path / "b.ndckpt"
    p.write_bytes(data)
    t0 = time.process_time()  # CPU time (this process, all threads): what other jobs on the box do not add
    got = ndckpt.load(p)["x"]
    assert time.process_time() - t0 < 3.0, "the quadratic check took 8.5 s"
    want = np.empty(n, np.uint8)
    want[order] = np.arange(n, dtype=np.uint8)
    np.testing.assert_array_equal(got, want)


def test_many_blocks_overlapping_are_named(tmp_path: Path) -> None:
    n = 3000
    blocks = [[[k], [1]] for k in range(n)]
    blocks[2500] = [[7], [1]]  # covers element 7 twice, leaves 2500 empty
    assert_refused(blocked(n, blocks, [n]), tmp_path, "blocks 7 and 2500 overlap")


def test_many_blocks_in_a_scattered_layout_are_refused_clearly(tmp_path: Path) -> None:
    # 2,000 blocks whose boundaries make a grid of far more than 16 cells per block.
    k = 2000
    blocks = [[[i, 0], [1, k - i]] for i in range(k)] + []  # a staircase: rows of shrinking width
    rest = [[[i, k - i], [1, i]] for i in range(1, k)]
    data = blocked(k * k, blocks + rest, [k, k])
    assert_refused(data, tmp_path, "cells per block")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(1, 5), min_size=1, max_size=6), st.integers(0, 2**32 - 1), st.booleans())
def test_block_check_agrees_with_brute_force(tmp_path: Path, cuts: list[int], seed: int, many: bool) -> None:
    # A random guillotine tiling of a 2-D array, maybe with one block moved: the fast check
    # (many blocks) and the pairwise one must both agree with painting every element.
    rng = np.random.default_rng(seed)
    shape = (sum(cuts), int(rng.integers(1, 6)))
    blocks: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    r = 0
    for h in cuts:
        c = 0
        while c < shape[1]:
            w = int(rng.integers(1, shape[1] - c + 1))
            blocks.append(((r, c), (h, w)))
            c += w
        r += h
    if rng.random() < 0.5 and len(blocks) > 1:
        i = int(rng.integers(len(blocks)))
        (r0, c0), sh = blocks[i]
        blocks[i] = ((max(0, r0 - 1), c0), sh)
    paint = np.zeros(shape, np.int64)
    for (r0, c0), (h, w) in blocks:
        paint[r0 : r0 + h, c0 : c0 + w] += 1
    exact = bool((paint == 1).all())
    import ndckpt.container.blocks as c

    old = c.BLOCKS_ANY_MAX
    try:
        c.BLOCKS_ANY_MAX = 0 if many else 1 << 20
        try:
            c.check_blocks(shape, tuple(blocks), "x")
            ok = True
        except FormatError:
            ok = False
    finally:
        c.BLOCKS_ANY_MAX = old
    assert ok == exact


# -- the documented bound (item 7) -------------------------------------------------------

BOUND_CHILD = """
import resource, sys, time
import ndckpt
path = sys.argv[1]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0 = time.perf_counter()
try:
    with ndckpt.open(path) as r:
        pass
    what = "ok"
except ndckpt.CheckptError as e:
    what = type(e).__name__
dt = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(what, after - before, dt)
"""


def heads() -> dict[str, bytes]:
    zero = {f"a{i}": np.zeros(0) for i in range(200_000)}
    meta = [{} for _ in range(300_000)]
    dts = {f"d{i}": np.zeros(1, np.dtype([(f"f{i}", "<i4"), ("g", "<f8")])) for i in range(5000)}
    return {
        "200k zero-size arrays": save_small_frames(zero),
        "300k empty dicts of metadata": save_small_frames({"x": np.arange(1)}, metadata=meta),
        "5000 distinct structured dtypes": save_small_frames(dts),
    }


@pytest.mark.parametrize(
    "name", ["200k zero-size arrays", "300k empty dicts of metadata", "5000 distinct structured dtypes"]
)
def test_open_stays_within_the_documented_memory_bound(tmp_path: Path, name: str) -> None:
    data = heads()[name]
    p = tmp_path / "h.ndckpt"
    p.write_bytes(data)
    h = int.from_bytes(data[16:24], "little")  # the superblock's head_nbytes
    script = tmp_path / "child.py"
    script.write_text(BOUND_CHILD)
    proc = subprocess.run([sys.executable, str(script), str(p)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    what, grew, secs = proc.stdout.split()
    assert what == "ok"
    bound = OPEN_MEM_PER_HEAD_BYTE * h + OPEN_MEM_FIXED
    assert int(grew) <= bound, f"{name}: open grew RSS by {int(grew) >> 20} MiB, bound {bound >> 20} MiB (h={h})"
    assert float(secs) < 0.5 + h / 1e6, f"{name}: open took {secs} s for a head of {h} bytes"


def test_memory_error_while_reading_is_an_io_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import ndckpt.container.read

    p = tmp_path / "z.ndckpt"
    ndckpt.save(p, {"x": np.arange(1000)}, style="lz4")

    def no_memory(n: int) -> Any:
        raise MemoryError

    monkeypatch.setattr(ndckpt.container.read, "aligned_empty", no_memory)
    with pytest.raises(ndckpt.CheckptIOError) as ei:
        ndckpt.load(p)
    assert ei.value.errno == errno.ENOMEM


# -- no other exception for random heads -------------------------------------------------

JSONS = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=5),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_replaced_head_field_opens_or_raises_a_checkpt_error(tmp_path: Path, data: st.DataObject) -> None:
    base = parse(save_small_frames({"r": np.zeros(3, REC), "g": {"x": np.arange(4)}}, style={"g": "lz4"}))
    doc = json.loads(canonical(base.head))
    # Walk to a random place in the head and replace what is there with random JSON.
    node: Any = doc
    path: list[Any] = []
    while isinstance(node, dict | list) and node and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
        path.append(key)
        node = node[key]
    if not path:
        return
    parent: Any = doc
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = data.draw(JSONS)
    blob = build(doc, base.stored, styles=[f["style"] for f in base.head["frames"]])
    for e in every_reader(blob, tmp_path):
        assert e is None or isinstance(e, CheckptError), f"{path}: {type(e).__name__}: {e}"


def test_limits_are_documented_in_the_format_page() -> None:
    text = (HERE.parent / "docs" / "format.md").read_text()
    for name in (
        "PATH_DEPTH_MAX",
        "NAME_MAX",
        "NDIM_MAX",
        "DTYPE_DEPTH_MAX",
        "DTYPE_FIELDS_MAX",
        "METADATA_DEPTH_MAX",
        "ARRAYS_MAX",
        "BLOCKS_ANY_MAX",
        "BLOCK_GRID_PER_BLOCK",
        "OPEN_MEM_PER_HEAD_BYTE",
    ):
        assert f"| `{name}` | {getattr(container, name)} |" in text or f"{getattr(container, name)} · h" in text, name
    assert f"{OPEN_MEM_FIXED >> 20} MiB" in text
