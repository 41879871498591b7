"""Personas: who the avatar is, loaded from ``personas/*.yaml`` into pydantic models.

Every block forbids unknown fields, so a typo is an error, not a silently ignored setting. A broken file raises
:class:`~fay_core.errors.PersonaError` whose message names the file, the line and the field, e.g.::

    personas/teller.yaml:12: interruption.min_speech_ms: Input should be a valid integer

A persona's id is its file name without ``.yaml``. A persona belongs to one tenant (``tenant:``, ``default`` if
absent; see :mod:`fay_core.tenancy`): API keys of other tenants neither list it nor start sessions with it, and
its ``knowledge.collections`` are that tenant's collections.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import PersonaError, UnknownPersona
from .tenancy import DEFAULT_TENANT, RESERVED_PREFIX, TENANT_PATTERN

#: the longest persona file accepted (the shipped ones are ~2,000 characters; knowledge belongs in knowledge.paths)
MAX_CHARS = 256_000
#: the deepest ``[``/``{`` nesting accepted
MAX_FLOW_DEPTH = 64


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VoiceConfig(_Block):
    """Which TTS engine speaks, and what to fall back to when it fails."""

    engine: str = Field("auto", description="a registered TTS engine; 'auto' picks the best available")
    name: str | None = Field(None, description="the engine's voice, e.g. en-US-AriaNeural or en_US-joe-medium")
    rate: float = Field(1.0, gt=0.25, le=4.0)
    fallback: list[str] = Field(default_factory=list, description="engines tried in order if the first fails")


class AvatarConfig(_Block):
    renderer: str = Field("none", description="a registered avatar renderer, or 'none'")
    model: str | None = Field(None, description="the renderer's model (a path or URL), if it takes one")
    options: dict[str, Any] = Field(default_factory=dict)


class LLMConfig(_Block):
    """Overrides of the server's LLM settings for this persona; unset fields keep the server's value."""

    model: str | None = None
    api_base: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0)
    fallbacks: list[str] | None = None


class FAQEntry(_Block):
    question: str
    answer: str
    id: str | None = None


class KnowledgeConfig(_Block):
    """What the persona knows and how strictly it sticks to it."""

    collections: list[str] = Field(default_factory=list, description="knowledge-base collections to search")
    paths: list[str] = Field(default_factory=list, description="files or folders, relative to the persona file")
    faq: list[FAQEntry] = Field(default_factory=list, description="inline questions and answers")
    only: bool = Field(False, description="answer only from knowledge; decline and offer a human otherwise")
    top_k: int = Field(4, ge=1, le=50)
    min_score: float | None = Field(None, description="retrieval confidence below which nothing counts as found")
    suggest_score: float | None = Field(None, description="retrieval confidence from which a question below "
                                        "min_score is uncertain (see knowledge.suggest_score in the settings)")
    handoff: str = Field("", description="what to say when offering a human colleague")

    @field_validator("collections")
    @classmethod
    def _not_reserved(cls, names: list[str]) -> list[str]:
        for name in names:
            if name.startswith(RESERVED_PREFIX):
                raise ValueError(f"collection {name!r}: names beginning with {RESERVED_PREFIX!r} are reserved "
                                 "(other tenants' collections): name the collection as the persona's tenant knows it")
        return names


class InterruptionConfig(_Block):
    """Barge-in: when the user's speech stops the avatar."""

    enabled: bool = True
    min_speech_ms: int = Field(120, ge=0, description="speech this long while the avatar talks pauses it (from the "
                               "VAD onset; coughs and backchannels that pause it resume)")
    min_words: int = Field(0, ge=0, description="words needed before a pause becomes an interruption "
                           "(backchannels and fillers such as 'mm-hm', 'okay', '嗯', '好的' never count)")
    false_interruption_ms: int = Field(800, ge=0, description="resume if no real words arrive in this window")
    half_duplex: bool = Field(False, description="ignore the microphone while the avatar speaks")
    echo_warmup_ms: int = Field(0, ge=0, description="ignore speech this long after the avatar starts talking")
    uninterruptible: bool = Field(False, description="nothing this persona says can be interrupted; for single "
                                  "passages (terms and conditions) mark them [uninterruptible]...[/uninterruptible] "
                                  "in the answer's text instead")


