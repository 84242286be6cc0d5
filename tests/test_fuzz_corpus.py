"""Replay the reader fuzz corpus (``fuzz/corpus``): seeds and every input the fuzzer ever found.

Each file goes through ``fuzz/harness.py`` exactly as the fuzz target runs it (the bytes as
they are, then with their checksums repaired): only ndckpt errors may come out, and readers
that succeed must agree. Files named ``crash-*`` are the inputs that once broke a reader;
they stay here as regressions. ``seed-*`` files are valid checkpoints and must load.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from forge import harness

import ndckpt

CORPUS = Path(__file__).resolve().parent.parent / "fuzz" / "corpus"
FILES = sorted(p for p in CORPUS.iterdir() if p.is_file()) if CORPUS.is_dir() else []


def test_corpus_is_there() -> None:
    """The corpus holds the seeds and the regression inputs (a missing folder must fail)."""
    names = [p.name for p in FILES]
    assert sum(n.startswith("seed-") for n in names) >= 5
    assert any(n.startswith("crash-") for n in names)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_replay(path: Path) -> None:
    data = path.read_bytes()
    harness().exercise_both(data)
    if path.name.startswith("seed-"):
        ndckpt.verify(data)


@pytest.mark.parametrize("path", [p for p in FILES if p.name.startswith("crash-")], ids=lambda p: p.name)
def test_crash_inputs_raise_ndckpt_errors(path: Path) -> None:
    """Every input that once crashed a reader is now refused with an ndckpt error, as it is and
    with its checksums repaired (the form that reached the bug)."""
    data = path.read_bytes()
    for variant in (data, harness().fixup(data)):
        with pytest.raises(ndckpt.CheckptError):
            ndckpt.load(variant)
