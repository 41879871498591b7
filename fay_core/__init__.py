"""Fay: an asyncio framework for conversational avatars.

The public surface is re-exported here; plugin authors need :data:`hookimpl`, the events and the engine
protocols.
"""

from .bus import Bus, Subscription
from .engines import ASREngine, AudioChunk, AvatarRenderer, Embedder, RendererInfo, Transcript, TTSEngine, VADEngine
from .errors import (
    ClosedSession,
    ConfigError,
    EngineError,
    EngineUnavailable,
    FayError,
    InvalidMessage,
    InvalidOffer,
    KnowledgeError,
    MessageTooLong,
    OfferError,
    OfferTooLarge,
    PeerLimit,
    PersonaError,
    PluginError,
    SessionError,
    SessionLimit,
    TooManyOffers,
    UnknownPersona,
    UnknownSession,
)
from .hookspecs import hookimpl
from .persona import Persona, load_persona
from .settings import Settings, load_settings

__all__ = [
    "ASREngine",
    "AudioChunk",
    "AvatarRenderer",
    "Bus",
    "ClosedSession",
    "ConfigError",
    "Embedder",
    "EngineError",
    "EngineUnavailable",
    "FayError",
    "InvalidMessage",
    "InvalidOffer",
    "KnowledgeError",
    "MessageTooLong",
    "OfferError",
    "OfferTooLarge",
    "PeerLimit",
    "Persona",
    "PersonaError",
    "PluginError",
    "RendererInfo",
    "SessionError",
    "SessionLimit",
    "TooManyOffers",
    "Settings",
    "Subscription",
    "TTSEngine",
    "Transcript",
    "UnknownPersona",
    "UnknownSession",
    "VADEngine",
    "hookimpl",
    "load_persona",
    "load_settings",
]
