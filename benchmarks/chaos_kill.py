"""Chaos test for the instance side: SIGKILL instances at random moments while they stream.

Run::

    .venv/bin/python benchmarks/chaos_kill.py --instances 3 --kills 20 --seconds 60 \\
        [--durability group|sync] [--transport https|websocket] [--seed N] [--rate R]

It starts a real hub on a free loopback port (temporary SQLite store) and runs
``--instances`` instance processes. Each one streams distinct memories, skill
uses and knowledge through ``ExperienceSyncManager`` and prints every event's
id once its ``record_*`` call has returned (skill uses also print the
cumulative count the event carries). At ``--kills`` random moments (seeded)
a random instance gets SIGKILL, whatever it is doing (streaming, or still
starting and replaying its outbox), and is restarted at once on the same data
directory. After ``--seconds`` every instance is killed one last time, then
restarted to record one more use of each skill and ``flush``.

Then the hub is checked:

* every event id an instance reported as recorded is in the hub's log
  (none lost), and no id appears twice in the log (none doubled);
* log rows nobody reported (an event recorded just before a kill, whose id was
  never printed) number at most one per kill;
* each instance's skill counts never go back or skip more than a kill
  explains, and the hub's ``per_instance`` invocations and
  ``usage.total_invocations`` (read through ``GET /v1/agents/{agent}/skills``)
  equal the instances' last cumulative counts (a re-sent report counted twice
  would show here);
* each instance's ``total_events`` (``GET /v1/agents/{agent}/instances``)
  equals its rows in the log.

It prints the figures as JSON and a summary line, and exits 0 if all holds,
1 on any loss, doubling or mismatch, 2 (``INCONCLUSIVE``) if the final flush
ran out of ``--flush-timeout`` with events still queued (the hub fell behind:
lower ``--rate``). Loopback only; bounded by ``--seconds`` plus
``--flush-timeout``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

os.environ.setdefault("EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD", "1")

AGENT = "chaos-fleet"
SKILLS = ("sql queries", "refund handling", "ticket triage")
TOKEN_ENV = "EXPERIENCE_SYNC_CHAOS_TOKEN"
_SYLLABLES = [c + v for c in "bcdfghjklmnprstvz" for v in "aeiou"]


# --------------------------------------------------------------------------- instance side


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))


def _sentence(rng: random.Random, words: int) -> str:
    """Letters only, so no two memories differ only in a number (the hub's dedup
    reads such pairs as contradictions); words drawn from ~85^3 pseudo-words, so
    no two sentences are near-duplicates."""
    return " ".join(_word(rng) for _ in range(words))


def run_instance(args: argparse.Namespace) -> int:
    """One instance process: stream until killed, or (``--final``) record, flush, exit."""
    from experience_sync import ExperienceSyncConfig, ExperienceSyncManager

    token = os.environ[TOKEN_ENV]
    cfg = ExperienceSyncConfig.model_validate({
        "transport": {"type": args.transport,
                      "https": {"endpoint": args.url, "auth_token": token},
                      "websocket": {"url": args.ws_url, "auth_token": token}},
        "streaming": {"interval_ms": 20, "batch_size": 50},
        "outbox": {"durability": args.durability},
    })
    out = sys.stdout
    inst = args.instance
    manager = ExperienceSyncManager(cfg, data_dir=args.data_dir)
    manager.initialize_sync(inst, "streaming", agent_id=AGENT)
    _say(out, "R", str(manager.status(inst).backlog_size))
    rng = random.Random(f"{args.seed}/{inst}/{args.run}")
    if args.final:
        for name in SKILLS:
            ev = manager.record_skill_use(inst, name, priority=0.9)
            _say(out, "S", ev.event_id, name, str(_invocations(ev)))
        ok = manager.flush(timeout=args.flush_timeout)
        _say(out, "F", "1" if ok else "0", str(manager.status(inst).backlog_size))
        return 0 if manager.shutdown(10) and ok else 1
    period = 1.0 / args.rate
    due = time.monotonic()
    burst = 0
    while True:
        roll = rng.random()
        if roll < 0.6:
            ev = manager.record_memory(inst, _sentence(rng, rng.randint(6, 10)).capitalize(),
                                       importance=0.9, tags=[_word(rng)])
            _say(out, "M", ev.event_id)
        elif roll < 0.8:
            name = rng.choice(SKILLS)
            ev = manager.record_skill_use(inst, name, success=rng.random() < 0.8,
                                          context=_word(rng), priority=0.9)
            _say(out, "S", ev.event_id, name, str(_invocations(ev)))
        else:
            subject = f"{inst} {_sentence(rng, 3)}"
            ev = manager.record_knowledge(inst, _sentence(rng, 8).capitalize(),
                                          subject=subject, confidence=0.9)
            _say(out, "K", ev.event_id)
        # Paced around --rate on average, so the hub keeps up and the final
        # flush stays bounded; now and then a burst is recorded back to back
        # (then a pause), so that kills also land inside record and commit
        # calls, not only in sleeps.
        due += period * rng.uniform(0.2, 1.8)
        if burst:
            burst -= 1
            continue
        if rng.random() < 0.01:
            burst = rng.randint(20, 200)
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:
            due = time.monotonic()


def _invocations(event: Any) -> int:
    return int(event.skill.usage.invocations)


def _say(out: IO[str], *parts: str) -> None:
    # One write and a flush per line: a line either reaches the pipe whole
    # before a SIGKILL or not at all (lines are far below PIPE_BUF).
    out.write("\t".join(parts) + "\n")
    out.flush()


# --------------------------------------------------------------------------- orchestrator


@dataclass
class Run:
    """One process of one instance and what it printed."""

    instance: str
    number: int
    final: bool
    proc: subprocess.Popen[str]
    reader: threading.Thread | None = None
    lines: list[list[str]] = field(default_factory=list)
    killed: bool = False
    ready: bool = False

    def read(self) -> None:
        """Collect the process's lines until it ends (on a thread of its own)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.endswith("\n"):
                break  # a torn last line cannot happen (one write per line); be safe
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "R":
                self.ready = True
            self.lines.append(parts)
        self.proc.stdout.close()


