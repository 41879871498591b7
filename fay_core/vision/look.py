"""A look on request: the latest camera frame and the visitor's question, sent to a vision-capable model.

::

    CameraFrameReceived --VisionWatcher--> LatestFrame   (only the latest frame, in memory: nothing is stored)
    "what is this?" / "帮我看一下这封信"
        the LLM calls the ``look_at_camera`` tool, or the offline answerer recognises the phrase (is_look_request)
        --> Looker.look(question): the frame as a JPEG, in a litellm image message --> vision.look_model
    no look model, no recent frame (camera off or refused), a dead or slow model
        --> the avatar says it cannot read documents here and whom to ask instead (vision.cannot_read)

The audit record of a look holds a reference to the frame, never its pixels: the tool call's ``artifact`` in the
answer record's ``tools`` is ``{"frame": {"sha256", "bytes", "width", "height", "pts", "taken_at"}, "model",
"error"}``, the SHA-256 of the exact JPEG the model was sent.
"""

from __future__ import annotations

import asyncio
import base64
import fractions
import hashlib
import logging
import re
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..brain.llm import LLMClient, LLMConfig
from ..events import CameraFrameReceived
from ..persona import Persona, localized
from ..settings import LLMSettings, VisionSettings
from ..text import is_han

log = logging.getLogger(__name__)

#: the tool's name, as the LLM sees it and the audit record shows it
LOOK_TOOL = "look_at_camera"
#: what the avatar says when it cannot look, for a persona without ``vision.cannot_read``
DEFAULT_CANNOT_READ = {
    "en": "I'm sorry, I can't read documents or look at things here. Please show it to a member of staff at the "
          "counter: they will be glad to help you.",
    "zh": "抱歉，我在这里无法阅读文件或查看物品。请把它拿给柜台的工作人员，他们会很乐意帮您。",
}
_PROMPT = {
    "en": "You are {name} at a bank kiosk, looking through its camera at what the customer holds up. Answer their "
          "question about it briefly and plainly, in English, from what you can see. If you cannot make it out, "
          "say so and ask them to hold it closer and still. Say nothing about the person, their face or their "
          "feelings. Never read out a whole card or account number: only its last four digits.",
    "zh": "你是银行自助终端上的{name}，正通过摄像头查看顾客举起的东西。"
          "请用简短易懂的中文，根据你看到的内容回答顾客的问题。看不清时请直说，并请顾客拿近一点、拿稳。"
          "不要描述这个人、其面容或情绪。不要完整读出卡号或账号，只说后四位。",
}
JPEG_QSCALE = 3  #: the MJPEG encoder's quantiser (2 best .. 31 worst): small print stays readable, ~20 KB at 640x480


@dataclass(frozen=True, slots=True)
class Frame:
    """A camera frame kept for a look: the BGR ``image``, its video ``pts`` and when it arrived (``at``, epoch s)."""

    image: Any
    pts: float
    at: float


class LatestFrame:
    """The latest camera frame of one session, and only that one (the watcher hands it every frame)."""

    def __init__(self) -> None:
        self._frame: Frame | None = None

    def keep(self, event: CameraFrameReceived) -> None:
        self._frame = Frame(event.image, event.pts, time.time())

    def get(self, max_age_s: float) -> Frame | None:
        """The latest frame if it arrived within ``max_age_s``, else ``None`` (the camera is off or has ended)."""
        frame = self._frame
        if frame is None or time.time() - frame.at > max_age_s:
            return None
        return frame

    def clear(self) -> None:
        self._frame = None


@dataclass(frozen=True, slots=True)
class FrameRef:
    """What the audit record keeps of a frame that was looked at: its JPEG's hash and size, never its pixels."""

    sha256: str
    bytes: int
    width: int
    height: int
    pts: float
    taken_at: str  #: when the frame arrived, ISO 8601 UTC


@dataclass(frozen=True, slots=True)
class Sight:
    """The result of a look: ``text`` to say (the model's answer, or the cannot-read fallback when not ``looked``)."""

    text: str
    looked: bool
    frame: FrameRef | None = None
    model: str = ""
    error: str = ""

    def artifact(self) -> dict[str, Any]:
        """The audit record's reference to the look (no pixels)."""
        return {"frame": asdict(self.frame) if self.frame else None, "model": self.model, "error": self.error}


def look_config(settings: VisionSettings, llm: LLMSettings, persona: Persona) -> LLMConfig | None:
    """The look model's configuration (the persona's ``vision.look_*`` over the settings'), or ``None``.

    Without ``look_api_base`` anywhere, the look model is on the LLM's server (``llm.api_base``, ``llm.api_key``).
    """
    model = persona.vision.look_model or settings.look_model
    if not model:
        return None
    base = persona.vision.look_api_base or settings.look_api_base
    key = settings.look_api_key if base else settings.look_api_key or llm.api_key
    return LLMConfig(model=model, api_base=base or llm.api_base, api_key=key.get_secret_value() if key else None,
                     temperature=0.0, max_tokens=settings.look_max_tokens, timeout_s=settings.look_timeout_s,
                     first_token_timeout_s=settings.look_timeout_s, retries=0)


def encode_jpeg(image: np.ndarray, qscale: int = JPEG_QSCALE) -> bytes:
    """A BGR ``(h, w, 3)`` uint8 image as JPEG bytes (PyAV's MJPEG encoder: no image library needed)."""
    import av

    height, width = image.shape[:2]
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24").reformat(format="yuvj420p")
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = fractions.Fraction(1, 1)
    codec.options = {"qmin": str(qscale), "qmax": str(qscale)}
    packets = [*codec.encode(frame), *codec.encode(None)]
    return b"".join(bytes(p) for p in packets)


