"""Shared fixtures. Entry-point auto-loading is off so that plugins installed in
the developer's environment cannot change test results; tests that install a
plugin on purpose turn it back on with ``enable_plugin_autoload``.

PostgreSQL tests run against a real server: ``XS_TEST_POSTGRES``
(default ``postgresql://postgres@127.0.0.1:5432/test``). The session creates
a database of its own there and drops it at the end; they skip only when no
server answers."""

from __future__ import annotations

import os
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

os.environ["EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD"] = "1"

from experience_sync.plugins import reset_plugin_manager

# The register_plugin fixture, and assertion rewriting for the store contract
# suite, the way a plugin's own test suite enables them.
pytest_plugins = ["experience_sync.testing"]


@pytest.fixture(autouse=True)
def _fresh_plugin_manager() -> Iterator[None]:
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture
def enable_plugin_autoload(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Turn entry-point loading back on for this test, limited to the given plugins.

    ``enable_plugin_autoload("experience-sync-example-plugin")`` loads only that
    installed plugin (``EXPERIENCE_SYNC_LOAD_PLUGINS``), so other plugins in
    the environment still cannot change the result.
    """

    def _enable(*names: str) -> None:
        monkeypatch.delenv("EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD", raising=False)
        monkeypatch.setenv("EXPERIENCE_SYNC_LOAD_PLUGINS", ",".join(names))
        reset_plugin_manager()

    return _enable


@pytest.fixture
def fake_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., str]]:
    """Create a throwaway installed distribution with one ``experience_sync`` entry point.

    ``fake_distribution(dist, entry_point, source)`` writes a module with
    ``source`` and a ``.dist-info`` declaring ``entry_point = <module>`` on a
    folder prepended to ``sys.path``, which is how ``importlib.metadata``
    finds installed plugins. Returns the module name.
    """
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def _make(dist: str, entry_point: str, source: str, version: str = "1.0") -> str:
        module = f"xs_fake_{uuid.uuid4().hex[:10]}"
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
        )
        (info / "entry_points.txt").write_text(f"[experience_sync]\n{entry_point} = {module}\n")
        modules.append(module)
        return module

    yield _make
    for module in modules:
        sys.modules.pop(module, None)


class _StandIns:
    """Stand-in protocol, transport and similarity names, so a test can load a
    complete configuration without depending on which real ones are installed."""

    PROTOCOL = "test-protocol"
    TRANSPORT = "test-transport"
    SIMILARITY = "test-similarity"

    @staticmethod
    def experience_sync_register_protocols(register: Callable[..., None]) -> None:
        register(_StandIns.PROTOCOL, lambda config=None, context=None: None)

    @staticmethod
    def experience_sync_register_transports(register: Callable[..., None]) -> None:
        register(_StandIns.TRANSPORT, lambda config=None, agent_id=None: None)

    @staticmethod
    def experience_sync_register_similarity_methods(register: Callable[..., None]) -> None:
        register(_StandIns.SIMILARITY, lambda config=None: None)


@pytest.fixture
def stand_ins(register_plugin: Callable[..., str]) -> Callable[[], dict[str, Any]]:
    """``stand_ins()`` registers stand-in names with the current plugin manager
    and returns config overrides that select them."""

    def _use() -> dict[str, Any]:
        register_plugin(_StandIns(), name="stand-ins")
        return {
            "default_protocol": _StandIns.PROTOCOL,
            "transport": {"type": _StandIns.TRANSPORT},
            "merge_strategy": {"similarity_method": _StandIns.SIMILARITY},
        }

    return _use


POSTGRES_SERVER = os.environ.get(
    "XS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database for this test session (dropped at its end).

    Skips, with the reason, when no server answers at ``POSTGRES_SERVER``.
    """
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES_SERVER, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server at {POSTGRES_SERVER} ({exc})".replace("\n", " "))
    name = f"xs_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(POSTGRES_SERVER)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(POSTGRES_SERVER, autocommit=True) as admin:
            # FORCE: a hub process a failed test left behind must not keep it.
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_database: str) -> Iterator[str]:
    """A store URL whose tables land in a new schema of the session's database.

    The schema is dropped after the test.
    """
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in postgres_database else "?"
    yield f"{postgres_database}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
