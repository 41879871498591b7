"""Shared speech engines: a voice turn transcribed and spoken by a speech server over real HTTP (litellm's
``atranscription`` and ``aspeech``), and what a dead server costs (a clear error, the local fallbacks take over).

The server is :class:`fay_core.testing.SpeechServer` backed by the real local engines (faster-whisper's packaged
base model, piper's joe voice); the session reaches it only through the ``remote`` engines' HTTP calls.
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import fay_remote_speech
from fay_core.app import Fay
from fay_core.errors import EngineError, EngineUnavailable
from fay_core.events import AvatarStoppedSpeaking, ErrorRaised, TranscriptFinal
from fay_core.plugins import Plugins
from fay_core.settings import Settings
from fay_core.testing import Recorder, SpeechServer, test_settings
from fay_core.voice.audio import load_audio, resample, silence, stream_pcm
from fay_piper import PiperTTS
from fay_remote_speech import RemoteASR, RemoteSpeechSettings, RemoteTTS
from fay_whisper import WhisperASR, WhisperSettings

PERSONA = """
name: Vera
language: en
voice: {engine: remote, fallback: [piper, espeak]}
system_prompt: You are Vera, a bank teller.
"""
CLIP = "sense_and_sensibility_01_austen_64kb-0880.wav"  # "he was not an ill disposed young man ..."

#: the module's async tests share the speech server's event loop
shared = pytest.mark.asyncio(loop_scope="module")


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # closed again: connecting is refused


@pytest.fixture(scope="module")
def whisper() -> WhisperASR:
    return WhisperASR(WhisperSettings(download=False))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(whisper: WhisperASR) -> AsyncIterator[SpeechServer]:
    tts = PiperTTS()
    await whisper.warm_up()  # the server's models are loaded before the first request (a real server's are)
    await tts.warm_up()
    async with SpeechServer(whisper, tts) as s:
        yield s


def _settings(tmp_path: Path, api_base: str, **asr: Any) -> Settings:
    folder = tmp_path / "personas"
    folder.mkdir()
    (folder / "vera.yaml").write_text(PERSONA, encoding="utf-8")
    return test_settings(tmp_path / "data", personas_dir=folder, default_persona="vera",
                         voice={"tts": {"online": "never"}, "asr": {"engine": "remote", **asr}},
                         plugins={"remote_speech": {"api_base": api_base, "timeout_s": 30}})


def _plugins(settings: Settings) -> Plugins:
    """The installed plugins, plus ``fay_remote_speech`` where its entry point is not installed yet."""
    plugins = Plugins(settings).load()
    if plugins.pm.get_plugin("remote_speech") is None:
        plugins.register(fay_remote_speech, "remote_speech")
    return plugins


class Heard(Recorder):
    """A session's events, and the audio of its first turn that left the playout clock (``audio``)."""

    audio = b""


async def _voice_turn(fay: Fay, shared_data: Path) -> tuple[Any, Heard, TranscriptFinal]:
    session = await fay.create_session("vera")
    voice = await fay.assembly.add_voice(session)
    rec = Heard(session.bus)
    frames: list[bytes] = []
    voice.playout.add_listener(lambda pcm, pts, turn: frames.append(pcm) if turn == 1 and any(pcm) else None)
    await stream_pcm(session.bus, silence(300) + load_audio(shared_data / "speech_en" / CLIP) + silence(1600))
    final = await rec.wait(TranscriptFinal, within=60)
    await rec.wait(AvatarStoppedSpeaking, within=60)
    await session.bus.idle()
    rec.audio = b"".join(frames)
    return session, rec, final


