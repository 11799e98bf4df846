"""Built-in memory similarity methods: ``jaccard`` (lexical) and ``embedding``.

Both share the same guards: two memories whose token difference holds a
negation, a number or a name are never duplicates, however similar they are;
they are reported as a contradiction (:class:`SimilarityMatch` with a
``contradiction`` reason) so that the hub handles them as a conflict.

``jaccard`` compares sets of normalized tokens (contractions expanded,
articles dropped). It finds candidates through an inverted token index with
prefix filtering: a stored memory whose Jaccard similarity with a query of
``n`` tokens reaches ``t`` must contain at least ``ceil(t*n)`` of the query's
tokens, so probing the ``n - ceil(t*n) + 1`` rarest query tokens finds every
such memory; candidates are then verified exactly. Unlike MinHash LSH this
never misses a match and needs no tuning.

``embedding`` compares stored vectors by cosine through the configured
:class:`~experience_sync.interfaces.VectorIndex`; vectors are stored once and
never recomputed. It searches the top ``k`` and applies the guards in score
order, so the best unguarded match at or above the threshold wins. A stored
memory with exactly the same tokens is a duplicate whatever the vectors say
(models embed the raw text, where case or Unicode form can move a vector far).

The guards: a different number of negation words (``not``, ``never``, ``no``,
... after ``don't`` is read as ``do not``; ``dislikes`` against ``likes``
counts as one, see :func:`_prefix_negations`); a number token (digits, or a number
word; ``am`` / ``pm`` right after a number counts as part of it) on one side
only; a code (letters and digits written together, ``t3.large``, see
:func:`experience_sync.text.code_keys`) on each side that the other lacks,
unless both sides have the same tokens; a name on each side that the other
lacks, or the only word that differs on either side (or that word is not in
:func:`experience_sync.text.is_english_word`'s list; a name is a capitalized word
where the sentence does not force a capital, see
:func:`experience_sync.text.name_tokens`, or a word of
:data:`experience_sync.text.PROPER_NOUNS` in any case).
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
import zlib
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import compress, repeat
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from experience_sync.interfaces import (
    Embedder,
    FloatArray,
    MatchQuery,
    SimilarityMatch,
    SimilarityMethod,
    VectorIndex,
)
from experience_sync.models import MergeOutcome
from experience_sync.text import (
    DATE_WORDS,
    MODAL_GROUPS,
    NEGATIONS,
    NUMBER_WORDS,
    PROPER_NOUNS,
    QUANTIFIER_GROUPS,
    SHORT_UNITS,
    UNIT_WORDS,
    antonym_words,
    are_antonyms,
    code_keys,
    is_english_word,
    is_number_token,
    lowercase_words,
    name_parts,
    negation_count,
    resolve_initial_names,
    similarity_tokens,
)

#: Default ``jaccard`` threshold, measured on ``tests/data/dedup_pairs.jsonl``
#: (see ``docs/benchmarks.md``): the lowest that keeps apart every pair of
#: distinct facts the guards do not catch (one ordinary word swapped scores
#: up to 0.75), at the cost of some minor edits staying separate.
DEFAULT_JACCARD_THRESHOLD = 0.8
#: Default ``embedding`` threshold (cosine), measured with all-MiniLM-L6-v2 on
#: ``tests/data/dedup_pairs.jsonl``: 0.80 and 0.85 tie on errors (5 of 129
#: pairs, the guards catching every negation, number, name and place); 0.80
#: merges more paraphrases (6 of 8), 0.90 only 1.
DEFAULT_EMBEDDING_THRESHOLD = 0.8

_EMPTY: frozenset[str] = frozenset()
_NO_POSTINGS: array[int] = array("q")
# Articles say nothing about which fact a memory states.
_IGNORED = frozenset({"a", "an", "the"})


@dataclass(frozen=True, slots=True)
class Signature:
    """What the guards and ``jaccard`` need to know about one memory's text.

    ``words`` is the sorted tuple of distinct tokens: a store keeps one
    signature per memory, and a tuple takes a fifth of a frozenset's memory.
    """

    words: tuple[str, ...]
    negations: int
    names: frozenset[str]
    numbers: frozenset[str] = frozenset()
    codes: frozenset[str] = frozenset()  # text.code_keys
    # Words that may negate another by a prefix ("dislikes"), with the roots
    # they would negate ("likes", "like").
    prefixed: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # The groups of the text's quantifiers, modal words, units and dates
    # (text.QUANTIFIER_GROUPS, MODAL_GROUPS, UNIT_WORDS, DATE_WORDS).
    quantifiers: frozenset[str] = frozenset()
    modals: frozenset[str] = frozenset()
    units: frozenset[str] = frozenset()
    dates: frozenset[str] = frozenset()
    # Content words, stemmed, as one key: the same in the active and the
    # passive voice ("the worker restarts the cache" / "the cache is
    # restarted by the worker"); 0 when the text has fewer than 3.
    voice: int = 0
    passive: bool = False
    # Words of the WordNet antonym list (text.antonym_words).
    antonymic: frozenset[str] = frozenset()

    @property
    def tokens(self) -> frozenset[str]:
        """The distinct tokens, as a set."""
        return frozenset(self.words)


@dataclass(slots=True)
class _Parsed:
    """What a memory's text tells, before the index's vocabulary is known."""

    # The signature when no sentence-initial word is a name; its names are
    # those whatever the vocabulary.
    plain: Signature
    initial: tuple[tuple[str, ...], ...]  # see text.name_parts
    lowercase: frozenset[str]  # text.lowercase_words
    token_set: frozenset[str]  # words, as a set
    unguarded: frozenset[str]  # words no guard looks at (names aside)


_MERIDIEM = frozenset({"am", "pm"})
_MERIDIEM_TRIGGERS = _MERIDIEM | {"m"}


def _meridiem(toks: Sequence[str], numbers: frozenset[str]) -> set[str]:
    """``am`` / ``pm`` (or ``a.m.``, read ``a m``) right after a number: part of a time."""
    out: set[str] = set()
    for i in range(1, len(toks)):
        tok = toks[i]
        if tok in _MERIDIEM and toks[i - 1] in numbers:
            out.add(tok)
        elif tok == "m" and i >= 2 and toks[i - 1] in ("a", "p") and toks[i - 2] in numbers:
            out.add(toks[i - 1] + "m")
    return out


# A word made of one of these and a word of four letters or more may negate
# that word: "dislikes" / "likes", "unavailable" / "available".
_NEGATING_PREFIX_RE = re.compile(r"(dis|non|un|in|im)(.{4,})")


_NEGATING_STARTS = ("dis", "non", "un", "in", "im")


def _prefixed(words: Sequence[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    out: list[tuple[str, tuple[str, ...]]] = []
    # The words that start like a negating prefix, picked out in C.
    for word in compress(words, map(str.startswith, words, repeat(_NEGATING_STARTS))):
        m = _NEGATING_PREFIX_RE.fullmatch(word)
        if m is not None:
            root = m.group(2)
            out.append((word, (root, root[:-1]) if root.endswith("s") else (root,)))
    return tuple(out)


def _prefix_pair(x: str, y: str) -> bool:
    """Whether one word is the other with a negating prefix ("dislikes" / "like")."""
    for word, other in ((x, y), (y, x)):
        m = _NEGATING_PREFIX_RE.fullmatch(word)
        if m is not None and m.group(2).rstrip("sd") == other.rstrip("sd"):
            return True
    return False


def _prefix_negations(side: Signature, other: Signature) -> int:
    """Words only ``side`` has that negate, by a prefix, a word only ``other`` has."""
    count = 0
    theirs, ours = other.words, side.words
    for word, roots in side.prefixed:
        if word not in theirs and any(r in theirs and r not in ours for r in roots):
            count += 1
    return count


@lru_cache(maxsize=4096)
def _parse(normalized: str, text: str | None) -> _Parsed:
    # Cached: one new memory is matched, then added to the stored index and to
    # the request's own index; reading its text once serves all of them.
    toks = similarity_tokens(normalized)
    intern = sys.intern  # tokens repeat across memories: share the strings
    token_set = frozenset(map(intern, toks)) - _IGNORED
    kept = tuple(sorted(token_set))
    # is_number_token over the set operations: number words are alphabetic,
    # so only the other tokens need a digit check.
    numbers = NUMBER_WORDS & token_set
    odd = [] if "".join(kept).isalpha() else [t for t in kept if not t.isalpha()]
    if odd:
        numbers |= {t for t in odd if is_number_token(t)}
        if not _MERIDIEM_TRIGGERS.isdisjoint(token_set):
            numbers |= _meridiem(toks, numbers)
    # Codes hold a digit: only text with a number token can have one.
    codes = code_keys(text) if numbers and text is not None else _EMPTY
    coded = {t for key in codes for t in key.split()} if codes else _EMPTY
    # Words of the bundled proper-noun list are names in any case.
    listed = token_set & PROPER_NOUNS
    if text is None:
        names: set[str] = set(listed)
        initial: list[tuple[str, ...]] = []
        lowercase: frozenset[str] = _EMPTY
    else:
        names, initial = name_parts(text)
        if listed:
            names |= listed
        # ASCII text with no capital: every word is written in lower case, and
        # its normalized tokens are those words (split at punctuation).
        lowercase = token_set if text.isascii() and text.islower() else frozenset(
            lowercase_words(text)
        )
    # Most memories have no names or numbers: share one empty set.
    numbers = numbers or _EMPTY
    quantifiers = _groups(token_set, _QUANTIFIER_KEYS, QUANTIFIER_GROUPS)
    modals = _groups(token_set, _MODAL_KEYS, MODAL_GROUPS)
    units = _groups(token_set, _UNIT_KEYS, UNIT_WORDS)
    if numbers and not _SHORT_UNIT_KEYS.isdisjoint(token_set):
        short = {SHORT_UNITS[t] for i, t in enumerate(toks) if t in SHORT_UNITS and i and toks[i - 1] in numbers}
        if short:
            units = units | short
    dates = frozenset(_DATE_CANON.get(t, t) for t in token_set & DATE_WORDS) or _EMPTY
    voice, passive = _voice(token_set)
    antonymic = antonym_words() & token_set or _EMPTY
    return _Parsed(
        # Built once: matching a new memory and adding it share it.
        Signature(
            kept,
            0 if NEGATIONS.isdisjoint(toks) else negation_count(toks),
            frozenset(intern(t) for t in names) if names else _EMPTY,
            numbers,
            codes,
            _prefixed(kept),
            quantifiers,
            modals,
            units,
            dates,
            voice,
            passive,
            antonymic,
        ),
        tuple(tuple(intern(t) for t in group) for group in initial),
        lowercase,
        token_set,
        token_set.difference(numbers, _NEGATIONS_AUXILIARIES, coded),
    )


_QUANTIFIER_KEYS = frozenset(QUANTIFIER_GROUPS)
_MODAL_KEYS = frozenset(MODAL_GROUPS)
_UNIT_KEYS = frozenset(UNIT_WORDS)
_SHORT_UNIT_KEYS = frozenset(SHORT_UNITS)
_DATE_CANON = {w: w[:-1] for w in DATE_WORDS if w.endswith("s") and w[:-1] in DATE_WORDS}


def _groups(token_set: frozenset[str], keys: frozenset[str], groups: dict[str, str]) -> frozenset[str]:
    found = keys & token_set
    return frozenset(groups[t] for t in found) if found else _EMPTY


# Voice: the words a passive adds ("is ... by"), and irregular participles.
_BE = frozenset({"is", "are", "was", "were", "be", "been", "being", "gets", "got", "get", "getting"})
_VOICE_IGNORED = _BE | {"by", "has", "have", "had"}
_PARTICIPLES: dict[str, str] = {
    "sent": "send", "built": "build", "kept": "keep", "held": "hold", "made": "make",
    "taken": "take", "took": "take", "written": "write", "wrote": "write", "given": "give",
    "gave": "give", "done": "do", "seen": "see", "known": "know", "sold": "sell",
    "told": "tell", "found": "find", "paid": "pay", "bought": "buy", "brought": "bring",
    "taught": "teach", "caught": "catch", "led": "lead", "left": "leave", "lost": "lose",
    "met": "meet", "spent": "spend", "won": "win", "chosen": "choose", "chose": "choose",
    "driven": "drive", "drove": "drive", "eaten": "eat", "ate": "eat", "broken": "break",
    "broke": "break", "drawn": "draw", "drew": "draw", "grown": "grow", "grew": "grow",
    "shown": "show", "thrown": "throw", "threw": "throw", "understood": "understand",
    "fed": "feed", "heard": "hear", "run": "run", "ran": "run", "read": "read",
    "set": "set", "put": "put", "shut": "shut", "cut": "cut", "hit": "hit",
    "began": "begin", "begun": "begin", "spoken": "speak", "spoke": "speak",
    "stolen": "steal", "stole": "steal", "sung": "sing", "sang": "sing", "won't": "will",
    "owned": "own", "forgot": "forget", "forgotten": "forget", "hidden": "hide", "hid": "hide",
    "overseen": "oversee", "oversaw": "oversee", "rewritten": "rewrite", "rewrote": "rewrite",
}


def _stem_of(token: str) -> str:
    base = _PARTICIPLES.get(token)
    if base is not None:
        return base
    for suffix in ("ing", "ed", "es", "s"):
        if len(token) > len(suffix) + 2 and token.endswith(suffix):
            token = token[: -len(suffix)]
            break
    return token[:-1] if len(token) > 3 and token.endswith("e") else token


# Every token's stem, once: a dict read by ``map`` in C costs a tenth of a
# call per token (texts repeat their words). Cleared when it grows past
# ``_STEMS_MAX``, so a stream of unique tokens cannot grow it without bound.
_STEMS: dict[str, str] = {}
_STEMS_MAX = 200_000


def _voice_stem(token: str) -> str:
    stem = _STEMS.get(token)
    if stem is None:
        if len(_STEMS) >= _STEMS_MAX:
            _STEMS.clear()
        stem = _STEMS[token] = _stem_of(token)
    return stem


def _voice(token_set: frozenset[str]) -> tuple[int, bool]:
    """The memory's voice key (see :attr:`Signature.voice`) and whether it reads as passive."""
    words = token_set.difference(_VOICE_IGNORED)
    try:
        content = set(map(_STEMS.__getitem__, words))
    except KeyError:  # a token not seen before
        content = set(map(_voice_stem, words))
    if len(content) < 3:
        return 0, False
    passive = "by" in token_set and not _BE.isdisjoint(token_set)
    return _voice_key(sorted(content)), passive


