"""Where the CrewAI tests run CrewAI: a temporary HOME, no telemetry, no tracing.

CrewAI writes under ``$HOME`` and names its kickoff database after the
working directory; each test module imports CrewAI inside this sandbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def crewai_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh HOME (also the working directory) with CrewAI's telemetry and tracing off."""
    home = tmp_path_factory.mktemp("crewai-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("CREWAI_DISABLE_TELEMETRY", "true")
        mp.setenv("OTEL_SDK_DISABLED", "true")
        mp.setenv("CREWAI_TRACING_ENABLED", "false")
        mp.chdir(home)  # the kickoff database is named after the working directory
        yield home
