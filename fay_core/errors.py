"""Fay's exceptions: one tree, each message naming the object at fault and what to do.

Every error carries the HTTP status the server answers it with (``status``), so the server never reads a
message's text to choose one. ``str(exc)`` is written for people; :attr:`FayError.public` is the part a client
may see (no server paths, no exception reprs)::

    FayError                   500  base of every error Fay raises on purpose
     ├── ConfigError           500  settings (env, .env, fay.yaml) are invalid
     ├── PersonaError          422  a persona file is missing, malformed or invalid (file, line, field)
     │    └── UnknownPersona   404  no persona of that id
     │         └── InvalidPersonaId   404  ... nor can there be: the id is no file name (too long, odd characters)
     ├── EvalSpecError         422  a ``fay eval`` suite is missing, malformed or invalid (file, line, field)
     ├── PluginError           500  a plugin failed to import, register or configure
     ├── EngineError           500  an engine (LLM, ASR, TTS, VAD, renderer, embedder) failed at run time
     │    └── EngineUnavailable   500  the engine cannot run here (missing extra, model, or network)
     ├── KnowledgeError        500  the knowledge base cannot ingest or answer
     ├── SessionError          400  a session refuses a request
     │    ├── UnknownSession   404  no live session of that id
     │    ├── ClosedSession    410  the session has ended: start a new one
     │    │    └── SessionNodeGone  410  ... with the cluster node that served it (it died or restarted)
     │    ├── SessionLimit     503  too many sessions (``Retry-After``)
     │    │    ├── ServerDraining   503  the server is draining (SIGTERM): start the session on another node
     │    │    ├── ClusterFull      503  no node of the cluster has room for a session (or all are draining)
     │    │    └── NodeBusy         503  this node's event loop runs late (``server.max_loop_lag_ms``): no new session
     │    ├── SessionForbidden 403  a signed-in session asked without its secret (or customer token)
     │    ├── AuditUnavailable 503  the audit log cannot be written: nothing is answered unrecorded
     │    ├── RecordingNotOffered  409  consent to record was sent, but the session's persona does not record
     │    ├── UnknownReport    404  no role-play report for that session (not a scenario session, or another tenant's)
     │    ├── UnknownCriterion 404  an override names a criterion the report's rubric does not have
     │    ├── ReportNotScored  409  an override of a report whose scoring failed (it holds the transcript only)
     │    └── InvalidMessage   400  a message to answer is empty
     │         └── MessageTooLong   413  ... or over ``server.max_message_chars``
     ├── OfferError            400  a WebRTC offer the server refuses
     │    ├── InvalidOffer     400  the body or its SDP is malformed
     │    ├── OfferTooLarge    413  the SDP is over ``webrtc.max_sdp_bytes``
     │    ├── TooManyOffers    429  this client has too many offers not yet connected (``Retry-After``)
     │    └── PeerLimit        503  too many WebRTC peers, or peers still connecting (``Retry-After``)
     ├── ClusterUnavailable    503  the cluster's Redis, or a session's live node, cannot be reached now
     ├── TranscriptError       400  a role-play transcript is malformed (turn index and field named)
     ├── ConsoleError          400  the console cannot do this (see :mod:`fay_core.console`)
     │    ├── UnknownJob       404  no such ingest job (of this tenant)
     │    ├── UnknownEntry     404  no such knowledge entry or document in the persona's collection
     │    └── NotEditable      409  the persona has no knowledge folder, or the entry lives in a file Fay did not write
     ├── InvalidRequest        400  an HTTP request the server cannot read (see :mod:`fay_core.http_input`)
     │    ├── InvalidBody      400  not UTF-8, not JSON, too deep, a huge integer, a lone surrogate, not an object
     │    ├── BodyTooLarge     413  over ``server.max_body_bytes``
     │    └── UnsupportedCharset  415  a charset other than UTF-8
     └── AccessError           403  the caller may not do this (see :mod:`fay_core.access`)
          ├── Unauthenticated  401  no API key, or a wrong or revoked one
          ├── MissingScope     403  the key lacks the scope the endpoint needs (chat, admin, ingest)
          ├── RateLimited      429  the key's per-minute limit is reached (``Retry-After``)
          └── KeyStoreUnavailable  503  ``<data_dir>/keys.json`` cannot be read: no key is accepted until it is fixed

A closed session is 410 Gone rather than 409 Conflict: nothing the client can change makes that session answer
again; it must create a new one (while an unknown id is 404: there may never have been one).
"""

from __future__ import annotations

from pathlib import Path


