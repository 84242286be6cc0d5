"""Save a subfiled checkpoint over DIR/t.ndckpt: ``replace_subfiled.py DIR`` (2 ranks, 2 subfiles).

Used by tests/test_mpi_cleanup.py: run once to get a real index, again after the
test has crafted that index's list of old subfiles, to check what the
replacing save deletes. Reports the new index's subfile names.
"""

from __future__ import annotations

import sys

import numpy as np
from _common import report
from mpi4py import MPI

import ndckpt
from ndckpt import mpi as nm

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
target = f"{sys.argv[1]}/t.ndckpt"
u = np.arange(8 * size, dtype=np.float64).reshape(size, 8)
nm.save(comm, target, {"u": nm.Block(u[rank : rank + 1], (rank, 0), u.shape)}, subfiles=2)
if rank == 0:
    report(what="saved", files=ndckpt.open(target).metadata["ndckpt.mpi.subfiles"]["files"])