def _voice_key(stems: list[str]) -> int:
    # A digest rather than hash(): str hashes change from process to process,
    # and a stored parse (dump_parsed) keeps the key. Never 0 (no key).
    digest = hashlib.blake2b(orjson.dumps(stems), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True) or 1


def _signature(parsed: _Parsed, known_lowercase: frozenset[str] | set[str]) -> Signature:
    return _resolved(parsed.plain, parsed.initial, known_lowercase)


def _resolved(
    plain: Signature,
    initial: tuple[tuple[str, ...], ...],
    known_lowercase: frozenset[str] | set[str],
) -> Signature:
    if initial:
        extra = resolve_initial_names(initial, known_lowercase)
        if extra:
            return replace(plain, names=plain.names.union(*extra))
    return plain


def make_signature(
    normalized: str, text: str | None = None, known_lowercase: frozenset[str] | set[str] = frozenset()
) -> Signature:
    """The :class:`Signature` of a memory; names need the original ``text``."""
    return _signature(_parse(normalized, text), known_lowercase)


# ---------------------------------------------------------------------- stored parses
#
# Reading a memory's text (_parse) is most of what loading an agent costs. What
# it gives depends on the text alone, so the hub stores it with the memory
# (:func:`dump_parsed`) and a load reads it back (:func:`load_parsed`) instead
# of reading the text again. The parts that depend on the other memories (the
# names resolved against the vocabulary) are still worked out at load, in
# store order, as before. A stored parse is used only if it was made by the
# same code and word lists (:func:`parse_version`) from the same text (a
# CRC-32 of it); otherwise the text is parsed again.

