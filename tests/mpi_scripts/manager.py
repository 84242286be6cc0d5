"""CheckpointManager(comm=...): ``manager.py DIR run`` (3 ranks) then ``manager.py DIR restore`` (2 ranks).

run: every=5, keep=2; rank 1 gets SIGUSR1 at step 7, so every rank saves step
7 and stops there. Each rank reports what it saw. A call with different steps
on different ranks fails on every rank.
restore: on 2 ranks, the latest checkpoint comes back whole on every rank, and
as this rank's rows through select.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
from _common import report, same
from mpi4py import MPI

from ndckpt import CheckpointManager, InvalidArgumentError, UnsupportedError
from ndckpt import mpi as nm

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
SHAPE = (12, 10)


def field(step: int) -> np.ndarray:
    return np.arange(120, dtype=np.float64).reshape(SHAPE) * step


def run(directory: str) -> None:
    lo, hi = 4 * rank, 4 * rank + 4
    with CheckpointManager(directory, comm=comm, every=5, keep=2) as mgr:
        mgr.install_signal_handlers()
        step = 0
        while step < 20:
            step += 1
            if step == 7 and rank == 1:
                os.kill(os.getpid(), signal.SIGUSR1)
            mgr.save(step, {"u": nm.Block(field(step)[lo:hi], (lo, 0), SHAPE)}, metadata={"step": step})
            if mgr.preempted:
                break
        steps, latest = mgr.steps(), mgr.latest()
        try:
            mgr.save(100 + rank, {"u": nm.Block(field(1)[lo:hi], (lo, 0), SHAPE)}, force=True)
            mismatch = "saved"
        except InvalidArgumentError as e:
            mismatch = str(e)
        try:
            CheckpointManager(directory, comm=comm, async_save=True)
            unsupported = ""
        except UnsupportedError as e:
            unsupported = str(e)
        report(
            rank=rank,
            unsupported=unsupported,
            exit_step=step,
            steps=steps,
            latest=latest,
            preempted=mgr.preempted,
            mismatch=mismatch,
            after=mgr.steps(),
            files=sorted(os.listdir(directory)),
        )


def restore(directory: str) -> None:
    mgr = CheckpointManager(directory, comm=comm, every=5, keep=2)
    d = mgr.restore()
    whole = same(d["u"], field(7))
    rows = (slice(6 * rank, 6 * rank + 6),)
    part = mgr.restore(select={"u": rows})
    report(
        rank=rank, step=mgr.restored_step, whole=whole, part=same(part["u"], field(7)[rows]), metadata=mgr.metadata()
    )


if __name__ == "__main__":
    (run if sys.argv[2] == "run" else restore)(sys.argv[1])
