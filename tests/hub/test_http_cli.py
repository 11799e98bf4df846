"""Hub CLI commands that work on a store: review, replay, state, and serve as a real process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner
from hub_helpers import auth, batch_body, events_body, memory_event

from experience_sync.cli import build_cli
from experience_sync.config import MergeStrategyConfig
from experience_sync.models import new_id


def _characteristic(instance: str, value: str, minutes: int) -> dict[str, Any]:
    return {
        "event_id": new_id(),
        "timestamp": (datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=minutes)).isoformat(),
        "source_instance": instance,
        "event_type": "characteristic",
        "data": {"key": "tone", "value": value, "confidence": 0.9},
    }


def _seed(make_hub: Any, store: str, strategy: MergeStrategyConfig | None = None) -> None:
    hub = make_hub(store_url=store, strategy=strategy)
    for instance, value, minute in (("i1", "formal", 0), ("i2", "casual", 1)):
        token = hub.create_token("a1", instance)
        body = events_body(instance, 3)
        body["events"].append(_characteristic(instance, value, minute))
        r = httpx.post(f"{hub.url}/v1/agents/a1/events", json=body, headers=auth(token))
        assert r.status_code == 200, r.text
    hub.close()


def test_review_list_accept_reject(tmp_path: Path, make_hub: Any) -> None:
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    config = tmp_path / "hub.toml"
    config.write_text('[merge_strategy]\nconflict_resolution = "manual_review"\n')
    _seed(make_hub, store, MergeStrategyConfig(conflict_resolution="manual_review"))
    cli, runner = build_cli(), CliRunner()
    listed = runner.invoke(cli, ["review", "list", "--agent", "a1", "--store", store, "--json"])
    assert listed.exit_code == 0, listed.output
    [review] = json.loads(listed.output)
    assert review["status"] == "open" and review["kind"] == "characteristic"
    text = runner.invoke(cli, ["review", "list", "--agent", "a1", "--store", store])
    assert review["review_id"] in text.output
    accepted = runner.invoke(
        cli, ["review", "accept", review["review_id"], "--agent", "a1", "--store", store, "--config", str(config)]
    )
    assert accepted.exit_code == 0, accepted.output
    assert "accepted" in accepted.output
    state = json.loads(runner.invoke(cli, ["state", "--agent", "a1", "--store", store]).output)
    assert state["characteristics"]["tone"]["value"] == "casual"
    assert runner.invoke(cli, ["review", "reject", "nope", "--agent", "a1", "--store", store]).exit_code == 1


def test_replay_into_a_new_store_reproduces_the_state(tmp_path: Path, make_hub: Any) -> None:
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    _seed(make_hub, store)
    cli, runner = build_cli(), CliRunner()
    live = json.loads(runner.invoke(cli, ["state", "--agent", "a1", "--store", store]).output)
    into = f"sqlite:///{tmp_path / 'replayed.db'}"
    replayed = runner.invoke(cli, ["replay", "--agent", "a1", "--store", store, "--into", into])
    assert replayed.exit_code == 0, replayed.output
    summary = json.loads(replayed.output)
    assert summary["memories"] == len(live["memories"]) == 6
    again = json.loads(runner.invoke(cli, ["state", "--agent", "a1", "--store", into]).output)
    assert again["memories"] == live["memories"]
    assert again["characteristics"] == live["characteristics"]
    # another strategy, in place
    in_place = runner.invoke(
        cli, ["replay", "--agent", "a1", "--store", store, "--strategy", "manual_review", "--threshold", "0.9"]
    )
    assert in_place.exit_code == 0, in_place.output
    assert json.loads(in_place.output)["open_reviews"] == 1
    bad = runner.invoke(cli, ["replay", "--agent", "a1", "--store", store, "--strategy", "coin_flip"])
    assert bad.exit_code == 1
    assert "coin_flip" in bad.output


def test_a_hub_on_a_replayed_store_still_knows_applied_units_and_instances(
    tmp_path: Path, make_hub: Any
) -> None:
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    old = make_hub(store_url=store)
    token = old.create_token("a1", "i1")
    batch = batch_body("i1", 3)
    checkin = {"checkin_id": new_id(), "instance_id": "i1", "events": [memory_event("i1")]}
    headers = {**auth(token), "X-Experience-Sync-Backlog": "7"}
    for path, body in (("batches", batch), ("checkins", checkin)):
        first = httpx.post(f"{old.url}/v1/agents/a1/{path}", json=body, headers=headers)
        assert first.status_code == 200, first.text
        assert first.json()["duplicate"] is False
    resent_before = {
        path: httpx.post(f"{old.url}/v1/agents/a1/{path}", json=body, headers=auth(token)).json()
        for path, body in (("batches", batch), ("checkins", checkin))
    }
    instances = httpx.get(f"{old.url}/v1/agents/a1/instances", headers=auth(token)).json()
    live = httpx.get(f"{old.url}/v1/agents/a1/state", headers=auth(token)).json()
    old.close()

    into = f"sqlite:///{tmp_path / 'replayed.db'}"
    replayed = CliRunner().invoke(build_cli(), ["replay", "--agent", "a1", "--store", store, "--into", into])
    assert replayed.exit_code == 0, replayed.output

    new = make_hub(store_url=into)
    token = new.create_token("a1", "i1")  # tokens stay with the old store
    for path, body in (("batches", batch), ("checkins", checkin)):
        again = httpx.post(f"{new.url}/v1/agents/a1/{path}", json=body, headers=auth(token))
        assert again.status_code == 200, again.text
        assert again.json()["duplicate"] is True
        assert again.json() == resent_before[path]
    assert resent_before["batches"]["memories_added"] == 3
    assert len(resent_before["batches"]["accepted_event_ids"]) == 3
    assert httpx.get(f"{new.url}/v1/agents/a1/instances", headers=auth(token)).json() == instances
    assert instances[0]["instance_id"] == "i1" and instances[0]["backlog"] == 7
    state = httpx.get(f"{new.url}/v1/agents/a1/state", headers=auth(token)).json()
    assert state["cursor"] == live["cursor"] and state["memories"] == live["memories"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_a_hub_process(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    exe = str(Path(sys.executable).parent / "experience-sync")
    token = subprocess.run(
        [exe, "token", "create", "--agent", "a1", "--instance", "i1", "--store", store],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()
    port = _free_port()
    env = {**os.environ, "EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(port), "--store", store, "--max-body-bytes", "100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        r = httpx.post(
            f"{url}/v1/agents/a1/events?access_token=ignored", json=events_body("i1", 2), headers=auth(token)
        )
        assert r.status_code == 200, r.text
        assert httpx.post(f"{url}/v1/agents/a1/events", json=events_body("i1", 800), headers=auth(token)).status_code == 413
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    log = out.decode() + err.decode()
    assert "POST /v1/agents/a1/events" in log  # the access log is on
    assert token not in log
    assert "access_token=REDACTED" in log
