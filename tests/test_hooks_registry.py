"""One ``test_hook_<name>`` per hook: a small plugin implements it, the plugin
manager and registry expose it, and configuration can select it by name.

End-to-end coverage of protocols, transports, similarity methods, stores, the
event filter and hub routes lives with those features; these tests pin the
hook contract itself.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click
import httpx
import numpy as np
import pytest
import uvicorn
from click.testing import CliRunner
from fastapi import FastAPI

from experience_sync import hookimpl
from experience_sync.cli import build_cli
from experience_sync.config import MergeStrategyConfig, load_config
from experience_sync.interfaces import (
    ConflictResolver,
    ContestedValue,
    Embedder,
    FloatArray,
    MockTransport,
    SimilarityMethod,
    SkillAggregator,
    SyncRequest,
    Transport,
    VectorIndex,
)
from experience_sync.models import (
    EventsRequest,
    ExperienceEvent,
    MemoryData,
    MergeResult,
    ObservabilityEvent,
)
from experience_sync.plugins import get_plugin_manager

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _side(value: Any, confidence: float, seconds: int, lamport: int, instance: str) -> ContestedValue:
    return ContestedValue(value, confidence, T0 + timedelta(seconds=seconds), lamport, instance)


def _registry() -> Any:
    return get_plugin_manager().registry


# --------------------------------------------------------------------------- merge plugins


def test_hook_register_conflict_resolvers(
    register_plugin: Callable[..., str], stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    registry = _registry()
    old = _side("tea", 0.9, 0, 5, "i1")
    new = _side("coffee", 0.3, 60, 1, "i2")

    latest = registry.create("conflict_resolvers", "latest_wins", MergeStrategyConfig())
    assert (latest.resolve(old, new).action, latest.resolve(old, new).value) == ("apply", "coffee")
    assert latest.resolve(new, old).action == "keep"  # the order is total, not arrival order

    weighted = registry.create("conflict_resolvers", "weighted_merge", MergeStrategyConfig())
    numbers = weighted.resolve(_side(1.0, 0.5, 0, 0, "i1"), _side(0.0, 0.5, 1, 0, "i2"))
    assert numbers.action == "apply" and numbers.value == pytest.approx(0.5)
    assert weighted.resolve(old, new).action == "keep"  # the surer side wins for text

    review = registry.create("conflict_resolvers", "manual_review", MergeStrategyConfig())
    assert review.resolve(old, new).action == "queue"

    class Stubborn(ConflictResolver):
        name = "stubborn"

        def resolve(self, current: ContestedValue, incoming: ContestedValue) -> Any:
            from experience_sync.interfaces import Resolution

            return Resolution("keep")

    class Plugin:
        @hookimpl
        def experience_sync_register_conflict_resolvers(self, register: Callable[..., None]) -> None:
            register("stubborn", lambda config=None: Stubborn())

    register_plugin(Plugin(), name="stubborn-plugin")
    overrides = stand_ins()
    merge = {**overrides["merge_strategy"], "conflict_resolution": "stubborn"}
    cfg = load_config(environ={}, cwd=tmp_path, **{**overrides, "merge_strategy": merge})
    resolver = _registry().create(
        "conflict_resolvers", cfg.merge_strategy.conflict_resolution, cfg.merge_strategy
    )
    assert resolver.resolve(old, new).action == "keep"
    assert _registry().get("conflict_resolvers", "stubborn").plugin == "stubborn-plugin"


def test_hook_register_skill_aggregations(
    register_plugin: Callable[..., str], stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    reports = [(0.9, 1), (0.5, 3), (0.1, 0)]
    values = {
        name: _registry().create("skill_aggregations", name, MergeStrategyConfig()).aggregate(
            reports
        )
        for name in ("max", "average", "weighted")
    }
    assert values["max"] == pytest.approx(0.9)
    assert values["average"] == pytest.approx(0.5)
    assert values["weighted"] == pytest.approx((0.9 * 1 + 0.5 * 3) / 4)
    for name in ("max", "average", "weighted"):
        aggregator = _registry().create("skill_aggregations", name, MergeStrategyConfig())
        assert aggregator.aggregate([]) == 0.0

    class Median(SkillAggregator):
        name = "median"

        def aggregate(self, reports: Sequence[tuple[float, int]]) -> float:
            ordered = sorted(p for p, _ in reports)
            return ordered[len(ordered) // 2] if ordered else 0.0

    class Plugin:
        @hookimpl
        def experience_sync_register_skill_aggregations(self, register: Callable[..., None]) -> None:
            register("median", lambda config=None: Median())

    register_plugin(Plugin(), name="median-plugin")
    overrides = stand_ins()
    merge = {**overrides["merge_strategy"], "skill_aggregation": "median"}
    cfg = load_config(environ={}, cwd=tmp_path, **{**overrides, "merge_strategy": merge})
    median = _registry().create("skill_aggregations", cfg.merge_strategy.skill_aggregation, None)
    assert median.aggregate(reports) == pytest.approx(0.5)


def test_hook_register_embedders(
    register_plugin: Callable[..., str], stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    hashing = _registry().create("embedders", "hashing", MergeStrategyConfig())
    assert isinstance(hashing, Embedder)
    texts = [
        "The user prefers concise answers",
        "the user prefers concise answers!",
        "Deploy the database migration on Friday",
    ]
    vectors = hashing.embed(texts)
    assert vectors.shape == (3, hashing.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, hashing.embed(texts))  # deterministic
    assert vectors[0] @ vectors[1] > 0.99 > vectors[0] @ vectors[2]

    class Constant(Embedder):
        name = "constant"
        dim = 4

        def embed(self, texts: Sequence[str]) -> FloatArray:
            return np.tile(np.array([1, 0, 0, 0], dtype=np.float32), (len(texts), 1))

    class Plugin:
        @hookimpl
        def experience_sync_register_embedders(self, register: Callable[..., None]) -> None:
            register("constant", lambda config=None: Constant())

    register_plugin(Plugin(), name="constant-plugin")
    overrides = stand_ins()
    merge = {**overrides["merge_strategy"], "embedder": "constant"}
    cfg = load_config(environ={}, cwd=tmp_path, **{**overrides, "merge_strategy": merge})
    embedder = _registry().create("embedders", cfg.merge_strategy.embedder, cfg.merge_strategy)
    assert embedder.embed(["a", "b"]).shape == (2, 4)


def test_hook_register_vector_indexes(
    register_plugin: Callable[..., str], stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    dim = 8
    index = _registry().create("vector_indexes", "numpy", dim)
    assert isinstance(index, VectorIndex) and len(index) == 0
    scores, ids = index.search(np.ones((1, dim), dtype=np.float32), 3)
    assert ids.tolist() == [[-1, -1, -1]]

    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(1500, dim)).astype(np.float32)  # more than the initial capacity
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index.add(list(range(100, 1600)), vectors)
    assert len(index) == 1500
    scores, ids = index.search(vectors[[0, 1234]], 2)
    assert ids[:, 0].tolist() == [100, 1334]
    assert scores[:, 0] == pytest.approx([1.0, 1.0], abs=1e-5)
    assert (scores[:, 0] >= scores[:, 1]).all()

    class Empty(VectorIndex):
        name = "empty"

        def add(self, ids: Sequence[int], vectors: FloatArray) -> None:
            pass

        def search(self, queries: FloatArray, k: int) -> Any:
            n = len(queries)
            return np.zeros((n, k), dtype=np.float32), np.full((n, k), -1, dtype=np.int64)

        def __len__(self) -> int:
            return 0

    class Plugin:
        @hookimpl
        def experience_sync_register_vector_indexes(self, register: Callable[..., None]) -> None:
            register("empty", lambda dim: Empty())

    register_plugin(Plugin(), name="empty-index")
    overrides = stand_ins()
    merge = {**overrides["merge_strategy"], "vector_index": "empty"}
    cfg = load_config(environ={}, cwd=tmp_path, **{**overrides, "merge_strategy": merge})
    assert len(_registry().create("vector_indexes", cfg.merge_strategy.vector_index, dim)) == 0


def test_hook_register_similarity_methods(
    register_plugin: Callable[..., str], stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    class Exact(SimilarityMethod):
        name = "exact"

        def __init__(self) -> None:
            self.by_text: dict[str, str] = {}

        def add(
            self,
            memory_id: str,
            normalized: str,
            embedding: FloatArray | None,
            text: str | None = None,
        ) -> None:
            self.by_text[normalized] = memory_id

        def best_match(
            self, normalized: str, embedding: FloatArray | None, text: str | None = None
        ) -> tuple[str, float] | None:
            found = self.by_text.get(normalized)
            return (found, 1.0) if found else None

    class Plugin:
        @hookimpl
        def experience_sync_register_similarity_methods(
            self, register: Callable[..., None]
        ) -> None:
            register("exact", lambda config=None: Exact())

    register_plugin(Plugin(), name="exact-plugin")
    overrides = stand_ins()
    merge = {**overrides["merge_strategy"], "similarity_method": "exact"}
    cfg = load_config(environ={}, cwd=tmp_path, **{**overrides, "merge_strategy": merge})
    method = _registry().create(
        "similarity_methods", cfg.merge_strategy.similarity_method, cfg.merge_strategy
    )
    method.add("m1", "user prefers tea", None)
    assert method.best_match("user prefers tea", None) == ("m1", 1.0)
    assert method.best_match("user prefers coffee", None) is None
    assert method.needs_embeddings is False
    # the batch and contradiction-aware entry points fall back to best_match
    matches = method.match_many([("user prefers tea", None, "User prefers tea"), ("x", None, None)])
    assert matches[0] is not None and matches[0].memory_id == "m1" and matches[1] is None


# --------------------------------------------------------------------------- instance side


def test_hook_register_protocols(
    register_plugin: Callable[..., str], stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    made: list[tuple[Any, Any]] = []

    class Plugin:
        @hookimpl
        def experience_sync_register_protocols(self, register: Callable[..., None]) -> None:
            register("carrier", lambda config, context: made.append((config, context)) or "proto")

    register_plugin(Plugin(), name="carrier-plugin")
    cfg = load_config(environ={}, cwd=tmp_path, **{**stand_ins(), "default_protocol": "carrier"})
    assert cfg.default_protocol == "carrier"
    assert "carrier" in _registry().names("protocols")
    assert _registry().create("protocols", "carrier", cfg, "ctx") == "proto"
    assert made == [(cfg, "ctx")]


def test_a_third_party_protocol_is_enabled_and_ordered_like_a_built_in(
    register_plugin: Callable[..., str], tmp_path: Path
) -> None:
    from experience_sync.client.manager import protocol_names
    from experience_sync.client.protocols import StreamingProtocol

    class Urgent(StreamingProtocol):
        """Ships only urgent events, ahead of every built-in lane."""

        name = "urgent"
        rank = -1

        @classmethod
        def enabled(cls, config: Any) -> bool:
            return bool(config.streaming.enabled)

    class Plugin:
        @hookimpl
        def experience_sync_register_protocols(self, register: Callable[..., None]) -> None:
            register("urgent", Urgent)

    register_plugin(Plugin(), name="urgent-plugin")
    both = load_config(environ={}, cwd=tmp_path, default_protocol="lumped",
                       streaming={"enabled": True})
    assert protocol_names(None, both) == ["urgent", "streaming", "lumped"]
    lumped = load_config(environ={}, cwd=tmp_path, default_protocol="lumped",
                         streaming={"enabled": False})
    assert protocol_names(None, lumped) == ["lumped"]
    # A factory that is not a SyncProtocol class is run only when named.
    assert protocol_names(["lumped", "urgent"], lumped) == ["lumped", "urgent"]


def test_hook_register_transports(
    register_plugin: Callable[..., str], stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    class Plugin:
        @hookimpl
        def experience_sync_register_transports(self, register: Callable[..., None]) -> None:
            register(
                "echo",
                lambda config, agent_id: MockTransport(
                    lambda req: MergeResult(agent_id=agent_id, events_received=req.event_count)
                ),
            )

    register_plugin(Plugin(), name="echo-plugin")
    overrides = stand_ins()
    cfg = load_config(environ={}, cwd=tmp_path, **{**overrides, "transport": {"type": "echo"}})
    transport = _registry().create("transports", cfg.transport.type, cfg, "agent-7")
    assert isinstance(transport, Transport)
    event = ExperienceEvent(source_instance="i1", event_type="memory", data=MemoryData(content="x"))
    request = SyncRequest("events", "agent-7", EventsRequest(instance_id="i1", events=[event]))
    result = transport.send(request, timeout=1.0)
    assert (result.agent_id, result.events_received) == ("agent-7", 1)
    assert transport.send_many([request, request], timeout=1.0) == [result, result]
    transport.close()
    assert transport.closed


def test_hook_filter_event(register_plugin: Callable[..., str]) -> None:
    class Redact:
        @hookimpl
        def experience_sync_filter_event(self, event: ExperienceEvent) -> ExperienceEvent | None:
            if event.event_type != "memory":
                return event
            data = event.memory.model_copy(
                update={"content": event.memory.content.replace("alice@example.com", "[email]")}
            )
            return event.model_copy(update={"data": data})

    class DropInteractions:
        @hookimpl
        def experience_sync_filter_event(self, event: ExperienceEvent) -> ExperienceEvent | None:
            return None if event.event_type == "interaction" else event

    register_plugin(Redact(), name="redact")
    register_plugin(DropInteractions(), name="drop-interactions")
    impls = get_plugin_manager().ordered_impls("experience_sync_filter_event")
    assert {i.plugin_name for i in impls} == {"redact", "drop-interactions"}

    def run_filters(event: ExperienceEvent) -> ExperienceEvent | None:
        # the contract: each implementation gets the previous one's output; None drops
        current: ExperienceEvent | None = event
        for impl in impls:
            if current is None:
                break
            current = impl.function(event=current)
        return current

    memory = ExperienceEvent(
        source_instance="i1",
        event_type="memory",
        data=MemoryData(content="Mail alice@example.com the report"),
    )
    kept = run_filters(memory)
    assert kept is not None and kept.memory.content == "Mail [email] the report"
    assert kept.event_id == memory.event_id
    chat = ExperienceEvent.model_validate(
        {"source_instance": "i1", "event_type": "interaction", "data": {"summary": "hi"}}
    )
    assert run_filters(chat) is None


# --------------------------------------------------------------------------- hub side


def test_hook_register_stores(register_plugin: Callable[..., str]) -> None:
    opened: list[str] = []

    class Plugin:
        @hookimpl
        def experience_sync_register_stores(self, register: Callable[..., None]) -> None:
            register("memory", lambda url: opened.append(url) or {"url": url})

    register_plugin(Plugin(), name="memory-store")
    registry = _registry()
    assert "memory" in registry.names("stores")
    assert registry.get("stores", "memory").plugin == "memory-store"
    assert registry.create("stores", "memory", "memory://hub") == {"url": "memory://hub"}
    assert opened == ["memory://hub"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve() -> Iterator[Callable[[FastAPI], str]]:
    """Serve an app with a real uvicorn on loopback; returns its base URL."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def _serve(app: FastAPI) -> str:
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{port}"

    yield _serve
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def test_hook_register_hub_routes(
    register_plugin: Callable[..., str], serve: Callable[[FastAPI], str]
) -> None:
    class Plugin:
        @hookimpl
        def experience_sync_register_hub_routes(self, app: Any, hub: Any) -> None:
            @app.get("/v1/hello")
            def hello() -> dict[str, str]:
                return {"hub": hub["name"]}

    register_plugin(Plugin(), name="hello-routes")
    app = FastAPI()
    get_plugin_manager().hook.experience_sync_register_hub_routes(app=app, hub={"name": "hq"})
    base = serve(app)
    response = httpx.get(f"{base}/v1/hello", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"hub": "hq"}


