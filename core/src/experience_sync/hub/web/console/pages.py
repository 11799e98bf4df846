"""Each console page's context, read through the engine (run in the thread pool).

A builder returns ``(template, context)``; it raises
:class:`~experience_sync.hub.web.console.views.BadRequest` for input it
cannot use and :class:`LookupError` for an item that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from experience_sync.hub.service import Hub
from experience_sync.hub.web.console import views
from experience_sync.hub.web.console.views import (
    BadRequest,
    Page,
    RecentEvents,
    choice,
    page_number,
)
from experience_sync.models import InstanceStatus, Review
from experience_sync.recall.models import SearchQuery

#: Longest memory search the console sends (the search route's own cap).
MAX_QUERY = 2000
#: Ranked hits a memory search pages through.
SEARCH_DEPTH = 100
#: The event type prefixes the events page offers as filters.
EVENT_TYPES = ("sync", "memory", "skill", "knowledge", "review", "conflict", "hub")

Context = tuple[str, dict[str, Any]]

_FLEET_SORTS: dict[str, tuple[Callable[[InstanceStatus], Any], bool]] = {
    "instance": (lambda s: s.instance_id, False),
    "last_sync": (lambda s: s.last_sync.timestamp() if s.last_sync else 0.0, True),
    "lag": (lambda s: s.lag_seconds if s.lag_seconds is not None else -1.0, True),
    "backlog": (lambda s: s.backlog if s.backlog is not None else -1, True),
    "events": (lambda s: s.total_events, True),
}


def _seg(value: str) -> str:
    return quote(value, safe="")


def type_prefixes(raw: str | None) -> list[str]:
    """The event type filter (comma-separated prefixes such as ``sync,review``)."""
    if not raw:
        return []
    if len(raw) > 200:
        raise BadRequest("type is at most 200 characters")
    prefixes = [p.strip() for p in raw.split(",") if p.strip()]
    for p in prefixes:
        if not all(c.isalnum() or c in "._-" for c in p):
            raise BadRequest("type holds event type prefixes such as sync, review or memory.merged")
    return prefixes


class Pages:
    """Builds the pages of one hub.

    :param hub: whose engine is read.
    :param recent: the hub's recent events and merge rates.
    :param agent_url: how a page links to another of an agent's pages.
    """

    def __init__(self, hub: Hub, recent: RecentEvents, agent_url: Callable[..., str]) -> None:
        self.hub = hub
        self.engine = hub.engine
        self.recent = recent
        self.agent_url = agent_url

    def agents(self, page: str | None) -> Context:
        """Every agent of a ``--no-auth`` hub (a token's session sees only its own)."""
        rows = self.engine.agents()
        return "agents.html", {"page": Page.of(rows, page_number(page)), "nav": "agents"}

    def fleet(self, agent_id: str, page: str | None, sort: str | None) -> Context:
        """The agent's instances: last sync, lag, backlog, protocol, transport, events, rejections."""
        n = page_number(page)
        order = choice(sort, list(_FLEET_SORTS), "last_sync", "sort")
        statuses = self.engine.instances(agent_id)
        key, reverse = _FLEET_SORTS[order]
        statuses.sort(key=key, reverse=reverse)
        rejected: dict[str, int] = {}
        for event in self.recent.recent(agent_id, ["hub.rejected"], limit=500):
            if event.instance_id:
                rejected[event.instance_id] = rejected.get(event.instance_id, 0) + 1
        lags = [s.lag_seconds for s in statuses if s.lag_seconds is not None]
        summary = {
            "instances": len(statuses),
            "events": sum(s.total_events for s in statuses),
            "backlog": sum(s.backlog or 0 for s in statuses),
            "max_lag": max(lags) if lags else None,
            "rejected": sum(rejected.values()),
        }
        rates = self.recent.rates(agent_id)
        return "fleet.html", {
            "nav": "fleet", "page": Page.of(statuses, n), "sort": order, "sorts": list(_FLEET_SORTS),
            "summary": summary, "rejected": rejected,
            "rate": views.rate_plot(rates, self.recent.bucket_seconds),
            "rate_now": rates[-1] / self.recent.bucket_seconds if rates else 0.0,
            "rate_window": int(self.recent.bucket_seconds * self.recent.buckets),
        }

    def memories(self, agent_id: str, q: str | None, page: str | None) -> Context:
        """Ranked search (``q``) or the plain listing, one page."""
        n = page_number(page)
        q = (q or "").strip()
        context: dict[str, Any] = {"nav": "memories", "q": q}
        if q:
            if len(q) > MAX_QUERY:
                raise BadRequest(f"a search is at most {MAX_QUERY} characters", 422)
            try:
                query = SearchQuery(q=q, k=SEARCH_DEPTH, kinds=["memory"])
            except ValidationError as exc:
                raise BadRequest(f"q: {exc.errors()[0]['msg']}", 422) from None
            hits = self.engine.search(agent_id, query).hits
            context.update(mode="search", page=Page.of(hits, n))
        else:
            offset = (n - 1) * views.PAGE_SIZE
            items, total = self.engine.memories(agent_id, None, offset, views.PAGE_SIZE)
            context.update(mode="list", page=Page(items, n, total))
        return "memories.html", context

    def memory(self, agent_id: str, memory_id: str) -> Context:
        """One memory's provenance, superseded statements and the reviews it took part in."""
        items, _ = self.engine.memories(agent_id, None, 0, 1 << 62)
        found = next((m for m in items if m.memory_id == memory_id), None)
        if found is None:
            raise LookupError(f"No memory {memory_id!r} for agent {agent_id!r}.")
        reviews = [r for r in self.engine.reviews(agent_id, None) if r.kind == "memory" and r.key == memory_id]
        return "memory.html", {"nav": "memories", "memory": found, "reviews": reviews}

    def skills(self, agent_id: str, page: str | None) -> Context:
        """Skills by proficiency, each with its fleet figures and a small curve."""
        rows = sorted(self.engine.skills(agent_id), key=lambda s: (-s.proficiency, s.name))
        p = Page.of(rows, page_number(page))
        plots = {s.skill_id: views.learning_plot(s.learning_curve, 200, 48) for s in p.items}
        return "skills.html", {"nav": "skills", "page": p, "plots": plots}

    def skill(self, agent_id: str, skill_id: str) -> Context:
        """One skill: its learning curve and what each instance reported."""
        found = next((s for s in self.engine.skills(agent_id) if s.skill_id == skill_id), None)
        if found is None:
            raise LookupError(f"No skill {skill_id!r} for agent {agent_id!r}.")
        per_instance = sorted(found.per_instance.items())
        return "skill.html", {
            "nav": "skills", "skill": found, "plot": views.learning_plot(found.learning_curve),
            "per_instance": per_instance,
        }

    def knowledge(self, agent_id: str, status: str | None, page: str | None) -> Context:
        """Knowledge, integrated and pending, with the evidence and each pending item's gap."""
        which = choice(status, ["all", "pending", "integrated"], "all", "status")
        n = page_number(page)
        items = self.engine.knowledge(agent_id, None if which == "all" else which)
        # Pending first, closest to integrating first; then the newest integrated.
        items.sort(key=lambda k: (k.status != "pending", -k.confidence if k.status == "pending" else -(k.integrated_at or k.first_seen).timestamp()))
        threshold = self.engine.strategy.knowledge_verification_threshold
        p = Page.of(items, n)
        gaps = {k.knowledge_id: views.knowledge_gap(k, threshold) for k in p.items}
        return "knowledge.html", {
            "nav": "knowledge", "page": p, "status": which, "threshold": threshold, "gaps": gaps,
            "min_instances": views.MIN_VERIFYING_INSTANCES,
        }

    def knowledge_item(self, agent_id: str, knowledge_id: str) -> Context:
        """One knowledge item (by ``knowledge_id`` or ``key``): its evidence, alternatives and gap."""
        found = next(
            (k for k in self.engine.knowledge(agent_id) if knowledge_id in (k.knowledge_id, k.key)), None
        )
        if found is None:
            raise LookupError(f"No knowledge item {knowledge_id!r} for agent {agent_id!r}.")
        threshold = self.engine.strategy.knowledge_verification_threshold
        return "knowledge_item.html", {
            "nav": "knowledge", "item": found, "threshold": threshold,
            "gap": views.knowledge_gap(found, threshold),
        }

    def reviews(self, agent_id: str, status: str | None, page: str | None) -> Context:
        """The review queue (open by default), both sides of each conflict."""
        which = choice(status, ["open", "accepted", "rejected", "all"], "open", "status")
        n = page_number(page)
        items = self.engine.reviews(agent_id, None if which == "all" else which)
        items.sort(key=lambda r: r.created_at, reverse=which != "open")
        p = Page.of(items, n)
        return "reviews.html", {
            "nav": "reviews", "page": p, "status": which,
            "all_sides": {r.review_id: views.side_rows(r.current, r.proposed) for r in p.items},
        }

    def review(self, agent_id: str, review_id: str) -> Context:
        """One review, and the merged item as it stands now."""
        found = next((r for r in self.engine.reviews(agent_id, None) if r.review_id == review_id), None)
        if found is None:
            raise LookupError(f"No review {review_id!r} for agent {agent_id!r}.")
        return "review.html", {
            "nav": "reviews", "review": found, "sides": views.side_rows(found.current, found.proposed),
            "now": self.merged_now(agent_id, found),
        }

    def merged_now(self, agent_id: str, review: Review) -> dict[str, Any] | None:
        """What the reviewed item holds now (content or proficiency), for memories, knowledge and skills."""
        if review.kind == "memory":
            items, _ = self.engine.memories(agent_id, None, 0, 1 << 62)
            m = next((m for m in items if m.memory_id == review.key), None)
            return {"value": m.content, "confidence": m.confidence, "link": self.agent_url(agent_id, f"memories/{_seg(m.memory_id)}")} if m else None
        if review.kind == "knowledge":
            k = next((k for k in self.engine.knowledge(agent_id) if k.key == review.key), None)
            return {"value": k.content, "confidence": k.confidence, "status": k.status} if k else None
        if review.kind == "skill":
            s = next((s for s in self.engine.skills(agent_id) if s.skill_id == review.key), None)
            return {"value": f"{s.name}: proficiency {s.proficiency:.2f}", "confidence": s.proficiency, "link": self.agent_url(agent_id, f"skills/{_seg(s.skill_id)}")} if s else None
        return None

    def events(self, agent_id: str, type_: str | None) -> Context:
        """The latest events (from the hub's memory of recent ones) and the live feed's address."""
        prefixes = type_prefixes(type_)
        rows = self.recent.recent(agent_id, prefixes, limit=100)
        return "events.html", {
            "nav": "events", "rows": [(e, views.event_summary(e)) for e in rows],
            "type": ",".join(prefixes), "types": EVENT_TYPES,
            "stream": self.agent_url(agent_id, "events/stream", type=",".join(prefixes)),
        }


__all__ = ["EVENT_TYPES", "Pages", "type_prefixes"]
