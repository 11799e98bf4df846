"""The merge judge hook through a real hub (uvicorn on loopback, a SQLite file).

A judge plugin swapped in by configuration decides the pairs of its zone and
the rules' name/word swaps; its decisions are logged, so ``replay`` rebuilds
the same state with no judge configured and with a judge that would raise;
a judge that raises, answers nonsense or times out falls back to the rules
and is counted in ``/metrics`` and as ``merge.judge_fallback``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_merge_outcomes import HELD_OUT, TUNING, outcome

from experience_sync import hookimpl
from experience_sync.api import (
    ConfigError,
    JudgedPair,
    MergeJudge,
    ObservabilityEvent,
    RuleJudge,
    Verdict,
    load_config,
    validate_config,
)
from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.engine import open_store
from experience_sync.hub.replay import replay
from experience_sync.hub.web.server import HubServer, run_in_thread

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

# Jaccard 0.75 (below the default threshold 0.8): the rules add it unrelated.
TEA = "The user drinks green tea every morning"
TEA_MORE = "Every morning the user drinks green tea with honey"
# One English content word swapped: the rules keep both (distinct, reason "word").
SPANISH = "The user is learning Spanish with a tutor on weekday evenings after work"
SPANISH_TOO = "The user is studying Spanish with a tutor on weekday evenings after work"
# Nothing in common: below any zone.
UNRELATED = "Deployments to production need two approvals"


class ScriptedJudge(MergeJudge):
    """Answers from a table keyed by the new memory's text, and records each call."""

    name = "scripted"

    def __init__(self, answers: dict[str, Verdict], calls: list[JudgedPair]) -> None:
        self.answers = answers
        self.calls = calls

    def judge(self, pair: JudgedPair) -> Verdict:
        self.calls.append(pair)
        return self.answers.get(pair.new_text, Verdict(pair.rule_outcome))


class RaisingJudge(MergeJudge):
    name = "raising"

    def __init__(self, calls: list[JudgedPair]) -> None:
        self.calls = calls

    def judge(self, pair: JudgedPair) -> Verdict:
        self.calls.append(pair)
        raise RuntimeError("the model is down")


class SlowJudge(MergeJudge):
    """Blocks until released (a model that does not answer)."""

    name = "slow"

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def judge(self, pair: JudgedPair) -> Verdict:
        self.release.wait(30)
        return Verdict("duplicate")


class Judges:
    """A plugin registering the test judges under fixed names."""

    def __init__(self) -> None:
        self.answers: dict[str, Verdict] = {}
        self.calls: list[JudgedPair] = []
        self.release = threading.Event()

    @hookimpl
    def experience_sync_register_merge_judges(self, register: Callable[..., None]) -> None:
        register("scripted", lambda config=None: ScriptedJudge(self.answers, self.calls))
        register("raising", lambda config=None: RaisingJudge(self.calls))
        register("slow", lambda config=None: SlowJudge(self.release))
        register("nonsense", lambda config=None: ScriptedJudge(
            {TEA_MORE: Verdict("maybe")}, self.calls))  # type: ignore[arg-type]


class Recorder:
    def __init__(self) -> None:
        self.events: list[ObservabilityEvent] = []

    @hookimpl
    def experience_sync_observe(self, event: ObservabilityEvent) -> None:
        if event.type.startswith("merge.judge"):
            self.events.append(event)


@pytest.fixture
def judges(register_plugin: Callable[..., str]) -> Iterator[Judges]:
    plugin = Judges()
    register_plugin(plugin, name="test-judges")
    yield plugin
    plugin.release.set()


@pytest.fixture
def recorder(register_plugin: Callable[..., str]) -> Recorder:
    plugin = Recorder()
    register_plugin(plugin, name="judge-recorder")
    return plugin


def strategy(**merge: Any) -> MergeStrategyConfig:
    """The merge strategy as a configuration file would give it (validated)."""
    return validate_config({"merge_strategy": merge}).merge_strategy


