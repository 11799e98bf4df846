"""The isolated hooks (observers and event filters) run in pluggy's order and refuse wrappers;
a hub's own observers get that hub's events only.

pluggy calls ``tryfirst`` implementations first (newest-registered first),
then plain ones (newest-registered first), then ``trylast`` ones
(oldest-registered first). experience-sync calls these two hooks one
implementation at a time (so one failure cannot stop the others), through
:func:`experience_sync.plugins.ordered_impls`; these tests hold that to what
pluggy itself does when it calls a hook.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from experience_sync.api import (
    ExperienceEvent,
    ExperienceSyncConfig,
    ExperienceSyncManager,
    MergeResult,
    ObservabilityEvent,
    PluginError,
    get_plugin_manager,
    hookimpl,
)
from experience_sync.testing import MockTransport, run_in_thread

Order = list[str]


def _observer(name: str, calls: Order, tryfirst: bool = False, trylast: bool = False) -> object:
    class Observer:
        @hookimpl(tryfirst=tryfirst, trylast=trylast)
        def experience_sync_observe(self, event: ObservabilityEvent) -> None:
            if event.type == "test.order":
                calls.append(name)

    return Observer()


def _tagger(name: str, calls: Order, tryfirst: bool = False, trylast: bool = False) -> object:
    """A filter that notes its turn and appends its name to the memory's content."""

    class Tagger:
        @hookimpl(tryfirst=tryfirst, trylast=trylast)
        def experience_sync_filter_event(self, event: ExperienceEvent) -> ExperienceEvent | None:
            calls.append(name)
            if event.event_type != "memory":
                return event
            data = event.memory.model_copy(update={"content": f"{event.memory.content} {name}"})
            return event.model_copy(update={"data": data})

    return Tagger()


# Registered in this order; the options each one carries.
PLUGINS: list[tuple[str, dict[str, bool]]] = [
    ("plain-1", {}),
    ("first-1", {"tryfirst": True}),
    ("last-1", {"trylast": True}),
    ("plain-2", {}),
    ("last-2", {"trylast": True}),
    ("first-2", {"tryfirst": True}),
    ("plain-3", {}),
]
#: What pluggy's own ordering gives for PLUGINS.
EXPECTED = ["first-2", "first-1", "plain-3", "plain-2", "plain-1", "last-1", "last-2"]


def _register_all(
    register_plugin: Callable[..., str], make: Callable[..., object], calls: Order
) -> None:
    for name, opts in PLUGINS:
        register_plugin(make(name, calls, **opts), name=name)


def test_observers_run_in_pluggys_order(register_plugin: Callable[..., str]) -> None:
    calls: Order = []
    _register_all(register_plugin, _observer, calls)
    get_plugin_manager().emit("test.order")
    assert calls == EXPECTED
    # The order pluggy itself calls the hook in.
    calls.clear()
    get_plugin_manager().hook.experience_sync_observe(event=ObservabilityEvent(type="test.order"))
    assert calls == EXPECTED


def test_a_tryfirst_observer_runs_first_and_a_trylast_one_last(
    register_plugin: Callable[..., str],
) -> None:
    calls: Order = []
    register_plugin(_observer("early", calls, tryfirst=True), name="early")
    register_plugin(_observer("plain", calls), name="plain")
    register_plugin(_observer("late", calls, trylast=True), name="late")
    register_plugin(_observer("newest", calls), name="newest")
    get_plugin_manager().emit("test.order")
    assert calls == ["early", "newest", "plain", "late"]


def test_a_failing_observer_does_not_stop_the_next(register_plugin: Callable[..., str]) -> None:
    calls: Order = []

    class Broken:
        @hookimpl(tryfirst=True)
        def experience_sync_observe(self, event: ObservabilityEvent) -> None:
            raise RuntimeError("observer bug")

    register_plugin(_observer("after", calls), name="after")
    register_plugin(Broken(), name="broken")
    get_plugin_manager().emit("test.order")
    assert calls == ["after"]


def test_filters_run_in_the_same_order(
    register_plugin: Callable[..., str], tmp_path: Path
) -> None:
    calls: Order = []
    _register_all(register_plugin, _tagger, calls)
    delivered: list[str] = []

    def handler(request: Any) -> MergeResult:
        delivered.extend(e.memory.content for e in request.payload.events)
        return MergeResult(accepted_event_ids=[e.event_id for e in request.payload.events])

    m = ExperienceSyncManager(ExperienceSyncConfig(), data_dir=tmp_path)
    m.initialize_sync("inst-1", agent_id="agent", transport=MockTransport(handler))
    try:
        kept = m.record_memory("inst-1", "seen by", importance=0.9)
        assert calls == EXPECTED
        # each filter got the previous one's output
        assert kept.memory.content == "seen by " + " ".join(EXPECTED)
        assert m.flush(timeout=10)
        assert delivered == [kept.memory.content]
    finally:
        m.shutdown(5)


