"""``experience-sync demo``: the whole system on embedded defaults, in a few seconds.

It starts a hub on a free loopback port with a SQLite store in a temporary
directory, creates tokens, and runs three instances of one source agent:

- ``edge-ws``: ``streaming`` over ``websocket`` (every 100 ms);
- ``edge-http``: ``lumped`` over ``https`` with gzip batches;
- ``edge-mcp``: ``check_in`` over ``mcp`` with full state (``https`` when the
  MCP plugin is not installed; the output says how to install it).

A scripted workload exercises each merge rule: exact and near-duplicate
memories from different instances, one skill used by all three with
different proficiencies, one fact reported by one instance (pending) and one
by three (integrated), and one conflict (a characteristic with two values)
resolved by ``--strategy``. The merged source agent is read back through the
hub's HTTP API with a read token and printed, with a table of the sync and
merge events an observer plugin collected. ``--keep`` leaves the hub running.
"""

from __future__ import annotations

import importlib
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import click
import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from experience_sync.hookspecs import hookimpl
from experience_sync.models import ObservabilityEvent

AGENT = "support-agent"
#: The check-in cron schedule: real cron fires at most once a minute, so the
#: demo also triggers the check-in itself with ``manager.flush``.
CHECKIN_SCHEDULE = "* * * * *"
MCP_HINT = "pip install ./plugins/mcp  (from the root of an experience-sync checkout)"


@dataclass
class InstancePlan:
    """One demo instance: its id, protocol, transport and a one-line description."""

    instance_id: str
    protocol: str
    transport: str
    how: str