# --------------------------------------------------------------------------- observability


def test_hook_observe(register_plugin: Callable[..., str], caplog: pytest.LogCaptureFixture) -> None:
    seen: list[ObservabilityEvent] = []

    class Broken:
        @hookimpl
        def experience_sync_observe(self, event: ObservabilityEvent) -> None:
            raise RuntimeError("observer bug")

    class Recorder:
        @hookimpl
        def experience_sync_observe(self, event: ObservabilityEvent) -> None:
            seen.append(event)

    register_plugin(Recorder(), name="recorder")
    register_plugin(Broken(), name="broken-observer")  # called first: registered last
    pm = get_plugin_manager()
    with caplog.at_level(logging.DEBUG, logger="experience_sync"):
        event = pm.emit("sync.init", agent_id="a1", instance_id="i1", data={"protocol": "lumped"})
        pm.emit("sync.failed", agent_id="a1", instance_id="i1", data={"reason": "hub down"})
    assert [e.type for e in seen] == ["sync.init", "sync.failed"]
    assert seen[0] is event and seen[0].data == {"protocol": "lumped"}
    # the failing observer is logged and named, and stopped nobody
    assert any("broken-observer" in r.getMessage() for r in caplog.records)
    # the built-in observer logs every event, failures as warnings
    logged = {(r.name, r.levelno, getattr(r, "xs_event", None)) for r in caplog.records}
    assert ("experience_sync.events", logging.DEBUG, "sync.init") in logged
    assert ("experience_sync.events", logging.WARNING, "sync.failed") in logged


