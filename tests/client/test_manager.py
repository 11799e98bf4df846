"""ExperienceSyncManager through its public API, with MockTransport."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from client_helpers import Recorder, make_config, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

from experience_sync import ExperienceSyncManager, SyncStatus, hookimpl
from experience_sync.client.paths import OutboxLockedError
from experience_sync.errors import ConfigError, NotInitializedError, RejectedError, RetryableError
from experience_sync.interfaces import MockTransport, SyncRequest
from experience_sync.models import ExperienceEvent, MergeResult, ObservabilityEvent


class Observer:
    def __init__(self) -> None:
        self.events: list[ObservabilityEvent] = []

    @hookimpl
    def experience_sync_observe(self, event: ObservabilityEvent) -> None:
        self.events.append(event)

    def types(self) -> list[str]:
        return [e.type for e in self.events]


@pytest.fixture
def observer(register_plugin: Any) -> Observer:
    obs = Observer()
    register_plugin(obs, name="test-observer")
    return obs


def _manager(data_dir: Path, transport: MockTransport, protocol: Any = "streaming",
             **cfg: Any) -> ExperienceSyncManager:
    m = ExperienceSyncManager(make_config(**cfg), data_dir=data_dir)
    m.initialize_sync("inst-1", protocol, agent_id="agent", transport=transport)
    return m


def test_record_helpers_build_valid_events(data_dir: Path, mock_transport: MockTransport,
                                           recorder: Recorder) -> None:
    m = _manager(data_dir, mock_transport)
    mem = m.record_memory("inst-1", "User prefers short answers", tags=["style"],
                          importance=0.9, context={"task_id": "t1"})
    m.record_skill_use("inst-1", "SQL", proficiency=0.6, context="reports")
    skill = m.record_skill_use("inst-1", "sql", success=False)
    know = m.record_knowledge("inst-1", "Paris is the capital of France", subject="france")
    char = m.record_characteristic("inst-1", "tone", "friendly")
    inter = m.record_interaction("inst-1", "helped with a query", outcome="ok", channel="chat")
    assert m.flush(timeout=10)
    assert [e.sequence for e in (mem, skill, know, char, inter)] == [1, 3, 4, 5, 6]
    assert mem.source_instance == "inst-1" and mem.agent_id == "agent"
    assert mem.priority == 0.9 and mem.context.task_id == "t1"
    # Usage reports are cumulative, so re-sending one never doubles a count.
    assert skill.skill.usage.invocations == 2 and skill.skill.usage.successes == 1
    assert skill.skill.proficiency == 0.6 and skill.skill.usage.contexts == ["reports"]
    sent = {e.event_id: e for r in recorder.requests for e in r.payload.events}
    assert len(sent) == 6
    # What travelled is exactly what was recorded (validated again on the way out).
    for event in (mem, skill, know, char, inter):
        assert sent[event.event_id] == ExperienceEvent.model_validate(event.model_dump())
    assert sent[inter.event_id].data.model_dump()["channel"] == "chat"
    m.shutdown(5)


def test_invalid_input_fails_at_record_time(data_dir: Path, mock_transport: MockTransport) -> None:
    m = _manager(data_dir, mock_transport)
    with pytest.raises(ValueError):
        m.record_memory("inst-1", "")
    with pytest.raises(ValueError):
        m.record_memory("inst-1", "x", importance=2.0)
    with pytest.raises(ValueError):
        m.stream_event("inst-1", {"event_type": "memory", "data": {"tags": []}})
    with pytest.raises(NotInitializedError):
        m.record_memory("nobody", "x")
    assert m.status("inst-1").recorded == 0
    m.shutdown(5)


def test_stream_event_sets_instance_fields(data_dir: Path, mock_transport: MockTransport,
                                           recorder: Recorder) -> None:
    m = _manager(data_dir, mock_transport)
    ev = m.stream_event("inst-1", {"event_type": "knowledge", "priority": 0.8,
                                   "data": {"content": "water boils at 100 C"}})
    assert ev.source_instance == "inst-1" and ev.sequence == 1
    assert m.flush(timeout=10)
    assert recorder.event_ids == [ev.event_id]
    m.shutdown(5)


def test_low_priority_goes_to_the_next_lane_or_is_counted(
    data_dir: Path, mock_transport: MockTransport, recorder: Recorder, observer: Observer
) -> None:
    m = _manager(data_dir, mock_transport, protocol=["streaming", "lumped"],
                 lumped={"enabled": True, "batch_interval": "1h"})
    m.record_memory("inst-1", "important", importance=0.9)
    m.record_memory("inst-1", "trivial", importance=0.1)
    assert m.flush(timeout=10)
    kinds = sorted((r.kind, r.event_count) for r in recorder.requests)
    assert kinds == [("batch", 1), ("events", 1)]
    m.shutdown(5)

    only = ExperienceSyncManager(make_config(), data_dir=data_dir / "b")
    only.initialize_sync("inst-2", "streaming", agent_id="agent", transport=mock_transport)
    only.record_memory("inst-2", "trivial", importance=0.1)
    status = only.status("inst-2")
    assert status.filtered == 1
    assert status.reasons == {"filtered:below_priority_threshold": 1}
    filtered = [e for e in observer.events if e.type == "sync.filtered"]
    assert filtered[-1].data["reason"] == "below_priority_threshold"
    only.shutdown(5)


def test_protocol_none_runs_default_plus_enabled_sections(
    data_dir: Path, mock_transport: MockTransport
) -> None:
    m = ExperienceSyncManager(
        make_config(default_protocol="lumped", check_in={"enabled": True}), data_dir=data_dir
    )
    m.initialize_sync("inst-1", agent_id="agent", transport=mock_transport)
    assert m.status("inst-1").protocols == ["streaming", "lumped", "check_in"]
    m.shutdown(5)


def test_hook_experience_sync_filter_event(
    data_dir: Path, mock_transport: MockTransport, recorder: Recorder, register_plugin: Any
) -> None:
    class Redactor:
        @hookimpl
        def experience_sync_filter_event(self, event: ExperienceEvent) -> ExperienceEvent | None:
            if event.event_type == "memory" and "secret" in event.memory.content:
                return None
            if event.event_type == "memory":
                data = event.memory.model_copy(update={"content": event.memory.content.upper()})
                return event.model_copy(update={"data": data})
            return event

    register_plugin(Redactor(), name="redactor")
    m = _manager(data_dir, mock_transport)
    m.record_memory("inst-1", "my secret password", importance=0.9)
    kept = m.record_memory("inst-1", "hello", importance=0.9)
    assert kept.memory.content == "HELLO"
    assert m.flush(timeout=10)
    assert [e.memory.content for r in recorder.requests for e in r.payload.events] == ["HELLO"]
    assert m.status("inst-1").reasons == {"filtered:filter_hook": 1}
    m.shutdown(5)


def test_retryable_failures_are_retried_and_reported(
    data_dir: Path, mock_transport: MockTransport, recorder: Recorder, observer: Observer
) -> None:
    recorder.fail_with = [RetryableError("hub down", status_code=503)] * 2
    m = _manager(data_dir, mock_transport)
    ev = m.record_memory("inst-1", "survives outages", importance=0.9)
    assert m.flush(timeout=20)
    assert recorder.event_ids == [ev.event_id]
    status = m.status("inst-1")
    assert status.error is None and status.delivered == 1 and status.last_sync is not None
    assert observer.types().count("sync.failed") == 2
    assert {"sync.init", "sync.event"} <= set(observer.types())
    m.shutdown(5)


def test_a_refused_event_is_isolated_and_dead_lettered(
    data_dir: Path, observer: Observer
) -> None:
    delivered: list[str] = []

    def handler(request: SyncRequest) -> MergeResult:
        contents = [e.memory.content for e in request.payload.events]
        if "poison" in contents:
            raise RejectedError("hub refused the request (422): bad event", status_code=422)
        delivered.extend(contents)
        return MergeResult(accepted_event_ids=[e.event_id for e in request.payload.events])

    m = _manager(data_dir, MockTransport(handler), streaming={"batch_size": 8})
    for i in range(7):
        m.record_memory("inst-1", "poison" if i == 3 else f"good {i}", importance=0.9)
    # flush reports False: one event was not acknowledged (it is dead-lettered).
    assert not m.flush(timeout=10)
    assert sorted(delivered) == [f"good {i}" for i in (0, 1, 2, 4, 5, 6)]
    [dead] = m.dead_letters("inst-1")
    assert dead["status"] == 422 and dead["event"]["data"]["content"] == "poison"
    status = m.status("inst-1")
    assert status.dead_lettered == 1 and status.backlog_size == 0
    assert any(e.type == "sync.failed" and e.data["dead_lettered"] for e in observer.events)
    m.shutdown(5)


def test_auth_refusal_keeps_the_events(data_dir: Path, recorder: Recorder) -> None:
    recorder.fail_with = [RejectedError("hub refused the request (401): bad token",
                                        status_code=401)]
    m = _manager(data_dir, MockTransport(recorder))
    ev = m.record_memory("inst-1", "kept until the token is fixed", importance=0.9)
    assert wait_until(lambda: m.status("inst-1").error is not None)
    assert m.status("inst-1").backlog_size == 1
    assert m.flush(timeout=20)
    assert recorder.event_ids == [ev.event_id]
    m.shutdown(5)


def test_restart_resends_what_was_not_acknowledged(data_dir: Path, recorder: Recorder) -> None:
    def down(request: SyncRequest) -> MergeResult:
        raise RetryableError("unreachable")

    m = _manager(data_dir, MockTransport(down))
    events = [m.record_memory("inst-1", f"m{i}", importance=0.9).event_id for i in range(20)]
    m.record_skill_use("inst-1", "chess", proficiency=0.4)
    assert not m.shutdown(timeout=0.5)

    again = ExperienceSyncManager(make_config(), data_dir=data_dir)
    again.initialize_sync("inst-1", "streaming", agent_id="agent",
                          transport=MockTransport(recorder))
    assert again.status("inst-1").backlog_size == 21
    nxt = again.record_skill_use("inst-1", "Chess")
    assert nxt.sequence == 22
    assert nxt.skill.usage.invocations == 2 and nxt.skill.proficiency == 0.4
    assert again.flush(timeout=10)
    assert set(events) <= set(recorder.event_ids)
    again.shutdown(5)


def test_one_outbox_one_process(data_dir: Path, mock_transport: MockTransport) -> None:
    m = _manager(data_dir, mock_transport)
    other = ExperienceSyncManager(make_config(), data_dir=data_dir)
    with pytest.raises(OutboxLockedError):
        other.initialize_sync("inst-1", "streaming", agent_id="agent", transport=mock_transport)
    m.shutdown(5)


def test_status_reports_schedule_and_counts(data_dir: Path, mock_transport: MockTransport) -> None:
    m = _manager(data_dir, mock_transport, streaming={"interval_ms": 60_000, "batch_size": 100})
    m.record_memory("inst-1", "waiting", importance=0.9)
    assert wait_until(lambda: m.status("inst-1").recorded == 1)
    status = m.status("inst-1")
    assert isinstance(status, SyncStatus)
    assert status.backlog_size == 1 and status.next_sync is not None
    assert status.transport == "mock" and status.protocols == ["streaming"]
    assert m.flush(timeout=10) and m.status("inst-1").backlog_size == 0
    m.shutdown(5)


def test_async_flush_and_shutdown(data_dir: Path, mock_transport: MockTransport) -> None:
    m = _manager(data_dir, mock_transport)

    async def main() -> bool:
        m.record_memory("inst-1", "from async code", importance=0.9)
        return await m.aflush(timeout=10) and await m.ashutdown(5)

    assert asyncio.run(main())


def test_endpoint_override_is_validated(data_dir: Path) -> None:
    m = ExperienceSyncManager(make_config(), data_dir=data_dir)
    with pytest.raises(ConfigError, match="endpoint"):
        m.initialize_sync("i", "streaming", agent_id="a", endpoint="http://example.com")


def test_source_agent_object(data_dir: Path, mock_transport: MockTransport) -> None:
    class Agent:
        agent_id = "from-object"

    m = ExperienceSyncManager(make_config(), data_dir=data_dir)
    m.initialize_sync("i", "streaming", source_agent=Agent(), transport=mock_transport)
    assert m.status("i").agent_id == "from-object"
    m.shutdown(5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_share_the_worker(data_dir: Path,
                                                mock_transport: MockTransport) -> None:
    m = _manager(data_dir, mock_transport)
    m.record_memory("inst-1", "before fork", importance=0.9)
    assert m.flush(timeout=10)
    import warnings

    with warnings.catch_warnings():
        # Python warns that forking a multi-threaded process can deadlock; the
        # child below only touches the manager's fork-reset state.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            m.status("inst-1")
            code = 1
        except NotInitializedError as exc:
            code = 0 if "forked" in str(exc) else 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    m.record_memory("inst-1", "parent still works", importance=0.9)
    assert m.flush(timeout=10)
    m.shutdown(5)
    assert sys.platform != "win32"


def test_third_party_transport_and_protocol_plug_in_by_name(
    data_dir: Path, register_plugin: Any
) -> None:
    from experience_sync.client.protocols import StreamingProtocol
    from experience_sync.hookspecs import Register

    sent: list[SyncRequest] = []

    class Plugin:
        @hookimpl
        def experience_sync_register_transports(self, register: Register) -> None:
            register("pigeon", lambda config, agent_id: MockTransport(
                lambda r: sent.append(r) or MergeResult()))

        @hookimpl
        def experience_sync_register_protocols(self, register: Register) -> None:
            class Urgent(StreamingProtocol):
                name = "urgent"

                def accepts(self, event: ExperienceEvent) -> bool:
                    return "urgent" in event.model_dump_json()

            register("urgent", Urgent)

    register_plugin(Plugin(), name="pigeon-plugin")
    cfg = make_config(transport={"type": "pigeon"}, lumped={"enabled": True})
    m = ExperienceSyncManager(cfg, data_dir=data_dir)
    m.initialize_sync("inst-1", ["urgent", "lumped"], agent_id="agent")
    m.record_memory("inst-1", "urgent: the server is down", importance=0.9)
    m.record_memory("inst-1", "routine note", importance=0.9)
    assert m.flush(timeout=10)
    assert sorted(r.kind for r in sent) == ["batch", "events"]
    assert sent[0].meta["protocol"] in {"urgent", "lumped"}
    assert m.status("inst-1").transport == "mock"
    m.shutdown(5)


def test_a_restart_with_other_protocols_ships_the_old_lanes(
    data_dir: Path, recorder: Recorder
) -> None:
    def down(request: SyncRequest) -> MergeResult:
        raise RetryableError("unreachable")

    m = _manager(data_dir, MockTransport(down), protocol="lumped")
    ids = [m.record_memory("inst-1", f"m{i}", importance=0.1).event_id for i in range(5)]
    assert not m.shutdown(timeout=0.5)

    again = _manager(data_dir, MockTransport(recorder), protocol="streaming")
    assert again.flush(timeout=10)
    assert sorted(recorder.event_ids) == sorted(ids)
    again.shutdown(5)


@settings(max_examples=300, deadline=None)
@given(
    content=st.one_of(st.text(max_size=30), st.integers(), st.none()),
    tags=st.one_of(st.lists(st.text(max_size=5), max_size=3),
                   st.tuples(st.text(max_size=5)), st.lists(st.integers(), max_size=2)),
    importance=st.one_of(st.floats(allow_nan=True), st.integers(-2, 2), st.booleans()),
    confidence=st.one_of(st.floats(0, 1), st.just(float("nan")), st.integers(0, 1)),
)
def test_memory_shortcut_agrees_with_pydantic(content: Any, tags: Any, importance: Any,
                                              confidence: Any) -> None:
    from pydantic import ValidationError

    from experience_sync.client.instance import memory_data
    from experience_sync.models import MemoryData

    def outcome(make: Any) -> Any:
        try:
            return make().model_dump()
        except ValidationError:
            return "invalid"

    fast = outcome(lambda: memory_data(content, tags, importance, confidence, None))
    reference = outcome(lambda: MemoryData(content=content, tags=list(tags),
                                           importance=importance, confidence=confidence))
    assert fast == reference
