"""The console: see and steer a hub's fleet in a browser, at ``/console``.

Server-rendered Jinja2 pages with a little htmx (vendored under ``static/``,
no CDN), signed in with the hub's own tokens. ``docs/console.md`` describes
the pages and the security model.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from starlette.staticfiles import StaticFiles

if TYPE_CHECKING:
    from fastapi import FastAPI

    from experience_sync.hub.service import Hub
    from experience_sync.hub.web.console.routes import Console

PREFIX = "/console"

# One console per hub, whatever number of apps is built on it: a server
# restarted in the same process (HubServer.restart) keeps its sessions, and
# the hub gets one recent-events observer, not one per app.
_CONSOLES: weakref.WeakKeyDictionary[Hub, Console] = weakref.WeakKeyDictionary()


def mount_console(app: FastAPI, hub: Hub, prefix: str = PREFIX) -> Console:
    """Serve ``hub``'s console on ``app`` under ``prefix``; returns it (its sessions, its events)."""
    from experience_sync.hub.web.console.routes import STATIC, Console

    console = _CONSOLES.get(hub)
    if console is None or console.prefix != prefix:
        console = _CONSOLES[hub] = Console(hub, prefix)
    app.include_router(console.router())
    app.mount(f"{prefix}/static", StaticFiles(directory=STATIC), name="console-static")
    app.state.console = console
    return console


__all__ = ["PREFIX", "mount_console"]
