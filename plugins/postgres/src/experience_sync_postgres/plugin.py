"""The entry-point plugin: registers the PostgreSQL store."""

from __future__ import annotations

from experience_sync.api import Register, hookimpl
from experience_sync_postgres.store import PostgresStore


@hookimpl
def experience_sync_register_stores(register: Register) -> None:
    """Register ``postgresql`` and its alias ``postgres`` (libpq accepts both URL schemes)."""
    register("postgresql", PostgresStore)
    register("postgres", PostgresStore)
