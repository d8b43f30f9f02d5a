"""WebRTC over loopback: the ICE configuration, and end to end the live mirror page in headless Chromium whose fake
camera shows a real portrait."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import re
import shutil
import time
from pathlib import Path

import aioice.ice
import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
from aioice import Candidate, stun
from aiortc import RTCConfiguration, RTCPeerConnection

from benchmarks import live_browser
from benchmarks.fake_camera import portrait_frame, write_y4m
from benchmarks.live_browser import CHROMIUM, log_tail, webrtc_frame
from emoji_mirror.app.rtc import ICE_SERVERS_ENV, restrict_ice_to_loopback, rtc_configuration
from emoji_mirror.checkpoint import atomic_torch_save, checkpoint_payload
from emoji_mirror.detector import FaceDetector
from emoji_mirror.labels import FER2013_CLASSES
from emoji_mirror.models import create_model
from emoji_mirror.paths import CHECKPOINT_ENV
from emoji_mirror.preprocessing import Preprocessing

# playwright (requirements-dev.txt) is imported by the browser test alone: collecting this file stays quick without it
HAS_PLAYWRIGHT = importlib.util.find_spec("playwright") is not None

SCREENSHOT_COPY = Path("/tmp/e2e_screenshot.png")
PAGE_READY_S = 60  # the first script run imports torch and starts MediaPipe on a busy machine
FRAMES_BACK_S = 90  # frames come back within seconds; a machine busy with other work (training, a second suite) can take far longer
PIXELS_S = 45
COUNTERS = re.compile(r"frames processed: (\d+) · frames with faces: (\d+) · emoji drawn: (\d+)")
WATCHER_NOISE = re.compile(r"inotify|watchdog|file ?watcher", re.IGNORECASE)
PAGE_TITLES = ["Live mirror", "Photo", "Compare models", "Train"]  # app.py's navigation, in order
SELECTED_PAIR_ADDRESSES = """async () => {
    const pairs = [];
    for (const connection of window.peerConnections) {
        const stats = await connection.getStats();
        stats.forEach(transport => {
            const pair = transport.type === "transport" && stats.get(transport.selectedCandidatePairId);
            if (pair) pairs.push([stats.get(pair.localCandidateId).address, stats.get(pair.remoteCandidateId).address]);
        });
    }
    return pairs;
}"""
GRAB_VIDEO_FRAME = """video => {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    return canvas.toDataURL("image/png");
}"""

needs_chromium = pytest.mark.skipif(
    not HAS_PLAYWRIGHT or not CHROMIUM.is_file(),
    reason=f"needs playwright (requirements-dev.txt) and {CHROMIUM}: run scripts/install_browser.sh",
)


def test_rtc_configuration_has_no_stun_server_unless_configured(monkeypatch):
    monkeypatch.delenv(ICE_SERVERS_ENV, raising=False)
    assert rtc_configuration() == {"iceServers": []}
    monkeypatch.setenv(ICE_SERVERS_ENV, '[{"urls": ["stun:stun.example.org:3478"]}]')
    assert rtc_configuration() == {"iceServers": [{"urls": ["stun:stun.example.org:3478"]}]}


@pytest.mark.parametrize("value", ["[{urls: stun}]", '{"urls": "stun:stun.example.org"}', '[{"username": "me"}]'])
def test_rtc_configuration_rejects_malformed_ice_servers(monkeypatch, value):
    monkeypatch.setenv(ICE_SERVERS_ENV, value)
    with pytest.raises(ValueError, match=ICE_SERVERS_ENV):
        rtc_configuration()


@pytest.fixture
def loopback_ice(monkeypatch):
    """restrict_ice_to_loopback() for one test: monkeypatch puts aioice's originals back afterwards."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)
    for name in ("add_remote_candidate", "request_received"):
        monkeypatch.setattr(aioice.ice.Connection, name, getattr(aioice.ice.Connection, name))
    restrict_ice_to_loopback()


def candidate_addresses(sdp: str) -> set[str]:
    return {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")}


def test_loopback_ice_offers_only_127_0_0_1_and_connects_over_it(loopback_ice):
    async def call() -> tuple[str, str, str]:
        offerer, answerer = (RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2))
        received = asyncio.get_running_loop().create_future()
        answerer.on("datachannel", lambda channel: channel.on("message", received.set_result))
        channel = offerer.createDataChannel("ping")
        channel.on("open", lambda: channel.send("hello over loopback"))
        try:
            await offerer.setLocalDescription(await offerer.createOffer())
            await answerer.setRemoteDescription(offerer.localDescription)
            await answerer.setLocalDescription(await answerer.createAnswer())
            await offerer.setRemoteDescription(answerer.localDescription)
            return offerer.localDescription.sdp, answerer.localDescription.sdp, await asyncio.wait_for(received, 20)
        finally:
            await offerer.close()
            await answerer.close()

    offer_sdp, answer_sdp, message = asyncio.run(call())
    assert candidate_addresses(offer_sdp) == candidate_addresses(answer_sdp) == {"127.0.0.1"}
    assert message == "hello over loopback"


