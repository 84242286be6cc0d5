"""How a :class:`ndckpt.CheckpointManager` coordinates: the protocol, and its local implementation.

The manager calls a :class:`Coordinator` for every step that is collective with ``comm``
(``ndckpt.mpi.Collective``) and local without (:class:`Local`); it never looks at ``comm``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .api import MmapMode, load, save
from .errors import InvalidArgumentError

__all__ = ["Coordinator", "Local"]

_T = TypeVar("_T")


class Coordinator(Protocol):
    """The steps of a manager that are collective with ``comm`` and local without.

    Chosen once at construction: :class:`Local` (no ``comm``) or
    ``ndckpt.mpi.Collective`` (an mpi4py communicator; every rank makes the
    same calls in the same order). The manager's methods call these and never
    look at ``comm`` themselves.
    """

    @property
    def is_root(self) -> bool:
        """True in the one process that lists, deletes and removes stale temporaries (rank 0)."""
        ...

    def root_call(self, fn: Callable[[], _T], what: str) -> _T:
        """Run ``fn`` on the root only; return its result, or raise its error, everywhere.

        ``what`` names the operation in errors raised on other ranks.
        """
        ...

    def agree_save(self, step: int, preempt: bool, force: bool) -> tuple[bool, bool]:
        """``(preempt, force)`` as agreed by every participant: each is true if it is anywhere.

        Raises InvalidArgumentError everywhere when participants pass different steps.
        """
        ...

    def save(
        self, path: Path, state: Mapping[str, Any], *, style: Any, threads: int, metadata: Mapping[str, Any] | None
    ) -> None:
        """Write ``state`` as the checkpoint file ``path``; on failure no file of it is left."""
        ...

    def load(
        self, path: Path, *, out: Any, mmap: MmapMode, threads: int, verify: bool | None, select: Any
    ) -> dict[str, Any]:
        """Read the checkpoint file ``path`` (the nested state)."""
        ...


class Local:
    """The coordinator of a manager without ``comm``: everything happens in this process."""

    @property
    def is_root(self) -> bool:
        return True

    def root_call(self, fn: Callable[[], _T], what: str) -> _T:
        """Call ``fn`` here; its exception propagates unchanged (``what`` is unused)."""
        return fn()

    def agree_save(self, step: int, preempt: bool, force: bool) -> tuple[bool, bool]:
        """Nobody to agree with: ``(preempt, force)`` unchanged."""
        return preempt, force

    def save(
        self, path: Path, state: Mapping[str, Any], *, style: Any, threads: int, metadata: Mapping[str, Any] | None
    ) -> None:
        """:func:`ndckpt.save` to ``path`` (temporary file, fsync, rename: no partial file on failure)."""
        save(path, state, style=style, threads=threads, metadata=metadata)

    def load(
        self, path: Path, *, out: Any, mmap: MmapMode, threads: int, verify: bool | None, select: Any
    ) -> dict[str, Any]:
        """:func:`ndckpt.load` of ``path``; InvalidArgumentError if ``select`` is given (it needs ``comm``)."""
        if select is not None:
            raise InvalidArgumentError("select is only for managers with comm (see ndckpt.mpi.load)")
        return load(path, out=out, mmap=mmap, threads=threads, verify=verify)
