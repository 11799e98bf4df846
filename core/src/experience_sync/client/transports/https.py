"""The ``https`` transport: the wire API over HTTP(S) with httpx.

``transport.https.endpoint`` is the hub's base URL (``https://hub.example``);
requests go to ``/v1/agents/{agent_id}/events|batches|checkins`` with
``Authorization: Bearer <auth_token>`` (else ``$EXPERIENCE_SYNC_HUB_TOKEN``),
the configured ``headers`` and ``X-Experience-Sync-Backlog``, ``-Protocol``
and ``-Transport``. Batches are compressed with their codec and sent with
``Content-Encoding``. TLS is verified unless ``verify_tls = false``; plain
``http://`` is accepted only to loopback unless ``allow_insecure_http``.

Retries follow :mod:`experience_sync.client.retry` within the send deadline
(``transport.https.timeout`` seconds by default).
"""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from experience_sync.client.retry import (
    Backoff,
    OnRetry,
    error_message,
    parse_retry_after,
    status_error,
)
from experience_sync.config import ExperienceSyncConfig
from experience_sync.errors import ConfigError, RetryableError, TransportError
from experience_sync.extras import ZSTD_INSTALL, missing
from experience_sync.interfaces import SyncRequest, Transport
from experience_sync.models import AgentState, MergeResult
from experience_sync.recall.models import SearchQuery, SearchResults
from experience_sync.units import UNITS

_PATHS = {kind: unit.route for kind, unit in UNITS.items()}


def base_url(endpoint: str) -> str:
    """The hub's base URL: trailing slashes and a trailing ``/v1`` removed."""
    url = endpoint.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def bearer(token: Any) -> str | None:
    """The token text from a SecretStr or str, else ``$EXPERIENCE_SYNC_HUB_TOKEN``."""
    if token is not None:
        return str(token.get_secret_value() if hasattr(token, "get_secret_value") else token)
    return os.environ.get("EXPERIENCE_SYNC_HUB_TOKEN") or None


def compress(body: bytes, codec: str) -> bytes:
    """Compress a body with ``gzip`` or ``zstd`` (``none``: unchanged)."""
    if codec == "gzip":
        return gzip.compress(body, compresslevel=6)
    if codec == "zstd":
        # the zstd extra (or the hub extra): without it HttpsTransport refuses
        # lumped.compression = "zstd" when it is created
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(body)
    return body


class HttpClient:
    """An httpx client bound to one hub and agent, with the retry policy."""

    def __init__(
        self,
        base: str,
        agent_id: str,
        *,
        token: str | None,
        headers: dict[str, str] | None = None,
        verify_tls: bool = True,
        transport_name: str = "https",
    ) -> None:
        self.base = base_url(base)
        self.agent_path = f"{self.base}/v1/agents/{quote(agent_id, safe='')}"
        all_headers = {"User-Agent": "experience-sync", **(headers or {})}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        all_headers["X-Experience-Sync-Transport"] = transport_name
        self.client = httpx.Client(headers=all_headers, verify=verify_tls)
        self.on_retry: OnRetry | None = None

    def request(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """One request with retries until the deadline ``timeout`` seconds away."""
        backoff = Backoff(time.monotonic() + timeout, self.on_retry)
        while True:
            left = backoff.remaining()
            if left <= 0:
                raise RetryableError(f"no answer from {url} within {timeout:.1f}s")
            error: TransportError
            try:
                resp = self.client.request(
                    method, url, content=content, headers=headers, params=params,
                    timeout=httpx.Timeout(left, connect=min(left, 10.0)),
                )
            except httpx.TransportError as exc:
                error = RetryableError(f"{type(exc).__name__}: {exc or 'connection failed'}")
            else:
                if resp.status_code < 300:
                    return resp
                message = error_message(resp.content, resp.reason_phrase or "")
                error = status_error(
                    resp.status_code, message, parse_retry_after(resp.headers.get("retry-after"))
                )
                if not isinstance(error, RetryableError):
                    raise error
            backoff.wait(error)

    def fetch_state(self, since: int | None, timeout: float) -> AgentState:
        """``GET /v1/agents/{agent_id}/state?since=``."""
        params = {"since": since} if since is not None else None
        resp = self.request("GET", f"{self.agent_path}/state", timeout=timeout, params=params)
        return AgentState.model_validate_json(resp.content)

    def search(self, query: SearchQuery, timeout: float) -> SearchResults:
        """``POST /v1/agents/{agent_id}/search``."""
        resp = self.request(
            "POST", f"{self.agent_path}/search", timeout=timeout,
            content=query.model_dump_json().encode(),
            headers={"Content-Type": "application/json"},
        )
        return SearchResults.model_validate_json(resp.content)

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


class HttpsTransport(Transport):
    """POSTs each unit to the hub and returns its MergeResult."""

    name = "https"

    def __init__(self, config: ExperienceSyncConfig, agent_id: str) -> None:
        cfg = config.transport.https
        if not cfg.endpoint:
            raise ConfigError(
                [("transport.https.endpoint", "the https transport needs the hub's URL")]
            )
        if config.lumped.codec == "zstd" and missing(("zstandard",)):
            raise ConfigError(
                [("lumped.compression", f"'zstd' needs the zstandard package: {ZSTD_INSTALL}")]
            )
        self.timeout = cfg.timeout
        self.http = HttpClient(
            cfg.endpoint,
            agent_id,
            token=bearer(cfg.auth_token),
            headers=dict(cfg.headers),
            verify_tls=cfg.verify_tls,
        )

    @property
    def on_retry(self) -> OnRetry | None:
        """Called before each retry (the worker counts and reports them)."""
        return self.http.on_retry

    @on_retry.setter
    def on_retry(self, value: OnRetry | None) -> None:
        self.http.on_retry = value

    def send(self, request: SyncRequest, *, timeout: float) -> MergeResult:
        """POST the unit to its route, retrying until ``timeout``; a batch goes compressed.

        The request's ``meta`` goes as ``X-Experience-Sync-*`` headers.
        """
        body = request.payload.model_dump_json().encode()
        headers = {"Content-Type": "application/json"}
        if request.kind == "batch" and request.compression != "none":
            body = compress(body, request.compression)
            headers["Content-Encoding"] = request.compression
        for key, value in request.meta.items():
            headers[f"X-Experience-Sync-{key.capitalize()}"] = str(value)
        url = f"{self.http.agent_path}/{_PATHS[request.kind]}"
        resp = self.http.request("POST", url, timeout=timeout, content=body, headers=headers)
        return MergeResult.model_validate_json(resp.content)

    def send_many(
        self, requests: Sequence[SyncRequest], *, timeout: float
    ) -> list[MergeResult | BaseException]:
        """Send in order; after a request that ran out of retries, do not try the rest.

        The hub is unreachable or overloaded then: the remaining units are
        reported with the same retryable error, so the worker backs off at
        once instead of spending a full deadline on each of them.
        """
        out: list[MergeResult | BaseException] = []
        for i, request in enumerate(requests):
            try:
                out.append(self.send(request, timeout=timeout))
            except RetryableError as exc:
                out.extend([exc] * (len(requests) - i))
                break
            except TransportError as exc:
                out.append(exc)
        return out

    def fetch_state(self, since: int | None = None, *, timeout: float = 30.0) -> AgentState:
        """``GET /v1/agents/{agent_id}/state``, with retries."""
        return self.http.fetch_state(since, timeout)

    def search(self, query: SearchQuery, *, timeout: float = 30.0) -> SearchResults:
        """``POST /v1/agents/{agent_id}/search``, with retries."""
        return self.http.search(query, timeout)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.http.close()
