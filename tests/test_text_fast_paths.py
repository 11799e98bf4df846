"""The text functions' fast paths agree with the plain definitions they shortcut.

``normalize``, ``lowercase_words`` and ``name_tokens`` skip work that cannot
change their result (a substitution with nothing to match, one tokenizer call
for many plain words, a text read once for several vocabularies). The
references below are the straightforward definitions; any text must give the
same result through both.
"""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from experience_sync.hub.merge.similarity import make_signature
from experience_sync.text import (
    COMMON_WORDS,
    PHONE_RE,
    PROPER_NOUNS,
    lowercase_words,
    name_tokens,
    normalize,
    similarity_tokens,
)

_PUNCT_RE = re.compile(r"[^\w\s.]+|(?<!\d)\.|\.(?!\d)")
_SPACE_RE = re.compile(r"\s+")
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DIGIT_EDGE_RE = re.compile(r"(?<=\d)(?=[^\W\d_])|(?<=[^\W\d_.])(?=\d)")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_WORD_RE = re.compile(r"[\w'\u2019\u00ad\u200b-\u200d-]+")
_SENTENCE_END_RE = re.compile(r"[.!?;:\n]+[\s\"')\]]*")
_DETERMINERS = frozenset(
    {"the", "a", "an", "all", "your", "my", "our", "their", "this", "that", "these", "those",
     "every", "each", "any", "some", "no"}
)


def _strip_format(s: str) -> str:
    return "".join(ch for ch in s if unicodedata.category(ch) != "Cf")


def reference_normalize(text: str) -> str:
    s = _strip_format(unicodedata.normalize("NFKC", text)).casefold()
    s = s.translate(_APOSTROPHES).replace("'", "")
    s = PHONE_RE.sub(r"\1\2\3", s)
    s = _THOUSANDS_RE.sub("", s)
    s = _PUNCT_RE.sub(" ", s).replace("_", " ")
    # Letters and digits split apart where they meet, unless they alternate
    # more than once (an identifier such as ``3f2a9b1``).
    s = " ".join(
        w if len(_DIGIT_EDGE_RE.split(w)) > 2 else _DIGIT_EDGE_RE.sub(" ", w) for w in s.split()
    )
    return _SPACE_RE.sub(" ", s).strip()


def _word_tokens(word: str) -> list[str]:
    return similarity_tokens(reference_normalize(word))


def reference_lowercase_words(text: str) -> set[str]:
    return {
        tok for m in _WORD_RE.finditer(text) if m.group(0)[:1].islower()
        for tok in _word_tokens(m.group(0))
    }


def reference_name_tokens(text: str, known: set[str]) -> set[str]:
    s = _strip_format(unicodedata.normalize("NFKC", text))
    words: list[tuple[str, bool]] = []
    for sentence in _SENTENCE_END_RE.split(s):
        found = [m.group(0) for m in _WORD_RE.finditer(sentence)]
        for i, word in enumerate(found):
            if i == 0 and len(found) > 1 and found[1] in _DETERMINERS:
                continue
            words.append((word, i == 0))
    alpha = [w for w, _ in words if w[:1].isalpha()]
    capitalized = [w for w in alpha if w[:1].isupper()]
    if len(alpha) >= 3 and len(capitalized) > 0.6 * len(alpha):
        return set()
    names: set[str] = set()
    for word, initial in words:
        if not word[:1].isupper() or word == "I":
            continue
        toks = _word_tokens(word)
        if initial and all(t in COMMON_WORDS or t in known for t in toks):
            continue
        names.update(t for t in toks if t not in COMMON_WORDS or not initial)
    return names


# Letters, digits and the characters each shortcut has to respect: separators,
# Unicode whitespace, compatibility forms, format characters, accents.
_ALPHABET = [
    *"abcdeXYZ I019 .,'_-!?;:\t\n\"()",
    "\x1c", "\x85", "\u2028", "\u00a0", "\u3000", "\u00e9", "\ufb01", "\uff26", "\u200b",
    "\u00ad", "\u2019", "`", "\u0661", "\u00b2", "\u00bd", "\u00df", "\u0130", "\u03a3",
    "\u0301", "\x0b",
]
_WORDS = ["Alice", "alice", "Paris", "the", "dont", "don't", "two", "3pm", "1,000", "3.5", "The",
          "415-555-0199", "(415) 555", "+1 415.555.0199", "555 0199"]
texts = st.lists(st.sampled_from(_ALPHABET + _WORDS), max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_normalize_matches_reference(text: str) -> None:
    assert normalize(text) == reference_normalize(text)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_lowercase_words_matches_reference(text: str) -> None:
    assert lowercase_words(text) == reference_lowercase_words(text)


@settings(max_examples=300, deadline=None)
@given(texts, st.sets(st.sampled_from(["alice", "paris", "xyz", "abc", "the"])))
def test_name_tokens_matches_reference(text: str, known: set[str]) -> None:
    assert name_tokens(text, known) == reference_name_tokens(text, known)


@settings(max_examples=200, deadline=None)
@given(texts, st.sets(st.sampled_from(["alice", "paris", "xyz"])))
def test_signature_names_follow_the_vocabulary_given(text: str, known: set[str]) -> None:
    # A text's parse is cached; the names still depend on the vocabulary passed.
    # Words of the bundled proper-noun list are names in any case.
    norm = normalize(text)
    listed = set(similarity_tokens(reference_normalize(text))) & PROPER_NOUNS
    assert make_signature(norm, text, known).names == reference_name_tokens(text, known) | listed
    assert make_signature(norm, text).names == reference_name_tokens(text, set()) | listed


ascii_texts = st.lists(
    st.sampled_from([*"abcXYZ I09 .,'_-!?\t\n", *_WORDS, "don't", "e-mail", "x_y"]), max_size=30
).map("".join)


@settings(max_examples=300, deadline=None)
@given(ascii_texts)
def test_lowercase_words_matches_reference_on_ascii(text: str) -> None:
    assert lowercase_words(text) == reference_lowercase_words(text)
