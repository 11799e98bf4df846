"""The ``experience-sync`` command line.

Core commands live here; ``serve``, ``demo``, ``token``, ``replay`` and the
rest are added by built-in plugins through ``experience_sync_register_commands``,
the same hook third-party plugins use.
"""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

import click

from experience_sync.errors import ConfigError, PluginError


@click.group()
@click.version_option(package_name="experience-sync")
def cli() -> None:
    """Sync experiences from agent instances into a source agent."""


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_command(as_json: bool) -> None:
    """List installed plugins, the hooks they implement and the names they provide."""
    from experience_sync.plugins import describe_plugins

    rows: list[dict[str, Any]] = _load_or_exit(describe_plugins)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    columns = ("plugin", "distribution", "version", "hooks", "provides")
    cells: list[tuple[str, ...]] = [
        (
            row["name"],
            row["distribution"],
            row["version"],
            "\n".join(h.removeprefix("experience_sync_") for h in row["hooks"]),
            "\n".join(f"{k}: {', '.join(v)}" for k, v in row["provides"].items()),
        )
        for row in rows
    ]
    _print_table("experience-sync plugins", columns, cells)


def _print_table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """A table with rich where it is installed (the hub extra), else as plain text."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # a client install: one block per row, every cell whole
        click.echo(title)
        for row in rows:
            click.echo("")
            for col, cell in zip(columns, row, strict=True):
                lines = cell.splitlines() or [""]
                click.echo(f"  {col + ':':<14}{lines[0]}")
                for line in lines[1:]:
                    click.echo(f"  {'':<14}{line}")
        return
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")  # never cut a name short
    for row in rows:
        table.add_row(*row)
    Console().print(table)


@cli.group("config")
def config_group() -> None:
    """Show or validate configuration."""


@config_group.command("show")
@click.option("--file", "path", type=click.Path(dir_okay=False), help="A TOML config file.")
def config_show(path: str | None) -> None:
    """Print the effective configuration (secrets masked) as JSON."""
    from experience_sync.config import load_config

    cfg = _load_or_exit(lambda: load_config(path))
    click.echo(json.dumps(cfg.public_dict(), indent=2))


@config_group.command("validate")
@click.argument("path", type=click.Path(dir_okay=False))
def config_validate(path: str) -> None:
    """Validate a TOML config file; exit 1 listing every bad field."""
    from experience_sync.config import read_toml, validate_config

    _load_or_exit(lambda: validate_config(read_toml(path), source=path))
    click.echo(f"{click.style('ok', fg='green')} {path}")


@cli.command("schema")
@click.option("--model", help="Print only this model's schema (e.g. ExperienceEvent).")
def schema_command(model: str | None) -> None:
    """Print the JSON Schema of the wire format."""
    from experience_sync.models import WIRE_MODELS, json_schema

    if model:
        if model not in WIRE_MODELS:
            raise click.BadParameter(f"unknown model; choose from {', '.join(WIRE_MODELS)}")
        click.echo(json.dumps(WIRE_MODELS[model].model_json_schema(), indent=2))
        return
    click.echo(json.dumps(json_schema(), indent=2))


def _load_or_exit(fn: Any) -> Any:
    try:
        return fn()
    except (ConfigError, PluginError) as exc:
        _error("error:", str(exc))
        sys.exit(1)


def _error(label: str, message: str) -> None:
    """``label message`` on stderr, the label in red on a terminal; the message as given."""
    click.echo(f"{click.style(label, fg='red')} {message}", err=True)


def build_cli() -> click.Group:
    """The CLI with the core commands and every plugin's commands.

    Plugins add to a copy of the core group, so building the CLI again after
    a plugin is unregistered does not keep that plugin's commands.
    """
    from experience_sync.plugins import get_plugin_manager

    group = copy.copy(cli)
    group.commands = dict(cli.commands)
    get_plugin_manager().hook.experience_sync_register_commands(cli=group)
    return group


def main() -> None:
    """Entry point of the ``experience-sync`` script."""
    try:
        group = build_cli()
    except PluginError as exc:
        _error("plugin error:", str(exc))
        sys.exit(1)
    group()
