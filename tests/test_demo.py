"""``ndckpt demo``: kill a checkpointing child, resume, and prove the result is bit-identical."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ndckpt
from ndckpt import cli
from ndckpt.demo import GrayScott
from ndckpt.demo import job as demo

SCRIPT = Path(sys.executable).with_name("ndckpt")


def run_demo(*argv: str) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.exists(), f"console script not installed at {SCRIPT}"
    return subprocess.run([str(SCRIPT), "demo", *argv], capture_output=True, text=True, timeout=300, check=False)


def test_demo_kills_resumes_and_passes() -> None:
    # Big enough that the child is still running when the kill lands: after its step-1800
    # checkpoint it has 1200 steps (~0.5 s here) left, the kill comes within 0.9 x 300 steps.
    r = run_demo("--size", "128", "--steps", "3000", "--every", "300", "--seed", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert r.stderr == ""
    assert "child killed with SIGKILL (exit status -9)" in out
    assert "after its step-1800 save" in out
    m = re.search(r"(ckpt-(\d{12})\.ndckpt) \([^)]*\) verified", out)
    assert m is not None, out
    assert int(m.group(2)) >= 1800  # resumed from the kill checkpoint or a later one it completed
    digests = re.findall(r"(?:uninterrupted run|resumed run|final checkpoint)\s+([0-9a-f]{64})", out)
    assert len(digests) == 3
    assert len(set(digests)) == 1
    want = GrayScott(128, 3)
    want.step(3000)
    assert digests[0] == want.digest()
    for label in ("ndckpt (as checkpointed)", "ndckpt (all RAW)", "np.savez", "np.savez_compressed"):
        assert re.search(rf"^\s+{re.escape(label)}\s+[\d.]+ [KM]iB\s", out, re.MULTILINE), label
    assert out.rstrip().splitlines()[-1].startswith("PASS: the run killed after its step-1800 checkpoint")


def test_demo_keep_dir_holds_valid_checkpoints(tmp_path: Path) -> None:
    d = tmp_path / "ck"
    r = run_demo("--size", "48", "--steps", "400", "--every", "100", "--dir", str(d), "--keep", "--threads", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"checkpoints kept in {d}" in r.stdout
    names = sorted(p.name for p in d.iterdir())
    assert names == [f"ckpt-{s:012d}.ndckpt" for s in (100, 200, 300, 400)]
    for name in names:
        ndckpt.verify(d / name)
    with ndckpt.open(d / names[-1]) as rd:
        assert rd.metadata == {"simulation": "gray-scott", "n": 48, "step": 400}
        styles = {row["name"]: row["style"] for row in rd.info()}
        state = rd.load()
    assert styles["fields/u"] == styles["fields/v"] == "raw"
    assert {styles[k] for k in demo.CHECKPOINT_STYLES} == {"lz4"}
    ref = GrayScott(48, 0)
    ref.step(400)
    assert GrayScott.from_state(state).digest() == ref.digest()


def test_demo_cleans_up_given_dir(tmp_path: Path) -> None:
    (tmp_path / "other.txt").write_text("keep me")
    r = run_demo("--size", "32", "--steps", "200", "--every", "50", "--dir", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "100", "--every", "100"], "must be at least twice --every"),
        (["--steps", "400", "--every", "100", "--kill-after", "150"], "--kill-after must be a multiple"),
        (["--steps", "400", "--every", "100", "--kill-after", "400"], "--kill-after must be a multiple"),
    ],
)
def test_demo_bad_options(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert cli.main(["demo", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert message in err


def test_demo_refuses_dir_with_old_checkpoints(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "ckpt-000000000100.ndckpt").write_bytes(b"old")
    assert cli.main(["demo", "--dir", str(tmp_path)]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    assert (tmp_path / "ckpt-000000000100.ndckpt").read_bytes() == b"old"


def test_demo_reports_fail(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A resume that is not exact must be caught: exit 1 and FAIL."""
    real = GrayScott.from_state

    def drifting(d: Any) -> GrayScott:
        sim = real(d)
        sim.params["F"] += 1e-12  # a tiny error that compounds over the remaining steps
        return sim

    monkeypatch.setattr(demo.GrayScott, "from_state", staticmethod(drifting))
    code = cli.main(["demo", "--size", "32", "--steps", "300", "--every", "100", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.rstrip().splitlines()[-1] == "FAIL: the resumed run differs from the uninterrupted run"


def test_kill_step_default() -> None:
    def ks(steps: int, every: int) -> int:
        return demo._kill_step(cli.build_parser().parse_args(["demo", "--steps", str(steps), "--every", str(every)]))

    assert ks(800, 100) == 500
    assert ks(1000, 100) == 600
    assert ks(200, 100) == 100
    assert ks(250, 100) == 200


def test_latest_checkpoint_skips_damaged(tmp_path: Path) -> None:
    sim = GrayScott(16, 1)
    paths = []
    for _ in range(3):
        sim.step(10)
        paths.append(demo.save_checkpoint(tmp_path, sim)[0])
    assert [p.name for p in paths] == [f"ckpt-{s:012d}.ndckpt" for s in (10, 20, 30)]
    (tmp_path / ".ckpt-000000000040.ndckpt.ndckpt-tmp-1-abcd").write_bytes(b"half a save")
    data = bytearray(paths[2].read_bytes())
    data[len(data) // 2] ^= 0xFF
    paths[2].write_bytes(bytes(data))
    latest, skipped = demo.latest_checkpoint(tmp_path)
    assert latest == paths[1]
    assert len(skipped) == 1
    assert skipped[0].startswith("ckpt-000000000030.ndckpt: ")
    resumed = GrayScott.from_state(ndckpt.load(latest))
    assert resumed.step_count == 20
    assert np.array_equal(resumed.u, ndckpt.load(paths[1])["fields"]["u"])
    for p in paths[:2]:
        p.unlink()
    paths[2].unlink()
    assert demo.latest_checkpoint(tmp_path) == (None, [])


def test_child_flag_hidden_from_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "--child" not in out
    for opt in ("--size", "--steps", "--every", "--dir", "--keep", "--kill-after", "--seed"):
        assert opt in out


def test_readme_starts_with_the_two_setup_commands() -> None:
    """The README's first two commands set up a fresh machine: the demo, then exactly .ci/run's tests."""
    repo = Path(__file__).resolve().parents[1]
    blocks = re.findall(r"```bash\n(.*?)\n```", (repo / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    assert blocks[0] == "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/ndckpt demo"
    ci = (repo / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert blocks[1] in ci, "the README's test command must be the one .ci/run runs"
    assert blocks[1].startswith("python3 -m venv .venv && .venv/bin/pip install -q -e '.[test,")
    assert blocks[1].endswith(" && .venv/bin/python -m pytest -q")


def test_readme_quickstart_runs(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    blocks = re.findall(r"```python\n(.*?)\n```", (repo / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    assert "ndckpt.save(" in blocks[0]
    r = subprocess.run(
        [sys.executable, "-c", blocks[0]], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, r.stderr
    assert "stdin: OK" in r.stdout  # the streamed checkpoint verified in the child process
    assert (tmp_path / "state.ndckpt").is_file()


def test_the_library_does_not_import_the_demo() -> None:
    code = "import sys, ndckpt, ndckpt.cli; print(any(m.startswith('ndckpt.demo') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
