"""Merge judges: who decides a near pair of memories in the grey zone.

The hub's rules (the guards of :func:`experience_sync.hub.merge.similarity.contradiction`
and the similarity threshold) decide every new memory against its best stored
candidate. A pair whose score falls in ``merge_strategy.judge_zone``, or that
the rules keep apart as another name, place or thing, can instead be handed to
the :class:`MergeJudge` named by ``merge_strategy.judge``: an LLM, the way
mem0 and Graphiti let one decide. Judges are registered through
``experience_sync_register_merge_judges``; the built-in ``rules`` judge
repeats what the rules decided (the default: nothing is asked).

The hub writes each decision into the agent's log, so replay reads it back
and never asks a judge again; a judge that raises, times out or answers
something else falls back to the rules (``docs/merging.md``, "The merge judge").
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from experience_sync.models import MergeOutcome

__all__ = ["MERGE_OUTCOMES", "JudgedPair", "MergeJudge", "RuleJudge", "Verdict"]

#: The three answers a judge may give.
MERGE_OUTCOMES: tuple[MergeOutcome, ...] = ("duplicate", "contradiction", "distinct")


@dataclass(frozen=True)
class JudgedPair:
    """A new memory and its best stored candidate, as a judge sees them.

    :param new_text: the incoming memory's content.
    :param stored_text: the stored candidate's content.
    :param stored_id: the stored candidate's memory id.
    :param score: the similarity method's score of the pair (its own scale, 0..1).
    :param near: whether the score reached the method's threshold (``False``
        for a pair found below it, inside the judge zone).
    :param rule_outcome: what the rules decided: ``duplicate``,
        ``contradiction`` or ``distinct``.
    :param rule_reason: the guard that kept the pair apart (``negation``,
        ``number``, ``name``, ``word``, ...), ``None`` for a duplicate or a
        pair below the threshold.
    :param method: the similarity method's name (``jaccard``, ``embedding``).
    """

    new_text: str
    stored_text: str
    stored_id: str
    score: float
    near: bool
    rule_outcome: MergeOutcome
    rule_reason: str | None = None
    method: str = "jaccard"


@dataclass(frozen=True)
class Verdict:
    """A judge's decision on one :class:`JudgedPair`.

    :param outcome: ``duplicate`` (merge into the stored memory),
        ``contradiction`` (the conflict strategy decides between the two
        statements) or ``distinct`` (keep both, the new one linked to the
        stored one).
    :param merged_text: for a ``duplicate``, the text the merged memory should
        read (``None``: the stored memory keeps its content).
    :param reason: a short explanation, kept in the log and the observability
        event (never parsed).
    """

    outcome: MergeOutcome
    merged_text: str | None = None
    reason: str | None = None


class MergeJudge(abc.ABC):
    """Decides a near pair of memories: duplicate, contradiction or distinct.

    The hub calls :meth:`judge` under the agent's lock, on a worker thread,
    and waits at most ``merge_strategy.judge_timeout`` seconds; an exception,
    a timeout or a verdict outside :data:`MERGE_OUTCOMES` falls back to the
    rules. One instance serves one agent's merges at a time, but instances of
    several agents may be called concurrently.
    """

    #: The name it is registered under (for messages and the log).
    name: str = "judge"
    #: ``True`` for a judge that only repeats the rules' decision: the hub
    #: then asks it nothing (the built-in ``rules``).
    rules_only: bool = False

    @abc.abstractmethod
    def judge(self, pair: JudgedPair) -> Verdict:
        """Decide ``pair``."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what the judge holds (optional)."""


class RuleJudge(MergeJudge):
    """The built-in ``rules`` judge: what the guards and the threshold decided.

    It answers every pair with its :attr:`JudgedPair.rule_outcome`, so a hub
    configured with it (the default) decides exactly as without a judge, and
    it is what every other judge falls back to.
    """

    name = "rules"
    rules_only = True

    def judge(self, pair: JudgedPair) -> Verdict:
        """The rules' own decision of ``pair``."""
        return Verdict(pair.rule_outcome, None, pair.rule_reason)
