"""What ``experience-sync demo`` prints: the merged source agent and the sync events."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from experience_sync.models import ObservabilityEvent

#: Rows of the event table before it is summarised.
MAX_EVENT_ROWS = 60


def _short(value: Any, width: int = 70) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def print_report(
    console: Console,
    report: dict[str, Any],
    events: list[tuple[float, str, ObservabilityEvent]],
    instances: list[Any],
    statuses: dict[str, Any],
    strategy: str,
    aggregation: str,
    conflict_key: str,
    conflict: list[tuple[str, Any, float]],
) -> None:
    """Print every part of the merged source agent, then the event table."""
    state = report["state"]
    console.rule(f"[bold]Source agent {state['agent_id']}[/bold] (cursor {state['cursor']})")
    _instances(console, instances, statuses, report["instances"])
    _memories(console, state["memories"])
    _skills(console, state["skills"], aggregation)
    _knowledge(console, state["knowledge"])
    _conflict(console, state, report["reviews"], strategy, conflict_key, conflict)
    _stats(console, state["stats"])
    _events(console, events)


def _instances(
    console: Console, plans: list[Any], statuses: dict[str, Any], hub_view: list[dict[str, Any]]
) -> None:
    table = Table(
        title="Instances",
        title_justify="left",
        caption="recorded/delivered: the instance's outbox counters; the hub also counts the "
        "state a full check-in carries",
        caption_justify="left",
    )
    for col in ("instance", "protocol", "transport", "recorded", "delivered", "backlog",
                "hub saw (events, via)"):
        table.add_column(col)
    seen = {i["instance_id"]: i for i in hub_view}
    for plan in plans:
        st = statuses[plan.instance_id]
        hub = seen.get(plan.instance_id, {})
        table.add_row(
            plan.instance_id, plan.protocol, plan.transport, str(st.recorded), str(st.delivered),
            str(st.backlog_size),
            f"{hub.get('total_events', 0)}, {hub.get('protocol')}/{hub.get('transport')}",
        )
    console.print(table)


def _memories(console: Console, memories: list[dict[str, Any]]) -> None:
    table = Table(
        title=f"Memories ({len(memories)} merged)", title_justify="left", show_lines=False
    )
    table.add_column("memory")
    table.add_column("sources (instances)")
    table.add_column("reports", justify="right")
    for m in sorted(memories, key=lambda m: -len(m["source_events"])):
        table.add_row(
            _short(m["content"]), ", ".join(m["source_instances"]), str(len(m["source_events"]))
        )
    console.print(table)
    merged = [m for m in memories if len(m["source_instances"]) > 1]
    if merged:
        m = max(merged, key=lambda m: len(m["source_events"]))
        console.print(
            f"  {len(m['source_events'])} reports from {len(m['source_instances'])} instances "
            "collapsed into one memory: the first report, an exact copy, a case/punctuation "
            "variant and a word-order variant.",
            highlight=False,
        )


def _skills(console: Console, skills: list[dict[str, Any]], aggregation: str) -> None:
    table = Table(title=f"Skills (aggregation: {aggregation})", title_justify="left")
    for col in ("skill", "proficiency", "per instance (latest)", "uses", "success",
                "learning curve"):
        table.add_column(col)
    for s in skills:
        per = ", ".join(
            f"{inst} {r.get('proficiency') if r.get('proficiency') is not None else '-'}"
            for inst, r in sorted(s["per_instance"].items())
        )
        curve = " -> ".join(f"{p['proficiency']:.2f}" for p in s["learning_curve"])
        usage = s["usage"]
        table.add_row(
            s["name"], f"{s['proficiency']:.2f}", per, str(usage["total_invocations"]),
            f"{usage['success_rate']:.0%}", curve,
        )
    console.print(table)


def _knowledge(console: Console, items: list[dict[str, Any]]) -> None:
    table = Table(title="Knowledge", title_justify="left")
    for col in ("status", "knowledge", "verified by", "confidence"):
        table.add_column(col)
    for k in sorted(items, key=lambda k: k["status"] != "integrated"):
        colour = "green" if k["status"] == "integrated" else "yellow"
        table.add_row(
            f"[{colour}]{k['status']}[/{colour}]", _short(k["content"], 60),
            ", ".join(sorted(k["verifications"])), f"{k['confidence']:.2f}",
        )
    console.print(table)
    console.print(
        "  knowledge integrates once independent instances verify it (two at least, with a "
        "combined confidence at the configured threshold); a single report stays pending.",
        highlight=False,
    )


def _conflict(
    console: Console,
    state: dict[str, Any],
    reviews: list[dict[str, Any]],
    strategy: str,
    key: str,
    conflict: list[tuple[str, Any, float]],
) -> None:
    said = "; ".join(f"{inst} said {value!r} (confidence {conf})" for inst, value, conf in conflict)
    current = state["characteristics"].get(key)
    value = current["value"] if current else None
    console.print(f"\n[bold]Conflict[/bold] on characteristic {key!r}: {said}.", highlight=False)
    if strategy == "manual_review":
        console.print(
            f"  strategy manual_review: nothing applied, kept {value!r}; the conflict waits "
            "in the review queue.", highlight=False,
        )
    else:
        console.print(f"  strategy {strategy}: resolved to {value!r}.", highlight=False)
    if not reviews:
        console.print(
            f"Review queue: empty ({strategy} applies conflicts at once; "
            "run with --strategy manual_review to queue them).",
            highlight=False,
        )
    table = Table(title=f"Review queue ({len(reviews)})", title_justify="left")
    for col in ("review", "kind", "key", "current", "proposed", "from", "status"):
        table.add_column(col)
    for r in reviews:
        table.add_row(
            r["review_id"][:8], r["kind"], r["key"], _short(r["current"].get("value", r["current"]), 30),
            _short(r["proposed"].get("value", r["proposed"]), 30), r["instance_id"], r["status"],
        )
    if reviews:
        console.print(table)
    chars = Table(title="Characteristics", title_justify="left")
    for col in ("key", "value", "confidence", "from"):
        chars.add_column(col)
    for k, c in sorted(state["characteristics"].items()):
        chars.add_row(k, repr(c["value"]), f"{c['confidence']:.2f}", c["source_instance"])
    console.print(chars)


def _stats(console: Console, stats: dict[str, Any]) -> None:
    console.print(
        "[bold]Stats[/bold] " + ", ".join(
            f"{k}={v}" for k, v in stats.items() if k != "last_evolution"
        ),
        highlight=False,
    )


def _details(event: ObservabilityEvent) -> str:
    data = event.data
    if event.type.startswith("sync.") and "events" in data and "transport" in data:
        parts = [f"{data.get('protocol')}/{data.get('transport')}"]
        for key in ("events", "accepted", "duplicates", "backlog", "status", "error"):
            if data.get(key) not in (None, "", 0) or key == "events":
                parts.append(f"{key}={data.get(key)}")
        return _short(" ".join(parts), 90)
    return _short(", ".join(f"{k}={v}" for k, v in data.items()), 90)


def _events(console: Console, events: list[tuple[float, str, ObservabilityEvent]]) -> None:
    table = Table(title=f"Sync and merge events ({len(events)})", title_justify="left")
    for col in ("t (ms)", "side", "event", "instance", "details"):
        table.add_column(col)
    for at, side, event in events[:MAX_EVENT_ROWS]:
        table.add_row(
            f"{at * 1000:.0f}", side, event.type, event.instance_id or "", _details(event)
        )
    console.print(table)
    if len(events) > MAX_EVENT_ROWS:
        console.print(f"  ... {len(events) - MAX_EVENT_ROWS} more events", highlight=False)
    counts = Counter(f"{e.type} ({side})" for _, side, e in events)
    console.print(
        "Event counts: " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())),
        highlight=False,
    )
