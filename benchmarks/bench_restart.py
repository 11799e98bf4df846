"""Hub restart: from ``experience-sync serve`` being ready to its first answers.

What it does, ``--runs`` times for each kind of first request:

1. starts ``experience-sync serve --store sqlite:///<store>`` (a new process,
   the command a user runs) on a free loopback port;
2. polls ``GET /healthz`` until the hub answers: that is "ready" (it
   listens; ``GET /readyz`` answers 200 later, once the warm-up loaded the
   stored agents, and that time is printed too);
3. sends one first request for the agent the store holds and times its
   answer from "ready": ``search`` (``GET .../search?q=``), ``state``
   (``GET .../memories?limit=10``) or ``write`` (``POST .../events`` with one
   new memory, which merges against everything stored);
4. waits until the hub has loaded the agent (a second write answers), reads
   the process's resident memory (``VmRSS``) and stops it.

The resident memory is also read for ``serve`` on an empty store, and the
difference divided by the memories stored is printed as "RSS a memory".

The store (agent ``bench``: ``bench_ingest.py``'s preload of distinct
~300-byte memories, as ``bench_load.py`` builds it) is given with
``--store``; ``--build N`` builds it there first if the file does not exist. Figures go in docs/benchmarks.md ("Hub restart").
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

CLI = str(Path(sys.executable).with_name("experience-sync"))
AGENT = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def token(store: Path) -> str:
    out = subprocess.run(
        [CLI, "token", "create", "--agent", AGENT, "--instance", "restart-bench",
         "--store", f"sqlite:///{store}"],
        check=True, capture_output=True, text=True,
    ).stdout
    words = [w for w in out.split() if w.startswith("xs_")]
    if not words:
        raise RuntimeError(f"no token in the output of `token create`: {out!r}")
    return words[-1]


def memory_event() -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "source_instance": "restart-bench",
        "event_type": "memory",
        "priority": 0.7,
        "data": {"content": f"restart probe {uuid.uuid4().hex[:8]} answered after the hub came back",
                 "importance": 0.5},
    }


def first_answer(store: Path, kind: str, secret: str) -> dict[str, float]:
    # The hub's log goes to a file: a pipe nobody reads fills up with the
    # warm-up's 503 answers to /readyz, and the hub then blocks writing to it.
    with tempfile.TemporaryFile("w+") as log_file:
        return _first_answer(store, kind, secret, log_file)


def _first_answer(store: Path, kind: str, secret: str, log_file: IO[str]) -> dict[str, float]:
    port = free_port()
    env = dict(os.environ, EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD="1")
    t_start = time.monotonic()
    proc = subprocess.Popen(
        [CLI, "serve", "--store", f"sqlite:///{store}", "--port", str(port),
         "--no-access-log", "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=log_file, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {secret}"}
    try:
        with httpx.Client(base_url=base, timeout=600) as client:
            while True:
                if proc.poll() is not None:
                    log_file.seek(0)
                    raise RuntimeError(f"serve exited: {log_file.read()}")
                try:
                    if client.get("/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.005)
            t_ready = time.monotonic()
            if kind == "search":
                r = client.get(f"/v1/agents/{AGENT}/search", params={"q": "restart answered"},
                               headers=headers)
            elif kind == "state":
                r = client.get(f"/v1/agents/{AGENT}/memories", params={"limit": 10}, headers=headers)
            else:
                r = client.post(f"/v1/agents/{AGENT}/events", headers=headers,
                                json={"instance_id": "restart-bench", "events": [memory_event()]})
            t_answer = time.monotonic()
            if r.status_code >= 400:
                raise RuntimeError(f"{kind}: {r.status_code} {r.text[:300]}")
            # The warm-up's end, as a load balancer's readiness check sees it.
            # Polled as a load balancer would (each 503 is also a log line,
            # and a tighter poll slows the load it waits for).
            while client.get("/readyz").status_code != 200:
                time.sleep(0.25)
            t_warm = time.monotonic()
            # Loaded for sure once a write answered; then the resident memory.
            client.post(f"/v1/agents/{AGENT}/events", headers=headers,
                        json={"instance_id": "restart-bench", "events": [memory_event()]})
            t_loaded = time.monotonic()
            rss = rss_kb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
    return {"ready_s": t_ready - t_start, "first_s": t_answer - t_ready,
            "readyz_s": t_warm - t_ready, "loaded_s": t_loaded - t_ready, "rss_kb": rss}


def empty_rss() -> int:
    """Resident memory of ``serve`` on an empty store, with one small agent loaded."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "empty.db"
        secret = token(store)
        return int(first_answer(store, "write", secret)["rss_kb"])


def stored_memories(store: Path) -> int:
    import sqlite3

    db = sqlite3.connect(store)
    try:
        return int(db.execute("SELECT count(*) FROM memories WHERE agent_id = ?", (AGENT,)).fetchone()[0])
    finally:
        db.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("/tmp/xs-bench-load-100k.db"),
                        help="a hub store holding agent 'bench' (bench_load.py builds one)")
    parser.add_argument("--build", type=int, default=0,
                        help="build the store with this many memories if it does not exist")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kinds", default="search,state,write")
    args = parser.parse_args(argv)
    if not args.store.exists():
        if not args.build:
            parser.error(f"{args.store} does not exist: give --build N or build it with bench_load.py")
        import bench_ingest

        from experience_sync.config import MergeStrategyConfig
        from experience_sync.hub.web.server import tune_gc

        tune_gc(None)
        seconds = bench_ingest.preload_store(f"sqlite:///{args.store}", args.build, MergeStrategyConfig())
        print(f"built {args.store} with {args.build:,} memories in {seconds:.0f} s")
    n = stored_memories(args.store)
    secret = token(args.store)
    base_rss = empty_rss()
    print(f"store {args.store}: {n:,} memories of agent {AGENT!r}; "
          f"serve on an empty store: {base_rss / 1024:.0f} MiB resident")
    results: dict[str, list[dict[str, float]]] = {}
    for kind in args.kinds.split(","):
        for _ in range(args.runs):
            r = first_answer(args.store, kind, secret)
            results.setdefault(kind, []).append(r)
            print(f"{kind:6s} ready {r['ready_s']:.2f} s after start; first answer "
                  f"{r['first_s']:.3f} s after ready; /readyz 200 after {r['readyz_s']:.1f} s; "
                  f"agent loaded {r['loaded_s']:.1f} s after ready; "
                  f"RSS {r['rss_kb'] / 1024:.0f} MiB", flush=True)
    print("\nmedians:")
    for kind, rs in results.items():
        first = statistics.median(r["first_s"] for r in rs)
        loaded = statistics.median(r["loaded_s"] for r in rs)
        rss = statistics.median(r["rss_kb"] for r in rs)
        per = (rss - base_rss) * 1024 / n if n else 0.0
        print(f"{kind:6s} first answer {first:.3f} s (target <= 1 s); loaded {loaded:.1f} s; "
              f"RSS a memory {per:,.0f} bytes (target <= 1,024)")
    print(json.dumps({k: [dict(r) for r in v] for k, v in results.items()}))


if __name__ == "__main__":
    main()
