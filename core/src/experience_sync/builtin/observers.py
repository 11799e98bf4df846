"""Built-in observer: structured logging of every observability event.

Events go to the ``experience_sync.events`` logger at DEBUG (``sync.failed``,
``outbox.full`` and ``hub.rejected`` at WARNING), with the event as ``extra``
fields so a JSON log formatter can keep them.
"""

from __future__ import annotations

import logging

from experience_sync.hookspecs import hookimpl
from experience_sync.models import ObservabilityEvent

log = logging.getLogger("experience_sync.events")

_WARN = {"sync.failed", "outbox.full", "hub.rejected"}


@hookimpl
def experience_sync_observe(event: ObservabilityEvent) -> None:
    """Log ``event`` to ``experience_sync.events`` (at WARNING for failures, else DEBUG)."""
    level = logging.WARNING if event.type in _WARN else logging.DEBUG
    if not log.isEnabledFor(level):
        return
    log.log(
        level,
        "%s agent=%s instance=%s %s",
        event.type,
        event.agent_id,
        event.instance_id,
        event.data,
        extra={"xs_event": event.type, "xs_data": event.data},
    )
