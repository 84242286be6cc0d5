"""``ndckpt convert``: .npy/.npz to ndckpt, ndckpt to .npy/.npz, and ndckpt to ndckpt (another ``--style``)."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import api as _api
from .._incremental import is_manifest_metadata
from .._incrload import load_manifest
from .._progress import format_bytes
from .._text import show as _show
from .common import (
    UserError,
    input_label,
    plural,
    ratio,
    require_file,
    sniff,
    stdin,
    stdout,
    stdout_is_terminal,
    terminal_bar,
)
from .numpy_files import flat_names, nest_names, read_numpy, write_npy, write_npz

__all__ = ["STYLES", "cmd_convert", "style_arg"]

STYLES = ("raw", "lz4", "lz4+shuffle", "lz4+delta", "auto")


def _out_kind(out: str) -> str:
    if out == "-":
        return "ndckpt"
    suffix = Path(out).suffix.lower()
    return {".npy": "npy", ".npz": "npz"}.get(suffix, "ndckpt")


def style_arg(value: str) -> tuple[str | None, str]:
    """``--style`` values: ``STYLE`` (every array not named otherwise) or ``NAME=STYLE`` (an array or
    a group; split at the last ``=``), STYLE one of :data:`STYLES`."""
    name, eq, style = value.rpartition("=")
    if style not in STYLES:
        raise argparse.ArgumentTypeError(
            f"expected STYLE or NAME=STYLE, STYLE one of {', '.join(STYLES)}; got {value!r}"
        )
    if eq and not name:
        raise argparse.ArgumentTypeError(f"empty NAME in {value!r}")
    return (name if eq else None), style


def _style(specs: list[tuple[str | None, str]] | None, names: Sequence[str]) -> Any:
    """The ``style`` argument of :func:`ndckpt.save` for the ``--style`` values: a string, or a
    mapping of names (arrays or groups, most specific wins, as the library reads it) with the
    default filled in for every array no key covers."""
    specs = specs or []
    defaults = {st for n, st in specs if n is None}
    if len(defaults) > 1:
        raise UserError(f"--style: conflicting defaults {sorted(defaults)} (give one, plus NAME=STYLE pairs)", code=2)
    default = defaults.pop() if defaults else "raw"
    named = {n: st for n, st in specs if n is not None}
    if not named:
        return default
    style: dict[str, str] = dict(named)
    if default != "raw":  # the library's default for arrays no key covers
        for n in names:
            if not any(n == k or n.startswith(k + "/") for k in named):
                style[n] = default
    return style


def _is_manifest(src: str) -> bool:
    with _api.open(src, verify=False) as r:
        return is_manifest_metadata(r.metadata)


def cmd_convert(args: argparse.Namespace) -> int:
    src: str = args.input
    dst: str = args.output
    if src != "-":
        require_file(src)  # a FIFO or device: refused now, not read (which could block forever)
    in_kind = "ndckpt" if src == "-" else sniff(src)
    out_kind = _out_kind(dst)
    if in_kind == "unknown":
        raise UserError(f"{src}: not an ndckpt, .npy or .npz file")
    if in_kind != "ndckpt" and out_kind != "ndckpt":
        raise UserError(f"one side must be an ndckpt file ({src} is .{in_kind}, {dst} is .{out_kind})")
    if args.style is not None and out_kind != "ndckpt":
        raise UserError(f"--style applies to ndckpt output, not .{out_kind}")
    if dst == "-" and not args.force and stdout_is_terminal():
        raise UserError("ndckpt data not written to a terminal: redirect stdout to a file or a pipe (or use --force)")

    metadata: Any = None
    t0 = time.perf_counter()
    manifest = in_kind == "ndckpt" and src != "-" and _is_manifest(src)
    if manifest:  # an incremental checkpoint: assemble it from its packs into a standalone file
        tree = load_manifest(Path(src), mmap=False, verify=True)
        arrays = flat_names(tree)
        with _api.open(src, verify=False) as r:
            metadata = r.metadata["user"]
    elif in_kind == "ndckpt":
        label = input_label(src)
        with terminal_bar(f"read {label}") as bar:
            tree = _api.load(stdin() if src == "-" else src, threads=args.threads, verify=True, progress=bar)
        arrays = flat_names(tree)  # ndckpt output gets ``tree`` itself: the same paths and empty groups
        if src != "-":
            with _api.open(src, verify=False) as r:
                metadata = r.metadata
    else:
        arrays = read_numpy(src, in_kind)
        tree = nest_names(arrays, src) if out_kind == "ndckpt" else {}
    raw = sum(a.nbytes for a in arrays.values() if isinstance(a, np.ndarray | np.generic))

    if out_kind == "ndckpt":
        style = _style(args.style, list(arrays))
        with terminal_bar(f"write {'stdout' if dst == '-' else dst}") as bar:
            target: Any = stdout() if dst == "-" else dst
            _api.save(target, tree, style=style, threads=args.threads, metadata=metadata, progress=bar)
        if dst == "-":
            stdout().flush()
    elif values := [n for n, a in arrays.items() if not isinstance(a, np.ndarray | np.generic)]:
        shown = ", ".join(values[:5]) + (f", ... ({len(values)} in all)" if len(values) > 5 else "")
        raise UserError(
            f"{src} holds Python values ({shown}), which .{out_kind} files cannot hold without pickle; "
            "'ndckpt info' shows them"
        )
    elif out_kind == "npy":
        if len(arrays) != 1:
            raise UserError(
                f"{src} holds {len(arrays)} arrays; a .npy holds one "
                f"(use .npz, or 'ndckpt extract {src} NAME -o {dst}')"
            )
        ((name, arr),) = arrays.items()
        write_npy(dst, name, np.asarray(arr), f"write {dst}")
    else:  # numpy scalars as 0-d arrays, as np.savez writes them
        write_npz(dst, {k: np.asarray(a) for k, a in arrays.items()}, f"write {dst}")
    dt = time.perf_counter() - t0
    if dst != "-":
        size = os.path.getsize(dst)
        print(
            _show(
                f"{input_label(src)} -> {dst}: {plural(len(arrays), 'array')}, {format_bytes(raw)} -> "
                f"{format_bytes(size)} (ratio {ratio(raw, size)}) in {dt:.2f} s"
            )
        )
    return 0