def test_loopback_ice_ignores_peer_addresses_off_loopback(loopback_ice):
    def host_candidate(host: str) -> Candidate:
        return Candidate(foundation="1", component=1, transport="udp", priority=1, host=host, port=50000, type="host")

    async def remote_hosts() -> list[str]:
        connection = aioice.ice.Connection(ice_controlling=True)
        for host in ("192.0.2.7", "fd00::7", "peer.local", "127.0.0.1"):
            await connection.add_remote_candidate(host_candidate(host))
        await connection.close()
        return [candidate.host for candidate in connection.remote_candidates]

    assert asyncio.run(remote_hosts()) == ["127.0.0.1"]


def test_loopback_ice_answers_no_check_from_off_loopback(loopback_ice):
    class RecordingProtocol:
        def __init__(self):
            self.sent_to = []

        def send_stun(self, message, addr):
            self.sent_to.append(addr)

    # A bare binding request gets a "400 Bad Request" from aioice, so any answer at all shows up in sent_to.
    connection, protocol = aioice.ice.Connection(ice_controlling=False), RecordingProtocol()
    for source in (("192.0.2.7", 50000), ("fd00::7", 50000), ("127.0.0.1", 50000)):
        connection.request_received(stun.Message(stun.Method.BINDING, stun.Class.REQUEST), source, protocol)
    assert protocol.sent_to == [("127.0.0.1", 50000)]


def confident_checkpoint(path: Path, label: str = "happy") -> Path:
    """An untrained baseline_cnn whose last layer always answers `label` at ~100%, so the overlay draws the opaque emoji
    and the 'sure' box colour whatever the face (the model's accuracy is not what this test is about)."""
    model = create_model("baseline_cnn", num_classes=len(FER2013_CLASSES))
    last_layer = [module for module in model.modules() if isinstance(module, nn.Linear)][-1]
    with torch.no_grad():
        last_layer.weight.zero_()
        last_layer.bias.fill_(-10.0)
        last_layer.bias[FER2013_CLASSES.index(label)] = 10.0
    meta = {"dataset": "fer2013", "metrics": {}, "note": f"test checkpoint: always {label}"}
    atomic_torch_save(checkpoint_payload(model, "baseline_cnn", {}, FER2013_CLASSES, Preprocessing(), meta), path)
    return path


@pytest.fixture
def mirror_server(tmp_path):
    """`streamlit run app.py` on 127.0.0.1 with loopback-only ICE and the always-happy checkpoint; yields (url, log).
    The file watcher is left as .streamlit/config.toml sets it: the test checks that it keeps the log quiet."""
    log = tmp_path / "streamlit.log"
    try:
        with live_browser.mirror_server(log, {CHECKPOINT_ENV: str(confident_checkpoint(tmp_path / "always_happy.pt"))}) as url:
            yield url, log
    except live_browser.ServerError as error:
        pytest.fail(str(error))


@pytest.fixture
def camera_frame(tmp_path) -> tuple[np.ndarray, Path]:
    """The portrait the fake camera shows (BGR) and the .y4m clip Chromium loops."""
    frame_rgb = portrait_frame()
    return cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR), write_y4m(tmp_path / "camera.y4m", [frame_rgb] * 30, fps=15)


@pytest.fixture
def browser_page(tmp_path, camera_frame):
    """A fresh headless Chromium profile whose webcam is the .y4m clip; yields (page, console messages)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, live_browser.chromium_page(playwright, tmp_path / "chromium-profile", camera_frame[1]) as page_and_console:
        yield page_and_console


def emoji_yellow(frame_bgr: np.ndarray) -> np.ndarray:
    """Mask of the saturated yellow of the emoji faces."""
    hue, saturation, value = cv2.split(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2HSV))
    return (hue >= 20) & (hue <= 35) & (saturation >= 150) & (value >= 170)


def sure_green(frame_bgr: np.ndarray) -> np.ndarray:
    """Mask of the overlay's 'sure' green (its box and label background)."""
    hue, saturation, value = cv2.split(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2HSV))
    return (hue >= 45) & (hue <= 75) & (saturation >= 120) & (value >= 120)