def send(client: httpx.Client, agent: str, instance: str, event_id: str, content: str,
         t: int) -> dict[str, Any]:
    body = {
        "instance_id": instance,
        "events": [{
            "event_id": event_id, "timestamp": (T0 + timedelta(seconds=t)).isoformat(),
            "source_instance": instance, "event_type": "memory", "data": {"content": content},
        }],
    }
    r = client.post(f"/v1/agents/{agent}/events", json=body)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def active(client: httpx.Client, agent: str) -> dict[str, str]:
    r = client.get(f"/v1/agents/{agent}/state")
    assert r.status_code == 200
    return {m["memory_id"]: m["content"] for m in r.json()["memories"]}


def metric(hub: HubServer, line_start: str) -> float:
    text = httpx.get(hub.url + "/metrics").text
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_hook_register_merge_judges(judges: Judges, tmp_path: Path) -> None:
    """A judge selected by configuration decides a grey-zone pair and a word swap."""
    judges.answers[TEA_MORE] = Verdict("duplicate", "The user drinks green tea with honey "
                                       "every morning", "same habit, more detail")
    judges.answers[SPANISH_TOO] = Verdict("duplicate", None, "learning = studying")
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    merge = strategy(judge="scripted", judge_zone=[0.5, 0.95])
    with run_in_thread(url, strategy=merge, auth=False) as hub, httpx.Client(
        base_url=hub.url, timeout=30
    ) as client:
        send(client, "a", "i1", "e1", TEA, 0)
        r = send(client, "a", "i2", "e2", TEA_MORE, 1)
        [listed] = r["memory_outcomes"]
        assert listed["outcome"] == "duplicate" and listed["reason"] == "judge:scripted"
        assert r["memories_merged"] == 1 and r["memories_added"] == 0
        # The rules alone (test_rules_alone_keep_todays_outcomes) add it as a second memory.
        assert list(active(client, "a").values()) == [
            "The user drinks green tea with honey every morning"
        ]
        send(client, "a", "i1", "e3", SPANISH, 2)
        r = send(client, "a", "i2", "e4", SPANISH_TOO, 3)
        assert r["memory_outcomes"][0]["outcome"] == "duplicate"
        send(client, "a", "i1", "e5", UNRELATED, 4)
        live = active(client, "a")
        assert len(live) == 3 and SPANISH in live.values()
        assert metric(hub, 'experience_sync_hub_merge_judge_decisions_total{outcome="duplicate"}') == 2
    # What the judge saw: the pair, its score and the rules' own decision.
    by_text = {p.new_text: p for p in judges.calls}
    assert set(by_text) == {TEA_MORE, SPANISH_TOO}  # UNRELATED is below the zone: never asked
    tea = by_text[TEA_MORE]
    assert tea.stored_text == TEA and not tea.near and tea.rule_outcome == "distinct"
    assert 0.5 <= tea.score < 0.8 and tea.method == "jaccard"
    spanish = by_text[SPANISH_TOO]
    assert spanish.near and (spanish.rule_outcome, spanish.rule_reason) == ("distinct", "word")
    # The decisions are in the log, next to their events.
    store = open_store(url)
    try:
        logged = [e for e in store.iter_log("a") if e.kind == "judgement"]
        assert [e.entry_id for e in logged] == ["judge:e2", "judge:e4"]
        assert all(e.request == r_ for e, r_ in zip(logged, (2, 4), strict=True))
    finally:
        store.close()
    calls = len(judges.calls)
    # Replay with no judge configured, then with the judge's name on a judge that raises:
    # the logged decisions, the same state, and no judge call.
    for replayed_with in (MergeStrategyConfig(), strategy(judge="raising")):
        store = open_store(url)
        try:
            rebuilt = replay(store, "a", replayed_with)
        finally:
            store.close()
        assert {m.memory_id: m.content for m in rebuilt.memories} == live
    assert len(judges.calls) == calls


