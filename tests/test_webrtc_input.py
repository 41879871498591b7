"""Hostile input to the WebRTC transport: data-channel messages, SDP offers, and offers that never connect.

Whatever a client sends, the server answers with an ``error`` message (data channel) or a 4xx (signalling), the
session goes on, and a refused offer leaves no peer, session or socket behind. Real aiortc peers over loopback;
the property tests are derandomized and sized to run in seconds (``bench/fuzz_webrtc.py`` runs thousands).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp import ClientSession
from aiortc import RTCPeerConnection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fay_core.errors import PeerLimit, TooManyOffers
from fay_core.events import AgentTurnFinished
from fay_core.testing import Recorder
from fay_core.transport.client import PCMSource
from fay_core.transport.ice import restrict_peer, rtc_configuration
from fay_core.transport.peer import Peer
from fay_core.transport.protocol import OfferRequest, ProtocolError, parse_client_message

from test_webrtc import Served, post_offer, serve, until, webrtc_settings

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: messages that killed their session before: the channel closed and no error came back
KILLERS = ["[" * 3000, '{"type": "ping", "t": ' + "9" * 5000 + "}", '{"type": "ping", "t": 1e999}',
           '{"type": "ping", "t": NaN}', '{"type": "bye", "\\ud800": 1}']


class FakeChannel:
    """What :class:`Peer` needs of an ``RTCDataChannel``: it records what is sent, as aiortc would encode it."""

    readyState = "open"
    bufferedAmount = 0

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, data: str | bytes) -> None:
        assert isinstance(data, str)
        data.encode("utf-8")  # aiortc encodes strictly: a lone surrogate here would drop the reply
        self.sent.append(json.loads(data, parse_constant=lambda c: pytest.fail(f"{c} is not JSON")))

    def close(self) -> None:
        self.readyState = "closed"


# --- the data channel, with real peers ---------------------------------------------------------------------------


async def test_messages_that_killed_the_session_get_an_error_and_the_session_answers(tmp_path: Path) -> None:
    served = await serve(webrtc_settings(tmp_path))
    try:
        async with served.client(audio=False) as c:
            for raw in KILLERS:
                c.send(raw)
                err = await c.wait_for("error", 10)
                assert err["fatal"] is False and err["source"] == "webrtc", (raw[:40], err)
                assert "Traceback" not in err["message"] and len(err["message"]) < 300
            # bad UTF-8 in a text message: aiortc fails on it before any handler (sent below its API)
            assert c.pc is not None and c.pc.sctp is not None
            await c.pc.sctp._send(c._channel.id, 51, b'{"type": "text", "text": "\xff\xfe"}')
            assert "UTF-8" in (await c.wait_for("error", 10))["message"]
            assert c.pc.connectionState == "connected" and c.session_id in served.fay.sessions
            c.send({"type": "ping", "t": 7.5})
            assert (await c.wait_for("pong"))["t"] == 7.5
            c.send_text("What are your opening hours?")
            answer = await c.wait_for("answer")
            assert "nine to five" in answer["text"]
    finally:
        await served.server.close()


async def test_a_fault_in_the_handler_is_an_error_reply_not_a_closed_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    served = await serve(webrtc_settings(tmp_path))
    try:
        async with served.client(audio=False) as c:
            session = served.fay.sessions[c.session_id]
            real_submit = session.submit

            def broken(text: str, source: str = "text") -> Any:
                raise KeyError("/srv/fay/secret/path")

            monkeypatch.setattr(session, "submit", broken)
            c.send_text("What are your opening hours?")
            err = await c.wait_for("error", 10)
            assert "not processed" in err["message"] and "secret" not in err["message"]
            assert "a data-channel message failed" in caplog.text
            monkeypatch.setattr(session, "submit", real_submit)
            c.send_text("What are your opening hours?")
            assert (await c.wait_for("answer"))["text"]
            assert served.transport.peers[c.session_id].bad_in_a_row == 0  # the server's fault is not counted
    finally:
        await served.server.close()


async def test_a_client_sending_only_bad_messages_is_closed(tmp_path: Path) -> None:
    served = await serve(webrtc_settings(tmp_path, max_bad_messages=5))
    try:
        async with served.client(audio=False) as c:
            for _ in range(4):  # four in a row, then a good one: the count starts again
                c.send("nope")
                assert not (await c.wait_for("error", 10))["fatal"]
            c.send({"type": "ping"})
            await c.wait_for("pong")
            for _ in range(4):
                c.send("nope")
                assert not (await c.wait_for("error", 10))["fatal"]
            assert c.session_id in served.fay.sessions
            c.send("nope")
            last = await c.wait_for("error", 10)
            assert last["fatal"] and "5 bad messages in a row" in last["message"]
            await until(lambda: not served.fay.sessions and not served.transport.peers, 10, "the session to close")
    finally:
        await served.server.close()


# --- the data channel, property-based -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
fields = st.dictionaries(st.sampled_from(["type", "text", "t", "x", ""]),
                         st.sampled_from(["text", "ping", "bye", "\ud800"]) | json_values, max_size=4)


@st.composite
def nested(draw: st.DrawFn) -> str:
    depth = draw(st.integers(1, 6000))
    opener = draw(st.sampled_from(["[", '{"a":', '{"type": "text", "text": [']))
    return opener * depth + draw(st.sampled_from(["", "1", "]" * depth]))


#: data-channel messages: JSON-ish text, valid messages bent out of shape, deep nesting, huge numbers, binary
messages = st.one_of(
    st.text(max_size=60),
    st.binary(max_size=40),
    fields.map(lambda d: json.dumps(d, ensure_ascii=False)),
    fields.map(json.dumps),
    json_values.map(json.dumps),
    nested(),
    st.integers(1, 8000).map(lambda n: '{"type": "ping", "t": ' + "9" * n + "}"),
    st.floats().map(lambda f: json.dumps({"type": "ping", "t": f})),
    st.text(max_size=30).map(lambda s: json.dumps({"type": "text", "text": s})[:-1]),
    st.integers(15_000, 20_000).map(lambda n: json.dumps({"type": "text", "text": "x" * n})),
)


@pytest.fixture
async def lone_peer(tmp_path: Path) -> Any:
    """A real session's :class:`Peer` whose data channel is a :class:`FakeChannel` (no network)."""
    served = await serve(webrtc_settings(tmp_path, max_bad_messages=10**6))
    session = await served.fay.create_session("web_teller")
    pc = RTCPeerConnection()
    closed: list[str] = []
    peer = Peer(pc, session, served.fay.settings.webrtc, renderer=None, close=closed.append)
    peer.channel = FakeChannel()  # type: ignore[assignment]
    yield served, peer, closed
    await pc.close()
    await served.server.close()


