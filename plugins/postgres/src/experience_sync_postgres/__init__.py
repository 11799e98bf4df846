"""A PostgreSQL hub store for experience-sync (``postgresql://`` store URLs), shared by several hubs."""

from experience_sync_postgres.store import DEFAULT_POOL_SIZE, PostgresStore

__all__ = ["DEFAULT_POOL_SIZE", "PostgresStore"]
