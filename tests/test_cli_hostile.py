"""The ``ndckpt`` command on hostile files: what it prints is escaped, what it writes is contained,
and whatever a file causes is one line on stderr with exit status 1, never a traceback.

Also the CLI conveniences of the same round: ``-`` (stdin) for info and extract, binary output
refused on a terminal, per-array ``--style NAME=STYLE``, empty .npz files, object arrays.
Hostile ndckpt files are built with tests/forge.py; the memory-limit case runs in a subprocess
under ``RLIMIT_AS``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import resource
import select
import struct
import subprocess
import sys
import time
import urllib.parse
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import forge
import numpy as np
import pytest
from helpers import run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ndckpt
from ndckpt import cli
from ndckpt._text import show
from ndckpt.cli.names import npz_member

#: Characters a hostile name is made of: terminal escapes, C0/C1 controls, DEL, bidi and other
#: format characters, line separators, lone surrogates, path syntax, and ordinary text.
HOSTILE = st.one_of(
    st.sampled_from(["\x1b", "\x07", "\x00", "\n", "\r", "\t", "\x7f", "\x85", "\x9b", "\u202e", "\u2028", "\ufeff"]),
    st.sampled_from(["\ud800", "\udc80", "\udfff", "/", ".", "..", "\\", ":", "%", "C:", "é", "€", "a", "_", " "]),
    st.characters(),
)


def hostile_text(min_size: int = 1, max_size: int = 12) -> st.SearchStrategy[str]:
    return st.lists(HOSTILE, min_size=min_size, max_size=max_size).map("".join).filter(lambda s: len(s) >= min_size)


def unicode_text(s: str) -> bool:
    """Whether ``s`` can be a name: valid Unicode (format §4.1 refuses lone surrogates)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def run_cli(*argv: str, stdin: Any = None, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    """``python -m ndckpt`` in a subprocess (a fresh interpreter: real recursion limit, real stdio)."""
    return subprocess.run(
        [sys.executable, "-m", "ndckpt", *argv],
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="surrogateescape",
        timeout=timeout,
        check=False,
        **kw,
    )


def one_error_line(r: subprocess.CompletedProcess[str], command: str) -> str:
    """Exit status 1, exactly one line on stderr naming the command, no traceback; the line."""
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr[-3000:]
    assert lines[0].startswith(f"ndckpt {command}: "), lines[0]
    return lines[0]


def succeeds_or_one_error_line(r: subprocess.CompletedProcess[str], command: str) -> bool:
    """For input a stricter reader may refuse at open: exit 0 quietly, or one error line (False)."""
    if r.returncode == 0:
        assert r.stderr == "", r.stderr[-3000:]
        return True
    one_error_line(r, command)
    return False


def printable(text: str) -> bool:
    """Every line of ``text`` is printable characters only (no control, escape, surrogate, bidi)."""
    return all(line.isprintable() for line in text.split("\n"))


def forged(path: Path, edit: Any, arrays: Any = None) -> Path:
    """A valid file of ``arrays`` (default one int32 array 'x') whose head ``edit`` changed."""
    data = forge.save_small_frames(arrays if arrays is not None else {"x": np.arange(4, dtype=np.int32)})
    lay = forge.parse(data)
    doc = forge.row_doc(lay.head)
    edit(doc)
    path.write_bytes(forge.build(forge.column_doc(doc), lay.stored))
    return path


def with_paths(path: Path, paths: list[list[str]]) -> Path:
    """A file whose arrays (one int32 array each) sit at these ``paths`` (lists of components)."""
    arrays = {f"a{i}": np.full(3, i, np.int32) for i in range(len(paths))}

    def edit(doc: dict[str, Any]) -> None:
        by_name = {row["path"][0]: row for row in doc["arrays"]}
        for i, p in enumerate(paths):
            by_name[f"a{i}"]["path"] = p

    return forged(path, edit, arrays)


# ----------------------------------------------------------------------------------------------
# Escaping what is printed (issue 12 item 4)
# ----------------------------------------------------------------------------------------------


@given(hostile_text(0, 30))
def test_show_is_printable_and_keeps_printable_text(s: str) -> None:
    shown = show(s)
    assert shown.isprintable()
    shown.encode("utf-8")  # no lone surrogate survives
    if s.isprintable():
        assert shown == s


def test_show_escapes_like_repr() -> None:
    assert show("a\x1b]0;pwned\x07b") == "a\\x1b]0;pwned\\x07b"
    assert show("\x1b[2J\n\t\u202e\ud800\U000e0001") == "\\x1b[2J\\n\\t\\u202e\\ud800\\U000e0001"
    assert show("fields/u é €") == "fields/u é €"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    names=st.lists(
        hostile_text().filter(lambda s: "/" not in s and unicode_text(s)), min_size=1, max_size=4, unique=True
    )
)
def test_info_never_prints_a_control_character(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, names: list[str]
) -> None:
    p = tmp_path / "names.ndckpt"
    note = names[0].encode("utf-8", "replace").decode()  # metadata refuses lone surrogates (not Unicode text)
    ndckpt.save(p, {n: np.zeros(i + 1) for i, n in enumerate(names)}, metadata={"note": note})
    with ndckpt.open(p) as rd:
        names = rd.names()  # as stored: the head's JSON joins a surrogate pair into one character
    code, out, err = run_main(capsys, "info", str(p))
    assert (code, err) == (0, "")
    assert printable(out), out
    for n in names:  # every name is listed, escaped
        assert show(n) in out
    code, out, err = run_main(capsys, "info", "--json", str(p))
    assert (code, err) == (0, "")
    assert out.isascii()
    assert printable(out)
    assert sorted(row["name"] for row in json.loads(out)["arrays"]) == sorted(names)


