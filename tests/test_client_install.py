"""The light client install, for real: ``pip install ./core`` without the hub extra.

A fresh virtual environment (no system site packages) gets the core as a user
installs it on an agent machine, offline, from the machine's local package
index. In it a script records events and ships them to a hub served from the
test environment on loopback, pulls and searches them back; the ``pull`` and
``search`` commands run against that hub; ``serve`` and the other hub commands
print the one line naming the hub extra; no hub module is installed or imported.

Building the environment takes a while, so the test is marked
``client_install``: the main test command leaves it out and ``.ci/run`` runs it
as a step of its own (README, "Run the tests").
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from experience_sync.hub.web.server import HubServer, run_in_thread

# The offline pip environment the client-install benchmark builds its venvs with.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_client_install import local_index_env

pytestmark = pytest.mark.client_install

ROOT = Path(__file__).resolve().parents[1]
#: What only the hub needs (or what the core dropped): none of it may reach a client.
HUB_ONLY = ("fastapi", "starlette", "uvicorn", "jinja2", "prometheus_client",
            "zstandard", "rich", "pygments", "scipy", "datasketch")
HINT = "pip install 'experience-sync[hub]'"


@dataclass
class ClientVenv:
    bin: Path
    env: dict[str, str]

    def run(self, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), capture_output=True, text=True, env=self.env,
                              cwd=cwd, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> ClientVenv:
    env = local_index_env()
    if env is None:
        pytest.skip("no local package index on this machine: the offline install cannot run")
    base = tmp_path_factory.mktemp("client-install")
    # a copy of the core, so the build never writes into the shared work tree
    source = base / "core"
    shutil.copytree(ROOT / "core", source, ignore=shutil.ignore_patterns(
        "build", "dist", "*.egg-info", "__pycache__"))
    venv = base / "venv"
    # the interpreter the test environment was made from, not the test environment
    python = getattr(sys, "_base_executable", sys.executable)
    made = subprocess.run([python, "-m", "venv", str(venv)], capture_output=True, text=True,
                          env=env, check=False)
    assert made.returncode == 0, made.stderr
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg
    installed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                                str(source)], capture_output=True, text=True, env=env,
                               timeout=600, check=False)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return ClientVenv(venv / "bin", {**env, "EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD": "1"})


@pytest.fixture
def light_hub(tmp_path: Path) -> Iterator[HubServer]:
    with run_in_thread(f"sqlite:///{tmp_path / 'hub.db'}") as hub:
        yield hub


CLIENT_SCRIPT = textwrap.dedent("""
    import json, sys
    from experience_sync import ExperienceSyncManager, load_config

    endpoint, token, data_dir, agent = sys.argv[1:5]
    config = load_config(transport={"https": {"auth_token": token}})
    manager = ExperienceSyncManager(config, data_dir=data_dir)
    manager.initialize_sync("edge-light", agent_id=agent, endpoint=endpoint)
    manager.record_memory("edge-light", "The user prefers short answers", importance=0.8)
    manager.record_skill_use("edge-light", "refunds", success=True, proficiency=0.7)
    manager.record_knowledge("edge-light", "Refunds take 5 days", subject="refund delay")
    acked = manager.flush(timeout=30)
    state = manager.pull(agent)
    hits = manager.search("edge-light", "how long do refunds take?", k=3)
    manager.shutdown()
    print(json.dumps({
        "acked": acked,
        "memories": [m.content for m in state.memories],
        "skills": [s.name for s in state.skills],
        "hits": [h.text for h in hits],
        "modules": sorted({name.split(".")[0] for name in sys.modules}),
    }))
""")


def test_client_install_has_no_hub_dependency(client_venv: ClientVenv, tmp_path: Path) -> None:
    listed = client_venv.run(str(client_venv.bin / "python"), "-m", "pip", "list",
                             "--format", "json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = {row["name"].lower().replace("-", "_") for row in json.loads(listed.stdout)}
    assert "experience_sync" in names
    assert {"pydantic", "pluggy", "httpx", "websockets"} <= names
    assert not names & set(HUB_ONLY), sorted(names & set(HUB_ONLY))


def test_client_records_ships_pulls_and_searches_without_the_hub_extra(
    client_venv: ClientVenv, light_hub: HubServer, tmp_path: Path
) -> None:
    agent = "light-bot"
    token = light_hub.create_token(agent, "edge-light")
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    proc = client_venv.run(str(client_venv.bin / "python"), str(script), light_hub.url, token,
                           str(tmp_path / "outbox"), agent, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["acked"] is True
    assert out["memories"] == ["The user prefers short answers"]
    assert out["skills"] == ["refunds"]
    assert any("Refunds take 5 days" in text for text in out["hits"])
    assert not set(out["modules"]) & set(HUB_ONLY), out["modules"]

    # the hub, read from the test environment, has what the light client sent
    read = light_hub.create_token(agent, "reader", "read")
    state = httpx.get(f"{light_hub.url}/v1/agents/{agent}/state",
                      headers={"Authorization": f"Bearer {read}"}, timeout=10).json()
    assert [m["content"] for m in state["memories"]] == ["The user prefers short answers"]

    cli = str(client_venv.bin / "experience-sync")
    pulled = client_venv.run(cli, "pull", "--agent", agent, "--endpoint", light_hub.url,
                             "--token", read, "--summary", cwd=tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    assert "1 memories, 1 skills, 1 knowledge" in pulled.stdout
    found = client_venv.run(cli, "search", "refunds", "--agent", agent, "--endpoint",
                            light_hub.url, "--token", read, "--json", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["hits"], found.stdout


@pytest.mark.parametrize("args", [("serve",), ("serve", "--port", "0", "--no-auth"),
                                  ("demo",), ("token", "create", "--agent", "a",
                                              "--instance", "i"), ("replay", "--help")])
def test_hub_commands_print_one_line_naming_the_extra(
    client_venv: ClientVenv, tmp_path: Path, args: tuple[str, ...]
) -> None:
    proc = client_venv.run(str(client_venv.bin / "experience-sync"), *args, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert HINT in lines[0] and f"experience-sync {args[0]}" in lines[0]
    assert "pip install './core[hub]'" in lines[0]


def test_client_cli_lists_plugins_and_refuses_zstd_without_its_extra(
    client_venv: ClientVenv, tmp_path: Path
) -> None:
    cli = str(client_venv.bin / "experience-sync")
    helped = client_venv.run(cli, "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "serve" in helped.stdout and "(needs the hub extra)" in helped.stdout
    plugins = client_venv.run(cli, "plugins", cwd=tmp_path)  # a plain table without rich
    assert plugins.returncode == 0, plugins.stderr
    assert "experience_sync.builtin.transport_https" in plugins.stdout

    script = tmp_path / "zstd.py"
    script.write_text(textwrap.dedent("""
        from experience_sync import ConfigError, ExperienceSyncManager, load_config
        config = load_config(lumped={"enabled": True, "compression": "zstd"},
                             transport={"https": {"auth_token": "t"}})
        manager = ExperienceSyncManager(config, data_dir="outbox")
        try:
            manager.initialize_sync("i", agent_id="a", endpoint="http://127.0.0.1:9")
        except ConfigError as exc:
            print(exc)
        else:
            raise SystemExit("zstd accepted without zstandard")
    """))
    proc = client_venv.run(str(client_venv.bin / "python"), str(script), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pip install 'experience-sync[zstd]'" in proc.stdout
    imported = client_venv.run(str(client_venv.bin / "python"), "-c",
                               "import experience_sync.api as api; api.HubError", cwd=tmp_path)
    assert imported.returncode == 1
    assert HINT in imported.stderr
