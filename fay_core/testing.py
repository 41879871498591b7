"""Test doubles that ship with Fay, for its own tests and for plugin authors' tests.

Fakes stand in only for what cannot run offline (a paid LLM API, an online TTS voice), behind the same
interfaces the real things use:

- :class:`FakeLLM` is a real OpenAI-compatible HTTP server on 127.0.0.1 (``/v1/chat/completions``, streamed as
  server-sent events, tool calls included). Point litellm at it with ``model="openai/fake"`` and
  ``api_base=fake.url``, so tests exercise the real client path. It also plays a vision model: the images of
  litellm's image messages (``image_url`` parts with ``data:`` URLs) are kept, and described by their size.
- :class:`SpeechServer` is a real OpenAI-compatible speech server on 127.0.0.1 (``/v1/audio/transcriptions``,
  ``/v1/audio/speech``) backed by the local engines handed to it (faster-whisper, piper): the ``remote`` speech
  engines reach it through litellm's audio client.
- :class:`fay_core.testing_postgres.Postgres` starts a throw-away PostgreSQL cluster on 127.0.0.1.
- :func:`test_settings` builds settings isolated from the developer's ``.env``, ``fay.yaml`` and data folder.
- :class:`Recorder` keeps every event of a session's bus, to assert on and to wait for.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

from aiohttp import web

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from .bus import Bus
from .events import Event
from .settings import Settings
from .text import is_han


@dataclass
class Reply:
    """One scripted LLM reply: text (streamed in ``chunks`` if given), tool calls, or an HTTP error."""

    text: str = ""
    chunks: list[str] | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # [{"name": ..., "arguments": {...}}]
    status: int = 200
    error: str = "fake failure"
    first_token_delay: float | None = None


class _LoopbackServer:
    """An aiohttp server on 127.0.0.1 for tests, on a free port: :meth:`_app` gives its routes."""

    port = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The ``api_base`` to give litellm."""
        return f"http://127.0.0.1:{self.port}/v1"

    def _app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> Self:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class FakeLLM(_LoopbackServer):
    """An OpenAI-compatible chat-completions server for tests.

    Replies come from :meth:`enqueue` in order, else from ``responder(request_body)``, else the default: for a
    last user message with an image, ``"I see a picture, <width> by <height> pixels."`` (read from the JPEG's
    header), else the echo ``"You said: <last user message>"``. Every request body is kept in :attr:`requests`,
    the bytes of every image received (``image_url`` parts with a ``data:`` URL) in :attr:`images`.
    """

    model = "openai/fake"

    def __init__(
        self,
        *,
        first_token_delay: float = 0.0,
        chunk_delay: float = 0.0,
        responder: Callable[[dict[str, Any]], Reply | str] | None = None,
    ) -> None:
        self.first_token_delay = first_token_delay
        self.chunk_delay = chunk_delay
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self.images: list[bytes] = []
        self._queue: deque[Reply] = deque()
        self._ids = itertools.count(1)

    def enqueue(self, *replies: Reply | str) -> None:
        """Script the next replies."""
        self._queue.extend(Reply(r) if isinstance(r, str) else r for r in replies)

    # --- lifecycle --------------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        return app

    @contextmanager
    def in_thread(self) -> Iterator[FakeLLM]:
        """Run the server on its own event loop in a thread (for tests of synchronous code or subprocesses)."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()

        thread = threading.Thread(target=serve, name="fake-llm", daemon=True)
        thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake LLM server did not start")
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()

    # --- the endpoint -----------------------------------------------------------------------------------

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        if self._queue:
            return self._queue.popleft()
        if self.responder is not None:
            r = self.responder(body)
            return Reply(r) if isinstance(r, str) else r
        last_user = next((m.get("content") for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        if isinstance(last_user, list):  # content parts: text and images
            images = [_data_url_bytes(p) for p in last_user if p.get("type") == "image_url"]
            size = jpeg_size(images[-1]) if images and images[-1] else None
            if size is not None:
                return Reply(f"I see a picture, {size[0]} by {size[1]} pixels.")
            last_user = " ".join(p.get("text", "") for p in last_user if p.get("type") == "text")
        return Reply(f"You said: {last_user}")

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        for message in body.get("messages", []):
            content = message.get("content")
            if isinstance(content, list):
                self.images.extend(b for p in content if p.get("type") == "image_url" and (b := _data_url_bytes(p)))
        reply = self._next_reply(body)
        if reply.status != 200:
            return web.json_response({"error": {"message": reply.error, "type": "fake_error"}}, status=reply.status)
        cid = f"chatcmpl-fake{next(self._ids)}"
        model = body.get("model", "fake")
        if not body.get("stream"):
            return web.json_response(self._full(cid, model, reply))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        delay = reply.first_token_delay if reply.first_token_delay is not None else self.first_token_delay
        if delay:
            await asyncio.sleep(delay)
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        pieces = reply.chunks if reply.chunks is not None else _split_words(reply.text)
        first = True
        for piece in pieces:
            delta: dict[str, Any] = {"content": piece}
            if first:
                delta["role"] = "assistant"
                first = False
            await resp.write(chunk(delta))
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        for i, call in enumerate(reply.tool_calls):
            await resp.write(
                chunk(
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "index": i,
                                "id": call.get("id", f"call_{i + 1}"),
                                "type": "function",
                                "function": {"name": call["name"], "arguments": json.dumps(call.get("arguments", {}))},
                            }
                        ],
                    }
                )
            )
        await resp.write(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    @staticmethod
    def _full(cid: str, model: str, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.get("id", f"call_{i + 1}"),
                    "type": "function",
                    "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))},
                }
                for i, c in enumerate(reply.tool_calls)
            ]
        return {
            "id": cid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool_calls else "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }


class SpeechServer(_LoopbackServer):
    """An OpenAI-compatible speech server for tests, backed by real local engines: ``POST /v1/audio/transcriptions``
    (multipart ``file`` WAV, ``model``, ``language``: ``{"text"}``) with ``asr`` and ``POST /v1/audio/speech`` (JSON
    ``model``, ``input``, ``voice``, ``response_format: wav``: a 16-bit WAV) with ``tts``.

    Point the ``remote`` engines at :attr:`url` (``plugins.remote_speech.api_base``), so tests run litellm's real
    audio client path over HTTP. Every request is kept in :attr:`requests` (``{"path", "model", ...}``); set
    :attr:`fail_status` to answer every request with that HTTP error.
    """

    def __init__(self, asr: Any, tts: Any) -> None:
        self.asr = asr
        self.tts = tts
        self.requests: list[dict[str, Any]] = []
        self.fail_status: int | None = None

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_post("/v1/audio/speech", self._speech)
        return app

    def _failure(self) -> web.Response | None:
        if self.fail_status is None:
            return None
        return web.json_response({"error": {"message": "speech server failing (test)", "type": "fake_error"}},
                                 status=self.fail_status)

    async def _transcriptions(self, request: web.Request) -> web.Response:
        import io
        import wave

        from .voice.audio import resample

        form = await request.post()
        upload = form.get("file")
        entry: dict[str, Any] = {"path": request.path, "model": form.get("model"), "language": form.get("language")}
        self.requests.append(entry)
        if (failed := self._failure()) is not None:
            return failed
        if not isinstance(upload, web.FileField):
            return web.json_response({"error": {"message": "'file' is required"}}, status=400)
        try:
            with wave.open(io.BytesIO(upload.file.read()), "rb") as w:
                rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
                pcm = w.readframes(w.getnframes())
        except wave.Error as exc:
            return web.json_response({"error": {"message": f"not a WAV file: {exc}"}}, status=400)
        if width != 2 or channels != 1:
            return web.json_response({"error": {"message": "16-bit mono WAV only"}}, status=400)
        entry["seconds"] = len(pcm) / 2 / rate
        language = form.get("language")
        result = await self.asr.transcribe(resample(pcm, rate, 16000) if rate != 16000 else pcm, 16000,
                                           language=str(language) if language else None)
        return web.json_response({"text": result.text})

    async def _speech(self, request: web.Request) -> web.Response:
        import io
        import wave

        body = await request.json()
        self.requests.append({"path": request.path, **body})
        if (failed := self._failure()) is not None:
            return failed
        if body.get("response_format", "mp3") != "wav" or not str(body.get("input", "")).strip():
            return web.json_response({"error": {"message": "this server speaks response_format 'wav' only, and "
                                                "needs an 'input'"}}, status=400)
        pcm, rate = b"", 0
        async for chunk in self.tts.synthesize(str(body["input"]), rate=float(body.get("speed") or 1.0)):
            pcm, rate = pcm + chunk.pcm, chunk.sample_rate
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate or 22050)
            w.writeframes(pcm)
        return web.Response(body=out.getvalue(), content_type="audio/wav")


def _data_url_bytes(part: dict[str, Any]) -> bytes:
    """The bytes of an ``image_url`` content part's ``data:...;base64,`` URL (empty for any other URL)."""
    image = part.get("image_url")
    url = image.get("url", "") if isinstance(image, dict) else str(image or "")
    head, _, data = url.partition(",")
    if not (head.startswith("data:") and head.endswith(";base64")):
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        return b""


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a JPEG's start-of-frame marker, or ``None`` if ``data`` is not a JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):  # baseline, extended, progressive
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    return None


