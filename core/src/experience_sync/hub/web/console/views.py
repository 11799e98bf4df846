"""What the console's pages show, computed from the engine's reads: pages, plots, gaps.

Nothing here touches the store: every figure comes from the same
:class:`~experience_sync.hub.engine.MergeEngine` methods the JSON routes use,
so a page and its JSON never disagree.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

from experience_sync.models import KnowledgeItem, LearningCurvePoint, ObservabilityEvent

_T = TypeVar("_T")

#: Rows on one page of a list.
PAGE_SIZE = 25
#: The highest page number a request may ask for (beyond it: 400).
MAX_PAGE = 100_000
#: Distinct instances a knowledge item needs before it can integrate (docs/merging.md).
MIN_VERIFYING_INSTANCES = 2


class BadRequest(ValueError):
    """A query parameter the console cannot use (answered 400, or ``status``)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def page_number(raw: str | None) -> int:
    """A 1-based page number from a query string value (400 when it is not one)."""
    if raw is None or raw == "":
        return 1
    if not raw.isdigit() or len(raw) > 6:
        raise BadRequest(f"page must be a whole number from 1 to {MAX_PAGE}")
    page = int(raw)
    if not 1 <= page <= MAX_PAGE:
        raise BadRequest(f"page must be a whole number from 1 to {MAX_PAGE}")
    return page


def choice(raw: str | None, allowed: Sequence[str], default: str, name: str) -> str:
    """One of ``allowed`` (400 otherwise); ``default`` when absent."""
    if raw is None or raw == "":
        return default
    if raw not in allowed:
        raise BadRequest(f"{name} must be one of {', '.join(allowed)}")
    return raw


