"""Authentication and authorization against a real hub, and the token CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.sync.client as ws_client
from click.testing import CliRunner
from hub_helpers import auth, batch_body, events_body, memory_event
from websockets.exceptions import InvalidStatus

from experience_sync.cli import build_cli
from experience_sync.hub.web.auth import hash_secret, split_token
from experience_sync.hub.web.server import HubServer
from experience_sync.models import ObservabilityEvent


def _post(hub: HubServer, headers: dict[str, str], body: Any, agent: str = "a1", path: str = "events") -> httpx.Response:
    return httpx.post(f"{hub.url}/v1/agents/{agent}/{path}", json=body, headers=headers)


def test_missing_malformed_and_unknown_tokens_are_401(hub: HubServer) -> None:
    body = events_body("i1")
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        auth("not-a-token"),
        auth("xs_deadbeef_" + "A" * 43),
    ):
        r = _post(hub, headers, body)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["status"] == 401
    for path in ("state", "memories", "skills", "knowledge", "instances", "reviews"):
        assert httpx.get(f"{hub.url}/v1/agents/a1/{path}").status_code == 401


def test_a_secret_paired_with_another_token_id_is_401(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    other = hub.create_token("a1", "i2")
    forged = f"xs_{split_token(other)[0]}_{split_token(token)[1]}"  # type: ignore[index]
    assert _post(hub, auth(forged), events_body("i1")).status_code == 401


def test_revoked_token_is_401(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    assert _post(hub, auth(token), events_body("i1")).status_code == 200
    token_id = split_token(token)[0]  # type: ignore[index]
    assert hub.hub.store.revoke_token(token_id)
    r = _post(hub, auth(token), events_body("i1"))
    assert r.status_code == 401
    assert "revoked" in r.json()["error"]["message"]


def test_tokens_are_stored_hashed(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    token_id, secret = split_token(token)  # type: ignore[misc]
    [record] = hub.hub.store.list_tokens()
    assert record.token_id == token_id
    assert record.token_hash == hash_secret(secret)
    assert secret not in record.token_hash


@pytest.mark.parametrize(
    ("case", "build"),
    [
        ("other agent in path", lambda: ("a2", events_body("i1"))),
        ("other instance in body", lambda: ("a1", events_body("i2"))),
        (
            "one event from another instance",
            lambda: ("a1", {"instance_id": "i1", "events": [memory_event("i1"), memory_event("i2")]}),
        ),
        ("event for another agent", lambda: ("a1", {"instance_id": "i1", "events": [memory_event("i1", agent_id="a2")]})),
    ],
)
def test_writes_beyond_the_token_binding_are_403(hub: HubServer, case: str, build: Any) -> None:
    token = hub.create_token("a1", "i1")
    agent, body = build()
    r = _post(hub, auth(token), body, agent=agent)
    assert r.status_code == 403, (case, r.text)
    assert r.json()["error"]["status"] == 403
    # nothing was written
    assert httpx.get(f"{hub.url}/v1/agents/a1/memories", headers=auth(token)).json()["total"] == 0


def test_batch_and_checkin_instance_must_match_the_token(hub: HubServer) -> None:
    token = hub.create_token("a1", "i1")
    assert _post(hub, auth(token), batch_body("i2"), path="batches").status_code == 403
    assert _post(hub, auth(token), {"instance_id": "i2"}, path="checkins").status_code == 403
    assert _post(hub, auth(token), {"instance_id": "i1"}, path="checkins").status_code == 200


def test_read_scope_reads_but_cannot_write(hub: HubServer) -> None:
    reader = hub.create_token("a1", "dashboard", scope="read")
    r = _post(hub, auth(reader), events_body("dashboard"))
    assert r.status_code == 403
    assert "read scope" in r.json()["error"]["message"]
    assert httpx.get(f"{hub.url}/v1/agents/a1/state", headers=auth(reader)).status_code == 200
    assert httpx.get(f"{hub.url}/v1/agents/a2/state", headers=auth(reader)).status_code == 403
    r = httpx.post(f"{hub.url}/v1/agents/a1/reviews/x", json={"decision": "accept"}, headers=auth(reader))
    assert r.status_code == 403


def test_websocket_handshake_needs_a_valid_token(hub: HubServer) -> None:
    url = f"{hub.ws_url}/v1/agents/a1/ws"
    with pytest.raises(InvalidStatus) as info:
        ws_client.connect(url)
    assert info.value.response.status_code == 401
    token = hub.create_token("a2", "i1")
    with pytest.raises(InvalidStatus) as info:
        ws_client.connect(url, additional_headers=auth(token))
    assert info.value.response.status_code == 403
    reader = hub.create_token("a1", "i1", scope="read")
    with pytest.raises(InvalidStatus) as info:
        ws_client.connect(url, additional_headers=auth(reader))
    assert info.value.response.status_code == 403


def test_rejections_are_observed_without_the_token(hub: HubServer, register_plugin: Any) -> None:
    seen: list[ObservabilityEvent] = []

    class Spy:
        from experience_sync import hookimpl

        @hookimpl
        def experience_sync_observe(self, event: ObservabilityEvent) -> None:
            seen.append(event)

    hub.hub.pm.register(Spy(), name="spy")
    token = hub.create_token("a1", "i1")
    _post(hub, auth(token), events_body("i2"))
    _post(hub, auth(token + "x"), events_body("i1"))
    rejected = [e for e in seen if e.type == "hub.rejected"]
    assert [e.data["status"] for e in rejected] == [403, 401]
    assert all(token not in e.model_dump_json() for e in rejected)
    assert rejected[0].agent_id == "a1" and rejected[0].instance_id == "i1"


def test_no_auth_hub_accepts_requests_without_tokens(make_hub: Any) -> None:
    hub = make_hub(auth=False)
    r = _post(hub, {}, events_body("anyone"))
    assert r.status_code == 200, r.text
    assert httpx.get(f"{hub.url}/healthz").json() == {"status": "ok", "auth": False}


def test_no_auth_refuses_non_loopback_bind(make_hub: Any) -> None:
    from experience_sync.hub.web.server import UnsafeBindError

    with pytest.raises(UnsafeBindError):
        make_hub(auth=False, host="0.0.0.0")
    result = CliRunner().invoke(build_cli(), ["serve", "--no-auth", "--host", "0.0.0.0", "--store", "sqlite:///:memory:"])
    assert result.exit_code == 2
    assert "loopback" in result.output


# ---------------------------------------------------------------------- CLI


def test_token_cli_create_list_revoke(tmp_path: Path, make_hub: Any) -> None:
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    cli = build_cli()
    runner = CliRunner()
    created = runner.invoke(cli, ["token", "create", "--agent", "a1", "--instance", "i1", "--store", store])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"xs_[0-9a-f]+_[A-Za-z0-9_-]{40,}", token)
    token_id, secret = split_token(token)  # type: ignore[misc]

    listed = runner.invoke(cli, ["token", "list", "--store", store])
    assert listed.exit_code == 0
    assert token_id in listed.output and "a1" in listed.output
    assert secret not in listed.output and hash_secret(secret) not in listed.output
    listed_json = runner.invoke(cli, ["token", "list", "--store", store, "--json"])
    assert secret not in listed_json.output and hash_secret(secret) not in listed_json.output

    hub = make_hub(store_url=store)
    assert _post(hub, auth(token), events_body("i1")).status_code == 200
    revoked = runner.invoke(cli, ["token", "revoke", token_id, "--store", store])
    assert revoked.exit_code == 0, revoked.output
    assert _post(hub, auth(token), events_body("i1")).status_code == 401
    assert runner.invoke(cli, ["token", "revoke", "nope", "--store", store]).exit_code == 1


def test_serve_refuses_no_auth_beyond_loopback_as_a_process(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "experience-sync"), "serve", "--no-auth", "--host", "0.0.0.0",
         "--store", f"sqlite:///{tmp_path / 'hub.db'}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "loopback" in proc.stderr


def test_a_review_token_decides_reviews_and_reads_but_cannot_write(make_hub: Any) -> None:
    from experience_sync.config import MergeStrategyConfig

    hub = make_hub(strategy=MergeStrategyConfig(conflict_resolution="manual_review"))
    write = hub.create_token("rv", "i1")
    write2 = hub.create_token("rv", "i2")
    review = hub.create_token("rv", "operator", "review")
    read = hub.create_token("rv", "viewer", "read")
    with httpx.Client(base_url=hub.url, timeout=10) as c:
        for token, inst, text in ((write, "i1", "Order 1234 shipped to Paris"),
                                  (write2, "i2", "Order 9876 shipped to Paris")):
            r = c.post("/v1/agents/rv/events", headers=auth(token),
                       json={"instance_id": inst, "events": [memory_event(inst, text)]})
            assert r.status_code == 200, r.text
        (open_review,) = c.get("/v1/agents/rv/reviews", headers=auth(review)).json()
        path = f"/v1/agents/rv/reviews/{open_review['review_id']}"
        denied = c.post(path, headers=auth(read), json={"decision": "accept"})
        assert denied.status_code == 403 and "review" in denied.json()["error"]["message"]
        decided = c.post(path, headers=auth(review), json={"decision": "accept"})
        assert decided.status_code == 200 and decided.json()["status"] == "accepted"
        refused = c.post("/v1/agents/rv/events", headers=auth(review),
                         json={"instance_id": "operator",
                               "events": [memory_event("operator", "x y z")]})
        assert refused.status_code == 403 and "review scope" in refused.json()["error"]["message"]


def test_token_create_takes_the_review_scope(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/hub.db"
    result = CliRunner().invoke(build_cli(), ["token", "create", "--agent", "a", "--instance",
                                              "op", "--scope", "review", "--store", url])
    assert result.exit_code == 0, result.output
    listed = CliRunner().invoke(build_cli(), ["token", "list", "--store", url])
    assert "review" in listed.output
