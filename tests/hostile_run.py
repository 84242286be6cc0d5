"""Run hostile files (tests/hostile.py) through every ndckpt reader and classify each load.

``python tests/hostile_run.py --seconds 300 --seed 11`` generates files until the time is up,
runs each through the loaders below in worker subprocesses (each under ``RLIMIT_AS`` and a
per-load timeout; a worker loads many files and is restarted after a crash or a timeout),
prints the count per class and exits 1 if any load was bad:

* ``ok-exact``: the load succeeded and returned exactly the leaves the file encodes (for
  ``verify`` and ``cli-info``: succeeded on a file the generator made valid);
* ``CheckptError``: refused with ndckpt's typed error (always allowed);
* bad: ``WRONG`` (success with other leaves, or on an invalid file), ``CRASH`` (the worker
  died: a signal such as SIGSEGV, or exit without a reply), ``HANG`` (timeout),
  ``NON_NDCKPT`` (another exception type escaped), ``OVERRUN`` (peak RSS during the load minus
  the RSS before it exceeded the memory bound).

The memory bound is ``MEM_BOUND`` plus a few times the file and the decoded leaves, or, once
``ndckpt.container`` defines them, ``OPEN_MEM_FIXED + OPEN_MEM_PER_HEAD_BYTE * head_nbytes``
in place of ``MEM_BOUND`` (picked up with ``getattr``, so the runner follows the documented
bound when it lands).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import resource
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import hostile  # noqa: E402

MEM_BOUND = 512 << 20
AS_LIMIT = 6 << 30  # address space per worker: far above any legitimate load of these files
TIMEOUT = 30.0  # seconds per load
LOADERS = ["load-mmap", "load-copy", "open-read", "verify", "load-verify", "manager", "cli-info"]
BAD = ("WRONG", "CRASH", "HANG", "NON_NDCKPT", "OVERRUN")
VERIFYING = {"verify", "load-verify"}


# -- digests of results (computed in the worker, compared in the parent) --------------------


def _enc(v: Any, out: list[bytes]) -> None:
    if isinstance(v, np.ndarray):
        out += [b"A", repr(v.dtype.descr).encode(), str(v.dtype.itemsize).encode(), repr(v.shape).encode()]
        if v.dtype.names is None:
            out.append(np.ascontiguousarray(v).tobytes())
        else:  # field by field: the padding between fields is not data (a copy leaves it undefined)
            for name in v.dtype.names:
                _enc(v[name], out)
    elif isinstance(v, np.generic):
        out += [b"G", repr(v.dtype.descr).encode(), v.tobytes()]
    elif isinstance(v, float):
        out += [b"F", struct.pack("<d", v)]
    elif isinstance(v, complex):
        out += [b"C", struct.pack("<dd", v.real, v.imag)]
    elif isinstance(v, (list, tuple)):
        out += [b"L" if isinstance(v, list) else b"T", str(len(v)).encode()]
        for x in v:
            _enc(x, out)
    elif isinstance(v, dict):
        out += [b"D", str(len(v)).encode()]
        for k, x in v.items():
            out.append(k.encode("utf-8", "surrogatepass"))
            _enc(x, out)
    else:
        out += [type(v).__name__.encode(), repr(v).encode("utf-8", "surrogatepass")]


def digest(leaves: dict[Any, Any], *, groups: bool = True) -> str:
    """A hash of {path (tuple or "a/b" name): leaf}; empty groups (``{}``) left out unless ``groups``."""
    items = []
    for k, v in leaves.items():
        name = "/".join(k) if isinstance(k, tuple) else k
        if isinstance(v, dict) and not v and isinstance(k, tuple) and not groups:
            continue
        items.append((name.encode("utf-8", "surrogatepass"), v))
    h = hashlib.sha256()
    for name, v in sorted(items, key=lambda kv: kv[0]):
        parts: list[bytes] = [name]
        _enc(v, parts)
        for p in parts:
            h.update(len(p).to_bytes(8, "little"))
            h.update(p)
    return h.hexdigest()


# -- the worker -----------------------------------------------------------------------------


def _rss() -> tuple[int, int]:
    rss = hwm = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) << 10
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) << 10
    return rss, hwm


def _reset_peak() -> None:
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def _run_loader(loader: str, path: str, mgrdir: str) -> tuple[str, str]:
    """(kind, digest) where kind is ok / exit0 / exit1."""
    import ndckpt
    from ndckpt import cli

    if loader == "load-mmap":
        return "ok", digest(hostile.flat_leaves(ndckpt.load(path, mmap=True)))
    if loader == "load-copy":
        return "ok", digest(hostile.flat_leaves(ndckpt.load(path, mmap=False)))
    if loader == "load-verify":
        return "ok", digest(hostile.flat_leaves(ndckpt.load(path, verify=True)))
    if loader == "open-read":
        with ndckpt.open(path) as r:
            return "ok", digest({k: r.read(k) for k in r.names()}, groups=False)
    if loader == "verify":
        ndckpt.verify(path)
        return "ok", ""
    if loader == "manager":
        shutil.copyfile(path, os.path.join(mgrdir, "ckpt-000000000002.ndckpt"))
        mgr = ndckpt.CheckpointManager(mgrdir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = mgr.restore()
        return f"step{mgr.restored_step}", digest(hostile.flat_leaves(d))
    if loader == "cli-info":
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = cli.main(["info", path])
        return f"exit{code}", ""
    raise ValueError(loader)


def worker() -> None:
    """Serve requests (JSON lines on stdin), answer on stdout, one line per load."""
    import ndckpt

    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    mgrdir = tempfile.mkdtemp(prefix="hostile-mgr-")
    fallback = hostile.valid_spec(__import__("random").Random(0), {("fallback",): np.arange(3, dtype="<i8")})
    Path(mgrdir, "ckpt-000000000001.ndckpt").write_bytes(fallback.build())
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but replies on the reply pipe
    for line in sys.stdin:
        req = json.loads(line)
        base, _ = _rss()
        _reset_peak()
        reply: dict[str, Any]
        try:
            kind, dg = _run_loader(req["loader"], req["path"], mgrdir)
            reply = {"status": "ok", "kind": kind, "digest": dg}
        except ndckpt.CheckptError as e:
            reply = {"status": "error", "etype": type(e).__name__, "msg": str(e)[:300]}
        except BaseException as e:  # classified as NON_NDCKPT by the parent
            if isinstance(e, KeyboardInterrupt):
                raise
            reply = {"status": "other", "etype": type(e).__name__, "msg": str(e)[:300]}
        _, peak = _rss()
        reply["grow"] = max(0, peak - base)
        out.write(json.dumps(reply) + "\n")
        out.flush()


# -- the parent -----------------------------------------------------------------------------


@dataclass
class Result:
    counts: Counter[str] = field(default_factory=Counter)
    per_loader: dict[str, Counter[str]] = field(default_factory=dict)
    bad: list[str] = field(default_factory=list)
    files: int = 0
    loads: int = 0
    valid_files: int = 0


class Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )

    def ask(self, req: dict[str, Any], timeout: float) -> dict[str, Any] | str:
        """The reply, or "HANG" / "CRASH:<returncode>" (the worker is then dead)."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        try:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            return f"CRASH:{self.proc.wait()}"
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.kill()
            return "HANG"
        line = self.proc.stdout.readline()
        if not line:
            return f"CRASH:{self.proc.wait()}"
        reply: dict[str, Any] = json.loads(line)
        return reply

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._close_pipes()