def _split_words(text: str) -> list[str]:
    """Stream text a word at a time, as LLMs roughly do (whitespace kept with the word before it)."""
    out: list[str] = []
    word = ""
    for ch in text:
        word += ch
        if ch.isspace() or is_han(ch):
            out.append(word)
            word = ""
    if word:
        out.append(word)
    return out


def test_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: no ``.env`` or ``fay.yaml`` of the developer, data under ``data_dir``."""

    class _Isolated(Settings):
        model_config = {**Settings.model_config, "env_file": None}

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    # tests never reach the network: voice.engine 'auto' must not probe for the online voice
    overrides.setdefault("voice", {"tts": {"online": "never"}})
    return _Isolated(data_dir=data_dir, **overrides)


test_settings.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fay_env(workdir: Path, **extra: str) -> dict[str, str]:
    """The environment for a ``fay`` process of a test: no ``FAY_*`` setting of the developer's, no ``fay.yaml``,
    data under ``workdir / "data"``, ``HOME`` at ``workdir``; then ``extra`` (``FAY_LLM__MODEL=...``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAY_")}
    env.update(FAY_DATA_DIR=str(workdir / "data"), HOME=str(workdir), FAY_CONFIG="/nonexistent", **extra)
    return env


def start_fay_run(workdir: Path, *, env: dict[str, str] | None = None, wait_for: str = "/health",
                  within: float = 90.0) -> tuple[subprocess.Popen[str], str]:
    """``fay run`` on a free port of 127.0.0.1 in ``workdir`` (with :func:`fay_env` unless ``env`` is given), once
    ``wait_for`` answers; the process (stderr piped, for a failure's message) and its base URL. The caller stops
    it. Raises :class:`RuntimeError` with the server's stderr if it exits, or after ``within`` seconds."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fay_core", "run", "--port", str(port)],
                            env=env if env is not None else fay_env(workdir), cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(f"{base}{wait_for}", timeout=2):
                return proc, base
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"fay run exited with {proc.returncode}: "
                                   f"{proc.stderr.read() if proc.stderr else ''}") from None
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait(10)
                raise RuntimeError(f"fay run did not answer {wait_for} in {within:.0f} s") from None
            time.sleep(0.2)


E = TypeVar("E", bound=Event)


class Recorder:
    """Every event published on ``bus`` from now on (of ``types``, or all), in order, with waits for the next one.

    ::

        rec = Recorder(session.bus)
        session.submit("Hello?")
        finished = await rec.wait(AgentTurnFinished)
        assert not rec.of(ErrorRaised)
    """

    def __init__(self, bus: Bus, *types: type[Event]) -> None:
        self.events: list[Event] = []
        self._waiters: list[tuple[type[Event], Callable[[Any], bool], asyncio.Future[Event]]] = []
        bus.subscribe(self._on, *types, name="testing.recorder", drop_stale=False)

    def _on(self, event: Event) -> None:
        self.events.append(event)
        for etype, pred, fut in list(self._waiters):
            if isinstance(event, etype) and not fut.done() and pred(event):
                fut.set_result(event)
                self._waiters.remove((etype, pred, fut))

    def of(self, etype: type[E]) -> list[E]:
        """The recorded events of type ``etype``."""
        return [e for e in self.events if isinstance(e, etype)]

    async def wait(self, etype: type[E], pred: Callable[[E], bool] = lambda e: True, within: float = 30.0) -> E:
        """The first event of type ``etype`` (already recorded or still to come) for which ``pred`` holds.

        Raises :class:`TimeoutError` after ``within`` seconds.
        """
        for event in self.events:
            if isinstance(event, etype) and pred(event):
                return event
        fut: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._waiters.append((etype, pred, fut))
        try:
            event = await asyncio.wait_for(fut, within)
        finally:
            entry = (etype, pred, fut)
            if entry in self._waiters:
                self._waiters.remove(entry)
        assert isinstance(event, etype)
        return event
