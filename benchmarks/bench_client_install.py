"""The client install: size, package count and import time of ``pip install ./core``.

Builds fresh virtual environments (no system site packages), offline from the
machine's local package index as pip is configured here, one per install:

- ``client``: ``pip install ./core`` (what an agent process installs);
- ``hub``: ``pip install './core[hub]'``, which is also what ``./core`` alone
  installed before the hub's dependencies moved behind the extra.

For each it prints the distributions installed (pip, setuptools and wheel left
out), the size of site-packages (the same left out), and ``import
experience_sync`` time: the median over ``--runs`` fresh interpreters of
``python -X importtime``'s cumulative figure for the package, and of the wall
time of ``python -c "import experience_sync"``. Then the wall time (median,
interpreter included) of README's client imports (``from experience_sync
import ExperienceSyncManager, load_config`` and ``from experience_sync.api
import render_hits``), alone and followed by the example's next line,
``load_config()``; ``-X importtime`` cannot tell these apart, since the
package's lazy names load through ``importlib``. The last line is JSON::

    .venv/bin/python benchmarks/bench_client_install.py [--runs 15] [--only client]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = {"pip", "setuptools", "wheel", "_distutils_hack", "distutils-precedence.pth"}
INSTALLS = {"client": "", "hub": "[hub]"}
#: README.md's client example: its imports, and its first call.
README_IMPORTS = ("from experience_sync import ExperienceSyncManager, load_config\n"
                  "from experience_sync.api import render_hits")
README_LOAD = README_IMPORTS + "\nload_config()"


def local_index_env() -> dict[str, str] | None:
    """pip's environment for an offline install from the machine's local index.

    The local (``file://``) indexes and find-links folders pip is configured
    with here; the network index is left out, and so are this process's pip,
    virtualenv, Python and experience-sync settings. ``None`` when there are
    no local indexes. ``tests/test_client_install.py`` installs with it too.
    """
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                            capture_output=True, text=True, check=False).stdout
    indexes: list[str] = []
    links: list[str] = []
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        values = value.strip().strip("'\"").split()
        if key.endswith(("index-url", "index_url")):
            indexes += [v for v in values if v.startswith("file:") and v not in indexes]
        elif key.endswith(("find-links", "find_links")):
            links += [v for v in values if Path(v).is_dir() and v not in links]
    if not indexes:
        return None
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "EXPERIENCE_SYNC_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=indexes[0],
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    if indexes[1:]:
        env["PIP_EXTRA_INDEX_URL"] = " ".join(indexes[1:])
    if links:
        env["PIP_FIND_LINKS"] = " ".join(links)
    return env


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def wall_ms(py: str, code: str, env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([py, "-c", code], check=True, env=env, cwd=cwd)
    return (time.perf_counter() - started) * 1000


def measure(name: str, extra: str, base: Path, env: dict[str, str], runs: int) -> dict[str, object]:
    source = base / "core"
    if not source.exists():  # a copy, so the build never writes into the work tree
        shutil.copytree(ROOT / "core", source, ignore=shutil.ignore_patterns(
            "build", "dist", "*.egg-info", "__pycache__"))
    venv = base / name
    python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([python, "-m", "venv", str(venv)], check=True, env=env)
    py = str(venv / "bin" / "python")
    started = time.perf_counter()
    subprocess.run([py, "-m", "pip", "install", "-q", f"{source}{extra}"], check=True, env=env)
    install_s = time.perf_counter() - started
    listed = json.loads(subprocess.run([py, "-m", "pip", "list", "--format", "json"],
                                       capture_output=True, text=True, check=True, env=env).stdout)
    dists = sorted(row["name"] for row in listed if row["name"].lower() not in TOOLS)
    site = site_packages(venv)
    size = sum(tree_size(p) if p.is_dir() else p.stat().st_size for p in site.iterdir()
               if not any(p.name.lower().startswith(t) for t in TOOLS))
    run_env = {**env, "EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD": "1"}
    cwd = base / f"{name}-cwd"  # no experience-sync.toml or pyproject.toml to read
    cwd.mkdir(exist_ok=True)
    # byte-compile everything the figures load
    subprocess.run([py, "-c", README_LOAD], check=True, env=run_env, cwd=cwd)
    cumulative, wall, readme, readme_load = [], [], [], []
    for _ in range(runs):
        proc = subprocess.run([py, "-X", "importtime", "-c", "import experience_sync"],
                              capture_output=True, text=True, check=True, env=run_env, cwd=cwd)
        for line in proc.stderr.splitlines():
            parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
            if len(parts) == 3 and parts[2] == "experience_sync":
                cumulative.append(int(parts[1]) / 1000)
        wall.append(wall_ms(py, "import experience_sync", run_env, cwd))
        readme.append(wall_ms(py, README_IMPORTS, run_env, cwd))
        readme_load.append(wall_ms(py, README_LOAD, run_env, cwd))

    def module_count(code: str) -> int:
        return int(subprocess.run(
            [py, "-c", f"{code}\nimport sys\nprint(len(sys.modules))"],
            capture_output=True, text=True, check=True, env=run_env, cwd=cwd).stdout.strip())
    return {
        "install": f"pip install ./core{extra}",
        "packages": len(dists),
        "distributions": dists,
        "site_packages_mb": round(size / 1e6, 1),
        "install_s": round(install_s, 1),
        "import_ms_cumulative_median": round(statistics.median(cumulative), 1),
        "import_ms_wall_median": round(statistics.median(wall), 1),
        "modules_after_import": module_count("import experience_sync"),
        "readme_imports_ms_wall_median": round(statistics.median(readme), 1),
        "modules_after_readme_imports": module_count(README_IMPORTS),
        "readme_imports_load_config_ms_wall_median": round(statistics.median(readme_load), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters per figure")
    parser.add_argument("--only", choices=sorted(INSTALLS), action="append",
                        help="measure only this install (repeatable)")
    args = parser.parse_args()
    env = local_index_env()
    if env is None:
        sys.exit("no local package index configured for pip: cannot install offline")
    results = {}
    with tempfile.TemporaryDirectory(prefix="xs-client-install-") as tmp:
        for name in args.only or list(INSTALLS):
            r = measure(name, INSTALLS[name], Path(tmp), env, args.runs)
            results[name] = r
            print(f"{name:6} {r['install']:32} {r['packages']:3} packages  "
                  f"{r['site_packages_mb']:6.1f} MB  import experience_sync "
                  f"{r['import_ms_cumulative_median']:6.1f} ms (importtime, median of "
                  f"{args.runs}), {r['import_ms_wall_median']:6.1f} ms wall with the interpreter, "
                  f"{r['modules_after_import']} modules; installed in {r['install_s']} s")
            print(f"       README's client imports {r['readme_imports_ms_wall_median']:6.1f} ms "
                  f"wall ({r['modules_after_readme_imports']} modules), then load_config(): "
                  f"{r['readme_imports_load_config_ms_wall_median']:6.1f} ms wall")
            print(f"       {', '.join(r['distributions'])}")  # type: ignore[arg-type]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
