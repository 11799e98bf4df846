"""Cost of each similarity guard per memory (``hub/merge/similarity.py``).

Synthetic memories of 8-16 words over a vocabulary that mixes ordinary words
with the words each guard reads (quantifiers, modal words, units, dates,
antonyms, passive ``is ... by``). Reported, in microseconds per memory: the
signature (``make_signature``: what every stored and incoming memory costs
once) split into its parts, and ``contradiction`` on a pair (what each
candidate costs), each guard's share measured by running it alone.

Usage::

    python benchmarks/bench_guards.py            # 20,000 memories
    python benchmarks/bench_guards.py --n 5000
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from experience_sync.hub.merge import similarity as sim
from experience_sync.text import (
    MODAL_GROUPS,
    QUANTIFIER_GROUPS,
    UNIT_WORDS,
    antonym_words,
    are_antonyms,
    normalize,
    similarity_tokens,
)

WORDS = ["user", "team", "service", "report", "cache", "worker", "database", "release", "customer", "invoice", "build", "deploy", "dashboard", "cluster", "backup", "message", "ticket", "answer", "meeting", "office", "project", "review", "branch"]
GUARDED = ["every", "some", "always", "rarely", "must", "may", "required", "optional",
           "weeks", "months", "gb", "tb", "monday", "friday", "open", "closed", "include",
           "exclude", "is", "by", "the", "a", "we're", "it's"]


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS if rng.random() < 0.75 else GUARDED)
                     for _ in range(rng.randint(8, 16))) for _ in range(n)]


def per_item(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    items = texts(args.n)
    norms = [normalize(t) for t in items]
    antonym_words()  # load the list once, outside the timings
    token_sets = [frozenset(similarity_tokens(x)) for x in norms]
    rows = [
        ("normalize (affirmative contractions included)", per_item(lambda: [normalize(t) for t in items], args.n)),
        ("  quantifier groups", per_item(lambda: [sim._groups(s, sim._QUANTIFIER_KEYS, QUANTIFIER_GROUPS) for s in token_sets], args.n)),
        ("  modal groups", per_item(lambda: [sim._groups(s, sim._MODAL_KEYS, MODAL_GROUPS) for s in token_sets], args.n)),
        ("  unit groups", per_item(lambda: [sim._groups(s, sim._UNIT_KEYS, UNIT_WORDS) for s in token_sets], args.n)),
        ("  antonym words (set intersection)", per_item(lambda: [antonym_words() & s for s in token_sets], args.n)),
        ("  voice key (stems, cached)", per_item(lambda: [sim._voice(s) for s in token_sets], args.n)),
    ]
    sim._parse.cache_clear()
    rows.append(("make_signature, whole (uncached)", per_item(lambda: [sim.make_signature(x, t) for x, t in zip(norms, items, strict=True)], args.n)))
    sigs = [sim.make_signature(x, t) for x, t in zip(norms, items, strict=True)]
    pairs = list(zip(sigs, sigs[1:] + sigs[:1], strict=True))
    rows.append(("contradiction(a, b), per candidate pair", per_item(lambda: [sim.contradiction(a, b) for a, b in pairs], len(pairs))))
    diffs = [(a.antonymic - b.antonymic, b.antonymic - a.antonymic) for a, b in pairs]
    rows.append(("  antonym lookup alone, per pair", per_item(lambda: [any(are_antonyms(x, y) for x in p for y in q) for p, q in diffs], len(pairs))))
    print(f"bench_guards: {args.n:,} memories of 8-16 words")
    print("| part | us per memory (or pair) |\n| --- | ---: |")
    for name, us in rows:
        print(f"| {name} | {us:.2f} |")


if __name__ == "__main__":
    main()
