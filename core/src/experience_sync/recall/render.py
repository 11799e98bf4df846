"""Turning hits into prompt text: the items' own words, never internal metadata.

What a model sees of a hit is its text (a memory's content, a knowledge item's
subject and content) or, for a skill, one line on how reliable it has been
across the fleet. Ids, hashes, instance names, versions and scores stay out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import SearchHit

__all__ = ["render_hits", "skill_reliability"]


def skill_reliability(skill: Mapping[str, Any]) -> str:
    """One prompt line on a skill's fleet-wide success rate (a ``Skill`` as JSON).

    ``"web_search: succeeded in 92% of 25 uses across the fleet"``; a skill
    never used says so.
    """
    name = str(skill.get("name", "")).strip() or "this tool"
    usage = skill.get("usage") or {}
    total = int(usage.get("total_invocations", 0) or 0)
    if total <= 0:
        return f"{name}: no recorded uses yet"
    rate = float(usage.get("success_rate", 0.0) or 0.0)
    uses = "use" if total == 1 else "uses"
    return f"{name}: succeeded in {round(rate * 100)}% of {total} {uses} across the fleet"


def _line(hit: SearchHit) -> str:
    if hit.kind == "skill" and hit.item.get("name"):
        return skill_reliability(hit.item)
    return " ".join(hit.text.split())


def render_hits(
    hits: Iterable[SearchHit],
    *,
    header: str | None = "Relevant things learned across the fleet:",
    max_chars: int = 4000,
) -> str:
    """Hits as a bulleted block for a prompt; empty when there are none.

    :param header: a first line (``None`` for none).
    :param max_chars: stop adding lines beyond this length.
    """
    lines: list[str] = []
    seen: set[str] = set()
    size = len(header or "")
    for hit in hits:
        text = _line(hit)
        if not text or text.casefold() in seen:
            continue
        line = f"- {text}"
        if lines and size + len(line) + 1 > max_chars:
            break
        seen.add(text.casefold())
        lines.append(line)
        size += len(line) + 1
    if not lines:
        return ""
    return "\n".join(([header] if header else []) + lines)