@dataclass
class DemoObserver:
    """Collects the ``sync.*``, ``merge.*``, ``review.*`` and ``hub.*`` events of the run."""

    started: float = field(default_factory=time.monotonic)
    events: list[tuple[float, str, ObservabilityEvent]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @hookimpl
    def experience_sync_observe(self, event: ObservabilityEvent) -> None:
        """Keep the event with its time since the demo started and the side it came from."""
        if event.type.split(".", 1)[0] not in {"sync", "merge", "review", "hub"}:
            return
        # Instances emit from the caller's thread or their own worker threads;
        # everything else here is the hub serving requests.
        thread = threading.current_thread()
        instance_side = thread is threading.main_thread() or thread.name.startswith(
            "experience-sync-"
        )
        side = "instance" if instance_side else "hub"
        with self._lock:
            self.events.append((time.monotonic() - self.started, side, event))

    def snapshot(self) -> list[tuple[float, str, ObservabilityEvent]]:
        """The events so far, in arrival order."""
        with self._lock:
            return list(self.events)


# --------------------------------------------------------------------------- workload

#: (instance, memory text): one memory said four ways, plus unique ones.
MEMORIES = [
    ("edge-ws", "The customer portal logs users out after 15 minutes of inactivity."),
    ("edge-http", "The customer portal logs users out after 15 minutes of inactivity."),
    ("edge-mcp", "the Customer Portal logs users out after 15 minutes of inactivity!!"),
    ("edge-http", "After 15 minutes of inactivity, the customer portal logs users out."),
    ("edge-ws", "Password resets are handled by the identity team, not the helpdesk."),
    ("edge-http", "Invoices can be sent again from the billing page."),
    ("edge-mcp", "Enterprise customers have a dedicated account manager."),
]
#: (instance, proficiency) per use of the shared skill, in order.
SKILL = "ticket triage"
SKILL_USES = [
    ("edge-ws", 0.50), ("edge-http", 0.65), ("edge-mcp", 0.80),
    ("edge-ws", 0.60), ("edge-http", 0.70), ("edge-mcp", 0.90),
]
PENDING_FACT = ("refund approval limit", "Refunds above 500 EUR need a team lead's approval.")
INTEGRATED_FACT = ("vpn login loop", "Restarting the VPN client fixes most login loops.")
CONFLICT_KEY = "reply_tone"
CONFLICT = [("edge-ws", "formal", 0.6), ("edge-http", "friendly", 0.8)]


def run_workload(manager: Any, say: Any) -> None:
    """Record the scripted experiences on the three instances."""
    for instance, text in MEMORIES:
        manager.record_memory(instance, text, importance=0.7, tags=["portal"] if "portal" in text else [])
    say(f"recorded {len(MEMORIES)} memories (1 said 4 ways: exact, case/punctuation, word order)")
    for instance, proficiency in SKILL_USES:
        manager.record_skill_use(
            instance, SKILL, success=True, proficiency=proficiency, context="helpdesk queue"
        )
    say(f"recorded {len(SKILL_USES)} uses of skill '{SKILL}' on 3 instances")
    subject, content = PENDING_FACT
    manager.record_knowledge("edge-ws", content, subject=subject, confidence=0.7)
    subject, content = INTEGRATED_FACT
    for instance, confidence in (("edge-ws", 0.6), ("edge-http", 0.7), ("edge-mcp", 0.65)):
        manager.record_knowledge(instance, content, subject=subject, confidence=confidence)
    say("recorded one fact from 1 instance and another from 3 instances")
    for instance, value, confidence in CONFLICT:
        manager.record_characteristic(instance, CONFLICT_KEY, value, confidence=confidence)
        time.sleep(0.01)  # the second value is the later one, whatever the arrival order
    say(f"recorded a conflict: {CONFLICT_KEY} = 'formal' (edge-ws), then 'friendly' (edge-http)")


# --------------------------------------------------------------------------- set-up


def _mcp_available(stack: ExitStack) -> bool:
    """Whether the ``mcp`` transport can be used, registering the installed plugin if needed."""
    from experience_sync.plugins import get_plugin_manager, registered_plugin

    if "mcp" in get_plugin_manager().registry.names("transports"):
        return True
    try:
        module = importlib.import_module("experience_sync_mcp.plugin")
    except ImportError:
        return False
    stack.enter_context(registered_plugin(module, name="mcp"))
    return True


def instance_config(plan: InstancePlan, hub: Any, token: str, data_dir: Path) -> Any:
    """The configuration of one demo instance (no files or environment consulted)."""
    from experience_sync.config import load_config

    transport: dict[str, Any] = {"type": plan.transport}
    if plan.transport == "websocket":
        transport["websocket"] = {"url": hub.ws_url, "auth_token": token}
    elif plan.transport == "mcp":
        transport["mcp"] = {"server": f"{hub.url}/mcp", "auth_token": token}
    else:
        transport["https"] = {"endpoint": hub.url, "auth_token": token}
    return load_config(
        cwd=data_dir,
        environ={},
        default_protocol=plan.protocol,
        transport=transport,
        streaming={"interval_ms": 100, "batch_size": 5, "priority_threshold": 0.0},
        lumped={"enabled": plan.protocol == "lumped", "batch_interval": "1s",
                "max_batch_size": 100, "compression": "gzip"},
        check_in={"enabled": plan.protocol == "check_in", "schedule": CHECKIN_SCHEDULE,
                  "include_full_state": True},
        outbox={"data_dir": str(data_dir / "instances")},
    )


def plans(mcp: bool) -> list[InstancePlan]:
    """The three instances; the check-in one falls back to https without the MCP plugin."""
    return [
        InstancePlan("edge-ws", "streaming", "websocket", "streaming every 100 ms over WebSocket"),
        InstancePlan("edge-http", "lumped", "https", "lumped gzip batches over HTTP"),
        InstancePlan(
            "edge-mcp",
            "check_in",
            "mcp" if mcp else "https",
            "check-in with full state over " + ("MCP" if mcp else "HTTP (MCP plugin missing)"),
        ),
    ]


@contextmanager
def _progress(console: Console, steps: int) -> Iterator[Any]:
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("starting", total=steps)

        def step(description: str, done: str | None = None) -> None:
            if done:
                progress.console.print(
                    f"  [green]ok[/green] {done}", highlight=False, soft_wrap=True
                )
            progress.update(task, description=description, advance=1 if done else 0)

        yield step


# --------------------------------------------------------------------------- the run


def run_demo(
    console: Console, strategy: str, aggregation: str, keep: bool,
    host: str = "127.0.0.1", port: int = 0,
) -> int:
    """Run the demo; returns the process exit code.

    :param host: the address the demo's hub binds (loopback by default; it always uses tokens).
    :param port: its port; ``0`` picks a free one.
    """
    from experience_sync.client.manager import ExperienceSyncManager
    from experience_sync.config import MergeStrategyConfig
    from experience_sync.hub.web.server import run_in_thread
    from experience_sync.plugins import get_plugin_manager, registered_plugin

    from .demo_report import print_report

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="experience-sync-demo-"))
    observer = DemoObserver()
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        mcp = _mcp_available(stack)
        registry = get_plugin_manager().registry
        for kind, name in (("conflict_resolvers", strategy), ("skill_aggregations", aggregation)):
            if name not in registry.names(kind):
                raise click.BadParameter(
                    f"{name!r} is not installed (installed: {', '.join(registry.names(kind))})"
                )
        stack.enter_context(registered_plugin(observer, name="demo-observer"))
        if not mcp:
            console.print(
                "[yellow]The MCP plugin is not installed:[/yellow] the check-in instance "
                f"uses HTTP instead. To see it over MCP: [bold]{MCP_HINT}[/bold]"
            )
        instances = plans(mcp)
        store_url = f"sqlite:///{workdir / 'hub.db'}"
        strategy_cfg = MergeStrategyConfig(
            conflict_resolution=strategy, skill_aggregation=aggregation
        )
        with _progress(console, 12) as step:
            step("starting the hub")
            hub = stack.enter_context(
                run_in_thread(store_url, strategy=strategy_cfg, host=host, port=port)
            )
            step("creating tokens", f"hub on {hub.url} (store {store_url}, strategy {strategy})")
            tokens = {p.instance_id: hub.create_token(AGENT, p.instance_id) for p in instances}
            read_token = hub.create_token(AGENT, "demo-reader", scope="read")
            step("starting instances", "one write token per instance and a read token")
            manager = ExperienceSyncManager()
            stack.callback(manager.shutdown, 5.0)
            for plan in instances:
                cfg = instance_config(plan, hub, tokens[plan.instance_id], workdir)
                manager.initialize_sync(plan.instance_id, protocol=plan.protocol, config=cfg,
                                        agent_id=AGENT)
            step("recording the workload", "3 instances: " + "; ".join(
                f"{p.instance_id} {p.how}" for p in instances))
            run_workload(manager, lambda msg: step("recording the workload", msg))
            step("streaming over WebSocket", "workload recorded (the outboxes are durable)")
            ok = manager.flush("edge-ws", timeout=10)
            step("shipping the lumped batch",
                 f"edge-ws streamed its events ({'all acknowledged' if ok else 'NOT all acknowledged'})")
            ok_http = manager.flush("edge-http", timeout=10)
            step("checking in",
                 f"edge-http shipped its gzip batch ({'acknowledged' if ok_http else 'NOT acknowledged'})")
            # The schedule would fire within the minute; the demo does not wait.
            ok_mcp = manager.flush("edge-mcp", timeout=10)
            transport = "MCP" if mcp else "HTTP"
            step("reading the source agent",
                 f"edge-mcp checked in over {transport} with its full state, triggered now with "
                 f"manager.flush('edge-mcp') (its cron schedule '{CHECKIN_SCHEDULE}' fires at most "
                 f"once a minute) ({'acknowledged' if ok_mcp else 'NOT acknowledged'})")
            report = read_hub(hub.url, read_token)
            statuses = {p.instance_id: manager.status(p.instance_id) for p in instances}
            step("done", "read the merged source agent through the HTTP API with the read token")
        print_report(console, report, observer.snapshot(), instances, statuses, strategy,
                     aggregation, CONFLICT_KEY, CONFLICT)
        show_recall(console, manager, hub, workdir)
        all_ok = ok and ok_http and ok_mcp
        console.print(
            f"\nDemo finished in {time.monotonic() - started:.1f}s: "
            + ("every recorded event was acknowledged by the hub." if all_ok
               else "[red]some events were not acknowledged[/red].")
        )
        if keep:
            manager.shutdown(5.0)
            review_token = hub.create_token(AGENT, "demo-reviewer", scope="review")
            _keep_running(console, hub.url, read_token, review_token)
        return 0 if all_ok else 1


