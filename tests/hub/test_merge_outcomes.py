"""Three-way merge outcomes through a real hub on the wire.

Every labelled pair of ``tests/data/merge_outcomes.jsonl`` (tuning) and
``tests/data/merge_outcomes_holdout.jsonl`` (held out from tuning) goes to its
own agent of a real hub (uvicorn on loopback, a SQLite file): member ``a``
from instance ``i1``, then ``b`` from ``i2``, as ``POST /events``. The outcome
is read from the second ``MergeResult`` and the active state from ``GET
/state``, under each conflict strategy. Properties: no pair labelled
``contradiction`` or ``distinct`` is merged as a duplicate, and no pair labelled
``distinct`` loses either statement from the active state.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.web.server import HubServer

DATA = Path(__file__).parents[1] / "data"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text("utf-8").splitlines() if line]


TUNING = load("merge_outcomes.jsonl")
HELD_OUT = load("merge_outcomes_holdout.jsonl")


def send(client: httpx.Client, agent: str, instance: str, content: str, t: int) -> dict[str, Any]:
    body = {
        "instance_id": instance,
        "events": [{
            "event_id": f"{agent}-{instance}", "timestamp": (T0 + timedelta(seconds=t)).isoformat(),
            "source_instance": instance, "event_type": "memory", "data": {"content": content},
        }],
    }
    r = client.post(f"/v1/agents/{agent}/events", json=body)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def outcome(result: dict[str, Any]) -> str:
    """The one new memory's outcome as the MergeResult reports it."""
    listed = result["memory_outcomes"]
    if listed:
        return str(listed[0]["outcome"])
    counts = result["outcomes"]
    [(name, _)] = [(k, v) for k, v in counts.items() if v]
    return name


def test_the_sets_cover_every_class() -> None:
    for pairs in (TUNING, HELD_OUT):
        cats = {p["category"] for p in pairs}
        assert {"voice", "contraction_aff", "antonym", "quantifier", "modality", "unit",
                "date", "negation", "name_swap", "place_swap", "object_swap"} <= cats
        assert {p["outcome"] for p in pairs} == {"duplicate", "contradiction", "distinct"}
    assert not {p["a"] for p in TUNING} & {p["a"] for p in HELD_OUT}


@pytest.mark.parametrize("strategy", ["latest_wins", "weighted_merge", "manual_review"])
def test_labelled_pairs_through_the_hub(
    make_hub: Callable[..., HubServer], strategy: str
) -> None:
    hub = make_hub(auth=False, strategy=MergeStrategyConfig(conflict_resolution=strategy))
    wrong: list[tuple[str, str, str]] = []
    with httpx.Client(base_url=hub.url, timeout=30) as client:
        for pairs in (TUNING, HELD_OUT):
            for p in pairs:
                agent = f"{strategy}-{p['id']}"
                first = send(client, agent, "i1", p["a"], 0)
                assert first["memories_added"] == 1
                second = send(client, agent, "i2", p["b"], 1)
                got = outcome(second)
                state = client.get(f"/v1/agents/{agent}/state").json()
                active = {m["content"] for m in state["memories"]}
                if p["outcome"] != "duplicate":
                    # never merged: a contradiction goes to the strategy, a
                    # distinct statement is kept
                    assert second["memories_merged"] == 0, (p, second)
                    assert got != "duplicate", (p, second)
                if p["outcome"] == "distinct":
                    assert {p["a"], p["b"]} <= active, (p, active)
                    assert got == "distinct" and second["conflicts"]["total"] == 0, (p, second)
                    if second["memory_outcomes"]:
                        [mo] = second["memory_outcomes"]
                        added = [m for m in state["memories"] if m["content"] == p["b"]]
                        assert added[0]["related_to"] == mo["related_to"] is not None
                if got == "contradiction":
                    assert second["conflicts"]["total"] == 1, (p, second)
                if pairs is TUNING and got != p["outcome"]:
                    wrong.append((p["id"], p["outcome"], got))
    # The tuning set is classified exactly (the held-out set is measured in
    # docs/merging.md, and held to the two properties above).
    assert not wrong, wrong