def test_terminal_escapes_in_names_reach_no_output(tmp_path: Path) -> None:
    """In a real process (real stdout encoding): info, extract and a verify failure that names
    the array all show the escapes, never the raw bytes; a lone surrogate does not crash."""
    evil = {"\x1b]0;pwned\x07": np.zeros(2), "\x1b[2Jclear": np.arange(600, dtype=np.int64)}
    p = tmp_path / "evil.ndckpt"
    ndckpt.save(p, evil)
    r = run_cli("info", str(p))
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout
    assert "\x07" not in r.stdout
    assert "\\x1b]0;pwned\\x07" in r.stdout
    assert "\\x1b[2Jclear" in r.stdout

    r = run_cli("extract", str(p), "s\udcc3x", cwd=tmp_path)  # an argv byte that is not UTF-8
    line = one_error_line(r, "extract")
    assert "\x1b" not in line
    r = run_cli("extract", str(p), "\x1b[2Jclear", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout
    assert (tmp_path / "%1B[2Jclear.npy").is_file()  # the default file name is escaped too
    assert np.load(tmp_path / "%1B[2Jclear.npy").tolist() == list(range(600))

    with ndckpt.open(p) as rd:
        off = next(row["offsets"][0] for row in rd.info() if row["name"] == "\x1b[2Jclear")
    data = bytearray(p.read_bytes())
    data[off + 100] ^= 0xFF
    p.write_bytes(bytes(data))
    r = run_cli("verify", str(p))
    assert r.returncode == 1
    assert "FAILED" in r.stderr
    assert "\x1b" not in r.stderr
    assert len(r.stderr.splitlines()) == 1


def test_a_lone_surrogate_name_is_a_one_line_error(tmp_path: Path) -> None:
    # save() refuses such names; a forged file holding one is refused by every command, in one line.
    with pytest.raises(ndckpt.InvalidArgumentError, match="lone surrogate"):
        ndckpt.save(tmp_path / "s.ndckpt", {"a\ud800b": np.arange(3)})
    p = with_paths(tmp_path / "s.ndckpt", [["a\ud800b"]])
    for cmd in (["info", str(p)], ["verify", str(p)], ["extract", str(p), "x"], ["convert", str(p), "o.npz"]):
        r = run_cli(*cmd, cwd=tmp_path)
        one_error_line(r, cmd[0])
        assert "surrogate" in r.stderr


# ----------------------------------------------------------------------------------------------
# Safe .npz member names (issue 12 item 3)
# ----------------------------------------------------------------------------------------------


def unescape(member: str) -> str:
    return urllib.parse.unquote(member, encoding="utf-8", errors="surrogatepass")


def assert_safe_member(m: str) -> None:
    assert m.endswith(".npy")
    assert not m.startswith("/"), m
    parts = m.split("/")
    assert all(parts), m  # no empty component (no leading, trailing or doubled /)
    assert not any(p in (".", "..") for p in parts), m
    assert "\\" not in m, m
    assert ":" not in m, m  # no drive letter, no NTFS stream
    assert m.isprintable(), m  # no NUL, control, surrogate
    m.encode("utf-8")


@given(st.lists(hostile_text(0, 10), min_size=1, max_size=4).map("/".join))
def test_member_names_are_safe_distinct_and_decode_back(name: str) -> None:
    m = npz_member(name)
    assert_safe_member(m)
    assert unescape(m[: -len(".npy")]) == name  # decodable, hence distinct names stay distinct
    parts = name.split("/")
    ordinary = name.isprintable() and not set(name) & set("%\\:") and all(parts)
    if ordinary and not any(p.strip(".") == "" for p in parts[:-1]):
        assert m == name + ".npy"  # ordinary names are unchanged


def test_member_names_of_known_attacks() -> None:
    assert npz_member("../../../x") == "%2E%2E/%2E%2E/%2E%2E/x.npy"
    assert npz_member("/abs") == "%2Fabs.npy"
    assert npz_member("C:/win") == "C%3A/win.npy"
    assert npz_member("a\\..\\b") == "a%5C..%5Cb.npy"
    assert npz_member("a//b/") == "a%2F%2Fb%2F.npy"
    assert npz_member("n\x00ul") == "n%00ul.npy"
    assert npz_member("..") == "...npy"  # the suffix makes a last component safe
    assert npz_member("fields/u") == "fields/u.npy"
    assert npz_member("50%") == "50%25.npy"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    paths=st.lists(
        st.lists(hostile_text().filter(unicode_text), min_size=1, max_size=3), min_size=1, max_size=3, unique_by=tuple
    )
)
def test_convert_to_npz_writes_only_safe_members(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, paths: list[list[str]]
) -> None:
    tuples = [tuple(p) for p in paths]
    if any(a != b and b[: len(a)] == a for a in tuples for b in tuples):
        return  # one path inside another is not a valid head
    src = with_paths(tmp_path / "hostile.ndckpt", paths)
    dst = tmp_path / "out.npz"
    code, out, err = run_main(capsys, "convert", str(src), str(dst))
    with ndckpt.open(src) as rd:
        flat = rd.names()  # as the reader sees them (JSON joins a surrogate pair into one character)
    if len(set(flat)) < len(flat):  # ["a/b"] and ["a", "b"] share a name: not this test's subject
        return
    assert code == 0, err
    assert printable(out)
    with zipfile.ZipFile(dst) as zf:
        members = zf.namelist()
    assert len(members) == len(paths)
    for m in members:
        assert_safe_member(m)
    assert sorted(unescape(m[:-4]) for m in members) == sorted(flat)
    with np.load(dst) as z, ndckpt.open(src) as rd:
        for name in flat:
            assert z[npz_member(name)[:-4]].tolist() == rd.get(name).tolist()


