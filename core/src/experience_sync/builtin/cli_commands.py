"""Built-in CLI commands: the hub's, the instance's and the demo (``experience-sync --help``).

The commands live in :mod:`experience_sync.cli`; this module only registers them.
"""

from __future__ import annotations

import click

from experience_sync.hookspecs import hookimpl


@hookimpl
def experience_sync_register_commands(cli: click.Group) -> None:
    """Add ``serve``, ``token``, ``review``, ``replay``, ``state``, ``pull``, ``search`` and ``demo``."""
    from experience_sync.cli import client, demo, hub

    for command in (*hub.COMMANDS, *client.COMMANDS, demo.demo):
        cli.add_command(command)
