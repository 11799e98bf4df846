"""Two frameworks, one source agent: a CrewAI crew and a LangChain agent learn together.

    pip install ./core ./adapters/crewai ./adapters/langchain
    python examples/two_frameworks.py                    # starts a local hub

It always starts its own hub: a running hub would need one token per instance
(run crewai_example.py and langchain_example.py with ``--hub`` for that).

Both instances of the "travel-assistant" agent use a ``web_search`` tool and
read the same travel guide. Each records through its own adapter; the hub
merges them: one ``web_search`` skill with the invocations of both, and a
piece of knowledge verified by two independent instances. Runs offline.
"""

from __future__ import annotations

import sys
import tempfile

from _common import AGENT_ID, parse_args, print_state, source_agent
from crewai_example import run_crew
from langchain_example import run_langchain_agent

from experience_sync.api import ExperienceSyncManager


def main() -> None:
    args = parse_args(__doc__)
    if args.hub:
        sys.exit("two_frameworks.py starts its own hub: --hub would need one token per instance;"
                 " run crewai_example.py and langchain_example.py with --hub instead")
    crew_instance, chain_instance = "crewai-trip-1", "langchain-travel-1"
    with source_agent(args.hub, [crew_instance, chain_instance]) as (url, configs), \
            tempfile.TemporaryDirectory() as data_dir:
        manager = ExperienceSyncManager(data_dir=data_dir)
        for instance_id in (crew_instance, chain_instance):
            manager.initialize_sync(instance_id, config=configs[instance_id], endpoint=url,
                                    agent_id=AGENT_ID)
        print("CrewAI crew answered:     ", run_crew(manager, crew_instance))
        print("LangChain agent answered: ", run_langchain_agent(manager, chain_instance))
        if not manager.flush(timeout=15):
            print("not everything reached the hub yet")
        state = manager.pull(AGENT_ID, instance_id=chain_instance)
        print_state(state)
        shared = next(s for s in state.skills if s.name == "web_search")
        print(f"\nweb_search was learned from {len(shared.source_instances)} instances "
              f"({', '.join(sorted(shared.source_instances))}), "
              f"{shared.usage.total_invocations} invocations in all.")
        manager.shutdown(timeout=5)


if __name__ == "__main__":
    main()
