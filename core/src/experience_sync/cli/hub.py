"""Built-in CLI commands of the hub: ``serve``, ``token``, ``review``, ``replay``, ``state``.

They work on a store URL (``--store sqlite:///./hub.db``). ``review`` and
``replay`` open the store directly: run them against a stopped hub, or use
the HTTP review endpoints of a running one, so that two processes do not
merge into the same agent at once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from experience_sync.errors import ConfigError, PluginError

if TYPE_CHECKING:
    from experience_sync.config import MergeStrategyConfig, RecallConfig, RetentionConfig
    from experience_sync.hub.web.auth import Scope
    from experience_sync.interfaces import Store

DEFAULT_STORE = "sqlite:///./hub.db"
_T = TypeVar("_T")

_store_option = click.option(
    "--store",
    "store_url",
    default=DEFAULT_STORE,
    show_default=True,
    help="Hub store URL; the scheme picks the store plugin.",
)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _guard(fn: Callable[[], _T]) -> _T:
    try:
        return fn()
    except (ConfigError, PluginError, ValueError, OSError) as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


def open_store(url: str) -> Store:
    """Open the store at ``url`` through the store plugin registered for its scheme."""
    from experience_sync.plugins import get_plugin_manager

    scheme = url.split(":", 1)[0] if ":" in url else ""
    if not scheme:
        raise ValueError(f"{url!r} is not a store URL (e.g. sqlite:///./hub.db)")
    store: Store = get_plugin_manager().registry.create("stores", scheme, url)
    return store


def store_open_error(url: str, exc: BaseException) -> str:
    """One line saying which store file could not be opened, and why."""
    from experience_sync.config import mask_url

    cause = str(exc) or type(exc).__name__
    path = Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None
    if path is not None:
        folder = path.parent
        try:
            if os.statvfs(folder).f_flag & os.ST_RDONLY:
                cause += ": the file system is read-only"
            elif not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
                cause += ": the file or its folder is not writable"
        except OSError as err:
            cause += f": {err.strerror or err}"
        return f"cannot open the hub's store {path}: {cause}"
    return f"cannot open the hub's store {mask_url(url)}: {cause}"


def _strategy(config_file: str | None, **overrides: Any) -> MergeStrategyConfig:
    from experience_sync.config import load_config

    wanted = {k: v for k, v in overrides.items() if v is not None}
    return load_config(config_file, merge_strategy=wanted).merge_strategy


def _recall(config_file: str | None) -> RecallConfig:
    from experience_sync.config import load_config

    return load_config(config_file).recall


def _retention(config_file: str | None) -> RetentionConfig:
    from experience_sync.config import load_config

    return load_config(config_file).retention


def _dump(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


# ---------------------------------------------------------------------- serve


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8787, show_default=True, type=int)
@_store_option
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config (merge_strategy).")
@click.option("--no-auth", is_flag=True, help="No tokens: loopback addresses only.")
@click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False))
@click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False))
@click.option("--max-body-bytes", type=int, default=None, help="Cap on a request body (413 beyond).")
@click.option("--max-decompressed-bytes", type=int, default=None, help="Cap on a decompressed body (413 beyond).")
@click.option("--max-pending", type=click.IntRange(min=1), default=None,
              help="HTTP units one agent may have merging or waiting (503 with Retry-After beyond; default 64).")
@click.option("--gc-gen0", type=click.IntRange(min=0), default=None,
              help="Allocations between young garbage collections (default 10000; 0 keeps Python's 700).")
@click.option("--max-loaded-memories", type=click.IntRange(min=1), default=None,
              help="Memories kept loaded across agents; beyond it the least recently used agents "
                   "are unloaded and loaded again at their next request (default: no bound).")
@click.option("--log-level", default="info", show_default=True)
@click.option("--no-access-log", is_flag=True, help="Do not log each request.")
def serve(
    host: str,
    port: int,
    store_url: str,
    config_file: str | None,
    no_auth: bool,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    max_body_bytes: int | None,
    max_decompressed_bytes: int | None,
    max_pending: int | None,
    gc_gen0: int | None,
    max_loaded_memories: int | None,
    log_level: str,
    no_access_log: bool,
) -> None:
    """Run the hub (HTTP + WebSocket) with uvicorn."""
    from experience_sync.config import mask_url
    from experience_sync.hub.web.app import Hub, HubLimits
    from experience_sync.hub.web.server import UnsafeBindError, check_bind, tune_gc
    from experience_sync.hub.web.server import serve as run

    try:
        check_bind(host, not no_auth)
    except UnsafeBindError as exc:
        _fail(str(exc), 2)
    if bool(ssl_certfile) != bool(ssl_keyfile):
        _fail("--ssl-certfile and --ssl-keyfile go together", 2)
    limits = HubLimits()
    if max_body_bytes is not None:
        limits.max_body_bytes = max_body_bytes
    if max_decompressed_bytes is not None:
        limits.max_decompressed_bytes = max_decompressed_bytes
    if max_pending is not None:
        limits.max_pending = max_pending
    strategy = _guard(lambda: _strategy(config_file))
    recall = _guard(lambda: _recall(config_file))
    retention = _guard(lambda: _retention(config_file))
    tune_gc(gc_gen0)
    try:
        hub = _guard(
            lambda: Hub.open(
                store_url, strategy=strategy, auth=not no_auth, limits=limits, recall=recall,
                retention=retention, max_loaded_memories=max_loaded_memories,
            )
        )
    except sqlite3.Error as exc:
        _fail(store_open_error(store_url, exc))
    scheme = "https" if ssl_certfile else "http"
    click.echo(
        f"experience-sync hub on {scheme}://{host}:{port} store={mask_url(store_url)} "
        f"auth={'off' if no_auth else 'on'} strategy={strategy.conflict_resolution}",
        err=True,
    )
    run(
        hub,
        host,
        port,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        log_level=log_level,
        access_log=not no_access_log,
    )


# ---------------------------------------------------------------------- tokens


@click.group("token")
def token() -> None:
    """Create, list and revoke hub access tokens."""


@token.command("create")
@click.option("--agent", required=True, help="Source agent the token may use.")
@click.option("--instance", required=True, help="Instance the token stands for.")
@click.option("--scope", type=click.Choice(["write", "review", "read", "admin"]), default="write",
              show_default=True,
              help="write: send experiences; review: decide reviews (the console); "
                   "admin: also forget experiences and read the forget audit; read: look.")
@_store_option
def token_create(agent: str, instance: str, scope: str, store_url: str) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from experience_sync.hub.web.auth import create_token

    store = _guard(lambda: open_store(store_url))
    try:
        secret, record = create_token(store, agent, instance, cast("Scope", scope))
    finally:
        store.close()
    click.echo(
        f"token {record.token_id} for agent={agent} instance={instance} scope={scope} "
        "(shown once; store it now):",
        err=True,
    )
    click.echo(secret)


@token.command("list")
@_store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_list(store_url: str, as_json: bool) -> None:
    """List tokens (ids, bindings, scope; never secrets or hashes)."""
    store = _guard(lambda: open_store(store_url))
    try:
        records = store.list_tokens()
    finally:
        store.close()
    rows = [
        {
            "token_id": r.token_id,
            "agent_id": r.agent_id,
            "instance_id": r.instance_id,
            "scope": r.scope,
            "created_at": r.created_at.isoformat(),
            "revoked": r.revoked,
        }
        for r in records
    ]
    if as_json:
        _dump(rows)
        return
    if not rows:
        click.echo("no tokens")
        return
    click.echo(f"{'token_id':<18} {'agent':<20} {'instance':<20} {'scope':<6} {'revoked':<8} created")
    for row in rows:
        click.echo(
            f"{row['token_id']:<18} {row['agent_id']:<20} {row['instance_id']:<20} "
            f"{row['scope']:<6} {'yes' if row['revoked'] else 'no':<8} {row['created_at']}"
        )


@token.command("revoke")
@click.argument("token_id")
@_store_option
def token_revoke(token_id: str, store_url: str) -> None:
    """Revoke a token by id; requests with it get 401 from then on."""
    store = _guard(lambda: open_store(store_url))
    try:
        found = store.revoke_token(token_id)
    finally:
        store.close()
    if not found:
        _fail(f"no token {token_id!r}")
    click.echo(f"revoked {token_id}")


# ---------------------------------------------------------------------- reviews


@click.group("review")
def review() -> None:
    """List, accept or reject conflicts queued for manual review."""


def _engine(store_url: str, config_file: str | None = None) -> Any:
    from experience_sync.hub.engine import MergeEngine
    from experience_sync.plugins import get_plugin_manager

    strategy = _strategy(config_file)
    return MergeEngine(open_store(store_url), strategy, pm=get_plugin_manager())


@review.command("list")
@click.option("--agent", required=True)
@click.option("--status", type=click.Choice(["open", "accepted", "rejected", "all"]), default="open", show_default=True)
@_store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def review_list(agent: str, status: str, store_url: str, as_json: bool) -> None:
    """List an agent's reviews."""
    engine = _guard(lambda: _engine(store_url))
    try:
        reviews = engine.reviews(agent, None if status == "all" else status)
    finally:
        engine.close()
    if as_json:
        _dump([r.model_dump(mode="json") for r in reviews])
        return
    if not reviews:
        click.echo("no reviews")
    for r in reviews:
        click.echo(
            f"{r.review_id}  {r.status:<8} {r.kind:<14} key={r.key} from={r.instance_id}\n"
            f"    current:  {json.dumps(r.current, default=str)}\n"
            f"    proposed: {json.dumps(r.proposed, default=str)}"
        )


