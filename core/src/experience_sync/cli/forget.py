"""``experience-sync forget``: remove experiences for good (a data-deletion request).

At a hub, through its ``DELETE`` routes with an admin token (``--endpoint``,
``--token`` or ``$EXPERIENCE_SYNC_HUB_TOKEN``), or on a stopped hub's store
(``--store``)::

    experience-sync forget query "Zebulon Quark" --agent support-bot --endpoint http://hub:8787
    experience-sync forget memory 3f2a... --agent support-bot --store sqlite:///./hub.db
    experience-sync forget instance laptop-7 --agent support-bot --dry-run --endpoint ...
    experience-sync forget audit --agent support-bot --endpoint ...

and in an instance's own files, for what it has not sent yet (run it while
the instance is stopped)::

    experience-sync forget outbox --instance laptop-7 --query "Zebulon Quark"

The text to forget is sent in the request body, never in a URL.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

__all__ = ["forget"]

_DEFAULT_STORE = "sqlite:///./hub.db"


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _target_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed((
        click.option("--agent", required=True, help="The source agent."),
        click.option("--endpoint", default=None, help="A running hub's URL (else --store)."),
        click.option("--token", envvar="EXPERIENCE_SYNC_HUB_TOKEN", default=None,
                     help="An admin token (default $EXPERIENCE_SYNC_HUB_TOKEN)."),
        click.option("--store", "store_url", default=None,
                     help=f"A stopped hub's store URL (default {_DEFAULT_STORE} without "
                          "--endpoint)."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                     help="TOML config (merge_strategy), with --store."),
        click.option("--dry-run", is_flag=True, help="Count what would go; change nothing."),
        click.option("--json", "as_json", is_flag=True, help="Print the ForgetResult JSON."),
    )):
        command = option(command)
    return command


def _over_http(endpoint: str, token: str | None, method: str, path: str,
               body: dict[str, Any] | None = None) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(
            method, endpoint.rstrip("/") + path, json=body, headers=headers, timeout=300.0
        )
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the hub at {endpoint}: {exc}")
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        _fail(f"hub answered {response.status_code}: {message}")
    return response.json()


def _on_store(store_url: str, config_file: str | None, agent: str, body: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    from experience_sync.config import load_config
    from experience_sync.errors import ConfigError, PluginError
    from experience_sync.forgetting import ForgetRequest
    from experience_sync.hub.engine import MergeEngine, open_store
    from experience_sync.hub.forget import ForgetRefused, Requester, forget

    try:
        wanted = ForgetRequest.model_validate(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        _fail(f"{'.'.join(map(str, err['loc'])) or '(request)'}: {err['msg']}", 2)
    try:
        engine = MergeEngine(open_store(store_url), load_config(config_file).merge_strategy)
    except (ConfigError, PluginError, ValueError, OSError) as exc:
        _fail(str(exc))
    try:
        return forget(engine, agent, wanted, Requester(scope="cli")).model_dump(mode="json")
    except ForgetRefused as exc:
        _fail(exc.message)
    finally:
        engine.close()


def _run(agent: str, endpoint: str | None, token: str | None, store_url: str | None,
         config_file: str | None, as_json: bool, body: dict[str, Any],
         path: str | None = None) -> None:
    from urllib.parse import quote

    if endpoint and store_url:
        _fail("name --endpoint (a running hub) or --store (a stopped one), not both", 2)
    if endpoint:
        agent_path = f"/v1/agents/{quote(agent, safe='')}"
        if path is None:
            result = _over_http(endpoint, token, "DELETE", agent_path + "/experiences", body)
        else:
            suffix = "?dry_run=true" if body.get("dry_run") else ""
            result = _over_http(endpoint, token, "DELETE", agent_path + path + suffix)
    else:
        result = _on_store(store_url or _DEFAULT_STORE, config_file, agent, body)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    removed = ", ".join(f"{n} {k}" for k, n in result["removed"].items() if n) or "no items"
    verb = "would forget" if result["dry_run"] else "forgot"
    click.echo(f"{verb} {result['events_forgotten']} events of agent {result['agent_id']} "
               f"({removed}); forget {result['forget_id']}, cursor {result['cursor']}")


@click.group("forget")
def forget() -> None:
    """Forget experiences for good: at a hub (admin token) or in an instance's outbox."""


