"""The WebRTC transport with real aiortc peers over loopback: signalling, data channel, audio in, bad input.

Every peer (server and client) offers only 127.0.0.1 host candidates and ignores remote candidates and checks
from outside 127.0.0.0/8, so no packet goes to the machine's external address.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from fay_core.app import Fay
from fay_core.events import AgentToolCalled, AgentToolReturned, AudioReceived
from fay_core.server import create_app
from fay_core.settings import Settings
from fay_core.testing import test_settings
from fay_core.transport import TRANSPORT, WebRTCTransport
from fay_core.transport.client import FayClient
from fay_core.transport.ice import filter_candidates, networks, restrict_peer, rtc_configuration
from fay_core.voice.audio import load_audio
from fay_core.wire import CHANNEL_DEPRECATED, SSE_DEPRECATED

LOOPBACK = {"host_addresses": ["127.0.0.1"], "remote_networks": ["127.0.0.0/8"]}

PERSONA = """\
name: Ava (web test)
language: en
avatar:
  renderer: none
knowledge:
  only: true
  faq:
    - id: opening-hours
      question: What are your opening hours?
      answer: Our branches are open from nine to five, Monday to Friday.
    - id: card-lost
      question: I lost my card, what should I do?
      answer: Call us at once so we can block your card and send you a new one.
