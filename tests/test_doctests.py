"""The ``>>>`` examples in the package's docstrings run as doctests; the main entry points have one.

- Every module of ``ndckpt`` whose source holds a ``>>>`` line is found by reading the files (a
  module that gains examples is run without editing this file), and every docstring of it that
  :class:`doctest.DocTestFinder` finds is run. An example must leave no file behind: the examples
  run in an empty working directory, with :mod:`tempfile`'s directory pointed at another empty
  directory, and both must be empty afterwards.
- ``ndckpt.save``, ``load``, ``open``, ``verify``, ``Reader`` and ``CheckpointManager`` each
  have an example in their own docstring, and that docstring is among those run (deleting one,
  or moving the object to a module this file does not find, fails here).
- The runner used here reports a wrong example as a failure, with doctest's report in the
  assertion message (checked on a made-up docstring).

The pages of ``docs/`` have their own example runs (``test_docs.py``, ``test_manager.py``).
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import os
import re
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

import ndckpt
from ndckpt import FrameStyle, frame_style_is_supported

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ndckpt"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
#: Public objects whose own docstring must show a runnable example.
WITH_EXAMPLES = ("save", "load", "open", "verify", "Reader", "CheckpointManager")
_PROMPT = re.compile(r"^\s*>>> ", re.MULTILINE)


def modules_with_examples() -> list[str]:
    """Dotted names of the package's modules whose source has a ``>>>`` line, sorted."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if _PROMPT.search(path.read_text(encoding="utf-8")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = modules_with_examples()


def doctests_of(module: ModuleType) -> list[doctest.DocTest]:
    """The docstrings of ``module`` (and of what it defines) that hold at least one example."""
    return [t for t in doctest.DocTestFinder().find(module) if t.examples]


def run(tests: list[doctest.DocTest]) -> tuple[int, int, str]:
    """Run ``tests`` in order; return (examples tried, examples failed, doctest's report)."""
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    out: list[str] = []
    for test in tests:
        runner.run(test, out=out.append)
    return runner.tries, runner.failures, "".join(out)


def own_examples(obj: object) -> list[doctest.Example]:
    """The examples of ``obj``'s own docstring (not its members')."""
    return doctest.DocTestParser().get_examples(inspect.getdoc(obj) or "")


def test_the_modules_with_examples_are_found() -> None:
    # the discovery itself can fail: the modules of the six objects and the demo's must be in it
    expected = {getattr(ndckpt, n).__module__ for n in WITH_EXAMPLES} | {"ndckpt.demo", "ndckpt.demo.model"}
    assert expected <= set(MODULES), f"not found: {sorted(expected - set(MODULES))}"


@pytest.mark.skipif(not frame_style_is_supported(FrameStyle.LZ4), reason="no LZ4 library: the examples use LZ4")
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_pass(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tests = doctests_of(importlib.import_module(name))
    assert tests, f"{name} has a '>>>' line but doctest finds no example in its docstrings"
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    tried, failed, report = run(tests)
    assert tried > 0
    assert failed == 0, f"{failed} of {tried} examples of {name} failed:\n{report}"
    assert not os.listdir(cwd), f"the examples of {name} left files in the working directory: {os.listdir(cwd)}"
    assert not os.listdir(tmp), f"the examples of {name} left files in the temporary directory: {os.listdir(tmp)}"


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_public_object_has_an_example_that_is_run(name: str) -> None:
    obj = getattr(ndckpt, name)
    assert own_examples(obj), f"ndckpt.{name}'s docstring has no '>>>' example"
    assert obj.__module__ in MODULES, f"{obj.__module__} (home of ndckpt.{name}) is not run"
    run_names = {t.name for t in doctests_of(importlib.import_module(obj.__module__))}
    assert f"{obj.__module__}.{obj.__qualname__}" in run_names


def test_the_runner_reports_a_wrong_example() -> None:
    doc = """Adds.

    >>> 1 + 1
    3
    >>> 2 + 2
    4
    """
    test = doctest.DocTestParser().get_doctest(doc, {}, "fake", "fake.py", 0)
    tried, failed, report = run([test])
    assert (tried, failed) == (2, 1)
    assert "Expected:\n    3\nGot:\n    2" in report


def test_own_examples_sees_a_missing_example() -> None:
    def no_example() -> None:
        """Does nothing; ``>>>`` only in prose."""

    assert own_examples(no_example) == []
    assert len(own_examples(ndckpt.Reader)) >= 1
