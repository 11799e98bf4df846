"""`experience-sync serve` at start-up, as an operator runs it.

A store it cannot open is one line naming the file and the cause (never a
traceback) and a non-zero exit; the banner says which merge strategy is in
effect.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from experience_sync.stores.sqlite import SQLiteStore

EXE = str(Path(sys.executable).parent / "experience-sync")
ENV = {**os.environ, "EXPERIENCE_SYNC_DISABLE_PLUGIN_AUTOLOAD": "1"}


def _namespace() -> list[str] | None:
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return None
    probe = subprocess.run([unshare, "--mount", "--map-root-user", "true"], capture_output=True)
    return [unshare, "--mount", "--map-root-user"] if probe.returncode == 0 else None


NAMESPACE = _namespace()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(NAMESPACE is None, reason="cannot make a private mount namespace (unshare)")
def test_a_read_only_store_is_one_line_naming_the_file_and_the_cause(tmp_path: Path) -> None:
    assert NAMESPACE is not None
    db = tmp_path / "hub.db"
    SQLiteStore(f"sqlite:///{db}").close()
    # A read-only bind mount of the store's folder, private to the child
    # (root ignores file modes, so chmod would prove nothing).
    script = (f"mount --bind {tmp_path} {tmp_path} && mount -o remount,ro,bind {tmp_path} {tmp_path} "
              f"&& exec {EXE} serve --store sqlite:///{db} --port {_free_port()}")
    r = subprocess.run([*NAMESPACE, "sh", "-c", script], capture_output=True, text=True,
                       env=ENV, timeout=60)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1, r.stderr
    assert str(db) in lines[0] and "read-only" in lines[0], lines[0]


def test_the_banner_names_the_merge_strategy(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('[merge_strategy]\nconflict_resolution = "manual_review"\n')
    proc = subprocess.Popen(
        [EXE, "serve", "--store", f"sqlite:///{tmp_path / 'hub.db'}", "--port", str(_free_port()),
         "--config", str(config), "--no-access-log"],
        stderr=subprocess.PIPE, text=True, env=ENV,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)  # reads and closes stderr
    assert banner.startswith("experience-sync hub on "), banner
    assert "strategy=manual_review" in banner, banner
