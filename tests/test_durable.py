"""``save(path, durable=...)``: the fsyncs of an atomic save, and what skipping them changes.

With ``durable=True`` (the default) the file is fsynced before the rename and its directory
after it; with ``durable=False`` neither is, and the bytes, the atomic rename and the cleanup
on failure are the same.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ndckpt
from ndckpt.errors import CheckptIOError, InvalidArgumentError

ARRAYS = {"a": np.arange(1000, dtype=np.float64), "g": {"b": np.ones((3, 4), dtype=np.int16)}}


def _count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def fsync(fd: Any) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


@pytest.mark.parametrize("style", ["raw", "lz4"])
def test_durable_false_writes_the_same_bytes_without_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, style: str
) -> None:
    calls = _count_fsyncs(monkeypatch)
    ndckpt.save(tmp_path / "d.ndckpt", ARRAYS, style=style)
    durable_calls = len(calls)
    assert durable_calls >= 2  # the file, then its directory
    calls.clear()
    ndckpt.save(tmp_path / "n.ndckpt", ARRAYS, style=style, durable=False)
    assert calls == []
    assert (tmp_path / "d.ndckpt").read_bytes() == (tmp_path / "n.ndckpt").read_bytes()
    got = ndckpt.load(tmp_path / "n.ndckpt")
    np.testing.assert_array_equal(got["a"], ARRAYS["a"])
    np.testing.assert_array_equal(got["g"]["b"], ARRAYS["g"]["b"])
    assert sorted(os.listdir(tmp_path)) == ["d.ndckpt", "n.ndckpt"]  # no temporary file left


def test_durable_false_still_replaces_atomically_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "c.ndckpt"
    ndckpt.save(target, {"old": np.zeros(3)})
    old = target.read_bytes()

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CheckptIOError, match="rename"):
        ndckpt.save(target, ARRAYS, durable=False)
    assert target.read_bytes() == old  # the previous checkpoint is untouched
    assert os.listdir(tmp_path) == ["c.ndckpt"]


@pytest.mark.parametrize("bad", [0, 1, "yes", None])
def test_durable_must_be_a_bool_and_nothing_is_written(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="durable"):
        ndckpt.save(tmp_path / "x.ndckpt", ARRAYS, durable=bad)
    assert os.listdir(tmp_path) == []


def test_durable_is_ignored_for_file_objects() -> None:
    a, b = io.BytesIO(), io.BytesIO()
    ndckpt.save(a, ARRAYS, durable=True)
    ndckpt.save(b, ARRAYS, durable=False)
    assert a.getvalue() == b.getvalue()
