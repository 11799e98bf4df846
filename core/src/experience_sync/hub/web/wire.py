"""Wire-level pieces of the hub API: limits, errors, body decoding and parsing.

Kept apart from :mod:`experience_sync.hub.web.app` (the routes) so that other
transports mounted on the hub (the MCP plugin, ...) can parse and answer
units exactly like the HTTP and WebSocket routes do.
"""

from __future__ import annotations

import errno
import re
import sqlite3
import zlib
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import zstandard
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.json_schema import SkipJsonSchema

from experience_sync.errors import DiskFullError
from experience_sync.models import (
    MAX_COUNT,
    MAX_NAME,
    WIRE,
    CheckIn,
    EventsRequest,
    ExperienceBatch,
    InstanceStatus,
    KnowledgeItem,
    Memory,
    Review,
    Skill,
)
from experience_sync.recall.models import SearchQuery
from experience_sync.units import UNITS, UnitKind

#: Default cap on a request body as received (``--max-body-bytes``).
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: Default cap on a body after ``Content-Encoding`` is undone (``--max-decompressed-bytes``).
DEFAULT_MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024
#: Default number of HTTP units one agent may have in the hub at once, merging
#: or waiting for its turn (``--max-pending``). One agent's units merge one at
#: a time; beyond this the hub answers 503 instead of queueing more.
DEFAULT_MAX_PENDING = 64

Kind = UnitKind
UNIT_MODELS: dict[str, type[EventsRequest] | type[ExperienceBatch] | type[CheckIn]] = {
    "events": EventsRequest,
    "batch": ExperienceBatch,
    "checkin": CheckIn,
}
DEFAULT_PROTOCOL: dict[UnitKind, str] = {k: u.protocol for k, u in UNITS.items()}
#: The largest backlog an instance may report (header or ``meta.backlog``).
MAX_BACKLOG = MAX_COUNT


@dataclass
class HubLimits:
    """The hub's limits on what it takes in.

    A body beyond a size cap is answered 413; a unit for an agent that already
    has ``max_pending`` units waiting to merge over HTTP, 503 with
    ``Retry-After`` (the instance's transport waits and sends it again).
    """

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES
    max_pending: int = DEFAULT_MAX_PENDING
    retry_after_seconds: int = 1