async def test_any_message_gets_one_reply_and_the_session_goes_on(lone_peer: Any) -> None:
    served, peer, closed = lone_peer
    channel: FakeChannel = peer.channel
    limit = served.fay.settings.webrtc.max_message_bytes
    seen = [0]

    @FUZZ
    @given(raw=messages)
    def check(raw: str | bytes) -> None:
        seen[0] += 1
        channel.sent.clear()
        try:
            msg = parse_client_message(raw, limit)
        except ProtocolError:
            msg = None
        if msg is not None and msg.type != "ping":
            return  # a valid text would start a turn, a bye closes: both tested over a real channel
        peer._on_message(raw)  # raises nothing
        assert len(channel.sent) == 1, channel.sent
        reply = channel.sent[0]
        if msg is None:
            assert reply["type"] == "error" and reply["fatal"] is False and reply["source"] == "webrtc"
            assert len(reply["message"]) < 300
        else:
            assert reply == {"type": "pong", "t": msg.t} and math.isfinite(reply["t"])

    check()
    assert seen[0] >= 250 and not closed
    rec = Recorder(peer.session.bus, AgentTurnFinished)
    channel.sent.clear()
    peer._on_message(json.dumps({"type": "text", "text": "What are your opening hours?"}))
    assert not channel.sent  # no error: the question was taken
    assert "nine to five" in (await rec.wait(AgentTurnFinished, within=30)).text


# --- SDP offers -------------------------------------------------------------------------------------------------------


async def sample_offer(served: Served, audio: bool = True) -> str:
    ice = served.fay.settings.webrtc
    pc = RTCPeerConnection(rtc_configuration(ice))
    pc.createDataChannel("fay")
    if audio:
        pc.addTrack(PCMSource())
    restrict_peer(pc, ice)
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


def udp_sockets() -> int:
    return len(psutil.Process().net_connections(kind="udp"))


async def test_offers_aiortc_failed_on_late_are_400_and_leave_nothing(tmp_path: Path) -> None:
    served = await serve(webrtc_settings(tmp_path))
    try:
        good = await sample_offer(served)
        sockets = udp_sockets()
        cases = [
            (good.replace("s=-", "s=\ud800"), "unicode"),
            ("\r\n".join(line for line in good.split("\r\n") if line != "a=sendrecv"), "no direction"),
            (good.replace("a=sendrecv", "a=sendrecv\x00"), "control characters"),
            (re.sub(r"m=application.*", "m=text 9 UDP/DTLS/SCTP webrtc-datachannel", good), "data channel"),
        ]
        async with ClientSession(base_url=served.url) as http:
            for sdp, words in cases:
                status, data, _ = await post_offer(http, json.dumps({"sdp": sdp, "type": "offer"}))
                assert status == 400 and words in data["error"].lower(), (words, status, data)
        assert not served.transport.peers and not served.fay.sessions and udp_sockets() <= sockets
    finally:
        await served.server.close()