class RubricItem(_Block):
    """One criterion a role-play is scored on (see :mod:`fay_core.roleplay.scoring`).

    ``checks`` are things the trainee should say or do, ``avoid`` things they must not say (a compliance breach),
    each a plain sentence in the persona's language, best written the way a trainee would say it.
    """

    criterion: str
    weight: float = Field(1.0, ge=0)
    description: str = ""
    checks: list[str] = Field(default_factory=list, description="what the trainee should say or do, one sentence each")
    avoid: list[str] = Field(default_factory=list, description="what the trainee must not say, one sentence each")


def _localized(value: Any) -> str | dict[str, str]:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value and all(k in ("en", "zh") and isinstance(v, str) for k, v in value.items()):
        return dict(value)
    raise ValueError("expected a text, or one per language: {en: '...', zh: '...'}")


#: a text for every language, or one per language: ``{en: "...", zh: "..."}``
Localized = Annotated[str | dict[str, str], PlainValidator(_localized, json_schema_input_type=str | dict[str, str])]


def localized(value: Localized | None, language: str, defaults: dict[str, str]) -> str:
    """``value`` in ``language`` (``auto`` reads as English): the persona's own text if it has one for it, else
    ``defaults[language]``."""
    lang = "zh" if language == "zh" else "en"
    if isinstance(value, str):
        return value.strip() or defaults[lang]
    if value:
        text = value.get(lang) or next(iter(value.values()))
        if text.strip():
            return text.strip()
    return defaults[lang]


Difficulty = Literal["easy", "medium", "hard"]
#: a ``goto`` that ends the scenario (the avatar says the closing line)
END = "end"


class DifficultyLevel(_Block):
    """What a difficulty does to a scenario."""

    objections: int = Field(ge=0, description="how many of the steps marked 'objection: true' are played, in order "
                                              "(the others are skipped)")
    patience: int = Field(ge=1, description="trainee turns the avatar waits for a step's aim when the step sets no "
                                            "'turns' of its own")


#: the difficulty levels a scenario gets unless it sets its own (``levels:``)
DEFAULT_LEVELS: dict[str, DifficultyLevel] = {
    "easy": DifficultyLevel(objections=1, patience=3),
    "medium": DifficultyLevel(objections=2, patience=2),
    "hard": DifficultyLevel(objections=3, patience=1),
}


class NextBranch(_Block):
    """One way out of a step. Branches are tried in order; the first whose conditions all hold is taken.

    Conditions (any number, all must hold): ``if_mentioned`` (the trainee said at least one of these phrases in the
    step, case-insensitive), ``if_not_mentioned`` (none of them), ``if_aim`` (``met`` or ``missed``: whether the
    step's aim was met before its turn budget ran out). ``goto`` names the next step (or ``end``); a branch written
    ``otherwise: <step>`` has no condition and is taken when no branch before it was.
    """

    if_mentioned: list[str] | None = None
    if_not_mentioned: list[str] | None = None
    if_aim: Literal["met", "missed"] | None = None
    goto: str | None = None
    otherwise: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> NextBranch:
        if (self.goto is None) == (self.otherwise is None):
            raise ValueError("a branch names its next step with exactly one of 'goto' (after conditions) or "
                             "'otherwise'")
        if self.otherwise is not None and (self.if_mentioned or self.if_not_mentioned or self.if_aim):
            raise ValueError("'otherwise' takes no condition: write the conditions with 'goto'")
        return self

    @property
    def target(self) -> str:
        """The step id (or ``end``) this branch leads to."""
        return self.goto if self.goto is not None else str(self.otherwise)


class ScenarioStep(_Block):
    """A step of a scenario's plan; a plain string in ``steps:`` is a step with only its ``aim``."""

    id: str = Field("", description="names the step for 'goto' (default: step1, step2, ... by position)")
    aim: str = Field(min_length=1, description="what the trainee should achieve in this step")
    say: list[str] = Field(default_factory=list, description="the avatar's scripted lines (offline mode): the first "
                                                             "when the step starts, the next ones as follow-ups")
    listen_for: list[str] = Field(default_factory=list, description="phrases whose mention by the trainee meets the "
                                                                    "aim (case-insensitive)")
    turns: int | None = Field(None, ge=1, description="trainee turns before the step moves on (default: the "
                                                      "difficulty's patience)")
    objection: bool = Field(False, description="an objection: played only while the difficulty allows more")
    next: list[NextBranch] = Field(default_factory=list, description="where to go next (default: the next step)")

    @field_validator("say", "listen_for")
    @classmethod
    def _no_blank(cls, items: list[str]) -> list[str]:
        if any(not item.strip() for item in items):
            raise ValueError("an empty line: remove it or write the text")
        return [item.strip() for item in items]


