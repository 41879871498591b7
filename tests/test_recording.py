"""Consent-gated recording of a real voice session over WebRTC: nothing without consent, a labelled stereo WAV
with the customer on the left and the avatar on the right with it, and withdrawal stops it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
from aiohttp import ClientSession
from test_browser import spoken_question
from test_webrtc import PERSONA, Served, serve, until, webrtc_settings

from fay_core.labels import read_label, verify
from fay_core.transport.client import FayClient
from fay_core.voice.audio import load_audio

RECORDING = PERSONA.replace("name: Ava (web test)", "name: Ava") + """\
recording:
  enabled: true
  notice:
    en: We would like to record this call. Do you agree?
"""


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    settings = webrtc_settings(tmp_path, max_peers=3)
    (settings.personas_dir / "recorded.yaml").write_text(RECORDING)
    s = await serve(settings)
    yield s
    await s.server.close()


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """ "What are your opening hours?" (espeak-ng), at 48 kHz."""
    path = spoken_question(tmp_path_factory.mktemp("speech") / "question.wav", "What are your opening hours?",
                           lead_s=0.2, tail_s=0.5)
    return load_audio(path, 48000)


def rms_envelope(x: np.ndarray, rate: int = 16000, win_s: float = 0.1) -> np.ndarray:
    n = int(rate * win_s)
    frames = x[: len(x) // n * n].astype(np.float32).reshape(-1, n)
    return np.sqrt(np.mean(frames**2, axis=1))


async def speak_and_hear_the_answer(c: FayClient, speech: bytes) -> dict:
    await until(lambda: c.audio_frames > 10, 10, "audio flowing")
    c.say(speech, 48000)
    answer = await c.wait_for("answer", 60)
    await c.audible.wait()
    await c.wait_for("state", 60, state="listening")
    return answer


async def test_nothing_is_recorded_without_consent(served: Served, speech: bytes) -> None:
    async with served.client(persona="recorded") as c:
        assert c.ready["recording"] == {"enabled": True, "notice": "We would like to record this call. Do you agree?"}
        assert c.ready["disclosure"].startswith("I'm Ava, an AI assistant")
        await speak_and_hear_the_answer(c, speech)
        session = served.fay.sessions[c.session_id]
        assert session.recorder is not None and not session.recorder.active
        c.send({"type": "consent", "recording": False})
        assert (await c.wait_for("consent"))["recording"] == {"enabled": True, "consented": False, "active": False}
        sid = c.session_id
    await until(lambda: sid not in served.fay.sessions and not served.transport.peers, 10, "the session's end")
    await asyncio.sleep(0.5)  # its cleanups
    assert not (served.fay.settings.data_dir / "recordings").exists()
    records = served.fay.audit.read(sid)
    assert [r["recording"] for r in records if r["kind"] == "consent"] == [False]
    assert not any(r["kind"] == "recording" for r in records)
    assert [r["via"] for r in records if r["kind"] == "disclosure"] == ["webrtc", "voice"]


async def test_with_consent_both_sides_are_recorded_in_a_labelled_stereo_wav(served: Served,
                                                                             speech: bytes) -> None:
    async with served.client(persona="recorded") as c:
        sid = c.session_id
        served.fay.sessions[sid].tenant = "harbor bank/../x"  # a tenant name is made a safe folder name
        c.send({"type": "consent", "recording": True})
        assert (await c.wait_for("consent"))["recording"] == {"enabled": True, "consented": True, "active": True}
        spoken_at = served.fay.sessions[sid].recorder._t0  # type: ignore[union-attr]
        await speak_and_hear_the_answer(c, speech)
    await until(lambda: any(r["kind"] == "recording" for r in served.fay.audit.read(sid)), 10, "the recording's end")
    path = served.fay.settings.data_dir / "recordings" / "harbor_bank_.._x" / f"{sid}.wav"
    assert path.is_file(), list((served.fay.settings.data_dir / "recordings").rglob("*"))
    assert spoken_at > 0

    data, rate = soundfile.read(path, dtype="int16")
    assert rate == 16000 and data.ndim == 2 and data.shape[1] == 2
    left, right = rms_envelope(data[:, 0]), rms_envelope(data[:, 1])
    assert left.max() > 300 and right.max() > 300, (left.max(), right.max())  # speech on both channels
    # the customer spoke first, the avatar answered after: on the session's clock the right side starts later
    customer_starts = int(np.argmax(left > 300))
    avatar_starts = int(np.argmax(right > 300))
    customer_ends = len(left) - int(np.argmax(left[::-1] > 300))
    assert customer_starts < avatar_starts and avatar_starts >= customer_ends - 5, (customer_starts, avatar_starts,
                                                                                   customer_ends)
    sent = rms_envelope(np.frombuffer(speech, np.int16)[::3])  # the same measure of what the client said
    sent_s = (len(sent) - int(np.argmax(sent[::-1] > 300)) - int(np.argmax(sent > 300))) / 10
    assert (customer_ends - customer_starts) / 10 == pytest.approx(sent_s, abs=0.4)  # all of it, in real time

    label = read_label(path)
    assert label is not None and label.propagate_id == sid and label.content_propagator == "harbor bank/../x"
    assert label.content_producer.startswith("Fay ") and verify(path)
    records = served.fay.audit.read(sid)
    consent = [r for r in records if r["kind"] == "consent"]
    assert [(r["recording"], r["via"]) for r in consent] == [(True, "webrtc")]
    assert consent[0]["notice"] == "We would like to record this call. Do you agree?"
    (recorded,) = [r for r in records if r["kind"] == "recording"]
    assert recorded["path"] == str(path) and recorded["produce_id"] == label.produce_id
    assert recorded["seconds"] == pytest.approx(len(data) / 16000, abs=0.05)


async def test_withdrawing_consent_stops_the_recording(served: Served, speech: bytes) -> None:
    async with served.client(persona="recorded") as c, ClientSession(base_url=served.url) as http:
        sid = c.session_id
        async with http.post(f"/api/sessions/{sid}/consent", json={"recording": True}) as r:
            assert r.status == 200 and (await r.json())["recording"]["active"] is True
        await until(lambda: c.audio_frames > 50, 10, "a second of audio")
        async with http.post(f"/api/sessions/{sid}/consent", json={"recording": False}) as r:
            assert (await r.json())["recording"] == {"enabled": True, "consented": False, "active": False}
        path = served.fay.settings.data_dir / "recordings" / "default" / f"{sid}.wav"
        assert verify(path)  # finished at once
        size = path.stat().st_size
        await speak_and_hear_the_answer(c, speech)  # not recorded
        assert path.stat().st_size == size
        async with http.get(f"/api/sessions/{sid}") as r:
            assert (await r.json())["ai"]["recording"] == {"enabled": True, "consented": False, "active": False}
        async with http.post(f"/api/sessions/{sid}/consent", json={"recording": "yes"}) as r:
            assert r.status == 400 and "'recording' (true or false)" in (await r.json())["error"]
        c.send({"type": "consent", "recording": "yes"})
        assert "recording" in (await c.wait_for("error"))["message"]
    await until(lambda: sid not in served.fay.sessions and not served.transport.peers, 10, "the session's end")
    await asyncio.sleep(0.5)  # its cleanups
    assert sorted(p.name for p in path.parent.iterdir()) == [f"{sid}.wav"] and path.stat().st_size == size


async def test_consent_to_a_persona_that_does_not_record_is_refused(served: Served) -> None:
    async with served.client(persona="web_teller", audio=False) as c, ClientSession(base_url=served.url) as http:
        assert c.ready["recording"] == {"enabled": False}
        async with http.post(f"/api/sessions/{c.session_id}/consent", json={"recording": True}) as r:
            assert r.status == 409 and "does not record" in (await r.json())["error"]
        c.send({"type": "consent", "recording": True})
        assert (await c.wait_for("error"))["source"] == "consent"
        assert served.fay.sessions[c.session_id].recorder is None


async def test_consent_in_a_text_only_session_leaves_no_empty_file(served: Served) -> None:
    async with ClientSession(base_url=served.url) as http:
        async with http.post("/api/sessions", json={"persona": "recorded"}) as r:
            created = await r.json()
        assert created["recording"] == {"enabled": True, "notice": "We would like to record this call. Do you agree?"}
        sid = created["session_id"]
        async with http.post(f"/api/sessions/{sid}/consent", json={"recording": True}) as r:
            assert (await r.json())["recording"]["active"] is True
        async with http.delete(f"/api/sessions/{sid}") as r:
            assert r.status == 200
    assert not list((served.fay.settings.data_dir / "recordings").rglob("*.wav"))
    assert [r["recording"] for r in served.fay.audit.read(sid) if r["kind"] == "consent"] == [True]
