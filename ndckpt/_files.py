"""Atomic file replacement: the one implementation behind every file ndckpt writes by path.

:func:`ndckpt.save`, the manager, the ``ndckpt`` command's ``.npy``/``.npz``
outputs and :mod:`ndckpt.mpi` all write a temporary file next to the target
and rename it over the target. This module owns

* the temporary file's name (:func:`temp_name`) and the one recogniser of such
  names (:func:`parse_temp_name`, :func:`temps_of`), so that cleanup only ever
  touches files that this naming scheme produced;
* how the target path is resolved (symlinks, directories, FIFOs and devices:
  :func:`resolve_target`);
* the write itself (:func:`open_output`): a random name opened with
  ``O_CREAT|O_EXCL|O_NOFOLLOW`` (a file or link planted at that name is never
  followed or reused), the replaced file's permission bits, fsync of the file,
  ``os.replace``, fsync of the directory;
* removal of temporary files left by writers that were killed
  (:func:`remove_stale_temps`).

Temporary names
---------------
``.<stem>.ndckpt-tmp-<pid>-<host>-<token>`` in the target's directory, where
``<stem>`` is the target's file name (or, for names longer than 160 bytes
or of the hashed form itself, up to 64 bytes of it followed by ``~`` and 32
hex digits of its SHA-256, so that the temporary name fits in 255 bytes),
``<pid>`` the writer's process id, ``<host>`` 8 hex digits identifying the
host and process-id namespace the pid belongs to (:func:`host_tag`), and
``<token>`` 8 to 32 random hex digits. A pid is judged (alive or not) only
when ``<host>`` is this process's own tag: on a shared file system, pids of
other hosts (or other containers) mean nothing here.

Stdlib only.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import re
import secrets
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from . import _platform
from .errors import CheckptIOError, InvalidArgumentError

PathLike = Union[str, "os.PathLike[str]"]

#: The marker between a temporary file's stem and its writer's identity.
TEMP_MARK = ".ndckpt-tmp-"
_TEMP_RE = re.compile(
    r"\.(?P<stem>.+)\.ndckpt-tmp-(?P<pid>[1-9][0-9]{0,9})-(?P<host>[0-9a-f]{8})-(?P<token>[0-9a-f]{8,32})",
    re.DOTALL,
)
_HASHED_RE = re.compile(r".*~[0-9a-f]{32}", re.DOTALL)
#: Target names longer than this (in bytes) get a hashed stem.
_STEM_MAX = 160
_STEM_PREFIX = 64
#: Errors of a directory fsync that mean "not supported here", not "the data may be lost".
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.EBADF, getattr(errno, "ENOTSUP", -1), getattr(errno, "EOPNOTSUPP", -1)}


def _flag(name: str) -> int:
    """``os.<name>`` where the platform has it, else 0 (looked up at each call)."""
    v = getattr(os, name, 0)
    return v if isinstance(v, int) else 0


@dataclass(frozen=True)
class TempName:
    """The parts of a temporary file's name (see :func:`parse_temp_name`)."""

    stem: str
    pid: int
    host: str
    token: str


@functools.lru_cache(maxsize=1)
def host_tag() -> str:
    """8 hex digits naming this host and its process-id namespace (stable for the process's lifetime).

    A hash of the host name and, where ``/proc/self/ns/pid`` exists (Linux), the
    pid namespace: two containers with the same host name but separate pid
    namespaces get different tags, so neither judges the other's pids.
    """
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except (OSError, AttributeError, NotImplementedError):
        ns = ""
    return hashlib.sha256(f"{socket.gethostname()}\0{ns}".encode("utf-8", "surrogateescape")).hexdigest()[:8]


def temp_stem(name: str) -> str:
    """The stem that temporary files of the target file name ``name`` carry (``name`` itself when short)."""
    raw = name.encode("utf-8", "surrogatepass")  # never fails; at least the file system's byte count
    if len(raw) <= _STEM_MAX and _HASHED_RE.fullmatch(name) is None:
        return name
    prefix = name[:_STEM_PREFIX]
    while len(prefix.encode("utf-8", "surrogatepass")) > _STEM_PREFIX:
        prefix = prefix[:-1]
    return f"{prefix}~{hashlib.sha256(raw).hexdigest()[:32]}"


