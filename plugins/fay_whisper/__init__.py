"""Built-in plugin: speech recognition with faster-whisper (``asr: whisper``).

Settings (``plugins.whisper``, see :class:`fay_core.voice.asr.WhisperSettings`): ``model`` (a name such as
``base`` or ``small``, or a CTranslate2 model directory), ``compute_type``, ``workers`` (the shared pool),
``download``. One model serves every session.
"""

from __future__ import annotations

from fay_core import hookimpl
from fay_core.voice.asr import WhisperASR, WhisperSettings


@hookimpl
def register_settings(register):  # type: ignore[no-untyped-def]
    register("whisper", WhisperSettings)


@hookimpl
def register_asr_engines(register):  # type: ignore[no-untyped-def]
    register("whisper", WhisperASR, settings="whisper")
