"""Avatar animation: one lip-sync/animation timeline per session, and the renderer plumbing around it.

- :mod:`~fay_core.avatar.timeline` — :class:`AnimationTimeline`: mouth tracks from synthesized speech (visemes
  from word timings or from the audio), idle life, expressions from emotion tags; one state per frame released
  by the playout clock, stamped with its audio PTS; interruptions discard pending tracks.
- :mod:`~fay_core.avatar.rig` — ARKit-52 names, visemes, expression shapes, :class:`AvatarState`.
- :mod:`~fay_core.avatar.live2d` — Cubism parameters; :mod:`~fay_core.avatar.portrait` — the 2D portrait.
- :mod:`~fay_core.avatar.stream` — the binary parameter-stream format (documented there).
- :mod:`~fay_core.avatar.renderer` — base classes for renderer plugins.

The built-in renderers are plugins: ``plugins/fay_avatar_params3d/`` (``params3d``), ``plugins/fay_avatar_live2d/``
(``live2d``) and ``plugins/fay_avatar_video2d/`` (``video2d``).
"""

from .renderer import ParameterRenderer, ParameterStream
from .rig import ARKIT_52, EXPRESSIONS, VISEMES, AvatarState
from .timeline import AnimationTimeline

__all__ = [
    "ARKIT_52",
    "EXPRESSIONS",
    "VISEMES",
    "AnimationTimeline",
    "AvatarState",
    "ParameterRenderer",
    "ParameterStream",
]