# --------------------------------------------------------------------------- CLI


def test_hook_register_commands(register_plugin: Callable[..., str]) -> None:
    class Plugin:
        @hookimpl
        def experience_sync_register_commands(self, cli: click.Group) -> None:
            @cli.command("greet")
            @click.argument("who")
            def greet(who: str) -> None:
                """Say hello."""
                click.echo(f"hello {who}")

    register_plugin(Plugin(), name="greeter")
    cli = build_cli()
    result = CliRunner().invoke(cli, ["greet", "hub"])
    assert result.exit_code == 0 and result.output == "hello hub\n"
    assert "greet" in CliRunner().invoke(cli, ["--help"]).output

    get_plugin_manager().unregister(name="greeter")
    assert "greet" not in build_cli().commands  # a plugin's commands leave with it


# --------------------------------------------------------------------------- recall


def _search_engine(tmp_path: Path, recall: Any) -> Any:
    from experience_sync.hub.engine import MergeEngine, open_store

    engine = MergeEngine(open_store(f"sqlite:///{tmp_path}/search.db"), recall=recall)
    events = [
        ExperienceEvent.model_validate(
            {"event_id": f"e{i}", "timestamp": datetime(2026, 1, 1, 0, 0, i, tzinfo=timezone.utc),
             "source_instance": "i1", "event_type": "memory", "data": {"content": text}}
        )
        for i, text in enumerate(
            ["Deploys run every Friday afternoon",
             "Friday deploys need a second reviewer before they run",
             "Lunch is served at noon"]
        )
    ]
    engine.ingest_events("a", EventsRequest(instance_id="i1", events=events))
    return engine