def test_a_judge_can_keep_apart_or_contradict(judges: Judges, tmp_path: Path) -> None:
    """``distinct`` keeps both, linked; ``contradiction`` hands the pair to the strategy."""
    judges.answers[TEA_MORE] = Verdict("distinct", None, "honey is a new fact")
    judges.answers[SPANISH_TOO] = Verdict("contradiction", None, "the user changed course")
    merge = strategy(judge="scripted")
    with run_in_thread(f"sqlite:///{tmp_path / 'hub.db'}", strategy=merge, auth=False) as hub, \
            httpx.Client(base_url=hub.url, timeout=30) as client:
        first = send(client, "a", "i1", "e1", TEA, 0)["memory_outcomes"]
        assert first == []  # nothing near: no judge
        r = send(client, "a", "i2", "e2", TEA_MORE, 1)
        [listed] = r["memory_outcomes"]
        assert listed["outcome"] == "distinct" and listed["related_to"] is not None
        send(client, "a", "i1", "e3", SPANISH, 2)
        r = send(client, "a", "i2", "e4", SPANISH_TOO, 3)
        assert r["memory_outcomes"][0]["outcome"] == "contradiction"
        assert r["conflicts"]["total"] == 1
        state = client.get("/v1/agents/a/state").json()["memories"]
        contents = {m["content"] for m in state}
        # latest_wins: the later statement stands, the earlier is in `superseded`.
        assert contents == {TEA, TEA_MORE, SPANISH_TOO}
        [spanish] = [m for m in state if m["content"] == SPANISH_TOO]
        assert [s["content"] for s in spanish["superseded"]] == [SPANISH]


@pytest.mark.parametrize("name,reason", [("raising", "error"), ("nonsense", "invalid")])
def test_a_failing_judge_falls_back_to_the_rules_and_is_counted(
    judges: Judges, recorder: Recorder, tmp_path: Path, name: str, reason: str
) -> None:
    merge = strategy(judge=name)
    with run_in_thread(f"sqlite:///{tmp_path / 'hub.db'}", strategy=merge, auth=False) as hub, \
            httpx.Client(base_url=hub.url, timeout=30) as client:
        send(client, "a", "i1", "e1", TEA, 0)
        r = send(client, "a", "i2", "e2", TEA_MORE, 1)
        # The rules' answer: below the threshold, a new memory of its own.
        assert r["memories_added"] == 1 and r["outcomes"]["distinct"] == 1
        assert r["memory_outcomes"] == []
        assert len(active(client, "a")) == 2
        assert metric(
            hub, f'experience_sync_hub_merge_judge_fallbacks_total{{reason="{reason}"}}'
        ) == 1
    [event] = [e for e in recorder.events if e.type == "merge.judge_fallback"]
    assert event.data["reason"] == reason and event.data["judge"] == name
    assert event.data["event_id"] == "e2" and event.agent_id == "a"
    assert len(judges.calls) == (1 if name in ("raising", "nonsense") else 0)
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        assert not [e for e in store.iter_log("a") if e.kind == "judgement"]
    finally:
        store.close()


def test_a_judge_that_times_out_falls_back_and_is_counted(
    judges: Judges, recorder: Recorder, tmp_path: Path
) -> None:
    merge = strategy(judge="slow", judge_timeout=0.3)
    with run_in_thread(f"sqlite:///{tmp_path / 'hub.db'}", strategy=merge, auth=False) as hub, \
            httpx.Client(base_url=hub.url, timeout=30) as client:
        send(client, "a", "i1", "e1", SPANISH, 0)
        r = send(client, "a", "i2", "e2", SPANISH_TOO, 1)
        # The rules' answer: a word swap is kept apart, linked.
        [listed] = r["memory_outcomes"]
        assert (listed["outcome"], listed["reason"]) == ("distinct", "word")
        assert metric(hub, 'experience_sync_hub_merge_judge_fallbacks_total{reason="timeout"}') == 1
        assert metric(hub, "experience_sync_hub_merge_judge_decisions_total") == 0
    [event] = recorder.events
    assert event.type == "merge.judge_fallback" and event.data["reason"] == "timeout"
    judges.release.set()


