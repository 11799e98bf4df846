"""The plugin manager: built-ins, entry points, limits, and loud failures."""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pluggy
import pytest
from click.testing import CliRunner

from experience_sync import hookimpl
from experience_sync.cli import build_cli
from experience_sync.config import load_config
from experience_sync.errors import PluginError
from experience_sync.interfaces import ConflictResolver, ContestedValue
from experience_sync.plugins import (
    BUILTIN_PLUGINS,
    ENTRY_POINT_GROUP,
    create_plugin_manager,
    describe_plugins,
    get_plugin_manager,
)

EXAMPLE_DIST = "experience-sync-example-plugin"
EXAMPLE_ENTRY_POINT = "highest_confidence"

RESOLVER_SOURCE = """
    from experience_sync import hookimpl

    @hookimpl
    def experience_sync_register_conflict_resolvers(register):
        register({name!r}, lambda config=None: None)
"""


def _module(name: str, **functions: Callable[..., object]) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, fn in functions.items():
        setattr(module, key, fn)
    return module


def _example_installed() -> None:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution(EXAMPLE_DIST)
    except PackageNotFoundError:
        pytest.fail(
            f"{EXAMPLE_DIST} is not installed: pip install ./examples/xs-example-plugin "
            "(requirements-dev.txt does this)"
        )


# --------------------------------------------------------------------------- built-ins


def test_builtins_are_registered_through_hooks() -> None:
    rows = {row["name"]: row for row in describe_plugins()}
    for module in BUILTIN_PLUGINS:
        assert rows[module]["builtin"] is True
        assert rows[module]["distribution"] == "experience-sync"
        assert rows[module]["hooks"], f"{module} implements no hook"
    strategies = rows["experience_sync.builtin.strategies"]
    assert strategies["hooks"] == ["experience_sync_register_conflict_resolvers"]
    assert {"latest_wins", "weighted_merge", "manual_review"} <= set(
        strategies["provides"]["conflict_resolvers"]
    )
    registry = get_plugin_manager().registry
    assert {"max", "average", "weighted"} <= set(registry.names("skill_aggregations"))
    assert registry.get("conflict_resolvers", "latest_wins").plugin == (
        "experience_sync.builtin.strategies"
    )


def test_every_registered_name_is_provided_by_a_listed_plugin() -> None:
    rows = describe_plugins()
    listed = {(kind, n) for row in rows for kind, names in row["provides"].items() for n in names}
    registry = get_plugin_manager().registry
    for kind, table in registry.entries.items():
        for name in table:
            assert (kind, name) in listed


def test_autoload_is_off_in_tests() -> None:
    assert get_plugin_manager().get_plugin(EXAMPLE_ENTRY_POINT) is None


# --------------------------------------------------------------------------- entry points


