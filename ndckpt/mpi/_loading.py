"""Reading for ``ndckpt.mpi.load``: what one rank reads of a shared file or of subfiles.

Each rank opens the checkpoint with :func:`ndckpt.open` and reads only the regions it asks for;
nothing here calls MPI (the caller agrees on errors).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._subfiles import INDEX_KEY, foreign_subfiles
from ..api import open as open_checkpoint
from ..container.dtype import decode_dtype
from ..container.plan import flat_names
from ..container.read import normalise_region
from ..errors import FormatError, InvalidArgumentError
from ._inputs import BLOCKS, PRIVATE

__all__ = ["load_local", "nest"]


def _flat_out(out: Any) -> dict[str, Any]:
    if out is None:
        return {}
    if not isinstance(out, Mapping):
        raise InvalidArgumentError(f"out: expected a mapping of names to arrays, got {type(out).__name__}")
    return flat_names(out)


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a/b": x}`` as ``{"a": {"b": x}}``: flat names nested at their "/" (a new mapping)."""
    out: dict[str, Any] = {}
    for name in sorted(flat):
        parts = name.split("/")
        d = out
        for k in parts[:-1]:
            d = d.setdefault(k, {})
        d[parts[-1]] = flat[name]
    return out


def _wanted(
    select: Any, global_names: list[str], private: dict[int, list[str]], rank: int, size: int
) -> dict[str, tuple[str, Any]]:
    """name -> (stored name, region or None) for this rank."""
    nwriters = len(private)
    mine = private.get(rank, [])
    if select is None:
        if private and (nwriters != size or set(private) != set(range(nwriters))):
            names = sorted({n for v in private.values() for n in v})
            raise InvalidArgumentError(
                f"the checkpoint has rank-private arrays {names} of {nwriters} ranks and is loaded on {size}: "
                "pass select= naming the arrays this rank wants (another rank's private array 'x' is "
                f"'{PRIVATE}/<rank>/x')"
            )
        want = {n: (n, None) for n in global_names}
        want.update({n: (f"{PRIVATE}/{rank}/{n}", None) for n in mine})
        return want
    if not isinstance(select, Mapping):
        raise InvalidArgumentError(f"select: expected a mapping of names to regions, got {type(select).__name__}")
    want = {}
    gset = set(global_names)
    for name, region in select.items():
        key = "/".join(name) if isinstance(name, tuple) else name
        if not isinstance(key, str):
            raise InvalidArgumentError(f"select: names must be strings, got {name!r}")
        if key in gset:
            want[key] = (key, region)
        elif key in mine:
            want[key] = (f"{PRIVATE}/{rank}/{key}", region)
        elif key.startswith(PRIVATE + "/") and key.split("/", 2)[-1] in private.get(_rank_of(key), []):
            want[key] = (key, region)
        else:
            raise InvalidArgumentError(
                f"select: no array {key!r} in the checkpoint for rank {rank} (global arrays: {sorted(gset)}, "
                f"this rank's private arrays: {sorted(mine)})"
            )
    return want


def _rank_of(key: str) -> int:
    r = key.split("/")[1] if key.count("/") >= 2 else ""
    return int(r) if r.isdigit() else -1


