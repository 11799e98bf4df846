"""The console's routes: sign-in, the pages, review decisions and the live event feed.

Every page reads through the engine methods the JSON routes use
(``instances``, ``memories``, ``search``, ``skills``, ``knowledge``,
``reviews``, ``decide_review``) in the thread pool, and renders a Jinja2
template. The forget pages (admin scope) are in
:mod:`~experience_sync.hub.web.console.forgetting`. Bad input is answered with an HTML 4xx page, never a 500.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from experience_sync.hub.service import Hub
from experience_sync.hub.web.auth import AuthError, Principal, hash_secret, split_token
from experience_sync.hub.web.console import pages, views
from experience_sync.hub.web.console.forgetting import forget_routes
from experience_sync.hub.web.console.sessions import (
    MAX_SECONDS,
    PRESESSION_COOKIE,
    SECURE_PRESESSION_COOKIE,
    SECURE_SESSION_COOKIE,
    SESSION_COOKIE,
    ConsoleSession,
    SessionStore,
)
from experience_sync.hub.web.console.views import BadRequest, RecentEvents, sse_message
from experience_sync.models import ObservabilityEvent

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

#: The Content-Security-Policy of every console page: nothing but this origin,
#: no inline script or style, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: Largest form body the console reads (a token and a CSRF token fit many times over).
MAX_FORM_BYTES = 8192


def _seg(value: Any) -> str:
    return quote(str(value), safe="")


class Console:
    """The console of one hub: its sessions, templates and routes.

    :param hub: the hub whose engine the pages read.
    :param prefix: where the console lives (``/console``).
    """

    def __init__(self, hub: Hub, prefix: str = "/console") -> None:
        self.hub = hub
        self.prefix = prefix
        self.sessions = SessionStore(hub.store if hub.auth.enabled else None)
        self.recent = RecentEvents()
        # A hub's own observers list is shared with its engine: the console
        # sees that hub's events only.
        hub.observers.append(self.recent)
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["seg"] = _seg
        for name in ("ago", "when", "percent"):
            self.env.filters[name] = getattr(views, name)
        self.env.globals["prefix"] = prefix

    # ------------------------------------------------------------------ plumbing

    @staticmethod
    def secure(request: Request) -> bool:
        """Whether the browser reached the hub over TLS (cookies then get ``Secure``)."""
        return request.url.scheme == "https"

    def session_of(self, request: Request) -> ConsoleSession | None:
        """The request's live session, if any."""
        name = SECURE_SESSION_COOKIE if self.secure(request) else SESSION_COOKIE
        return self.sessions.get(request.cookies.get(name))

    def render(self, template: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        """A rendered page with the console's security headers."""
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def error(self, status: int, message: str, session: ConsoleSession | None = None) -> HTMLResponse:
        """An error page (``status`` 4xx) that says what went wrong."""
        context = {"status": status, "message": message, "session": session,
                   "agent_id": session.principal.agent_id if session else None}
        return self.render("error.html", context, status)

    def redirect(self, url: str, request: Request | None = None) -> Response:
        """303 to ``url``; for htmx requests an ``HX-Redirect`` so the whole page moves."""
        if request is not None and request.headers.get("hx-request"):
            return Response(status_code=401, headers={**SECURITY_HEADERS, "HX-Redirect": url})
        return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)

    def set_session_cookie(self, response: Response, request: Request, session: ConsoleSession) -> None:
        """Put the session id (never the token) in an HttpOnly, SameSite=Strict cookie."""
        secure = self.secure(request)
        response.set_cookie(
            SECURE_SESSION_COOKIE if secure else SESSION_COOKIE, session.session_id,
            max_age=int(MAX_SECONDS), path="/", httponly=True, samesite="strict", secure=secure,
        )

    async def form(self, request: Request) -> dict[str, str]:
        """An urlencoded form body (400 when too large or not a form)."""
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM_BYTES):
            raise BadRequest(f"a form is at most {MAX_FORM_BYTES} bytes", 413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise BadRequest(f"a form is at most {MAX_FORM_BYTES} bytes", 413)
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            raise BadRequest("the form could not be read") from None
        return {k: v[0] for k, v in fields.items()}

    def agent_url(self, agent_id: str, page: str = "fleet", **query: Any) -> str:
        """The URL of one of an agent's pages."""
        url = f"{self.prefix}/agents/{_seg(agent_id)}/{page}"
        params = {k: v for k, v in query.items() if v not in (None, "")}
        return f"{url}?{urlencode(params)}" if params else url

    def home_of(self, session: ConsoleSession) -> str:
        """Where a session lands after sign-in: its agent's fleet, or the agent list."""
        agent = session.principal.agent_id
        return self.agent_url(agent) if agent is not None else f"{self.prefix}/agents"

    async def signed_in(self, request: Request) -> ConsoleSession | None:
        """The session, starting one on a ``--no-auth`` hub (anyone on loopback may look)."""
        session = self.session_of(request)
        if session is None and not self.hub.auth.enabled:
            principal = await run_in_threadpool(self.hub.auth.authenticate, None)
            session = self.sessions.create(principal, None)
            request.state.new_session = session
        return session

    def finish(self, request: Request, response: Response) -> Response:
        """Set the cookie of a session this request started."""
        new: ConsoleSession | None = getattr(request.state, "new_session", None)
        if new is not None:
            self.set_session_cookie(response, request, new)
        return response

    async def page(
        self,
        request: Request,
        agent_id: str | None,
        build: Callable[..., tuple[str, dict[str, Any]]],
        *args: Any,
        authorize: Callable[[Principal, str], None] | None = None,
    ) -> Response:
        """Authorize (reading, or ``authorize``), build a page's context in the thread pool and render it."""
        session = await self.signed_in(request)
        if session is None:
            return self.redirect(f"{self.prefix}/signin", request)
        try:
            if agent_id is not None:
                (authorize or self.hub.auth.authorize_read)(session.principal, agent_id)
            template, context = await run_in_threadpool(build, *args)
        except AuthError as exc:
            return self.finish(request, self.error(exc.status, exc.message, session))
        except BadRequest as exc:
            return self.finish(request, self.error(exc.status, str(exc), session))
        except LookupError as exc:
            return self.finish(request, self.error(404, str(exc.args[0]) if exc.args else "not found", session))
        context.update(session=session, agent_id=agent_id, csrf=session.csrf,
                       partial=bool(request.headers.get("hx-request")))
        return self.finish(request, self.render(template, context))

    # ------------------------------------------------------------------ routes

    def router(self) -> APIRouter:
        """The console's routes (not in the OpenAPI document: they answer HTML)."""
        r = APIRouter(prefix=self.prefix, include_in_schema=False)
        hub = self.hub
        reads = pages.Pages(hub, self.recent, self.agent_url)

        @r.get("")
        @r.get("/")
        async def home(request: Request) -> Response:
            session = await self.signed_in(request)
            if session is None:
                return self.redirect(f"{self.prefix}/signin", request)
            return self.finish(request, self.redirect(self.home_of(session)))

        @r.get("/signin")
        async def signin_form(request: Request) -> Response:
            if not hub.auth.enabled:
                return await home(request)
            return self.signin_page(request)

        @r.post("/signin")
        async def signin(request: Request) -> Response:
            if not hub.auth.enabled:
                return await home(request)
            try:
                fields = await self.form(request)
            except BadRequest as exc:
                return self.error(exc.status, str(exc))
            pre = request.cookies.get(
                SECURE_PRESESSION_COOKIE if self.secure(request) else PRESESSION_COOKIE
            )
            sent = fields.get("csrf", "")
            if not pre or not sent or not hmac.compare_digest(pre, sent):
                return self.error(403, "The sign-in form expired or did not come from this console: reload it and try again.")
            token = fields.get("token", "").strip()
            try:
                principal: Principal = await run_in_threadpool(hub.auth.authenticate, token)
            except AuthError as exc:
                hub.reject(exc.status, exc.message, None, None, "console")
                return self.signin_page(request, 401, "That token was not accepted (unknown, revoked or mistyped).")
            parts = split_token(token)
            session = self.sessions.create(principal, hash_secret(parts[1]) if parts else None)
            response = self.redirect(self.home_of(session))
            self.set_session_cookie(response, request, session)
            response.delete_cookie(
                SECURE_PRESESSION_COOKIE if self.secure(request) else PRESESSION_COOKIE, path="/"
            )
            return response

        @r.post("/signout")
        async def signout(request: Request) -> Response:
            session = self.session_of(request)
            try:
                fields = await self.form(request)
            except BadRequest as exc:
                return self.error(exc.status, str(exc), session)
            if session is not None:
                if not session.csrf_ok(fields.get("csrf")):
                    return self.error(403, "CSRF token missing or wrong: reload the page and try again.", session)
                self.sessions.drop(session.session_id)
            response = self.redirect(f"{self.prefix}/signin")
            response.delete_cookie(
                SECURE_SESSION_COOKIE if self.secure(request) else SESSION_COOKIE, path="/"
            )
            return response

        @r.get("/agents")
        async def agents(request: Request) -> Response:
            q = request.query_params
            return await self.page(request, None, reads.agents, q.get("page"))

        @r.get("/agents/{agent_id}/fleet")
        async def fleet(request: Request, agent_id: str) -> Response:
            q = request.query_params
            return await self.page(request, agent_id, reads.fleet, agent_id, q.get("page"), q.get("sort"))

        @r.get("/agents/{agent_id}/memories")
        async def memories(request: Request, agent_id: str) -> Response:
            q = request.query_params
            return await self.page(request, agent_id, reads.memories, agent_id, q.get("q"), q.get("page"))

        @r.get("/agents/{agent_id}/memories/{memory_id}")
        async def memory(request: Request, agent_id: str, memory_id: str) -> Response:
            return await self.page(request, agent_id, reads.memory, agent_id, memory_id)

        @r.get("/agents/{agent_id}/skills")
        async def skills(request: Request, agent_id: str) -> Response:
            q = request.query_params
            return await self.page(request, agent_id, reads.skills, agent_id, q.get("page"))

        @r.get("/agents/{agent_id}/skills/{skill_id}")
        async def skill(request: Request, agent_id: str, skill_id: str) -> Response:
            return await self.page(request, agent_id, reads.skill, agent_id, skill_id)

        @r.get("/agents/{agent_id}/knowledge")
        async def knowledge(request: Request, agent_id: str) -> Response:
            q = request.query_params
            return await self.page(request, agent_id, reads.knowledge, agent_id, q.get("status"), q.get("page"))

        @r.get("/agents/{agent_id}/knowledge/{knowledge_id:path}")
        async def knowledge_item(request: Request, agent_id: str, knowledge_id: str) -> Response:
            return await self.page(request, agent_id, reads.knowledge_item, agent_id, knowledge_id)

        @r.get("/agents/{agent_id}/reviews")
        async def reviews(request: Request, agent_id: str) -> Response:
            q = request.query_params
            return await self.page(request, agent_id, reads.reviews, agent_id, q.get("status"), q.get("page"))

        @r.get("/agents/{agent_id}/reviews/{review_id}")
        async def review(request: Request, agent_id: str, review_id: str) -> Response:
            return await self.page(request, agent_id, reads.review, agent_id, review_id)

        @r.post("/agents/{agent_id}/reviews/{review_id}")
        async def decide(request: Request, agent_id: str, review_id: str) -> Response:
            session = self.session_of(request)
            if session is None:
                return self.error(401, "Sign in first: this session ended or never began.")
            try:
                fields = await self.form(request)
            except BadRequest as exc:
                return self.error(exc.status, str(exc), session)
            if not session.csrf_ok(fields.get("csrf")):
                return self.error(403, "CSRF token missing or wrong: reload the page and try again.", session)
            try:
                hub.auth.authorize_read(session.principal, agent_id)
            except AuthError as exc:
                return self.error(exc.status, exc.message, session)
            if not session.can_decide:
                return self.error(403, "This session signed in with a read token: deciding a review needs a review or write token of this agent.", session)
            decision = fields.get("decision")
            if decision not in ("accept", "reject"):
                return self.error(422, "decision must be accept or reject", session)
            try:
                await run_in_threadpool(hub.engine.decide_review, agent_id, review_id, decision == "accept")
            except KeyError:
                return self.error(404, f"No review {review_id!r} for agent {agent_id!r}.", session)
            except ValueError as exc:
                return self.error(409, str(exc), session)
            return self.redirect(self.agent_url(agent_id, f"reviews/{_seg(review_id)}", decided=decision))

        @r.get("/agents/{agent_id}/events")
        async def events(request: Request, agent_id: str) -> Response:
            q = request.query_params
            return await self.page(request, agent_id, reads.events, agent_id, q.get("type"))

        @r.get("/agents/{agent_id}/events/stream")
        async def event_stream(request: Request, agent_id: str) -> Response:
            session = await self.signed_in(request)
            if session is None:
                return Response(status_code=401, headers=SECURITY_HEADERS)
            try:
                hub.auth.authorize_read(session.principal, agent_id)
                prefixes = pages.type_prefixes(request.query_params.get("type"))
            except AuthError as exc:
                return Response(status_code=exc.status, headers=SECURITY_HEADERS)
            except BadRequest as exc:
                return Response(status_code=exc.status, headers=SECURITY_HEADERS)
            row = self.env.get_template("_event_row.html")

            def accept(event: ObservabilityEvent) -> bool:
                return views.matches(event, agent_id, prefixes)

            async def rows() -> AsyncIterator[bytes]:
                # The hub's own broadcaster (bounded queue, drops counted, ended
                # when the server stops); its JSON messages become table rows.
                async for chunk in hub.events.stream(accept):
                    if not chunk.startswith(b"event: "):
                        yield chunk  # the opening comment and keep-alives
                        continue
                    data = chunk.split(b"\ndata: ", 1)[1].rstrip(b"\n")
                    event = ObservabilityEvent.model_validate(orjson.loads(data))
                    html = row.render(event=event, summary=views.event_summary(event))
                    yield sse_message("event", html)

            return StreamingResponse(
                rows(), media_type="text/event-stream",
                headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"},
            )

        forget_routes(self, r)
        return r

    def signin_page(self, request: Request, status: int = 200, message: str | None = None) -> Response:
        """The sign-in form, with a fresh double-submit CSRF cookie."""
        pre = secrets.token_urlsafe(32)
        response = self.render(
            "signin.html", {"csrf": pre, "message": message, "session": None, "agent_id": None}, status
        )
        secure = self.secure(request)
        response.set_cookie(
            SECURE_PRESESSION_COOKIE if secure else PRESESSION_COOKIE, pre,
            max_age=3600, path="/", httponly=True, samesite="strict", secure=secure,
        )
        return response


__all__ = ["CSP", "STATIC", "TEMPLATES", "Console"]
