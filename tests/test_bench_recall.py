"""``benchmarks/bench_recall.py --quick`` runs as a user runs it and measures every leg.

Figures are not asserted (they depend on the machine); what is checked is that
each leg completes on a real engine, replica and hub, that the labelled set's
generator reproduces the committed files, and that the results are sane:
lexical queries are found by BM25, paraphrases (which share no word with
their answer) are not, and every event recorded on one instance is found on
the other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_committed_set_is_what_the_generator_makes() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "recall_data" / "make_set.py"), "--check"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_quick_run_measures_quality_speed_and_freshness(tmp_path: Path) -> None:
    out_json = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_recall.py"), "--quick", "--embedder", "none",
         "--dir", str(tmp_path / "work"), "--json", str(out_json)],
        capture_output=True, text=True, timeout=120, env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(out_json.read_text())

    rows = figures["quality"]["rows"]
    assert {"lexical (bm25)", "vector (hashing)", "hybrid (bm25+hashing)"} <= set(rows)
    lexical = rows["lexical (bm25)"]
    assert lexical["lexical"]["recall@5"] > 0.8
    assert lexical["paraphrase"]["recall@5"] == 0.0  # no word in common: BM25 cannot match
    assert figures["quality"]["cross_fact_merges"] == 0

    hub = figures["speed"]["hub"]
    replica = figures["speed"]["replica"]
    assert hub and replica
    for row in [*hub.values(), *replica.values()]:
        assert row["bare_fts5"]["n"] > 0 and row["ratio_p99"] > 0

    fresh = figures["freshness"]
    assert fresh["events"] > 0 and fresh["found"] == fresh["events"]
    assert "recall@5" in proc.stdout and "freshness:" in proc.stdout
