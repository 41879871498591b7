"""Recording a voice session, only with the customer's consent: both sides, one labelled stereo WAV.

Nothing is recorded unless the persona offers it (``recording.enabled``) *and* the customer accepted its notice in
this session (``POST /api/sessions/{id}/consent`` or the data channel's ``{"type": "consent", "recording":
true}``); each answer is audited (record kind ``consent``). Declining or withdrawing stops the recording at once.

The file, ``<data_dir>/recordings/<tenant>/<session_id>.wav`` (``<session_id>-2.wav`` ... after a withdrawal and
a new consent), is 16-bit stereo at 16 kHz: left the customer's microphone as the voice pipeline receives it
(after resampling), right the avatar's speech as the playout clock releases it. Both are placed on the session's
monotonic clock (a side that falls more than :data:`MAX_DRIFT_S` behind it is padded with silence), so the two
sides line up within that. It carries the implicit AIGC label (:mod:`fay_core.labels`) and is audited (record
kind ``recording``) when it is finished.

It is written as it grows, about once a second, :data:`LAG_S` behind the clock: a crash loses at most the last
``LAG_S`` + 1 s, and leaves a file that plays and keeps its label but whose sizes and digest were never filled in
(:func:`fay_core.labels.verify` says so).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .disclosure import notice_text
from .errors import RecordingNotOffered
from .labels import AIGCLabel, WavWriter
from .persona import Persona
from .record import SessionRecord
from .voice.audio import resample

log = logging.getLogger(__name__)

#: the recording's sample rate (the microphone's rate inside Fay)
RATE = 16000
#: how far behind the clock the file is written, so that late frames still find their place
LAG_S = 0.5
#: a side this far behind the clock is padded with silence up to it
MAX_DRIFT_S = 0.1
FLUSH_EVERY_S = 1.0


def tenant_folder(tenant: str) -> str:
    """``tenant`` as a single, safe folder name."""
    return re.sub(r"[^\w.-]", "_", tenant).lstrip(".")[:64] or "default"


class _Side:
    """One channel: samples from absolute position ``start`` (at :data:`RATE`, from the recording's start), kept
    as the frames that came (joined once per flush, not once per frame)."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.length = 0
        self.start = 0

    @property
    def end(self) -> int:
        return self.start + self.length

    def put(self, samples: np.ndarray, at: int) -> None:
        gap = at - self.end
        if gap > MAX_DRIFT_S * RATE:  # this side fell behind the clock (a gap in its frames): silence up to it
            self.parts.append(np.zeros(gap, np.int16))
            self.length += gap
        self.parts.append(samples)
        self.length += len(samples)

    def take(self, upto: int) -> np.ndarray:
        """Samples ``[start, upto)``, padded with silence where this side has none."""
        n = max(upto - self.start, 0)
        buf = np.concatenate(self.parts) if self.parts else np.zeros(0, np.int16)
        out, rest = buf[:n], buf[n:]
        if len(out) < n:
            out = np.concatenate([out, np.zeros(n - len(out), np.int16)])
        self.parts = [rest] if len(rest) else []
        self.length = len(rest)
        self.start = max(upto, self.start)
        return out


class SessionRecorder:
    """The consent state and, while consented, the recording of one session.

    Its two listeners are attached by the assembly: :meth:`on_customer` to the voice pipeline's input,
    :meth:`on_avatar` to its playout. They return at once while nothing is being recorded.
    """

    def __init__(self, session_id: str, persona: Persona, record: SessionRecord, folder: Callable[[], Path],
                 tenant: Callable[[], str]) -> None:
        self.session_id = session_id
        self.enabled = persona.recording.enabled
        self.notice = notice_text(persona)
        self.record = record
        self._folder = folder
        self._tenant = tenant
        #: the customer's latest answer: ``None`` (not asked or not answered), True, False
        self.consented: bool | None = None
        self.files: list[Path] = []
        self._writer: WavWriter | None = None
        self._t0 = 0.0
        self._left = _Side()
        self._right = _Side()
        self._flushed_at = 0.0

    @property
    def active(self) -> bool:
        """Whether audio is being recorded now."""
        return self._writer is not None

    def consent(self, recording: bool, via: str) -> None:
        """The customer accepted (``True``) or declined/withdrew (``False``) the notice, ``via`` a channel.

        Raises :class:`~fay_core.errors.RecordingNotOffered` if the persona does not record, and
        :class:`~fay_core.errors.AuditUnavailable` if the answer cannot be audited (then nothing starts).
        """
        if not self.enabled:
            raise RecordingNotOffered("this persona does not record (recording.enabled is off)")
        self.record.consent(recording, self.notice, via)
        self.consented = recording
        if recording:
            self._start()
        else:
            self.stop()

    def _start(self) -> None:
        if self._writer is not None:
            return
        tenant = self._tenant()
        folder = self._folder() / tenant_folder(tenant)
        n = len(self.files) + 1
        path = folder / (f"{self.session_id}.wav" if n == 1 else f"{self.session_id}-{n}.wav")
        self._writer = WavWriter(path, RATE, 2, AIGCLabel.for_session(self.session_id, tenant))
        self.files.append(path)
        self._t0 = self._flushed_at = time.monotonic()
        self._left, self._right = _Side(), _Side()
        log.info("session %s: recording to %s", self.session_id, path)

    def _pos(self, t: float) -> int:
        return max(int(round((t - self._t0) * RATE)), 0)

    def on_customer(self, pcm: bytes, ts: float) -> None:
        """A microphone frame at :data:`RATE` (16-bit mono), received at monotonic time ``ts`` (its end)."""
        if self._writer is None or not pcm:
            return
        samples = np.frombuffer(pcm, np.int16)
        self._left.put(samples, self._pos(ts) - len(samples))

    def on_avatar(self, pcm: bytes, pts: float, turn_id: int, *, rate: int = 48000) -> None:
        """A playout frame (16-bit mono at ``rate``), released now."""
        if self._writer is None:
            return
        now = time.monotonic()
        if rate == 3 * RATE and len(pcm) % 6 == 0:  # the playout's rate: the mean of each three samples
            x = np.frombuffer(pcm, np.int16)
            samples = ((x[0::3].astype(np.int32) + x[1::3] + x[2::3]) // 3).astype(np.int16)
        else:
            samples = np.frombuffer(resample(pcm, rate, RATE), np.int16)
        self._right.put(samples, self._pos(now))
        if now - self._flushed_at >= FLUSH_EVERY_S:
            self._flush(self._pos(now - LAG_S))

    def _flush(self, upto: int) -> None:
        writer = self._writer
        if writer is None:
            return
        self._flushed_at = time.monotonic()
        upto = max(upto, self._left.start)
        left, right = self._left.take(upto), self._right.take(upto)
        if not len(left):
            return
        stereo = np.empty((len(left), 2), np.int16)
        stereo[:, 0], stereo[:, 1] = left, right
        try:
            writer.write(stereo.tobytes())
        except OSError as exc:  # a full disk ends the recording, not the conversation
            log.error("session %s: recording to %s failed: %s", self.session_id, writer.path, exc)
            self._writer = None

    def stop(self) -> Path | None:
        """Finish the recording in progress, if any (what is buffered is written): its file, or ``None``."""
        writer = self._writer
        if writer is None:
            return None
        self._flush(max(self._left.end, self._right.end))
        self._writer = None
        try:
            label = writer.close()
        except OSError as exc:
            log.error("session %s: recording %s could not be finished: %s", self.session_id, writer.path, exc)
            return None
        if not writer.bytes_written:  # consent in a session that never had audio (text only): no empty file
            writer.path.unlink(missing_ok=True)
            self.files.remove(writer.path)
            return None
        self.record.recorded(str(writer.path), writer.seconds, label.produce_id)
        log.info("session %s: recorded %.1f s to %s", self.session_id, writer.seconds, writer.path)
        return writer.path

    def close(self) -> None:
        """The session's end: finish the file."""
        self.stop()


def offer(recorder: SessionRecorder | None) -> dict[str, Any]:
    """What a client needs to ask for consent (``ready``, ``POST /api/sessions``): ``{"enabled", "notice"}``."""
    return {"enabled": False} if recorder is None else {"enabled": True, "notice": recorder.notice}


def state(recorder: SessionRecorder | None) -> dict[str, Any]:
    """``{"enabled", "consented", "active"}``: whether the persona records, the customer agreed, audio is written."""
    if recorder is None:
        return {"enabled": False, "consented": False, "active": False}
    return {"enabled": True, "consented": bool(recorder.consented), "active": recorder.active}
