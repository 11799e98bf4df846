"""The hub's side of the merge judge: which pairs it sees, its timeout, its fallback, the log.

:class:`JudgeDesk` holds one agent's :class:`~experience_sync.merge_judges.MergeJudge`
(``merge_strategy.judge``). :class:`~experience_sync.hub.merge.memory.MemoryMerger`
asks it about each new memory's best stored candidate when the pair is in the
judge zone (``merge_strategy.judge_zone``, on the similarity score) or when
the rules keep it apart as another name, place or thing. The judge runs on a
worker thread and gets ``merge_strategy.judge_timeout`` seconds; an
exception, a timeout or a verdict outside the three outcomes falls back to
the rules, emits ``merge.judge_fallback`` and is counted in ``/metrics``.

Every decision the judge made is a :class:`Judgement`, logged with its request
(log kind ``judgement``, id ``judge:<event_id>``). Replay reads it back into
:attr:`MergeContext.judgements <experience_sync.hub.merge.conflicts.MergeContext>`
and applies it without asking any judge; a pair that has none is decided by
the rules, as its fallback was.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from experience_sync.config import MergeStrategyConfig
from experience_sync.interfaces import FloatArray, SimilarityMatch, SimilarityMethod
from experience_sync.merge_judges import MERGE_OUTCOMES, JudgedPair, MergeJudge, Verdict
from experience_sync.models import MergeOutcome
from experience_sync.plugins import ExperienceSyncPluginManager

if TYPE_CHECKING:
    from experience_sync.hub.merge.conflicts import MergeContext

__all__ = ["JUDGEMENT_KIND", "JudgeDesk", "Judgement", "judgement_entry_id"]

log = logging.getLogger("experience_sync.hub.judge")

#: The log entry kind of a judge's decision.
JUDGEMENT_KIND: Final = "judgement"

#: Calls still running after their timeout, across the process, beyond which a
#: judge is not called at all (fallback reason ``overloaded``): a judge that
#: hangs must not pile up threads.
MAX_ABANDONED_CALLS = 16

_abandoned: set[threading.Thread] = set()
_abandoned_lock = threading.Lock()


def judgement_entry_id(event_id: str) -> str:
    """The log entry id of the judgement of the memory event ``event_id``."""
    return f"judge:{event_id}"


@dataclass(frozen=True)
class Judgement:
    """A judge's decision of one new memory against one stored memory, as logged.

    :param event_id: the new memory's event.
    :param memory_id: the stored memory it was judged against.
    :param outcome: ``duplicate``, ``contradiction`` or ``distinct``.
    :param merged_text: for a duplicate, the text the merged memory reads.
    :param reason: the judge's explanation.
    :param judge: the judge's registered name.
    :param score: the pair's similarity score.
    """

    event_id: str
    memory_id: str
    outcome: MergeOutcome
    merged_text: str | None
    reason: str | None
    judge: str
    score: float

    def body(self) -> str:
        """The log entry body (JSON)."""
        return json.dumps(
            {
                "event_id": self.event_id, "memory_id": self.memory_id, "outcome": self.outcome,
                "merged_text": self.merged_text, "reason": self.reason, "judge": self.judge,
                "score": self.score,
            },
            sort_keys=True,
        )

    @classmethod
    def from_body(cls, body: str) -> Judgement:
        """Read a logged judgement back."""
        raw = json.loads(body)
        outcome = raw["outcome"]
        if outcome not in MERGE_OUTCOMES:
            raise ValueError(f"a logged judgement with outcome {outcome!r}")
        return cls(
            str(raw["event_id"]), str(raw["memory_id"]), outcome, raw.get("merged_text"),
            raw.get("reason"), str(raw.get("judge", "")), float(raw.get("score", 0.0)),
        )


class _Fallback(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class JudgeDesk:
    """One agent's merge judge, the zone it judges and its fallback to the rules."""

    def __init__(self, strategy: MergeStrategyConfig, pm: ExperienceSyncPluginManager) -> None:
        self.name = strategy.judge
        self.judge: MergeJudge = pm.registry.create("merge_judges", strategy.judge, strategy)
        #: Whether any pair is asked about (not with ``rules``).
        self.active = not getattr(self.judge, "rules_only", False)
        self.low, self.high = strategy.judge_zone
        self.timeout = strategy.judge_timeout

    def probe(
        self, method: SimilarityMethod, norm: str, embedding: FloatArray | None, text: str
    ) -> SimilarityMatch | None:
        """The best candidate at or above the zone's low end, for a memory the method matched to none.

        ``None`` when the zone starts at or above the method's threshold.
        """
        if self.low >= method.threshold:
            return None
        return method.match_at(norm, embedding, text, self.low)

    def wants(self, pair: JudgedPair) -> bool:
        """Whether ``pair`` goes to the judge.

        A pair whose score is in the zone does; so does a near pair the rules
        keep apart as another name, place or thing (``distinct``), whatever
        its score: only meaning can tell a paraphrase from a swapped entity.
        """
        if pair.near and pair.rule_outcome == "distinct" and pair.rule_reason is not None:
            return True
        return self.low <= pair.score <= self.high

    def decide(
        self, ctx: MergeContext, event_id: str, instance_id: str, pair: JudgedPair
    ) -> Judgement | None:
        """Ask the judge about ``pair``; ``None`` when the rules decide instead (counted).

        A decision is recorded in ``ctx.judgements`` (the engine logs it with
        the request) and emits ``merge.judged``; a fallback emits
        ``merge.judge_fallback`` with its reason (``error``, ``timeout``,
        ``invalid``, ``overloaded``).
        """
        started = time.perf_counter()
        try:
            verdict = self._checked(self._call(pair))
        except _Fallback as fb:
            log.warning(
                "merge judge %r fell back to the rules (%s): %s", self.name, fb.reason, fb.detail
            )
            ctx.notices.append(("merge.judge_fallback", instance_id, {
                "judge": self.name, "reason": fb.reason, "error": fb.detail[:500],
                "event_id": event_id, "memory_id": pair.stored_id,
                "rule_outcome": pair.rule_outcome,
            }))
            return None
        seconds = time.perf_counter() - started
        merged = verdict.merged_text if verdict.outcome == "duplicate" else None
        judgement = Judgement(
            event_id, pair.stored_id, verdict.outcome, merged,
            verdict.reason if isinstance(verdict.reason, str) else None, self.name, pair.score,
        )
        ctx.judgements[event_id] = judgement
        ctx.notices.append(("merge.judged", instance_id, {
            "judge": self.name, "event_id": event_id, "memory_id": pair.stored_id,
            "outcome": verdict.outcome, "rule_outcome": pair.rule_outcome,
            "score": round(pair.score, 4), "seconds": round(seconds, 4),
            "merged_text": merged is not None,
        }))
        return judgement

    def _call(self, pair: JudgedPair) -> Any:
        with _abandoned_lock:
            for thread in [t for t in _abandoned if not t.is_alive()]:
                _abandoned.discard(thread)
            if len(_abandoned) >= MAX_ABANDONED_CALLS:
                raise _Fallback(
                    "overloaded", f"{len(_abandoned)} earlier judge calls are still running"
                )
        box: list[tuple[bool, Any]] = []

        def run() -> None:
            try:
                box.append((True, self.judge.judge(pair)))
            except BaseException as exc:  # reported to the merging thread
                box.append((False, exc))

        # A daemon thread, not a pool: a call that never returns must not
        # keep the process from exiting.
        thread = threading.Thread(target=run, name=f"xs-judge-{self.name}", daemon=True)
        thread.start()
        thread.join(self.timeout)
        if thread.is_alive():
            with _abandoned_lock:
                _abandoned.add(thread)
            raise _Fallback("timeout", f"no verdict within {self.timeout:g} s")
        ok, value = box[0]
        if not ok:
            raise _Fallback("error", f"{type(value).__name__}: {value}")
        return value

    @staticmethod
    def _checked(verdict: Any) -> Verdict:
        if not isinstance(verdict, Verdict):
            raise _Fallback("invalid", f"the judge returned {type(verdict).__name__}, not a Verdict")
        if verdict.outcome not in MERGE_OUTCOMES:
            raise _Fallback("invalid", f"the judge answered {verdict.outcome!r}")
        merged = verdict.merged_text
        if merged is not None and (not isinstance(merged, str) or not merged.strip()):
            raise _Fallback("invalid", "the judge's merged_text is not a non-blank string")
        return verdict

    def close(self) -> None:
        """Release the judge."""
        self.judge.close()
