"""WebRTC lifecycle: every way a peer ends frees its session, tasks, tracks and sockets; the record is kept."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import weakref
from pathlib import Path

import psutil
import pytest
from aiohttp import ClientSession
from aiortc import RTCPeerConnection

from fay_core.transport.ice import restrict_peer, rtc_configuration

from test_webrtc import Served, load_pcm, serve, until, webrtc_settings


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
        assert kinds == ["user", "answer"]
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
        await until(lambda: sid not in served.fay.sessions, 10, "the unconnected peer to be dropped")
        assert not served.transport.peers
    finally:
        await served.server.close()


async def test_ice_failure_frees_the_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client vanishes without a word (network gone, process killed): ICE consent expires, the server frees all.

    aioice checks consent every 5 s and gives up after 6 misses; the test shortens the interval to 0.1 s.
    """
    from aioice import ice

    monkeypatch.setattr(ice, "CONSENT_INTERVAL", 0.1)
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


async def test_fifty_connect_disconnect_cycles_return_to_baseline(tmp_path: Path, shared_data: Path) -> None:
    speech = load_pcm(shared_data / "speech_en" / "english.wav", 48000)
    served = await serve(webrtc_settings(tmp_path))
    proc = psutil.Process()
    peers: list[weakref.ref[object]] = []

    async def cycle(talk: bool) -> None:
        async with served.client() as c:
            peers.append(weakref.ref(served.transport.peers[c.session_id]))
            if talk:  # audio in, a question, an answer (spoken too when the voice pipeline is there)
                c.say(speech, 48000)
                c.send_text("What are your opening hours?")
                await c.wait_for("answer")
                if c.ready["voice"]:
                    await until(lambda: c.first_audible_at is not None, 15, "answer audio")
        await until(lambda: not served.fay.sessions, 10, "the session to close")

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")

    def snapshot() -> tuple[int, int, float]:
        gc.collect()
        libc.malloc_trim(0)  # hand freed heap pages back, so RSS shows what is still held
        return len(asyncio.all_tasks()), proc.num_fds(), proc.memory_info().rss / 2**20

    try:
        for _ in range(4):  # warm-up: models, codecs, imports, caches, allocator pools
            await cycle(True)
        await asyncio.sleep(1)
        tasks0, fds0, rss0 = snapshot()
        for i in range(50):
            await cycle(i % 5 == 0)
        await until(lambda: snapshot()[0] <= tasks0, 10, "tasks to end")
        await asyncio.sleep(0.5)
        tasks1, fds1, rss1 = snapshot()
        assert tasks1 <= tasks0, f"tasks {tasks0} -> {tasks1}: {[t.get_name() for t in asyncio.all_tasks()]}"
        assert fds1 <= fds0 + 2, f"open file descriptors (sockets) {fds0} -> {fds1}"
        assert rss1 - rss0 < 20, f"memory grew {rss1 - rss0:.1f} MiB over 50 cycles ({rss0:.0f} -> {rss1:.0f})"
        assert not served.transport.peers and not served.fay.sessions
        assert all(ref() is None for ref in peers), "Peer objects are still referenced after their sessions closed"
        print(f"\n50 cycles: tasks {tasks0}->{tasks1}, fds {fds0}->{fds1}, RSS {rss0:.1f}->{rss1:.1f} MiB")
    finally:
        await served.server.close()
