"""Misuse of every public function raises the documented error, naming the argument and what
was expected, and writes nothing.

Each case is (call, error class, pattern the message must match). For ``save``, each case
runs against a path that does not exist (it must still not exist, and no temporary file may
appear), a path holding a good checkpoint (byte-for-byte untouched) and a file object
(nothing written).
"""

from __future__ import annotations

import enum
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import READERS

import ndckpt
from ndckpt import CheckptIOError, InvalidArgumentError, UnsupportedError

A = np.arange(6, dtype="<i4").reshape(2, 3)
IAE = InvalidArgumentError
GOOD = {"a": A, "g": {"b": np.ones(3, "f8")}, "z": np.arange(10)}


class _Color(enum.IntEnum):
    RED = 1


def _deep(n: int) -> Any:
    v: Any = 0
    for _ in range(n):
        v = [v]
    return v


_LOOP: list[Any] = []
_LOOP.append(_LOOP)

# ----------------------------------------------------------------------------------------------
# save
# ----------------------------------------------------------------------------------------------

#: (id, arrays, keyword arguments, error class, message pattern)
SAVE_CASES: list[tuple[str, Any, dict[str, Any], type[Exception], str]] = [
    ("arrays-list", [A], {}, InvalidArgumentError, r"arrays: expected a mapping.*got list"),
    ("arrays-none", None, {}, InvalidArgumentError, r"arrays: expected a mapping.*got NoneType"),
    ("arrays-ndarray", A, {}, InvalidArgumentError, r"arrays: expected a mapping.*got ndarray"),
    ("arrays-str", "a", {}, InvalidArgumentError, r"arrays: expected a mapping.*got str"),
    ("key-int", {1: A}, {}, InvalidArgumentError, r"arrays: key 1 .*non-empty str"),
    ("key-empty", {"": A}, {}, InvalidArgumentError, r"arrays: key '' .*non-empty str"),
    ("key-empty-nested", {"g": {"": A}}, {}, InvalidArgumentError, r"arrays: key '' under group 'g' is empty"),
    ("key-tuple", {("a",): A}, {}, IAE, r"arrays: key \('a',\) .*is a tuple; keys must be non-empty str"),
    ("value-object", {"a": object()}, {}, InvalidArgumentError, r"value 'a': expected a numpy array, a numpy scalar"),
    ("value-set", {"g": {"a": {1, 2}}}, {}, InvalidArgumentError, r"value 'g/a': expected .*got set"),
    ("value-in-list", {"a": [1, object()]}, {}, InvalidArgumentError, r"value 'a'\[1\]: expected .*got object"),
    ("value-int-subclass", {"a": [True, _Color.RED]}, {}, IAE, r"value 'a'\[1\]: _Color is a subclass"),
    ("value-dict-int-key", {"a": [{1: 2}]}, {}, InvalidArgumentError, r"value 'a'\[0\]: dict key 1 is a int"),
    ("value-surrogate", {"a": "x\ud800"}, {}, InvalidArgumentError, r"value 'a': str holds the lone surrogate U\+D800"),
    ("value-array-in-list", {"a": [A]}, {}, InvalidArgumentError, r"value 'a'\[0\]: a numpy array inside a list"),
    ("value-too-deep", {"a": _deep(65)}, {}, InvalidArgumentError, r"value 'a'.*nested deeper than 64"),
    ("value-contains-itself", {"a": _LOOP}, {}, InvalidArgumentError, r"nested deeper than 64 .*contains itself"),
    ("dtype-object", {"a": np.array([object()])}, {}, InvalidArgumentError, r"array 'a': .*Python objects"),
    ("dtype-struct-object", {"a": np.zeros(2, [("x", "O")])}, {}, InvalidArgumentError, r"array 'a': .*Python objects"),
    (
        "names-collide",
        {"a/b": A, "a": {"b": A}},
        {},
        InvalidArgumentError,
        r"key 'a/b' at the top level contains '/', which separates groups in ndckpt names; "
        r"nest it as \{'a': \{'b': \.\.\.\}\} or rename it",
    ),
    ("style-unknown", GOOD, {"style": "zstd"}, InvalidArgumentError, r"style: .*zstd"),
    (
        "style-int",
        GOOD,
        {"style": 3},
        InvalidArgumentError,
        r"style: 3 is not a frame style; use 'raw' \(or 0, 1\) or 'lz4' \(or 2\)",
    ),
    ("style-float", GOOD, {"style": 1.5}, InvalidArgumentError, r"style: frame style must be an int.*got float"),
    ("style-none", GOOD, {"style": None}, InvalidArgumentError, r"style: .*None"),
    ("style-bool", GOOD, {"style": True}, InvalidArgumentError, r"style: frame style must be an int.*got bool"),
    (
        "style-map-unknown-name",
        GOOD,
        {"style": {"nope": "lz4"}},
        InvalidArgumentError,
        r"style: 'nope' names no array or group being saved \(arrays: 'a', 'g/b', 'z'\); keys of a style mapping "
        r"are array or group names, nested or joined by '/': fix or remove the key",
    ),
    ("style-map-bad-value", GOOD, {"style": {"g/b": "gzip"}}, InvalidArgumentError, r"style\['g/b'\]: .*gzip"),
    (
        "style-map-nested-bad",
        GOOD,
        {"style": {"g": {"b": 7}}},
        InvalidArgumentError,
        r"style\['g/b'\]: 7 is not a frame style",
    ),
    ("threads-zero", GOOD, {"threads": 0}, InvalidArgumentError, r"threads must be None or a positive int, got 0"),
    ("threads-neg", GOOD, {"threads": -2}, InvalidArgumentError, r"threads .* got -2"),
    ("threads-float", GOOD, {"threads": 2.0}, InvalidArgumentError, r"threads .* got 2\.0"),
    ("threads-str", GOOD, {"threads": "2"}, InvalidArgumentError, r"threads .* got '2'"),
    ("threads-bool", GOOD, {"threads": True}, InvalidArgumentError, r"threads .* got True"),
    ("metadata-set", GOOD, {"metadata": {"s": {1, 2}}}, InvalidArgumentError, r"metadata\['s'\]: set is not JSON"),
    ("metadata-array", GOOD, {"metadata": {"a": A}}, InvalidArgumentError, r"metadata\['a'\]: ndarray is not JSON"),
    ("metadata-bytes", GOOD, {"metadata": [b"x"]}, InvalidArgumentError, r"metadata\[0\]: bytes is not JSON"),
    ("metadata-nan", GOOD, {"metadata": {"x": float("nan")}}, IAE, r"metadata\['x'\]: nan is not JSON"),
    ("metadata-inf", GOOD, {"metadata": {"x": [float("inf")]}}, IAE, r"metadata\['x'\]\[0\]: inf is not"),
    ("metadata-int-key", GOOD, {"metadata": {1: 2}}, IAE, r"metadata: key 1 is a int; JSON object keys"),
    ("metadata-datetime", GOOD, {"metadata": np.datetime64(1, "s")}, IAE, r"np.datetime64 is not JSON"),
    ("progress-int", GOOD, {"progress": 5}, InvalidArgumentError, r"progress must be callable"),
]


