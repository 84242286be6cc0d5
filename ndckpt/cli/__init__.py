"""The ``ndckpt`` command: inspect, verify, extract and convert checkpoints; run the demo and benchmarks.

Installed as the ``ndckpt`` console script and runnable as ``python -m ndckpt``::

    ndckpt info FILE|- [--json]               format version, metadata, table of arrays
    ndckpt verify FILE|-                      check every frame; exit 1 naming the bad one
    ndckpt extract FILE|- NAME [-o OUT.npy]   one array to a .npy file
    ndckpt convert IN OUT [--style [NAME=]raw|lz4|lz4+shuffle|lz4+delta|auto ...] [--force]
                                              .npy/.npz <-> ndckpt (and ndckpt -> ndckpt)
    ndckpt demo [...]                         kill-and-resume simulation demo
    ndckpt bench [ARGS...]                    the peer benchmark suite (source checkout only)

Exit status: 0 on success; 1 when a checkpoint is unsound or a user error occurs
(missing file, not an ndckpt file, unknown array, bad input), with one line on
stderr and no traceback; 2 for bad command-line usage (and ``bench`` outside a
source checkout). Long operations draw a progress bar on stderr only when
stderr is a terminal (one line redrawn in place, fitted to the terminal's
width, with rate and time left); otherwise they print no progress at all.

Files are untrusted: whatever a file makes the command print (names, dtypes,
messages) is shown with control and other non-printable characters escaped
(``\x1b``, ``\u202e``, lone surrogates as ``\udc80``), and any failure a file
causes (a malformed or hostile file, too little memory, nesting too deep for
Python) is reported as ``ndckpt COMMAND: error`` in one line with exit status 1.

The modules: :mod:`.common` (the one-line error, input, progress bars),
:mod:`.names` (safe file and member names), :mod:`.numpy_files` (.npy/.npz),
:mod:`.inspect` (info, verify, extract), :mod:`.convert`; this one holds the
parser, ``bench``, ``demo`` and :func:`main`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from .._argtypes import positive_int
from .._text import show as _show
from ..errors import CheckptError
from .common import PROG, UserError, message_of, sniff
from .convert import cmd_convert, style_arg
from .inspect import cmd_extract, cmd_info, cmd_verify

__all__ = ["UserError", "main"]


def bench_script() -> Path:
    """Where the peer benchmark suite is in a source checkout (it is not installed with the package)."""
    return Path(__file__).resolve().parents[2] / "benchmarks" / "peers.py"


def cmd_bench(args: argparse.Namespace) -> int:
    script = bench_script()
    if not script.is_file():
        raise UserError(
            "ndckpt bench: the benchmark suite ships with the source repository "
            f"(benchmarks/peers.py, not found at {script}); run it from a clone",
            code=2,
        )
    extra = list(args.bench_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return subprocess.call([sys.executable, str(script), *extra])


def cmd_demo(args: argparse.Namespace) -> int:
    from .. import demo

    return demo.run(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ndckpt`` command (every subcommand has ``--help``)."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect, verify and convert ndckpt checkpoints; run the demo and benchmarks.",
        epilog="Run 'ndckpt COMMAND --help' for a command's options.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def threads_opt(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--threads", type=positive_int, default=None, metavar="N", help="worker threads (default: all cores)"
        )

    q = sub.add_parser(
        "info",
        help="format version, metadata and a table of arrays",
        description="Print a checkpoint's format version, metadata and a table of its arrays (name, dtype, shape, "
        "style, raw and stored size, ratio, frames). Reads only the head and index, not the data. "
        "Names and other text from the file are printed with non-printable characters escaped (\\x1b, \\u202e).",
    )
    q.add_argument("file", metavar="FILE", help="an ndckpt file, or - to read one from stdin")
    q.add_argument("--json", action="store_true", help="print the same as JSON (exact byte counts)")
    q.set_defaults(func=cmd_info)

    q = sub.add_parser(
        "verify",
        help="check every frame's checksum and structure",
        description="Check a checkpoint's structure and every frame's checksum (LZ4 frames are also decoded). "
        "Exit 0 when it is sound; exit 1 with one line naming the frame, its offset and its arrays when not.",
    )
    q.add_argument("file", metavar="FILE", help="an ndckpt file, or - to read one from stdin")
    threads_opt(q)
    q.set_defaults(func=cmd_verify)

    q = sub.add_parser(
        "extract",
        help="write one array to a .npy file",
        description="Write one array of a checkpoint to a .npy file (reads only the frames holding it).",
    )
    q.add_argument("file", metavar="FILE", help="an ndckpt file, or - to read one from stdin")
    q.add_argument("name", metavar="NAME", help="the array's name, as 'ndckpt info' lists it (e.g. fields/u)")
    q.add_argument(
        "-o",
        "--output",
        metavar="OUT.npy",
        help="output file (default: NAME with / -> _, plus .npy; %%, \\, : and non-printable characters as %%XX)",
    )
    threads_opt(q)
    q.set_defaults(func=cmd_extract)

    q = sub.add_parser(
        "convert",
        help="convert between .npy/.npz and ndckpt",
        description="Convert between numpy files and ndckpt. The input kind is read from its first bytes; the output "
        "kind comes from its suffix (.npy, .npz, anything else is ndckpt). One side must be ndckpt; ndckpt -> ndckpt "
        "rewrites the file (e.g. with another --style). Use - for an ndckpt stream on stdin/stdout (not written to a "
        "terminal unless --force). In a .npz every array NAME is the member NAME.npy; to keep member names safe "
        "relative paths, %%, \\, : and non-printable characters are written as %%XX (their UTF-8 bytes), a group "
        "named . or .. (dots only) as %%2E..., and a / that would start the name or make an empty component as %%2F; "
        "other names are unchanged, and distinct names stay distinct.",
    )
    q.add_argument("input", metavar="IN", help="a .npy, .npz or ndckpt file (- : ndckpt on stdin)")
    q.add_argument("output", metavar="OUT", help="a .npy, .npz or ndckpt file (- : ndckpt on stdout)")
    q.add_argument(
        "--style",
        type=style_arg,
        action="append",
        default=None,
        metavar="[NAME=]STYLE",
        help="frame style of ndckpt output: raw, lz4, lz4+shuffle, lz4+delta or auto (LZ4 after a byte shuffle, "
        "a shuffle and byte delta, or the better of the three chosen per frame; for numeric arrays): "
        "STYLE for every array (default: raw), NAME=STYLE for an "
        "array or a group (the most specific name wins); repeat for several, e.g. --style lz4 --style step=raw",
    )
    q.add_argument("-f", "--force", action="store_true", help="write ndckpt data to stdout even if it is a terminal")
    threads_opt(q)
    q.set_defaults(func=cmd_convert)

    from ..demo import add_arguments as demo_arguments

    q = sub.add_parser(
        "demo",
        help="checkpoint a simulation, kill it, resume it, prove the result is bit-identical",
        description="Run a Gray-Scott simulation in a child process that checkpoints every K steps, kill it with "
        "SIGKILL part-way, resume from the latest complete checkpoint, and check that the resumed run ends "
        "bit-identical to an uninterrupted run. Prints checkpoint sizes, save and load times, and np.savez for "
        "comparison. Exit 0 on PASS, 1 on FAIL. Needs no network.",
    )
    demo_arguments(q)
    q.set_defaults(func=cmd_demo)

    q = sub.add_parser(
        "bench",
        help="run the peer benchmark suite (source checkout)",
        description="Run benchmarks/peers.py (ndckpt against np.save, safetensors, ...) with this Python, passing "
        "ARGS through, e.g. 'ndckpt bench --quick'. The suite ships with the source repository, not with the "
        "installed package. 'ndckpt bench -- --help' shows the suite's own options.",
    )
    q.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for benchmarks/peers.py")
    q.set_defaults(func=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ndckpt`` command with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if args_list[:1] == ["bench"] and args_list[1:2] not in (["-h"], ["--help"]):
        # Everything after "bench" belongs to the suite, options included.
        args = argparse.Namespace(func=cmd_bench, bench_args=args_list[1:], command="bench")
    else:
        args = parser.parse_args(args_list)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return code
    except UserError as e:
        msg = str(e)
        _complain(msg if msg.startswith(PROG) else f"{PROG} {args.command}: {msg}")
        return e.code
    except KeyError as e:  # unknown array names from the library
        _complain(f"{PROG} {args.command}: {e.args[0] if e.args else e}")
        return 1
    except CheckptError as e:
        msg = message_of(e)
        _complain(f"{PROG} {args.command}: {_path_prefix(args, msg)}{msg}{_numpy_hint(args, msg)}")
        return 1
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            _silence_stdout()
            return 1
        where = f"{e.filename}: " if e.filename else ""
        _complain(f"{PROG} {args.command}: {where}{e.strerror or e}")
        return 1
    except MemoryError:
        _complain(f"{PROG} {args.command}: {_path_prefix(args, '')}not enough memory")
        return 1
    except RecursionError:  # a hostile file's dtypes, names or metadata nested beyond Python's recursion limit
        _complain(f"{PROG} {args.command}: {_path_prefix(args, '')}nested too deeply to process")
        return 1
    except (ValueError, OverflowError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        # What numpy and the codecs raise on content they cannot represent (65 dimensions, a lone
        # surrogate in a name written to a file name): the file's doing, not the user's.
        msg = str(e) or type(e).__name__
        _complain(f"{PROG} {args.command}: {_path_prefix(args, msg)}cannot process: {msg}")
        return 1
    except KeyboardInterrupt:
        _complain(f"{PROG} {args.command}: interrupted")
        return 130


def _complain(line: str) -> None:
    """One line on stderr, escaped for a terminal (an error can quote what a file says)."""
    print(_show(line), file=sys.stderr)


def _numpy_hint(args: argparse.Namespace, message: str) -> str:
    """For a numpy file given where an ndckpt file is expected: how to convert it."""
    path = getattr(args, "file", None)
    if not isinstance(path, str) or path == "-" or not message.startswith("not an ndckpt file"):
        return ""
    try:
        kind = sniff(path)
    except UserError:
        return ""
    if kind not in ("npy", "npz"):
        return ""
    return f" (it is a .{kind} file; 'ndckpt convert {path} OUT.ndckpt' makes one)"


def _path_prefix(args: argparse.Namespace, message: str) -> str:
    """``"FILE: "`` for the command's input file, unless the message already names it."""
    for attr in ("file", "input"):
        v = getattr(args, attr, None)
        if isinstance(v, str):
            label = "stdin" if v == "-" else v
            return "" if repr(v) in message else f"{label}: "
    return ""


def _silence_stdout() -> None:
    """After a broken pipe (``ndckpt info f | head``), keep Python from complaining at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
