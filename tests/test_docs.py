"""The documentation: the site builds without warnings and its code examples run.

- ``mkdocs build --strict`` must succeed without a warning (skipped only when
  the tools of the ``docs`` extra are not installed).
- Every ```` ```python ```` block of ``docs/engine.md`` (and ``docs/index.md``) runs, in page order, in
  one namespace, like a reader typing them into one session. Blocks written in
  doctest style (``>>>``) are run by :mod:`doctest`, so their printed output
  is checked too; other blocks are executed.
- The reference reader of ``docs/fd_checkpt.md`` section 6.2 decodes every
  golden vector: the normative page is good enough to write a reader from.
"""

from __future__ import annotations

import doctest
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import lz4.block
import pytest
from fdvectors import VECTORS_DIR, cases, content, load_case

from ndckpt import FrameStyle, frame_style_is_supported

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: What the ``docs`` extra provides and ``mkdocs.yml`` uses.
_DOCS_MODULES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "griffe_sphinx")
_BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```$", re.DOTALL | re.MULTILINE)


def python_blocks(page: str) -> list[tuple[int, str]]:
    """The ```python code blocks of a docs page (dedented), with their first line's index."""
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = [
        (text.count("\n", 0, m.start(2)), textwrap.dedent(m.group(2)))
        for m in _BLOCK.finditer(text)
    ]
    assert blocks, f"docs/{page} has no python code blocks"
    return blocks


def run_blocks(page: str, tmp_path: Path) -> dict[str, Any]:
    """Run every python block of ``page`` in one namespace; fail on the first bad block."""
    globs: dict[str, Any] = {"__name__": f"docs_{Path(page).stem}"}
    parser = doctest.DocTestParser()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    cwd = Path.cwd()
    os.chdir(tmp_path)  # examples that make files make them here
    try:
        for line, block in python_blocks(page):
            where = f"docs/{page}:{line + 1}"
            if block.lstrip().startswith(">>>"):
                test = parser.get_doctest(block, globs, where, str(DOCS / page), line)
                test.globs = globs  # DocTest copies its globals: share one namespace instead
                runner = doctest.DocTestRunner(optionflags=flags)
                out: list[str] = []
                runner.run(test, out=out.append, clear_globs=False)
                assert runner.failures == 0, f"{where} failed:\n" + "".join(out)
            else:
                exec(compile("\n" * line + block, str(DOCS / page), "exec"), globs)
    finally:
        os.chdir(cwd)
    return globs


needs_lz4 = pytest.mark.skipif(
    not frame_style_is_supported(FrameStyle.LZ4), reason="no LZ4 library: the examples use LZ4"
)


@needs_lz4
def test_engine_page_examples_run(tmp_path: Path) -> None:
    globs = run_blocks("engine.md", tmp_path)
    # The session ran to the page's last example (the parallel writer).
    assert [len(fr) for fr in globs["frames"]] == [1438, 1445, 1444, 1449]


@needs_lz4
def test_index_page_example_runs(tmp_path: Path) -> None:
    globs = run_blocks("index.md", tmp_path)
    assert globs["restored"].nbytes == 800000


def test_ecosystem_page_examples_run(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    pytest.importorskip("xarray")
    globs = run_blocks("ecosystem.md", tmp_path)
    assert globs["back"]["step"] == 42  # the session ran to the page's last block
    assert globs["likes"]["buf"].tolist() == [1.0, 2.0]


def test_engine_page_examples_are_doctests() -> None:
    """Every example on the engine page shows its output, so doctest checks it."""
    for line, block in python_blocks("engine.md"):
        assert block.lstrip().startswith(">>>"), f"docs/engine.md:{line + 1}"


def test_fd_checkpt_reference_reader_decodes_every_golden_vector(tmp_path: Path) -> None:
    globs = run_blocks("fd_checkpt.md", tmp_path)
    read_frame = globs["read_frame"]
    names = cases()
    assert len(names) >= 14, f"golden vectors missing in {VECTORS_DIR}: found {names}"
    for name in names:
        d, data = load_case(name)
        off = 0
        for fr in d["frames"]:
            assert off == fr["off_open"], name
            sizes = [b["size"] for b in fr["bufs"]]
            buffers, off = read_frame(data, off, fr["style_code"], sizes)
            assert buffers == [content(b["content"]) or b"" for b in fr["bufs"]], name
            assert off == fr["off_close"], name
        assert off == len(data), name


def test_fd_checkpt_reference_reader_rejects_damage(tmp_path: Path) -> None:
    read_frame = run_blocks("fd_checkpt.md", tmp_path)["read_frame"]
    good = bytes.fromhex("020000102a")
    with pytest.raises(ValueError, match="truncated chunk header"):
        read_frame(good[:2], 0, 2, [1])
    with pytest.raises(ValueError, match="bad chunk header"):
        read_frame(bytes.fromhex("000000102a"), 0, 2, [1])
    with pytest.raises(ValueError, match="truncated chunk"):
        read_frame(good[:4], 0, 2, [1])
    with pytest.raises(EOFError):
        read_frame(good, 0, 1, [6])
    with pytest.raises(ValueError, match="decoded to 1 bytes, not 2"):
        read_frame(good, 0, 2, [2])  # a 2-byte chunk cannot come from this 1-byte block
    with pytest.raises(lz4.block.LZ4BlockError, match="Decompression failed"):
        read_frame(bytes.fromhex("020000f02a"), 0, 2, [1])  # token promises 15+ literals


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    missing = [m for m in _DOCS_MODULES if not _importable(m)]
    if missing:
        pytest.skip(f"docs tools not installed: {', '.join(missing)} (pip install -e '.[docs]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "WARNING" not in log, log
    for page in ("index", "guide", "engine", "fd_checkpt", "api"):
        assert (tmp_path / "site" / page / "index.html").is_file() or (
            page == "index" and (tmp_path / "site" / "index.html").is_file()
        ), page
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("Checkpt", "Restore", "FrameStyle", "CheckptError", "CompressionError"):
        assert name in api, f"API page does not document {name}"
    ids = set(re.findall(r'id="(ndckpt\.[\w.]+)"', api))
    missing = [q for q in _public_api() if q not in ids]
    assert missing == [], f"the API page (which says it lists every parameter) leaves out {missing}"
    # Long code lines wrap instead of being cut off.
    assert '<link rel="stylesheet" href="../css/extra.css">' in api
    css = (tmp_path / "site" / "css" / "extra.css").read_text(encoding="utf-8")
    assert re.search(r"\.md-typeset pre > code \{[^}]*white-space: pre-wrap;", css), css


def _public_api() -> list[str]:
    """Qualified names of every public object: ndckpt.__all__, ndckpt.mpi's, and their public methods."""
    import inspect

    import ndckpt

    objs: list[Any] = [getattr(ndckpt, n) for n in ndckpt.__all__ if n not in {"__version__", "errors"}]
    mpi = ROOT / "ndckpt" / "mpi" / "__init__.py"
    mpi_all = re.search(r"^__all__ = \[(.*?)\]", mpi.read_text(encoding="utf-8"), re.M | re.S)
    assert mpi_all is not None
    out = [f"ndckpt.mpi.{n}" for n in re.findall(r'"(\w+)"', mpi_all.group(1))]  # no mpi4py needed
    for obj in objs:
        qual = f"{obj.__module__}.{obj.__qualname__}"
        out.append(qual)
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            out += [f"{qual}.{m}" for m in vars(obj) if not m.startswith("_")]
    return sorted(set(out))
