"""The container API: sources and targets, pipes through real processes, zero-copy views, out=,
the Reader, verify(), atomic saves, argument checking and a missing LZ4 library.
"""

from __future__ import annotations

import errno
import io
import itertools
import mmap
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_same_array, assert_same_tree, leftovers, save_bytes

import ndckpt
from ndckpt import CheckptIOError, FormatError, InvalidArgumentError, UnsupportedError

# One definition of the test arrays, shared with the child processes below.
MAKE_ARRAYS = textwrap.dedent(
    """
    import numpy as np

    def make_arrays():
        rng = np.random.default_rng(42)
        return {
            "raw": {
                "big": rng.standard_normal((300, 500)),            # 1.2 MB: a frame of its own
                "page": np.arange(2048, dtype="<i4"),              # 8 KiB, packed, page-aligned
                "small": np.arange(12, dtype=">u2").reshape(3, 4),
                "fortran": np.asfortranarray(rng.integers(0, 9, (40, 30), dtype=np.int16)),
            },
            "z": {
                "big": np.repeat(np.arange(1500, dtype="<f8"), 100).reshape(1500, 100),
                "page": np.zeros(1500, dtype="<u8"),
                "small": np.array([1.5, 2.5], dtype="<f4"),
            },
            "empty_group": {},
            "scalar": np.float32(2.0),
        }

    STYLE = {"z": {"big": "lz4", "page": "lz4", "small": "lz4"}}
    META = {"step": 7, "note": "test"}
    """
)
_ns: dict[str, Any] = {}
exec(MAKE_ARRAYS, _ns)
make_arrays: Callable[[], dict[str, Any]] = _ns["make_arrays"]
STYLE: dict[str, Any] = _ns["STYLE"]
META: dict[str, Any] = _ns["META"]
ARRAYS = make_arrays()

# Pipes, FIFOs and child processes could block forever on a bug: fail instead.
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "state.ndckpt"
    ndckpt.save(path, ARRAYS, style=STYLE, metadata=META)
    return path


def _pipe_source(data: bytes) -> Iterator[int]:
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as f:
            try:
                f.write(data)
            except BrokenPipeError:
                pass

    t = threading.Thread(target=feed)
    t.start()
    try:
        yield r
    finally:
        os.close(r)
        t.join(10)


def _sources(path: Path) -> dict[str, Callable[[], Any]]:
    """Context-free factories of every kind of source; streams yield via generators."""
    return {
        "str path": lambda: str(path),
        "Path": lambda: path,
        "bytes": lambda: path.read_bytes(),
        "bytearray": lambda: bytearray(path.read_bytes()),
        "memoryview": lambda: memoryview(path.read_bytes()),
        "np.memmap": lambda: np.memmap(path, mode="r"),
        "mmap.mmap": lambda: mmap.mmap(os.open(path, os.O_RDONLY), 0, access=mmap.ACCESS_READ),
        "numpy uint8": lambda: np.frombuffer(path.read_bytes(), np.uint8),
        "BytesIO": lambda: io.BytesIO(path.read_bytes()),
    }


RANDOM_ACCESS = ["str path", "Path", "bytes", "bytearray", "memoryview", "np.memmap", "mmap.mmap", "numpy uint8"]


@pytest.mark.parametrize("kind", [*RANDOM_ACCESS, "BytesIO"])
def test_load_from_every_source_kind(ckpt: Path, kind: str) -> None:
    src = _sources(ckpt)[kind]()
    assert_same_tree(ndckpt.load(src), ARRAYS)
    if kind in RANDOM_ACCESS:
        with ndckpt.open(src) as r:
            assert r.metadata == META
            assert_same_tree(r.load(), ARRAYS)


def test_load_from_real_file_object_fd_and_pipe(ckpt: Path) -> None:
    with open(ckpt, "rb") as f:
        assert_same_tree(ndckpt.load(f), ARRAYS)
    with open(ckpt, "rb", buffering=0) as f:
        assert_same_tree(ndckpt.load(f), ARRAYS)
    fd = os.open(ckpt, os.O_RDONLY)
    try:
        assert_same_tree(ndckpt.load(fd), ARRAYS)
    finally:
        os.close(fd)
    for r in _pipe_source(ckpt.read_bytes()):
        assert_same_tree(ndckpt.load(r), ARRAYS)
    for r in _pipe_source(ckpt.read_bytes()):
        ndckpt.verify(r)


