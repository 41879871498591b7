"""WebRTC lifecycle: every way a peer ends frees its session, tasks, tracks and sockets; the record is kept."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import itertools
import tracemalloc
import weakref
from pathlib import Path
from typing import Any

import aioice.ice
import psutil
import pytest
from aiohttp import ClientSession
from aiortc import RTCPeerConnection

import fay_core.transport.ice as ice_module
from fay_core.settings import WebRTCSettings
from fay_core.transport.ice import _ice_connections, patient_consent, restrict_peer, rtc_configuration

from test_webrtc import Served, serve, until, webrtc_settings


def audit_records(served: Served, session_id: str) -> list[dict[str, object]]:
    return served.fay.audit.read(session_id)


async def test_client_hanging_up_frees_the_session_and_keeps_the_record(tmp_path: Path) -> None:
    served = await serve(webrtc_settings(tmp_path))
    try:
        async with served.client() as c:
            peer = served.transport.peers[c.session_id]
            session = served.fay.sessions[c.session_id]
            c.send_text("What are your opening hours?")
            await c.wait_for("answer")
            server_pc = peer.pc
        # the client closed its peer connection (like a closed tab): the server notices and frees everything
        await asyncio.wait_for(peer.released.wait(), 10)
        assert c.session_id not in served.fay.sessions and session.closed and session.bus.tasks == 0
        assert not served.transport.peers and server_pc.connectionState == "closed"
        assert peer.channel is None and peer.audio_out is None and peer.remote_audio is None
        kinds = [r["kind"] for r in audit_records(served, c.session_id)]
        # the disclosure first (shown by the ready message; spoken too, if its audio played before the hang-up)
        assert kinds[0] == "disclosure" and [k for k in kinds if k != "disclosure"] == ["user", "answer"]
    finally:
        await served.server.close()


async def test_a_peer_that_never_connects_is_closed_after_the_timeout(tmp_path: Path) -> None:
    served = await serve(webrtc_settings(tmp_path, connect_timeout_s=1.5))
    try:
        ice = served.fay.settings.webrtc
        pc = RTCPeerConnection(rtc_configuration(ice))
        pc.createDataChannel("fay")
        restrict_peer(pc, ice)
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        await pc.close()  # gone before ICE: the server's checks go unanswered
        body = {"sdp": offer, "type": "offer"}
        async with ClientSession(base_url=served.url) as http, http.post("/api/webrtc/offer", json=body) as r:
            assert r.status == 201
            sid = (await r.json())["session_id"]
        assert sid in served.fay.sessions
        # the session leaves the table first; its cleanups (the peer among them) run as it closes
        await until(lambda: sid not in served.fay.sessions and not served.transport.peers, 10,
                    "the unconnected peer to be dropped")
        assert not served.transport.peers
    finally:
        await served.server.close()


async def test_ice_failure_frees_the_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client vanishes without a word (network gone, process killed): ICE consent expires, the server frees all.

    Consent is checked every 5 s and expires 30 s after the last answer (:func:`patient_consent`); the test
    shortens those to 0.1 s and 1 s.
    """
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.1)
    monkeypatch.setattr(ice_module, "CONSENT_EXPIRY_S", 1.0)
    served = await serve(webrtc_settings(tmp_path))
    try:
        c = served.client(audio=False)
        await c.connect()
        peer = served.transport.peers[c.session_id]
        assert c.pc is not None
        client_ice = c.pc.sctp.transport.transport._connection
        for protocol in client_ice._protocols:  # cut the client's sockets: no DTLS close, no SCTP abort, nothing
            protocol.transport.close()
        await asyncio.wait_for(peer.released.wait(), 10)
        assert c.session_id not in served.fay.sessions and not served.transport.peers
        await c.close()
    finally:
        await served.server.close()


