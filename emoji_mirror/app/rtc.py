"""WebRTC configuration for the live mirror: offline-friendly ICE servers, plus a loopback-only ICE mode for tests."""

from __future__ import annotations

import functools
import ipaddress
import json
import os

import aioice.ice

ICE_SERVERS_ENV = "EMOJI_MIRROR_ICE_SERVERS"
LOOPBACK_ICE_ENV = "EMOJI_MIRROR_LOOPBACK_ICE"
LOOPBACK_ADDRESS = "127.0.0.1"


def rtc_configuration() -> dict:
    """RTCConfiguration for webrtc_streamer (browser and server side).

    By default no STUN/TURN server: the mirror works offline on localhost or a LAN, and nothing is contacted. Viewers on
    other networks need one: set $EMOJI_MIRROR_ICE_SERVERS to a JSON list of RTCIceServer objects, e.g.
        '[{"urls": ["stun:stun.example.org:3478"]}]'
        '[{"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}]'
    Raises ValueError (naming the variable, not echoing it: it may hold a TURN password) if it is malformed.
    """
    raw = os.environ.get(ICE_SERVERS_ENV, "").strip()
    if not raw:
        return {"iceServers": []}
    try:
        ice_servers = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"${ICE_SERVERS_ENV} is not valid JSON: {error.msg} at character {error.pos}") from None
    except RecursionError:
        raise ValueError(f"${ICE_SERVERS_ENV} is nested too deeply to be a list of ICE servers") from None
    if not isinstance(ice_servers, list) or not all(_is_ice_server(server) for server in ice_servers):
        raise ValueError(f'${ICE_SERVERS_ENV} must be a JSON list of {{"urls": ...}} objects, e.g. [{{"urls": ["stun:stun.example.org:3478"]}}]')
    return {"iceServers": ice_servers}


def _is_ice_server(server: object) -> bool:
    """An RTCIceServer: "urls" a string or a non-empty list of strings; "username" and "credential" strings when given."""
    if not isinstance(server, dict):
        return False
    urls = server.get("urls")
    urls_ok = isinstance(urls, str) or (isinstance(urls, list) and bool(urls) and all(isinstance(u, str) for u in urls))
    return urls_ok and all(isinstance(server.get(k, ""), str) for k in ("username", "credential"))


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # mDNS (*.local) or other hostnames
        return False


def _loopback_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [LOOPBACK_ADDRESS] if use_ipv4 else []


def restrict_ice_to_loopback() -> None:
    """Make aiortc (aioice) in this process gather only 127.0.0.1 and ignore every peer address off loopback.

    For tests on one machine ($EMOJI_MIRROR_LOOPBACK_ICE=1 applies it when this module is imported). aioice normally
    skips loopback and offers every other interface address; here it is the other way round: the only local candidate
    is 127.0.0.1, remote candidates off loopback (other IPs, mDNS names) are dropped before use or resolution, and
    connectivity checks from such addresses get no answer, so no peer-reflexive candidate is learned from them either.
    A browser on the same machine (Chromium with --allow-loopback-in-peer-connection) then connects over lo only.
    """
    if getattr(aioice.ice.Connection.add_remote_candidate, "loopback_only", False):
        return
    aioice.ice.get_host_addresses = _loopback_host_addresses
    add_remote_candidate = aioice.ice.Connection.add_remote_candidate
    request_received = aioice.ice.Connection.request_received

    @functools.wraps(add_remote_candidate)
    async def add_loopback_remote_candidate(self, remote_candidate):
        if remote_candidate is None or _is_loopback(remote_candidate.host):
            await add_remote_candidate(self, remote_candidate)

    @functools.wraps(request_received)
    def loopback_request_received(self, message, addr, protocol):
        if _is_loopback(addr[0]):
            request_received(self, message, addr, protocol)

    add_loopback_remote_candidate.loopback_only = True
    aioice.ice.Connection.add_remote_candidate = add_loopback_remote_candidate
    aioice.ice.Connection.request_received = loopback_request_received


if os.environ.get(LOOPBACK_ICE_ENV) == "1":
    restrict_ice_to_loopback()
