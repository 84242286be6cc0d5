"""The one ctypes module: liblz4's streaming functions and XXH64.

Why ctypes against liblz4's streaming API: fd_checkpt's bytes come from
``LZ4_compress_fast_continue`` on one ``LZ4_stream_t`` over a 196608-byte ring
(spec section 5). python-lz4's public ``lz4.block`` API cannot reproduce them
(it reloads the history as a dictionary, which hashes differently), returns a
new ``bytes`` per call and cannot decode into caller memory. The streaming
functions *are* exported by python-lz4's own extension module, which bundles
liblz4 (1.9.4 in the 4.x wheels); called through :mod:`ctypes` they release
the GIL and read and write raw addresses, so chunks compress straight into the
write buffer or mmio region and decompress straight into the caller's array.

This module only binds: the frame format (chunks, their 3-byte sizes, the gather
ring, the history) is :mod:`ndckpt._codec`'s.

Where the symbols come from, in order:

1. ``$NDCKPT_LZ4_LIBRARY`` if set (a path, or ``none`` to force "no LZ4");
2. python-lz4's ``lz4.block._block`` extension module (the runtime dependency);
3. the system ``liblz4.so.1``.

If none provides every symbol, :func:`available` is False and LZ4 frames raise
:class:`~ndckpt.errors.UnsupportedError`, exactly as fd_checkpt built without
LZ4; RAW frames keep working. ``tests/test_lz4_binding.py`` fails loudly if the
dependency stops providing the symbols.

XXH64 (the container's checksum) comes from python-lz4's ``lz4.frame._frame``
module, which bundles xxhash, with the ``xxhash`` package as a fallback. It
lives here because it is bound the same way, from the same dependency; it has
nothing to do with LZ4 frames.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import os
import threading
from collections.abc import Callable
from typing import Any

from ._memory import buffer_address

__all__ = [
    "XXH64",
    "Decoder",
    "LZ4Stream",
    "available",
    "library_path",
    "library_version",
    "xxh64",
]

_REQUIRED = (
    "LZ4_versionNumber",
    "LZ4_createStream",
    "LZ4_freeStream",
    "LZ4_initStream",
    "LZ4_sizeofState",
    "LZ4_resetStream_fast",
    "LZ4_compress_fast_continue",
    "LZ4_decompress_safe_usingDict",
)

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_lib_path: str | None = None
_loaded = False

# LZ4_compress_fast_continue and LZ4_decompress_safe_usingDict are bound without
# argtypes, for the per-chunk hot loops: a preallocated c_void_p argument is passed
# as it is, without the per-call conversion argtypes does for a Python int
# (``benchmarks/bench_micro.py --case ctypes_args`` times both). Without argtypes
# ctypes would pass a Python int as a C int, so pointers must go as c_void_p:
# callers set ``.value`` on the per-object c_void_p slots of LZ4Stream / Decoder
# and pass those. The integer arguments (sizes, all < 2**31) go as C int, as the
# C functions declare them.
_c_compress_fast: Callable[..., int]
_c_decompress_fast: Callable[..., int]
_c_reset_fast: Callable[[int], None]
_c_init: Callable[[int, int], int]
_c_sizeof_stream = 0
_c_create: Callable[[], int]
_c_free: Callable[[int], int]


def _candidates() -> list[str]:
    env = os.environ.get("NDCKPT_LZ4_LIBRARY")
    if env is not None:
        return [] if env.strip().lower() in ("", "none") else [env]
    paths: list[str] = []
    try:
        mod = importlib.import_module("lz4.block._block")
        if getattr(mod, "__file__", None):
            paths.append(str(mod.__file__))
    except ImportError:
        pass
    sys_lib = ctypes.util.find_library("lz4")
    paths.extend(p for p in (sys_lib, "liblz4.so.1") if p)
    return paths


def _bind(lib: ctypes.CDLL) -> None:
    global _c_reset_fast, _c_init, _c_sizeof_stream, _c_create, _c_free, _c_compress_fast, _c_decompress_fast
    vp, ci = ctypes.c_void_p, ctypes.c_int
    # lib["name"] makes a new function object each time (attribute access caches
    # one that other users of the library may give argtypes to).
    f = lib["LZ4_compress_fast_continue"]
    f.restype = ci
    _c_compress_fast = f
    f = lib["LZ4_decompress_safe_usingDict"]
    f.restype = ci
    _c_decompress_fast = f
    f = lib.LZ4_resetStream_fast
    f.argtypes, f.restype = [vp], None
    _c_reset_fast = f
    f = lib.LZ4_initStream
    f.argtypes, f.restype = [vp, ctypes.c_size_t], vp
    _c_init = f
    # LZ4_sizeofState() is sizeof(LZ4_stream_t), the size LZ4_initStream wants.
    f = lib.LZ4_sizeofState
    f.argtypes, f.restype = [], ci
    _c_sizeof_stream = int(f())
    f = lib.LZ4_createStream
    f.argtypes, f.restype = [], vp
    _c_create = f
    f = lib.LZ4_freeStream
    f.argtypes, f.restype = [vp], ci
    _c_free = f


def _load() -> ctypes.CDLL | None:
    global _lib, _lib_path, _loaded
    if _loaded:
        return _lib
    with _lock:
        if _loaded:
            return _lib
        for path in _candidates():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            if all(hasattr(lib, name) for name in _REQUIRED):
                _bind(lib)
                _lib, _lib_path = lib, path
                break
        _loaded = True
    return _lib


def available() -> bool:
    """True when an LZ4 library with every streaming symbol ndckpt needs was found."""
    return _load() is not None


def library_path() -> str | None:
    """Path of the library the LZ4 symbols come from, or None when LZ4 is unavailable."""
    _load()
    return _lib_path


def library_version() -> str | None:
    """liblz4's version as "major.minor.release", or None when LZ4 is unavailable."""
    lib = _load()
    if lib is None:
        return None
    v = int(lib.LZ4_versionNumber())
    return f"{v // 10000}.{v // 100 % 100}.{v % 100}"


