"""Small helpers for framework adapters that record through an ``ExperienceSyncManager``.

The CrewAI and LangChain adapters (and any third-party adapter) need the same
three things: clip a text to a size limit, call a manager method with only the
options it accepts, and track each tool's success rate to report it as the
skill's proficiency.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["SuccessRates", "clip", "fit_kwargs"]


def clip(text: str, limit: int) -> str:
    """``text`` stripped and cut to ``limit`` characters, marked with an ellipsis when cut."""
    text = text.strip()
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "\u2026"


#: Parameter names of each function seen, and whether it takes ``**kwargs``;
#: keyed by the underlying function so bound methods of many managers share an entry.
_SIGNATURES: dict[Any, tuple[frozenset[str], bool]] = {}
#: Options that are never passed through a manager method's ``**extra``
#: (for ``record_interaction`` those would become fields of the interaction).
_NOT_EXTRA = frozenset({"priority", "context"})


def fit_kwargs(func: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` without the options ``func`` does not take.

    Lets an adapter pass a priority or a context where the manager method
    accepts one, and stay compatible with managers whose methods do not; for
    methods with ``**extra`` (``record_interaction``), ``priority`` and
    ``context`` are not passed as extra fields. A function whose signature
    cannot be read gets ``kwargs`` unchanged.
    """
    key = getattr(func, "__func__", func)
    sig = _SIGNATURES.get(key)
    if sig is None:
        try:
            params = inspect.signature(func).parameters
        except (TypeError, ValueError):
            return kwargs
        names = frozenset(
            n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )
        var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
        sig = _SIGNATURES[key] = (names, var_kw)
    names, var_kw = sig
    return {k: v for k, v in kwargs.items() if k in names or (var_kw and k not in _NOT_EXTRA)}


class SuccessRates:
    """Thread-safe success counts per ``(instance, skill)``.

    A tool's observed success rate is the most direct measure of how well the
    instance uses it, so it is what the adapters report as the proficiency.
    Skill names are compared case-insensitively.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}
        self._lock = threading.Lock()

    def observe(self, instance_id: str, skill: str, success: bool) -> float:
        """Count one use; returns the success rate including it."""
        key = (instance_id, skill.casefold())
        with self._lock:
            uses, successes = self._counts.get(key, (0, 0))
            uses, successes = uses + 1, successes + (1 if success else 0)
            self._counts[key] = (uses, successes)
        return successes / uses
