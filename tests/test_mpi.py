"""ndckpt.mpi: checkpoints written and read by several MPI ranks.

The MPI side runs in scripts under ``tests/mpi_scripts/``, launched here with
``mpiexec -n K python -m mpi4py`` (which aborts the job on an uncaught
exception, so a failing rank never leaves the others waiting) under a
timeout; they report JSON lines. This process never initialises MPI: it
checks the files with plain ``ndckpt`` (one process reading what N ranks
wrote). 3 ranks on 2 cores is fine: ndckpt.mpi polls with sleeps.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from helpers import MPI_EXTRA, mpiexec
from hypothesis import given, settings
from hypothesis import strategies as st

import ndckpt
from ndckpt import CheckpointManager, FormatError, FrameStyle

SCRIPTS = Path(__file__).parent / "mpi_scripts"


def _load_common() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mpi_scripts_common", SCRIPTS / "_common.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


common = _load_common()


MPIEXEC, _WHY = mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason=_WHY)


class Run:
    def __init__(self, rc: int, results: list[dict[str, Any]], output: str, seconds: float) -> None:
        self.rc, self.results, self.output, self.seconds = rc, results, output, seconds

    def by_rank(self) -> dict[int, dict[str, Any]]:
        return {r["rank"]: r for r in self.results if "rank" in r}


def mpirun(n: int, script: str, *args: Any, timeout: float = 90) -> Run:
    """Run ``script`` on ``n`` ranks; fail the test if the job is still running after ``timeout`` s."""
    assert MPIEXEC is not None
    cmd = [MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", str(SCRIPTS / script), *map(str, args)]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=SCRIPTS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{script} {args} on {n} ranks hung for {timeout} s:\n{out[-3000:]}")
    results = [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]
    return Run(proc.returncode, results, out, time.monotonic() - t0)


def mpirun_aborting(n: int, script: str, *args: Any, timeout: float = 60) -> Run:
    """``mpirun`` for jobs that end by a kill or MPI_Abort, then remove the shared-memory segments
    MPICH leaves in /dev/shm when its processes cannot finalize (those that appeared meanwhile)."""
    shm = Path("/dev/shm")
    before = set(shm.glob("mpich_shm_*")) if shm.is_dir() else set()
    try:
        return mpirun(n, script, *args, timeout=timeout)
    finally:
        for p in (set(shm.glob("mpich_shm_*")) - before) if shm.is_dir() else ():
            p.unlink(missing_ok=True)


def ok(run: Run) -> Run:
    assert run.rc == 0, run.output[-4000:]
    return run


# ----------------------------------------------------------------------------------------------
# Without mpi4py
# ----------------------------------------------------------------------------------------------


def test_without_mpi4py_import_names_the_extra(tmp_path: Path) -> None:
    code = f"""
import sys
sys.modules["mpi4py"] = None  # as if it were not installed
import numpy as np, ndckpt
ndckpt.save({str(tmp_path / "a.ndckpt")!r}, {{"x": np.arange(3)}})
assert ndckpt.load({str(tmp_path / "a.ndckpt")!r})["x"].tolist() == [0, 1, 2]
for attempt in ("import ndckpt.mpi", "ndckpt.CheckpointManager({str(tmp_path)!r}, comm=object())"):
    try:
        exec(attempt)
    except ImportError as e:
        print("ImportError:", e)
    else:
        print("imported")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    lines = out.splitlines()
    assert len(lines) == 2, out
    assert all(line.startswith("ImportError:") and MPI_EXTRA in line for line in lines), out


# ----------------------------------------------------------------------------------------------
# Round trips: written by 1, 2 and 3 ranks, read by 1, 2 and 3 ranks and by one plain process
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, Run]]:
    if MPIEXEC is None:
        pytest.skip(_WHY)
    d = tmp_path_factory.mktemp("mpi_roundtrip")
    runs = {k: ok(mpirun(k, "roundtrip.py", "write", d)) for k in (1, 2, 3)}
    return d, runs


def _expected(writers: int) -> dict[str, np.ndarray]:
    want = dict(common.global_arrays())
    for r in range(writers):
        want.update({f"ranks/{r}/{k}": v for k, v in common.private_arrays(r).items()})
    return want