class LZ4Stream:
    """An owned ``LZ4_stream_t``: created fresh (never used), freed by :meth:`free` or GC.

    Not thread-safe; one per writer. Raises :class:`MemoryError` if liblz4
    cannot allocate it; callers check :func:`available` first.

    Hot loops may inline :meth:`compress`: set ``src.value`` and ``dst.value``,
    then call ``compress_fn(handle, src, dst, usz, cap, 1)``.
    """

    __slots__ = ("__weakref__", "compress_fn", "dst", "handle", "ptr", "src")

    def __init__(self) -> None:
        if _load() is None:
            raise RuntimeError("LZ4 is not available")
        ptr = _c_create()
        if not ptr:
            raise MemoryError("LZ4_createStream failed")
        self.ptr: int = int(ptr)
        self.handle = ctypes.c_void_p(self.ptr)
        self.src = ctypes.c_void_p(0)
        self.dst = ctypes.c_void_p(0)
        self.compress_fn: Callable[..., int] = _c_compress_fast

    def compress(self, src: int, dst: int, usz: int, cap: int) -> int:
        """``LZ4_compress_fast_continue(stream, src, dst, usz, cap, 1)``; csz, or 0 on failure.

        ``src`` and ``dst`` are addresses; ``src`` must stay in place (it becomes
        history). ``usz`` and ``cap`` must be below 2**31. Releases the GIL.
        """
        self.src.value = src
        self.dst.value = dst
        return self.compress_fn(self.handle, self.src, self.dst, usz, cap, 1)

    def reset_fast(self) -> None:
        """``LZ4_resetStream_fast``: start a new independent stream, keeping the table warm.

        What fd_checkpt does at each LZ4 frame open. The next bytes do not depend on what
        the stream compressed before, but they may differ from a never-used stream's
        (docs/fd_checkpt.md section 5.5).
        """
        _c_reset_fast(self.ptr)

    def reset_full(self) -> None:
        """``LZ4_initStream``: clear the whole state, so the stream is exactly as if just created.

        The next bytes are those a brand-new stream would produce (the hash table is
        zeroed, not only moved out of reach as :meth:`reset_fast` does).
        """
        if not _c_init(self.ptr, _c_sizeof_stream):
            raise RuntimeError("LZ4_initStream refused the stream")  # size or alignment: cannot happen

    def free(self) -> None:
        """Release the stream; idempotent."""
        if self.ptr:
            _c_free(self.ptr)
            self.ptr = 0
            self.handle.value = None

    def __del__(self) -> None:
        self.free()


class Decoder:
    """Argument slots for ``LZ4_decompress_safe_usingDict`` calls made by one thread.

    Stateless apart from the slots (the history is passed on every call). Hot
    loops may inline :meth:`decompress`: set ``src``/``dst``/``dict`` ``.value``,
    then call ``decompress_fn(src, dst, csz, usz, dict, dict_sz)``.
    """

    __slots__ = ("decompress_fn", "dict", "dst", "src")

    def __init__(self) -> None:
        if _load() is None:
            raise RuntimeError("LZ4 is not available")
        self.src = ctypes.c_void_p(0)
        self.dst = ctypes.c_void_p(0)
        self.dict = ctypes.c_void_p(0)
        self.decompress_fn: Callable[..., int] = _c_decompress_fast

    def decompress(
        self, src: int, dst: int, csz: int, usz: int, dict_addr: int, dict_sz: int
    ) -> int:
        """Decode csz bytes at src into at most usz bytes at dst; the decoded size or < 0.

        The history is the ``dict_sz`` bytes at ``dict_addr``; when they end at
        ``dst`` liblz4 takes its faster prefix path. Releases the GIL.
        """
        self.src.value = src
        self.dst.value = dst
        self.dict.value = dict_addr or None
        return self.decompress_fn(self.src, self.dst, csz, usz, self.dict, dict_sz)


