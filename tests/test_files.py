"""ndckpt._files: the one atomic-write helper behind save, the CLI outputs, the manager and mpi.

Temporary names (built and recognised in one place), files or links planted at the names a
writer uses, removal of temporaries left by killed writers, the permission bits of a replaced
file, symlink targets, failures mid-write, and the platform fallbacks (no O_NOFOLLOW, no
directory fsync).
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ndckpt
from ndckpt import _files, cli
from ndckpt._files import TempName, is_temp_of, parse_temp_name, temp_name, temp_stem
from ndckpt.errors import CheckptIOError, InvalidArgumentError

ARRAYS = {"a": np.arange(1000, dtype=np.float64), "b": np.ones((3, 4), dtype=np.int16)}


def listing(d: Path) -> list[str]:
    return sorted(os.listdir(d))


def temps(d: Path) -> list[str]:
    return sorted(n for n in os.listdir(d) if parse_temp_name(n) is not None)


@pytest.fixture
def umask022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(p.stdout)


# ----------------------------------------------------------------------------------------------
# Temporary names
# ----------------------------------------------------------------------------------------------

file_names = st.text(st.characters(exclude_characters="/\0", exclude_categories=()), min_size=1, max_size=300).filter(
    lambda s: s not in (".", "..")
)
pids = st.integers(1, 4_194_304)
hosts = st.text("0123456789abcdef", min_size=8, max_size=8)
tokens = st.text("0123456789abcdef", min_size=8, max_size=32)


@given(file_names, pids, hosts, tokens)
def test_temp_name_round_trips(name: str, pid: int, host: str, token: str) -> None:
    tmp = temp_name(name, pid=pid, host=host, token=token)
    assert parse_temp_name(tmp) == TempName(temp_stem(name), pid, host, token)
    assert is_temp_of(tmp, name) == parse_temp_name(tmp)
    assert "/" not in tmp
    assert "\0" not in tmp
    assert tmp.startswith(".")
    assert len(tmp.encode("utf-8", "surrogatepass")) <= 255  # fits in one directory entry
    assert len(temp_name(name).encode("utf-8", "surrogatepass")) <= 255


@given(file_names, file_names)
def test_temporaries_of_one_target_are_never_taken_for_another_s(a: str, b: str) -> None:
    if a == b:
        return
    assert temp_stem(a) != temp_stem(b)
    assert is_temp_of(temp_name(a), b) is None


@st.composite
def near_temp_names(draw: st.DrawFn) -> str:
    """Built temporary names with one character inserted, deleted or replaced somewhere."""
    name = temp_name(draw(file_names), pid=draw(pids), host=draw(hosts), token=draw(tokens))
    i = draw(st.integers(0, len(name)))
    c = draw(st.sampled_from("0a9fF-./~x\n"))
    edit = draw(st.sampled_from(["insert", "delete", "replace"]))
    if edit == "insert":
        return name[:i] + c + name[i:]
    return name[:i] + ("" if edit == "delete" else c) + name[i + 1 :]


@given(st.one_of(st.text(st.characters(exclude_categories=()), max_size=120), near_temp_names()))
def test_the_recogniser_accepts_exactly_the_built_form(text: str) -> None:
    t = parse_temp_name(text)
    if t is not None:
        assert text == f".{t.stem}{_files.TEMP_MARK}{t.pid}-{t.host}-{t.token}"
        assert temp_name("x", pid=t.pid, host=t.host, token=t.token).endswith(text[len(t.stem) + 1 :])


def test_long_and_hash_like_names_get_hashed_stems() -> None:
    long = "é" * 200  # 400 bytes: too long to carry whole
    stem = temp_stem(long)
    assert stem != long
    assert len(stem.encode()) <= 64 + 33
    assert temp_stem("x" * 160) == "x" * 160
    # A short name that looks like a hashed stem is hashed too, so it cannot be confused with one.
    assert temp_stem(stem) != stem
    assert is_temp_of(temp_name(long), stem) is None
    assert is_temp_of(temp_name(stem), long) is None


@pytest.mark.parametrize(
    "name",
    [
        ".x.ndckpt-tmp-12-00ff",  # the pre-host-tag form
        ".x.ndckpt-tmp-12-0badf00d-",
        ".x.ndckpt-tmp-012-0badf00d-0123456789abcdef",  # leading zero
        ".x.ndckpt-tmp-12-0BADF00D-0123456789abcdef",  # upper case
        ".x.ndckpt-tmp-12-0badf00d-0123456789abcdef.bak",
        "x.ndckpt-tmp-12-0badf00d-0123456789abcdef",  # no leading dot
        "..ndckpt-tmp-12-0badf00d-0123456789abcdef",  # empty stem
        ".x.ndckpt-tmp-12-0badf00d-0123456",  # token too short
    ],
)
def test_near_misses_are_not_temporaries(name: str) -> None:
    assert parse_temp_name(name) is None


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a\0b"])
def test_temp_name_refuses_what_is_not_a_file_name(bad: str) -> None:
    with pytest.raises(InvalidArgumentError):
        temp_name(bad)


def test_a_long_target_name_saves(tmp_path: Path) -> None:
    """A name of 250 bytes: its temporary name still fits (with the whole name it would not)."""
    path = tmp_path / ("n" * 250)
    ndckpt.save(path, ARRAYS)
    assert listing(tmp_path) == ["n" * 250]
    assert ndckpt.load(path)["a"].tolist() == ARRAYS["a"].tolist()


# ----------------------------------------------------------------------------------------------
# Planted files and links at the names a writer uses
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    p = tmp_path / "in.ndckpt"
    ndckpt.save(p, {"v": np.arange(10, dtype=np.int32)})
    return p


@pytest.mark.parametrize("out_name", ["v.npy", "all.npz"])
def test_cli_output_never_lands_at_a_link_planted_at_a_temporary_name(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str], out_name: str
) -> None:
    """Links at every name the old code used (``.OUT.tmp-PID``, this process) and at guesses
    of the new scheme: the output is a regular file at OUT, the links and their targets untouched."""
    work = tmp_path / "out"
    work.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    out = work / out_name
    planted = [f".{out_name}.tmp-{os.getpid()}", f".{out_name}.ndckpt-tmp-{os.getpid()}-00000000"]
    planted += [temp_name(out_name) for _ in range(200)]
    for name in planted:
        (work / name).symlink_to(victim)
    if out_name.endswith(".npy"):
        argv = ["extract", str(ckpt), "v", "-o", str(out)]
    else:
        argv = ["convert", str(ckpt), str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert victim.read_bytes() == b"precious"
    assert out.is_file()
    assert not out.is_symlink()
    got = np.load(out)
    v = got if isinstance(got, np.ndarray) else got["v"]
    assert v.tolist() == list(range(10))
    assert sorted(n for n in os.listdir(work) if n != out_name) == sorted(planted)
    assert all((work / n).is_symlink() and (work / n).resolve() == victim for n in planted)


def test_a_link_at_the_exact_temporary_name_is_refused_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even when the random part is guessed: O_EXCL refuses the name, the save fails cleanly."""
    target = tmp_path / "t.ndckpt"
    ndckpt.save(target, {"old": np.zeros(2)})
    old = target.read_bytes()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    monkeypatch.setattr(_files.secrets, "token_hex", lambda n: "ab" * n)
    link = tmp_path / temp_name("t.ndckpt")
    link.symlink_to(victim)
    with pytest.raises(CheckptIOError) as ei:
        ndckpt.save(target, ARRAYS)
    assert ei.value.errno == errno.EEXIST
    assert victim.read_bytes() == b"precious"
    assert target.read_bytes() == old
    assert link.is_symlink()


