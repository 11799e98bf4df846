"""The durable outbox: rows survive restarts, sequences persist, bounds are explicit."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from experience_sync.client.outbox import Outbox
from experience_sync.config import OutboxConfig
from experience_sync.errors import OutboxFullError


def _body(seq: int) -> bytes:
    return (
        b'{"event_id":"e%d","event_type":"memory","data":{"content":"m%d"}}' % (seq, seq)
    )


def _put(outbox: Outbox, lane: str = "streaming") -> int:
    return outbox.add(lane, {"event_id": "e", "data": {"content": "m"}}, "memory")


@pytest.mark.parametrize("durability", ["group", "sync"])
def test_rows_and_sequences_survive_a_restart(tmp_path: Path, durability: str) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path, OutboxConfig(durability=durability))
    seqs = [_put(box) for _ in range(50)]
    assert box.wait_durable(seqs[-1], timeout=10)
    box.ack(box.read("streaming", 10))  # the hub acknowledged the first ten
    assert box.close()

    again = Outbox(path, OutboxConfig(durability=durability))
    rows = again.read("streaming", 1000)
    assert [r.seq for r in rows] == seqs[10:]
    assert again.size == 40 and again.pending("streaming") == 40
    assert again.counters.values["recorded"] == 50
    assert again.counters.values["delivered"] == 10
    values: dict[str, object] = {"event_id": "next"}
    seq = again.add("streaming", values)
    assert seq == seqs[-1] + 1 and values["lamport"] == 51  # numbering continues
    again.close()


def test_sync_durability_commits_before_returning(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", OutboxConfig(durability="sync"))
    seq = _put(box)
    # No wait: in sync mode the row is committed when put() returns.
    assert [r.seq for r in box.read("streaming", 10)] == [seq]
    box.close()


def test_refuse_policy_raises_and_counts(tmp_path: Path) -> None:
    reasons: list[str] = []
    box = Outbox(
        tmp_path / "o.db", OutboxConfig(max_events=3, when_full="refuse"), on_full=reasons.append
    )
    for _ in range(3):
        _put(box)
    with pytest.raises(OutboxFullError, match="max_events=3"):
        _put(box)
    assert box.counters.values["refused"] == 1
    assert box.counters.reasons == {"refused:outbox_full": 1}
    assert reasons == ["outbox_full"]
    box.close()


def test_block_policy_waits_for_room(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", OutboxConfig(max_events=2, when_full="block", block_timeout=30))
    first = _put(box)
    _put(box)
    box.wait_durable(first + 1, timeout=10)
    got: list[int] = []
    t = threading.Thread(target=lambda: got.append(_put(box)))
    t.start()
    t.join(0.2)
    assert t.is_alive() and not got  # blocked: the outbox is full
    box.ack(box.read("streaming", 1))
    t.join(10)
    assert got == [first + 2]
    box.close()


def test_block_policy_times_out_with_a_reason(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", OutboxConfig(max_events=1, block_timeout=0.05))
    _put(box)
    with pytest.raises(OutboxFullError):
        _put(box)
    assert box.counters.reasons == {"refused:outbox_full_timeout": 1}
    box.close()


def test_dead_letter_keeps_the_refused_event(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", OutboxConfig(durability="sync"))
    _put(box)
    box.dead_letter(box.read("streaming", 1), "hub refused (422): bad", 422)
    assert box.size == 0
    [dead] = box.dead_rows()
    assert dead["status"] == 422 and dead["event"]["event_id"] == "e"
    assert box.counters.values["dead"] == 1
    box.close()


def test_lanes_are_separate(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", OutboxConfig(durability="sync"))
    _put(box, "streaming")
    _put(box, "lumped")
    _put(box, "lumped")
    assert box.pending("streaming") == 1 and box.pending("lumped") == 2
    assert [r.seq for r in box.read("lumped", 10)] == [2, 3]
    assert box.min_outstanding() == 1
    box.close()


def test_journaled_rows_are_replayed_after_a_crash(tmp_path: Path) -> None:
    # What a killed process leaves behind in group mode: rows in the journal
    # that the group commit had not written yet.
    from experience_sync.client.journal import Journal

    box = Outbox(tmp_path / "outbox.db", OutboxConfig())
    first = _put(box)
    assert box.wait_durable(first, timeout=10)
    box.close()
    journal = Journal(tmp_path)
    for seq in (1, 2, 3):  # 1 is committed already (a stale record), 2 and 3 are not
        assert journal.append(seq, "streaming", _body(seq), "memory", "", 0)
    journal.close()

    again = Outbox(tmp_path / "outbox.db", OutboxConfig())
    assert [r.seq for r in again.read("streaming", 10)] == [1, 2, 3]
    assert again.counters.values["recorded"] == 3
    assert _put(again) == 4
    again.close()
    assert list(Journal(tmp_path).records()) == []  # cleared once committed


def test_journal_reuses_a_file_only_once_committed(tmp_path: Path) -> None:
    from experience_sync.client.journal import Journal

    journal = Journal(tmp_path, size=4096)
    body = b"x" * 500
    mark = 0
    seq = 0
    while journal.append(seq + 1, "l", body, None, "", mark):
        seq += 1
    # Both files are full of rows above the watermark: no room until a commit.
    assert seq > 8
    mark = seq
    assert journal.append(seq + 1, "l", body, None, "", mark)
    journal.close()
