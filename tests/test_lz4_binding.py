"""The LZ4 binding (ndckpt._lz4): it must keep working, and fail loudly if it stops.

ndckpt gets liblz4's streaming functions by loading python-lz4's own extension
module with ctypes (an unsupported detail of how the wheel is built). If a
python-lz4 release stops exporting them, LZ4 frames would silently become
"unsupported": these tests turn that into a loud failure. They also check the
``NDCKPT_LZ4_LIBRARY`` override (in subprocesses, since it is read once), the
XXH64 export, and that python-lz4's public decoder reads our chunks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lz4
import lz4.block
import pytest
from fdvectors import decode_lz4_frame
from hypothesis import given, settings
from strategies import (
    FrameSpec,
    buffer_sizes,
    checkpoint_specs,
    checkpt_mmio,
    checkpt_stream,
    literal,
)

from ndckpt import FrameStyle, frame_style_is_supported
from ndckpt import _lz4 as binding
from ndckpt.format import chunk_csz_max, chunk_sizes

TESTS_DIR = Path(__file__).resolve().parent
ENV_OVERRIDE = os.environ.get("NDCKPT_LZ4_LIBRARY")
REQUIRED = (
    "LZ4_versionNumber",
    "LZ4_createStream",
    "LZ4_freeStream",
    "LZ4_initStream",
    "LZ4_sizeofState",
    "LZ4_resetStream_fast",
    "LZ4_compress_fast_continue",
    "LZ4_decompress_safe_usingDict",
)


def test_lz4_is_available_here() -> None:
    assert binding.available() is True, (
        "ndckpt found no LZ4 library with the streaming API: python-lz4's extension module no "
        "longer exports LZ4_compress_fast_continue & co. and no system liblz4 was found. LZ4 "
        "frames would all raise UnsupportedError. Pin lz4 to a version that exports them or "
        "install liblz4 (Debian: liblz4-1)."
    )
    assert frame_style_is_supported(FrameStyle.LZ4) is True


def test_library_version() -> None:
    assert binding.library_version() in ("1.9.4", "1.10.0"), (
        f"liblz4 {binding.library_version()}: the golden vectors are pinned to 1.9.4/1.10.0; "
        "check them before accepting another version"
    )


@pytest.mark.skipif(ENV_OVERRIDE is not None, reason="NDCKPT_LZ4_LIBRARY overrides the library")
def test_library_comes_from_python_lz4() -> None:
    path = binding.library_path()
    assert path is not None
    pkg = Path(lz4.__file__).resolve().parent
    assert pkg in Path(path).resolve().parents, f"{path} is not inside python-lz4 ({pkg})"
    ext = importlib.import_module("lz4.block._block")
    assert Path(path).resolve() == Path(str(ext.__file__)).resolve()
    # Same library, same version as python-lz4 reports for itself.
    assert binding.library_version() == lz4.library_version_string()


@pytest.mark.skipif(ENV_OVERRIDE is None, reason="only when NDCKPT_LZ4_LIBRARY is set")
def test_library_follows_override() -> None:
    assert binding.library_path() == ENV_OVERRIDE


def test_python_lz4_extension_exports_the_streaming_api() -> None:
    """The mechanism itself: python-lz4's block extension exports every symbol ndckpt needs."""
    ext = importlib.import_module("lz4.block._block")
    lib = ctypes.CDLL(str(ext.__file__))
    missing = [name for name in REQUIRED if not hasattr(lib, name)]
    assert not missing, f"lz4 {lz4.__version__}'s {ext.__file__} no longer exports {missing}"


def test_xxh64_known_answers() -> None:
    assert binding.xxh64(b"") == 0xEF46DB3751D8E999
    assert binding.xxh64(b"abc") == 0x44BC2CF5AD770999
    assert binding.xxh64(bytearray(b"abc")) == 0x44BC2CF5AD770999
    assert binding.xxh64(memoryview(b"xabcx")[1:4]) == 0x44BC2CF5AD770999
    big = bytes(range(256)) * 4096
    assert binding.xxh64(big) == binding.xxh64(bytearray(big))
    assert binding.xxh64(big) != binding.xxh64(big[:-1])


def test_frame_style_is_supported() -> None:
    assert frame_style_is_supported(0) is False
    assert frame_style_is_supported(1) is True
    assert frame_style_is_supported(2) is True
    assert frame_style_is_supported(3) is False
    assert frame_style_is_supported(-1) is False
    assert frame_style_is_supported(True) is False


def _run_child(code: str, library: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NDCKPT_LZ4_LIBRARY=library)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(TESTS_DIR)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


NO_LZ4_CHILD = """
    import io, json, sys
    import ndckpt
    from ndckpt import Checkpt, Restore, FrameStyle, UnsupportedError, frame_style_is_supported
    from ndckpt import _lz4

    out = {
        "available": _lz4.available(),
        "path": _lz4.library_path(),
        "version": _lz4.library_version(),
        "supported": [frame_style_is_supported(s) for s in (0, 1, 2)],
        "xxh64_abc": _lz4.xxh64(b"abc"),
    }
    errors = []
    for obj in (Checkpt.mmio(bytearray(64)), Checkpt.stream(io.BytesIO()), Restore.mmio(b"")):
        try:
            obj.frame_open(FrameStyle.LZ4)
        except UnsupportedError as e:
            errors.append([type(e).__name__, e.code, isinstance(e, NotImplementedError),
                           obj.failed, "LZ4" in str(e)])
        obj.fini()
    out["errors"] = errors

    # RAW frames still round-trip, in both modes and across them.
    payload = [bytes(range(256)) * 300, b"", b"tail"]
    f = io.BytesIO()
    region = bytearray(sum(map(len, payload)))
    for ck in (Checkpt.stream(f), Checkpt.mmio(region)):
        with ck:
            with ck.frame(FrameStyle.RAW):
                for p in payload[:2]:
                    ck.buf(p)
            with ck.frame(0):
                ck.buf(payload[2])
    assert f.getvalue() == bytes(region) == b"".join(payload)
    for rs in (Restore.mmio(f.getvalue()), Restore.stream(io.BytesIO(bytes(region)))):
        with rs:
            with rs.frame(FrameStyle.RAW):
                for p in payload[:2]:
                    got = bytearray(len(p)); rs.buf(got); assert got == p
            with rs.frame(0):
                got = bytearray(4); rs.buf(got); assert got == payload[2]
    out["raw_ok"] = True
    print(json.dumps(out))
"""


