"""One writer per run folder, and logs that never keep half a line.

A run folder is created with a plain mkdir, which is atomic: of two starts with the same
name, one gets FileExistsError. A training process then holds an OS lock (`fcntl.flock`)
on the folder's `.lock` file for its whole life; the kernel drops it when the process
ends, however it ends (kill -9 included), so there is never a stale lock to clean up. The
file itself stays; only a live holder counts. flock is POSIX; on Windows this would be
msvcrt.locking.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gancli import checkpoint
from gancli.errors import GancliError, WriteError

LOCK = ".lock"


@dataclass
class Run:
    """A run folder and the files every command finds in it."""

    dir: Path
    saved: int | None = None  # the step of the checkpoint on disk (None: none written yet)

    @property
    def checkpoint(self) -> Path:
        return self.dir / checkpoint.FILENAME

    @property
    def metrics(self) -> Path:
        return self.dir / "metrics.jsonl"

    @property
    def losses(self) -> Path:
        return self.dir / "losses.csv"

    def sample_path(self, epoch: int) -> Path:
        return self.dir / "samples" / f"epoch_{epoch:03d}.png"

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """A write of the run that fails (disk full, no permission, a file-size limit) ends
        in one line: what could not be written, the OS's reason, and what is intact."""
        try:
            yield
        except (OSError, WriteError) as exc:
            failed = exc if isinstance(exc, WriteError) else WriteError.of(exc, self.dir)
            kept = (f"the checkpoint of step {self.saved} is intact ({self.checkpoint})"
                    if self.saved is not None else
                    "no checkpoint had been written yet, so nothing of the run is kept")
            raise GancliError(f"{failed}; {kept}") from None


class RunLock:
    """The lock a training process holds on its run folder; released on close."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def lock(run_dir: Path) -> RunLock:
    """Lock `run_dir` for this process, or a one-line error saying who holds it."""
    path = run_dir / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise GancliError(f"cannot lock run {run_dir}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise GancliError(busy(run_dir, _holder(path))) from None
    os.ftruncate(fd, 0)  # who holds it, for the message another process prints
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    return RunLock(fd)


def held_by(run_dir: Path) -> str | None:
    """Who is training in `run_dir` now ('pid 123 on host'), or None."""
    path = run_dir / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(path)
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return None


def busy(run_dir: Path, holder: str | None) -> str:
    return (f"run {run_dir} is being trained by another process ({holder or 'unknown'}); "
            "wait for it to finish or stop it first")


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def create(run_dir: Path) -> None:
    """Make a new run folder atomically: FileExistsError if it is already there."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir()


def append(path: Path, text: str) -> None:
    """Append whole lines to a log in one write. If the write fails (disk full, file-size
    limit) the file is cut back to where it was, so no half line stays; a line cut by
    kill -9 has no newline and `complete_lines` ignores it."""
    data = memoryview(text.encode())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        start = os.fstat(fd).st_size
        try:
            while data:
                data = data[os.write(fd, data):]
        except OSError:
            os.ftruncate(fd, start)  # shrinking needs no space
            raise
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        os.close(fd)


def complete_lines(path: Path) -> list[str]:
    """A log's lines that end in a newline (a last one without was cut mid-write)."""
    if not path.exists():
        return []
    *whole, _partial = path.read_text().split("\n")
    return [line for line in whole if line]