#: What the instance deployed after the workload asks its replica.
RECALL_QUERY = "why was the user logged out of the portal?"


def show_recall(console: Console, manager: Any, hub: Any, workdir: Path) -> None:
    """Deploy a fourth instance and show what its local replica recalls for a question."""
    from experience_sync.recall.render import render_hits

    plan = InstancePlan("edge-new", "streaming", "https", "deployed after the workload")
    cfg = instance_config(plan, hub, hub.create_token(AGENT, plan.instance_id), workdir)
    manager.initialize_sync(plan.instance_id, protocol=plan.protocol, config=cfg, agent_id=AGENT)
    pulled = manager.refresh(plan.instance_id, timeout=10)
    hits = manager.search(plan.instance_id, RECALL_QUERY, k=3) if pulled else []
    console.print(
        f"\n[bold]Recall[/bold]: a new instance (edge-new) pulled the source agent into its "
        f"local replica and asked [italic]{RECALL_QUERY!r}[/italic]; what its prompt would get "
        "(render_hits):"
    )
    console.print(render_hits(hits) or "[red]nothing recalled[/red]", markup=False,
                  highlight=False)


def read_hub(url: str, token: str) -> dict[str, Any]:
    """The agent's state, instances and reviews, read through the HTTP API."""
    headers = {"Authorization": f"Bearer {token}"}
    base = f"{url}/v1/agents/{AGENT}"
    with httpx.Client(headers=headers, timeout=10) as client:
        out: dict[str, Any] = {}
        for key, path in (("state", "/state"), ("instances", "/instances"),
                          ("reviews", "/reviews?status=all")):
            response = client.get(base + path)
            response.raise_for_status()
            out[key] = response.json()
    return out


