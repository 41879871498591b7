"""Built-in plugin: a Mandarin voice made of recorded syllables (``voice.engine: gcin``; ``auto`` for Chinese).

It speaks with the recordings of Debian's ``gcin-voice`` package (``make system-deps``): every Mandarin syllable
in each of its tones, 1200 short recordings of one male speaker (the package's ``3.ogg`` set, GPL-3 or LGPL-3,
Edward Der-Hua Liu). A sentence is read by pypinyin (zhuyin, with its phrase dictionary for 多音字 and the tone
sandhi of 一, 不 and third tones). The syllables of each of jieba's words are joined as connected speech (each
recording trimmed of its quiet tail and crossfaded into the next), with short pauses between words.
There is no model to run: a clause is ready in a few milliseconds, and each clause (cut at its punctuation) is
yielded as its own chunk with the exact time of each character, for the avatar's mouth.

It sounds like what it is, recorded syllables strung together, but each syllable is a person's: whisper base
transcribes the ten bank sentences of ``bench/voice_zh.py`` back at a character error rate of 0.08 and ten more at
0.10 (with silences inside words, as before issue 16: 0.12 and 0.08; the kokoro voice with its Japanese voice
vector: 0.16 and 0.20; espeak: 0.77). Most of what whisper gets wrong are homophones (账 → 仗, 密码 → 秘马): the
sounds are right, but a word said in citation tones gives its language model less to go on than speech does. Latin
letters are spelled with their Chinese names. See README.md beside this file for what else was looked at.

The recordings are decoded once (a few seconds) into one 24 kHz array that is cached in
``~/.cache/fay/gcin`` (``plugins.gcin.cache_dir``). The packaged recordings are checked against the sha256 of
gcin-voice ``0~20170223-3``; ``plugins.gcin.voice_dir`` takes any folder in the same layout (one folder per
syllable, named by its zhuyin and tone digit, each with ``<voice>.ogg`` or ``.wav``), used as it is.

If its packages or files are missing it logs a warning naming what to install and raises ``EngineUnavailable``:
the voice chain then goes on (kokoro, then espeak).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fay_core import hookimpl
from fay_core.engines import AudioChunk
from fay_core.errors import EngineError, EngineUnavailable
from fay_core.events import WordTiming
from fay_core.hookspecs import RegisterEngine, RegisterSettings
from fay_core.voice.audio import resample

from .syllables import Reader, Token, clauses, fallbacks, pause_after

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000
PACKAGED_DIR = Path("/usr/share/gcin-voice/ogg")
PACKAGED_VERSION = "0~20170223-3"
#: sha256 over each syllable folder's name and its 3.ogg, in sorted order (gcin-voice 0~20170223-3)
PACKAGED_SHA256 = {"3": "379a8af1d05d845ece566149f8b2039c2355707c3998c9ef5b3938978a9d18c1"}
PACKAGED_VOICE = "3"
#: the modules it needs, and the distribution that brings each one
NEEDS = {"soundfile": "soundfile", "pypinyin": "pypinyin", "jieba": "jieba"}
#: bumped when the decoded cache's processing changes
_CACHE_FORMAT = 1
_FADE_IN_S, _FADE_OUT_S = 0.0025, 0.01


class GcinSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    voice_dir: Path | None = Field(
        None, description="folder of syllable recordings in gcin-voice's layout (ㄅㄢ4/<voice>.ogg); default: "
        "the Debian package's /usr/share/gcin-voice/ogg (apt-get install gcin-voice)"
    )
    voice: str = Field(PACKAGED_VOICE, description="the recording set: the file name in each syllable folder "
                       "(gcin-voice has 3, clear, and 5, whisper understands it much less: CER 0.45)")
    join_ms: float = Field(20, ge=0, le=100, description="the syllables of a word run into each other: each "
                           "overlaps the one before by this much, crossfaded (connected speech); 0: they are "
                           "separated by syllable_gap_ms of silence instead, as before")
    trim_db: float = Field(30, ge=0, le=80, description="before joining, each recording's quiet head and tail are "
                           "cut where its 10 ms energy stays this many dB below its loudest (0: not trimmed)")
    syllable_gap_ms: float = Field(40, ge=0, le=500, description="silence between the syllables of a word, when "
                                   "join_ms is 0")
    word_gap_ms: float = Field(100, ge=0, le=1000, description="silence between words (jieba's)")
    cache_dir: Path | None = Field(None, description="where the decoded recordings are kept; default "
                                   "$XDG_CACHE_HOME/fay/gcin (~/.cache/fay/gcin)")


class Syllables:
    """One voice's recordings, decoded at 24 kHz into one int16 array, by gcin-voice key (``ㄅㄢ4``)."""

    def __init__(self, pcm: np.ndarray, index: dict[str, tuple[int, int]]) -> None:
        self.pcm = pcm
        self.index = index

    def get(self, key: str) -> np.ndarray | None:
        """The recording of ``key``, else of the same syllable in its nearest tone, else ``None``."""
        for k in fallbacks(key):
            span = self.index.get(k)
            if span is not None:
                return self.pcm[span[0] : span[1]]
        return None

    @classmethod
    def load(cls, folder: Path, voice: str, cache_dir: Path, expect_sha256: str | None) -> Syllables:
        """Read ``folder``'s recordings of ``voice`` (checked against ``expect_sha256`` when given), from the
        decoded cache when it has them, else decoding them (and caching the result)."""
        files = sorted((d.name, p) for d in folder.iterdir() for p in (d / f"{voice}.ogg", d / f"{voice}.wav")
                       if p.is_file())
        if not files:
            raise EngineUnavailable(f"no recordings named {voice}.ogg or {voice}.wav in the syllable folders of "
                                    f"{folder}")
        sha = hashlib.sha256()
        blobs = []
        for name, path in files:
            blob = path.read_bytes()
            sha.update(name.encode())
            sha.update(blob)
            blobs.append(blob)
        digest = sha.hexdigest()
        if expect_sha256 is not None and digest != expect_sha256:
            raise EngineUnavailable(
                f"the recordings in {folder} are not those of gcin-voice {PACKAGED_VERSION} (sha256 {digest[:12]}…): "
                "apt-get install --reinstall gcin-voice, or set plugins.gcin.voice_dir to that folder to use them "
                "as they are")
        cached = cache_dir / f"{digest[:24]}-{voice}-v{_CACHE_FORMAT}.npz"
        if cached.is_file():
            try:
                with np.load(cached) as npz:
                    keys, bounds = [str(k) for k in npz["keys"]], npz["bounds"]
                    return cls(npz["pcm"], {k: (int(a), int(b)) for k, (a, b) in zip(keys, bounds, strict=True)})
            except (OSError, ValueError, KeyError) as exc:
                log.warning("gcin: the decoded cache %s is unreadable (%s): decoding again", cached, exc)
        units = cls._decode([name for name, _ in files], blobs)
        _save(units, cached)
        return units

    @classmethod
    def _decode(cls, keys: list[str], blobs: list[bytes]) -> Syllables:
        import soundfile as sf

        parts: list[np.ndarray] = []
        rate = 0
        for blob in blobs:
            x, sr = sf.read(io.BytesIO(blob), dtype="float32", always_2d=True)
            if rate and sr != rate:
                raise EngineUnavailable(f"the syllable recordings mix sample rates ({rate} and {sr} Hz)")
            rate = sr
            parts.append(x.mean(axis=1))
        # one resampling pass over all of them (each padded with silence so that none bleeds into the next)
        pad = np.zeros(rate // 50, np.float32)
        joined = np.concatenate([q for p in parts for q in (p, pad)])
        pcm16 = (np.clip(joined, -1.0, 1.0) * 32767).astype(np.int16)
        out = np.frombuffer(resample(pcm16.tobytes(), rate, SAMPLE_RATE), np.int16).astype(np.float32)
        index: dict[str, tuple[int, int]] = {}
        pieces: list[np.ndarray] = []
        at_src = at_out = 0
        fade_in, fade_out = int(_FADE_IN_S * SAMPLE_RATE), int(_FADE_OUT_S * SAMPLE_RATE)
        for key, p in zip(keys, parts, strict=True):
            a = round(at_src * SAMPLE_RATE / rate)
            b = round((at_src + len(p)) * SAMPLE_RATE / rate)
            unit = out[a:b].copy()
            if len(unit) > fade_in + fade_out:
                unit[:fade_in] *= np.linspace(0, 1, fade_in)
                unit[-fade_out:] *= np.linspace(1, 0, fade_out)
            index[key] = (at_out, at_out + len(unit))
            pieces.append(unit)
            at_out += len(unit)
            at_src += len(p) + len(pad)
        return cls(np.concatenate(pieces).astype(np.int16), index)


def _save(units: Syllables, path: Path) -> None:
    keys = list(units.index)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, pcm=units.pcm, keys=np.array(keys), bounds=np.array([units.index[k] for k in keys]))
        tmp.replace(path)
    except OSError as exc:  # a read-only home: decode again next time
        log.info("gcin: cannot keep the decoded recordings in %s: %s", path.parent, exc)