def test_zip_slip_names_are_contained_when_extracted(tmp_path: Path) -> None:
    src = with_paths(tmp_path / "slip.ndckpt", [["..", "..", "x"], ["/abs"], ["C:", "w"], ["ok"]])
    dst = tmp_path / "deep" / "er"
    dst.mkdir(parents=True)
    r = run_cli("convert", str(src), str(dst / "o.npz"))
    assert r.returncode == 0, r.stderr
    out = dst / "unzipped"
    with zipfile.ZipFile(dst / "o.npz") as zf:
        for m in zf.namelist():
            assert_safe_member(m)
            target = (out / m).resolve()
            assert target.is_relative_to(out.resolve()), m
        assert sorted(zf.namelist()) == ["%2E%2E/%2E%2E/x.npy", "%2Fabs.npy", "C%3A/w.npy", "ok.npy"]


# ----------------------------------------------------------------------------------------------
# One line, exit 1, for whatever a file causes (issue 12 item 11)
# ----------------------------------------------------------------------------------------------


def deep_dtype(doc: dict[str, Any]) -> None:
    dt: Any = "<i4"
    for _ in range(450):
        dt = {"names": ["f"], "formats": [dt], "offsets": [0], "itemsize": 4}
    doc["arrays"][0]["dtype"] = dt


@pytest.mark.parametrize("command", ["info", "verify", "extract", "convert"])
def test_struct_dtype_nested_450_deep(tmp_path: Path, command: str) -> None:
    p = forged(tmp_path / "deep.ndckpt", deep_dtype)
    argv = {"info": [], "verify": [], "extract": ["x", "-o", str(tmp_path / "x.npy")]}
    argv["convert"] = [str(tmp_path / "o.npz")]
    r = run_cli(command, str(p), *argv[command])
    if command in ("info", "verify"):  # they print the dtype: numpy's str(dtype) recurses per level
        one_error_line(r, command)
    elif succeeds_or_one_error_line(r, command):  # .npy headers are made without Python recursion
        if command == "extract":  # (numpy's own reader then refuses the header as too nested)
            assert (tmp_path / "x.npy").read_bytes().startswith(b"\x93NUMPY")
        else:
            with zipfile.ZipFile(tmp_path / "o.npz") as zf:
                assert zf.namelist() == ["x.npy"]