@dataclass
class Chaos:
    """The whole run: hub, instances, kills, and what was reported."""

    args: argparse.Namespace
    url: str
    ws_url: str
    tokens: dict[str, str]
    data_dir: Path
    log_dir: Path
    runs: list[Run] = field(default_factory=list)
    kills_streaming: int = 0
    kills_starting: int = 0
    exited: list[str] = field(default_factory=list)

    def spawn(self, instance: str, number: int, final: bool = False) -> Run:
        """Start run ``number`` of ``instance`` (``final``: record, flush and exit)."""
        a = self.args
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child",
               "--instance", instance, "--run", str(number), "--url", self.url,
               "--ws-url", self.ws_url, "--data-dir", str(self.data_dir),
               "--seed", str(a.seed), "--rate", str(a.rate), "--durability", a.durability,
               "--transport", a.transport, "--flush-timeout", str(a.flush_timeout)]
        if final:
            cmd.append("--final")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **{TOKEN_ENV: self.tokens[instance]})
        stderr = open(self.log_dir / f"{instance}.{number}.stderr", "w")  # noqa: SIM115
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                    env=env)
        finally:
            stderr.close()
        run = Run(instance, number, final, proc)
        run.reader = threading.Thread(target=run.read, daemon=True)
        run.reader.start()
        self.runs.append(run)
        return run

    def kill(self, run: Run) -> None:
        """SIGKILL ``run`` and wait for it; a run that already ended is a problem."""
        if run.proc.poll() is not None:
            self.exited.append(f"{run.instance} run {run.number} exited by itself "
                               f"({run.proc.returncode}): {self.stderr_of(run)}")
        else:
            if run.ready:
                self.kills_streaming += 1
            else:
                self.kills_starting += 1
            run.proc.send_signal(signal.SIGKILL)
            run.killed = True
        run.proc.wait(30)
        if run.reader is not None:
            run.reader.join(30)

    def stderr_of(self, run: Run) -> str:
        """The end of what ``run`` wrote to stderr."""
        path = self.log_dir / f"{run.instance}.{run.number}.stderr"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def orchestrate(args: argparse.Namespace) -> int:
    """Start the hub and the instances, kill and restart them, then check the hub."""
    import httpx

    from experience_sync.hub.web.server import run_in_thread

    # SIGTERM ends the run like Ctrl-C does, so no instance process is left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rng = random.Random(args.seed)
    instances = [f"chaos-{i + 1}" for i in range(args.instances)]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="xs-chaos-") as tmp, run_in_thread() as server:
        tokens = {i: server.create_token(AGENT, i) for i in instances}
        reader_token = server.create_token(AGENT, "chaos-checker", scope="read")
        chaos = Chaos(args, server.url, server.ws_url, tokens, Path(tmp) / "instances",
                      Path(tmp) / "logs")
        chaos.log_dir.mkdir()
        try:
            streamed, final_s = drive(chaos, rng, instances)
        finally:
            for run in chaos.runs:  # on an error or Ctrl-C: leave no instance behind
                if run.proc.poll() is None:
                    run.proc.kill()
                    run.proc.wait()
        headers = {"Authorization": f"Bearer {reader_token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            skills = client.get(f"/v1/agents/{AGENT}/skills").raise_for_status().json()
            hub_instances = client.get(f"/v1/agents/{AGENT}/instances").raise_for_status().json()
        log = [(e.entry_id, e.instance_id) for e in server.hub.store.iter_log(AGENT)
               if e.kind == "event"]
        report = check(chaos, instances, log, skills, hub_instances)
    report.update(streamed_s=round(streamed, 1), final_flush_s=round(final_s, 1),
                  elapsed_s=round(time.monotonic() - started, 1))
    print_summary(args, chaos, report)
    return {"OK": 0, "FAILED": 1, "INCONCLUSIVE": 2}[report["verdict"]]


def drive(chaos: Chaos, rng: random.Random, instances: list[str]) -> tuple[float, float]:
    """Stream, kill and restart for ``--seconds``, then run each instance's final flush.

    :returns: the streaming time and the final runs' time, in seconds.
    """
    args = chaos.args
    numbers = dict.fromkeys(instances, 0)
    current = {i: chaos.spawn(i, 0) for i in instances}
    t0 = time.monotonic()
    for at in sorted(rng.uniform(0.3, args.seconds) for _ in range(args.kills)):
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        victim = rng.choice(instances)
        chaos.kill(current[victim])
        numbers[victim] += 1
        current[victim] = chaos.spawn(victim, numbers[victim])
    time.sleep(max(0.0, t0 + args.seconds - time.monotonic()))
    for inst in instances:  # the last crash of each instance
        chaos.kill(current[inst])
    t1 = time.monotonic()
    finals = [chaos.spawn(i, numbers[i] + 1, final=True) for i in instances]
    for run in finals:
        try:
            run.proc.wait(args.flush_timeout + 60)
        except subprocess.TimeoutExpired:
            run.proc.kill()
            run.proc.wait()
        if run.reader is not None:
            run.reader.join(30)
        if run.proc.returncode != 0 and not any(p[0] == "F" for p in run.lines):
            chaos.exited.append(f"final run of {run.instance} exited "
                                f"{run.proc.returncode}: {chaos.stderr_of(run)}")
    return t1 - t0, time.monotonic() - t1


def _skill_lines(chaos: Chaos, inst: str) -> Iterator[tuple[Run, str, int]]:
    for run in chaos.runs:
        if run.instance == inst:
            for parts in run.lines:
                if parts[0] == "S":
                    yield run, parts[2], int(parts[3])


def check(chaos: Chaos, instances: list[str], log: list[tuple[str, str]],
          skills: list[dict[str, Any]], hub_instances: list[dict[str, Any]]) -> dict[str, Any]:
    """Compare what the instances reported with the hub's log and skills."""
    problems: list[str] = list(chaos.exited)
    finals = [parts for run in chaos.runs if run.final for parts in run.lines
              if parts[0] == "F"]
    flushed = len(finals) == sum(1 for run in chaos.runs if run.final) and all(
        parts[1] == "1" for parts in finals)
    queued = sum(int(parts[2]) for parts in finals)
    reported: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    replayed = final_backlog = 0
    for run in chaos.runs:
        for parts in run.lines:
            if parts[0] in ("M", "S", "K"):
                reported[parts[1]] += 1
                kinds[parts[0]] += 1
            elif parts[0] == "R" and run.final:
                final_backlog += int(parts[1])
            elif parts[0] == "R" and run.number > 0:
                replayed += int(parts[1])
    in_log = Counter(entry for entry, _ in log)
    lost = [e for e in reported if e not in in_log]
    doubled = sum(n - 1 for n in in_log.values() if n > 1)
    doubled += sum(n - 1 for n in reported.values() if n > 1)  # one id for two records
    unreported = sum(1 for e in in_log if e not in reported)
    kills = chaos.kills_streaming + chaos.kills_starting
    if doubled:
        problems.append(f"{doubled} events doubled in the hub's log")
    if unreported > kills:
        problems.append(f"{unreported} log rows nobody reported, more than the {kills} kills")
    # Skill counts: per instance and skill, strictly increasing by one; each
    # kill in between allows one more (a use recorded but not printed).
    last: dict[tuple[str, str], int] = {}
    for inst in instances:
        prev: dict[str, tuple[int, int]] = {}  # skill -> (run number, count)
        for run, name, count in _skill_lines(chaos, inst):
            since, base = prev.get(name, (0, 0))
            between = sum(1 for r in chaos.runs if r.instance == inst and r.killed
                          and since <= r.number < run.number)
            if not base < count <= base + 1 + between:
                problems.append(f"{inst} {name!r}: count {count} after {base}")
            prev[name] = (run.number, count)
            last[(inst, name)] = count
    # Up to here a problem is one whatever the final flush did; a missing event
    # or a short skill count is a loss only if the final flush emptied the outboxes.
    conclusive = bool(problems)
    if lost:
        problems.append(f"{len(lost)} recorded events missing from the hub's log, e.g. {lost[:3]}"
                        + ("" if flushed else f" ({queued} events still queued in the outboxes"
                           " after --flush-timeout: the hub fell behind; lower --rate or "
                           "raise --flush-timeout)"))
    by_name = {s["name"]: s for s in skills}
    for name in SKILLS:
        skill = by_name.get(name)
        if skill is None:
            problems.append(f"skill {name!r} missing at the hub")
            continue
        want = sum(last.get((i, name), 0) for i in instances)
        if skill["usage"]["total_invocations"] != want:
            problems.append(f"skill {name!r}: hub total_invocations "
                            f"{skill['usage']['total_invocations']}, instances say {want}")
        for inst in instances:
            got = skill["per_instance"].get(inst, {}).get("invocations", 0)
            if got != last.get((inst, name), 0):
                problems.append(f"skill {name!r}: hub has {got} invocations from {inst}, "
                                f"it says {last.get((inst, name), 0)}")
    rows = Counter(inst for _, inst in log)
    for status in hub_instances:
        if status["instance_id"] in instances and status["total_events"] != rows[
                status["instance_id"]]:
            problems.append(f"{status['instance_id']}: hub total_events "
                            f"{status['total_events']} != {rows[status['instance_id']]} log rows")
    delivered = sum(1 for e in reported if e in in_log)
    verdict = ("FAILED" if conclusive or (problems and flushed)
               else "INCONCLUSIVE" if problems else "OK")
    return {"verdict": verdict, "flushed": flushed, "queued_after_flush": queued,
            "recorded": sum(reported.values()), "memories": kinds["M"],
            "skill_uses": kinds["S"], "knowledge": kinds["K"], "delivered": delivered,
            "lost": len(lost) if flushed else 0,
            "undelivered": 0 if flushed else len(lost), "doubled": doubled,
            "unreported_in_log": unreported,
            "backlog_at_restarts": replayed, "backlog_at_final_restart": final_backlog,
            "log_rows": len(log),
            "skill_totals": {name: by_name.get(name, {}).get("usage", {}).get(
                "total_invocations") for name in SKILLS},
            "problems": problems}


def print_summary(args: argparse.Namespace, chaos: Chaos, report: dict[str, Any]) -> None:
    """Problems (if any), the figures as JSON, and the one summary line."""
    for problem in report["problems"]:
        print("PROBLEM:", problem, file=sys.stderr)
    print(json.dumps({k: v for k, v in report.items() if k != "problems"}))
    kills = chaos.kills_streaming + chaos.kills_starting
    print(f"chaos_kill: {report['verdict']} instances={args.instances} "
          f"transport={args.transport} durability={args.durability} seed={args.seed} "
          f"streamed={report['streamed_s']}s kills={kills} "
          f"(mid-stream {chaos.kills_streaming}, while starting {chaos.kills_starting}, "
          f"incl. {args.instances} final) recorded={report['recorded']} "
          f"delivered={report['delivered']} lost={report['lost']} "
          + (f"undelivered={report['undelivered']} " if not report["flushed"] else "")
          + f"doubled={report['doubled']} backlog_at_restarts={report['backlog_at_restarts']} "
          f"skill_counts={'ok' if not any('skill' in p for p in report['problems']) else 'BAD'} "
          f"final_flush={report['final_flush_s']}s elapsed={report['elapsed_s']}s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--child`` and what follows are for the instance processes)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--instances", type=int, default=3)
    p.add_argument("--kills", type=int, default=20, help="random SIGKILLs (plus one final "
                   "kill per instance)")
    p.add_argument("--seconds", type=float, default=60.0, help="streaming time")
    p.add_argument("--durability", choices=["group", "sync"], default="group")
    p.add_argument("--transport", choices=["https", "websocket"], default="https")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate", type=float, default=80.0, help="events/s per instance (the hub "
                   "must keep up, or the final flush runs out of time)")
    p.add_argument("--flush-timeout", type=float, default=120.0)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--final", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--instance", help=argparse.SUPPRESS)
    p.add_argument("--run", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--ws-url", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.child and (args.instances < 1 or args.kills < 0 or args.seconds <= 0
                           or args.rate <= 0):
        p.error("--instances >= 1, --kills >= 0, --seconds > 0 and --rate > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_instance(args) if args.child else orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