async def test_closing_the_session_over_http_hangs_up_the_peer(tmp_path: Path) -> None:
    served = await serve(webrtc_settings(tmp_path))
    try:
        async with served.client(audio=False) as c:
            async with ClientSession(base_url=served.url) as http, http.delete(f"/api/sessions/{c.session_id}") as r:
                assert r.status == 200
            assert not served.transport.peers
            await until(lambda: c.pc.connectionState == "closed", 10, "the client to see the hang-up")
    finally:
        await served.server.close()


async def test_server_shutdown_closes_every_peer(tmp_path: Path) -> None:
    served = await serve(webrtc_settings(tmp_path))
    async with served.client(audio=False) as a, served.client(audio=False) as b:
        assert len(served.transport.peers) == 2
        await served.server.close()
        assert not served.transport.peers and not served.fay.sessions
        await until(lambda: a.pc.connectionState == b.pc.connectionState == "closed", 10, "clients to see it")


async def test_fifty_connect_disconnect_cycles_return_to_baseline(tmp_path: Path) -> None:
    """Tasks, UDP sockets, Peer objects and memory are back where they were after 50 connect/disconnect cycles.

    Every peer streams its microphone (silence: decode, resampling, VAD); one cycle in five also asks a question and
    waits for the spoken answer (TTS, playout, the outgoing track). Memory: Python objects (tracemalloc) must come
    back to the baseline taken after a warm-up, and RSS must not grow with the number of sessions: the median
    growth per 5 cycles stays under 1 MiB. (Engines allocate native memory once, at some first use, which shows as
    a single step in RSS and is not a per-session leak; the table of RSS readings is in the failure message.)
    """
    served = await serve(webrtc_settings(tmp_path))
    proc = psutil.Process()
    peers: list[weakref.ref[object]] = []

    async def cycle(talk: bool) -> None:
        async with served.client() as c:
            peers.append(weakref.ref(served.transport.peers[c.session_id]))
            if talk:
                c.expect_audio()
                c.send_text("What are your opening hours?")
                await c.wait_for("answer")
                if c.ready["voice"]:
                    await until(lambda: c.first_audible_at is not None, 30, "answer audio")
        await until(lambda: not served.fay.sessions and not served.transport.peers, 10, "the session to close")

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")

    def snapshot() -> tuple[int, int, float]:
        gc.collect()
        libc.malloc_trim(0)  # hand freed heap pages back, so RSS shows what is still held
        udp = len(proc.net_connections(kind="udp"))
        return len(asyncio.all_tasks()), udp, proc.memory_info().rss / 2**20

    try:
        for _ in range(4):  # warm-up: models, codecs, imports, caches, allocator pools
            await cycle(True)
        await asyncio.sleep(1)
        tasks0, udp0, rss0 = snapshot()
        tracemalloc.start()
        py0 = tracemalloc.get_traced_memory()[0]
        readings = [rss0]
        for i in range(50):
            await cycle(i % 5 == 0)
            if i % 5 == 4:
                readings.append(snapshot()[2])
        await until(lambda: snapshot()[0] <= tasks0, 10, "tasks to end")
        await asyncio.sleep(0.5)
        gc.collect()
        py1 = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        tasks1, udp1, rss1 = snapshot()
        assert tasks1 <= tasks0, f"tasks {tasks0} -> {tasks1}: {[t.get_name() for t in asyncio.all_tasks()]}"
        assert udp1 <= udp0, f"UDP sockets {udp0} -> {udp1}: ICE sockets not closed"
        memory = f"Python objects +{(py1 - py0) / 2**20:.2f} MiB, RSS every 5 cycles: {[round(r) for r in readings]}"
        assert py1 - py0 < 2 * 2**20, f"Python memory not back to baseline: {memory}"
        steps = sorted(b - a for a, b in itertools.pairwise(readings))
        assert steps[len(steps) // 2] < 1.0, f"RSS grows with the number of sessions: {memory}"
        assert rss1 - rss0 < 80, f"RSS far above the baseline: {memory}"
        assert not served.transport.peers and not served.fay.sessions
        assert all(ref() is None for ref in peers), "Peer objects are still referenced after their sessions closed"
        print(f"\n50 cycles: tasks {tasks0}->{tasks1}, UDP sockets {udp0}->{udp1}, {memory}")
    finally:
        await served.server.close()


async def test_sends_queued_on_a_dying_connection_do_not_log_errors(tmp_path: Path) -> None:
    """aiortc flushes every data-channel send in a task nobody awaits: on a connection that died meanwhile each one
    failed with ``ConnectionError`` and asyncio logged "Task exception was never retrieved" (179 ERROR lines in a
    10-minute soak). The flushes are guarded; what could not be sent is dropped."""
    loop = asyncio.get_running_loop()
    unretrieved: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    served = await serve(webrtc_settings(tmp_path))
    try:
        async with served.client(audio=False) as c:
            peer = served.transport.peers[c.session_id]
            assert peer.channel is not None and peer.pc.sctp is not None
            await peer.pc.sctp.transport.stop()  # the DTLS transport under the channel is gone
            for i in range(5):  # the channel has not noticed yet: aiortc queues these and flushes them in tasks
                peer.channel.send(f'{{"type": "pong", "t": {i}}}')
            await asyncio.sleep(0.2)
            gc.collect()  # an unretrieved task exception is reported when its task is collected
            await asyncio.sleep(0)
        failed = [ctx for ctx in unretrieved if isinstance(ctx.get("exception"), ConnectionError)]
        assert not failed, failed
    finally:
        loop.set_exception_handler(previous)
        await served.server.close()


# --- ICE consent (RFC 7675) --------------------------------------------------------------------------------

LOOP = WebRTCSettings(host_addresses=["127.0.0.1"], remote_networks=["127.0.0.0/8"])


async def _connected_pair(patient: bool) -> tuple[RTCPeerConnection, RTCPeerConnection]:
    """Two peers on loopback; ``patient``: ``a`` checks consent as Fay's peers do (else as aioice does)."""
    a, b = RTCPeerConnection(rtc_configuration(LOOP)), RTCPeerConnection(rtc_configuration(LOOP))
    a.createDataChannel("consent")
    restrict_peer(a, LOOP)
    if patient:
        patient_consent(a)
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    restrict_peer(b, LOOP)
    patient_consent(b)  # b's own checks are answered at once: only a's are under test
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    await until(lambda: a.connectionState == b.connectionState == "connected", 10, "both peers connected")
    return a, b


def _answer_late(pc: RTCPeerConnection, answers: dict[str, float | None]) -> None:
    """``pc`` answers connectivity (consent) checks ``answers["delay_s"]`` late, or never once it is None: what a
    peer whose event loop runs late looks like from the other side."""
    (conn,) = list(_ice_connections(pc))
    original = conn.request_received

    def request_received(message: Any, addr: tuple[str, int], protocol: Any) -> None:
        delay = answers["delay_s"]
        if delay is not None:
            asyncio.get_running_loop().call_later(delay, original, message, addr, protocol)

    conn.request_received = request_received


async def test_consent_outlasts_late_answers_and_still_expires_when_they_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.2)  # a check every 0.16-0.24 s instead of 4-6 s
    monkeypatch.setattr(ice_module, "CONSENT_EXPIRY_S", 2.0)
    answers: dict[str, float | None] = {"delay_s": 0.7}  # later than aioice's one-shot 500 ms
    pairs = {patient: await _connected_pair(patient) for patient in (False, True)}
    try:
        for _, b in pairs.values():
            _answer_late(b, answers)
        # aioice's own rule closes a live connection after six late answers in a row
        await until(lambda: pairs[False][0].connectionState == "closed", 10, "aioice's consent to expire")
        await asyncio.sleep(2.5)  # longer than the expiry: late answers are still answers
        assert pairs[True][0].connectionState == "connected"
        answers["delay_s"] = None  # the peer is gone: consent expires
        await until(lambda: pairs[True][0].connectionState == "closed", 6, "consent to expire once nobody answers")
    finally:
        for a, b in pairs.values():
            await a.close()
            await b.close()
