"""Text normalization: done once per memory; the normalized form is what is
hashed, compared and indexed."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_PUNCT_RE = re.compile(r"[^\w\s]+", re.UNICODE)
_SPACE_RE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Unicode NFKC, casefold, punctuation to spaces, whitespace collapsed.

    Apostrophes inside words are dropped rather than split (``don't`` ->
    ``dont``) so contractions stay one token.
    """
    s = unicodedata.normalize("NFKC", text).casefold()
    s = s.replace("\u2019", "'").replace("'", "")
    s = _PUNCT_RE.sub(" ", s).replace("_", " ")
    return _SPACE_RE.sub(" ", s).strip()


def tokens(normalized: str) -> list[str]:
    """Tokens of already normalized text."""
    return normalized.split()


def content_hash(normalized: str) -> str:
    """Stable hash of normalized text (exact-duplicate key)."""
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=16).hexdigest()
