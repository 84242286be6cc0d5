"""The repository is self-contained: a bare ``git clone`` has every file the tests read.

- The fd_checkpt vectors are read only from ``tests/data/fd_checkpt``; a missing
  file is a ``FileNotFoundError`` naming the path looked at (a failed test, never a skip).
- No test, fuzz harness, benchmark or CI script reads the reference material
  beside the repository (``../shared``) or an environment override for it.
- The files a user looks for first are there: LICENSE (the Apache-2.0 text
  pyproject names), CHANGELOG.md, and the compatibility page in the docs nav.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import fdvectors
import pytest

REPO = Path(__file__).resolve().parents[1]


def _fake_vectors(tmp_path: Path, files: dict[str, bytes]) -> Path:
    import hashlib

    d = tmp_path / "fd_checkpt"
    d.mkdir()
    lines = []
    for name, data in files.items():
        (d / name).write_bytes(data)
        lines.append(f"{hashlib.sha256(data).hexdigest()}  {name}")
    (d / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="ascii")
    return d


def test_a_missing_vector_file_fails_naming_its_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _fake_vectors(tmp_path, {"a.json": b"{}", "a.ckpt": b""})
    monkeypatch.setattr(fdvectors, "VECTORS_DIR", d)
    assert fdvectors.cases() == ["a"]
    assert fdvectors.check_files() == []
    assert fdvectors.load_case("a") == ({}, b"")
    (d / "a.ckpt").unlink()
    assert fdvectors.check_files() == [f"missing {d / 'a.ckpt'}"]
    with pytest.raises(FileNotFoundError, match=re.escape(str(d / "a.ckpt"))):
        fdvectors.load_case("a")


def test_a_changed_vector_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _fake_vectors(tmp_path, {"a.json": b"{}", "a.ckpt": b"\x01"})
    monkeypatch.setattr(fdvectors, "VECTORS_DIR", d)
    (d / "a.ckpt").write_bytes(b"\x02")
    assert fdvectors.check_files() == [f"{d / 'a.ckpt'} differs from its sha256 in SHA256SUMS"]


def test_no_vector_list_fails_naming_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fdvectors, "VECTORS_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nowhere" / "SHA256SUMS"))):
        fdvectors.cases()


def test_the_vectors_are_inside_the_repository() -> None:
    assert fdvectors.vectors_dir() == REPO / "tests" / "data" / "fd_checkpt"
    assert (fdvectors.vectors_dir() / "PROVENANCE.md").is_file()
    assert len(fdvectors.cases()) == 14


def _code_files() -> list[Path]:
    out = [REPO / ".ci" / "run"]
    for sub in ("ndckpt", "tests", "fuzz", "benchmarks"):
        out += [p for p in (REPO / sub).rglob("*") if p.suffix in {".py", ".sh", ".toml", ".cfg"} and p.is_file()]
    return out


def test_no_code_reads_outside_the_repository() -> None:
    """Nothing the tests, fuzzers, benchmarks or CI run names ../shared or NDCKPT_VECTORS."""
    this = Path(__file__).resolve()
    bad = re.compile(r"\.\./shared|NDCKPT_VECTORS|[\"']shared[\"']\s*/|/work/shared")
    hits = []
    for p in _code_files():
        if p == this:
            continue
        for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if bad.search(line):
                hits.append(f"{p.relative_to(REPO)}:{i}: {line.strip()}")
    assert hits == []


def test_license_changelog_and_compatibility_page() -> None:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lic = meta["license"]
    assert (lic if isinstance(lic, str) else lic.get("text")) == "Apache-2.0"
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.lstrip().startswith("Apache License")
    assert "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "Copyright 2026 the ndckpt authors" in text
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(r"^## \[Unreleased\]", changelog, re.M)
    assert re.search(r"^## \[0\.1\.0\]", changelog, re.M)
    assert "compatibility.md" in (REPO / "mkdocs.yml").read_text(encoding="utf-8")