def test_a_filter_that_drops_stops_the_later_ones(
    register_plugin: Callable[..., str], tmp_path: Path
) -> None:
    calls: Order = []

    class Drop:
        @hookimpl(tryfirst=True)
        def experience_sync_filter_event(self, event: ExperienceEvent) -> ExperienceEvent | None:
            calls.append("drop")
            return None

    register_plugin(_tagger("plain", calls), name="plain")
    register_plugin(Drop(), name="drop")
    m = ExperienceSyncManager(ExperienceSyncConfig(), data_dir=tmp_path)
    m.initialize_sync(
        "inst-1", agent_id="agent", transport=MockTransport(lambda r: MergeResult())
    )
    try:
        m.record_memory("inst-1", "never sent", importance=0.9)
        assert calls == ["drop"]
        assert m.status("inst-1").reasons == {"filtered:filter_hook": 1}
    finally:
        m.shutdown(5)


@pytest.mark.parametrize("hook", ["experience_sync_observe", "experience_sync_filter_event"])
@pytest.mark.parametrize("style", ["wrapper", "hookwrapper"])
def test_a_wrapper_on_an_isolated_hook_is_refused(
    hook: str, style: str, register_plugin: Callable[..., str]
) -> None:
    def wrap(**kwargs: Any) -> Iterator[None]:
        yield

    marked = hookimpl(wrapper=style == "wrapper", hookwrapper=style == "hookwrapper")(wrap)
    plugin = type("Wrapping", (), {hook: marked})()
    with pytest.raises(PluginError) as info:
        register_plugin(plugin, name="wrapping-plugin")
    message = str(info.value)
    assert "'wrapping-plugin'" in message and hook in message and "wrapper" in message
    pm = get_plugin_manager()
    assert pm.get_plugin("wrapping-plugin") is None  # not left half-registered
    assert all(i.plugin_name != "wrapping-plugin" for i in getattr(pm.hook, hook).get_hookimpls())
    pm.emit("test.order")  # still works


def test_a_wrapper_in_an_installed_plugin_names_its_distribution(
    fake_distribution: Callable[..., str], enable_plugin_autoload: Callable[..., None]
) -> None:
    fake_distribution(
        "xs-wrapping-observer",
        "wrapping",
        """
        from experience_sync.api import hookimpl

        @hookimpl(wrapper=True)
        def experience_sync_observe(event):
            return (yield)
        """,
        version="2.5",
    )
    enable_plugin_autoload("xs-wrapping-observer")
    with pytest.raises(PluginError, match=r"'wrapping'.*xs-wrapping-observer 2\.5.*wrapper"):
        get_plugin_manager()


def test_wrappers_on_other_hooks_still_work(register_plugin: Callable[..., str]) -> None:
    seen: Order = []

    class Around:
        @hookimpl(wrapper=True)
        def experience_sync_register_transports(self, register: Any) -> Iterator[None]:
            seen.append("before")
            yield
            seen.append("after")

    register_plugin(Around(), name="around")
    get_plugin_manager().hook.experience_sync_register_transports(register=lambda *a: None)
    assert seen == ["before", "after"]


# --------------------------------------------------------------------------- one hub's observers


def _observed(text: str, type_: str) -> float:
    match = re.search(
        rf'^experience_sync_observability_events_total\{{type="{re.escape(type_)}"\}} (\S+)$',
        text,
        re.MULTILINE,
    )
    return float(match.group(1)) if match else 0.0


def test_two_hubs_in_one_process_keep_their_observers_apart(
    register_plugin: Callable[..., str],
) -> None:
    plugin_saw: list[ObservabilityEvent] = []

    class Everything:
        @hookimpl
        def experience_sync_observe(self, event: ObservabilityEvent) -> None:
            if event.type == "hub.rejected":
                plugin_saw.append(event)

    register_plugin(Everything(), name="everything")
    with run_in_thread() as one, run_in_thread() as two:
        token1 = one.create_token("a1", "i1", "read")
        token2 = two.create_token("a1", "i1", "read")
        refused = httpx.post(f"{one.url}/v1/agents/a1/events", json={"instance_id": "i1"})
        assert refused.status_code == 401
        m1 = httpx.get(f"{one.url}/metrics", headers={"Authorization": f"Bearer {token1}"})
        m2 = httpx.get(f"{two.url}/metrics", headers={"Authorization": f"Bearer {token2}"})
        assert m1.status_code == m2.status_code == 200
        assert _observed(m1.text, "hub.rejected") == 1.0
        assert _observed(m2.text, "hub.rejected") == 0.0
        # a refusal on hub 2 counts there only
        assert httpx.get(f"{two.url}/v1/agents/a1/state").status_code == 401
        m1 = httpx.get(f"{one.url}/metrics", headers={"Authorization": f"Bearer {token1}"})
        m2 = httpx.get(f"{two.url}/metrics", headers={"Authorization": f"Bearer {token2}"})
        assert _observed(m1.text, "hub.rejected") == 1.0
        assert _observed(m2.text, "hub.rejected") == 1.0
    # a third-party observer plugin still sees every hub's events
    assert len(plugin_saw) == 2
