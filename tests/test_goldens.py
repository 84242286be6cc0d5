"""Golden files pin every format version this release reads; today's writer reproduces the current one.

The files in ``tests/data`` come from ``tests/data/make_goldens.py``. If one of these tests
fails, either the writer changed the format by accident (fix the writer), or the change is
deliberate: then bump the format version, write the new version's goldens into their own
directory (``tests/data/v3/``...), add a row to :data:`SHA256_BY_VERSION`, and keep every
older row and file: each release reads every older format version (``docs/compatibility.md``).
LZ4 frames are the output of liblz4's block compressor (acceleration 1); their bytes were
produced with liblz4 1.9.4.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_same_tree, readers

import ndckpt
from ndckpt import _lz4
from ndckpt.container import VERSION

DATA = Path(__file__).resolve().parent / "data"

#: The oldest format version this release reads (version 1 was development-only and is refused).
OLDEST_READ = 2

#: Format version -> (directory, pinned contents of its goldens). Changing a golden must also
#: change this table; a new format version adds a row and keeps the older ones.
SHA256_BY_VERSION: dict[int, tuple[Path, dict[str, str]]] = {
    2: (DATA, {
        "raw.ndckpt": "1226191611580f4374cc601e3e847cdcff9eb82a14e8d6d8a77b0194b3dd25e3",
        "lz4.ndckpt": "7871b0fb5054d51745e08e71e4f6c4823a1c4e156e1c9424ab6994e67682072d",
        "mixed.ndckpt": "5c4a10545dadf6baab215e256d7a77357a5593c3890846ce9d8442a2232f1326",
        "verbatim.ndckpt": "64040420f02b1d847c8b9f89a205fcb438c330dd71a19f7500b478d189d510c3",
        # feature "filters" (format §2.8)
        "shuffle.ndckpt": "9dbb4a8b72ee532e409dda1a31d101d0f9bffaab524855ac299caffc3efd39d4",
        "delta.ndckpt": "0ec0bb467ab82394d66267c6a708d70af38d374bfeb08dc0fb46f3a2f1046b07",
        "auto.ndckpt": "0d6244f920dcc0753f0d6f7de3698639f0a3964bb46a8a8d064a4f7235f567ad",
    }),
}  # fmt: skip

#: The current version's goldens (the ones today's writer must reproduce).
SHA256 = SHA256_BY_VERSION[VERSION][1]
#: Every (version, file name) pair: each is read, verified and loaded by every reader.
ALL = [(v, n) for v, (_, sums) in sorted(SHA256_BY_VERSION.items()) for n in sorted(sums)]


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("make_goldens", DATA / "make_goldens.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


GEN = _load_generator()
NAMES = sorted(GEN.GOLDENS)


def test_every_golden_is_pinned() -> None:
    assert sorted(SHA256) == NAMES
    for d, sums in SHA256_BY_VERSION.values():
        assert sorted(p.name for p in d.glob("*.ndckpt")) == sorted(sums)


def test_every_version_read_has_goldens() -> None:
    """Each format version from the oldest read to the current one has its own goldens."""
    assert sorted(SHA256_BY_VERSION) == list(range(OLDEST_READ, VERSION + 1))
    assert len({d for d, _ in SHA256_BY_VERSION.values()}) == len(SHA256_BY_VERSION)


@pytest.mark.parametrize(("version", "name"), ALL)
def test_golden_bytes_are_pinned(version: int, name: str) -> None:
    d, sums = SHA256_BY_VERSION[version]
    data = (d / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == sums[name], f"{name} changed: see this module's docstring"
    assert data[:8] == b"\x93NDCKPT\n"
    assert struct.unpack_from("<II", data, 8) == (version, 0), f"superblock version {version}, flags 0"
    assert data[-8:] == b"NDCKEND\n"
    assert struct.unpack_from("<II", data, len(data) - 16) == (version, 0), f"trailer version {version}, flags 0"
    assert struct.unpack_from("<Q", data, len(data) - 24)[0] == len(data)


@pytest.mark.parametrize("version", [1, VERSION + 1, 2**32 - 1])
def test_other_versions_are_refused_at_once(tmp_path: Path, version: int) -> None:
    """A version not read is refused from the superblock alone; a newer one says to upgrade."""
    data = bytearray((DATA / "raw.ndckpt").read_bytes())
    struct.pack_into("<I", data, 8, version)
    struct.pack_into("<I", data, len(data) - 16, version)
    p = tmp_path / "v.ndckpt"
    msg = rf"unsupported ndckpt format version {version} \(this ndckpt reads version {VERSION}\)"
    if version > VERSION:
        msg += "; upgrade ndckpt to read it"
    p.write_bytes(data)
    for read in readers(["load(path)", "verify(path)", "open(path).get", "load(BytesIO)"]).values():
        with pytest.raises(ndckpt.FormatError, match=msg + "$"):
            read(bytes(data), p)


@pytest.mark.parametrize("name", NAMES)
def test_todays_writer_reproduces_the_golden(name: str) -> None:
    make, kw = GEN.GOLDENS[name]
    f = io.BytesIO()
    ndckpt.save(f, make(), threads=2, **kw)
    want = (DATA / name).read_bytes()
    assert f.getvalue() == want, f"writer output differs from {name} (liblz4 {_lz4.library_version()})"


@pytest.mark.parametrize(("version", "name"), ALL)
def test_goldens_load_and_verify(version: int, name: str) -> None:
    make, kw = GEN.GOLDENS[name]
    path = SHA256_BY_VERSION[version][0] / name
    want = make()
    assert_same_tree(ndckpt.load(path), want)
    assert_same_tree(ndckpt.load(path, mmap=False, verify=True), want)
    with open(path, "rb") as f:
        assert_same_tree(ndckpt.load(f), want)
    ndckpt.verify(path)
    with ndckpt.open(path) as r:
        assert r.metadata == kw.get("metadata")
        styles = {row["name"]: row["style"] for row in r.info() if row["nbytes"]}
    if name == "lz4.ndckpt":
        assert set(styles.values()) == {"lz4"}
    if name == "raw.ndckpt":
        assert set(styles.values()) == {"raw"}
    if name == "mixed.ndckpt":
        assert styles["rec"] == styles["model/w"] == "lz4"
        assert styles["model/b"] == "raw"


def test_mixed_golden_details() -> None:
    got = ndckpt.load(DATA / "mixed.ndckpt")
    assert got["opt"]["state"] == {}
    assert got["model"]["w"].flags.f_contiguous
    assert not got["model"]["w"].flags.c_contiguous
    assert got["rec"].dtype.itemsize == 20
    assert got["rec"]["pos"]["y"].tolist() == [-1.0, -2.0, -3.0]
    assert got["labels"].tolist() == ["\u03b1", "\u03b2\u03b3"]
    assert str(got["when"][1]) == "NaT"
    assert int(got["opt"]["step"]) == 1234


def test_verbatim_golden_details() -> None:
    """An LZ4 frame LZ4 cannot shrink is stored verbatim: record bit 63, a pad, the plain bytes."""
    data = (DATA / "verbatim.ndckpt").read_bytes()
    want = GEN.verbatim_arrays()
    rec_at = 4096 + want["plain"].nbytes  # the RAW frame of "plain" (page-aligned) comes first
    stored, xxh = struct.unpack_from("<QQ", data, rec_at)
    assert stored >> 63 == 1, "bit 63 of the record's stored_nbytes marks the frame verbatim"
    nbytes = stored & ~(1 << 63)
    assert nbytes == want["noise"].nbytes + want["tag"].nbytes  # "tag" packed right after "noise"
    body = data[8192 : 8192 + nbytes]  # after the record, a zero pad up to the next page
    assert data[rec_at + 16 : 8192] == bytes(8192 - rec_at - 16)
    assert body[: want["noise"].nbytes] == want["noise"].tobytes()
    assert body[want["noise"].nbytes :] == want["tag"].tobytes()
    assert _lz4.xxh64(body) == xxh
    got = ndckpt.load(DATA / "verbatim.ndckpt")
    assert got["noise"].flags.writeable, "an LZ4 array is never a view, even when stored verbatim"
    assert not got["plain"].flags.writeable, "a RAW array is mapped"


#: What each filter golden's frames record, in file order: (filter, arrays), and which are verbatim.
FILTER_FRAMES = {
    "shuffle.ndckpt": ([(["shuffle", 2], ["i16"]), (["shuffle", 4], ["f32"]), (["shuffle", 8], ["f64"])], set()),
    "delta.ndckpt": (
        [(["delta", 1], ["mask"]), (["delta", 2], ["i16"]), (["delta", 4], ["f32"]), (["delta", 8], ["f64"])],
        set(),
    ),
    "auto.ndckpt": ([(["delta", 8], ["smooth"]), (None, ["spikes"]), (["delta", 8], ["noise"])], {2}),
}


@pytest.mark.parametrize("name", sorted(FILTER_FRAMES))
def test_filter_goldens_decode_with_the_reference_restorer_to_the_filtered_bytes(name: str) -> None:
    """fd_checkpt's LZ4 decoding alone (tests/fdvectors.py) gives ``filters.filter_into`` of each
    frame's buffer; a frame stored verbatim holds the unfiltered buffer (format §2.8)."""
    from fdvectors import decode_lz4_frame
    from forge import parse

    from ndckpt.filters import filter_into

    data = (DATA / name).read_bytes()
    p = parse(data)
    want_frames, verbatim = FILTER_FRAMES[name]
    paths = ["/".join(x) for x in p.head["arrays"]["path"]]
    assert p.head["features"] == ["filters"]
    got = [(f.get("filter"), [paths[ai] for ai in f["parts"][::4]]) for f in p.head["frames"]]
    assert got == want_frames
    assert p.verbatim == verbatim
    arrays = GEN.GOLDENS[name][0]()
    for fi, f in enumerate(p.head["frames"]):
        buf = bytearray(f["nbytes"])
        parts = f["parts"]
        for k in range(0, len(parts), 4):
            ai, start, n, at = parts[k : k + 4]
            buf[at : at + n] = arrays[paths[ai]].tobytes()[start : start + n]
        if fi in verbatim:
            assert p.stored[fi] == bytes(buf)
            continue
        (decoded,), _, end = decode_lz4_frame(p.stored[fi], 0, [f["nbytes"]])
        assert end == len(p.stored[fi])
        if f.get("filter") is None:
            assert decoded == bytes(buf)
            continue
        kind, size = f["filter"]
        want = np.empty(len(buf), np.uint8)
        filter_into(kind, np.frombuffer(bytes(buf), np.uint8), want, size)
        assert decoded == want.tobytes(), (name, fi)