def test_hook_register_rankers(register_plugin: Callable[..., str], tmp_path: Path) -> None:
    from experience_sync.recall import Corpus, Ranker, SearchQuery

    class Newest(Ranker):
        """Ranks every memory newest first, whatever the query."""

        name = "newest"

        def __init__(self, config: Any) -> None:
            self.config = config

        def rank(self, corpus: Corpus, query: SearchQuery, limit: int) -> list[Any]:
            keys = [("memory", f"m00000000010000{i}") for i in (2, 1, 0)]
            return [(k, 1.0) for k in keys if k in corpus.docs(keys)][:limit]

    made: list[Any] = []

    class Plugin:
        @hookimpl
        def experience_sync_register_rankers(self, register: Callable[..., None]) -> None:
            register("newest", lambda config: made.append(config) or Newest(config))

    register_plugin(Plugin(), name="newest-plugin")
    cfg = load_config(environ={}, cwd=tmp_path, recall={"rankers": ["newest"]})
    assert cfg.recall.rankers == ["newest"]
    engine = _search_engine(tmp_path, cfg.recall)
    try:
        results = engine.search("a", SearchQuery(q="anything at all", k=2))
        assert [h.text for h in results.hits] == [
            "Lunch is served at noon", "Friday deploys need a second reviewer before they run"]
        assert results.rankers == ["newest"] and results.hits[0].rankers == ["newest"]
        assert made == [cfg.recall]  # the factory gets the recall section
    finally:
        engine.close()
    # Fused with the built-in bm25 (newest weighing twice): a document both rank high wins.
    fused = load_config(
        environ={}, cwd=tmp_path,
        recall={"rankers": ["bm25", "newest"], "weights": {"newest": 2.0}},
    )
    (tmp_path / "fused").mkdir()
    engine = _search_engine(tmp_path / "fused", fused.recall)
    try:
        hits = engine.search("a", SearchQuery(q="friday deploys", k=3)).hits
        assert hits[0].text == "Friday deploys need a second reviewer before they run"
        assert hits[0].rankers == ["bm25", "newest"]
    finally:
        engine.close()
    with pytest.raises(Exception, match="unknown ranker 'nope'"):
        load_config(environ={}, cwd=tmp_path, recall={"rankers": ["nope"]})


