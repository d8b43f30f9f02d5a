"""`pip install -e .` into a fresh virtual environment gives working `emoji-mirror` and `emoji-mirror-predict` commands."""

from __future__ import annotations

import os
import re
import shutil
import site
import socket
import subprocess
import time
import urllib.error
import urllib.request
import venv
from pathlib import Path

import pytest

from emoji_mirror import launch

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 120


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv's bin folder with the project installed editable: offline (no index, no build isolation), its
    dependencies seen through a .pth file that points at the running interpreter's site-packages."""
    env_dir = tmp_path_factory.mktemp("fresh") / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], capture_output=True, text=True, check=True)
    Path(purelib.stdout.strip(), "running_interpreter.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "-e", str(REPO_ROOT)]
    result = subprocess.run(install, capture_output=True, text=True, timeout=300, env=clean_env())
    assert result.returncode == 0, result.stderr
    return env_dir / "bin"


def clean_env() -> dict[str, str]:
    """This environment without PYTHONPATH, so that only the installed package can make `emoji_mirror` importable."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_predict_command_prints_its_usage_from_the_checkout(installed, tmp_path):
    result = subprocess.run([installed / "emoji-mirror-predict", "--help"], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=clean_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: emoji-mirror-predict ") and "--checkpoint" in result.stdout
    where = subprocess.run([installed / "python", "-c", "import emoji_mirror; print(emoji_mirror.__file__)"], capture_output=True, text=True, cwd=tmp_path, env=clean_env())
    assert Path(where.stdout.strip()).parent == REPO_ROOT / "emoji_mirror"


@pytest.mark.slow
def test_mirror_command_serves_the_app_on_loopback(installed, tmp_path):
    port = free_port()
    flags = ["--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    log = tmp_path / "streamlit.log"
    with log.open("w") as out:
        server = subprocess.Popen([installed / "emoji-mirror", *flags], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=clean_env())
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        health = None
        while health is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as response:
                    health = response.read().decode()
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        assert health == "ok", f"no healthy Streamlit on port {port} (exit code {server.poll()}):\n{log.read_text()}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.slow
def test_editable_install_leaves_nothing_for_git_to_track(installed):
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO_ROOT, check=True).stdout

    # what an install may write into the checkout is ignored, whether or not this install wrote it ...
    build_outputs = ["emoji_mirror.egg-info/PKG-INFO", "emoji_mirror.egg-info/SOURCES.txt", "emoji_mirror.egg-info/top_level.txt", "build/lib/x.py"]
    assert git("check-ignore", "--no-index", *build_outputs).split() == build_outputs
    # ... and nothing the install made shows up as untracked
    untracked = git("ls-files", "--others", "--exclude-standard").split("\n")
    made = [name for name in untracked if re.search(r"(^|/)(build/|[^/]*\.egg-info/|[^/]*\.dist-info/|__editable__)", name)]
    assert made == [], f"the editable install left files for git to track: {made}"


def test_mirror_command_passes_arguments_to_streamlit_run(monkeypatch):
    calls = []
    monkeypatch.setattr(launch.cli, "main", lambda args, prog_name: calls.append(args) or 0)
    assert launch.main(["--server.port", "8502"]) == 0
    assert calls == [["run", str(REPO_ROOT / "app.py"), "--server.port", "8502"]]


def test_mirror_command_without_a_checkout_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(launch, "APP", tmp_path / "app.py")
    assert launch.main([]) == 2
    assert "emoji-mirror starts the app of a source checkout" in capsys.readouterr().err