def temp_name(name: str, *, pid: int | None = None, host: str | None = None, token: str | None = None) -> str:
    """The name of a new temporary file for the target file name ``name`` (no directory part).

    ``pid``, ``host`` and ``token`` default to this process, :func:`host_tag`
    and 16 fresh random hex digits; :mod:`ndckpt.mpi` passes rank 0's so that
    every rank names the same file.
    """
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise InvalidArgumentError(f"not a file name: {name!r}")
    pid = os.getpid() if pid is None else pid
    host = host_tag() if host is None else host
    token = secrets.token_hex(8) if token is None else token
    out = f".{temp_stem(name)}{TEMP_MARK}{pid}-{host}-{token}"
    if parse_temp_name(out) != TempName(temp_stem(name), pid, host, token):
        raise InvalidArgumentError(f"bad temporary name parts: pid {pid!r}, host {host!r}, token {token!r}")
    return out


def parse_temp_name(name: str) -> TempName | None:
    """The parts of ``name`` if it is exactly of the temporary-file form, else None."""
    m = _TEMP_RE.fullmatch(name)
    if m is None:
        return None
    return TempName(m["stem"], int(m["pid"]), m["host"], m["token"])


def is_temp_of(name: str, target_name: str) -> TempName | None:
    """``parse_temp_name(name)`` if ``name`` is a temporary file of the target file name ``target_name``."""
    t = parse_temp_name(name)
    return t if t is not None and t.stem == temp_stem(target_name) else None


def pid_alive(pid: int) -> bool:
    """False only when no process ``pid`` exists on this host; True when it does or cannot be told."""
    if not _platform.can_probe_pids():  # os.kill(pid, 0) would terminate the process (Windows)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except (OSError, OverflowError):
        return True  # cannot tell: keep the file
    return True


def remove_stale_temps(directory: Path, owns: Callable[[str], bool]) -> list[Path]:
    """Delete temporary files in ``directory`` whose writer is gone; return their paths.

    A file is removed only if all of these hold: its name is exactly of the
    temporary form, ``owns(stem)`` accepts its stem, it carries this host's
    :func:`host_tag`, it is a regular file (not a symlink, directory or
    anything else; judged without following links), and no process with its
    pid exists (this process's own files are never removed). Files that vanish
    meanwhile or cannot be removed are skipped. Raises OSError if
    ``directory`` cannot be listed.
    """
    me, here = os.getpid(), host_tag()
    removed: list[Path] = []
    with os.scandir(directory) as it:
        entries = list(it)
    for entry in entries:
        t = parse_temp_name(entry.name)
        if t is None or t.host != here or t.pid == me or not owns(t.stem):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
        except OSError:
            continue
        if pid_alive(t.pid):
            continue
        p = directory / entry.name
        with contextlib.suppress(OSError):
            os.unlink(p)
            removed.append(p)
    return removed


def temps_of(target_name: str) -> Callable[[str], bool]:
    """An ``owns`` predicate for :func:`remove_stale_temps`: the stem of ``target_name``."""
    stem = temp_stem(target_name)
    return lambda s: s == stem


def resolve_target(path: PathLike) -> tuple[Path, os.stat_result | None]:
    """The file that writing ``path`` replaces, and its status (None if it does not exist).

    A symlink is written through: the result is the path it finally resolves
    to (for a dangling link, the missing file it names), so the link itself
    stays. Raises InvalidArgumentError if that is a directory, and
    CheckptIOError if it cannot be examined (a symlink loop, permissions).
    """
    p = Path(os.fspath(path))
    try:
        lst = os.lstat(p)
    except FileNotFoundError:
        return p, None
    except OSError as e:
        raise CheckptIOError(e.errno, f"cannot stat target {str(p)!r}: {e.strerror}") from e
    if stat.S_ISLNK(lst.st_mode):
        real = Path(os.path.realpath(p))
        try:
            lst = os.lstat(real)
        except FileNotFoundError:
            return real, None
        except OSError as e:
            raise CheckptIOError(e.errno, f"cannot stat target {str(p)!r} (-> {str(real)!r}): {e.strerror}") from e
        if stat.S_ISLNK(lst.st_mode):  # realpath stops at a loop
            raise CheckptIOError(errno.ELOOP, f"target {str(p)!r}: too many levels of symbolic links")
        p = real
    if stat.S_ISDIR(lst.st_mode):
        via = "" if os.fspath(path) == str(p) else f" (a symlink to {str(p)!r})"
        raise InvalidArgumentError(f"target {os.fspath(path)!r}{via} is a directory")
    return p, lst