_LOADED: dict[tuple[Path, str], Syllables] = {}  # one copy of each voice per process
_LOAD_LOCK = threading.Lock()


class GcinTTS:
    """Mandarin from recorded syllables, loaded on first use and shared by all sessions.

    Creating one raises :class:`~fay_core.errors.EngineUnavailable` (and logs a warning naming what to install)
    when its packages or recordings are missing, so that the voice chain goes on to the next engine.
    """

    name = "gcin"

    def __init__(self, settings: GcinSettings | None = None) -> None:
        self.settings = settings or GcinSettings()
        missing = [dist for mod, dist in NEEDS.items() if find_spec(mod) is None]
        folder = self.folder
        problem = None
        if missing:
            problem = f"the gcin Mandarin voice needs {', '.join(missing)}: pip install 'fay[offline]'"
        elif not folder.is_dir():
            problem = (f"plugins.gcin.voice_dir {folder} does not exist" if self.settings.voice_dir is not None
                       else f"the gcin Mandarin voice needs the Debian package gcin-voice ({folder} is missing): "
                       "apt-get install gcin-voice (make system-deps)")
        if problem:
            log.warning("TTS engine gcin cannot run here: %s", problem)
            raise EngineUnavailable(problem)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fay-gcin")
        self._reader: Reader | None = None
        self.chunks_spoken = 0  # for tests and metrics

    @property
    def folder(self) -> Path:
        return self.settings.voice_dir or PACKAGED_DIR

    def accepts_voice(self, voice: str) -> bool:
        """The recording sets of its folder (``3``, ``5`` in gcin-voice)."""
        return voice.isalnum() and any((self.folder / "ㄅㄚ" / f"{voice}{ext}").is_file() for ext in (".ogg", ".wav"))

    def load(self, voice: str | None = None) -> Syllables:
        """The decoded recordings of ``voice`` (blocking; cached per folder and voice)."""
        name = voice or self.settings.voice
        key = (self.folder, name)
        with _LOAD_LOCK:
            units = _LOADED.get(key)
            if units is None:
                expect = PACKAGED_SHA256.get(name) if self.settings.voice_dir is None else None
                cache = self.settings.cache_dir or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                cache = cache if self.settings.cache_dir else cache / "fay" / "gcin"
                units = _LOADED[key] = Syllables.load(self.folder, name, cache, expect)
                log.info("gcin: loaded %d syllables of voice %s from %s", len(units.index), name, self.folder)
            if self._reader is None:
                self._reader = Reader()
                self._reader("您好")  # jieba's and pypinyin's dictionaries
            return units

    async def warm_up(self, voice: str | None = None) -> None:
        """Decode (or read from the cache) the recordings and load the dictionaries."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self.load, voice)

    async def synthesize(
        self, text: str, *, voice: str | None = None, language: str = "zh", rate: float = 1.0
    ) -> AsyncIterator[AudioChunk]:
        """Speak ``text`` (one sentence) clause by clause, each clause one chunk with its characters' times."""
        if language != "zh":
            raise EngineError(f"the gcin engine speaks Mandarin only (asked for {language!r})")
        units = _LOADED.get((self.folder, voice or self.settings.voice))
        if units is None or self._reader is None:
            units = await asyncio.get_running_loop().run_in_executor(self._pool, self.load, voice)
        assert self._reader is not None
        for clause in clauses(text):
            pcm, words = self._render(units, self._reader(clause), clause, rate or 1.0)
            if pcm:
                self.chunks_spoken += 1
                yield AudioChunk(pcm, SAMPLE_RATE, words, clause)

    def _render(self, units: Syllables, tokens: list[Token], clause: str, rate: float
                ) -> tuple[bytes, tuple[WordTiming, ...]]:
        """One clause's PCM and its characters' times.

        Within a word (jieba's) the syllables are joined as connected speech: each recording is trimmed of its
        quiet head and tail (``trim_db``) and overlaps the one before by ``join_ms``, crossfaded, so that whisper
        (and a listener) hears one word rather than syllables said one by one; the boundary between two joined
        characters is the middle of their crossfade. Between words ``word_gap_ms`` of silence, after the clause
        its punctuation's pause; ``rate`` scales those silences. ``join_ms: 0`` is the old voice: silences of
        ``syllable_gap_ms`` inside words, recordings untrimmed.
        """
        s = self.settings
        gap = int(s.syllable_gap_ms / 1000 / rate * SAMPLE_RATE)
        word_gap = int(s.word_gap_ms / 1000 / rate * SAMPLE_RATE)
        join = int(s.join_ms / 1000 * SAMPLE_RATE)
        spoken = [(t, snd) for t in tokens if (snd := [u for u in map(units.get, t.units) if u is not None])]
        if not spoken:
            return b"", ()
        total = sum(len(u) + max(gap, word_gap) for _, snd in spoken for u in snd)
        out = np.zeros(total + int(pause_after(clause) / rate * SAMPLE_RATE), np.float32)
        words: list[WordTiming] = []
        at = 0  # where the next syllable would start with no overlap
        joined = False  # whether the next syllable runs into the one before (same word)
        prev_len = 0
        for token, sounds in spoken:
            start = end = at
            for i, unit in enumerate(sounds):
                x = unit.astype(np.float32)
                if join:
                    x = _trim(x, s.trim_db) if s.trim_db else x
                if joined and join:
                    o = min(join, len(x) // 3, prev_len // 3)
                    ramp = np.linspace(0.0, 1.0, o, dtype=np.float32)
                    out[at - o : at] *= 1.0 - ramp
                    x[:o] *= ramp
                    at -= o
                    if not i:  # the character before ends, this one starts, in the middle of the crossfade
                        start = at + o // 2
                        words[-1] = WordTiming(words[-1].word, words[-1].start_ms, _ms(start))
                elif at:
                    at += gap if joined else word_gap
                    start = start if i else at
                out[at : at + len(x)] += x
                at += len(x)
                end = at
                prev_len, joined = len(x), True
            words.append(WordTiming(token.text, _ms(start), _ms(end)))
            joined = not token.word_end
        end = at + int(pause_after(clause) / rate * SAMPLE_RATE)
        return np.clip(out[:end], -32768, 32767).astype(np.int16).tobytes(), tuple(words)


def _trim(x: np.ndarray, db: float) -> np.ndarray:
    """``x`` (float32, modified) without its head and tail of 10 ms frames ``db`` below its loudest frame,
    faded in over 2.5 ms and out over 10 ms so that the cut does not click."""
    frame = SAMPLE_RATE // 100
    n = len(x) // frame
    if n < 3:
        return x
    energy = np.sqrt((x[: n * frame].reshape(n, frame) ** 2).mean(axis=1))
    loud = np.nonzero(energy > energy.max() * 10 ** (-db / 20))[0]
    y = x[loud[0] * frame : (loud[-1] + 1) * frame]
    fade_in, fade_out = min(int(_FADE_IN_S * SAMPLE_RATE), len(y) // 4), min(frame, len(y) // 4)
    y[:fade_in] *= np.linspace(0, 1, fade_in)
    y[len(y) - fade_out :] *= np.linspace(1, 0, fade_out)
    return y


def _ms(samples: int) -> float:
    return round(samples * 1000 / SAMPLE_RATE, 1)


@hookimpl
def register_settings(register: RegisterSettings) -> None:
    register("gcin", GcinSettings)


@hookimpl
def register_tts_engines(register: RegisterEngine) -> None:
    # above kokoro (40) and espeak (0), below piper (50, English only) and edge (online, 100)
    register("gcin", GcinTTS, settings="gcin", languages=("zh",), priority=45)


__all__ = ["GcinSettings", "GcinTTS", "Syllables"]