def mem_bound(case: hostile.Case) -> int:
    from ndckpt import container

    head_nbytes = int.from_bytes(case.data[16:24], "little") if len(case.data) >= 24 else 0
    head_nbytes = min(head_nbytes, len(case.data))
    fixed = getattr(container, "OPEN_MEM_FIXED", None)
    per_head = getattr(container, "OPEN_MEM_PER_HEAD_BYTE", None)
    base = MEM_BOUND if fixed is None or per_head is None else int(fixed) + int(per_head) * head_nbytes
    decoded = 0
    for leaves in (case.expect, case.alt_unverified, case.alt_verified):
        for v in (leaves or {}).values():
            if isinstance(v, np.ndarray):
                decoded += v.nbytes
    return base + 4 * len(case.data) + 4 * decoded + (64 << 20)


def classify(case: hostile.Case, loader: str, reply: dict[str, Any] | str, fallback_digest: str) -> str:
    if isinstance(reply, str):
        return reply.split(":")[0]
    if reply["grow"] > mem_bound(case):
        return "OVERRUN"
    if reply["status"] == "error":
        return "CheckptError"
    if reply["status"] == "other":
        return "NON_NDCKPT"
    kind, dg = reply["kind"], reply["digest"]
    if loader == "cli-info":
        return "ok-exact" if kind == "exit0" else ("CheckptError" if kind == "exit1" else "WRONG")
    if loader == "verify":
        return "ok-exact" if case.expect is not None else "WRONG"
    if loader == "manager":
        if kind == "step1":
            return "CheckptError" if dg == fallback_digest else "WRONG"
        loader = "load-mmap"
    allowed = [case.expect]
    allowed.append(case.alt_verified if loader in VERIFYING else case.alt_unverified)
    groups = loader != "open-read"
    for leaves in allowed:
        if leaves is not None and digest(leaves, groups=groups) == dg:
            return "ok-exact"
    return "WRONG"


