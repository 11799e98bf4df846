"""The console (``/console``) against a real hub: sign-in, sessions, CSRF, pages, decisions.

Every request goes over loopback HTTP with httpx, as a browser would send it
(form posts, the session cookie); the data is merged through the hub's
ingestion routes with real tokens.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hub_helpers import auth, distinct_text

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.web.auth import ANONYMOUS
from experience_sync.hub.web.console.sessions import SessionStore
from experience_sync.hub.web.server import HubServer, run_in_thread
from experience_sync.models import new_id

AGENT = "a1"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _event(instance: str, kind: str, data: dict[str, Any], minutes: float = 0) -> dict[str, Any]:
    return {
        "event_id": new_id(),
        "timestamp": (T0 + timedelta(minutes=minutes)).isoformat(),
        "source_instance": instance,
        "event_type": kind,
        "data": data,
    }


def _send(hub: HubServer, token: str, instance: str, events: list[dict[str, Any]], agent: str = AGENT) -> None:
    r = httpx.post(
        f"{hub.url}/v1/agents/{agent}/events",
        json={"instance_id": instance, "events": events},
        headers={**(auth(token) if token else {}), "X-Experience-Sync-Backlog": "7"},
    )
    assert r.status_code == 200, r.text


@dataclass
class Fleet:
    hub: HubServer
    write: str
    read: str
    tokens: list[str] = field(default_factory=list)
    review_id: str = ""
    memories: list[str] = field(default_factory=list)


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    """A manual-review hub with two instances' memories, a skill curve, knowledge and one open review."""
    with run_in_thread(strategy=MergeStrategyConfig(conflict_resolution="manual_review")) as hub:
        t1 = hub.create_token(AGENT, "i1")
        t2 = hub.create_token(AGENT, "i2")
        read = hub.create_token(AGENT, "viewer", "read")
        # distinct words, so no two memories merge; i2 repeats the fourth exactly
        memories = [f"{distinct_text(5)} {'tea' if n % 2 else 'coffee'} brewing" for n in range(60)]
        _send(hub, t1, "i1", [_event("i1", "memory", {"content": m}, n) for n, m in enumerate(memories)])
        _send(hub, t2, "i2", [_event("i2", "memory", {"content": memories[3]}, 61)])
        _send(hub, t1, "i1", [
            _event("i1", "skill", {"name": "web_search", "proficiency": p, "usage": {"invocations": 4, "successes": s}}, 70 + i)
            for i, (p, s) in enumerate([(0.2, 1), (0.45, 2), (0.7, 3), (0.9, 4)])
        ])
        _send(hub, t1, "i1", [
            _event("i1", "knowledge", {"content": "Paris is the capital of France", "subject": "capital of france", "confidence": 0.7}, 80),
            _event("i1", "knowledge", {"content": "Water boils at 100 C at sea level", "subject": "boiling point", "confidence": 0.7}, 81),
        ])
        _send(hub, t2, "i2", [
            _event("i2", "knowledge", {"content": "Water boils at 100 C at sea level", "subject": "boiling point", "confidence": 0.7}, 82),
            # same subject, other words: a conflict the manual_review resolver queues
            _event("i2", "knowledge", {"content": "Lyon is the capital of France", "subject": "capital of france", "confidence": 0.6}, 83),
        ])
        reviews = httpx.get(f"{hub.url}/v1/agents/{AGENT}/reviews", headers=auth(t1)).json()
        assert len(reviews) == 1, reviews
        yield Fleet(hub, t1, read, [t1, t2, read], reviews[0]["review_id"], memories)


class Browser:
    """An httpx client that keeps cookies and remembers every response (for the no-token check)."""

    opened: list[Browser] = []

    def __init__(self, base: str) -> None:
        self.client = httpx.Client(base_url=base, follow_redirects=True, timeout=30)
        self.seen: list[httpx.Response] = []
        Browser.opened.append(self)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        r = self.client.get(path, **kw)
        self.seen.extend([*r.history, r])
        return r

    def post(self, path: str, **kw: Any) -> httpx.Response:
        r = self.client.post(path, **kw)
        self.seen.extend([*r.history, r])
        return r

    def csrf(self, html: str) -> str:
        match = re.search(r'name="csrf" value="([^"]+)"', html)
        assert match, html
        return match.group(1)

    def sign_in(self, token: str) -> httpx.Response:
        form = self.get("/console/signin")
        return self.post("/console/signin", data={"token": token, "csrf": self.csrf(form.text)})


@pytest.fixture(autouse=True)
def _close_browsers() -> Iterator[None]:
    yield
    while Browser.opened:
        Browser.opened.pop().client.close()


def _signed_in(hub: HubServer, token: str) -> tuple[Browser, str]:
    b = Browser(hub.url)
    r = b.sign_in(token)
    assert r.status_code == 200, r.text
    return b, b.csrf(r.text)


