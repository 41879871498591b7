"""A licence-clean 2D portrait drawn by code (numpy), animated from the timeline's states.

The static parts (background, shoulders, face, hair, the "AI-generated" label) are drawn once per size, and composited
once per head position (yaw/pitch move the head by a few pixels; the composites are cached and shared by all
sessions); each frame then redraws only small regions: eyes (blinks, gaze), brows (expressions) and the mouth
(opening from the audio, width from the viseme's form and the smile).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from .font5x7 import text_mask
from .rig import EXPRESSIONS, AvatarState

LABEL = "AI-GENERATED"
SKIN = np.array([236, 196, 170], np.float32)
SKIN_DARK = np.array([214, 168, 140], np.float32)
HAIR = np.array([62, 42, 34], np.float32)
JACKET = np.array([34, 58, 96], np.float32)
SHIRT = np.array([240, 240, 244], np.float32)
LIP = np.array([186, 92, 96], np.float32)
MOUTH_IN = np.array([70, 22, 30], np.float32)
TEETH = np.array([245, 243, 236], np.float32)
IRIS = np.array([70, 100, 70], np.float32)
_E = {name: i for i, name in enumerate(EXPRESSIONS)}


def _ellipse(h: int, w: int, cx: float, cy: float, a: float, b: float) -> np.ndarray:
    """Anti-aliased coverage (0..1) of an ellipse with centre (cx, cy) and radii a, b on an h×w grid."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    f = np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2)
    return np.clip((1.0 - f) * min(a, b) + 0.5, 0.0, 1.0)


def _paint(img: np.ndarray, cover: np.ndarray, color: np.ndarray) -> None:
    img += cover[..., None] * (color - img)


