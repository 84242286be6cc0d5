"""Write or read the round-trip checkpoints: ``roundtrip.py write DIR`` / ``roundtrip.py read DIR WRITERS...``.

write (K ranks): DIR/w{K}.ndckpt (one file), DIR/w{K}-again.ndckpt (the same
content again: must be byte-identical) and DIR/w{K}-sub.ndckpt (subfiles).
read (K ranks): every listed writer count's checkpoints, with the same and
with a different decomposition, through select regions, out= and private arrays.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from _common import (
    READ_SPLIT,
    STYLES,
    WRITE_SPLIT,
    box,
    flat,
    global_arrays,
    private_arrays,
    region,
    report,
    same,
)
from mpi4py import MPI

from ndckpt import mpi as nm

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
G = global_arrays()


def nest(d: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, v in d.items():
        *parents, leaf = name.split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})  # type: ignore[assignment]
        node[leaf] = v
    return out


def write(directory: str) -> None:
    state: dict[str, object] = {}
    for name, g in G.items():
        start, shape = box(g.shape, size, rank, WRITE_SPLIT[name])
        local = g[region(start, shape)].copy()
        if name == "u":  # a halo-padded local array: the block is a non-contiguous view
            padded = np.zeros((shape[0] + 2, shape[1] + 2), g.dtype)
            padded[1:-1, 1:-1] = local
            local = padded[1:-1, 1:-1]
            assert not local.flags.c_contiguous or local.size == 0
        state[name] = nm.Block(local, start, g.shape)
    state.update(private_arrays(rank))
    tree = nest(state)
    meta = {"writers": size}
    nm.save(comm, f"{directory}/w{size}.ndckpt", tree, style=STYLES, metadata=meta)
    nm.save(comm, f"{directory}/w{size}-again.ndckpt", tree, style=STYLES, metadata=meta)
    nm.save(comm, f"{directory}/w{size}-sub.ndckpt", tree, style=STYLES, metadata=meta, subfiles=max(1, size - 1))
    if rank == 0:
        with open(f"{directory}/w{size}.ndckpt", "rb") as a, open(f"{directory}/w{size}-again.ndckpt", "rb") as b:
            report(what="deterministic", writers=size, same=a.read() == b.read())
    report(what="written", rank=rank)


def check(got: dict[str, object], want: dict[str, np.ndarray], label: str) -> None:
    got_flat = flat(got)  # type: ignore[arg-type]
    assert set(got_flat) == set(want), (label, sorted(got_flat), sorted(want))
    for k, v in want.items():
        assert same(got_flat[k], v), (label, k)


def read(directory: str, writers: list[int]) -> None:
    n = 0
    for w in writers:
        for kind in ("", "-sub"):
            path = f"{directory}/w{w}{kind}.ndckpt"
            label = f"w{w}{kind} on {size}"
            if w == size:  # everything: whole global arrays and this rank's private arrays
                want = dict(G)
                want.update(private_arrays(rank))
                check(nm.load(comm, path), want, label + " whole")
                n += 1
            # a different decomposition, through regions; another writer rank's private array
            sel: dict[str, object] = {}
            want = {}
            for name, g in G.items():
                start, shape = box(g.shape, size, rank, READ_SPLIT[name])
                sel[name] = region(start, shape)
                want[name] = g[region(start, shape)]
            other = (rank + 1) % w
            sel[f"ranks/{other}/p"] = None
            want[f"ranks/{other}/p"] = private_arrays(other)["p"]
            check(nm.load(comm, path, select=sel), want, label + " regions")
            # out=: fill existing arrays
            start, shape = box(G["u"].shape, size, rank, "rows")
            buf = np.full(shape, -1.0)
            got = nm.load(comm, path, select={"u": region(start, shape)}, out={"u": buf})
            assert got["u"] is buf, label + " out"
            assert same(buf, G["u"][region(start, shape)]), label + " out"
            n += 2
    report(what="read", rank=rank, checks=n)


if __name__ == "__main__":
    os.chdir(sys.argv[2])
    if sys.argv[1] == "write":
        write(sys.argv[2])
    else:
        read(sys.argv[2], [int(a) for a in sys.argv[3:]])
