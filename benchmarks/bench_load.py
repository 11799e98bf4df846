"""Agent load at hub restart: how long a hub takes to load a large agent, and its memory.

What it does:

1. builds, once, a SQLite hub store holding one agent (``bench``) of
   ``--memories`` distinct memories merged through the engine (the same
   ~300-byte Zipf-worded memory events as ``bench_ingest.py``'s preload), at
   ``--store`` (kept: later runs reuse it);
2. ``--runs`` times, in a fresh process each: opens the store with a merge
   engine as ``experience-sync serve`` does and loads the agent
   (:meth:`MergeEngine.preload`), timing wall clock and process CPU of the
   whole load and of its parts (reading the rows, filling the runtime, the
   recall index's check), and the resident memory it added (``VmRSS`` after
   the load and a full collection, minus before) and at its peak (``VmHWM``,
   the most the process held at once, minus before);
3. prints each run and the medians.

``--stale`` loads, in each run, a copy of the store whose memory rows have
lost their stored parses (``memories.parsed`` set to NULL): the first load
after an upgrade that changed the parse code, which reads every text again
and stores the new parses. ``--profile`` runs one load under cProfile instead
and prints the top functions. Figures go in docs/benchmarks.md ("Agent load at restart").
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))


def rss_kb(field: str = "VmRSS") -> int:
    """This process's resident set (``VmHWM``: its peak), in KiB (Linux ``/proc/self/status``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def stale_copy(path: Path) -> Path:
    """A copy of the store at ``path`` whose memory rows have no stored parse."""
    import sqlite3

    copy = path.with_name(path.name + ".stale.db")
    copy.unlink(missing_ok=True)
    with sqlite3.connect(path) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
        dst.execute("UPDATE memories SET parsed = NULL")
    return copy


def build(path: Path, memories: int) -> float:
    """Merge ``memories`` distinct memories into a fresh store at ``path``; seconds taken."""
    import bench_ingest

    from experience_sync.config import MergeStrategyConfig
    from experience_sync.hub.web.server import tune_gc

    tune_gc(None)
    return bench_ingest.preload_store(f"sqlite:///{path}", memories, MergeStrategyConfig())


def load_once(path: Path) -> dict[str, Any]:
    """Load the agent in this process; wall and CPU seconds of each part, and RSS added."""
    from experience_sync.config import MergeStrategyConfig
    from experience_sync.hub.engine import MergeEngine, open_store
    from experience_sync.hub.runtime import AgentRuntime
    from experience_sync.hub.web.server import tune_gc

    tune_gc(None)  # as 'experience-sync serve'
    engine = MergeEngine(open_store(f"sqlite:///{path}"), MergeStrategyConfig())
    parts: dict[str, list[float]] = {"read": [0.0, 0.0], "runtime": [0.0, 0.0], "recall": [0.0, 0.0]}

    def timed(name: str, fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            w, c = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                parts[name][0] += time.perf_counter() - w
                parts[name][1] += time.process_time() - c

        return run

    store = engine.store
    store.load_agent = timed("read", store.load_agent)  # type: ignore[method-assign]
    engine.recall.loaded = timed("recall", engine.recall.loaded)  # type: ignore[method-assign]
    original = AgentRuntime.load
    AgentRuntime.load = timed("runtime", original)  # type: ignore[method-assign]
    gc.collect()
    before = rss_kb()
    wall, cpu = time.perf_counter(), time.process_time()
    engine.preload(["bench"])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    # The first request after the load (what a client waits for at most).
    t0 = time.perf_counter()
    engine.instances("bench")
    first = time.perf_counter() - t0
    AgentRuntime.load = original  # type: ignore[method-assign]
    peak = rss_kb("VmHWM")
    gc.collect()
    after = rss_kb()
    n = len(engine._runtimes["bench"].memory.memories)
    return {
        "memories": n,
        "wall_s": wall,
        "cpu_s": cpu,
        "first_request_s": first,
        **{f"{k}_wall_s": v[0] for k, v in parts.items()},
        **{f"{k}_cpu_s": v[1] for k, v in parts.items()},
        "rss_added_mb": (after - before) / 1024,
        "rss_bytes_per_memory": (after - before) * 1024 / max(n, 1),
        "peak_added_mb": (peak - before) / 1024,
        "peak_bytes_per_memory": (peak - before) * 1024 / max(n, 1),
    }


def profile(path: Path, top: int) -> None:
    import cProfile
    import pstats

    from experience_sync.config import MergeStrategyConfig
    from experience_sync.hub.engine import MergeEngine, open_store

    engine = MergeEngine(open_store(f"sqlite:///{path}"), MergeStrategyConfig())
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    engine.preload(["bench"])
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(top)
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="/tmp/xs-bench-load-100k.db", help="the store (built if missing)")
    parser.add_argument("--memories", type=int, default=100_000, help="memories of the agent to build")
    parser.add_argument("--runs", type=int, default=5, help="loads, each in a fresh process")
    parser.add_argument("--stale", action="store_true", help="load copies without stored parses")
    parser.add_argument("--profile", action="store_true", help="one load under cProfile")
    parser.add_argument("--top", type=int, default=40, help="functions the profile prints")
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)  # a child run
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.memories, args.runs = min(args.memories, 2000), min(args.runs, 2)
    path = Path(args.store)
    if args.once:
        print(json.dumps(load_once(path)))
        return
    if not path.exists():
        seconds = build(path, args.memories)
        print(f"built {path}: {args.memories} memories merged in {seconds:.1f}s")
    if args.profile:
        profile(path, args.top)
        return
    runs = []
    for _ in range(args.runs):
        target = stale_copy(path) if args.stale else path
        try:
            out = subprocess.run([sys.executable, __file__, "--once", "--store", str(target)],
                                 check=True, capture_output=True, text=True).stdout
        finally:
            if target != path:
                for extra in ("", "-wal", "-shm"):
                    Path(str(target) + extra).unlink(missing_ok=True)
        r = json.loads(out.strip().splitlines()[-1])
        runs.append(r)
        print(f"loaded {r['memories']} memories: {r['wall_s']:.2f}s wall, {r['cpu_s']:.2f}s CPU "
              f"(read {r['read_cpu_s']:.2f}, runtime {r['runtime_cpu_s']:.2f}, recall {r['recall_cpu_s']:.2f} CPU); "
              f"first request {r['first_request_s'] * 1000:.1f} ms; RSS +{r['rss_added_mb']:.0f} MB "
              f"({r['rss_bytes_per_memory']:,.0f} B a memory), peak +{r['peak_added_mb']:.0f} MB "
              f"({r['peak_bytes_per_memory']:,.0f} B a memory)", flush=True)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"median of {len(runs)}: {med['wall_s']:.2f}s wall, {med['cpu_s']:.2f}s CPU (read {med['read_cpu_s']:.2f}, "
          f"runtime {med['runtime_cpu_s']:.2f}, recall {med['recall_cpu_s']:.2f}); "
          f"RSS {med['rss_bytes_per_memory']:,.0f} B a memory, peak {med['peak_bytes_per_memory']:,.0f} B a memory")
    print(json.dumps({"median": med, "runs": runs}))


if __name__ == "__main__":
    main()
