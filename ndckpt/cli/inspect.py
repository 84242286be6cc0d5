"""``ndckpt info``, ``ndckpt verify`` and ``ndckpt extract``: the commands that read one checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import api as _api
from .._browse import Group
from .._incrcheck import describe, verify_manifest
from .._incremental import is_manifest_metadata
from .._progress import format_bytes
from .._text import show as _show
from ..container import VERSION
from ..errors import CheckptError
from .common import (
    PROG,
    UserError,
    input_label,
    message_of,
    plural,
    ratio,
    reader_input,
    require_file,
    stdin,
    terminal_bar,
)
from .names import extract_name
from .numpy_files import write_npy

__all__ = ["cmd_extract", "cmd_info", "cmd_verify"]

#: ``ndckpt info`` shows at most this many characters of a value's repr.
_VALUE_REPR_MAX = 100


def cmd_info(args: argparse.Namespace) -> int:
    path: str = args.file
    src = reader_input(path)
    with _api.open(src, verify=False) as r:
        rows = r.info()
        values = r.value_info()
        version = VERSION  # open() validated the superblock: it reads only this version
        metadata = r.metadata
        size = r.nbytes
    if path != "-" and is_manifest_metadata(metadata):
        return _info_incremental(args, path)
    frames = sorted({fi for row in rows for fi in row["frames"]})
    raw = sum(int(row["nbytes"]) for row in rows)
    stored = sum(int(row["stored_nbytes"]) for row in rows)
    if args.json:  # json.dumps escapes every control and non-ASCII character
        doc = {
            "file": path,
            "format_version": version,
            "file_nbytes": size,
            "metadata": metadata,
            "nframes": len(frames),
            "nbytes": raw,
            "arrays": [{**row, "shape": list(row["shape"])} for row in rows],
        }
        if values:
            doc["values"] = [{**v, "value": repr(v["value"])} for v in values]
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    print(_show(f"file      {input_label(path)}  ({format_bytes(size)}, ndckpt format version {version})"))
    print(_show(f"metadata  {json.dumps(metadata, sort_keys=True) if metadata is not None else '(none)'}"))
    print(
        f"arrays    {len(rows)} in {plural(len(frames), 'frame')}; {format_bytes(raw)} raw -> "
        f"{format_bytes(stored)} stored (ratio {ratio(raw, stored)})"
    )
    if values:
        print(f"values    {len(values)} (Python values and numpy scalars, stored in the head)")
        shown = [(_show(v["name"]), _show(v["type"]), _show(repr(v["value"]))) for v in values]
        vw = max(len(n) for n, _, _ in shown)
        tw = max(len(t) for _, t, _ in shown)
        for name, type_, text in shown:
            text = text if len(text) <= _VALUE_REPR_MAX else text[: _VALUE_REPR_MAX - 3] + "..."
            print(f"  {name.ljust(vw)}  {type_.ljust(tw)}  {text}")
    if not rows:
        return 0
    table = [("name", "dtype", "shape", "style", "raw", "stored", "ratio", "frames")]
    table += [
        (
            _show(row["name"]),
            _show(row["dtype"]),
            str(tuple(row["shape"])),
            row["style"],
            format_bytes(row["nbytes"]),
            format_bytes(row["stored_nbytes"]),
            ratio(row["nbytes"], row["stored_nbytes"]),
            _ranges(row["frames"]),
        )
        for row in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    right = {4, 5, 6}
    print()
    for line in table:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        print("  ".join(cells).rstrip())
    return 0


def _ranges(idx: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``; ``[]`` -> ``"-"``."""
    if not idx:
        return "-"
    out: list[str] = []
    start = prev = idx[0]
    for i in [*idx[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(out)


def _info_incremental(args: argparse.Namespace, path: str) -> int:
    """``ndckpt info`` of an incremental checkpoint's manifest: what it wrote and what it shares."""
    d = describe(Path(path))
    if args.json:
        print(json.dumps({"file": path, "incremental": d}, indent=1))
        return 0
    print(f"{path}: incremental checkpoint (save {d['seq']}), metadata {json.dumps(d['metadata'])}")
    print(f"  new {format_bytes(d['new'])} in {d['own_pack'] or 'no pack'}, shared {format_bytes(d['shared'])} "
          f"from {plural(len(d['packs']) - (d['own_pack'] is not None), 'earlier pack')}")
    for row in d["arrays"]:
        hint = " (declared unchanged)" if row["hinted"] else ""
        print(_show(f"  {row['name']}  {row['dtype']} {tuple(row['shape'])}  {plural(row['pieces'], 'piece')}  "
                    f"new {format_bytes(row['new'])}  shared {format_bytes(row['shared'])}{hint}"))
    return 0


def _verify_incremental(path: str, label: str, threads: int | None) -> int | None:
    """For an incremental manifest: check what it references (exit status), else None."""
    with _api.open(path, verify=False) as r:
        if not is_manifest_metadata(r.metadata):
            return None
    problems = verify_manifest(Path(path), threads)
    for p in problems:
        print(_show(f"{PROG} verify: {label}: FAILED: {p}"), file=sys.stderr)
    if problems:
        return 1
    d = describe(Path(path))
    total = format_bytes(d["new"] + d["shared"])
    print(f"{label}: OK (incremental: {total} in {plural(len(d['packs']), 'pack')} checked)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    path: str = args.file
    src: Any = stdin() if path == "-" else path
    label = input_label(path)
    if path != "-":
        require_file(path)
    t0 = time.perf_counter()
    try:
        with terminal_bar(f"verify {label}") as bar:
            _api.verify(src, threads=args.threads, progress=bar)
    except CheckptError as e:
        print(_show(f"{PROG} verify: {label}: FAILED: {message_of(e)}"), file=sys.stderr)
        return 1
    dt = time.perf_counter() - t0
    if path == "-":
        print(f"{label}: OK ({dt:.2f} s)")
        return 0
    try:
        status = _verify_incremental(path, label, args.threads)
    except CheckptError as e:
        print(_show(f"{PROG} verify: {label}: FAILED: {message_of(e)}"), file=sys.stderr)
        return 1
    if status is not None:
        return status
    with _api.open(path, verify=False) as r:
        rows = r.info()
        size = r.nbytes
    nframes = len({fi for row in rows for fi in row["frames"]})
    what = f"{plural(len(rows), 'array')}, {plural(nframes, 'frame')}, {format_bytes(size)}"
    print(_show(f"{label}: OK: {what} checked in {dt:.2f} s"))
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    path: str = args.file
    name: str = args.name
    with _api.open(reader_input(path), mmap=True, threads=args.threads, verify=True) as r:
        if name not in r:
            names = r.names()
            shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
            raise UserError(f"{input_label(path)}: no array named {name!r} (arrays: {shown or 'none'})")
        arr = r[name]
        if isinstance(arr, Group):
            members = [f"{name}/{m}" for m in arr.names()]
            shown = ", ".join(members[:8]) + (f", ... ({len(members)} in all)" if len(members) > 8 else "")
            raise UserError(f"{input_label(path)}: {name!r} is a group; extract one of its arrays ({shown or 'none'})")
    if isinstance(arr, np.generic):
        arr = np.asarray(arr)  # a numpy scalar: its 0-d array
    if not isinstance(arr, np.ndarray):
        kind = type(arr).__name__
        raise UserError(f"{path}: {name!r} is a Python value ({kind}), not an array; 'ndckpt info' shows it")
    out: str = args.output or extract_name(name)
    write_npy(out, name, arr, f"write {out}")
    print(_show(f"{name}: {arr.dtype} {tuple(arr.shape)} -> {out} ({format_bytes(arr.nbytes)})"))
    return 0
