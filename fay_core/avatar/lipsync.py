"""Lip-sync analysis: from speech audio (and word timings, when the TTS gives them) to mouth tracks.

A :class:`SpeechTrack` covers one chunk of synthesized audio at a 10 ms hop: how open the mouth is (from the
loudness envelope, smoothed without phase lag because the whole chunk is known before it plays) and which viseme
shapes it (from the words' letters spread over each word's timing, or, without timings, from the audio's spectrum).

For audio that arrives with no chunk analysis (an engine that publishes no ``SpeechScheduled``), the
:class:`LiveEnvelope` follows the played frames themselves, causally, with a short attack and release.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..events import WordTiming
from .rig import VISEME_INDEX, VISEMES

HOP_S = 0.010  #: analysis hop: 10 ms
_WIN_S = 0.020  #: analysis window: 20 ms

# Letter groups to visemes, longest first. Rough English spelling rules: good enough for a mouth, and no
# pronunciation dictionary to ship.
_GRAPHEMES: tuple[tuple[str, str], ...] = (
    ("tch", "CH"), ("sch", "SS"),
    ("th", "TH"), ("ch", "CH"), ("sh", "CH"), ("ph", "FF"), ("wh", "ou"), ("ck", "kk"), ("ng", "nn"),
    ("qu", "kk"), ("oo", "ou"), ("ee", "ih"), ("ea", "ih"), ("ou", "oh"), ("ow", "oh"), ("ai", "E"),
    ("ay", "E"), ("oi", "oh"), ("oa", "oh"), ("au", "aa"),
    ("a", "aa"), ("e", "E"), ("i", "ih"), ("y", "ih"), ("o", "oh"), ("u", "ou"), ("w", "ou"),
    ("p", "PP"), ("b", "PP"), ("m", "PP"), ("f", "FF"), ("v", "FF"), ("t", "DD"), ("d", "DD"),
    ("k", "kk"), ("g", "kk"), ("c", "kk"), ("q", "kk"), ("x", "kk"), ("s", "SS"), ("z", "SS"), ("j", "CH"),
    ("n", "nn"), ("l", "nn"), ("r", "RR"), ("h", "aa"),
)  # fmt: skip
_LATIN = re.compile(r"[a-z]+")


def word_visemes(word: str) -> list[str]:
    """The visemes of an English word, from its spelling (``"hello"`` → ``aa E nn oh``, doubled letters merged).

    Returns ``[]`` for words with no Latin letters (Chinese, digits): their shapes come from the audio.
    """
    letters = "".join(_LATIN.findall(word.lower()))
    if len(letters) > 3 and letters.endswith("e") and letters[-2] not in "aeiouy":
        letters = letters[:-1]  # a silent final e
    out: list[str] = []
    i = 0
    while i < len(letters):
        for g, v in _GRAPHEMES:
            if letters.startswith(g, i):
                if not out or out[-1] != v:
                    out.append(v)
                i += len(g)
                break
        else:  # pragma: no cover - every Latin letter is in the table
            i += 1
    return out


@dataclass(slots=True)
class SpeechTrack:
    """Mouth tracks of one chunk of speech, starting at ``pts`` (seconds of playout time), one value per hop."""

    turn_id: int
    pts: float
    open: np.ndarray  # float32 0..1
    viseme: np.ndarray  # int8 index into VISEMES
    source: str  # "words" or "audio"

    @property
    def end(self) -> float:
        return self.pts + len(self.open) * HOP_S

    def split(self, at: float) -> tuple[SpeechTrack | None, SpeechTrack | None]:
        """The parts of this track before and from ``at`` (either may be ``None``)."""
        if at <= self.pts:
            return None, self
        if at >= self.end:
            return self, None
        i = int(round((at - self.pts) / HOP_S))
        before = SpeechTrack(self.turn_id, self.pts, self.open[:i], self.viseme[:i], self.source)
        after = SpeechTrack(self.turn_id, self.pts + i * HOP_S, self.open[i:], self.viseme[i:], self.source)
        return (before if i else None), (after if i < len(self.open) else None)

    def at(self, pts: float) -> tuple[float, int, int] | None:
        """``(open, viseme, next_viseme)`` at ``pts``, or ``None`` outside the track."""
        if pts < self.pts or pts >= self.end:
            return None
        i = min(int((pts - self.pts) / HOP_S), len(self.open) - 1)
        j = min(i + 3, len(self.open) - 1)  # coarticulation: the lips prepare the next shape
        return float(self.open[i]), int(self.viseme[i]), int(self.viseme[j])


def _frames(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Overlapping analysis windows (one per hop), centred on each hop."""
    hop = max(1, round(sample_rate * HOP_S))
    win = max(hop, round(sample_rate * _WIN_S))
    n = max(1, math.ceil(len(samples) / hop))
    padded = np.zeros(n * hop + win, dtype=np.float32)
    start = (win - hop) // 2
    padded[start : start + len(samples)] = samples
    idx = np.arange(win)[None, :] + (np.arange(n) * hop)[:, None]
    return padded[idx]


def _smooth(x: np.ndarray, sigma_hops: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing (no lag: peaks stay where the audio's peaks are)."""
    r = max(1, int(3 * sigma_hops))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_hops) ** 2)
    k /= k.sum()
    return np.convolve(np.pad(x, r, mode="edge"), k, mode="valid").astype(np.float32)