def page(agent: str, name: str) -> str:
    return f"/console/agents/{agent}/{name}"


# ---------------------------------------------------------------------- sign-in


def test_signin_sets_a_session_cookie_bound_to_the_server_and_signout_ends_it(fleet: Fleet) -> None:
    b = Browser(fleet.hub.url)
    assert b.get("/console/").url.path == "/console/signin"
    form = b.get("/console/signin")
    r = b.client.post("/console/signin", data={"token": fleet.read, "csrf": b.csrf(form.text)}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/agents/a1/fleet"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("xs_console="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Secure" not in cookie  # plain http on loopback
    session_id = cookie.split(";", 1)[0].split("=", 1)[1]
    assert len(session_id) >= 40 and session_id not in fleet.read
    landing = b.get(r.headers["location"])
    assert landing.status_code == 200 and "Fleet" in landing.text and "a1 · read" in landing.text
    out = b.post("/console/signout", data={"csrf": b.csrf(landing.text)})
    assert out.url.path == "/console/signin"
    # the old cookie no longer opens anything, even if a browser kept it
    again = httpx.get(f"{fleet.hub.url}{page(AGENT, 'fleet')}", cookies={"xs_console": session_id}, follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/console/signin"


def test_a_wrong_or_revoked_token_is_refused(fleet: Fleet) -> None:
    b = Browser(fleet.hub.url)
    for token in ("xs_nope_nope", "not a token", "", fleet.read + "x"):
        r = b.sign_in(token)
        assert r.status_code == 401, (token, r.status_code)
        assert "not accepted" in r.text
    assert b.get(page(AGENT, "fleet")).url.path == "/console/signin"
    # a session whose token is revoked ends at its next check
    b, _ = _signed_in(fleet.hub, fleet.read)
    token_id = fleet.read.split("_")[1]
    assert fleet.hub.hub.store.revoke_token(token_id)
    console = _console(fleet.hub)
    for s in list(console.sessions._sessions.values()):
        s.checked = 0.0  # due for its recheck now instead of in 5 s
    assert b.get(page(AGENT, "fleet")).url.path == "/console/signin"


def test_signin_needs_the_forms_csrf_token(fleet: Fleet) -> None:
    b = Browser(fleet.hub.url)
    b.get("/console/signin")
    assert b.post("/console/signin", data={"token": fleet.write}).status_code == 403
    assert b.post("/console/signin", data={"token": fleet.write, "csrf": "forged"}).status_code == 403
    # without the pre-session cookie (a cross-site post) the form's value alone is not enough
    form = b.get("/console/signin")
    fresh = httpx.post(f"{fleet.hub.url}/console/signin", data={"token": fleet.write, "csrf": b.csrf(form.text)})
    assert fresh.status_code == 403
    assert b.get(page(AGENT, "fleet")).url.path == "/console/signin"


def test_sessions_expire_when_idle_and_at_their_lifetime() -> None:
    idle = SessionStore(None, idle=0.05)
    s = idle.create(ANONYMOUS, None)
    assert idle.get(s.session_id) is s
    time.sleep(0.1)
    assert idle.get(s.session_id) is None
    capped = SessionStore(None, lifetime=0.05)
    s = capped.create(ANONYMOUS, None)
    time.sleep(0.1)
    assert capped.get(s.session_id) is None
    bounded = SessionStore(None, max_sessions=2)
    first = bounded.create(ANONYMOUS, None)
    bounded.create(ANONYMOUS, None)
    bounded.create(ANONYMOUS, None)
    assert bounded.get(first.session_id) is None and len(bounded) == 2


def _console(server: HubServer) -> Any:
    # The console of the app uvicorn serves (tests may look at internals).
    assert server._server is not None
    return server._server.config.app.state.console


# ---------------------------------------------------------------------- security headers and CSRF


def test_every_page_has_a_strict_content_security_policy(fleet: Fleet) -> None:
    b, _ = _signed_in(fleet.hub, fleet.read)
    for name in ("fleet", "memories", "memories?q=tea", "skills", "knowledge", "reviews", f"reviews/{fleet.review_id}", "events"):
        r = b.get(page(AGENT, name))
        assert r.status_code == 200, (name, r.text)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"
        # no inline script or style anywhere: every <script> has a src under /console/static
        assert not re.search(r"<script(?![^>]*\bsrc=\"/console/static/)", r.text)
        assert "style=" not in r.text and "<style" not in r.text
    assert "Content-Security-Policy" in b.get("/console/signin").headers


def test_deciding_needs_the_sessions_csrf_token(fleet: Fleet) -> None:
    b, csrf = _signed_in(fleet.hub, fleet.write)
    url = page(AGENT, f"reviews/{fleet.review_id}")
    assert b.post(url, data={"decision": "accept"}).status_code == 403
    altered = csrf[:-1] + ("B" if csrf.endswith("A") else "A")  # one character changed
    assert b.post(url, data={"decision": "accept", "csrf": altered}).status_code == 403
    _other, other_csrf = _signed_in(fleet.hub, fleet.write)  # another session's token is wrong here
    assert other_csrf != csrf
    assert b.post(url, data={"decision": "accept", "csrf": other_csrf}).status_code == 403
    assert b.post("/console/signout", data={"csrf": "wrong"}).status_code == 403
    reviews = httpx.get(f"{fleet.hub.url}/v1/agents/{AGENT}/reviews", headers=auth(fleet.write)).json()
    assert [r["status"] for r in reviews] == ["open"]


def test_a_read_token_sees_the_queue_but_cannot_decide(fleet: Fleet) -> None:
    b, csrf = _signed_in(fleet.hub, fleet.read)
    queue = b.get(page(AGENT, "reviews"))
    assert "Lyon is the capital of France" in queue.text and "Paris is the capital of France" in queue.text
    assert "Accept proposed" not in queue.text and "read token" in queue.text
    r = b.post(page(AGENT, f"reviews/{fleet.review_id}"), data={"decision": "accept", "csrf": csrf})
    assert r.status_code == 403 and "write token" in r.text
    assert httpx.get(f"{fleet.hub.url}/v1/agents/{AGENT}/reviews", headers=auth(fleet.read)).json()[0]["status"] == "open"


def test_accepting_a_review_changes_the_merged_state_at_once(fleet: Fleet) -> None:
    b, csrf = _signed_in(fleet.hub, fleet.write)
    queue = b.get(page(AGENT, "reviews"))
    assert "Accept proposed" in queue.text and "raised by i2" in queue.text
    knowledge = b.get(page(AGENT, "knowledge"))
    assert "Paris is the capital of France" in knowledge.text
    r = b.post(page(AGENT, f"reviews/{fleet.review_id}"), data={"decision": "accept", "csrf": csrf})
    assert r.status_code == 200 and r.url.path == page(AGENT, f"reviews/{fleet.review_id}")
    assert re.search(r'id="review-status">accepted<', r.text)
    now = r.text.split('id="merged-now"', 1)[1]
    assert "Lyon is the capital of France" in now
    after = b.get(page(AGENT, "knowledge")).text
    assert "Lyon is the capital of France" in after and "Paris is the capital of France" not in after
    assert "No open review" in b.get(page(AGENT, "reviews")).text
    assert fleet.review_id in b.get(page(AGENT, "reviews?status=accepted")).text
    # the JSON API agrees
    state = httpx.get(f"{fleet.hub.url}/v1/agents/{AGENT}/reviews?status=accepted", headers=auth(fleet.write)).json()
    assert [x["review_id"] for x in state] == [fleet.review_id]


def test_rejecting_keeps_the_current_side(fleet: Fleet) -> None:
    b, csrf = _signed_in(fleet.hub, fleet.write)
    r = b.post(page(AGENT, f"reviews/{fleet.review_id}"), data={"decision": "reject", "csrf": csrf})
    assert re.search(r'id="review-status">rejected<', r.text)
    assert "Paris is the capital of France" in r.text.split('id="merged-now"', 1)[1]


# ---------------------------------------------------------------------- pages with real data


def test_each_page_shows_the_agents_real_data(fleet: Fleet) -> None:
    b, _ = _signed_in(fleet.hub, fleet.read)
    f = b.get(page(AGENT, "fleet")).text
    assert 'data-instance="i1"' in f and 'data-instance="i2"' in f and "streaming" in f and "https" in f
    assert re.search(r'<span class="n">2</span> instances', f)
    assert re.search(r'<span class="n">14</span> in outboxes', f)  # each instance's last backlog header, 7
    mem = b.get(page(AGENT, "memories")).text
    assert fleet.memories[0] in mem and "page 1 of 3" in mem
    ranked = b.get(page(AGENT, "memories"), params={"q": fleet.memories[3].split()[0]}).text
    assert "score" in ranked and fleet.memories[3] in ranked
    link = re.search(r'href="(/console/agents/a1/memories/[^"]+)">' + re.escape(fleet.memories[3]), ranked)
    assert link, "memory 3 is linked"
    one = b.get(link.group(1)).text
    assert "Where it came from" in one and "<li>i1</li>" in one and "<li>i2</li>" in one
    skills = b.get(page(AGENT, "skills")).text
    assert "web_search" in skills and "0.90" in skills
    skill_link = re.search(r'href="(/console/agents/a1/skills/[^"]+)">web_search', skills)
    assert skill_link
    curve = b.get(skill_link.group(1)).text
    points = re.search(r'<svg class="plot"[^>]*data-points="(\d+)"', curve)
    assert points and int(points.group(1)) >= 4, curve
    assert curve.count('<circle ') >= 4 and "<polyline points=" in curve
    assert "<td>i1</td>" in curve
    kn = b.get(page(AGENT, "knowledge")).text
    assert "Water boils at 100 C" in kn and "integrated" in kn
    pending = b.get(page(AGENT, "knowledge?status=pending")).text
    assert "Paris is the capital of France" in pending and "Water boils" not in pending
    assert "1 more verifying instance" in pending and "more confidence" in pending
    assert "Needs 0.100 more confidence" in pending  # 0.8 threshold - 0.7
    events = b.get(page(AGENT, "events")).text
    assert "review.queued" in events and "sync.event" in events
    only = b.get(page(AGENT, "events?type=review")).text
    assert "review.queued" in only and "sync.event" not in only


def test_paging_and_its_limits(fleet: Fleet) -> None:
    b, _ = _signed_in(fleet.hub, fleet.read)
    first = b.get(page(AGENT, "memories")).text
    third = b.get(page(AGENT, "memories?page=3")).text
    assert first.count('<li class="card">') == 25 and third.count('<li class="card">') == 10
    assert "51&ndash;60 of 60" in third and 'rel="next"' not in third and 'rel="prev"' in third
    beyond = b.get(page(AGENT, "memories?page=9"))
    assert beyond.status_code == 200 and "No memory" in beyond.text
    for bad in ("0", "-1", "abc", "1.5", "9999999", "1e3"):
        for name in ("fleet", "memories", "skills", "knowledge", "reviews"):
            r = b.get(page(AGENT, name), params={"page": bad})
            assert r.status_code == 400, (name, bad, r.status_code)
            assert "page must be" in r.text


def test_bad_input_is_a_4xx_page_never_a_500(fleet: Fleet) -> None:
    b, csrf = _signed_in(fleet.hub, fleet.write)
    cases = {
        page(AGENT, "reviews/nope"): 404,
        page(AGENT, "memories/nope"): 404,
        page(AGENT, "skills/nope"): 404,
        page(AGENT, "reviews?status=maybe"): 400,
        page(AGENT, "knowledge?status=maybe"): 400,
        page(AGENT, "fleet?sort=nope"): 400,
        page(AGENT, "events?type=%3Cscript%3E"): 400,
        page("a2", "fleet"): 403,
        page("x" * 300, "fleet"): 422,
        "/console/agents": 200,
    }
    for url, status in cases.items():
        r = b.get(url)
        assert r.status_code == status, (url, r.status_code, r.text[:300])
    assert b.get(page(AGENT, "memories"), params={"q": "tea " * 600}).status_code == 422
    assert b.get(page(AGENT, "memories"), params={"q": "a\x00b"}).status_code == 422
    assert b.get(page(AGENT, "memories"), params={"q": "   "}).status_code == 200  # blank: the listing
    url = page(AGENT, "reviews/nope")
    assert b.post(url, data={"decision": "accept", "csrf": csrf}).status_code == 404
    assert b.post(page(AGENT, f"reviews/{fleet.review_id}"), data={"decision": "maybe", "csrf": csrf}).status_code == 422
    assert b.post(page("a2", f"reviews/{fleet.review_id}"), data={"decision": "accept", "csrf": csrf}).status_code == 403
    big = b.post(page(AGENT, f"reviews/{fleet.review_id}"), content=b"csrf=" + b"x" * 10_000,
                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413
    binary = b.post(page(AGENT, f"reviews/{fleet.review_id}"), content=b"\xff\xfe",
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert binary.status_code == 400
    assert httpx.post(f"{fleet.hub.url}{url}", data={"decision": "accept"}).status_code == 401


def test_no_token_appears_in_any_response_or_url(fleet: Fleet) -> None:
    b, csrf = _signed_in(fleet.hub, fleet.write)
    b.sign_in(fleet.read)
    b.sign_in("xs_bad_token")
    for name in ("fleet", "memories", "memories?q=tea", "skills", "knowledge", "reviews", "events", "reviews/nope"):
        b.get(page(AGENT, name))
    b.post(page(AGENT, f"reviews/{fleet.review_id}"), data={"decision": "accept", "csrf": csrf})
    assert len(b.seen) > 15
    secrets = [t.split("_", 2)[2] for t in fleet.tokens]
    for r in b.seen:
        text = r.text + str(r.url) + " ".join(f"{k}: {v}" for k, v in r.headers.items())
        for token, secret in zip(fleet.tokens, secrets, strict=True):
            assert token not in text and secret not in text, r.url
    for cookie in b.client.cookies.jar:
        assert all(cookie.value not in t for t in fleet.tokens)


def test_the_fleet_table_refreshes_as_a_fragment(fleet: Fleet) -> None:
    b, _ = _signed_in(fleet.hub, fleet.read)
    r = b.get(page(AGENT, "fleet"), headers={"HX-Request": "true"})
    assert r.status_code == 200 and "<html" not in r.text and 'id="fleet-live"' in r.text
    t3 = fleet.hub.create_token(AGENT, "i3")
    _send(fleet.hub, t3, "i3", [_event("i3", "memory", {"content": "a third instance speaks"})])
    assert 'data-instance="i3"' in b.get(page(AGENT, "fleet"), headers={"HX-Request": "true"}).text
    # a fragment request without a session is told to go to sign-in (htmx follows HX-Redirect)
    anon = httpx.get(f"{fleet.hub.url}{page(AGENT, 'fleet')}", headers={"HX-Request": "true"})
    assert anon.status_code == 401 and anon.headers["hx-redirect"] == "/console/signin"


def test_the_event_stream_sends_new_events_as_table_rows(fleet: Fleet) -> None:
    b, _ = _signed_in(fleet.hub, fleet.read)
    url = page(AGENT, "events/stream?type=sync")
    assert httpx.get(f"{fleet.hub.url}{url}").status_code == 401
    with b.client.stream("GET", url) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert "default-src 'self'" in stream.headers["content-security-policy"]
        lines = stream.iter_lines()
        assert next(lines).startswith(":")
        _send(fleet.hub, fleet.write, "i1", [_event("i1", "memory", {"content": "streamed while watching"})])
        got: list[str] = []
        for line in lines:
            got.append(line)
            if line == "" and any(x.startswith("data: <tr") for x in got):
                break
    assert "event: event" in got
    row = next(x for x in got if x.startswith("data: <tr"))
    assert "sync.event" in row and "i1" in row


def test_static_files_ship_with_the_package(fleet: Fleet) -> None:
    for name in ("htmx.min.js", "htmx-ext-sse.js", "console.js", "console.css", "htmx.LICENSE.txt"):
        r = httpx.get(f"{fleet.hub.url}/console/static/{name}")
        assert r.status_code == 200 and len(r.content) > 100, name
    assert httpx.get(f"{fleet.hub.url}/console/static/../app.py").status_code == 404


def test_a_no_auth_hub_opens_without_signin_on_any_agent() -> None:
    with run_in_thread(auth=False) as hub:
        _send(hub, "", "i1", [_event("i1", "memory", {"content": "open hub memory"})], agent="open-agent")
        b = Browser(hub.url)
        r = b.get("/console/")
        assert r.url.path == "/console/agents" and "open-agent" in r.text
        assert b.get("/console/signin").url.path == "/console/agents"
        assert "open hub memory" in b.get(page("open-agent", "memories")).text
        assert "Sign out" not in r.text


def test_a_restarted_server_keeps_its_sessions_and_one_event_observer(fleet: Fleet) -> None:
    b, _ = _signed_in(fleet.hub, fleet.read)
    observers = len(fleet.hub.hub.observers)
    fleet.hub.restart()
    assert b.get(page(AGENT, "fleet")).url.path == page(AGENT, "fleet")
    assert len(fleet.hub.hub.observers) == observers


# ---------------------------------------------------------------------- forgetting (admin scope)

NAME = "Zebulon Quarkwright"


def _strict(r: httpx.Response) -> None:
    """The page is an HTML page under the console's CSP with no inline script or style."""
    assert "unsafe-inline" not in r.headers["content-security-policy"]
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert not re.search(r"<script(?![^>]*\bsrc=\"/console/static/)", r.text)
    assert "style=" not in r.text and "<style" not in r.text


def _count(html: str, name: str) -> int:
    match = re.search(rf'data-count="{name}">(\d+)<', html)
    assert match, (name, html)
    return int(match.group(1))


def _forget_form(html: str, agent: str = AGENT) -> dict[str, str]:
    """The hidden fields of the page's (first) forget form."""
    form = re.search(rf'<form method="post" action="/console/agents/{agent}/forget".*?</form>', html, re.S)
    assert form, html
    return dict(re.findall(r'name="(\w+)" value="([^"]*)"', form.group(0)))


def _state(fleet: Fleet) -> dict[str, Any]:
    r = httpx.get(f"{fleet.hub.url}/v1/agents/{AGENT}/state", headers=auth(fleet.write))
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def _memory_id(fleet: Fleet, content: str) -> str:
    return next(m["memory_id"] for m in _state(fleet)["memories"] if m["content"] == content)


def _forgets(fleet: Fleet, admin: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{fleet.hub.url}/v1/agents/{AGENT}/forgets", headers=auth(admin))
    assert r.status_code == 200, r.text
    records: list[dict[str, Any]] = r.json()
    return records


def test_an_admin_forgets_a_memory_after_a_dry_run(fleet: Fleet) -> None:
    admin = fleet.hub.create_token(AGENT, "dpo", "admin")
    token_id = admin.split("_")[1]
    b, _ = _signed_in(fleet.hub, admin)
    text = fleet.memories[5]
    mid = _memory_id(fleet, text)
    one = b.get(page(AGENT, f"memories/{mid}"))
    assert one.status_code == 200 and 'href="/console/agents/a1/forget"' in one.text  # the nav link
    form = _forget_form(one.text)
    assert form["kind"] == "memory" and form["value"] == mid and form["step"] == "preview"
    _strict(one)
    # the dry run: counts, and nothing removed yet
    preview = b.post(page(AGENT, "forget"), data=form)
    assert preview.status_code == 200, preview.text
    _strict(preview)
    assert _count(preview.text, "events") == 1 and _count(preview.text, "memories") == 1
    assert _count(preview.text, "knowledge") == 0 and 'id="forget-confirm"' in preview.text
    assert text in preview.text  # the confirm step names what it is about (still there)
    assert any(m["memory_id"] == mid for m in _state(fleet)["memories"])
    assert _forgets(fleet, admin) == []
    # confirmed: gone from the state, the console and search; the result page says how much, not what
    confirm = _forget_form(preview.text)
    assert confirm["step"] == "confirm" and confirm["value"] == mid
    done = b.post(page(AGENT, "forget"), data=confirm)
    assert done.status_code == 200 and re.fullmatch(r"/console/agents/a1/forget/\w+", done.url.path), done.url
    _strict(done)
    assert "Forgotten" in done.text and _count(done.text, "memories") == 1 and _count(done.text, "events") == 1
    assert text not in done.text and 'href="/console/agents/a1/memories"' in done.text
    assert all(m["content"] != text for m in _state(fleet)["memories"])
    # (the rebuild numbers memories afresh, so the id may now name another memory)
    assert text not in b.get(page(AGENT, f"memories/{mid}")).text
    assert text not in b.get(page(AGENT, "memories?page=3")).text + b.get(page(AGENT, "memories?page=2")).text
    word = text.split()[0]
    hits = httpx.get(f"{fleet.hub.url}/v1/agents/{AGENT}/search", params={"q": word, "k": 100},
                     headers=auth(fleet.read)).json()["hits"]
    assert all(text not in h["text"] for h in hits)
    assert text not in b.get(page(AGENT, "memories"), params={"q": word}).text
    # the audit trail: the console user's principal, the selectors, the counts; no text
    [record] = _forgets(fleet, admin)
    assert record["token_id"] == token_id and record["principal_instance"] == "dpo"
    assert record["principal_scope"] == "admin" and record["selectors"] == {"memory_ids": 1}
    assert record["events_forgotten"] == 1 and record["removed"]["memories"] == 1
    assert text not in str(record) and word not in str(record)
    assert done.url.path.endswith(record["forget_id"])
    trail = b.get(page(AGENT, "forget"))
    _strict(trail)
    assert f'data-forget="{record["forget_id"]}"' in trail.text and token_id in trail.text
    assert "memory_ids: 1" in trail.text and text not in trail.text


def test_read_review_and_write_sessions_see_no_forget_controls_and_get_403(fleet: Fleet) -> None:
    admin = fleet.hub.create_token(AGENT, "dpo", "admin")
    review = fleet.hub.create_token(AGENT, "operator", "review")
    mid = _memory_id(fleet, fleet.memories[7])
    skill_id = _state(fleet)["skills"][0]["skill_id"]
    knowledge_id = _state(fleet)["knowledge"][0]["knowledge_id"]
    # an admin's forget to ask the done page about
    a, _ = _signed_in(fleet.hub, admin)
    other = _memory_id(fleet, fleet.memories[8])
    done = a.post(page(AGENT, "forget"), data={**_forget_form(a.get(page(AGENT, f"memories/{other}")).text), "step": "confirm"})
    assert done.status_code == 200
    for token in (fleet.read, review, fleet.write):
        b, csrf = _signed_in(fleet.hub, token)
        for name in (f"memories/{mid}", f"skills/{skill_id}", f"knowledge/{knowledge_id}", "fleet"):
            r = b.get(page(AGENT, name))
            assert r.status_code == 200, (name, r.text)
            assert "/forget" not in r.text and "Forget" not in r.text, (token, name)
        assert b.get(page(AGENT, "forget")).status_code == 403
        assert b.get(done.url.path).status_code == 403
        for kind, value in (("memory", mid), ("query", "tea"), ("skill", skill_id)):
            for step in ("preview", "confirm"):
                r = b.post(page(AGENT, "forget"), data={"csrf": csrf, "kind": kind, "value": value, "step": step})
                assert r.status_code == 403 and "admin token" in r.text, r.text
    assert any(m["memory_id"] == mid for m in _state(fleet)["memories"])
    assert len(_forgets(fleet, admin)) == 1
    # the admin's own session shows the controls on every item page
    for name in (f"memories/{mid}", f"skills/{skill_id}", f"knowledge/{knowledge_id}"):
        form = _forget_form(a.get(page(AGENT, name)).text)
        assert form["value"] in (mid, skill_id, knowledge_id)


def test_forgetting_needs_the_sessions_csrf_token(fleet: Fleet) -> None:
    admin = fleet.hub.create_token(AGENT, "dpo", "admin")
    b, csrf = _signed_in(fleet.hub, admin)
    mid = _memory_id(fleet, fleet.memories[9])
    fields = {"kind": "memory", "value": mid, "step": "confirm"}
    assert b.post(page(AGENT, "forget"), data=fields).status_code == 403
    altered = csrf[:-1] + ("B" if csrf.endswith("A") else "A")
    assert b.post(page(AGENT, "forget"), data={**fields, "csrf": altered}).status_code == 403
    _other, other_csrf = _signed_in(fleet.hub, admin)
    r = b.post(page(AGENT, "forget"), data={**fields, "csrf": other_csrf})
    assert r.status_code == 403 and "CSRF" in r.text
    # no session at all: 401
    assert httpx.post(f"{fleet.hub.url}{page(AGENT, 'forget')}", data={**fields, "csrf": csrf}).status_code == 401
    assert any(m["memory_id"] == mid for m in _state(fleet)["memories"])
    assert _forgets(fleet, admin) == []


def test_an_admin_forgets_a_name_by_text_query_and_a_subject(fleet: Fleet) -> None:
    admin = fleet.hub.create_token(AGENT, "dpo", "admin")
    _send(fleet.hub, fleet.write, "i1", [
        _event("i1", "memory", {"content": f"{NAME} prefers morning meetings"}, 90),
        _event("i1", "memory", {"content": "zebulon QUARKWRIGHT's invoices go to london"}, 91),
        _event("i1", "knowledge", {"content": "his phone is 415 555 0199", "subject": NAME, "confidence": 0.9}, 92),
    ])
    b, _ = _signed_in(fleet.hub, admin)
    admin_page = b.get(page(AGENT, "forget"))
    assert admin_page.status_code == 200 and 'id="forget-text"' in admin_page.text
    assert "Nothing was forgotten" in admin_page.text
    csrf = b.csrf(admin_page.text)
    preview = b.post(page(AGENT, "forget"), data={"csrf": csrf, "kind": "query", "value": NAME, "step": "preview"})
    assert preview.status_code == 200, preview.text
    assert _count(preview.text, "events") == 3 and _count(preview.text, "memories") == 2
    assert _count(preview.text, "knowledge") == 1
    assert len([m for m in _state(fleet)["memories"] if "quarkwright" in m["content"].lower()]) == 2
    done = b.post(page(AGENT, "forget"), data=_forget_form(preview.text))
    assert done.status_code == 200 and "Forgotten" in done.text and "quarkwright" not in done.text.lower()
    state = _state(fleet)
    assert "quarkwright" not in str(state).lower() and "415 555" not in str(state)
    hits = httpx.get(f"{fleet.hub.url}/v1/agents/{AGENT}/search", params={"q": "Quarkwright", "kinds": "memory,knowledge"},
                     headers=auth(fleet.read)).json()["hits"]
    assert hits == []
    # nothing left to forget: the dry run says so and offers no confirm button
    again = b.post(page(AGENT, "forget"), data={"csrf": csrf, "kind": "query", "value": "quarkwright", "step": "preview"})
    assert 'id="nothing"' in again.text and 'id="forget-confirm"' not in again.text
    # a subject: every report about it
    by_subject = b.post(page(AGENT, "forget"), data={"csrf": csrf, "kind": "subject", "value": "boiling point", "step": "preview"})
    assert _count(by_subject.text, "knowledge") == 1 and _count(by_subject.text, "events") == 2
    b.post(page(AGENT, "forget"), data=_forget_form(by_subject.text))
    assert all("boils" not in k["content"] for k in _state(fleet)["knowledge"])
    records = _forgets(fleet, admin)
    assert sorted(tuple(r["selectors"]) for r in records) == [("query",), ("subject",)]
    assert "quarkwright" not in str(records).lower() and "boiling" not in str(records)
    trail = b.get(page(AGENT, "forget")).text
    assert trail.count("data-forget=") == 2 and "quarkwright" not in trail.lower()


def test_forgetting_a_knowledge_item_and_a_skills_history_from_their_pages(fleet: Fleet) -> None:
    admin = fleet.hub.create_token(AGENT, "dpo", "admin")
    b, _ = _signed_in(fleet.hub, admin)
    kn = b.get(page(AGENT, "knowledge")).text
    link = re.search(r'href="(/console/agents/a1/knowledge/[^"]+)">Water boils', kn)
    assert link, kn
    item = b.get(link.group(1))
    assert item.status_code == 200 and "Verifying instances" in item.text
    preview = b.post(page(AGENT, "forget"), data=_forget_form(item.text))
    assert _count(preview.text, "knowledge") == 1 and _count(preview.text, "events") == 2
    done = b.post(page(AGENT, "forget"), data=_forget_form(preview.text))
    assert 'href="/console/agents/a1/knowledge"' in done.text
    assert "Water boils" not in b.get(page(AGENT, "knowledge")).text
    assert b.get(link.group(1)).status_code == 404
    skill_id = _state(fleet)["skills"][0]["skill_id"]
    preview = b.post(page(AGENT, "forget"), data=_forget_form(b.get(page(AGENT, f"skills/{skill_id}")).text))
    assert _count(preview.text, "skills") == 1 and _count(preview.text, "events") == 4
    b.post(page(AGENT, "forget"), data=_forget_form(preview.text))
    assert _state(fleet)["skills"] == []
    assert sorted(tuple(r["selectors"]) for r in _forgets(fleet, admin)) == [("knowledge_ids",), ("skill_ids",)]


def test_an_admin_forgets_everything_one_instance_sent(fleet: Fleet) -> None:
    """The wire's instance forget, from the Forget page: dry run, confirm, audit."""
    admin = fleet.hub.create_token(AGENT, "dpo", "admin")
    b, csrf = _signed_in(fleet.hub, admin)
    assert 'value="instance"' in b.get(page(AGENT, "forget")).text
    url = page(AGENT, "forget")
    missing = b.post(url, data={"csrf": csrf, "kind": "instance", "value": "i9", "step": "preview"})
    assert missing.status_code == 404 and "i9" in missing.text
    preview = b.post(url, data={"csrf": csrf, "kind": "instance", "value": "i2", "step": "preview"})
    assert preview.status_code == 200, preview.text
    assert _count(preview.text, "events") == 3 and _count(preview.text, "reviews") == 1
    assert "everything instance i2 sent" in preview.text
    done = b.post(url, data=_forget_form(preview.text))
    assert done.status_code == 200 and "Forgotten" in done.text
    state = _state(fleet)
    assert all("i2" not in m["source_instances"] for m in state["memories"])
    assert all("i2" not in k["verifications"] for k in state["knowledge"])
    assert len(state["memories"]) == 60 and state["reviews"] == []
    (record,) = _forgets(fleet, admin)
    assert record["selectors"] == {"instance_ids": 1} and record["instance_ids"] == ["i2"]


def test_bad_forget_input_is_a_4xx_page(fleet: Fleet) -> None:
    admin = fleet.hub.create_token(AGENT, "dpo", "admin")
    b, csrf = _signed_in(fleet.hub, admin)
    url = page(AGENT, "forget")
    cases = [
        ({"kind": "everything", "value": "x", "step": "preview"}, 422),
        ({"kind": "query", "value": "x", "step": "maybe"}, 422),
        ({"kind": "query", "value": "", "step": "preview"}, 422),
        ({"kind": "query", "value": " !! ", "step": "preview"}, 422),
        ({"kind": "query", "value": "x" * 2001, "step": "preview"}, 422),
        ({"kind": "memory", "value": "nope", "step": "confirm"}, 404),
        ({"kind": "skill", "value": "nope", "step": "preview"}, 404),
    ]
    for fields, status in cases:
        r = b.post(url, data={**fields, "csrf": csrf})
        assert r.status_code == status, (fields, r.status_code, r.text[:300])
    assert b.post(page("a2", "forget"), data={"csrf": csrf, "kind": "query", "value": "x", "step": "preview"}).status_code == 403
    assert b.get(page(AGENT, "forget/nope")).status_code == 404
    assert b.get(page(AGENT, "forget?page=0")).status_code == 400
    assert b.get(page(AGENT, "knowledge/nope")).status_code == 404
    assert _forgets(fleet, admin) == []


def test_a_no_auth_hub_lets_the_loopback_console_forget() -> None:
    with run_in_thread(auth=False) as hub:
        _send(hub, "", "i1", [_event("i1", "memory", {"content": f"{NAME} lives in Leeds"})], agent="open-agent")
        b = Browser(hub.url)
        admin_page = b.get(page("open-agent", "forget"))
        assert admin_page.status_code == 200 and "Forget" in admin_page.text
        preview = b.post(page("open-agent", "forget"), data={
            "csrf": b.csrf(admin_page.text), "kind": "query", "value": "leeds", "step": "preview"})
        assert _count(preview.text, "memories") == 1
        done = b.post(page("open-agent", "forget"), data=_forget_form(preview.text, "open-agent"))
        assert done.status_code == 200 and "Forgotten" in done.text
        assert "no auth (loopback)" in b.get(page("open-agent", "forget")).text
        assert "Leeds" not in b.get(page("open-agent", "memories")).text