def around_face(frame_bgr: np.ndarray) -> tuple[slice, slice]:
    """The face's box grown by one face size on every side (where the overlay draws its emoji, box and label)."""
    with FaceDetector() as detector:
        faces = detector.detect(frame_bgr)
    assert faces, "MediaPipe finds no face in the fake camera's portrait"
    x, y, w, h = faces[0][:4]
    return slice(max(y - h, 0), y + 2 * h), slice(max(x - w, 0), x + 2 * w)


def received_frame(page, size: tuple[int, int]) -> np.ndarray:
    """The frame the <video> element currently shows (what the server sent back), BGR at `size` (width, height)."""
    video = webrtc_frame(page).locator("video")
    data_url = video.evaluate(GRAB_VIDEO_FRAME)
    png = np.frombuffer(base64.b64decode(data_url.split(",", 1)[1]), np.uint8)
    frame = cv2.imdecode(png, cv2.IMREAD_COLOR)
    assert frame is not None, "the <video> element has no decodable frame"
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA) if frame.shape[1::-1] != size else frame


def diagnostics(console: list[str], log: Path) -> str:
    return "browser console (last 15):\n" + "\n".join(console[-15:]) + f"\nserver log:\n{log_tail(log)}"


@pytest.mark.slow
@pytest.mark.browser
@needs_chromium
def test_live_mirror_draws_the_emoji_on_the_camera_face(mirror_server, browser_page, camera_frame, tmp_path):
    from playwright.sync_api import expect

    url, log = mirror_server
    page, console = browser_page
    raw, _ = camera_frame
    face = around_face(raw)
    assert emoji_yellow(raw)[face].sum() < 50 and sure_green(raw)[face].sum() < 50, "the raw portrait already has overlay colours"

    page.goto(url, timeout=PAGE_READY_S * 1000)
    start = webrtc_frame(page).get_by_role("button", name="START")
    start.click(timeout=PAGE_READY_S * 1000)
    navigation = page.get_by_test_id("stSidebarNavLink")
    expect(navigation).to_have_count(len(PAGE_TITLES))
    expect(navigation).to_contain_text(PAGE_TITLES)

    # The page's counters (refreshed every second while playing) prove frames went through the pipeline.
    counters = page.get_by_text(COUNTERS)
    try:
        expect(counters).to_contain_text(re.compile(r"emoji drawn: [1-9]"), timeout=FRAMES_BACK_S * 1000)
    except AssertionError as error:
        pytest.fail(f"no emoji drawn within {FRAMES_BACK_S} s ({error}):\n{diagnostics(console, log)}")
    frames, frames_with_faces, emoji_drawn = map(int, COUNTERS.search(counters.inner_text()).groups())
    assert frames_with_faces > 0 and emoji_drawn > 0 and frames >= frames_with_faces
    # Both ends of the call are 127.0.0.1: no media went to this machine's other interface addresses.
    # (Evaluated through the <video> element only to run inside the component's iframe, where the call lives.)
    pairs = webrtc_frame(page).locator("video").evaluate(f"video => ({SELECTED_PAIR_ADDRESSES})()")
    assert pairs and all(addresses == ["127.0.0.1", "127.0.0.1"] for addresses in pairs), f"call not on loopback: {pairs}"

    # The video coming back shows the emoji (yellow) and the sure box (green) at the face; the camera's input did not.
    deadline = time.monotonic() + PIXELS_S
    while True:
        frame = received_frame(page, raw.shape[1::-1])
        yellow, green = emoji_yellow(frame)[face].sum(), sure_green(frame)[face].sum()
        if (yellow > 500 and green > 300) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    cv2.imwrite(str(tmp_path / "received_frame.png"), frame)
    page.screenshot(path=str(tmp_path / "mirror.png"), full_page=True)
    shutil.copyfile(tmp_path / "mirror.png", SCREENSHOT_COPY)
    assert yellow > 500, f"no emoji beside the face in the returned video ({yellow} yellow pixels); see {tmp_path / 'received_frame.png'}"
    assert green > 300, f"no 'sure' box around the face in the returned video ({green} green pixels); see {tmp_path / 'received_frame.png'}"
    # The page imported torch and MediaPipe from .venv/ meanwhile: a watcher covering it would have flooded the log.
    noise = [line for line in log.read_text(errors="replace").splitlines() if WATCHER_NOISE.search(line)]
    assert not noise, f"{len(noise)} file-watcher lines in the server log, the first: {noise[:3]}"
