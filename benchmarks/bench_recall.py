"""Recall: retrieval quality, search latency and freshness of the hub's and the replica's search.

Three legs, each printing its figures (``--legs quality,speed,freshness``):

1. **quality**: the labelled set of ``benchmarks/recall_data`` (made by
   ``make_set.py``: memories, knowledge and skills recorded by four instances,
   330 queries) is ingested into a SQLite hub store through the merge engine,
   as instances' events; each configuration is a new ``MergeEngine`` on that
   store with its own ``RecallConfig`` and answers every query with
   ``engine.search(agent, SearchQuery(q, k=10, knowledge_status="all"))``.
   Prints recall@5 and MRR@10 per configuration and query category, next to
   BM25 from the ``bm25s`` library (Porter stemming, English stop words) over
   the same documents. ``--embedder minilm`` (default when the
   ``experience-sync-minilm`` plugin is installed) adds the semantic rows.
2. **speed**: search p50/p99 on the hub engine (``bm25`` only) at each of
   ``--sizes`` memories, and on an instance's replica (``manager.search``
   after a full pull from a real hub on loopback) at each of
   ``--replica-sizes``; each next to a bare FTS5 query over the same texts in
   a plain table (same tokenizer, same MATCH expression, ``ORDER BY rank
   LIMIT 50``) in the same run. Stores are built through the engine with
   ``memory_deduplication=False`` (dedup does not change what is searched;
   it makes a 1M build slow).
3. **freshness**: instance A records memories at ``--rate`` events/s
   (streaming protocol, https, default interval) to a real hub on loopback;
   a thread on instance B polls ``manager.search`` for each one; prints p50 /
   p99 of record -> retrievable from B's replica.

``--quick`` shrinks every leg for a smoke run (``tests/test_bench_recall.py``);
``--json PATH`` writes every figure. Figures go in docs/benchmarks.md, "Recall".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from experience_sync import ExperienceSyncManager, load_config
from experience_sync.api import (
    MergeStrategyConfig,
    RecallConfig,
    SearchHit,
    SearchQuery,
)
from experience_sync.hub.engine import MergeEngine, open_store
from experience_sync.hub.web.server import run_in_thread
from experience_sync.models import EventsRequest
from experience_sync.recall.documents import (
    doc_of_knowledge,
    doc_of_memory,
    doc_of_skill,
)
from experience_sync.recall.fts import match_expression

DATA = Path(__file__).resolve().parent / "recall_data"
AGENT = "support-bot"
_TOKENIZE = "porter unicode61 remove_diacritics 2"
_BASE_TIME = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) by nearest rank."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def load_set() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The committed corpus and queries."""
    def rows(name: str) -> list[dict[str, Any]]:
        with open(DATA / name) as f:
            return [json.loads(line) for line in f]
    return rows("corpus.jsonl"), rows("queries.jsonl")


def event_of(item: dict[str, Any], i: int) -> dict[str, Any]:
    """An item of the set as the event its instance records (deterministic id and time)."""
    return {
        "event_id": uuid.uuid5(uuid.NAMESPACE_URL, f"recall/{item['item_id']}").hex,
        "timestamp": (_BASE_TIME + timedelta(seconds=i)).isoformat(),
        "source_instance": item["instance"],
        "event_type": item["kind"],
        "priority": 0.7,
        "data": item["data"],
    }


def ingest(engine: MergeEngine, items: Sequence[dict[str, Any]], batch: int = 500) -> float:
    """Send ``items`` as events, each instance's in its own requests; returns seconds."""
    t0 = time.perf_counter()
    pending: dict[str, list[dict[str, Any]]] = {}
    for i, item in enumerate(items):
        events = pending.setdefault(item["instance"], [])
        events.append(event_of(item, i))
        if len(events) >= batch:
            engine.ingest_events(AGENT, EventsRequest.model_validate(
                {"instance_id": item["instance"], "events": events}))
            pending[item["instance"]] = []
    for instance, events in pending.items():
        if events:
            engine.ingest_events(AGENT, EventsRequest.model_validate(
                {"instance_id": instance, "events": events}))
    return time.perf_counter() - t0


# ---------------------------------------------------------------------- quality


