"""The bridge's read side: what the fleet learned, for the ElizaOS plugin's provider.

``POST /v1/elizaos/search`` (a JSON body) and ``GET /v1/elizaos/search?q=&k=``
answer from ``manager.search`` on the bridge's instance: its local replica,
so they work while the hub is down and include what this bridge recorded and
the hub has not merged yet. Same bearer secret as the write routes.

Each hit carries ``text`` (the item's own words) and ``line`` (what a prompt
should show: the text, or for a skill one line on its fleet-wide
reliability); ``kind``, ``score``, ``id`` and ``provenance`` are for code, not
for prompts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from experience_sync.api import SearchHit, render_hits

log = logging.getLogger("experience_sync_elizaos.recall")

#: Largest search body accepted (a query is at most 2,000 characters).
MAX_SEARCH_BODY_BYTES = 64 * 1024
#: The fields a search takes, as ``manager.search`` names them.
SEARCH_FIELDS = frozenset({"q", "k", "kinds", "tags", "min_confidence", "knowledge_status"})


def error_response(status: int, message: str, details: Any = None) -> JSONResponse:
    """The bridge's error shape: ``{"error": {"status", "message", "details"?}}``."""
    body: dict[str, Any] = {"status": status, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status)


async def read_capped_body(request: Request, cap: int) -> bytes | JSONResponse:
    """The request's body, or a 413 when it (or its declared length) exceeds ``cap`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        return error_response(413, f"body larger than {cap} bytes")
    raw = await request.body()
    if len(raw) > cap:
        return error_response(413, f"body larger than {cap} bytes")
    return raw


def hit_json(hit: SearchHit) -> dict[str, Any]:
    """One hit as the search routes answer it (the whole item is left out)."""
    return {
        "kind": hit.kind,
        "id": hit.id,
        "score": hit.score,
        "text": hit.text,
        "line": render_hits([hit], header=None).removeprefix("- "),
        "provenance": hit.provenance.model_dump(mode="json"),
        "rankers": list(hit.rankers),
    }


def _split(value: Any) -> Any:
    # Query strings carry lists comma-separated (kinds=memory,knowledge), as on the hub.
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def add_search_routes(
    app: FastAPI, manager: Any, instance_id: str, authorized: Callable[[Request], bool]
) -> None:
    """Add ``GET``/``POST /v1/elizaos/search`` to the bridge app.

    :param app: the bridge app.
    :param manager: the ``ExperienceSyncManager`` the bridge records through.
    :param instance_id: the bridge's instance (whose replica answers).
    :param authorized: whether a request presents the bridge's secret.
    """

    def run(fields: dict[str, Any]) -> Any:
        unknown = sorted(set(fields) - SEARCH_FIELDS)
        if unknown:
            return error_response(422, f"unknown search field(s): {', '.join(unknown)}",
                                  {"allowed": sorted(SEARCH_FIELDS)})
        if not isinstance(fields.get("q"), str):
            return error_response(422, "q: a query text is required")
        args = {key: _split(value) if key in {"kinds", "tags"} else value
                for key, value in fields.items() if key != "q" and value is not None}
        try:
            hits = manager.search(instance_id, fields["q"], **args)
        except ValidationError as exc:
            details = [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
                       for e in exc.errors()[:20]]
            first = details[0] if details else {"loc": "", "msg": "invalid search"}
            return error_response(422, f"{first['loc']}: {first['msg']}", details)
        except TypeError as exc:  # a field of the wrong shape that pydantic never saw
            return error_response(422, f"invalid search: {exc}")
        except Exception as exc:
            # The replica is local: a failure here is ours, but the agent must
            # get an answer it can act on (the plugin treats it as "nothing").
            log.warning("search on instance %s failed: %s", instance_id, exc)
            return error_response(503, f"search failed: {exc}")
        return {"instance_id": instance_id, "query": fields["q"],
                "hits": [hit_json(h) for h in hits]}

    @app.get("/v1/elizaos/search", response_model=None)
    def search_get(request: Request) -> Any:
        if not authorized(request):
            return error_response(401, "missing or wrong bearer secret")
        fields: dict[str, Any] = dict(request.query_params)
        if "k" in fields:
            try:
                fields["k"] = int(fields["k"])
            except ValueError:
                return error_response(422, f"k: {fields['k']!r} is not an integer")
        if "min_confidence" in fields:
            try:
                fields["min_confidence"] = float(fields["min_confidence"])
            except ValueError:
                return error_response(
                    422, f"min_confidence: {fields['min_confidence']!r} is not a number")
        return run(fields)

    @app.post("/v1/elizaos/search", response_model=None)
    async def search_post(request: Request) -> Any:
        if not authorized(request):
            return error_response(401, "missing or wrong bearer secret")
        raw = await read_capped_body(request, MAX_SEARCH_BODY_BYTES)
        if isinstance(raw, JSONResponse):
            return raw
        try:
            fields = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return error_response(400, f"body is not valid JSON: {exc}")
        if not isinstance(fields, dict):
            return error_response(422, "body must be a JSON object: {\"q\": ..., \"k\": ...}")
        # The replica is SQLite: keep the query off the event loop.
        return await run_in_threadpool(run, fields)
