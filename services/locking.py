"""Process locks on files that say who holds them: ``flock`` plus the holder's pid, host, command and start.

Shared by the embedded store (one process per store folder) and the ingest run lock (one run per
collection), so both tell a person the same thing: which process holds it, since when.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from datetime import datetime
from pathlib import Path


class LockHeld(Exception):
    """The lock is taken; ``holder`` describes the process holding it."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def acquire(path: Path, wait: bool = False, mode: int = 0o644) -> int:
    """Take an exclusive lock on ``path`` (created if missing) and record this process in it.

    Returns the open descriptor: closing it (or the process ending, even by kill -9) releases the
    lock. Raises ``LockHeld`` when another holder has it and ``wait`` is false; OSError when the file
    cannot be opened.
    """
    fd = _open_locked(path, fcntl.LOCK_EX, wait, mode)
    holder_info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": shlex.join(getattr(sys, "orig_argv", sys.argv)),
        "since": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    record = (json.dumps(holder_info) + "\n").encode()
    os.pwrite(fd, record, 0)  # overwrite, then cut: the file is never empty while held
    os.ftruncate(fd, len(record))
    return fd


def acquire_shared(path: Path, wait: bool = False, mode: int = 0o644) -> int:
    """Take a shared lock on ``path`` (created if missing): held by any number of processes at once, it
    excludes only an exclusive holder (:func:`acquire`). Records nothing: several holders share the file.

    Raises ``LockHeld`` describing the exclusive holder when there is one and ``wait`` is false.
    """
    return _open_locked(path, fcntl.LOCK_SH, wait, mode)


def _open_locked(path: Path, operation: int, wait: bool, mode: int) -> int:
    """``path`` opened (created if missing) and flocked with ``operation``; ``LockHeld`` naming the exclusive
    holder when it is taken and ``wait`` is false."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        fcntl.flock(fd, operation | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        holder = describe_holder(fd)
        os.close(fd)
        raise LockHeld(holder) from None
    return fd


def release(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def describe_holder(fd: int, patience: float = 2.0) -> str:
    """Who holds the lock on ``fd``. The holder writes its record just after taking the lock, so a
    contender that arrives in between reads an empty or half-written file: it rereads for up to
    ``patience`` seconds before settling for "another process"."""
    deadline = time.monotonic() + patience
    while True:
        try:
            holder = json.loads(os.pread(fd, 4096, 0).decode())
            return f"process {holder['pid']} on {holder['host']} (`{holder['command']}`, since {holder['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() >= deadline:
                return "another process"
            time.sleep(0.02)
