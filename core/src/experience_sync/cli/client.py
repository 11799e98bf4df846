"""Built-in instance-side CLI commands: ``experience-sync pull`` and ``search``.

``pull`` draws the source agent's merged learning back from a hub, the way
``ExperienceSyncManager.pull`` does, through the configured transport;
``search`` asks the hub's ranked search::

    experience-sync pull --agent support-bot --endpoint https://hub.example --since 120
    experience-sync search "is the payments API down?" --agent support-bot -k 5
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from experience_sync.cli.forget import forget
from experience_sync.errors import ConfigError, PluginError, TransportError
from experience_sync.interfaces import Transport


def _hub_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--endpoint``, ``--token`` and ``--config``: how a command reaches the hub."""
    for option in reversed((
        click.option("--endpoint", default=None,
                     help="Hub URL (overrides the configured transport)."),
        click.option("--token", envvar="EXPERIENCE_SYNC_HUB_TOKEN", default=None,
                     help="Bearer token (default $EXPERIENCE_SYNC_HUB_TOKEN)."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                     help="A TOML config file."),
    )):
        command = option(command)
    return command


@click.command("pull")
@click.option("--agent", required=True, help="The source agent to pull.")
@click.option("--since", type=int, default=None, help="Only changes after this cursor.")
@_hub_options
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
    transport = _transport(agent, endpoint, token, config_file)
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


def _transport(
    agent: str, endpoint: str | None, token: str | None, config_file: str | None
) -> Transport:
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
        transport: Transport = get_plugin_manager().registry.create(
            "transports", cfg.transport.type, cfg, agent
        )
    except (ConfigError, PluginError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    return transport


@click.command("search")
@click.argument("query")
@click.option("--agent", required=True, help="The source agent to search.")
@click.option("-k", "k", type=int, default=5, show_default=True, help="How many hits (1-100).")
@click.option("--kinds", default="memory,knowledge,skill", show_default=True,
              help="Comma-separated: memory, knowledge, skill.")
@click.option("--knowledge-status", default="integrated", show_default=True,
              type=click.Choice(["integrated", "pending", "all"]))
@_hub_options
@click.option("--json", "as_json", is_flag=True, help="Print the SearchResults JSON.")
def search(
    query: str,
    agent: str,
    k: int,
    kinds: str,
    knowledge_status: str,
    endpoint: str | None,
    token: str | None,
    config_file: str | None,
    as_json: bool,
) -> None:
    """Ranked search over what the fleet learned: the hub's search route."""
    from pydantic import ValidationError

    from experience_sync.recall.models import SearchQuery

    try:
        wanted = SearchQuery.model_validate({
            "q": query, "k": k, "knowledge_status": knowledge_status,
            "kinds": [x.strip() for x in kinds.split(",") if x.strip()],
        })
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        click.echo(f"error: {'.'.join(map(str, err['loc']))}: {err['msg']}", err=True)
        sys.exit(2)
    transport = _transport(agent, endpoint, token, config_file)
    try:
        results = transport.search(wanted)
    except (TransportError, NotImplementedError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        transport.close()
    if as_json:
        click.echo(results.model_dump_json(indent=2))
        return
    if not results.hits:
        click.echo("no hits")
    for hit in results.hits:
        sources = ", ".join(hit.provenance.source_instances) or "-"
        click.echo(f"{hit.score:.4f}  {hit.kind:<9}  {hit.text}  [{sources}]")


#: The instance-side commands (``forget`` reaches a hub over HTTP, or its store).
COMMANDS = (pull, search, forget)
