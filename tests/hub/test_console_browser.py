"""The console in a real browser: Playwright driving Debian's Chromium against a real hub.

Skipped, with the reason, when Python Playwright or ``/usr/bin/chromium`` is
missing (neither is a development requirement; ``pip install playwright`` and
``apt-get install chromium`` bring them). Screenshots of each page go to
``$CONSOLE_SCREENSHOTS`` (default: the test's temporary directory).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from hub_helpers import auth

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.web.server import HubServer, run_in_thread
from experience_sync.models import new_id

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Python Playwright is not installed (pip install playwright)")

AGENT = "a1"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _send(hub: HubServer, token: str, instance: str, events: list[dict[str, Any]]) -> None:
    r = httpx.post(f"{hub.url}/v1/agents/{AGENT}/events", json={"instance_id": instance, "events": events}, headers=auth(token))
    assert r.status_code == 200, r.text


def _event(instance: str, kind: str, data: dict[str, Any], minutes: float = 0) -> dict[str, Any]:
    return {"event_id": new_id(), "timestamp": (T0 + timedelta(minutes=minutes)).isoformat(),
            "source_instance": instance, "event_type": kind, "data": data}


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    path = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with run_in_thread(strategy=MergeStrategyConfig(conflict_resolution="manual_review")) as server:
        yield server


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _seed(hub: HubServer) -> tuple[str, str]:
    t1 = hub.create_token(AGENT, "i1")
    t2 = hub.create_token(AGENT, "i2")
    _send(hub, t1, "i1", [_event("i1", "memory", {"content": "The user prefers green tea in the morning"}),
                          *[_event("i1", "skill", {"name": "web_search", "proficiency": p}, 10 + i)
                            for i, p in enumerate([0.2, 0.4, 0.55, 0.8])],
                          _event("i1", "knowledge", {"content": "Paris is the capital of France", "subject": "capital", "confidence": 0.7}, 20)])
    _send(hub, t2, "i2", [_event("i2", "knowledge", {"content": "Lyon is the capital of France", "subject": "capital", "confidence": 0.6}, 21)])
    return t1, hub.create_token(AGENT, "viewer", "read")


def _sign_in(page: Any, hub: HubServer, token: str) -> None:
    page.goto(f"{hub.url}/console/")
    page.fill("#token", token)
    page.click("button[type=submit]")


def test_an_operator_signs_in_watches_reads_and_decides(hub: HubServer, browser: Any, shots: Path) -> None:
    write, read = _seed(hub)
    violations: list[str] = []
    # the phone signs in with the read token first (sees the open review, cannot decide), the desktop decides
    for width, height, name in ((390, 844, "phone"), (1280, 900, "desktop")):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        # a wrong token is refused, with a message
        _sign_in(page, hub, "xs_wrong_token")
        assert "not accepted" in page.inner_text(".flash")
        _sign_in(page, hub, read if name == "phone" else write)
        page.wait_for_selector("#fleet")
        assert page.locator('tr[data-instance="i1"]').count() == 1
        page.screenshot(path=str(shots / f"console-fleet-{name}.png"), full_page=True)
        # the fleet table updates by itself while a new instance streams
        t3 = hub.create_token(AGENT, f"i3-{name}")
        _send(hub, t3, f"i3-{name}", [_event(f"i3-{name}", "memory", {"content": f"a new instance {name}"})])
        page.wait_for_selector(f'tr[data-instance="i3-{name}"]', timeout=15_000)
        # a memory's origin
        page.click("text=Memories")
        page.fill("input[name=q]", "green tea")
        page.click("form.search button")
        page.click("text=The user prefers green tea in the morning")
        assert "i1" in page.inner_text("main")
        page.screenshot(path=str(shots / f"console-memory-{name}.png"), full_page=True)
        # a skill's learning curve, drawn with its real points
        page.click("text=Skills")
        page.click("text=web_search")
        assert page.locator("svg.plot circle").count() == 4
        page.screenshot(path=str(shots / f"console-skill-{name}.png"), full_page=True)
        page.click("text=Knowledge")
        page.screenshot(path=str(shots / f"console-knowledge-{name}.png"), full_page=True)
        page.click("text=Reviews")
        page.screenshot(path=str(shots / f"console-reviews-{name}.png"), full_page=True)
        if name == "phone":  # signed in with the read token: nothing to press
            assert page.locator("button.accept").count() == 0
            assert "Lyon is the capital of France" in page.inner_text("main")
            assert "read token" in page.inner_text("main")
        else:
            page.click("button.accept")
            page.wait_for_selector("#review-status")
            assert page.inner_text("#review-status") == "accepted"
            assert "Lyon is the capital of France" in page.inner_text("#merged-now")
        # the live event feed
        page.click("text=Events")
        page.wait_for_selector("#live-state.on", timeout=15_000)
        rows = page.locator("#events tbody tr", has_text="sync.event")
        before = rows.count()
        _send(hub, write, "i1", [_event("i1", "memory", {"content": f"live event {name}"})])
        # (no wait_for_function: its string predicate is an eval, which the page's CSP forbids)
        sync_api.expect(rows).to_have_count(before + 1, timeout=15_000)
        page.screenshot(path=str(shots / f"console-events-{name}.png"), full_page=True)
        # sign-out ends the session
        page.click("text=Sign out")
        assert page.url.endswith("/console/signin")
        page.goto(f"{hub.url}/console/agents/{AGENT}/fleet")
        assert page.url.endswith("/console/signin")
        context.close()
    assert violations == []


def test_a_forged_form_is_refused_and_a_stopped_hub_is_said_plainly(hub: HubServer, browser: Any, shots: Path) -> None:
    write, _ = _seed(hub)
    review_id = httpx.get(f"{hub.url}/v1/agents/{AGENT}/reviews", headers=auth(write)).json()[0]["review_id"]
    page = browser.new_context().new_page()
    _sign_in(page, hub, write)
    page.wait_for_selector("#fleet")
    # a form posted with a forged CSRF token (same origin, so cookies go along) is refused
    page.goto(f"{hub.url}/console/agents/{AGENT}/reviews")
    page.eval_on_selector("form:has(button.accept) input[name=csrf]", "el => el.value = 'forged'")
    page.click("button.accept")
    assert "CSRF" in page.inner_text("main")
    assert httpx.get(f"{hub.url}/v1/agents/{AGENT}/reviews", headers=auth(write)).json()[0]["review_id"] == review_id
    # the hub goes away while the fleet page is open: a clear banner, the page stays readable
    page.goto(f"{hub.url}/console/agents/{AGENT}/fleet")
    page.wait_for_selector("#fleet")
    hub.stop()
    page.wait_for_selector("#offline:not([hidden])", timeout=20_000)
    assert "not answering" in page.inner_text("#offline")
    assert page.locator('tr[data-instance="i1"]').count() == 1
    page.screenshot(path=str(shots / "console-hub-stopped.png"), full_page=True)
    hub.start()
    page.wait_for_selector("#offline[hidden]", state="attached", timeout=20_000)
    assert re.search(r"Fleet", page.inner_text("main"))


def test_an_admin_forgets_a_memory_through_the_confirm_step(hub: HubServer, browser: Any, shots: Path) -> None:
    write, _ = _seed(hub)
    _send(hub, write, "i1", [_event("i1", "memory", {"content": "Zebulon Quarkwright's phone is 415 555 0199"}, 30)])
    admin = hub.create_token(AGENT, "dpo", "admin")
    violations: list[str] = []
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    _sign_in(page, hub, admin)
    page.wait_for_selector("#fleet")
    page.click("header.top >> text=Memories")
    page.click("text=Zebulon Quarkwright's phone is 415 555 0199")
    page.click("#forget-preview")
    # the dry run: what would go, and nothing gone yet
    page.wait_for_selector("#dry-run")
    assert page.inner_text('#would-remove dd[data-count="memories"]') == "1"
    assert page.inner_text('#would-remove dd[data-count="events"]') == "1"
    page.screenshot(path=str(shots / "console-forget-confirm.png"), full_page=True)
    state = httpx.get(f"{hub.url}/v1/agents/{AGENT}/state", headers=auth(write)).json()
    assert any("Quarkwright" in m["content"] for m in state["memories"])
    page.click("#forget-confirm")
    page.wait_for_selector("#forgotten")
    assert page.inner_text('#removed dd[data-count="memories"]') == "1"
    assert "Quarkwright" not in page.inner_text("main")
    page.screenshot(path=str(shots / "console-forget-done.png"), full_page=True)
    page.click(f'main a[href="/console/agents/{AGENT}/memories"]')
    page.wait_for_selector("form.search")
    listing = page.inner_text("main")
    assert "Quarkwright" not in listing and "The user prefers green tea in the morning" in listing
    page.click("header.top >> text=Forget")
    assert page.locator("#forgets tbody tr").count() == 1
    assert "memory_ids: 1" in page.inner_text("#forgets") and "dpo" in page.inner_text("#forgets")
    page.screenshot(path=str(shots / "console-forget-audit.png"), full_page=True)
    assert violations == []
