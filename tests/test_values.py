"""Python values and numpy scalars as leaves (format §2.2.1), the head's feature list (§5), '/' in
keys, metadata as any JSON value, and the messages of issue 13 item 9.

Values round-trip exactly: the strict comparator (:func:`strategies.assert_same_value`) checks
``type(got) is type(want)`` all the way down and compares floats, complex numbers and numpy
scalars bit for bit, so -0.0, NaN payloads, bool-versus-int and tuple-versus-list all count.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from forge import build, canonical
from helpers import READERS, assert_same_tree, assert_same_value, flat, readers, save_bytes
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from strategies import (
    SCALAR_DTYPES,
    STRUCTURED_DTYPES,
    keys,
    layout_arrays,
    shapes,
)

import ndckpt
from ndckpt import CheckpointManager, FormatError, InvalidArgumentError, UnsupportedError
from ndckpt.container import SUPERBLOCK, VALUE_DEPTH_MAX
from ndckpt.container.values import decode, encode

# ----------------------------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------------------------

#: Every 64-bit pattern as a float: NaNs with any payload and sign, -0.0, infinities, subnormals.
float_bits = st.integers(0, 2**64 - 1).map(lambda b: struct.unpack("<d", struct.pack("<Q", b))[0])
floats = st.one_of(float_bits, st.floats(), st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan]))
ints = st.one_of(
    st.integers(),
    st.integers(-(2**300), 2**300),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 2**70, -(2**128) + 1]),
)


@st.composite
def numpy_scalars(draw: st.DrawFn) -> Any:
    """A numpy scalar of any stored dtype (plain, both byte orders, structured), random bytes."""
    dt = draw(st.sampled_from(SCALAR_DTYPES + STRUCTURED_DTYPES))
    if dt.kind == "U":  # (random bytes are no valid code points)
        return np.array(draw(st.text(max_size=dt.itemsize // 4)), dt)[()]
    if dt.kind == "S" and draw(st.booleans()):
        return np.bytes_(draw(st.binary(max_size=3)))  # np.bytes_(b"") has the zero-size dtype |S0
    raw = draw(st.binary(min_size=dt.itemsize, max_size=dt.itemsize))
    return np.frombuffer(raw, dt).reshape(())[()]


scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    floats,
    st.builds(complex, floats, floats),
    st.text(),
    st.binary(),
    numpy_scalars(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=5), inner, max_size=4),  # any str key here, '/' and '' too
    ),
    max_leaves=12,
)


def trees() -> st.SearchStrategy[dict[str, Any]]:
    """Nested mappings whose leaves are arrays, numpy scalars, Python values and empty groups.

    (A dict in the mapping is a group; dicts are values only inside lists and tuples.)
    """
    leaf = st.one_of(values.filter(lambda v: type(v) is not dict), layout_arrays(shape=shapes(max_dims=2, max_side=3)))
    level1 = st.dictionaries(keys(), st.one_of(leaf, st.just({})), max_size=4)
    return st.dictionaries(keys(), st.one_of(leaf, level1), max_size=5)


def check_leaf(got: Any, want: Any, name: str) -> None:
    assert_same_tree({"x": got}, {"x": want}) if isinstance(want, np.ndarray) else assert_same_value(got, want, name)


# ----------------------------------------------------------------------------------------------
# Round trips
# ----------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(v=values)
@example(v=[2**70, -0.0, math.nan, (1, [2]), {"b": 1, "a": b"\x00"}, "\u00e9\U0001f600", None, True, 1j])
@example(v=struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000001))[0])  # a signalling NaN payload
def test_encoding_roundtrips_exactly_and_is_canonical_json(v: Any) -> None:
    enc = encode(v, "value 'v'")
    text = json.dumps(enc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    back = json.loads(text)
    assert_same_value(decode(back, "v"), v, "v")
    assert encode(decode(back, "v"), "v") == back, "one encoding per value"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tree=trees(), style=st.sampled_from(["raw", "lz4"]))
def test_trees_of_arrays_scalars_and_values_roundtrip_through_every_reader(tree: dict[str, Any], style: str) -> None:
    data = save_bytes(tree, style=style, threads=1)
    assert save_bytes(tree, style=style, threads=2) == data, "bytes do not depend on the thread count"
    for name, kw in (("load(bytes)", {}), ("load(bytes, copy)", {"verify": True}), ("load(BytesIO)", {})):
        assert_same_tree(READERS[name](data, **kw), tree)
    READERS["verify(bytes)"](data)
    READERS["verify(BytesIO)"](data)
    leaves = flat(tree)
    with ndckpt.open(data) as r:
        assert sorted(r.names()) == sorted(leaves)
        for name, want in leaves.items():
            assert name in r
            check_leaf(r.get(name), want, name)
        assert_same_tree(r.load(), tree)
        assert [row["name"] for row in r.value_info()] == sorted(
            (n for n, v in leaves.items() if not isinstance(v, np.ndarray)), key=lambda n: n.split("/")
        )
    n = SUPERBLOCK.unpack_from(data)[3]
    head = data[SUPERBLOCK.size : SUPERBLOCK.size + n]
    assert canonical(json.loads(head)) == head, "the head is canonical JSON (format §1)"
    has_values = any(not isinstance(v, np.ndarray) for v in leaves.values())
    assert (b'"features":["values"]' in data) is has_values, "the feature is listed exactly when used"


def test_values_through_a_path_a_pipe_and_a_fifo(tmp_path: Path) -> None:
    tree = {"cfg": {"lr": 0.1, "name": "run-1", "sizes": (64, 64), "n": 2**90}, "u": np.arange(6.0), "k": np.int8(-3)}
    p = tmp_path / "v.ndckpt"
    ndckpt.save(p, tree)
    for mmap in (True, False):
        assert_same_tree(ndckpt.load(p, mmap=mmap), tree)
    r_fd, w_fd = os.pipe()
    writer = threading.Thread(target=lambda: (ndckpt.save(w_fd, tree, style="lz4"), os.close(w_fd)))
    writer.start()
    try:
        with os.fdopen(r_fd, "rb") as rf:
            assert_same_tree(ndckpt.load(rf), tree)
    finally:
        writer.join()


def test_values_are_new_objects_on_every_read() -> None:
    data = save_bytes({"v": [1, [2]]})
    first = ndckpt.load(data)["v"]
    first[1].append(3)
    assert ndckpt.load(data)["v"] == [1, [2]]
    with ndckpt.open(data) as r:
        r.get("v").append(9)
        assert r.get("v") == [1, [2]]


def test_scalars_come_back_as_scalars_and_0d_arrays_as_0d_arrays() -> None:
    tree = {"s": np.float32(1.5), "a": np.array(1.5, np.float32), "b": np.bool_(True), "i": 3, "f": 3.0}
    got = ndckpt.load(save_bytes(tree))
    assert type(got["s"]) is np.float32
    assert type(got["a"]) is np.ndarray
    assert got["a"].shape == ()
    assert type(got["b"]) is np.bool_
    assert type(got["i"]) is int
    assert type(got["f"]) is float


def test_a_file_without_values_has_no_new_head_keys() -> None:
    data = save_bytes({"a": np.arange(3), "g": {}}, metadata={"k": 1})
    assert b"features" not in data
    assert b'"values"' not in data


# ----------------------------------------------------------------------------------------------
# numpy.random.Generator: save bit_generator.state, restore by assigning it
# ----------------------------------------------------------------------------------------------


BITGENS = [np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937, np.random.Philox, np.random.SFC64]


@pytest.mark.parametrize("bitgen", BITGENS)
def test_generator_state_roundtrips_and_continues_the_stream(bitgen: Any, tmp_path: Path) -> None:
    rng = np.random.Generator(bitgen(20260))
    rng.random(11)
    rng.integers(0, 10, 3, dtype=np.uint32)  # leaves a buffered 32-bit half (has_uint32) where used
    p = tmp_path / "rng.ndckpt"
    ndckpt.save(p, {"rng": rng.bit_generator.state, "x": np.zeros(2)})
    for mmap in (True, False):
        state = ndckpt.load(p, mmap=mmap)["rng"]
        assert_same_tree({"s": state}, {"s": rng.bit_generator.state})
        again = np.random.Generator(bitgen())
        again.bit_generator.state = state
        fresh = np.random.Generator(bitgen())
        fresh.bit_generator.state = rng.bit_generator.state
        assert again.random(100).tobytes() == fresh.random(100).tobytes()
        assert again.integers(0, 2**62, 10).tolist() == fresh.integers(0, 2**62, 10).tolist()


# ----------------------------------------------------------------------------------------------
# Readers: features, malformed encodings, out= and region=
# ----------------------------------------------------------------------------------------------


def _head_doc(data: bytes) -> dict[str, Any]:
    n = SUPERBLOCK.unpack_from(data)[3]
    return json.loads(data[SUPERBLOCK.size : SUPERBLOCK.size + n])  # type: ignore[no-any-return]


@pytest.mark.parametrize("features", [["values", "zstd-dict"], ["later"], ["a", "values"]])
def test_a_feature_unknown_to_the_reader_says_upgrade(features: list[str], tmp_path: Path) -> None:
    doc = _head_doc(save_bytes({"v": 1}))
    doc["features"] = features
    doc["later"] = {"whatever": True}  # a newer writer's key: the feature check comes first
    data = build(doc, [])
    unknown = next(f for f in features if f != "values")
    p = tmp_path / "new.ndckpt"
    p.write_bytes(data)
    for read in readers(["load(bytes)", "load(BytesIO)", "open(path).get", "verify(path)", "verify(BytesIO)"]).values():
        with pytest.raises(UnsupportedError, match=rf"this file needs the feature '{unknown}'.*upgrade ndckpt"):
            read(data, p)


BAD_HEADS = [
    ("features not a list", lambda d: d.update(features="values"), "head.features"),
    ("features unsorted", lambda d: d.update(features=["values", "values"]), "sorted and without repeats"),
    ("values without feature", lambda d: d.pop("features"), "expected exactly the keys"),
    ("feature without values", lambda d: d.pop("values"), "expected exactly the keys.*values"),
    ("values empty", lambda d: d.update(values=[]), "head.values: empty"),
    ("values out of order", lambda d: d["values"].reverse(), "out of order"),
    ("value path inside an array", lambda d: d["values"].append([["z", "q"], 1]), "inside 'z'"),
    ("value path equals a group", lambda d: d["values"].append([["g"], 1]), "appears twice"),
    ("bad tag", lambda d: d["values"][0].__setitem__(1, {"set": [1]}), "not a value encoding"),
    ("two tags", lambda d: d["values"][0].__setitem__(1, {"int": "ff", "float": "0"}), "not a value encoding"),
    ("short float", lambda d: d["values"][0].__setitem__(1, {"float": "3ff"}), "16 lowercase hex"),
    ("small tagged int", lambda d: d["values"][0].__setitem__(1, {"int": "ff"}), "JSON integer, not tagged"),
    ("int padded", lambda d: d["values"][0].__setitem__(1, {"int": "0" + "f" * 20}), "bad int encoding"),
    ("huge bare int", lambda d: d["values"][0].__setitem__(1, 2**64), "outside"),
    ("bad base64", lambda d: d["values"][0].__setitem__(1, {"bytes": "A==="}), "base64"),
    ("numpy size", lambda d: d["values"][0].__setitem__(1, {"numpy": ["<f8", "AAAA"]}), "needs 8 bytes"),
    ("numpy object", lambda d: d["values"][0].__setitem__(1, {"numpy": ["|O", ""]}), "bad dtype"),
    ("dict repeat", lambda d: d["values"][0].__setitem__(1, {"dict": [["a", 1], ["a", 2]]}), "appears twice"),
    ("too deep", lambda d: d["values"][0].__setitem__(1, json.loads("[" * 65 + "]" * 65)), "nested deeper"),
    ("surrogate", lambda d: d["values"][0].__setitem__(1, "\ud800"), "lone surrogate"),
]


@pytest.mark.parametrize(("mutate", "match"), [pytest.param(m, e, id=i) for i, m, e in BAD_HEADS])
def test_malformed_values_are_format_errors_at_open(mutate: Any, match: str) -> None:
    doc = _head_doc(save_bytes({"a": 1, "b": 2, "g": {}, "z": np.arange(2)}))
    mutate(doc)
    stored = [np.arange(2).tobytes()]
    data = build(doc, stored)
    with pytest.raises(FormatError, match=match):
        ndckpt.open(data)
    with pytest.raises(FormatError, match=match):
        ndckpt.load(io.BytesIO(data))


def test_depth_limit_is_exact() -> None:
    def deep(n: int) -> Any:
        v: Any = 0
        for _ in range(n):
            v = [v]
        return v

    assert ndckpt.load(save_bytes({"v": deep(VALUE_DEPTH_MAX)}))["v"] == deep(VALUE_DEPTH_MAX)
    with pytest.raises(InvalidArgumentError, match=f"nested deeper than {VALUE_DEPTH_MAX}"):
        save_bytes({"v": deep(VALUE_DEPTH_MAX + 1)})


def test_out_skips_values_and_region_or_out_on_a_value_is_refused() -> None:
    tree = {"a": np.arange(4.0), "cfg": {"n": 5, "s": np.int16(2)}}
    data = save_bytes(tree)
    buf = np.zeros(4)
    got = ndckpt.load(data, out={"a": buf, "cfg": {"n": 0, "s": np.int16(0)}})  # a previous state as out=
    assert got["a"] is buf
    assert_same_tree(got, tree)
    with ndckpt.open(data) as r:
        with pytest.raises(InvalidArgumentError, match=r"'cfg/n' is a Python value .*out= and region= do not apply"):
            r.read("cfg/n", out=np.zeros(()))
        with pytest.raises(InvalidArgumentError, match="region= do not apply"):
            r.read("cfg/s", region=(slice(0, 1),))
        with pytest.raises(InvalidArgumentError, match="'cfg' is a group"):
            r.read("cfg")


def test_manager_restores_values_and_snapshots_them_at_save(tmp_path: Path) -> None:
    for async_save in (False, True):
        d = tmp_path / f"m{async_save}"
        with CheckpointManager(d, async_save=async_save) as m:
            state = {"u": np.arange(3.0), "cfg": {"hist": [1, 2]}, "step": np.int64(7), "rng": {"s": 2**100}}
            m.save(1, state)
            state["cfg"]["hist"].append(3)  # after save returns: must not reach the file
            m.wait()
            got = m.restore()
        assert_same_tree(got, {**state, "cfg": {"hist": [1, 2]}})


def test_mpi_save_refuses_values_clearly() -> None:
    from ndckpt.mpi._inputs import describe

    for v, kind in ((3, "int"), (np.float32(1), "float32"), ([1], "list")):
        want = rf"'x': ndckpt.mpi.save stores numpy arrays and Blocks only, got {kind}"
        with pytest.raises(InvalidArgumentError, match=want):
            describe(0, "/nonexistent/x.ndckpt", {"x": v}, "raw", None, None)


# ----------------------------------------------------------------------------------------------
# Keys: '/', empty, non-str
# ----------------------------------------------------------------------------------------------


def test_slash_keys_are_refused_instead_of_colliding() -> None:
    with pytest.raises(
        InvalidArgumentError,
        match=r"arrays: key 'a/b' at the top level contains '/', which separates groups in ndckpt names; "
        r"nest it as \{'a': \{'b': \.\.\.\}\} or rename it",
    ):
        save_bytes({"a/b": np.ones(1), "a": {"c": np.ones(1)}})
    with pytest.raises(InvalidArgumentError, match=r"key 'x/' under group 'g' contains '/'"):
        save_bytes({"g": {"x/": 1}})
    with pytest.raises(InvalidArgumentError, match=r"key 3 under group 'g' is a int; keys must be non-empty str"):
        save_bytes({"g": {3: 1}})
    # '.' and '..' are plain names (nothing maps names to files); '/' inside a value's dict is data.
    tree = {".": {"..": np.ones(1)}, "v": [{"a/b": 1, "": 2}]}
    assert_same_tree(ndckpt.load(save_bytes(tree)), tree)


# ----------------------------------------------------------------------------------------------
# metadata: any JSON value
# ----------------------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    meta=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=10,
    )
)
def test_metadata_takes_any_json_value(meta: Any) -> None:
    with ndckpt.open(save_bytes({"a": np.ones(1)}, metadata=meta)) as r:
        assert r.metadata == meta


def test_metadata_converts_numpy_scalars() -> None:
    meta = {"step": np.int64(7), "lr": np.float32(0.5), "ok": np.bool_(True), "xs": [np.uint8(3)], "s": np.str_("a")}
    with ndckpt.open(save_bytes({}, metadata=meta)) as r:
        got = r.metadata
    assert got == {"step": 7, "lr": 0.5, "ok": True, "xs": [3], "s": "a"}
    assert type(got["step"]) is int
    assert type(got["ok"]) is bool
    with ndckpt.open(save_bytes({}, metadata=[1, 2])) as r:
        assert r.metadata == [1, 2]


# ----------------------------------------------------------------------------------------------
# Issue 13 item 9: each message says what is wrong and what to do
# ----------------------------------------------------------------------------------------------


def test_item9_messages() -> None:
    with pytest.raises(
        InvalidArgumentError,
        match=r"style: 'y' names no array or group being saved \(arrays: 'x'\); keys of a style mapping are "
        r"array or group names, nested or joined by '/': fix or remove the key",
    ):
        save_bytes({"x": np.ones(2)}, style={"y": "lz4"})
    # A Python int beyond 64 bits is a value now; an object array says what to do instead.
    assert ndckpt.load(save_bytes({"i": 2**70}))["i"] == 2**70
    with pytest.raises(
        InvalidArgumentError,
        match=r"array 'i': dtype object holds Python objects, which ndckpt does not store in arrays; convert it to "
        r"a numeric, string or structured dtype, or store the objects themselves .* as a Python value",
    ):
        save_bytes({"i": np.array([2**70])})
    with pytest.raises(InvalidArgumentError, match=r"style: 3 is not a frame style; use 'raw' \(or 0, 1\), 'lz4'"):
        save_bytes({"x": np.ones(2)}, style=3)
    with pytest.raises(InvalidArgumentError, match=r"style\['x'\]: 9 is not a frame style"):
        save_bytes({"x": np.ones(2)}, style={"x": 9})
    with ndckpt.open(save_bytes({"x": np.ones(2)}, metadata={"n": np.int64(5)})) as r:
        assert r.metadata == {"n": 5}


def test_style_keys_naming_values_are_accepted() -> None:
    tree = {"x": np.ones(2), "cfg": {"a": 1}, "s": np.float64(2)}
    data = save_bytes(tree, style={"cfg": "lz4", "s": "lz4", "x": "lz4"})
    assert_same_tree(ndckpt.load(data), tree)


# ----------------------------------------------------------------------------------------------
# The CLI shows values, and refuses them where they cannot go
# ----------------------------------------------------------------------------------------------


def test_cli_info_extract_and_convert_with_values(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from ndckpt import cli

    p = tmp_path / "v.ndckpt"
    ndckpt.save(p, {"u": np.arange(3.0), "cfg": {"name": "run\n1", "n": 2**70}, "s": np.uint8(7)})
    assert cli.main(["info", str(p)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[3] == "values    3 (Python values and numpy scalars, stored in the head)"
    assert out[4:7] == [
        "  cfg/n     int       1180591620717411303424",
        "  cfg/name  str       'run\\n1'",
        "  s         np.uint8  np.uint8(7)",
    ]
    assert cli.main(["info", "--json", str(p)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["values"][1] == {"name": "cfg/name", "type": "str", "value": "'run\\n1'"}
    assert [a["name"] for a in doc["arrays"]] == ["u"]
    assert cli.main(["extract", str(p), "cfg/n", "-o", str(tmp_path / "n.npy")]) != 0
    assert "'cfg/n' is a Python value (int), not an array" in capsys.readouterr().err
    assert cli.main(["extract", str(p), "s", "-o", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").dtype == np.uint8
    assert cli.main(["convert", str(p), str(tmp_path / "v.npz")]) != 0
    err = capsys.readouterr().err
    assert "holds Python values (cfg/n, cfg/name), which .npz files cannot hold without pickle" in err
    assert cli.main(["convert", str(p), str(tmp_path / "w.ndckpt"), "--style", "lz4"]) == 0
    capsys.readouterr()
    assert_same_tree(ndckpt.load(tmp_path / "w.ndckpt"), ndckpt.load(p))


def test_a_head_beyond_the_readers_limit_is_refused_at_save(monkeypatch: pytest.MonkeyPatch) -> None:
    from ndckpt.container import plan

    monkeypatch.setattr(plan, "HEAD_MAX", 4096)
    save_bytes({"b": b"x" * 2000})  # fits
    with pytest.raises(InvalidArgumentError, match=r"the head would be \d+ bytes, more than the 4096-byte limit"):
        save_bytes({"b": b"x" * 4000})


def test_cli_convert_through_npz_keeps_the_nesting(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from ndckpt import cli

    tree = {"model": {"w": np.arange(4.0), "opt": {"m": np.zeros(2)}}, "s": np.int32(3)}
    ndckpt.save(tmp_path / "a.ndckpt", tree)
    assert cli.main(["convert", str(tmp_path / "a.ndckpt"), str(tmp_path / "a.npz")]) == 0
    assert cli.main(["convert", str(tmp_path / "a.npz"), str(tmp_path / "b.ndckpt")]) == 0
    capsys.readouterr()
    got = ndckpt.load(tmp_path / "b.ndckpt")
    assert_same_tree(got, {**tree, "s": np.array(3, np.int32)})  # .npz holds the scalar as a 0-d array


def test_long_double_scalars_carry_no_stray_memory() -> None:
    """x87 long doubles are 10 value bytes padded to 16: the padding of a numpy scalar is stray
    memory (it held a pointer), which made the same value encode differently from save to save."""
    import base64

    from ndckpt.container.values import decode, encode

    values = [np.longdouble("1.1"), np.clongdouble(1.5 + 2.25j), np.longdouble("-inf"), np.clongdouble(-0.0)]
    for v in values:
        encodings = set()
        for i in range(200):
            _noise = [np.clongdouble(i + 1j * i), object(), np.longdouble(i) / 3]  # reuse memory
            encodings.add(json.dumps(encode(v, "x")))
            del _noise
        assert len(encodings) == 1, v
        (enc,) = encodings
        raw = base64.b64decode(json.loads(enc)["numpy"][1])
        part = np.dtype(np.longdouble).itemsize
        if np.finfo(np.longdouble).nmant == 63 and part > 10:
            assert all(not any(raw[k + 10 : k + part]) for k in range(0, len(raw), part)), raw.hex()
        back = decode(json.loads(enc), "x")
        assert type(back) is type(v)
        assert back == v or (np.isnan(back) and np.isnan(v))
    f1, f2 = io.BytesIO(), io.BytesIO()
    ndckpt.save(f1, {"x": np.clongdouble(3 + 4j)})
    _ = [np.clongdouble(k) for k in range(100)]
    ndckpt.save(f2, {"x": np.clongdouble(3 + 4j)})
    assert f1.getvalue() == f2.getvalue()