@dataclass
class Page(Generic[_T]):
    """One page of a list: its rows, where it starts and how many there are in all."""

    items: list[_T]
    page: int
    total: int
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        """How many pages the list has (at least 1)."""
        return max(1, -(-self.total // self.size))

    @property
    def first(self) -> int:
        """1-based position of the first row shown (0 for an empty page)."""
        return (self.page - 1) * self.size + 1 if self.items else 0

    @property
    def last(self) -> int:
        """1-based position of the last row shown."""
        return self.first + len(self.items) - 1 if self.items else 0

    @classmethod
    def of(cls, rows: Sequence[_T], page: int, size: int = PAGE_SIZE) -> Page[_T]:
        """The ``page``-th slice of ``rows``."""
        start = (page - 1) * size
        return cls(list(rows[start : start + size]), page, len(rows), size)


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """``"12 s ago"``, ``"3 min ago"``, ``"5 h ago"``, ``"2 d ago"``; ``"never"`` for ``None``."""
    if when is None:
        return "never"
    now = now or datetime.now(timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    seconds = max(0.0, (now - when).total_seconds())
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def when(value: datetime | str | None) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS UTC``."""
    if value is None:
        return "-"
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        value = parsed
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def percent(value: float | None) -> str:
    """``0.915`` as ``"92%"``; ``"-"`` for ``None``."""
    return "-" if value is None else f"{value * 100:.0f}%"


# ---------------------------------------------------------------------- knowledge


@dataclass
class KnowledgeGap:
    """How far a knowledge item is from integration.

    :param confidence_missing: threshold minus the combined confidence (0 when reached).
    :param instances_missing: distinct verifying instances still needed (0 when enough).
    """

    confidence_missing: float
    instances_missing: int

    @property
    def reached(self) -> bool:
        """Whether both conditions hold (the item is, or is about to be, integrated)."""
        return self.confidence_missing <= 0 and self.instances_missing <= 0


def knowledge_gap(item: KnowledgeItem, threshold: float) -> KnowledgeGap:
    """What a pending item lacks under the integration rule of ``docs/merging.md``."""
    return KnowledgeGap(
        confidence_missing=max(0.0, threshold - item.confidence),
        instances_missing=max(0, MIN_VERIFYING_INSTANCES - len(item.verifications)),
    )


# ---------------------------------------------------------------------- plots

#: Most points a learning curve draws (longer curves are thinned evenly, ends kept).
MAX_PLOT_POINTS = 200


@dataclass
class Plot:
    """An inline SVG line plot's geometry, drawn by the ``plot`` template macro."""

    width: int
    height: int
    points: list[tuple[float, float, str]]
    x_labels: list[tuple[float, str]]
    y_labels: list[tuple[float, str]]
    left: int
    bottom: int

    @property
    def polyline(self) -> str:
        """The ``points`` attribute of the curve's ``<polyline>``."""
        return " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in self.points)


def thin(points: Sequence[_T], limit: int = MAX_PLOT_POINTS) -> list[_T]:
    """At most ``limit`` of ``points``, evenly spaced, first and last kept."""
    if len(points) <= limit:
        return list(points)
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def learning_plot(
    curve: Sequence[LearningCurvePoint], width: int = 640, height: int = 220
) -> Plot | None:
    """The learning curve (proficiency 0-1 over time) as plot geometry; ``None`` if empty."""
    if not curve:
        return None
    left, right, top, bottom = 40, 12, 10, 28
    shown = thin(sorted(curve, key=lambda p: p.timestamp))
    t0 = shown[0].timestamp.timestamp()
    t1 = shown[-1].timestamp.timestamp()
    span = t1 - t0 or 1.0
    inner_w = width - left - right
    inner_h = height - top - bottom

    def x_of(t: float) -> float:
        return left + (t - t0) / span * inner_w if t1 > t0 else left + inner_w / 2

    def y_of(v: float) -> float:
        return top + (1.0 - v) * inner_h

    points = [
        (
            x_of(p.timestamp.timestamp()),
            y_of(p.proficiency),
            f"{when(p.timestamp)}: {p.proficiency:.2f} ({p.event})",
        )
        for p in shown
    ]
    y_labels = [(y_of(v), f"{v:.1f}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)]
    x_labels = [(x_of(t0), when(shown[0].timestamp)[:16])]
    if t1 > t0:
        x_labels.append((x_of(t1), when(shown[-1].timestamp)[:16]))
    return Plot(width, height, points, x_labels, y_labels, left, height - bottom)


def rate_plot(counts: Sequence[int], bucket_seconds: float, width: int = 320, height: int = 60) -> Plot:
    """Events per second over the last buckets, as a small plot (oldest first)."""
    top, bottom, left = 4, 4, 0
    peak = max(max(counts, default=0) / bucket_seconds, 1e-9)
    step = width / max(1, len(counts) - 1)
    points = [
        (i * step, top + (1 - (c / bucket_seconds) / peak) * (height - top - bottom),
         f"{c / bucket_seconds:.1f} events/s")
        for i, c in enumerate(counts)
    ]
    return Plot(width, height, points, [], [], left, height - bottom)


# ---------------------------------------------------------------------- events


class RecentEvents:
    """An observer keeping a hub's latest observability events and merge rates per agent.

    The hub's SSE stream has no history; this keeps the last ``size`` events
    so the events page opens on something, and counts merged events in
    ``bucket_seconds`` buckets for the fleet page's events/s plot.
    """

    def __init__(self, size: int = 500, bucket_seconds: float = 10.0, buckets: int = 30) -> None:
        self.events: deque[ObservabilityEvent] = deque(maxlen=size)
        self.bucket_seconds = bucket_seconds
        self.buckets = buckets
        self._rates: dict[str, dict[int, int]] = {}
        self._lock = threading.Lock()

    def experience_sync_observe(self, event: ObservabilityEvent) -> None:
        """Remember ``event``; count the events a merged unit accepted."""
        accepted = event.data.get("accepted") if event.type.startswith("sync.") else None
        with self._lock:
            self.events.append(event)
            if isinstance(accepted, int) and accepted > 0 and event.agent_id is not None:
                bucket = int(time.time() // self.bucket_seconds)
                counts = self._rates.setdefault(event.agent_id, {})
                counts[bucket] = counts.get(bucket, 0) + accepted
                for old in [b for b in counts if b <= bucket - self.buckets]:
                    del counts[old]

    def recent(self, agent_id: str | None, prefixes: Sequence[str], limit: int = 100) -> list[ObservabilityEvent]:
        """The latest events of ``agent_id`` (any agent for ``None``) matching a type prefix, newest first."""
        with self._lock:
            events = list(self.events)
        out: list[ObservabilityEvent] = []
        for event in reversed(events):
            if matches(event, agent_id, prefixes):
                out.append(event)
                if len(out) >= limit:
                    break
        return out

    def rates(self, agent_id: str) -> list[int]:
        """Accepted events per bucket over the last ``buckets`` buckets, oldest first."""
        now = int(time.time() // self.bucket_seconds)
        with self._lock:
            counts = dict(self._rates.get(agent_id, {}))
        return [counts.get(b, 0) for b in range(now - self.buckets + 1, now + 1)]


def matches(event: ObservabilityEvent, agent_id: str | None, prefixes: Sequence[str]) -> bool:
    """Whether ``event`` is ``agent_id``'s and of a type under one of ``prefixes`` (all if none)."""
    if agent_id is not None and event.agent_id != agent_id:
        return False
    return not prefixes or any(
        event.type == p or event.type.startswith(p.rstrip(".") + ".") for p in prefixes
    )


def event_summary(event: ObservabilityEvent) -> str:
    """A short ``key=value`` line of an event's data (long values clipped)."""
    parts: list[str] = []
    for key, value in event.data.items():
        text = value if isinstance(value, str) else repr(value)
        parts.append(f"{key}={text[:80]}")
    return ", ".join(parts)[:300]


def sse_message(name: str, html: str) -> bytes:
    """One SSE message whose data is an HTML fragment (one ``data:`` line per line)."""
    lines = html.splitlines() or [""]
    return (f"event: {name}\n" + "".join(f"data: {line}\n" for line in lines) + "\n").encode()


def side_rows(current: dict[str, Any], proposed: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """``(field, current, proposed, differs)`` for both sides of a review (the proposing event left out)."""
    keys = [k for k in dict.fromkeys([*current, *proposed]) if k != "event"]
    rows = []
    for key in keys:
        a, b = current.get(key), proposed.get(key)
        rows.append((key, _cell(a), _cell(b), a != b))
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 2000 else text[:2000] + "..."


__all__ = [
    "PAGE_SIZE",
    "BadRequest",
    "KnowledgeGap",
    "Page",
    "Plot",
    "RecentEvents",
    "ago",
    "choice",
    "event_summary",
    "knowledge_gap",
    "learning_plot",
    "matches",
    "page_number",
    "percent",
    "rate_plot",
    "side_rows",
    "sse_message",
    "thin",
    "when",
]
