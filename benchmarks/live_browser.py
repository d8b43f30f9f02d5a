"""The live mirror served on loopback (`streamlit run app.py`) and headless Chromium whose webcam is a .y4m clip."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from emoji_mirror.app.rtc import ICE_SERVERS_ENV, LOOPBACK_ICE_ENV
from emoji_mirror.paths import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
SERVER_START_S = 45
PAGE_TIMEOUT_S = 90
# Flags for a quiet, throwaway browser, plus: no host name resolves (only 127.0.0.1 is reachable by URL), no mDNS names
# replace the browser's ICE addresses, and loopback candidates are allowed.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
]
# Keeps every RTCPeerConnection a frame creates, so a test can ask which addresses carried the call or which track it sent.
RECORD_PEER_CONNECTIONS = """(() => {
    const Native = window.RTCPeerConnection;
    window.peerConnections = [];
    window.RTCPeerConnection = class extends Native {
        constructor(...args) { super(...args); window.peerConnections.push(this); }
    };
})();"""


class ServerError(RuntimeError):
    """The app server exited or never became healthy; the message ends with its log."""


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else "(no log)"


def _wait_for_health(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ServerError(f"streamlit exited with code {server.returncode}:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise ServerError(f"streamlit not healthy after {SERVER_START_S} s:\n{log_tail(log)}")


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it if it is still there after 10 s."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) the process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def mirror_server(log: Path, env: dict[str, str] | None = None, pids: list[int] | None = None) -> Iterator[str]:
    """`streamlit run app.py` on 127.0.0.1 with loopback-only ICE and the repository's .streamlit/config.toml; yields its
    URL. `env` adds variables (e.g. $EMOJI_MIRROR_CHECKPOINT); stdout and stderr go to `log`; the server's process id
    is appended to `pids` when given."""
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    server_env = {key: value for key, value in os.environ.items() if key != ICE_SERVERS_ENV}
    server_env.update({LOOPBACK_ICE_ENV: "1", **(env or {})})
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
    ]  # fmt: skip
    with log.open("wb") as log_file:
        server = subprocess.Popen(command, cwd=REPO_ROOT, env=server_env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    if pids is not None:
        pids.append(server.pid)
    try:
        _wait_for_health(url, server, log)
        yield url
    finally:
        _stop(server)


@contextmanager
def chromium_pages(playwright, camera: Path, count: int, viewport: tuple[int, int] = (1280, 900)):
    """One headless Chromium whose webcam loops the .y4m clip `camera`, with `count` pages in separate contexts (each
    its own viewer, as separate people would be); yields [(page, console messages)]."""
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={camera}"]
    )
    try:
        pages = []
        for _ in range(count):
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            context.set_default_timeout(PAGE_TIMEOUT_S * 1000)  # a page on an overloaded machine may answer slowly
            context.add_init_script(RECORD_PEER_CONNECTIONS)
            page = context.new_page()
            console: list[str] = []
            page.on("console", lambda message, lines=console: lines.append(message.text))
            pages.append((page, console))
        yield pages
    finally:
        browser.close()


@contextmanager
def chromium_page(playwright, profile: Path, camera: Path, viewport: tuple[int, int] = (1280, 1200)):
    """A fresh headless Chromium profile whose webcam loops the .y4m clip `camera`; yields (page, console messages)."""
    context = playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        headless=True,
        args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={camera}"],
        viewport={"width": viewport[0], "height": viewport[1]},
    )
    try:
        context.add_init_script(RECORD_PEER_CONNECTIONS)
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        yield page, console
    finally:
        context.close()


def webrtc_frame(page):
    """The streamlit-webrtc component's iframe, where its <video> and the call live."""
    return page.frame_locator("iframe[title*='webrtc']")
