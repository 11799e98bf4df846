"""Configuration: defaults, sources and precedence, validation, secrets."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from experience_sync.config import (
    ExperienceSyncConfig,
    load_config,
    parse_duration,
    read_toml,
    validate_config,
)
from experience_sync.errors import ConfigError

TOKEN = "xs-secret-token-4b1d"


def _errors(exc: ConfigError) -> dict[str, str]:
    return dict(exc.errors)


def _load(overrides: dict[str, Any], tmp_path: Path, **kwargs: Any) -> ExperienceSyncConfig:
    return load_config(environ={}, cwd=tmp_path, **overrides, **kwargs)


# --------------------------------------------------------------------------- defaults


def test_defaults_follow_the_spec() -> None:
    cfg = ExperienceSyncConfig()
    assert cfg.enabled is True
    assert cfg.default_protocol == "streaming"
    assert cfg.transport.type == "https"
    assert cfg.transport.https.verify_tls is True
    assert cfg.transport.https.headers == {}
    assert cfg.transport.websocket.protocols == []
    assert (cfg.streaming.enabled, cfg.streaming.interval_ms, cfg.streaming.batch_size) == (
        True,
        500,
        10,
    )
    assert cfg.streaming.priority_threshold == 0.5
    assert (cfg.lumped.batch_interval, cfg.lumped.compression) == ("1h", True)
    assert cfg.lumped.interval_seconds == 3600
    assert cfg.lumped.codec == "gzip"
    assert (cfg.check_in.schedule, cfg.check_in.include_full_state) == ("0 * * * *", True)
    ms = cfg.merge_strategy
    assert (ms.conflict_resolution, ms.memory_deduplication, ms.skill_aggregation) == (
        "latest_wins",
        True,
        "max",
    )
    assert ms.knowledge_verification_threshold == 0.8


def test_spec_field_names_are_all_present() -> None:
    assert {
        "enabled",
        "default_protocol",
        "transport",
        "streaming",
        "lumped",
        "check_in",
        "merge_strategy",
    } <= set(ExperienceSyncConfig.model_fields)
    t = ExperienceSyncConfig().transport
    assert {"endpoint", "auth_token", "headers", "verify_tls"} <= set(type(t.https).model_fields)
    assert {"url", "protocols"} <= set(type(t.websocket).model_fields)
    # a plugin's table (transport.mcp) is the plugin's own section
    assert "mcp" not in type(t).model_fields


def test_complete_valid_config_loads(
    stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    cfg = _load(stand_ins(), tmp_path)
    assert cfg.transport.type == "test-transport"


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("overrides", "path", "reason"),
    [
        ({"streaming": {"priority_threshold": 1.5}}, "streaming.priority_threshold", "less than or equal to 1"),
        ({"streaming": {"priority_threshold": -0.1}}, "streaming.priority_threshold", "greater than or equal to 0"),
        ({"lumped": {"batch_interval": "soon"}}, "lumped.batch_interval", "'soon' is not a duration"),
        ({"lumped": {"batch_interval": "-1h"}}, "lumped.batch_interval", "'-1h' is not a duration"),
        ({"lumped": {"batch_interval": "0s"}}, "lumped.batch_interval", "greater than zero"),
        ({"check_in": {"schedule": "61 * * * *"}}, "check_in.schedule", "not a valid cron expression"),
        ({"check_in": {"schedule": "every hour"}}, "check_in.schedule", "not a valid cron expression"),
        (
            {"transport": {"https": {"endpoint": "http://hub.example.com/v1"}}},
            "transport.https.endpoint",
            "plain http:// to non-loopback host 'hub.example.com' is refused",
        ),
        (
            {"transport": {"websocket": {"url": "ws://10.0.0.8:8080/ws"}}},
            "transport.websocket.url",
            "plain ws:// to non-loopback host '10.0.0.8' is refused",
        ),
        (
            {"transport": {"mcp": {"server": "https://mcp.example.com/mcp"}}},
            "transport.mcp",
            "unknown section: no installed plugin provides [transport.mcp]",
        ),
        ({"faiss": {"nlist": 4}}, "faiss", "unknown section: no installed plugin provides [faiss]"),
        ({"default_protcol": "streaming"}, "default_protcol", "Extra inputs are not permitted"),
        (
            {"transport": {"https": {"endpoint": "ftp://hub.example.com"}}},
            "transport.https.endpoint",
            "not a https:// or http:// URL",
        ),
        ({"merge_strategy": {"knowledge_verification_threshold": 2}}, "merge_strategy.knowledge_verification_threshold", "less than or equal to 1"),
        ({"streaming": {"batch_size": 0}}, "streaming.batch_size", "greater than or equal to 1"),
        ({"streaming": {"bacth_size": 5}}, "streaming.bacth_size", "Extra inputs are not permitted"),
    ],
)
def test_invalid_config_is_rejected_naming_the_field(
    overrides: dict[str, Any],
    path: str,
    reason: str,
    stand_ins: Callable[[], dict[str, Any]],
    tmp_path: Path,
) -> None:
    base = stand_ins()
    with pytest.raises(ConfigError) as info:
        _load({**base, **overrides}, tmp_path)
    errors = _errors(info.value)
    assert list(errors) == [path]
    assert reason in errors[path]
    assert f"  {path}: " in str(info.value)


@pytest.mark.parametrize(
    "endpoint",
    ["http://127.0.0.1:8080", "http://localhost:9000/v1", "http://[::1]:8080", "https://hub.example.com"],
)
def test_plain_http_is_fine_to_loopback_and_https_anywhere(
    endpoint: str, stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    base = stand_ins()
    transport = {**base["transport"], "https": {"endpoint": endpoint}}
    assert _load({**base, "transport": transport}, tmp_path).transport.https.endpoint == endpoint


def test_plain_http_to_another_host_needs_explicit_permission(
    stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    base = stand_ins()
    transport = {
        **base["transport"],
        "https": {"endpoint": "http://hub.internal:8080", "allow_insecure_http": True},
        "websocket": {"url": "ws://hub.internal:8080/ws", "allow_insecure_http": True},
    }
    cfg = _load({**base, "transport": transport}, tmp_path)
    assert cfg.transport.https.endpoint == "http://hub.internal:8080"


def test_unknown_transport_lists_the_installed_ones(
    stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    base = stand_ins()
    with pytest.raises(ConfigError) as info:
        _load({**base, "transport": {"type": "carrier-pigeon"}}, tmp_path)
    reason = _errors(info.value)["transport.type"]
    assert reason.startswith("unknown transport 'carrier-pigeon' (installed: ")
    assert "test-transport" in reason


def test_unknown_protocol_lists_the_installed_ones(
    stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    base = stand_ins()
    with pytest.raises(ConfigError) as info:
        _load({**base, "default_protocol": "smoke_signals"}, tmp_path)
    reason = _errors(info.value)["default_protocol"]
    assert reason.startswith("unknown protocol 'smoke_signals' (installed: ")
    assert "test-protocol" in reason


@pytest.mark.parametrize(
    ("field", "label", "builtin"),
    [
        ("conflict_resolution", "conflict resolver", "latest_wins"),
        ("skill_aggregation", "skill aggregation", "max"),
        ("embedder", "embedder", "hashing"),
        ("vector_index", "vector index", "numpy"),
        ("similarity_method", "similarity method", "test-similarity"),
    ],
)
def test_unknown_merge_plugin_names_list_the_installed_ones(
    field: str,
    label: str,
    builtin: str,
    stand_ins: Callable[[], dict[str, Any]],
    tmp_path: Path,
) -> None:
    base = stand_ins()
    merge = {**base["merge_strategy"], field: "nope"}
    with pytest.raises(ConfigError) as info:
        _load({**base, "merge_strategy": merge}, tmp_path)
    reason = _errors(info.value)[f"merge_strategy.{field}"]
    assert reason.startswith(f"unknown {label} 'nope' (installed: ")
    assert builtin in reason


def test_every_bad_field_is_reported_at_once(
    stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    base = stand_ins()
    with pytest.raises(ConfigError) as info:
        _load(
            {
                **base,
                "streaming": {"priority_threshold": 7},
                "lumped": {"batch_interval": "soon"},
                "check_in": {"schedule": "* *"},
            },
            tmp_path,
        )
    assert set(_errors(info.value)) == {
        "streaming.priority_threshold",
        "lumped.batch_interval",
        "check_in.schedule",
    }


def test_assignment_is_validated_too() -> None:
    cfg = ExperienceSyncConfig()
    with pytest.raises(ValidationError):
        cfg.streaming.priority_threshold = 3.0
    with pytest.raises(ValidationError, match="refused"):
        cfg.transport.https.endpoint = "http://hub.example.com"
    cfg.transport.https.allow_insecure_http = True
    cfg.transport.https.endpoint = "http://hub.example.com"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h", 3600), ("1d", 86400), ("1h30m", 5400), ("250ms", 0.25)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "-1h", "", "0s", "1 hour", "h", "1h-", "1.5"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# --------------------------------------------------------------------------- sources


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_toml_file(stand_ins: Callable[[], dict[str, Any]], tmp_path: Path) -> None:
    base = stand_ins()
    path = _write(
        tmp_path / "sync.toml",
        """
        [streaming]
        interval_ms = 250
        priority_threshold = 0.7

        [lumped]
        enabled = true
        batch_interval = "6h"
        """.replace("        ", ""),
    )
    cfg = load_config(path, environ={}, cwd=tmp_path, **base)
    assert cfg.streaming.interval_ms == 250
    assert cfg.streaming.priority_threshold == 0.7
    assert cfg.lumped.interval_seconds == 6 * 3600


def test_pyproject_tool_table(stand_ins: Callable[[], dict[str, Any]], tmp_path: Path) -> None:
    base = stand_ins()
    _write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "my-agent"\n\n[tool.experience-sync.check_in]\nenabled = true\n'
        'schedule = "*/15 * * * *"\n',
    )
    cfg = load_config(environ={}, cwd=tmp_path, **base)
    assert cfg.check_in.enabled is True
    assert cfg.check_in.schedule == "*/15 * * * *"


def test_pyproject_given_as_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')
    assert read_toml(path) == {}
    path.write_text('[project]\nname = "x"\n[tool.experience-sync]\nenabled = false\n')
    assert read_toml(path) == {"enabled": False}


def test_default_file_and_config_env_var(
    stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    base = stand_ins()
    _write(tmp_path / "experience-sync.toml", "[streaming]\nbatch_size = 20\n")
    assert load_config(environ={}, cwd=tmp_path, **base).streaming.batch_size == 20
    other = _write(tmp_path / "other.toml", "[streaming]\nbatch_size = 30\n")
    env = {"EXPERIENCE_SYNC_CONFIG": str(other)}
    assert load_config(environ=env, cwd=tmp_path, **base).streaming.batch_size == 30


def test_environment_variables(stand_ins: Callable[[], dict[str, Any]], tmp_path: Path) -> None:
    base = stand_ins()
    env = {
        "EXPERIENCE_SYNC_ENABLED": "false",
        "EXPERIENCE_SYNC_STREAMING__INTERVAL_MS": "200",
        "EXPERIENCE_SYNC_STREAMING__PRIORITY_THRESHOLD": "0.25",
        "EXPERIENCE_SYNC_LUMPED__COMPRESSION": "zstd",
        "EXPERIENCE_SYNC_CHECK_IN__SCHEDULE": "0 */6 * * *",
        "EXPERIENCE_SYNC_TRANSPORT__HTTPS__AUTH_TOKEN": "12345",  # digits stay text
        "EXPERIENCE_SYNC_TRANSPORT__HTTPS__HEADERS": '{"X-Team": "search"}',
        "EXPERIENCE_SYNC_TRANSPORT__WEBSOCKET__PROTOCOLS": '["xs.v1"]',
        # not configuration fields: ignored here
        "EXPERIENCE_SYNC_LOAD_PLUGINS": "",
        "EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD": "1",
        "UNRELATED": "x",
    }
    cfg = load_config(environ=env, cwd=tmp_path, **base)
    assert cfg.enabled is False
    assert cfg.streaming.interval_ms == 200
    assert cfg.streaming.priority_threshold == 0.25
    assert cfg.lumped.codec == "zstd"
    assert cfg.check_in.schedule == "0 */6 * * *"
    token = cfg.transport.https.auth_token
    assert token is not None and token.get_secret_value() == "12345"
    assert cfg.transport.https.headers == {"X-Team": "search"}
    assert cfg.transport.websocket.protocols == ["xs.v1"]


def test_bad_environment_variable_names_field_and_source(
    stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    base = stand_ins()
    env = {"EXPERIENCE_SYNC_STREAMING__PRIORITY_THRESHOLD": "1.5"}
    with pytest.raises(ConfigError) as info:
        load_config(environ=env, cwd=tmp_path, **base)
    reason = _errors(info.value)["streaming.priority_threshold"]
    assert reason.endswith("(from EXPERIENCE_SYNC_STREAMING__PRIORITY_THRESHOLD)")
    assert "environment" in str(info.value)


def test_misspelled_environment_variable_is_an_error(tmp_path: Path) -> None:
    env = {"EXPERIENCE_SYNC_STREAMING__BACTH_SIZE": "5"}
    with pytest.raises(ConfigError) as info:
        load_config(environ=env, cwd=tmp_path, check_plugins=False)
    reason = _errors(info.value)["streaming.bacth_size"]
    assert "Extra inputs are not permitted" in reason and "EXPERIENCE_SYNC_STREAMING__BACTH_SIZE" in reason


def test_precedence_pyproject_then_file_then_env_then_arguments(
    stand_ins: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    base = stand_ins()
    _write(
        tmp_path / "pyproject.toml",
        "[tool.experience-sync.streaming]\nbatch_size = 1\ninterval_ms = 1\n"
        "priority_threshold = 0.1\nenabled = false\n",
    )
    path = _write(
        tmp_path / "sync.toml", "[streaming]\nbatch_size = 2\ninterval_ms = 2\npriority_threshold = 0.2\n"
    )
    env = {"EXPERIENCE_SYNC_STREAMING__BATCH_SIZE": "3", "EXPERIENCE_SYNC_STREAMING__INTERVAL_MS": "3"}
    cfg = load_config(path, environ=env, cwd=tmp_path, streaming={"batch_size": 4}, **base)
    s = cfg.streaming
    # each field comes from the highest source that sets it
    assert (s.enabled, s.priority_threshold, s.interval_ms, s.batch_size) == (False, 0.2, 3, 4)


def test_missing_and_broken_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_toml(tmp_path / "nope.toml")
    broken = _write(tmp_path / "broken.toml", "[streaming\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_toml(broken)


def test_validate_config_names_its_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config({"lumped": {"batch_interval": "soon"}}, source="team.toml", check_plugins=False)
    assert str(info.value).startswith("invalid configuration in team.toml:")


# --------------------------------------------------------------------------- secrets


def _secret_config(tmp_path: Path) -> ExperienceSyncConfig:
    return load_config(
        environ={"EXPERIENCE_SYNC_TRANSPORT__HTTPS__AUTH_TOKEN": TOKEN},
        cwd=tmp_path,
        check_plugins=False,
        transport={
            "https": {
                "endpoint": f"https://sync:{TOKEN}@hub.example.com/v1?access_token={TOKEN}&team=a",
                "headers": {"Authorization": f"Bearer {TOKEN}", "X-Api-Key": TOKEN, "X-Team": "a"},
            },
            "websocket": {"url": f"wss://hub.example.com/ws?access_token={TOKEN}", "auth_token": TOKEN},
            "mcp": {"auth_token": TOKEN},
        },
    )


def test_secrets_never_in_repr_str_or_public_dict(tmp_path: Path) -> None:
    cfg = _secret_config(tmp_path)
    for text in (repr(cfg), str(cfg), repr(cfg.transport), str(cfg.transport.https)):
        assert TOKEN not in text
    public = cfg.public_dict()
    assert TOKEN not in str(public)
    # a plain dump keeps header values and URLs for programs, but never the tokens
    assert '"auth_token":"**********"' in cfg.model_dump_json()
    https = public["transport"]["https"]
    assert https["auth_token"] == "**********"
    assert https["headers"] == {"Authorization": "**********", "X-Api-Key": "**********", "X-Team": "a"}
    assert "team=a" in https["endpoint"] and "hub.example.com" in https["endpoint"]
    # the real values are still there for the transport to use
    token = cfg.transport.https.auth_token
    assert token is not None and token.get_secret_value() == TOKEN
    assert cfg.transport.https.headers["Authorization"] == f"Bearer {TOKEN}"


def test_secrets_never_in_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = _secret_config(tmp_path)
    log = logging.getLogger("experience_sync.test")
    with caplog.at_level(logging.DEBUG):
        log.info("loaded %s", cfg)
        log.info("loaded %r", cfg.transport)
        log.info("public %s", cfg.public_dict())
    assert caplog.records and TOKEN not in caplog.text


def test_secrets_not_echoed_in_validation_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            environ={},
            cwd=tmp_path,
            check_plugins=False,
            transport={"https": {"endpoint": "http://hub.example.com", "auth_token": TOKEN}},
        )
    assert TOKEN not in str(info.value)


def test_every_field_is_documented() -> None:
    from pydantic import BaseModel

    docs = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()

    def paths(model: type[BaseModel], prefix: str = "") -> list[str]:
        out = []
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                out += paths(annotation, f"{prefix}{name}.")
            else:
                out.append(prefix + name)
        return out

    missing = [p for p in paths(ExperienceSyncConfig) if f"| `{p}` |" not in docs]
    assert not missing, f"docs/configuration.md has no row for {missing}"


def test_defaults_load_against_the_installed_builtins(tmp_path: Path) -> None:
    cfg = load_config(environ={}, cwd=tmp_path)
    assert (cfg.default_protocol, cfg.transport.type) == ("streaming", "https")
