"""Retry policy shared by the built-in transports.

Retried: connection errors, 408, 429 and 5xx except 501, with exponential
backoff and full jitter (0.1 s doubling up to 5 s), honouring ``Retry-After``,
all within one overall deadline per request. Everything else in 4xx is a
:class:`~experience_sync.errors.RejectedError` at once.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from experience_sync.errors import RejectedError, RetryableError, TransportError
from experience_sync.interfaces import OnRetry as _OnRetry

BASE_DELAY = 0.1
MAX_DELAY = 5.0

#: ``on_retry(attempt, delay, reason, status)``: the worker counts and reports retries.
OnRetry = _OnRetry


def is_retryable_status(status: int) -> bool:
    """408, 429 and 5xx other than 501."""
    return status in (408, 429) or (500 <= status < 600 and status != 501)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)


def error_message(body: bytes, fallback: str) -> str:
    """The ``error.message`` of a hub error body, else ``fallback``."""
    try:
        data: Any = orjson.loads(body)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(data, dict) and data.get("detail"):
            return str(data["detail"])
    except (orjson.JSONDecodeError, AttributeError):
        pass
    return fallback


def status_error(status: int, message: str, retry_after: float | None = None) -> TransportError:
    """The exception for a failed status: retryable or rejected."""
    if is_retryable_status(status):
        return RetryableError(
            f"hub answered {status}: {message}", status_code=status, retry_after=retry_after
        )
    return RejectedError(f"hub refused the request ({status}): {message}", status_code=status)


class Backoff:
    """Exponential backoff with full jitter, bounded by a deadline."""

    def __init__(self, deadline: float, on_retry: OnRetry | None = None) -> None:
        self.deadline = deadline
        self.attempt = 0
        self.on_retry = on_retry

    def remaining(self) -> float:
        """Seconds left before the deadline."""
        return self.deadline - time.monotonic()

    def wait(self, error: TransportError) -> None:
        """Sleep before the next attempt, or raise ``error`` if the deadline does not allow it."""
        self.attempt += 1
        cap = min(MAX_DELAY, BASE_DELAY * 2 ** (self.attempt - 1))
        delay = random.uniform(cap / 2, cap)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            delay = retry_after
        if delay >= self.remaining():
            raise error
        if self.on_retry is not None:
            self.on_retry(self.attempt, delay, str(error), error.status_code)
        time.sleep(delay)