_PARSE_FIELDS = 17


@lru_cache(maxsize=1)
def parse_version() -> str:
    """A digest of what :func:`_parse` depends on: this module, ``text.py`` and the word lists."""
    from experience_sync import text as text_module

    h = hashlib.blake2b(digest_size=8)
    try:
        here = Path(__file__)
        text_path = Path(text_module.__file__ or "")
        for path in (here, text_path, *sorted((text_path.parent / "data").iterdir())):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    except OSError:  # sources not readable (a zipped install): never trust a stored parse
        return ""
    return h.hexdigest()


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


def _sorted(values: frozenset[str]) -> list[str]:
    return sorted(values) if values else []


def dump_parsed(normalized: str, text: str) -> bytes | None:
    """What reading ``text`` (normalized: ``normalized``) gives, as a stored parse (JSON)."""
    version = parse_version()
    if not version:
        return None
    return _dump(_parse(normalized, text), text, version)


def _dump(parsed: _Parsed, text: str, version: str) -> bytes:
    sig = parsed.plain
    token_set = parsed.token_set
    blob = orjson.dumps([
        version,
        _crc(text),
        sig.words,
        sig.negations,
        _sorted(sig.names),
        _sorted(sig.numbers),
        _sorted(sig.codes),
        sig.prefixed,
        _sorted(sig.quantifiers),
        _sorted(sig.modals),
        _sorted(sig.units),
        _sorted(sig.dates),
        sig.voice,
        sig.passive,
        _sorted(sig.antonymic),
        parsed.initial,
        # Most often the text's lower-case words are its tokens: not repeated.
        None if parsed.lowercase == token_set else _sorted(parsed.lowercase),
    ])
    # orjson's bytes keep the buffer it wrote into (4 KiB or more for a parse
    # of about 400 bytes): a copy of the exact size is what a load holds until
    # the store has the parse.
    return memoryview(blob).tobytes()


def _strings(values: list[str]) -> frozenset[str]:
    return frozenset(map(sys.intern, values)) if values else _EMPTY


#: A stored parse read back: the plain signature, the sentence-initial words
#: that may be names, and the words written in lower case.
StoredParse = tuple[Signature, tuple[tuple[str, ...], ...], "frozenset[str] | tuple[str, ...]"]


def load_parsed(blob: bytes | str, text: str) -> StoredParse | None:
    """A stored parse of ``text`` (:func:`dump_parsed`), or ``None`` if it cannot be used."""
    try:
        v = orjson.loads(blob)
    except orjson.JSONDecodeError:
        return None
    if (
        type(v) is not list
        or len(v) != _PARSE_FIELDS
        or v[0] != parse_version()
        or not v[0]
        or v[1] != _crc(text)
    ):
        return None
    intern = sys.intern
    words = tuple(map(intern, v[2]))
    (_, _, _, negations, names, numbers, codes, prefixed, quantifiers, modals, units, dates,
     voice, passive, antonymic, initial, lowercase) = v
    sig = Signature(
        words,
        negations,
        _strings(names) if names else _EMPTY,
        _strings(numbers) if numbers else _EMPTY,
        frozenset(codes) if codes else _EMPTY,
        tuple((intern(w), tuple(roots)) for w, roots in prefixed) if prefixed else (),
        _strings(quantifiers) if quantifiers else _EMPTY,
        _strings(modals) if modals else _EMPTY,
        _strings(units) if units else _EMPTY,
        _strings(dates) if dates else _EMPTY,
        voice,
        passive,
        _strings(antonymic) if antonymic else _EMPTY,
    )
    groups = tuple(tuple(map(intern, group)) for group in initial) if initial else ()
    # The words themselves when the text's lower-case words are its tokens.
    return sig, groups, words if lowercase is None else _strings(lowercase)


