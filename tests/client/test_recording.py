"""The helpers the framework adapters share (experience_sync.client.recording)."""

from __future__ import annotations

from typing import Any

from experience_sync.client.recording import SuccessRates, clip, fit_kwargs


def test_clip_strips_and_marks_a_cut() -> None:
    assert clip("  short  ", 10) == "short"
    assert clip("abcdefghij", 10) == "abcdefghij"
    assert clip("abcd efghijk", 6) == "abcd\u2026"
    assert clip("abc", 0) == "\u2026"


class _Manager:
    def record_skill_use(self, instance_id: str, name: str, *, success: bool = True) -> None:
        pass

    def record_interaction(self, instance_id: str, *, summary: str, **extra: Any) -> None:
        pass


def test_fit_kwargs_keeps_only_what_the_method_takes() -> None:
    manager = _Manager()
    options = {"success": False, "priority": 0.7, "context": "x"}
    assert fit_kwargs(manager.record_skill_use, options) == {"success": False}
    # **extra takes anything but the options that must not become fields.
    wide = {"summary": "s", "priority": 0.5, "context": "c", "tool_calls": 2}
    assert fit_kwargs(manager.record_interaction, wide) == {"summary": "s", "tool_calls": 2}
    # A callable whose signature cannot be read gets everything.
    assert fit_kwargs(max, {"priority": 1}) == {"priority": 1}


def test_success_rates_per_instance_and_skill_ignoring_case() -> None:
    rates = SuccessRates()
    assert rates.observe("a", "Search", True) == 1.0
    assert rates.observe("a", "search", False) == 0.5
    assert rates.observe("b", "search", False) == 0.0
    assert rates.observe("a", "SEARCH", True) == 2 / 3
