"""Knowledge under dissent, through a real hub's wire API (docs/merging.md).

Each instance's latest report about an item is one vote for one content; the
content most instances verify stands (and integrates by the usual rule), the
others are kept as ``alternatives`` with their verifications. A tie goes to
the conflict strategy, and under ``manual_review`` to a reviewer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from experience_sync.api import MergeStrategyConfig
from experience_sync.hub.engine import open_store
from experience_sync.hub.replay import replay
from experience_sync.hub.web.server import HubServer

AGENT = "support-bot"
SUBJECT = "office city"
LYON = "The office is in Lyon"
NANTES = "The office is in Nantes"


def report(hub: HubServer, instance: str, content: str, minute: int,
           confidence: float = 0.7, agent: str = AGENT) -> dict[str, Any]:
    """One instance's knowledge report about the office, at 12:<minute>; the MergeResult."""
    body = {"instance_id": instance, "events": [{
        "event_id": f"{instance}-{minute}", "event_type": "knowledge",
        "timestamp": f"2026-03-01T12:{minute:02d}:00Z", "source_instance": instance,
        "data": {"subject": SUBJECT, "content": content, "confidence": confidence},
    }]}
    r = httpx.post(f"{hub.url}/v1/agents/{agent}/events", json=body,
                   headers=_auth(hub, agent, instance), timeout=30)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def _auth(hub: HubServer, agent: str, instance: str = "reader") -> dict[str, str]:
    return {"Authorization": f"Bearer {hub.create_token(agent, instance)}"}


def item(hub: HubServer, agent: str = AGENT) -> dict[str, Any]:
    r = httpx.get(f"{hub.url}/v1/agents/{agent}/knowledge", headers=_auth(hub, agent), timeout=30)
    assert r.status_code == 200, r.text
    [found] = r.json()
    return dict(found)


