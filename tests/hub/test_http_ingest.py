"""HTTP ingestion against a real hub: results after commit, duplicates, compression, limits, malformed bodies."""

from __future__ import annotations

import gzip
from typing import Any

import httpx
import orjson
import pytest
import zstandard
from hub_helpers import auth, batch_body, events_body, memory_event

from experience_sync.hub.web.app import HubLimits
from experience_sync.hub.web.server import HubServer


def _post(hub: HubServer, token: str, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(f"{hub.url}/v1/agents/a1/{path}", json=body, headers=auth(token), **kw)


def test_events_are_merged_and_answered_with_the_result(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    body = events_body("i1", 3)
    r = _post(hub, token, "events", body)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["events_received"] == 3
    assert sorted(result["accepted_event_ids"]) == sorted(e["event_id"] for e in body["events"])
    # committed before the answer: a read right after sees it
    page = httpx.get(f"{hub.url}/v1/agents/a1/memories", headers=auth(token)).json()
    assert page["total"] == 3


def test_duplicate_events_are_acknowledged_without_effect(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    body = events_body("i1", 2)
    first = _post(hub, token, "events", body).json()
    again = _post(hub, token, "events", body).json()
    assert first["memories_added"] == 2
    assert again["memories_added"] == 0
    assert sorted(again["duplicate_event_ids"]) == sorted(first["accepted_event_ids"])
    page = httpx.get(f"{hub.url}/v1/agents/a1/memories", headers=auth(token)).json()
    assert page["total"] == 2


def test_duplicate_batch_is_acknowledged_as_duplicate(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    batch = batch_body("i1", 4)
    first = _post(hub, token, "batches", batch).json()
    again = _post(hub, token, "batches", batch).json()
    assert first["duplicate"] is False and first["memories_added"] == 4
    assert again["duplicate"] is True
    state = httpx.get(f"{hub.url}/v1/agents/a1/state", headers=auth(token)).json()
    assert len(state["memories"]) == 4


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_compressed_batches_are_accepted(hub: HubServer, encoding: str) -> None:
    token = hub.create_token("a1", "i1")
    raw = orjson.dumps(batch_body("i1", 5))
    data = gzip.compress(raw) if encoding == "gzip" else zstandard.ZstdCompressor().compress(raw)
    r = httpx.post(
        f"{hub.url}/v1/agents/a1/batches",
        content=data,
        headers={**auth(token), "Content-Encoding": encoding, "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["memories_added"] == 5


def test_multi_member_gzip_is_accepted(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    raw = orjson.dumps(batch_body("i1", 2))
    data = gzip.compress(raw[:40]) + gzip.compress(raw[40:])
    r = httpx.post(
        f"{hub.url}/v1/agents/a1/batches",
        content=data,
        headers={**auth(token), "Content-Encoding": "gzip"},
    )
    assert r.status_code == 200, r.text


def test_checkin_with_events(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    body = {"instance_id": "i1", "events": [memory_event("i1")], "summary": {"memories": 1}}
    r = _post(hub, token, "checkins", body)
    assert r.status_code == 200, r.text
    assert r.json()["unit_id"]


def test_ingest_headers_feed_instances(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    headers = {**auth(token), "X-Experience-Sync-Backlog": "42", "X-Experience-Sync-Protocol": "streaming"}
    r = httpx.post(f"{hub.url}/v1/agents/a1/events", json=events_body("i1"), headers=headers)
    assert r.status_code == 200
    [inst] = httpx.get(f"{hub.url}/v1/agents/a1/instances", headers=auth(token)).json()
    assert inst["instance_id"] == "i1"
    assert inst["backlog"] == 42
    assert inst["protocol"] == "streaming"
    assert inst["transport"] == "https"


# ---------------------------------------------------------------------- limits


def test_oversized_body_is_413(make_hub: Any) -> None:
    hub = make_hub(limits=HubLimits(max_body_bytes=20_000))
    token = hub.create_token("a1", "i1")
    r = _post(hub, token, "events", events_body("i1", 200))
    assert r.status_code == 413
    assert r.json()["error"]["status"] == 413


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_compression_bomb_is_413(make_hub: Any, encoding: str) -> None:
    hub = make_hub(limits=HubLimits(max_body_bytes=1_000_000, max_decompressed_bytes=1_000_000))
    token = hub.create_token("a1", "i1")
    bomb_raw = b'{"instance_id": "i1", "events": [], "pad": "' + b" " * 50_000_000 + b'"}'
    bomb = gzip.compress(bomb_raw, 9) if encoding == "gzip" else zstandard.ZstdCompressor(level=19).compress(bomb_raw)
    assert len(bomb) < 1_000_000
    r = httpx.post(
        f"{hub.url}/v1/agents/a1/batches",
        content=bomb,
        headers={**auth(token), "Content-Encoding": encoding},
    )
    assert r.status_code == 413
    assert "decompressed" in r.json()["error"]["message"]


def test_unknown_content_encoding_is_415(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    r = httpx.post(
        f"{hub.url}/v1/agents/a1/batches",
        content=b"xx",
        headers={**auth(token), "Content-Encoding": "br"},
    )
    assert r.status_code == 415


def test_corrupt_gzip_is_400(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    r = httpx.post(
        f"{hub.url}/v1/agents/a1/batches",
        content=b"\x1f\x8b not gzip at all",
        headers={**auth(token), "Content-Encoding": "gzip"},
    )
    assert r.status_code == 400


# ---------------------------------------------------------------------- malformed bodies


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["events"][0]["data"].pop("content"), "events.0.data.content"),
        (lambda b: b["events"][0]["data"].update(importance=3), "events.0.data.importance"),
        (lambda b: b["events"][0].update(event_type="dream"), "events.0.event_type"),
        (lambda b: b["events"][0].update(priority="high"), "events.0.priority"),
        (lambda b: b["events"][0].pop("source_instance"), "events.0.source_instance"),
        (lambda b: b.pop("events"), "events"),
        (lambda b: b.update(events="nope"), "events"),
        (lambda b: b.update(unexpected=1), "unexpected"),
    ],
)
def test_malformed_bodies_are_422_naming_the_field(hub: HubServer, mutate: Any, field: str) -> None:
    token = hub.create_token("a1", "i1")
    body = events_body("i1", 1)
    mutate(body)
    r = _post(hub, token, "events", body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["status"] == 422
    assert field in [d["loc"] for d in error["details"]], error
    assert field in error["message"]


@pytest.mark.parametrize("raw", [b"", b"{", b"[1, 2", b"\xff\xfe", b"null", b"[]", b"42", b'"x"'])
def test_garbage_bodies_are_400_or_422_never_500(hub: HubServer, raw: bytes) -> None:
    token = hub.create_token("a1", "i1")
    for path in ("events", "batches", "checkins"):
        r = httpx.post(
            f"{hub.url}/v1/agents/a1/{path}",
            content=raw,
            headers={**auth(token), "Content-Type": "application/json"},
        )
        assert r.status_code in (400, 422), (path, raw, r.status_code, r.text)
        assert r.json()["error"]["status"] == r.status_code


def test_bad_backlog_header_is_400(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    r = httpx.post(
        f"{hub.url}/v1/agents/a1/events",
        json=events_body("i1"),
        headers={**auth(token), "X-Experience-Sync-Backlog": "-3"},
    )
    assert r.status_code == 400


def test_oversized_streamed_body_is_413(make_hub: Any) -> None:
    hub = make_hub(limits=HubLimits(max_body_bytes=1_000_000))
    token = hub.create_token("a1", "i1")
    chunk = b" " * 65536

    def body() -> Any:  # no Content-Length: the hub must count as it reads
        yield b'{"instance_id": "i1", "events": [], "pad": "'
        for _ in range(80):
            yield chunk
        yield b'"}'

    r = httpx.post(f"{hub.url}/v1/agents/a1/batches", content=body(), headers=auth(token), timeout=60)
    assert r.status_code == 413


def test_tls(make_hub: Any, tmp_path: Any) -> None:
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    hub = make_hub(ssl_certfile=str(cert), ssl_keyfile=str(key))
    assert hub.url.startswith("https://")
    token = hub.create_token("a1", "i1")
    context = ssl.create_default_context(cafile=str(cert))
    r = httpx.post(f"{hub.url}/v1/agents/a1/events", json=events_body("i1"), headers=auth(token), verify=context)
    assert r.status_code == 200, r.text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{hub.url}/healthz")  # not trusted by default


@pytest.mark.parametrize("value", ["-3", str(2**63), "9" * 5000, "1" + "0" * 30, ""])
def test_backlog_header_out_of_range_is_400_and_not_stored(hub: HubServer, value: str) -> None:
    token = hub.create_token("a1", "i1")
    r = httpx.post(f"{hub.url}/v1/agents/a1/events", json=events_body("i1"),
                   headers={**auth(token), "X-Experience-Sync-Backlog": value})
    assert r.status_code == 400, r.text
    assert "X-Experience-Sync-Backlog" in r.json()["error"]["message"]
    assert httpx.get(f"{hub.url}/v1/agents/a1/instances", headers=auth(token)).json() == []


def test_largest_backlog_header_is_stored(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    headers = {**auth(token), "X-Experience-Sync-Backlog": f"00{2**63 - 1}"}
    r = httpx.post(f"{hub.url}/v1/agents/a1/events", json=events_body("i1"), headers=headers)
    assert r.status_code == 200, r.text
    [inst] = httpx.get(f"{hub.url}/v1/agents/a1/instances", headers=auth(token)).json()
    assert inst["backlog"] == 2**63 - 1


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"summary": {"memories": -1}}, "summary.memories"),
        ({"summary": {"last_sequence": -5}}, "summary.last_sequence"),
        ({"summary": {"knowledge": 2**63}}, "summary.knowledge"),
        ({"summary": {"stats": {"events_refused": -2}}}, "summary.stats.events_refused"),
        ({"state": {"stats": {"events_recorded": -1}}}, "state.stats.events_recorded"),
    ],
)
def test_negative_or_huge_checkin_counts_are_422_naming_the_field(
    hub: HubServer, body: dict[str, Any], loc: str
) -> None:
    token = hub.create_token("a1", "i1")
    r = _post(hub, token, "checkins", {"instance_id": "i1", **body})
    assert r.status_code == 422, r.text
    assert [d["loc"] for d in r.json()["error"]["details"]] == [loc]
    assert httpx.get(f"{hub.url}/v1/agents/a1/instances", headers=auth(token)).json() == []


def test_checkin_counts_at_the_bounds_are_accepted(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    top = 2**63 - 1
    summary = {"memories": 0, "skills": top, "knowledge": 0, "last_sequence": top,
               "stats": {"events_recorded": top, "events_delivered": 0}}
    assert _post(hub, token, "checkins", {"instance_id": "i1", "summary": summary}).status_code == 200


def test_an_agent_with_too_many_units_waiting_answers_503_with_retry_after(
    make_hub: Any, register_plugin: Any
) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from experience_sync import hookimpl
    from experience_sync.models import ObservabilityEvent

    entered, release = threading.Event(), threading.Event()

    class Slow:
        # Holds the first unit inside the hub (observers run before it answers).
        @hookimpl
        def experience_sync_observe(self, event: ObservabilityEvent) -> None:
            if event.type == "sync.event" and event.agent_id == "a1":
                entered.set()
                release.wait(30)

    hub = make_hub(limits=HubLimits(max_pending=1, retry_after_seconds=2))
    register_plugin(Slow(), name="slow-observer")
    token = hub.create_token("a1", "i1")
    url = f"{hub.url}/v1/agents/a1/events"
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, url, json=events_body("i1"), headers=auth(token), timeout=60)
        assert entered.wait(30)
        busy = httpx.post(url, json=events_body("i1"), headers=auth(token), timeout=30)
        assert busy.status_code == 503, busy.text
        assert busy.headers["retry-after"] == "2"
        assert busy.json()["error"]["status"] == 503
        # Another agent is not held up by a1's queue.
        other = hub.create_token("a2", "i1")
        assert httpx.post(f"{hub.url}/v1/agents/a2/events", json=events_body("i1"),
                          headers=auth(other), timeout=30).status_code == 200
        release.set()
        assert first.result().status_code == 200
    again = httpx.post(url, json=events_body("i1"), headers=auth(token), timeout=30)
    assert again.status_code == 200, again.text
    metrics = httpx.get(f"{hub.url}/metrics", headers=auth(token)).text
    assert 'status="503"' in metrics


def test_a_unit_that_keeps_losing_commit_races_answers_503_and_merges_on_resend(
    make_hub: Any, register_plugin: Any, tmp_path: Any
) -> None:
    # A store shared by several hubs (agent_version is not None) where other
    # hubs win every commit for a while: the hub gives up with 503 and
    # Retry-After, having written nothing, and the resent unit merges once.
    from experience_sync import hookimpl
    from experience_sync.errors import StaleStateError
    from experience_sync.stores.sqlite import SQLiteStore
    from experience_sync.stores.state import ChangeSet

    losing = {"on": True}

    class RacingStore(SQLiteStore):
        def __init__(self, url: str) -> None:
            super().__init__(url.replace("racing:", "sqlite:", 1))

        def agent_version(self, agent_id: str) -> int | None:
            return 0

        def commit(self, agent_id: str, changes: ChangeSet) -> None:
            if losing["on"] and changes.log:
                raise StaleStateError(f"agent {agent_id} moved on")
            super().commit(agent_id, changes)

    class Racing:
        @hookimpl
        def experience_sync_register_stores(self, register: Any) -> None:
            register("racing", RacingStore)

    register_plugin(Racing(), name="racing-store")
    hub = make_hub(store_url=f"racing:///{tmp_path / 'hub.db'}")
    token = hub.create_token("a1", "i1")
    body = events_body("i1")
    busy = _post(hub, token, "events", body)
    assert busy.status_code == 503, busy.text
    assert busy.headers["retry-after"] == "1"
    assert "busy on other hubs" in busy.json()["error"]["message"]
    losing["on"] = False
    ok = _post(hub, token, "events", body)
    assert ok.status_code == 200, ok.text
    assert ok.json()["accepted_event_ids"] == [ev["event_id"] for ev in body["events"]]
    assert _post(hub, token, "events", body).json()["duplicate_event_ids"] == [
        ev["event_id"] for ev in body["events"]
    ]
