"""The animation timeline: one per session, the single source of every avatar renderer's frames.

It listens on the session's bus for :class:`~fay_core.events.SpeechScheduled` (audio chunks stamped with the
playout PTS they will play at, with word timings when the TTS gives them), analyses each chunk into a mouth track
(:mod:`fay_core.avatar.lipsync`), and produces an :class:`~fay_core.avatar.rig.AvatarState` for **every frame
the playout clock releases** (``playout.add_listener``): the state for the PTS being heard, so mouth and sound
leave the server together. Audio that arrives without a chunk analysis is followed from the released frames.

- Idle life (blinks, breathing, head motion, glances) is computed from the same PTS (:mod:`fay_core.avatar.idle`).
- Gaze (``gaze=True``: personas with ``vision.enabled`` and ``vision.gaze``): the head and eyes turn towards the
  visitor's face (:class:`~fay_core.events.FaceTracked`), easing there (``GAZE_TAU_S``) on top of the idle
  motion, and back to the front when the visitor leaves.
- Emotion tags in the agent's text (``[happy]``...) become expressions when that turn's next sentence plays, and
  fade back to neutral after the turn falls silent.
- ``PlayoutPaused``/``PlayoutResumed`` (a possible barge-in that was not one): the mouth rests with the silence,
  and the tracks not yet played move by the resume's ``shift_s``.
- :class:`~fay_core.events.Interrupted` discards every pending mouth track of the interrupted turn (the playout
  flushes its audio at the same time), and the first frame after it is flagged so clients reset smoothing.
- Until it is handed a playout (text chat, or before the voice is attached) an internal 50 Hz clock keeps the
  idle life going; :meth:`AnimationTimeline.follow` (called by the session's assembly when the voice starts)
  stops that clock and follows the playout's frames from then on.

Frames travel by typed listeners only, never by the bus: the playout calls :meth:`AnimationTimeline.on_audio`
for each released audio frame, and the timeline calls each renderer's listener (``add_listener(cb)``)
synchronously with the frame's state, in the playout's task: listeners must be cheap (quantize and hand on;
heavy drawing belongs in the renderer's own task).
"""

from __future__ import annotations

import asyncio
import logging
import math
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..bus import Bus, Subscription
from ..events import (
    AgentTextDelta,
    ErrorRaised,
    FaceTracked,
    Interrupted,
    PlayoutPaused,
    PlayoutResumed,
    SpeechScheduled,
    UserLeft,
)
from .emotion import NEUTRAL, TagScanner
from .idle import IdleLife
from .lipsync import HOP_S, LiveEnvelope, SpeechTrack, analyse
from .rig import EXPRESSIONS, VISEME_INDEX, AvatarState

if TYPE_CHECKING:
    from ..voice.playout import Playout

log = logging.getLogger(__name__)

#: a renderer's listener: called with the state of every frame
StateListener = Callable[[AvatarState], None]
FRAME_S = 0.020  #: the internal clock's frame (the playout's frame is 20 ms too)
SILENCE_DBFS = -55.0  #: a released frame quieter than this closes the mouth whatever the track says
EXPRESSION_TAU_S = 0.25
EXPRESSION_HOLD_S = 1.5
#: how far the head turns (degrees) towards a face at the frame's edge, sideways and up/down
GAZE_YAW_DEG = 20.0
GAZE_PITCH_DEG = 10.0
#: how far the eyes turn (-1..1) towards a face at the frame's edge
GAZE_EYES = 0.5
GAZE_TAU_S = 0.35