def alternatives(found: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return [(a["content"], sorted(a["verifications"])) for a in found["alternatives"]]


def test_two_verifications_outweigh_one_dissent(hub: HubServer) -> None:
    report(hub, "i1", LYON, 1)
    assert report(hub, "i2", LYON, 2)["knowledge_integrated"] == 1
    r = report(hub, "i3", NANTES, 3)  # later, but alone
    assert r["conflicts"] == {"total": 1, "resolved": 1, "queued": 0}
    assert r["knowledge_added"] == r["knowledge_verified"] == r["knowledge_integrated"] == 0
    found = item(hub)
    assert found["content"] == LYON and found["status"] == "integrated"
    assert sorted(found["verifications"]) == ["i1", "i2"]
    assert found["confidence"] == pytest.approx(0.91)
    assert alternatives(found) == [(NANTES, ["i3"])]
    assert found["alternatives"][0]["confidence"] == pytest.approx(0.7)
    # the dissent is never integrated knowledge, nor the item's content
    pending = httpx.get(f"{hub.url}/v1/agents/{AGENT}/knowledge", params={"status": "pending"},
                        headers=_auth(hub, AGENT), timeout=30).json()
    assert pending == []


def test_one_against_one_goes_to_the_strategy_and_keeps_both(
    make_hub: Callable[..., HubServer],
) -> None:
    hub = make_hub()  # latest_wins
    # the same two reports, in both arrival orders, to two agents
    report(hub, "i1", LYON, 1, agent="ab")
    r = report(hub, "i2", NANTES, 2, agent="ab")
    assert r["conflicts"] == {"total": 1, "resolved": 1, "queued": 0}
    report(hub, "i2", NANTES, 2, agent="ba")
    report(hub, "i1", LYON, 1, agent="ba")
    for agent in ("ab", "ba"):
        found = item(hub, agent)
        assert found["content"] == NANTES, agent  # the later report, whatever the order
        assert found["status"] == "pending" and sorted(found["verifications"]) == ["i2"]
        assert alternatives(found) == [(LYON, ["i1"])]  # kept, not lost

    manual = make_hub(strategy=MergeStrategyConfig(conflict_resolution="manual_review"))
    report(manual, "i1", LYON, 1)
    r = report(manual, "i2", NANTES, 2)
    assert r["conflicts"] == {"total": 1, "resolved": 0, "queued": 1}
    found = item(manual)
    assert found["content"] == LYON and found["alternatives"] == []  # nothing applied yet
    [review] = httpx.get(f"{manual.url}/v1/agents/{AGENT}/reviews",
                         headers=_auth(manual, AGENT), timeout=30).json()
    assert review["kind"] == "knowledge" and review["proposed"]["value"] == NANTES
    r2 = httpx.post(f"{manual.url}/v1/agents/{AGENT}/reviews/{review['review_id']}",
                    json={"decision": "accept"}, headers=_auth(manual, AGENT), timeout=30)
    assert r2.status_code == 200, r2.text
    found = item(manual)
    assert found["content"] == NANTES and alternatives(found) == [(LYON, ["i1"])]
    # a third instance for Lyon outweighs the reviewer's choice of a tie
    report(manual, "i3", LYON, 3)
    found = item(manual)
    assert found["content"] == LYON and found["status"] == "integrated"
    assert alternatives(found) == [(NANTES, ["i2"])]


def test_a_dissent_that_gains_more_verifications_takes_over(
    make_hub: Callable[..., HubServer], tmp_path: Path,
) -> None:
    store_url = f"sqlite:///{tmp_path}/hub.db"
    hub = make_hub(store_url=store_url)
    report(hub, "i1", LYON, 1)
    report(hub, "i2", LYON, 2)
    report(hub, "i3", NANTES, 3)
    assert item(hub)["content"] == LYON
    report(hub, "i4", NANTES, 4)  # 2 against 2: latest_wins takes the later content
    found = item(hub)
    assert found["content"] == NANTES and sorted(found["verifications"]) == ["i3", "i4"]
    assert alternatives(found) == [(LYON, ["i1", "i2"])]
    r = report(hub, "i5", NANTES, 5)  # 3 against 2: the evidence
    assert r["conflicts"] == {"total": 0, "resolved": 0, "queued": 0}  # agreeing, no conflict
    found = item(hub)
    assert found["content"] == NANTES and found["status"] == "integrated"
    assert sorted(found["verifications"]) == ["i3", "i4", "i5"]
    assert found["integrated_at"].startswith("2026-03-01T12:04")  # i3 + i4 reached 0.91
    assert alternatives(found) == [(LYON, ["i1", "i2"])]
    # an instance that changes its mind moves its one vote
    r = report(hub, "i3", LYON, 6)
    assert r["conflicts"] == {"total": 1, "resolved": 1, "queued": 0}
    found = item(hub)
    assert found["content"] == LYON and sorted(found["verifications"]) == ["i1", "i2", "i3"]
    assert found["status"] == "integrated"
    assert alternatives(found) == [(NANTES, ["i4", "i5"])]
    # an older report of i3's, arriving late, is no vote: i3 said Lyon since
    report(hub, "i3", NANTES, 0)
    late = item(hub)
    assert late["first_seen"].startswith("2026-03-01T12:00")  # seen, though it is no vote
    assert {k: v for k, v in late.items() if k not in ("version", "first_seen")} == {
        k: v for k, v in found.items() if k not in ("version", "first_seen")}
    found = late

    # replay reproduces it from the log (a stopped hub, another store)
    state = httpx.get(f"{hub.url}/v1/agents/{AGENT}/state", headers=_auth(hub, AGENT),
                      timeout=30).json()
    hub.stop()
    rebuilt = replay(open_store(store_url), AGENT, MergeStrategyConfig(),
                     open_store(f"sqlite:///{tmp_path}/replayed.db"))
    assert rebuilt.model_dump(mode="json")["knowledge"] == state["knowledge"]
    again = replay(open_store(store_url), AGENT, MergeStrategyConfig())  # in place
    assert again.model_dump(mode="json")["knowledge"] == state["knowledge"]
    # and a hub restarted on the store reads the alternatives back
    reopened = make_hub(store_url=store_url)
    assert item(reopened) == state["knowledge"][0]


def test_a_changed_mind_gives_one_state_whatever_the_arrival_order(hub: HubServer) -> None:
    """i1 says Lyon, then Nantes, then Lyon again; i2 says Nantes: every arrival order agrees."""
    from itertools import permutations

    reports = [("i1", LYON, 1), ("i1", NANTES, 2), ("i1", LYON, 3), ("i2", NANTES, 4)]
    seen = []
    for n, order in enumerate(permutations(reports)):
        for instance, content, minute in order:
            report(hub, instance, content, minute, agent=f"order-{n}")
        found = item(hub, f"order-{n}")
        seen.append({k: v for k, v in found.items() if k not in ("version", "knowledge_id")})
    assert [s for s in seen if s != seen[0]] == []
    # 1 against 1 (i1's latest is Lyon at :03): the later content, Nantes at :04
    assert seen[0]["content"] == NANTES and list(seen[0]["verifications"]) == ["i2"]
    [(content, verifiers)] = alternatives(seen[0])
    assert (content, verifiers) == (LYON, ["i1"])
    assert seen[0]["alternatives"][0]["verifications"]["i1"]["timestamp"].startswith(
        "2026-03-01T12:03")