@needs_mpi
@pytest.mark.parametrize("writers", [1, 2, 3])
def test_written_file_is_an_ordinary_ndckpt_file(written: tuple[Path, dict[int, Run]], writers: int) -> None:
    d, runs = written
    assert {r["rank"] for r in runs[writers].results if r.get("what") == "written"} == set(range(writers))
    det = [r for r in runs[writers].results if r.get("what") == "deterministic"]
    assert det == [{"what": "deterministic", "writers": writers, "same": True}]  # same blocks, same bytes
    path = d / f"w{writers}.ndckpt"
    ndckpt.verify(path)
    got = common.flat(ndckpt.load(path))
    want = _expected(writers)
    assert set(got) == set(want)
    for name, v in want.items():
        assert common.same(got[name], v), name
    with ndckpt.open(path) as r:
        assert r.metadata == {"writers": writers}
        blocks = {row["name"]: row["blocks"] for row in r.info()}
    # The decomposition is part of the file: one block per rank that holds something, in rank order.
    assert len(blocks["u"]) == writers
    assert len(blocks["rec"]) == max(1, writers - 1)  # the last rank's block is empty
    assert blocks["empty"] == []
    assert blocks["ranks/0/p"] is None


@needs_mpi
@pytest.mark.parametrize("writers", [1, 2, 3])
def test_subfiled_checkpoint_is_an_index_and_ordinary_subfiles(
    written: tuple[Path, dict[int, Run]], writers: int
) -> None:
    d, _ = written
    index = d / f"w{writers}-sub.ndckpt"
    assert ndckpt.load(index) == {}  # the index holds no arrays, only where they are
    desc = ndckpt.open(index).metadata["ndckpt.mpi.subfiles"]
    assert desc["nranks"] == writers
    assert len(desc["files"]) == max(1, writers - 1)
    held: dict[str, np.ndarray] = {}
    for name in desc["files"]:
        ndckpt.verify(d / name)
        held.update(common.flat(ndckpt.load(d / name)))
    for r in range(writers):
        for k, v in common.private_arrays(r).items():
            assert common.same(held[f"ranks/{r}/{k}"], v)
    for g in desc["global"]:
        name = "/".join(g["path"])
        rebuilt = np.zeros(g["shape"], common.global_arrays()[name].dtype)
        for start, shape, r in g["blocks"]:
            rebuilt[common.region(tuple(start), tuple(shape))] = held[f"blocks/{r}/{name}"]
        assert common.same(rebuilt, common.global_arrays()[name]), name


def _stored_bytes(spec: Any, value: np.ndarray) -> np.ndarray:
    """An array's stored bytes as format §2.2 defines them: in its order, or, for a global
    array stored as blocks, each block's C-order bytes in block order."""
    if spec.blocks is None:
        return np.frombuffer(value.tobytes(order=spec.order), np.uint8)
    return np.frombuffer(b"".join(value[common.region(st, sh)].tobytes() for st, sh in spec.blocks), np.uint8)


@needs_mpi
@pytest.mark.parametrize("writers", [1, 2, 3])
def test_files_of_every_rank_count_are_what_the_sequential_writer_writes(
    written: tuple[Path, dict[int, Run]], writers: int
) -> None:
    """One writer of the byte layout: the head of a file written by ``writers`` ranks, planned by
    them, written again by ndckpt.save's sequential writer (container.write.write_checkpoint)
    from the arrays loaded back, gives the same bytes; so do its subfiles. (The files of
    different rank counts differ: the decomposition is part of the content, docs/mpi.md.)"""
    from ndckpt._backend import StreamSink
    from ndckpt.container.layout import parse_layout
    from ndckpt.container.plan import Prepared
    from ndckpt.container.spec import SUPERBLOCK
    from ndckpt.container.write import write_checkpoint

    d, _ = written
    desc = ndckpt.open(d / f"w{writers}-sub.ndckpt").metadata["ndckpt.mpi.subfiles"]
    files = [d / f"w{writers}.ndckpt", *(d / name for name in desc["files"])]
    for path in files:
        data = path.read_bytes()
        lay = parse_layout(memoryview(data))
        head_json = data[SUPERBLOCK.size : lay.head_end]
        assert lay.head.to_json() == head_json  # canonical: the same head gives the same bytes
        values = common.flat(ndckpt.load(path))
        array_bytes = [_stored_bytes(a, np.asarray(values[a.name])) for a in lay.head.arrays]
        for threads in (1, 3):
            again = io.BytesIO()
            write_checkpoint(
                StreamSink(again, 1 << 20), Prepared(lay.head, list(array_bytes), head_json), threads, None
            )
            assert again.getvalue() == data, (path.name, threads)
    head0 = parse_layout(memoryview(files[0].read_bytes())).head
    frames = {fi: f.style for fi, f in enumerate(head0.frames)}
    # _common.STYLES: "u" lz4+delta, "z" lz4+shuffle, "grid" auto (int16: shuffle or delta, or plain)
    assert {f.filter for f in head0.frames} >= {("delta", 8), ("shuffle", 4)}
    assert FrameStyle.LZ4 in frames.values()
    assert FrameStyle.RAW in frames.values()