def _save_case(case: tuple[str, Any, dict[str, Any], type[Exception], str]) -> Any:
    return pytest.param(*case[1:], id=case[0])


@pytest.mark.parametrize(("arrays", "kw", "err", "match"), [_save_case(c) for c in SAVE_CASES])
def test_save_rejects(tmp_path: Path, arrays: Any, kw: dict[str, Any], err: type[Exception], match: str) -> None:
    new = tmp_path / "new.ndckpt"
    with pytest.raises(err, match=match):
        ndckpt.save(new, arrays, **kw)
    assert os.listdir(tmp_path) == [], "nothing may be written, not even a temporary file"

    old = tmp_path / "old.ndckpt"
    ndckpt.save(old, GOOD)
    before = old.read_bytes()
    with pytest.raises(err, match=match):
        ndckpt.save(old, arrays, **kw)
    assert old.read_bytes() == before
    assert os.listdir(tmp_path) == ["old.ndckpt"]

    f = io.BytesIO()
    with pytest.raises(err, match=match):
        ndckpt.save(f, arrays, **kw)
    assert f.getvalue() == b""

    r, w = os.pipe()
    try:
        with pytest.raises(err, match=match):
            ndckpt.save(w, arrays, **kw)
        os.set_blocking(r, False)
        with pytest.raises(BlockingIOError):
            os.read(r, 1)  # nothing was written to the fd
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize(
    ("target", "err", "match"),
    [
        pytest.param(
            1.5,
            InvalidArgumentError,
            r"target: expected a path, a URL, a binary file object or an fd, got float",
            id="float",
        ),
        pytest.param(None, InvalidArgumentError, r"target: expected .* got NoneType", id="none"),
        pytest.param(["x"], InvalidArgumentError, r"target: expected .* got list", id="list"),
        pytest.param(True, InvalidArgumentError, r"target: expected .* got bool", id="bool"),
        pytest.param(-1, InvalidArgumentError, r"target: bad file descriptor -1", id="negative-fd"),
        pytest.param(io.StringIO(), InvalidArgumentError, r"target: .*(text|binary)", id="text-stream"),
    ],
)
def test_save_rejects_target(target: Any, err: type[Exception], match: str) -> None:
    with pytest.raises(err, match=match):
        ndckpt.save(target, GOOD)
    if isinstance(target, io.StringIO):
        assert target.getvalue() == ""