class FayError(Exception):
    """Base of every error Fay raises on purpose; ``status`` is the HTTP status it is answered with."""

    status: int = 500
    #: seconds a client should wait before trying again (sent as ``Retry-After``), for refusals that pass
    retry_after_s: int | None = None

    @property
    def public(self) -> str:
        """The message a client may see: ``str(self)``, unless a subclass holds something for the server's eyes."""
        return str(self)


class ConfigError(FayError):
    """Settings are invalid; the message names the setting (and its environment variable)."""


class PersonaError(FayError):
    """A persona cannot be loaded. ``problems`` lists ``(file, line, field, message)`` tuples."""

    status = 422

    def __init__(self, message: str, problems: list[tuple[str, int | None, str, str]] | None = None):
        super().__init__(message)
        self.problems = problems or []

    @property
    def public(self) -> str:
        """The problems with file names only (the personas folder is the server's business)."""
        if not self.problems:
            return str(self)
        return "\n".join(f"{Path(f).name}:{ln or '?'}: {field}: {msg}" for f, ln, field, msg in self.problems)


class UnknownPersona(PersonaError):
    """No persona has this id; the message lists the known ones."""

    status = 404


class InvalidPersonaId(UnknownPersona):
    """A persona id that cannot name a persona file (too long, or characters other than word characters, ``.``, ``-``).

    Refused before the file system sees it: an over-long name would fail there with an ``OSError``.
    """


class EvalSpecError(FayError):
    """A ``fay eval`` suite cannot be loaded. ``problems`` lists ``(file, line, field, message)`` tuples."""

    status = 422

    def __init__(self, message: str, problems: list[tuple[str, int | None, str, str]] | None = None):
        super().__init__(message)
        self.problems = problems or []

    @property
    def public(self) -> str:
        """The problems with file names only."""
        if not self.problems:
            return str(self)
        return "\n".join(f"{Path(f).name}:{ln or '?'}: {field}: {msg}" for f, ln, field, msg in self.problems)


class PluginError(FayError):
    """A plugin failed to import, register or configure; the message names the plugin."""


class EngineError(FayError):
    """An engine failed while running (LLM endpoint down, TTS voice failed, ...)."""


class EngineUnavailable(EngineError):
    """An engine cannot run on this machine; the message says what to install or configure."""


class KnowledgeError(FayError):
    """The knowledge base cannot ingest a file or answer a query."""


class SessionError(FayError):
    """A session refuses a request: it is unknown, closed, full, or the message is bad."""

    status = 400


class UnknownSession(SessionError):
    """No live session has this id (never created, or closed and forgotten)."""

    status = 404


class ClosedSession(SessionError):
    """The session has ended; a client must create a new one."""

    status = 410


class SessionNodeGone(ClosedSession):
    """The session lived on a cluster node that is gone (no heartbeat within ``cluster.expiry_s``, or it
    restarted): its conversation is lost with it. ``node`` is that node's URL; the client starts a new session,
    which the cluster places on a live node."""

    def __init__(self, message: str, node: str) -> None:
        super().__init__(message)
        self.node = node


class SessionLimit(SessionError):
    """``server.max_sessions`` sessions are live; a new one is refused until one closes."""

    status = 503
    retry_after_s = 10


class ServerDraining(SessionLimit):
    """The server is stopping (SIGTERM): it finishes its open sessions and starts none (``GET /ready`` is 503)."""

    retry_after_s = 5


class ClusterFull(SessionLimit):
    """No live node of the cluster has room for a new session (each is at ``server.max_sessions`` or draining)."""


class NodeBusy(SessionLimit):
    """This node's event loop runs later than ``server.max_loop_lag_ms`` (:mod:`fay_core.load`): it serves its open
    sessions and starts no new one until it catches up (usually seconds)."""

    retry_after_s = 2


class SessionForbidden(SessionError):
    """A session signed in as a customer was asked for without its ``X-Fay-Session-Secret`` (or customer token)."""

    status = 403


class RecordingNotOffered(SessionError):
    """Consent to record was given for a session whose persona does not record (``recording.enabled`` is off)."""

    status = 409


class UnknownReport(SessionError):
    """No role-play report is stored for the session (see :mod:`fay_core.roleplay.reports`)."""

    status = 404


class UnknownCriterion(SessionError):
    """A trainer's override names a criterion the report does not score."""

    status = 404


class ReportNotScored(SessionError):
    """An override of a report whose scoring failed: it holds the transcript and the error, no scores."""

    status = 409


