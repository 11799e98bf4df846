"""The ``refused`` and ``filtered`` counters survive a kill -9 of the process.

They change without a commit (an outbox at capacity refuses the event, a
filter drops it), so they are saved when they change: a process killed
right after refusing still reports the refusals at its next start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from experience_sync.client.outbox import Outbox
from experience_sync.config import OutboxConfig

CHILD = textwrap.dedent(
    """
    import sys, time
    from experience_sync.client.outbox import Outbox
    from experience_sync.config import OutboxConfig
    from experience_sync.errors import OutboxFullError

    box = Outbox(sys.argv[1], OutboxConfig(max_events=3, when_full="refuse", durability="sync"))
    for i in range(3):
        box.add("streaming", {"event_id": f"e{i}"})
    refused = 0
    for i in range(5):
        try:
            box.add("streaming", {"event_id": f"r{i}"})
        except OutboxFullError:
            refused += 1
    box.count("filtered", reason="below_priority_threshold", n=2)
    print(refused, flush=True)
    time.sleep(60)  # killed here, before any further commit
    """
)


def test_refusals_are_kept_across_a_kill(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    env = {**os.environ, "EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD": "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE,
                             text=True, env=env)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "5"
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    box = Outbox(db, OutboxConfig(durability="sync"))
    try:
        assert box.counters.values["refused"] == 5
        assert box.counters.values["filtered"] == 2
        assert box.counters.values["recorded"] == 3
        # A later commit never lowers them.
        box.add("streaming", {"event_id": "after"})
    finally:
        box.close()
    again = Outbox(db, OutboxConfig(durability="sync"))
    try:
        assert again.counters.values["refused"] == 5
        assert again.counters.values["filtered"] == 2
        assert again.counters.values["recorded"] == 4
    finally:
        again.close()
