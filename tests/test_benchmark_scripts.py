"""The benchmark scripts run as a user runs them (tiny sizes) and print their figures.

Figures are not asserted (they depend on the machine); what is checked is that
each script completes, measures what ``docs/benchmarks.md`` says it measures,
and that its results are sane (everything sent was merged, recall is perfect
on planted duplicates).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True, text=True, timeout=240, env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_bench_ingest_measures_every_leg(tmp_path: Path) -> None:
    out = _run("bench_ingest.py", "--preload", "300", "--requests", "3", "--clients", "2",
               "--batch", "20", "--window", "2", "--engine-rounds", "1", "--null-engine",
               "--dir", str(tmp_path))
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert figures["raw_rows_per_s"] > 0
    assert figures["engine"]["best"] > 0
    for leg in ("http", "ws", "http_null_engine", "ws_null_engine"):
        assert figures[leg]["events"] == 2 * 3 * 20
        assert figures[leg]["merged"] == 2 * 3 * 20, leg  # every new memory merged
        assert figures[leg]["hub_cpu_us_per_event"] > 0
    assert "ratio to raw sqlite" in out


def test_bench_dedup_reports_recall_on_planted_duplicates(tmp_path: Path) -> None:
    rows = tmp_path / "rows.json"
    out = _run("bench_dedup.py", "--sizes", "2000", "--incoming", "200",
               "--indexes", "numpy,faiss-flat", "--exact-sample", "100", "--json", str(rows))
    assert "peak RSS" in out
    data = json.loads(rows.read_text())
    by_index = {(r["kind"], r["index"]): r for r in data}
    assert set(by_index) == {("embedding", "numpy"), ("embedding", "faiss-flat"),
                             ("lexical", "jaccard")}
    assert by_index[("lexical", "jaccard")]["recall"] == 1.0
    assert by_index[("embedding", "faiss-flat")]["recall"] == 1.0


def test_bench_semantic_pairs_runs_the_default_configuration_without_a_model(
    tmp_path: Path,
) -> None:
    rows = tmp_path / "rows.json"
    out = _run("bench_semantic_pairs.py", "--jaccard-only", "--json", str(rows))
    data = json.loads(rows.read_text())
    assert list(data["columns"]) == ["jaccard (default)"]
    assert data["pairs"] == sum(data["columns"]["jaccard (default)"]["right"].values()) + \
        data["columns"]["jaccard (default)"]["errors"]
    assert data["columns"]["jaccard (default)"]["guarded_merged"] == 0
    assert "| held-out | paraphrase | merge |" in out


def test_bench_semantic_pairs_with_a_local_model(tmp_path: Path) -> None:
    """Runs only where a sentence-transformers model is installed (not in CI)."""
    rows = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_semantic_pairs.py"), "--thresholds", "0.85",
         "--json", str(rows)],
        capture_output=True, text=True, timeout=240, env=dict(os.environ),
    )
    if proc.returncode == 3:
        pytest.skip(proc.stderr.strip().splitlines()[0])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    column = json.loads(rows.read_text())["columns"]["embedding 0.85"]
    assert column["guarded_merged"] == 0  # no negation, number, name or place merged
    assert column["right"]["labelled/paraphrase"] + column["right"]["held-out/paraphrase"] > 0


def test_bench_maintenance_runs_every_step() -> None:
    """Compaction, replay from the snapshot, export, import and backup, at 400 events."""
    out = _run("bench_maintenance.py", "--events", "400")
    for step in ("compact", "replay in place", "export", "import", "online backup"):
        assert step in out
    assert "entries replaced by the snapshot" in out and " 400" in out


def test_bench_forget_removes_the_name_from_the_file(tmp_path: Path) -> None:
    out = _run("bench_forget.py", "--events", "400", "--dir", str(tmp_path))
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert figures["forgotten"] == 4 and figures["dry_run_matches"]
    assert figures["name_in_file"] is False and figures["forget_s"] > 0


def test_bench_restart_times_the_first_answers_of_a_restarted_serve(tmp_path: Path) -> None:
    store = tmp_path / "hub.db"
    out = _run("bench_restart.py", "--store", str(store), "--build", "300", "--runs", "1")
    assert "built" in out and "300 memories of agent 'bench'" in out
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert set(figures) == {"search", "state", "write"}
    for (run,) in figures.values():
        assert 0 < run["first_s"] <= run["loaded_s"]
        assert run["rss_kb"] > 0


def test_bench_client_latency_rows_against_a_stored_agent(tmp_path: Path) -> None:
    store = tmp_path / "hub.db"
    _run("bench_restart.py", "--store", str(store), "--build", "200", "--runs", "1",
         "--kinds", "write")
    out = _run("bench_client.py", "--quick", "--latency-only", "--intervals", "100:10000",
               "--hub-store", str(store))
    assert f"hub serving a copy of {store}" in out
    rows = [line for line in out.splitlines() if "interval_ms=100" in line]
    assert len(rows) == 2  # https and websocket
    for row in rows:
        assert "3000/3000 delivered" in row, row


def test_bench_recall_write_times_new_and_reinforced_documents(tmp_path: Path) -> None:
    out = _run("bench_recall_write.py", "--quick", "--dir", str(tmp_path))
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    (size,) = figures["sizes"].values()
    for case in ("new", "reinforced"):
        assert size[case]["total_us"] > 0
    # A memory reinforced with the text it has adds nothing to the index.
    assert size["reinforced"]["bytes_per_event"] == 0
