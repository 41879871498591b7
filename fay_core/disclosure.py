"""Telling the customer, first, that an AI serves them: the persona's ``disclosure``, shown and said once.

GB 45438-2025 asks AI customer service to make clear that it is an AI; the EU AI Act (Art. 50) asks that people
be told at their first interaction that they talk to one. Every session has a :class:`Disclosure`, and every way
into a session delivers it before anything else::

    POST /api/sessions               "disclosure" in the response (the client shows it first)
    WebRTC data channel              "disclosure" in ``ready``: the web client's first bubble  (via "webrtc")
    first answer stream (SSE, --json) a ``disclosure`` message, the stream's first, unless shown (via "stream")
    fay chat                         printed first (stdout; stderr when piped without --json)     (via "cli")
    voice                            spoken before the first answer (there is no spoken greeting) (via "voice")

Each delivery is audited (record kind ``disclosure``, with its channel) and published as
:class:`~fay_core.events.AgentDisclosed`. A persona cannot switch it off: an empty ``disclosure`` gets the default.
"""

from __future__ import annotations

from .bus import Bus
from .events import AgentDisclosed
from .persona import Persona, localized
from .record import SessionRecord

#: the disclosure of a persona without one; ``{name}`` is the persona's name
DEFAULT_DISCLOSURE = {
    "en": "I'm {name}, an AI assistant, not a person.",
    "zh": "您好，我是AI数字员工{name}，不是真人。",
}
#: the recording notice of a persona that records without its own
DEFAULT_NOTICE = {
    "en": "May we record this conversation (your voice and the assistant's) for quality and compliance? "
          "You can decline, or withdraw at any time.",
    "zh": "为保证服务质量和合规，我们希望对本次通话（您和AI数字员工的语音）进行录音。您可以拒绝，也可以随时撤回同意。",
}
#: the channels that show the disclosure as text (``voice`` says it)
SHOWN_VIA = ("stream", "webrtc", "cli")


def disclosure_text(persona: Persona) -> str:
    """The persona's disclosure in its language (the default, naming the persona, if it has none)."""
    defaults = {lang: text.format(name=persona.name) for lang, text in DEFAULT_DISCLOSURE.items()}
    return localized(persona.disclosure, persona.language, defaults)


def notice_text(persona: Persona) -> str:
    """The persona's recording notice in its language."""
    return localized(persona.recording.notice, persona.language, DEFAULT_NOTICE)


class Disclosure:
    """A session's disclosure and the channels that delivered it."""

    def __init__(self, bus: Bus, persona: Persona, record: SessionRecord) -> None:
        self.bus = bus
        self.record = record
        self.text = disclosure_text(persona)
        self.language = "zh" if persona.language == "zh" else "en"
        #: the channels that delivered it, in order ("stream", "webrtc", "voice", "cli")
        self.delivered: list[str] = []

    @property
    def shown(self) -> bool:
        """Whether the customer has seen it as text."""
        return any(via in SHOWN_VIA for via in self.delivered)

    @property
    def spoken(self) -> bool:
        return "voice" in self.delivered

    def deliver(self, via: str) -> AgentDisclosed:
        """Record that ``via`` delivered it (audited, published); the event to hand to that channel."""
        event = AgentDisclosed(session_id=self.bus.session_id, text=self.text, language=self.language, via=via)
        if via not in self.delivered:
            self.delivered.append(via)
            self.record.disclosure(self.text, via)
            self.bus.publish(event)
        return event

    def for_stream(self, via: str = "stream") -> AgentDisclosed | None:
        """The event an answer stream starts with if the customer has not seen the disclosure yet, else ``None``."""
        return None if self.shown else self.deliver(via)
