"""Text normalization, and the little language knowledge similarity uses.

Normalization is done once per memory; the normalized form is what is hashed,
compared and indexed.

Also the small amount of language knowledge the similarity methods use:
contractions (``don't`` is ``do not``), negation words and number words,
which words of the original text are names (capitalized where a sentence does
not force a capital), and a bundled list of proper nouns that are names in any
case (:data:`PROPER_NOUNS`).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import re
import sys
import unicodedata
from collections.abc import Iterable
from importlib import resources

# Punctuation becomes a space, except a dot between two digits (``3.5`` stays
# one token, so that it differs from ``35``).
_PUNCT_RE = re.compile(r"[^\w\s.]+|(?<!\d)\.|\.(?!\d)", re.UNICODE)
# ``1,000`` is ``1000``: a thousands separator is not a token boundary.
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# ``3pm`` is ``3 pm``: where digits meet letters is a token boundary, so the
# spacing of a unit or an ordinal does not change the tokens. A word that goes
# from letters to digits more than once (``3f2a9b1``, ``k8s``, ``b2b``) is an
# identifier and stays whole: its pieces are not words of the text.
_DIGIT_EDGE_RE = re.compile(r"(?<=\d)(?=[^\W\d_])|(?<=[^\W\d_.])(?=\d)", re.UNICODE)
_DIGIT_RE = re.compile(r"\d")
# A North American phone number however it is punctuated ("(415) 555-0199",
# "415.555.0199", "+1 415 555 0199") is its ten digits, as "4155550199" is.
PHONE_RE = re.compile(
    r"(?<![\w.+])(?:\+?1[-. ]?)?\(?(\d{3})\)?[-. ]?(\d{3})[-. ](\d{4})(?!\w|\.\d)", re.ASCII
)
# Pronoun + affirmative contraction: what each stands for. ``'s`` and ``'d``
# are read as ``is`` and ``would`` (``he's`` may be ``he has``: both sides of a
# pair read it the same way).
_AFFIRMATIVE: dict[str, str] = {"re": "are", "ve": "have", "ll": "will", "m": "am", "d": "would", "s": "is"}
_AFFIRMATIVE_RE = re.compile(
    r"\b(i|you|we|they|he|she|it|that|there|here|what|who|where|how|let)'(re|ve|ll|m|d|s)\b"
)


def _digit_edges(word: str) -> str:
    """``word`` split where digits meet letters, unless it is an identifier (see _DIGIT_EDGE_RE)."""
    if word.isalpha() or word.isdigit():
        return word
    parts = _DIGIT_EDGE_RE.split(word)
    return word if len(parts) > 2 else " ".join(parts)


def _spell_out(m: re.Match[str]) -> str:
    head, tail = m.group(1), m.group(2)
    if head == "let":
        return "let us" if tail == "s" else m.group(0)
    if tail == "m" and head != "i":
        return m.group(0)
    return f"{head} {_AFFIRMATIVE[tail]}"


_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def _strip_format_chars(s: str) -> str:
    # Zero-width spaces, joiners and soft hyphens (category Cf) are invisible:
    # NFKC keeps them, but they must not split or change a word.
    if s.isascii():
        return s
    return "".join(ch for ch in s if unicodedata.category(ch) != "Cf")


def normalize(text: str) -> str:
    """Unicode NFKC, casefold, punctuation to spaces, whitespace collapsed.

    Apostrophes inside words are dropped rather than split (``don't`` ->
    ``dont``) so negative contractions stay one token, affirmative ones are spelled
    out (``we're`` -> ``we are``, ``it's`` -> ``it is``); invisible format characters
    (zero-width space, soft hyphen) are removed; ``1,000`` becomes ``1000``,
    ``3.5`` stays ``3.5``, ``3pm`` becomes ``3 pm`` (but an identifier such as
    ``3f2a9b1`` stays one word) and a North American phone number becomes its
    ten digits (``(415) 555-0199`` -> ``4155550199``).
    """
    s = _strip_format_chars(unicodedata.normalize("NFKC", text)).casefold()
    s = s.translate(_APOSTROPHES)
    if "'" in s:
        # Affirmative contractions are spelled out (``we're`` -> ``we are``):
        # without the apostrophe ``we're`` would read as ``were``, ``it's``
        # as ``its``. Negative ones stay one token (``dont``, see CONTRACTIONS).
        s = _AFFIRMATIVE_RE.sub(_spell_out, s).replace("'", "")
    # Each pattern is applied only where it can match: most memories are
    # plain words, and the substitutions dominate the cost of normalizing.
    digits = _DIGIT_RE.search(s) is not None
    if digits:
        s = PHONE_RE.sub(r"\1\2\3", s)
    if "," in s:
        s = _THOUSANDS_RE.sub("", s)
    if not s.replace(" ", "").isalnum():  # str.isalnum is re's \w without "_"
        s = _PUNCT_RE.sub(" ", s).replace("_", " ")
    if digits:
        return " ".join(map(_digit_edges, s.split()))
    return " ".join(s.split())  # str.split and re's \s agree on whitespace


def tokens(normalized: str) -> list[str]:
    """Tokens of already normalized text."""
    return normalized.split()


def content_hash(normalized: str) -> str:
    """Stable hash of normalized text (exact-duplicate key)."""
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=16).hexdigest()


# --------------------------------------------------------------------------- word lists


def _words(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


#: Contractions as :func:`normalize` leaves them, and what they stand for.
CONTRACTIONS: dict[str, tuple[str, ...]] = {
    "dont": ("do", "not"),
    "doesnt": ("does", "not"),
    "didnt": ("did", "not"),
    "isnt": ("is", "not"),
    "arent": ("are", "not"),
    "wasnt": ("was", "not"),
    "werent": ("were", "not"),
    "wont": ("will", "not"),
    "cant": ("can", "not"),
    "cannot": ("can", "not"),
    "couldnt": ("could", "not"),
    "shouldnt": ("should", "not"),
    "wouldnt": ("would", "not"),
    "hasnt": ("has", "not"),
    "havent": ("have", "not"),
    "hadnt": ("had", "not"),
    "mustnt": ("must", "not"),
    "neednt": ("need", "not"),
    "aint": ("is", "not"),
}

#: Words that negate what a sentence says (after contractions are expanded).
NEGATIONS: frozenset[str] = frozenset(
    {"not", "no", "never", "nothing", "nobody", "none", "neither", "nor", "nowhere", "without"}
)

#: Number words: a changed one changes the fact as much as a changed digit.
NUMBER_WORDS: frozenset[str] = _words(
    """zero one two three four five six seven eight nine ten eleven twelve thirteen
    fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty
    sixty seventy eighty ninety hundred thousand million billion trillion dozen half
    once twice thrice first second third fourth fifth sixth seventh eighth ninth tenth
    single double triple"""
)

#: Words that may start a sentence without being a name. Words seen in lower
#: case elsewhere count too (see :func:`name_tokens`).
COMMON_WORDS: frozenset[str] = _words(
    """a an the this that these those there here it its i me my mine we us our ours you
    your yours he him his she her hers they them their theirs one someone somebody
    everyone everybody anyone nobody nothing everything something who whom whose what
    which when where why how whenever wherever if unless whether while after before
    because since although though as at in on for from to of by with about into onto
    over under between during without within across along around through toward
    towards upon per via and or but nor so yet also then thus hence still already
    always never sometimes often usually rarely seldom generally mostly probably maybe
    perhaps please note remember today yesterday tomorrow tonight now currently
    recently lately soon later earlier each every some many most all any both either
    neither few several much more less no not yes do does did done is are was were be
    been being am has have had having can could will would shall should may might must
    need needs user users people person customer customers client clients team agent
    assistant instance use uses used using prefer prefers preferred avoid avoids keep
    make makes check try ask asks tell tells let lets go goes get gets set sets add
    run runs like likes love loves hate hates want wants know knows think thinks
    sure only even just again well very really quite too enough other another same
    such own new old good bad best last next first"""
)


def _load_proper_nouns() -> frozenset[str]:
    text = resources.files("experience_sync").joinpath("data/proper_nouns.txt").read_text("utf-8")
    return frozenset(sys.intern(w) for w in text.split("\n") if w and not w.startswith("#"))


#: Normalized tokens that are names wherever they appear, lower case included:
#: people's first names and surnames, places, nationalities, months and days
#: that SCOWL (size 70) writes only capitalized, less those whose lower-case
#: form is a common English word (SCOWL size 35: "will", "bill", "china" and
#: "nice" stay ordinary words), plus their possessives (``danas``). Generated
#: by ``core/tools/make_proper_nouns.py``; see ``data/LICENSE-SCOWL.txt``.
PROPER_NOUNS: frozenset[str] = _load_proper_nouns()


@functools.cache
def _english_words() -> frozenset[str]:
    # Loaded on first use (~115,000 words): most texts never need it.
    data = resources.files("experience_sync").joinpath("data/english_words.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode("utf-8").split())


def is_english_word(token: str) -> bool:
    """Whether a normalized token is a lower-case English word (SCOWL size 70, inflected forms too).

    ``aws``, ``emacs`` or ``kubectl`` are not: when one of them is the one word
    two memories differ by, the guards read the pair as naming two things.
    Generated by ``core/tools/make_proper_nouns.py``.
    """
    return token in _english_words()


_UNITS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen", "twenty",
)
_TENS = ("thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
# Number words to digits, so that "two kids" and "2 kids" are the same tokens.
_CARDINALS: dict[str, str] = {word: str(value) for value, word in enumerate(_UNITS)}
_CARDINALS.update({word: str(10 * value) for value, word in enumerate(_TENS, 3)})
_CONTRACTION_SET = frozenset(CONTRACTIONS)


def _fold_accents(token: str) -> str:
    decomposed = unicodedata.normalize("NFKD", token)
    folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", folded)


def similarity_tokens(normalized: str) -> list[str]:
    """Tokens of normalized text as the similarity methods compare them.

    Contractions are expanded (``dont`` -> ``do not``), number words up to
    ninety become digits (``two`` -> ``2``, so "two kids" and "2 kids" agree)
    and accents are folded (``café`` -> ``cafe``). The normalized text itself
    (what is hashed) keeps its accents.
    """
    toks = normalized.split()
    if normalized.isascii() and _CONTRACTION_SET.isdisjoint(toks):
        # The common case: no accent to fold, no contraction to expand, and
        # most often no number word either.
        if _CARDINALS.keys().isdisjoint(toks):
            return toks
        get = _CARDINALS.get
        return [get(tok, tok) for tok in toks]
    out: list[str] = []
    for tok in toks:
        expanded = CONTRACTIONS.get(tok)
        if expanded is not None:
            out.extend(expanded)
            continue
        if not tok.isascii():
            tok = _fold_accents(tok)
        out.append(_CARDINALS.get(tok, tok))
    return out


def is_number_token(token: str) -> bool:
    """Whether a normalized token is a number (bears a digit, or is a number word)."""
    if token.isalpha():
        return token in NUMBER_WORDS
    return any(ch.isdigit() for ch in token)


# Letters and digits written together, possibly joined by punctuation
# (``us-east-1``, ``t3.large``, ``gpt-4o``, ``2-week``): one code.
_CODE_RE = re.compile(r"[^\W_]+(?:[-./:_@+#]+[^\W_]+)*")


def code_keys(text: str) -> frozenset[str]:
    """The codes in ``text``: runs of letters and digits written without a space.

    A run counts when it holds both a letter and a digit; its key is its
    normalized tokens (``T3.Large`` and ``t3_large`` are ``t 3 large``). The
    guards read a code as one value: ``t3.large`` and ``t3.xlarge`` share
    their digits, yet name two machines.
    """
    s = _strip_format_chars(unicodedata.normalize("NFKC", text))
    out: set[str] = set()
    for run in _CODE_RE.findall(s):
        if run.isalpha() or run.isdigit():
            continue
        if any(ch.isdigit() for ch in run) and any(ch.isalpha() for ch in run):
            out.add(" ".join(similarity_tokens(normalize(run))))
    return frozenset(out)


def negation_count(tokens_: Iterable[str]) -> int:
    """How many negation words the (expanded) tokens hold."""
    return sum(1 for tok in tokens_ if tok in NEGATIONS)


_DETERMINERS = frozenset(
    {"the", "a", "an", "all", "your", "my", "our", "their", "this", "that", "these", "those",
     "every", "each", "any", "some", "no"}
)
_SENTENCE_END_RE = re.compile(r"[.!?;:\n]+[\s\"')\]]*")
_WORD_RE = re.compile(r"[\w'\u2019\u00ad\u200b-\u200d-]+", re.UNICODE)
# In ASCII text: a word of _WORD_RE that starts with a lower-case letter.
_ASCII_LOWER_WORD_RE = re.compile(r"(?<![\w'-])[a-z][\w'-]*", re.ASCII)


def name_tokens(text: str, known_lowercase: Iterable[str] | frozenset[str] = ()) -> set[str]:
    """Normalized tokens of the words that are names in ``text``.

    A name is a capitalized word that is not the first word of a sentence, or
    a capitalized first word that is neither in :data:`COMMON_WORDS` nor in
    ``known_lowercase`` (words the caller has seen written in lower case).
    Text written mostly in capitals (shouting, Title Case) says nothing about
    names, so no word of it counts.
    """
    known = known_lowercase if isinstance(known_lowercase, (set, frozenset)) else set(
        known_lowercase
    )
    names, initial = name_parts(text)
    return names.union(*resolve_initial_names(initial, known))


def name_parts(text: str) -> tuple[set[str], list[tuple[str, ...]]]:
    """:func:`name_tokens` in two parts, so that the text is read once.

    Returns the tokens that are names whatever the caller knows, and, for
    each capitalized sentence-initial word, its tokens outside
    :data:`COMMON_WORDS`: they are names unless the caller has seen every one
    of them in lower case (see :func:`resolve_initial_names`).
    """
    s = _strip_format_chars(unicodedata.normalize("NFKC", text))
    if s.islower():  # no character is upper case, so no word is capitalized
        return set(), []
    words: list[tuple[str, bool]] = []  # (word, starts a sentence)
    for sentence in _SENTENCE_END_RE.split(s):
        found = [m.group(0) for m in _WORD_RE.finditer(sentence)]
        for i, word in enumerate(found):
            if i == 0 and len(found) > 1 and found[1] in _DETERMINERS:
                # "Restart the worker": an imperative verb, not a name.
                continue
            words.append((word, i == 0))
    alpha = [w for w, _ in words if w[:1].isalpha()]
    capitalized = [w for w in alpha if w[:1].isupper()]
    if len(alpha) >= 3 and len(capitalized) > 0.6 * len(alpha):
        return set(), []
    names: set[str] = set()
    initial: list[tuple[str, ...]] = []
    for word, first in words:
        if not word[:1].isupper() or word == "I":
            continue
        toks = _word_tokens(word)
        if first:
            unknown = tuple(t for t in toks if t not in COMMON_WORDS)
            if unknown:  # else every token is common: never a name
                initial.append(unknown)
        else:
            names.update(toks)
    return names, initial


def resolve_initial_names(
    initial: Iterable[tuple[str, ...]], known: set[str] | frozenset[str]
) -> list[tuple[str, ...]]:
    """The groups of :func:`name_parts` that are names given the ``known`` lower-case words."""
    return [group for group in initial if any(t not in known for t in group)]


def _word_tokens(word: str) -> list[str]:
    if word.isascii() and word.isalpha():  # the common case, without full normalize
        return similarity_tokens(word.lower())
    return similarity_tokens(normalize(word))


def lowercase_words(text: str) -> set[str]:
    """Normalized tokens of the words written in lower case in ``text``."""
    if text.isascii():
        # Only the words that start in lower case, found by the regex engine;
        # when they are all plain letters, one tokenizer call does them all.
        words = _ASCII_LOWER_WORD_RE.findall(text)
        joined = " ".join(words)
        if joined.replace(" ", "").isalpha() or not words:
            return set(similarity_tokens(joined.lower()))
    plain: list[str] = []
    out: set[str] = set()
    for word in _WORD_RE.findall(text):
        if not word[:1].islower():
            continue
        if word.isascii() and word.isalpha():
            plain.append(word)
        else:
            out.update(similarity_tokens(normalize(word)))
    # Plain words hold no space: one call over them all gives the same tokens.
    out.update(similarity_tokens(" ".join(plain).lower()))
    return out


# --------------------------------------------------------------------------- guard word lists

#: Quantifiers and frequency words, by what they claim: two memories whose
#: quantifiers differ in group ("every" / "some", "always" / "rarely") state
#: different facts. ``no``, ``none`` and ``never`` are negations (NEGATIONS).
QUANTIFIER_GROUPS: dict[str, str] = {
    **dict.fromkeys(("every", "each", "all", "everyone", "everybody", "everything"), "all"),
    **dict.fromkeys(("any", "anyone", "anybody", "anything"), "any"),
    **dict.fromkeys(("some", "someone", "somebody", "something", "several"), "some"),
    **dict.fromkeys(("many", "most", "lots"), "many"),
    **dict.fromkeys(("few", "fewer", "fewest"), "few"),
    **dict.fromkeys(("always", "constantly", "invariably"), "always"),
    **dict.fromkeys(("usually", "often", "frequently", "generally", "mostly", "regularly"), "often"),
    **dict.fromkeys(("sometimes", "occasionally"), "sometimes"),
    **dict.fromkeys(("rarely", "seldom", "hardly", "scarcely"), "rarely"),
}

#: Modal verbs and words of obligation or permission, by force: "must" /
#: "may", "required" / "optional" state different rules.
MODAL_GROUPS: dict[str, str] = {
    **dict.fromkeys(
        ("must", "required", "mandatory", "obligatory", "compulsory", "need", "needs"), "must"
    ),
    **dict.fromkeys(("should", "ought", "recommended", "advised"), "should"),
    **dict.fromkeys(("may", "might", "optional", "allowed", "permitted"), "may"),
    **dict.fromkeys(("can", "could", "able"), "can"),
    **dict.fromkeys(("forbidden", "prohibited", "banned", "disallowed"), "forbidden"),
}

#: Units, each written several ways, by the one unit it names: "6 weeks" and
#: "6 months" differ by a unit, "2 TB" and "2 GB" too. The one-letter forms
#: (``s``, ``m``, ``h``, ``d``) count only right after a number.
UNIT_WORDS: dict[str, str] = {
    **dict.fromkeys(("ns", "nanosecond", "nanoseconds"), "ns"),
    **dict.fromkeys(("us", "microsecond", "microseconds"), "us"),
    **dict.fromkeys(("ms", "millisecond", "milliseconds", "msec", "msecs"), "ms"),
    **dict.fromkeys(("sec", "secs", "seconds"), "s"),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), "min"),
    **dict.fromkeys(("hr", "hrs", "hour", "hours"), "h"),
    **dict.fromkeys(("hourly",), "h"),
    **dict.fromkeys(("day", "days", "daily", "nightly"), "day"),
    **dict.fromkeys(("week", "weeks", "wk", "wks", "weekly"), "week"),
    **dict.fromkeys(("month", "months", "monthly"), "month"),
    **dict.fromkeys(("quarter", "quarters", "quarterly"), "quarter"),
    **dict.fromkeys(("year", "years", "yr", "yrs", "yearly", "annual", "annually"), "year"),
    **dict.fromkeys(("b", "byte", "bytes"), "B"),
    **dict.fromkeys(("kb", "kib", "kilobyte", "kilobytes"), "KB"),
    **dict.fromkeys(("mb", "mib", "megabyte", "megabytes"), "MB"),
    **dict.fromkeys(("gb", "gib", "gigabyte", "gigabytes"), "GB"),
    **dict.fromkeys(("tb", "tib", "terabyte", "terabytes"), "TB"),
    **dict.fromkeys(("pb", "pib", "petabyte", "petabytes"), "PB"),
    **dict.fromkeys(("kbps", "mbps", "gbps"), "bps"),
    **dict.fromkeys(("mm", "millimeter", "millimeters", "millimetre", "millimetres"), "mm"),
    **dict.fromkeys(("cm", "centimeter", "centimeters", "centimetre", "centimetres"), "cm"),
    **dict.fromkeys(("km", "kilometer", "kilometers", "kilometre", "kilometres"), "km"),
    **dict.fromkeys(("mile", "miles"), "mile"),
    **dict.fromkeys(("kg", "kilogram", "kilograms", "kilo", "kilos"), "kg"),
    **dict.fromkeys(("g", "gram", "grams"), "g"),
    **dict.fromkeys(("lb", "lbs", "pound", "pounds"), "lb"),
    **dict.fromkeys(("percent", "pct"), "%"),
    **dict.fromkeys(("usd", "dollar", "dollars"), "USD"),
    **dict.fromkeys(("eur", "euro", "euros"), "EUR"),
    **dict.fromkeys(("gbp",), "GBP"),
}
#: One-letter units that count only right after a number ("500 s", "5 m").
SHORT_UNITS: dict[str, str] = {"s": "s", "m": "min", "h": "h", "d": "day"}

#: Days of the week and months (not ``may``): a changed one changes when
#: something happens, a contradiction, not another name.
DATE_WORDS: frozenset[str] = _words(
    """monday tuesday wednesday thursday friday saturday sunday mondays tuesdays
    wednesdays thursdays fridays saturdays sundays january february march april june
    july august september october november december weekday weekdays weekend weekends"""
)


@functools.cache
def _antonym_data() -> tuple[dict[str, tuple[str, ...]], dict[str, frozenset[str]]]:
    # Loaded on first use: WordNet 3.0 antonyms (see core/tools/make_antonyms.py).
    data = resources.files("experience_sync").joinpath("data/antonyms.txt.gz").read_bytes()
    lemmas: dict[str, tuple[str, ...]] = {}
    antonyms: dict[str, frozenset[str]] = {}
    for line in gzip.decompress(data).decode("utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if parts[0] == "=":
            antonyms[parts[1]] = frozenset(parts[2:])
        else:
            lemmas[parts[0]] = tuple(parts[1:])
    return lemmas, antonyms


@functools.cache
def antonym_words() -> frozenset[str]:
    """Every word (lemma or inflected form) that has an antonym in the bundled list."""
    return frozenset(_antonym_data()[0])


def are_antonyms(a: str, b: str) -> bool:
    """Whether two normalized tokens are antonyms in WordNet 3.0 (adjectives, adverbs, verbs).

    Inflected forms count as their lemma (``approves`` / ``disapproved``);
    WordNet's indirect adjective antonyms count too (``hidden`` / ``visible``).
    The list is ``data/antonyms.txt.gz``, generated by
    ``core/tools/make_antonyms.py``; WordNet's licence is ``data/LICENSE-WordNet.txt``.
    """
    lemmas, antonyms = _antonym_data()
    la, lb = lemmas.get(a), lemmas.get(b)
    if la is None or lb is None:
        return False
    return any(not antonyms.get(x, frozenset()).isdisjoint(lb) for x in la)