def envelope(samples: np.ndarray, sample_rate: int, *, floor_db: float = -50.0, range_db: float = 30.0) -> np.ndarray:
    """Mouth opening 0..1 per 10 ms hop from float samples (-1..1): loudness above a gate, smoothed without lag.

    The reference level is the chunk's loud part (95th percentile), so quiet and loud voices open the mouth alike;
    anything ``range_db`` below it, or below ``floor_db`` dBFS, leaves the mouth closed.
    """
    frames = _frames(samples, sample_rate)
    rms = np.sqrt(np.mean(frames * frames, axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    ref = max(float(np.percentile(db, 95)), floor_db + range_db * 0.5)
    gate = max(floor_db, ref - range_db)
    opening = np.clip((db - gate) / (ref - gate), 0.0, 1.0) ** 1.5
    return np.clip(_smooth(opening, 1.5), 0.0, 1.0)


def audio_visemes(samples: np.ndarray, sample_rate: int, opening: np.ndarray) -> np.ndarray:
    """Viseme per hop from the spectrum alone: hiss → SS, bright voiced → E/ih, dark → oh/ou, else aa/DD."""
    frames = _frames(samples, sample_rate)
    nfft = 1 << (frames.shape[1] - 1).bit_length()
    spec = np.abs(np.fft.rfft(frames * np.hanning(frames.shape[1]), n=nfft, axis=1))
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    power = spec.sum(axis=1) + 1e-9
    centroid = (spec * freqs).sum(axis=1) / power
    zcr = np.mean(np.abs(np.diff(np.signbit(frames).astype(np.int8), axis=1)), axis=1)
    out = np.full(len(opening), VISEME_INDEX["sil"], dtype=np.int8)
    voiced = opening > 0.05
    out[voiced] = VISEME_INDEX["aa"]
    out[voiced & (centroid < 700)] = VISEME_INDEX["oh"]
    out[voiced & (centroid < 450)] = VISEME_INDEX["ou"]
    out[voiced & (centroid > 1600)] = VISEME_INDEX["E"]
    out[voiced & (centroid > 2300)] = VISEME_INDEX["ih"]
    out[voiced & (opening < 0.25) & (centroid >= 700)] = VISEME_INDEX["DD"]
    out[(zcr > 0.25) & (centroid > 3000) & (opening > 0.01)] = VISEME_INDEX["SS"]
    return out


def timed_visemes(words: Sequence[WordTiming], n_hops: int) -> np.ndarray | None:
    """Viseme per hop from word timings (ms from the chunk start), or ``None`` if no word has Latin letters."""
    out = np.full(n_hops, VISEME_INDEX["sil"], dtype=np.int8)
    any_latin = False
    for w in words:
        vis = word_visemes(w.word)
        a = max(0, int(w.start_ms / 1000 / HOP_S))
        b = min(n_hops, max(a + 1, int(math.ceil(w.end_ms / 1000 / HOP_S))))
        if b <= a:
            continue
        if not vis:
            out[a:b] = VISEME_INDEX["aa"]
            continue
        any_latin = True
        edges = np.linspace(a, b, len(vis) + 1).round().astype(int)
        for v, s, e in zip(vis, edges[:-1], edges[1:], strict=True):
            out[s:max(e, s + 1)] = VISEME_INDEX[v]
    return out if any_latin else None


def analyse(
    pcm: bytes, sample_rate: int, *, pts: float, turn_id: int = 0, words: Sequence[WordTiming] = ()
) -> SpeechTrack:
    """The :class:`SpeechTrack` of a chunk of 16-bit mono PCM that plays from ``pts``."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    opening = envelope(samples, sample_rate)
    vis = timed_visemes(words, len(opening)) if words else None
    source = "words"
    if vis is None:
        vis, source = audio_visemes(samples, sample_rate, opening), "audio"
    else:
        # where the words say nothing is said but the audio is loud (timing slack), keep the mouth shaped
        gap = (vis == VISEME_INDEX["sil"]) & (opening > 0.1)
        vis[gap] = VISEME_INDEX["aa"]
    return SpeechTrack(turn_id=turn_id, pts=pts, open=opening, viseme=vis, source=source)


class LiveEnvelope:
    """Causal mouth opening from played frames, for audio that came with no chunk analysis."""

    def __init__(self, attack: float = 0.6, release: float = 0.25) -> None:
        self.attack = attack
        self.release = release
        self.level = 0.0
        self.peak_db = -30.0

    def update(self, pcm: bytes) -> float:
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
        if samples.size == 0:
            return self.level
        db = 10 * math.log10(float(np.mean(samples * samples)) + 1e-12)
        self.peak_db = max(db, self.peak_db - 0.05)  # slow decay of the reference level
        gate = max(-50.0, self.peak_db - 30.0)
        target = min(1.0, max(0.0, (db - gate) / max(1.0, self.peak_db - gate))) ** 1.5
        k = self.attack if target > self.level else self.release
        self.level += k * (target - self.level)
        return self.level


__all__ = ["HOP_S", "LiveEnvelope", "SpeechTrack", "VISEMES", "analyse", "envelope", "word_visemes"]
