"""Small memory helpers shared by the writer and the readers."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

__all__ = ["buffer_view", "gc_paused"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a head's objects are built.

    None of them can be cyclic garbage, but a head of many arrays makes
    hundreds of thousands of objects, and the collector would rescan the growing
    heap again and again while they are built. The caller's setting is restored,
    even on error.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def buffer_view(a: Any) -> memoryview:
    """A memoryview of a buffer (numpy arrays included)."""
    return memoryview(a)
