"""Export one agent from a store as JSON Lines, and import such a file into another store.

The format is documented in ``docs/export-format.md``: a header line
(``{"format": "experience-sync-export", "version": 1, ...}``), then one
record a line (log entries, compacted entry ids, applied units, instance
statuses), then an ``end`` line counting the records, so a truncated file is
refused. What an export holds is what :func:`~experience_sync.hub.replay.replay`
needs: importing replays the log into the target store under the target's
merge strategy, which gives the source's state when the strategies agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from experience_sync.config import MergeStrategyConfig
from experience_sync.interfaces import Store
from experience_sync.models import AgentState, InstanceStatus, MergeResult, utcnow
from experience_sync.plugins import ExperienceSyncPluginManager
from experience_sync.stores.state import ChangeSet, LogEntry, StoredRow

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "ExportFormatError", "export_agent", "import_agent"]

#: The header's ``format`` value.
EXPORT_FORMAT = "experience-sync-export"
#: The format version this module writes and the only one it reads.
EXPORT_VERSION = 1
# Compacted ids per ``seen`` record.
_SEEN_PER_RECORD = 1000


class ExportFormatError(ValueError):
    """The file is not an export this version can import (the message says why)."""


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _records(store: Store, agent_id: str, cursor: int) -> Iterator[dict[str, Any]]:
    for entry in store.iter_log(agent_id):
        if entry.request > cursor:  # committed after the export began
            break
        yield {
            "type": "log",
            "entry_id": entry.entry_id,
            "kind": entry.kind,
            "request": entry.request,
            "unit_id": entry.unit_id,
            "instance_id": entry.instance_id,
            "body": json.loads(entry.body),
        }
    ids: list[str] = []
    for entry_id in store.iter_compacted(agent_id):
        ids.append(entry_id)
        if len(ids) >= _SEEN_PER_RECORD:
            yield {"type": "seen", "ids": ids}
            ids = []
    if ids:
        yield {"type": "seen", "ids": ids}
    for unit_id, result in store.iter_units(agent_id):
        # A unit applied after the export began has its events outside the file.
        if result.cursor <= cursor:
            yield {"type": "unit", "unit_id": unit_id, "result": result.model_dump(mode="json")}
    for row in store.load_agent(agent_id).rows.get("instances", []):
        yield {"type": "instance", "status": json.loads(row.body)}


def export_agent(store: Store, agent_id: str, out: IO[str]) -> int:
    """Write ``agent_id``'s export to ``out``; returns the number of records.

    A running hub may keep writing: the export holds what was committed up
    to the cursor in its header.
    """
    stored = store.load_agent(agent_id)
    if stored.cursor == 0 and agent_id not in store.agents():
        raise KeyError(agent_id)
    header = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "agent_id": agent_id,
        "cursor": stored.cursor,
        "exported_at": utcnow().isoformat().replace("+00:00", "Z"),
        "store": store.name,
    }
    out.write(_dumps(header) + "\n")
    count = 0
    for record in _records(store, agent_id, stored.cursor):
        out.write(_dumps(record) + "\n")
        count += 1
    out.write(_dumps({"type": "end", "records": count}) + "\n")
    return count


def _parse(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ExportFormatError(f"line {number}: not JSON ({exc.msg})") from None
        if not isinstance(value, dict):
            raise ExportFormatError(f"line {number}: a record is a JSON object")
        yield number, value


def read_header(first: dict[str, Any]) -> str:
    """Check an export's header; returns its agent id (raises :class:`ExportFormatError`)."""
    if first.get("format") != EXPORT_FORMAT:
        raise ExportFormatError(
            f"not an experience-sync export: the first line's format is "
            f"{first.get('format')!r}, expected {EXPORT_FORMAT!r}"
        )
    version = first.get("version")
    if version != EXPORT_VERSION:
        raise ExportFormatError(
            f"unknown export format version {version!r}: this experience-sync "
            f"imports version {EXPORT_VERSION}"
        )
    agent_id = first.get("agent_id")
    if not isinstance(agent_id, str) or not agent_id:
        raise ExportFormatError("the header names no agent_id")
    return agent_id


def import_agent(
    lines: Iterable[str],
    target: Store,
    strategy: MergeStrategyConfig,
    pm: ExperienceSyncPluginManager | None = None,
) -> AgentState:
    """Import an export into ``target`` (which must not hold the agent); returns its state.

    The file is read whole into a staging store in memory first, so a bad or
    truncated file changes nothing in ``target``. Then the log is replayed
    into ``target`` with its applied units, instance statuses and compacted
    ids, as ``experience-sync replay --into`` does.
    """
    from experience_sync.hub.replay import replay
    from experience_sync.stores.sqlite import SQLiteStore

    records = _parse(lines)
    first = next(records, None)
    if first is None:
        raise ExportFormatError("the file is empty")
    agent_id = read_header(first[1])
    if agent_id in target.agents():
        raise ValueError(f"the target store already holds agent {agent_id!r}")
    staging = SQLiteStore("sqlite:///:memory:")
    try:
        _stage(staging, agent_id, records)
        return replay(staging, agent_id, strategy, target=target, pm=pm)
    finally:
        staging.close()


def _stage(staging: Store, agent_id: str, records: Iterator[tuple[int, dict[str, Any]]]) -> None:
    log: list[LogEntry] = []
    count = 0
    ended = False
    cursor = 0

    def flush() -> None:
        if log:
            staging.commit(agent_id, ChangeSet(cursor=cursor, log=list(log)))
            log.clear()

    for number, record in records:
        if ended:
            raise ExportFormatError(f"line {number}: a record after the end line")
        kind = record.get("type")
        try:
            if kind == "end":
                if record.get("records") != count:
                    raise ExportFormatError(
                        f"line {number}: the end line counts {record.get('records')!r} "
                        f"records, the file holds {count}"
                    )
                ended = True
                continue
            count += 1
            if kind == "log":
                request = int(record["request"])
                if log and request != log[-1].request and len(log) >= 5000:
                    flush()
                cursor = max(cursor, request)
                log.append(
                    LogEntry(
                        str(record["entry_id"]), record["kind"], _dumps(record["body"]),
                        record.get("unit_id"), str(record["instance_id"]), request,
                    )
                )
            elif kind == "seen":
                flush()
                staging.commit(agent_id, ChangeSet(cursor=cursor, seen=list(record["ids"])))
            elif kind == "unit":
                flush()
                result = MergeResult.model_validate(record["result"])
                staging.commit(
                    agent_id, ChangeSet(cursor=cursor, units=[(str(record["unit_id"]), result)])
                )
            elif kind == "instance":
                flush()
                status = InstanceStatus.model_validate(record["status"])
                row = StoredRow(status.instance_id, 0, status.model_dump_json())
                staging.commit(agent_id, ChangeSet(cursor=cursor, rows={"instances": [row]}))
            else:
                raise ExportFormatError(f"line {number}: unknown record type {kind!r}")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ExportFormatError):
                raise
            raise ExportFormatError(f"line {number}: a bad {kind} record ({exc})") from None
    if not ended:
        raise ExportFormatError("the file ends before its end line: truncated")
    flush()