@pytest.mark.parametrize("out", ["o.npz", "o.ndckpt", "o.npy"])
def test_path_5000_deep(tmp_path: Path, out: str) -> None:
    path = ["a"] * 5000
    p = forged(tmp_path / "deep.ndckpt", lambda doc: doc["arrays"][0].update(path=path))
    r = run_cli("convert", str(p), str(tmp_path / out))
    if not succeeds_or_one_error_line(r, "convert"):  # a reader that limits path depth refuses it
        return
    if out == "o.ndckpt":
        with ndckpt.open(tmp_path / out) as rd:
            assert rd.names() == ["/".join(path)]
            assert rd.get("/".join(path)).tolist() == [0, 1, 2, 3]
    elif out == "o.npz":
        with zipfile.ZipFile(tmp_path / out) as zf:
            assert zf.namelist() == ["/".join(path) + ".npy"]
    else:
        assert np.load(tmp_path / out).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("command", "extra"), [("extract", ["x", "-o", "x.npy"]), ("convert", ["o.npz"]), ("convert", ["o.ndckpt"])]
)
def test_65_dimensions(tmp_path: Path, command: str, extra: list[str]) -> None:
    p = forged(tmp_path / "d65.ndckpt", lambda doc: doc["arrays"][0].update(shape=[1] * 62 + [2, 2, 1]))
    line = one_error_line(run_cli(command, str(p), *extra, cwd=tmp_path), command)
    assert "64" in line
    assert sorted(q.name for q in tmp_path.iterdir()) == ["d65.ndckpt"]  # nothing written


def zip_bomb(path: Path, chunks: int = 80) -> int:
    """An .npz whose one member, a.npy, inflates from ~6 MB to ``chunks`` x 16 MiB of float64
    zeros (header and sizes honest). The deflate stream repeats one fully flushed segment."""
    n = chunks * (16 << 20) // 8
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": "<f8", "fortran_order": False, "shape": (n,)})
    header = b.getvalue()
    zeros = bytes(16 << 20)
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    data = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    data += (c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)) * chunks + c.flush()
    crc = zlib.crc32(header)
    for _ in range(chunks):
        crc = zlib.crc32(zeros, crc)
    usize = len(header) + chunks * len(zeros)
    name = b"a.npy"
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(data), usize, len(name), 0) + name
    cd = struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, len(data), usize, len(name), 0, 0, 0, 0, 0, 0
    )
    cd += name
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(cd), len(local) + len(data), 0)
    path.write_bytes(local + data + cd + eocd)
    return usize


