"""The console's forget pages (admin scope): forget an item or a text, dry run first.

Every forget goes through :func:`experience_sync.hub.forget.forget`, the
call the ``DELETE`` routes make, with the session's principal as the
requester, so the audit trail names the console user's token. A forget is
two posts of the same form: ``step=preview`` runs it with ``dry_run`` and
shows what would go (counts only), ``step=confirm`` runs it for good and
redirects to the audit record's page (counts, never the text). The admin
page (``/agents/{agent_id}/forget``) holds the text-query and subject form of
a data-deletion request and the audit trail (what ``GET
/v1/agents/{agent_id}/forgets`` answers).

Read, write and review sessions never see the controls, and every route
here answers them 403 (:func:`~experience_sync.hub.web.auth.authorize_admin`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from experience_sync.forgetting import ForgetRecord, ForgetRequest, ForgetResult
from experience_sync.hub.forget import ForgetRefused, Requester, forget
from experience_sync.hub.web.auth import AuthError, authorize_admin
from experience_sync.hub.web.console.views import BadRequest, Page, page_number

if TYPE_CHECKING:
    from experience_sync.hub.web.console.routes import Console
    from experience_sync.hub.web.console.sessions import ConsoleSession

__all__ = ["FORGET_KINDS", "forget_routes"]

#: What a console forget form may name: its ``kind`` field -> the ForgetRequest selector.
FORGET_KINDS = {
    "memory": "memory_ids",
    "knowledge": "knowledge_ids",
    "skill": "skill_ids",
    "query": "query",
    "subject": "subject",
    "instance": "instance_ids",
}
# Where each item kind is listed, and its page (the list's URL + "/" + id).
_LISTS = {"memory": "memories", "knowledge": "knowledge", "skill": "skills"}
_NOUNS = {"memory": "memory", "knowledge": "knowledge item", "skill": "skill's history",
          "query": "text", "subject": "subject", "instance": "instance's experiences"}
#: The order the removed counts are shown in.
REMOVED_ORDER = ("memories", "knowledge", "skills", "characteristics", "reviews")
_CSRF_MESSAGE = "CSRF token missing or wrong: reload the page and try again."


def _records(console: Console, agent_id: str) -> list[ForgetRecord]:
    # The audit trail, newest first: what GET /v1/agents/{agent_id}/forgets reads.
    try:
        records = console.hub.store.forget_records(agent_id)
    except NotImplementedError as exc:
        raise BadRequest(str(exc), 501) from None
    return sorted(records, key=lambda r: r.at, reverse=True)


def _label(console: Console, agent_id: str, kind: str, ident: str) -> str | None:
    # The check the DELETE item routes make before forgetting (404 when None),
    # and what the confirm step names the item by (it is still there then).
    engine = console.hub.engine
    if kind == "memory":
        return next((m.content for m in engine.state(agent_id).memories if m.memory_id == ident), None)
    if kind == "knowledge":
        return next((k.content for k in engine.knowledge(agent_id) if ident in (k.knowledge_id, k.key)), None)
    if kind == "instance":
        known = {s.instance_id for s in engine.instances(agent_id)}
        return f"everything instance {ident} sent" if ident in known else None
    return next((s.name for s in engine.skills(agent_id) if s.skill_id == ident), None)


def _removed(counts: dict[str, int]) -> list[tuple[str, int]]:
    known = [(name, counts.get(name, 0)) for name in REMOVED_ORDER]
    return known + sorted((k, v) for k, v in counts.items() if k not in REMOVED_ORDER)


def forget_routes(console: Console, r: APIRouter) -> None:
    """Add the forget routes to the console's router."""
    hub = console.hub

    def admin_page(agent_id: str, page: str | None) -> tuple[str, dict[str, Any]]:
        records = _records(console, agent_id)
        return "forget.html", {"nav": "forget", "page": Page.of(records, page_number(page))}

    def done_page(agent_id: str, forget_id: str) -> tuple[str, dict[str, Any]]:
        found = next((x for x in _records(console, agent_id) if x.forget_id == forget_id), None)
        if found is None:
            raise LookupError(f"No forget {forget_id!r} for agent {agent_id!r}.")
        lists = [_LISTS[k] for k, sel in FORGET_KINDS.items() if k in _LISTS and sel in found.selectors]
        return "forget_done.html", {
            "nav": "forget", "record": found, "removed": _removed(found.removed), "lists": lists,
        }

    @r.get("/agents/{agent_id}/forget")
    async def forget_admin(request: Request, agent_id: str) -> Response:
        return await console.page(
            request, agent_id, admin_page, agent_id, request.query_params.get("page"),
            authorize=authorize_admin,
        )

    @r.get("/agents/{agent_id}/forget/{forget_id}")
    async def forget_done(request: Request, agent_id: str, forget_id: str) -> Response:
        return await console.page(
            request, agent_id, done_page, agent_id, forget_id, authorize=authorize_admin
        )

    @r.post("/agents/{agent_id}/forget")
    async def forget_post(request: Request, agent_id: str) -> Response:
        session = console.session_of(request)
        if session is None:
            return console.error(401, "Sign in first: this session ended or never began.")
        try:
            fields = await console.form(request)
        except BadRequest as exc:
            return console.error(exc.status, str(exc), session)
        if not session.csrf_ok(fields.get("csrf")):
            return console.error(403, _CSRF_MESSAGE, session)
        try:
            authorize_admin(session.principal, agent_id)
        except AuthError as exc:
            return console.error(exc.status, exc.message, session)
        kind, value, step = fields.get("kind", ""), fields.get("value", ""), fields.get("step", "")
        if kind not in FORGET_KINDS:
            return console.error(422, f"kind must be one of {', '.join(FORGET_KINDS)}", session)
        if step not in ("preview", "confirm"):
            return console.error(422, "step must be preview or confirm", session)
        selector = FORGET_KINDS[kind]
        try:
            wanted = ForgetRequest.model_validate({
                selector: [value] if selector.endswith("_ids") else value,
                "dry_run": step == "preview",
            })
        except ValidationError as exc:
            return console.error(422, f"{kind}: {exc.errors()[0]['msg']}", session)
        label = None
        if kind in _LISTS or kind == "instance":
            label = await run_in_threadpool(_label, console, agent_id, kind, value)
            if label is None:
                return console.error(404, f"No {kind} {value!r} for agent {agent_id!r}.", session)
        who = Requester(session.principal.token_id, session.principal.instance_id,
                        session.principal.scope)
        try:
            result: ForgetResult = await run_in_threadpool(forget, hub.engine, agent_id, wanted, who)
        except ForgetRefused as exc:
            return console.error(exc.status, exc.message, session)
        if step == "confirm":
            return console.redirect(console.agent_url(agent_id, f"forget/{result.forget_id}"))
        return confirm_page(session, agent_id, kind, value, label, result)

    def confirm_page(
        session: ConsoleSession, agent_id: str, kind: str, value: str, label: str | None,
        result: ForgetResult,
    ) -> Response:
        if kind in _LISTS:
            back = console.agent_url(agent_id, f"{_LISTS[kind]}/{quote(value, safe='')}")
        else:
            back = console.agent_url(agent_id, "forget")
        context = {
            "nav": _LISTS.get(kind, "forget"), "session": session,
            "agent_id": agent_id, "csrf": session.csrf, "kind": kind, "noun": _NOUNS[kind],
            "value": value, "label": label, "result": result, "removed": _removed(result.removed), "back": back,
            "partial": False,
        }
        return console.render("forget_confirm.html", context)