@shared
async def test_a_voice_turn_is_transcribed_and_spoken_by_the_speech_server(
    server: SpeechServer, whisper: WhisperASR, tmp_path: Path, shared_data: Path
) -> None:
    settings = _settings(tmp_path, server.url)
    server.requests.clear()
    async with Fay(settings, _plugins(settings)) as fay:
        session, rec, final = await _voice_turn(fay, shared_data)
        assert isinstance(session.voice.asr, RemoteASR)
        ref, hyp = words("he was not an ill disposed young man"), words(final.text)
        assert hyp[:4] == ref[:4] and hyp[-2:] == ref[-2:], final.text
        used = session.voice.speaker.used
        assert used and set(used) == {"remote"}, used  # the disclosure and the answer, all by the server
        assert not [e for e in rec.of(ErrorRaised) if e.source.startswith(("voice", "tts"))]
        answer = set(words(session.history.messages[-1].content))  # offline, no knowledge: it offers a colleague
    transcriptions = [r for r in server.requests if r["path"] == "/v1/audio/transcriptions"]
    spoken = [r for r in server.requests if r["path"] == "/v1/audio/speech"]
    assert transcriptions and all(r["model"] == "whisper-1" and r["language"] == "en" for r in transcriptions)
    assert any(r["seconds"] > 2 for r in transcriptions)  # the whole utterance went over the wire
    assert spoken and all(r["model"] == "tts-1" and r["response_format"] == "wav" for r in spoken)
    said = " ".join(r["input"] for r in spoken)
    assert "AI" in said  # the disclosure went through the server too
    # what left the playout clock is the server's voice saying the disclosure and the answer
    heard = set(words((await whisper.transcribe(resample(rec.audio, 48000, 16000), 16000, language="en")).text))
    assert len(answer & heard) >= 0.6 * len(answer), (answer, heard)


@shared
async def test_a_dead_speech_server_is_a_clear_error_and_the_fallbacks_take_over(
    tmp_path: Path, shared_data: Path
) -> None:
    dead = _refused_url()
    settings = _settings(tmp_path, dead, fallback=["whisper"])
    async with Fay(settings, _plugins(settings)) as fay:
        session, rec, final = await _voice_turn(fay, shared_data)
        hyp = words(final.text)
        assert hyp[:4] == words("he was not an ill")[:4], final.text  # whisper, here, heard it
        asr_errors = [e for e in rec.of(ErrorRaised) if e.source == "voice.asr.remote"]
        assert asr_errors and f"the speech server {dead} could not transcribe" in asr_errors[0].message
        tts_errors = [e for e in rec.of(ErrorRaised) if e.source == "tts.remote"]
        assert tts_errors and f"the speech server {dead} could not speak" in tts_errors[0].message
        used = session.voice.speaker.used
        assert used and "remote" not in used and used[0] == "piper", used  # the persona's fallback chain spoke
        assert len(rec.audio) > 48000 * 2  # more than a second of speech went out all the same
        # the failed engine rests: the next utterances go straight to the fallback (one error, not one each)
        assert session.voice._asr_resting_until > 0


@shared
async def test_a_failing_server_and_no_server_set(server: SpeechServer) -> None:
    server.fail_status = 503
    try:
        with pytest.raises(EngineError, match=f"the speech server {server.url} could not transcribe"):
            await RemoteASR(RemoteSpeechSettings(api_base=server.url)).transcribe(b"\0\0" * 16000, 16000)
        with pytest.raises(EngineError, match="could not speak"):
            async for _ in RemoteTTS(RemoteSpeechSettings(api_base=server.url)).synthesize("Hello."):
                pass
    finally:
        server.fail_status = None
    with pytest.raises(EngineUnavailable, match="plugins.remote_speech.api_base"):
        RemoteASR(RemoteSpeechSettings())


def test_without_a_server_auto_keeps_the_local_engines(tmp_path: Path) -> None:
    settings = test_settings(tmp_path / "data")
    plugins = _plugins(settings)
    assert "remote" in plugins.names("asr") and "remote" in plugins.names("tts")
    assert plugins.pick("asr", "auto", "en").name == "whisper"  # remote is unavailable without api_base