def test_zip_bomb_under_a_memory_limit(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.npz"
    usize = zip_bomb(bomb)
    assert usize > 1 << 30
    with zipfile.ZipFile(bomb) as zf:
        assert zf.infolist()[0].file_size == usize

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    r = run_cli("convert", str(bomb), str(tmp_path / "o.ndckpt"), preexec_fn=limit, env=env)
    line = one_error_line(r, "convert")
    assert "not enough memory" in line
    assert "'a'" in line
    assert not (tmp_path / "o.ndckpt").exists()


@pytest.mark.parametrize("command", ["info", "verify", "extract", "convert"])
def test_fifo_is_refused_at_once(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "pipe.ndckpt"
    os.mkfifo(fifo)
    extra = {"info": [], "verify": [], "extract": ["x"], "convert": [str(tmp_path / "o.ndckpt")]}[command]
    t0 = time.monotonic()
    r = run_cli(command, str(fifo), *extra, timeout=30)
    assert time.monotonic() - t0 < 25
    line = one_error_line(r, command)
    assert "regular file" in line


# ----------------------------------------------------------------------------------------------
# stdin, terminals, --style NAME=STYLE, empty .npz, object arrays (issue 13 items 8, 9)
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    p = tmp_path / "c.ndckpt"
    state = {"fields": {"u": np.arange(20.0), "v": np.ones(5)}, "step": np.array(7, np.int64)}
    ndckpt.save(p, state, metadata={"k": 1})
    return p


@pytest.mark.parametrize("how", ["file", "pipe"])
def test_info_and_extract_read_stdin(ckpt: Path, tmp_path: Path, how: str) -> None:
    @contextlib.contextmanager
    def stdin() -> Iterator[Any]:
        if how == "file":
            with open(ckpt, "rb") as f:
                yield f
            return
        with subprocess.Popen(["cat", str(ckpt)], stdout=subprocess.PIPE) as p:
            yield p.stdout

    with stdin() as f:
        r = run_cli("info", "-", stdin=f)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("file      stdin  (")
    assert "fields/u" in r.stdout
    assert '{"k": 1}' in r.stdout
    with stdin() as f:
        r = run_cli("info", "--json", "-", stdin=f)
    assert [a["name"] for a in json.loads(r.stdout)["arrays"]] == ["fields/u", "fields/v", "step"]
    with stdin() as f:
        r = run_cli("extract", "-", "fields/u", cwd=tmp_path, stdin=f)
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "fields_u.npy").tolist() == list(np.arange(20.0))
    with stdin() as f:
        r = run_cli("extract", "-", "nope", cwd=tmp_path, stdin=f)
    assert "stdin: no array named 'nope'" in one_error_line(r, "extract")


def test_info_of_empty_or_junk_stdin(tmp_path: Path) -> None:
    one_error_line(run_cli("info", "-", stdin=subprocess.DEVNULL), "info")
    (tmp_path / "junk").write_bytes(b"hello")
    with open(tmp_path / "junk", "rb") as f:
        line = one_error_line(run_cli("info", "-", stdin=f), "info")
    assert "not an ndckpt file" in line


def run_with_stdout_on_pty(*argv: str) -> tuple[int, bytes, str]:
    """``python -m ndckpt ARGV`` with stdout on a pseudo-terminal: (status, terminal bytes, stderr)."""
    master, slave = pty.openpty()
    seen = b""
    try:
        with subprocess.Popen(
            [sys.executable, "-m", "ndckpt", *argv], stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE
        ) as p:
            os.close(slave)
            slave = -1
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.5)
                if not ready:
                    if p.poll() is not None:
                        break
                    continue
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed its end
                    break
                if not chunk:
                    break
                seen += chunk
            assert p.stderr is not None
            err = p.stderr.read().decode()
            code = p.wait(timeout=60)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return code, seen, err


