"""``experience-sync pull`` against the real hub."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from client_helpers import make_config

from experience_sync import ExperienceSyncManager
from experience_sync.cli import build_cli
from experience_sync.hub.web.server import run_in_thread
from experience_sync.models import AgentState


def test_pull_prints_the_merged_state(tmp_path: Path) -> None:
    with run_in_thread() as hub:
        token = hub.create_token("agent", "inst-1")
        cfg = make_config(transport={"https": {"endpoint": hub.url, "auth_token": token}})
        m = ExperienceSyncManager(cfg, data_dir=tmp_path)
        m.initialize_sync("inst-1", "streaming", agent_id="agent")
        m.record_memory("inst-1", "Customers ask about refunds on Mondays", importance=0.9)
        m.record_skill_use("inst-1", "refunds", proficiency=0.8)
        assert m.flush(timeout=30)
        m.shutdown(10)

        runner = CliRunner()
        cli = build_cli()
        args = ["pull", "--agent", "agent", "--endpoint", hub.url, "--token", token]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        state = AgentState.model_validate_json(result.output)
        assert [mem.content for mem in state.memories] == [
            "Customers ask about refunds on Mondays"
        ]
        summary = runner.invoke(cli, [*args, "--summary", "--since", "0"])
        assert summary.exit_code == 0 and "1 memories, 1 skills" in summary.output

        denied = runner.invoke(cli, ["pull", "--agent", "agent", "--endpoint", hub.url,
                                     "--token", "wrong"])
        assert denied.exit_code == 1 and "401" in denied.output


def test_search_prints_ranked_hits(tmp_path: Path) -> None:
    from experience_sync.recall import SearchResults

    with run_in_thread() as hub:
        token = hub.create_token("agent", "inst-1")
        cfg = make_config(transport={"https": {"endpoint": hub.url, "auth_token": token}})
        m = ExperienceSyncManager(cfg, data_dir=tmp_path)
        m.initialize_sync("inst-1", "streaming", agent_id="agent")
        m.record_memory("inst-1", "Customers ask about refunds on Mondays")
        m.record_memory("inst-1", "The payments API is down on Sunday nights")
        assert m.flush(timeout=30)
        m.shutdown(10)

        runner = CliRunner()
        cli = build_cli()
        base = ["search", "--agent", "agent", "--endpoint", hub.url, "--token", token]
        result = runner.invoke(cli, [*base, "payments down"])
        assert result.exit_code == 0, result.output
        first = result.output.splitlines()[0]
        assert "memory" in first and "The payments API is down on Sunday nights" in first
        assert "[inst-1]" in first
        as_json = runner.invoke(cli, [*base, "refund", "--json", "-k", "1"])
        assert as_json.exit_code == 0, as_json.output
        results = SearchResults.model_validate_json(as_json.output)
        assert [h.text for h in results.hits] == ["Customers ask about refunds on Mondays"]
        assert runner.invoke(cli, [*base, "zebra"]).output.strip() == "no hits"
        bad = runner.invoke(cli, [*base, "x", "-k", "0"])
        assert bad.exit_code == 2 and "k:" in bad.output
        denied = runner.invoke(cli, [*base[:-1], "wrong", "refund"])
        assert denied.exit_code == 1 and "401" in denied.output
