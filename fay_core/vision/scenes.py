"""Camera scenes for tests and benchmarks: a public-domain face moving across a frame, written as Y4M.

The face is scikit-image's ``astronaut()`` (Eileen Collins, a NASA photo in the public domain); scikit-image is a
test dependency (``fay[test]``), imported only here. :func:`write_y4m` writes the frames as a YUV4MPEG2 file,
which Chromium plays as a fake camera (``--use-file-for-fake-video-capture=FILE.y4m``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 640, 480
FACE_PX = 240  #: the photo's side in the frame (its head and shoulders; the face is about 70 pixels wide)
BACKGROUND = 96  #: grey


@cache
def _photo() -> np.ndarray:
    import cv2
    from skimage.data import astronaut

    rgb = astronaut()[0:320, 110:430]  # the head and shoulders (the suit's patches look like faces to a cascade)
    return np.ascontiguousarray(cv2.resize(rgb, (FACE_PX, FACE_PX), interpolation=cv2.INTER_AREA)[:, :, ::-1])


def frame(x: float | None, *, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A BGR frame with the photo's face centred at ``x`` (-1..1 of the frame, left -1), or an empty room (None).

    ``x`` places the face itself (left of the photo's centre), clipped so the photo stays inside the frame.
    """
    out = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    if x is None:
        return out
    photo = _photo()
    face_cx = int(FACE_PX * 0.36)  # the face's centre within the photo
    left = int((x + 1) / 2 * width) - face_cx
    left = max(0, min(width - FACE_PX, left))
    top = max(0, (height - FACE_PX) // 2 - 60)
    out[top:top + FACE_PX, left:left + FACE_PX] = photo
    return out


def walk(fps: int, *, left_s: float = 3.0, right_s: float = 3.0, empty_s: float = 4.0, lead_s: float = 1.0,
         x: float = 0.5) -> Iterator[tuple[float | None, np.ndarray]]:
    """A visitor's walk, at ``fps``: an empty room for ``lead_s``, the face at ``-x`` (left) for ``left_s``, at
    ``+x`` (right) for ``right_s``, then an empty room for ``empty_s``; yields ``(face x or None, frame)``."""
    plan: list[tuple[float | None, float]] = [(None, lead_s), (-x, left_s), (x, right_s), (None, empty_s)]
    frames = {p: frame(p) for p, _ in plan}
    for where, seconds in plan:
        for _ in range(round(seconds * fps)):
            yield where, frames[where]


def write_y4m(path: Path, frames: Iterable[np.ndarray], fps: int) -> Path:
    """Write BGR ``frames`` (all the same size) as a 4:2:0 YUV4MPEG2 file at ``fps``."""
    import cv2

    with open(path, "wb") as f:
        header = False
        for bgr in frames:
            h, w = bgr.shape[:2]
            if not header:
                f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
                header = True
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path
