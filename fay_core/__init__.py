"""Fay: an asyncio framework for conversational avatars.

The public surface is re-exported here; plugin authors need :data:`hookimpl`, the events and the engine
protocols.
"""

from .bus import Bus, Subscription
from .engines import ASREngine, AudioChunk, AvatarRenderer, Embedder, RendererInfo, Transcript, TTSEngine, VADEngine
from .errors import (
    ConfigError,
    EngineError,
    EngineUnavailable,
    FayError,
    KnowledgeError,
    PersonaError,
    PluginError,
    SessionError,
)
from .hookspecs import hookimpl
from .persona import Persona, load_persona
from .settings import Settings, load_settings

__all__ = [
    "ASREngine",
    "AudioChunk",
    "AvatarRenderer",
    "Bus",
    "ConfigError",
    "Embedder",
    "EngineError",
    "EngineUnavailable",
    "FayError",
    "KnowledgeError",
    "Persona",
    "PersonaError",
    "PluginError",
    "RendererInfo",
    "SessionError",
    "Settings",
    "Subscription",
    "TTSEngine",
    "Transcript",
    "VADEngine",
    "hookimpl",
    "load_persona",
    "load_settings",
]
