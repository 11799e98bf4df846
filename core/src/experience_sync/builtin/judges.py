"""Built-in merge judge ``rules`` (see :mod:`experience_sync.merge_judges`)."""

from __future__ import annotations

from experience_sync.hookspecs import Register, hookimpl
from experience_sync.merge_judges import RuleJudge


@hookimpl
def experience_sync_register_merge_judges(register: Register) -> None:
    """Register ``rules``: the guards and the similarity threshold decide."""
    register("rules", lambda config=None: RuleJudge())
