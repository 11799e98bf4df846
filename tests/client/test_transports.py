"""The https and websocket transports against real loopback servers that misbehave."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from client_helpers import FaultHub, make_config

from experience_sync import ExperienceSyncManager
from experience_sync.client.transports.https import HttpsTransport
from experience_sync.client.transports.websocket import WebSocketTransport, ws_url
from experience_sync.errors import ConfigError, RejectedError, RetryableError
from experience_sync.interfaces import SyncRequest
from experience_sync.models import EventsRequest, ExperienceBatch, ExperienceEvent


def _event(i: int) -> ExperienceEvent:
    return ExperienceEvent(
        source_instance="inst-1", event_type="memory", priority=0.9,
        data={"content": f"memory {i}"}, sequence=i,
    )


def _events_request(*ids: int) -> SyncRequest:
    payload = EventsRequest(instance_id="inst-1", events=[_event(i) for i in ids])
    return SyncRequest("events", "agent", payload, meta={"backlog": "7", "protocol": "streaming"})


def _https(url: str, **https: Any) -> HttpsTransport:
    cfg = make_config(transport={"https": {"endpoint": url, "auth_token": "tok-1", **https}})
    return HttpsTransport(cfg, "agent")


def _ws(url: str, window: int = 16) -> WebSocketTransport:
    cfg = make_config(transport={"type": "websocket",
                                 "websocket": {"url": url, "auth_token": "tok-ws",
                                               "window": window}})
    return WebSocketTransport(cfg, "agent")


# ----------------------------------------------------------------------------- https


def test_https_sends_token_headers_and_meta(fault_hub: FaultHub) -> None:
    t = _https(fault_hub.url, headers={"X-Team": "blue"})
    result = t.send(_events_request(1, 2), timeout=10)
    assert len(result.accepted_event_ids) == 2
    meta = fault_hub.requests[0]["meta"]
    assert meta["authorization"] == "Bearer tok-1"
    assert meta["x-experience-sync-backlog"] == "7"
    assert meta["x-experience-sync-protocol"] == "streaming"
    assert meta["x-experience-sync-transport"] == "https"
    t.close()


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_https_compresses_batches(fault_hub: FaultHub, codec: str) -> None:
    t = _https(fault_hub.url)
    now = datetime.now(timezone.utc)
    batch = ExperienceBatch(instance_id="inst-1", timestamp_start=now, timestamp_end=now,
                            events=[_event(i) for i in range(50)], compression=codec)
    result = t.send(SyncRequest("batch", "agent", batch, compression=codec), timeout=10)
    assert result.events_received == 50
    assert fault_hub.requests[0]["meta"]["content-encoding"] == codec
    t.close()


def test_https_retries_503_honouring_retry_after(fault_hub: FaultHub) -> None:
    fault_hub.http_faults = [("status", 503, {"Retry-After": "0.2"}), ("status", 429, {}),
                             ("status", 502, {})]
    retries: list[tuple[int, float, int | None]] = []
    t = _https(fault_hub.url)
    t.on_retry = lambda attempt, delay, reason, status: retries.append((attempt, delay, status))
    result = t.send(_events_request(1), timeout=20)
    assert len(result.accepted_event_ids) == 1
    assert [r[2] for r in retries] == [503, 429, 502]
    assert retries[0][1] == pytest.approx(0.2)
    t.close()


def test_https_gives_up_at_the_deadline_with_a_retryable_error(fault_hub: FaultHub) -> None:
    fault_hub.http_faults = [("status", 503, {"Retry-After": "30"})]
    t = _https(fault_hub.url)
    with pytest.raises(RetryableError) as info:
        t.send(_events_request(1), timeout=2)
    assert info.value.status_code == 503 and info.value.retry_after == 30
    t.close()


@pytest.mark.parametrize("status", [400, 401, 403, 413, 422, 501])
def test_https_fails_fast_on_client_errors(fault_hub: FaultHub, status: int) -> None:
    fault_hub.http_faults = [("status", status, {})]
    t = _https(fault_hub.url)
    with pytest.raises(RejectedError) as info:
        t.send(_events_request(1), timeout=20)
    assert info.value.status_code == status
    assert len(fault_hub.http_faults) == 0 and fault_hub.requests == []  # one attempt only
    t.close()


def test_https_retries_slow_answers(fault_hub: FaultHub) -> None:
    fault_hub.http_faults = [("sleep", 3.0)]
    t = _https(fault_hub.url, timeout=1.0)
    # The slow answer exceeds the 1 s deadline: retryable, rows would stay.
    with pytest.raises(RetryableError):
        t.send(_events_request(1), timeout=1.0)
    # With a longer deadline the next attempt succeeds.
    assert t.send(_events_request(2), timeout=10).accepted_event_ids
    t.close()


def test_https_survives_connection_resets(fault_hub: FaultHub, reset_proxy: Any) -> None:
    port = int(fault_hub.url.rsplit(":", 1)[1])
    proxy = reset_proxy(port, 3)
    t = _https(f"http://127.0.0.1:{proxy.port}")
    result = t.send(_events_request(1, 2, 3), timeout=20)
    assert len(result.accepted_event_ids) == 3
    assert proxy.accepted >= 4
    t.close()


def test_https_fetch_state(fault_hub: FaultHub) -> None:
    t = _https(fault_hub.url)
    state = t.fetch_state(since=5)
    assert state.agent_id == "agent"
    t.close()


def test_plain_http_only_to_loopback() -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        make_config(transport={"https": {"endpoint": "http://hub.example.com"}})
    cfg = make_config(transport={"https": {"endpoint": "http://hub.example.com",
                                           "allow_insecure_http": True}})
    HttpsTransport(cfg, "a").close()
    with pytest.raises(ConfigError, match="endpoint"):
        HttpsTransport(make_config(), "a")


# ----------------------------------------------------------------------------- websocket


def test_ws_url_gets_the_agent_path() -> None:
    assert ws_url("ws://h:1", "a b") == "ws://h:1/v1/agents/a%20b/ws"
    assert ws_url("wss://h/v1/agents/x/ws", "x") == "wss://h/v1/agents/x/ws"


def test_ws_pipelines_within_the_window(fault_hub: FaultHub) -> None:
    t = _ws(fault_hub.ws_url, window=4)
    results = t.send_many([_events_request(i) for i in range(20)], timeout=10)
    assert all(not isinstance(r, BaseException) for r in results)
    assert len(fault_hub.unique()) == 20
    assert fault_hub.requests[0]["meta"]["authorization"] == "Bearer tok-ws"
    assert fault_hub.requests[0]["meta"]["transport"] == "websocket"
    assert fault_hub.requests[0]["meta"]["backlog"] == "7"
    t.close()


def test_ws_resends_unacknowledged_after_a_drop(fault_hub: FaultHub) -> None:
    fault_hub.ws_faults = [("ok",), ("ok",), ("drop",)]
    t = _ws(fault_hub.ws_url, window=8)
    results = t.send_many([_events_request(i) for i in range(10)], timeout=20)
    assert all(not isinstance(r, BaseException) for r in results)
    assert len(fault_hub.unique()) == 10
    assert fault_hub.connections == 2
    t.close()


def test_ws_reconnects_after_a_server_restart(fault_hub: FaultHub) -> None:
    t = _ws(fault_hub.ws_url)
    assert t.send(_events_request(1), timeout=10).accepted_event_ids
    server = fault_hub.server  # type: ignore[attr-defined]
    server.stop()
    server.start()
    assert t.send(_events_request(2), timeout=20).accepted_event_ids
    assert fault_hub.connections == 2
    t.close()


def test_ws_error_acks(fault_hub: FaultHub) -> None:
    fault_hub.ws_faults = [("error", 422), ("error", 503)]
    t = _ws(fault_hub.ws_url)
    first, second, third = t.send_many([_events_request(i) for i in range(3)], timeout=10)
    assert isinstance(first, RejectedError) and first.status_code == 422
    assert isinstance(second, RetryableError) and second.status_code == 503
    assert not isinstance(third, BaseException)
    t.close()


def test_ws_gives_up_when_nobody_listens() -> None:
    t = _ws("ws://127.0.0.1:9")
    [result] = t.send_many([_events_request(1)], timeout=1.0)
    assert isinstance(result, RetryableError)
    t.close()


# ----------------------------------------------------------------------------- through the manager


@pytest.mark.parametrize("transport", ["https", "websocket"])
def test_manager_delivers_through_faults(fault_hub: FaultHub, tmp_path: Path,
                                         transport: str) -> None:
    fault_hub.http_faults = [("status", 503, {"Retry-After": "0.1"}), ("sleep", 0.2)]
    fault_hub.ws_faults = [("drop",), ("ok",), ("drop",)]
    cfg = make_config(transport={"type": transport, "https": {"auth_token": "t"}},
                      streaming={"interval_ms": 20, "batch_size": 5})
    m = ExperienceSyncManager(cfg, data_dir=tmp_path)
    endpoint = fault_hub.url if transport == "https" else fault_hub.ws_url
    m.initialize_sync("inst-1", "streaming", agent_id="agent", endpoint=endpoint)
    ids = {m.record_memory("inst-1", f"m{i}", importance=0.9).event_id for i in range(40)}
    assert m.flush(timeout=30)
    assert fault_hub.unique() == ids
    status = m.status("inst-1")
    assert status.delivered == 40 and status.transport == transport
    if transport == "https":
        assert status.retries >= 1
    assert m.pull("agent").agent_id == "agent"
    assert m.shutdown(5)


def test_https_stops_a_run_of_sends_at_the_first_exhausted_retry(fault_hub: FaultHub) -> None:
    fault_hub.http_faults = [("ok",), ("status", 503, {"Retry-After": "30"})]
    t = _https(fault_hub.url)
    results = t.send_many([_events_request(i) for i in range(5)], timeout=1.0)
    assert not isinstance(results[0], BaseException)
    assert all(isinstance(r, RetryableError) for r in results[1:])
    assert len(fault_hub.requests) == 1  # the last three were not attempted
    t.close()