def test_hook_register_rerankers(register_plugin: Callable[..., str], tmp_path: Path) -> None:
    from experience_sync.recall import Reranker, SearchHit, SearchQuery

    class Shortest(Reranker):
        """Puts the shortest hit first and drops hits longer than 40 characters."""

        name = "shortest"

        def rerank(self, query: SearchQuery, hits: list[SearchHit]) -> list[SearchHit]:
            return sorted((h for h in hits if len(h.text) <= 40), key=lambda h: len(h.text))

    class Plugin:
        @hookimpl
        def experience_sync_register_rerankers(self, register: Callable[..., None]) -> None:
            register("shortest", lambda config: Shortest())

    register_plugin(Plugin(), name="shortest-plugin")
    cfg = load_config(environ={}, cwd=tmp_path, recall={"rerankers": ["shortest"]})
    engine = _search_engine(tmp_path, cfg.recall)
    try:
        hits = engine.search("a", SearchQuery(q="friday deploys run", k=5)).hits
        assert [h.text for h in hits] == ["Deploys run every Friday afternoon"]
    finally:
        engine.close()
    with pytest.raises(Exception, match="unknown reranker 'nope'"):
        load_config(environ={}, cwd=tmp_path, recall={"rerankers": ["nope"]})


def test_hook_register_config_sections(register_plugin: Callable[..., str], tmp_path: Path) -> None:
    from pydantic import Field, SecretStr, ValidationInfo, field_validator

    from experience_sync.api import ConfigError, ConfigSection, check_url
    from experience_sync.client.manager import with_endpoint

    class CarrierConfig(ConfigSection):
        """A transport plugin's own table, ``[transport.carrier]``."""

        _url_fields = ("url",)
        endpoint_field = "url"

        url: str | None = None
        token: SecretStr | None = None
        window: int = Field(default=4, ge=1)

        @field_validator("url")
        @classmethod
        def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
            return check_url(value, "https", "http", False)

    class RackConfig(ConfigSection):
        shelves: int = 2

    class Plugin:
        @hookimpl
        def experience_sync_register_config_sections(self, register: Callable[..., None]) -> None:
            register("transport.carrier", CarrierConfig)
            register("rack", RackConfig)

    # before the plugin is installed, its tables are unknown sections
    with pytest.raises(ConfigError, match=r"transport\.carrier.*no installed plugin provides"):
        load_config(environ={}, cwd=tmp_path, transport={"carrier": {"window": 2}})

    register_plugin(Plugin(), name="carrier-plugin")
    cfg = load_config(
        environ={"EXPERIENCE_SYNC_RACK__SHELVES": "5"},
        cwd=tmp_path,
        transport={"carrier": {"url": "https://u:pw-1@hub.example.com/x", "token": "tok-1"}},
    )
    carrier = cfg.section("transport.carrier", CarrierConfig)
    assert isinstance(carrier, CarrierConfig) and carrier.window == 4
    assert carrier.token is not None and carrier.token.get_secret_value() == "tok-1"
    assert cfg.section("rack", RackConfig).shelves == 5
    public = cfg.public_dict()
    assert "pw-1" not in str(public) and "tok-1" not in str(public) and "pw-1" not in repr(cfg)
    assert public["transport"]["carrier"]["window"] == 4
    # an absent table gives the model's defaults
    bare = load_config(environ={}, cwd=tmp_path)
    assert bare.section("transport.carrier", CarrierConfig).url is None
    # --endpoint reaches a plugin transport's endpoint_field
    moved = with_endpoint(bare, "http://127.0.0.1:8787")
    assert moved.section("transport.carrier", CarrierConfig).url == "http://127.0.0.1:8787"
    # a bad field fails at load with its dotted path and the model's reason
    with pytest.raises(ConfigError) as info:
        load_config(environ={}, cwd=tmp_path, transport={"carrier": {"window": 0}}, rack={"shelvs": 1})
    paths = {path for path, _ in info.value.errors}
    assert paths == {"transport.carrier.window", "rack.shelvs"}
    with pytest.raises(ConfigError, match="plain http:// to non-loopback host"):
        load_config(environ={}, cwd=tmp_path, transport={"carrier": {"url": "http://hub.example.com"}})