def _step(value: Any) -> Any:
    return {"aim": value} if isinstance(value, str) else value


class ScenarioConfig(_Block):
    """A role-play plan: an interview, a sales training, or plain service (see :mod:`fay_core.roleplay.runner`)."""

    kind: Literal["service", "interview", "sales"] = "service"
    role: Literal["interviewer", "customer"] | None = Field(
        None, description="whom the avatar plays (the trainee is the other side); default from kind: interview -> "
                          "interviewer, sales -> customer")
    goal: str = ""
    difficulty: Difficulty = "medium"
    levels: dict[Difficulty, DifficultyLevel] = Field(default_factory=dict, description="overrides of the "
                                                                                        "default difficulty levels")
    time_limit_s: float | None = Field(None, gt=0, description="the scenario ends with its closing line after this")
    closing: Localized | None = Field(None, description="the avatar's last line (default per language)")
    steps: list[Annotated[ScenarioStep, BeforeValidator(_step)]] = Field(default_factory=list)
    rubric: list[RubricItem] = Field(default_factory=list)

    @model_validator(mode="after")
    def _step_ids(self) -> ScenarioConfig:
        for i, step in enumerate(self.steps):
            if not step.id:
                step.id = f"step{i + 1}"
        return self

    @property
    def avatar_role(self) -> str:
        """Whom the avatar plays: ``role``, else ``customer`` for a sales scenario and ``interviewer`` otherwise."""
        return self.role or ("customer" if self.kind == "sales" else "interviewer")

    @property
    def level(self) -> DifficultyLevel:
        """The difficulty level in force (``levels`` overriding :data:`DEFAULT_LEVELS`)."""
        return self.levels.get(self.difficulty) or DEFAULT_LEVELS[self.difficulty]

    def problems(self) -> list[tuple[tuple[Any, ...], str]]:
        """What is wrong across steps (duplicate ids, a ``goto`` to no step), as ``(location, message)``."""
        out: list[tuple[tuple[Any, ...], str]] = []
        seen: set[str] = set()
        for i, step in enumerate(self.steps):
            if step.id in seen or step.id == END:
                out.append((("scenario", "steps", i, "id"), f"step id {step.id!r} is used twice (or is the reserved "
                                                           f"{END!r}): give each step its own id"))
            seen.add(step.id)
        known = ", ".join([*seen, END])
        for i, step in enumerate(self.steps):
            for j, branch in enumerate(step.next):
                if branch.target not in seen and branch.target != END:
                    field = "goto" if branch.goto is not None else "otherwise"
                    out.append((("scenario", "steps", i, "next", j, field),
                                f"no step {branch.target!r} (known: {known})"))
        return out


class RecordingConfig(_Block):
    """Recording the conversation's audio: only with ``enabled`` and the customer's consent in that session."""

    enabled: bool = Field(False, description="offer to record; nothing is recorded until the customer accepts")
    notice: Localized | None = Field(None, description="what the customer is asked to accept (default per language)")


class VisionConfig(_Block):
    """The camera: who is in front of the kiosk (presence) and where (gaze). Off unless ``enabled``.

    The web page asks for the camera only for such personas, with ``notice`` saying what it is used for; a visitor
    who refuses gets everything as without it. Frames are decoded at ``fps`` and never stored. Nothing is inferred
    from a face but that one is there, where, and how large (no emotion, no identity). Asked to look ("what is
    this?"), the avatar sends the latest frame to ``look_model`` (:mod:`fay_core.vision.look`).
    """

    enabled: bool = Field(False, description="ask for the camera and watch for visitors")
    processor: str = Field("auto", description="a registered vision processor; 'auto' picks the best available")
    fps: float = Field(2.0, gt=0, le=15, description="frames a second decoded and looked at (the rest is dropped)")
    arrive_s: float = Field(0.4, ge=0, le=10, description="a face seen this long makes a visitor arrive")
    absent_s: float = Field(2.0, gt=0, le=60, description="no face this long makes the visitor leave")
    greet_on_arrival: bool = Field(True, description="say the greeting when a visitor arrives")
    listen_only_when_present: bool = Field(False, description="ignore speech while nobody is in front of the camera")
    leave_after_s: float | None = Field(None, gt=0, description="end the session this long after the visitor left "
                                        "(unset: the session goes on)")
    gaze: bool = Field(True, description="the avatar's head and eyes follow the visitor's face")
    notice: Localized | None = Field(None, description="what the visitor is told the camera is for "
                                     "(default per language)")
    look_model: str | None = Field(None, description="the vision-capable model that looks at what the visitor "
                                   "shows (overrides the setting vision.look_model)")
    look_api_base: str | None = Field(None, description="its server (overrides the setting vision.look_api_base)")
    cannot_read: Localized | None = Field(None, description="what the avatar says when it cannot look (no look "
                                          "model, no camera, the model failed; default per language)")


