"""Live2D (Cubism) parameters from the animation state.

The channel names are Cubism's standard parameter ids, which most models (Haru, Hiyori, Mao, the sample models and
models made from the official template) use; a model that lacks one simply ignores it in the viewer. Ranges are
Cubism's usual ones: angles in degrees, eye openness 0 (closed) .. 1 (open), mouth form -1 (round/sad) .. 1 (smile).
"""

from __future__ import annotations

import numpy as np

from .rig import EXPRESSIONS, AvatarState
from .stream import Channel

LIVE2D_CHANNELS: tuple[Channel, ...] = (
    Channel("ParamAngleX", -30, 30),
    Channel("ParamAngleY", -30, 30),
    Channel("ParamAngleZ", -30, 30),
    Channel("ParamBodyAngleX", -10, 10),
    Channel("ParamEyeLOpen", 0, 2),
    Channel("ParamEyeROpen", 0, 2),
    Channel("ParamEyeLSmile", 0, 1),
    Channel("ParamEyeRSmile", 0, 1),
    Channel("ParamEyeBallX", -1, 1),
    Channel("ParamEyeBallY", -1, 1),
    Channel("ParamBrowLY", -1, 1),
    Channel("ParamBrowRY", -1, 1),
    Channel("ParamBrowLForm", -1, 1),
    Channel("ParamBrowRForm", -1, 1),
    Channel("ParamMouthOpenY", 0, 1),
    Channel("ParamMouthForm", -1, 1),
    Channel("ParamCheek", 0, 1),
    Channel("ParamTere", 0, 1),
    Channel("ParamBreath", 0, 1),
)
_E = {name: i for i, name in enumerate(EXPRESSIONS)}


def live2d_values(state: AvatarState) -> np.ndarray:
    """The values of :data:`LIVE2D_CHANNELS` for ``state``."""
    ex = state.expressions
    happy, sad, surprised = ex[_E["happy"]], ex[_E["sad"]], ex[_E["surprised"]]
    angry, thinking, concerned = ex[_E["angry"]], ex[_E["thinking"]], ex[_E["concerned"]]
    wide = 0.4 * surprised
    squint = 0.35 * happy + 0.2 * angry
    eye_l = (1.0 - state.blink_left) * (1.0 + wide - squint)
    eye_r = (1.0 - state.blink_right) * (1.0 + wide - squint)
    brow_y = 0.7 * surprised + 0.3 * sad + 0.3 * concerned - 0.6 * angry - 0.2 * thinking
    brow_form = 0.5 * happy - 0.7 * angry - 0.5 * sad - 0.3 * concerned
    # Cubism's mouth-open parameter reads best a bit larger than the jaw weight
    mouth = min(1.0, state.mouth_open * 1.15) if state.speaking else 0.0
    return np.array(
        [
            state.head_yaw,
            state.head_pitch,
            state.head_roll,
            state.head_yaw * 0.3,
            eye_l,
            eye_r,
            happy * 0.8,
            happy * 0.8,
            state.gaze_x,
            state.gaze_y,
            brow_y,
            brow_y,
            brow_form,
            brow_form,
            mouth + 0.1 * surprised,
            state.mouth_form,
            happy * 0.5,
            happy * 0.3,
            state.breath,
        ],
        dtype=np.float32,
    )
