"""The avatar's rig: ARKit-52 blendshape names, the viseme set, and how visemes and expressions move the face.

Everything the timeline produces is an :class:`AvatarState`: renderer-neutral numbers (mouth open, viseme
weights, blinks, head angles, expression weights). Each renderer maps it to its own parameters:
:func:`arkit_weights` for the 3D stream, :mod:`fay_core.avatar.live2d` for Cubism models, the portrait for video.

Visemes are the 15 of the Oculus/Meta lip-sync set (``sil PP FF TH DD kk CH SS nn RR aa E ih oh ou``), which the
usual ARKit avatars (Ready Player Me, TalkingHead's GLBs) also carry as morph targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Apple ARKit's 52 face blendshapes, in ARKit's documented order.
ARKIT_52: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose",
    "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)  # fmt: skip
ARKIT_INDEX = {name: i for i, name in enumerate(ARKIT_52)}

#: Head rotation channels appended after the 52 blendshapes in the 3D stream (degrees).
HEAD_CHANNELS: tuple[str, ...] = ("headPitch", "headYaw", "headRoll")
HEAD_RANGE_DEG = 30.0

#: The Oculus viseme set; index 0 is silence.
VISEMES: tuple[str, ...] = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou")
VISEME_INDEX = {name: i for i, name in enumerate(VISEMES)}

#: Expressions an LLM may ask for with a tag such as ``[happy]`` (see :mod:`fay_core.avatar.emotion`).
EXPRESSIONS: tuple[str, ...] = ("happy", "sad", "surprised", "angry", "thinking", "concerned")


def _sym(**weights: float) -> dict[str, float]:
    """Expand ``mouthSmile=0.5`` into ``mouthSmileLeft``/``mouthSmileRight`` (names without a side stay as is)."""
    out: dict[str, float] = {}
    for name, w in weights.items():
        if name in ARKIT_INDEX:
            out[name] = w
        else:
            for side in ("Left", "Right"):
                if name + side not in ARKIT_INDEX:
                    raise KeyError(f"{name} is not an ARKit blendshape (nor {name}Left/Right)")
                out[name + side] = w
    return out


#: Mouth shape of each viseme at full loudness. ``jawOpen`` is scaled by the audio envelope at run time.
VISEME_SHAPES: dict[str, dict[str, float]] = {
    "sil": {},
    "PP": _sym(mouthClose=0.35, mouthPress=0.5, mouthRollLower=0.3, mouthRollUpper=0.25, jawOpen=0.08),
    "FF": _sym(mouthRollLower=0.55, mouthUpperUp=0.25, mouthFunnel=0.1, jawOpen=0.15),
    "TH": _sym(tongueOut=0.35, mouthStretch=0.15, jawOpen=0.3),
    "DD": _sym(mouthStretch=0.25, mouthShrugUpper=0.1, jawOpen=0.35),
    "kk": _sym(mouthStretch=0.3, jawOpen=0.4),
    "CH": _sym(mouthFunnel=0.55, mouthPucker=0.25, jawOpen=0.3),
    "SS": _sym(mouthStretch=0.45, mouthSmile=0.2, jawOpen=0.18),
    "nn": _sym(mouthStretch=0.15, mouthClose=0.05, jawOpen=0.3),
    "RR": _sym(mouthPucker=0.45, mouthFunnel=0.35, jawOpen=0.3),
    "aa": _sym(mouthLowerDown=0.35, mouthFunnel=0.05, jawOpen=0.85),
    "E": _sym(mouthStretch=0.4, mouthSmile=0.2, mouthLowerDown=0.2, jawOpen=0.55),
    "ih": _sym(mouthStretch=0.3, mouthSmile=0.3, jawOpen=0.45),
    "oh": _sym(mouthFunnel=0.6, mouthPucker=0.2, jawOpen=0.65),
    "ou": _sym(mouthPucker=0.8, mouthFunnel=0.4, jawOpen=0.35),
}

#: Mouth form for 2D and Live2D: +1 wide (smile-like), -1 round (pucker), per viseme.
VISEME_FORM: dict[str, float] = {
    "sil": 0.0, "PP": 0.1, "FF": 0.2, "TH": 0.2, "DD": 0.3, "kk": 0.3, "CH": -0.6, "SS": 0.7, "nn": 0.2,
    "RR": -0.5, "aa": 0.1, "E": 0.6, "ih": 0.5, "oh": -0.6, "ou": -0.9,
}  # fmt: skip

#: Expression shapes at full weight.
EXPRESSION_SHAPES: dict[str, dict[str, float]] = {
    "happy": _sym(mouthSmile=0.65, cheekSquint=0.35, eyeSquint=0.25, mouthDimple=0.2),
    "sad": _sym(mouthFrown=0.5, browInnerUp=0.6, mouthShrugLower=0.2, eyeLookDown=0.2),
    "surprised": _sym(browInnerUp=0.7, browOuterUp=0.6, eyeWide=0.55, jawOpen=0.12),
    "angry": _sym(browDown=0.7, noseSneer=0.35, mouthPress=0.35, eyeSquint=0.3),
    "thinking": _sym(browDown=0.25, eyeLookUp=0.35, mouthPress=0.25, browOuterUp=0.15),
    "concerned": _sym(browInnerUp=0.5, mouthFrown=0.2, mouthPress=0.2),
}
EXPRESSION_FORM: dict[str, float] = {"happy": 0.8, "sad": -0.4, "surprised": -0.2, "angry": -0.3,
                                     "thinking": -0.1, "concerned": -0.2}  # fmt: skip


def _matrix(shapes: dict[str, dict[str, float]], order: tuple[str, ...]) -> np.ndarray:
    m = np.zeros((len(order), len(ARKIT_52)), dtype=np.float32)
    for i, name in enumerate(order):
        for bs, w in shapes[name].items():
            m[i, ARKIT_INDEX[bs]] = w
    return m


VISEME_MATRIX = _matrix(VISEME_SHAPES, VISEMES)
EXPRESSION_MATRIX = _matrix(EXPRESSION_SHAPES, EXPRESSIONS)
VISEME_FORM_VECTOR = np.array([VISEME_FORM[v] for v in VISEMES], dtype=np.float32)
EXPRESSION_FORM_VECTOR = np.array([EXPRESSION_FORM[e] for e in EXPRESSIONS], dtype=np.float32)
_JAW = ARKIT_INDEX["jawOpen"]


@dataclass(slots=True)
class AvatarState:
    """Renderer-neutral animation state of one frame, stamped with the PTS of the audio it belongs to.

    ``mouth_open`` (0..1) follows the loudness of the audio being played; ``visemes`` (15 weights summing to at
    most 1) give the mouth's shape; ``blink_*`` are 0 (open) .. 1 (closed); head angles are degrees (pitch up +,
    yaw left +, roll); ``gaze_*`` in -1..1; ``breath`` 0..1; ``expressions`` weights 0..1 in
    :data:`EXPRESSIONS` order; ``reset`` marks the first frame after an interruption.
    """

    pts: float = 0.0
    turn_id: int = 0
    speaking: bool = False
    mouth_open: float = 0.0
    visemes: np.ndarray = field(default_factory=lambda: np.zeros(len(VISEMES), dtype=np.float32))
    blink_left: float = 0.0
    blink_right: float = 0.0
    head_pitch: float = 0.0
    head_yaw: float = 0.0
    head_roll: float = 0.0
    gaze_x: float = 0.0
    gaze_y: float = 0.0
    breath: float = 0.0
    expressions: np.ndarray = field(default_factory=lambda: np.zeros(len(EXPRESSIONS), dtype=np.float32))
    reset: bool = False  # first frame after an interruption

    @property
    def mouth_form(self) -> float:
        """-1 (round) .. +1 (wide): the shape of the mouth from the viseme and the expression."""
        speech = float(self.visemes @ VISEME_FORM_VECTOR)
        mood = float(self.expressions @ EXPRESSION_FORM_VECTOR)
        return max(-1.0, min(1.0, speech * min(1.0, 0.3 + self.mouth_open) + mood))

    @property
    def expression(self) -> str:
        """The strongest expression, or ``neutral``."""
        i = int(np.argmax(self.expressions))
        return EXPRESSIONS[i] if self.expressions[i] > 0.05 else "neutral"


def arkit_weights(state: AvatarState) -> np.ndarray:
    """The 52 ARKit blendshape weights (0..1) of ``state``."""
    w = state.visemes @ VISEME_MATRIX  # the mouth's shape
    # the audio envelope drives how far the jaw opens; a viseme only shapes it
    w[_JAW] = state.mouth_open * (0.35 + 0.65 * w[_JAW] / 0.85) if state.mouth_open > 0 else 0.0
    w += state.expressions @ EXPRESSION_MATRIX
    w[ARKIT_INDEX["eyeBlinkLeft"]] = max(w[ARKIT_INDEX["eyeBlinkLeft"]], state.blink_left)
    w[ARKIT_INDEX["eyeBlinkRight"]] = max(w[ARKIT_INDEX["eyeBlinkRight"]], state.blink_right)
    gx, gy = state.gaze_x, state.gaze_y
    if gx > 0:  # looking to the avatar's left
        w[ARKIT_INDEX["eyeLookOutLeft"]] += gx
        w[ARKIT_INDEX["eyeLookInRight"]] += gx
    else:
        w[ARKIT_INDEX["eyeLookInLeft"]] -= gx
        w[ARKIT_INDEX["eyeLookOutRight"]] -= gx
    if gy > 0:
        w[ARKIT_INDEX["eyeLookUpLeft"]] += gy
        w[ARKIT_INDEX["eyeLookUpRight"]] += gy
    else:
        w[ARKIT_INDEX["eyeLookDownLeft"]] -= gy
        w[ARKIT_INDEX["eyeLookDownRight"]] -= gy
    np.clip(w, 0.0, 1.0, out=w)
    return w


def head_angles(state: AvatarState) -> np.ndarray:
    """Pitch, yaw, roll in degrees, clipped to ±:data:`HEAD_RANGE_DEG`."""
    return np.clip(
        np.array([state.head_pitch, state.head_yaw, state.head_roll], dtype=np.float32), -HEAD_RANGE_DEG, HEAD_RANGE_DEG
    )