def _keep_running(console: Console, url: str, read_token: str, review_token: str) -> None:
    console.print(
        "\n[bold]The hub keeps running.[/bold]\n"
        f"hub url: {url}\n"
        f"read token: {read_token}\n"
        f"review token: {review_token}\n"
        f"  curl -H 'Authorization: Bearer {read_token}' {url}/v1/agents/{AGENT}/state\n"
        f"  curl -H 'Authorization: Bearer {read_token}' {url}/v1/agents/{AGENT}/memories\n"
        f"  curl -H 'Authorization: Bearer {read_token}' "
        f"'{url}/v1/agents/{AGENT}/search?q=portal+logout'\n"
        f"  open {url}/console and sign in with the read token to look, or the review token "
        "to accept or reject queued conflicts too\n"
        f"  curl -H 'Authorization: Bearer {read_token}' {url}/metrics   # Prometheus\n"
        f"  open {url}/docs for the API\n"
        "Press Ctrl-C to stop it (its temporary store is then deleted).",
        highlight=False,
        soft_wrap=True,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, _on_signal)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    console.print("stopping the hub")


# --------------------------------------------------------------------------- the command


@click.command("demo")
@click.option(
    "--strategy",
    default="latest_wins",
    show_default=True,
    help="Conflict resolution (latest_wins, weighted_merge, manual_review, or a plugin's).",
)
@click.option(
    "--skill-aggregation",
    "aggregation",
    default="max",
    show_default=True,
    help="How instances' proficiencies combine (max, average, weighted, or a plugin's).",
)
@click.option("--keep", is_flag=True, help="Leave the hub running afterwards (Ctrl-C stops it).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the demo's hub binds.")
@click.option("--port", default=0, type=click.IntRange(0, 65535),
              help="Port of the demo's hub (default: a free one).")
def demo(strategy: str, aggregation: str, keep: bool, host: str, port: int) -> None:
    """Run a hub and three instances on a scripted workload, then show the merged agent."""
    import sys

    # Piped output gets room for the tables instead of rich's 80-column default.
    console = Console(width=None if sys.stdout.isatty() else 140)
    code = run_demo(console, strategy, aggregation, keep, host=host, port=port)
    sys.exit(code)


