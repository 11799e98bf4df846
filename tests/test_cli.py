"""The ``experience-sync`` command line: plugins, config show/validate, schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from experience_sync.cli import build_cli
from experience_sync.models import SCHEMA_VERSION, WIRE_MODELS, ExperienceEvent

TOKEN = "xs-cli-secret-7f3a"


def _run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(build_cli(), list(args), env=env, catch_exceptions=False)


def _toml(overrides: dict[str, Any]) -> str:
    """The stand-in names as TOML, so a file passes the installed-name checks."""
    return (
        f'default_protocol = "{overrides["default_protocol"]}"\n'
        f'[transport]\ntype = "{overrides["transport"]["type"]}"\n'
        f'[merge_strategy]\nsimilarity_method = "{overrides["merge_strategy"]["similarity_method"]}"\n'
    )


# --------------------------------------------------------------------------- plugins


def test_plugins_json_lists_builtins_with_hooks_and_names() -> None:
    result = _run("plugins", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert {"name", "distribution", "version", "builtin", "hooks", "provides"} <= set(rows[0])
    by_name = {row["name"]: row for row in rows}
    aggregations = by_name["experience_sync.builtin.aggregations"]
    assert aggregations["hooks"] == ["experience_sync_register_skill_aggregations"]
    assert aggregations["provides"] == {"skill_aggregations": ["average", "max", "weighted"]}


def test_plugins_table(register_plugin: Callable[..., str]) -> None:
    class Shouty:
        @staticmethod
        def experience_sync_register_embedders(register: Callable[..., None]) -> None:
            register("shouty-embedder", lambda config=None: None)

    register_plugin(Shouty(), name="shouty")
    result = _run("plugins", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    out = result.stdout
    for text in ("plugin", "distribution", "hooks", "provides", "experience-sync", "shouty"):
        assert text in out
    assert "register_embedders" in out


def test_plugins_reports_a_clash_without_a_traceback(register_plugin: Callable[..., str]) -> None:
    class Clash:
        @staticmethod
        def experience_sync_register_embedders(register: Callable[..., None]) -> None:
            register("hashing", lambda config=None: None)

    register_plugin(Clash(), name="clash")
    result = CliRunner().invoke(build_cli(), ["plugins", "--json"])
    assert result.exit_code == 1
    assert "'hashing'" in result.stderr and "'clash'" in result.stderr
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- config


def test_config_show_masks_secrets(
    stand_ins: Callable[[], dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = stand_ins()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experience-sync.toml").write_text(
        _toml(overrides)
        + f'[transport.https]\nendpoint = "https://hub.example.com"\nauth_token = "{TOKEN}"\n'
        + f'headers = {{ Authorization = "Bearer {TOKEN}", X-Team = "a" }}\n'
    )
    result = _run(
        "config", "show", env={"EXPERIENCE_SYNC_TRANSPORT__WEBSOCKET__AUTH_TOKEN": TOKEN}
    )
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output
    shown = json.loads(result.stdout)
    https = shown["transport"]["https"]
    assert https["auth_token"] == "**********"
    assert https["headers"] == {"Authorization": "**********", "X-Team": "a"}
    assert shown["transport"]["websocket"]["auth_token"] == "**********"
    assert shown["transport"]["type"] == overrides["transport"]["type"]


def test_config_show_with_file_option(
    stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    path = tmp_path / "team.toml"
    path.write_text(_toml(stand_ins()) + "[streaming]\nbatch_size = 42\n")
    result = _run("config", "show", "--file", str(path))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["streaming"]["batch_size"] == 42


def test_config_validate_ok(stand_ins: Callable[[], dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(_toml(stand_ins()) + '[lumped]\nbatch_interval = "6h"\n')
    result = _run("config", "validate", str(path))
    assert result.exit_code == 0, result.output
    assert "ok" in result.stdout


def test_config_validate_names_every_bad_field(
    stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        _toml(stand_ins())
        + "[streaming]\npriority_threshold = 1.5\n"
        + '[lumped]\nbatch_interval = "soon"\n'
        + '[check_in]\nschedule = "61 * * * *"\n'
    )
    result = _run("config", "validate", str(path))
    assert result.exit_code == 1
    err = result.stderr
    assert str(path) in err
    assert "streaming.priority_threshold: Input should be less than or equal to 1" in err
    assert "lumped.batch_interval: 'soon' is not a duration" in err
    assert "check_in.schedule: '61 * * * *' is not a valid cron expression" in err


def test_config_validate_unknown_transport_lists_installed(
    stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    overrides = stand_ins()
    overrides["transport"] = {"type": "[bold]carrier-pigeon"}  # not rich markup either
    path = tmp_path / "bad.toml"
    path.write_text(_toml(overrides))
    result = _run("config", "validate", str(path))
    assert result.exit_code == 1
    assert "transport.type: unknown transport '[bold]carrier-pigeon' (installed:" in result.stderr
    assert "test-transport" in result.stderr


def test_config_validate_missing_file(tmp_path: Path) -> None:
    result = _run("config", "validate", str(tmp_path / "nope.toml"))
    assert result.exit_code == 1
    assert "does not exist" in result.stderr


# --------------------------------------------------------------------------- schema


def test_schema_prints_every_wire_model() -> None:
    result = _run("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["schema_version"] == SCHEMA_VERSION
    assert set(schema["models"]) == set(WIRE_MODELS)
    event = schema["models"]["ExperienceEvent"]
    assert {"event_id", "event_type", "priority", "data", "sequence", "lamport"} <= set(
        event["properties"]
    )


def test_schema_of_one_model() -> None:
    result = _run("schema", "--model", "ExperienceEvent")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == ExperienceEvent.model_json_schema()
    bad = CliRunner().invoke(build_cli(), ["schema", "--model", "Nope"])
    assert bad.exit_code == 2
    assert "ExperienceBatch" in bad.output


def test_version() -> None:
    result = _run("--version")
    assert result.exit_code == 0
    assert "version" in result.stdout


# --------------------------------------------------------------------------- the real script


def test_installed_script_runs(tmp_path: Path) -> None:
    """Run the ``experience-sync`` console script as a user would."""
    script = Path(sys.executable).parent / "experience-sync"
    assert script.exists(), "the experience-sync script is not installed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPERIENCE_SYNC_")}
    # the installed example plugin is discovered through its entry point
    env["EXPERIENCE_SYNC_LOAD_PLUGINS"] = "experience-sync-example-plugin"

    listed = subprocess.run(
        [str(script), "plugins", "--json"], capture_output=True, text=True, env=env,
        cwd=tmp_path, timeout=120, check=False,
    )
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["highest_confidence"]["distribution"] == "experience-sync-example-plugin"
    assert rows["highest_confidence"]["provides"] == {"conflict_resolvers": ["highest_confidence"]}

    bad = tmp_path / "bad.toml"
    bad.write_text('[lumped]\nbatch_interval = "-1h"\n')
    validated = subprocess.run(
        [str(script), "config", "validate", str(bad)], capture_output=True, text=True,
        env=env, cwd=tmp_path, timeout=120, check=False,
    )
    assert validated.returncode == 1
    assert "lumped.batch_interval: '-1h' is not a duration" in validated.stderr
