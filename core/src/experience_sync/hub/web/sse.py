"""Server-Sent Events of the hub's observability events (``GET /v1/events``).

:class:`EventBroadcaster` is one of a hub's own observers (it gets that
hub's events only) and fans each event out to every connected subscriber. Observers
are called on whatever thread emitted the event (usually an ingestion worker
thread), so events are handed to each subscriber's event loop with
``call_soon_threadsafe``. A subscriber that does not keep up loses events
rather than slowing ingestion: its queue is bounded and drops are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable

from experience_sync.hookspecs import hookimpl
from experience_sync.models import ObservabilityEvent

#: Events buffered per subscriber before new ones are dropped.
DEFAULT_QUEUE_SIZE = 1000
#: Seconds between keep-alive comments on an idle stream.
DEFAULT_HEARTBEAT = 15.0

_CLOSE = object()


class Subscription:
    """One connected SSE client: a bounded queue on its event loop, and a filter."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        accept: Callable[[ObservabilityEvent], bool],
        maxsize: int,
    ) -> None:
        self.loop = loop
        self.accept = accept
        self.queue: asyncio.Queue[object] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0

    def _put(self, item: object) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            if item is _CLOSE:  # make room: closing matters more than a stale event
                self.queue.get_nowait()
                self.queue.put_nowait(item)
            else:
                self.dropped += 1

    def offer(self, item: object) -> None:
        """Hand an item to the subscriber's loop, from any thread."""
        # A closed loop means the client is gone: nothing to deliver.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._put, item)


class EventBroadcaster:
    """Observer that fans observability events out to SSE subscribers.

    :param queue_size: events buffered per subscriber.
    :param heartbeat: seconds between keep-alive comments.
    :param on_drop: called once per event a slow subscriber loses.
    """

    def __init__(
        self,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        heartbeat: float = DEFAULT_HEARTBEAT,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.queue_size = queue_size
        self.heartbeat = heartbeat
        self.on_drop = on_drop
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def subscribers(self) -> int:
        """How many clients are connected."""
        with self._lock:
            return len(self._subs)

    @hookimpl
    def experience_sync_observe(self, event: ObservabilityEvent) -> None:
        """Deliver ``event`` to every subscriber whose filter accepts it."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            if sub.accept(event):
                before = sub.dropped
                sub.offer(event)
                if self.on_drop is not None and sub.dropped != before:
                    self.on_drop()

    def end_streams(self) -> None:
        """End the open streams (server stopping); new subscribers are still welcome."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.offer(_CLOSE)

    def close(self) -> None:
        """End every stream and refuse new ones (hub shutdown)."""
        with self._lock:
            self._closed = True
        self.end_streams()

    async def stream(
        self, accept: Callable[[ObservabilityEvent], bool]
    ) -> AsyncIterator[bytes]:
        """The SSE byte stream of one subscriber, until it disconnects or the hub closes."""
        sub = Subscription(asyncio.get_running_loop(), accept, self.queue_size)
        with self._lock:
            if self._closed:
                return
            self._subs.add(sub)
        try:
            # An initial comment makes clients see the stream open at once.
            yield b": experience-sync events\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), self.heartbeat)
                except asyncio.TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if item is _CLOSE:
                    return
                assert isinstance(item, ObservabilityEvent)
                yield format_event(item)
        finally:
            with self._lock:
                self._subs.discard(sub)


def format_event(event: ObservabilityEvent) -> bytes:
    """One SSE message: ``event: <type>`` and the JSON event as ``data``."""
    return b"event: " + event.type.encode() + b"\ndata: " + event.model_dump_json().encode() + b"\n\n"