class _Labels:
    """Maps a hit back to the facts it states (through its source events or its id)."""

    def __init__(self, items: Sequence[dict[str, Any]]) -> None:
        self.by_event: dict[str, str] = {}
        self.by_id: dict[str, str] = {}
        self.by_text: dict[str, str] = {}
        for i, item in enumerate(items):
            if item["fact"]:
                self.by_text[item["text"]] = item["fact"]
                self.by_event[event_of(item, i)["event_id"]] = item["fact"]
                data = item["data"]
                for key in ("knowledge_id", "skill_id"):
                    if key in data:
                        self.by_id[data[key]] = item["fact"]

    def facts(self, kind: str, item: dict[str, Any]) -> set[str]:
        if kind == "memory":
            # By its words first: a memory that dedup merged with another
            # fact's shows only one statement, and states only that fact.
            by_text = self.by_text.get(str(item.get("content")))
            if by_text is not None:
                return {by_text}
            return {self.by_event[e] for e in item.get("source_events", []) if e in self.by_event}
        ident = item.get("knowledge_id") if kind == "knowledge" else item.get("skill_id")
        fact = self.by_id.get(str(ident))
        return {fact} if fact else set()


def score(ranked: Sequence[set[str]], relevant: Sequence[str]) -> tuple[float, float]:
    """recall@5 (share of the relevant facts in the top 5) and reciprocal rank in the top 10."""
    top5: set[str] = set().union(*ranked[:5]) if ranked else set()
    recall = sum(1 for f in relevant if f in top5) / len(relevant)
    rr = 0.0
    for rank, facts in enumerate(ranked[:10], start=1):
        if facts & set(relevant):
            rr = 1.0 / rank
            break
    return recall, rr


def summarize(queries: Sequence[dict[str, Any]], per_query: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Means overall, per category and for cross-instance queries."""
    groups: dict[str, list[tuple[float, float]]] = {"all": list(per_query)}
    for q, s in zip(queries, per_query, strict=True):
        groups.setdefault(q["category"], []).append(s)
        if q["cross_instance"]:
            groups.setdefault("cross_instance", []).append(s)
    return {name: {"n": len(v), "recall@5": round(sum(r for r, _ in v) / len(v), 3),
                   "mrr@10": round(sum(m for _, m in v) / len(v), 3)} for name, v in groups.items()}


def quality_configs(embedder: str | None) -> list[tuple[str, RecallConfig]]:
    """Every configuration the quality leg measures."""
    configs = [
        ("lexical (bm25)", RecallConfig(rankers=["bm25"])),
        ("vector (hashing)", RecallConfig(rankers=["vector"], embedder="hashing")),
        ("hybrid (bm25+hashing)", RecallConfig(rankers=["bm25", "vector"], embedder="hashing")),
    ]
    if embedder:
        configs += [
            (f"vector ({embedder})", RecallConfig(rankers=["vector"], embedder=embedder)),
            (f"hybrid (bm25+{embedder})",
             RecallConfig(rankers=["bm25", "vector"], embedder=embedder)),
        ]
    return configs


def run_queries(engine: MergeEngine, queries: Sequence[dict[str, Any]], labels: _Labels) -> list[tuple[float, float]]:
    out = []
    for q in queries:
        hits = engine.search(AGENT, SearchQuery(q=q["q"], k=10, knowledge_status="all")).hits
        out.append(score([labels.facts(h.kind, h.item) for h in hits], q["relevant"]))
    return out


def bm25s_baseline(engine: MergeEngine, queries: Sequence[dict[str, Any]], labels: _Labels) -> dict[str, Any] | None:
    """BM25 of the ``bm25s`` library (Porter stemmer, English stop words) on the engine's documents."""
    try:
        import bm25s
        import Stemmer
    except ImportError:
        return None
    state = engine.state(AGENT)
    docs = ([(("memory", m.model_dump(mode="json")), doc_of_memory(m).text) for m in state.memories]
            + [(("knowledge", k.model_dump(mode="json")), doc_of_knowledge(k).text) for k in state.knowledge]
            + [(("skill", s.model_dump(mode="json")), doc_of_skill(s).text) for s in state.skills])
    stemmer = Stemmer.Stemmer("porter")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([t for _, t in docs], stopwords="en", stemmer=stemmer,
                                   show_progress=False), show_progress=False)
    per_query = []
    for q in queries:
        tokens = bm25s.tokenize([q["q"]], stopwords="en", stemmer=stemmer, show_progress=False)
        ids, scores = retriever.retrieve(tokens, k=10, show_progress=False)
        ranked = [labels.facts(*docs[int(i)][0]) for i, s in zip(ids[0], scores[0], strict=True) if s > 0]
        per_query.append(score(ranked, q["relevant"]))
    return summarize(queries, per_query)