def mutations(sdp: str) -> st.SearchStrategy[str]:
    lines = sdp.split("\r\n")
    index = st.integers(0, len(lines) - 1)
    junk = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12) | st.sampled_from(
        ["\ud800", "a=sendrecv", "a=inactive", "m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=application 0 x y",
         "a=mid:0", "a=mid:", "a=setup:foo", "a=rtpmap:x", "c=IN IP4 nowhere", "a=candidate:1 1 udp",
         "a=fingerprint:sha-256 00", "a=ice-ufrag:", "a=sctp-port:0", "a=group:BUNDLE 9", "m=video 9 X 96"]
    )

    def drop(i: int) -> str:
        return "\r\n".join(lines[:i] + lines[i + 1:])

    def replace(i: int, new: str) -> str:
        return "\r\n".join([*lines[:i], new, *lines[i + 1:]])

    def insert(i: int, new: str) -> str:
        return "\r\n".join([*lines[:i], new, *lines[i:]])

    def renumber(i: int, n: int) -> str:
        return replace(i, re.sub(r"\d+", str(n), lines[i], count=1))

    return st.one_of(
        index.map(drop),
        st.builds(replace, index, junk),
        st.builds(insert, index, junk),
        st.builds(renumber, index, st.integers(-1, 2**40)),
        st.integers(0, len(sdp)).map(lambda n: sdp[:n]),
        st.builds(lambda i, j: "\r\n".join(lines[:i] + lines[j:] + lines[i:j]), index, index),
    )


async def test_mutated_offers_get_4xx_never_5xx_and_leak_nothing(tmp_path: Path) -> None:
    served = await serve(webrtc_settings(tmp_path, max_pending_per_client=50, max_pending=50))
    try:
        good = await sample_offer(served)
        sockets = udp_sockets()
        cases: list[str] = []

        @settings(max_examples=40, deadline=None, derandomize=True, database=None)
        @given(sdp=mutations(good))
        def collect(sdp: str) -> None:  # each case is a real offer/answer, which hypothesis cannot await
            cases.append(sdp)

        collect()
        results: list[tuple[int, str]] = []
        async with ClientSession(base_url=served.url) as http:
            for sdp in dict.fromkeys(cases):
                body = json.dumps({"sdp": sdp, "type": "offer"})
                status, data, _ = await asyncio.wait_for(post_offer(http, body), 20)
                results.append((status, sdp))
                assert status < 500, (status, data, sdp)
                if status == 201:
                    async with http.delete(f"/api/sessions/{data['session_id']}") as r:
                        assert r.status == 200
        await until(lambda: not served.transport.peers and not served.fay.sessions, 10, "peers to close")
        await until(lambda: udp_sockets() <= sockets, 10, "ICE sockets to close")
        refused = sum(1 for status, _ in results if 400 <= status < 500)
        assert len(results) >= 30 and refused >= 10, [s for s, _ in results]
    finally:
        await served.server.close()


# --- offers that never connect ------------------------------------------------------------------------------------


async def test_offers_that_never_connect_cannot_lock_out_another_client(tmp_path: Path) -> None:
    """50 offers from one address that never connect: 4 are answered, the rest 429; another client connects."""
    served = await serve(webrtc_settings(tmp_path, max_pending=6, connect_timeout_s=60))
    try:
        sdp = await sample_offer(served, audio=False)
        offer = OfferRequest(sdp=sdp)
        refused = []
        for _ in range(50):
            try:
                await served.transport.answer(offer, client="203.0.113.9")
            except TooManyOffers as exc:
                refused.append(exc)
        assert len(refused) == 46 and refused[0].status == 429 and refused[0].retry_after_s
        assert served.transport.pending("203.0.113.9") == 4

        async with served.client(audio=False) as c:  # from 127.0.0.1: not locked out
            c.send_text("What are your opening hours?")
            assert "nine to five" in (await c.wait_for("answer"))["text"]
            assert served.transport.pending("127.0.0.1") == 0  # connected: no longer pending

            # a second address fills what is left of the pending budget (6); then everyone waits (503)
            for _ in range(2):
                await served.transport.answer(offer, client="198.51.100.7")
            with pytest.raises(PeerLimit, match="still connecting"):
                await served.transport.answer(offer, client="192.0.2.1")

            # over HTTP: the refusal carries its status and Retry-After
            async with ClientSession(base_url=served.url) as http:
                status, data, headers = await post_offer(http, json.dumps({"sdp": sdp, "type": "offer"}))
            assert status == 503 and "still connecting" in data["error"] and headers["Retry-After"]
            assert c.pc.connectionState == "connected"
    finally:
        await served.server.close()


async def test_too_many_offers_from_one_address_over_http_is_429(tmp_path: Path) -> None:
    served = await serve(webrtc_settings(tmp_path, max_pending_per_client=2, connect_timeout_s=60))
    try:
        sdp = await sample_offer(served, audio=False)
        body = json.dumps({"sdp": sdp, "type": "offer"})
        async with ClientSession(base_url=served.url) as http:
            statuses = [(await post_offer(http, body))[0] for _ in range(2)]
            status, data, headers = await post_offer(http, body)
        assert statuses == [201, 201] and status == 429 and headers["Retry-After"] == "5"
        assert "still connecting" in data["error"] and len(served.transport.peers) == 2
    finally:
        await served.server.close()
