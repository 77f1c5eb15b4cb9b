"""Where request bodies too large for memory (imports) are spooled: one directory per process.

Several API processes may share one temporary folder. Each keeps its spool files in a directory
of its own holding a lock file that it keeps locked (flock) while it lives; the kernel drops
the lock when the process ends, however it ends. At start, `sweep` removes the directories
whose lock it can take: their process is gone (a killed import leaves its file behind).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import IO, Any

PREFIX = "borderwatch-spool-"
# a directory is made under a name the sweep ignores, and renamed once its lock is held
NEW_PREFIX = ".borderwatch-spool-new-"
LOCK = "lock"
# a directory still under its first name after this long belongs to a process killed while
# making it
NEW_GRACE_S = 60.0


def base_dir() -> Path:
    """The temporary folder (TMPDIR, else the system's)."""
    return Path(tempfile.gettempdir())


def _try_lock(path: Path) -> IO[bytes] | None:
    """The lock file opened and locked, or None when another process holds it."""
    try:
        handle = path.open("ab")
    except OSError:
        return None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def sweep(base: Path | None = None) -> list[Path]:
    """Remove the spool directories of processes that have ended; the ones removed."""
    base = base or base_dir()
    removed: list[Path] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        new = entry.name.startswith(NEW_PREFIX)
        if not (new or entry.name.startswith(PREFIX)) or entry.is_symlink() or not entry.is_dir():
            continue
        with contextlib.suppress(OSError):
            if new and now - entry.stat().st_mtime < NEW_GRACE_S:
                continue  # being made right now
        handle = _try_lock(entry / LOCK)
        if handle is None:
            continue  # its process is alive
        try:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        finally:
            handle.close()
    return removed


class SpoolDir:
    """This process's spool directory, made (and locked) on first use."""

    def __init__(self, base: Path | None = None) -> None:
        self.base = base
        self.path: Path | None = None
        self._made: weakref.finalize[Any, Any] | None = None
        self._mutex = threading.Lock()  # first uploads may arrive together (worker threads)

    def directory(self) -> Path:
        """The directory, made and locked if it does not exist yet."""
        with self._mutex:
            if self.path is not None and self.path.is_dir():
                return self.path
            base = self.base or base_dir()
            fresh = Path(tempfile.mkdtemp(prefix=NEW_PREFIX, dir=base))
            lock = _try_lock(fresh / LOCK)
            assert lock is not None  # nobody else knows this directory yet
            final = base / f"{PREFIX}{os.getpid()}-{fresh.name.removeprefix(NEW_PREFIX)}"
            fresh.rename(final)  # the lock is on the file itself: it survives the rename
            self.close()
            self.path = final
            # removed at close(), or when the process exits normally without one (an app that
            # never ran its lifespan, e.g. in tests); after a crash, by the next sweep
            self._made = weakref.finalize(self, _remove, final, lock)
            return final

    def new_file(self) -> IO[bytes]:
        """A new file in the directory, open for writing (the caller removes it)."""
        return tempfile.NamedTemporaryFile(dir=self.directory(), prefix="upload-", delete=False)

    def close(self) -> None:
        """Remove the directory and release its lock (at shutdown)."""
        if self._made is not None:
            self._made()
            self._made = None
        self.path = None


def _remove(path: Path, lock: IO[bytes]) -> None:
    shutil.rmtree(path, ignore_errors=True)
    lock.close()
