"""Coverage-guided fuzz target for ndckpt's readers (atheris, libFuzzer).

Run for a bounded time (not part of CI), from the repository root::

    .venv/bin/pip install -e '.[fuzz]'
    .venv/bin/python fuzz/fuzz_reader.py -max_total_time=60 fuzz/corpus

Every input goes through :func:`harness.exercise` (load of a buffer and of
streams, open/get, verify, the low-level Restore). Any exception that is not
an ndckpt error, and any disagreement between readers, stops the run and
leaves the input as ``crash-<sha1>`` in the current directory: copy it into
``fuzz/corpus/`` (``tests/test_fuzz_corpus.py`` replays every file there),
fix the bug, and run again. New inputs libFuzzer finds interesting are added
to ``fuzz/corpus`` as it runs. See ``fuzz/README.md``.
"""

from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

with atheris.instrument_imports(include=["ndckpt", "harness"]):
    import harness


def test_one_input(data: bytes) -> None:
    harness.exercise_both(data)


def main() -> None:
    # Hostile inputs may claim frames of up to 4 GiB: libFuzzer's default -rss_limit_mb=2048
    # would stop at the first virtual reservation it sees as RSS, so allow more unless told.
    argv = list(sys.argv)
    # libFuzzer re-runs argv[0] through the shell for -merge, -fork and -jobs: make it this
    # interpreter running this file (the script itself need not be executable).
    argv[0] = f"{sys.executable} {os.path.abspath(__file__)}"
    if not any(a.startswith("-rss_limit_mb=") for a in argv):
        argv.append("-rss_limit_mb=4096")
    if not any(a.startswith("-max_len=") for a in argv):
        argv.append("-max_len=65536")
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
