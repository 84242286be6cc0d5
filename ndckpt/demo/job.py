"""``ndckpt demo``: checkpoint a running simulation, kill it, resume it, prove nothing was lost.

What it does, in order:

1. Runs the Gray-Scott simulation (:class:`ndckpt.demo.GrayScott`: float64
   fields, int64 counters, a uint8 mask, a float32 history, the RNG state and
   scalars) for ``--steps`` steps in this process, without interruption, and
   keeps the digest of its final state.
2. Starts the same simulation in a child process (``python -m ndckpt demo
   --child ...``) that writes a checkpoint every ``--every`` steps through a
   :class:`~ndckpt.CheckpointManager` (``ckpt-{step:012d}.ndckpt``; the fields
   RAW, the statistics LZ4). When the child reports the checkpoint at
   ``--kill-after``, the parent waits a deterministic pseudo-random fraction
   of a checkpoint interval and kills the child with SIGKILL: no handler
   runs, a save may be cut off half-way.
3. Finds the latest complete checkpoint (``ndckpt.verify`` on each, newest
   first; a save cut off by the kill never got its final name), loads it,
   rebuilds the simulation and runs it to ``--steps``, checkpointing as before.
4. Compares the resumed run's final digest (and its last checkpoint on disk)
   with the uninterrupted run's: PASS when bit-identical (exit 0), FAIL (exit
   1) otherwise. Then writes the same state with ``np.savez`` and
   ``np.savez_compressed`` for comparison.

The defaults finish in well under a minute on two cores; ``--size`` and
``--steps`` scale it up. No network, no service.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import api as _api
from .._argtypes import positive_int
from .._progress import format_bytes
from ..container.plan import flat_names
from ..errors import CheckptError
from ..manager import CheckpointManager
from .model import GrayScott, StateTree

__all__ = ["CHECKPOINT_STYLES", "add_arguments", "checkpoint_path", "latest_checkpoint", "run"]

#: Arrays checkpointed with LZ4 (compressible: counters, a 0/1 mask, a half-empty history); the rest are RAW.
CHECKPOINT_STYLES: dict[str, str] = {
    "stats/activation_count": "lz4",
    "stats/mask": "lz4",
    "stats/diagnostics": "lz4",
}
_PATTERN = "ckpt-*.ndckpt"


#: SIGKILL where it exists; elsewhere (Windows) Popen.kill, which is TerminateProcess.
_KILL_NAME = "SIGKILL" if hasattr(signal, "SIGKILL") else "TerminateProcess"


def _hard_kill(proc: subprocess.Popen[str]) -> None:
    """Kill ``proc`` without letting it run any handler: SIGKILL, or TerminateProcess where no SIGKILL."""
    sig = getattr(signal, "SIGKILL", None)
    if sig is None:
        proc.kill()
    else:
        proc.send_signal(sig)


def _was_hard_killed(rc: int) -> bool:
    """Whether exit status ``rc`` is that of a :func:`_hard_kill` (TerminateProcess gives exit code 1)."""
    sig = getattr(signal, "SIGKILL", None)
    return rc == 1 if sig is None else rc == -int(sig)


def checkpoint_path(directory: Path, step: int) -> Path:
    """Where the checkpoint of ``step`` goes: ``directory/ckpt-{step:012d}.ndckpt``."""
    return directory / f"ckpt-{step:012d}.ndckpt"


def checkpoint_manager(directory: Path, *, threads: int | None = None) -> CheckpointManager:
    """The demo's :class:`~ndckpt.CheckpointManager`: every checkpoint kept, stats/* LZ4, the rest RAW."""
    return CheckpointManager(directory, keep=None, style=CHECKPOINT_STYLES, threads=threads)


def save_checkpoint(
    directory: Path, sim: GrayScott, *, threads: int | None = None, manager: CheckpointManager | None = None
) -> tuple[Path, float]:
    """Write ``sim``'s state (zero-copy views of its live arrays) atomically; return (path, seconds).

    Goes through ``manager`` (default: a new :func:`checkpoint_manager` of ``directory``).
    """
    mgr = checkpoint_manager(directory, threads=threads) if manager is None else manager
    state = sim.state()
    t0 = time.perf_counter()
    mgr.save(
        sim.step_count, state, metadata={"simulation": "gray-scott", "n": sim.n, "step": sim.step_count}, force=True
    )
    return mgr.path(sim.step_count), time.perf_counter() - t0