def load_local(rank: int, size: int, source: Any, select: Any, out: Any) -> dict[str, Any]:
    """What rank ``rank`` of ``size`` reads of ``source`` (one file or a subfile index), nested
    by name; no exchange: errors (InvalidArgumentError, FormatError, CheckptIOError, ...) are
    raised on this rank only, for the caller to agree on. Every file opened is closed."""
    outs = _flat_out(out)
    with open_checkpoint(source) as reader:
        md = reader.metadata
        if isinstance(md, dict) and INDEX_KEY in md:
            if not isinstance(source, str | os.PathLike):
                raise InvalidArgumentError("a subfiled checkpoint must be loaded from its path")
            return _load_subfiled(rank, size, Path(os.fspath(source)), md[INDEX_KEY], select, outs)
        global_names: list[str] = []
        private: dict[int, list[str]] = {}
        for name in reader.names():
            r = _rank_of(name) if name.startswith(PRIVATE + "/") else -1
            if r >= 0:
                private.setdefault(r, []).append(name.split("/", 2)[2])
            else:
                global_names.append(name)
        want = _wanted(select, global_names, private, rank, size)
        unknown = sorted(set(outs) - set(want))
        if unknown:
            raise InvalidArgumentError(f"out: {unknown} are not among the arrays this rank loads")
        res = {name: reader.read(stored, out=outs.get(name), region=region) for name, (stored, region) in want.items()}
    return nest(res)


def _load_subfiled(rank: int, size: int, path: Path, desc: Any, select: Any, outs: dict[str, Any]) -> dict[str, Any]:
    foreign = foreign_subfiles({INDEX_KEY: desc}, None)
    if foreign:
        # The index is read from the file: a name outside the writer's form could point
        # anywhere (``../x``, an absolute path), so nothing it names is opened.
        raise FormatError(
            f"{str(path)!r}: the subfile index lists {foreign[0]!r}, not a subfile name of the form "
            "<name>.<token>.sub<k> in the index's directory"
        )
    try:
        files = [path.parent / str(n) for n in desc["files"]]
        nranks = int(desc["nranks"])
        rank_file = [int(k) for k in desc["rank_file"]]
        private_names = [str(n) for n in desc["private"]]
        glob = {
            "/".join(g["path"]): (
                decode_dtype(g["dtype"]),
                tuple(int(n) for n in g["shape"]),
                [(tuple(b[0]), tuple(b[1]), int(b[2])) for b in g["blocks"]],
            )
            for g in desc["global"]
        }
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise FormatError(f"{str(path)!r}: malformed subfile index ({type(e).__name__}: {e})") from None
    readers: dict[int, Any] = {}

    def reader(k: int) -> Any:
        if k not in readers:
            readers[k] = open_checkpoint(files[k])
        return readers[k]

    try:
        private = dict.fromkeys(range(nranks), private_names) if private_names else {}
        want = _wanted(select, sorted(glob), private, rank, size)
        unknown = sorted(set(outs) - set(want))
        if unknown:
            raise InvalidArgumentError(f"out: {unknown} are not among the arrays this rank loads")
        res: dict[str, Any] = {}
        for name, (stored, region) in want.items():
            if name not in glob:
                res[name] = reader(rank_file[_rank_of(stored)]).read(stored, out=outs.get(name), region=region)
                continue
            dtype, shape, blocks = glob[name]
            box = normalise_region(region if region is not None else (), shape, name)
            rshape = tuple(hi - lo for lo, hi in box)
            dst = outs.get(name)
            if dst is None:
                dst = np.empty(rshape, dtype)
            elif not isinstance(dst, np.ndarray) or dst.dtype != dtype or dst.shape != rshape:
                raise InvalidArgumentError(f"out[{name!r}]: expected dtype {dtype} and shape {rshape}")
            for st, sh, r in blocks:
                inter = [(max(lo, s), min(hi, s + n)) for (lo, hi), s, n in zip(box, st, sh, strict=True)]
                if any(lo >= hi for lo, hi in inter):
                    continue
                local = tuple(slice(lo - s, hi - s) for (lo, hi), s in zip(inter, st, strict=True))
                where = tuple(slice(lo - blo, hi - blo) for (lo, hi), (blo, _) in zip(inter, box, strict=True))
                piece = reader(rank_file[r]).read(f"{BLOCKS}/{r}/{name}", region=local)
                void = np.dtype((np.void, dtype.itemsize))  # whole items: structured padding bytes too
                dst.view(void)[where] = piece.view(void)
            res[name] = dst
    finally:
        for rd in readers.values():
            rd.close()
    return nest(res)