def test_file_object_positioned_mid_file(ckpt: Path) -> None:
    """A stream need not start at offset 0: offsets in messages and checks are checkpoint-relative."""
    f = io.BytesIO(b"PREFIX" + ckpt.read_bytes() + b"SUFFIX")
    f.seek(6)
    assert_same_tree(ndckpt.load(f), ARRAYS)


def test_save_to_every_target_kind_gives_the_same_bytes(ckpt: Path, tmp_path: Path) -> None:
    want = ckpt.read_bytes()
    assert save_bytes(ARRAYS, style=STYLE, metadata=META) == want
    with open(tmp_path / "fobj", "wb") as f:
        ndckpt.save(f, ARRAYS, style=STYLE, metadata=META)
        assert not f.closed, "a file object stays open"
    assert (tmp_path / "fobj").read_bytes() == want
    fd = os.open(tmp_path / "fd", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        ndckpt.save(fd, ARRAYS, style=STYLE, metadata=META)
    finally:
        os.close(fd)
    assert (tmp_path / "fd").read_bytes() == want
    ndckpt.save(str(tmp_path / "str"), ARRAYS, style=STYLE, metadata=META)
    assert (tmp_path / "str").read_bytes() == want


def test_save_to_pipe_and_named_fifo(ckpt: Path, tmp_path: Path) -> None:
    want = ckpt.read_bytes()
    got = bytearray()
    r, w = os.pipe()

    def drain() -> None:
        with os.fdopen(r, "rb") as f:
            got.extend(f.read())

    t = threading.Thread(target=drain)
    t.start()
    try:
        ndckpt.save(w, ARRAYS, style=STYLE, metadata=META)
    finally:
        os.close(w)
        t.join(10)
    assert bytes(got) == want

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got.clear()

    def drain_fifo() -> None:
        with open(fifo, "rb") as f:
            got.extend(f.read())

    t = threading.Thread(target=drain_fifo)
    t.start()
    ndckpt.save(fifo, ARRAYS, style=STYLE, metadata=META)
    t.join(10)
    assert bytes(got) == want, "a FIFO path is streamed into, not replaced"
    assert fifo.is_fifo()
    with pytest.raises(InvalidArgumentError, match="not a regular file"):
        ndckpt.load(fifo)


# ----------------------------------------------------------------------------------------------
# Real pipes between processes
# ----------------------------------------------------------------------------------------------

CHILD_SAVE = MAKE_ARRAYS + textwrap.dedent(
    """
    import sys, ndckpt
    target = int(sys.argv[1]) if sys.argv[1] == "1" else sys.stdout.buffer
    ndckpt.save(target, make_arrays(), style=STYLE, metadata=META, threads=int(sys.argv[2]))
    """
)

CHILD_LOAD = MAKE_ARRAYS + textwrap.dedent(
    """
    import sys, ndckpt
    source = 0 if sys.argv[1] == "0" else sys.stdin.buffer
    got = ndckpt.load(source, threads=2)
    want = make_arrays()
    def flat(d, p=""):
        for k, v in d.items():
            if isinstance(v, dict) and v:
                yield from flat(v, p + k + "/")
            else:
                yield p + k, v
    g, w = dict(flat(got)), dict(flat(want))
    assert g.keys() == w.keys(), (sorted(g), sorted(w))
    for k, v in w.items():
        if isinstance(v, dict):
            assert g[k] == {}, k
        else:
            v = np.asarray(v)
            assert g[k].dtype == v.dtype and g[k].shape == v.shape and g[k].tobytes("A") == v.tobytes("A"), k
    print("OK", len(g))
    """
)


def _run(code: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], input=stdin, capture_output=True, timeout=120, check=False
    )


@pytest.mark.parametrize(("target", "threads"), [("stdout", "1"), ("1", "2")])
def test_child_saves_to_its_stdout_pipe(ckpt: Path, target: str, threads: str) -> None:
    """Bytes written to a pipe by another process equal the bytes of a file."""
    proc = _run(CHILD_SAVE, target, threads)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == ckpt.read_bytes()


