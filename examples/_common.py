"""What the adapter examples share: a source agent to sync to, and how they end.

Each example starts a local hub (or uses the one given with ``--hub``), records
one instance's run through its adapter, waits for the experiences to reach the
hub and prints what the source agent learned. Only the run differs; it is here
once so the examples show just the adapter.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from experience_sync.api import AgentState, ExperienceSyncManager, validate_config

AGENT_ID = "travel-assistant"


def parse_args(doc: str | None) -> argparse.Namespace:
    """The examples' command line: ``--hub URL`` to use a running hub."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--hub", help="URL of a running hub (token in EXPERIENCE_SYNC_HUB_TOKEN)")
    return parser.parse_args()


@contextlib.contextmanager
def source_agent(hub_url: str | None, instance_ids: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """A hub to sync to: the one at ``hub_url``, else a local one started here.

    Yields the hub URL and, per instance, the ``initialize_sync`` config.
    """
    if hub_url:
        yield hub_url, {iid: validate_config({}) for iid in instance_ids}
        return
    from experience_sync.testing import run_in_thread

    with run_in_thread() as hub:
        configs = {
            iid: validate_config({"transport": {"https": {
                "auth_token": hub.create_token(AGENT_ID, iid)}}})
            for iid in instance_ids
        }
        yield hub.url, configs


def print_state(state: AgentState) -> None:
    """Print what the source agent has learned."""
    print(f"\nWhat source agent {state.agent_id!r} learned:")
    print("  skills:")
    for s in sorted(state.skills, key=lambda s: s.name):
        print(f"    {s.name:14} invocations={s.usage.total_invocations:<3} "
              f"success_rate={s.usage.success_rate:.2f} proficiency={s.proficiency:.2f} "
              f"from={','.join(sorted(s.source_instances))}")
    print("  memories:")
    for m in state.memories:
        print(f"    [{m.importance:.1f}] {m.content}  (from {','.join(m.source_instances)})")
    print("  knowledge:")
    for k in state.knowledge:
        print(f"    ({k.status}, {len(k.verifications)} instance(s)) {k.content}")
    print(f"  interactions: {state.stats.interactions}")


def run_example(doc: str | None, instance_id: str, label: str,
                run: Callable[[ExperienceSyncManager, str], str]) -> None:
    """Run one instance against the source agent and print what it learned.

    :param doc: the example's docstring (its first line describes ``--help``).
    :param label: printed before the run's answer.
    :param run: records through the adapter; returns the answer.
    """
    args = parse_args(doc)
    with source_agent(args.hub, [instance_id]) as (url, configs), \
            tempfile.TemporaryDirectory() as data_dir:
        manager = ExperienceSyncManager(data_dir=data_dir)
        manager.initialize_sync(instance_id, config=configs[instance_id], endpoint=url,
                                agent_id=AGENT_ID)
        print(label, run(manager, instance_id))
        if not manager.flush(instance_id, timeout=15):
            print("not everything reached the hub yet:", manager.status(instance_id))
        print_state(manager.pull(AGENT_ID, instance_id=instance_id))
        manager.shutdown(timeout=5)
