"""The optional compiled filter kernels: distribution ``ndckpt-accel``, module ``ndckpt_accel``.

ndckpt itself needs no compiler; ``pip install ./accel`` (from a source checkout) builds one
C file whose kernels compute exactly what :mod:`ndckpt.filters` defines, block by block, with
the GIL released. :mod:`ndckpt.filters` asks :func:`kernels` on every call and uses the
numpy code when it returns None, so the bytes written and read never depend on whether the
accelerator is installed (``tests/test_accel.py`` proves the two equal).

Selection: the accelerator is used when ``ndckpt_accel`` imports, its ``ABI_VERSION`` equals
:data:`ABI_VERSION`, and the environment variable :data:`ENV` (``NDCKPT_NO_ACCEL``) is unset,
empty or ``"0"`` when this module is first imported. An installed accelerator of another ABI
version is ignored (numpy is used), never half-used. :func:`use` changes the selection for the
whole process at run time (tests and benchmarks compare the two).
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Final, Protocol, cast

__all__ = ["ABI_VERSION", "ENV", "Kernels", "active", "available", "kernels", "use"]

#: The kernels' calling convention this ndckpt speaks (``ndckpt_accel.ABI_VERSION``).
ABI_VERSION: Final = 1
#: Set to anything but ``""`` or ``"0"`` to make ndckpt use its numpy filters only.
ENV: Final = "NDCKPT_NO_ACCEL"
#: The name of the compiled module.
MODULE: Final = "ndckpt_accel"


class Kernels(Protocol):
    """The compiled module's calls. ``kind`` is the index of the kind in ``filters.FILTERS``
    (0 shuffle, 1 delta); ``src`` and ``dst`` are C-contiguous byte buffers of equal length
    that do not overlap (``dst`` writable), ``1 <= itemsize <= 255``, ``block >= 1``. Raises
    ValueError for arguments outside these (``dst`` untouched) and MemoryError when the
    block-sized scratch of delta cannot be allocated (``dst`` untouched)."""

    def filter(self, kind: int, src: Any, dst: Any, itemsize: int, block: int, /) -> None: ...

    def unfilter(self, kind: int, src: Any, dst: Any, itemsize: int, block: int, /) -> None: ...


def _load() -> Kernels | None:
    """The compiled module if it imports and speaks :data:`ABI_VERSION`, else None."""
    try:
        mod = importlib.import_module(MODULE)
    except ImportError:
        return None
    if getattr(mod, "ABI_VERSION", None) != ABI_VERSION:
        return None
    return cast(Kernels, mod)


def _env_allows() -> bool:
    return os.environ.get(ENV, "") in ("", "0")


_FOUND: Final = _load()
_state: list[Kernels | None] = [_FOUND if _env_allows() else None]


def available() -> bool:
    """Whether a compatible accelerator is installed (whatever :func:`use` selected)."""
    return _FOUND is not None


def active() -> bool:
    """Whether :mod:`ndckpt.filters` currently runs the compiled kernels."""
    return _state[0] is not None


def kernels() -> Kernels | None:
    """The compiled kernels to run now, or None for the numpy code."""
    return _state[0]


def use(enabled: bool | None) -> None:
    """Select the filter implementation for the whole process.

    ``False``: numpy only. ``True``: the compiled kernels; raises RuntimeError (selection
    unchanged) when no compatible accelerator is installed. ``None``: back to the default,
    :data:`ENV` read again. Not synchronised with filter calls running in other threads: a
    call already running finishes with the implementation it started with.
    """
    if enabled is None:
        _state[0] = _FOUND if _env_allows() else None
    elif not enabled:
        _state[0] = None
    elif _FOUND is None:
        raise RuntimeError(
            f"the compiled filters ({MODULE}, ABI version {ABI_VERSION}) are not installed or of another version: "
            "pip install ./accel from an ndckpt source checkout"
        )
    else:
        _state[0] = _FOUND
