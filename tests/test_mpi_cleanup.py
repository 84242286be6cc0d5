"""ndckpt.mpi.save(subfiles=M) deletes only its own old subfiles when it replaces a checkpoint.

The index a save replaces is read from disk, so its list of subfiles is untrusted:
a crafted list naming ``../victim``, an absolute path, a symbolic link or another
checkpoint's subfile must delete none of them, and ``ndckpt.verify`` (and
``ndckpt verify``) must report such a list. Runs the MPI side with mpiexec
(tests/mpi_scripts/replace_subfiled.py) as tests/test_mpi.py does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_mpi import mpirun, needs_mpi, ok

import ndckpt
from ndckpt import FormatError
from ndckpt._subfiles import INDEX_KEY, foreign_subfiles, removable_subfile


def saved_files(run: object) -> list[str]:
    (res,) = [r for r in ok(run).results if r.get("what") == "saved"]  # type: ignore[attr-defined]
    files = res["files"]
    assert isinstance(files, list)
    return files


@needs_mpi
def test_crafted_old_index_deletes_nothing_but_own_subfiles(tmp_path: Path) -> None:
    d = tmp_path / "ckpt"
    d.mkdir()
    first = saved_files(mpirun(2, "replace_subfiled.py", d))
    assert len(first) == 2
    assert all((d / n).is_file() for n in first)

    victims = {
        "dotdot": tmp_path / "victim",
        "absolute": tmp_path / "abs_victim",
        "linked": tmp_path / "linked_victim",
        "other": d / "other.ndckpt.0123abcd.sub0",  # another checkpoint's subfile, same directory
        "notours": d / "t.ndckpt.precious",  # the target's prefix, not our suffix
    }
    for name, p in victims.items():
        p.write_bytes(name.encode())
    link = d / "t.ndckpt.deadbeef.sub0"  # our form, but a symbolic link
    link.symlink_to(victims["linked"])
    own_old = d / "t.ndckpt.0badc0de.sub1"  # a leftover of this writer: may go
    own_old.write_bytes(b"old")
    index = d / "t.ndckpt"
    with ndckpt.open(index) as r:
        md = r.metadata
    crafted = [
        "../victim",
        str(victims["absolute"]),
        link.name,
        victims["other"].name,
        victims["notours"].name,
        "t.ndckpt.0badc0de.sub1/../../victim",
        own_old.name,
        *first,
    ]
    md[INDEX_KEY]["files"] = crafted
    ndckpt.save(index, {}, metadata=md)

    with pytest.raises(FormatError, match=r"subfile index lists '\.\./victim' and 4 more"):
        ndckpt.verify(index)
    cli = subprocess.run(
        [sys.executable, "-m", "ndckpt", "verify", str(index)], capture_output=True, text=True, timeout=60, check=False
    )
    assert cli.returncode == 1
    assert "FAILED: subfile index lists '../victim'" in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1, cli.stderr

    second = saved_files(mpirun(2, "replace_subfiled.py", d))
    for name, p in victims.items():
        assert p.read_bytes() == name.encode(), f"{name} victim {p} was touched"
    assert link.is_symlink()
    assert link.resolve() == victims["linked"]
    assert not own_old.exists()
    assert not any((d / n).exists() for n in first)
    assert all((d / n).is_file() for n in second)
    ndckpt.verify(index)
    assert np.array_equal(ndckpt.load(d / second[0])["blocks"]["0"]["u"], np.arange(8.0).reshape(1, 8))


# ----------------------------------------------------------------------------------------------
# The name rule itself (no MPI)
# ----------------------------------------------------------------------------------------------


def test_removable_names(tmp_path: Path) -> None:
    t = tmp_path / "run.ndckpt"
    assert removable_subfile(t, "run.ndckpt.0123abcd.sub0") == tmp_path / "run.ndckpt.0123abcd.sub0"
    assert removable_subfile(t, "run.ndckpt.0123abcd.sub12") is not None
    for bad in [
        "../run.ndckpt.0123abcd.sub0",
        str(tmp_path / "run.ndckpt.0123abcd.sub0"),
        "x/run.ndckpt.0123abcd.sub0",
        "run.ndckpt.0123abcd.sub0/..",
        "run.ndckpt.0123ABCD.sub0",  # the token is lowercase hex
        "run.ndckpt.0123abc.sub0",
        "run.ndckpt.0123abcd.sub01",
        "run.ndckpt.0123abcd.sub0\n",
        "other.ndckpt.0123abcd.sub0",
        "run.ndckpt",
        3,
        None,
        ["run.ndckpt.0123abcd.sub0"],
    ]:
        assert removable_subfile(t, bad) is None, bad
    (tmp_path / "run.ndckpt.0123abcd.sub1").symlink_to(tmp_path / "elsewhere")
    assert removable_subfile(t, "run.ndckpt.0123abcd.sub1") is None


@given(st.text(max_size=40))
def test_removable_only_inside_the_directory(name: str) -> None:
    t = Path("/some/dir/run.ndckpt")
    p = removable_subfile(t, "run.ndckpt." + name)
    if p is not None:
        assert p.parent == t.parent
        assert p.name == "run.ndckpt." + name
        assert "/" not in name
        assert "\\" not in name
        assert "\x00" not in name


def test_foreign_entries_of_malformed_indexes() -> None:
    assert foreign_subfiles(None, "t") == []
    assert foreign_subfiles({"x": 1}, "t") == []
    assert foreign_subfiles({INDEX_KEY: "junk"}, "t") == []
    assert foreign_subfiles({INDEX_KEY: {"files": ["t.0123abcd.sub0", 7, "../t.0123abcd.sub0"]}}, "t") == [
        7,
        "../t.0123abcd.sub0",
    ]
    assert foreign_subfiles({INDEX_KEY: {"files": ["u.0123abcd.sub0"]}}, None) == []
    assert foreign_subfiles({INDEX_KEY: {"files": ["/u.0123abcd.sub0"]}}, None) == ["/u.0123abcd.sub0"]


def test_verify_of_a_buffer_or_stream_reports_foreign_names() -> None:
    import io

    buf = io.BytesIO()
    ndckpt.save(buf, {}, metadata={INDEX_KEY: {"files": ["/etc/passwd"]}})
    with pytest.raises(FormatError, match="subfile index lists '/etc/passwd'"):
        ndckpt.verify(buf.getvalue())
    buf.seek(0)
    with pytest.raises(FormatError, match="subfile index lists '/etc/passwd'"):
        ndckpt.verify(buf)  # a stream
    cli = subprocess.run(
        [sys.executable, "-m", "ndckpt", "verify", "-"], input=buf.getvalue(), capture_output=True, timeout=60
    )
    assert cli.returncode == 1
    assert b"stdin: FAILED: subfile index lists '/etc/passwd'" in cli.stderr


@pytest.mark.parametrize("entry", ["../victim.ndckpt", "ABS", "sub/dir.0123abcd.sub0"])
def test_load_opens_no_file_outside_the_index_form(tmp_path: Path, entry: str) -> None:
    # A crafted index naming a readable checkpoint elsewhere: loading it must not read that file.
    d = tmp_path / "ckpt"
    (d / "sub").mkdir(parents=True)
    victim = tmp_path / "victim.ndckpt"
    ndckpt.save(victim, {"private": {"0": {"x": np.arange(3)}}})
    if entry == "ABS":
        entry = str(victim)
    else:
        ndckpt.save(d / entry, {"private": {"0": {"x": np.arange(3)}}})
    desc = {"files": [entry], "nranks": 1, "rank_file": [0], "private": ["x"], "global": []}
    index = d / "t.ndckpt"
    ndckpt.save(index, {}, metadata={INDEX_KEY: desc})
    from ndckpt.mpi._loading import load_local

    with pytest.raises(FormatError, match="subfile index lists"):
        load_local(0, 1, index, None, None)


@needs_mpi
def test_collective_save_keeps_mode_and_writes_through_a_symlink(tmp_path: Path) -> None:
    # ndckpt.mpi.save replaces its target as ndckpt.save does: same mode, a link stays a link.
    real = tmp_path / "data" / "real.ndckpt"
    real.parent.mkdir()
    ndckpt.save(real, {"old": np.zeros(1)})
    real.chmod(0o600)
    link = tmp_path / "t.ndckpt"
    link.symlink_to(real)
    ok(mpirun(2, "save_plain.py", link))
    assert link.is_symlink()
    assert link.resolve() == real.resolve()
    assert (real.stat().st_mode & 0o777) == 0o600
    np.testing.assert_array_equal(ndckpt.load(link)["u"], np.arange(16.0).reshape(2, 8))
    assert sorted(p.name for p in real.parent.iterdir()) == ["real.ndckpt"]  # no temporary left
