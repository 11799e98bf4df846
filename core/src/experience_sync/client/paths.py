"""Where an instance keeps its outbox, and the lock that keeps it to one process."""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path
from typing import IO

from experience_sync.errors import ExperienceSyncError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def default_data_dir() -> Path:
    """``$EXPERIENCE_SYNC_DATA_DIR``, else the platform's per-user data directory."""
    env = os.environ.get("EXPERIENCE_SYNC_DATA_DIR")
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "experience-sync"


def instance_dir(instance_id: str, base: str | os.PathLike[str] | None = None) -> Path:
    """The directory of one instance's outbox: ``<base>/<instance_id>``.

    Characters unsafe in file names are replaced, with a short hash of the
    original id appended so that two ids never share a directory.
    """
    safe = _UNSAFE.sub("_", instance_id)
    if safe != instance_id or safe in {".", ".."}:
        safe = f"{safe}-{hashlib.sha256(instance_id.encode()).hexdigest()[:8]}"
    root = Path(base).expanduser() if base is not None else default_data_dir()
    path = root / safe
    path.mkdir(parents=True, exist_ok=True)
    return path


class OutboxLockedError(ExperienceSyncError):
    """Another process (or manager) already runs this instance's outbox."""


class InstanceLock:
    """An exclusive advisory lock on the outbox directory, released on exit or crash."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] | None = open(path, "a+b")  # noqa: SIM115 - held until release
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory lock
            return
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.close()
            self._fh = None
            raise OutboxLockedError(
                f"{path.parent} is in use by another process or manager; "
                "one instance id runs in one place at a time"
            ) from None

    def release(self) -> None:
        """Release the lock."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