class AuditUnavailable(SessionError):
    """The audit log cannot be written, so the session refuses to answer (what is not on record is not said).

    It is a :class:`SessionError` because the session refuses the message: the HTTP API answers 503, the data
    channel sends an ``error`` message. :attr:`public` leaves out the server's path.
    """

    status = 503
    retry_after_s = 30

    @property
    def public(self) -> str:
        return "the conversation cannot be recorded right now, so it is paused: try again shortly"


class InvalidMessage(SessionError):
    """A message to answer is not acceptable (empty)."""

    status = 400


class MessageTooLong(InvalidMessage):
    """A message to answer is over ``server.max_message_chars``."""

    status = 413


class OfferError(FayError):
    """A WebRTC offer the server refuses (see the subclasses).

    ``OfferError(status, message)`` still sets the status of one error; it is deprecated: raise a subclass.
    """

    status = 400

    def __init__(self, *args: object) -> None:
        if len(args) == 2 and isinstance(status := args[0], int):  # the 0.1 form: OfferError(413, "...")
            self.status = status
            args = args[1:]
        super().__init__(*args)


class InvalidOffer(OfferError):
    """The offer's body or SDP is malformed."""


class OfferTooLarge(OfferError):
    """The SDP offer is over ``webrtc.max_sdp_bytes``."""

    status = 413


class TooManyOffers(OfferError):
    """One client (remote address) has ``webrtc.max_pending_per_client`` offers whose peers have not connected yet."""

    status = 429
    retry_after_s = 5


class PeerLimit(OfferError):
    """``webrtc.max_peers`` peers are connected (or connecting), or ``webrtc.max_pending`` peers are still
    connecting; a new one is refused until one connects or leaves."""

    status = 503
    retry_after_s = 10


class ClusterUnavailable(FayError):
    """The cluster's shared state (Redis) cannot be reached, or a session's owner is alive by its heartbeat but
    does not answer this node: retry shortly (once its heartbeat expires, its sessions answer 410)."""

    status = 503
    retry_after_s = 2


class TranscriptError(FayError):
    """A role-play transcript cannot be read; the message names the source, the turn index and the field, e.g.
    ``transcript.json: turns[3].speaker: 'coach' is not a speaker (use 'trainee' or 'avatar')``."""

    status = 400


class ConsoleError(FayError):
    """The console (:mod:`fay_core.console`) cannot do what was asked; the message says what to do instead."""

    status = 400


class UnknownJob(ConsoleError):
    """No ingest job of this id (jobs are kept in memory for a while after they end; another tenant's are unknown)."""

    status = 404


class UnknownEntry(ConsoleError):
    """No knowledge entry or document of this id or path in the persona's collection."""

    status = 404


class NotEditable(ConsoleError):
    """The persona's knowledge cannot be changed from the console: it has no knowledge folder, or the entry is in a
    file the bank wrote by hand (edit that file, or delete the whole document)."""

    status = 409


class InvalidRequest(FayError):
    """An HTTP request the server cannot read; the message says what to fix (see :mod:`fay_core.http_input`)."""

    status = 400


class InvalidBody(InvalidRequest):
    """The body is not UTF-8, not JSON, nested too deep, has a huge integer or a lone surrogate, or is no object."""


class BodyTooLarge(InvalidRequest):
    """The body is over ``server.max_body_bytes``."""

    status = 413


class UnsupportedCharset(InvalidRequest):
    """The body declares a charset other than UTF-8."""

    status = 415


class AccessError(FayError):
    """The caller may not do this (see the subclasses). Another tenant's things are never refused with this:
    they are answered as unknown (404), exactly like things that do not exist."""

    status = 403


class Unauthenticated(AccessError):
    """No API key was sent, or a wrong or revoked one; the message says what to send."""

    status = 401


class MissingScope(AccessError):
    """The API key is valid but lacks the scope (``chat``, ``admin``, ``ingest``) the endpoint needs."""

    status = 403


class RateLimited(AccessError):
    """The API key's per-minute limit (sessions or messages) is reached; ``retry_after_s`` says when to retry."""

    status = 429

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class KeyStoreUnavailable(AccessError):
    """The key store (``<data_dir>/keys.json``) cannot be read, so no key can be checked: every ``/api/*``
    request is refused until it is fixed (failing open would let revoked keys in). :attr:`public` leaves out
    the server's path."""

    status = 503
    retry_after_s = 30

    @property
    def public(self) -> str:
        return "API keys cannot be checked right now (the server's key store is unreadable): try again shortly"


def missing_extra(package: str, extra: str) -> EngineUnavailable:
    """The error for an optional dependency that is not installed, with the command that installs it."""
    return EngineUnavailable(f"{package} is not installed: pip install 'fay[{extra}]'")
