"""Importing the client is cheap: the heavy parts load when they are first used.

``import experience_sync`` and the imports of README's client example
(``from experience_sync import ExperienceSyncManager, load_config`` and
``from experience_sync.api import render_hits``) load none of numpy, the
pydantic event models, the outbox and worker, the plugin manager (pluggy),
httpx, websockets, croniter, click or the hub. Creating a manager and
recording against a temporary outbox still works, and only then are they
loaded. Each check runs in a fresh interpreter, since this test process has
imported everything already. No timing is asserted (``docs/benchmarks.md``,
"Client install", has the figures).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import experience_sync
import experience_sync.api as api

#: What neither ``import experience_sync`` nor README's client imports may load.
DEFERRED = (
    "numpy", "httpx", "websockets", "croniter", "click", "pluggy", "orjson", "asyncio",
    "sqlite3", "fastapi", "starlette", "uvicorn",
    "experience_sync.models", "experience_sync.interfaces", "experience_sync.plugins",
    "experience_sync.client.instance", "experience_sync.client.outbox",
    "experience_sync.client.worker", "experience_sync.recall.replica",
    "experience_sync.recall.ranking", "experience_sync.builtin", "experience_sync.hub",
)
#: Only the package and its errors: not even pydantic (the configuration's).
BARE_DEFERRED = (*DEFERRED, "pydantic", "experience_sync.config", "experience_sync.client")

README_IMPORTS = """
from experience_sync import ExperienceSyncManager, load_config
from experience_sync.api import render_hits
"""


def _run(code: str, cwd: Path) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    env = {**os.environ, "EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("EXPERIENCE_SYNC_CONFIG", None)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _loaded(modules: object, names: tuple[str, ...]) -> list[str]:
    assert isinstance(modules, list)
    return [name for name in names if name in modules]


def test_import_experience_sync_loads_nothing_heavy(tmp_path: Path) -> None:
    out = _run("""
        import json, sys
        import experience_sync
        print(json.dumps({"modules": sorted(sys.modules)}))
    """, tmp_path)
    assert _loaded(out["modules"], BARE_DEFERRED) == []


def test_readme_client_imports_defer_the_heavy_parts_until_a_manager_records(
    tmp_path: Path,
) -> None:
    out = _run(README_IMPORTS + f"""
import json, sys
before = sorted(sys.modules)

from experience_sync import MockTransport, MergeResult

manager = ExperienceSyncManager(load_config(), data_dir={str(tmp_path / "outboxes")!r})
sent = []

def handler(request):
    sent.append(request)
    return MergeResult(events_received=request.event_count)

manager.initialize_sync("inst-1", "streaming", agent_id="agent",
                        transport=MockTransport(handler))
event = manager.record_memory("inst-1", "The user prefers short answers", importance=0.8)
manager.record_knowledge("inst-1", "Refunds take 5 days", subject="refund delay")
flushed = manager.flush(timeout=30)
hits = manager.search("inst-1", "short answers", k=3)
manager.shutdown(timeout=10)
print(json.dumps({{
    "before": before, "after": sorted(sys.modules), "flushed": flushed,
    "sent": sum(r.event_count for r in sent), "sequence": event.sequence,
    "rendered": render_hits(hits),
}}))
""", tmp_path)
    assert _loaded(out["before"], DEFERRED) == []
    assert out["flushed"] is True and out["sent"] == 2 and out["sequence"] == 1
    assert "short answers" in str(out["rendered"])
    # Using the manager loaded what it needs; the hub's service and web layer
    # stay out of an instance (the built-in plugins use hub.merge's pure parts).
    used = ("numpy", "pluggy", "orjson", "sqlite3", "experience_sync.models",
            "experience_sync.plugins", "experience_sync.client.outbox",
            "experience_sync.client.worker", "experience_sync.recall.replica")
    assert _loaded(out["after"], used) == list(used)
    hub = ("fastapi", "starlette", "experience_sync.hub.service", "experience_sync.hub.web")
    assert _loaded(out["after"], hub) == []


def test_the_lazy_names_are_the_defining_modules_objects() -> None:
    from experience_sync import api as api_module
    from experience_sync.client import manager as manager_module
    from experience_sync.recall import render as render_module

    for name in experience_sync.__all__:
        assert getattr(experience_sync, name) is not None, name
    for name in api.__all__:
        if name not in {"AuthError", "HubError", "IngestMeta", "Principal"}:
            getattr(api_module, name)
    assert experience_sync.ExperienceSyncManager is manager_module.ExperienceSyncManager
    assert api.ExperienceSyncManager is manager_module.ExperienceSyncManager
    assert api.render_hits is render_module.render_hits
    assert set(experience_sync.__all__) <= set(dir(experience_sync))
    assert set(api.__all__) <= set(dir(api))
    # the submodules an eager import used to leave on the package
    assert experience_sync.models.ExperienceEvent is experience_sync.ExperienceEvent


def test_star_import_and_the_numpy_aliases(tmp_path: Path) -> None:
    out = _run("""
        import json, sys
        from experience_sync import *
        from experience_sync.api import *
        numpy_before = "numpy" in sys.modules
        import numpy, numpy.typing
        from experience_sync.interfaces import FloatArray, MatchQuery
        print(json.dumps({
            "numpy_before": numpy_before,
            "float_array": FloatArray == numpy.typing.NDArray[numpy.float32],
            "match_query": MatchQuery == tuple[str, FloatArray | None, str | None],
            "manager": ExperienceSyncManager.__name__,
        }))
    """, tmp_path)
    # ``from experience_sync.api import *`` loads everything but the hub names,
    # FloatArray (numpy) among them.
    assert out["numpy_before"] is True
    assert out["float_array"] is True and out["match_query"] is True
    assert out["manager"] == "ExperienceSyncManager"