def test_filter_vectors() -> None:
    """tests/data/filters: the files match SHA256SUMS, the input is what make_goldens defines,
    and ndckpt's filters and inverses map the input to each vector and back."""
    from ndckpt.filters import FILTERS, filter_into, unfilter_into

    d = DATA / "filters"
    sums = dict(reversed(line.split("  ")) for line in (d / "SHA256SUMS").read_text().splitlines())
    expected = {"input.bin"} | {f"{k}-{s}.bin" for k in FILTERS for s in GEN.VECTOR_ITEMSIZES}
    assert set(sums) == expected
    for fname, digest in sums.items():
        assert hashlib.sha256((d / fname).read_bytes()).hexdigest() == digest, fname
    src = np.fromfile(d / "input.bin", np.uint8)
    assert np.array_equal(src, GEN.vector_input())
    for kind in FILTERS:
        for s in GEN.VECTOR_ITEMSIZES:
            want = np.fromfile(d / f"{kind}-{s}.bin", np.uint8)
            got = np.empty_like(src)
            filter_into(kind, src, got, s)
            assert np.array_equal(got, want), (kind, s)
            back = np.empty_like(src)
            unfilter_into(kind, want, back, s)
            assert np.array_equal(back, src), (kind, s)
    assert (d / "shuffle-1.bin").read_bytes() == (d / "input.bin").read_bytes()