def _decide(agent: str, review_id: str, store_url: str, config_file: str | None, accept: bool) -> None:
    engine = _guard(lambda: _engine(store_url, config_file))
    try:
        result = engine.decide_review(agent, review_id, accept)
    except KeyError:
        _fail(f"no review {review_id!r} for agent {agent!r}")
    except ValueError as exc:
        _fail(str(exc))
    finally:
        engine.close()
    click.echo(f"{result.review_id} {result.status}")


def _decision_options(command: Callable[..., None]) -> Callable[..., None]:
    """The arguments ``review accept`` and ``review reject`` share."""
    for option in (
        click.option("--config", "config_file", type=click.Path(dir_okay=False)),
        _store_option,
        click.option("--agent", required=True),
        click.argument("review_id"),
    ):  # innermost first, as stacked decorators apply
        command = option(command)
    return command


@review.command("accept")
@_decision_options
def review_accept(review_id: str, agent: str, store_url: str, config_file: str | None) -> None:
    """Apply the proposed side of a review."""
    _decide(agent, review_id, store_url, config_file, True)


@review.command("reject")
@_decision_options
def review_reject(review_id: str, agent: str, store_url: str, config_file: str | None) -> None:
    """Keep the current side of a review and close it."""
    _decide(agent, review_id, store_url, config_file, False)