class HubError(Exception):
    """An error answered as ``{"error": {"status", "message", "details"?}}``."""

    def __init__(
        self, status: int, message: str, details: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.headers = headers

    def body(self) -> dict[str, Any]:
        """The JSON error object."""
        err: dict[str, Any] = {"status": self.status, "message": self.message}
        if self.details is not None:
            err["details"] = self.details
        return {"error": err}


class FieldError(BaseModel):
    """One failing field of an error: its dotted ``loc``, a message and a type."""

    model_config = ConfigDict(extra="forbid")

    loc: str = Field(description="Dotted path of the field: `events.0.data.content`, `query.limit`.")
    msg: str
    type: str


class ErrorDetail(BaseModel):
    """The ``error`` member of an error body."""

    model_config = ConfigDict(extra="forbid")

    status: int = Field(ge=400, le=599, description="The HTTP status, repeated.")
    message: str
    # Absent rather than null when there is nothing to detail (422s carry it).
    details: list[FieldError] | SkipJsonSchema[None] = None


class ErrorBody(BaseModel):
    """The body of every error answer: ``{"error": {"status", "message", "details"?}}``."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


class MemoryPage(BaseModel):
    """A page of ``GET /v1/agents/{agent_id}/memories``."""

    model_config = ConfigDict(extra="forbid")

    items: list[Memory]
    total: int
    offset: int
    limit: int


class ReviewDecision(BaseModel):
    """Body of ``POST /v1/agents/{agent_id}/reviews/{review_id}``."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["accept", "reject"]


class Health(BaseModel):
    """Body of ``GET /healthz``."""

    status: str = "ok"
    auth: bool = True


class Readiness(BaseModel):
    """Body of ``GET /readyz`` once the start-up warm-up has loaded the stored agents."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["ready"] = "ready"
    agents_loaded: int = Field(ge=0, description="Agents in memory now.")
    memories_loaded: int = Field(ge=0, description="Their memories.")


LIST_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {
    t: TypeAdapter(list[t]) for t in (Skill, KnowledgeItem, InstanceStatus, Review)  # type: ignore[valid-type]
}


#: Names pydantic puts in an error's location for the member of a union it
#: tried (``data.MemoryData.content``); they are not fields of the message.
_UNION_MEMBERS = frozenset({"MemoryData", "SkillData", "KnowledgeData", "CharacteristicData",
                            "InteractionData"})


def dotted_loc(loc: tuple[int | str, ...] | list[int | str]) -> tuple[str, str]:
    """A pydantic error location as the wire's dotted path, and a prefix for its message.

    Each segment is a field name, a list index or a mapping key. A mapping key
    that is itself refused (pydantic's ``[key]`` marker), or that cannot be a
    segment (empty, holding a dot, longer than a name may be), is not written:
    the path ends at its mapping and the message says "key".
    """
    parts: list[str] = []
    prefix = ""
    items = [p for p in loc if p not in _UNION_MEMBERS]
    for i, part in enumerate(items):
        text = str(part)
        if text == "[key]":
            if parts:
                parts.pop()
            prefix = "key: "
            break
        if not isinstance(part, int) and (not text or "." in text or len(text) > MAX_NAME):
            is_key = i + 1 < len(items) and items[i + 1] == "[key]"
            prefix = "key: " if is_key else "a key's value: "
            break
        parts.append(text)
    return ".".join(parts) or "(body)", prefix


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic errors as ``[{"loc": "events.0.data.content", "msg", "type"}]``, once per location and type."""
    details: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors(include_url=False):
        loc, prefix = dotted_loc(err["loc"])
        if (loc, err["type"]) in seen:
            continue
        seen.add((loc, err["type"]))
        details.append({"loc": loc, "msg": prefix + err["msg"], "type": err["type"]})
    return details


def query_error(name: str, msg: str) -> HubError:
    """A 422 naming query parameter ``name`` (``loc`` ``query.<name>``)."""
    loc = f"query.{name}"
    return HubError(422, f"{loc}: {msg}", [{"loc": loc, "msg": msg, "type": "value_error"}])


def decode_body(body: bytes, encoding: str | None, cap: int) -> bytes:
    """Undo ``Content-Encoding`` (identity, gzip, zstd), refusing output beyond ``cap`` (413)."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    try:
        if enc in ("gzip", "x-gzip"):
            parts: list[bytes] = []
            size = 0
            rest = body
            while True:  # a gzip stream may hold several members
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out = d.decompress(rest, cap + 1 - size)
                size += len(out)
                if size > cap or d.unconsumed_tail:
                    raise HubError(413, f"decompressed body exceeds {cap} bytes")
                if not d.eof:
                    raise HubError(400, "truncated gzip body")
                parts.append(out)
                rest = d.unused_data
                if not rest:
                    return b"".join(parts)
        if enc == "zstd":
            parts = []
            size = 0
            with zstandard.ZstdDecompressor().stream_reader(body) as reader:
                while chunk := reader.read(min(cap + 1 - size, 1 << 20) or 1):
                    parts.append(chunk)
                    size += len(chunk)
                    if size > cap:
                        raise HubError(413, f"decompressed body exceeds {cap} bytes")
            return b"".join(parts)
    except (zlib.error, zstandard.ZstdError) as exc:
        raise HubError(400, f"body is not valid {enc}: {exc}") from None
    raise HubError(415, f"unsupported Content-Encoding {encoding!r}; use gzip, zstd or identity")


def _decimal_backlog(text: str) -> int | None:
    # isdigit() alone takes "²" (which int() refuses): ASCII digits only, and
    # few enough of them that int() stays cheap.
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > len(str(MAX_BACKLOG)):
        return None
    value = int(text)
    return value if value <= MAX_BACKLOG else None


def backlog_header(value: str | None) -> int | None:
    """``X-Experience-Sync-Backlog``: an integer from 0 to :data:`MAX_BACKLOG`, else 400."""
    if value is None:
        return None
    backlog = _decimal_backlog(value.strip())
    if backlog is None:
        raise HubError(400, f"X-Experience-Sync-Backlog must be an integer from 0 to {MAX_BACKLOG}")
    return backlog


def frame_backlog(value: Any) -> int | None:
    """A frame's ``meta.backlog``: an integer from 0 to :data:`MAX_BACKLOG`, else 422.

    The header's decimal string form is taken too: instances send their meta
    as header values, whichever transport carries them.
    """
    if value is None:
        return None
    backlog: int | None = None
    if isinstance(value, str):
        backlog = _decimal_backlog(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_BACKLOG:
        backlog = value
    if backlog is None:
        msg = f"must be an integer from 0 to {MAX_BACKLOG}"
        raise HubError(422, f"meta.backlog: {msg}", [{"loc": "meta.backlog", "msg": msg, "type": "value_error"}])
    return backlog


#: Longest protocol or transport name an instance may report.
MAX_LABEL = 64
#: What a protocol or transport name is made of: plugins register their own
#: names, so the hub takes any name of this form (and shows it in ``/instances``).
LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def header_label(name: str, value: str | None) -> str | None:
    """``X-Experience-Sync-Protocol`` / ``-Transport``: a name, else 400.

    A name is letters, digits, ``.``, ``_`` and ``-``, at most
    :data:`MAX_LABEL` characters; ``None`` (no header) is returned as is.
    """
    if value is None:
        return None
    if len(value) > MAX_LABEL:
        raise HubError(400, f"{name} is longer than {MAX_LABEL} characters")
    if not LABEL_PATTERN.fullmatch(value):
        raise HubError(
            400, f"{name} must be a name of letters, digits, '.', '_' and '-' "
            "(such as https, websocket, streaming)"
        )
    return value


def check_json_content_type(value: str | None) -> None:
    """A JSON route's ``Content-Type``: absent or JSON, else 415.

    JSON is ``application/json`` or any ``application/*+json``, with any
    parameters.
    """
    if value is None:
        return
    media = value.split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    raise HubError(415, f"unsupported Content-Type {value[:100]!r}; send application/json")


#: ``errno`` values of a full disk, a full quota or a file at its size limit.
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
#: SQLite's result code ``SQLITE_FULL`` (the ``sqlite3`` module names it from 3.11 on).
_SQLITE_FULL = 13
#: PostgreSQL's SQLSTATE ``disk_full``.
_PG_DISK_FULL = "53100"


def store_is_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the hub's store has no room left.

    Recognises :class:`~experience_sync.errors.DiskFullError`, SQLite's
    ``SQLITE_FULL``, ``ENOSPC``/``EDQUOT``/``EFBIG`` and PostgreSQL's
    ``disk_full``, without importing any store's driver.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DiskFullError):
            return True
        if isinstance(current, sqlite3.Error) and (
            getattr(current, "sqlite_errorcode", None) == _SQLITE_FULL
            or "database or disk is full" in str(current)
        ):
            return True
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return True
        if getattr(current, "sqlstate", None) == _PG_DISK_FULL:
            return True
        current = current.__cause__ or current.__context__
    return False


def store_full_error(retry_after: int) -> HubError:
    """The 503 a unit gets when the store is full: nothing was written, send it again later."""
    return HubError(
        503,
        f"the hub's store is full; nothing was written: retry in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


def frame_label(field: str, value: Any) -> str | None:
    """A frame's ``meta.protocol``: a string of at most :data:`MAX_LABEL` characters, else 422."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_LABEL:
        msg = f"must be a string of at most {MAX_LABEL} characters"
        raise HubError(422, f"meta.{field}: {msg}", [{"loc": f"meta.{field}", "msg": msg, "type": "value_error"}])
    return value


def parse_unit(kind: str, raw: bytes | str | Any) -> EventsRequest | ExperienceBatch | CheckIn:
    """Parse and validate a unit: 400 for bad JSON, 422 naming the failing field."""
    model = UNIT_MODELS[kind]
    if isinstance(raw, (bytes, str)):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HubError(400, f"body is not valid JSON: {exc}") from None
    try:
        return model.model_validate(raw, context=WIRE)
    except ValidationError as exc:
        details = validation_details(exc)
        raise HubError(422, f"invalid {model.__name__}: {details[0]['loc']}: {details[0]['msg']}", details) from None



def bearer_token(headers: Any) -> str | None:
    """The token of an ``Authorization: Bearer`` header (``None`` without one)."""
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def endpoint_label(path: str) -> str:
    """The metrics and rejection label of a request path (``"other"`` for unknown paths)."""
    parts = path.strip("/").split("/")
    if len(parts) >= 4 and parts[:2] == ["v1", "agents"]:
        # A review decision, else the route's area (a forget of one item is
        # its area's: memories, knowledge, skills, instances).
        return "review_decision" if len(parts) == 5 and parts[3] == "reviews" else parts[3]
    return path if path in ("/healthz", "/metrics", "/v1/events", "/openapi.json") else "other"



# ---------------------------------------------------------------------- OpenAPI

BODY_MODELS: dict[str, type[BaseModel]] = {
    "EventsRequest": EventsRequest,
    "ExperienceBatch": ExperienceBatch,
    "CheckIn": CheckIn,
    "ReviewDecision": ReviewDecision,
    "SearchQuery": SearchQuery,
}


def body_schema(name: str) -> dict[str, Any]:
    """``openapi_extra=`` for a route whose required JSON body is the model ``name``."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    }


#: What each error status means; a route's ``notes`` say more where it helps.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body is not valid JSON, or its gzip/zstd encoding is corrupt.",
    401: "No bearer token, or a malformed, unknown or revoked one.",
    403: "The token is valid but not for this agent (or, to write, not a write token "
    "for the unit's instance).",
    404: "Not found.",
    413: "The body exceeds --max-body-bytes, or --max-decompressed-bytes once decoded.",
    405: "The path takes other methods (the Allow header lists them).",
    415: "A Content-Encoding other than gzip, zstd or identity, or a Content-Type "
    "other than application/json.",
    422: "The request does not match its model; `details[].loc` names each failing field.",
    503: "The agent already has --max-pending units merging or waiting, or (a store "
    "shared by several hubs) its commits kept going to other hubs, or the hub's store "
    "is full; nothing was written: send the unit again after the Retry-After header's seconds.",
}

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def error_responses(
    *statuses: int, notes: dict[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route's error statuses, each with the hub's :class:`ErrorBody`.

    :param statuses: the error statuses the route can answer.
    :param notes: descriptions replacing :data:`ERROR_DESCRIPTIONS` for this route.
    :returns: the mapping to pass to the route decorator.
    """
    notes = notes or {}
    return {
        status: {"model": ErrorBody, "description": notes.get(status, ERROR_DESCRIPTIONS[status])}
        for status in statuses
    }


def unit_errors(model: str) -> dict[int | str, dict[str, Any]]:
    """The error responses of an ingestion route whose body is ``model``."""
    return error_responses(400, 401, 403, 413, 415, 422, 503, notes={
        400: "The body is not valid JSON, its gzip/zstd encoding is corrupt, "
        f"X-Experience-Sync-Backlog is not an integer from 0 to {MAX_BACKLOG}, or "
        "X-Experience-Sync-Protocol or -Transport is not a name.",
        403: "The token is not a write token of this agent, or the unit's instance_id "
        "(or an event's source_instance) is not the token's instance.",
        422: f"The body does not match {model}; `details[].loc` names each failing field. "
        "Or the path's agent_id is longer than 200 characters or holds NUL.",
    })


#: The error responses of a read without query parameters.
READ_ERRORS = error_responses(401, 403, 422, notes={
    403: "The token is for another agent.",
    422: "The path's agent_id is longer than 200 characters or holds NUL.",
})
#: The error responses of a read with query parameters.
QUERY_ERRORS = error_responses(401, 403, 422, notes={
    403: "The token is for another agent.",
    422: "A bad query parameter, or a cursor (`since`) or `offset` beyond the end; its "
    "`details[].loc` is `query.<name>`. Or the path's agent_id is longer than 200 "
    "characters or holds NUL.",
})
#: The error responses of ``POST /v1/agents/{agent_id}/search``.
SEARCH_BODY_ERRORS = error_responses(400, 401, 403, 413, 415, 422, notes={
    403: "The token is for another agent.",
    422: "A bad search field; its `details[].loc` names it (`q`, `k`, `kinds.0`, ...).",
})
#: The error responses of ``POST /v1/agents/{agent_id}/reviews/{review_id}``.
REVIEW_DECISION_ERRORS = error_responses(400, 401, 403, 404, 413, 415, 422, notes={
    403: "The token is not a write token of this agent.",
    404: "No review with this id for this agent.",
    422: 'The body is not `{"decision": "accept"}` or `{"decision": "reject"}`, or the '
    "path's agent_id is longer than 200 characters or holds NUL.",
})


def _fix_validation_errors(app: FastAPI, schema: dict[str, Any]) -> None:
    # FastAPI documents a 422 with its HTTPValidationError body on every route
    # with parameters; the hub never sends that body. A route that declares its
    # errors is taken at its word (a 422 it did not declare cannot happen); one
    # that declares none (a plugin's) keeps the 422 with the body really sent.
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        declared = {str(status) for status in route.responses}
        for method in route.methods or ():
            responses = schema["paths"].get(route.path_format, {}).get(method.lower(), {}).get("responses", {})
            if "422" not in responses or "422" in declared:
                continue
            if any(status.isdigit() and int(status) >= 400 for status in declared):
                del responses["422"]
            else:
                responses["422"] = {
                    "description": ERROR_DESCRIPTIONS[422],
                    "content": {"application/json": {"schema": _ERROR_REF}},
                }
    components = schema.get("components", {}).get("schemas", {})
    if b"/HTTPValidationError" not in orjson.dumps(schema.get("paths", {})):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)


def install_openapi(app: FastAPI) -> None:
    """Add the request body models (parsed by hand, so FastAPI cannot see them) and the error body."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            models: dict[str, type[BaseModel]] = {**BODY_MODELS, "ErrorBody": ErrorBody}
            for name, model in models.items():
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for def_name, definition in body.pop("$defs", {}).items():
                    components.setdefault(def_name, definition)
                components[name] = body
            _fix_validation_errors(app, schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
