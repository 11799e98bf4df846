"""The three kinds of unit an instance sends, and what each is called where.

One table instead of a spelling per module: a unit's kind (``events``,
``batch``, ``checkin``) names its wire route, the observability event the
hub and the instance emit for it, and the protocol that sends it by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["UNITS", "UnitKind", "UnitSpec"]

#: What a request carries: streamed ``events``, a lumped ``batch`` or a ``checkin``.
UnitKind = Literal["events", "batch", "checkin"]


@dataclass(frozen=True)
class UnitSpec:
    """How one unit kind is spelled across the wire, the events and the protocols.

    :param kind: the unit kind.
    :param route: the last segment of its ingestion route (``/v1/agents/{id}/<route>``).
    :param event_type: the observability event emitted per unit.
    :param protocol: the built-in protocol that sends it, assumed when a
        transport does not say.
    """

    kind: UnitKind
    route: str
    event_type: str
    protocol: str


UNITS: dict[UnitKind, UnitSpec] = {
    "events": UnitSpec("events", "events", "sync.event", "streaming"),
    "batch": UnitSpec("batch", "batches", "sync.batch", "lumped"),
    "checkin": UnitSpec("checkin", "checkins", "sync.check_in", "check_in"),
}