class Looker:
    """Takes a session's looks: ``look(question)`` answers from the latest frame through ``config``'s model.

    It never raises for a missing model or frame, or a failing model: it returns the cannot-read fallback.
    """

    def __init__(self, frames: LatestFrame, config: LLMConfig | None, persona: Persona, *,
                 max_age_s: float = 5.0) -> None:
        self.frames = frames
        self.config = config
        self.persona = persona
        self.max_age_s = max_age_s
        self.client = LLMClient(config, label="look model", timeout_setting="vision.look_timeout_s",
                                settings_hint="FAY_VISION__LOOK_MODEL / FAY_VISION__LOOK_API_BASE") if config else None

    def language(self, question: str) -> str:
        """``zh`` or ``en``: the persona's, or for ``auto`` the question's."""
        lang = self.persona.language
        if lang == "auto":
            return "zh" if any(is_han(ch) for ch in question) else "en"
        return "zh" if lang == "zh" else "en"

    def cannot_read(self, question: str = "") -> str:
        """What the avatar says when it cannot look."""
        return localized(self.persona.vision.cannot_read, self.language(question), DEFAULT_CANNOT_READ)

    async def look(self, question: str) -> Sight:
        """Look at the latest frame to answer ``question``."""
        fallback = self.cannot_read(question)
        if self.client is None or self.config is None:
            return Sight(fallback, False, error="no look model is configured (vision.look_model)")
        frame = self.frames.get(self.max_age_s)
        if frame is None:
            return Sight(fallback, False, model=self.config.model,
                         error=f"no camera frame in the last {self.max_age_s:g} s (the camera is off)")
        jpeg = await asyncio.to_thread(encode_jpeg, frame.image)
        height, width = frame.image.shape[:2]
        ref = FrameRef(hashlib.sha256(jpeg).hexdigest(), len(jpeg), width, height, frame.pts,
                       datetime.fromtimestamp(frame.at, UTC).isoformat(timespec="milliseconds"))
        lang = self.language(question)
        url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": _PROMPT[lang].format(name=self.persona.name)},
            {"role": "user", "content": [{"type": "text", "text": question},
                                         {"type": "image_url", "image_url": {"url": url}}]},
        ]
        try:
            text = (await self.client.complete(messages)).strip()
        except Exception as exc:  # EngineError from the client; anything else must not lose the answer either
            log.warning("look at the camera failed: %s", exc)
            return Sight(fallback, False, ref, self.config.model, f"{type(exc).__name__}: {exc}"[:500])
        if not text:
            return Sight(fallback, False, ref, self.config.model, "the look model answered nothing")
        return Sight(text, True, ref, self.config.model)

    def tool(self) -> Any:
        """The ``look_at_camera`` tool for the LLM (its artifact, the frame's reference, goes to the audit only)."""
        from langchain_core.tools import StructuredTool

        async def look_at_camera(question: str) -> tuple[str, dict[str, Any]]:
            sight = await self.look(question)
            content = sight.text if sight.looked else (
                f"You cannot see it ({sight.error}). Tell the customer, in their language: {sight.text}")
            return content, sight.artifact()

        return StructuredTool.from_function(
            coroutine=look_at_camera, name=LOOK_TOOL, response_format="content_and_artifact",
            description="Look through the kiosk's camera at what the customer is showing (a card, a letter, a "
                        "form, a screen) and answer their question about it. question: what they want to know "
                        "about it, in their words.")


# --- the offline answerer's phrases ------------------------------------------------------------------------

_THING = (r"(?:letter|document|card|form|paper|note|bill|page|sign|screen|message|leaflet|envelope|cheque|check"
          r"|receipt|thing|one)")
_EN = re.compile(
    r"^\W*(?:(?:so|ok|okay|hi|hello|please)\W+)*(?:what(?:'s| is) (?:this|that)(?: " + _THING + r")?\W*$"
    r"|what (?:is|are) (?:these|those)\W*$)"
    r"|\b(?:can|could|would|will) you (?:please )?(?:help me )?(?:read|look at|take a look at|have a look at|see"
    r"|tell me what) (?:this|that|these|it\b|my " + _THING + r"|the " + _THING + r")"
    r"|^\W*(?:please\W+)?(?:read|look at|take a look at|have a look at) (?:this|that|these|my " + _THING
    + r"|the " + _THING + r")"
    r"|\bwhat does (?:this|that|it)(?: " + _THING + r")? (?:say|mean)\b"
    r"|\bwhat am i (?:holding|showing)\b|\b(?:see|look at) what i(?:'m| am) (?:holding|showing)\b",
    re.IGNORECASE,
)
_ZH_THING = r"(?:东西|文件|信|卡|纸|单子|表|通知|账单|票)"
_ZH_THIS = r"(?:这|那)(?!个?(?:月|周|星期|次|年|季度|天|笔|段时间))"  # "this month's ..." is not a thing shown
_ZH = re.compile(
    r"(?:看看|看一下|看一看|看下|瞧瞧|瞧一下|读一下|读读|念一下|念念)" + _ZH_THIS
    + r"|^\W*(?:请问)?(?:这|那)(?:个|些|是)?" + _ZH_THING + r"?是(?:什么|啥)(?:东西)?\W*$"
    r"|(?:这|那)(?:封|张|份|个|页)" + _ZH_THING + r".{0,6}(?:写|说|是什么|什么意思)"
    r"|(?:上面|这里|里面)(?:写|说)(?:的|了)?(?:是)?什么"
    r"|你(?:能|可以)?看(?:得)?(?:到|见|清)(?:我手|我拿|" + _ZH_THIS + ")"
)


def is_look_request(question: str) -> bool:
    """Whether ``question`` asks the avatar to look at something shown to the camera (English or Chinese)."""
    text = question.strip()
    return bool(_EN.search(text) or _ZH.search(text))
