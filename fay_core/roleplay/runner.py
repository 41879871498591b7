"""The scenario runner: the avatar plays a persona's ``scenario`` (an interviewer, or a customer) step by step.

It is the session's answerer (:class:`~fay_core.brain.agent.Answerer`) for personas whose scenario has steps; the
assembly attaches it (:meth:`fay_core.assembly.Assembly.agent`). Each trainee turn:

1. The persona's ``greeting`` opens the conversation; the trainee's first turn starts the first step, and the
   avatar answers it with that step's first ``say:`` line.
2. Later turns are heard by the current step: the aim is met when the trainee mentions one of its
   ``listen_for`` phrases (case-insensitive), or says one of those that are sentences (three words or more, four
   Chinese characters or more) in other words, as the scorer's matcher judges it (the knowledge base's embedder
   plus a lexical signal, :mod:`.evidence`). A step without any is met by its turn budget only. The step moves on
   when its aim is met or when its budget is used (``turns:``, else the difficulty's ``patience``).
3. The next step is the first ``next:`` branch whose conditions hold (see
   :class:`~fay_core.persona.NextBranch`: ``if_mentioned``, ``if_not_mentioned``, ``if_aim``, ``otherwise``),
   else the following step. Steps marked ``objection: true`` beyond the difficulty's ``objections`` are skipped:
   passed as if the trainee had said nothing in them (their ``next:`` with nothing mentioned, the aim missed).
4. The avatar speaks: with an LLM configured, the LLM plays the role with the current step (its aim, and its
   scripted line as a hint) in its prompt; without, the step's ``say:`` lines in order (the first when the step
   starts, then one per follow-up; when they run out, a short nudge per language and role). Offline, a step with
   no ``say:`` lines is announced by its aim; if the LLM fails, the step's scripted line stands in, and where there
   is none the agent's offline answerer does (the knowledge base, as for any persona).
5. After the last step, or once ``time_limit_s`` has passed, the avatar says the scenario's ``closing`` line and
   :class:`~fay_core.events.ScenarioEnded` is published; later turns get the closing line again.

Every step change is a :class:`~fay_core.events.ScenarioStepChanged` (on the bus, the data channel and the answer
stream). With a time limit, the scenario ends at the deadline even if nobody speaks (the closing line is then said
at the next turn: the avatar does not speak unprompted).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..bus import Bus
from ..events import ErrorRaised, ScenarioEnded, ScenarioStepChanged
from ..persona import END, Persona, ScenarioStep, localized
from ..text import han_count, words

if TYPE_CHECKING:
    from ..brain.agent import Answerer
    from ..brain.turn import Turn
    from .evidence import EvidenceMatcher

log = logging.getLogger(__name__)

CLOSING = {"en": "Thank you, that is all for today. Goodbye.", "zh": "好的，今天就到这里，谢谢，再见。"}
NUDGE = {
    "interviewer": {"en": "Could you tell me a bit more about that?", "zh": "能再具体说说吗？"},
    "customer": {"en": "Hmm, I'm still not sure about that.", "zh": "嗯，我还是不太确定。"},
}
ANNOUNCE = {"en": "Let's move on: {aim}", "zh": "我们进入下一个话题：{aim}"}


def mentioned(text: str, phrases: list[str]) -> list[str]:
    """The ``phrases`` that occur in ``text``: case-insensitive, as whole words where a phrase starts or ends with
    a letter or digit ("app" is not in "happy"); Chinese needs no word boundaries."""
    out = []
    for phrase in phrases:
        p = re.escape(phrase.lower())
        left = r"(?<![^\W_])" if phrase[:1].isascii() and phrase[:1].isalnum() else ""
        right = r"(?![^\W_])" if phrase[-1:].isascii() and phrase[-1:].isalnum() else ""
        if re.search(left + p + right, text.lower()):
            out.append(phrase)
    return out


class ScenarioRunner:
    """Plays ``persona.scenario`` on ``bus`` (see the module docstring).

    ``llm`` answers in the role when given (an :class:`~fay_core.brain.llm_answerer.LLMAnswerer` built with
    :meth:`instructions` as its ``instructions``); ``fallback`` answers a turn the scenario has no line for.
    """

    name = "scenario"

    def __init__(self, bus: Bus, persona: Persona, *, llm: Answerer | None = None,
                 matcher: Callable[[], EvidenceMatcher | None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bus = bus
        #: gives the scorer's phrase matcher (embedder + lexical) for the sentences of ``listen_for``, or ``None``
        self.matcher = matcher
        self.persona = persona
        self.scenario = persona.scenario
        self.llm = llm
        self.clock = clock
        self.language = "zh" if persona.language == "zh" else "en"
        level = self.scenario.level
        self.patience = level.patience
        objections = 0
        #: the ids of the steps this difficulty plays
        self.played: set[str] = set()
        for step in self.scenario.steps:
            if step.objection:
                objections += 1
                if objections > level.objections:
                    continue
            self.played.add(step.id)
        #: who the trainee is (set by whoever creates the session; reports group a trainee's sessions by it)
        self.trainee: str | None = None
        self.started_at: float | None = None
        self.index = -1
        self.visited: list[str] = []
        self.ended: ScenarioEnded | None = None
        self._turns = 0
        self._said = 0
        self._mentions: set[str] = set()
        self._aim_met = False
        self._deadline: asyncio.Task[None] | None = None

    # --- state --------------------------------------------------------------------------------------------

    @property
    def step(self) -> ScenarioStep | None:
        """The current step (``None`` before the first trainee turn and after the end)."""
        if self.ended is not None or self.index < 0:
            return None
        return self.scenario.steps[self.index]

    @property
    def elapsed_s(self) -> float:
        return 0.0 if self.started_at is None else self.clock() - self.started_at

    @property
    def closing(self) -> str:
        return localized(self.scenario.closing, self.language, CLOSING)

    def budget(self, step: ScenarioStep) -> int:
        """Trainee turns ``step`` waits for its aim."""
        return step.turns or self.patience

    def instructions(self) -> str:
        """The role and the current step, for the LLM's system prompt."""
        sc = self.scenario
        step = self.step
        role = sc.avatar_role
        other = "candidate" if role == "interviewer" else "bank adviser"
        lines = [f"This is a role-play training. You play the {role}; the user is the {other} being trained. "
                 f"Stay in your role, never coach the user, and keep each turn to one to three sentences.",
                 f"Difficulty: {sc.difficulty}"
                 + (" (be demanding: push back and ask for specifics)." if sc.difficulty == "hard" else
                    " (be cooperative)." if sc.difficulty == "easy" else ".")]
        if sc.goal:
            lines.append(f"Goal of the scenario: {sc.goal}")
        if step is not None:
            lines.append(f"Current step {self.index + 1} of {len(sc.steps)}: {step.aim}")
            hint = self._line(step, self._said)
            if hint:
                lines.append(f"Say something close to: {hint}")
        return "\n".join(lines)

    # --- the turn -----------------------------------------------------------------------------------------

    async def answer(self, turn: Turn) -> None:
        """Hear the trainee's turn, move the plan on, and say the avatar's line (see the module docstring)."""
        turn.answered_by = self.name
        if self.ended is not None:
            turn.say(self.ended.closing or self.closing)
            return
        line: str | None
        if self.index < 0:
            self._start(turn)
            line = self._next_line()
        elif self.scenario.time_limit_s is not None and self.elapsed_s >= self.scenario.time_limit_s:
            self._end("time_limit", turn.id)
            line = None
        else:
            line = await self._hear(turn)
        if self.ended is not None:
            turn.say(self.ended.closing)
            return
        if self.llm is not None:
            try:
                await self.llm.answer(turn)
                turn.answered_by = self.llm.name
                return
            except Exception as exc:  # the scripted line stands in, if the step has one (else the agent's fallback)
                if turn.text or not line:
                    raise
                log.warning("session %s turn %d: the LLM failed, the scripted line stands in: %s",
                            self.bus.session_id, turn.id, exc)
                self.bus.publish(ErrorRaised.of(exc, session_id=self.bus.session_id, turn_id=turn.id,
                                                source="llm"))
                turn.answered_by = "fallback"
        elif line is None and self._said == 1 and self.step is not None:  # a step without lines starts: announce it
            line = ANNOUNCE[self.language].format(aim=self.step.aim)
        turn.say(line or NUDGE[self.scenario.avatar_role][self.language])

    def _start(self, turn: Turn) -> None:
        self.started_at = self.clock()
        first = self._resolve(0 if self.scenario.steps else None)
        if first is None:
            self._end("completed", turn.id)
            return
        self._enter(first, "start", turn.id)
        if self.scenario.time_limit_s is not None:
            self._deadline = self.bus.spawn(self._expire(self.scenario.time_limit_s), name="scenario.deadline")

    async def _hear(self, turn: Turn) -> str | None:
        step = self.step
        assert step is not None
        self._turns += 1
        said = mentioned(turn.question, list({*step.listen_for, *_branch_phrases(step)}))
        self._mentions.update(p.lower() for p in said)
        if any(p.lower() in self._mentions for p in step.listen_for):
            self._aim_met = True
        elif not self._aim_met:
            self._aim_met = await self._said_in_other_words(step, turn.question)
        if not self._aim_met and self._turns < self.budget(step):
            return self._next_line()
        target, reason = self._choose(step)
        if target is None:
            self._end("completed", turn.id)
            return None
        self._enter(target, reason, turn.id)
        return self._next_line()

    async def _said_in_other_words(self, step: ScenarioStep, text: str) -> bool:
        """Whether ``text`` says one of the step's ``listen_for`` sentences in other words (the scorer's matcher;
        keywords are matched as they are written only)."""
        sentences = [p for p in step.listen_for if is_sentence(p)]
        matcher = self.matcher() if sentences and self.matcher is not None else None
        if matcher is None:
            return False
        from .transcript import Transcript, TranscriptTurn

        try:
            checks, _ = await asyncio.to_thread(matcher.match, sentences, [],
                                                Transcript([TranscriptTurn("trainee", text)]))
        except Exception as exc:  # the embedder failed: the lexical match and the budget still move the plan
            log.warning("session %s: the step's sentences could not be matched: %s", self.bus.session_id, exc)
            return False
        return any(m.found for m in checks)

    def _choose(self, step: ScenarioStep) -> tuple[int | None, str]:
        """The next step's index (``None``: the end) and why it was chosen."""
        target, branched = self._route(self.index, self._mentions, self._aim_met)
        return (None if target is None else self._resolve(target),
                "branch" if branched else "aim_met" if self._aim_met else "budget")

    def _route(self, index: int, mentions: set[str], aim_met: bool) -> tuple[int | None, bool]:
        """Where step ``index`` leads (``None``: the end), and whether a ``next:`` condition chose it."""
        steps = self.scenario.steps
        for branch in steps[index].next:
            if branch.if_mentioned and not any(p.lower() in mentions for p in branch.if_mentioned):
                continue
            if branch.if_not_mentioned and any(p.lower() in mentions for p in branch.if_not_mentioned):
                continue
            if branch.if_aim is not None and (branch.if_aim == "met") != aim_met:
                continue
            chose = branch.otherwise is None  # "otherwise" is the default route, not a condition that held
            if branch.target == END:
                return None, chose
            return next(i for i, s in enumerate(steps) if s.id == branch.target), chose
        return (index + 1 if index + 1 < len(steps) else None), False

    def _resolve(self, index: int | None) -> int | None:
        """``index``, or where a step this difficulty skips leads: it is passed as if the trainee had said nothing
        in it (its ``next:`` with nothing mentioned and the aim missed). ``None``: the end."""
        seen: set[int] = set()
        steps = self.scenario.steps
        while index is not None and steps[index].id not in self.played and index not in seen:
            seen.add(index)
            index = self._route(index, set(), False)[0]
        return None if index is None or index in seen else index

    def _enter(self, index: int, reason: str, turn_id: int) -> None:
        self.index = index
        self._turns = self._said = 0
        self._mentions = set()
        self._aim_met = False
        step = self.scenario.steps[index]
        self.visited.append(step.id)
        self.bus.publish(ScenarioStepChanged(
            session_id=self.bus.session_id, turn_id=turn_id, step_id=step.id, index=index,
            total=len(self.scenario.steps), aim=step.aim, reason=reason, elapsed_s=self.elapsed_s,
            time_limit_s=self.scenario.time_limit_s))

    def _line(self, step: ScenarioStep, k: int) -> str | None:
        return step.say[k] if k < len(step.say) else None

    def _next_line(self) -> str | None:
        step = self.step
        if step is None:
            return None
        line = self._line(step, self._said)
        self._said += 1
        return line

    def _end(self, reason: str, turn_id: int) -> None:
        if self.ended is not None:
            return
        self.ended = ScenarioEnded(session_id=self.bus.session_id, turn_id=turn_id, reason=reason,
                                   elapsed_s=self.elapsed_s, steps_visited=tuple(self.visited), closing=self.closing)
        if self._deadline is not None and self._deadline is not asyncio.current_task():
            self._deadline.cancel()
        self.bus.publish(self.ended)

    async def _expire(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        self._end("time_limit", 0)


def is_sentence(phrase: str) -> bool:
    """A phrase of three words or more (or four Chinese characters or more): matched by meaning, not as written."""
    return len(words(phrase)) >= 3 or han_count(phrase) >= 4


def _branch_phrases(step: ScenarioStep) -> list[str]:
    out: list[str] = []
    for branch in step.next:
        out.extend(branch.if_mentioned or ())
        out.extend(branch.if_not_mentioned or ())
    return out
