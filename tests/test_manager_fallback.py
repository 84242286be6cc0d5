"""CheckpointManager.restore() falls back past a newest checkpoint that fails in any way the file
can cause, and never past an error in the caller's own arguments (issue 12 item 10).

The loader is replaced for the newest file only, so each exception type is exercised exactly:
a reader bug or a resource limit hit while reading a hostile file must not stop a restart while
older checkpoints are sound.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ndckpt
from ndckpt import _coordination as manager_mod  # the local coordinator calls ndckpt.load through it
from ndckpt.errors import InvalidArgumentError, UnsupportedError
from ndckpt.manager import CheckpointManager, CorruptCheckpointWarning


def _three(tmp_path: Path) -> CheckpointManager:
    mgr = CheckpointManager(tmp_path, keep=None)
    for s in (1, 2, 3):
        mgr.save(s, {"x": np.full(4, s, np.int64)})
    mgr.wait()
    return mgr


def _failing_for(monkeypatch: pytest.MonkeyPatch, bad: set[Path], exc: BaseException) -> None:
    real = manager_mod.load

    def load(path: Any, *args: Any, **kw: Any) -> Any:
        if Path(path) in bad:
            raise exc
        return real(path, *args, **kw)

    monkeypatch.setattr(manager_mod, "load", load)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("maximum supported dimension for an ndarray is 64"),
        TypeError("title must be a string"),
        MemoryError(),
        RecursionError("maximum recursion depth exceeded"),
        KeyError("shape"),
        OverflowError("too big"),
        UnsupportedError("needs a newer ndckpt: upgrade ndckpt"),
        OSError(5, "Input/output error"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_any_failure_from_the_file_falls_back_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    mgr = _three(tmp_path)
    _failing_for(monkeypatch, {mgr.path(3)}, exc)
    with pytest.warns(CorruptCheckpointWarning, match=r"step 3 .*cannot be restored") as rec:
        got = mgr.restore()
    assert mgr.restored_step == 2
    np.testing.assert_array_equal(got["x"], np.full(4, 2))
    assert len(rec) == 1


def test_when_every_checkpoint_fails_the_newest_error_is_raised_with_the_others_as_notes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = _three(tmp_path)
    _failing_for(monkeypatch, {mgr.path(s) for s in (1, 2, 3)}, ValueError("bad shape"))
    with pytest.warns(CorruptCheckpointWarning), pytest.raises(ValueError, match="bad shape") as ei:
        mgr.restore()
    notes = getattr(ei.value, "__notes__", [])
    assert any("step 2 failed too" in n for n in notes)
    assert any("step 1 failed too" in n for n in notes)


def test_the_callers_argument_errors_propagate_without_fallback(tmp_path: Path) -> None:
    mgr = _three(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptCheckpointWarning)
        with pytest.raises(InvalidArgumentError):
            mgr.restore(out={"x": np.zeros(5, np.int64)})  # wrong shape for every checkpoint
        with pytest.raises(InvalidArgumentError):
            mgr.restore(out={"nope": np.zeros(4, np.int64)})
    assert mgr.restored_step is None


def test_an_argument_error_raised_inside_the_loader_is_not_a_reason_to_fall_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = _three(tmp_path)
    _failing_for(monkeypatch, {mgr.path(3)}, InvalidArgumentError("out['x']: wrong dtype"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptCheckpointWarning)
        with pytest.raises(InvalidArgumentError, match="wrong dtype"):
            mgr.restore()


def test_keyboard_interrupt_is_never_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = _three(tmp_path)
    _failing_for(monkeypatch, {mgr.path(3)}, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        mgr.restore()


def test_a_real_damaged_newest_file_falls_back(tmp_path: Path) -> None:
    mgr = _three(tmp_path)
    p = mgr.path(3)
    data = bytearray(p.read_bytes())
    data[-40] ^= 0x55  # inside the index or trailer
    p.write_bytes(bytes(data))
    with pytest.warns(CorruptCheckpointWarning):
        got = mgr.restore(verify=True)
    assert mgr.restored_step == 2
    np.testing.assert_array_equal(got["x"], ndckpt.load(mgr.path(2))["x"])
