"""The ``experience_sync`` entry point of the CrewAI adapter.

Adds ``experience-sync crewai-events``, which prints how CrewAI events map to
experience events. Loading it does not import CrewAI.
"""

from __future__ import annotations

import click

from experience_sync import hookimpl
from experience_sync_crewai.mapping import DEFAULT_PRIORITIES, EVENT_MAP, LEFT_OUT


@hookimpl
def experience_sync_register_commands(cli: click.Group) -> None:
    """Add ``crewai-events``."""

    @cli.command("crewai-events")
    def crewai_events() -> None:
        """Show which CrewAI events the adapter records, as what."""
        for event, kind, what, priority in EVENT_MAP:
            click.echo(f"{event:34} -> {kind:11} priority {DEFAULT_PRIORITIES[priority]:.1f}")
            click.echo(f"{'':38}{what}")
        click.echo("\nNot recorded:")
        for item in LEFT_OUT:
            click.echo(f"  - {item}")
