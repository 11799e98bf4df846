"""Built-in CLI commands: the hub's, the instance's and the demo (``experience-sync --help``).

The commands live in :mod:`experience_sync.cli`; this module only registers them.
Without the ``hub`` extra (a client install, ``pip install ./core``) the hub's
commands are still listed, and each one prints the one line saying how to
install the hub instead of failing on a missing module.
"""

from __future__ import annotations

import click

from experience_sync.extras import HUB_INSTALL, hub_hint, hub_missing
from experience_sync.hookspecs import hookimpl

#: The commands that run or administer a hub: they need the ``hub`` extra.
HUB_COMMANDS = ("serve", "token", "review", "replay", "state", "demo")


@hookimpl
def experience_sync_register_commands(cli: click.Group) -> None:
    """Add ``serve``, ``token``, ``review``, ``replay``, ``state``, ``pull``, ``search`` and ``demo``."""
    from experience_sync.cli import client

    for command in client.COMMANDS:
        cli.add_command(command)
    absent = hub_missing()
    if absent:
        for name in _hub_command_names():
            cli.add_command(_needs_hub(name, absent))
        return
    from experience_sync.cli import demo, hub

    for command in (*hub.COMMANDS, demo.demo):
        cli.add_command(command)


def _hub_command_names() -> list[str]:
    """The hub's command names: those of :mod:`experience_sync.cli.hub`, and ``demo``.

    That module imports no hub dependency at module level, so it loads on a client.
    """
    try:
        from experience_sync.cli import hub
    except ImportError:
        return list(HUB_COMMANDS)
    names = [command.name for command in hub.COMMANDS if command.name]
    return [*names, *(n for n in HUB_COMMANDS if n not in names)]


def _needs_hub(name: str, absent: list[str]) -> click.Command:
    """A stand-in for the hub command ``name``: whatever its arguments, it prints the hint."""

    @click.pass_context
    def callback(ctx: click.Context) -> None:
        click.echo(f"error: {hub_hint(f'experience-sync {name}', absent)}", err=True)
        ctx.exit(1)

    return click.Command(
        name,
        callback=callback,
        help=f"Needs the hub extra: {HUB_INSTALL}",
        short_help="(needs the hub extra)",
        add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
