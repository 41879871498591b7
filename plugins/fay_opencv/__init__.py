"""Built-in vision processor ``opencv``: faces in camera frames with OpenCV's Haar cascade, offline.

The ``opencv-python-headless`` 4.x wheel ships the cascades (``cv2.data.haarcascades``); 5.x no longer does,
and neither ships the YuNet ONNX model, so this uses the frontal-face cascade: a few ms to a few tens of ms a
frame at 320 pixels wide on one core, good for "is someone in front of the kiosk, and where". It reports
position and size only (no landmarks, no identity, no emotion).

Settings (``plugins.opencv``): ``width`` (frames are scaled down to it before detection), ``min_size`` (the
smallest face, as a fraction of the frame width), ``neighbours`` (the cascade's ``minNeighbors``: higher, fewer
false faces).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fay_core import hookimpl
from fay_core.errors import EngineUnavailable
from fay_core.events import Face
from fay_core.hookspecs import RegisterEngine, RegisterSettings

NAME = "opencv"
CASCADE = "haarcascade_frontalface_default.xml"
#: this many overlapping detections make a face's score 1.0
SURE_NEIGHBOURS = 12


class OpenCVSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int = Field(320, ge=80, le=1280, description="frames are scaled to this width before detection")
    min_size: float = Field(0.06, gt=0, lt=1, description="the smallest face, as a fraction of the frame width")
    neighbours: int = Field(4, ge=1, le=20, description="cv2 minNeighbors: higher finds fewer false faces")


class HaarFaces:
    """OpenCV's frontal-face Haar cascade. A classifier per thread (``CascadeClassifier`` is not thread-safe)."""

    name = NAME

    def __init__(self, settings: OpenCVSettings | None = None) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise EngineUnavailable(f"opencv: {exc}: pip install 'opencv-python-headless>=4.8,<5'") from None
        path = getattr(getattr(cv2, "data", None), "haarcascades", "") + CASCADE
        if not hasattr(cv2, "CascadeClassifier") or cv2.CascadeClassifier(path).empty():
            raise EngineUnavailable(f"opencv {cv2.__version__} ships no {CASCADE} (OpenCV 5 dropped the Haar "
                                    "cascades): pip install 'opencv-python-headless>=4.8,<5'")
        self._cv2: Any = cv2
        self._path = path
        self.settings = settings or OpenCVSettings()
        self._local = threading.local()
        cv2.setNumThreads(1)  # one core a frame: sessions run side by side in the worker threads

    def _classifier(self) -> Any:
        clf = getattr(self._local, "clf", None)
        if clf is None:
            clf = self._local.clf = self._cv2.CascadeClassifier(self._path)
        return clf

    def faces(self, image: Any) -> Sequence[Face]:
        cv2 = self._cv2
        h, w = image.shape[:2]
        if h < 16 or w < 16:
            return []
        width = min(self.settings.width, w)
        height = max(1, round(h * width / w))
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if width != w:
            gray = cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)
        smallest = max(12, round(self.settings.min_size * width))
        boxes, neighbours = self._classifier().detectMultiScale2(
            gray, scaleFactor=1.1, minNeighbors=self.settings.neighbours, minSize=(smallest, smallest))
        out = []
        for box, n in zip(boxes, neighbours, strict=True):
            fx, fy, fw, fh = (int(v) for v in box)
            out.append(Face(x=(fx + fw / 2) / width * 2 - 1, y=(fy + fh / 2) / height * 2 - 1, size=fw / width,
                            score=min(1.0, int(n) / SURE_NEIGHBOURS)))
        # the most confirmed first (a cascade's false faces gather few neighbours), then the largest
        return sorted(out, key=lambda f: (-f.score, -f.size))


@hookimpl
def register_settings(register: RegisterSettings) -> None:
    register(NAME, OpenCVSettings)


@hookimpl
def register_vision_processors(register: RegisterEngine) -> None:
    register(NAME, HaarFaces, settings=NAME, priority=50)
