"""MPI checkpoints: ndckpt.mpi against plain MPI-IO, h5py (mpio driver) and ADIOS2 (BP5).

Run from the repository root (needs the ``mpi`` extra)::

    .venv/bin/python benchmarks/bench_mpi.py [--mib 128] [--rounds 5] [--dir /dev/shm/ndckpt-bench-mpi]

What is measured. A global float64 array of ``2 x MIB`` MiB, shape
``(rows, 1024)``, split by rows between 2 ranks (each holds MIB MiB):

- **write** (2 ranks): each peer writes the whole array into a fresh file
  (files of the previous run are deleted first, untimed). Timed on rank 0
  from a barrier before the first call to a barrier after the last (file
  closed; for ndckpt: committed, i.e. synced and renamed).
- **restart** (3 ranks, a different count): each rank reads its third of
  the rows from what the 2 ranks wrote, timed the same way; the values are
  then checked (untimed).

Peers:

- ``mpiio``: the baseline. ``MPI_File_open``, ``MPI_File_write_at`` of the
  rank's bytes at ``rank * nbytes``, ``MPI_File_sync``, close (MPICH, the
  ``mpich`` wheel); restart: ``MPI_File_read_at`` of the rows. The target is
  ndckpt's write at >= 0.9x its speed.
- ``ndckpt``: ``ndckpt.mpi.save`` of a Block (RAW, one shared file);
  restart: ``ndckpt.mpi.load(select=rows)``.
- ``ndckpt_sub``: the same with ``subfiles=2`` (a file per rank plus an index).
- ``h5py_mpio``: what users would pick instead: ``h5py.File(driver="mpio")``,
  one dataset, each rank writing its rows (h5py's default, independent I/O);
  restart: ``dset[rows]``. PyPI's h5py wheels are serial, so this runs
  Debian's ``python3-h5py-mpi`` (h5py 3.7, HDF5 1.10, Open MPI 4.1) with
  ``/usr/bin/python3`` under ``mpiexec.openmpi``:
  ``apt-get install python3-h5py-mpi``.
- ``mpiio_ompi``: ``mpiio`` again on that Open MPI stack, to separate HDF5's
  cost from the MPI-IO layer under it (Open MPI's OMPIO vs MPICH's ROMIO).
- ``adios2_bp5``: ADIOS2's BP5 engine (``Stream.write`` with shape, start,
  count; restart: ``FileReader.read`` with start, count), default engine
  parameters. PyPI's adios2 wheel is built without MPI and Debian 12 has no
  ADIOS2, so it needs an ADIOS2 built with MPI against the mpich wheel, in
  its own venv, given with ``--adios-python`` (default: ``$NDCKPT_BENCH_ADIOS_PYTHON``).
  Recipe (about 15 minutes of one core here)::

      python3 -m venv /tmp/adios-venv
      /tmp/adios-venv/bin/pip install numpy mpi4py mpich scikit-build-core setuptools_scm
      /tmp/adios-venv/bin/pip download --no-deps --no-binary adios2 adios2==2.12.1.1001 -d /tmp/adios-src
      # In the sdist's cmake/DetectOptions.cmake, after "set(ADIOS2_HAVE_PIP TRUE)", add
      #   if(ADIOS2_HAVE_MPI) find_package(PythonModule REQUIRED COMPONENTS mpi4py mpi4py/mpi4py.h) endif()
      # (with ADIOS2_USE_PIP the build never looks for mpi4py, and the MPI bindings are dropped), then:
      PATH=/tmp/adios-venv/bin:$PATH /tmp/adios-venv/bin/pip wheel --no-deps --no-build-isolation \\
          -C cmake.define.ADIOS2_USE_MPI=ON -C cmake.define.ADIOS2_USE_SST=OFF -w /tmp/adios-wheel <sdist dir>
      /tmp/adios-venv/bin/pip install /tmp/adios-wheel/adios2-*.whl && /tmp/adios-venv/bin/pip install -e .

Each measurement is a separate ``mpiexec`` launch (fresh processes); before
the timed call, each peer does the same operation once on a small array
(untimed), so that imports and first-call costs (which a simulation pays
once, not at every checkpoint) are left out. Rounds are interleaved: every round runs every
peer once, in a rotated order. Reported: median, min and max seconds over
rounds, GB/s (1e9 B) of the array, and for ndckpt the median of the per-round
ratios ``mpiio time / ndckpt time`` (above 1: ndckpt faster). A peer whose
stack is missing is listed with the reason. Results go to
``benchmarks/results/mpi.json`` (every raw time, versions, load average)
and a markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COLS = 1024

# ----------------------------------------------------------------------------------------------
# Worker side: runs under mpiexec, possibly in another interpreter (only numpy and mpi4py needed)
# ----------------------------------------------------------------------------------------------


def _rows(total: int, k: int, i: int) -> tuple[int, int]:
    q, r = divmod(total, k)
    lo = i * q + min(i, r)
    return lo, lo + q + (1 if i < r else 0)


def _expected(lo: int, hi: int) -> Any:
    import numpy as np

    return np.arange(lo * COLS, hi * COLS, dtype=np.float64).reshape(hi - lo, COLS)


def _run(peer: str, op: str, path: str, total_rows: int) -> tuple[float, Any]:
    """Do ``op`` on rows of a ``(total_rows, COLS)`` array; return (seconds between barriers, what was read)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    lo, hi = _rows(total_rows, size, rank)
    shape = (total_rows, COLS)
    if peer.startswith("ndckpt"):
        from ndckpt import mpi as nm
    if peer == "h5py_mpio":
        import h5py
    if peer == "adios2_bp5":
        import adios2
    local = _expected(lo, hi) if op == "write" else None
    got = None
    comm.Barrier()
    t0 = time.perf_counter()
    if op == "write":
        if peer.startswith("mpiio"):
            f = MPI.File.Open(comm, path, MPI.MODE_WRONLY | MPI.MODE_CREATE)
            f.Write_at(lo * COLS * 8, local)
            f.Sync()
            f.Close()
        elif peer == "ndckpt":
            nm.save(comm, path, {"u": nm.Block(local, (lo, 0), shape)})
        elif peer == "ndckpt_sub":
            nm.save(comm, path, {"u": nm.Block(local, (lo, 0), shape)}, subfiles=size)
        elif peer == "h5py_mpio":
            with h5py.File(path, "w", driver="mpio", comm=comm) as h:
                d = h.create_dataset("u", shape, "f8")
                d[lo:hi] = local
        elif peer == "adios2_bp5":
            io = adios2.Adios(comm).declare_io("ck")
            io.set_engine("BP5")
            with adios2.Stream(io, path, "w", comm) as s:
                s.write("u", local, list(shape), [lo, 0], [hi - lo, COLS])
        else:
            raise SystemExit(f"unknown peer {peer}")
    elif peer.startswith("mpiio"):
        import numpy as np

        got = np.empty((hi - lo, COLS), np.float64)
        f = MPI.File.Open(comm, path, MPI.MODE_RDONLY)
        f.Read_at(lo * COLS * 8, got)
        f.Close()
    elif peer.startswith("ndckpt"):
        got = nm.load(comm, path, select={"u": (slice(lo, hi),)})["u"]
    elif peer == "h5py_mpio":
        with h5py.File(path, "r", driver="mpio", comm=comm) as h:
            got = h["u"][lo:hi]
    elif peer == "adios2_bp5":
        with adios2.FileReader(path, comm=comm) as f:
            got = f.read("u", start=[lo, 0], count=[hi - lo, COLS])
    else:
        raise SystemExit(f"unknown peer {peer}")
    comm.Barrier()
    dt = time.perf_counter() - t0
    if got is not None:
        import numpy as np

        if not np.array_equal(got, _expected(lo, hi)):
            raise SystemExit(f"{peer}: rank {rank} read wrong values")
    return dt, got


