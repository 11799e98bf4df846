"""Fixtures for the instance-side tests; the servers live in ``client_helpers.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from client_helpers import FaultHub, Recorder, ResetProxy, ThreadServer

from experience_sync.interfaces import MockTransport


@pytest.fixture
def fault_hub() -> Iterator[FaultHub]:
    hub = FaultHub()
    server = ThreadServer(hub.app()).start()
    hub.url = f"http://127.0.0.1:{server.port}"
    hub.ws_url = f"ws://127.0.0.1:{server.port}"
    hub.server = server  # type: ignore[attr-defined]
    try:
        yield hub
    finally:
        server.stop()


@pytest.fixture
def reset_proxy() -> Iterator[Callable[[int, int], ResetProxy]]:
    proxies: list[ResetProxy] = []

    def make(upstream_port: int, resets: int) -> ResetProxy:
        proxy = ResetProxy(upstream_port, resets)
        proxies.append(proxy)
        return proxy

    yield make
    for p in proxies:
        p.close()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def mock_transport(recorder: Recorder) -> MockTransport:
    return MockTransport(recorder)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "outboxes"
