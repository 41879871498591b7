"""Fay: an asyncio framework for conversational avatars.

The public surface is re-exported here; plugin authors need :data:`hookimpl`, the events and the engine
protocols.
"""

from .bus import Bus, Subscription
from .engines import ASREngine, AudioChunk, AvatarRenderer, Embedder, RendererInfo, Transcript, TTSEngine, VADEngine
from .errors import (
    AuditUnavailable,
    BodyTooLarge,
    ClosedSession,
    ConfigError,
    EngineError,
    EngineUnavailable,
    FayError,
    InvalidBody,
    InvalidMessage,
    InvalidOffer,
    InvalidPersonaId,
    InvalidRequest,
    KnowledgeError,
    MessageTooLong,
    OfferError,
    OfferTooLarge,
    PeerLimit,
    PersonaError,
    PluginError,
    SessionError,
    SessionForbidden,
    SessionLimit,
    TooManyOffers,
    UnknownPersona,
    UnknownSession,
    UnsupportedCharset,
)
from .hookspecs import hookimpl
from .persona import Persona, load_persona
from .settings import Settings, load_settings

__all__ = [
    "ASREngine",
    "AudioChunk",
    "AuditUnavailable",
    "AvatarRenderer",
    "BodyTooLarge",
    "Bus",
    "ClosedSession",
    "ConfigError",
    "Embedder",
    "EngineError",
    "EngineUnavailable",
    "FayError",
    "InvalidBody",
    "InvalidMessage",
    "InvalidOffer",
    "InvalidPersonaId",
    "InvalidRequest",
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
    "SessionForbidden",
    "SessionLimit",
    "Settings",
    "Subscription",
    "TTSEngine",
    "TooManyOffers",
    "Transcript",
    "UnknownPersona",
    "UnknownSession",
    "UnsupportedCharset",
    "VADEngine",
    "hookimpl",
    "load_persona",
    "load_settings",
]
