"""A finished role-play conversation: who said what, and when, as the scorer and the report read it.

The JSON form (what ``fay roleplay score`` reads and the scenario runner writes)::

    {"turns": [{"speaker": "avatar", "text": "Tell me about yourself.", "start_s": 0.0, "end_s": 2.1},
               {"speaker": "trainee", "text": "I have worked in a call centre for three years.",
                "start_s": 2.9, "end_s": 6.4}]}

``start_s``/``end_s`` are seconds from the start of the session (from the voice pipeline's timings); either may be
missing (a typed session), and then the speech metrics that need them are ``null``. Other keys, at the top or in a
turn, are ignored, so a transcript can carry its own annotations. Bad input raises
:class:`~fay_core.errors.TranscriptError` naming the turn index and the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import TranscriptError

Speaker = Literal["trainee", "avatar"]
SPEAKERS: tuple[Speaker, ...] = ("trainee", "avatar")
#: the largest transcript file read (a two-hour session is well under 1 MB)
MAX_BYTES = 8 * 2**20


@dataclass(frozen=True)
class TranscriptTurn:
    """One turn: the trainee's or the avatar's, with its times in seconds from the session's start if known."""

    speaker: Speaker
    text: str
    start_s: float | None = None
    end_s: float | None = None

    @property
    def timed(self) -> bool:
        """Both times are known."""
        return self.start_s is not None and self.end_s is not None

    def to_dict(self) -> dict[str, Any]:
        return {"speaker": self.speaker, "text": self.text, "start_s": self.start_s, "end_s": self.end_s}


@dataclass
class Transcript:
    """The turns of a session, in order."""

    turns: list[TranscriptTurn]

    @classmethod
    def from_dict(cls, data: Any, source: str = "transcript") -> Transcript:
        """Read the JSON form; :class:`TranscriptError` names ``source``, the turn and the field at fault."""
        if not isinstance(data, dict):
            raise TranscriptError(f"{source}: a transcript is a JSON object {{\"turns\": [...]}}, "
                                  f"not {type(data).__name__}")
        turns = data.get("turns")
        if not isinstance(turns, list):
            raise TranscriptError(f"{source}: turns: expected a list of turns ({{\"speaker\": \"trainee\"|\"avatar\", "
                                  "\"text\": ..., \"start_s\": ..., \"end_s\": ...})")
        return cls([_turn(raw, i, source) for i, raw in enumerate(turns)])

    @classmethod
    def load(cls, path: Path | str) -> Transcript:
        """Read a transcript JSON file."""
        path = Path(path)
        try:
            if path.stat().st_size > MAX_BYTES:
                raise TranscriptError(f"{path}: over {MAX_BYTES // 2**20} MB: not a transcript")
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TranscriptError(f"{path}: no such transcript file") from None
        except IsADirectoryError:
            raise TranscriptError(f"{path}: is a folder, not a transcript file") from None
        except UnicodeDecodeError as exc:
            raise TranscriptError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TranscriptError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
        except RecursionError:
            raise TranscriptError(f"{path}: nested too deeply") from None
        return cls.from_dict(data, str(path))

    def to_dict(self) -> dict[str, Any]:
        return {"turns": [t.to_dict() for t in self.turns]}

    def of(self, speaker: Speaker) -> list[tuple[int, TranscriptTurn]]:
        """The ``(index, turn)`` pairs of one speaker."""
        return [(i, t) for i, t in enumerate(self.turns) if t.speaker == speaker]


def _turn(raw: Any, i: int, source: str) -> TranscriptTurn:
    where = f"{source}: turns[{i}]"
    if not isinstance(raw, dict):
        raise TranscriptError(f"{where}: expected an object {{\"speaker\": ..., \"text\": ...}}, "
                              f"not {type(raw).__name__}")
    speaker = raw.get("speaker")
    if speaker not in SPEAKERS:
        shown = "missing" if speaker is None else f"{speaker!r} is not a speaker"
        raise TranscriptError(f"{where}.speaker: {shown} (use 'trainee' or 'avatar')")
    text = raw.get("text")
    if not isinstance(text, str):
        shown = "missing" if text is None else f"expected a string, not {type(text).__name__}"
        raise TranscriptError(f"{where}.text: {shown}")
    start = _seconds(raw.get("start_s"), f"{where}.start_s")
    end = _seconds(raw.get("end_s"), f"{where}.end_s")
    if start is not None and end is not None and end < start:
        raise TranscriptError(f"{where}.end_s: {end:g} is before start_s {start:g}")
    return TranscriptTurn(speaker, text, start, end)


def _seconds(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TranscriptError(f"{where}: expected seconds (a number) or null, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise TranscriptError(f"{where}: {value!r} is not a time (seconds from the session's start, 0 or more)")
    return float(value)
