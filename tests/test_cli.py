"""The ``ndckpt`` command line: info, verify, extract, convert, bench, errors, progress bars.

Most cases call :func:`ndckpt.cli.main` in-process (fast; capsys's stderr is not
a terminal, so no bar); a few run the installed console script and
``python -m ndckpt`` in subprocesses, and the progress bar is checked on a
pseudo-terminal.
"""

from __future__ import annotations

import io
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_same_array, assert_same_value, flat, run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import arrays as array_strategy
from strategies import keys

import ndckpt
from ndckpt import cli
from ndckpt._progress import BAR_WIDTH, MIN_INTERVAL, ProgressBar, format_bytes, progress_bar

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).with_name("ndckpt")


def run_cmd(*argv: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """The installed console script with ``argv``; stdout/stderr captured (not terminals)."""
    assert SCRIPT.exists(), f"console script not installed at {SCRIPT} (pip install -e . declares it)"
    return subprocess.run([str(SCRIPT), *argv], input=stdin, capture_output=True, timeout=120, cwd=cwd, check=False)


def one_line(err: str) -> str:
    """Assert ``err`` is exactly one line without a traceback; return it."""
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def tree() -> dict[str, Any]:
    rng = np.random.default_rng(7)
    return {
        "fields": {"u": rng.standard_normal((64, 96)), "v": np.asfortranarray(rng.random((40, 30), np.float32))},
        "counts": np.cumsum(rng.integers(0, 3, 300_000)).astype(np.int64),  # compressible, > one 4 KiB page
        "mask": (rng.random(5000) > 0.5).astype(np.uint8),
        "step": np.int64(1234),
        "empty": np.zeros((0, 3), np.int16),
    }


STYLES = {"counts": "lz4", "mask": "lz4"}


@pytest.fixture
def ckpt(tmp_path: Path, tree: dict[str, Any]) -> Path:
    p = tmp_path / "state.ndckpt"
    ndckpt.save(p, tree, style=STYLES, metadata={"run": "test", "step": 1234})
    return p


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


# ----------------------------------------------------------------------------------------------
# info
# ----------------------------------------------------------------------------------------------


def test_info_table(capsys: pytest.CaptureFixture[str], ckpt: Path, tree: dict[str, Any]) -> None:
    code, out, err = run_main(capsys, "info", str(ckpt))
    assert code == 0
    assert err == ""
    assert "ndckpt format version 2" in out
    assert '{"run": "test", "step": 1234}' in out
    lines = out.splitlines()
    assert lines[3] == "values    1 (Python values and numpy scalars, stored in the head)"
    assert lines[4] == "  step  np.int64  np.int64(1234)"
    assert lines[5] == ""
    assert lines[6].split() == ["name", "dtype", "shape", "style", "raw", "stored", "ratio", "frames"]
    rows = {line.split()[0]: line.split() for line in lines[7:]}
    assert set(rows) == {"fields/u", "fields/v", "counts", "mask", "empty"}
    assert rows["fields/u"][:4] == ["fields/u", "float64", "(64,", "96)"]
    assert rows["counts"][2:4] == ["(300000,)", "lz4"]
    with ndckpt.open(ckpt) as r:
        info = {row["name"]: row for row in r.info()}
    # ratio column = raw / stored, as computed from the reader's numbers
    c = info["counts"]
    assert rows["counts"][8] == f"{c['nbytes'] / c['stored_nbytes']:.2f}"
    assert float(rows["counts"][8]) > 2  # LZ4 compresses the counters
    assert rows["empty"][-1] == "-"  # no frames for an empty array


def test_info_json_matches_reader(capsys: pytest.CaptureFixture[str], ckpt: Path) -> None:
    code, out, _ = run_main(capsys, "info", "--json", str(ckpt))
    assert code == 0
    doc = json.loads(out)
    with ndckpt.open(ckpt) as r:
        want = r.info()
        assert doc["metadata"] == r.metadata
        assert doc["file_nbytes"] == r.nbytes == ckpt.stat().st_size
    assert doc["format_version"] == 2
    assert doc["arrays"] == [{**w, "shape": list(w["shape"])} for w in want]
    assert doc["nframes"] == len({f for w in want for f in w["frames"]})


def test_info_reads_only_head_and_index(capsys: pytest.CaptureFixture[str], ckpt: Path) -> None:
    """A corrupt data frame does not bother info (it never reads data); verify finds it."""
    with ndckpt.open(ckpt) as r:
        off = next(row for row in r.info() if row["name"] == "fields/u")["offsets"][0]
    flip(ckpt, off + 100)
    code, out, _ = run_main(capsys, "info", str(ckpt))
    assert code == 0
    assert "fields/u" in out
    code, _, err = run_main(capsys, "verify", str(ckpt))
    assert code == 1
    assert "fields/u" in err


# ----------------------------------------------------------------------------------------------
# verify
# ----------------------------------------------------------------------------------------------


def test_verify_ok(capsys: pytest.CaptureFixture[str], ckpt: Path) -> None:
    code, out, err = run_main(capsys, "verify", str(ckpt))
    assert code == 0
    assert err == ""
    assert out.startswith(f"{ckpt}: OK: 5 arrays")  # and the numpy scalar "step", a value in the head


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["fields/u", "fields/v", "counts", "mask"]), at=st.integers(0, 10**9))
def test_verify_names_array_frame_and_offset(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tree: dict[str, Any], which: str, at: int
) -> None:
    p = tmp_path / "v.ndckpt"
    ndckpt.save(p, tree, style=STYLES)
    with ndckpt.open(p) as r:
        row = next(row for row in r.info() if row["name"] == which)
    span = row["nbytes"] if row["style"] == "raw" else row["stored_nbytes"]
    # A byte inside the array's stored bytes: RAW arrays are contiguous from their first offset;
    # for LZ4, stay inside the first frame's stored bytes.
    frame_i = 0 if row["style"] == "lz4" else (at % span) // (4 << 20)
    offset = row["offsets"][0] + (at % (span if row["style"] == "raw" else min(span, 4096)))
    flip(p, offset)
    code, out, err = run_main(capsys, "verify", str(p))
    line = one_line(err)
    assert code == 1
    assert out == ""
    assert f"frame {row['frames'][frame_i]} at offset {row['offsets'][frame_i]}" in line
    assert repr(which) in line
    assert line.startswith(f"ndckpt verify: {p}: FAILED: ")


