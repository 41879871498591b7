"""The knowledge base: ingestion, hybrid search over Chroma and SQLite FTS5, and a persona's collections.

::

    kb = open_knowledge(settings, plugins)
    kb.ingest(["knowledge/demo_bank/en"], "harbor_bank_en", progress=True)
    for hit in kb.search("What does the Harbor Saver pay?", "harbor_bank_en"):
        print(hit.source, hit.similarity, hit.entry.text)

A runtime keeps one :class:`Knowledge` (``fay.knowledge``); sessions share it. It opens the knowledge base on
first use and ingests a persona's ``knowledge.paths`` and inline ``knowledge.faq`` into its first collection the
first time a session of that persona version needs them (:meth:`Knowledge.prepare`), which is fast when nothing
changed.
"""

from __future__ import annotations

import logging
import threading
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
    "has_knowledge",
    "ingest_persona",
    "open_knowledge",
    "persona_collections",
    "resolve_embedder",
]


class Knowledge:
    """The runtime's knowledge base, opened on first use, and the personas already prepared in it. Thread-safe."""

    def __init__(self, settings: Settings, plugins: Plugins) -> None:
        self.settings = settings
        self.plugins = plugins
        self._base: KnowledgeBase | None = None
        self._open_lock = threading.Lock()
        self._prepare_lock = threading.Lock()
        self._prepared: set[tuple[str, str]] = set()

    def base(self) -> KnowledgeBase:
        """The knowledge base under ``<data_dir>/knowledge`` (opened once, by the first caller)."""
        with self._open_lock:
            if self._base is None:
                self._base = open_knowledge(self.settings, self.plugins)
            return self._base

    def prepare(self, persona: Persona) -> list[str]:
        """Make sure the persona's knowledge is ingested (once per persona id and version); its collections.

        Ingestion follows ``knowledge.auto_ingest``; sessions (and the warm-up) starting together ingest once, one
        after the other, not concurrently.
        """
        collections = [check_name(c) for c in persona_collections(persona)]
        key = (persona.id, persona.version)
        with self._prepare_lock:
            if key not in self._prepared:
                ingest_persona(self.base(), persona, auto_ingest=self.settings.knowledge.auto_ingest)
                self._prepared.add(key)
        return collections

    def close(self) -> None:
        """Close the knowledge base if it was opened (a later :meth:`base` opens it again).

        It waits for an ingestion in progress (the locks are taken in :meth:`prepare`'s order).
        """
        with self._prepare_lock, self._open_lock:
            if self._base is not None:
                self._base.close()
                self._base = None
            self._prepared.clear()


def resolve_embedder(settings: Settings, plugins: Plugins) -> Any:
    """The embedder ``knowledge.embedder`` names; ``auto``: the first of the registered ones, by their priority,
    that can run here (see :meth:`fay_core.plugins.Plugins.pick`)."""
    try:
        return plugins.pick("embedder", settings.knowledge.embedder)
    except PluginError as exc:
        raise KnowledgeError(f"knowledge base: {exc}") from None


def open_knowledge(settings: Settings, plugins: Plugins) -> KnowledgeBase:
    """A knowledge base under ``<data_dir>/knowledge`` with the configured embedder, loaders and reranker."""
    embedder = resolve_embedder(settings, plugins)
    try:
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


def persona_collections(persona: Persona) -> list[str]:
    """The collections a persona searches: its ``knowledge.collections``, or ``persona-<id>`` if it names none."""
    return list(persona.knowledge.collections) or [f"persona-{persona.id}".replace("_", "-")]


def has_knowledge(persona: Persona) -> bool:
    k = persona.knowledge
    return bool(k.collections or k.paths or k.faq)


def ingest_persona(kb: KnowledgeBase, persona: Persona, *, auto_ingest: bool = True) -> list[str]:
    """Ingest the persona's ``knowledge.paths`` and inline ``knowledge.faq`` into its first collection (unless
    ``auto_ingest`` is off), check that all its collections exist, and return them. Idempotent, not cached:
    :meth:`Knowledge.prepare` calls it once per persona version.
    """
    collections = [check_name(c) for c in persona_collections(persona)]
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
    return collections
