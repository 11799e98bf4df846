"""Built-in instance-side CLI command: ``experience-sync pull``.

``pull`` draws the source agent's merged learning back from a hub, the way
``ExperienceSyncManager.pull`` does, through the configured transport::

    experience-sync pull --agent support-bot --endpoint https://hub.example --since 120
"""

from __future__ import annotations

import sys

import click

from experience_sync.errors import ConfigError, PluginError, TransportError
from experience_sync.hookspecs import hookimpl


@click.command("pull")
@click.option("--agent", required=True, help="The source agent to pull.")
@click.option("--since", type=int, default=None, help="Only changes after this cursor.")
@click.option("--endpoint", default=None, help="Hub URL (overrides the configured transport).")
@click.option("--token", envvar="EXPERIENCE_SYNC_HUB_TOKEN", default=None,
              help="Bearer token (default $EXPERIENCE_SYNC_HUB_TOKEN).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="A TOML config file.")
@click.option("--summary", is_flag=True, help="Print counts instead of the JSON state.")
def pull(
    agent: str,
    since: int | None,
    endpoint: str | None,
    token: str | None,
    config_file: str | None,
    summary: bool,
) -> None:
    """Fetch the source agent's merged memories, skills and knowledge from the hub."""
    from experience_sync.client.manager import with_endpoint
    from experience_sync.config import load_config
    from experience_sync.plugins import get_plugin_manager

    try:
        cfg = load_config(config_file)
        if endpoint:
            cfg = with_endpoint(cfg, endpoint)
        if token:
            cfg = cfg.model_copy(deep=True)
            cfg.transport.https.auth_token = token  # type: ignore[assignment]
        transport = get_plugin_manager().registry.create(
            "transports", cfg.transport.type, cfg, agent
        )
    except (ConfigError, PluginError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    try:
        state = transport.fetch_state(since)
    except (TransportError, NotImplementedError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        transport.close()
    if summary:
        integrated = sum(1 for k in state.knowledge if k.status == "integrated")
        click.echo(
            f"agent {state.agent_id} cursor {state.cursor}: {len(state.memories)} memories, "
            f"{len(state.skills)} skills, {len(state.knowledge)} knowledge "
            f"({integrated} integrated), {len(state.characteristics)} characteristics"
        )
        return
    click.echo(state.model_dump_json(indent=2))


@hookimpl
def experience_sync_register_commands(cli: click.Group) -> None:
    """Add ``pull``."""
    cli.add_command(pull)
