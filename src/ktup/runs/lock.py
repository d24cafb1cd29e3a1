"""One writer per run directory: an exclusive advisory lock held for the whole of a training.

Two ``ktup train --resume RUN`` on one directory would interleave ``metrics.jsonl`` and leave
``final.json`` and ``run.json`` contradicting each other. The writer takes ``RUN/.ktup.lock``
with ``flock`` (non-blocking) and writes its pid there; a second writer stops at once with a
one-line :class:`RunLocked` naming the holder's pid. The kernel drops the lock when the holder's
file descriptor closes, which includes any exit, crash or SIGKILL, so a dead holder never leaves
a stale lock behind (the file stays; only the lock on it counts). Where ``fcntl`` is missing
(Windows) the lock is a no-op.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ktup.errors import RunError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".ktup.lock"


class RunLocked(RunError):
    """Another live process is writing this run directory."""


class RunLock:
    """An exclusive lock on a run directory; :meth:`release` (or process exit) frees it."""

    def __init__(self, run_dir: Path, fd: Optional[int]):
        self.run_dir = Path(run_dir)
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:  # a Trainer dropped without fit(): free the lock with it
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def holder_pid(run_dir: Path) -> Optional[int]:
    """The pid the current (or last) holder wrote, if readable."""
    try:
        text = (Path(run_dir) / LOCK_NAME).read_text(encoding="ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def lock_run_dir(run_dir: Path) -> RunLock:
    """Take the run directory's lock or raise :class:`RunLocked` naming the holder's pid."""
    run_dir = Path(run_dir)
    if fcntl is None:  # pragma: no cover - Windows
        return RunLock(run_dir, None)
    path = run_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RunError(f"{path}: cannot create the run's lock file ({e.strerror or e})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        pid = holder_pid(run_dir)
        who = f"pid {pid}" if pid is not None else "a process whose pid is not yet written"
        raise RunLocked(f"{run_dir}: another ktup process ({who}) is writing this run; "
                        "wait for it to finish or stop it, then retry") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return RunLock(run_dir, fd)
