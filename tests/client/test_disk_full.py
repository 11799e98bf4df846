"""A full disk under the instance: recording raises DiskFullError, nothing dies,
nothing accepted is lost, and freeing space is enough to go on (no restart).

The instance runs in a child process on a small tmpfs of its own (a private
mount namespace through ``unshare``, so nothing outlives the child); the test
sees its exit code, so a SIGBUS shows as a failure instead of killing pytest.
The outbox-level tests fill the database with ``PRAGMA max_page_count``, which
makes SQLite answer SQLITE_FULL exactly as on a full disk.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from client_helpers import make_config, wait_until

from experience_sync.client.outbox import Outbox
from experience_sync.errors import DiskFullError, OutboxWriteError
from experience_sync.hub.web.server import HubServer, run_in_thread
from experience_sync.stores.sqlite import SQLiteStore
from experience_sync.stores.state import ChangeSet, LogEntry

CHILD = textwrap.dedent(
    """
    import errno, json, os, sys, time
    from experience_sync import ExperienceSyncManager, hookimpl
    from experience_sync.config import ExperienceSyncConfig
    from experience_sync.errors import DiskFullError
    from experience_sync.testing import registered_plugin

    mnt, url, durability, phase = sys.argv[1:5]
    # Shipped on flush only: nothing is deleted from the outbox while the disk is full.
    protocol = "lumped"
    seen = []

    class Observer:
        @hookimpl
        def experience_sync_observe(self, event):
            seen.append(event.type)

    def fill(path):
        with open(path, "wb", buffering=0) as f:
            for size in (65536, 4096, 1):  # down to the last partial block
                while True:
                    try:
                        f.write(b"x" * size)
                    except OSError as exc:
                        assert exc.errno == errno.ENOSPC, exc
                        break

    out = {"accepted": [], "refused": 0, "other": [], "errors": []}
    cfg = ExperienceSyncConfig.model_validate({
        "transport": {"type": "https", "https": {"endpoint": url}},
        "outbox": {"durability": durability},
        "lumped": {"batch_interval": "1h"},
    })
    with registered_plugin(Observer(), name="observer"):
        m = ExperienceSyncManager(cfg, data_dir=os.path.join(mnt, "data"))
        m.initialize_sync("inst-1", protocol, agent_id="agent")
        out["journal"] = os.path.exists(os.path.join(mnt, "data", "inst-1", "outbox.journal-0"))
        if phase == "full_later":
            for i in range(5):
                out["accepted"].append(m.record_memory("inst-1", f"before {i}").event_id)
            out["flushed_before"] = m.flush(timeout=30)
            fill(os.path.join(mnt, "filler"))
        pad = "y" * 1500
        for i in range(2000):
            try:
                e = m.record_memory("inst-1", f"lesson {i} {pad}")
                out["accepted"].append(e.event_id)
            except DiskFullError as exc:
                out["refused"] += 1
                out["errors"].append(str(exc))
                if out["refused"] >= 20:
                    break
            except Exception as exc:
                out["other"].append(repr(exc))
                break
        # In group mode the writer commits behind the caller: its first failed
        # commit may come after the loop above ends. Keep recording, slowly,
        # until a record is refused (bounded).
        deadline = time.monotonic() + 30
        while not out["refused"] and not out["other"] and time.monotonic() < deadline:
            try:
                out["accepted"].append(m.record_memory("inst-1", f"late {pad}").event_id)
            except DiskFullError as exc:
                out["refused"] += 1
                out["errors"].append(str(exc))
            except Exception as exc:
                out["other"].append(repr(exc))
            time.sleep(0.01)
        out["status_error"] = m.status("inst-1").error
        try:  # a new instance on the full disk cannot even create its database
            fresh = ExperienceSyncManager(cfg, data_dir=os.path.join(mnt, "fresh"))
            fresh.initialize_sync("inst-2", protocol, agent_id="agent")
            out["fresh"] = "started"
        except Exception as exc:
            out["fresh"] = type(exc).__name__
        os.remove(os.path.join(mnt, "filler"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the writer retries with back-off
            try:
                out["accepted"].append(m.record_memory("inst-1", "after the cleanup").event_id)
                break
            except DiskFullError:
                time.sleep(0.05)
        out["flushed"] = m.flush(timeout=60)
        out["status_error_after"] = m.status("inst-1").error
        out["observed"] = sorted(set(seen))
        out["shutdown"] = m.shutdown(10)
    print(json.dumps(out))
    """
)


def _mount_namespace() -> list[str] | None:
    """A command prefix that runs its command with a private tmpfs, or None."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return None
    probe = subprocess.run(
        [unshare, "--mount", "--map-root-user", "sh", "-c",
         "mount -t tmpfs -o size=1m tmpfs /mnt 2>/dev/null || "
         "mount -t tmpfs -o size=1m tmpfs /tmp"],
        capture_output=True,
    )
    return [unshare, "--mount", "--map-root-user"] if probe.returncode == 0 else None


NAMESPACE = _mount_namespace()
needs_tmpfs = pytest.mark.skipif(
    NAMESPACE is None, reason="cannot mount a private tmpfs (unshare --mount --map-root-user)"
)


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with run_in_thread(auth=False) as server:
        yield server


def _run_child(tmp_path: Path, hub: HubServer, size: str, durability: str,
               phase: str) -> dict[str, Any]:
    assert NAMESPACE is not None
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    mount = f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"'
    env = dict(os.environ, EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD="1")
    proc = subprocess.run(
        [*NAMESPACE, "sh", "-c", mount, str(mnt), sys.executable, str(script), str(mnt),
         hub.url, durability, phase],
        capture_output=True, text=True, timeout=300, env=env,
    )
    # A SIGBUS (the old journal on a full disk) shows here as -7 / 135.
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _hub_log(server: HubServer) -> set[str]:
    return {e.entry_id for e in server.hub.store.iter_log("agent") if e.kind == "event"}


@needs_tmpfs
@pytest.mark.parametrize("durability", ["group", "sync"])
def test_a_disk_that_fills_up_raises_disk_full_and_recovers_without_restart(
    hub: HubServer, tmp_path: Path, durability: str
) -> None:
    # 32 MB: room for the two 8 MB journals and the database, then filled.
    out = _run_child(tmp_path, hub, "32m", durability, "full_later")
    assert out["journal"] is (durability == "group")
    assert out["fresh"] == "DiskFullError"
    assert out["flushed_before"] is True
    assert out["other"] == []
    summary = {k: v for k, v in out.items() if k not in ("accepted", "errors")}
    assert out["refused"] > 0, json.dumps([len(out["accepted"]), summary])  # an error, not silence
    assert all("full" in e for e in out["errors"])
    assert out["status_error"] and "full" in out["status_error"]
    assert "outbox.error" in out["observed"] and "outbox.recovered" in out["observed"]
    assert out["flushed"] is True and out["status_error_after"] is None
    assert out["shutdown"] is True
    # Everything record accepted reached the hub, full disk or not.
    assert set(out["accepted"]) <= _hub_log(hub)


@needs_tmpfs
def test_no_room_for_the_journal_runs_without_it(hub: HubServer, tmp_path: Path) -> None:
    # 12 MB cannot hold the two 8 MB journals: the outbox runs without one
    # (the old sparse journal was mapped anyway, then SIGBUS once full).
    out = _run_child(tmp_path, hub, "12m", "group", "full_later")
    assert out["journal"] is False
    assert out["flushed_before"] is True and out["other"] == []
    assert out["refused"] > 0 and out["status_error"] and "full" in out["status_error"]
    assert out["fresh"] == "DiskFullError"
    assert out["flushed"] is True and out["status_error_after"] is None
    assert set(out["accepted"]) <= _hub_log(hub)


# ---------------------------------------------------------------------- the outbox alone


def _fill_database(box: Outbox) -> None:
    # max_page_count is per connection: limit the writer's to what it holds now.
    conn = box._wconn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages + 1}")


def _free_database(box: Outbox) -> None:
    box._wconn.execute("PRAGMA max_page_count=1073741823")


def _event(i: int) -> dict[str, Any]:
    return {"event_id": f"e{i}", "text": f"lesson {i} " + "z" * 2000}


def test_sync_mode_full_database_raises_at_once_and_recovers(tmp_path: Path) -> None:
    errors: list[OutboxWriteError | None] = []
    box = Outbox(tmp_path / "outbox.db", make_config(outbox={"durability": "sync"}).outbox,
                 on_error=errors.append)
    try:
        box.add("streaming", _event(0))
        _fill_database(box)
        with pytest.raises(DiskFullError, match="database or disk is full") as info:
            for i in range(1, 50):
                box.add("streaming", _event(i))
        assert "no transaction is active" not in str(info.value)
        assert isinstance(box.error, DiskFullError) and errors and errors[-1] is not None
        refused = box.counters.reasons.get("refused:disk_full", 0)
        assert refused == 1
        # The writer is alive: freeing space is enough.
        _free_database(box)
        seq = box.add("streaming", _event(99))
        assert box.wait_durable(seq, timeout=10)
        assert box.error is None and errors[-1] is None
        bodies = [orjson.loads(r.body)["event_id"] for r in box.read("streaming", 1000)]
        assert bodies[0] == "e0" and bodies[-1] == "e99"
        assert box.size == len(bodies)
    finally:
        box.close()


def test_group_mode_keeps_what_it_accepted_and_refuses_new_events(tmp_path: Path) -> None:
    errors: list[OutboxWriteError | None] = []
    box = Outbox(tmp_path / "outbox.db", make_config(outbox={"durability": "group"}).outbox,
                 on_error=errors.append)
    try:
        _fill_database(box)
        accepted: list[int] = []
        with pytest.raises(DiskFullError):
            for i in range(100_000):  # accepted into the journal until the writer fails
                accepted.append(box.add("streaming", _event(i)))
        assert accepted and box.unsaved > 0
        with pytest.raises(DiskFullError):  # and refused while it holds them
            box.add("streaming", _event(-1))
        assert box.counters.reasons.get("refused:disk_full", 0) >= 2
        assert not box.wait_durable(accepted[-1], timeout=0.2)
        _free_database(box)
        assert box.wait_durable(accepted[-1], timeout=30)  # retried, no restart
        # The writer clears its error, then tells the observer: wait for both.
        assert wait_until(lambda: box.error is None and errors[-1] is None)
        assert errors[0] is not None
        seq = box.add("streaming", _event(100_001))
        assert box.wait_durable(seq, timeout=10)
        rows = [r.seq for r in box.read("streaming", 200_000)]
        assert rows == [*accepted, seq]
    finally:
        box.close()


def test_group_mode_close_while_full_keeps_the_journal(tmp_path: Path) -> None:
    config = make_config(outbox={"durability": "group"}).outbox
    box = Outbox(tmp_path / "outbox.db", config)
    _fill_database(box)
    accepted: list[int] = []
    with pytest.raises(DiskFullError):
        for i in range(100_000):
            accepted.append(box.add("streaming", _event(i)))
    assert box.close(timeout=10) is False  # not everything is committed...
    again = Outbox(tmp_path / "outbox.db", config)
    try:  # ...but the next start commits it from the journal
        assert [r.seq for r in again.read("streaming", 200_000)] == accepted
    finally:
        again.close()


# ---------------------------------------------------------------------- the hub's store


def test_a_full_hub_store_reports_the_real_error(tmp_path: Path) -> None:
    # The real error comes out (a redundant ROLLBACK used to be able to hide it
    # behind "cannot rollback - no transaction is active"), nothing is half-applied.
    store = SQLiteStore(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        store.commit("a", ChangeSet(cursor=1, log=[LogEntry("e0", "event", "{}", None, "i1", 1)]))
        conn = store._db  # max_page_count is per connection: the store's own
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages}")
        body = orjson.dumps({"text": "w" * 5000}).decode()
        big = ChangeSet(cursor=2, log=[LogEntry(f"e{i}", "event", body, None, "i1", 2)
                                       for i in range(1, 50)])
        with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
            store.commit("a", big)
        conn.execute("PRAGMA max_page_count=1073741823")
        store.commit("a", big)  # nothing half-applied, and it goes on once there is room
        assert [e.entry_id for e in store.iter_log("a")] == [f"e{i}" for i in range(50)]
    finally:
        store.close()