class Persona(_Block):
    """A persona file's content."""

    name: str = Field(min_length=1)
    description: str = ""
    tenant: str = Field(DEFAULT_TENANT, pattern=TENANT_PATTERN, description="the tenant (bank, branch) this persona "
                        "belongs to: only its API keys see it; 1-24 lowercase letters, digits and '-'")
    language: Literal["zh", "en", "auto"] = "en"
    voice: VoiceConfig = Field(default_factory=VoiceConfig)
    avatar: AvatarConfig = Field(default_factory=AvatarConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    system_prompt: str = ""
    knowledge: KnowledgeConfig = Field(default_factory=KnowledgeConfig)
    tools: list[str] = Field(default_factory=list, description="names of registered tools this persona may call")
    greeting: str = ""
    disclosure: Localized | None = Field(
        None, description="said and shown first in every session: that an AI serves the customer (default per "
                          "language, naming the persona)")
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    vision: VisionConfig = Field(default_factory=VisionConfig)
    interruption: InterruptionConfig = Field(default_factory=InterruptionConfig)
    scenario: ScenarioConfig = Field(default_factory=ScenarioConfig)

    _id: str = PrivateAttr("")
    _path: Path | None = PrivateAttr(None)
    _version: str = PrivateAttr("")

    @property
    def id(self) -> str:
        """The file name without ``.yaml``."""
        return self._id

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def version(self) -> str:
        """A short hash of the file's bytes, recorded in the audit log with every turn."""
        return self._version

    def resolve(self, relative: str) -> Path:
        """A path from the persona file, resolved against the file's folder."""
        p = Path(relative).expanduser()
        if p.is_absolute() or self._path is None:
            return p
        return (self._path.parent / p).resolve()


# --- loading ------------------------------------------------------------------------------------------


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    node, line = value, value.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _key_line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """For an unknown field, the line of the offending key."""
    parent = node
    for part in loc[:-1]:
        if isinstance(parent, yaml.MappingNode):
            parent = next((v for k, v in parent.value if k.value == part), None)
        elif isinstance(parent, yaml.SequenceNode) and isinstance(part, int) and part < len(parent.value):
            parent = parent.value[part]
        else:
            return _line_of(node, loc[:-1])
    if isinstance(parent, yaml.MappingNode):
        for key, _ in parent.value:
            if key.value == loc[-1]:
                return key.start_mark.line + 1
    return _line_of(node, loc[:-1])


def parse_persona(text: str, path: Path | str) -> Persona:
    """Validate persona YAML ``text`` (read from ``path``); raise :class:`PersonaError` with file:line: field."""
    path = Path(path)
    if len(text) > MAX_CHARS:
        raise PersonaError(
            f"{path}:?: (file): {len(text)} characters, over the {MAX_CHARS} a persona file may have: move large "
            "FAQs into files named by knowledge.paths", [(str(path), None, "(file)", "too large")]
        )
    depth, deep_line = _flow_depth(text)
    if depth > MAX_FLOW_DEPTH:  # PyYAML's scanner takes quadratic time on deep [ { nesting: refuse before it
        raise PersonaError(f"{path}:{deep_line}: (yaml): brackets nested over {MAX_FLOW_DEPTH} deep",
                           [(str(path), deep_line, "(yaml)", "nested too deeply")])
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except RecursionError:
        raise PersonaError(f"{path}:?: (yaml): nested too deeply", [(str(path), None, "(yaml)", "nested too deeply")]
                           ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise PersonaError(
            f"{path}:{line or '?'}: (yaml): {problem}", [(str(path), line, "(yaml)", str(problem))]
        ) from None
    except Exception as exc:  # a tag that does not fit its value (``!!int`` on a mapping) raises the constructor's own
        raise PersonaError(f"{path}:?: (yaml): a value cannot be read: {exc}",
                           [(str(path), None, "(yaml)", f"a value cannot be read: {exc}")]) from None
    if not isinstance(data, dict):
        raise PersonaError(
            f"{path}:1: (file): a persona is a YAML mapping of fields (name, language, voice, ...)",
            [(str(path), 1, "(file)", "not a mapping")],
        )
    try:
        persona = Persona.model_validate(data)
    except RecursionError:
        raise PersonaError(f"{path}:?: (file): nested too deeply", [(str(path), None, "(file)", "nested too deeply")]
                           ) from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            if err["type"] == "extra_forbidden":
                line = _key_line(root, loc)
                msg = f"unknown field (allowed: {', '.join(_allowed(loc))})"
            else:
                line = _line_of(root, loc)
                msg = err["msg"]
            problems.append((str(path), line, ".".join(str(p) for p in loc), msg))
        raise PersonaError(
            "\n".join(f"{f}:{ln or '?'}: {field}: {msg}" for f, ln, field, msg in problems), problems
        ) from None
    problems = [(str(path), _line_of(root, loc), ".".join(str(p) for p in loc), msg)
                for loc, msg in persona.scenario.problems()]
    if problems:
        raise PersonaError("\n".join(f"{f}:{ln or '?'}: {field}: {msg}" for f, ln, field, msg in problems), problems)
    persona._id = path.stem
    persona._path = path.resolve()
    persona._version = hashlib.sha256(text.encode()).hexdigest()[:12]
    return persona


def _flow_depth(text: str) -> tuple[int, int]:
    """The deepest nesting of flow brackets (``[`` ``{``) outside quotes, and the line where it is reached."""
    depth = deepest = at = 0
    quote = ""
    line = 1
    for ch in text:
        if ch == "\n":
            line += 1
            quote = ""
        elif quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest, at = depth, line
        elif ch in "]}":
            depth = max(depth - 1, 0)
    return deepest, at


def _allowed(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Persona
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = next((a for a in _types_in(field.annotation) if isinstance(a, type) and issubclass(a, BaseModel)),
                     None)
        if model is None:
            return []
    return sorted(model.model_fields)


def _types_in(annotation: Any) -> list[Any]:
    """``annotation`` and the types inside it (``list[X]``, ``X | None``, ``Annotated[X, ...]``), outermost first."""
    out = [annotation]
    for arg in getattr(annotation, "__args__", ()):
        out.extend(_types_in(arg))
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and hasattr(annotation, "__metadata__"):  # Annotated[X, ...]: __origin__ is X
        out.extend(_types_in(origin))
    return out


def load_persona(path: Path | str) -> Persona:
    """Load one persona file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PersonaError(f"{path}: no such persona file") from None
    except UnicodeDecodeError as exc:
        raise PersonaError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_persona(text, path)


class PersonaStore:
    """The personas of a folder, found by id. Files are re-read when they change."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._cache: dict[str, tuple[float, Persona]] = {}

    def ids(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.yaml"))

    def ids_of(self, tenant: str) -> list[str]:
        """The ids of ``tenant``'s personas that load (a broken file's tenant cannot be known)."""
        out = []
        for pid in self.ids():
            try:
                if self.get(pid).tenant == tenant:
                    out.append(pid)
            except PersonaError:
                continue
        return out

    def get(self, persona_id: str) -> Persona:
        """The persona ``persona_id``: :class:`UnknownPersona` if there is none, :class:`PersonaError` if broken."""
        if not persona_id or "/" in persona_id or "\\" in persona_id or persona_id.startswith("."):
            raise UnknownPersona(f"invalid persona id {persona_id!r}: use a persona file's name without .yaml")
        path = self.folder / f"{persona_id}.yaml"
        if not path.is_file():
            known = ", ".join(self.ids()) or "none"
            raise UnknownPersona(f"unknown persona {persona_id!r} (known: {known})")
        mtime = path.stat().st_mtime
        cached = self._cache.get(persona_id)
        if cached and cached[0] == mtime:
            return cached[1]
        persona = load_persona(path)
        self._cache[persona_id] = (mtime, persona)
        return persona