@needs_mpi
@pytest.mark.parametrize("readers", [1, 2, 3])
def test_read_back_on_any_rank_count(written: tuple[Path, dict[int, Run]], readers: int) -> None:
    d, _ = written
    run = ok(mpirun(readers, "roundtrip.py", "read", d, 1, 2, 3))
    # Per writer count and layout: 2 region reads, plus a whole read when the counts match.
    assert {r: v["checks"] for r, v in run.by_rank().items()} == dict.fromkeys(range(readers), 14)


_REGION_ARRAYS = ["u", "grid/t", "big", "rec"]


@st.composite
def regions(draw: st.DrawFn) -> tuple[str, tuple[slice, ...]]:
    name = draw(st.sampled_from(_REGION_ARRAYS))
    shape = common.global_arrays()[name].shape
    sl = []
    for n in shape[: draw(st.integers(1, len(shape)))]:
        lo = draw(st.integers(0, n))
        sl.append(slice(lo, draw(st.integers(lo, n))))
    return name, tuple(sl)


@needs_mpi
@settings(max_examples=40)
@given(regions())
def test_region_of_global_array_in_one_process(written: tuple[Path, dict[int, Run]], nr: Any) -> None:
    d, _ = written
    name, region = nr
    with ndckpt.open(d / "w3.ndckpt") as r:
        got = r.read(name, region=region)
    assert common.same(got, common.global_arrays()[name][region])


@needs_mpi
def test_region_reads_only_the_frames_that_hold_it(written: tuple[Path, dict[int, Run]], tmp_path: Path) -> None:
    d, _ = written
    path = tmp_path / "corrupt.ndckpt"
    shutil.copy(d / "w3.ndckpt", path)
    with ndckpt.open(path) as r:
        row = next(x for x in r.info() if x["name"] == "big")
    assert row["style"] == "lz4"
    assert len(row["frames"]) >= 3
    assert len(row["blocks"]) == 3
    with open(path, "r+b") as f:  # a flipped byte in the last frame: rank 2's columns
        f.seek(row["offsets"][-1] + 100)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    cols0 = common.box(common.global_arrays()["big"].shape, 3, 0, "cols")
    with ndckpt.open(path) as r:
        part = r.read("big", region=common.region(*cols0))
        assert common.same(part, common.global_arrays()["big"][common.region(*cols0)])
        with pytest.raises(FormatError, match="checksum"):
            r.get("big")


@needs_mpi
@pytest.mark.parametrize(("ranks", "seed"), [(2, 11), (3, 12)])
def test_random_decompositions(tmp_path: Path, ranks: int, seed: int) -> None:
    run = ok(mpirun(ranks, "random_tilings.py", tmp_path, seed, 40))
    assert {r: v["cases"] for r, v in run.by_rank().items()} == dict.fromkeys(range(ranks), 40)


# ----------------------------------------------------------------------------------------------
# Failures: every rank raises the same error and nothing is committed; nothing hangs
# ----------------------------------------------------------------------------------------------

_SCENARIOS = {
    "overlap": "InvalidArgumentError",
    "gap": "InvalidArgumentError",
    "names": "InvalidArgumentError",
    "kinds": "InvalidArgumentError",
    "dtype": "InvalidArgumentError",
    "global-shape": "InvalidArgumentError",
    "bad-input": "InvalidArgumentError",
    "ndim": "InvalidArgumentError",
    "metadata": "InvalidArgumentError",
    "style": "InvalidArgumentError",
    "subfiles": "InvalidArgumentError",
    "head-too-large": "InvalidArgumentError",
    "write-fails": "CheckptIOError",
    "index-fails": "CheckptIOError",
    "encode-fails": "CompressionError",
    "rename-fails": "CheckptIOError",
    "subfile-fails": "CheckptIOError",
    "load-select": "InvalidArgumentError",
}


@needs_mpi
def test_collective_errors_reach_every_rank_and_commit_nothing(tmp_path: Path) -> None:
    run = ok(mpirun(3, "failures.py", tmp_path))
    seen: dict[str, list[dict[str, Any]]] = {}
    for r in run.results:
        if "scenario" in r:
            seen.setdefault(r["scenario"], []).append(r)
    for name, cls in _SCENARIOS.items():
        rows = seen.get(name, [])
        assert sorted(x["rank"] for x in rows) == [0, 1, 2], (name, rows)
        assert {x["error"] for x in rows} == {cls}, (name, rows)
        assert len({x["message"] for x in rows}) == 1, (name, rows)  # the same words everywhere
    assert sorted(x["rank"] for x in seen["load-private"]) == [0, 1]
    assert os.listdir(tmp_path) == ["ck.ndckpt"]
    assert ndckpt.open(tmp_path / "ck.ndckpt").metadata == {"good": True}