greeting: Hello, I'm Ava. How can I help you?
"""


def webrtc_settings(tmp_path: Path, **webrtc: Any) -> Settings:
    personas = tmp_path / "personas"
    personas.mkdir(exist_ok=True)
    (personas / "web_teller.yaml").write_text(PERSONA)
    return test_settings(
        tmp_path / "data", personas_dir=personas, default_persona="web_teller", webrtc={**LOOPBACK, **webrtc}
    )


class Served:
    """A Fay server on 127.0.0.1 for one test."""

    def __init__(self, fay: Fay, server: TestServer) -> None:
        self.fay = fay
        self.server = server
        self.url = str(server.make_url(""))
        self.transport: WebRTCTransport = server.app[TRANSPORT]

    def client(self, **kw: Any) -> FayClient:
        return FayClient(self.url, ice=self.fay.settings.webrtc, **kw)


async def serve(settings: Settings) -> Served:
    fay = Fay(settings)
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    return Served(fay, server)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    s = await serve(webrtc_settings(tmp_path, max_peers=3, connect_timeout_s=3))
    yield s
    await s.server.close()


async def until(predicate: Any, timeout_s: float = 10.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


# --- the data channel -----------------------------------------------------------------------------------------


async def test_text_question_answered_over_the_data_channel(served: Served) -> None:
    async with served.client(audio=False) as c:
        ready = c.ready
        assert ready["protocol"] == 1 and ready["persona"]["id"] == "web_teller"
        assert ready["session_id"] == c.session_id and c.session_id in served.fay.sessions
        pair = c.pc.sctp.transport.transport._connection._nominated[1]
        assert pair.local_addr[0] == "127.0.0.1" and pair.remote_addr[0] == "127.0.0.1"

        c.send_text("What are your opening hours?")
        asked = await c.wait_for("user_text")
        assert asked["text"] == "What are your opening hours?" and asked["source"] == "text"
        assert (await c.wait_for("state"))["state"] == "thinking"
        delta = await c.wait_for("delta", turn=asked["turn"])
        answer = await c.wait_for("answer", turn=asked["turn"])
        assert "nine to five" in answer["text"] and delta["text"] in answer["text"]
        assert answer["citations"] and answer["citations"][0]["source"] == "web_teller.yaml"
        assert (await c.wait_for("state"))["state"] == "listening"

        c.send({"type": "ping", "t": 42.5})
        assert (await c.wait_for("pong"))["t"] == 42.5


async def test_garbage_on_the_data_channel_gives_errors_and_the_session_goes_on(served: Served) -> None:
    limit = served.fay.settings.webrtc.max_message_bytes
    bad: list[tuple[str | bytes, str]] = [
        ("not json at all", "not JSON"),
        ("[1, 2, 3]", "JSON object"),
        ('{"type": "launch_missiles"}', "launch_missiles"),
        ('{"type": "text"}', "text"),
        ('{"type": "text", "text": 5}', "text"),
        (json.dumps({"type": "text", "text": "x" * (limit + 10)}), "over the limit"),
        (b"\x00\x01binary", "binary"),
        ('{"type": "text", "text": "   "}', "empty"),
    ]
    async with served.client(audio=False) as c:
        for raw, expected in bad:
            c.send(raw)
            err = await c.wait_for("error")
            assert expected in err["message"], (raw, err)
            assert err["fatal"] is False
        assert c.session_id in served.fay.sessions and c.pc.connectionState == "connected"
        c.send_text("I lost my card, what should I do?")
        asked = await c.wait_for("user_text")
        answer = await c.wait_for("answer", turn=asked["turn"])
        assert answer["text"] and not answer["error"]


async def test_sse_and_the_data_channel_speak_the_same_vocabulary(served: Served) -> None:
    """The same question, answered over HTTP (server-sent events) and over the data channel: same names, same data."""
    question = "What are your opening hours?"
    async with ClientSession(base_url=served.url) as http:
        async with http.post("/api/sessions", json={}) as r:
            sid = (await r.json())["session_id"]
        async with http.post(f"/api/sessions/{sid}/messages", json={"text": question}) as r:
            body = await r.text()
    sse = [(block.split("\n")[0].removeprefix("event: "), json.loads(block.split("\n")[1].removeprefix("data: ")))
           for block in body.strip().split("\n\n")]
    assert [k for k, _ in sse[-2:]] == ["answer", "done"]  # "done": the deprecated name, still sent
    sse = [(k, {f: v for f, v in data.items() if f != "turn"}) for k, data in sse if k not in SSE_DEPRECATED.values()]
    kinds = {k for k, _ in sse}
    # the first stream opens with the disclosure, which the data channel carries in its ready message instead
    (first, disclosure), sse = sse[0], sse[1:]
    assert first == "disclosure" and disclosure["language"] == "en"
    async with served.client(audio=False) as c:
        assert c.ready["disclosure"] == disclosure["text"]
        c.send_text(question)
        turn = (await c.wait_for("user_text"))["turn"]
        answer = await c.wait_for("answer", turn=turn)
        channel = [m for m in c.messages if m.get("turn") == turn and m["type"] in kinds] + [answer]
    assert sse == [(m["type"], {f: v for f, v in m.items() if f != "turn"}) for m in channel]
    assert [k for k, _ in sse] == ["delta"] * (len(sse) - 1) + ["answer"]


async def test_tool_calls_reach_the_data_channel_under_the_new_and_the_deprecated_name(served: Served) -> None:
    async with served.client(audio=False) as c:
        bus = served.fay.sessions[c.session_id].bus
        bus.publish(AgentToolCalled(session_id=c.session_id, name="rates", arguments={"product": "saver"},
                                    call_id="c1"))
        bus.publish(AgentToolReturned(session_id=c.session_id, name="rates", call_id="c1", result="2.10%"))
        called = await c.wait_for("tool_called")
        assert called == {"type": "tool_called", "turn": 0, "name": "rates", "arguments": {"product": "saver"},
                          "call_id": "c1"}
        assert await c.wait_for("tool") == {**called, "type": "tool"}  # deprecated, for 0.1 clients
        returned = await c.wait_for("tool_returned")
        assert returned == {"type": "tool_returned", "turn": 0, "name": "rates", "call_id": "c1", "result": "2.10%",
                            "error": ""}
    assert CHANNEL_DEPRECATED == {"tool_called": "tool"}


# --- audio in ---------------------------------------------------------------------------------------------------


async def test_microphone_audio_reaches_the_bus_as_16k_mono(served: Served, shared_data: Path) -> None:
    speech = load_audio(shared_data / "speech_en" / "english.wav", 48000)
    async with served.client() as c:
        session = served.fay.sessions[c.session_id]
        chunks: list[AudioReceived] = []
        session.bus.subscribe(chunks.append, AudioReceived, name="test.audio")
        await until(lambda: len(chunks) > 10, what="audio frames on the bus")
        chunks.clear()
        duration = c.say(speech, 48000)
        await until(lambda: c.mic is not None and c.mic.speech_ended_at is not None, duration + 5, "speech sent")
        await asyncio.sleep(0.3)
    assert {ch.sample_rate for ch in chunks} == {16000}
    pcm = np.frombuffer(b"".join(ch.pcm for ch in chunks), np.int16).astype(np.float32)
    assert duration <= len(pcm) / 16000 < duration + 2.0  # all of it, in real time (plus the wait around it)
    pts = [ch.pts for ch in chunks]
    assert pts == sorted(pts) and all(ch.turn_id == 0 for ch in chunks)
    # the recording's loud part survives Opus and resampling: compare energy envelopes at 16 kHz
    sent = np.frombuffer(speech, np.int16).astype(np.float32)[::3]
    assert np.sqrt(np.mean(pcm**2)) > 0.3 * np.sqrt(np.mean(sent**2)) > 100


# --- signalling errors --------------------------------------------------------------------------------------------


async def post_offer(http: ClientSession, body: Any) -> tuple[int, dict[str, Any], Any]:
    data = body if isinstance(body, str) else json.dumps(body)
    async with http.post("/api/webrtc/offer", data=data, headers={"Content-Type": "application/json"}) as r:
        return r.status, await r.json(), r.headers


async def test_bad_offers_get_clear_http_errors_and_leave_nothing_behind(served: Served) -> None:
    from aiortc import RTCPeerConnection

    ice = served.fay.settings.webrtc
    pc = RTCPeerConnection(rtc_configuration(ice))
    pc.createDataChannel("fay")
    restrict_peer(pc, ice)
    await pc.setLocalDescription(await pc.createOffer())  # never connected: the offer is only a sample
    good = pc.localDescription.sdp
    await pc.close()
    max_sdp = served.fay.settings.webrtc.max_sdp_bytes
    no_fingerprint = "\r\n".join(line for line in good.split("\r\n") if not line.startswith("a=fingerprint"))
    corrupted = re.sub(r"m=application \d+ ", "m=application nine ", good)
    assert corrupted != good
    cases: list[tuple[Any, int, str]] = [
        ("{not json", 400, "not JSON"),
        ([1, 2], 400, "bad offer"),
        ({"type": "offer"}, 400, "sdp"),
        ({"sdp": "hello", "type": "offer"}, 400, "malformed SDP"),
        ({"sdp": good, "type": "answer"}, 400, "type"),
        ({"sdp": good, "extra": 1}, 400, "extra"),
        ({"sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "type": "offer"}, 400, "ice-ufrag"),
        ({"sdp": no_fingerprint, "type": "offer"}, 400, "fingerprint"),
        ({"sdp": corrupted, "type": "offer"}, 400, "malformed SDP"),
        ({"sdp": good + "a=x-pad:" + "x" * max_sdp, "type": "offer"}, 413, "over the limit"),
        ({"sdp": good, "type": "offer", "persona": "no_such_persona"}, 404, "no_such_persona"),
    ]
    async with ClientSession(base_url=served.url) as http:
        for body, status, words in cases:
            got, data, _ = await post_offer(http, body)
            assert got == status and words in data["error"], (body if len(str(body)) < 200 else "...", got, data)
        assert not served.fay.sessions and not served.transport.peers

        # the peer limit (3 here): the fourth is refused with 503 and Retry-After; the others keep working
        async with served.client(audio=False) as a, served.client(audio=False) as b, served.client(audio=False):
            status, data, headers = await post_offer(http, {"sdp": good, "type": "offer"})
            assert status == 503 and "too many sessions" in data["error"] and headers["Retry-After"]
            with pytest.raises(ConnectionError, match="503"):
                async with served.client(audio=False):
                    pass
            a.send_text("What are your opening hours?")
            b.send_text("I lost my card, what should I do?")
            assert (await a.wait_for("user_text"))["text"] == "What are your opening hours?"
            assert (await b.wait_for("user_text"))["text"] == "I lost my card, what should I do?"
            assert (await a.wait_for("answer"))["text"] and (await b.wait_for("answer"))["text"]
            assert len(served.transport.peers) == 3


def test_remote_candidates_outside_the_allowed_networks_are_dropped() -> None:
    from fay_core.settings import WebRTCSettings

    sdp = (
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n"
        "a=candidate:2 1 udp 2122194687 192.168.1.20 50001 typ host\r\n"
        "a=candidate:3 1 udp 2122194687 1f0e6c1a-2b0b-4b8e-9e54-2a8f0f4b5b7b.local 50002 typ host\r\n"
    )
    kept, dropped = filter_candidates(sdp, networks(WebRTCSettings(remote_networks=["127.0.0.0/8"])))
    assert dropped == 2 and "127.0.0.1 50000" in kept and "192.168" not in kept and ".local" not in kept
    assert filter_candidates(sdp, networks(WebRTCSettings())) == (sdp, 0)


def test_ice_servers_reach_both_peers_from_settings() -> None:
    from fay_core.settings import WebRTCSettings
    from fay_core.transport.ice import client_ice_config, rtc_configuration

    ice = WebRTCSettings(ice_servers=[{"urls": ["stun:stun.example.org:3478"]},
                                      {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}],
                         ice_transport_policy="relay")
    assert client_ice_config(ice) == {
        "iceServers": [{"urls": ["stun:stun.example.org:3478"]},
                       {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}],
        "iceTransportPolicy": "relay",
    }
    config = rtc_configuration(ice)
    assert [s.urls for s in config.iceServers] == [["stun:stun.example.org:3478"], ["turn:turn.example.org:3478"]]
    assert config.iceServers[1].credential == "p" and config.iceTransportPolicy.value == "relay"
    assert rtc_configuration(WebRTCSettings()).iceServers == []  # never aiortc's default public STUN server
    with pytest.raises(ValueError, match="udp_port_min"):
        WebRTCSettings(udp_port_min=40000)


async def test_udp_port_range(tmp_path: Path) -> None:
    s = await serve(webrtc_settings(tmp_path, udp_port_min=47100, udp_port_max=47120))
    try:
        async with ClientSession(base_url=s.url) as http, http.get("/api/webrtc/config") as r:
            config = await r.json()
        assert config == {"iceServers": [], "iceTransportPolicy": "all", "maxMessageBytes": 16384}
        async with FayClient(s.url, ice=webrtc_settings(tmp_path).webrtc, audio=False) as c:
            peer = s.transport.peers[c.session_id]
            pair = peer.pc.sctp.transport.transport._connection._nominated[1]
            assert pair.local_addr[0] == "127.0.0.1" and 47100 <= pair.local_addr[1] <= 47120
    finally:
        await s.server.close()


# --- the avatar slot ----------------------------------------------------------------------------------------------


async def test_avatar_frames_and_video_reach_the_client(tmp_path: Path) -> None:
    """A data renderer's frames arrive as binary messages, unchanged; a video renderer's track fills the slot."""
    settings = webrtc_settings(tmp_path)
    for renderer in ("params3d", "video2d"):
        text = PERSONA.replace("renderer: none", f"renderer: {renderer}")
        (settings.personas_dir / f"web_{renderer}.yaml").write_text(text)
    served = await serve(settings)
    try:
        async with served.client(persona="web_params3d", audio=False) as c:
            r = c.ready["renderer"]
            assert r["name"] == "params3d" and r["kind"] == "data" and r["viewer"] == "/web/avatars/params3d.js"
            session = served.fay.sessions[c.session_id]
            sent: list[bytes] = []
            session.avatar.add_listener(lambda payload, pts, turn: sent.append(payload))
            await until(lambda: len(c.binary) >= 10, 10, "avatar frames at the client")
            header = session.avatar.header()
            assert c.binary[0] == header  # the stream header goes first on a new channel
            assert set(c.binary[-5:]) <= {*sent, header}  # payloads arrive unchanged
        async with served.client(persona="web_video2d", audio=False, video=True) as c:
            assert c.ready["renderer"]["kind"] == "video"
            await until(lambda: c.video_frames >= 5, 15, "avatar video frames")
            frame = c.last_video_frame
            assert (frame.width, frame.height) == (384, 480)
    finally:
        await served.server.close()
