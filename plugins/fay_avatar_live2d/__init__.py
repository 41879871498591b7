"""Built-in avatar renderer ``live2d``: Cubism parameters over the data channel for a Live2D model.

Frames carry the standard Cubism parameter ids (``ParamMouthOpenY``, ``ParamMouthForm``, ``ParamEyeLOpen``/
``ROpen``, ``ParamAngleX/Y/Z``, brows, eye balls, breath, cheeks; see :mod:`fay_core.avatar.live2d`) in the
binary stream of :mod:`fay_core.avatar.stream`. The browser shows the persona's model (``avatar.model``: the URL
or served path of a ``*.model3.json``) with pixi-live2d-display (``web/avatars/live2d.js``). Users bring their
own model: Fay ships none (Live2D's sample models have their own licence).

Persona options: ``fps`` (default 50), ``head_motion_deg``, and for the viewer ``scale``, ``x``, ``y``.
"""

from __future__ import annotations

from typing import Any

from fay_core import hookimpl
from fay_core.hookspecs import RegisterEngine

NAME = "live2d"


def _factory() -> Any:
    import numpy as np

    from fay_core.avatar.live2d import LIVE2D_CHANNELS, live2d_values
    from fay_core.avatar.renderer import ParameterRenderer
    from fay_core.avatar.rig import AvatarState
    from fay_core.engines import RendererInfo

    class Live2DRenderer(ParameterRenderer):
        """Cubism parameters over the data channel."""

        info = RendererInfo(name=NAME, kind="data", viewer=NAME, options={"format": "fay-avatar-stream/1"})
        channels = LIVE2D_CHANNELS

        def values(self, state: AvatarState) -> np.ndarray:
            return live2d_values(state)

    return Live2DRenderer()


@hookimpl
def register_avatar_renderers(register: RegisterEngine) -> None:
    register(NAME, _factory)

