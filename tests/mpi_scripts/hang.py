"""A rank that never joins: ``hang.py DIR OP`` (3 ranks).

Rank 2 sleeps instead of calling OP ("save", "load" or "manager"); the other
ranks wait ``timeout`` = 2 s in the first exchange, print why and call
MPI_Abort, which ends the job (rank 2 included) long before its sleep ends.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from _common import report
from mpi4py import MPI

from ndckpt import CheckpointManager
from ndckpt import mpi as nm

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()


def main(directory: str, op: str) -> None:
    path = f"{directory}/ck.ndckpt"
    arrays = {"u": nm.Block(np.full((2, 3), float(rank)), (2 * rank, 0), (2 * size, 3))}
    nm.save(comm, path, arrays)  # every rank takes part
    report(what="first save", rank=rank)
    if rank == 2:
        time.sleep(120)
        return
    if op == "save":
        nm.save(comm, f"{directory}/second.ndckpt", arrays, timeout=2)
    elif op == "load":
        nm.load(comm, path, timeout=2)
    else:
        mgr = CheckpointManager(directory)
        from ndckpt.mpi import agree_save

        agree_save(comm, 5, False, False, timeout=2)
        del mgr
    report(what="not aborted", rank=rank)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