def test_save_to_directory_or_missing_parent(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=r"target .* is a directory"):
        ndckpt.save(tmp_path, GOOD)
    with pytest.raises(CheckptIOError, match=r"cannot create a temporary file in .*nope"):
        ndckpt.save(tmp_path / "nope" / "x", GOOD)
    assert os.listdir(tmp_path) == []


def test_save_lz4_unavailable(tmp_path: Path) -> None:
    """Without an LZ4 library, asking for LZ4 is UnsupportedError naming the style; nothing written."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, ndckpt\n"
        "try:\n    ndckpt.save(sys.argv[1], {'a': np.arange(3)}, style={'a': 'lz4'})\n"
        "except ndckpt.UnsupportedError as e:\n    print('UNSUP', e)\n"
    )
    env = dict(os.environ, NDCKPT_LZ4_LIBRARY="none")
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "x")], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("UNSUP style['a']: "), out.stdout + out.stderr
    assert os.listdir(tmp_path) == []
    assert UnsupportedError.code == -2


# ----------------------------------------------------------------------------------------------
# load / open / verify
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("c") / "good.ndckpt"
    ndckpt.save(p, GOOD, style={"z": "lz4"})
    return p


BAD_SOURCES = [
    pytest.param(
        None, r"source: expected a path, a binary file object, an fd or a bytes-like buffer, got NoneType", id="none"
    ),
    pytest.param(1.5, r"source: expected .* got float", id="float"),
    pytest.param(True, r"source: expected .* got bool", id="bool"),
    pytest.param([b"x"], r"source: expected .* got list", id="list"),
    pytest.param(object(), r"source: expected .* got object", id="object"),
]


@pytest.mark.parametrize(("source", "match"), BAD_SOURCES)
@pytest.mark.parametrize("fn", [ndckpt.load, ndckpt.open, ndckpt.verify], ids=["load", "open", "verify"])
def test_bad_source(fn: Any, source: Any, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        fn(source)


def test_bad_sources_of_the_right_kind(ckpt: Path) -> None:
    strided = np.frombuffer(ckpt.read_bytes(), np.uint8)[::2]
    for fn in (ndckpt.load, ndckpt.open, ndckpt.verify):
        with pytest.raises(InvalidArgumentError, match=r"source: in-memory buffer must be C-contiguous"):
            fn(strided)
        with pytest.raises(InvalidArgumentError, match=r"source: .*(text|binary)"):
            fn(io.StringIO("x"))
        with pytest.raises(
            InvalidArgumentError, match=r"source: bad file descriptor -3|Restore.stream: bad file descriptor -3"
        ):
            fn(-3)
    fd = os.open(ckpt, os.O_RDONLY)
    try:
        with pytest.raises(InvalidArgumentError, match=r"open: needs a path, a URL, a seekable file object or an in"):
            ndckpt.open(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        pytest.param({"mmap": "yes"}, r"mmap must be True or .r. .*, got 'yes'", id="mmap-str"),
        pytest.param({"mmap": 1}, r"mmap must be True or .r. .*, got 1", id="mmap-int"),
        pytest.param({"verify": "all"}, r"verify must be None, True or False, got 'all'", id="verify-str"),
        pytest.param({"verify": 1}, r"verify must be None, True or False, got 1", id="verify-int"),
        pytest.param({"threads": 0}, r"threads must be None or a positive int, got 0", id="threads-0"),
        pytest.param({"threads": "4"}, r"threads .* got '4'", id="threads-str"),
    ],
)
@pytest.mark.parametrize("fn", [ndckpt.load, ndckpt.open], ids=["load", "open"])
def test_load_open_options(ckpt: Path, fn: Any, kw: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        fn(ckpt, **kw)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        pytest.param({"threads": -1}, r"threads .* got -1", id="threads"),
        pytest.param({"progress": "x"}, r"progress must be callable", id="progress"),
    ],
)
def test_verify_options(ckpt: Path, kw: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        ndckpt.verify(ckpt, **kw)


def _out_cases() -> list[Any]:
    ok_b = np.empty(3, "f8")
    return [
        pytest.param([], r"out: expected a mapping like the saved one, got list", id="not-mapping"),
        pytest.param({"nope": A}, r"out\['nope'\]: no array of that name", id="unknown-name"),
        pytest.param({"g": {"nope": ok_b}}, r"out\['g/nope'\]: no array of that name", id="unknown-nested"),
        pytest.param({"a": [0] * 6}, r"out\['a'\]: expected a numpy array, got list", id="not-array"),
        pytest.param(
            {"a": np.empty((2, 3), "<i8")},
            r"out\['a'\]: expected dtype int32 and shape \(2, 3\), got int64",
            id="dtype",
        ),
        pytest.param(
            {"a": np.empty((3, 2), "<i4")},
            r"out\['a'\]: expected dtype int32 and shape \(2, 3\), got .*\(3, 2\)",
            id="shape",
        ),
        pytest.param({"a": np.empty((2, 6), "<i4")[:, ::2]}, r"out\['a'\]: must be C-contiguous", id="strided"),
        pytest.param(
            {"a": np.asfortranarray(np.empty((2, 3), "<i4"))}, r"out\['a'\]: must be C-contiguous", id="fortran"
        ),
        pytest.param({"a": np.empty((2, 3), ">i4")}, r"out\['a'\]: expected dtype int32", id="byte-order"),
        pytest.param(
            {"g": {"b": np.empty(3, "f8")}, "z": np.empty(10, "<i8")[::-1]},
            r"out\['z'\]: must be C-contiguous",
            id="lz4-reversed",
        ),
    ]


_RO = np.empty((2, 3), "<i4")
_RO.flags.writeable = False


@pytest.mark.parametrize(
    ("out", "match"), [*_out_cases(), pytest.param({"a": _RO}, r"out\['a'\]: array is read-only", id="read-only")]
)
def test_mismatched_out(ckpt: Path, out: Any, match: str) -> None:
    """load(out=...) from a path, a buffer and a stream, and Reader.load(out=...): the same error,
    and arrays given in out that do match are not overwritten... before the mismatch is found."""
    data = ckpt.read_bytes()
    for name in ("load(path)", "load(bytes, copy)", "load(BytesIO)"):
        with pytest.raises(InvalidArgumentError, match=match):
            READERS[name](data, ckpt, out=out)
    with pytest.raises(InvalidArgumentError, match=match), ndckpt.open(ckpt) as r:
        r.load(out=out)


def test_reader_misuse(ckpt: Path) -> None:
    r = ndckpt.open(ckpt)
    with pytest.raises(KeyError, match="nope"):
        r["nope"]
    with pytest.raises(KeyError, match="no array named 7"):
        r.read(7)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        r.read(("g", "nope"))
    assert r.get(7) is None  # type: ignore[call-overload]
    assert r.get(("g", "nope"), 0) == 0
    with pytest.raises(InvalidArgumentError, match=r"out\['a'\]: expected dtype int32 and shape \(2, 3\)"):
        r.read("a", out=np.empty(6, "<i4"))
    with pytest.raises(InvalidArgumentError, match=r"out\['z'\]: expected a numpy array, got bytearray"):
        r.read("z", out=bytearray(80))  # type: ignore[arg-type]
    assert r.get(("g", "b")).tolist() == [1.0, 1.0, 1.0]
    r.close()
    with pytest.raises(InvalidArgumentError, match="Reader is closed"):
        r.get("a")
    with pytest.raises(InvalidArgumentError, match="Reader is closed"):
        r.load()


def test_rejected_load_leaves_out_untouched(ckpt: Path) -> None:
    """Arguments are checked before any data moves: a bad out entry leaves the good ones as they were."""
    good = np.full((2, 3), -1, "<i4")
    with pytest.raises(InvalidArgumentError):
        ndckpt.load(ckpt, out={"a": good, "z": np.empty(3)})
    assert (good == -1).all()


# ----------------------------------------------------------------------------------------------
# The engine: a few misuses per constructor (the full state machine is in test_engine*)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(
            lambda: ndckpt.Checkpt.stream(1.5),
            r"Checkpt.stream: expected an int fd or a binary file object, got float",
            id="ck-stream-float",
        ),
        pytest.param(
            lambda: ndckpt.Checkpt.stream(io.StringIO()),
            r"Checkpt.stream: expected .* got StringIO",
            id="ck-stream-text",
        ),
        pytest.param(
            lambda: ndckpt.Checkpt.stream(io.BytesIO(), wbuf_size=10),
            r"wbuf_size must be an int >= 69632, got 10",
            id="ck-wbuf",
        ),
        pytest.param(
            lambda: ndckpt.Checkpt.mmio(b"readonly"), r"Checkpt.mmio region: buffer must be writable", id="ck-mmio-ro"
        ),
        pytest.param(
            lambda: ndckpt.Checkpt.mmio(5), r"Checkpt.mmio region: expected a buffer-protocol object", id="ck-mmio-int"
        ),
        pytest.param(
            lambda: ndckpt.Restore.stream(None),
            r"Restore.stream: expected an int fd or a binary file object, got NoneType",
            id="rs-stream-none",
        ),
        pytest.param(
            lambda: ndckpt.Restore.stream(io.BytesIO(), rbuf_size=1.5),
            r"rbuf_size must be an int >= 69632, got 1.5",
            id="rs-rbuf",
        ),
        pytest.param(
            lambda: ndckpt.Restore.mmio(np.zeros((4, 4))[:, ::2]),
            r"Restore.mmio region: buffer must be C-contiguous",
            id="rs-mmio-strided",
        ),
        pytest.param(lambda: ndckpt.Checkpt.mmio(bytearray(10)).frame_open("zstd"), r"zstd", id="ck-style"),
        pytest.param(
            lambda: ndckpt.Restore.mmio(b"").buf(bytearray(1)), r"Restore.buf: not in a frame", id="rs-buf-idle"
        ),
    ],
)
def test_engine_misuse(call: Any, match: str) -> None:
    with pytest.raises((InvalidArgumentError, UnsupportedError), match=match):
        call()
