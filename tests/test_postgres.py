"""The PostgreSQL store plugin (``plugins/postgres``) on a real server.

The ``Store`` contract it shares with SQLite is in
``tests/hub/test_store_contract.py``. Here: registration, several engines (as
several hub processes would) on one database and one agent, and real
``experience-sync serve --store postgresql://...`` processes ingesting over
HTTP, alone and two at once, against a SQLite hub fed the same requests.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import experience_sync_postgres.plugin as pg_plugin
import httpx
import psycopg
import pytest
from experience_sync_postgres import PostgresStore

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.engine import MergeEngine
from experience_sync.hub.web.server import run_in_thread
from experience_sync.models import AgentState, EventsRequest, ExperienceEvent
from experience_sync.plugins import get_plugin_manager
from experience_sync.stores.state import ChangeSet, StoredRow

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
EXE = str(Path(sys.executable).parent / "experience-sync")
AGENT = "fleet"
INSTANCES = ("i0", "i1", "i2")


# ---------------------------------------------------------------------- registration


def test_registers_postgresql_and_postgres(
    register_plugin: Callable[..., str], postgres_url: str
) -> None:
    register_plugin(pg_plugin, name="postgres")
    registry = get_plugin_manager().registry
    assert {"postgresql", "postgres"} <= set(registry.names("stores"))
    for url in (postgres_url, postgres_url.replace("postgresql://", "postgres://", 1)):
        store = registry.create("stores", url.split(":", 1)[0], url)
        assert isinstance(store, PostgresStore)
        store.close()


def test_entry_point_is_declared() -> None:
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="experience_sync") if e.name == "postgres"]
    assert ep.value == "experience_sync_postgres.plugin"
    assert ep.dist is not None and ep.dist.name == "experience-sync-postgres"


def test_unreachable_server_fails_at_once_without_showing_the_password() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ConnectionError) as info:
        PostgresStore(f"postgresql://xs:hunter2@127.0.0.1:{port}/nope")
    assert time.monotonic() - started < 5
    assert "hunter2" not in str(info.value) and "127.0.0.1" in str(info.value)


# ---------------------------------------------------------------------- several engines


def ev(eid: str, content: str, inst: str = "i1", t: float = 0) -> ExperienceEvent:
    return ExperienceEvent.model_validate(
        {
            "event_id": eid,
            "timestamp": T0 + timedelta(seconds=t),
            "source_instance": inst,
            "event_type": "memory",
            "data": {"content": content},
        }
    )


def req(*events: ExperienceEvent) -> EventsRequest:
    return EventsRequest(instance_id=events[0].source_instance, events=list(events))


@pytest.fixture
def two_engines(postgres_url: str) -> Iterator[Callable[..., tuple[MergeEngine, MergeEngine]]]:
    """Two engines, each with its own store connection pool: two hubs on one database."""
    engines: list[MergeEngine] = []

    def _make(**strategy: Any) -> tuple[MergeEngine, MergeEngine]:
        for _ in range(2):
            engines.append(
                MergeEngine(PostgresStore(postgres_url), MergeStrategyConfig(**strategy))
            )
        return engines[-2], engines[-1]

    yield _make
    for engine in engines:
        engine.close()


def test_an_engine_sees_what_another_committed(two_engines: Any) -> None:
    a, b = two_engines()
    a.ingest_events(AGENT, req(ev("e1", "Likes green tea")))
    assert [m.content for m in b.state(AGENT).memories] == ["Likes green tea"]
    b.ingest_events(AGENT, req(ev("e2", "Owns a grey cat")))
    assert a.state(AGENT) == b.state(AGENT)
    assert a.state(AGENT).cursor == 2
    # The same event through the other engine: a duplicate, no effect.
    again = a.ingest_events(AGENT, req(ev("e2", "Owns a grey cat")))
    assert again.accepted_event_ids == [] and again.duplicate_event_ids == ["e2"]
    assert b.state(AGENT).stats.total_events == 2
    assert sorted(s.instance_id for s in b.instances(AGENT)) == ["i1"]
    assert b.instances(AGENT)[0].total_events == 2


def test_a_commit_that_lost_a_race_is_merged_again(
    two_engines: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two_engines()
    a.ingest_events(AGENT, req(ev("e1", "Likes green tea")))
    b.state(AGENT)  # b holds the agent in memory, at a's first commit
    real_commit = b.store.commit
    raced: list[ChangeSet] = []

    def commit_after_a(agent_id: str, changes: ChangeSet) -> None:
        if not raced:
            raced.append(changes)
            # Between b's merge and b's commit, a commits one of the same events.
            a.ingest_events(AGENT, req(ev("e3", "Prefers short answers")))
        real_commit(agent_id, changes)

    monkeypatch.setattr(b.store, "commit", commit_after_a)
    result = b.ingest_events(
        AGENT, req(ev("e2", "Owns a grey cat"), ev("e3", "Prefers short answers"))
    )
    assert len(raced) == 1 and raced[0].expect_version == 1  # the refused attempt
    assert result.accepted_event_ids == ["e2"] and result.duplicate_event_ids == ["e3"]
    state = a.state(AGENT)
    assert state == b.state(AGENT)
    assert sorted((m.content, m.access_count) for m in state.memories) == [
        ("Likes green tea", 1),
        ("Owns a grey cat", 1),
        ("Prefers short answers", 1),
    ]
    assert state.stats.total_events == 3 and state.cursor == 3
    assert [e.entry_id for e in a.store.iter_log(AGENT)] == ["e1", "e3", "e2"]


def test_a_review_opened_by_one_engine_is_decided_by_another(two_engines: Any) -> None:
    a, b = two_engines(conflict_resolution="manual_review")

    def tone(eid: str, inst: str, value: str, t: float) -> ExperienceEvent:
        return ExperienceEvent.model_validate(
            {
                "event_id": eid,
                "timestamp": T0 + timedelta(seconds=t),
                "source_instance": inst,
                "event_type": "characteristic",
                "data": {"key": "tone", "value": value, "confidence": 0.9},
            }
        )

    a.ingest_events(AGENT, req(tone("c1", "i1", "formal", 0)))
    b.ingest_events(AGENT, req(tone("c2", "i2", "casual", 60)))
    (review,) = a.reviews(AGENT)
    decided = b.decide_review(AGENT, review.review_id, accept=True)
    assert decided.status == "accepted"
    assert a.reviews(AGENT) == []  # a reloaded: nothing open any more
    assert a.decide_review(AGENT, review.review_id, accept=False).status == "accepted"
    assert a.state(AGENT).characteristics["tone"].value == "casual"
    assert sum(1 for e in a.store.iter_log(AGENT) if e.kind == "decision") == 1


def test_engines_on_many_threads_merge_every_event_once(two_engines: Any) -> None:
    a, b = two_engines()
    rng = random.Random(5)
    texts = [" ".join("".join(rng.choices("abcdefghij", k=7)) for _ in range(5)) for _ in range(20)]
    # 20 texts three times each: exact duplicates merge, whoever sends them
    events = [ev(f"e{i}", texts[i % 20], INSTANCES[i % 3], i) for i in range(60)]
    errors: list[BaseException] = []
    accepted: list[str] = []
    guard = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for start in range(0, 60, 3):
                chunk = events[start : start + 3]
                # every chunk through both engines, in a different order per thread
                for engine in rng.sample([a, b], 2):
                    for inst in INSTANCES:
                        mine = [e for e in chunk if e.source_instance == inst]
                        if mine:
                            r = engine.ingest_events(AGENT, req(*mine))
                            with guard:
                                accepted.extend(r.accepted_event_ids)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Counter(accepted) == Counter(e.event_id for e in events)  # each exactly once
    state = a.state(AGENT)
    assert state == b.state(AGENT)
    assert state.stats.total_events == 60
    assert sorted(m.access_count for m in state.memories) == [3] * 20
    assert len(list(a.store.iter_log(AGENT))) == 60


# ---------------------------------------------------------------------- hub processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    # A user's environment: plugins load from their entry points, this one only.
    env = {k: v for k, v in os.environ.items() if k != "EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD"}
    env["EXPERIENCE_SYNC_LOAD_PLUGINS"] = "experience-sync-postgres"
    return env


def _cli(*args: str) -> str:
    done = subprocess.run([EXE, *args], capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextmanager
def serve(store_url: str, logs: Path, *extra: str) -> Iterator[str]:
    """``experience-sync serve`` in a process of its own; yields its URL."""
    port = _free_port()
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"hub-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [EXE, "serve", "--port", str(port), "--store", store_url, "--no-access-log", *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise AssertionError(f"the hub exited: {log.read_text()}")
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise AssertionError(f"the hub did not start: {log.read_text()}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - reported by the test
            proc.kill()
            proc.wait()


def _event(n: int, inst: str, rng: random.Random, texts: list[str]) -> dict[str, Any]:
    kind = rng.choice(["memory", "memory", "memory", "skill", "knowledge", "interaction"])
    data: dict[str, Any]
    if kind == "memory":  # a few texts recur: exact duplicates merge
        data = {"content": rng.choice(texts)}
    elif kind == "skill":
        data = {
            "name": rng.choice(["refunds", "triage"]),
            "proficiency": rng.choice([0.3, 0.6, 0.9]),
            "usage": {"invocations": 1 + n % 4, "successes": n % 4},
        }
    elif kind == "knowledge":
        subject = rng.choice(["refund delay", "office"])
        data = {"subject": subject, "content": f"The {subject} fact", "confidence": 0.6}
    else:
        data = {"summary": f"talk {n}"}
    return {
        "event_id": f"w-{n}",
        "timestamp": (T0 + timedelta(seconds=n)).isoformat(),
        "source_instance": inst,
        "event_type": kind,
        "data": data,
        "lamport": n,
        "sequence": n,
    }


def workload(requests: int = 30, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """``(path, body)`` of event requests and batches from three instances (fixed ids and times)."""
    rng = random.Random(seed)
    texts = [
        " ".join(rng.choice("abcdefghijklmnopqrstuvwxyz") * 6 + str(i) for _ in range(4))
        for i in range(15)
    ]
    out: list[tuple[str, dict[str, Any]]] = []
    n = 0
    for r in range(requests):
        inst = INSTANCES[r % 3]
        events = []
        for _ in range(4):
            n += 1
            events.append(_event(n, inst, rng, texts))
        if r % 4 == 3:
            out.append(
                (
                    "batches",
                    {
                        "batch_id": f"batch-{r}",
                        "instance_id": inst,
                        "events": events,
                        "timestamp_start": events[0]["timestamp"],
                        "timestamp_end": events[-1]["timestamp"],
                    },
                )
            )
        else:
            out.append(("events", {"instance_id": inst, "events": events}))
    return out


class Client:
    """Posts to one agent of one hub with each instance's token."""

    def __init__(self, url: str, tokens: dict[str, str]) -> None:
        self.url = url
        self.tokens = tokens

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[body['instance_id']]}"}
        r = httpx.post(
            f"{self.url}/v1/agents/{AGENT}/{path}", json=body, headers=headers, timeout=60
        )
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def get(self, what: str) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens['i0']}"}
        r = httpx.get(f"{self.url}/v1/agents/{AGENT}/{what}", headers=headers, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()


def _pg_tokens(store_url: str) -> dict[str, str]:
    return {
        inst: _cli(
            "token", "create", "--agent", AGENT, "--instance", inst, "--store", store_url
        ).strip()
        for inst in INSTANCES
    }


@contextmanager
def sqlite_reference(
    tmp_path: Path, requests: list[tuple[str, dict[str, Any]]]
) -> Iterator[Client]:
    """A SQLite hub fed ``requests`` once each, in order: what one hub makes of them."""
    with run_in_thread(store_url=f"sqlite:///{tmp_path}/reference.db") as hub:
        client = Client(hub.url, {i: hub.create_token(AGENT, i) for i in INSTANCES})
        for path, body in requests:
            client.post(path, body)
        yield client


def _accepted(result: dict[str, Any]) -> list[str]:
    return [] if result.get("duplicate") else list(result["accepted_event_ids"])


def _instances(client: Client) -> dict[str, tuple[int, int]]:
    return {
        s["instance_id"]: (s["total_events"], s["last_sequence"]) for s in client.get("instances")
    }


def _log_rows(store_url: str) -> tuple[int, int]:
    with psycopg.connect(store_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT entry_id) FROM xs_log WHERE agent_id = %s", (AGENT,)
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_serve_on_postgresql_ingests_dedups_restarts_and_replays(
    postgres_url: str, tmp_path: Path
) -> None:
    tokens = _pg_tokens(postgres_url)
    assert len(_cli("token", "list", "--json", "--store", postgres_url).strip()) > 2
    requests = workload(12)
    with serve(postgres_url, tmp_path / "logs") as url:
        client = Client(url, tokens)
        for path, body in requests:
            first = client.post(path, body)
            assert sorted(_accepted(first)) == sorted(e["event_id"] for e in body["events"])
            again = client.post(path, body)  # a re-delivery: acknowledged, no effect
            if path == "batches":
                assert again["duplicate"] is True
            else:
                assert again["accepted_event_ids"] == []
                assert len(again["duplicate_event_ids"]) == len(body["events"])
        live = client.get("state")
    # A new process on the same database knows everything, including what it applied.
    with serve(postgres_url, tmp_path / "logs") as url:
        client = Client(url, tokens)
        assert client.get("state") == live
        path, body = requests[3]
        assert client.post(path, body)["duplicate"] is True
    with sqlite_reference(tmp_path, requests) as reference:
        assert reference.get("state") == live
    assert _log_rows(postgres_url) == (48, 48)
    # The CLI on the same URL: state, replay into SQLite, replay in place.
    import json

    assert json.loads(_cli("state", "--agent", AGENT, "--store", postgres_url)) == live
    into = f"sqlite:///{tmp_path}/replayed.db"
    _cli("replay", "--agent", AGENT, "--store", postgres_url, "--into", into)
    replayed = json.loads(_cli("state", "--agent", AGENT, "--store", into))
    assert replayed["memories"] == live["memories"] and replayed["cursor"] == live["cursor"]
    _cli("replay", "--agent", AGENT, "--store", postgres_url)
    assert json.loads(_cli("state", "--agent", AGENT, "--store", postgres_url)) == live


def test_two_hubs_in_turn_end_exactly_where_one_hub_does(postgres_url: str, tmp_path: Path) -> None:
    """Requests alternate between two hubs on one database; many are re-sent to the other."""
    tokens = _pg_tokens(postgres_url)
    requests = workload(30, seed=11)
    rng = random.Random(3)
    accepted: list[str] = []
    alias = postgres_url.replace("postgresql://", "postgres://", 1)
    with serve(postgres_url, tmp_path / "logs") as url_a, serve(alias, tmp_path / "logs") as url_b:
        hubs = [Client(url_a, tokens), Client(url_b, tokens)]
        for j, (path, body) in enumerate(requests):
            accepted += _accepted(hubs[j % 2].post(path, body))
            if j % 3 == 0:  # re-sent to the other hub
                assert _accepted(hubs[(j + 1) % 2].post(path, body)) == []
            if j > 4:  # an old one re-sent to either hub
                old_path, old_body = requests[rng.randrange(j)]
                assert _accepted(hubs[rng.randrange(2)].post(old_path, old_body)) == []
        states = [h.get("state") for h in hubs]
        instances = [_instances(h) for h in hubs]
    assert Counter(accepted) == Counter(e["event_id"] for _, b in requests for e in b["events"])
    with sqlite_reference(tmp_path, requests) as reference:
        expected = reference.get("state")
        assert states[0] == states[1] == expected
        assert instances[0] == instances[1] == _instances(reference)
    assert _log_rows(postgres_url) == (120, 120)


def _projection(state: dict[str, Any]) -> dict[str, Any]:
    """What does not depend on the order requests arrived in (memory ids do)."""

    def strip(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k != "version"}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    stats = state["stats"]
    return {
        "cursor": state["cursor"],
        "memories": sorted(
            (
                m["content"],
                m["access_count"],
                sorted(m["source_instances"]),
                sorted(m["source_events"]),
            )
            for m in state["memories"]
        ),
        "skills": strip(sorted(state["skills"], key=lambda s: s["skill_id"])),
        "knowledge": strip(sorted(state["knowledge"], key=lambda k: k["key"])),
        "stats": {
            k: stats[k]
            for k in (
                "total_syncs",
                "total_events",
                "interactions",
                "memories",
                "skills_learned",
                "knowledge_acquired",
                "last_evolution",
            )
        },
    }


def test_two_hubs_at_once_merge_every_event_once(postgres_url: str, tmp_path: Path) -> None:
    """Four clients send every request to both hubs at the same time, interleaved."""
    tokens = _pg_tokens(postgres_url)
    requests = workload(40, seed=23)
    accepted: list[str] = []
    guard = threading.Lock()
    with (
        serve(postgres_url, tmp_path / "logs") as url_a,
        serve(postgres_url, tmp_path / "logs") as url_b,
    ):
        hubs = [Client(url_a, tokens), Client(url_b, tokens)]

        def deliver(j: int) -> None:
            path, body = requests[j]
            with ThreadPoolExecutor(2) as both:  # the same request to both hubs at once
                results = list(both.map(lambda hub: hub.post(path, body), hubs))
            ids = sorted(e["event_id"] for e in body["events"])
            # One hub merged the whole request, the other saw duplicates only.
            assert sorted(sorted(_accepted(r)) for r in results) == [[], ids]
            with guard:
                for r in results:
                    accepted.extend(_accepted(r))

        with ThreadPoolExecutor(4) as clients:
            list(clients.map(deliver, range(len(requests))))
        states = [h.get("state") for h in hubs]
        instances = [_instances(h) for h in hubs]
    assert Counter(accepted) == Counter(e["event_id"] for _, b in requests for e in b["events"])
    assert states[0] == states[1]
    assert instances[0] == instances[1]
    with sqlite_reference(tmp_path, requests) as reference:
        assert _projection(states[0]) == _projection(reference.get("state"))
        assert instances[0] == _instances(reference)
    assert _log_rows(postgres_url) == (160, 160)
    assert AgentState.model_validate(states[0]).stats.total_events == 160


def test_a_nul_in_an_id_is_a_422_and_in_free_text_is_stored(
    register_plugin: Callable[..., str], postgres_url: str
) -> None:
    # PostgreSQL text cannot hold NUL: ids are refused at the door, and free
    # text reaches the store only inside its JSON (escaped) or normalized.
    register_plugin(pg_plugin, name="postgres")
    def event(eid: str, content: str, inst: str = "i1") -> dict[str, Any]:
        return {"event_id": eid, "timestamp": T0.isoformat(), "source_instance": inst,
                "event_type": "memory", "data": {"content": content, "tags": ["t\x00"]}}

    with run_in_thread(postgres_url, auth=False) as hub:
        url = f"{hub.url}/v1/agents/a1/events"
        bad = httpx.post(url, json={"instance_id": "i1", "events": [event("e\x00", "x")]}, timeout=30)
        assert bad.status_code == 422, bad.text
        path = httpx.post(f"{hub.url}/v1/agents/a%001/events",
                          json={"instance_id": "i1", "events": [event("e1", "x")]}, timeout=30)
        assert path.status_code == 422, path.text
        ok = httpx.post(url, json={"instance_id": "i1", "events": [event("e2", "night\x00ly export")]},
                        timeout=30)
        assert ok.status_code == 200, ok.text
        state = httpx.get(f"{hub.url}/v1/agents/a1/state", timeout=30).json()
        assert [m["content"] for m in state["memories"]] == ["night\x00ly export"]


def _wide(rng: random.Random, n: int) -> str:
    # Characters of four UTF-8 bytes in no pattern: PostgreSQL cannot compress them.
    return "".join(chr(rng.randint(0x10000, 0x10FFFD)) for _ in range(n))


def test_keys_longer_than_an_index_entry_are_stored_and_updated(
    register_plugin: Callable[..., str], postgres_url: str, tmp_path: Path
) -> None:
    # A B-tree entry holds at most 2704 bytes: a long skill or knowledge id,
    # a long knowledge subject, or a 500-character characteristic key of an
    # agent with a 200-character id was a 500 on PostgreSQL (found by fuzzing).
    # The wire caps ids at MAX_ID and names at MAX_NAME characters; at four
    # bytes a character, the agent id and a key together still pass 2704.
    from experience_sync.models import MAX_ID, MAX_NAME

    register_plugin(pg_plugin, name="postgres")
    rng = random.Random(7)
    agent, skill_id, knowledge_id, key = (
        _wide(rng, MAX_ID), _wide(rng, MAX_ID), _wide(rng, MAX_ID), _wide(rng, MAX_NAME)
    )
    subject = " ".join(f"w{rng.randrange(10**9)}" for _ in range(1500))[:MAX_NAME].strip()

    def body(round_: int) -> dict[str, Any]:
        def event(kind: str, data: dict[str, Any]) -> dict[str, Any]:
            return {"event_id": f"{kind}-{len(str(data))}-{round_}", "timestamp": (T0 + timedelta(minutes=round_)).isoformat(),
                    "source_instance": "i1", "event_type": kind, "data": data}

        return {"instance_id": "i1", "events": [
            event("skill", {"name": "search", "skill_id": skill_id,
                            "usage": {"invocations": round_, "successes": round_}}),
            event("knowledge", {"content": f"fact {round_}", "knowledge_id": knowledge_id}),
            event("knowledge", {"content": "about the subject", "subject": subject}),
            event("characteristic", {"key": key, "value": round_}),
        ]}

    states = []
    for store_url in (postgres_url, f"sqlite:///{tmp_path / 'hub.db'}"):
        with run_in_thread(store_url, auth=False) as hub:
            url = f"{hub.url}/v1/agents/{quote(agent, safe='')}"
            for round_ in (1, 2):
                r = httpx.post(f"{url}/events", json=body(round_), timeout=30)
                assert r.status_code == 200, r.text
            over = body(3)
            over["events"][0]["data"]["skill_id"] = skill_id + "x"
            r = httpx.post(f"{url}/events", json=over, timeout=30)
            assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == "events.0.data.skill_id"
            hub.restart()  # the state below is the one loaded back from the store
            states.append(httpx.get(f"{url}/state", timeout=30).json())
    pg, sqlite = states
    assert [s["skill_id"] for s in pg["skills"]] == [skill_id]
    assert [k["knowledge_id"] for k in pg["knowledge"]][:1] == [knowledge_id]
    assert [k["key"][:9] for k in pg["knowledge"]][1:] == ["subject:w"]
    assert pg["characteristics"][key]["value"] == 2
    for part in ("skills", "knowledge", "characteristics"):
        assert pg[part] == sqlite[part], part


def test_a_database_keyed_by_the_earlier_primary_key_takes_long_keys(postgres_url: str) -> None:
    # Databases made before state rows were keyed by a hash of their key.
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            'CREATE TABLE xs_skills (seq BIGINT GENERATED ALWAYS AS IDENTITY, agent_id TEXT COLLATE "C" '
            'NOT NULL, key TEXT COLLATE "C" NOT NULL, version BIGINT NOT NULL, body TEXT NOT NULL, '
            "PRIMARY KEY (agent_id, key))"
        )
        conn.execute("INSERT INTO xs_skills (agent_id, key, version, body) VALUES ('a1', 'old', 1, '{}')")
    store = PostgresStore(postgres_url)
    try:
        long_key = _wide(random.Random(3), 3000)
        for version in (1, 2):
            changes = ChangeSet(cursor=version, rows={"skills": [StoredRow(long_key, version, "{}"),
                                                                  StoredRow("old", version, "{}")]})
            store.commit("a1", changes)
        rows = store.load_agent("a1").rows["skills"]
        assert [(r.key, r.version) for r in rows] == [("old", 2), (long_key, 2)]
    finally:
        store.close()
    PostgresStore(postgres_url).close()  # opening it again changes nothing


def test_a_database_made_before_memory_rows_kept_parses_gets_the_column(postgres_url: str) -> None:
    # xs_memories without its parsed column, as an earlier version made it.
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE xs_memories DROP COLUMN parsed")
        conn.execute(
            "INSERT INTO xs_memories (agent_id, key, version, normalized, body) "
            "VALUES ('a1', 'm1', 1, 'likes tea', '{}')"
        )
    store = PostgresStore(postgres_url)
    try:
        assert store.load_agent("a1").rows["memories"] == [
            StoredRow("m1", 1, "{}", None, None, "likes tea")
        ]
        store.save_parsed("a1", {"m1": b"p1"})
        store.commit("a1", ChangeSet(cursor=2, rows={"memories": [StoredRow("m1", 2, "{}")]}))
        assert store.load_agent("a1").rows["memories"][0].parsed == b"p1"
    finally:
        store.close()
    PostgresStore(postgres_url).close()  # opening it again changes nothing
