"""Fay's exceptions: one tree, each message naming the object at fault and what to do.

::

    FayError
     ├── ConfigError        settings (env, .env, fay.yaml) are invalid
     ├── PersonaError       a persona file is missing, malformed or invalid (file, line, field)
     ├── PluginError        a plugin failed to import, register or configure
     ├── EngineError        an engine (LLM, ASR, TTS, VAD, renderer, embedder) failed at run time
     │    └── EngineUnavailable   the engine cannot run here (missing extra, model, or network)
     ├── KnowledgeError     the knowledge base cannot ingest or answer
     └── SessionError       unknown session, too many sessions, or a closed session
"""

from __future__ import annotations


class FayError(Exception):
    """Base of every error Fay raises on purpose."""


class ConfigError(FayError):
    """Settings are invalid; the message names the setting (and its environment variable)."""


class PersonaError(FayError):
    """A persona cannot be loaded. ``problems`` lists ``(file, line, field, message)`` tuples."""

    def __init__(self, message: str, problems: list[tuple[str, int | None, str, str]] | None = None):
        super().__init__(message)
        self.problems = problems or []


class PluginError(FayError):
    """A plugin failed to import, register or configure; the message names the plugin."""


class EngineError(FayError):
    """An engine failed while running (LLM endpoint down, TTS voice failed, ...)."""


class EngineUnavailable(EngineError):
    """An engine cannot run on this machine; the message says what to install or configure."""


class KnowledgeError(FayError):
    """The knowledge base cannot ingest a file or answer a query."""


class SessionError(FayError):
    """A session is unknown, closed, or refused (too many sessions)."""


def missing_extra(package: str, extra: str) -> EngineUnavailable:
    """The error for an optional dependency that is not installed, with the command that installs it."""
    return EngineUnavailable(f"{package} is not installed: pip install 'fay[{extra}]'")