def quality(workdir: Path, embedder: str | None, quick: bool, experiments: bool,
            dedup: bool = False) -> dict[str, Any]:
    items, queries = load_set()
    if quick:
        items, queries = _quick_subset(items, queries)
    labels = _Labels(items)
    # First with the default merge strategy, to count what its dedup merges
    # away; the ranking is then measured on a store without dedup (see below).
    url = f"sqlite:///{workdir / 'quality-dedup.db'}"
    engine = MergeEngine(open_store(url), MergeStrategyConfig(), recall=RecallConfig(rankers=["bm25"]))
    seconds = ingest(engine, items)
    state = engine.state(AGENT)
    # Memories the dedup merged across two facts: the hub keeps one statement.
    spanning = sum(1 for m in state.memories
                   if len({labels.by_event.get(e) for e in m.source_events} - {None}) > 1)
    kept = ({labels.facts("memory", m.model_dump(mode="json")).__iter__().__next__()
             for m in state.memories if labels.facts("memory", m.model_dump(mode="json"))}
            | {f for k in state.knowledge for f in labels.facts("knowledge", k.model_dump(mode="json"))}
            | {f for s in state.skills for f in labels.facts("skill", s.model_dump(mode="json"))})
    asked = {f for q in queries for f in q["relevant"]}
    lost = sorted(asked - kept)
    print(f"quality: {len(items)} items ingested in {seconds:.1f}s -> {len(state.memories)} memories, "
          f"{len(state.knowledge)} knowledge, {len(state.skills)} skills; {spanning} memories merged "
          f"two facts' statements, so {len(lost)} of the {len(asked)} facts the queries ask for are "
          f"no longer stated by any item; {len(queries)} queries")
    out: dict[str, Any] = {"items": len(items), "queries": len(queries), "memories": len(state.memories),
                           "cross_fact_merges": spanning, "asked_facts_lost_to_dedup": lost, "rows": {}}
    engine.close()
    # Jaccard dedup merges "Calls to X time out after 30 seconds" with the same
    # sentence about Y: the hub then states one of two facts, and no ranker
    # can find the other. The ranking is measured without dedup.
    strategy = MergeStrategyConfig(memory_deduplication=dedup)
    url = f"sqlite:///{workdir / 'quality.db'}"
    engine = MergeEngine(open_store(url), strategy, recall=RecallConfig(rankers=["bm25"]))
    ingest(engine, items)
    out["ranked_with_dedup"] = dedup
    out["memories_ranked"] = len(engine.state(AGENT).memories)
    print(f"ranking measured on a store with memory_deduplication={dedup} "
          f"({out['memories_ranked']} memories)")
    baseline = bm25s_baseline(engine, queries, labels)
    engine.close()
    configs = quality_configs(embedder)
    if experiments:
        configs += _experiments(embedder)
    for name, recall in configs:
        eng = MergeEngine(open_store(url), strategy, recall=recall)
        t0 = time.perf_counter()
        out["rows"][name] = summarize(queries, run_queries(eng, queries, labels))
        out["rows"][name]["seconds"] = round(time.perf_counter() - t0, 1)
        eng.close()
    if baseline is not None:
        out["rows"]["bm25s library"] = baseline
    _print_quality(out["rows"])
    return out


def _experiments(embedder: str | None) -> list[tuple[str, RecallConfig]]:
    # Settings that are not the defaults, to find ranking defects (reported, not applied).
    rows = [("exp: hybrid hashing min_similarity=0",
             RecallConfig(rankers=["bm25", "vector"], embedder="hashing", min_similarity=0.0))]
    if embedder:
        rows += [
            (f"exp: vector {embedder} min_similarity=0",
             RecallConfig(rankers=["vector"], embedder=embedder, min_similarity=0.0)),
            (f"exp: hybrid {embedder} min_similarity=0",
             RecallConfig(rankers=["bm25", "vector"], embedder=embedder, min_similarity=0.0)),
            (f"exp: hybrid {embedder} vector weight 2",
             RecallConfig(rankers=["bm25", "vector"], embedder=embedder, weights={"vector": 2.0})),
            (f"exp: hybrid {embedder} rrf_k=10",
             RecallConfig(rankers=["bm25", "vector"], embedder=embedder, rrf_k=10)),
        ]
    return rows


