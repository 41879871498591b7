"""Role-play training: transcripts, speech metrics, and rubric scores with verified evidence.

::

    transcript = Transcript.load("session.json")
    card = await score_transcript(persona, transcript, embedder=resolve_embedder(settings, plugins))
    print(card.total, [(c.criterion, c.score) for c in card.criteria])

- :mod:`.transcript`: the turns (speaker, text, times) and their JSON form.
- :mod:`.metrics`: talk share, pace, fillers, pauses, latency, interruptions (no emotion inference).
- :mod:`.evidence`: finding a rubric's checks and avoid phrases in the trainee's words (embedder + lexical).
- :mod:`.scorecard`: the scorecard (criteria, evidence, metrics, total) and its JSON.
- :mod:`.scoring`: how a criterion's score follows from its checks, offline.
- :mod:`.judge`: the LLM judge, whose quotes are verified against the transcript.
"""

from __future__ import annotations

from .metrics import speech_metrics
from .scorecard import CheckResult, CriterionScore, Scorecard, Violation
from .scoring import score_transcript
from .transcript import Transcript, TranscriptTurn

__all__ = [
    "CheckResult",
    "CriterionScore",
    "Scorecard",
    "Transcript",
    "TranscriptTurn",
    "Violation",
    "score_transcript",
    "speech_metrics",
]
