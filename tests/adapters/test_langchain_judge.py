"""A LangChain chat model as the hub's merge judge, offline (langchain_core's fake chat models).

The judge is selected by configuration alone (``[merge_strategy] judge = "..."``)
and decides grey-zone pairs sent by real instances to a real hub; ``replay``
reproduces its decisions with the model gone, or replaced by one that raises;
a model that answers nonsense or never answers falls back to the rules and is
counted.
"""

from __future__ import annotations

import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from experience_sync_langchain import (
    JUDGE_SYSTEM_PROMPT,
    LangChainJudge,
    register_langchain_judge,
    unregister_langchain_judge,
)
from experience_sync_langchain.judge import parse_answer
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult

from experience_sync.api import JudgedPair, PluginError, Verdict, load_config
from experience_sync.client.manager import ExperienceSyncManager
from experience_sync.config import validate_config
from experience_sync.hub.engine import open_store
from experience_sync.hub.replay import replay
from experience_sync.hub.web.server import HubServer, run_in_thread
from experience_sync.models import AgentState
from experience_sync.plugins import get_plugin_manager

AGENT = "support-agent"
TEA = "The user drinks green tea every morning"
TEA_MORE = "Every morning the user drinks green tea with honey"
MERGED = "Every morning the user drinks green tea with honey"
BIKE = "The user's colleague Ana rides a bike to the office every day"
BIKE_TOO = "The user's colleague Marta rides a bike to the office every day"

DUPLICATE = (
    '```json\n{"outcome": "duplicate", "merged_text": "' + MERGED + '", "reason": "same habit"}\n```'
)
DISTINCT = '{"outcome": "distinct", "merged_text": null, "reason": "two colleagues"}'


class RecordingChatModel(FakeListChatModel):
    """FakeListChatModel that keeps the messages it was sent."""

    seen: ClassVar[list[list[BaseMessage]]] = []

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


class ExplodingChatModel(FakeListChatModel):
    """A chat model that must never be called."""

    calls: ClassVar[list[int]] = []

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        self.calls.append(1)
        raise RuntimeError("replay called the judge")


class SilentChatModel(FakeListChatModel):
    """A chat model that answers only when released (a model that hangs)."""

    release: ClassVar[threading.Event] = threading.Event()

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        self.release.wait(30)
        return super()._generate(*args, **kwargs)