def worker(peer: str, op: str, directory: str, total_rows: int) -> None:
    """One measurement, after an untimed warm-up of the same peer on a small array (imports, first calls)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    name = {"h5py_mpio": "ck.h5", "adios2_bp5": "ck.bp"}.get(peer, "ck.ndckpt" if peer.startswith("ndckpt") else "ck")
    warm = os.path.join(directory, "warm", name)
    if comm.Get_rank() == 0:
        os.makedirs(os.path.dirname(warm), exist_ok=True)
    comm.Barrier()
    _run(peer, "write", warm, 4 * comm.Get_size())
    if op == "read":
        _run(peer, "read", warm, 4 * comm.Get_size())
    dt, _ = _run(peer, op, os.path.join(directory, name), total_rows)
    if comm.Get_rank() == 0:
        print("BENCH " + json.dumps({"peer": peer, "op": op, "ranks": comm.Get_size(), "seconds": dt}), flush=True)


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------

MPICH_EXEC = str(Path(sys.executable).parent / "mpiexec")
OMPI_EXEC = "/usr/bin/mpiexec.openmpi"
SYS_PYTHON = "/usr/bin/python3"


def _probe(cmd: list[str]) -> str | None:
    """None if ``cmd`` runs, else why not."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return None if r.returncode == 0 else (r.stderr or r.stdout).strip().splitlines()[-1][:300]