def _quick_subset(items: list[dict[str, Any]], queries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    # Every category, and only the items some picked query needs plus a little background.
    picked: list[dict[str, Any]] = []
    for category in ("lexical", "paraphrase", "distractor", "multi", "skill"):
        picked += [q for q in queries if q["category"] == category][:6]
    needed = {f for q in picked for f in q["relevant"]}
    subset = [i for i in items if i["fact"] in needed or i["item_id"].startswith("distractor")]
    subset += [i for i in items if not i["fact"] and not i["item_id"].startswith("distractor")][:300]
    return subset, picked


def _print_quality(rows: dict[str, Any]) -> None:
    cats = ["all", "lexical", "paraphrase", "distractor", "multi", "skill", "cross_instance"]
    print(f"{'configuration':42s} " + " ".join(f"{c[:12]:>13s}" for c in cats))
    print(f"{'':42s} " + " ".join(f"{'R@5  MRR':>13s}" for _ in cats))
    for name, row in rows.items():
        cells = [f"{row[c]['recall@5']:.3f} {row[c]['mrr@10']:.3f}" if c in row else "-" for c in cats]
        print(f"{name:42s} " + " ".join(f"{c:>13s}" for c in cells))


# ---------------------------------------------------------------------- speed


_WORDS: list[str] = []


def synthetic_items(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` memories: the set's items first, then prose-like background of 8-30 words."""
    items, _ = load_set()
    rng = random.Random(seed)
    if not _WORDS:
        vocab = sorted({w.strip(".,:;'?()").lower() for i in items for w in i["text"].split()} - {""})
        extra = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(4, 9))) for _ in range(20_000)]
        # Zipf ranks: invented words take the 200 most frequent ranks (the
        # function words of this prose, which no query asks for), then every
        # word in a seeded random order (ranking the sorted vocabulary would
        # put the set's alphabetically first words in most rows).
        rest = vocab + extra[200:]
        rng.shuffle(rest)
        _WORDS.extend(extra[:200] + rest)
    words, weights = _WORDS, [1.0 / (r + 1) for r in range(len(_WORDS))]
    out = [dict(i, kind="memory", data={"content": i["text"]}) for i in items if i["kind"] == "memory"][:n]
    instances = ["inst-a", "inst-b", "inst-c", "inst-d"]
    while len(out) < n:
        chunk = min(10_000, n - len(out))
        drawn = rng.choices(words, cum_weights=None, weights=weights, k=chunk * 18)
        for j in range(chunk):
            text = " ".join(drawn[j * 18 : j * 18 + rng.randint(8, 18)]).capitalize()
            out.append({"item_id": f"syn-{len(out)}", "fact": "", "kind": "memory",
                        "instance": instances[len(out) % 4], "text": text, "data": {"content": text}})
    return out


def bare_fts(path: Path, texts: Sequence[str]) -> sqlite3.Connection:
    """A plain FTS5 table of ``texts`` (same tokenizer as the hub's)."""
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS t USING fts5(text, tokenize='{_TOKENIZE}')")
    conn.execute("DELETE FROM t")
    conn.executemany("INSERT INTO t (text) VALUES (?)", ((t,) for t in texts))
    conn.commit()
    return conn


def time_calls(fn: Any, args: Sequence[Any], rounds: int) -> dict[str, float]:
    """p50 / p99 / mean milliseconds of ``fn(a)`` over ``args`` (one warm-up pass)."""
    for a in args[: min(20, len(args))]:
        fn(a)
    samples = []
    for _ in range(rounds):
        for a in args:
            t0 = time.perf_counter()
            fn(a)
            samples.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(percentile(samples, 50), 3), "p99_ms": round(percentile(samples, 99), 3),
            "mean_ms": round(sum(samples) / len(samples), 3), "n": len(samples)}


def _fts_query(conn: sqlite3.Connection) -> Any:
    def run(q: str) -> list[Any]:
        expression = match_expression(q)
        return conn.execute("SELECT rowid, rank FROM t WHERE t MATCH ? ORDER BY rank LIMIT 50",
                            (expression,)).fetchall()
    return run


def speed(workdir: Path, sizes: Sequence[int], replica_sizes: Sequence[int], rounds: int) -> dict[str, Any]:
    _, queries = load_set()
    qs = [q["q"] for q in queries]
    out: dict[str, Any] = {"hub": {}, "replica": {}}
    for n in sorted(set(sizes) | set(replica_sizes)):
        items = synthetic_items(n)
        url = f"sqlite:///{workdir / f'speed-{n}.db'}"
        strategy = MergeStrategyConfig(memory_deduplication=False)
        engine = MergeEngine(open_store(url), strategy, recall=RecallConfig(rankers=["bm25"]))
        build = ingest(engine, items, batch=2000)
        engine.close()
        fts = bare_fts(workdir / f"bare-{n}.db", [i["text"] for i in items])
        bare = _fts_query(fts)
        print(f"speed: {n:,} memories built through the engine in {build:.0f}s")
        if n in sizes:
            t0 = time.perf_counter()
            engine = MergeEngine(open_store(url), strategy, recall=RecallConfig(rankers=["bm25"]))
            engine.search(AGENT, SearchQuery(q="warm up", k=10))
            load = time.perf_counter() - t0
            hub = time_calls(lambda q, e=engine: e.search(AGENT, SearchQuery(q=q, k=10, knowledge_status="all")), qs, rounds)
            base = time_calls(bare, qs, rounds)
            out["hub"][n] = {"engine": hub, "bare_fts5": base, "agent_load_s": round(load, 1),
                             "ratio_p99": round(hub["p99_ms"] / base["p99_ms"], 2)}
            print(f"  hub engine bm25 k=10: p50 {hub['p50_ms']:.2f} ms, p99 {hub['p99_ms']:.2f} ms | bare FTS5: "
                  f"p50 {base['p50_ms']:.2f} ms, p99 {base['p99_ms']:.2f} ms | p99 ratio "
                  f"{out['hub'][n]['ratio_p99']}x (agent load {load:.1f}s)")
            engine.close()
        if n in replica_sizes:
            out["replica"][n] = _replica_speed(workdir, url, n, qs, bare, rounds)
        fts.close()
    return out


def _replica_speed(workdir: Path, url: str, n: int, qs: Sequence[str], bare: Any, rounds: int) -> dict[str, Any]:
    with run_in_thread(url, auth=False) as hub:
        config = load_config(environ={}, cwd=workdir, recall={"pull_interval": 0, "rankers": ["bm25"]})
        manager = ExperienceSyncManager(config, data_dir=workdir / f"instances-{n}")
        manager.initialize_sync("reader", agent_id=AGENT, endpoint=hub.url)
        try:
            t0 = time.perf_counter()
            ok = manager.refresh("reader", timeout=600)
            pull = time.perf_counter() - t0
            if not ok:
                raise RuntimeError("the replica's full pull failed")
            manager.search("reader", "warm up", k=10)
            rep = time_calls(lambda q: manager.search("reader", q, k=10, knowledge_status="all"), qs, rounds)
            base = time_calls(bare, qs, rounds)
        finally:
            manager.shutdown(timeout=5)
    row = {"manager_search": rep, "bare_fts5": base, "full_pull_s": round(pull, 1),
           "ratio_p99": round(rep["p99_ms"] / base["p99_ms"], 2)}
    print(f"  replica manager.search k=10: p50 {rep['p50_ms']:.2f} ms, p99 {rep['p99_ms']:.2f} ms | bare FTS5: "
          f"p50 {base['p50_ms']:.2f} ms, p99 {base['p99_ms']:.2f} ms (full pull {pull:.1f}s)")
    return row


# ---------------------------------------------------------------------- freshness

_NOTE_WORDS = ["".join(random.Random(i).choices("abcdefghijklmnopqrstuvwxyz", k=7)) for i in range(5000)]


def freshness(workdir: Path, rate: float, seconds: float, grace: float = 30.0) -> dict[str, Any]:
    """Record at ``rate`` events/s on A; time until each is found by B's ``manager.search``."""
    with run_in_thread(f"sqlite:///{workdir / 'fresh.db'}", auth=False) as hub:
        config = load_config(environ={}, cwd=workdir)
        interval_s = config.streaming.interval_ms / 1000
        pull_s = config.recall.pull_interval
        a = ExperienceSyncManager(config, data_dir=workdir / "fresh-a")
        b = ExperienceSyncManager(config, data_dir=workdir / "fresh-b")
        a.initialize_sync("a", agent_id=AGENT, endpoint=hub.url)
        b.initialize_sync("b", agent_id=AGENT, endpoint=hub.url)
        try:
            b.refresh("b", timeout=10)
            recorded: dict[str, float] = {}
            found: dict[str, float] = {}
            lock = threading.Lock()
            done = threading.Event()

            def poll() -> None:
                while not done.is_set() or len(found) < len(recorded):
                    with lock:
                        open_ = [m for m in recorded if m not in found]
                    for start in range(0, len(open_), 60):
                        chunk = open_[start : start + 60]
                        hits: list[SearchHit] = b.search("b", " ".join(chunk), k=100)
                        now = time.monotonic()
                        for h in hits:
                            marker = h.text.rsplit(" ", 1)[-1]
                            if marker in recorded and marker not in found:
                                found[marker] = now
                    if done.is_set() and time.monotonic() > deadline:
                        return
                    time.sleep(0.005)

            deadline = float("inf")
            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            rng = random.Random(3)
            total = int(rate * seconds)
            start = time.monotonic()
            for i in range(total):
                target = start + i / rate
                delay = target - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                marker = f"fx{uuid.uuid4().hex[:12]}"
                with lock:
                    recorded[marker] = time.monotonic()
                # Words drawn at random, so that no two notes merge as duplicates.
                words = " ".join(rng.choice(_NOTE_WORDS) for _ in range(6))
                a.record_memory("a", f"Note {i}: {words} {marker}")
            deadline = time.monotonic() + interval_s + pull_s + grace
            done.set()
            poller.join()
        finally:
            a.shutdown(timeout=10)
            b.shutdown(timeout=5)
    lat = [(found[m] - t) * 1000 for m, t in recorded.items() if m in found]
    target_ms = (interval_s + pull_s) * 1000 + 100
    row = {"events": len(recorded), "found": len(lat), "rate": rate,
           "p50_ms": round(percentile(lat, 50), 1) if lat else None,
           "p99_ms": round(percentile(lat, 99), 1) if lat else None,
           "max_ms": round(max(lat), 1) if lat else None,
           "interval_ms": interval_s * 1000, "pull_interval_s": pull_s, "target_p99_ms": target_ms}
    print(f"freshness: {row['found']}/{row['events']} events found on B; record -> retrievable p50 "
          f"{row['p50_ms']} ms, p99 {row['p99_ms']} ms, max {row['max_ms']} ms (target p99 <= "
          f"{target_ms:.0f} ms = streaming {interval_s * 1000:.0f} ms + pull {pull_s:.1f} s + 100 ms)")
    return row


# ---------------------------------------------------------------------- main


def _default_embedder() -> str | None:
    try:
        import experience_sync_minilm  # noqa: F401
    except ImportError:
        return None
    return "minilm"


@contextmanager
def _workdir(path: str | None) -> Iterator[Path]:
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-recall-") as tmp:
            yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    parser.add_argument("--legs", default="quality,speed,freshness")
    parser.add_argument("--embedder", default="auto", help="semantic embedder ('auto': minilm if installed; 'none')")
    parser.add_argument("--dedup", action="store_true", help="rank on a store merged with dedup on")
    parser.add_argument("--experiments", action="store_true", help="also run non-default ranking settings")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="hub store sizes (memories)")
    parser.add_argument("--replica-sizes", default="10000,100000")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the queries per timing")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=30.0, help="freshness recording time")
    parser.add_argument("--dir", help="work directory (default: a temporary one)")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args(argv)
    legs = set(args.legs.split(","))
    embedder = _default_embedder() if args.embedder == "auto" else (None if args.embedder == "none" else args.embedder)
    if embedder:
        # Load the embedder's plugin (the benchmark otherwise runs without entry points).
        os.environ.pop("EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD", None)
        os.environ.setdefault("EXPERIENCE_SYNC_LOAD_PLUGINS", f"experience-sync-{embedder}")
    else:
        os.environ.setdefault("EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD", "1")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    replica_sizes = [int(s) for s in args.replica_sizes.split(",") if s]
    if args.quick:
        sizes, replica_sizes, rounds = [2000], [2000], 1
        seconds, embedder = 3.0, None if args.embedder == "auto" else embedder
    else:
        rounds, seconds = args.rounds, args.seconds
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}")
    figures: dict[str, Any] = {"quick": args.quick, "cores": os.cpu_count()}
    with _workdir(args.dir) as workdir:
        if "quality" in legs:
            figures["quality"] = quality(workdir, embedder, args.quick, args.experiments, args.dedup)
        if "speed" in legs:
            figures["speed"] = speed(workdir, sizes, replica_sizes, rounds)
        if "freshness" in legs:
            figures["freshness"] = freshness(workdir, args.rate, seconds, 5.0 if args.quick else 30.0)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