# ---------------------------------------------------------------------- replay and state


@click.command("replay")
@click.option("--agent", required=True)
@_store_option
@click.option("--into", "into_url", help="Rebuild into this store instead of in place.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False))
@click.option("--strategy", help="conflict_resolution (latest_wins, weighted_merge, manual_review, ...).")
@click.option("--threshold", type=float, help="similarity_threshold for memory dedup.")
@click.option("--similarity", help="similarity_method (jaccard, embedding, ...).")
@click.option("--aggregation", help="skill_aggregation (max, average, weighted, ...).")
@click.option("--knowledge-threshold", type=float, help="knowledge_verification_threshold.")
@click.option("--no-dedup", is_flag=True, help="memory_deduplication = false.")
def replay(
    agent: str,
    store_url: str,
    into_url: str | None,
    config_file: str | None,
    strategy: str | None,
    threshold: float | None,
    similarity: str | None,
    aggregation: str | None,
    knowledge_threshold: float | None,
    no_dedup: bool,
) -> None:
    """Rebuild an agent's state from its log, deterministically, under a merge configuration."""
    from experience_sync.hub.replay import replay as run_replay
    from experience_sync.hub.web.server import tune_gc

    tune_gc()
    config = _guard(
        lambda: _strategy(
            config_file,
            conflict_resolution=strategy,
            similarity_threshold=threshold,
            similarity_method=similarity,
            skill_aggregation=aggregation,
            knowledge_verification_threshold=knowledge_threshold,
            memory_deduplication=False if no_dedup else None,
        )
    )
    source = _guard(lambda: open_store(store_url))
    target = _guard(lambda: open_store(into_url)) if into_url else None
    try:
        result = run_replay(source, agent, config, target)
    finally:
        source.close()
        if target is not None:
            target.close()
    _dump(
        {
            "agent_id": agent,
            "into": into_url or store_url,
            "cursor": result.cursor,
            "memories": len(result.memories),
            "skills": len(result.skills),
            "knowledge": len(result.knowledge),
            "characteristics": len(result.characteristics),
            "open_reviews": sum(1 for r in result.reviews if r.status == "open"),
            "stats": result.stats.model_dump(mode="json"),
        }
    )


@click.command("state")
@click.option("--agent", required=True)
@_store_option
@click.option("--since", type=int, default=None, help="Only changes after this cursor.")
def state(agent: str, store_url: str, since: int | None) -> None:
    """Print an agent's merged state as JSON."""
    engine = _guard(lambda: _engine(store_url))
    try:
        result = engine.state(agent, since)
    finally:
        engine.close()
    click.echo(result.model_dump_json(indent=2))


#: The hub commands, in the order ``--help`` lists them.
# The maintenance commands use this module's helpers: imported once they exist.
from experience_sync.cli import maintenance  # noqa: E402

COMMANDS = (serve, token, review, replay, state, *maintenance.COMMANDS)
