"""The adapter examples run offline as their docstrings say, and print what was learned."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, home: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPERIENCE_SYNC_")}
    env.update(HOME=str(home), EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD="1",
               CREWAI_DISABLE_TELEMETRY="true", OTEL_SDK_DISABLED="true",
               CREWAI_TRACING_ENABLED="false")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], cwd=home, env=env,
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_crewai_example(tmp_path: Path) -> None:
    out = run_example("crewai_example.py", tmp_path)
    assert "crew answered: Trains from Paris to Lyon" in out
    assert "web_search     invocations=1   success_rate=1.00 proficiency=1.00" in out
    # CrewAI tried the failing call three times: one failed use
    assert "timetable_api  invocations=1   success_rate=0.00" in out
    assert "Lyon is two hours from Paris by TGV." in out


@pytest.mark.slow
def test_two_frameworks_example_feeds_one_source_agent(tmp_path: Path) -> None:
    out = run_example("two_frameworks.py", tmp_path)
    assert ("web_search was learned from 2 instances (crewai-trip-1, langchain-travel-1), "
            "2 invocations in all.") in out
    assert "(integrated, 2 instance(s)) Lyon is two hours from Paris by TGV." in out