def test_installed_example_plugin_is_discovered_and_usable_by_name(
    enable_plugin_autoload: Callable[..., None],
    stand_ins: Callable[[], dict[str, Any]],
    tmp_path: Path,
) -> None:
    _example_installed()
    enable_plugin_autoload(EXAMPLE_DIST)
    pm = get_plugin_manager()
    assert pm.get_plugin(EXAMPLE_ENTRY_POINT) is not None
    overrides = stand_ins()

    result = CliRunner().invoke(build_cli(), ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    row = rows[EXAMPLE_ENTRY_POINT]
    assert row["distribution"] == EXAMPLE_DIST
    assert row["version"] == "0.1.0"
    assert row["builtin"] is False
    assert row["hooks"] == ["experience_sync_register_conflict_resolvers"]
    assert row["provides"] == {"conflict_resolvers": ["highest_confidence"]}

    # selected by name, from the environment like any other source, and validated
    # against the installed names
    cfg = load_config(
        environ={"EXPERIENCE_SYNC_MERGE_STRATEGY__CONFLICT_RESOLUTION": "highest_confidence"},
        cwd=tmp_path,
        **overrides,
    )
    assert cfg.merge_strategy.conflict_resolution == "highest_confidence"
    resolver = pm.registry.create(
        "conflict_resolvers", cfg.merge_strategy.conflict_resolution, cfg.merge_strategy
    )
    assert isinstance(resolver, ConflictResolver)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    t1 = datetime(2026, 1, 2, tzinfo=timezone.utc)
    sure = ContestedValue("old but sure", 0.9, t0, 1, "i1")
    unsure = ContestedValue("new but unsure", 0.4, t1, 2, "i2")
    assert resolver.resolve(sure, unsure).action == "keep"
    decision = resolver.resolve(unsure, sure)
    assert (decision.action, decision.value) == ("apply", "old but sure")


def test_example_plugin_not_loaded_when_autoload_disabled(
    enable_plugin_autoload: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    _example_installed()
    enable_plugin_autoload(EXAMPLE_DIST)
    monkeypatch.setenv("EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD", "1")
    pm = create_plugin_manager()
    assert pm.get_plugin(EXAMPLE_ENTRY_POINT) is None
    assert "highest_confidence" not in pm.registry.names("conflict_resolvers")


def test_load_plugins_empty_means_none(
    enable_plugin_autoload: Callable[..., None], fake_distribution: Callable[..., str]
) -> None:
    fake_distribution("xs-fake-one", "fake_one", RESOLVER_SOURCE.format(name="one"))
    enable_plugin_autoload()  # EXPERIENCE_SYNC_LOAD_PLUGINS=""
    pm = create_plugin_manager()
    assert pm.get_plugin("fake_one") is None
    assert pm.get_plugin(EXAMPLE_ENTRY_POINT) is None
    assert all(info.builtin for info in pm.infos.values())


def test_load_plugins_limits_by_entry_point_or_distribution_name(
    enable_plugin_autoload: Callable[..., None], fake_distribution: Callable[..., str]
) -> None:
    fake_distribution("xs-fake-one", "fake_one", RESOLVER_SOURCE.format(name="one"))
    fake_distribution("xs-fake-two", "fake_two", RESOLVER_SOURCE.format(name="two"))

    enable_plugin_autoload("fake_one")
    pm = create_plugin_manager()
    assert pm.get_plugin("fake_one") is not None and pm.get_plugin("fake_two") is None
    assert pm.infos["fake_one"].distribution == "xs-fake-one"
    assert pm.infos["fake_one"].version == "1.0"

    # distribution names match however they are spelled (PEP 503)
    enable_plugin_autoload("XS_Fake.Two")
    pm = create_plugin_manager()
    assert pm.get_plugin("fake_one") is None and pm.get_plugin("fake_two") is not None
    assert pm.registry.names("conflict_resolvers").count("two") == 1


def test_plugin_raising_at_load_is_named(
    enable_plugin_autoload: Callable[..., None], fake_distribution: Callable[..., str]
) -> None:
    fake_distribution("xs-broken", "broken", "raise RuntimeError('database is on fire')\n")
    enable_plugin_autoload("xs-broken")
    with pytest.raises(PluginError) as info:
        create_plugin_manager()
    message = str(info.value)
    assert "'broken'" in message and "xs-broken 1.0" in message
    assert "RuntimeError: database is on fire" in message


def test_plugin_with_wrong_hook_arguments_is_named(
    enable_plugin_autoload: Callable[..., None], fake_distribution: Callable[..., str]
) -> None:
    fake_distribution(
        "xs-wrong-args",
        "wrong_args",
        """
        from experience_sync import hookimpl

        @hookimpl
        def experience_sync_register_transports(registrar):
            pass
        """,
    )
    enable_plugin_autoload("wrong_args")
    with pytest.raises(PluginError, match=r"'wrong_args' from distribution xs-wrong-args"):
        create_plugin_manager()


def test_two_installed_plugins_registering_one_name_are_both_named(
    enable_plugin_autoload: Callable[..., None], fake_distribution: Callable[..., str]
) -> None:
    fake_distribution("xs-fake-one", "fake_one", RESOLVER_SOURCE.format(name="clash"))
    fake_distribution("xs-fake-two", "fake_two", RESOLVER_SOURCE.format(name="clash"))
    enable_plugin_autoload("fake_one", "fake_two")
    with pytest.raises(PluginError) as info:
        create_plugin_manager()
    message = str(info.value)
    assert "'clash'" in message
    assert "'fake_one'" in message and "'fake_two'" in message


def test_plugin_clashing_with_a_builtin_name_is_an_error(
    register_plugin: Callable[..., str],
) -> None:
    @hookimpl
    def experience_sync_register_skill_aggregations(register: Callable[..., None]) -> None:
        register("max", lambda config=None: None)

    register_plugin(_module("my_max", experience_sync_register_skill_aggregations=(
        experience_sync_register_skill_aggregations)), name="my_max")
    with pytest.raises(PluginError) as info:
        _ = get_plugin_manager().registry
    assert "experience_sync.builtin.aggregations" in str(info.value)
    assert "'my_max'" in str(info.value)


def test_misspelled_installed_hook_fails_loudly(
    enable_plugin_autoload: Callable[..., None], fake_distribution: Callable[..., str]
) -> None:
    # not decorated: pluggy alone would skip it silently
    fake_distribution(
        "xs-typo",
        "typo",
        "def experience_sync_register_transport(register):\n    pass\n",
    )
    enable_plugin_autoload("typo")
    with pytest.raises(PluginError) as info:
        create_plugin_manager()
    message = str(info.value)
    assert "'typo'" in message and "xs-typo" in message
    assert "experience_sync_register_transport" in message


@pytest.mark.parametrize("decorated", [True, False])
def test_check_pending_flags_misspelled_hook_on_plain_module(
    decorated: bool, register_plugin: Callable[..., str]
) -> None:
    def experience_sync_register_similarity_method(register: Callable[..., None]) -> None:
        pass  # pragma: no cover

    fn = hookimpl(experience_sync_register_similarity_method) if decorated else (
        experience_sync_register_similarity_method
    )
    module = _module("typo_module", experience_sync_register_similarity_method=fn)
    with pytest.raises(pluggy.PluginValidationError, match="register_similarity_method"):
        register_plugin(module, name="typo_module")
    assert get_plugin_manager().get_plugin("typo_module") is None  # not left behind


def test_undecorated_correctly_named_function_is_an_implementation(
    register_plugin: Callable[..., str],
) -> None:
    def experience_sync_register_embedders(register: Callable[..., None]) -> None:
        register("plain-embedder", lambda config=None: None)

    register_plugin(
        _module("plain", experience_sync_register_embedders=experience_sync_register_embedders),
        name="plain",
    )
    assert "plain-embedder" in get_plugin_manager().registry.names("embedders")


def test_other_attributes_are_not_hooks(register_plugin: Callable[..., str]) -> None:
    module = _module("helpers", helper=lambda: None)
    module.experience_sync_settings = {"not": "a function"}  # type: ignore[attr-defined]
    register_plugin(module, name="helpers")
    get_plugin_manager().check_pending()


def test_hook_raising_during_registration_is_named(register_plugin: Callable[..., str]) -> None:
    @hookimpl
    def experience_sync_register_stores(register: Callable[..., None]) -> None:
        raise ValueError("no disk")

    register_plugin(_module("diskless", experience_sync_register_stores=(
        experience_sync_register_stores)), name="diskless")
    with pytest.raises(PluginError, match=r"'diskless' failed in experience_sync_register_stores"):
        _ = get_plugin_manager().registry


@pytest.mark.parametrize(
    ("name", "factory", "match"),
    [("", lambda: None, "empty"), ("x", "not callable", "not callable")],
)
def test_bad_registrations_are_refused(
    name: str, factory: object, match: str, register_plugin: Callable[..., str]
) -> None:
    @hookimpl
    def experience_sync_register_embedders(register: Callable[..., None]) -> None:
        register(name, factory)  # type: ignore[arg-type]

    register_plugin(_module("bad", experience_sync_register_embedders=(
        experience_sync_register_embedders)), name="bad")
    with pytest.raises(PluginError, match=match):
        _ = get_plugin_manager().registry


def test_unknown_name_lists_installed_ones() -> None:
    registry = get_plugin_manager().registry
    with pytest.raises(PluginError) as info:
        registry.get("vector_indexes", "annoy")
    assert str(info.value) == f"unknown vector index 'annoy' (installed: {', '.join(registry.names('vector_indexes'))})"


def test_registered_plugin_is_gone_after_the_test_block(
    register_plugin: Callable[..., str],
) -> None:
    from experience_sync.plugins import registered_plugin

    @hookimpl
    def experience_sync_register_embedders(register: Callable[..., None]) -> None:
        register("temporary", lambda config=None: None)

    module = _module("temp", experience_sync_register_embedders=experience_sync_register_embedders)
    with registered_plugin(module, name="temp"):
        assert "temporary" in get_plugin_manager().registry.names("embedders")
    assert "temporary" not in get_plugin_manager().registry.names("embedders")
    assert "temp" not in {row["name"] for row in describe_plugins()}


def test_entry_point_group_name() -> None:
    assert ENTRY_POINT_GROUP == "experience_sync"


def test_every_name_the_spec_promises_is_provided_by_a_builtin() -> None:
    expected = {
        "protocols": {"streaming", "lumped", "check_in"},
        "transports": {"https", "websocket"},  # mcp comes with experience-sync-mcp
        "similarity_methods": {"jaccard", "embedding"},
        "conflict_resolvers": {"latest_wins", "weighted_merge", "manual_review"},
        "skill_aggregations": {"max", "average", "weighted"},
    }
    rows = describe_plugins()
    for kind, names in expected.items():
        for name in names:
            providers = [r for r in rows if name in r["provides"].get(kind, [])]
            assert len(providers) == 1, f"{kind} {name!r} provided by {providers}"
            assert providers[0]["builtin"] is True
            assert providers[0]["name"].startswith("experience_sync.builtin.")