def latest_checkpoint(directory: Path, *, threads: int | None = None) -> tuple[Path | None, list[str]]:
    """The newest checkpoint in ``directory`` that verifies, and a note for each one skipped.

    The candidates are the manager's complete checkpoints (a save cut off by a
    kill never got its final name; its temporary file is removed here).
    """
    mgr = checkpoint_manager(directory, threads=threads)
    found = [(s, mgr.path(s)) for s in mgr.steps()]
    skipped: list[str] = []
    for _, path in reversed(found):
        try:
            _api.verify(path, threads=threads)
        except CheckptError as e:
            skipped.append(f"{path.name}: {e}")
            continue
        return path, skipped
    return None, skipped


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------


def _grid(text: str) -> int:
    n = positive_int(text)
    if n < 8:
        raise argparse.ArgumentTypeError(f"grid size must be at least 8, got {n}")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The demo's options (shared by the parent and the hidden ``--child`` mode)."""
    p.add_argument("--size", type=_grid, default=768, metavar="N", help="grid is N x N (default 768)")
    p.add_argument("--steps", type=positive_int, default=800, metavar="S", help="simulation steps (default 800)")
    p.add_argument(
        "--every", type=positive_int, default=100, metavar="K", help="checkpoint every K steps (default 100)"
    )
    p.add_argument(
        "--kill-after",
        type=positive_int,
        default=None,
        metavar="STEP",
        help="kill the child after its checkpoint of this step (default: about 60%% of --steps)",
    )
    p.add_argument("--seed", type=int, default=0, help="simulation seed; also picks the kill delay (default 0)")
    p.add_argument(
        "--dir", type=Path, default=None, metavar="DIR", help="checkpoint directory (default: a new temporary one)"
    )
    p.add_argument("--keep", action="store_true", help="keep the checkpoint files (and print where they are)")
    p.add_argument(
        "--threads", type=positive_int, default=None, metavar="N", help="ndckpt threads (default: all cores)"
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)


