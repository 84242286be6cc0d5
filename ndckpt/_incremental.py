"""Incremental checkpoints: a manager directory's content-addressed piece store.

Layout (normative description in ``docs/incremental.md``)
---------------------------------------------------------
Manifest
    Checkpoint ``step`` is still the file ``ckpt-{step:012d}.ndckpt``, an
    ordinary ndckpt file written atomically by :func:`ndckpt.save`. Its
    metadata holds ``{"ndckpt_incremental": {...}, "user": <the caller's
    metadata>}``; its arrays hold the piece table and its Python values (the
    state's non-array leaves and empty groups). It holds no array data.
Pieces
    Each array's stored bytes (C or F order, as :func:`ndckpt.save` stores
    them) are cut into pieces of a whole number of elements, about
    :data:`PIECE_BYTES` each. A piece is named by its XXH64 and its size.
Packs
    The pieces a save writes that no retained checkpoint already holds go
    into one pack, ``pack-{seq:012d}-{token}.ndckpt`` (an ordinary ndckpt
    file, one 1-D array per piece named ``p{ordinal:09d}`` in the order
    written, of the array's dtype and in the array's style; a manifest names
    a piece by pack, ordinal, XXH64 and size). A checkpoint references pieces
    of its own pack and of earlier packs.

Contracts
---------
* A save writes (and fsyncs) its pack before its manifest, so every manifest
  that exists references only packs that exist; a crash leaves at worst an
  unreferenced pack, which :meth:`IncrementalStore.collect` deletes.
* :meth:`IncrementalStore.collect` deletes a pack only when every
  checkpoint file of the directory was read and none references it; if any
  cannot be read, nothing is deleted.
* Pack names are never reused (``token`` is random), so replacing a step
  never changes a file another checkpoint references.
* ``full_every=N``: save number ``seq`` (counted from 0 across the
  directory's incremental checkpoints) with ``seq % N == 0`` references only
  its own pack; the others reference only packs of saves since then, so a
  checkpoint reaches back at most N - 1 saves.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _files
from ._ckptdir import NAME_RE, checkpoint_name
from ._lz4 import xxh64
from .api import open as open_checkpoint
from .api import save
from .container.dtype import decode_dtype, encode_dtype
from .container.plan import as_array, check_metadata, flatten_tree, parse_style_arg, resolve_styles, stored_bytes
from .container.values import is_value
from .errors import CheckptIOError, FormatError, InvalidArgumentError
from .format import FrameStyle

__all__ = [
    "KEY",
    "PACK_RE",
    "PIECE_BYTES",
    "IncrementalStore",
    "Manifest",
    "is_manifest_metadata",
    "read_manifest",
]

#: The manifest metadata key (and the top-level group of the manifest's arrays).
KEY = "ndckpt_incremental"
#: The layout version written in every manifest.
VERSION = 1
#: The pack metadata key: ``{"raw": "RL..."}``, one character per piece (R: stored RAW).
PACK_KEY = "ndckpt_pack"
#: Target piece size: a local change rewrites about this much.
PIECE_BYTES = 1 << 20
#: Pack file names.
PACK_RE = re.compile(r"pack-([0-9]{12,})-([0-9a-f]{16})\.ndckpt")
#: One sampled byte range per this many bytes in the spot check of a hinted array.
SPOT_STRIDE = 4096
SPOT_BYTES = 8


def piece_elems(itemsize: int) -> int:
    """Elements per piece for ``itemsize``: a multiple of 4096 elements (so pieces of whole pages) near
    :data:`PIECE_BYTES`, or as many whole elements as fit for items larger than 256 bytes."""
    if itemsize > 256:
        return max(1, PIECE_BYTES // itemsize)
    return max(4096, round(PIECE_BYTES / itemsize / 4096) * 4096)


def piece_name(ordinal: int) -> str:
    """The name of piece number ``ordinal`` of a pack (names sort in write order, so a whole new
    array's pieces lie back to back in the pack)."""
    return f"p{ordinal:09d}"


def spot_hash(u8: np.ndarray[Any, np.dtype[np.uint8]]) -> int:
    """XXH64 of the sampled bytes of ``u8``: the first ``SPOT_BYTES`` of every ``SPOT_STRIDE`` bytes."""
    n = u8.nbytes
    full = n // SPOT_STRIDE
    parts = [np.ascontiguousarray(u8[: full * SPOT_STRIDE].reshape(full, SPOT_STRIDE)[:, :SPOT_BYTES])] if full else []
    parts.append(np.ascontiguousarray(u8[full * SPOT_STRIDE : full * SPOT_STRIDE + SPOT_BYTES]))
    return xxh64(np.concatenate([p.reshape(-1) for p in parts]))


def is_manifest_metadata(md: Any) -> bool:
    """Whether a file's metadata marks it as an incremental checkpoint's manifest."""
    return isinstance(md, dict) and isinstance(md.get(KEY), dict) and set(md) == {KEY, "user"}


@dataclass
class ArrayEntry:
    """One array of a manifest: where it goes, what it is, and its pieces (rows of the piece table)."""

    path: tuple[str, ...]
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    order: str
    first: int  # index of its first piece in the piece table
    count: int  # number of pieces
    spot: int | None = None  # spot-check hash of a hinted array (None: not hinted)

    @property
    def name(self) -> str:
        return "/".join(self.path)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


@dataclass
class Manifest:
    """A parsed manifest: its packs ``[(name, seq)]``, arrays, piece table and values tree."""

    seq: int
    packs: list[tuple[str, int]]
    arrays: list[ArrayEntry]
    pieces: np.ndarray[Any, np.dtype[np.uint64]]  # (n, 4): pack index, ordinal in the pack, xxh64, nbytes
    values: dict[str, Any]
    user: Any
    own: int | None = field(default=None)  # index of the pack this save wrote (None: it wrote none)

    def refs(self, e: ArrayEntry) -> Iterator[tuple[int, int, int, int]]:
        """The pieces of ``e``: ``(pack index, ordinal, xxh64, nbytes)``."""
        for row in self.pieces[e.first : e.first + e.count].tolist():
            yield int(row[0]), int(row[1]), int(row[2]), int(row[3])


def _bad(path: Path, what: str) -> FormatError:
    return FormatError(f"{str(path)!r}: incremental manifest: {what}")


def read_manifest(path: Path) -> Manifest:
    """Parse the manifest at ``path``. FormatError if it is not one or is malformed; CheckptIOError to read it."""
    with open_checkpoint(path, mmap=False) as r:
        md = r.metadata
        if not is_manifest_metadata(md):
            raise _bad(path, "not an incremental checkpoint")
        tree = r.load()
    m = md[KEY]
    try:
        if m["version"] != VERSION:
            raise _bad(path, f"unsupported version {m['version']!r}")
        cols = m["arrays"]
        sub = tree[KEY]
        pieces = np.asarray(sub["pieces"], dtype=np.uint64).reshape(-1, 4)
        values = sub.get("values", {})
        spots = {int(k): int(v) for k, v in m["spot"].items()}
        arrays: list[ArrayEntry] = []
        first = 0
        for i, (p, dt, shape, order, count) in enumerate(
            zip(cols["path"], cols["dtype"], cols["shape"], cols["order"], cols["pieces"], strict=True)
        ):
            arrays.append(
                ArrayEntry(
                    tuple(p), decode_dtype(dt), tuple(int(s) for s in shape), order, first, int(count), spots.get(i)
                )
            )
            first += int(count)
        if first != len(pieces):
            raise _bad(path, f"the arrays list {first} pieces, the piece table has {len(pieces)}")
        packs = [(str(n), int(s)) for n, s in m["packs"]]
        for n, _ in packs:
            if PACK_RE.fullmatch(n) is None:
                raise _bad(path, f"bad pack name {n!r}")
        if len(pieces) and int(pieces[:, 0].max()) >= len(packs):
            raise _bad(path, "a piece names a pack index beyond the pack list")
        own = m["own"]
        return Manifest(int(m["seq"]), packs, arrays, pieces, values, md["user"], None if own is None else int(own))
    except FormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _bad(path, f"malformed ({type(e).__name__}: {e})") from None


def _nest(tree: dict[str, Any], path: tuple[str, ...], v: Any) -> None:
    d = tree
    for k in path[:-1]:
        d = d.setdefault(k, {})
    d[path[-1]] = v


def _is_raw(style: Any) -> bool:
    """Whether ``style`` (a valid style argument) stores frames RAW."""
    return bool(parse_style_arg(style, "style") == FrameStyle.RAW)


def _piece_bounds(nbytes: int, itemsize: int) -> list[tuple[int, int]]:
    step = piece_elems(itemsize) * itemsize
    return [(lo, min(lo + step, nbytes)) for lo in range(0, nbytes, step)]


class IncrementalStore:
    """The incremental checkpoints of one manager directory (see the module docstring).

    Not thread-safe beyond this: :meth:`save` and :meth:`collect` run in one
    thread at a time (the manager's writer); :meth:`load` may run meanwhile.
    """

    def __init__(self, directory: Path, full_every: int | None) -> None:
        self.directory = directory
        self.full_every = full_every
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, int, int], Manifest | None]] = {}

    # -- reading the directory ---------------------------------------------------------------

    def manifest(self, path: Path) -> Manifest | None:
        """The parsed manifest at ``path`` (cached by file version); None for a plain checkpoint file.

        Raises FormatError / CheckptIOError when it cannot be read.
        """
        st = path.stat()
        version = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            c = self._cache.get(path.name)
        if c is not None and c[0] == version:
            return c[1]
        with open_checkpoint(path, mmap=False) as r:
            plain = not is_manifest_metadata(r.metadata)
        man = None if plain else read_manifest(path)
        with self._lock:
            self._cache[path.name] = (version, man)
        return man

    def _manifests(self) -> list[tuple[int, Manifest | None]] | None:
        """Every checkpoint file's manifest by step (None for plain files); None if one cannot be read."""
        res: list[tuple[int, Manifest | None]] = []
        for entry in sorted(os.listdir(self.directory)):
            m = NAME_RE.fullmatch(entry)
            if m is None or checkpoint_name(int(m.group(1))) != entry:
                continue
            try:
                res.append((int(m.group(1)), self.manifest(self.directory / entry)))
            except FileNotFoundError:
                continue
            except Exception:  # unreadable: its references are unknown
                return None
        return res

    # -- saving ------------------------------------------------------------------------------

    def save(
        self,
        path: Path,
        state: Mapping[str, Any],
        *,
        style: Any,
        threads: int,
        metadata: Any,
        unchanged: Collection[str] = (),
    ) -> dict[str, int]:
        """Write ``state`` as an incremental checkpoint at ``path``; return byte counts.

        Writes one pack with the pieces no retained checkpoint holds (none if
        there are none), then the manifest. Arrays named in ``unchanged`` are
        not hashed: their pieces are those of the newest checkpoint's array of
        that name (when dtype and shape match; otherwise they are hashed), and a
        spot check of the caller's bytes is recorded for ``ndckpt verify``.
        On failure no manifest is written (a pack may be left; collect removes it).
        Returns ``{"new": bytes written as pieces, "shared": bytes referenced}``.
        """
        user_md = check_metadata(metadata)
        items, groups = flatten_tree(state)
        values: dict[str, Any] = {}
        arrays: list[tuple[tuple[str, ...], np.ndarray[Any, Any]]] = []
        for p, v in items:
            if is_value(v):
                _nest(values, p, v)
            else:
                arrays.append((p, as_array(p, v)))
        for g in groups:
            _nest(values, g, {})
        names = ["/".join(p) for p, _ in arrays]
        hinted = set(unchanged)
        unknown = hinted - set(names)
        if unknown:
            raise InvalidArgumentError(f"unchanged: {sorted(unknown)} name no array of the state")
        if isinstance(style, Mapping):
            styles: list[Any] = resolve_styles(style, names, values=list(_value_names(values)))
        else:
            styles = [style] * len(arrays)

        mans = self._manifests()
        latest: Manifest | None = None
        known: dict[tuple[int, int], tuple[str, int]] = {}  # (xxh64, nbytes) -> (pack name, ordinal)
        seq = 0
        if mans:
            incr = [(s, m) for s, m in mans if m is not None]
            if incr:
                latest = max(incr, key=lambda sm: sm[1].seq)[1]
                seq = latest.seq + 1
        full = self.full_every is not None and seq % self.full_every == 0
        base = seq - seq % self.full_every if self.full_every is not None else 0
        if mans and not full:
            for _, m in mans:
                if m is None:
                    continue
                for row in m.pieces.tolist():
                    pk, pseq = m.packs[int(row[0])]
                    if pseq >= base:
                        known.setdefault((int(row[2]), int(row[3])), (pk, int(row[1])))
        pack_name = f"pack-{seq:012d}-{secrets.token_hex(8)}.ndckpt"
        pack_list: list[tuple[str, int]] = []
        pack_index: dict[str, int] = {}

        def pidx(name: str, pseq: int) -> int:
            i = pack_index.get(name)
            if i is None:
                i = pack_index[name] = len(pack_list)
                pack_list.append((name, pseq))
            return i

        seqs = {n: s for m in ([] if mans is None else [m for _, m in mans if m is not None]) for n, s in m.packs}
        new_state: dict[str, np.ndarray[Any, Any]] = {}
        new_styles: dict[str, Any] = {}
        rows: list[tuple[int, int, int, int]] = []
        cols: dict[str, list[Any]] = {"path": [], "dtype": [], "shape": [], "order": [], "pieces": []}
        spots: dict[str, int] = {}
        new_bytes = shared = 0
        prev = {e.name: e for e in latest.arrays} if latest is not None and not full else {}
        for i, ((p, a), name, st) in enumerate(zip(arrays, names, styles, strict=True)):
            sb, order = stored_bytes(a)
            if not isinstance(sb, np.ndarray):
                a = np.ascontiguousarray(a)
                sb, order = stored_bytes(a)
            assert isinstance(sb, np.ndarray)
            u8 = sb
            cols["path"].append(list(p))
            cols["dtype"].append(encode_dtype(a.dtype, what=f"array {name!r}"))
            cols["shape"].append(list(a.shape))
            cols["order"].append(order)
            pe = prev.get(name) if name in hinted else None
            if pe is not None and pe.dtype == a.dtype and pe.shape == a.shape and pe.order == order and latest:
                refs = list(latest.refs(pe))
                if all(latest.packs[r[0]][1] >= base for r in refs):
                    for pi, o, h, n in refs:
                        pk, pseq = latest.packs[pi]
                        rows.append((pidx(pk, pseq), o, h, n))
                        shared += n
                    cols["pieces"].append(len(refs))
                    spots[str(i)] = spot_hash(u8)
                    continue
            bounds = _piece_bounds(a.nbytes, a.dtype.itemsize)
            for lo, hi in bounds:
                seg = u8[lo:hi]
                h = xxh64(seg)
                n = hi - lo
                loc = known.get((h, n))
                if loc is None:
                    loc = known[(h, n)] = (pack_name, len(new_state))
                    new_state[piece_name(loc[1])] = seg.view(a.dtype)
                    new_styles[piece_name(loc[1])] = st
                    new_bytes += n
                else:
                    shared += n
                pk = loc[0]
                rows.append((pidx(pk, seq if pk == pack_name else seqs[pk]), loc[1], h, n))
            cols["pieces"].append(len(bounds))
        if new_state:
            style_arg: Any = new_styles if isinstance(style, Mapping) else style
            flags = "".join("R" if _is_raw(new_styles[k]) else "L" for k in new_state)
            save(
                self.directory / pack_name,
                new_state,
                style=style_arg,
                threads=threads,
                metadata={PACK_KEY: {"raw": flags}},
            )
        cols["order"] = "".join(cols["order"])  # type: ignore[assignment]
        table = np.array(rows, dtype=np.uint64).reshape(-1, 4)
        md = {
            KEY: {
                "version": VERSION,
                "seq": seq,
                "packs": [[n, s] for n, s in pack_list],
                "own": pack_index.get(pack_name),
                "arrays": cols,
                "spot": spots,
            },
            "user": user_md,
        }
        tree: dict[str, Any] = {"pieces": table}
        tree["values"] = values if values else {}
        save(path, {KEY: tree}, threads=threads, metadata=md)
        return {"new": new_bytes, "shared": shared}

    # -- garbage collection ------------------------------------------------------------------

    def collect(self) -> list[Path]:
        """Delete the packs no checkpoint file of the directory references; return them.

        Deletes nothing when any checkpoint file cannot be read (its references
        are unknown). CheckptIOError if a deletion fails (the packs before it are gone).
        """
        mans = self._manifests()
        if mans is None:
            return []
        used = {n for _, m in mans if m is not None for n, _ in m.packs}
        gone: list[Path] = []
        for entry in sorted(os.listdir(self.directory)):
            if PACK_RE.fullmatch(entry) is None or entry in used:
                continue
            p = self.directory / entry
            try:
                p.unlink()
            except FileNotFoundError:
                continue
            except OSError as e:
                raise CheckptIOError(e.errno, f"deleting the unreferenced pack {str(p)!r} failed: {e.strerror}") from e
            gone.append(p)
        return gone

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete temporary pack files of dead writers (as :func:`ndckpt._files.remove_stale_temps`)."""
        try:
            return _files.remove_stale_temps(self.directory, lambda stem: PACK_RE.fullmatch(stem) is not None)
        except OSError as e:
            raise CheckptIOError(e.errno, f"cannot list {str(self.directory)!r}: {e.strerror}") from e


def _value_names(values: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for k, v in values.items():
        name = f"{prefix}/{k}" if prefix else k
        yield name
        if isinstance(v, Mapping):
            yield from _value_names(v, name)