class ToolCallingJudgeModel(GenericFakeChatModel):
    """A fake chat model that can stand where a tool-calling (structured output) model is."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingJudgeModel:  # type: ignore[override]
        return self


@pytest.fixture
def judges() -> Iterator[Callable[..., None]]:
    names: list[str] = []

    def _register(name: str, model: Any, **kw: Any) -> None:
        register_langchain_judge(name, model, **kw)
        names.append(name)

    yield _register
    for name in names:
        unregister_langchain_judge(name)


def config_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "experience-sync.toml"
    path.write_text(textwrap.dedent(body))
    return path


def instances(server: HubServer, tmp_path: Path, *ids: str) -> list[ExperienceSyncManager]:
    out = []
    for iid in ids:
        token = server.create_token(AGENT, iid)
        cfg = validate_config({"transport": {"https": {"auth_token": token}}})
        manager = ExperienceSyncManager(data_dir=tmp_path / iid)
        manager.initialize_sync(iid, config=cfg, endpoint=server.url, agent_id=AGENT)
        out.append(manager)
    return out


def record(manager: ExperienceSyncManager, iid: str, text: str) -> AgentState:
    manager.record_memory(iid, text, importance=0.6)
    assert manager.flush(iid, timeout=15), manager.status(iid)
    return manager.pull(AGENT, instance_id=iid)


def metric(hub: HubServer, line_start: str) -> float:
    token = hub.create_token(AGENT, "a")
    text = httpx.get(hub.url + "/metrics", headers={"Authorization": f"Bearer {token}"}).text
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_fake_chat_model_judge_chosen_by_configuration_decides_at_the_hub(
    judges: Callable[..., None], tmp_path: Path
) -> None:
    RecordingChatModel.seen = []
    judges("fake-judge", RecordingChatModel(responses=[DUPLICATE, DISTINCT]))
    path = config_file(tmp_path, """
        [merge_strategy]
        judge = "fake-judge"
        judge_zone = [0.5, 0.95]
    """)
    strategy = load_config(path, environ={}, cwd=tmp_path).merge_strategy
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    with run_in_thread(url, strategy=strategy) as server:
        a, b = instances(server, tmp_path, "a", "b")
        try:
            record(a, "a", TEA)
            state = record(b, "b", TEA_MORE)
            # Jaccard 0.75: the rules alone would keep two memories.
            assert [m.content for m in state.memories] == [MERGED]
            assert sorted(state.memories[0].source_instances) == ["a", "b"]
            record(a, "a", BIKE)
            state = record(b, "b", BIKE_TOO)
            live = {m.memory_id: m.content for m in state.memories}
            assert sorted(live.values()) == sorted([MERGED, BIKE, BIKE_TOO])
            [marta] = [m for m in state.memories if m.content == BIKE_TOO]
            assert marta.related_to is not None and live[marta.related_to] == BIKE
            assert metric(
                server, 'experience_sync_hub_merge_judge_decisions_total{outcome="duplicate"}'
            ) == 1
        finally:
            for manager in (a, b):
                manager.shutdown(timeout=5)
    # The documented prompt, with the pair in it.
    assert len(RecordingChatModel.seen) == 2
    system, human = RecordingChatModel.seen[0]
    assert system.content == JUDGE_SYSTEM_PROMPT
    assert f"Stored memory: {TEA}" in str(human.content)
    assert f"New memory: {TEA_MORE}" in str(human.content)
    assert "A rule-based guess: distinct (name)" in str(RecordingChatModel.seen[1][1].content)
    # Replay: with the judge gone, then with its name on a model that raises.
    unregister_langchain_judge("fake-judge")
    ExplodingChatModel.calls = []
    for judge_config in ("", 'judge = "fake-judge"'):
        if judge_config:
            judges("fake-judge", ExplodingChatModel(responses=["never"]))
        replay_path = config_file(tmp_path, f"[merge_strategy]\n{judge_config}\n")
        replay_strategy = load_config(replay_path, environ={}, cwd=tmp_path).merge_strategy
        store = open_store(url)
        try:
            rebuilt = replay(store, AGENT, replay_strategy)
        finally:
            store.close()
        assert {m.memory_id: m.content for m in rebuilt.memories} == live
    assert ExplodingChatModel.calls == []


def test_structured_output_is_used_when_the_model_has_it() -> None:
    answer = AIMessage(content="", tool_calls=[{
        "name": "JudgeAnswer", "id": "call-1",
        "args": {"outcome": "contradiction", "merged_text": None, "reason": "weekly vs monthly"},
    }])
    judge = LangChainJudge(ToolCallingJudgeModel(messages=iter([answer])), name="tools")
    pair = JudgedPair("Backups run weekly", "Backups run monthly", "m1", 0.85, True,
                      "contradiction", "unit")
    assert judge.judge(pair) == Verdict("contradiction", None, "weekly vs monthly")
    # A model without structured output is asked for the JSON object in its text.
    plain = LangChainJudge(FakeListChatModel(responses=[DISTINCT]), name="plain")
    assert plain.judge(pair) == Verdict("distinct", None, "two colleagues")
    assert parse_answer(DUPLICATE).merged_text == MERGED
    with pytest.raises(ValueError):
        parse_answer("They look the same to me.")


@pytest.mark.parametrize("kind", ["nonsense", "silent"])
def test_a_failing_or_silent_model_falls_back_to_the_rules_and_is_counted(
    judges: Callable[..., None], tmp_path: Path, kind: str
) -> None:
    SilentChatModel.release = threading.Event()
    model: Any = (
        FakeListChatModel(responses=["They look the same to me."]) if kind == "nonsense"
        else SilentChatModel(responses=[DUPLICATE])
    )
    judges("flaky", model)
    strategy = validate_config(
        {"merge_strategy": {"judge": "flaky", "judge_timeout": 0.3}}
    ).merge_strategy
    reason = "error" if kind == "nonsense" else "timeout"
    try:
        with run_in_thread(strategy=strategy) as server:
            a, b = instances(server, tmp_path, "a", "b")
            try:
                record(a, "a", TEA)
                started = time.perf_counter()
                state = record(b, "b", TEA_MORE)
                assert time.perf_counter() - started < 20
                # The rules' answer: two memories.
                assert sorted(m.content for m in state.memories) == sorted([TEA, TEA_MORE])
                assert metric(
                    server, f'experience_sync_hub_merge_judge_fallbacks_total{{reason="{reason}"}}'
                ) == 1
            finally:
                for manager in (a, b):
                    manager.shutdown(timeout=5)
    finally:
        SilentChatModel.release.set()


def test_judge_names_clash_loudly(judges: Callable[..., None]) -> None:
    judges("mine", FakeListChatModel(responses=[DISTINCT]))
    with pytest.raises(PluginError, match="already registered"):
        register_langchain_judge("mine", FakeListChatModel(responses=[DISTINCT]))
    with pytest.raises(PluginError, match="rules"):
        register_langchain_judge("rules", FakeListChatModel(responses=[DISTINCT]))
    assert get_plugin_manager().registry.names("merge_judges") == ["mine", "rules"] or (
        set(get_plugin_manager().registry.names("merge_judges")) == {"mine", "rules"}
    )


def test_entry_point_registers_judges_named_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, enable_plugin_autoload: Callable[..., None]
) -> None:
    module = tmp_path / "xs_lc_judges_for_test.py"
    module.write_text(textwrap.dedent(f"""
        from langchain_core.language_models.fake_chat_models import FakeListChatModel

        def make():
            return FakeListChatModel(responses=[{DISTINCT!r}])
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("EXPERIENCE_SYNC_LANGCHAIN_JUDGES", "env-judge=xs_lc_judges_for_test:make")
    enable_plugin_autoload("langchain")
    try:
        pm = get_plugin_manager()
        assert "env-judge" in pm.registry.names("merge_judges")
        config = validate_config({"merge_strategy": {"judge": "env-judge"}})
        judge = pm.registry.create("merge_judges", "env-judge", config.merge_strategy)
        pair = JudgedPair(BIKE_TOO, BIKE, "m1", 0.9, True, "distinct", "name")
        assert judge.judge(pair).outcome == "distinct"
    finally:
        sys.modules.pop("xs_lc_judges_for_test", None)