def test_convert_to_a_terminal_needs_force(ckpt: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", a=np.arange(3))
    code, tty, err = run_with_stdout_on_pty("convert", str(tmp_path / "x.npz"), "-")
    assert code == 1
    assert tty == b""
    assert "not written to a terminal" in err
    assert "--force" in err
    assert len(err.splitlines()) == 1
    code, tty, err = run_with_stdout_on_pty("convert", str(tmp_path / "x.npz"), "-", "--force")
    assert code == 0, err
    assert tty.startswith(b"\xca\xb2\x2e\x2e") or len(tty) > 100  # the file's bytes (the tty may translate \n)


def test_convert_to_a_pipe_needs_no_force(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", a=np.arange(3))
    r = subprocess.run(
        [sys.executable, "-m", "ndckpt", "convert", str(tmp_path / "x.npz"), "-"], capture_output=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert ndckpt.load(r.stdout)["a"].tolist() == [0, 1, 2]


def styles_of(p: Path) -> dict[str, str]:
    with ndckpt.open(p) as r:
        return {row["name"]: row["style"] for row in r.info()}


def test_style_per_array(capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path) -> None:
    o = str(tmp_path / "o.ndckpt")
    cases = [
        ([], {"fields/u": "raw", "fields/v": "raw", "step": "raw"}),
        (["--style", "lz4"], {"fields/u": "lz4", "fields/v": "lz4", "step": "lz4"}),
        (["--style", "fields/u=lz4"], {"fields/u": "lz4", "fields/v": "raw", "step": "raw"}),
        (["--style", "fields=lz4"], {"fields/u": "lz4", "fields/v": "lz4", "step": "raw"}),
        (["--style", "lz4", "--style", "fields=raw"], {"fields/u": "raw", "fields/v": "raw", "step": "lz4"}),
        (
            ["--style", "fields=lz4", "--style", "fields/v=raw", "--style", "lz4"],
            {"fields/u": "lz4", "fields/v": "raw", "step": "lz4"},
        ),
    ]
    for extra, want in cases:
        code, _out, err = run_main(capsys, "convert", str(ckpt), o, *extra)
        assert code == 0, (extra, err)
        assert styles_of(Path(o)) == want, extra
        assert ndckpt.load(o)["fields"]["u"].tolist() == list(np.arange(20.0))


def test_style_errors(capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path) -> None:
    o = str(tmp_path / "o.ndckpt")
    code, _out, err = run_main(capsys, "convert", str(ckpt), o, "--style", "nosuch=lz4")
    assert code == 1
    assert "nosuch" in err
    assert len(err.splitlines()) == 1
    code, _out, err = run_main(capsys, "convert", str(ckpt), o, "--style", "lz4", "--style", "raw")
    assert code == 2
    assert "conflicting" in err
    for bad in ("zstd", "a=zstd", "=lz4"):
        with pytest.raises(SystemExit) as e:
            cli.main(["convert", str(ckpt), o, "--style", bad])
        assert e.value.code == 2
        assert "--style" in capsys.readouterr().err
    assert not Path(o).exists()


def test_name_with_equals_sign_in_style(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = tmp_path / "eq.ndckpt"
    ndckpt.save(src, {"a=b": np.arange(3), "c": np.arange(2)})
    code, _out, err = run_main(capsys, "convert", str(src), str(tmp_path / "o.ndckpt"), "--style", "a=b=lz4")
    assert code == 0, err
    assert styles_of(tmp_path / "o.ndckpt") == {"a=b": "lz4", "c": "raw"}


def test_empty_npz_is_an_npz(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    np.savez(tmp_path / "e.npz")
    code, out, err = run_main(capsys, "convert", str(tmp_path / "e.npz"), str(tmp_path / "e.ndckpt"))
    assert code == 0, err
    assert "0 arrays" in out
    assert ndckpt.load(tmp_path / "e.ndckpt") == {}
    code, _out, err = run_main(capsys, "convert", str(tmp_path / "e.ndckpt"), str(tmp_path / "back.npz"))
    assert code == 0, err
    with np.load(tmp_path / "back.npz") as z:
        assert z.files == []


@pytest.mark.parametrize("kind", ["npy", "npz"])
def test_object_arrays_say_what_to_do(capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str) -> None:
    arr = np.array([1, "a", None], dtype=object)
    p = tmp_path / f"o.{kind}"
    if kind == "npy":
        np.save(p, arr, allow_pickle=True)
    else:
        np.savez(p, objs=arr)
    code, _out, err = run_main(capsys, "convert", str(p), str(tmp_path / "o.ndckpt"))
    assert code == 1
    assert len(err.splitlines()) == 1
    assert "holds Python objects" in err
    assert "re-save it with a plain dtype" in err
    assert "memory-mapped" not in err
    assert "allow_pickle" not in err
    if kind == "npz":
        assert "array 'objs'" in err


def test_convert_keeps_groups(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """ndckpt -> ndckpt keeps every path and empty group; .npz names with / become groups."""
    src = tmp_path / "g.ndckpt"
    ndckpt.save(src, {"fields": {"u": np.arange(3), "deep": {"w": np.ones(2)}}, "empty": {}, "s": np.array(1, np.int8)})
    code, _out, err = run_main(capsys, "convert", str(src), str(tmp_path / "o.ndckpt"), "--style", "fields=lz4")
    assert code == 0, err
    got = ndckpt.load(tmp_path / "o.ndckpt")
    assert sorted(got) == ["empty", "fields", "s"]
    assert got["empty"] == {}
    assert got["fields"]["deep"]["w"].tolist() == [1.0, 1.0]
    assert styles_of(tmp_path / "o.ndckpt") == {"fields/u": "lz4", "fields/deep/w": "lz4", "s": "raw"}

    np.savez(tmp_path / "n.npz", **{"fields/u": np.arange(3), "top": np.zeros(1)})
    code, _out, err = run_main(capsys, "convert", str(tmp_path / "n.npz"), str(tmp_path / "n.ndckpt"))
    assert code == 0, err
    got = ndckpt.load(tmp_path / "n.ndckpt")
    assert sorted(got) == ["fields", "top"]
    assert got["fields"]["u"].tolist() == [0, 1, 2]

    np.savez(tmp_path / "clash.npz", **{"a": np.zeros(1), "a/b": np.zeros(1)})
    code, _out, err = run_main(capsys, "convert", str(tmp_path / "clash.npz"), str(tmp_path / "c.ndckpt"))
    assert code == 1
    assert "'a/b' is inside 'a', which is an array" in err
    assert len(err.splitlines()) == 1