# ----------------------------------------------------------------------------------------------
# Stale temporaries of killed writers
# ----------------------------------------------------------------------------------------------

_KILLED_WRITER = """
import os, signal, sys, numpy as np, ndckpt
def die(done, total):
    if done:
        os.kill(os.getpid(), signal.SIGKILL)
ndckpt.save(sys.argv[1], {"a": np.ones(1 << 20), "b": np.ones(1 << 20)}, progress=die)
"""


def test_save_removes_temporaries_of_its_target_whose_writer_is_dead(tmp_path: Path) -> None:
    target = tmp_path / "t.ndckpt"
    ndckpt.save(target, {"old": np.zeros(2)})
    old = target.read_bytes()
    r = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(target)], capture_output=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()
    (left,) = temps(tmp_path)
    assert is_temp_of(left, target.name) is not None
    assert (tmp_path / left).stat().st_size > 0
    assert target.read_bytes() == old

    gone = dead_pid()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as sleeper:
        try:
            keep = {
                temp_name(target.name, pid=sleeper.pid): "a live writer",
                temp_name(target.name): "this process",
                temp_name(target.name, pid=gone, host="0badf00d"): "another host",
                temp_name("other.ndckpt", pid=gone): "another target",
                f".{target.name}.ndckpt-tmp-{gone}-0a0b0c0d": "the old form",
                f".{target.name}.ndckpt-tmp-{gone}-{_files.host_tag()}-0123456789abcdef.bak": "a near miss",
            }
            for name in keep:
                (tmp_path / name).write_bytes(b"partial")
            link = temp_name(target.name, pid=gone)
            (tmp_path / link).symlink_to(victim)
            subdir = temp_name(target.name, pid=gone)
            (tmp_path / subdir).mkdir()
            before = set(listing(tmp_path))
            ndckpt.save(target, ARRAYS)
        finally:
            sleeper.kill()
    assert set(listing(tmp_path)) == before - {left}
    assert victim.read_bytes() == b"precious"
    assert (tmp_path / link).is_symlink()
    assert all((tmp_path / n).read_bytes() == b"partial" for n in keep)
    assert ndckpt.load(target)["b"].tolist() == ARRAYS["b"].tolist()


