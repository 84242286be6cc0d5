"""Save a one-file MPI checkpoint to TARGET: ``save_plain.py TARGET`` (any number of ranks).

Used by tests/test_mpi_cleanup.py to check what a collective save does at the
target: keep the replaced file's mode, write through a symlink.
"""

from __future__ import annotations

import sys

import numpy as np
from mpi4py import MPI

from ndckpt import mpi as nm

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
u = np.arange(8 * size, dtype=np.float64).reshape(size, 8)
nm.save(comm, sys.argv[1], {"u": nm.Block(u[rank : rank + 1], (rank, 0), u.shape)})
