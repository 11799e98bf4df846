"""Exceptions raised by experience-sync.

The hierarchy, in the style of httpx::

    ExperienceSyncError
    ├── ConfigError                 invalid configuration (names the field)
    ├── PluginError                 a plugin failed to load, or two claim one name
    ├── OutboxFullError             the outbox is at capacity and the policy refused
    ├── OutboxWriteError            the outbox cannot make an event durable (I/O)
    │   └── DiskFullError           no space: full disk, quota, file size limit
    ├── NotInitializedError         an instance id that was never initialised
    ├── StaleStateError             another hub process wrote the agent first (shared stores)
    └── TransportError              delivery to the hub failed
        ├── RetryableError          worth retrying: connection errors, 408, 429, 5xx
        └── RejectedError           the hub refused the request (other 4xx): not retried
"""

from __future__ import annotations


class ExperienceSyncError(Exception):
    """Base of every experience-sync error."""


class ConfigError(ExperienceSyncError, ValueError):
    """Configuration is invalid. ``errors`` lists ``(field path, reason)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]], source: str | None = None) -> None:
        self.errors = errors
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  {path}: {reason}" for path, reason in errors)
        super().__init__(f"invalid configuration{where}:\n{lines}")


class PluginError(ExperienceSyncError):
    """A plugin failed to load, or two plugins registered the same name."""


class OutboxFullError(ExperienceSyncError):
    """The outbox is at capacity and the ``when_full`` policy refused the event."""


class OutboxWriteError(ExperienceSyncError):
    """The outbox could not make an event durable; the event was not recorded.

    Raised by ``record_*`` (and ``initialize_sync``) when the outbox's
    database or crash journal cannot be written: a full disk, an I/O error, a
    file made read-only. The host process keeps running; the outbox's writer
    keeps retrying and ``status(instance).error`` says why. ``__cause__`` is
    the underlying ``OSError`` or ``sqlite3.Error``. See docs/instances.md,
    "When the disk is full".
    """


class DiskFullError(OutboxWriteError):
    """No space left for the outbox: a full file system, a quota, a file size limit.

    Recording works again, without a restart, once space is freed.
    """


class NotInitializedError(ExperienceSyncError, KeyError):
    """The instance id was never initialised with ``initialize_sync``."""


class StaleStateError(ExperienceSyncError):
    """Another process committed to the agent since this one loaded it.

    Raised by a store that several hub processes write (``postgresql``) when a
    commit's ``expect_version`` is not the agent's version any more; nothing
    was written. The merge engine reloads the agent and merges again.
    """


class TransportError(ExperienceSyncError):
    """Delivery to the hub failed."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class RetryableError(TransportError):
    """A failure worth retrying (connection error, 408, 429, 5xx except 501)."""

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after


class RejectedError(TransportError):
    """The hub refused the request; retrying the same request cannot succeed."""