@needs_mpi
@pytest.mark.parametrize(("victim", "where"), [(1, "write"), (0, "write"), (0, "rename")])
def test_rank_killed_mid_save_leaves_the_previous_checkpoint(tmp_path: Path, victim: int, where: str) -> None:
    run = mpirun_aborting(3, "crash.py", tmp_path, victim, where)
    assert run.rc != 0
    assert run.seconds < 60
    assert [r for r in run.results if r.get("what") == "dying"] == [{"what": "dying", "rank": victim, "where": where}]
    assert not [r for r in run.results if r.get("what") == "survived"]
    temps = [n for n in os.listdir(tmp_path) if n.startswith(".ckpt-000000000002")]
    assert len(temps) == 1  # the interrupted save's temporary file; never a checkpoint
    mgr = CheckpointManager(tmp_path)  # removes temporaries of dead writers
    assert mgr.latest() == 1
    assert os.listdir(tmp_path) == ["ckpt-000000000001.ndckpt"]
    state = mgr.restore(verify=True)
    g = np.arange(np.prod((192, 1024)), dtype=np.float64).reshape(192, 1024) + 1
    assert common.same(state["u"], g)
    assert [state["ranks"][str(r)]["p"].tolist() for r in range(3)] == [[r + 1] * 4 for r in range(3)]


@needs_mpi
@pytest.mark.parametrize("op", ["save", "load", "manager"])
def test_a_rank_that_never_joins_aborts_the_job_after_the_timeout(tmp_path: Path, op: str) -> None:
    run = mpirun_aborting(3, "hang.py", tmp_path, op)
    assert run.rc != 0, run.output[-2000:]
    assert run.seconds < 45, run.output[-2000:]
    assert "not every rank answered within 2 s" in run.output
    assert "aborting the MPI job" in run.output
    assert not [r for r in run.results if r.get("what") == "not aborted"]
    assert os.listdir(tmp_path) == ["ck.ndckpt"]


# ----------------------------------------------------------------------------------------------
# CheckpointManager(comm=...)
# ----------------------------------------------------------------------------------------------


@needs_mpi
def test_manager_agrees_on_steps_and_preemption(tmp_path: Path) -> None:
    run = ok(mpirun(3, "manager.py", tmp_path, "run"))
    rows = run.by_rank()
    assert sorted(rows) == [0, 1, 2]
    for r in rows.values():  # SIGUSR1 reached rank 1 only; every rank saved step 7 and stopped
        assert (r["exit_step"], r["steps"], r["latest"], r["preempted"]) == (7, [5, 7], 7, True), r
        assert "different steps (100 to 102)" in r["mismatch"], r
        assert "async_save=True cannot be combined with comm" in r["unsupported"]
        assert r["after"] == [5, 7]
        assert r["files"] == ["ckpt-000000000005.ndckpt", "ckpt-000000000007.ndckpt"]
    again = ok(mpirun(2, "manager.py", tmp_path, "restore")).by_rank()
    assert again == {r: {"rank": r, "step": 7, "whole": True, "part": True, "metadata": {"step": 7}} for r in (0, 1)}


# ----------------------------------------------------------------------------------------------
# docs/mpi.md: its examples run as written
# ----------------------------------------------------------------------------------------------


def _doc_blocks(kind: str) -> list[str]:
    text = (Path(__file__).resolve().parents[1] / "docs" / "mpi.md").read_text(encoding="utf-8")
    return [m.group(1) for m in re.finditer(rf"^```{kind}\n(.*?)^```$", text, re.DOTALL | re.MULTILINE)]


@needs_mpi
def test_docs_examples_run_under_mpiexec(tmp_path: Path) -> None:
    first, manager = _doc_blocks("python")
    (tmp_path / "example.py").write_text(first)
    assert MPIEXEC is not None
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "mpi4py", "example.py"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=90, check=True).stdout
    assert out == _doc_blocks("text")[0]  # what the page says rank 0 prints
    (tmp_path / "loop.py").write_text(manager)
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "mpi4py", "loop.py"]
    subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=90, check=True)
    mgr = CheckpointManager(tmp_path / "run")
    assert mgr.steps() == [800, 900, 1000]
    assert common.same(mgr.restore()["u"], np.full((64, 64), 1000.0))


def test_manager_select_needs_comm(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path)
    mgr.save(1, {"u": np.arange(4.0)})
    with pytest.raises(ndckpt.InvalidArgumentError, match="select is only for managers with comm"):
        mgr.restore(select={"u": (slice(0, 2),)})
    assert common.same(mgr.restore()["u"], np.arange(4.0))