class AnimationTimeline:
    """The lip-sync/animation timeline of one session's bus. See the module docstring."""

    def __init__(self, bus: Bus, *, seed: int | None = None, head_amplitude_deg: float = 2.5,
                 gaze: bool = False) -> None:
        self.bus = bus
        self.gaze = gaze
        #: where the visitor's face is (x, y in -1..1 of the camera frame), and where the avatar looks now
        self.look_target = np.zeros(2, dtype=np.float32)
        self.look = np.zeros(2, dtype=np.float32)
        if seed is None:
            seed = zlib.crc32(bus.session_id.encode())
        self.idle = IdleLife(seed, head_amplitude_deg=head_amplitude_deg)
        self.tracks: list[SpeechTrack] = []
        self.listeners: list[StateListener] = []
        self.live = LiveEnvelope()
        self.frames = 0
        self.last: AvatarState | None = None
        self._tags = TagScanner()
        self._pending: dict[int, list[str]] = {}
        self._target = np.zeros(len(EXPRESSIONS), dtype=np.float32)
        self._expr = np.zeros(len(EXPRESSIONS), dtype=np.float32)
        self._current: SpeechTrack | None = None
        self._last_speech_pts = -1e9
        self._last_pts: float | None = None
        self._reset = False
        self._playout: Playout | None = None
        self._subs: list[Subscription] = []
        self._clock: asyncio.Task[None] | None = None
        self._listener_failed: set[int] = set()
        self._stopped = False

    # --- wiring -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe to the bus and run the internal clock until :meth:`follow` hands over a playout."""
        bus = self.bus
        self._subs = [
            bus.subscribe(self._on_speech, SpeechScheduled, name="avatar.timeline.speech"),
            bus.subscribe(self._on_interrupted, Interrupted, name="avatar.timeline.interrupt", drop_stale=False),
            bus.subscribe(self._on_text, AgentTextDelta, name="avatar.timeline.text"),
            bus.subscribe(self._on_pause, PlayoutPaused, PlayoutResumed, name="avatar.timeline.pause",
                          drop_stale=False),
        ]
        if self.gaze:
            self._subs.append(bus.subscribe(self._on_face, FaceTracked, UserLeft, name="avatar.timeline.gaze",
                                            drop_stale=False))
        if self._playout is None:
            self._clock = bus.spawn(self._run_clock(), name="avatar.timeline.clock")

    def follow(self, playout: Playout) -> None:
        """Make frames from ``playout``'s released audio from now on (the internal clock stops)."""
        if self._playout is playout or self._stopped:
            return
        if self._playout is not None:
            self._playout.remove_listener(self.on_audio)
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None
        self._playout = playout
        playout.add_listener(self.on_audio)

    async def stop(self) -> None:
        """Stop producing frames and leave the bus and the playout."""
        self._stopped = True
        if self._playout is not None:
            self._playout.remove_listener(self.on_audio)
        self._playout = None
        if self._clock is not None:
            self._clock.cancel()
            await asyncio.gather(self._clock, return_exceptions=True)
        for sub in self._subs:
            await self.bus.unsubscribe(sub)
        self._subs.clear()

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(state)`` for every frame from now on."""
        self.listeners.append(listener)

    def remove_listener(self, listener: StateListener) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    async def _run_clock(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        n = 0
        while not self._stopped and self._playout is None:
            self.on_audio(b"", n * FRAME_S, 0)
            n += 1
            delay = t0 + n * FRAME_S - loop.time()
            if delay < -0.2:  # the loop stalled: re-anchor rather than burst
                t0 = loop.time() - n * FRAME_S
            await asyncio.sleep(max(0.0, delay))

    # --- bus events -------------------------------------------------------------------------------------

    def _on_speech(self, ev: SpeechScheduled) -> None:
        if not ev.pcm:
            return
        track = analyse(ev.pcm, ev.sample_rate, pts=ev.pts, turn_id=ev.turn_id, words=ev.words)
        self.add_track(track)

    def add_track(self, track: SpeechTrack) -> None:
        """Schedule a mouth track (normally built from a ``SpeechScheduled`` event)."""
        tracks = self.tracks
        tracks.append(track)
        if len(tracks) > 1 and tracks[-2].pts > track.pts:
            tracks.sort(key=lambda t: t.pts)

    def _on_interrupted(self, ev: Interrupted) -> None:
        self.interrupt(ev.turn_id)

    def interrupt(self, turn_id: int = 0) -> int:
        """Discard the pending mouth tracks of ``turn_id`` and older turns (all if 0); return how many."""
        before = len(self.tracks)
        self.tracks = [t for t in self.tracks if turn_id and t.turn_id > turn_id]
        self._current = None
        self._pending = {k: v for k, v in self._pending.items() if turn_id and k > turn_id}
        self.live.level = 0.0
        self._reset = True
        self._last_speech_pts = -1e9
        return before - len(self.tracks)

    def _on_pause(self, ev: PlayoutPaused | PlayoutResumed) -> None:
        if isinstance(ev, PlayoutResumed) and ev.shift_s > 0:
            self.shift(ev.pts - ev.shift_s, ev.shift_s)

    def shift(self, paused_at: float, shift_s: float) -> None:
        """The playout paused at ``paused_at`` and resumed ``shift_s`` later: what was not played moves with it."""
        out: list[SpeechTrack] = []
        for tr in self.tracks:
            before, after = tr.split(paused_at)
            if before is not None:
                out.append(before)
            if after is not None:
                after.pts += shift_s
                out.append(after)
        out.sort(key=lambda t: t.pts)
        self.tracks = out
        self._current = None

    def _on_face(self, ev: FaceTracked | UserLeft) -> None:
        if isinstance(ev, UserLeft):
            self.look_target[:] = 0.0
        elif ev.face is not None:  # (a frame without a face keeps the last place until the visitor leaves)
            self.look_target[:] = (ev.face.x, ev.face.y)

    def _on_text(self, ev: AgentTextDelta) -> None:
        for tag in self._tags.feed(ev.text):
            if self._playout is None:
                self._set_expression(tag)  # no audio to wait for
            else:
                self._pending.setdefault(ev.turn_id, []).append(tag)

    def _set_expression(self, name: str) -> None:
        self._target[:] = 0.0
        if name != NEUTRAL:
            self._target[EXPRESSIONS.index(name)] = 1.0

    # --- frames -----------------------------------------------------------------------------------------

    def on_audio(self, pcm: bytes, pts: float, turn_id: int = 0) -> None:
        """The playout listener: make the state of the audio frame released at ``pts``; hand it to the listeners."""
        if self._stopped:
            return
        state = self.state_at(pts, pcm=pcm, turn_id=turn_id)
        self.frames += 1
        for listener in self.listeners:
            try:
                listener(state)
            except Exception as exc:  # a broken renderer must never break the audio
                if id(listener) not in self._listener_failed:
                    self._listener_failed.add(id(listener))
                    log.exception("avatar listener %r failed", listener)
                    self.bus.publish(ErrorRaised.of(exc, session_id=self.bus.session_id, source="avatar"))

    def _track_at(self, t: float) -> SpeechTrack | None:
        tracks = self.tracks
        # drop tracks that ended more than a second ago
        while tracks and tracks[0].end < t - 1.0:
            tracks.pop(0)
        for tr in tracks:
            if tr.pts <= t < tr.end:
                return tr
            if tr.pts > t:
                break
        return None

    def _fell_silent(self, t: float) -> bool:
        if self._playout is None or t - self._last_speech_pts <= EXPRESSION_HOLD_S:
            return False
        return not any(tr.pts > t for tr in self.tracks)

    def state_at(
        self, pts: float, *, pcm: bytes | None = None, turn_id: int = 0, frame_s: float = FRAME_S
    ) -> AvatarState:
        """The state for the audio frame that starts at ``pts`` (evaluated at the frame's centre)."""
        t = pts + frame_s / 2
        st = AvatarState(pts=pts, turn_id=turn_id)
        track = self._track_at(t)
        opening = 0.0
        if track is not None:
            got = track.at(t)
            assert got is not None
            opening, v, vn = got
            if track is not self._current:
                self._current = track
                self._last_speech_pts = t
                pending = self._pending.get(track.turn_id)
                if pending:
                    self._set_expression(pending.pop(0))
            w = st.visemes
            if v == VISEME_INDEX["sil"]:
                w[vn] = 0.5 * min(1.0, opening * 4)
            else:
                w[v] += 0.75
                w[vn] += 0.25
            st.turn_id = turn_id or track.turn_id
        elif pcm:
            opening = self.live.update(pcm)
            if opening > 0.05:
                st.visemes[VISEME_INDEX["aa"]] = 1.0
        if pcm and opening > 0.0 and _dbfs(pcm) < SILENCE_DBFS:
            opening = 0.0
        st.mouth_open = opening
        st.speaking = opening > 0.02 or (track is not None and track.source == "words" and opening > 0.0)
        if st.speaking:
            self._last_speech_pts = t
        elif track is None and self._target.any() and self._fell_silent(t):
            self._target[:] = 0.0  # the turn fell silent: back to neutral
        # expressions ease towards their target
        dt = 0.0 if self._last_pts is None else min(0.1, max(0.0, pts - self._last_pts))
        self._last_pts = pts
        k = 1.0 - math.exp(-dt / EXPRESSION_TAU_S) if dt else 1.0 if self.frames == 0 else 0.0
        self._expr += k * (self._target - self._expr)
        st.expressions = self._expr.copy()
        pose = self.idle.pose(t, opening)
        st.blink_left = st.blink_right = pose.blink
        st.breath = pose.breath
        st.head_pitch, st.head_yaw, st.head_roll = pose.pitch, pose.yaw, pose.roll
        st.gaze_x, st.gaze_y = pose.gaze_x, pose.gaze_y
        if self.gaze:
            g = 1.0 - math.exp(-dt / GAZE_TAU_S) if dt else 0.0
            self.look += g * (self.look_target - self.look)
            # the camera sees the visitor as the avatar would: a face on the frame's left is on the avatar's left
            # (yaw and gaze_x left +), one high in the frame is up (pitch and gaze_y up +)
            lx, ly = float(self.look[0]), float(self.look[1])
            st.head_yaw += -lx * GAZE_YAW_DEG
            st.head_pitch += -ly * GAZE_PITCH_DEG
            st.gaze_x = max(-1.0, min(1.0, 0.4 * st.gaze_x - lx * GAZE_EYES))
            st.gaze_y = max(-1.0, min(1.0, 0.4 * st.gaze_y - ly * GAZE_EYES))
        st.reset, self._reset = self._reset, False
        self.last = st
        return st


def _dbfs(pcm: bytes) -> float:
    s = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32)
    if s.size == 0:
        return -120.0
    return 10 * math.log10(float(np.mean(s * s)) / (32768.0 * 32768.0) + 1e-12)


__all__ = ["FRAME_S", "HOP_S", "AnimationTimeline", "StateListener"]