def test_cli_output_removes_its_own_stale_temporaries(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "v.npy"
    stale = tmp_path / temp_name(out.name, pid=dead_pid())
    stale.write_bytes(b"partial")
    assert cli.main(["extract", str(ckpt), "v", "-o", str(out)]) == 0, capsys.readouterr().err
    assert not stale.exists()
    assert temps(tmp_path) == []


def test_pid_alive_never_signals_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """There os.kill(pid, 0) would terminate the process: every pid counts as alive."""
    gone = dead_pid()
    assert not _files.pid_alive(gone)

    def kill(pid: int, sig: int) -> None:
        raise AssertionError("os.kill called")

    monkeypatch.setattr(os, "name", "nt")
    monkeypatch.setattr(os, "kill", kill)
    assert _files.pid_alive(gone)


# ----------------------------------------------------------------------------------------------
# Permission bits
# ----------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("umask022")
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664, 0o755, 0o400])
def test_replacing_a_file_keeps_its_mode(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "m.ndckpt"
    ndckpt.save(target, {"old": np.zeros(2)})
    os.chmod(target, mode)
    ndckpt.save(target, ARRAYS)
    assert stat.S_IMODE(os.stat(target).st_mode) == mode
    assert list(ndckpt.load(target)) == ["a", "b"]


@pytest.mark.usefixtures("umask022")
def test_a_new_file_gets_0666_less_the_umask(tmp_path: Path) -> None:
    ndckpt.save(tmp_path / "n.ndckpt", ARRAYS)
    assert stat.S_IMODE(os.stat(tmp_path / "n.ndckpt").st_mode) == 0o644


@pytest.mark.usefixtures("umask022")
def test_cli_output_keeps_the_mode_of_the_file_it_replaces(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "v.npy"
    out.write_bytes(b"old")
    os.chmod(out, 0o600)
    assert cli.main(["extract", str(ckpt), "v", "-o", str(out)]) == 0, capsys.readouterr().err
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600


@pytest.mark.usefixtures("umask022")
def test_a_file_system_refusing_chmod_leaves_the_mode_narrower_never_wider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "m.ndckpt"
    ndckpt.save(target, {"old": np.zeros(2)})
    os.chmod(target, 0o666)

    def fchmod(fd: int, mode: int) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", fchmod)
    ndckpt.save(target, ARRAYS)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644


# ----------------------------------------------------------------------------------------------
# Symlink targets: written through, the link stays
# ----------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("umask022")
def test_a_link_to_a_file_is_written_through_atomically(tmp_path: Path) -> None:
    real_dir, link_dir = tmp_path / "real", tmp_path / "links"
    real_dir.mkdir()
    link_dir.mkdir()
    real = real_dir / "r.ndckpt"
    ndckpt.save(real, {"old": np.zeros(2)})
    os.chmod(real, 0o600)
    link = link_dir / "latest.ndckpt"
    link.symlink_to(os.path.relpath(real, link_dir))
    hop = link_dir / "hop.ndckpt"  # a chain of two links
    hop.symlink_to(link)
    ndckpt.save(hop, ARRAYS)
    assert os.readlink(hop) == str(link)
    assert link.is_symlink()
    assert hop.is_symlink()
    assert list(ndckpt.load(real)) == ["a", "b"]
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o600
    assert listing(real_dir) == ["r.ndckpt"]
    assert listing(link_dir) == ["hop.ndckpt", "latest.ndckpt"]


def test_a_dangling_link_creates_the_file_it_names(tmp_path: Path) -> None:
    link = tmp_path / "l.ndckpt"
    link.symlink_to("made.ndckpt")
    ndckpt.save(link, ARRAYS)
    assert link.is_symlink()
    assert (tmp_path / "made.ndckpt").is_file()
    assert list(ndckpt.load(link)) == ["a", "b"]
    assert listing(tmp_path) == ["l.ndckpt", "made.ndckpt"]


def test_a_dangling_link_into_a_missing_directory_fails_and_creates_nothing(tmp_path: Path) -> None:
    link = tmp_path / "l.ndckpt"
    link.symlink_to(tmp_path / "nowhere" / "x.ndckpt")
    with pytest.raises(CheckptIOError) as ei:
        ndckpt.save(link, ARRAYS)
    assert ei.value.errno == errno.ENOENT
    assert listing(tmp_path) == ["l.ndckpt"]


def test_a_link_to_a_directory_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    link = tmp_path / "l.ndckpt"
    link.symlink_to(d)
    with pytest.raises(InvalidArgumentError, match="is a directory"):
        ndckpt.save(link, ARRAYS)
    assert listing(tmp_path) == ["d", "l.ndckpt"]
    assert listing(d) == []


def test_a_link_loop_is_an_io_error(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(CheckptIOError) as ei:
        ndckpt.save(a, ARRAYS)
    assert ei.value.errno == errno.ELOOP
    assert listing(tmp_path) == ["a", "b"]


def test_cli_output_through_a_link(tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    real = tmp_path / "real.npy"
    real.write_bytes(b"old")
    link = tmp_path / "v.npy"
    link.symlink_to(real)
    assert cli.main(["extract", str(ckpt), "v", "-o", str(link)]) == 0, capsys.readouterr().err
    assert link.is_symlink()
    assert np.load(real).tolist() == list(range(10))


# ----------------------------------------------------------------------------------------------
# Failures: the temporary file goes, the old file stays
# ----------------------------------------------------------------------------------------------


class Boom(Exception):
    pass


def test_a_failure_inside_the_block_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "t.bin"
    target.write_bytes(b"old")
    seen: list[list[str]] = []

    def half_then_boom() -> None:
        with _files.open_output(target) as fd:
            os.write(fd, b"half of the new")
            seen.append(temps(tmp_path))
            raise Boom

    with pytest.raises(Boom):
        half_then_boom()
    assert len(seen[0]) == 1
    assert target.read_bytes() == b"old"
    assert listing(tmp_path) == ["t.bin"]


def test_a_save_failing_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "t.ndckpt"
    ndckpt.save(target, {"old": np.zeros(2)})
    old = target.read_bytes()

    def explode(done: int, total: int) -> None:
        if done:
            raise Boom

    with pytest.raises(Boom):
        ndckpt.save(target, {"a": np.ones(1 << 20), "b": np.ones(1 << 20)}, progress=explode)
    assert target.read_bytes() == old
    assert listing(tmp_path) == ["t.ndckpt"]


def test_cli_output_failing_mid_write_leaves_the_old_file(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "v.npy"
    out.write_bytes(b"old")

    def write_array(f: Any, arr: Any, **kw: Any) -> None:
        f.write(b"\x93NUMPY")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array", write_array)
    assert cli.main(["extract", str(ckpt), "v", "-o", str(out)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert out.read_bytes() == b"old"
    assert temps(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# Platform fallbacks
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["O_NOFOLLOW", "O_CLOEXEC", "O_DIRECTORY", "fchmod"])
def test_save_works_without_optional_os_features(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    target = tmp_path / "t.ndckpt"
    ndckpt.save(target, {"old": np.zeros(2)})
    os.chmod(target, 0o600)
    monkeypatch.delattr(os, missing)
    ndckpt.save(target, ARRAYS)
    assert list(ndckpt.load(target)) == ["a", "b"]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert listing(tmp_path) == ["t.ndckpt"]


def _dir_fsync_failing(monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    real = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(err, os.strerror(err))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("err", [errno.EINVAL, errno.EBADF])
def test_unsupported_directory_fsync_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    _dir_fsync_failing(monkeypatch, err)
    ndckpt.save(tmp_path / "t.ndckpt", ARRAYS)
    assert list(ndckpt.load(tmp_path / "t.ndckpt")) == ["a", "b"]


def test_a_directory_that_cannot_be_opened_is_not_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on Windows, where os.open of a directory fails."""
    real = os.open

    def open_(path: Any, flags: int, *a: Any, **kw: Any) -> int:
        if os.path.isdir(path):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", open_)
    ndckpt.save(tmp_path / "t.ndckpt", ARRAYS)
    assert list(ndckpt.load(tmp_path / "t.ndckpt")) == ["a", "b"]


def test_a_directory_fsync_io_error_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _dir_fsync_failing(monkeypatch, errno.EIO)
    with pytest.raises(CheckptIOError, match="fsync of directory") as ei:
        ndckpt.save(tmp_path / "t.ndckpt", ARRAYS)
    assert ei.value.errno == errno.EIO
    # The rename happened; only its durability is unknown.
    assert listing(tmp_path) == ["t.ndckpt"]
