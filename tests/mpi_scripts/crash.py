"""A rank dies in the middle of a save: ``crash.py DIR VICTIM WHERE`` (3 ranks).

A CheckpointManager with comm saves step 1; then, during the save of step 2,
rank VICTIM is SIGKILLed: WHERE = "write" at its first write into the shared
file, "rename" (rank 0) just before the commit, after every rank has written
and synced. MPICH's mpiexec then ends the other ranks. The test checks that
step 1 is still the latest checkpoint and loads, and that nothing hung.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
from _common import report
from mpi4py import MPI

from ndckpt import CheckpointManager
from ndckpt import mpi as nm
from ndckpt.mpi import _writing as writing  # the module whose writes and encoder are replaced

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
SHAPE = (3 * 64, 1024)


def state(step: int) -> dict[str, object]:
    g = np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE) + step
    lo, hi = 64 * rank, 64 * rank + 64
    return {"u": nm.Block(g[lo:hi], (lo, 0), SHAPE), "p": np.full(4, rank + step)}


def main(directory: str, victim: int, where: str) -> None:
    mgr = CheckpointManager(directory, comm=comm, every=1, keep=3)
    assert mgr.save(1, state(1))
    assert mgr.steps() == [1]

    def die(*args: object) -> None:
        report(what="dying", rank=rank, where=where)
        os.kill(os.getpid(), signal.SIGKILL)

    if rank == victim and where == "write":
        writing.write_at = die  # type: ignore[assignment]
    if rank == victim and where == "rename":
        os.replace = die  # type: ignore[assignment]
    mgr.save(2, state(2))
    report(what="survived", rank=rank)  # never reached: the job is torn down


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
