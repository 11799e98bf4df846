"""Recall index write cost: what ``FtsIndex`` adds to each merged event, at its commit.

The SQLite hub store writes an agent's search documents in the transaction of
the state they index (``docs/recall.md``, Freshness). This script times those
writes alone, on a file opened with the store's pragmas (WAL,
``synchronous=NORMAL``, 64 MB cache, ``secure_delete=FAST``):

1. ``--sizes`` documents (default 10,000 and 100,000) are stored first through
   ``FtsIndex.upsert`` (1,000 a transaction): ~300-byte memory texts of
   Zipf-distributed words (``bench_ingest.text``, the hub ingestion benchmark's
   events);
2. each run copies that file and writes ``--requests`` transactions of
   ``--batch`` documents each, as the hub commits a request's merged memories:
   ``BEGIN IMMEDIATE``, ``upsert``, ``COMMIT``. Two cases: **new** memories
   (every event adds one; the hub ingestion benchmark's case) and
   **reinforced** memories (stored ones merged again: the same text, new
   confidence, instances and time);
3. prints, per case, the median over ``--runs`` runs of CPU µs an event
   (``time.process_time``) in ``upsert`` and in ``COMMIT`` (where FTS5 flushes
   its pending terms and merges segments), COMMIT's wall time for the whole
   run, and the bytes the file grew by an event;
4. times ``FtsIndex.lexical`` (limit 50) over the labelled set's 330 queries
   on the grown index: p50 / p99 ms, to see what a write-side change costs
   searches.

``--quick`` shrinks everything for a smoke run; ``--json PATH`` writes the
figures. Figures go in docs/benchmarks.md, "Recall", "Recall index write cost".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingest import text
from bench_recall import _workdir

from experience_sync.recall.documents import SearchDoc
from experience_sync.recall.fts import INDEX_VERSION, FtsIndex

AGENT = "bench"
DATA = Path(__file__).resolve().parent / "recall_data"
_T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the SQLite hub store's pragmas (``stores/sqlite.py``)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA secure_delete=FAST")
    return conn


def memory_doc(rng: random.Random, key: str, i: int, instances: list[str]) -> SearchDoc:
    """A merged memory's document as the hub makes it (``doc_of_memory``: no body)."""
    return SearchDoc(kind="memory", key=key, text=text(rng), confidence=0.5, tags=["bench"],
                     instances=instances, updated=(_T0 + timedelta(seconds=i)).isoformat())


def build(path: Path, n: int, seed: int) -> list[SearchDoc]:
    """A file holding ``n`` memory documents; returns them."""
    rng = random.Random(seed)
    docs = [memory_doc(rng, uuid.UUID(int=rng.getrandbits(128)).hex, i, ["inst-a"])
            for i in range(n)]
    conn = connect(path)
    index = FtsIndex(conn)
    for start in range(0, n, 1000):
        conn.execute("BEGIN IMMEDIATE")
        index.upsert(AGENT, docs[start : start + 1000])
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return docs


def _size(conn: sqlite3.Connection, path: Path) -> int:
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


def write_run(base: Path, work: Path, batches: Sequence[Sequence[SearchDoc]]) -> dict[str, float]:
    """Copy ``base`` to ``work`` and commit each batch in a transaction of its own."""
    shutil.copyfile(base, work)
    conn = connect(work)
    index = FtsIndex(conn)
    before = _size(conn, work)
    upsert_cpu = commit_cpu = commit_wall = 0.0
    events = 0
    for batch in batches:
        conn.execute("BEGIN IMMEDIATE")
        c0 = time.process_time()
        index.upsert(AGENT, batch)
        c1 = time.process_time()
        w1 = time.perf_counter()
        conn.execute("COMMIT")
        commit_wall += time.perf_counter() - w1
        commit_cpu += time.process_time() - c1
        upsert_cpu += c1 - c0
        events += len(batch)
    grown = _size(conn, work) - before
    conn.close()
    return {
        "upsert_us": upsert_cpu / events * 1e6,
        "commit_us": commit_cpu / events * 1e6,
        "total_us": (upsert_cpu + commit_cpu) / events * 1e6,
        "commit_wall_ms": commit_wall * 1000,
        "bytes_per_event": grown / events,
    }


