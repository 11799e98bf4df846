"""Running the bridge: the sync manager behind it and the uvicorn server in front.

``experience-sync elizaos-bridge`` calls :func:`run_bridge`; tests and
examples use :class:`BridgeServer`, which serves the same app from a thread.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from experience_sync_elizaos.mapping import MappingOptions

#: Where the bridge listens unless told otherwise.
DEFAULT_LISTEN = "127.0.0.1:7422"
#: The instance id the ElizaOS events are recorded as unless told otherwise.
DEFAULT_INSTANCE = "elizaos"
#: Protocols of the bridge's instance, in routing order (see :func:`start_manager`).
DEFAULT_PROTOCOLS = ("streaming", "lumped")


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:7422`` for IPv6); port 0 picks a free one."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not host:port, such as {DEFAULT_LISTEN}")
    return host.strip("[]"), int(port)


def start_manager(
    *,
    hub: str,
    agent: str,
    token: str,
    instance_id: str,
    data_dir: str | Path,
    config: Any = None,
    protocol: str | Sequence[str] | None = DEFAULT_PROTOCOLS,
) -> Any:
    """An ``ExperienceSyncManager`` with ``instance_id`` initialised to sync to ``hub``.

    :param hub: the hub's base URL.
    :param agent: the source agent id.
    :param token: a hub token with ``write`` scope for ``(agent, instance_id)``.
    :param instance_id: the instance the bridge records as.
    :param data_dir: where the manager keeps its durable outbox.
    :param config: an ``ExperienceSyncConfig``; loaded from the usual sources if ``None``.
    :param protocol: the protocols, in routing order. By default events at or
        above the streaming threshold (actions, memories, knowledge) stream and
        the rest (messages, completed runs) go in lumped batches; ``None``
        takes them from the configuration.
    """
    from experience_sync import ExperienceSyncManager, load_config

    if config is None:
        config = load_config()
    config = config.model_copy(deep=True)
    config.transport.https.auth_token = token
    manager = ExperienceSyncManager(config=config, data_dir=str(data_dir))
    manager.initialize_sync(instance_id, protocol=protocol, config=config, endpoint=hub,
                            agent_id=agent)
    return manager


class BridgeServer:
    """The bridge app served by uvicorn from a background thread.

    :param app: the ASGI app (:func:`~experience_sync_elizaos.bridge.create_bridge_app`).
    :param host: the address to listen on.
    :param port: the port; 0 picks a free one.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.app = app
        self.host = host
        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.port = port
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The bridge's base URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> BridgeServer:
        """Start serving; returns once the server accepts connections."""
        self._thread = threading.Thread(target=self._server.run, name="elizaos-bridge",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the ElizaOS bridge did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> BridgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_bridge(
    *,
    hub: str,
    agent: str,
    token: str,
    secret: str,
    listen: str = DEFAULT_LISTEN,
    instance_id: str = DEFAULT_INSTANCE,
    data_dir: str | Path,
    options: MappingOptions | None = None,
    config: Any = None,
) -> None:
    """Run the bridge in the foreground until interrupted, then flush the outbox."""
    import uvicorn

    from experience_sync_elizaos.bridge import create_bridge_app

    host, port = parse_listen(listen)
    data = Path(data_dir)
    data.mkdir(parents=True, exist_ok=True)
    manager = start_manager(hub=hub, agent=agent, token=token, instance_id=instance_id,
                            data_dir=data, config=config)
    app = create_bridge_app(manager, instance_id, secret, options=options,
                            seen_path=data / "elizaos-bridge-seen.sqlite3")
    # uvicorn stops gracefully on SIGTERM, then raises the signal again; with the
    # default handler that would kill the process before the outbox is flushed.
    # Turn it into SystemExit so the ``finally`` below runs, as it does on Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        signal.signal(signal.SIGTERM, previous)
        manager.shutdown(10.0)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