def run(seed: int, seconds: float, *, max_files: int | None = None, workers: int = 1, log: Any = None) -> Result:
    """Generate files from ``seed`` for ``seconds`` (or ``max_files``) and classify every load."""
    res = Result()
    res.per_loader = {ld: Counter() for ld in LOADERS}
    fallback_digest = digest({("fallback",): np.arange(3, dtype="<i8")})
    tmp = Path(tempfile.mkdtemp(prefix="hostile-run-"))
    pool = [Worker() for _ in range(max(1, workers))]
    deadline = time.monotonic() + seconds
    try:
        gen = hostile.cases(seed, max_files)
        for case in gen:
            if time.monotonic() > deadline:
                break
            path = tmp / "case.ndckpt"
            path.write_bytes(case.data)
            res.files += 1
            res.valid_files += case.expect is not None
            for li, loader in enumerate(LOADERS):
                w = pool[li % len(pool)]
                reply = w.ask({"path": str(path), "loader": loader}, TIMEOUT)
                if isinstance(reply, str):
                    w.kill()
                    pool[li % len(pool)] = Worker()
                cls = classify(case, loader, reply, fallback_digest)
                res.loads += 1
                res.counts[cls] += 1
                res.per_loader[loader][cls] += 1
                if cls in BAD:
                    detail = reply if isinstance(reply, str) else {k: reply.get(k) for k in ("etype", "msg", "grow")}
                    res.bad.append(f"{cls} seed={seed} case={case.name} loader={loader} {detail}")
                    if log is not None:
                        print(res.bad[-1][:400], file=log, flush=True)
    finally:
        for w in pool:
            w.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--max-files", type=int, default=None)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker()
        return 0
    t0 = time.monotonic()
    res = run(args.seed, args.seconds, max_files=args.max_files, workers=args.workers, log=sys.stderr)
    print(
        f"seed {args.seed}: {res.files} files ({res.valid_files} valid), {res.loads} loads "
        f"in {time.monotonic() - t0:.0f} s"
    )
    for cls in ("ok-exact", "CheckptError", *BAD):
        print(f"  {cls:13s} {res.counts[cls]}")
    for loader, c in res.per_loader.items():
        print(f"  {loader:12s} " + " ".join(f"{k}={v}" for k, v in sorted(c.items())))
    return 1 if any(res.counts[c] for c in BAD) else 0


if __name__ == "__main__":
    sys.exit(main())
