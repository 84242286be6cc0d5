"""``benchmarks/bench_micro.py`` runs, and the code comments that cite it name cases it has.

Comments in ``ndckpt/`` give the reason for a hot-path choice and point to
``benchmarks/bench_micro.py --case NAME`` for the numbers; a renamed or removed case (or a
benchmark broken by a refactoring of the private names it times) fails here, not when someone
next tries to reproduce a number.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_micro.py"
_CITED = re.compile(r"bench_micro\.py --case (\w+)")


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_micro", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cited_cases() -> dict[str, list[str]]:
    """Case name -> the ``ndckpt`` files whose text cites it."""
    out: dict[str, list[str]] = {}
    for path in sorted((ROOT / "ndckpt").rglob("*.py")):
        for name in _CITED.findall(re.sub(r"\s*\n\s*(#:?\s*)?", " ", path.read_text(encoding="utf-8"))):
            out.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return out


def test_every_cited_case_exists_and_every_case_is_cited() -> None:
    cases = set(_bench().CASES)
    cited = cited_cases()
    assert cited, "no comment in ndckpt/ cites bench_micro.py"
    assert not set(cited) - cases, {c: cited[c] for c in set(cited) - cases}
    assert not cases - set(cited), f"cases no comment cites: {sorted(cases - set(cited))}"


def test_quick_run_prints_a_row_per_comparison() -> None:
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=300, check=False
    )
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and "other / ours" not in line]
    names = {row.split(":")[0].strip("| ") for row in rows}
    assert names >= set(_bench().CASES) - {"ctypes_args"}  # ctypes_args needs LZ4
    for row in rows:
        assert float(row.rstrip(" |").rsplit("|", 1)[1]) > 0, row


def test_an_unknown_case_is_refused() -> None:
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--case", "nope"], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 2
    assert "unknown case" in r.stderr
