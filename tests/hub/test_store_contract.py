"""The ``Store`` contract, run against every first-party store: ``sqlite`` and ``postgresql``.

The tests are :class:`experience_sync.testing.StoreContract`, the suite a
third-party store runs too (``tests/test_third_party_store.py``). Here each
test gets an empty store of each kind (a SQLite file in a temporary
directory; a schema of its own in the session's PostgreSQL database), the
stricter exception each raises for a duplicate log entry, and replay copies
into the other kind of store. What only one store does lives in
``test_store_sqlite.py`` and ``tests/test_postgres.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from experience_sync.hub.engine import open_store
from experience_sync.interfaces import Store
from experience_sync.testing import StoreContract, StoreFactory


def _register_postgres(register_plugin: Callable[..., str]) -> None:
    import experience_sync_postgres.plugin

    register_plugin(experience_sync_postgres.plugin, name="postgres")


class TestStoreContract(StoreContract):
    """The contract on ``sqlite`` and on ``postgresql``."""

    @pytest.fixture(params=["sqlite", "postgresql"])
    def store_url(self, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        """The URL of an empty store of each kind."""
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path}/hub.db"
        url: str = request.getfixturevalue("postgres_url")
        return url

    @pytest.fixture
    def make_store(self, store_url: str, register_plugin: Callable[..., str]) -> StoreFactory:
        """Opens the test's store through the registry (postgres is a plugin)."""
        if store_url.startswith("postgresql"):
            _register_postgres(register_plugin)
        return lambda: open_store(store_url)

    @pytest.fixture
    def integrity_error(self, store: Store) -> type[Exception]:
        """The driver's own integrity error."""
        if store.name == "sqlite":
            return sqlite3.IntegrityError
        import psycopg

        return psycopg.IntegrityError

    @pytest.fixture
    def replay_target(
        self,
        store: Store,
        tmp_path: Path,
        request: pytest.FixtureRequest,
        register_plugin: Callable[..., str],
    ) -> Iterator[Store]:
        """A store of the other kind."""
        if store.name == "sqlite":
            _register_postgres(register_plugin)
            other = open_store(request.getfixturevalue("postgres_url"))
        else:
            other = open_store(f"sqlite:///{tmp_path}/other.db")
        yield other
        other.close()

    def test_single_writer_only_for_sqlite(self, store: Store) -> None:
        """``sqlite`` is the single-writer store; ``postgresql`` keeps write versions."""
        assert (store.agent_version("a") is None) == (store.name == "sqlite")
