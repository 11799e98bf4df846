"""The built-in protocols: timing, splitting, compression and check-in contents."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from client_helpers import Recorder, make_config, wait_until
from croniter import croniter

from experience_sync import ExperienceSyncManager
from experience_sync.client.protocols import CheckInProtocol, LumpedProtocol, StreamingProtocol
from experience_sync.interfaces import MockTransport, ProtocolContext
from experience_sync.models import CheckIn, EventsRequest, ExperienceBatch


def _manager(data_dir: Path, recorder: Recorder, protocol: str, **cfg: Any) -> ExperienceSyncManager:
    m = ExperienceSyncManager(make_config(**cfg), data_dir=data_dir)
    m.initialize_sync("inst-1", protocol, agent_id="agent", transport=MockTransport(recorder))
    return m


def test_streaming_splits_at_batch_size(data_dir: Path, recorder: Recorder) -> None:
    m = _manager(data_dir, recorder, "streaming",
                 streaming={"interval_ms": 3_600_000, "batch_size": 10})
    for i in range(25):
        m.record_memory("inst-1", f"m{i}", importance=0.9)
    assert m.flush(timeout=10)
    sizes = sorted(r.event_count for r in recorder.requests)
    assert max(sizes) <= 10 and sum(sizes) == 25
    assert all(isinstance(r.payload, EventsRequest) for r in recorder.requests)
    m.shutdown(5)


def test_streaming_ships_at_batch_size_without_waiting(data_dir: Path, recorder: Recorder) -> None:
    m = _manager(data_dir, recorder, "streaming",
                 streaming={"interval_ms": 3_600_000, "batch_size": 5})
    for i in range(5):
        m.record_memory("inst-1", f"m{i}", importance=0.9)
    # No flush: five waiting events are a full batch.
    assert wait_until(lambda: len(recorder.event_ids) == 5)
    m.shutdown(5)


def test_streaming_ships_on_its_interval(data_dir: Path, recorder: Recorder) -> None:
    m = _manager(data_dir, recorder, "streaming", streaming={"interval_ms": 50, "batch_size": 100})
    m.record_memory("inst-1", "one", importance=0.9)
    assert wait_until(lambda: len(recorder.event_ids) == 1)
    m.shutdown(5)


@pytest.mark.parametrize("codec", ["gzip", "zstd", "none"])
def test_lumped_splits_at_max_batch_size_and_sets_the_codec(
    data_dir: Path, recorder: Recorder, codec: str
) -> None:
    m = _manager(data_dir, recorder, "lumped",
                 lumped={"batch_interval": "1h", "max_batch_size": 10, "compression": codec})
    for i in range(25):
        m.record_memory("inst-1", f"m{i}", importance=0.2)
    assert m.flush(timeout=10)
    batches = [r.payload for r in recorder.requests]
    assert all(isinstance(b, ExperienceBatch) for b in batches)
    assert sorted(len(b.events) for b in batches) == [5, 10, 10]
    assert {r.compression for r in recorder.requests} == {codec}
    for b in batches:
        assert isinstance(b, ExperienceBatch)
        assert b.timestamp_start <= b.timestamp_end and b.instance_id == "inst-1"
    m.shutdown(5)


def test_lumped_ships_on_its_interval(data_dir: Path, recorder: Recorder) -> None:
    m = _manager(data_dir, recorder, "lumped", lumped={"batch_interval": "100ms"})
    m.record_memory("inst-1", "later", importance=0.1)
    assert wait_until(lambda: len(recorder.event_ids) == 1)
    assert recorder.requests[0].kind == "batch"
    m.shutdown(5)


def test_lumped_interval_is_parsed_strictly() -> None:
    with pytest.raises(ValueError):
        make_config(lumped={"batch_interval": "soon"})
    ctx = ProtocolContext("i", "a", started_at=100.0)
    proto = LumpedProtocol(make_config(lumped={"batch_interval": "1h30m"}), ctx)
    assert proto.next_due(100.0) == pytest.approx(100.0 + 5400)


def test_periodic_schedule_stays_on_its_grid() -> None:
    ctx = ProtocolContext("i", "a", started_at=0.0)
    proto = StreamingProtocol(make_config(streaming={"interval_ms": 500}), ctx)
    assert not proto.due(0.4, 1)
    assert proto.due(0.5, 1) and not proto.due(0.5, 0)
    proto.shipped(0.6)
    assert proto.next_due(0.6) == pytest.approx(1.0)
    assert proto.next_due(7.3) == pytest.approx(7.5)  # idle ticks are skipped


def test_check_in_follows_its_cron_schedule() -> None:
    ctx = ProtocolContext("i", "a", started_at=time.monotonic())
    proto = CheckInProtocol(make_config(check_in={"schedule": "*/5 * * * *"}), ctx)
    wall = time.time()
    expected = croniter("*/5 * * * *", wall).get_next(float) - wall
    now = time.monotonic()
    assert proto.next_due(now) - now == pytest.approx(expected, abs=1.0)
    assert not proto.due(now, 100)
    assert proto.due(now + expected + 1, 0)  # a check-in goes out even with no events


def test_check_in_carries_state_or_summary(data_dir: Path, recorder: Recorder) -> None:
    m = _manager(data_dir, recorder, "check_in", check_in={"include_full_state": True})
    m.record_memory("inst-1", "the user is left-handed", importance=0.3)
    m.record_skill_use("inst-1", "drawing", proficiency=0.5)
    m.record_skill_use("inst-1", "drawing", proficiency=0.6)
    m.record_knowledge("inst-1", "ink dries in 5 minutes", subject="ink")
    m.record_characteristic("inst-1", "style", "sketchy")
    assert m.flush(timeout=10)
    [req] = recorder.requests
    assert isinstance(req.payload, CheckIn) and req.kind == "checkin"
    state = req.payload.state
    assert state is not None and len(req.payload.events) == 5
    assert [mem.content for mem in state.memories] == ["the user is left-handed"]
    [skill] = state.skills
    assert skill.proficiency == 0.6 and skill.usage.invocations == 2
    assert [k.subject for k in state.knowledge] == ["ink"]
    assert state.characteristics == {"style": "sketchy"}
    assert state.stats.events_recorded == 5
    m.shutdown(5)

    summary_recorder = Recorder()
    m2 = _manager(data_dir / "s", summary_recorder, "check_in",
                  check_in={"include_full_state": False})
    m2.record_memory("inst-1", "another", importance=0.3)
    assert m2.flush(timeout=10)
    [req2] = summary_recorder.requests
    assert isinstance(req2.payload, CheckIn)
    assert req2.payload.state is None and req2.payload.summary is not None
    assert req2.payload.summary.memories == 1 and req2.payload.summary.last_sequence == 1
    m2.shutdown(5)


def test_scheduled_check_in_without_events(
    data_dir: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Make the schedule fire 50 ms from now instead of at the next cron time.
    monkeypatch.setattr(CheckInProtocol, "_compute_next", lambda self: time.monotonic() + 0.05)
    m = _manager(data_dir, recorder, "check_in")
    assert wait_until(lambda: len(recorder.requests) >= 1)
    req = recorder.requests[0]
    assert isinstance(req.payload, CheckIn) and req.payload.events == []
    assert req.payload.state is not None
    m.shutdown(5)
