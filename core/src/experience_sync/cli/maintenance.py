"""The hub's maintenance commands: ``retention``, ``compact``, ``export``, ``import``, ``backup``.

``retention`` and ``compact`` open the store directly, like ``replay``: run
them against a stopped hub (a running ``serve`` applies the ``[retention]``
table itself, on a schedule). ``export`` reads only, so it may run beside a
hub. ``backup`` copies a SQLite store online: the hub keeps serving.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from experience_sync.cli.hub import _dump, _fail, _guard, _store_option, _strategy, open_store

if TYPE_CHECKING:
    from experience_sync.config import RetentionConfig
    from experience_sync.interfaces import Store


def _retention_config(config_file: str | None, **ages: str | None) -> RetentionConfig:
    from experience_sync.config import load_config

    overrides = {key: age for key, age in ages.items() if age}
    return load_config(config_file, retention=overrides).retention


@click.command("retention")
@_store_option
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML config whose [retention] table says what to expire.")
@click.option("--interactions", help="Override retention.interactions (e.g. 30d).")
@click.option("--memories", help="Override retention.memories (e.g. 365d).")
@click.option("--pending-knowledge", "pending_knowledge",
              help="Override retention.pending_knowledge (e.g. 90d).")
@click.option("--compact", is_flag=True, help="Also compact every agent's log.")
def retention(
    store_url: str,
    config_file: str | None,
    interactions: str | None,
    memories: str | None,
    pending_knowledge: str | None,
    compact: bool,
) -> None:
    """Apply the retention configuration once to every agent (run against a stopped hub)."""
    from experience_sync.hub.engine import MergeEngine
    from experience_sync.hub.retention import Maintenance

    config = _guard(lambda: _retention_config(
        config_file, interactions=interactions, memories=memories,
        pending_knowledge=pending_knowledge,
    ))
    if compact:
        config = config.model_copy(update={"compact": True})
    if not (config.expires_anything or config.compact):
        _fail("nothing to do: set retention.interactions, retention.memories or "
              "retention.pending_knowledge, or pass --interactions/--compact", 2)
    strategy = _guard(lambda: _strategy(config_file))
    engine = MergeEngine(_guard(lambda: open_store(store_url)), strategy, emit=False)
    try:
        report = Maintenance(engine, config).run_once()
    finally:
        engine.close()
    _dump({"expired": report.expired, "forgotten": report.forgotten,
           "compacted": report.compacted, "failed": report.failed})
    if report.failed:
        sys.exit(1)


@click.command("compact")
@click.option("--agent", "agents", multiple=True, help="Agent to compact (repeat; default all).")
@_store_option
@click.option("--config", "config_file", type=click.Path(dir_okay=False))
def compact(agents: tuple[str, ...], store_url: str, config_file: str | None) -> None:
    """Replace each agent's log by a snapshot of its state (run against a stopped hub)."""
    from experience_sync.hub.engine import MergeEngine
    from experience_sync.hub.retention import compact as compact_agent

    strategy = _guard(lambda: _strategy(config_file))
    engine = MergeEngine(_guard(lambda: open_store(store_url)), strategy, emit=False)
    try:
        known = engine.agents()
        for agent in agents:
            if agent not in known:
                _fail(f"the store holds no agent {agent!r}")
        out: dict[str, int] = {}
        for agent in agents or known:
            out[agent] = _guard(lambda: compact_agent(engine, agent))  # noqa: B023 - called at once
    finally:
        engine.close()
    _dump({"compacted": out})


@click.command("export")
@click.option("--agent", required=True, help="The agent to export.")
@_store_option
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              show_default=True, help="File to write (- for stdout).")
def export(agent: str, store_url: str, output: str) -> None:
    """Write one agent's log, units and instances as JSON Lines (docs/export-format.md)."""
    store = _guard(lambda: open_store(store_url))
    try:
        if output == "-":
            count = _write(store, agent, sys.stdout)
        else:
            tmp = Path(output + ".part")
            with tmp.open("w", encoding="utf-8") as fh:
                count = _write(store, agent, fh)
            tmp.replace(output)  # a file named OUTPUT is always a whole export
    finally:
        store.close()
    click.echo(f"exported agent {agent!r}: {count} records", err=True)


def _write(store: Store, agent: str, out: IO[str]) -> int:
    from experience_sync.hub.export import export_agent

    try:
        return export_agent(store, agent, out)
    except KeyError:
        _fail(f"the store holds no agent {agent!r}")
        raise


@click.command("import")
@click.argument("path", type=click.Path(dir_okay=False, allow_dash=True))
@_store_option
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML config: the merge strategy the log is replayed under.")
def import_(path: str, store_url: str, config_file: str | None) -> None:
    """Import an export file into the store (which must not hold the agent yet)."""
    from experience_sync.hub.export import import_agent

    strategy = _guard(lambda: _strategy(config_file))
    store = _guard(lambda: open_store(store_url))
    try:
        if path == "-":
            state = _guard(lambda: import_agent(sys.stdin, store, strategy))
        else:
            with open(path, encoding="utf-8") as fh:
                state = _guard(lambda: import_agent(fh, store, strategy))
    finally:
        store.close()
    click.echo(
        f"imported agent {state.agent_id!r}: cursor {state.cursor}, {len(state.memories)} "
        f"memories, {len(state.skills)} skills, {len(state.knowledge)} knowledge items",
        err=True,
    )


@click.command("backup")
@click.argument("target", type=click.Path(dir_okay=False))
@_store_option
def backup(target: str, store_url: str) -> None:
    """Copy the SQLite store into the new file TARGET while a hub keeps serving it."""
    store = _guard(lambda: open_store(store_url))
    try:
        copy = getattr(store, "backup", None)
        if copy is None:
            _fail(f"the {store.name} store has no online backup (PostgreSQL: use pg_dump)")
            return
        pages = _guard(lambda: copy(target))
    finally:
        store.close()
    click.echo(f"backed up {store_url} to {target} ({pages} pages)", err=True)


COMMANDS: tuple[click.Command, ...] = (retention, compact, export, import_, backup)