def search_timing(path: Path, queries: Sequence[str]) -> dict[str, float]:
    """p50 / p99 ms of ``FtsIndex.lexical`` (limit 50) over ``queries``, after a warm-up pass."""
    conn = connect(path)
    index = FtsIndex(conn)
    kinds = ["memory", "knowledge", "skill"]
    for q in queries:
        index.lexical(AGENT, q, kinds, "all", 50)
    samples = []
    for q in queries:
        t0 = time.perf_counter()
        index.lexical(AGENT, q, kinds, "all", 50)
        samples.append((time.perf_counter() - t0) * 1000)
    conn.close()
    samples.sort()
    return {"p50_ms": samples[len(samples) // 2],
            "p99_ms": samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]}


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}


def measure(workdir: Path, n: int, requests: int, batch: int, runs: int) -> dict[str, Any]:
    base = workdir / f"base-{n}.db"
    t0 = time.perf_counter()
    stored = build(base, n, seed=n)
    built = time.perf_counter() - t0
    rng = random.Random(5)
    out: dict[str, Any] = {"docs": n, "build_s": round(built, 1)}
    for case in ("new", "reinforced"):
        results = []
        for run in range(runs + 1):  # the first run warms the page cache and is dropped
            if case == "new":
                batches = [[memory_doc(rng, uuid.uuid4().hex, j, ["inst-b"]) for j in range(batch)]
                           for _ in range(requests)]
            else:
                picked = rng.sample(stored, requests * batch)
                batches = [[SearchDoc(kind="memory", key=d.key, text=d.text, confidence=0.6,
                                      tags=d.tags, instances=["inst-a", "inst-b"],
                                      updated=(_T0 + timedelta(days=1, seconds=j)).isoformat())
                            for j, d in enumerate(picked[r * batch : (r + 1) * batch])]
                           for r in range(requests)]
            result = write_run(base, workdir / f"run-{n}.db", batches)
            if run:
                results.append(result)
        out[case] = median_of(results)
        m = out[case]
        print(f"  {n:>7,} stored, {case:>10}: index {m['total_us']:6.1f} µs CPU an event "
              f"(upsert {m['upsert_us']:.1f}, COMMIT {m['commit_us']:.1f}); COMMIT wall "
              f"{m['commit_wall_ms']:.0f} ms for {requests} x {batch}; "
              f"{m['bytes_per_event']:.0f} B an event", flush=True)
    queries = [json.loads(line)["q"] for line in (DATA / "queries.jsonl").open()]
    out["search"] = {k: round(v, 3) for k, v in search_timing(workdir / f"run-{n}.db", queries).items()}
    print(f"  {n:>7,} stored, lexical limit 50: p50 {out['search']['p50_ms']:.2f} ms, "
          f"p99 {out['search']['p99_ms']:.2f} ms", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="documents stored before measuring")
    parser.add_argument("--requests", type=int, default=20, help="transactions a run")
    parser.add_argument("--batch", type=int, default=100, help="documents a transaction")
    parser.add_argument("--runs", type=int, default=5, help="runs a case (median reported)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    parser.add_argument("--dir", help="work directory (default: a temporary one)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.quick:
        sizes, args.requests, args.runs = [2000], 5, 1
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}; index version "
          f"{INDEX_VERSION}; {args.requests} transactions of {args.batch} documents a run, "
          f"median of {args.runs} runs", flush=True)
    figures: dict[str, Any] = {"index_version": INDEX_VERSION, "requests": args.requests,
                               "batch": args.batch, "runs": args.runs, "sizes": {}}
    with _workdir(args.dir) as workdir:
        for n in sizes:
            figures["sizes"][n] = measure(workdir, n, args.requests, args.batch, args.runs)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
