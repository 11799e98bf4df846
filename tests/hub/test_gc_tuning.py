"""``tune_gc``: the garbage collector setting ``serve`` and ``replay`` use."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from experience_sync.cli import build_cli
from experience_sync.hub.web.server import GC_GEN0_THRESHOLD, tune_gc


@pytest.fixture
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*saved)


def test_tune_gc_raises_the_young_threshold_only(thresholds: None) -> None:
    tune_gc()
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, 10, 10)
    tune_gc(2000)  # never lowers a higher setting
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, 10, 10)
    tune_gc(0)
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, 10, 10)


def test_zero_keeps_pythons_setting(thresholds: None) -> None:
    tune_gc(0)
    assert gc.get_threshold() == (700, 10, 10)


def test_serve_rejects_a_negative_threshold() -> None:
    result = CliRunner().invoke(build_cli(), ["serve", "--gc-gen0", "-1"])
    assert result.exit_code == 2
    assert "--gc-gen0" in result.output


def test_replay_runs_with_the_tuned_collector(tmp_path: Path, thresholds: None) -> None:
    # replay is a whole-log rebuild in the CLI's own process: it tunes the collector.
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    result = CliRunner().invoke(build_cli(), ["replay", "--agent", "a", "--store", store])
    assert result.exit_code == 0, result.output
    assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD
