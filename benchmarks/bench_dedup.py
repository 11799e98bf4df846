"""Memory dedup throughput: embedding (numpy exact vs FAISS exact vs FAISS
approximate) and lexical (jaccard), at 10k, 100k and 1M stored memories.

Embedding: 384-d unit vectors around cluster centres (memories of an agent
cluster by topic). Of the incoming memories, half are near-duplicates of a
stored one (cosine 0.95 to it) and half are new (from the same clusters, far
below the threshold of 0.9 to anything stored). Each index is loaded with the
stored vectors in one call (as the hub does at start), then the incoming
memories are deduplicated search-then-add in query batches of 100: a batch is
searched, its memories at or above the threshold count as duplicates, the
others are added. Reported: memories/s over the incoming set, load (build)
time, the process's resident memory growth while the index was loaded and used,
and near-duplicate recall: the share of the memories exact search flags as
duplicates that the index flags too.

At 1M, exact numpy search runs on a sample of the incoming memories (``--exact-
sample``, default 1,000) because a full run takes tens of minutes; its
throughput is measured on that sample and its duplicate flags there are
checked against the planted labels, which stand in for exact search on the
rest. The table says so.

Lexical: synthetic texts of 8-16 words; near-duplicates are the stored text
with its words reordered or one word dropped (Jaccard >= 0.9), new ones are
fresh texts over the same vocabulary.

Usage::

    python benchmarks/bench_dedup.py                   # 10k, 100k, 1M (several minutes)
    python benchmarks/bench_dedup.py --quick           # 10k and 100k, 2,000 incoming
    python benchmarks/bench_dedup.py --sizes 100000 --indexes numpy,faiss --no-lexical
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from experience_sync.hub.merge.similarity import JaccardSimilarity
from experience_sync.interfaces import VectorIndex
from experience_sync.text import normalize
from experience_sync.vectors import NumpyIndex

DIM = 384
THRESHOLD = 0.9
NEAR_COS = 0.95


def rss_mb() -> float:
    """Current resident set size of this process, in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- data


def make_vectors(stored: int, incoming: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(stored, incoming, planted)``: planted[i] is the stored row incoming i duplicates, or -1."""
    rng = np.random.default_rng(seed)
    clusters = max(100, int(2 * np.sqrt(stored)))
    centres = rng.standard_normal((clusters, DIM), dtype=np.float32)

    def around(n: int) -> np.ndarray:
        out = np.empty((n, DIM), dtype=np.float32)
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            block = centres[rng.integers(0, clusters, m)]
            block += 0.8 * rng.standard_normal((m, DIM), dtype=np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            out[start : start + m] = block
        return out

    base = around(stored)
    new = around(incoming)
    planted = np.full(incoming, -1, dtype=np.int64)
    dup_rows = rng.permutation(incoming)[: incoming // 2]
    sources = rng.choice(stored, size=len(dup_rows), replace=False)
    src = base[sources]
    noise = rng.standard_normal(src.shape, dtype=np.float32)
    noise -= (noise * src).sum(axis=1, keepdims=True) * src
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    new[dup_rows] = NEAR_COS * src + np.sqrt(1 - NEAR_COS**2) * noise
    planted[dup_rows] = sources
    return base, new, planted


# --------------------------------------------------------------------------- embedding runs


@dataclass
class Row:
    kind: str
    index: str
    stored: int
    incoming: int
    per_second: float
    build_seconds: float
    memory_mb: float
    recall: float | None
    note: str = ""


def index_factories() -> dict[str, Callable[[int], VectorIndex]]:
    factories: dict[str, Callable[[int], VectorIndex]] = {"numpy": NumpyIndex}
    try:
        from experience_sync_faiss import (
            FaissAutoIndex,
            FaissFlatIndex,
            FaissHNSWIndex,
            FaissIVFIndex,
        )
    except ImportError:  # the plugin is optional
        print("experience-sync-faiss is not installed: numpy only", file=sys.stderr)
        return factories
    factories.update(
        {
            "faiss-flat": FaissFlatIndex,
            "faiss-ivf": FaissIVFIndex,
            "faiss-hnsw": FaissHNSWIndex,
            "faiss": FaissAutoIndex,
        }
    )
    return factories


def run_embedding(
    name: str,
    factory: Callable[[int], VectorIndex],
    base: np.ndarray,
    queries: np.ndarray,
    batch: int,
) -> tuple[np.ndarray, float, float, float]:
    """Load, then search-then-add; returns (duplicate flags, seconds, build seconds, MB)."""
    gc.collect()
    before = rss_mb()
    t0 = time.perf_counter()
    index = factory(DIM)
    index.add(np.arange(len(base)), base)
    build = time.perf_counter() - t0
    flags = np.zeros(len(queries), dtype=bool)
    next_id = len(base)
    t0 = time.perf_counter()
    for start in range(0, len(queries), batch):
        q = queries[start : start + batch]
        scores, _ = index.search(q, 1)
        dup = scores[:, 0] >= THRESHOLD
        flags[start : start + batch] = dup
        fresh = q[~dup]
        if len(fresh):
            index.add(np.arange(next_id, next_id + len(fresh)), fresh)
            next_id += len(fresh)
    seconds = time.perf_counter() - t0
    memory = rss_mb() - before
    del index
    gc.collect()
    return flags, seconds, build, memory


def bench_embedding(
    sizes: list[int], incoming: int, batch: int, names: list[str], exact_sample: int,
    full_exact_max: int,
) -> list[Row]:
    factories = index_factories()
    try:
        from experience_sync_faiss.indexes import AUTO_TRAIN_AT as auto_train_at
    except ImportError:
        auto_train_at = 0
    rows: list[Row] = []
    for n in sizes:
        base, queries, planted = make_vectors(n, incoming)
        truth = planted >= 0
        exact_flags: np.ndarray | None = None
        for name in names:
            if name not in factories:
                continue
            if name == "faiss-ivf" and "faiss" in names and n >= auto_train_at:
                print(f"  faiss-ivf at {n:,} is the same index as faiss: skipped", file=sys.stderr)
                continue
            if name == "faiss-hnsw" and n > 200_000:
                print(f"  skipping {name} at {n:,} (build too slow for this run)", file=sys.stderr)
                continue
            q = queries
            note = ""
            if name == "numpy" and n > full_exact_max:
                q = queries[:exact_sample]
                note = f"exact on a sample of {exact_sample:,} incoming"
            flags, seconds, build, memory = run_embedding(name, factories[name], base, q, batch)
            if name == "numpy":
                agree = float(np.mean(flags == truth[: len(q)]))
                note = (note + "; " if note else "") + f"agrees with planted labels {agree:.4f}"
                exact_flags = flags if len(q) == len(queries) else None
                recall = None
            else:
                reference = exact_flags if exact_flags is not None else truth
                recall = float(np.sum(flags & reference) / max(1, np.sum(reference)))
                if exact_flags is None:
                    note = "recall vs planted near-duplicates (exact flags them all on its sample)"
            row = Row("embedding", name, n, len(q), len(q) / seconds, build, memory, recall, note)
            rows.append(row)
            print(
                f"  embedding {name:10s} stored={n:>9,} {row.per_second:>10,.0f} mem/s "
                f"build {build:6.1f}s  mem {memory:7.0f} MB  recall "
                f"{'-' if recall is None else f'{recall:.4f}'}  {note}",
                flush=True,
            )
        del base, queries
        gc.collect()
    return rows


# --------------------------------------------------------------------------- lexical runs


def _word(i: int) -> str:
    letters = "bcdfghjklmnprstvz"
    out = "q"
    while True:
        out += letters[i % len(letters)] + "aeiou"[(i // len(letters)) % 5]
        i //= len(letters) * 5
        if i == 0:
            return out


def make_texts(stored: int, incoming: int, seed: int = 0) -> tuple[list[str], list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    vocab = [_word(i) for i in range(50_000)]
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 0.9  # Zipf-like word frequencies
    weights /= weights.sum()

    def texts(n: int) -> list[str]:
        lengths = rng.integers(8, 17, n)
        words = rng.choice(len(vocab), size=int(lengths.sum()), p=weights)
        out, pos = [], 0
        for length in lengths:
            out.append(" ".join(vocab[w] for w in words[pos : pos + length]))
            pos += length
        return out

    base = texts(stored)
    new = texts(incoming)
    planted = np.full(incoming, -1, dtype=np.int64)
    for row in rng.permutation(incoming)[: incoming // 2]:
        source = int(rng.integers(0, stored))
        words = base[source].split()
        if rng.random() < 0.5 and len(set(words)) >= 10:
            words.pop(int(rng.integers(0, len(words))))
        rng.shuffle(words)
        new[row] = " ".join(words)
        planted[row] = source
    return base, new, planted


def bench_lexical(sizes: list[int], incoming: int) -> list[Row]:
    rows = []
    for n in sizes:
        base, queries, planted = make_texts(n, incoming)
        gc.collect()
        before = rss_mb()
        t0 = time.perf_counter()
        sim = JaccardSimilarity()
        for i, text in enumerate(base):
            sim.add(str(i), normalize(text), None, text)
        build = time.perf_counter() - t0
        flags = np.zeros(len(queries), dtype=bool)
        t0 = time.perf_counter()
        for i, text in enumerate(queries):
            norm = normalize(text)
            found = sim.match(norm, None, text)
            if found is not None and found.is_duplicate:
                flags[i] = True
            else:
                sim.add(f"new{i}", norm, None, text)
        seconds = time.perf_counter() - t0
        memory = rss_mb() - before
        truth = planted >= 0
        recall = float(np.sum(flags & truth) / max(1, truth.sum()))
        false = int(np.sum(flags & ~truth))
        row = Row(
            "lexical", "jaccard", n, len(queries), len(queries) / seconds, build, memory, recall,
            f"recall vs planted near-duplicates; {false} new ones flagged",
        )
        rows.append(row)
        print(
            f"  lexical   jaccard    stored={n:>9,} {row.per_second:>10,.0f} mem/s "
            f"build {build:6.1f}s  mem {memory:7.0f} MB  recall {recall:.4f}  {row.note}",
            flush=True,
        )
        del sim, base, queries
        gc.collect()
    return rows


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="stored sizes, comma-separated")
    parser.add_argument("--incoming", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100, help="query batch size")
    parser.add_argument("--indexes", default="numpy,faiss-flat,faiss-ivf,faiss-hnsw,faiss")
    parser.add_argument("--exact-sample", type=int, default=1_000)
    parser.add_argument(
        "--full-exact-max", type=int, default=100_000,
        help="largest size at which numpy exact runs on every incoming memory",
    )
    parser.add_argument("--no-lexical", action="store_true")
    parser.add_argument("--no-embedding", action="store_true")
    parser.add_argument("--quick", action="store_true", help="10k and 100k, 2,000 incoming")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    incoming = args.incoming
    if args.quick:
        sizes, incoming = [s for s in sizes if s <= 100_000] or [10_000], min(incoming, 2_000)
    print(
        f"bench_dedup: sizes {sizes}, {incoming:,} incoming, batches of {args.batch}, "
        f"threshold {THRESHOLD}, near-duplicates at cosine {NEAR_COS}",
        flush=True,
    )
    rows: list[Row] = []
    if not args.no_embedding:
        names = [n.strip() for n in args.indexes.split(",") if n.strip()]
        rows += bench_embedding(
            sizes, incoming, args.batch, names, args.exact_sample, args.full_exact_max
        )
    if not args.no_lexical:
        rows += bench_lexical(sizes, incoming)
    print()
    print("| kind | index | stored | incoming | memories/s | x numpy | build s | memory MB | recall | note |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    exact = {r.stored: r.per_second for r in rows if r.index == "numpy"}
    for r in rows:
        ratio = f"{r.per_second / exact[r.stored]:.1f}" if r.kind == "embedding" and r.stored in exact else ""
        recall = "" if r.recall is None else f"{r.recall:.4f}"
        print(
            f"| {r.kind} | {r.index} | {r.stored:,} | {r.incoming:,} | {r.per_second:,.0f} | {ratio} "
            f"| {r.build_seconds:.1f} | {r.memory_mb:.0f} | {recall} | {r.note} |"
        )
    print(f"\npeak RSS of the run: {peak_rss_mb():,.0f} MB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([asdict(r) for r in rows], fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
