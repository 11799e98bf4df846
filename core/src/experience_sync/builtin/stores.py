"""Built-in hub store ``sqlite`` (see :mod:`experience_sync.stores.sqlite`)."""

from __future__ import annotations

from experience_sync.hookspecs import Register, hookimpl
from experience_sync.stores.sqlite import SQLiteStore


@hookimpl
def experience_sync_register_stores(register: Register) -> None:
    """Register ``sqlite``."""
    register("sqlite", SQLiteStore)
