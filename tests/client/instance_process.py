"""An instance process for the kill -9 test: records memories until killed.

Usage: ``python instance_process.py HUB_URL TOKEN DATA_DIR START DURABILITY``.
Prints each event id once ``record_memory`` has returned, one per line,
flushed. With ``sync`` the event is committed to the outbox by then; with
``group`` it is in the crash journal and committed within milliseconds.
"""

from __future__ import annotations

import os
import sys

os.environ["EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD"] = "1"

from experience_sync import ExperienceSyncConfig, ExperienceSyncManager


def main() -> None:
    url, token, data_dir, start = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    durability = sys.argv[5]
    cfg = ExperienceSyncConfig.model_validate(
        {
            "transport": {"type": "https", "https": {"endpoint": url, "auth_token": token}},
            "streaming": {"interval_ms": 10, "batch_size": 20},
            "outbox": {"durability": durability},
        }
    )
    manager = ExperienceSyncManager(cfg, data_dir=data_dir)
    manager.initialize_sync("killable", "streaming", agent_id="fleet")
    i = start
    while True:
        event = manager.record_memory(
            "killable", f"observation {i} of the killable instance", importance=0.9,
            tags=[f"n{i}"],
        )
        sys.stdout.write(event.event_id + "\n")
        sys.stdout.flush()
        i += 1


if __name__ == "__main__":
    main()