def _text_command(name: str, field: str, help_text: str) -> None:
    @forget.command(name, help=help_text)
    @click.argument("text")
    @_target_options
    def command(text: str, agent: str, endpoint: str | None, token: str | None,
                store_url: str | None, config_file: str | None, dry_run: bool,
                as_json: bool) -> None:
        _run(agent, endpoint, token, store_url, config_file, as_json,
             {field: text, "dry_run": dry_run})


_text_command("query", "query",
              "Forget every event holding TEXT (a person's name), normalized, inside words too.")
_text_command("subject", "subject",
              "Forget knowledge about SUBJECT, characteristics of that key, memories tagged so.")


def _ids_command(name: str, field: str, route: str | None, help_text: str) -> None:
    @forget.command(name, help=help_text)
    @click.argument("ids", nargs=-1, required=True)
    @_target_options
    def command(ids: tuple[str, ...], agent: str, endpoint: str | None, token: str | None,
                store_url: str | None, config_file: str | None, dry_run: bool,
                as_json: bool) -> None:
        from urllib.parse import quote

        body = {field: list(ids), "dry_run": dry_run}
        # One id of an item kind: its own route (404 if the hub does not hold it).
        path = f"/{route}/{quote(ids[0], safe='')}" if route and len(ids) == 1 else None
        _run(agent, endpoint, token, store_url, config_file, as_json, body, path)


_ids_command("memory", "memory_ids", "memories", "Forget memories (the events they came from).")
_ids_command("knowledge", "knowledge_ids", "knowledge",
             "Forget knowledge items (by knowledge_id or key).")
_ids_command("skill", "skill_ids", "skills", "Forget skills' histories.")
_ids_command("event", "event_ids", None, "Forget events by id.")
_ids_command("instance", "instance_ids", "instances", "Forget everything instances sent.")


@forget.command("audit")
@click.option("--agent", required=True, help="The source agent.")
@click.option("--endpoint", default=None, help="A running hub's URL (else --store).")
@click.option("--token", envvar="EXPERIENCE_SYNC_HUB_TOKEN", default=None,
              help="An admin token (default $EXPERIENCE_SYNC_HUB_TOKEN).")
@click.option("--store", "store_url", default=None, help="A hub store URL.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audit(agent: str, endpoint: str | None, token: str | None, store_url: str | None,
          as_json: bool) -> None:
    """The audit trail of an agent's forgets: who, when, which selectors, how many (no text)."""
    from urllib.parse import quote

    if endpoint:
        records = _over_http(endpoint, token, "GET", f"/v1/agents/{quote(agent, safe='')}/forgets")
    else:
        from experience_sync.hub.engine import open_store

        store = open_store(store_url or _DEFAULT_STORE)
        try:
            records = [r.model_dump(mode="json") for r in store.forget_records(agent)]
        except NotImplementedError as exc:
            _fail(str(exc))
        finally:
            store.close()
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo("no forgets")
    for r in records:
        who = r["token_id"] or r["principal_scope"] or "-"
        selectors = ", ".join(f"{k}={v}" for k, v in r["selectors"].items())
        click.echo(f"{r['at']}  {r['forget_id']}  by {who}  {selectors}  "
                   f"events={r['events_forgotten']}")


@forget.command("outbox")
@click.option("--instance", required=True, help="The instance whose files to purge.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="The instances' data directory (default: the configured one).")
@click.option("--query", default=None, help="Purge events holding this text.")
@click.option("--subject", default=None, help="Purge events about this subject.")
@click.option("--event-id", "event_ids", multiple=True, help="Purge this event (repeatable).")
def outbox(instance: str, data_dir: str | None, query: str | None, subject: str | None,
           event_ids: tuple[str, ...]) -> None:
    """Purge a stopped instance's unsent events, dead letters and local state that match."""
    from pydantic import ValidationError

    from experience_sync.client.outbox import Outbox
    from experience_sync.client.paths import instance_dir
    from experience_sync.config import load_config
    from experience_sync.forgetting import ForgetRequest, event_matches

    try:
        wanted = ForgetRequest(query=query, subject=subject, event_ids=list(event_ids))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        _fail(f"{'.'.join(map(str, err['loc'])) or '(options)'}: {err['msg']}", 2)
    path = instance_dir(instance, data_dir) / "outbox.db"
    if not path.exists():
        _fail(f"no outbox at {path}")
    box = Outbox(path, load_config().outbox)
    try:
        counts = box.purge(lambda event: event_matches(event, wanted))
    finally:
        box.close()
    click.echo("purged " + ", ".join(f"{n} {table}" for table, n in counts.items()))
