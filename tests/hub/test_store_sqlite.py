"""What only the built-in SQLite store does: its URLs, WAL mode, old files, the
in-memory set of seen event ids. The ``Store`` contract it shares with every
store is in ``test_store_contract.py``."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from experience_sync.hub.engine import open_store
from experience_sync.plugins import get_plugin_manager
from experience_sync.stores.sqlite import SQLiteStore, path_from_url
from experience_sync.stores.state import ChangeSet, LogEntry

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def entry(i: int, request: int = 1, unit: str | None = None) -> LogEntry:
    return LogEntry(f"e{i}", "event", f'{{"x": {i}}}', unit, "i1", request)


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    s = SQLiteStore(f"sqlite:///{tmp_path}/hub.db")
    yield s
    s.close()


def test_registered_by_scheme(tmp_path: Path) -> None:
    assert "sqlite" in get_plugin_manager().registry.names("stores")
    s = open_store(f"sqlite:///{tmp_path}/a/b/hub.db")
    assert isinstance(s, SQLiteStore)
    assert (tmp_path / "a" / "b" / "hub.db").exists()
    s.close()


def test_url_convention() -> None:
    assert path_from_url("sqlite:///hub.db") == "hub.db"
    assert path_from_url("sqlite:////var/lib/hub.db") == "/var/lib/hub.db"
    assert path_from_url("sqlite:///:memory:") == ":memory:"
    with pytest.raises(ValueError):
        path_from_url("postgres://x")
    with pytest.raises(ValueError):
        path_from_url("sqlite:///")


def test_wal_mode(store: SQLiteStore, tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "hub.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_store_created_before_the_normalized_column_opens(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "old.db")
    db.execute(
        "CREATE TABLE memories (agent_id TEXT NOT NULL, key TEXT NOT NULL, version INTEGER "
        "NOT NULL, content_hash TEXT, embedding BLOB, body TEXT NOT NULL, "
        "PRIMARY KEY (agent_id, key))"
    )
    db.execute("INSERT INTO memories VALUES ('a', 'm1', 1, 'h', NULL, '{}')")
    db.commit()
    db.close()
    s = SQLiteStore(f"sqlite:///{tmp_path}/old.db")
    (row,) = s.load_agent("a").rows["memories"]
    assert row.key == "m1" and row.normalized is None
    s.close()


def test_seen_ids_survive_folding_and_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hub.db"
    s = SQLiteStore(url)
    # Enough ids that the in-memory set is folded into its sorted arrays
    # several times, in commits of one request each.
    for r in range(12):
        s.commit("a", ChangeSet(cursor=r + 1, log=[entry(r * 1000 + i, r + 1) for i in range(1000)]))
    probe = [f"e{i}" for i in range(0, 24000, 7)]
    expected = {p for p in probe if int(p[1:]) < 12000}
    assert s.seen_events("a", probe) == expected
    assert s.seen_events("b", probe) == set()  # per agent
    s.close()
    reopened = SQLiteStore(url)  # read back from the log
    assert reopened.seen_events("a", probe) == expected
    with pytest.raises(sqlite3.IntegrityError, match="e5"):
        reopened.commit("a", ChangeSet(cursor=13, log=[entry(5)]))
    with pytest.raises(sqlite3.IntegrityError, match="e99999"):  # twice in one commit
        reopened.commit("a", ChangeSet(cursor=13, log=[entry(99999), entry(99999)]))
    assert reopened.seen_events("a", ["e99999"]) == set()
    reopened.close()


def test_seen_ids_check_both_halves_of_the_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    from experience_sync.stores import sqlite as store_sqlite

    # Two ids whose digests share their first half: only the second tells them apart.
    fake = {"x": b"\x01" * 8 + b"\x02" * 8, "y": b"\x01" * 8 + b"\x03" * 8, "z": b"\x00" * 16}
    monkeypatch.setattr(store_sqlite, "_digest", fake.__getitem__)
    seen = store_sqlite.SeenIds(["x", "z"])
    assert len(seen) == 2
    assert seen.seen(["x", "y", "z"]) == {"x", "z"}
    seen.update(["y"])
    assert seen.seen(["y"]) == {"y"}


def test_commits_leave_checkpoints_to_the_background_thread(tmp_path: Path) -> None:
    """The store's own thread checkpoints the log shortly after commits land
    (50 small commits stay far below the committing connection's automatic
    checkpoint, SQLite's 1,000 pages by default and raised to a backstop)."""
    path = tmp_path / "hub.db"
    s = SQLiteStore(f"sqlite:///{path}")
    try:
        checkpointer = s.checkpointer
        assert checkpointer is not None
        before = checkpointer.checkpoints
        for i in range(50):
            s.commit("a", ChangeSet(log=[entry(i, request=i + 1)], cursor=i + 1))
        deadline = time.monotonic() + 10
        while checkpointer.checkpoints == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert checkpointer.checkpoints > before
        # Commits landing while it ran are copied by the next one.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            last = checkpointer.last
            if last is not None and last[1] > 0 and last[1] == last[2]:
                break
            time.sleep(0.05)
        assert last is not None and last[0] == 0 and last[1] > 0 and last[1] == last[2]
        assert s.load_agent("a").cursor == 50
    finally:
        s.close()
    assert not s.checkpointer
    # The store closed last: its connection checkpointed and removed the log.
    assert not (tmp_path / "hub.db-wal").exists()
    reopened = SQLiteStore(f"sqlite:///{path}")
    try:
        assert reopened.load_agent("a").cursor == 50
    finally:
        reopened.close()


def test_an_idle_store_is_not_checkpointed_again(tmp_path: Path) -> None:
    s = SQLiteStore(f"sqlite:///{tmp_path}/hub.db")
    try:
        checkpointer = s.checkpointer
        assert checkpointer is not None
        s.commit("a", ChangeSet(log=[entry(1)], cursor=1))
        deadline = time.monotonic() + 10
        while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        done = checkpointer.checkpoints
        time.sleep(5 * checkpointer.interval)
        assert checkpointer.checkpoints == done
    finally:
        s.close()


def test_an_in_memory_store_has_no_checkpointer() -> None:
    s = SQLiteStore("sqlite:///:memory:")
    try:
        assert s.checkpointer is None
        s.commit("a", ChangeSet(log=[entry(1)], cursor=1))
        assert s.load_agent("a").cursor == 1
    finally:
        s.close()