def test_verify_structural_damage(capsys: pytest.CaptureFixture[str], ckpt: Path) -> None:
    data = ckpt.read_bytes()
    (ckpt.parent / "trunc.ndckpt").write_bytes(data[: len(data) // 2])
    code, _, err = run_main(capsys, "verify", str(ckpt.parent / "trunc.ndckpt"))
    assert code == 1
    assert "FAILED" in one_line(err)
    flip(ckpt, 40)  # inside the JSON head
    code, _, err = run_main(capsys, "verify", str(ckpt))
    assert code == 1
    assert "head" in one_line(err)


def test_verify_stdin(ckpt: Path) -> None:
    good = ckpt.read_bytes()
    r = run_cmd("verify", "-", stdin=good)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"stdin: OK")
    with ndckpt.open(ckpt) as rd:
        off = next(row for row in rd.info() if row["name"] == "counts")["offsets"][0]
    bad = bytearray(good)
    bad[off + 10] ^= 1
    r = run_cmd("verify", "-", stdin=bytes(bad))
    line = one_line(r.stderr.decode())
    assert r.returncode == 1
    assert "'counts'" in line
    assert "frame" in line


# ----------------------------------------------------------------------------------------------
# extract
# ----------------------------------------------------------------------------------------------


def test_extract(capsys: pytest.CaptureFixture[str], ckpt: Path, tree: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "v.npy"
    code, stdout, err = run_main(capsys, "extract", str(ckpt), "fields/v", "-o", str(out))
    assert code == 0
    assert err == ""
    assert str(out) in stdout
    assert_same_array(np.load(out), tree["fields"]["v"])  # Fortran order kept
    code, _, _ = run_main(capsys, "extract", str(ckpt), "counts", "-o", str(out))  # LZ4
    assert code == 0
    assert_same_array(np.load(out), tree["counts"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".v.npy.")] == []  # no temporary file left


def test_extract_default_name(
    capsys: pytest.CaptureFixture[str],
    ckpt: Path,
    tree: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, _ = run_main(capsys, "extract", str(ckpt), "fields/u")
    assert code == 0
    assert_same_array(np.load(tmp_path / "fields_u.npy"), tree["fields"]["u"])
    code, _, _ = run_main(capsys, "extract", str(ckpt), "step")
    assert code == 0
    assert np.load(tmp_path / "step.npy") == 1234


def test_extract_unknown_array(capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path) -> None:
    code, out, err = run_main(capsys, "extract", str(ckpt), "nope", "-o", str(tmp_path / "x.npy"))
    line = one_line(err)
    assert code == 1
    assert out == ""
    assert "no array named 'nope'" in line
    assert "fields/u" in line
    assert not (tmp_path / "x.npy").exists()


def test_extract_refuses_corrupt_array(capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path) -> None:
    with ndckpt.open(ckpt) as r:
        off = next(row for row in r.info() if row["name"] == "fields/u")["offsets"][0]
    flip(ckpt, off)
    code, _, err = run_main(capsys, "extract", str(ckpt), "fields/u", "-o", str(tmp_path / "u.npy"))
    assert code == 1
    assert "checksum" in one_line(err)
    assert not (tmp_path / "u.npy").exists()
    code, _, _ = run_main(capsys, "extract", str(ckpt), "mask", "-o", str(tmp_path / "m.npy"))
    assert code == 0  # other arrays are still readable


# ----------------------------------------------------------------------------------------------
# convert
# ----------------------------------------------------------------------------------------------


def test_convert_ndckpt_npz_roundtrip(
    capsys: pytest.CaptureFixture[str], ckpt: Path, tree: dict[str, Any], tmp_path: Path
) -> None:
    npz, back = tmp_path / "a.npz", tmp_path / "back.ndckpt"
    code, out, _ = run_main(capsys, "convert", str(ckpt), str(npz))
    assert code == 0
    assert "6 arrays" in out
    with np.load(npz) as z:
        assert sorted(z.files) == sorted(flat(tree))
        for name, want in flat(tree).items():
            assert_same_array(z[name], np.asarray(want), name)
    code, _, _ = run_main(capsys, "convert", str(npz), str(back), "--style", "lz4")
    assert code == 0
    with ndckpt.open(back) as r:
        assert {row["style"] for row in r.info() if row["nbytes"]} == {"lz4"}
        got = r.load()
    for name, want in flat(tree).items():
        assert_same_array(flat(got)[name], np.asarray(want), name)


def test_convert_ndckpt_restyle_keeps_metadata(
    capsys: pytest.CaptureFixture[str], ckpt: Path, tree: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "raw.ndckpt"
    code, _, _ = run_main(capsys, "convert", str(ckpt), str(out), "--style", "raw")
    assert code == 0
    with ndckpt.open(out) as r:
        assert r.metadata == {"run": "test", "step": 1234}
        assert {row["style"] for row in r.info()} == {"raw"}
        for name, want in flat(tree).items():
            if isinstance(want, np.ndarray):
                assert_same_array(r[name], want, name)
            else:
                assert_same_value(r[name], want, name)


def test_convert_to_filtered_styles_and_info_shows_each_arrays_filter(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    smooth = np.sin(np.arange(1_200_000) / 5000.0) * 1000 + 300  # 3 frames of float64
    mixed = np.concatenate([smooth[:524_288], np.where(np.arange(524_288) % 9973 == 0, 1.0, 0.0)])
    src = tmp_path / "in.ndckpt"
    ndckpt.save(src, {"s": smooth, "m": mixed, "i": np.arange(5000, dtype="i2")})
    out = tmp_path / "out.ndckpt"
    code, _, _ = run_main(
        capsys, "convert", str(src), str(out), "--style", "auto", "--style", "s=lz4+delta", "--style", "i=lz4+shuffle"
    )
    assert code == 0
    with ndckpt.open(out) as r:
        styles = {row["name"]: row["style"] for row in r.info()}
        assert_same_array(r["s"], smooth)
        assert_same_array(r["m"], mixed)
    assert styles["s"] == "lz4+delta/8"
    assert styles["i"] == "lz4+shuffle/2"
    assert styles["m"].startswith("auto: ")  # a smooth frame (filtered) and a spiky one (plain LZ4)
    assert "lz4 x1" in styles["m"]
    code, text, _ = run_main(capsys, "info", str(out))
    assert code == 0
    rows = {line.split()[0]: line for line in text.splitlines() if line.split()[:1] in (["s"], ["m"], ["i"])}
    assert "lz4+delta/8" in rows["s"]
    assert styles["m"] in rows["m"]
    with pytest.raises(SystemExit) as e:
        run_main(capsys, "convert", str(src), str(tmp_path / "x.ndckpt"), "--style", "lz4+zstd")
    assert e.value.code == 2
    assert "lz4+shuffle, lz4+delta, auto" in capsys.readouterr().err


def test_convert_npy(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    np.save(tmp_path / "grid.npy", a)
    code, _, _ = run_main(capsys, "convert", str(tmp_path / "grid.npy"), str(tmp_path / "g.ndckpt"))
    assert code == 0
    with ndckpt.open(tmp_path / "g.ndckpt") as r:
        assert r.names() == ["grid"]
    code, _, _ = run_main(capsys, "convert", str(tmp_path / "g.ndckpt"), str(tmp_path / "again.npy"))
    assert code == 0
    assert_same_array(np.load(tmp_path / "again.npy"), a)


# The .npy format cannot describe every dtype ndckpt stores (out-of-order structured fields), so the
# round trip uses the dtypes both sides share; keys are flat names, as in an npz.
@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    arrays=st.dictionaries(keys(), array_strategy(), min_size=1, max_size=4),
    fortran=st.booleans(),
    style=st.sampled_from(["raw", "lz4"]),
)
def test_convert_roundtrip_property(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, arrays: dict[str, Any], fortran: bool, style: str
) -> None:
    if fortran:
        arrays = {k: np.asfortranarray(v) for k, v in arrays.items()}
    src, mid, dst = tmp_path / "in.npz", tmp_path / "mid.ndckpt", tmp_path / "out.npz"
    np.savez(src, **arrays)
    assert cli.main(["convert", str(src), str(mid), "--style", style]) == 0
    assert cli.main(["convert", str(mid), str(dst)]) == 0
    capsys.readouterr()
    with np.load(dst) as z:
        assert sorted(z.files) == sorted(arrays)
        for k, v in arrays.items():
            assert_same_array(z[k], v, k)


def test_convert_stdout_stdin_pipe(ckpt: Path, tree: dict[str, Any], tmp_path: Path) -> None:
    """ndckpt -> stdout -> ndckpt on stdin -> npz: streams through a pipe, bytes unchanged."""
    r = run_cmd("convert", str(ckpt), "-", "--style", "lz4")
    assert r.returncode == 0, r.stderr
    assert r.stderr == b""  # not a terminal: no progress bar
    stream = r.stdout
    assert ndckpt.load(stream)["step"] == 1234
    r2 = run_cmd("convert", "-", str(tmp_path / "p.npz"), stdin=stream)
    assert r2.returncode == 0, r2.stderr
    with np.load(tmp_path / "p.npz") as z:
        assert_same_array(z["counts"], tree["counts"])


def test_convert_user_errors(capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros(3))
    np.savez(tmp_path / "objs.npz", o=np.array([{"x": 1}], dtype=object))
    (tmp_path / "junk.bin").write_bytes(b"hello world")
    with zipfile.ZipFile(tmp_path / "notes.npz", "w") as zf:
        zf.writestr("readme.txt", "not an array")
    cases = [
        (["convert", str(tmp_path / "missing.npz"), str(tmp_path / "o.ndckpt")], "no such file"),
        (["convert", str(tmp_path / "junk.bin"), str(tmp_path / "o.ndckpt")], "not an ndckpt, .npy or .npz"),
        (["convert", str(tmp_path / "a.npy"), str(tmp_path / "o.npz")], "one side must be an ndckpt file"),
        (["convert", str(ckpt), str(tmp_path / "o.npy")], "holds 6 arrays"),
        (["convert", str(ckpt), str(tmp_path / "o.npz"), "--style", "lz4"], "--style applies to ndckpt output"),
        (["convert", str(tmp_path / "objs.npz"), str(tmp_path / "o.ndckpt")], "array 'o' holds Python objects"),
        (["convert", str(ckpt), str(tmp_path)], "is a directory"),
        (["convert", str(tmp_path / "notes.npz"), str(tmp_path / "o.ndckpt")], "'readme.txt' is not a .npy array"),
    ]
    for argv, text in cases:
        code, _out, err = run_main(capsys, *argv)
        line = one_line(err)
        assert code == 1, (argv, line)
        assert text in line, (argv, line)
        assert line.startswith("ndckpt convert: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "junk.bin", "notes.npz", "objs.npz", "state.ndckpt"]


def test_convert_unstorable_dtype_to_npz(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    odd = np.dtype({"names": ["y", "x"], "formats": ["<f2", "u1"], "offsets": [6, 1], "itemsize": 9})
    ndckpt.save(tmp_path / "odd.ndckpt", {"s": np.zeros(4, odd)})
    code, _, err = run_main(capsys, "convert", str(tmp_path / "odd.ndckpt"), str(tmp_path / "odd.npz"))
    assert code == 1
    assert "array 's'" in one_line(err)
    assert "cannot be stored in a .npy file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.ndckpt"]  # no partial output left


# ----------------------------------------------------------------------------------------------
# User errors, help, entry points
# ----------------------------------------------------------------------------------------------


def test_user_errors_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, ckpt: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "empty").write_bytes(b"")
    cases = [
        (["info", str(tmp_path / "missing")], "no such file"),
        (["verify", str(tmp_path / "missing")], "no such file"),
        (["extract", str(tmp_path / "missing"), "x"], "no such file"),
        (["info", str(tmp_path / "a.npy")], "not an ndckpt file"),
        (["info", str(tmp_path / "empty")], "not an ndckpt file"),
        (["info", str(tmp_path)], "is a directory"),
        (["verify", str(tmp_path)], "not a regular file"),
    ]
    for argv, text in cases:
        code, out, err = run_main(capsys, *argv)
        line = one_line(err)
        assert (code, out) == (1, ""), (argv, line)
        assert text in line, (argv, line)
        assert line.startswith(f"ndckpt {argv[0]}: ")
    code, _, err = run_main(capsys, "info", str(tmp_path / "a.npy"))
    assert "'ndckpt convert" in err  # a hint for numpy files


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["frobnicate"], ["extract", "only-one-arg"], ["convert", "a", "b", "--style", "zstd"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
        assert "usage: ndckpt" in capsys.readouterr().err


@pytest.mark.parametrize("command", [None, "info", "verify", "extract", "convert", "demo", "bench"])
def test_help(capsys: pytest.CaptureFixture[str], command: str | None) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"] if command else ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ndckpt {command or ''}".rstrip())
    assert len(out.splitlines()) > 3


def test_console_script_and_module(ckpt: Path) -> None:
    r1 = run_cmd("info", str(ckpt))
    r2 = subprocess.run(
        [sys.executable, "-m", "ndckpt", "info", str(ckpt)], capture_output=True, timeout=120, check=False
    )
    assert r1.returncode == r2.returncode == 0
    assert r1.stdout == r2.stdout
    assert b"fields/u" in r1.stdout
    v = run_cmd("--version")
    assert v.stdout.strip() == f"ndckpt {ndckpt.__version__}".encode()
    bad = run_cmd("info", str(ckpt.parent / "missing.ndckpt"))
    assert bad.returncode == 1
    assert bad.stdout == b""
    assert one_line(bad.stderr.decode()).startswith("ndckpt info: no such file")


def test_broken_pipe_is_quiet(ckpt: Path) -> None:
    with subprocess.Popen([str(SCRIPT), "info", str(ckpt)], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        assert p.stdout is not None
        assert p.stderr is not None
        p.stdout.close()  # the reader goes away before the table is printed
        err = p.stderr.read()
        p.wait(timeout=60)
    assert err == b""


# ----------------------------------------------------------------------------------------------
# bench
# ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not (REPO / "benchmarks" / "peers.py").is_file(), reason="benchmarks/peers.py not in this tree")
def test_bench_runs_suite_with_args() -> None:
    assert cli.bench_script() == REPO / "benchmarks" / "peers.py"
    r = run_cmd("bench", "--list-peers")
    assert r.returncode == 0, r.stderr
    assert b"ndckpt_raw_t1" in r.stdout
    assert b"np.save" in r.stdout
    r = run_cmd("bench", "--", "--help")
    assert r.returncode == 0
    assert b"usage: peers.py" in r.stdout


def test_bench_outside_source_tree(tmp_path: Path) -> None:
    """An installed package without benchmarks/ beside it: one line, exit 2."""
    shutil.copytree(REPO / "ndckpt", tmp_path / "ndckpt", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, "-m", "ndckpt", "bench", "--quick"],
        capture_output=True, timeout=120, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert r.returncode == 2
    line = one_line(r.stderr.decode())
    assert "ships with the source repository" in line
    assert line.startswith("ndckpt bench: ")


# ----------------------------------------------------------------------------------------------
# Progress: no bar off a terminal, a bar on one
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def big(tmp_path: Path) -> Path:
    p = tmp_path / "big.ndckpt"
    rng = np.random.default_rng(1)
    ndckpt.save(p, {"a": rng.random(3 << 20), "b": np.arange(2 << 20)}, style={"b": "lz4"})  # 40 MiB, 10 frames
    return p


def test_no_progress_when_not_a_terminal(big: Path, tmp_path: Path) -> None:
    for argv in (["verify", str(big)], ["convert", str(big), str(tmp_path / "o.npz")],
                 ["convert", str(tmp_path / "o.npz"), str(tmp_path / "o.ndckpt")]):  # fmt: skip
        r = run_cmd(*argv)
        assert r.returncode == 0, r.stderr
        assert r.stderr == b"", r.stderr
        assert b"\r" not in r.stdout


def run_on_pty(*argv: str) -> tuple[int, bytes, bytes]:
    """Run the console script with stderr on a pseudo-terminal; (status, stdout, terminal bytes)."""
    master, slave = pty.openpty()
    seen = b""
    try:
        with subprocess.Popen(
            [str(SCRIPT), *argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave
        ) as p:
            os.close(slave)
            slave = -1
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 1.0)
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
            assert p.stdout is not None
            out = p.stdout.read()
            code = p.wait(timeout=60)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return code, out, seen


def test_progress_bar_on_a_terminal(big: Path, tmp_path: Path) -> None:
    code, out, tty = run_on_pty("verify", str(big))
    assert code == 0
    assert out.startswith(f"{big}: OK".encode())
    assert tty.startswith(b"\rverif")  # shortened in the middle at 80 columns
    assert big.name.encode() + b"  [" in tty  # a long label keeps its end (the file name)
    assert b"100%" in tty
    assert b"40.0 MiB/40.0 MiB" in tty
    assert tty.endswith(b"\r\n")  # the line is ended once finished (the pty maps \n to \r\n)
    code, _, tty = run_on_pty("convert", str(big), str(tmp_path / "x.ndckpt"), "--style", "lz4")
    assert code == 0
    assert b"\rread ..." in tty
    assert b"/big.ndckpt  [" in tty
    assert b"\rwrite..." in tty
    assert b"/x.ndckpt  [" in tty
    assert b"syncing" in tty  # the write bar shows the fsync phase
    assert tty.count(b"\n") == 2  # one line per bar


# ----------------------------------------------------------------------------------------------
# _progress unit tests
# ----------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class TTYBuffer(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_render_and_throttle() -> None:
    clock, s = FakeClock(), io.StringIO()
    bar = ProgressBar("save x", s, clock=clock, width=lambda: 100)
    bar(0, 1000)
    clock.t += MIN_INTERVAL / 2
    bar(500, 1000)  # too soon: not drawn
    assert s.getvalue().count("\r") == 1
    clock.t += MIN_INTERVAL
    bar(500, 1000)
    clock.t += MIN_INTERVAL / 10
    bar(1000, 1000)  # the final state is always drawn
    bar.close()
    bar(1000, 1000)  # ignored after close
    frames = s.getvalue().split("\r")[1:]
    assert len(frames) == 4  # 0%, 50%, 100%, and the finished line redrawn by close
    assert frames[0].startswith("save x  [>" + " " * (BAR_WIDTH - 1) + "]   0%     0 B/1000 B")
    assert "ETA --:--" in frames[0]  # no rate yet
    assert "[" + "=" * (BAR_WIDTH // 2) + ">" in frames[1]
    assert " 50%   500 B/1000 B" in frames[1]
    assert "/s  ETA 0:00" in frames[1]
    assert frames[2].startswith("save x  [" + "=" * BAR_WIDTH + "] 100%  1000 B/1000 B")
    assert "B/s  in 0:00" in frames[2]
    assert frames[3].startswith(frames[2].rstrip())
    assert frames[3].endswith("\n")


def test_progress_bar_pads_shorter_lines() -> None:
    s = io.StringIO()
    bar = ProgressBar("x", s, clock=FakeClock())
    bar._draw("a long line", 80)
    bar._draw("short", 80)
    bar._draw("a long line", 80)
    bar._draw("tiny", 6)  # the terminal shrank: blank up to its width - 1, never past it
    assert s.getvalue() == "\ra long line\rshort      \ra long line\rtiny "


@given(done=st.integers(-10, 10**13), total=st.integers(0, 10**13), elapsed=st.floats(0, 1e4))
@settings(max_examples=200)
def test_progress_render_property(done: int, total: int, elapsed: float) -> None:
    line = ProgressBar("L", io.StringIO()).render(done, total, elapsed, 200)
    inner = line[line.index("[") + 1 : line.index("]")]
    assert len(inner) == BAR_WIDTH
    pct = int(line[line.index("]") + 1 : line.index("%")])
    assert 0 <= pct <= 100
    clamped = max(0, min(done, total))
    assert inner.count("=") == (int(clamped / total * BAR_WIDTH) if total else BAR_WIDTH)


def test_progress_bar_only_on_terminals() -> None:
    assert progress_bar("x", io.StringIO()) is None
    assert isinstance(progress_bar("x", TTYBuffer()), ProgressBar)
    closed = io.StringIO()
    closed.close()
    assert progress_bar("x", closed) is None


def test_progress_bar_close_without_draw_writes_nothing() -> None:
    s = TTYBuffer()
    ProgressBar("x", s).close()
    assert s.getvalue() == ""


def test_format_bytes() -> None:
    assert format_bytes(0) == "0 B"
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(1024) == "1.0 KiB"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(40 << 20) == "40.0 MiB"
    assert format_bytes(3 << 40) == "3.0 TiB"
    assert format_bytes(5000 << 40) == "5000.0 TiB"


def test_library_progress_feeds_bar(tmp_path: Path) -> None:
    """The library's callback drives the bar through save, load and verify to 100%."""
    s = TTYBuffer()
    a = {"a": np.arange(3 << 20, dtype=np.float64)}  # 24 MiB: several frames
    for op in ("save", "load", "verify"):
        bar = ProgressBar(op, s)
        if op == "save":
            ndckpt.save(tmp_path / "p.ndckpt", a, progress=bar)
        elif op == "load":
            ndckpt.load(tmp_path / "p.ndckpt", mmap=False, progress=bar)
        else:
            ndckpt.verify(tmp_path / "p.ndckpt", progress=bar)
        bar.close()
        last = s.getvalue().split("\r")[-1]
        assert " 100%  24.0 MiB/24.0 MiB" in last, (op, last)
        assert last.endswith("\n"), (op, last)
        assert s.getvalue().count("\r") >= 2, op  # a first 0% line, then more
        s.seek(0)
        s.truncate()


def test_zip_members_written_stored(capsys: pytest.CaptureFixture[str], ckpt: Path, tmp_path: Path) -> None:
    """The npz convert writes is numpy's own layout: uncompressed .npy members named after the arrays."""
    assert cli.main(["convert", str(ckpt), str(tmp_path / "a.npz")]) == 0
    capsys.readouterr()
    with zipfile.ZipFile(tmp_path / "a.npz") as zf:
        infos = zf.infolist()
    assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
    assert sorted(i.filename for i in infos) == sorted(f"{n}.npy" for n in flat_names(ckpt))


def flat_names(p: Path) -> list[str]:
    with ndckpt.open(p) as r:
        return r.names()
