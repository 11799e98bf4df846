"""The ``experience_sync`` entry point of this distribution: the ``elizaos-bridge`` command."""

from __future__ import annotations

import ipaddress
import os
import secrets
import sys
from typing import Any

import click

from experience_sync.api import ConfigError, PluginError, hookimpl
from experience_sync_elizaos.mapping import DEFAULT_MAX_TEXT, MappingOptions
from experience_sync_elizaos.server import DEFAULT_INSTANCE, DEFAULT_LISTEN, parse_listen

#: Environment variable holding the secret the ElizaOS plugin presents.
SECRET_ENV = "ELIZAOS_BRIDGE_SECRET"
#: Environment variable holding the hub token (shared with the core's commands).
TOKEN_ENV = "EXPERIENCE_SYNC_HUB_TOKEN"


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address."""
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command("elizaos-bridge")
@click.option("--hub", required=True, help="The hub's base URL, e.g. http://127.0.0.1:8700.")
@click.option("--agent", required=True, help="The source agent id the events sync to.")
@click.option("--token", envvar=TOKEN_ENV, required=True,
              help=f"Hub token with write scope for (agent, instance). Env: {TOKEN_ENV}.")
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True,
              help="host:port the bridge listens on.")
@click.option("--instance", "instance_id", default=DEFAULT_INSTANCE, show_default=True,
              help="Instance id the ElizaOS events are recorded as (must match the token).")
@click.option("--secret", envvar=SECRET_ENV,
              help=f"Bearer secret the ElizaOS plugin presents. Env: {SECRET_ENV}. "
              "A random one is generated and printed if absent.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              default=lambda: os.environ.get("EXPERIENCE_SYNC_DATA_DIR", "./.experience-sync"),
              show_default="$EXPERIENCE_SYNC_DATA_DIR or ./.experience-sync",
              help="Where the durable outbox and the bridge's state live.")
@click.option("--tables", default="facts,memories", show_default=True,
              help="ElizaOS memory tables whose new memories are recorded.")
@click.option("--max-text", default=DEFAULT_MAX_TEXT, show_default=True, type=int,
              help="Longest text kept from any forwarded field.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="An experience-sync TOML config file.")
def elizaos_bridge(hub: str, agent: str, token: str, listen: str, instance_id: str,
                   secret: str | None, data_dir: str, tables: str, max_text: int,
                   config_path: str | None) -> None:
    """Receive events from the ElizaOS plugin and sync them to the hub as one instance."""
    from experience_sync.api import load_config
    from experience_sync_elizaos.server import run_bridge

    try:
        host, _ = parse_listen(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    if not is_loopback_host(host):
        click.echo(f"warning: the bridge speaks plain HTTP; {host} is not a loopback address, "
                   "so the secret and events cross the network unencrypted", err=True)
    if not secret:
        secret = secrets.token_urlsafe(24)
        click.echo(f"{SECRET_ENV}={secret}  (give the ElizaOS plugin this secret)", err=True)
    table_set = frozenset(t.strip() for t in tables.split(",") if t.strip())
    options = MappingOptions(max_text_length=max_text, memory_tables=table_set,
                             knowledge_tables=table_set & {"facts"})
    try:
        config: Any = load_config(config_path)
        click.echo(f"ElizaOS bridge on http://{listen} -> {hub} agent={agent} "
                   f"instance={instance_id}", err=True)
        run_bridge(hub=hub, agent=agent, token=token, secret=secret, listen=listen,
                   instance_id=instance_id, data_dir=data_dir, options=options, config=config)
    except (ConfigError, PluginError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:  # pragma: no cover - interactive stop
        sys.exit(0)


@hookimpl
def experience_sync_register_commands(cli: click.Group) -> None:
    """Add ``experience-sync elizaos-bridge``."""
    cli.add_command(elizaos_bridge)
