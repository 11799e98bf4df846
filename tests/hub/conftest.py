"""Fixtures for hub tests: a real hub (uvicorn on a free loopback port, SQLite
in a temporary directory) and small builders of wire bodies.

``hub`` is a :class:`experience_sync.hub.web.server.HubServer`: ``hub.url``,
``hub.ws_url``, ``hub.engine``, ``hub.create_token(agent, instance, scope)``,
``hub.restart()``. ``make_hub(**options)`` starts one with other options
(``auth=False``, ``limits=HubLimits(...)``, ``strategy=...``).
Builders of wire bodies live in ``hub_helpers.py`` next to this file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from experience_sync.hub.web.server import HubServer, run_in_thread


@pytest.fixture
def make_hub() -> Iterator[Callable[..., HubServer]]:
    """Start hubs with chosen options: ``make_hub(auth=False, limits=...)``."""
    with ExitStack() as stack:

        def _make(**options: Any) -> HubServer:
            return stack.enter_context(run_in_thread(**options))

        yield _make


@pytest.fixture
def hub(make_hub: Callable[..., HubServer]) -> HubServer:
    """A hub with authentication on and default limits."""
    return make_hub()
