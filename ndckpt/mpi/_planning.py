"""The plan of one file of ``ndckpt.mpi.save``, computed by every rank from every rank's
description, so the head (and with it every frame's offset) is the same everywhere.

Each writer's arrays are planned on their own by :func:`ndckpt.container.plan.plan`, the
planner of ``ndckpt.save``, so no frame holds the bytes of two ranks; the head is made by
:func:`ndckpt.container.plan.build_head`, as for ``ndckpt.save``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..container.head import ArraySpec, FrameSpec, Head, Part, block_offsets
from ..container.plan import DEFAULT_FRAME_BYTES, StoredBytes, build_head, choose_filters, plan
from ..errors import InvalidArgumentError
from ..format import FrameStyle
from ._inputs import BLOCKS, PRIVATE, RankInfo, global_arrays

__all__ = ["RAW_FRAME_BYTES", "FilePlan", "plan_file"]

#: RAW frames of a large array (ndckpt.save uses 1 GiB). Each rank hashes a frame inline and
#: then writes it while it is still in cache, so a frame is small enough to stay cached and
#: large enough that per-frame costs vanish; ``benchmarks/bench_mpi.py`` (write, against plain
#: MPI-IO) is the measurement to repeat when changing it.
RAW_FRAME_BYTES = 16 << 20


@dataclass
class FilePlan:
    """The plan of one file, the same on every rank that writes it, with this rank's share."""

    head: Head
    head_json: bytes
    owner: list[int]  # frame -> index of its writer in the file's communicator
    local: list[FrameSpec]  # this rank's frames, parts indexing `array_bytes`, in file order
    local_ids: list[int]  # their indices in head.frames
    array_bytes: list[StoredBytes]  # this rank's stored bytes, in the order its local frames use


def plan_file(
    infos: list[RankInfo],
    writers: list[int],
    me: int,
    my_bytes: list[StoredBytes] | None,
    *,
    blocked: bool,
    metadata: Any,
    frame_bytes: int = DEFAULT_FRAME_BYTES,
    share: Callable[[dict[int, tuple[str, int] | None]], dict[int, tuple[str, int] | None]] | None = None,
) -> FilePlan:
    """Plan the file written by ranks ``writers`` (world ranks, in order); ``me`` is this rank's world rank.

    With ``blocked``, blocks are parts of global arrays stored as blocks;
    otherwise (subfiles) each block is an ordinary array ``blocks/<rank>/<name>``.
    Each writer's items are planned on their own with :func:`ndckpt.container.plan.plan`,
    so that every frame holds the bytes of one rank only; frames follow in
    writer order, and parts refer to the file's arrays (sorted by path).
    Deterministic: every rank gets the same head, or the same InvalidArgumentError when the
    head would be larger than readers accept.

    Frames of style "auto" are decided by the rank that holds their bytes
    (:func:`ndckpt.container.plan.choose_filters` on its own frames); ``share`` (collective,
    called on every writer exactly when some frame of the file is "auto") takes this rank's
    decisions, by frame index, and returns every writer's. Without ``share`` such a plan is
    an InvalidArgumentError.
    """
    arrays: list[ArraySpec] = []
    base: dict[tuple[tuple[str, ...], int], tuple[tuple[str, ...], int]] = {}  # (item path, rank) -> (array, byte)
    if blocked:
        for g, holders in global_arrays(infos):
            arrays.append(g)
            offs = block_offsets(g)
            for r, off in zip(holders, offs, strict=False):
                base[(g.path, r)] = (g.path, off)
    per_rank: list[
        tuple[list[ArraySpec], list[tuple[tuple[str, ...], int]], list[FrameStyle], list[str | None]]
    ] = []
    for r in writers:
        pseudo: list[ArraySpec] = []
        dest: list[tuple[tuple[str, ...], int]] = []
        styles: list[FrameStyle] = []
        kinds: list[str | None] = []
        for it in infos[r].items:
            if it.start is None:
                path = (PRIVATE, str(r), *it.path)
                arrays.append(ArraySpec(path, it.dtype, it.shape, it.order))
                pseudo.append(ArraySpec(path, it.dtype, it.shape, it.order))
                dest.append((path, 0))
            elif blocked:
                pseudo.append(ArraySpec(it.path, it.dtype, it.shape, "C"))
                dest.append(base.get((it.path, r), (it.path, 0)))
            else:
                path = (BLOCKS, str(r), *it.path)
                arrays.append(ArraySpec(path, it.dtype, it.shape, "C"))
                pseudo.append(ArraySpec(path, it.dtype, it.shape, "C"))
                dest.append((path, 0))
            styles.append(FrameStyle(it.style))
            kinds.append(it.filter)
        per_rank.append((pseudo, dest, styles, kinds))
    arrays.sort(key=lambda a: a.path)
    index = {a.path: i for i, a in enumerate(arrays)}
    frames: list[FrameSpec] = []
    owner: list[int] = []
    local: list[FrameSpec] = []
    local_ids: list[int] = []
    array_bytes: list[StoredBytes] = []
    for w, (r, (pseudo, dest, styles, kinds)) in enumerate(zip(writers, per_rank, strict=True)):
        order, rframes = plan(pseudo, styles, frame_bytes, RAW_FRAME_BYTES, kinds)
        for f in rframes:
            parts = []
            for p in f.parts:
                path, off = dest[order[p.array]]
                parts.append(Part(index[path], off + p.start, p.nbytes, p.at))
            if r == me:
                local.append(f)
                local_ids.append(len(frames))
            frames.append(FrameSpec(f.style, f.nbytes, parts, f.filter))
            owner.append(w)
        if r == me:
            assert my_bytes is not None
            array_bytes = [my_bytes[i] for i in order]
    if any(f.filter is not None and f.filter[0] == "auto" for f in frames):
        if share is None:
            raise InvalidArgumentError("style 'auto' needs the writers to share their frames' filters")
        choose_filters(local, array_bytes)
        decided = share({fi: f.filter for fi, f in zip(local_ids, local, strict=True)})
        for fi, f in enumerate(frames):
            if f.filter is not None and f.filter[0] == "auto":
                f.filter = decided[fi]
    groups = sorted(infos[0].groups) if blocked else []  # subfiles: empty groups are not kept
    head, head_json = build_head(
        arrays, frames, [tuple(g) for g in groups], metadata, advice="too many arrays or blocks; use subfiles"
    )
    return FilePlan(head, head_json, owner, local, local_ids, array_bytes)