@pytest.mark.parametrize("library", ["none", "NONE", "", "/nonexistent/liblz4.so.1"])
def test_without_lz4(library: str) -> None:
    """NDCKPT_LZ4_LIBRARY=none (or a missing library): LZ4 is UNSUP (-2), RAW still works."""
    r = _run_child(NO_LZ4_CHILD, library)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["available"] is False
    assert out["path"] is None
    assert out["version"] is None
    assert out["supported"] == [False, True, False]
    assert out["xxh64_abc"] == 0x44BC2CF5AD770999  # the checksum does not depend on it
    assert out["errors"] == [["UnsupportedError", -2, True, True, True]] * 3
    assert out["raw_ok"] is True


GOLDEN_CHILD = """
    import io, json, sys
    sys.path.insert(0, sys.argv[1])
    import fdvectors
    from ndckpt import Checkpt, _lz4

    same = []
    for name in fdvectors.cases():
        d, data = fdvectors.load_case(name)
        f = io.BytesIO()
        ck = Checkpt.stream(f)
        for fr in d["frames"]:
            ck.frame_open(fr["style_code"])
            for b in fr["bufs"]:
                ck.buf(fdvectors.content(b["content"]) or b"", meta=b["api"] == "meta")
            ck.frame_close()
        ck.fini()
        same.append(f.getvalue() == data)
    print(json.dumps({"path": _lz4.library_path(), "version": _lz4.library_version(),
                      "cases": len(same), "identical": all(same)}))
"""


def _system_liblz4() -> str | None:
    name = ctypes.util.find_library("lz4")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    return name if all(hasattr(lib, s) for s in REQUIRED) else None


@pytest.mark.parametrize("which", ["python-lz4", "system"])
def test_explicit_library_reproduces_golden_vectors(which: str) -> None:
    """NDCKPT_LZ4_LIBRARY=<path> loads that library, and it gives the golden bytes."""
    if which == "system":
        path = _system_liblz4()
        if path is None:
            pytest.skip("no system liblz4 with the streaming API on this machine")
    else:
        path = str(importlib.import_module("lz4.block._block").__file__)
    r = _run_child(GOLDEN_CHILD, path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["path"] == path
    assert out["version"] in ("1.9.4", "1.10.0")
    assert out["cases"] >= 14
    assert out["identical"] is True


@settings(max_examples=40)
@given(frames=checkpoint_specs(styles=(2,), max_frames=3, sizes=buffer_sizes(200_000)))
def test_python_lz4_decodes_our_chunks(frames: list[FrameSpec]) -> None:
    """An independent decoder: python-lz4's lz4.block.decompress(block, uncompressed_size=usz,
    dict=last 64 KiB of the frame) decodes every chunk the engine writes, in both modes."""
    data, rec = checkpt_mmio(frames)
    assert checkpt_stream(frames)[0] == data
    for fr, start, end in zip(frames, rec.opens, rec.closes, strict=True):
        bufs, chunks, stop = decode_lz4_frame(data, start, fr.sizes)
        assert bufs == [b.data for b in fr.bufs]
        assert [[u for u, _ in c] for c in chunks] == [chunk_sizes(n) for n in fr.sizes]
        assert all(3 < stored <= chunk_csz_max(u) for c in chunks for u, stored in c)
        assert stop == end


def test_python_lz4_decodes_a_chunk_by_hand() -> None:
    """The smallest case spelled out: one 1-byte chunk is `02 00 00 10 2a` (tiny_lz4)."""
    data, _ = checkpt_mmio([FrameSpec(2, (literal(b"\x2a"),))])
    assert data == bytes.fromhex("020000102a")
    assert lz4.block.decompress(data[3:], uncompressed_size=1) == b"\x2a"


def test_binding_round_trip_without_the_engine() -> None:
    """LZ4Stream.compress and Decoder.decompress (the call protocol the engine's loops inline)
    round-trip a chunk on their own, and the block decodes with python-lz4 too."""
    import ctypes

    import lz4.block
    import numpy as np

    from ndckpt import _lz4

    src = (b"ndckpt " * 9400)[:65536]
    s_buf = ctypes.create_string_buffer(src, len(src))
    out = ctypes.create_string_buffer(70000)
    stream = _lz4.LZ4Stream()
    try:
        stream.reset_fast()
        csz = stream.compress(ctypes.addressof(s_buf), ctypes.addressof(out), len(src), len(out))
    finally:
        stream.free()
    assert 0 < csz < len(src)
    block = out.raw[:csz]
    assert lz4.block.decompress(block, uncompressed_size=len(src)) == src
    dst = np.zeros(len(src), np.uint8)
    n = _lz4.Decoder().decompress(ctypes.addressof(out), dst.ctypes.data, csz, len(src), 0, 0)
    assert n == len(src)
    assert dst.tobytes() == src
    # A truncated block is refused (negative result), never silently accepted.
    assert _lz4.Decoder().decompress(ctypes.addressof(out), dst.ctypes.data, csz - 5, len(src), 0, 0) < 0
