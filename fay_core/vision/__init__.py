"""The camera: who is in front of the kiosk, and where (personas with ``vision.enabled``).

::

    browser camera --WebRTC--> aiortc decodes --pump_video (vision.fps, rest dropped)--> CameraFrameReceived
        --VisionWatcher: processor.faces() in a worker thread, one frame at a time per session (frames that come
          while it works are dropped)--> FaceTracked  --Presence (hysteresis)--> UserArrived / UserLeft
    UserArrived   the persona greets (vision.greet_on_arrival); speech is listened to again
                  (vision.listen_only_when_present)
    UserLeft      speech is ignored until someone arrives (listen_only_when_present); the session ends
                  vision.leave_after_s later unless someone arrives meanwhile
    FaceTracked   the avatar timeline turns the head and eyes towards the face (vision.gaze)
    every frame   kept as the session's latest (LatestFrame, only that one) for a look on request: "what is
                  this?" sends it to vision.look_model (:mod:`fay_core.vision.look`)

Processors come from plugins (``register_vision_processors``; the built-in ``opencv`` uses OpenCV's Haar
cascade). Nothing of the video is stored, and nothing is inferred from a face but that it is there, where, and
how large: no emotions (EU AI Act Art. 5(1)(f)), no identity.
"""

from .look import LOOK_TOOL, LatestFrame, Looker, is_look_request, look_config
from .presence import Presence
from .watcher import DEFAULT_CAMERA_NOTICE, DEFAULT_GREETING, VisionWatcher, camera_offer

__all__ = ["DEFAULT_CAMERA_NOTICE", "DEFAULT_GREETING", "LOOK_TOOL", "LatestFrame", "Looker", "Presence",
           "VisionWatcher", "camera_offer", "is_look_request", "look_config"]