@pytest.mark.parametrize("source", ["stdin", "0"])
def test_child_loads_from_its_stdin_pipe(source: str) -> None:
    """Save into a pipe while another process loads from it, one pass, concurrently."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_LOAD, source],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    try:
        ndckpt.save(proc.stdin, make_arrays(), style=STYLE, metadata=META, threads=2)
        proc.stdin.close()  # the child sees EOF
        proc.stdin = None  # communicate() would flush it again (ValueError on a closed file)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    assert out.split() == [b"OK", b"9"]


# ----------------------------------------------------------------------------------------------
# Zero copy
# ----------------------------------------------------------------------------------------------


def base_chain(a: Any) -> list[Any]:
    """The objects behind an array: its .base chain, then what memoryviews are views of."""
    chain = []
    while a is not None:
        chain.append(a)
        a = a.obj if isinstance(a, memoryview) else getattr(a, "base", None)
    return chain


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _arrays_by_style(path: Path) -> dict[str, str]:
    with ndckpt.open(path) as r:
        return {row["name"]: row["style"] for row in r.info()}


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The arrays of a nested tree by flat name (numpy scalars, stored as values, are left out)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        elif isinstance(v, np.ndarray):
            out[prefix + k] = v
    return out


def test_raw_views_are_read_only_page_aligned_and_map_the_file(ckpt: Path) -> None:
    styles = _arrays_by_style(ckpt)
    got = _flat(ndckpt.load(ckpt))
    for name, style in styles.items():
        a = got[name]
        if style != "raw":
            continue
        assert not a.flags.writeable, name
        assert any(isinstance(o, mmap.mmap) for o in base_chain(a)), f"{name} is not a view of the mapping"
        if a.nbytes >= 4096:
            assert a.ctypes.data % 4096 == 0, f"{name} is not page-aligned"
        assert a.ctypes.data % 64 == 0, name
        with pytest.raises(ValueError, match="read-only"):
            a.flat[0] = a.flat[0]
    with ndckpt.open(ckpt) as r:
        v = r.get("raw/big")
        assert any(isinstance(o, mmap.mmap) for o in base_chain(v))
    # The views outlive the Reader.
    assert_same_array(v, ARRAYS["raw"]["big"])


def test_buffer_source_views_share_its_memory(ckpt: Path) -> None:
    buf = np.frombuffer(bytearray(ckpt.read_bytes()), np.uint8)
    got = ndckpt.load(buf)
    assert np.shares_memory(got["raw"]["big"], buf)
    assert not got["raw"]["big"].flags.writeable
    copied = ndckpt.load(buf, mmap=False)
    assert not np.shares_memory(copied["raw"]["big"], buf)
    assert copied["raw"]["big"].flags.writeable
    assert_same_tree(copied, ARRAYS)


@pytest.mark.parametrize("kind", ["mmap=False", "stream"])
def test_copied_and_decoded_arrays_are_aligned_and_writable(ckpt: Path, kind: str) -> None:
    got = _flat(ndckpt.load(ckpt, mmap=False) if kind == "mmap=False" else ndckpt.load(io.BytesIO(ckpt.read_bytes())))
    for name, a in got.items():
        if a.nbytes >= 4096:
            assert a.ctypes.data % 4096 == 0, f"{name} is not page-aligned"
        if a.nbytes:
            assert a.ctypes.data % 64 == 0, name
        assert a.flags.writeable, name


def test_lz4_arrays_are_page_aligned(ckpt: Path) -> None:
    got = _flat(ndckpt.load(ckpt))
    for name in ("z/big", "z/page"):
        assert got[name].ctypes.data % 4096 == 0, name
        assert got[name].flags.writeable


def test_mapping_a_256_mib_raw_file_costs_no_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.ndckpt"
    a = np.ones(32 << 20, dtype=np.float64)  # 256 MiB
    ndckpt.save(path, {"a": a, "b": a[:1000]})
    del a
    before = rss_bytes()
    got = ndckpt.load(path)
    with ndckpt.open(path) as r:
        view = r["a"]
    grew = rss_bytes() - before
    assert got["a"].nbytes == 256 << 20
    assert view.nbytes == 256 << 20
    assert grew < 16 << 20, f"mapped load grew RSS by {grew >> 20} MiB"
    assert float(got["a"][-1]) == 1.0
    assert float(view[12345]) == 1.0
    del got, view


# ----------------------------------------------------------------------------------------------
# out=
# ----------------------------------------------------------------------------------------------


def _empty_like_saved(a: Any) -> np.ndarray[Any, Any]:
    """An array to pass as out= for ``a``: same dtype, shape and memory order, filled with junk."""
    a = np.asarray(a)
    out = np.empty_like(a, order="F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C")
    out.reshape(-1, order="A").view(np.uint8).fill(0xA5)
    return out


@pytest.mark.parametrize("kind", ["path", "mmap=False", "stream", "reader"])
def test_out_fills_caller_arrays_for_raw_and_lz4(ckpt: Path, kind: str) -> None:
    names = ["raw/big", "raw/small", "raw/fortran", "z/big", "z/small", "z/page"]
    flat_want = _flat(ARRAYS)
    outs = {n: _empty_like_saved(flat_want[n]) for n in names}
    nested: dict[str, Any] = {}
    for n, o in outs.items():
        g, k = n.split("/")
        nested.setdefault(g, {})[k] = o
    if kind == "path":
        got = ndckpt.load(ckpt, out=nested)
    elif kind == "mmap=False":
        got = ndckpt.load(ckpt, out=nested, mmap=False)
    elif kind == "stream":
        got = ndckpt.load(io.BytesIO(ckpt.read_bytes()), out=nested)
    else:
        with ndckpt.open(ckpt) as r:
            got = r.load(out=nested)
    flat_got = _flat(got)
    for n in names:
        assert flat_got[n] is outs[n], f"{n}: out array not returned as is"
        assert_same_array(outs[n], np.asarray(flat_want[n]), n)
    assert_same_tree(got, ARRAYS)  # the others come back as usual


def test_partial_out_with_flat_names_and_reader_get(ckpt: Path) -> None:
    o = np.zeros((1500, 100))
    got = ndckpt.load(ckpt, out={"z/big": o})
    assert got["z"]["big"] is o
    assert_same_array(o, ARRAYS["z"]["big"])
    with ndckpt.open(ckpt) as r:
        o2 = np.zeros((300, 500))
        assert r.read("raw/big", out=o2) is o2
        assert_same_array(o2, ARRAYS["raw"]["big"])
        o3 = np.zeros(2, "<f4")
        assert r.read(("z", "small"), out=o3) is o3
        assert o3.tolist() == [1.5, 2.5]


def _read_only(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    a.setflags(write=False)
    return a


MISMATCHED_OUTS = [
    pytest.param("raw/big", lambda: np.zeros((300, 500), np.float32), "dtype", id="dtype"),
    pytest.param("raw/small", lambda: np.zeros((3, 4), "<u2"), "dtype", id="byte-order"),
    pytest.param("raw/big", lambda: np.zeros((500, 300)), "shape", id="shape"),
    pytest.param("raw/fortran", lambda: np.zeros((40, 30), np.int16), "contiguous", id="order"),
    pytest.param("z/big", lambda: np.zeros((1500, 100), order="F"), "contiguous", id="order-lz4"),
    pytest.param("z/big", lambda: np.zeros((1500, 200))[:, ::2], "contiguous", id="strided"),
    pytest.param("z/small", lambda: _read_only(np.zeros(2, "<f4")), "read-only", id="read-only"),
    pytest.param("raw/page", lambda: _read_only(np.zeros(2048, "<i4")), "read-only", id="read-only-raw"),
    pytest.param("raw/big", lambda: [[0.0] * 500] * 300, "numpy array", id="list"),
    pytest.param("nope", lambda: np.zeros(3), "nope", id="unknown-name"),
    pytest.param("raw/big/x", lambda: np.zeros(3), "raw/big/x", id="too-deep"),
]


def _load_with_out(ckpt: Path, kind: str, out: dict[str, Any]) -> Any:
    if kind == "path":
        return ndckpt.load(ckpt, out=out)
    if kind == "stream":
        return ndckpt.load(io.BytesIO(ckpt.read_bytes()), out=out)
    with ndckpt.open(ckpt) as r:
        return r.load(out=out)


@pytest.mark.parametrize(("name", "make_out", "match"), MISMATCHED_OUTS)
@pytest.mark.parametrize("kind", ["path", "stream", "reader"])
def test_mismatched_out_rejected_naming_the_array(
    ckpt: Path, name: str, make_out: Callable[[], Any], match: str, kind: str
) -> None:
    out = {name: make_out()}
    with pytest.raises(InvalidArgumentError, match=match) as ei:
        _load_with_out(ckpt, kind, out)
    assert repr(name) in str(ei.value)


def test_out_must_be_a_mapping(ckpt: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="out"):
        ndckpt.load(ckpt, out=[np.zeros(3)])  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# Reader
# ----------------------------------------------------------------------------------------------


def test_reader_keys_get_metadata_info(ckpt: Path) -> None:
    flat = _flat(ARRAYS)
    with ndckpt.open(ckpt) as r:
        assert r.names()[-1] == "scalar", "arrays in storage order, then the values (the numpy scalar)"
        assert sorted(r.names()[:-1]) == sorted(flat)
        assert list(r) == sorted(ARRAYS), "the Mapping: the top level, sorted"
        assert len(r) == len(ARRAYS)
        assert "scalar" in r
        scalar = r["scalar"]
        assert type(scalar) is np.float32
        assert scalar == 2.0
        assert r.value_info() == [{"name": "scalar", "type": "np.float32", "value": np.float32(2.0)}]
        assert r.names()[:4] == ["raw/big", "raw/fortran", "raw/page", "raw/small"], "storage order: RAW by path"
        assert "raw/big" in r
        assert ("z", "big") in r
        assert "nope" not in r
        assert "raw" in r, "a group is a member of the Mapping"
        assert r.metadata == META
        assert r.nbytes == ckpt.stat().st_size
        for name, want in flat.items():
            assert_same_array(r.read(name), np.asarray(want), name)
            assert_same_array(r[tuple(name.split("/"))], np.asarray(want), name)
        with pytest.raises(KeyError, match="nope"):
            r.read("nope")
        assert r.get("nope") is None, "get is the Mapping's"
        with pytest.raises(InvalidArgumentError, match="is a group"):
            r.read("raw")  # a group is not an array
        assert list(r["raw"]) == ["big", "fortran", "page", "small"]
        info = {row["name"]: row for row in r.info()}
    assert set(info) == set(flat)
    fields = {"name", "dtype", "shape", "order", "style", "nbytes", "stored_nbytes", "frames", "offsets"}
    for name, row in info.items():
        want = np.asarray(flat[name])
        assert fields <= set(row), name
        assert row["dtype"] == str(want.dtype)
        assert row["shape"] == want.shape
        assert row["nbytes"] == want.nbytes
        assert row["order"] == ("F" if name == "raw/fortran" else "C")
        assert row["style"] == ("lz4" if name.startswith("z/") else "raw")
        assert len(row["frames"]) == len(row["offsets"]) >= 1
        if row["style"] == "raw":
            assert row["stored_nbytes"] == row["nbytes"]
            assert row["offsets"][0] % 64 == 0
            assert row["nbytes"] < 4096 or row["offsets"][0] % 4096 == 0
    assert info["z/big"]["stored_nbytes"] < info["z/big"]["nbytes"] // 10
    assert info["raw/big"]["offsets"][0] % 4096 == 0


def test_reader_close_and_context_manager(ckpt: Path) -> None:
    r = ndckpt.open(ckpt)
    view = r.get("raw/big")
    r.close()
    with pytest.raises(InvalidArgumentError, match="closed"):
        r.get("raw/big")
    assert_same_array(view, ARRAYS["raw"]["big"])  # views keep the mapping alive
    with ndckpt.open(ckpt) as r2:
        pass
    with pytest.raises(InvalidArgumentError, match="closed"):
        r2.load()


def test_reader_needs_random_access(ckpt: Path) -> None:
    with ndckpt.open(io.BytesIO(ckpt.read_bytes())) as r:  # a seekable file object is read in part
        assert r.names() == ndckpt.open(ckpt).names()
    fd = os.open(ckpt, os.O_RDONLY)
    try:
        with pytest.raises(InvalidArgumentError, match="stream"):
            ndckpt.open(fd)  # an fd may be a pipe: streams are load()'s
    finally:
        os.close(fd)


def _corrupt_lz4_frame_of(data: bytes, name: str) -> bytes:
    with ndckpt.open(data) as r:
        row = next(row for row in r.info() if row["name"] == name)
    assert row["style"] == "lz4"
    assert len(row["frames"]) == 1
    b = bytearray(data)
    b[row["offsets"][0] + row["stored_nbytes"] // 2] ^= 0x40
    return bytes(b)


@pytest.mark.parametrize("threads", [1, 2])
def test_get_reads_only_the_frames_of_its_array(threads: int) -> None:
    arrays = {"good": np.arange(300_000, dtype="<i8"), "bad": np.arange(300_000, dtype="<f8"), "r": np.ones(9)}
    data = _corrupt_lz4_frame_of(save_bytes(arrays, style={"good": "lz4", "bad": "lz4"}), "bad")
    with ndckpt.open(data, threads=threads) as r:
        assert r.get("good").tolist() == arrays["good"].tolist()
        assert r.get("r").tolist() == [1.0] * 9
        with pytest.raises(FormatError, match=r"'bad'.*checksum"):
            r.get("bad")
        with pytest.raises(FormatError, match="checksum"):
            r.load()
    with pytest.raises(FormatError, match="'bad'"):
        ndckpt.load(data, threads=threads)
    with pytest.raises(FormatError, match="checksum"):
        ndckpt.verify(data, threads=threads)
    with pytest.raises(FormatError, match="checksum"):
        ndckpt.load(io.BytesIO(data))


# ----------------------------------------------------------------------------------------------
# verify()
# ----------------------------------------------------------------------------------------------


def test_verify_passes_on_good_files(ckpt: Path) -> None:
    assert ndckpt.verify(ckpt) is None
    assert ndckpt.verify(ckpt.read_bytes(), threads=1) is None
    assert ndckpt.verify(io.BytesIO(ckpt.read_bytes())) is None


@pytest.mark.parametrize("where", ["raw/big", "raw/small", "z/big", "z/small"])
def test_verify_finds_a_flipped_byte_in_any_frame(ckpt: Path, where: str) -> None:
    data = bytearray(ckpt.read_bytes())
    with ndckpt.open(ckpt) as r:
        row = next(row for row in r.info() if row["name"] == where)
    data[row["offsets"][0] + 1] ^= 1
    for src in (bytes(data), io.BytesIO(bytes(data))):
        with pytest.raises(FormatError, match="checksum"):
            ndckpt.verify(src)
    with pytest.raises(FormatError, match="checksum"):
        ndckpt.load(bytes(data), verify=True)


def test_progress_callbacks_count_up_to_the_total(ckpt: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    ndckpt.save(tmp_path / "p.ndckpt", ARRAYS, style=STYLE, progress=lambda d, t: calls.append((d, t)))
    assert calls[0][0] == 0
    assert calls[-1][0] == calls[-1][1] > 0
    assert all(b[0] >= a[0] and b[1] == a[1] for a, b in itertools.pairwise(calls))
    for fn in (lambda cb: ndckpt.verify(ckpt, progress=cb), lambda cb: ndckpt.load(ckpt, mmap=False, progress=cb)):
        calls.clear()
        fn(lambda d, t: calls.append((d, t)))
        assert calls[-1][0] == calls[-1][1] > 0


# ----------------------------------------------------------------------------------------------
# Atomic saves
# ----------------------------------------------------------------------------------------------


def test_save_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "s.ndckpt"
    path.write_bytes(b"x" * 100_000)
    ndckpt.save(path, {"a": np.arange(3)})
    assert ndckpt.load(path)["a"].tolist() == [0, 1, 2]
    ndckpt.save(path, {"b": np.arange(2)})
    assert list(ndckpt.load(path)) == ["b"]
    assert leftovers(tmp_path) == []


class Boom(Exception):
    pass


def _explode_midway(done: int, total: int) -> None:
    if 0 < done < total:
        raise Boom


@pytest.mark.parametrize(
    ("arrays", "kw", "exc"),
    [
        pytest.param({"ok": np.ones(10), "bad": np.array([None], dtype=object)}, {}, InvalidArgumentError, id="object"),
        pytest.param({"ok": np.ones(10)}, {"style": "zip"}, InvalidArgumentError, id="style"),
        pytest.param({"ok": np.ones(10)}, {"threads": 0}, InvalidArgumentError, id="threads"),
        pytest.param(
            {"a": np.ones(2 << 20), "b": np.ones(2 << 20)}, {"progress": _explode_midway, "threads": 2}, Boom, id="mid"
        ),
    ],
)
def test_failing_save_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, arrays: Any, kw: dict[str, Any], exc: type[Exception]
) -> None:
    path = tmp_path / "keep.ndckpt"
    ndckpt.save(path, {"old": np.arange(5)})
    before = path.read_bytes()
    with pytest.raises(exc):
        ndckpt.save(path, arrays, **kw)
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["keep.ndckpt"]


def test_save_into_missing_directory_or_onto_a_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckptIOError) as ei:
        ndckpt.save(tmp_path / "nope" / "x.ndckpt", {"a": np.ones(2)})
    assert ei.value.errno == errno.ENOENT
    assert not (tmp_path / "nope").exists()
    with pytest.raises(InvalidArgumentError, match="directory"):
        ndckpt.save(tmp_path, {"a": np.ones(2)})
    assert list(tmp_path.iterdir()) == []


def test_save_to_a_closed_or_read_only_target_fails(tmp_path: Path) -> None:
    (tmp_path / "r").write_bytes(b"")
    with open(tmp_path / "r", "rb") as f, pytest.raises((CheckptIOError, OSError)):
        ndckpt.save(f, {"a": np.ones(2)})
    r, w = os.pipe()
    os.close(r)
    try:
        with pytest.raises(CheckptIOError):
            ndckpt.save(w, {"a": np.ones(100_000)})
    finally:
        os.close(w)


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p: ndckpt.load(p, threads=0), "threads"),
        (lambda p: ndckpt.load(p, threads=True), "threads"),
        (lambda p: ndckpt.load(p, threads="2"), "threads"),
        (lambda p: ndckpt.load(p, mmap="yes"), "mmap"),
        (lambda p: ndckpt.load(p, verify="all"), "verify"),
        (lambda p: ndckpt.load(3.5), "source"),
        (lambda p: ndckpt.load(None), "source"),
        (lambda p: ndckpt.load(p.parent), "directory"),
        (lambda p: ndckpt.open(p, threads=-1), "threads"),
        (lambda p: ndckpt.verify(p, threads=0), "threads"),
        (lambda p: ndckpt.save(None, {}), "target"),
        (lambda p: ndckpt.save(3.5, {}), "target"),
        (lambda p: ndckpt.save(-1, {}), "target"),
        (lambda p: ndckpt.save(io.BytesIO(), {}, progress=5), "progress"),
        (lambda p: ndckpt.load(p, progress="x"), "progress"),
    ],
)
def test_bad_arguments(ckpt: Path, call: Callable[[Path], Any], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        call(ckpt)


def test_missing_file(tmp_path: Path) -> None:
    for fn in (ndckpt.load, ndckpt.open, ndckpt.verify):
        with pytest.raises(CheckptIOError, match="no such file") as ei:
            fn(tmp_path / "missing.ndckpt")
        assert ei.value.errno == errno.ENOENT
        assert isinstance(ei.value, OSError)


def test_without_lz4_raw_still_works(ckpt: Path, tmp_path: Path) -> None:
    raw_only = tmp_path / "raw.ndckpt"
    ndckpt.save(raw_only, {"a": np.arange(10)})
    code = textwrap.dedent(
        f"""
        import io, numpy as np, ndckpt
        try:
            ndckpt.save(io.BytesIO(), {{"a": np.ones(3)}}, style="lz4")
        except ndckpt.UnsupportedError as e:
            assert "LZ4" in str(e), e
        else:
            raise SystemExit("lz4 save did not fail")
        assert ndckpt.load({str(raw_only)!r})["a"].tolist() == list(range(10))
        try:
            ndckpt.load({str(ckpt)!r})
        except ndckpt.UnsupportedError:
            pass
        else:
            raise SystemExit("lz4 load did not fail")
        print("OK")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "NDCKPT_LZ4_LIBRARY": "none"},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    assert proc.stdout.strip() == b"OK"
    assert UnsupportedError.code == -2