def contradiction(a: Signature, b: Signature) -> str | None:
    """Why ``a`` and ``b`` cannot be duplicates (``negation``, ``number``, ``name``), or ``None``."""
    negations_a, negations_b = a.negations, b.negations
    if a.prefixed or b.prefixed:
        # "dislikes" counts as a negation of "likes", and "dislikes" says
        # what "does not like" says.
        negations_a += _prefix_negations(a, b)
        negations_b += _prefix_negations(b, a)
    if negations_a != negations_b:
        return "negation"
    if a.numbers != b.numbers:  # the numbers in the difference are exactly these
        return "number"
    # A code on each side that the other lacks ("t3.large" / "t3.xlarge"),
    # unless only the writing differs (the same tokens on both sides).
    if a.codes - b.codes and b.codes - a.codes and a.words != b.words:
        return "number"
    # A unit, a day or month, a quantifier or a modal word on each side that
    # the other lacks: "6 weeks" / "6 months", "every Friday" / "every
    # Monday", "every engineer" / "some engineers", "must" / "may".
    if a.units != b.units and a.units - b.units and b.units - a.units:
        return "unit"
    if a.dates != b.dates and a.dates - b.dates and b.dates - a.dates:
        return "date"
    if a.quantifiers != b.quantifiers and a.quantifiers - b.quantifiers and (
        b.quantifiers - a.quantifiers
    ):
        return "quantifier"
    if a.modals != b.modals and a.modals - b.modals and b.modals - a.modals:
        return "modality"
    # A pair of antonyms, one on each side (WordNet 3.0: "open" / "closed",
    # "include" / "exclude", "accept" / "reject"). A word and its prefixed
    # negation ("likes" / "dislikes") are counted by the negation guard above.
    anto_a, anto_b = a.antonymic, b.antonymic
    if anto_a != anto_b:
        only_a, only_b = anto_a - anto_b, anto_b - anto_a
        if only_a and only_b and len(only_a) <= 4 and len(only_b) <= 4 and any(
            are_antonyms(x, y) and not _prefix_pair(x, y) for x in only_a for y in only_b
        ):
            return "antonym"
    # A name changed when each side has a name the other lacks; a name only
    # one side mentions ("the IDE") adds detail rather than contradicting.
    # When the two differ by one word each, that one word being a name is
    # enough ("in brooklyn" / "in queens").
    # A word outside the English word list ("aws" / "gcp", "vim" / "emacs")
    # is a name too when it is the one word swapped.
    names = a.names | b.names
    # A swap of one word for one word leaves as many words on each side.
    if not names and len(a.words) != len(b.words):
        return None
    a_set, b_set = a.tokens, b.tokens
    only_a, only_b = a_set - b_set, b_set - a_set
    if only_a & names and only_b & names:
        return "name"
    if len(only_a) == 1 and len(only_b) == 1:
        (word_a,), (word_b,) = only_a, only_b
        if word_a in names or word_b in names:
            return "name"
        if word_a.isalpha() and word_b.isalpha():
            if not (is_english_word(word_a) and is_english_word(word_b)):
                return "name"
            # One content word swapped for another ("owns a bike" / "owns a
            # car"): another thing, so another memory, however long the rest.
            if (
                word_a not in _FUNCTION_WORDS
                and word_b not in _FUNCTION_WORDS
                and _voice_stem(word_a) != _voice_stem(word_b)
            ):
                return "word"
    return None


#: Why two near memories are not duplicates, and what that makes them: a
#: changed value of the same claim is a contradiction (the conflict
#: strategy decides); another entity, name, place or thing is a distinct
#: memory, kept beside the related one.
REASON_OUTCOMES: dict[str, MergeOutcome] = {
    "negation": "contradiction",
    "number": "contradiction",
    "unit": "contradiction",
    "date": "contradiction",
    "quantifier": "contradiction",
    "modality": "contradiction",
    "antonym": "contradiction",
    "name": "distinct",
    "word": "distinct",
}


def outcome(reason: str | None) -> MergeOutcome:
    """The outcome of a near pair the guards gave ``reason`` for (``None``: a duplicate)."""
    if reason is None:
        return "duplicate"
    return REASON_OUTCOMES.get(reason, "contradiction")


# Words whose swap changes no thing named: prepositions, articles, pronouns,
# conjunctions, auxiliaries ("read-only on weekends" / "at weekends").
_FUNCTION_WORDS = frozenset(
    ["a", "an", "the", "this", "that", "these", "those", "it", "its", "i", "me", "my", "we", "us", "our", "you", "your", "he", "him", "his", "she", "her", "they", "them", "their", "at", "on", "in", "of", "to", "for", "from", "by", "with", "about", "into", "onto", "over", "under", "between", "during", "within", "across", "along", "around", "through", "toward", "towards", "upon", "per", "via", "and", "or", "but", "nor", "so", "yet", "also", "then", "thus", "is", "are", "was", "were", "be", "been", "being", "am", "has", "have", "had", "do", "does", "did", "will", "would", "shall", "should", "may", "might", "must", "can", "could", "as", "than", "when", "while", "where", "which", "who", "whom", "whose", "what", "how", "there", "here"]
)


def _stem(token: str) -> str:
    # Enough to pair "likes" with "like" when scoring a contradiction.
    return token[:-1] if len(token) > 3 and token.endswith("s") else token


# Auxiliaries come and go with a negation ("likes" / "does not like"), and
# ordinal suffixes with a number ("1st" is "1 st").
_AUXILIARIES = frozenset(
    {"do", "does", "did", "is", "are", "was", "were", "will", "can", "st", "nd", "rd", "th"}
)


