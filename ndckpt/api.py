"""save / load / open / verify / Reader: argument checks and dispatch to :mod:`ndckpt.container`.

The container package does the work (normative spec: ``docs/format.md``):
:mod:`~ndckpt.container.plan` turns arrays into a plan, :mod:`~ndckpt.container.write`
writes it, :mod:`~ndckpt.container.layout` validates a file's layout,
:mod:`~ndckpt.container.read` and :mod:`~ndckpt.container.stream` read arrays back.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO, Literal, ParamSpec, TypeVar, Union

import numpy as np

from ._browse import Group, Keys, Listing, Node, build_tree, split_key, walk
from ._memory import gc_paused
from ._sources import file_region, save_to
from ._subfiles import check_subfile_index
from .container.layout import parse_layout
from .container.mapped import FileRegion
from .container.objects import MARKER, from_tree, rebuild
from .container.plan import DEFAULT_FRAME_BYTES, DEFAULT_RAW_FRAME_BYTES, prepare
from .container.read import Loader, flatten_out, loader_for, nest, verify_frames
from .container.stream import load_stream
from .container.summary import array_rows, listing, value_rows
from .container.values import decode as decode_value
from .errors import CheckptIOError, FormatError, InvalidArgumentError
from .parallel import ProgressCallback, resolve_threads

__all__ = ["Reader", "load", "open", "save", "verify"]

PathLike = Union[str, "os.PathLike[str]"]


def save(
    target: PathLike | BinaryIO | int,
    arrays: Mapping[str, Any],
    *,
    style: Any = "raw",
    threads: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    durable: bool = True,
) -> None:
    """Write ``arrays`` (a possibly nested mapping of names to numpy arrays) as one ndckpt file.

    Parameters
    ----------
    target
        A path (written atomically: a temporary file in the same directory is
        written, flushed, fsynced and renamed over ``target``, then the
        directory is fsynced; see *Paths* below), or a binary file object /
        int file descriptor open for writing (pipes, sockets and stdout
        included; the writer never seeks and the bytes are identical to a
        file's). File objects stay open.
    arrays
        Mapping of non-empty str keys without "/" to leaves, possibly nested
        (a mapping is a group; nesting comes back on load; flat names join
        the path with "/"). A leaf is a numpy array (every dtype without Python
        objects is stored exactly: byte order, structured layouts and memory
        order kept), or a *value* stored in the head and given back as an
        equal object of the same type, bit for bit: a numpy scalar, ``int`` of
        any size, ``float``, ``bool``, ``complex``, ``str``, ``bytes``,
        ``None``, or a list, tuple or (inside those) dict with str keys of
        values (docs/guide.md, "Python values and numpy scalars").
    style
        ``"raw"`` (zero-copy on load), ``"lz4"``, a FrameStyle, or a mapping
        from array names (flat "a/b" or nested like ``arrays``) to styles;
        unnamed arrays are RAW.
    threads
        Worker threads for checksumming and compression (None: all cores).
        The bytes written never depend on it.
    metadata
        Any JSON value (dict with str keys, list, str, int, float, bool, None;
        numpy scalars are converted with ``.item()``, tuples become lists),
        stored with the arrays (``Reader.metadata``).
    progress
        Optional ``callback(done, total)``, in uncompressed bytes, called from
        the calling thread: once with ``done == 0`` before any frame, then
        after each frame is written and inside large RAW frames, at least
        every ``max(16 MiB, total // 100)`` bytes, with ``done`` never
        decreasing and the last call ``(total, total)``. If the callback also
        has a ``phase`` method, ``progress.phase("fsync")`` is called after
        that last call when the fsyncs begin (a path with ``durable=True``
        only). An exception raised by either aborts the save as a failed
        write does (for a path: the temporary file is removed, any previous
        file is untouched) and propagates.
    durable
        For a path: fsync the file before the rename and the directory after
        it (default), so that the new checkpoint survives a power failure or
        OS crash once ``save`` returns. ``False`` skips both fsyncs, which on
        a disk can cost more than the write itself: the save stays atomic for
        readers and survives a crash of this process, but after a power
        failure or OS crash the target may hold an incomplete file (readers
        then raise, never returning wrong arrays) or neither version. Ignored
        for file objects and descriptors, which are never fsynced.

    Raises
    ------
    InvalidArgumentError
        Bad arguments (the message names the array, value or argument): a key
        that is empty, not a str or contains "/", a leaf of a type not stored
        exactly, a head (values and metadata) beyond the readers' 256 MiB
        limit, or a ``target`` that is a directory or a symlink to one;
        nothing is written at ``target`` then.
    UnsupportedError
        LZ4 requested and no LZ4 library available; nothing is written.
    CheckptIOError
        The write failed (disk full, broken pipe, ...). For a path, the
        temporary file is removed and any previous file at ``target`` is
        untouched (except when only the final fsync of the directory fails:
        the new file is then in place, its durability unknown); for a file
        object, its content is undefined.

    Notes
    -----
    Output is deterministic: equal mappings (whatever their key order) and
    options give identical bytes.

    Paths: the temporary file is ``.<name>.ndckpt-tmp-<pid>-<host>-<random>``
    next to the file being replaced, created exclusively (a file or symlink
    planted there is never followed). Replacing an existing file keeps its
    permission bits (a ``0600`` file stays ``0600``); a new file gets
    ``0o666 & ~umask``. Owner, group, extended attributes and other hard
    links of the old file are not carried over (the file is a new inode).
    A symlink ``target`` is written through, like ``np.save``: the file it
    resolves to is replaced atomically (in that file's directory) and the
    link stays; a dangling link creates the file it names; a link to a
    directory raises InvalidArgumentError. A FIFO or device (``/dev/stdout``)
    is written in place as a stream, without rename or fsync.

    Before writing, temporary files of the same target left by writers that
    were killed are removed: only names of exactly the form above, in the
    target's directory, for this target's name, regular files (not
    symlinks), whose ``<host>`` is this host (and pid namespace) and whose
    pid no longer exists. A temporary file of another host on a shared file
    system, or of a live process, is never touched.

    Examples
    --------
    A nested mapping of arrays and values, written to a path and read back (the temporary
    file was renamed over ``state.ndckpt``):

    >>> import io, os, tempfile, ndckpt, numpy as np
    >>> state = {"fields": {"u": np.arange(6.0).reshape(2, 3)}, "step": 7}
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "state.ndckpt")
    ...     ndckpt.save(path, state, style="lz4", metadata={"run": "a"})
    ...     print(os.listdir(d), ndckpt.load(path)["fields"]["u"].tolist())
    ['state.ndckpt'] [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]

    To a binary file object (or a pipe, socket or fd: the writer never seeks):

    >>> f = io.BytesIO()
    >>> ndckpt.save(f, {"x": np.zeros(3, "f4")})
    >>> ndckpt.load(f.getvalue())["x"]
    array([0., 0., 0.], dtype=float32)
    """
    th = resolve_threads(threads)
    if not isinstance(durable, bool):
        raise InvalidArgumentError(f"durable must be a bool, got {durable!r}")
    with gc_paused():
        prep = prepare(arrays, style, metadata, DEFAULT_FRAME_BYTES, DEFAULT_RAW_FRAME_BYTES)
    save_to(target, prep, th, progress, durable)


#: What ``mmap=`` accepts: True or "r" (read-only views), "c" (copy-on-write views), False (copies).
MmapMode = bool | Literal["r", "c"]


def check_mmap(mmap: Any) -> str | None:
    """``mmap`` as ``"r"``, ``"c"`` or None (copies); InvalidArgumentError for anything else."""
    if mmap is True or (type(mmap) is str and mmap == "r"):
        return "r"
    if type(mmap) is str and mmap == "c":
        return "c"
    if mmap is False:
        return None
    raise InvalidArgumentError(
        f"mmap must be True or 'r' (read-only views), 'c' (copy-on-write: writable views whose writes "
        f"never reach the file) or False (copies), got {mmap!r}"
    )


def _check_read_options(mmap: Any, verify: Any) -> str | None:
    """Validate the read options; returns the mmap mode as :func:`check_mmap` does."""
    mode = check_mmap(mmap)
    if verify is not None and not isinstance(verify, bool):  # 1 and 0 too: a typo, not a choice
        raise InvalidArgumentError(f"verify must be None, True or False, got {verify!r}")
    return mode


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _file_errors(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Readers' outer net: failures a file's content can still cause past the checks (an allocation
    the machine cannot make, nesting beyond the interpreter's stack) as ndckpt's errors."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except MemoryError as e:
            raise CheckptIOError(errno.ENOMEM, f"out of memory while reading the checkpoint ({e or '-'})") from e
        except RecursionError as e:
            raise FormatError(f"checkpoint structure nested too deeply to read ({e})") from e

    return wrapper


@_file_errors
def load(
    source: PathLike | BinaryIO | int | bytes | memoryview,
    *,
    mmap: MmapMode = True,
    out: Mapping[str, Any] | None = None,
    threads: int | None = None,
    verify: bool | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Read a whole checkpoint and return its arrays and values as a nested dict.

    Parameters
    ----------
    source
        A path (mapped), an in-memory buffer (bytes, bytearray, mmap, numpy
        array), or a binary file object / int fd read in one sequential pass
        (pipes work; the stream is consumed, possibly a little past the end).
    mmap
        How RAW arrays come back from a path or buffer (LZ4 arrays and
        streams always give new writable arrays). True or ``"r"``: read-only
        zero-copy views of the mapping (nothing is read until touched; writing
        to one raises numpy's "assignment destination is read-only"). ``"c"``
        (copy-on-write, as ``np.load(mmap_mode="c")``): writable views of a
        private mapping made for this call; written pages are copied, never
        written back to the file, and other loads never see them (a load whose
        mapped arrays total less than 1 MiB copies them instead; from a buffer,
        "c" copies). False: copies in new page-aligned arrays. Use "c" or
        False when you need writable arrays. Anything else is
        InvalidArgumentError, raised before the source is opened.
    out
        A (nested) mapping of arrays to fill instead of allocating, keyed like
        the saved mapping; any subset of names. Each must match dtype and shape
        and be contiguous in the saved order; the result holds these same
        objects. Works for RAW (copied) and LZ4 (decoded in place) arrays.
        Entries at the name of a value (Python value or numpy scalar) are
        skipped: the result holds the stored value.
        If the load raises, the contents of these arrays are undefined: data
        is read or decoded into them before its frame's checksum is checked.
    threads
        Worker threads (None: all cores). A stream is read and decoded in the
        calling thread (its arrays grow with the bytes that arrive).
    verify
        None: check LZ4 frames' checksums (their bytes are read anyway); True:
        check every frame, RAW too (reads mapped pages); False: check none.
        Structure, sizes and exact decoded sizes are always checked.
    progress
        Optional ``callback(done, total)`` in uncompressed bytes of the frames
        read (zero-copy views are not read and not counted): ``(0, total)``
        first, then after each frame and, inside large RAW frames, at least
        every ``max(16 MiB, total // 100)`` bytes, never decreasing, ending at
        ``(total, total)``. It may be called from worker threads, one call at
        a time (a stream is read in the calling thread). An exception it
        raises aborts the load and propagates.

    Raises
    ------
    FormatError
        Not an ndckpt file, unknown version, malformed structure, checksum
        mismatch; names the frame, offset and arrays. No arrays are returned.
    UnsupportedError
        The file needs a format feature this version does not implement
        ("upgrade ndckpt"; docs/format.md §5).
    CheckptIOError
        Missing file, read error or truncated stream.
    CompressionError
        An LZ4 chunk is malformed (names the frame, offset and chunk).
    InvalidArgumentError
        Bad arguments, or an ``out`` array that does not match.

    Notes
    -----
    Safe for untrusted files: nothing is unpickled or executed, time and
    memory are bounded by the file's real content, and a bad file raises one
    of the errors above. Not covered: RAW data of a mapped load is only
    checksummed with ``verify=True``, and the zero-copy views of a file that
    another program truncates raise SIGBUS when touched (as with
    ``np.load(mmap_mode=...)``; :func:`save`'s atomic replace never does).
    See "Untrusted files" in the user guide.

    Examples
    --------
    >>> import io, ndckpt, numpy as np
    >>> f = io.BytesIO()
    >>> ndckpt.save(f, {"u": np.arange(4.0), "params": {"dt": 0.5}, "step": 7})
    >>> state = ndckpt.load(f.getvalue())
    >>> state
    {'params': {'dt': 0.5}, 'step': 7, 'u': array([0., 1., 2., 3.])}

    RAW arrays of a buffer or path are read-only zero-copy views unless ``mmap`` says
    otherwise; ``out`` fills the caller's arrays; a stream is read in one pass:

    >>> state["u"].flags.writeable, ndckpt.load(f.getvalue(), mmap=False)["u"].flags.writeable
    (False, True)
    >>> u = np.empty(4)
    >>> ndckpt.load(f.getvalue(), out={"u": u})["u"] is u
    True
    >>> _ = f.seek(0)
    >>> ndckpt.load(f)["u"]
    array([0., 1., 2., 3.])
    """
    th = resolve_threads(threads)
    mode = _check_read_options(mmap, verify)
    mapped = file_region(source)
    if mapped is None:
        return load_stream(source, out=out, verify=verify, progress=progress)
    with gc_paused():  # a head, its layout and the result: many acyclic objects
        try:
            layout = parse_layout(mapped.region, records=not mapped.fetches)
            outs = flatten_out(out, layout)
            loader = loader_for(mapped, layout, mode, verify, th, progress)
            arrays = loader.load(list(range(len(layout.head.arrays))), outs)
        finally:
            mapped.close()
        return nest(layout.head, arrays)


@_file_errors
def verify(
    source: PathLike | BinaryIO | int | bytes | memoryview,
    *,
    threads: int | None = None,
    progress: ProgressCallback | None = None,
) -> None:
    """Check a checkpoint's structure and every frame's checksum; raise on the first problem.

    LZ4 frames are also decoded (into scratch memory) so that a frame whose
    blocks are malformed fails even if its checksum was forged, and the zero
    pads before RAW frames (covered by no checksum; loads never read them) must
    be zero. An MPI subfile index must list only its writer's subfile names
    (``docs/mpi.md``; from a stream or buffer, whose name is unknown, names of
    that form for any one-component prefix), else FormatError. Raises as
    :func:`load`; returns None when the file is sound. A path's frames and
    pads are read with ``pread`` to be checked, never through the mapping, so
    a file that another program truncates meanwhile gives CheckptIOError, not
    SIGBUS (``load(verify=True)`` reads what it hashes the same way, while the
    arrays it returns may still be views of the mapping). ``progress`` is called
    as by :func:`load`, except that a path's or buffer's RAW frames are
    reported whole once checked (their checksum is computed in one pass),
    however large.

    Examples
    --------
    A sound checkpoint verifies (None); one flipped bit in an array's data does not, although
    a default load of the same bytes (RAW frames are not checksummed) returns the damaged array:

    >>> import io, ndckpt, numpy as np
    >>> f = io.BytesIO()
    >>> ndckpt.save(f, {"u": np.arange(4.0)})
    >>> data = bytearray(f.getvalue())
    >>> ndckpt.verify(data)
    >>> data[data.find(np.arange(4.0).tobytes())] ^= 1
    >>> ndckpt.load(data)["u"].tolist()
    [5e-324, 1.0, 2.0, 3.0]
    >>> ndckpt.verify(data)
    Traceback (most recent call last):
    ...
    ndckpt.errors.FormatError: frame 0 at offset 4096 (array 'u'): checksum mismatch (the file is corrupt)
    """
    th = resolve_threads(threads)
    mapped = file_region(source)
    if mapped is None:
        load_stream(
            source,
            out=None,
            verify=True,
            progress=progress,
            check_pads=True,
            check_head=lambda head: check_subfile_index(head.metadata, None),
        )
        return
    try:
        layout = verify_frames(mapped, th, progress)
    finally:
        mapped.close()
    check_subfile_index(layout.head.metadata, source)


# ----------------------------------------------------------------------------------------------
# open(): the lazy reader
# ----------------------------------------------------------------------------------------------


class Reader(Mapping[str, Any]):
    """A lazily read checkpoint: a read-only ``Mapping`` of its nested names, read on access.

    Made by :func:`open`. Holds a read-only mapping of the file (or the caller's buffer); arrays
    returned as views keep the mapping alive after :meth:`close`. ``mmap`` is as in
    :func:`load`, per call: with ``"c"`` each :meth:`read` or :meth:`load` returns views of its
    own private mapping, so writes to them reach neither the file nor arrays returned by other
    calls.

    As a ``Mapping`` a Reader is the file's top level, like the dict :func:`load` returns:
    iteration and ``len`` give the top-level names (sorted); ``reader["name"]`` reads an array
    (as :meth:`read` does), returns a Python-value leaf, or gives a :class:`~ndckpt.Group`
    (a read-only ``Mapping`` of that group's members). A key may be a path, ``"group/name"`` or
    ``("group", "name")``. ``reader.get(key, default)`` is the ``Mapping``'s. :meth:`names`
    lists every leaf by its full path. Readers compare and hash by identity. In a notebook a
    Reader shows itself as a table (name, dtype, shape, style, size, stored size, ratio); the
    ``repr`` is the same table as text.

    >>> import io, ndckpt, numpy as np
    >>> f = io.BytesIO()
    >>> ndckpt.save(f, {"fields": {"u": np.zeros(4), "v": np.ones(2, "f4")}, "step": 7})
    >>> r = ndckpt.open(f.getvalue())
    >>> list(r), list(r["fields"]), r["step"], r["fields/v"].tolist()
    (['fields', 'step'], ['u', 'v'], 7, [1.0, 1.0])
    >>> r.names()
    ['fields/u', 'fields/v', 'step']
    """

    def __init__(
        self,
        source: PathLike | bytes | memoryview,
        *,
        mmap: MmapMode = True,
        threads: int | None = None,
        verify: bool | None = None,
    ) -> None:
        self._threads = resolve_threads(threads)
        self._mode = _check_read_options(mmap, verify)
        mapped = file_region(source, files=True)
        if mapped is None:
            raise InvalidArgumentError(
                "open: needs a path, a URL, a seekable file object or an in-memory buffer (random access); "
                "use ndckpt.load for an fd or a stream"
            )
        self._mapped: FileRegion | None = mapped
        try:
            with gc_paused():
                self._layout = parse_layout(mapped.region, records=not mapped.fetches)
        except BaseException:
            mapped.close()
            raise
        self._size = mapped.region.nbytes
        self._verify = verify
        self._root: Node | None = None  # the name tree, built on first use
        if isinstance(source, (str, os.PathLike)):
            self._title = f"ndckpt.Reader {os.fspath(source)!r}"
        elif mapped.fetches:
            self._title = f"ndckpt.Reader of a {self._size}-byte {type(source).__name__}"
        else:
            self._title = f"ndckpt.Reader of a {self._size}-byte buffer"

    def _loader(self) -> Loader:
        if self._mapped is None:
            raise InvalidArgumentError("Reader is closed")
        return loader_for(self._mapped, self._layout, self._mode, self._verify, self._threads)

    @property
    def metadata(self) -> Any:
        """The metadata given to save: any JSON value (None if none was)."""
        return self._layout.head.metadata

    def names(self) -> list[str]:
        """Every leaf's full name ("group/name"): the arrays in storage order (sorted by path),
        then the Python-value leaves sorted by path. (Empty groups are not leaves.)"""
        return [a.name for a in self._layout.head.arrays] + list(self._layout.value_names)

    # -- the Mapping: the file's top level; groups are Group views --------------------------------

    def _tree(self) -> Node:
        if self._root is None:
            head = self._layout.head
            self._root = build_tree([a.path for a in head.arrays], [p for p, _ in head.values], head.groups)
        return self._root

    def _node(self, path: tuple[str, ...]) -> Node:
        """The group at ``path``; KeyError if there is none."""
        node = self._tree()
        for k in path:
            nxt = node.get(k)
            if not isinstance(nxt, dict):
                raise KeyError("/".join(path))
            node = nxt
        return node

    def _item(self, path: tuple[str, ...]) -> Any:
        key = "/".join(path)
        if key in self._layout.by_name or key in self._layout.value_names:
            return self.read(key)
        if MARKER in self._node(path):  # (KeyError for a name that is neither a leaf nor a group)
            return from_tree(self._load_group(path, None), key)  # a pandas or xarray object
        return Group(self, path)

    def __getitem__(self, key: str | tuple[str, ...]) -> Any:
        return self._item(split_key(key))

    def __iter__(self) -> Iterator[str]:
        return iter(self._tree())

    def keys(self) -> Keys:
        return Keys(self)

    def __len__(self) -> int:
        return len(self._tree())

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str) and (key in self._layout.by_name or key in self._layout.value_names):
            return True
        return key in Group(self, ())

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def value_info(self) -> list[dict[str, Any]]:
        """Per Python-value leaf (numpy scalars included), sorted by path: name, type and value."""
        return value_rows(self._layout)

    @_file_errors
    def read(self, name: str | tuple[str, ...], out: np.ndarray[Any, Any] | None = None, *, region: Any = None) -> Any:
        """Read one array, or a region of it: a zero-copy view (RAW), a new array, or into ``out``.

        For a Python-value leaf (or numpy scalar) returns a new copy of the value; ``out`` and
        ``region`` are then refused (InvalidArgumentError), as is the name of a group (use
        ``reader[name]`` or :meth:`load`).

        Reads only the frames holding this array (with ``region``, only those
        holding the region). ``region`` is a tuple of slices with step 1 (fewer
        than ``ndim`` means whole trailing axes); ``out`` must then have the
        region's shape. For RAW arrays mapped zero-copy the result is a view.
        Raises KeyError for an unknown name, InvalidArgumentError for a bad
        region or a mismatched ``out``, and the errors of :func:`load` for a
        corrupt frame.
        """
        key = "/".join(name) if isinstance(name, tuple) else name
        vi = self._layout.value_names.get(key) if isinstance(key, str) else None
        if vi is not None:
            if out is not None or region is not None:
                raise InvalidArgumentError(
                    f"{key!r} is a Python value stored in the head, not an array: out= and region= do not apply"
                )
            enc = self._layout.head.values[vi][1]
            return decode_value(enc, f"value {key!r}")
        if isinstance(key, str) and key not in self._layout.by_name and key in self:
            raise InvalidArgumentError(f"{key!r} is a group, not an array: index it (reader[{key!r}]) or load it")
        ai = self._layout.index_of(name)
        if region is not None:
            return self._loader().read_region(ai, region, out)
        outs = {ai: out} if out is not None else {}
        return self._loader().load([ai], outs)[ai]

    def load(self, *, out: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """All arrays as a nested dict, as :func:`load` does."""
        outs = flatten_out(out, self._layout)
        arrays = self._loader().load(list(range(len(self._layout.head.arrays))), outs)
        return nest(self._layout.head, arrays)

    def _load_group(self, path: tuple[str, ...], out: Mapping[str, Any] | None) -> dict[str, Any]:
        node = self._node(path)
        outs = flatten_out(out, self._layout, path)
        arrays = self._loader().load([v for _, v in walk(node) if not isinstance(v, dict) and v >= 0], outs)
        values = self._layout.head.values

        def build(n: Node, where: tuple[str, ...]) -> dict[str, Any]:  # groups, arrays (>= 0), values (< 0)
            return {
                k: build(v, (*where, k)) if isinstance(v, dict) else arrays[v] if v >= 0
                else decode_value(values[-1 - v][1], f"value {'/'.join((*where, k))!r}")
                for k, v in n.items()
            }

        return rebuild(build(node, path), "/".join(path))

    def info(self) -> list[dict[str, Any]]:
        """Per array, in storage order: name, dtype, shape, order, style, nbytes, stored_nbytes,
        frames, blocks, offsets (of those frames in the file).

        For arrays packed with others in one LZ4 frame, stored_nbytes is the frame's stored size
        shared in proportion to the array's bytes. blocks is None except for a global array
        stored as blocks (:mod:`ndckpt.mpi`): then each block's ``[start, shape]``.
        """
        return array_rows(self._layout)

    def _listing(self, path: tuple[str, ...]) -> Listing:
        title = self._title + (f", group {'/'.join(path)!r}" if path else "")
        title += " (closed)" if self._mapped is None else ""
        return listing(self._layout, self._node(path), title, top=not path)

    def __repr__(self) -> str:
        return Group(self, ()).__repr__()

    def _repr_html_(self) -> str:
        return Group(self, ())._repr_html_()

    @property
    def nbytes(self) -> int:
        """Size of the checkpoint in bytes."""
        return self._size

    def close(self) -> None:
        """Close the file and drop the mapping (views already returned stay valid). Idempotent."""
        if self._mapped is not None:
            self._mapped.close()
            self._mapped = None

    def __del__(self) -> None:
        mapped = getattr(self, "_mapped", None)
        if mapped is not None:
            mapped.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@_file_errors
def open(
    source: PathLike | bytes | memoryview,
    *,
    mmap: MmapMode = True,
    threads: int | None = None,
    verify: bool | None = None,
) -> Reader:
    """Open a checkpoint for random access; see :class:`Reader`. Validates structure at once.

    Safe for untrusted files as :func:`load` is (typed errors, nothing unpickled, bounded time
    and memory); RAW data is only checksummed with ``verify=True``, and zero-copy views of a
    file that another program truncates raise SIGBUS when touched (``save``'s atomic replace
    never does that). See "Untrusted files" in the user guide.

    Examples
    --------
    >>> import io, ndckpt, numpy as np
    >>> f = io.BytesIO()
    >>> ndckpt.save(f, {"u": np.arange(12.0).reshape(3, 4), "step": 7}, metadata={"run": "a"})
    >>> with ndckpt.open(f.getvalue()) as r:
    ...     print(list(r), r.metadata, r["step"])
    ...     print(r.read("u", region=(slice(1, 2),)))  # row 1 only
    ['step', 'u'] {'run': 'a'} 7
    [[4. 5. 6. 7.]]
    """
    return Reader(source, mmap=mmap, threads=threads, verify=verify)