def _load_xxh64() -> Callable[[Any, int], int] | None:
    try:
        mod = importlib.import_module("lz4.frame._frame")
        lib = ctypes.CDLL(str(mod.__file__))
        f = lib.XXH64
        f.argtypes, f.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64], ctypes.c_uint64
        if int(f(None, 0, 0)) == 0xEF46DB3751D8E999:

            def _xxh(addr: Any, n: int) -> int:
                return int(f(addr, n, 0))

            return _xxh
    except (ImportError, OSError, AttributeError):
        pass
    return None


_xxh64_addr = _load_xxh64()


def _load_xxh64_state() -> tuple[Any, Any, Any, Any, Any] | None:
    """python-lz4's bundled XXH64 streaming functions (create, reset, update, digest, free), or None."""
    try:
        mod = importlib.import_module("lz4.frame._frame")
        lib = ctypes.CDLL(str(mod.__file__))
        create, reset, update, digest, free = (
            lib.XXH64_createState,
            lib.XXH64_reset,
            lib.XXH64_update,
            lib.XXH64_digest,
            lib.XXH64_freeState,
        )
    except (ImportError, OSError, AttributeError):
        return None
    create.argtypes, create.restype = [], ctypes.c_void_p
    reset.argtypes, reset.restype = [ctypes.c_void_p, ctypes.c_uint64], ctypes.c_int
    update.argtypes, update.restype = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t], ctypes.c_int
    digest.argtypes, digest.restype = [ctypes.c_void_p], ctypes.c_uint64
    free.argtypes, free.restype = [ctypes.c_void_p], ctypes.c_int
    return create, reset, update, digest, free


_xxh64_state = _load_xxh64_state()


class XXH64:
    """Incremental XXH64 (seed 0): ``update`` with consecutive pieces, then ``digest``.

    ``XXH64().update(a).update(b).digest() == xxh64(a + b)``. Owns a C state
    freed when the object is collected. Raises UnsupportedError as
    :func:`xxh64` does when no XXH64 implementation is present.
    """

    def __init__(self) -> None:
        self._state: int | None = None
        self._py: Any = None
        if _xxh64_state is not None:
            st = _xxh64_state[0]()
            if not st:
                raise MemoryError("XXH64_createState failed")
            self._state = int(st)
            _xxh64_state[1](self._state, 0)
            return
        try:
            import xxhash  # type: ignore[import-not-found]
        except ImportError:
            from .errors import UnsupportedError

            raise UnsupportedError(
                "XXH64 is unavailable: python-lz4 does not export it and the xxhash package is missing"
            ) from None
        self._py = xxhash.xxh64()

    def update(self, data: Any) -> XXH64:
        """Hash the next bytes (a contiguous buffer); releases the GIL for large inputs."""
        mv = memoryview(data)
        if self._state is not None and _xxh64_state is not None:
            if mv.nbytes:
                _xxh64_state[2](self._state, buffer_address(mv), mv.nbytes)
        else:
            self._py.update(data)
        return self

    def digest(self) -> int:
        """The hash of everything passed to :meth:`update` so far."""
        if self._state is not None and _xxh64_state is not None:
            return int(_xxh64_state[3](self._state))
        return int(self._py.intdigest())

    def __del__(self) -> None:
        if self._state is not None and _xxh64_state is not None:
            _xxh64_state[4](self._state)
            self._state = None


def xxh64(data: Any) -> int:
    """XXH64 (seed 0) of a contiguous byte buffer; releases the GIL for large inputs.

    Raises :class:`~ndckpt.errors.UnsupportedError` when neither python-lz4's
    bundled xxhash nor the ``xxhash`` package is present.
    """
    mv = memoryview(data)
    if _xxh64_addr is not None:
        return _xxh64_addr(buffer_address(mv), mv.nbytes)
    try:
        import xxhash
    except ImportError:
        from .errors import UnsupportedError

        raise UnsupportedError(
            "XXH64 is unavailable: python-lz4 does not export it and the xxhash package is missing"
        ) from None
    return int(xxhash.xxh64_intdigest(data))