def fsync_dir(directory: Path) -> None:
    """fsync ``directory`` (so a rename in it is durable); skipped where directories cannot be fsynced.

    Raises CheckptIOError when the fsync itself reports an I/O error.
    """
    try:
        dfd = os.open(directory, os.O_RDONLY | _flag("O_DIRECTORY") | _flag("O_CLOEXEC"))
    except OSError:
        return  # e.g. Windows: a directory cannot be opened
    try:
        os.fsync(dfd)
    except OSError as e:
        if e.errno in _DIR_FSYNC_UNSUPPORTED:
            return
        raise CheckptIOError(e.errno, f"fsync of directory {str(directory)!r} failed: {e.strerror}") from e
    finally:
        os.close(dfd)


def _keep_mode(fd: int, tmp: Path, mode: int) -> None:
    """Give the temporary file exactly the replaced file's permission bits.

    It was created with ``mode & ~umask``, never wider than ``mode``: where the
    file system refuses the change, the file is left narrower, never wider.
    """
    with contextlib.suppress(OSError):
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        else:  # Windows before Python 3.13
            os.chmod(tmp, mode)


def keep_mode_of(target: Path, tmp: Path) -> None:
    """Give ``tmp`` the permission bits of ``target`` if that exists (for writers that create
    their temporary file by other means than :func:`open_output`, such as MPI-IO). Never
    raises: a mode that cannot be read or set leaves ``tmp`` as created."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode) & 0o777
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.chmod(tmp, mode)


@contextlib.contextmanager
def open_output(
    path: PathLike, *, durable: bool = True, before_sync: Callable[[], None] | None = None
) -> Iterator[int]:
    """Yield a file descriptor open for writing whose content replaces ``path`` when the block succeeds.

    For a regular file or a missing one (after :func:`resolve_target`: a
    symlink is written through, a directory is refused with
    InvalidArgumentError before anything is created): first the stale
    temporary files of that target are removed (:func:`remove_stale_temps`),
    then a new temporary file is created in the target's directory with a
    random name, ``O_CREAT|O_EXCL|O_NOFOLLOW``, mode ``0o666 & ~umask`` (or,
    when a file is replaced, that file's permission bits; owner, group, other
    hard links and extended attributes are not carried over). When the block
    returns, the file is fsynced (``durable``), closed and renamed over the
    target with ``os.replace``, and the directory is fsynced (``durable``).
    If anything fails, including the block, the temporary file is removed,
    the target is untouched and the error propagates (OS failures as
    CheckptIOError naming the step). The one exception is the last step: if
    only the directory fsync fails, the new file is already in place (its
    durability is unknown) and CheckptIOError says so. ``before_sync``, if
    given, is called once when the block has returned and the fsyncs are
    about to start (only with ``durable``, only for a temporary file); an
    exception from it aborts like one from the block.

    For a FIFO, character device or socket (``/dev/stdout``, a named pipe):
    it is opened for writing and written in place, with no temporary file,
    rename or fsync. The descriptor is closed on exit either way; the caller
    must not close it.
    """
    final, st = resolve_target(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        try:
            fd = os.open(final, _platform.open_flags(os.O_WRONLY))
        except OSError as e:
            raise CheckptIOError(e.errno, f"cannot open {str(final)!r}: {e.strerror}") from e
        try:
            yield fd
        finally:
            os.close(fd)
        return
    directory, name = final.parent, final.name
    with contextlib.suppress(OSError):
        remove_stale_temps(directory, temps_of(name))
    mode = 0o666 if st is None else stat.S_IMODE(st.st_mode) & 0o777
    tmp = directory / temp_name(name)
    try:
        # O_BINARY (in open_flags): no newline translation on Windows.
        fd = os.open(tmp, _platform.open_flags(os.O_WRONLY | os.O_CREAT | os.O_EXCL | _flag("O_NOFOLLOW")), mode)
    except OSError as e:
        raise CheckptIOError(e.errno, f"cannot create a temporary file in {str(directory)!r}: {e.strerror}") from e
    ok = False
    try:
        if st is not None:
            _keep_mode(fd, tmp, mode)
        yield fd
        if durable:
            if before_sync is not None:
                before_sync()
            try:
                os.fsync(fd)
            except OSError as e:
                raise CheckptIOError(e.errno, f"fsync of {str(tmp)!r} failed: {e.strerror}") from e
        os.close(fd)
        fd = -1
        try:
            os.replace(tmp, final)
        except OSError as e:
            raise CheckptIOError(e.errno, f"rename to {str(final)!r} failed: {e.strerror}") from e
        ok = True
        if durable:
            fsync_dir(directory)
    finally:
        if fd >= 0:
            os.close(fd)
        if not ok:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