class Portrait:
    """Draws frames of the portrait for :class:`~fay_core.avatar.rig.AvatarState` values."""

    def __init__(self, width: int = 384, height: int = 480, label: str = LABEL) -> None:
        if width < 160 or height < 200 or width % 2 or height % 2:
            raise ValueError("the portrait needs an even size of at least 160x200")
        self.width, self.height = width, height
        s = self.s = width / 384.0
        self.face_cx, self.face_cy = width / 2, height * 0.42
        self.base = self._draw_base()
        # the head layer: colour and coverage, drawn on a box around the face, shifted per frame
        self.box = int(150 * s), int(190 * s)  # half-width, half-height of the head box
        self.head_rgb, self.head_alpha = self._draw_head()
        self._label(label)
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    # --- static parts -----------------------------------------------------------------------------------

    def _draw_base(self) -> np.ndarray:
        h, w, s = self.height, self.width, self.s
        grad = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        img = (np.array([196, 212, 226], np.float32) * (1 - grad) + np.array([150, 170, 192], np.float32) * grad)
        img = np.broadcast_to(img, (h, w, 3)).copy()
        cx = w / 2
        _paint(img, _ellipse(h, w, cx, h * 1.02, 175 * s, 150 * s), JACKET)  # shoulders
        _paint(img, _ellipse(h, w, cx, h * 0.86, 44 * s, 70 * s), SHIRT)  # shirt
        _paint(img, _ellipse(h, w, cx, self.face_cy + 120 * s, 34 * s, 60 * s), SKIN_DARK)  # neck
        return img

    def _draw_head(self) -> tuple[np.ndarray, np.ndarray]:
        bw, bh = self.box
        H, W, s = 2 * bh, 2 * bw, self.s
        cx, cy = bw, bh
        rgb = np.zeros((H, W, 3), np.float32)
        alpha = np.zeros((H, W), np.float32)

        def paint(cover: np.ndarray, color: np.ndarray) -> None:
            _paint(rgb, cover, color)
            np.maximum(alpha, cover, out=alpha)

        paint(_ellipse(H, W, cx, cy - 12 * s, 104 * s, 128 * s), HAIR)  # hair behind
        paint(_ellipse(H, W, cx - 88 * s, cy + 6 * s, 14 * s, 22 * s), SKIN_DARK)  # ears
        paint(_ellipse(H, W, cx + 88 * s, cy + 6 * s, 14 * s, 22 * s), SKIN_DARK)
        paint(_ellipse(H, W, cx, cy + 8 * s, 86 * s, 112 * s), SKIN)  # face
        fringe = _ellipse(H, W, cx + 10 * s, cy - 92 * s, 96 * s, 46 * s)
        paint(fringe, HAIR)
        paint(_ellipse(H, W, cx, cy + 28 * s, 7 * s, 14 * s) * 0.35, SKIN_DARK)  # nose
        return rgb, alpha

    def _label(self, text: str) -> None:
        scale = max(2, round(2 * self.s))
        mask = text_mask(text, scale=scale)
        pad = 4 * scale
        y0, x0 = 8, 8
        h, w = mask.shape[0] + 2 * pad, mask.shape[1] + 2 * pad
        box = self.base[y0 : y0 + h, x0 : x0 + w]
        box *= 0.35  # a dark box behind the label
        region = box[pad : pad + mask.shape[0], pad : pad + mask.shape[1]]
        region[mask] = 255.0
        self.label_box = (x0, y0, w, h)

    # --- per frame --------------------------------------------------------------------------------------

    def _composite(self, dx: int, dy: int) -> np.ndarray:
        """The static picture with the head shifted by (dx, dy): uint8, cached (the head moves by few pixels)."""
        key = (dx, dy)
        img = self._cache.get(key)
        if img is not None:
            self._cache.move_to_end(key)
            return img
        bw, bh = self.box
        x0, y0 = int(self.face_cx) - bw + dx, int(self.face_cy) - bh + dy
        out = self.base.copy()
        ys, xs = max(0, y0), max(0, x0)
        ye, xe = min(self.height, y0 + 2 * bh), min(self.width, x0 + 2 * bw)
        a = self.head_alpha[ys - y0 : ye - y0, xs - x0 : xe - x0, None]
        dst = out[ys:ye, xs:xe]
        dst += a * (self.head_rgb[ys - y0 : ye - y0, xs - x0 : xe - x0] - dst)
        lx, ly, lw, lh = self.label_box  # the label stays on top of everything
        out[ly : ly + lh, lx : lx + lw] = self.base[ly : ly + lh, lx : lx + lw]
        img = np.rint(out).astype(np.uint8)
        self._cache[key] = img
        if len(self._cache) > 48:
            self._cache.popitem(last=False)
        return img

    def render(self, state: AvatarState) -> np.ndarray:
        """An ``height × width × 3`` uint8 RGB frame for ``state``."""
        s = self.s
        bw, bh = self.box
        dx = int(round(-state.head_yaw * 1.6 * s))
        dy = int(round(-state.head_pitch * 1.6 * s + (1 - state.breath) * 1.5 * s))
        img = self._composite(dx, dy).copy()
        # the moving features, drawn in head coordinates on small regions of the frame
        ox, oy = int(self.face_cx) - bw + dx, int(self.face_cy) - bh + dy
        self._eyes(img, ox, oy, state)
        self._brows(img, ox, oy, state)
        self._mouth(img, ox, oy, state)
        return img

    def _roi(self, img: np.ndarray, cx: float, cy: float, rw: int, rh: int) -> tuple[np.ndarray, float, float, Any]:
        """A float copy of the region around (cx, cy) and a function that writes it back."""
        x0, y0 = max(0, int(cx - rw)), max(0, int(cy - rh))
        x1, y1 = min(self.width, x0 + 2 * rw), min(self.height, y0 + 2 * rh)
        roi = img[y0:y1, x0:x1].astype(np.float32)

        def put() -> None:
            img[y0:y1, x0:x1] = np.clip(np.rint(roi), 0, 255).astype(np.uint8)

        return roi, cx - x0, cy - y0, put

    def _eyes(self, img: np.ndarray, ox: int, oy: int, st: AvatarState) -> None:
        s = self.s
        bw, bh = self.box
        surprised = float(st.expressions[_E["surprised"]])
        squint = 0.35 * float(st.expressions[_E["happy"]]) + 0.25 * float(st.expressions[_E["angry"]])
        for side, blink in ((-1, st.blink_right), (1, st.blink_left)):
            ex, ey = ox + bw + side * 34 * s, oy + bh - 6 * s
            roi, cx, cy, put = self._roi(img, ex, ey, int(22 * s), int(16 * s))
            h, w = roi.shape[:2]
            a, b = 17 * s, 9 * s * (1 + 0.3 * surprised)
            white = _ellipse(h, w, cx, cy, a, b)
            _paint(roi, white, np.array([250, 250, 250], np.float32))
            ix, iy = cx + st.gaze_x * 7 * s, cy - st.gaze_y * 4 * s
            iris = _ellipse(h, w, ix, iy, 7 * s, 7 * s) * white
            _paint(roi, iris, IRIS)
            _paint(roi, _ellipse(h, w, ix, iy, 3.2 * s, 3.2 * s) * white, np.array([15, 15, 15], np.float32))
            closed = min(1.0, max(blink, squint))
            if closed > 0.01:  # the upper lid comes down over the eye
                y = np.arange(h, dtype=np.float32)[:, None]
                lid_y = cy - b + closed * 2 * b
                lid = np.clip(lid_y - y + 0.5, 0, 1) * (white > 0)
                _paint(roi, lid, SKIN_DARK)
            put()

    def _brows(self, img: np.ndarray, ox: int, oy: int, st: AvatarState) -> None:
        s = self.s
        bw, bh = self.box
        ex = st.expressions
        up = 6 * s * (float(ex[_E["surprised"]]) + 0.4 * float(ex[_E["sad"]]) + 0.4 * float(ex[_E["concerned"]]))
        down = 5 * s * (float(ex[_E["angry"]]) + 0.4 * float(ex[_E["thinking"]]))
        for side in (-1, 1):
            roi, cx, cy, put = self._roi(img, ox + bw + side * 34 * s, oy + bh - 30 * s - up + down, int(24 * s),
                                         int(10 * s))
            h, w = roi.shape[:2]
            _paint(roi, _ellipse(h, w, cx, cy, 19 * s, 3.2 * s), HAIR)
            put()

    def _mouth(self, img: np.ndarray, ox: int, oy: int, st: AvatarState) -> None:
        s = self.s
        bw, bh = self.box
        roi, cx, cy, put = self._roi(img, ox + bw, oy + bh + 62 * s, int(40 * s), int(30 * s))
        h, w = roi.shape[:2]
        form = st.mouth_form
        opening = st.mouth_open if st.speaking else 0.0
        half_w = 24 * s * (1 + 0.22 * form - 0.1 * opening)
        half_h = (3.2 + 15 * opening) * s
        smile = 6 * s * (float(st.expressions[_E["happy"]]) - 0.7 * float(st.expressions[_E["sad"]]))
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        # corners up for a smile: bend the mouth's frame by a parabola
        yb = y + smile * ((x - cx) / half_w) ** 2
        f = np.sqrt(((x - cx) / half_w) ** 2 + ((yb - cy) / half_h) ** 2)
        lips = np.clip((1 - f) * half_h + 0.5, 0, 1)
        _paint(roi, lips, LIP)
        if opening > 0.05:
            ih = half_h - 3.0 * s
            inner = np.clip((1 - np.sqrt(((x - cx) / (half_w - 3 * s)) ** 2 + ((yb - cy) / ih) ** 2)) * ih + 0.5, 0, 1)
            _paint(roi, inner, MOUTH_IN)
            teeth = inner * np.clip((cy - ih * 0.45) - yb + 0.5, 0, 1)
            _paint(roi, teeth, TEETH)
        else:
            line = np.clip(1.2 * s - np.abs(yb - cy) + 0.5, 0, 1) * (lips > 0.5)
            _paint(roi, line, LIP * 0.6)
        put()