_NEGATIONS_AUXILIARIES = NEGATIONS | _AUXILIARIES
# Words whose change the guards read as a changed value of the same claim.
_GUARD_WORDS = frozenset(QUANTIFIER_GROUPS) | frozenset(MODAL_GROUPS) | frozenset(
    UNIT_WORDS
) | frozenset(SHORT_UNITS) | DATE_WORDS


def contradiction_score(a: Signature, b: Signature) -> float:
    """Jaccard similarity of ``a`` and ``b`` leaving out the words that disagree.

    ``Alice lives in Paris`` and ``Alice lives in Berlin`` score 1.0: they
    state the same kind of fact about different places.
    """
    a_set, b_set = a.tokens, b.tokens
    inter = len(a_set & b_set)
    names = a.names | b.names
    numbers = a.numbers | b.numbers
    if a.codes or b.codes:
        numbers = numbers.union(*(key.split() for key in a.codes | b.codes))

    # A pair of antonyms is the one value that disagrees, like a number.
    paired: set[str] = set()
    diff_a, diff_b = a_set - b_set, b_set - a_set
    if diff_a and diff_b and len(diff_a) <= 4 and len(diff_b) <= 4:
        for x in diff_a:
            for y in diff_b:
                if x.isalpha() and y.isalpha() and are_antonyms(x, y) and not _prefix_pair(x, y):
                    paired.update((x, y))

    def rest(side: frozenset[str], other: frozenset[str]) -> set[str]:
        return {
            _stem(t) for t in side - other
            if not (
                t in numbers or t in names or t in _NEGATIONS_AUXILIARIES
                or t in _GUARD_WORDS or t in paired
            )
        }

    only_a, only_b = rest(a_set, b_set), rest(b_set, a_set)
    same = inter + len(only_a & only_b) + (1 if paired else 0)
    total = same + len(only_a ^ only_b)
    return same / total if total else 0.0


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity of two token sets (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def _threshold(config: Any, default: float) -> float:
    value = getattr(config, "similarity_threshold", None)
    return default if value is None else float(value)


class _Memories:
    """Slots for stored memories: id <-> slot, signatures, and vocabulary.

    The vocabulary: words seen written in lower case (a capitalized first word
    of a sentence that is one of them is not a name), and names, words seen
    capitalized inside a sentence. A known name counts as a name wherever it
    appears, in lower case too: "my manager is bob" and "my manager is tom"
    differ by a name once "Bob" or "Tom" was written as one.
    """

    def __init__(self) -> None:
        self.ids: list[str | None] = []
        self.slots: dict[str, int] = {}
        self.sigs: list[Signature | None] = []
        self.lowercase: set[str] = set()
        self.names: set[str] = set()
        # Slots by voice key (Signature.voice), for the active/passive rule.
        # A key most often has one slot: kept as the int, a list only for two
        # or more (one list a memory would be one more object for the
        # garbage collector to visit).
        self.voices: dict[int, int | list[int]] = {}

    def signature(self, normalized: str, text: str | None) -> Signature:
        return self.query(_parse(normalized, text))

    def query(self, parsed: _Parsed) -> Signature:
        """A new memory's signature, names known from stored memories included."""
        return self._known_names(_signature(parsed, self.lowercase))

    def stored(self, slot: int) -> Signature | None:
        """A stored memory's signature, with the names learned since it was stored."""
        sig = self.sigs[slot]
        return None if sig is None else self._known_names(sig)

    def _known_names(self, sig: Signature) -> Signature:
        if not self.names or self.names.isdisjoint(sig.words):
            return sig
        extra = self.names.intersection(sig.words)
        if extra <= sig.names:
            return sig
        return replace(sig, names=sig.names | extra)

    def put(self, memory_id: str, sig: Signature | None, text: str | None, normalized: str) -> int:
        return self.put_parsed(memory_id, sig, _parse(normalized, text) if text is not None else None)

    def put_parsed(self, memory_id: str, sig: Signature | None, parsed: _Parsed | None) -> int:
        """:meth:`put` with the text's parse at hand (``None``: no text, nothing learned)."""
        if parsed is not None:
            self.lowercase.update(parsed.lowercase)
            if parsed.plain.names:
                self.names.update(parsed.plain.names)
        return self._slot(memory_id, sig)

    def vocabulary(self) -> tuple[int, int]:
        """A stamp of the vocabulary: it only grows, so equal sizes mean the same words."""
        return len(self.lowercase), len(self.names)

    def load(
        self,
        memory_id: str,
        normalized: str,
        text: str | None,
        blob: bytes | str | None,
        dump: bool = True,
    ) -> tuple[Signature, int, bytes | None]:
        """:meth:`signature` and :meth:`put` of a stored memory, from its stored parse if usable.

        Returns the signature, the slot and, when the text had to be read
        again (and ``dump``), its parse to store (:func:`dump_parsed`).
        """
        stored = load_parsed(blob, text) if blob is not None and text is not None else None
        if stored is None:
            sig = self.signature(normalized, text)
            slot = self.put(memory_id, sig, text, normalized)
            made = dump_parsed(normalized, text) if dump and text is not None else None
            return sig, slot, made
        plain, initial, lowercase = stored
        # What signature() and put() do, with the parse read back.
        sig = self._known_names(_resolved(plain, initial, self.lowercase))
        self.lowercase.update(lowercase)
        if plain.names:
            self.names.update(plain.names)
        return sig, self._slot(memory_id, sig), None

    def _slot(self, memory_id: str, sig: Signature | None) -> int:
        slot = len(self.ids)
        self.ids.append(memory_id)
        self.sigs.append(sig)
        self.slots[memory_id] = slot
        if sig is not None and sig.voice:
            same = self.voices.get(sig.voice)
            if same is None:
                self.voices[sig.voice] = slot
            elif isinstance(same, int):
                self.voices[sig.voice] = [same, slot]
            else:
                same.append(slot)
        return slot

    def drop(self, memory_id: str) -> int | None:
        slot = self.slots.pop(memory_id, None)
        if slot is not None:
            sig = self.sigs[slot]
            if sig is not None and sig.voice:
                same = self.voices.get(sig.voice)
                if isinstance(same, int):
                    if same == slot:
                        del self.voices[sig.voice]
                elif same is not None:
                    if slot in same:
                        same.remove(slot)
                    if not same:
                        del self.voices[sig.voice]
            self.ids[slot] = None
            self.sigs[slot] = None
        return slot

    def voice_match(self, q: Signature) -> int | None:
        """A stored memory saying what ``q`` says in the other voice, that no guard objects to."""
        if not q.voice:
            return None
        same = self.voices.get(q.voice)
        if same is None:
            return None
        for slot in (same,) if isinstance(same, int) else same:
            sig = self.stored(slot)
            if sig is not None and sig.passive != q.passive and contradiction(q, sig) is None:
                return slot
        return None


class JaccardSimilarity(SimilarityMethod):
    """Lexical similarity: Jaccard over normalized token sets, with guards."""

    name = "jaccard"

    def __init__(self, config: Any = None) -> None:
        self.threshold = _threshold(config, DEFAULT_JACCARD_THRESHOLD)
        self._mem = _Memories()
        # Slot numbers in compact arrays: a list would hold an int object per
        # posting (36 bytes instead of 8; a 1M-memory store has 12M postings).
        self._postings: dict[str, array[int]] = {}
        self._removed = 0
        # Removed slots still in each word's postings (see _live).
        self._dead: dict[str, int] = {}
        # The last query's parse, vocabulary stamp and signature: a new memory
        # is matched, then added with the same signature (see add).
        self._last_query: tuple[_Parsed, tuple[int, int], Signature] | None = None

    def __len__(self) -> int:
        return len(self._mem.slots)

    def _query(self, parsed: _Parsed) -> Signature:
        """``self._mem.query(parsed)``, kept for the :meth:`add` that follows a match."""
        mem = self._mem
        stamp = mem.vocabulary()
        last = self._last_query
        if last is not None and last[0] is parsed and last[1] == stamp:
            return last[2]
        q = mem.query(parsed)
        self._last_query = (parsed, stamp, q)
        return q

    def add(
        self,
        memory_id: str,
        normalized: str,
        embedding: FloatArray | None = None,
        text: str | None = None,
    ) -> None:
        """Index a stored memory (a repeated id replaces the earlier one)."""
        mem = self._mem
        if memory_id in mem.slots:
            self.remove(memory_id)
        parsed = _parse(normalized, text)
        # The signature the match just made, when the vocabulary is unchanged since.
        sig = self._query(parsed)
        slot = mem.put_parsed(memory_id, sig, parsed if text is not None else None)
        self._post(slot, sig.words)

    def _post(self, slot: int, words: Sequence[str]) -> None:
        """Append ``slot`` to the postings of each of ``words``."""
        postings = self._postings
        for tok in words:
            if tok not in postings:
                postings[tok] = array("q")
        # One C loop appends the slot to each word's postings.
        deque(map(array.append, map(postings.__getitem__, words), repeat(slot)), maxlen=0)

    def add_stored(
        self,
        items: Sequence[tuple[str, str, FloatArray | None, str | None]],
        parsed: Sequence[bytes | str | None],
        dump: bool = True,
    ) -> dict[str, bytes]:
        """:meth:`add_many` of stored memories, each with its stored parse (or ``None``).

        The same index as :meth:`add_many` builds, reading a memory's text
        only when its stored parse cannot be used (see :func:`load_parsed`).
        Returns the parses made anew, by memory id, for the store to keep
        (none without ``dump``). Calls on consecutive parts of the memories
        build the index one call on all of them builds.
        """
        fresh: dict[str, bytes] = {}
        mem = self._mem
        for (memory_id, normalized, _, text), blob in zip(items, parsed, strict=True):
            if memory_id in mem.slots:
                self.remove(memory_id)
            sig, slot, made = mem.load(memory_id, normalized, text, blob, dump)
            if made is not None:
                fresh[memory_id] = made
            self._post(slot, sig.words)
        return fresh

    def remove(self, memory_id: str) -> None:
        """Forget a stored memory; its postings are skipped, then compacted."""
        slot = self._mem.slots.get(memory_id)
        if slot is None:
            return
        sig = self._mem.sigs[slot]
        self._mem.drop(memory_id)
        if sig is not None:
            dead = self._dead
            for tok in sig.words:
                dead[tok] = dead.get(tok, 0) + 1
        self._removed += 1
        if self._removed > 1024 and self._removed * 4 > len(self._mem.ids):
            alive = self._mem.ids
            self._postings = {
                tok: kept for tok, lst in self._postings.items()
                if (kept := array("q", (s for s in lst if alive[s] is not None)))
            }
            self._removed = 0
            self._dead = {}

    def _live(self, tok: str) -> array[int]:
        """A word's postings, compacted first when removed slots are half of them.

        A stream where each new memory replaces an older one on the same
        words (every one a contradiction that supersedes the last) would
        otherwise probe ever longer lists of removed slots: one posting list
        is compacted when probed, at most once per as many removals as it
        keeps, so the cost stays proportional to the memories alive.
        """
        lst = self._postings[tok]
        dead = self._dead.get(tok)
        if dead and dead * 2 >= len(lst):
            alive = self._mem.ids
            lst = self._postings[tok] = array("q", (s for s in lst if alive[s] is not None))
            del self._dead[tok]
        return lst

    def _by_rarity(self, words: Sequence[str]) -> list[str]:
        """``words`` (sorted) that some stored memory has, rarest first."""
        # Ties keep the words' sorted order: set order varies between
        # processes, and a replay must find the same candidates. Rarity is
        # the number of stored memories holding the word, removed ones left
        # out: the same order whenever postings are compacted, and the same
        # as in an index loaded afresh from the store.
        lens = list(map(len, map(self._postings.get, words, repeat(_NO_POSTINGS))))
        dead = self._dead
        if dead:
            lens = [n - dead.get(w, 0) for n, w in zip(lens, words, strict=True)]
        return [words[i] for i in sorted(range(len(words)), key=lens.__getitem__) if lens[i]]

    def _candidates(
        self, ordered: Sequence[str], n: int, into: set[int], threshold: float
    ) -> None:
        """Every stored memory that can reach the threshold with a query of ``n`` tokens (exact).

        ``ordered`` holds the query's tokens that some stored memory has,
        rarest first (the others can bring no candidate). A memory reaching
        the threshold holds at least ``need = ceil(t*n)`` of the query's
        tokens, so it misses at most ``len(ordered) - need`` of ``ordered``:
        among the rarest ``len(ordered) - need + 1 + extra`` it holds at least
        ``1 + extra``. The extra probes are cheap (rare words) and the hit
        count prunes most memories that share one rare word by chance.
        """
        need = math.ceil(threshold * n - 1e-9)
        if n == 0 or need > len(ordered):
            return
        extra = min(2, max(need - 1, 0))
        probed = ordered[: len(ordered) - need + 1 + extra]
        live = self._live if self._dead else self._postings.__getitem__
        if extra == 0 or len(probed) <= extra:
            for tok in probed:
                into.update(live(tok))
            return
        # Counted by numpy: at 100k stored the probes bring hundreds of
        # slots. Sorted, a slot held ``floor`` times fills a run that long.
        joined = array("q")
        deque(map(joined.extend, map(live, probed)), maxlen=0)
        hits = np.frombuffer(joined, dtype=np.int64)
        hits.sort()
        floor = 1 + extra
        if len(hits) >= floor:
            ends = hits[floor - 1 :]
            into.update(ends[hits[: len(ends)] == ends].tolist())

    def match(
        self, normalized: str, embedding: FloatArray | None = None, text: str | None = None
    ) -> SimilarityMatch | None:
        """The best duplicate at or above threshold, else the best contradiction."""
        return self.match_at(normalized, embedding, text, self.threshold)

    def match_at(
        self,
        normalized: str,
        embedding: FloatArray | None,
        text: str | None,
        threshold: float,
    ) -> SimilarityMatch | None:
        """:meth:`match` against ``threshold`` instead of the method's own."""
        parsed = _parse(normalized, text)
        q = self._query(parsed)
        voiced = self._mem.voice_match(q)
        if voiced is not None:
            return SimilarityMatch(self._mem.ids[voiced] or "", 1.0)
        candidates: set[int] = set()
        ordered = self._by_rarity(q.words)
        # A contradiction differs in its guarded words, which are often the
        # rarest: probe the other words too, as far as some stored memory has
        # them (best effort).
        unguarded, names = parsed.unguarded, q.names
        plain = [t for t in ordered if t in unguarded and t not in names]
        if len(plain) < len(ordered):
            self._candidates(ordered, len(q.words), candidates, threshold)
        # With no guarded word, the plain probe covers the first: its ``n`` is
        # no larger, so it probes a longer run of the same tokens.
        self._candidates(plain, len(plain), candidates, threshold)
        best: tuple[float, int] | None = None
        best_conflict: tuple[float, int, str] | None = None
        stored = self._mem.stored
        q_set, q_len = parsed.token_set, len(q.words)
        for slot in candidates:
            sig = stored(slot)
            if sig is None:
                continue
            inter = len(q_set.intersection(sig.words))
            score = inter / (q_len + len(sig.words) - inter) if q_len or sig.words else 1.0
            reason = contradiction(q, sig)
            if reason is None:
                if score >= threshold and (best is None or (score, -slot) > (best[0], -best[1])):
                    best = (score, slot)
                continue
            cscore = max(score, contradiction_score(q, sig))
            if cscore >= threshold and (
                best_conflict is None or (cscore, -slot) > (best_conflict[0], -best_conflict[1])
            ):
                best_conflict = (cscore, slot, reason)
        ids = self._mem.ids
        if best is not None:
            return SimilarityMatch(ids[best[1]] or "", best[0])
        if best_conflict is not None:
            return SimilarityMatch(ids[best_conflict[1]] or "", best_conflict[0], best_conflict[2])
        return None

    def best_match(
        self, normalized: str, embedding: FloatArray | None = None, text: str | None = None
    ) -> tuple[str, float] | None:
        """``(memory_id, score)`` of the best duplicate at or above threshold."""
        found = self.match(normalized, embedding, text)
        if found is None or not found.is_duplicate:
            return None
        return found.memory_id, found.score


IndexFactory = Callable[[int], VectorIndex]


def _registry_index_factory(name: str) -> IndexFactory:
    def create(dim: int) -> VectorIndex:
        from experience_sync.plugins import get_plugin_manager

        index: VectorIndex = get_plugin_manager().registry.create("vector_indexes", name, dim)
        return index

    return create


class EmbeddingSimilarity(SimilarityMethod):
    """Cosine similarity over stored vectors through a :class:`VectorIndex`, with guards.

    :param config: the merge-strategy configuration (``similarity_threshold``,
        ``vector_index``).
    :param index_factory: ``factory(dim)`` making the index; default: the
        registered vector index named by ``config.vector_index``.
    :param k: how many nearest memories to look at per query (guards may skip some).
    """

    name = "embedding"

    def __init__(
        self, config: Any = None, index_factory: IndexFactory | None = None, k: int = 8
    ) -> None:
        self.threshold = _threshold(config, DEFAULT_EMBEDDING_THRESHOLD)
        self.lexical_threshold = DEFAULT_JACCARD_THRESHOLD
        self.k = k
        self._factory = index_factory or _registry_index_factory(
            getattr(config, "vector_index", None) or "numpy"
        )
        self._index: VectorIndex | None = None
        self._mem = _Memories()
        self._removed = 0
        # Memories by token set: a variant in case, punctuation, Unicode form or
        # word order has the same tokens, whatever its vector. Models embed the
        # raw text, and all-MiniLM-L6-v2 put a full-width or ligature variant of
        # a sentence at cosine 0.41-0.8 from it.
        self._by_tokens: dict[tuple[str, ...], list[int]] = {}
        # The hub's embedder, for the one word two near memories swap
        # (:meth:`bind_embedder`), and those words' vectors.
        self._embedder: Embedder | None = None
        self._word_vectors: dict[str, FloatArray] = {}

    #: Cosine of the two swapped words' own vectors at or above which the
    #: embedder is taken to say they mean the same ("prefers" / "likes"),
    #: so a one-word swap the guards call ``word`` is a duplicate after all.
    #: all-MiniLM-L6-v2 puts no word pair of the labelled sets this high
    #: (synonyms such as learning / studying at 0.58, other things such as
    #: cat / dog at 0.66, shorter / longer at 0.80), so with it a word swap
    #: stays distinct; an embedder that places synonyms together merges them.
    synonym_threshold: float = 0.9
    _WORD_CACHE = 4096

    def bind_embedder(self, embedder: Embedder) -> None:
        """Use ``embedder`` to compare the one word two near memories swap."""
        self._embedder = embedder

    def _synonyms(self, a: Signature, b: Signature) -> bool:
        """Whether the one word ``a`` and ``b`` swap means the same to the embedder."""
        if self._embedder is None:
            return False
        only_a, only_b = a.tokens - b.tokens, b.tokens - a.tokens
        if len(only_a) != 1 or len(only_b) != 1:
            return False
        words = (next(iter(only_a)), next(iter(only_b)))
        cache = self._word_vectors
        missing = [w for w in words if w not in cache]
        if missing:
            if len(cache) + len(missing) > self._WORD_CACHE:
                cache.clear()
            for word, vec in zip(missing, self._embedder.embed(missing), strict=True):
                cache[word] = np.asarray(vec, dtype=np.float32)
        va, vb = cache[words[0]], cache[words[1]]
        norm = float(np.linalg.norm(va) * np.linalg.norm(vb))
        return norm > 0 and float(va @ vb) / norm >= self.synonym_threshold

    @property
    def needs_embeddings(self) -> bool:
        """Always: this method compares vectors."""
        return True

    @property
    def index(self) -> VectorIndex | None:
        """The vector index (created on the first stored memory)."""
        return self._index

    def __len__(self) -> int:
        return len(self._mem.slots)

    @staticmethod
    def _rows(embeddings: Sequence[FloatArray | None]) -> FloatArray:
        if any(e is None for e in embeddings):
            raise ValueError("the embedding similarity method needs an embedding per memory")
        return np.vstack([np.asarray(e, dtype=np.float32).reshape(1, -1) for e in embeddings])

    def add(
        self,
        memory_id: str,
        normalized: str,
        embedding: FloatArray | None,
        text: str | None = None,
    ) -> None:
        """Store a memory's vector (and its signature, for the guards)."""
        self.add_many([(memory_id, normalized, embedding, text)])

    def add_many(
        self, items: Sequence[tuple[str, str, FloatArray | None, str | None]]
    ) -> None:
        """Store several memories with one index call."""
        if not items:
            return
        rows = self._rows([emb for _, _, emb, _ in items])
        if self._index is None:
            self._index = self._factory(rows.shape[1])
        slots = []
        for memory_id, normalized, _, text in items:
            if memory_id in self._mem.slots:
                self.remove(memory_id)
            sig = self._mem.signature(normalized, text)
            slot = self._mem.put(memory_id, sig, text, normalized)
            self._by_tokens.setdefault(sig.words, []).append(slot)
            slots.append(slot)
        self._index.add(slots, rows)

    def add_stored(
        self,
        items: Sequence[tuple[str, str, FloatArray | None, str | None]],
        parsed: Sequence[bytes | str | None],
        dump: bool = True,
    ) -> dict[str, bytes]:
        """:meth:`add_many` of stored memories with their stored parses (see :class:`JaccardSimilarity`)."""
        fresh: dict[str, bytes] = {}
        if not items:
            return fresh
        rows = self._rows([emb for _, _, emb, _ in items])
        if self._index is None:
            self._index = self._factory(rows.shape[1])
        slots = []
        for (memory_id, normalized, _, text), blob in zip(items, parsed, strict=True):
            if memory_id in self._mem.slots:
                self.remove(memory_id)
            sig, slot, made = self._mem.load(memory_id, normalized, text, blob, dump)
            if made is not None:
                fresh[memory_id] = made
            self._by_tokens.setdefault(sig.words, []).append(slot)
            slots.append(slot)
        self._index.add(slots, rows)
        return fresh

    def remove(self, memory_id: str) -> None:
        """Forget a memory: its vector stays in the index but is never returned."""
        slot = self._mem.slots.get(memory_id)
        if slot is None:
            return
        sig = self._mem.sigs[slot]
        self._mem.drop(memory_id)
        self._removed += 1
        if sig is not None:
            same = self._by_tokens.get(sig.words, [])
            if slot in same:
                same.remove(slot)
            if not same:
                self._by_tokens.pop(sig.words, None)

    def match(
        self, normalized: str, embedding: FloatArray | None, text: str | None = None
    ) -> SimilarityMatch | None:
        """The best duplicate at or above threshold, else the best contradiction."""
        return self.match_many([(normalized, embedding, text)])[0]

    def match_at(
        self,
        normalized: str,
        embedding: FloatArray | None,
        text: str | None,
        threshold: float,
    ) -> SimilarityMatch | None:
        """:meth:`match` against ``threshold`` instead of the method's own."""
        return self._match_many([(normalized, embedding, text)], threshold)[0]

    def match_many(self, queries: Sequence[MatchQuery]) -> list[SimilarityMatch | None]:
        """Match a batch with one index search (much faster than one by one)."""
        return self._match_many(queries, self.threshold)

    def _match_many(
        self, queries: Sequence[MatchQuery], threshold: float
    ) -> list[SimilarityMatch | None]:
        if not queries:
            return []
        rows = self._rows([emb for _, emb, _ in queries])
        if self._index is None or len(self._index) == 0:
            return [None] * len(queries)
        k = min(self.k + min(self._removed, 56), len(self._index))
        scores, slots = self._index.search(rows, k)
        out: list[SimilarityMatch | None] = []
        ids, stored = self._mem.ids, self._mem.stored
        for (normalized, _, text), row_scores, row_slots in zip(queries, scores, slots, strict=True):
            q = self._mem.signature(normalized, text)
            found: SimilarityMatch | None = None
            conflict: SimilarityMatch | None = None
            for slot in self._by_tokens.get(q.words, ()):
                sig = stored(slot)
                if sig is not None and contradiction(q, sig) is None:
                    found = SimilarityMatch(ids[slot] or "", 1.0)
                    break
            if found is None:
                voiced = self._mem.voice_match(q)
                if voiced is not None:
                    found = SimilarityMatch(ids[voiced] or "", 1.0)
            if found is not None:
                out.append(found)
                continue
            for score, slot in zip(row_scores.tolist(), row_slots.tolist(), strict=True):
                if slot < 0 or ids[slot] is None:
                    continue
                sig = stored(slot)
                reason = contradiction(q, sig) if q is not None and sig is not None else None
                if (
                    reason == "word" and score >= threshold
                    and q is not None and sig is not None and self._synonyms(q, sig)
                ):
                    reason = None
                if reason is None:
                    if score >= threshold:
                        found = SimilarityMatch(ids[slot] or "", float(score))
                        break
                    continue
                assert q is not None and sig is not None
                if conflict is None and (
                    score >= threshold
                    or contradiction_score(q, sig) >= self.lexical_threshold
                ):
                    conflict = SimilarityMatch(ids[slot] or "", float(score), reason)
            out.append(found or conflict)
        return out

    def best_match(
        self, normalized: str, embedding: FloatArray | None, text: str | None = None
    ) -> tuple[str, float] | None:
        """``(memory_id, score)`` of the best duplicate at or above threshold."""
        found = self.match(normalized, embedding, text)
        if found is None or not found.is_duplicate:
            return None
        return found.memory_id, found.score
