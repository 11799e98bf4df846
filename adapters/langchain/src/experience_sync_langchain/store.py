"""A LangGraph ``BaseStore`` whose long-term memory is the fleet's.

::

    store = ExperienceSyncStore(manager, "support-bot-1")
    agent = create_react_agent(model, tools, store=store)   # get_store() in tools, LangMem...

What each operation does:

* **put** (``PutOp`` with a value): the value is kept in this store (so ``get``
  answers it exactly) and recorded with ``manager.record_memory``: its text
  (``value["content"]`` when it is a string, which is what LangMem stores,
  else the value as JSON) tagged ``langgraph``, ``lg.ns:<prefix>`` for every
  prefix of the namespace (labels joined by ``.``) and ``lg.item:<JSON of
  [*namespace, key]>``, so that every instance of the source agent finds it
  again, in the same namespace under the same key.
* **search with a query**: ``manager.search`` on the instance's replica:
  ranked, offline, read-your-writes. A hit put through any instance's store
  comes back in its namespace under its key; its value is what was put (this
  instance's own puts) or ``{"content": hit.text}`` (other instances'). With
  ``fleet_learning=True`` (the default), what the fleet learned otherwise
  (memories recorded by other adapters, knowledge, skills) comes back too, in
  the namespace searched, keyed ``<kind>:<id>``, value ``{"content": hit.text}``.
  ``score`` is the hit's score.
* **search without a query**, **get** and **list_namespaces** read what this
  store holds: its own puts since it was made, and the items its searches
  returned. (The replica is a ranked index; it is not enumerated.)
* **delete** (``PutOp`` with ``value=None``) is local: the item leaves this
  store, and this store's searches no longer return it, but the memory
  recorded at the hub stays and other instances still find it.

``filter`` applies to the value (``{"field": v}``, ``{"field": {"$gt": 1}}``:
``$eq``, ``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte``); ``limit`` and
``offset`` page the result; ``index`` and TTLs are ignored (every put is
recorded and searchable). ``abatch`` runs the same code as ``batch`` inline:
recording appends to the local outbox and searching reads a local SQLite file.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

try:
    from langgraph.store.base import (
        BaseStore,
        GetOp,
        Item,
        ListNamespacesOp,
        MatchCondition,
        Op,
        PutOp,
        Result,
        SearchItem,
        SearchOp,
        validate_op_namespace,
    )
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "experience_sync_langchain.ExperienceSyncStore needs LangGraph: "
        "pip install 'experience-sync-langchain[langgraph]'"
    ) from exc

from experience_sync.api import SearchHit

__all__ = ["ExperienceSyncStore", "item_tag", "namespace_tags", "value_text"]

#: Tag on every memory the store records.
STORE_TAG = "langgraph"
_NS_PREFIX = "lg.ns:"
_ITEM_PREFIX = "lg.item:"
#: Most hits one replica search returns (the search route's ``k`` limit).
_MAX_K = 100


def namespace_tags(namespace: Sequence[str]) -> list[str]:
    """The tags of every prefix of ``namespace`` (``lg.ns:a``, ``lg.ns:a.b``, ...)."""
    return [_NS_PREFIX + ".".join(namespace[:i]) for i in range(1, len(namespace) + 1)]


def item_tag(namespace: Sequence[str], key: str) -> str:
    """The tag naming an item: ``lg.item:`` and the JSON of ``[*namespace, key]``."""
    return _ITEM_PREFIX + json.dumps([*namespace, key], ensure_ascii=False)


def _items_of_tags(tags: Iterable[Any]) -> list[tuple[tuple[str, ...], str]]:
    out: list[tuple[tuple[str, ...], str]] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.startswith(_ITEM_PREFIX):
            continue
        try:
            parts = json.loads(tag[len(_ITEM_PREFIX):])
        except ValueError:
            continue
        if isinstance(parts, list) and len(parts) >= 2 and all(isinstance(p, str) for p in parts):
            out.append((tuple(parts[:-1]), parts[-1]))
    return out


def value_text(value: Mapping[str, Any]) -> str:
    """The text recorded for a value: ``value["content"]`` when it is text, else JSON."""
    content = value.get("content")
    if isinstance(content, str) and content.strip():
        return content
    data = content if content is not None else value
    return json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)


def _compare(actual: Any, wanted: Any) -> bool:
    # The filter semantics of LangGraph's stores: nested mappings match field by
    # field, "$op" mappings compare, lists match element-wise, the rest by equality.
    if isinstance(wanted, Mapping):
        if any(str(k).startswith("$") for k in wanted):
            return all(_operator(actual, op, v) for op, v in wanted.items())
        return isinstance(actual, Mapping) and all(
            _compare(actual.get(k), v) for k, v in wanted.items()
        )
    if isinstance(wanted, (list, tuple)):
        return (
            isinstance(actual, (list, tuple))
            and len(actual) == len(wanted)
            and all(_compare(a, w) for a, w in zip(actual, wanted, strict=True))
        )
    return bool(actual == wanted)


def _operator(actual: Any, op: str, wanted: Any) -> bool:
    if op == "$eq":
        return bool(actual == wanted)
    if op == "$ne":
        return bool(actual != wanted)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        try:
            a, w = float(actual), float(wanted)
        except (TypeError, ValueError):
            return False
        return {"$gt": a > w, "$gte": a >= w, "$lt": a < w, "$lte": a <= w}[op]
    raise ValueError(f"unsupported filter operator {op!r}")


def _matches(value: Mapping[str, Any], where: Mapping[str, Any] | None) -> bool:
    return not where or all(_compare(value.get(k), v) for k, v in where.items())


def _condition_matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    if condition.match_type == "prefix":
        pairs = zip(namespace, path, strict=False)
    elif condition.match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path), strict=False)
    else:
        raise ValueError(f"unsupported match type {condition.match_type!r}")
    return all(p == "*" or n == p for n, p in pairs)


def _time(value: Any, default: datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return default
    return default


class ExperienceSyncStore(BaseStore):
    """A LangGraph store backed by an experience-sync instance (see the module docs).

    :param manager: an initialised ``ExperienceSyncManager``.
    :param instance_id: the instance to record for and search from.
    :param fleet_learning: query searches also return what the fleet learned
        outside any store (other adapters' memories, knowledge, skills).
    :param kinds: the kinds of fleet learning searched (``memory``,
        ``knowledge``, ``skill``; default all three).
    :param knowledge_status: which knowledge a search returns (``integrated``,
        ``pending`` or ``all``), as ``manager.search``.
    :param tags: tags added to every memory the store records.
    :param importance: the importance (and so the priority) of recorded memories.
    :param confidence: the confidence of recorded memories.
    """

    def __init__(
        self,
        manager: Any,
        instance_id: str,
        *,
        fleet_learning: bool = True,
        kinds: Sequence[str] | None = None,
        knowledge_status: str = "integrated",
        tags: Sequence[str] = (),
        importance: float = 0.6,
        confidence: float = 0.8,
    ) -> None:
        self.manager = manager
        self.instance_id = instance_id
        self.fleet_learning = fleet_learning
        self.kinds = list(kinds) if kinds is not None else None
        self.knowledge_status = knowledge_status
        self.tags = list(tags)
        self.importance = importance
        self.confidence = confidence
        # This store's own puts (what get() answers exactly), the keys it
        # deleted (hidden from its searches), and fleet items its searches returned.
        self._own: dict[tuple[tuple[str, ...], str], Item] = {}
        self._deleted: set[tuple[tuple[str, ...], str]] = set()
        self._seen: dict[tuple[tuple[str, ...], str], Item] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ batch

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``GetOp``, ``PutOp``, ``SearchOp`` and ``ListNamespacesOp`` in order."""
        results: list[Result] = []
        for op in ops:
            validate_op_namespace(op)
            if isinstance(op, GetOp):
                results.append(self._get(op))
            elif isinstance(op, PutOp):
                self._put(op)
                results.append(None)
            elif isinstance(op, SearchOp):
                results.append(self._search(op))
            elif isinstance(op, ListNamespacesOp):
                results.append(self._list_namespaces(op))
            else:
                raise ValueError(f"unknown store operation: {type(op).__name__}")
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """As :meth:`batch` (inline: every operation is local and short)."""
        return self.batch(ops)

    # ------------------------------------------------------------------ ops

    def _get(self, op: GetOp) -> Item | None:
        where = (tuple(op.namespace), op.key)
        with self._lock:
            return self._own.get(where) or self._seen.get(where)

    def _put(self, op: PutOp) -> None:
        namespace, key = tuple(op.namespace), str(op.key)
        where = (namespace, key)
        if op.value is None:
            with self._lock:
                self._own.pop(where, None)
                self._seen.pop(where, None)
                self._deleted.add(where)
            return
        value = dict(op.value)
        now = datetime.now(timezone.utc)
        self.manager.record_memory(
            self.instance_id,
            value_text(value),
            tags=[STORE_TAG, *self.tags, *namespace_tags(namespace), item_tag(namespace, key)],
            importance=self.importance,
            confidence=self.confidence,
            context={"trigger": "langgraph.store.put"},
        )
        with self._lock:
            before = self._own.get(where)
            self._own[where] = Item(
                value=value,
                key=key,
                namespace=namespace,
                created_at=before.created_at if before is not None else now,
                updated_at=now,
            )
            self._deleted.discard(where)
            self._seen.pop(where, None)

    def _search(self, op: SearchOp) -> list[SearchItem]:
        prefix = tuple(op.namespace_prefix)
        limit, offset = max(op.limit, 0), max(op.offset, 0)
        if not op.query or not op.query.strip():
            with self._lock:
                held = {**self._seen, **self._own}
            items = sorted(
                (i for (ns, _), i in held.items() if ns[: len(prefix)] == prefix),
                key=lambda i: i.updated_at,
                reverse=True,
            )
            return [
                SearchItem(i.namespace, i.key, i.value, i.created_at, i.updated_at)
                for i in items
                if _matches(i.value, op.filter)
            ][offset : offset + limit]
        found = self._ranked(prefix, op.query, op.filter, offset + limit)
        return found[offset : offset + limit]

    def _ranked(
        self,
        prefix: tuple[str, ...],
        query: str,
        where: Mapping[str, Any] | None,
        wanted: int,
    ) -> list[SearchItem]:
        if wanted <= 0:
            return []
        # Over-fetch: hits are then filtered by namespace and value, old
        # versions and deleted keys dropped.
        k = min(_MAX_K, wanted * 3 + 10)
        hits: list[SearchHit] = self.manager.search(
            self.instance_id,
            query,
            k,
            kinds=(self.kinds or None) if self.fleet_learning else ["memory"],
            tags=None if self.fleet_learning or not prefix else [namespace_tags(prefix)[-1]],
            knowledge_status=self.knowledge_status,
        )
        now = datetime.now(timezone.utc)
        chosen: dict[tuple[tuple[str, ...], str], SearchItem] = {}
        for hit in hits:
            for item in self._items_of_hit(hit, prefix, now):
                if not _matches(item.value, where):
                    continue
                where_key = (item.namespace, item.key)
                have = chosen.get(where_key)
                # Several versions of one item (a key put again): the latest
                # wins; hits arrive best first, so ties keep the better score.
                if have is None or item.updated_at > have.updated_at:
                    chosen[where_key] = item
        ranked = sorted(chosen.values(), key=lambda i: -(i.score or 0.0))
        with self._lock:
            for item in ranked:
                if (item.namespace, item.key) not in self._own:
                    self._seen[(item.namespace, item.key)] = item
        return ranked

    def _items_of_hit(
        self, hit: SearchHit, prefix: tuple[str, ...], now: datetime
    ) -> list[SearchItem]:
        """The store items a hit stands for, within ``prefix`` (none, one, or more)."""
        created = _time(hit.item.get("created_at"), now)
        updated = _time(hit.item.get("updated_at"), created)
        named = _items_of_tags(hit.item.get("tags", ())) if hit.kind == "memory" else []
        if not named:
            if not self.fleet_learning:
                return []
            # Learning no store put: shown where it was searched for.
            return [SearchItem(prefix or ("fleet",), f"{hit.kind}:{hit.id}",
                               {"content": hit.text}, created, updated, hit.score)]
        out: list[SearchItem] = []
        with self._lock:
            for namespace, key in named:
                if namespace[: len(prefix)] != prefix or (namespace, key) in self._deleted:
                    continue
                own = self._own.get((namespace, key))
                if own is None:
                    out.append(SearchItem(namespace, key, {"content": hit.text}, created,
                                          updated, hit.score))
                elif value_text(own.value) == hit.text:
                    out.append(SearchItem(namespace, key, own.value, own.created_at,
                                          own.updated_at, hit.score))
                # else: an older version of an item this store has since put again
        return out

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        with self._lock:
            spaces = {ns for ns, _ in self._own} | {ns for ns, _ in self._seen}
        if op.match_conditions:
            spaces = {
                ns for ns in spaces if all(_condition_matches(c, ns) for c in op.match_conditions)
            }
        if op.max_depth is not None:
            spaces = {ns[: op.max_depth] for ns in spaces}
        return sorted(spaces)[op.offset : op.offset + op.limit]
