"""Regenerate ``experience_sync/data/antonyms.txt.gz`` from WordNet 3.0.

The similarity guards read two memories that differ by a pair of antonyms
("open" / "closed", "include" / "exclude", "accept" / "reject") as a
contradiction, never as duplicates (:func:`experience_sync.text.antonyms`).

Source: the Debian package of WordNet 3.0 (``apt-get install wordnet-base``),
``/usr/share/wordnet/data.adj``, ``data.adv`` and ``data.verb``. A pair is
WordNet's lexical antonym relation (pointer ``!``) between two one-word
lemmas; for adjectives also the *indirect* antonyms WordNet defines: a
satellite adjective (``similar to``, pointer ``&``) is an antonym of its head's
antonyms ("hidden", similar to "invisible", against "visible"). Nouns are left
out: a swapped noun ("son" / "daughter") names another thing, which the
guards read as a distinct memory, not a contradiction. Each verb's inflected
forms (``-s``, ``-ed``, ``-ing``, WordNet's ``verb.exc`` irregular forms) and
each adjective's are listed as the same word when SCOWL's English word list
has them. WordNet's licence is in ``data/LICENSE-WordNet.txt``.

A few pairs WordNet lacks are added by hand (:data:`CURATED`, written for
this project, not from WordNet): "approve" / "reject".

Output: one line per word, ``word lemma antonym-lemma antonym-lemma ...``
(a form of a lemma points at the lemma's antonyms).

Run: ``python core/tools/make_antonyms.py`` from the repository root.
"""

from __future__ import annotations

import gzip
from collections import defaultdict
from pathlib import Path

from experience_sync.text import is_english_word

WORDNET = Path("/usr/share/wordnet")
OUT = Path(__file__).resolve().parents[1] / "src/experience_sync/data/antonyms.txt.gz"


#: Antonym pairs WordNet 3.0 lacks, added by hand for this project.
CURATED: tuple[tuple[str, str, str], ...] = (("verb", "approve", "reject"),)


def _synsets(pos: str) -> dict[str, tuple[list[str], list[tuple[str, str, int, int]]]]:
    """offset -> (lemmas, pointers (symbol, target offset, source word, target word))."""
    out = {}
    for line in (WORDNET / f"data.{pos}").read_text("latin-1").splitlines():
        if line.startswith("  "):
            continue
        fields = line.split(" | ")[0].split()
        offset, n_words = fields[0], int(fields[3], 16)
        lemmas = [fields[4 + 2 * i].split("(")[0].lower() for i in range(n_words)]
        i = 4 + 2 * n_words
        n_ptr = int(fields[i])
        ptrs = []
        for j in range(n_ptr):
            sym, target, _pos, st = fields[i + 1 + 4 * j : i + 5 + 4 * j]
            ptrs.append((sym, target, int(st[:2], 16), int(st[2:], 16)))
        out[offset] = (lemmas, ptrs)
    return out


def _pairs(pos: str) -> set[tuple[str, str]]:
    syn = _synsets(pos)
    pairs: set[tuple[str, str]] = set()
    heads: dict[str, set[str]] = defaultdict(set)  # head offset -> its antonym lemmas
    for offset, (lemmas, ptrs) in syn.items():
        for sym, target, src, dst in ptrs:
            if sym != "!" or target not in syn:
                continue
            a = lemmas[src - 1] if src else None
            b = syn[target][0][dst - 1] if dst else None
            if a and b:
                pairs.add((a, b))
                heads[offset].add(b)
    if pos == "adj":
        for lemmas, ptrs in syn.values():
            for sym, target, _src, _dst in ptrs:
                if sym == "&" and target in heads:  # a satellite of a head with antonyms
                    for lemma in lemmas:
                        for b in heads[target]:
                            pairs.add((lemma, b))
    return {(a, b) for a, b in pairs if a.isalpha() and b.isalpha() and a != b}


def _verb_forms(lemma: str) -> set[str]:
    forms = {lemma + "s", lemma + "es", lemma + "ed", lemma + "d", lemma + "ing"}
    if lemma.endswith("e"):
        forms.add(lemma[:-1] + "ing")
    if lemma.endswith("y"):
        forms |= {lemma[:-1] + "ies", lemma[:-1] + "ied"}
    if len(lemma) >= 3 and lemma[-1] not in "aeiouwxy" and lemma[-2] in "aeiou" and lemma[-3] not in "aeiou":
        forms |= {lemma + lemma[-1] + "ed", lemma + lemma[-1] + "ing"}
    return {f for f in forms if is_english_word(f)}


def main() -> None:
    antonyms: dict[str, set[str]] = defaultdict(set)
    lemma_of: dict[str, set[str]] = defaultdict(set)
    irregular: dict[str, set[str]] = defaultdict(set)
    for line in (WORDNET / "verb.exc").read_text("latin-1").splitlines():
        form, *bases = line.split()
        for base in bases:
            irregular[base].add(form)
    for pos in ("adj", "adv", "verb"):
        pairs = _pairs(pos) | {(a, b) for p, a, b in CURATED if p == pos}
        for a, b in sorted(pairs):
            antonyms[a].add(b)
            antonyms[b].add(a)
            for lemma in (a, b):
                lemma_of[lemma].add(lemma)
                if pos == "verb":
                    for form in _verb_forms(lemma) | irregular.get(lemma, set()):
                        lemma_of[form].add(lemma)
    lines = [
        "# word lemma... : generated by core/tools/make_antonyms.py from WordNet 3.0; "
        "see LICENSE-WordNet.txt"
    ]
    for word in sorted(lemma_of):
        lines.append(" ".join([word, *sorted(lemma_of[word])]))
    lines.append("# lemma antonym...")
    for lemma in sorted(antonyms):
        lines.append("= " + " ".join([lemma, *sorted(antonyms[lemma])]))
    OUT.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), mtime=0))
    print(f"{len(antonyms)} lemmas with antonyms, {len(lemma_of)} forms -> {OUT}")


if __name__ == "__main__":
    main()