def _kill_step(args: argparse.Namespace) -> int:
    every, steps = int(args.every), int(args.steps)
    if steps < 2 * every:
        raise _DemoError(f"--steps ({steps}) must be at least twice --every ({every}) to checkpoint, kill and resume")
    if args.kill_after is not None:
        k = int(args.kill_after)
        if k % every or not every <= k < steps:
            raise _DemoError(f"--kill-after must be a multiple of --every ({every}) below --steps ({steps}), got {k}")
        return k
    k = round(0.6 * steps / every) * every
    return min(max(k, every), (steps - 1) // every * every)


class _DemoError(Exception):
    """A bad option combination or an unusable directory: reported in one line."""


# ----------------------------------------------------------------------------------------------
# The child: run and checkpoint until killed
# ----------------------------------------------------------------------------------------------


def _child(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    sim = GrayScott(args.size, args.seed)
    mgr = checkpoint_manager(directory, threads=args.threads)
    while sim.step_count < args.steps:
        sim.step(min(args.every, args.steps - sim.step_count))
        if sim.step_count % args.every == 0:
            path, dt = save_checkpoint(directory, sim, manager=mgr)
            rec = {"step": sim.step_count, "path": path.name, "save_s": dt, "file_nbytes": path.stat().st_size}
            print(json.dumps(rec), flush=True)
    return 0


# ----------------------------------------------------------------------------------------------
# The parent
# ----------------------------------------------------------------------------------------------


@dataclass
class _Timing:
    save_s: float
    load_s: float
    nbytes: int


def _best(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _compare_formats(state: StateTree, directory: Path, threads: int | None) -> dict[str, _Timing]:
    """Save ``state`` to a file (no fsync) and load it back, with ndckpt and numpy's npz writers; best of 3."""
    flat = flat_names(state)
    results: dict[str, _Timing] = {}

    def nd_save(path: Path, style: Any) -> None:
        with open(path, "wb") as f:
            _api.save(f, state, style=style, threads=threads)

    def np_load(path: Path) -> None:
        with np.load(path) as z:
            for k in z.files:
                z[k]

    p = directory / "compare.ndckpt"
    for label, style in (("ndckpt (as checkpointed)", CHECKPOINT_STYLES), ("ndckpt (all RAW)", "raw")):
        save = _best(lambda st=style: nd_save(p, st))  # type: ignore[misc]
        load = _best(lambda: _api.load(p, mmap=False, threads=threads))
        results[label] = _Timing(save, load, p.stat().st_size)
        p.unlink()
    p = directory / "compare.npz"
    for label, writer in (("np.savez", np.savez), ("np.savez_compressed", np.savez_compressed)):
        save = _best(lambda w=writer: w(p, **flat))  # type: ignore[misc]
        load = _best(lambda: np_load(p))
        results[label] = _Timing(save, load, p.stat().st_size)
        p.unlink()
    return results


def _prepare_dir(args: argparse.Namespace) -> tuple[Path, bool]:
    """(directory, created_by_us). Refuses a directory that already holds checkpoints."""
    if args.dir is None:
        return Path(tempfile.mkdtemp(prefix="ndckpt-demo-")), True
    d: Path = args.dir
    if d.exists() and not d.is_dir():
        raise _DemoError(f"--dir {d}: not a directory")
    created = not d.exists()
    d.mkdir(parents=True, exist_ok=True)
    if any(d.glob(_PATTERN)):
        raise _DemoError(f"--dir {d}: already holds checkpoints (ckpt-*.ndckpt) from another run; use an empty one")
    return d, created


def _cleanup(directory: Path, created: bool) -> None:
    if created:
        shutil.rmtree(directory, ignore_errors=True)
        return
    for p in directory.iterdir():
        if p.name.startswith(("ckpt-", ".ckpt-")) and ".ndckpt" in p.name:
            p.unlink()


def _ms(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 10 else f"{s:.1f} s"


def _rate(nbytes: int, s: float) -> str:
    return f"{nbytes / s / 1e9:.2f} GB/s" if s > 0 else "-"


def run(args: argparse.Namespace) -> int:
    """Run the demo (or, with ``args.child``, the child's side of it); return the exit status."""
    if args.child:
        return _child(args)
    try:
        kill_step = _kill_step(args)
        directory, created = _prepare_dir(args)
    except _DemoError as e:
        print(f"ndckpt demo: {e}", file=sys.stderr)
        return 2
    try:
        return _run(args, directory, kill_step)
    finally:
        if args.keep:
            print(f"\ncheckpoints kept in {directory}")
        else:
            _cleanup(directory, created)


def _run(args: argparse.Namespace, directory: Path, kill_step: int) -> int:
    n, steps, every, seed = args.size, args.steps, args.every, args.seed
    say = print
    probe = flat_names(GrayScott(n, seed).state())
    state_bytes = sum(a.nbytes for a in probe.values())
    dtypes = sorted({str(a.dtype) for a in probe.values()})
    say(f"ndckpt demo: Gray-Scott on a {n}x{n} grid, {steps} steps, a checkpoint every {every} steps (seed {seed})")
    say(
        f"  state: {format_bytes(state_bytes)} in {len(probe)} arrays of {len(dtypes)} dtypes ({', '.join(dtypes)}): "
        "fields, counters, mask, history, RNG state, parameters, scalars"
    )
    say("  checkpoints: fields/* and the small arrays RAW (zero-copy on load), stats/* LZ4")
    say("")

    # 1. The uninterrupted reference run.
    say(f"[1/4] uninterrupted run in this process: {steps} steps ...")
    ref = GrayScott(n, seed)
    t0 = time.perf_counter()
    ref.step(steps)
    ref_s = time.perf_counter() - t0
    ref_digest = ref.digest()
    step_s = ref_s / steps
    say(f"      {steps} steps in {ref_s:.2f} s ({step_s * 1e3:.2f} ms/step); final digest {ref_digest[:16]}")
    say("")

    # 2. The child: checkpoint every K steps, killed part-way.
    delay = random.Random(seed).uniform(0.1, 0.9) * every * step_s
    say(f"[2/4] child process checkpoints into {directory}; it is killed {_ms(delay)} after its step-{kill_step} save")
    cmd = [sys.executable, "-m", "ndckpt", "demo", "--child", "--size", str(n), "--steps", str(steps)]
    cmd += ["--every", str(every), "--seed", str(seed), "--dir", str(directory)]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    env = dict(os.environ)
    pkg_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    child_saves: list[dict[str, Any]] = []
    killed = False
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                rec = json.loads(line)
                child_saves.append(rec)
                say(
                    f"      step {rec['step']:>6}: {rec['path']}  {format_bytes(rec['file_nbytes']):>9}  "
                    f"saved in {_ms(rec['save_s'])}"
                )
                if rec["step"] == kill_step:
                    time.sleep(delay)
                    if proc.poll() is None:
                        _hard_kill(proc)
                        killed = True
                    break
            proc.stdout.read()  # whatever it printed before dying
        finally:
            if proc.poll() is None:
                proc.kill()
            rc = proc.wait()
    if killed and _was_hard_killed(rc):
        say(f"      child killed with {_KILL_NAME} (exit status {rc}) before finishing")
    elif rc != 0:
        say(f"FAIL: the child process failed with exit status {rc}")
        return 1
    else:
        killed = False
        say("      the child finished before the kill landed (this machine is fast for these sizes)")
    leftovers = sorted(p.name for p in directory.iterdir() if p.name.startswith(".ckpt-"))
    if leftovers:
        say(f"      the kill cut a save short: {', '.join(leftovers)} (a temporary file, never renamed)")
    say("")

    # 3. Resume from the latest complete checkpoint.
    say("[3/4] resume from the latest complete checkpoint")
    if killed:
        latest, skipped = latest_checkpoint(directory, threads=args.threads)
    else:  # nothing was interrupted: resume from the checkpoint the kill should have followed
        latest, skipped = checkpoint_path(directory, kill_step), []
    for note in skipped:
        say(f"      skipped {note}")
    if latest is None:
        say("FAIL: no complete checkpoint found")
        return 1
    t0 = time.perf_counter()
    data = _api.load(latest, threads=args.threads)
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    sim = GrayScott.from_state(data)
    rebuild_s = time.perf_counter() - t1
    del data
    start = sim.step_count
    size = latest.stat().st_size
    say(
        f"      {latest.name} ({format_bytes(size)}) verified; ndckpt.load {_ms(load_s)} "
        f"(RAW arrays are zero-copy views), rebuilt in {_ms(rebuild_s)}: step {start}"
    )
    t0 = time.perf_counter()
    saves: list[float] = []
    mgr = checkpoint_manager(directory, threads=args.threads)
    while sim.step_count < steps:
        sim.step(min(every, steps - sim.step_count))
        if sim.step_count % every == 0:
            saves.append(save_checkpoint(directory, sim, manager=mgr)[1])
    say(
        f"      ran steps {start}..{steps} in {time.perf_counter() - t0:.2f} s, "
        f"writing {len(saves)} more checkpoints (median save {_ms(float(np.median(saves))) if saves else '-'})"
    )
    say("")

    # 4. Compare.
    say("[4/4] compare with the uninterrupted run")
    resumed_digest = sim.digest()
    final = checkpoint_path(directory, steps)
    disk_digest = GrayScott.from_state(_api.load(final)).digest() if final.exists() else None
    say(f"      uninterrupted run   {ref_digest}")
    say(f"      resumed run         {resumed_digest}")
    if disk_digest is not None:
        say(f"      final checkpoint    {disk_digest}  ({final.name})")
    ok = resumed_digest == ref_digest and disk_digest in (None, ref_digest)
    say("")

    say(f"The step-{start} state saved to a file and loaded back into memory (best of 3, no fsync):")
    results = _compare_formats(_api.load(latest, mmap=False), directory, args.threads)
    raw_bytes = state_bytes
    say(f"      {'format':<26}{'size':>10}{'save':>11}{'':>12}{'load':>11}")
    for label, t in results.items():
        say(
            f"      {label:<26}{format_bytes(t.nbytes):>10}{_ms(t.save_s):>11}{_rate(raw_bytes, t.save_s):>12}"
            f"{_ms(t.load_s):>11}{_rate(raw_bytes, t.load_s):>12}"
        )
    say("")
    if ok:
        how = "killed after its step-{kill_step} checkpoint" if killed else "stopped"
        say(
            f"PASS: the run {how.format(kill_step=kill_step)}, resumed from {latest.name}, "
            "ends bit-identical to the uninterrupted run"
        )
        return 0
    say("FAIL: the resumed run differs from the uninterrupted run")
    return 1
