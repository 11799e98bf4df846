"""A third-party client written only from docs/wire-protocol.md and docs/merging.md.

Every hub here is a real ``experience-sync serve`` process on a free loopback
port with a temporary SQLite store; its tokens are made with ``experience-sync
token create``. The client speaks plain HTTP (httpx) and WebSocket
(``websockets``) and imports nothing of experience_sync, so each test checks a
promise of the documentation, not of the code:

* duplicates (events, batches, gzip-encoded batches, check-ins) never double
  anything;
* authentication, authorization, body limits and error statuses;
* the three built-in conflict strategies, each on a hub configured for it;
* the knowledge integration rule;
* memory deduplication under the default configuration;
* the WebSocket frame protocol.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.exceptions
import websockets.sync.client as ws_client

pytestmark = pytest.mark.timeout(120)

EXE = str(Path(sys.executable).parent / "experience-sync")
ENV = {**os.environ, "EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD": "1"}
MAX_BODY = 200_000
MAX_DECOMPRESSED = 1_000_000

# (agent, instance, scope) of every token each hub needs; created before it starts
DEFAULT_TOKENS = [
    ("dup", "i1", "write"),
    ("dup", "i2", "write"),
    ("auth", "i1", "write"),
    ("auth", "i1", "read"),
    ("auth", "i2", "write"),
    ("other", "i1", "write"),
    ("revoked", "i1", "write"),
    ("kn", "i1", "write"),
    ("kn", "i2", "write"),
    ("kn", "i3", "write"),
    ("dedup", "i1", "write"),
    ("lw", "i1", "write"),
    ("lw", "i2", "write"),
    ("ws", "i1", "write"),
]
PAIR_TOKENS = [("a1", "i1", "write"), ("a1", "i2", "write"), ("a1", "i3", "write"), ("a1", "i1", "read")]
CONFIGS = {
    "default": None,
    "weighted": '[merge_strategy]\nconflict_resolution = "weighted_merge"\n',
    "manual": '[merge_strategy]\nconflict_resolution = "manual_review"\n',
    "strict": "[merge_strategy]\nknowledge_verification_threshold = 0.95\n",
}


@dataclass
class Hub:
    """A hub process: its base URLs, its store and its tokens by (agent, instance, scope)."""

    url: str
    ws_url: str
    store: str
    proc: subprocess.Popen[bytes]
    tokens: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def token(self, agent: str, instance: str = "i1", scope: str = "write") -> str:
        return self.tokens[(agent, instance, scope)]

    def headers(self, agent: str, instance: str = "i1", scope: str = "write") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(agent, instance, scope)}"}

    def post(self, agent: str, kind: str, body: Any, instance: str = "i1", **kw: Any) -> httpx.Response:
        headers = {**self.headers(agent, instance), **kw.pop("headers", {})}
        return httpx.post(f"{self.url}/v1/agents/{agent}/{kind}", json=body, headers=headers, timeout=30, **kw)

    def get(self, agent: str, path: str, instance: str = "i1", **kw: Any) -> Any:
        r = httpx.get(f"{self.url}/v1/agents/{agent}/{path}", headers=self.headers(agent, instance), timeout=30, **kw)
        assert r.status_code == 200, r.text
        return r.json()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str) -> str:
    done = subprocess.run([EXE, *args], capture_output=True, text=True, env=ENV, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _token_create(store: str, agent: str, instance: str, scope: str) -> str:
    return _cli("token", "create", "--agent", agent, "--instance", instance, "--scope", scope, "--store", store)


def _start(directory: Path, name: str, config: str | None, tokens: list[tuple[str, str, str]]) -> Hub:
    directory.mkdir()
    store = f"sqlite:///{directory / 'hub.db'}"
    made = {key: _token_create(store, *key) for key in tokens}  # one store file: one writer at a time
    args = [EXE, "serve", "--host", "127.0.0.1", "--port", str(port := _free_port()), "--store", store,
            "--max-body-bytes", str(MAX_BODY), "--max-decompressed-bytes", str(MAX_DECOMPRESSED),
            "--no-access-log", "--log-level", "warning"]
    if config is not None:
        (directory / "hub.toml").write_text(config)
        args += ["--config", str(directory / "hub.toml")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=directory)
    return Hub(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", store, proc, made)


def _wait(hub: Hub) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert hub.proc.poll() is None, f"hub exited with {hub.proc.returncode}"
        try:
            if httpx.get(f"{hub.url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("hub did not start")


@pytest.fixture(scope="module")
def hubs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Hub]]:
    """Four hubs, started in parallel: default, weighted_merge, manual_review, threshold 0.95."""
    base = tmp_path_factory.mktemp("hubs")
    with ThreadPoolExecutor(len(CONFIGS)) as pool:
        futures = {
            name: pool.submit(_start, base / name, name, config, DEFAULT_TOKENS if name == "default" else PAIR_TOKENS)
            for name, config in CONFIGS.items()
        }
        started = {name: f.result() for name, f in futures.items()}
    try:
        for hub in started.values():
            _wait(hub)
        yield started
    finally:
        for hub in started.values():
            hub.proc.terminate()
        for hub in started.values():
            try:
                hub.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                hub.proc.kill()
                hub.proc.wait()


@pytest.fixture(scope="module")
def hub(hubs: dict[str, Hub]) -> Hub:
    """The hub with the default configuration (latest_wins, threshold 0.8, jaccard)."""
    return hubs["default"]


# --------------------------------------------------------------------------- wire builders


def ts(minute: int) -> str:
    return f"2026-11-25T06:{minute:02d}:00Z"


def event(instance: str, event_type: str, data: dict[str, Any], minute: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "schema_version": "1.0",
        "event_id": uuid.uuid4().hex,
        "timestamp": ts(minute),
        "source_instance": instance,
        "event_type": event_type,
        "data": data,
        **extra,
    }


def memory(instance: str, content: str, minute: int = 0, **data: Any) -> dict[str, Any]:
    return event(instance, "memory", {"content": content, **data}, minute)


def skill(instance: str, name: str, invocations: int, proficiency: float, minute: int = 0) -> dict[str, Any]:
    usage = {"invocations": invocations, "successes": invocations // 2, "contexts": [], "last_used": ts(minute)}
    return event(instance, "skill", {"name": name, "proficiency": proficiency, "usage": usage}, minute)


def knowledge(instance: str, subject: str, content: str, confidence: float, minute: int = 0) -> dict[str, Any]:
    return event(instance, "knowledge", {"subject": subject, "content": content, "confidence": confidence}, minute)


def characteristic(instance: str, key: str, value: Any, confidence: float, minute: int = 0) -> dict[str, Any]:
    return event(instance, "characteristic", {"key": key, "value": value, "confidence": confidence}, minute)


def events(instance: str, *evs: dict[str, Any]) -> dict[str, Any]:
    return {"instance_id": instance, "events": list(evs)}


def batch(instance: str, *evs: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": "1.0",
        "batch_id": f"b-{uuid.uuid4().hex}",
        "instance_id": instance,
        "timestamp_start": ts(0),
        "timestamp_end": ts(59),
        "events": list(evs),
        "compression": "gzip",
    }


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def error(r: httpx.Response, status: int) -> dict[str, Any]:
    """Assert the documented error shape ``{"error": {"status", "message", ...}}``."""
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["status"] == status and isinstance(body["message"], str)
    return dict(body)


def mem_by_content(state: dict[str, Any], needle: str) -> list[dict[str, Any]]:
    return [m for m in state["memories"] if needle.lower() in m["content"].lower()]


# --------------------------------------------------------------------------- duplicates


def test_resent_events_are_duplicates_and_change_nothing(hub: Hub) -> None:
    """The same streaming events sent again: all in duplicate_event_ids, state and cursor unchanged."""
    sent = [
        memory("i1", "The staging database restarts every Sunday at noon"),
        skill("i1", "sql_tuning", invocations=4, proficiency=0.6),
        knowledge("i1", "staging-db", "Staging runs PostgreSQL sixteen", 0.7),
        characteristic("i1", "verbosity", "low", 0.8),
        event("i1", "interaction", {"summary": "talked", "outcome": "ok", "anything": [1, 2]}),
    ]
    first = ok(hub.post("dup", "events", events("i1", *sent)))
    assert sorted(first["accepted_event_ids"]) == sorted(e["event_id"] for e in sent)
    assert first["memories_added"] == first["skills_added"] == first["knowledge_added"] == 1
    assert first["interactions_recorded"] == 1
    before = hub.get("dup", "state")
    again = ok(hub.post("dup", "events", events("i1", *sent)))
    assert again["accepted_event_ids"] == []
    assert sorted(again["duplicate_event_ids"]) == sorted(e["event_id"] for e in sent)
    assert again["memories_added"] == again["memories_merged"] == again["skills_updated"] == 0
    assert again["cursor"] == first["cursor"]
    assert hub.get("dup", "state") == before
    [mem] = mem_by_content(before, "staging database")
    assert mem["access_count"] == 1


def test_a_duplicate_within_one_request_counts_once(hub: Hub) -> None:
    """An event id repeated in the same request is a duplicate of the first occurrence."""
    e = memory("i1", "The orange cat sleeps on the blue sofa after lunch")
    r = ok(hub.post("dup", "events", events("i1", e, e)))
    assert r["accepted_event_ids"] == [e["event_id"]]
    assert r["duplicate_event_ids"] == [e["event_id"]]
    [mem] = mem_by_content(hub.get("dup", "state"), "orange cat")
    assert mem["access_count"] == 1


def test_resent_skill_report_with_new_event_id_never_doubles_invocations(hub: Hub) -> None:
    """Usage is cumulative per instance: the same report under a new event id changes no count."""
    ok(hub.post("dup", "events", events("i1", skill("i1", "Log Search", 10, 0.5, minute=1))))
    ok(hub.post("dup", "events", events("i1", skill("i1", "log-search", 10, 0.5, minute=2))))
    ok(hub.post("dup", "events", events("i1", skill("i1", "log search", 7, 0.5, minute=3))))  # stale count
    ok(hub.post("dup", "events", events("i2", skill("i2", "log_search", 5, 0.5, minute=3)), instance="i2"))
    [sk] = [s for s in hub.get("dup", "skills") if s["name"].lower().startswith("log")]
    assert sk["usage"]["total_invocations"] == 15


def test_resent_batch_plain_and_gzip_returns_the_stored_result(hub: Hub) -> None:
    """A batch re-sent (plain, then gzip-encoded) is a duplicate with the first result; nothing changes."""
    body = batch(
        "i1",
        memory("i1", "Invoices are archived to cold storage after ninety days"),
        skill("i1", "invoice_lookup", 3, 0.4),
        knowledge("i1", "archive", "Cold storage is on tape", 0.6),
    )
    first = ok(hub.post("dup", "batches", body))
    assert first["duplicate"] is False and first["unit_id"] == body["batch_id"]
    assert first["memories_added"] == 1
    before = hub.get("dup", "state")
    plain = ok(hub.post("dup", "batches", body))
    zipped = ok(
        hub.post("dup", "batches", None, content=gzip.compress(json.dumps(body).encode()),
                 headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    )
    for again in (plain, zipped):
        assert again["duplicate"] is True
        assert {**again, "duplicate": False} == first
    assert hub.get("dup", "state") == before


def test_gzip_batch_is_accepted_and_its_events_dedup_in_a_new_batch(hub: Hub) -> None:
    """A gzip-encoded batch merges; its events in another batch (new batch_id) are duplicates."""
    evs = [memory("i1", "The kiosk printer jams when the paper is humid"), skill("i1", "printer_fix", 2, 0.3)]
    body = batch("i1", *evs)
    first = ok(
        hub.post("dup", "batches", None, content=gzip.compress(json.dumps(body).encode()),
                 headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    )
    assert first["memories_added"] == 1 and first["skills_added"] == 1
    before = hub.get("dup", "state")
    other = ok(hub.post("dup", "batches", batch("i1", *evs)))
    assert other["duplicate"] is False
    assert sorted(other["duplicate_event_ids"]) == sorted(e["event_id"] for e in evs)
    assert hub.get("dup", "state") == before


def _checkin(instance: str, checkin_id: str, state: dict[str, Any], *evs: dict[str, Any]) -> dict[str, Any]:
    return {
        "checkin_id": checkin_id,
        "instance_id": instance,
        "timestamp": ts(30),
        "uptime_seconds": 3600,
        "events": list(evs),
        "state": state,
        "summary": {"memories": len(state.get("memories", [])), "last_sequence": 9},
    }


def test_resent_checkin_and_restated_state_change_nothing(hub: Hub) -> None:
    """A check-in re-sent (same id), and its state restated in a new check-in, change no count."""
    streamed = [
        memory("i2", "The nightly export finishes before five in the morning"),
        skill("i2", "export_debugging", 6, 0.7),
        knowledge("i2", "export-format", "Exports are written as parquet", 0.7),
    ]
    ok(hub.post("dup", "events", events("i2", *streamed), instance="i2"))
    state = {
        "memories": [{"content": "The nightly export finishes before five in the morning"},
                     {"content": "Support tickets are triaged by the on-call engineer"}],
        "skills": [{"name": "export_debugging", "proficiency": 0.7,
                    "usage": {"invocations": 6, "successes": 3, "contexts": [], "last_used": ts(0)}}],
        "knowledge": [{"subject": "export-format", "content": "Exports are written as parquet", "confidence": 0.7}],
        "characteristics": {"humour": "dry"},
        "stats": {"events_recorded": 3},
    }
    body = _checkin("i2", f"ck-{uuid.uuid4().hex}", state)
    first = ok(hub.post("dup", "checkins", body, instance="i2"))
    assert first["duplicate"] is False and first["unit_id"] == body["checkin_id"]
    assert first["memories_added"] == 1  # only the memory the hub lacked
    assert first["memories_merged"] == 0
    after_first = hub.get("dup", "state")
    [export] = mem_by_content(after_first, "nightly export")
    assert export["access_count"] == 1
    [sk] = [s for s in after_first["skills"] if s["name"] == "export_debugging"]
    assert sk["usage"]["total_invocations"] == 6
    [kn] = [k for k in hub.get("dup", "knowledge") if k["subject"] == "export-format"]
    assert len(kn["verifications"]) == 1

    again = ok(hub.post("dup", "checkins", body, instance="i2"))
    assert again["duplicate"] is True and {**again, "duplicate": False} == first
    assert hub.get("dup", "state") == after_first

    restated = ok(hub.post("dup", "checkins", _checkin("i2", f"ck-{uuid.uuid4().hex}", state), instance="i2"))
    assert restated["duplicate"] is False
    assert restated["memories_added"] == restated["memories_merged"] == 0
    assert restated["skills_updated"] == restated["knowledge_verified"] == 0
    now = hub.get("dup", "state")
    assert now["memories"] == after_first["memories"]
    assert now["skills"] == after_first["skills"]
    assert now["characteristics"] == after_first["characteristics"]
    assert [k for k in hub.get("dup", "knowledge") if k["subject"] == "export-format"] == [kn]


# --------------------------------------------------------------------------- auth and limits

READ_PATHS = ["state", "memories", "skills", "knowledge", "instances", "reviews"]


def test_public_endpoints_need_no_token(hub: Hub) -> None:
    assert httpx.get(f"{hub.url}/healthz").json() == {"status": "ok", "auth": True}
    assert "paths" in httpx.get(f"{hub.url}/openapi.json").json()


def test_metrics_need_any_valid_token(hub: Hub) -> None:
    error(httpx.get(f"{hub.url}/metrics"), 401)
    error(httpx.get(f"{hub.url}/metrics", headers={"Authorization": "Bearer nonsense"}), 401)
    r = httpx.get(f"{hub.url}/metrics", headers=hub.headers("auth", scope="read"))
    assert r.status_code == 200
    assert "experience_sync_" in r.text


@pytest.mark.parametrize("path", READ_PATHS)
def test_reads_need_a_token_of_the_agent(hub: Hub, path: str) -> None:
    url = f"{hub.url}/v1/agents/auth/{path}"
    error(httpx.get(url), 401)
    error(httpx.get(url, headers={"Authorization": "Bearer nonsense"}), 401)
    error(httpx.get(url, headers={"Authorization": "Bearer xs_0123456789abcdef_" + "A" * 43}), 401)
    error(httpx.get(url, headers=hub.headers("other")), 403)
    assert httpx.get(url, headers=hub.headers("auth", scope="read")).status_code == 200
    assert httpx.get(url, headers=hub.headers("auth")).status_code == 200


def test_an_unknown_agent_reads_as_empty(hub: Hub) -> None:
    """'other' has a token but never synced: empty state, cursor 0, not 404."""
    state = hub.get("other", "state")
    assert state["cursor"] == 0 and state["memories"] == [] and state["skills"] == []
    assert hub.get("other", "memories")["total"] == 0


def test_writes_need_a_valid_token(hub: Hub) -> None:
    url = f"{hub.url}/v1/agents/auth/events"
    body = events("i1", memory("i1", "unauthenticated write"))
    error(httpx.post(url, json=body), 401)
    error(httpx.post(url, json=body, headers={"Authorization": "Bearer xs_0123456789abcdef_" + "A" * 43}), 401)
    error(httpx.post(url, json=body, headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401)
    assert hub.get("auth", "memories", params={"q": "unauthenticated"})["total"] == 0


def test_writes_with_a_token_of_another_agent_instance_or_scope_are_403(hub: Hub) -> None:
    """403 and nothing applied, for every binding the docs list."""
    before = hub.get("auth", "state")

    def mem(instance: str = "i1", **extra: Any) -> dict[str, Any]:
        return {**memory(instance, f"forbidden {uuid.uuid4().hex}"), **extra}

    cases = [
        hub.post("auth", "events", events("i1", mem()), headers=hub.headers("other")),  # another agent
        hub.post("auth", "events", events("i1", mem()), headers=hub.headers("auth", "i1", "read")),  # read scope
        hub.post("auth", "events", events("i1", mem()), instance="i2"),  # token of i2, request says i1
        hub.post("auth", "events", events("i2", mem("i2"))),  # token of i1, request says i2
        hub.post("auth", "events", events("i1", mem(), mem("i2"))),  # one event from another instance
        hub.post("auth", "events", events("i1", mem(agent_id="other"))),  # event for another agent
        hub.post("auth", "batches", batch("i2", mem("i2"))),  # batch of another instance
        hub.post("auth", "checkins", _checkin("i2", "ck-forbidden", {"memories": [{"content": "x"}]})),
    ]
    for r in cases:
        error(r, 403)
    assert hub.get("auth", "state") == before


def test_a_token_revoked_while_the_hub_runs_gets_401(hub: Hub) -> None:
    assert hub.post("revoked", "events", events("i1")).status_code == 200
    token_id = hub.token("revoked").split("_")[1]
    listed = json.loads(_cli("token", "list", "--json", "--store", hub.store))
    assert {t["token_id"] for t in listed} >= {token_id}
    assert all(hub.token(*key) not in json.dumps(listed) for key in DEFAULT_TOKENS)
    _cli("token", "revoke", token_id, "--store", hub.store)
    error(hub.post("revoked", "events", events("i1")), 401)
    error(httpx.get(f"{hub.url}/v1/agents/revoked/state", headers=hub.headers("revoked")), 401)


def test_body_over_max_body_bytes_is_413(hub: Hub) -> None:
    big = events("i1", memory("i1", "x " * (MAX_BODY // 2)))
    error(hub.post("auth", "events", big), 413)
    assert hub.get("auth", "memories", params={"q": "x x x"})["total"] == 0


def test_gzip_bomb_is_413_on_the_decompressed_cap(hub: Hub) -> None:
    """A small gzip body that inflates past --max-decompressed-bytes is refused with 413."""
    text = "y" * (MAX_DECOMPRESSED + 1000)
    raw = json.dumps(batch("i1", memory("i1", text))).encode()
    bomb = gzip.compress(raw)
    assert len(bomb) < MAX_BODY
    r = hub.post("auth", "batches", None, content=bomb,
                 headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    error(r, 413)
    # a body only above --max-body-bytes once decompressed is fine (the caps are separate)
    chunks = [memory("i1", f"chunk {n} " + "z " * 40_000) for n in range(3)]
    fine = json.dumps(batch("i1", *chunks)).encode()
    assert len(fine) > MAX_BODY
    r = hub.post("auth", "batches", None, content=gzip.compress(fine),
                 headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def test_batch_and_checkin_ids_are_optional_but_events_still_dedup(hub: Hub) -> None:
    """Without batch_id / checkin_id the hub mints one: a resend is a new unit whose events are duplicates."""
    body = batch("i1", memory("i1", "Batches without ids still dedup their events"))
    del body["batch_id"]
    first = ok(hub.post("auth", "batches", body))
    assert first["unit_id"] and first["memories_added"] == 1
    again = ok(hub.post("auth", "batches", body))
    assert again["duplicate"] is False and again["unit_id"] != first["unit_id"]
    assert again["duplicate_event_ids"] == [body["events"][0]["event_id"]]
    checkin = {"instance_id": "i1", "state": {"memories": [{"content": "Check-ins without ids restate safely"}]}}
    assert ok(hub.post("auth", "checkins", checkin))["memories_added"] == 1
    assert ok(hub.post("auth", "checkins", checkin))["memories_added"] == 0
    [mem] = hub.get("auth", "memories", params={"q": "without ids restate"})["items"]
    assert mem["access_count"] == 1


def test_state_since_cursor_returns_only_later_changes(hub: Hub) -> None:
    first = ok(hub.post("auth", "events", events("i1", memory("i1", "Cursor test memory about herons"))))
    second = ok(hub.post("auth", "events", events("i1", memory("i1", "Cursor test memory about egrets"))))
    assert second["cursor"] == first["cursor"] + 1
    delta = hub.get("auth", "state", params={"since": first["cursor"]})
    assert delta["cursor"] == second["cursor"]
    assert [m["content"] for m in delta["memories"]] == ["Cursor test memory about egrets"]
    assert all(m["version"] > first["cursor"] for m in delta["memories"])
    assert hub.get("auth", "state", params={"since": second["cursor"]})["memories"] == []


def test_timestamp_without_timezone_is_read_as_utc_over_http(hub: Hub) -> None:
    naive = {**memory("i1", "Naive timestamps are read as UTC"), "timestamp": "2026-11-25T06:00:00"}
    ok(hub.post("auth", "events", events("i1", naive)))
    [mem] = hub.get("auth", "memories", params={"q": "naive timestamps are read as utc"})["items"]
    assert mem["created_at"].replace("+00:00", "Z") == "2026-11-25T06:00:00Z"


def test_checkin_timestamp_without_timezone_is_read_as_utc(hub: Hub) -> None:
    body = {**_checkin("i1", "ck-naive", {"memories": [{"content": "naive check-in"}]}), "timestamp": "2026-11-25T06:00:00"}
    assert ok(hub.post("auth", "checkins", body))["memories_added"] == 1


def test_timestamp_without_timezone_is_read_as_utc_over_websocket(hub: Hub) -> None:
    naive = {**memory("i1", "Naive timestamps over WebSocket"), "timestamp": "2026-11-25T06:00:00"}
    with _ws(hub) as ws:
        ws.send(json.dumps({"id": "n", "kind": "events", "payload": events("i1", naive)}))
        ack = json.loads(ws.recv(timeout=20))
    assert ack["ok"] is True and ack["result"]["memories_added"] == 1, ack


def test_an_event_without_event_id_is_refused(hub: Hub) -> None:
    anonymous = memory("i1", "Events without ids would double on every retry")
    del anonymous["event_id"]
    r = hub.post("auth", "events", events("i1", anonymous))
    if r.status_code == 200:  # show the damage: the retry doubles the memory's access count
        ok(hub.post("auth", "events", events("i1", anonymous)))
        [mem] = hub.get("auth", "memories", params={"q": "would double on every retry"})["items"]
        assert mem["access_count"] == 1, "a resent event without event_id was merged twice"
    assert "events.0.event_id" in _locs(r)


def test_an_event_without_timestamp_is_refused(hub: Hub) -> None:
    undated = memory("i1", "Events without timestamps take the hub clock")
    del undated["timestamp"]
    assert "events.0.timestamp" in _locs(hub.post("auth", "events", events("i1", undated)))


def test_bad_encodings_and_headers(hub: Hub) -> None:
    body = json.dumps(events("i1", memory("i1", "encoding check"))).encode()
    json_ct = {"Content-Type": "application/json"}
    error(hub.post("auth", "events", None, content=b"\x1f\x8b not gzip", headers={**json_ct, "Content-Encoding": "gzip"}), 400)
    error(hub.post("auth", "events", None, content=body, headers={**json_ct, "Content-Encoding": "br"}), 415)
    error(hub.post("auth", "events", None, content=b"{not json", headers=json_ct), 400)
    error(hub.post("auth", "events", events("i1"), headers={"X-Experience-Sync-Backlog": "-3"}), 400)
    error(hub.post("auth", "events", events("i1"), headers={"X-Experience-Sync-Backlog": "many"}), 400)
    assert hub.post("auth", "events", None, content=body, headers={**json_ct, "Content-Encoding": "identity"}).status_code == 200


def _locs(r: httpx.Response) -> list[str]:
    return [d["loc"] for d in error(r, 422)["details"]]


def test_invalid_bodies_are_422_naming_the_field(hub: Hub) -> None:
    good = memory("i1", "valid memory for 422 checks")
    assert "events" in _locs(hub.post("auth", "events", {"instance_id": "i1"}))
    assert "events.0.data.content" in _locs(hub.post("auth", "events", events("i1", {**good, "data": {}})))
    bad_importance = {**good, "data": {"content": "c", "importance": 1.5}}
    assert "events.1.data.importance" in _locs(hub.post("auth", "events", events("i1", good, bad_importance)))
    assert "events.1.priority" in _locs(hub.post("auth", "events", events("i1", good, {**good, "event_id": "p", "priority": -1})))
    assert any(loc.startswith("events.0") for loc in _locs(hub.post("auth", "events", events("i1", {**good, "surprise": 1}))))
    assert any(loc.startswith("events.0") for loc in _locs(hub.post("auth", "events", events("i1", {**good, "event_type": "dream"}))))
    assert any(loc.startswith("events.0.event_id") for loc in _locs(hub.post("auth", "events", events("i1", {**good, "event_id": ""}))))
    assert "events.0.data.content" in _locs(hub.post("auth", "events", events("i1", memory("i1", "c" * 100_001))))
    assert "events.0.data.name" in _locs(hub.post("auth", "events", events("i1", skill("i1", "n" * 501, 1, 0.5))))
    assert "events.0.data.key" in _locs(hub.post("auth", "events", events("i1", characteristic("i1", "", "v", 0.5))))
    assert "batch_id" in _locs(hub.post("auth", "batches", {**batch("i1"), "batch_id": "b" * 201}))
    assert "timestamp_end" in _locs(hub.post("auth", "batches", {k: v for k, v in batch("i1").items() if k != "timestamp_end"}))
    assert "instance_id" in _locs(hub.post("auth", "checkins", {"checkin_id": "ck-422", "timestamp": ts(0)}))
    assert "query.limit" in _locs(httpx.get(f"{hub.url}/v1/agents/auth/memories?limit=0", headers=hub.headers("auth")))
    assert "query.limit" in _locs(httpx.get(f"{hub.url}/v1/agents/auth/memories?limit=1001", headers=hub.headers("auth")))
    assert hub.get("auth", "memories", params={"q": "valid memory for 422"})["total"] == 0  # nothing half applied


def test_the_documented_bad_input_answers(hub: Hub) -> None:
    # Errors: 405 with Allow, 415 for a body that is not declared JSON.
    r = httpx.get(f"{hub.url}/v1/agents/auth/events", headers=hub.headers("auth"))
    error(r, 405)
    assert "POST" in r.headers["allow"]
    body = json.dumps(events("i1", memory("i1", "content type check"))).encode()
    error(hub.post("auth", "events", None, content=body, headers={"Content-Type": "text/plain"}), 415)
    # Headers: a transport is a name.
    error(hub.post("auth", "events", events("i1"), headers={"X-Experience-Sync-Transport": "web socket"}), 400)
    # Field caps: a 422 at the field's dotted path; data null is one error at data.
    tagged = memory("i1", "capped tags", tags=["t" * 201])
    assert _locs(hub.post("auth", "events", events("i1", tagged))) == ["events.0.data.tags.0"]
    big = characteristic("i1", "tone", "v" * 100_001, 0.5)
    assert _locs(hub.post("auth", "events", events("i1", big))) == ["events.0.data.value"]
    assert _locs(hub.post("auth", "events", events("i1", {**memory("i1", "x"), "data": None}))) == ["events.0.data"]
    empty_key = {"instance_id": "i1", "checkin_id": "ck-key", "state": {"characteristics": {"": 1}}}
    assert _locs(hub.post("auth", "checkins", empty_key)) == ["state.characteristics"]
    # Cursors: beyond the agent's cursor is a 422 naming query.since.
    head = hub.get("auth", "state")["cursor"]
    r = httpx.get(f"{hub.url}/v1/agents/auth/state", params={"since": head + 1000}, headers=hub.headers("auth"))
    assert _locs(r) == ["query.since"]
    r = httpx.get(f"{hub.url}/v1/agents/auth/state", params={"since": 10**30}, headers=hub.headers("auth"))
    assert _locs(r) == ["query.since"]
    # Timestamps: another offset is answered in UTC with Z.
    offset = {**memory("i1", "A memory dated in another time zone"), "timestamp": "2026-11-25T08:30:00+02:00"}
    assert hub.post("auth", "events", events("i1", offset)).status_code == 200
    [found] = hub.get("auth", "memories", params={"q": "another time zone"})["items"]
    assert found["created_at"] == "2026-11-25T06:30:00Z"


@pytest.mark.parametrize(
    "body",
    [
        None, [], 7, "text", {}, {"instance_id": None, "events": None}, {"instance_id": "i1", "events": {}},
        {"instance_id": "i1", "events": [None]}, {"instance_id": "i1", "events": [[]]},
        {"instance_id": "i1", "events": [{"event_type": "memory"}]},
        {"instance_id": "i1", "events": [{"event_id": "e", "timestamp": "yesterday", "source_instance": "i1",
                                          "event_type": "memory", "data": {"content": "c"}}]},
        {"instance_id": "i1", "events": [{"event_id": "e", "timestamp": ts(0), "source_instance": "i1",
                                          "event_type": "memory", "data": {"content": 5}}]},
        {"instance_id": "i1", "events": [{"event_id": "e", "timestamp": ts(0), "source_instance": "i1",
                                          "event_type": "skill", "data": {"name": "s", "usage": {"invocations": -1}}}]},
        {"instance_id": "i1", "events": [{"event_id": "e", "timestamp": ts(0), "source_instance": "i1",
                                          "event_type": "memory", "data": {"content": "c", "embedding": ["a"]}}]},
        {"instance_id": "i1", "events": [{"event_id": "e" * 201, "timestamp": ts(0), "source_instance": "i1",
                                          "event_type": "memory", "data": {"content": "c"}}]},
        {"instance_id": "i1", "events": [{"event_id": "e", "timestamp": ts(0), "source_instance": "i1",
                                          "event_type": "memory", "data": {"content": "c"}, "sequence": 10**30}]},
    ],
)
def test_malformed_events_are_4xx_never_500(hub: Hub, body: Any) -> None:
    r = hub.post("auth", "events", body)
    assert r.status_code in (400, 403, 422), r.text
    error(r, r.status_code)


# --------------------------------------------------------------------------- conflict strategies


def test_latest_wins_keeps_the_later_report_whatever_the_arrival_order(hub: Hub) -> None:
    later_first = ok(hub.post("lw", "events", events("i2", characteristic("i2", "tone", "casual", 0.5, minute=9)), instance="i2"))
    assert later_first["characteristics_updated"] == 1
    r = ok(hub.post("lw", "events", events("i1", characteristic("i1", "tone", "formal", 0.9, minute=1))))
    assert r["conflicts"] == {"total": 1, "resolved": 1, "queued": 0}
    ok(hub.post("lw", "events", events("i1", characteristic("i1", "lang", "fr", 0.9, minute=1))))
    ok(hub.post("lw", "events", events("i2", characteristic("i2", "lang", "de", 0.1, minute=9)), instance="i2"))
    chars = hub.get("lw", "state")["characteristics"]
    assert chars["tone"]["value"] == "casual" and chars["tone"]["source_instance"] == "i2"
    assert chars["lang"]["value"] == "de"


def test_latest_wins_memory_contradiction_supersedes(hub: Hub) -> None:
    """'Order 1234 shipped to Paris' then 'Order 9876 shipped to Paris': a conflict, never a merge."""
    ok(hub.post("lw", "events", events("i1", memory("i1", "Order 1234 shipped to Paris", minute=1))))
    r = ok(hub.post("lw", "events", events("i2", memory("i2", "Order 9876 shipped to Paris", minute=2)), instance="i2"))
    assert r["conflicts"]["total"] == 1 and r["conflicts"]["resolved"] == 1
    assert r["memories_added"] == r["memories_merged"] == 0
    [mem] = mem_by_content(hub.get("lw", "state"), "shipped to Paris")
    assert mem["content"] == "Order 9876 shipped to Paris"
    assert mem["access_count"] == 1
    assert [s["content"] for s in mem["superseded"]] == ["Order 1234 shipped to Paris"]
    # an earlier statement arriving late loses
    r = ok(hub.post("lw", "events", events("i1", memory("i1", "Order 5555 shipped to Paris", minute=0))))
    assert r["conflicts"]["total"] == 1
    [mem] = mem_by_content(hub.get("lw", "state"), "shipped to Paris")
    assert mem["content"] == "Order 9876 shipped to Paris"


def test_latest_wins_knowledge_conflict_restarts_pending(hub: Hub) -> None:
    ok(hub.post("lw", "events", events("i1", knowledge("i1", "office", "The office is in Lyon", 0.7, minute=1))))
    ok(hub.post("lw", "events", events("i2", knowledge("i2", "office", "The office is in Lyon", 0.7, minute=2)), instance="i2"))
    [item] = [k for k in hub.get("lw", "knowledge") if k["subject"] == "office"]
    assert item["status"] == "integrated"
    r = ok(hub.post("lw", "events", events("i1", knowledge("i1", "office", "The office is in Nantes", 0.7, minute=3))))
    assert r["conflicts"]["total"] == 1 and r["knowledge_added"] == 0
    [item] = [k for k in hub.get("lw", "knowledge") if k["subject"] == "office"]
    assert item["content"] == "The office is in Nantes"
    assert item["status"] == "pending" and len(item["verifications"]) == 1


def test_weighted_merge_averages_numbers_and_keeps_the_heavier_side(hubs: dict[str, Hub]) -> None:
    hub = hubs["weighted"]
    ok(hub.post("a1", "events", events("i1", characteristic("i1", "temperature", 10, 0.9, minute=1))))
    r = ok(hub.post("a1", "events", events("i2", characteristic("i2", "temperature", 20, 0.3, minute=2)), instance="i2"))
    assert r["conflicts"] == {"total": 1, "resolved": 1, "queued": 0}
    ok(hub.post("a1", "events", events("i1", characteristic("i1", "tone", "formal", 0.9, minute=1))))
    ok(hub.post("a1", "events", events("i2", characteristic("i2", "tone", "casual", 0.3, minute=2)), instance="i2"))
    chars = hub.get("a1", "state")["characteristics"]
    assert chars["temperature"]["value"] == pytest.approx((10 * 0.9 + 20 * 0.3) / 1.2)
    assert chars["temperature"]["confidence"] == pytest.approx((0.9 * 0.9 + 0.3 * 0.3) / 1.2)
    assert chars["tone"]["value"] == "formal"  # heavier, although earlier


def test_weighted_merge_memory_heavier_statement_stays(hubs: dict[str, Hub]) -> None:
    hub = hubs["weighted"]
    ok(hub.post("a1", "events", events("i1", memory("i1", "Order 1234 shipped to Paris", minute=1, confidence=0.9))))
    r = ok(hub.post("a1", "events", events("i2", memory("i2", "Order 9876 shipped to Paris", minute=2, confidence=0.2)), instance="i2"))
    assert r["conflicts"]["total"] == 1 and r["memories_added"] == r["memories_merged"] == 0
    [mem] = mem_by_content(hub.get("a1", "state"), "shipped to Paris")
    assert mem["content"] == "Order 1234 shipped to Paris"
    assert [s["content"] for s in mem["superseded"]] == ["Order 9876 shipped to Paris"]


def test_manual_review_queues_then_accept_and_reject_over_the_api(hubs: dict[str, Hub]) -> None:
    hub = hubs["manual"]
    ok(hub.post("a1", "events", events("i1", characteristic("i1", "tone", "formal", 0.9, minute=1))))
    r = ok(hub.post("a1", "events", events("i2", characteristic("i2", "tone", "casual", 0.9, minute=2)), instance="i2"))
    assert r["conflicts"] == {"total": 1, "resolved": 0, "queued": 1}
    ok(hub.post("a1", "events", events("i1", memory("i1", "Order 1234 shipped to Paris", minute=1))))
    r = ok(hub.post("a1", "events", events("i2", memory("i2", "Order 9876 shipped to Paris", minute=2)), instance="i2"))
    assert r["conflicts"] == {"total": 1, "resolved": 0, "queued": 1}
    assert r["memories_added"] == r["memories_merged"] == 0

    state = hub.get("a1", "state")
    assert state["characteristics"]["tone"]["value"] == "formal"  # nothing applied yet
    assert [m["content"] for m in mem_by_content(state, "shipped")] == ["Order 1234 shipped to Paris"]
    reviews = hub.get("a1", "reviews")
    assert {rv["kind"] for rv in reviews} == {"characteristic", "memory"}
    assert all(rv["status"] == "open" and rv["instance_id"] == "i2" for rv in reviews)
    by_kind = {rv["kind"]: rv for rv in reviews}
    tone, order = by_kind["characteristic"], by_kind["memory"]

    url = f"{hub.url}/v1/agents/a1/reviews"
    error(httpx.post(f"{url}/{tone['review_id']}", json={"decision": "accept"}), 401)
    error(httpx.post(f"{url}/{tone['review_id']}", json={"decision": "accept"}, headers=hub.headers("a1", "i1", "read")), 403)
    error(httpx.post(f"{url}/no-such-review", json={"decision": "accept"}, headers=hub.headers("a1")), 404)
    assert "decision" in _locs(httpx.post(f"{url}/{tone['review_id']}", json={"decision": "maybe"}, headers=hub.headers("a1")))

    accepted = ok(httpx.post(f"{url}/{tone['review_id']}", json={"decision": "accept"}, headers=hub.headers("a1")))
    assert accepted["status"] == "accepted" and accepted["review_id"] == tone["review_id"]
    rejected = ok(httpx.post(f"{url}/{order['review_id']}", json={"decision": "reject"}, headers=hub.headers("a1")))
    assert rejected["status"] == "rejected"
    # deciding again returns the review unchanged
    again = ok(httpx.post(f"{url}/{tone['review_id']}", json={"decision": "reject"}, headers=hub.headers("a1")))
    assert again == accepted

    state = hub.get("a1", "state")
    assert state["characteristics"]["tone"]["value"] == "casual"
    assert [m["content"] for m in mem_by_content(state, "shipped")] == ["Order 1234 shipped to Paris"]
    assert hub.get("a1", "reviews") == []
    assert {rv["review_id"] for rv in hub.get("a1", "reviews", params={"status": "all"})} == {tone["review_id"], order["review_id"]}
    assert [rv["review_id"] for rv in hub.get("a1", "reviews", params={"status": "rejected"})] == [order["review_id"]]


# --------------------------------------------------------------------------- knowledge


def _item(hub: Hub, agent: str, subject: str) -> dict[str, Any]:
    [item] = [k for k in hub.get(agent, "knowledge") if k["subject"] == subject]
    return item


def test_knowledge_needs_two_instances_at_the_default_threshold(hub: Hub) -> None:
    """Threshold 0.8, confidence 0.7: one instance pending, two integrated, three integrated."""
    fact = ("retention", "Logs are kept for thirty days")
    r = ok(hub.post("kn", "events", events("i1", knowledge("i1", *fact, 0.7, minute=1))))
    assert r["knowledge_added"] == 1 and r["knowledge_integrated"] == 0
    assert _item(hub, "kn", "retention")["status"] == "pending"
    assert [k["subject"] for k in hub.get("kn", "knowledge", params={"status": "pending"})] == ["retention"]
    # the same instance again, even very confident: still one verification, still pending
    ok(hub.post("kn", "events", events("i1", knowledge("i1", *fact, 0.99, minute=2))))
    item = _item(hub, "kn", "retention")
    assert item["status"] == "pending" and len(item["verifications"]) == 1
    ok(hub.post("kn", "events", events("i1", knowledge("i1", *fact, 0.7, minute=3))))
    r = ok(hub.post("kn", "events", events("i2", knowledge("i2", *fact, 0.7, minute=4)), instance="i2"))
    assert r["knowledge_integrated"] == 1
    item = _item(hub, "kn", "retention")
    assert item["status"] == "integrated" and len(item["verifications"]) == 2
    ok(hub.post("kn", "events", events("i3", knowledge("i3", *fact, 0.7, minute=5)), instance="i3"))
    item = _item(hub, "kn", "retention")
    assert item["status"] == "integrated" and len(item["verifications"]) == 3
    assert hub.get("kn", "state")["stats"]["knowledge_acquired"] == 1


def test_one_instance_alone_never_integrates(hub: Hub) -> None:
    ok(hub.post("kn", "events", events("i1", knowledge("i1", "backups", "Backups run hourly", 1.0))))
    assert _item(hub, "kn", "backups")["status"] == "pending"


def test_knowledge_threshold_095_needs_three_instances(hubs: dict[str, Hub]) -> None:
    hub = hubs["strict"]
    fact = ("region", "The cluster runs in eu-west")
    for n, inst in enumerate(("i1", "i2", "i3"), start=1):
        ok(hub.post("a1", "events", events(inst, knowledge(inst, *fact, 0.7, minute=n)), instance=inst))
        assert _item(hub, "a1", "region")["status"] == ("integrated" if n == 3 else "pending"), n


# --------------------------------------------------------------------------- memory dedup

BASES_AND_VARIANTS = [
    ("case", "The customer prefers email over phone calls", "THE CUSTOMER PREFERS EMAIL OVER PHONE CALLS"),
    ("punctuation", "The build server needs more disk space", "The build-server needs more disk space!!!"),
    ("whitespace", "Release notes go out every second Friday", "  Release   notes go out\tevery second\nFriday "),
    ("nfkc", "Grafana dashboards load slowly on Mondays",
     "\uff27\uff52\uff41\uff46\uff41\uff4e\uff41 dashboards load slowly on Mondays"),
    ("word order", "Alerts page the platform team at night", "At night alerts page the platform team"),
]
CONTRADICTIONS = [
    ("negation", "The VPN connection is required for deployments",
     "The VPN connection is not required for deployments"),
    ("number", "The payment gateway timeout is 30 seconds", "The payment gateway timeout is 45 seconds"),
    ("date", "The quarterly offsite starts on Monday", "The quarterly offsite starts on Thursday"),
    ("antonym", "The staging bucket is open to outside contractors", "The staging bucket is closed to outside contractors"),
]
# Another person, place or thing in the same frame: both statements are true
# at once, so both stay (docs/merging.md, "Three outcomes").
DISTINCT = [
    ("name", "Maria owns the billing service migration", "Daniel owns the billing service migration"),
    ("place", "The quarterly offsite will be held in Madrid", "The quarterly offsite will be held in Lisbon"),
]


@pytest.mark.parametrize(("label", "base", "variant"), BASES_AND_VARIANTS, ids=[c[0] for c in BASES_AND_VARIANTS])
def test_memory_variants_merge(hub: Hub, label: str, base: str, variant: str) -> None:
    first = memory("i1", base, minute=1, tags=["a"], importance=0.3)
    ok(hub.post("dedup", "events", events("i1", first)))
    second = memory("i1", variant, minute=2, tags=["b"], importance=0.9)
    r = ok(hub.post("dedup", "events", events("i1", second)))
    assert (r["memories_added"], r["memories_merged"], r["conflicts"]["total"]) == (0, 1, 0), label
    [mem] = [m for m in hub.get("dedup", "state")["memories"] if first["event_id"] in m["source_events"]]
    assert mem["content"] == base
    assert mem["access_count"] == 2
    assert mem["source_events"] == [first["event_id"], second["event_id"]]
    assert mem["tags"] == ["a", "b"] and mem["importance"] == 0.9
    assert mem["created_at"].startswith("2026-11-25T06:01") and mem["updated_at"].startswith("2026-11-25T06:02")


@pytest.mark.parametrize(("label", "base", "variant"), CONTRADICTIONS, ids=[c[0] for c in CONTRADICTIONS])
def test_memory_contradictions_never_merge(hub: Hub, label: str, base: str, variant: str) -> None:
    first = memory("i1", base, minute=1)
    ok(hub.post("dedup", "events", events("i1", first)))
    r = ok(hub.post("dedup", "events", events("i1", memory("i1", variant, minute=2))))
    assert r["memories_merged"] == 0 and r["memories_added"] == 0, label
    assert r["conflicts"]["total"] == 1 and r["conflicts"]["resolved"] == 1, label
    [mem] = [m for m in hub.get("dedup", "state")["memories"] if first["event_id"] in m["source_events"]
             or any(s["event_id"] == first["event_id"] for s in m["superseded"])]
    assert mem["content"] == variant  # latest_wins: the later statement
    assert mem["access_count"] == 1
    assert [s["content"] for s in mem["superseded"]] == [base]


@pytest.mark.parametrize(("label", "base", "variant"), DISTINCT, ids=[c[0] for c in DISTINCT])
def test_memory_name_and_place_swaps_are_distinct(hub: Hub, label: str, base: str, variant: str) -> None:
    first = memory("i1", base, minute=1)
    ok(hub.post("dedup", "events", events("i1", first)))
    r = ok(hub.post("dedup", "events", events("i1", memory("i1", variant, minute=2))))
    assert (r["memories_added"], r["memories_merged"], r["conflicts"]["total"]) == (1, 0, 0), label
    assert r["outcomes"] == {"duplicate": 0, "contradiction": 0, "distinct": 1}, label
    [mo] = r["memory_outcomes"]
    assert mo["outcome"] == "distinct" and mo["reason"] == "name", label
    state = hub.get("dedup", "state")["memories"]
    [old] = [m for m in state if first["event_id"] in m["source_events"]]
    [new] = [m for m in state if m["memory_id"] == mo["memory_id"]]
    assert old["content"] == base and old["superseded"] == []
    assert new["content"] == variant and new["related_to"] == old["memory_id"] == mo["related_to"]


# --------------------------------------------------------------------------- WebSocket


def _ws(hub: Hub, agent: str = "ws", token: str | None = None, query: bool = False) -> Any:
    token = token if token is not None else hub.token(agent)
    url = f"{hub.ws_url}/v1/agents/{agent}/ws"
    if query:
        return ws_client.connect(f"{url}?access_token={token}", compression=None, open_timeout=10)
    return ws_client.connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                             compression=None, open_timeout=10)


def test_ws_pipelined_frames_are_acked_in_order_with_their_ids(hub: Hub) -> None:
    frames: list[dict[str, Any]] = [
        {"id": "f-1", "kind": "events", "payload": events("i1", memory("i1", "WebSocket memory about red kites"))},
        {"id": 2, "kind": "batch", "payload": batch("i1", memory("i1", "WebSocket memory about river otters"))},
        {"id": {"n": 3}, "kind": "checkin", "payload": _checkin("i1", "ck-ws-1", {"characteristics": {"mood": "calm"}}),
         "meta": {"backlog": 5, "protocol": "check_in"}},
        {"id": None, "kind": "events", "payload": events("i1", skill("i1", "ws_skill", 2, 0.5))},
        {"id": [5], "kind": "events", "payload": events("i1"), "meta": {"backlog": 0}},
    ]
    with _ws(hub) as ws:
        for frame in frames:
            ws.send(json.dumps(frame))
        acks = [json.loads(ws.recv(timeout=20)) for _ in frames]
        assert [a["id"] for a in acks] == [f["id"] for f in frames]
        assert all(a["ok"] for a in acks), acks
        assert acks[0]["result"]["memories_added"] == 1 and acks[1]["result"]["memories_added"] == 1
        # resent after a "reconnect": duplicates, nothing doubled
        before = hub.get("ws", "state")
        for frame in frames:
            ws.send(json.dumps(frame))
        again = [json.loads(ws.recv(timeout=20)) for _ in frames]
    assert [a["id"] for a in again] == [f["id"] for f in frames]
    assert again[0]["result"]["duplicate_event_ids"] == [frames[0]["payload"]["events"][0]["event_id"]]
    assert again[1]["result"]["duplicate"] is True and again[2]["result"]["duplicate"] is True
    assert hub.get("ws", "state") == before
    [inst] = hub.get("ws", "instances")
    assert inst["transport"] == "websocket"


def test_ws_bad_frames_get_error_acks_and_the_connection_stays_open(hub: Hub) -> None:
    good = {"id": "good", "kind": "events", "payload": events("i1", memory("i1", "Frames after errors still merge"))}
    bad: list[tuple[str, int]] = [
        ("this is not json", 400),
        (json.dumps({"id": "m", "kind": "events", "payload": events("i1"), "metadata": {}}), 422),
        (json.dumps({"id": "k", "kind": "telepathy", "payload": {}}), 422),
        (json.dumps({"id": "p", "kind": "events", "payload": {"instance_id": "i1"}}), 422),
        (json.dumps({"id": "w", "kind": "events", "payload": events("i2", memory("i2", "wrong instance"))}), 403),
        (json.dumps([1, 2, 3]), 400),
    ]
    with _ws(hub) as ws:
        for text, status in bad:
            ws.send(text)
            ack = json.loads(ws.recv(timeout=20))
            assert ack["ok"] is False, ack
            assert ack["error"]["status"] == status, (text, ack)
            if ack["error"]["status"] == 422 and text.startswith('{"id": "p"'):
                assert "events" in [d["loc"] for d in ack["error"]["details"]]
            assert ack["id"] == (json.loads(text)["id"] if text.startswith("{") else None)
        ws.send(json.dumps(good).encode())  # binary frame -> binary answer
        answer = ws.recv(timeout=20)
        assert isinstance(answer, bytes)
        ack = json.loads(answer)
        assert ack["id"] == "good" and ack["ok"] is True and ack["result"]["memories_added"] == 1


def test_ws_handshake_needs_a_token_of_the_agent(hub: Hub) -> None:
    with pytest.raises(websockets.exceptions.InvalidStatus) as no_token:
        ws_client.connect(f"{hub.ws_url}/v1/agents/ws/ws", compression=None, open_timeout=10)
    assert no_token.value.response.status_code == 401
    assert json.loads(no_token.value.response.body)["error"]["status"] == 401
    with pytest.raises(websockets.exceptions.InvalidStatus) as other:
        _ws(hub, "ws", token=hub.token("other"))
    assert other.value.response.status_code == 403
    with _ws(hub, query=True) as ws:  # ?access_token= works too
        ws.send(json.dumps({"id": 1, "kind": "events", "payload": events("i1")}))
        assert json.loads(ws.recv(timeout=20))["ok"] is True


def test_ws_frame_over_max_body_bytes_closes_with_1009(hub: Hub) -> None:
    frame = json.dumps({"id": 1, "kind": "events", "payload": events("i1", memory("i1", "w " * MAX_BODY))})
    with _ws(hub) as ws:
        ws.send(frame)
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            ws.recv(timeout=20)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