def launchers(adios_python: str | None) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The command prefix (without -n) of every available peer, and why the others are missing."""
    me = [MPICH_EXEC, "-n"]
    py = sys.executable
    avail = {"mpiio": [*me, "{n}", py], "ndckpt": [*me, "{n}", py], "ndckpt_sub": [*me, "{n}", py]}
    missing: dict[str, str] = {}
    ompi = [OMPI_EXEC, "--allow-run-as-root", "--oversubscribe", "-n", "{n}", SYS_PYTHON]
    if not Path(OMPI_EXEC).exists():
        missing["h5py_mpio"] = missing["mpiio_ompi"] = f"{OMPI_EXEC} not found (apt-get install python3-h5py-mpi)"
    else:
        # Debian's h5py picks its MPI build only when started by an MPI launcher
        why = _probe([*ompi[:-2], "1", SYS_PYTHON, "-c", "import mpi4py.MPI, h5py; assert h5py.get_config().mpi"])
        if why is None:
            avail["h5py_mpio"] = ompi
            avail["mpiio_ompi"] = ompi
        else:
            missing["h5py_mpio"] = missing["mpiio_ompi"] = f"no parallel h5py for {SYS_PYTHON}: {why}"
    if adios_python is None:
        missing["adios2_bp5"] = "no ADIOS2 built with MPI (PyPI's wheel is serial; pass --adios-python)"
    else:
        why = _probe([adios_python, "-c", "import adios2, mpi4py.MPI; assert adios2.is_built_with_mpi"])
        if why is None:
            avail["adios2_bp5"] = [*me, "{n}", adios_python]
        else:
            missing["adios2_bp5"] = f"{adios_python}: {why}"
    return avail, missing


def launch(prefix: list[str], n: int, peer: str, op: str, directory: Path, rows: int) -> float:
    cmd = [a.replace("{n}", str(n)) for a in prefix]
    cmd += [str(Path(__file__).resolve()), "--worker", peer, op, str(directory), str(rows)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("BENCH ")]
    if r.returncode or len(lines) != 1:
        raise RuntimeError(f"{peer} {op} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return float(json.loads(lines[0][6:])["seconds"])


def clear(directory: Path) -> None:
    for p in directory.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=128, help="MiB per writing rank (default 128)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default="/dev/shm/ndckpt-bench-mpi")
    ap.add_argument("--adios-python", default=os.environ.get("NDCKPT_BENCH_ADIOS_PYTHON"))
    ap.add_argument("--peers", default="mpiio,ndckpt,ndckpt_sub,h5py_mpio,mpiio_ompi,adios2_bp5")
    ap.add_argument("--readers", default="1,3", help="rank counts of the restarts (default 1,3)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mpi.json"))
    args = ap.parse_args()
    writers = 2
    readers = [int(k) for k in args.readers.split(",")]
    rows = writers * (args.mib << 20) // (8 * COLS)
    nbytes = rows * COLS * 8
    avail, missing = launchers(args.adios_python)
    peers = [p for p in args.peers.split(",") if p in avail]
    missing = {p: why for p, why in missing.items() if p in args.peers.split(",")}
    base = Path(args.dir)
    ops = ["write", *(f"restart{k}" for k in readers)]
    times: dict[str, dict[str, list[float]]] = {p: {op: [] for op in ops} for p in peers}
    for rnd in range(args.rounds):
        order = peers[rnd % len(peers) :] + peers[: rnd % len(peers)]
        for peer in order:
            d = base / peer
            d.mkdir(parents=True, exist_ok=True)
            clear(d)
            times[peer]["write"].append(launch(avail[peer], writers, peer, "write", d, rows))
            for k in readers:
                times[peer][f"restart{k}"].append(launch(avail[peer], k, peer, "read", d, rows))
            clear(d)
        print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    shutil.rmtree(base, ignore_errors=True)

    def ratio(peer: str, op: str) -> float | None:
        if "mpiio" not in times or peer == "mpiio":
            return None
        return statistics.median(b / t for b, t in zip(times["mpiio"][op], times[peer][op], strict=True))

    print(
        f"\n{writers} ranks x {args.mib} MiB written into one checkpoint, restarted on {args.readers} ranks "
        f"({args.dir}, {args.rounds} rounds; load {os.getloadavg()[0]:.1f}). Seconds: median / min / max; "
        "x: median over rounds of mpiio time / peer time\n"
    )
    print("| peer | " + " | ".join(f"{op} s | {op} GB/s | {op} vs mpiio" for op in ops) + " |")
    print("|---|" + "---|---|---|" * len(ops))
    summary: dict[str, Any] = {}
    for peer in peers:
        row: dict[str, Any] = {}
        cells = []
        row["ratio_vs_mpiio"] = {}
        for op in ops:
            t = times[peer][op]
            med = statistics.median(t)
            row[op] = {"median_s": med, "min_s": min(t), "max_s": max(t), "gbps": nbytes / med / 1e9, "raw_s": t}
            x = row["ratio_vs_mpiio"][op] = ratio(peer, op)
            cells += [
                f"{med:.3f} / {min(t):.3f} / {max(t):.3f}",
                f"{nbytes / med / 1e9:.2f}",
                f"{x:.2f}x" if x else "-",
            ]
        summary[peer] = row
        print(f"| {peer} | " + " | ".join(cells) + " |")
    for peer, why in missing.items():
        print(f"| {peer} | not run: {why} |" + " |" * (3 * len(ops) - 1))
    if "ndckpt" in summary and summary["ndckpt"]["ratio_vs_mpiio"]["write"] is not None:
        r = summary["ndckpt"]["ratio_vs_mpiio"]["write"]
        print(f"\ntarget: ndckpt write >= 0.9x plain MPI-IO: {r:.2f}x -> {'met' if r >= 0.9 else 'NOT met'}")
    out = {
        "writers": writers,
        "readers": readers,
        "mib_per_writer": args.mib,
        "bytes": nbytes,
        "dir": args.dir,
        "rounds": args.rounds,
        "loadavg": os.getloadavg(),
        "peers": summary,
        "missing": missing,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        main()
