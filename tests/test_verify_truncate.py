"""Verifying a file that shrinks under the reader raises CheckptIOError, never SIGBUS (issue 12 item 8).

``verify()``, ``load(verify=True)`` (mapped or not) and ``CheckpointManager.restore(verify=True)``
read what they hash with ``pread``: the mapping's pages past a new end of file are never touched.
Each case runs in a child process (a SIGBUS there fails the test instead of killing pytest); the
file is truncated deterministically, after the structure was parsed and before the frames are
checked, by wrapping the thread-pool entry point the readers go through.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import ndckpt
from ndckpt import _lz4

CHILD = """
import os, sys, warnings
import numpy as np
import ndckpt
from ndckpt import errors
from ndckpt.container import read
from ndckpt.manager import CheckpointManager

path, how = sys.argv[1], sys.argv[2]
real_run_all = read.run_all
state = {{"cut": False}}

def run_all(fn, items, threads):
    if not state["cut"]:
        state["cut"] = True
        os.truncate(path, {keep})  # the head and first pages stay; the frames' data is gone
    return real_run_all(fn, items, threads)

read.run_all = run_all
try:
    if how == "verify":
        ndckpt.verify(path)
    elif how == "load-mmap":
        ndckpt.load(path, verify=True)
    elif how == "load-copy":
        ndckpt.load(path, mmap=False, verify=True)
    elif how == "open-get":
        with ndckpt.open(path, verify=True) as r:
            r.get("a")
    elif how == "restore":
        mgr = CheckpointManager(os.path.dirname(path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mgr.restore(verify=True)
except errors.CheckptIOError as e:
    print("CheckptIOError", e)
    sys.exit(0)
except errors.CheckptError as e:
    print("other CheckptError", type(e).__name__, e)
    sys.exit(3)
print("no error")
sys.exit(2)
"""


@pytest.mark.parametrize("how", ["verify", "load-mmap", "load-copy", "open-get", "restore"])
def test_a_file_truncated_while_verifying_raises_io_error_not_sigbus(tmp_path: Path, how: str) -> None:
    d = tmp_path / "ck"
    d.mkdir()
    path = d / "ckpt-000000000001.ndckpt"
    a = np.arange(4 << 20, dtype=np.uint8)  # 4 MiB RAW: many pages past the cut
    ndckpt.save(path, {"a": a, "b": np.arange(1000)})
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD.format(keep=8192)))
    proc = subprocess.run([sys.executable, str(script), str(path), how], capture_output=True, text=True, timeout=120)
    assert proc.returncode != -7, f"SIGBUS: {proc.stderr[-2000:]}"  # -SIGBUS
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert "CheckptIOError" in proc.stdout
    assert "offset" in proc.stdout


def test_verify_of_a_sound_file_still_passes_and_damage_is_still_found(tmp_path: Path) -> None:
    p = tmp_path / "x.ndckpt"
    ndckpt.save(p, {"a": np.arange(3 << 20, dtype=np.uint8), "z": np.zeros(100)}, style={"z": "lz4"})
    ndckpt.verify(p)
    data = bytearray(p.read_bytes())
    data[4096 + (2 << 20)] ^= 1  # inside the RAW frame, past the first hashed piece
    p.write_bytes(bytes(data))
    with pytest.raises(ndckpt.FormatError, match="checksum"):
        ndckpt.verify(p)
    with pytest.raises(ndckpt.FormatError, match="checksum"):
        ndckpt.load(p, verify=True)


@pytest.mark.parametrize("sizes", [[0], [1], [7, 4096, 1], [1 << 20, 1], [(1 << 20) + 3, 5, 1 << 21]])
def test_incremental_xxh64_equals_one_shot(sizes: list[int]) -> None:
    data = np.random.default_rng(len(sizes)).integers(0, 256, sum(sizes), dtype=np.uint8)
    h = _lz4.XXH64()
    at = 0
    for n in sizes:
        h.update(data[at : at + n])
        at += n
    assert h.digest() == _lz4.xxh64(data)
