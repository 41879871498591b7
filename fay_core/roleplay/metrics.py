"""Speech metrics of a role-play, from what was said and the voice pipeline's timings of each turn.

What is measured is how the conversation went, never who the trainee is: **no emotion or personality inference**
from voice, face or words. The EU AI Act (Art. 5(1)(f)) forbids emotion recognition in workplaces and education,
and scoring interviews is high-risk under its Annex III; these metrics are counts and durations a trainer can
check against the transcript.

Every metric that needs times is ``None`` when the turns it reads have none (a typed session):

- ``talk_share``: the trainee's share of the speaking time (all turns timed), 0-1.
- ``words_per_minute``: the trainee's words per minute of their own speech. A Chinese character counts as a word
  (:func:`fay_core.text.words`), so for Chinese this is characters per minute (about 200-300 in normal speech,
  against 120-160 English words): compare a trainee with themselves, not across languages.
- ``fillers`` (always) and ``fillers_per_minute``: hesitation words in the trainee's turns. English: um, uh, er,
  erm, hmm, "you know", "I mean", and "like" only between commas or before one (", like," / "like, "), since "I
  like" is no filler. Chinese: 嗯, 呃, 那个, 就是 (就是说 counts once), 然后呢. The Chinese list
  over-counts where 就是 / 那个 carry meaning (那个账户): a trend, not an exact figure.
- ``longest_pause_s``: the longest silence between two consecutive turns.
- ``response_latency_mean_s`` / ``response_latency_max_s``: a trainee turn's start minus the end of the avatar
  turn before it (negative when the trainee cut in).
- ``interruptions_by_trainee`` / ``interruptions_by_avatar``: turns that start before the other side's previous
  turn ended (overlapping speech).
"""

from __future__ import annotations

import re
import statistics
from typing import Any

from ..text import words
from .transcript import Transcript

_EN_FILLERS = re.compile(
    r"\b(?:u+m+|u+h+|e+r+m*|h+m+|you know|i mean)\b|,\s*like\s*,|\blike\s*,", re.IGNORECASE)
_ZH_FILLERS = re.compile(r"嗯+|呃+|那个|就是说?|然后呢")


def count_fillers(text: str) -> int:
    """Hesitation words in ``text`` (English and Chinese, see the module docstring)."""
    return len(_EN_FILLERS.findall(text)) + len(_ZH_FILLERS.findall(text))


def speech_metrics(transcript: Transcript) -> dict[str, Any]:
    """The metrics of the module docstring, as a flat JSON-ready mapping (times in seconds, rounded)."""
    turns = transcript.turns
    trainee = [t for t in turns if t.speaker == "trainee"]
    trainee_words = sum(len(words(t.text)) for t in trainee)
    fillers = sum(count_fillers(t.text) for t in trainee)
    all_words = sum(len(words(t.text)) for t in turns)
    out: dict[str, Any] = {
        "turns": len(turns),
        "trainee_turns": len(trainee),
        "trainee_words": trainee_words,
        "trainee_word_share": _r(trainee_words / all_words, 3) if all_words else None,
        "fillers": fillers,
        "duration_s": None,
        "talk_share": None,
        "words_per_minute": None,
        "fillers_per_minute": None,
        "longest_pause_s": None,
        "response_latency_mean_s": None,
        "response_latency_max_s": None,
        "interruptions_by_trainee": None,
        "interruptions_by_avatar": None,
    }
    timed = [t for t in turns if t.timed]
    if not timed:
        return out
    out["duration_s"] = _r(max(t.end_s or 0.0 for t in timed) - min(t.start_s or 0.0 for t in timed))
    trainee_timed = [t for t in trainee if t.timed]
    trainee_s = sum((t.end_s or 0.0) - (t.start_s or 0.0) for t in trainee_timed)
    if len(timed) == len(turns):
        speaking = sum((t.end_s or 0.0) - (t.start_s or 0.0) for t in turns)
        out["talk_share"] = _r(trainee_s / speaking, 3) if speaking > 0 else None
    if trainee_s > 0 and len(trainee_timed) == len(trainee):
        minutes = trainee_s / 60
        out["words_per_minute"] = _r(trainee_words / minutes, 1)
        out["fillers_per_minute"] = _r(fillers / minutes, 2)
    pauses, latencies = [], []
    by_trainee = by_avatar = 0
    pairs_timed = 0
    for prev, cur in zip(turns, turns[1:], strict=False):
        if prev.end_s is None or cur.start_s is None:
            continue
        pairs_timed += 1
        gap = cur.start_s - prev.end_s
        pauses.append(max(gap, 0.0))
        if prev.speaker == "avatar" and cur.speaker == "trainee":
            latencies.append(gap)
        if gap < 0 and prev.speaker != cur.speaker:
            if cur.speaker == "trainee":
                by_trainee += 1
            else:
                by_avatar += 1
    if pairs_timed:
        out["longest_pause_s"] = _r(max(pauses))
        out["interruptions_by_trainee"] = by_trainee
        out["interruptions_by_avatar"] = by_avatar
    if latencies:
        out["response_latency_mean_s"] = _r(statistics.fmean(latencies))
        out["response_latency_max_s"] = _r(max(latencies))
    return out


def _r(value: float, digits: int = 2) -> float:
    return round(value, digits)
