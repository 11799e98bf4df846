"""Builders of wire bodies for hub tests (importable as ``hub_helpers``)."""

from __future__ import annotations

import random
import string
from datetime import datetime, timezone
from typing import Any

from experience_sync.models import new_id


def distinct_text(words: int = 6) -> str:
    """Text no similarity method will take for a duplicate of another call's."""
    return " ".join("".join(random.choices(string.ascii_lowercase, k=8)) for _ in range(words))


def memory_event(instance: str, content: str = "User prefers concise answers", **extra: Any) -> dict[str, Any]:
    """A ``memory`` event as wire JSON."""
    event: dict[str, Any] = {
        "event_id": new_id(),
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "source_instance": instance,
        "event_type": "memory",
        "priority": 0.8,
        "data": {"content": content},
    }
    event.update(extra)
    return event


def events_body(instance: str, n: int = 1, prefix: str = "memory") -> dict[str, Any]:
    """An ``EventsRequest`` with ``n`` distinct memory events."""
    return {
        "instance_id": instance,
        "events": [memory_event(instance, f"{prefix} {distinct_text()}") for _ in range(n)],
    }


def batch_body(instance: str, n: int = 3) -> dict[str, Any]:
    """An ``ExperienceBatch`` with ``n`` distinct memory events."""
    now = datetime.now(timezone.utc).isoformat()
    return {
        "batch_id": new_id(),
        "instance_id": instance,
        "timestamp_start": now,
        "timestamp_end": now,
        "events": events_body(instance, n)["events"],
    }


def auth(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}