def test_rules_alone_keep_todays_outcomes(make_hub: Callable[..., HubServer]) -> None:
    """``judge = "rules"`` (the default) with any zone decides every labelled pair as before."""
    hubs = {
        "default": make_hub(auth=False),
        "rules": make_hub(auth=False, strategy=strategy(judge="rules", judge_zone=[0.0, 1.0])),
    }
    seen: dict[str, list[tuple[str, int]]] = {}
    for label, hub in hubs.items():
        got = seen.setdefault(label, [])
        with httpx.Client(base_url=hub.url, timeout=30) as client:
            for n, p in enumerate([*TUNING, *HELD_OUT]):
                agent = f"p{n}"
                send(client, agent, "i1", f"{agent}-a", p["a"], 0)
                r = send(client, agent, "i2", f"{agent}-b", p["b"], 1)
                got.append((outcome(r), len(active(client, agent))))
    assert seen["rules"] == seen["default"]
    assert RuleJudge().judge(JudgedPair("x", "y", "m1", 0.9, True, "distinct", "name")) == (
        Verdict("distinct", None, "name")
    )


@pytest.mark.parametrize(
    "merge,field,words",
    [
        ({"judge_zone": [0.9, 0.3]}, "merge_strategy.judge_zone", "low must not exceed high"),
        ({"judge_zone": [0.2, 1.5]}, "merge_strategy.judge_zone", "within 0..1"),
        ({"judge_zone": [0.5]}, "merge_strategy.judge_zone", ""),
        ({"judge_timeout": 0}, "merge_strategy.judge_timeout", "greater than 0"),
        ({"judge": "gpt-judge"}, "merge_strategy.judge", "unknown merge judge 'gpt-judge'"),
    ],
)
def test_judge_settings_are_validated_at_load(
    tmp_path: Path, merge: dict[str, Any], field: str, words: str
) -> None:
    lines = ["[merge_strategy]"] + [
        f"{k} = {v!r}".replace("'", '"') for k, v in merge.items()
    ]
    path = tmp_path / "experience-sync.toml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={}, cwd=tmp_path)
    message = str(err.value)
    assert field in message and words in message


def test_the_zone_and_timeout_load_from_a_file(judges: Judges, tmp_path: Path) -> None:
    path = tmp_path / "experience-sync.toml"
    path.write_text('[merge_strategy]\njudge = "scripted"\njudge_zone = [0.6, 0.9]\n'
                    "judge_timeout = 2.5\n")
    merge = load_config(path, environ={}, cwd=tmp_path).merge_strategy
    assert (merge.judge, merge.judge_zone, merge.judge_timeout) == ("scripted", (0.6, 0.9), 2.5)


def test_a_forget_takes_the_judgement_with_its_memory(judges: Judges, tmp_path: Path) -> None:
    """A log holding judgements can be forgotten from; the merged text goes too."""
    from experience_sync.api import ForgetRequest
    from experience_sync.hub.forget import forget

    judges.answers[TEA_MORE] = Verdict("duplicate", "Every morning the user drinks green tea "
                                       "with honey", "more detail")
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    with run_in_thread(url, strategy=strategy(judge="scripted"), auth=False) as hub, \
            httpx.Client(base_url=hub.url, timeout=30) as client:
        send(client, "a", "i1", "e1", TEA, 0)
        send(client, "a", "i2", "e2", TEA_MORE, 1)
        send(client, "a", "i1", "e3", UNRELATED, 2)
        result = forget(hub.hub.engine, "a", ForgetRequest(query="honey"))
        assert result.events_forgotten >= 1
        left = list(active(client, "a").values())
        # The first report stays, as the log without the forgotten one gives it.
        assert sorted(left) == sorted([TEA, UNRELATED])
    store = open_store(url)
    try:
        kinds = {e.entry_id: e.kind for e in store.iter_log("a")}
        assert kinds["judge:e2"] == "forgotten" and kinds["e2"] == "forgotten"
        rebuilt = replay(store, "a", MergeStrategyConfig())
        assert sorted(m.content for m in rebuilt.memories) == sorted([TEA, UNRELATED])
    finally:
        store.close()
