"""The ingest run locks: one run per edition of a collection, and a run that moves or empties the alias alone.

Two kinds of run write a collection:

* an **edition run** (``tafsir ingest`` of one source into the live collection, one-shot or scheduled) holds
  the alias *shared* and its edition *exclusively*: runs of different editions proceed side by side (several
  workers filling one server collection), two runs of one edition never interleave;
* an **alias run** (``--rebuild``, a first build or any run that must build a new collection, ``tafsir
  remove``) holds the alias *exclusively*: nothing else writes behind that alias meanwhile.

Each is a threading lock inside a process and an ``flock`` on a file across processes. A file lock covers the
processes of one host (or of containers sharing the lock folder as a volume), not several machines: see
docs/OPERATIONS.md ("Scheduled re-ingestion") and docs/SCALING.md.
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


class IngestLockError(RuntimeError):
    """The run lock cannot be used (e.g. its folder is not writable); the message names the setting."""


class IngestBusyError(IngestLockError):
    """Another ingest run on the same collection (or edition) holds the lock; the message names the holder."""


_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(key: str) -> threading.Lock:
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(key, threading.Lock())


class IngestLock:
    """The lock of one run: of the whole alias (``edition`` None) or of one edition behind it.

    The lock files live in ``TAFSIR_INGEST_LOCK_DIR`` (default: the embedded store's own folder, or the
    temporary folder for a server). An exclusive holder records who it is (pid, host, command, since), so a
    refused run can say which process to wait for.
    """

    def __init__(self, store_location: str, alias: str, lock_dir: Path | None = None, edition: str | None = None):
        self.store_location = store_location
        self.alias = alias
        self.edition = edition
        self.lock_dir = Path(lock_dir or tempfile.gettempdir())
        alias_key = f"{store_location}#{alias}"
        self.path = self.lock_dir / f"tafsir-ingest-{_digest(alias_key)}.lock"
        self.edition_path: Path | None = None
        if edition is None:
            self._thread_lock = _thread_lock(alias_key)
        else:
            edition_key = f"{alias_key}#{edition}"
            self.edition_path = self.lock_dir / f"tafsir-ingest-{_digest(edition_key)}.lock"
            self._thread_lock = _thread_lock(edition_key)
        self._fds: list[tuple[int, bool]] = []  # (descriptor, held exclusively)

    @classmethod
    def for_settings(cls, settings: Settings, edition: str | None = None) -> IngestLock:
        """The lock of the alias ``settings.collection``, or of ``edition`` behind it."""
        if settings.qdrant_url:
            location = settings.qdrant_url.rstrip("/")
            default_dir = None
        else:
            location = str(Path(settings.qdrant_path).expanduser().resolve())
            default_dir = Path(location)  # the lock travels with the store folder
        return cls(location, settings.collection, settings.ingest_lock_dir or default_dir, edition)

    def widen(self) -> None:
        """For a run of one edition that turns out to build a new collection: hold the whole alias too.

        The edition stays held (a second run of it is still refused, naming this process); the shared hold on the
        alias is let go, then the alias is waited for exclusively, i.e. until the runs of other editions end.
        """
        if self.edition_path is None:
            return
        shared = [fd for fd, exclusive in self._fds if not exclusive]
        self._fds = [(fd, exclusive) for fd, exclusive in self._fds if exclusive]
        for fd in shared:
            locking.release(fd)
        self._fds.append((self._lock_file(self.path, wait=True, shared=False), True))

    @property
    def _what(self) -> str:
        where = f"alias {self.alias!r} in {self.store_location}"
        return where if self.edition is None else f"edition {self.edition!r} of {where}"

    def acquire(self, wait: bool = False) -> None:
        """Take the lock, or raise :class:`IngestBusyError` (at once unless ``wait``)."""
        if not self._thread_lock.acquire(blocking=wait):
            raise IngestBusyError(
                f"An ingest run on {self._what} is already in progress in this process; "
                "this run was skipped (the next one follows the schedule)."
            )
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
            if self.edition_path is None:
                self._fds.append((self._lock_file(self.path, wait, shared=False), True))
            else:
                # The alias first, shared: a rebuild or a removal holding it exclusively turns this run away.
                self._fds.append((self._lock_file(self.path, wait, shared=True), False))
                self._fds.append((self._lock_file(self.edition_path, wait, shared=False), True))
        except BaseException:
            self._release_files()
            self._thread_lock.release()
            raise

    def release(self) -> None:
        self._release_files()
        self._thread_lock.release()

    @contextmanager
    def hold(self, wait: bool = False) -> Iterator[None]:
        self.acquire(wait)
        try:
            yield
        finally:
            self.release()

    def _release_files(self) -> None:
        fds, self._fds = self._fds, []
        for fd, exclusive in reversed(fds):
            if exclusive:
                os.ftruncate(fd, 0)  # no stale holder description once released
            locking.release(fd)

    def _lock_file(self, path: Path, wait: bool, shared: bool) -> int:
        try:
            if shared:
                return locking.acquire_shared(path, wait=wait, mode=0o666)
            return locking.acquire(path, wait=wait, mode=0o666)
        except locking.LockHeld as held:
            if path == self.path and not shared and held.holder == "another process":
                # Shared holders record nothing: they are edition runs.
                raise IngestBusyError(
                    f"Ingest runs of one or more editions of alias {self.alias!r} in {self.store_location} are in "
                    f"progress (lock file {path}). Wait for them to finish: a rebuild or a removal needs the "
                    "alias to itself."
                ) from None
            raise IngestBusyError(
                f"An ingest run on {self._what} is already in progress in {held.holder} (lock file {path}). "
                "Wait for it to finish; two runs on one edition never overlap, and a rebuild or a removal "
                "excludes every other run on its alias."
            ) from None
        except OSError as exc:
            raise IngestLockError(
                f"Cannot open the ingest lock file {path}: {exc}. Set TAFSIR_INGEST_LOCK_DIR to a writable folder."
            ) from exc


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]
