"""The ingest run lock: at most one run (a CLI ingest, a scheduled run, an edition removal) per collection.

:class:`IngestLock` is a threading lock inside a process and an ``flock`` on a file across processes. A
file lock covers the processes of one host (or of containers sharing the lock folder as a volume), not
several machines: see the README.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from services import locking

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterator

    from services.settings import Settings


# --- the run lock --------------------------------------------------------------------------------------


class IngestLockError(RuntimeError):
    """The run lock cannot be used (e.g. its folder is not writable); the message names the setting."""


class IngestBusyError(IngestLockError):
    """Another ingest run on the same collection holds the lock; the message names the holder."""


_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


class IngestLock:
    """At most one ingest run per (store, alias): a threading lock in-process, an flock across processes.

    The lock file lives in ``TAFSIR_INGEST_LOCK_DIR`` (default: the embedded store's own folder, or the
    temporary folder for a server) and records who holds it (pid, host, command, since), so a refused run
    can say which process to wait for.
    """

    def __init__(self, store_location: str, alias: str, lock_dir: Path | None = None) -> None:
        self.store_location = store_location
        self.alias = alias
        key = f"{store_location}#{alias}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        self.path = Path(lock_dir or tempfile.gettempdir()) / f"tafsir-ingest-{digest}.lock"
        with _THREAD_LOCKS_GUARD:
            self._thread_lock = _THREAD_LOCKS.setdefault(key, threading.Lock())
        self._fd: int | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> IngestLock:
        if settings.qdrant_url:
            location = settings.qdrant_url.rstrip("/")
            default_dir = None
        else:
            location = str(Path(settings.qdrant_path).expanduser().resolve())
            default_dir = Path(location)  # the lock travels with the store folder
        return cls(location, settings.collection, settings.ingest_lock_dir or default_dir)

    @property
    def _what(self) -> str:
        return f"alias {self.alias!r} in {self.store_location}"

    def acquire(self, wait: bool = False) -> None:
        """Take the lock, or raise :class:`IngestBusyError` (at once unless ``wait``)."""
        if not self._thread_lock.acquire(blocking=wait):
            raise IngestBusyError(
                f"An ingest run on {self._what} is already in progress in this process; "
                "this run was skipped (the next one follows the schedule)."
            )
        try:
            self._fd = self._lock_file(wait)
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.ftruncate(fd, 0)  # no stale holder description once released
            locking.release(fd)
        self._thread_lock.release()

    @contextmanager
    def hold(self, wait: bool = False) -> Iterator[None]:
        self.acquire(wait)
        try:
            yield
        finally:
            self.release()

    def _lock_file(self, wait: bool) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return locking.acquire(self.path, wait=wait, mode=0o666)
        except locking.LockHeld as held:
            raise IngestBusyError(
                f"An ingest run on {self._what} is already in progress in {held.holder} (lock file {self.path}). "
                "Wait for it to finish; two runs on one collection never overlap."
            ) from None
        except OSError as exc:
            raise IngestLockError(
                f"Cannot open the ingest lock file {self.path}: {exc}. Set TAFSIR_INGEST_LOCK_DIR to a writable folder."
            ) from exc
