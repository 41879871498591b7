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

import hashlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import KnowledgeError, PluginError
from ..persona import Persona
from ..settings import Settings
from ..tenancy import tenant_collection
from .documents import Entry, Hit, Reranker
from .health import StoreStatus, check_store, move_aside, readable_collections
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
    "StoreStatus",
    "has_knowledge",
    "ingest_persona",
    "knowledge_root",
    "open_knowledge",
    "persona_collections",
    "resolve_embedder",
]


class Knowledge:
    """The runtime's knowledge base, opened on first use, and the personas already prepared in it. Thread-safe.

    Opening checks the store (see :mod:`.health`): a store that fails is moved aside and rebuilt from the
    personas' files as they are prepared; :meth:`status` says how it is.
    """

    def __init__(self, settings: Settings, plugins: Plugins) -> None:
        self.settings = settings
        self.plugins = plugins
        self._base: KnowledgeBase | None = None
        self._open_lock = threading.Lock()
        self._prepare_lock = threading.Lock()
        self._prepared: set[tuple[str, str]] = set()
        self._moved_to: Path | None = None
        self._lost: dict[str, str] = {}  # collection -> why it is missing since the store was rebuilt
        self._failure = ""  # why the knowledge base cannot be opened at all, if it cannot
        self._suspect = False  # a search failed in a way a damaged store explains: check it again when next opened

    @property
    def root(self) -> Path:
        """``<data_dir>/knowledge``; with ``knowledge.chroma_url``, this node's replica of the shared store."""
        return knowledge_root(self.settings)

    @property
    def opened(self) -> bool:
        """Whether the knowledge base is open (and so has been checked): :meth:`status` is only news after that."""
        return self._base is not None

    def base(self) -> KnowledgeBase:
        """The knowledge base under ``<data_dir>/knowledge`` (opened once, by the first caller, and checked)."""
        with self._open_lock:
            if self._base is None:
                try:
                    self._base = self._open()
                except Exception as exc:
                    self._failure = str(exc) if isinstance(exc, KnowledgeError) else f"{type(exc).__name__}: {exc}"
                    raise
                self._failure = ""
            return self._base

    def _open(self) -> KnowledgeBase:
        check = self.settings.knowledge.integrity_check or self._suspect
        self._suspect = False
        problems = check_store(self.root) if check else []
        if not problems:
            try:
                kb = open_knowledge(self.settings, self.plugins)
            except KnowledgeError:  # the embedder or reranker: a configuration problem, not the store's
                raise
            except Exception as exc:
                problems = [f"cannot open: {type(exc).__name__}: {exc}"]
            else:
                try:
                    problems = kb.check() if check else []
                except Exception as exc:
                    problems = [f"cannot open Chroma: {type(exc).__name__}: {exc}"]
                if not problems:
                    return kb
                kb.close()
        held = readable_collections(self.root)
        self._moved_to = move_aside(self.root)
        self._prepared.clear()
        self._lost = dict.fromkeys(held, "was in the failed store and is not rebuilt yet")
        log.error("knowledge base %s failed its check (%s): moved it to %s and starting an empty one; personas' "
                  "knowledge files are ingested again when first needed, collections filled by 'fay kb ingest' "
                  "must be ingested again", self.root, "; ".join(problems), self._moved_to)
        return open_knowledge(self.settings, self.plugins)

    def prepare(self, persona: Persona) -> list[str]:
        """Make sure the persona's knowledge is ingested (once per persona id and version); its collections.

        Ingestion follows ``knowledge.auto_ingest``; sessions (and the warm-up) starting together ingest once, one
        after the other, not concurrently. After a rebuild, a collection the persona cannot fill from its own files
        makes the knowledge base degraded (see :meth:`status`) until it is ingested again.
        """
        collections = [check_name(c) for c in persona_collections(persona)]
        key = (persona.id, persona.version)
        with self._prepare_lock:
            if key not in self._prepared:
                kb = self.base()
                try:
                    ingest_persona(kb, persona, auto_ingest=self.settings.knowledge.auto_ingest)
                finally:
                    if self._moved_to is not None:
                        for c in collections:
                            if kb.has(c):
                                self._lost.pop(c, None)
                            else:
                                self._lost[c] = (f"needed by persona {persona.id}, lost with the failed store: "
                                                 f"fay kb ingest PATH --collection {c}")
                self._prepared.add(key)
        return collections

    def failed(self, exc: BaseException) -> None:
        """A search raised ``exc``: if the store's files fail their check now, close it, so that the next
        :meth:`base` moves it aside and starts an empty one. Called by the retriever, in a worker thread."""
        if isinstance(exc, KnowledgeError) or not self.root.exists():
            return  # Fay's own refusals (an unknown collection, a failing embedder) say nothing about the store
        problems = check_store(self.root)
        if problems:
            log.error("knowledge base %s: a search failed (%s: %s) and the store fails its check (%s): it is "
                      "rebuilt on the next question", self.root, type(exc).__name__, exc, "; ".join(problems))
            self._suspect = True
            self.close()

    def status(self) -> StoreStatus:
        """How the knowledge base is now (it is not opened for this)."""
        if self._failure:
            return StoreStatus("degraded", f"the knowledge base cannot be opened: {self._failure}", self._moved_to)
        needed = {c: why for c, why in self._lost.items() if why.startswith("needed")}
        if needed:
            return StoreStatus("degraded", "; ".join(f"collection {c} {why}" for c, why in sorted(needed.items())),
                               self._moved_to, tuple(sorted(self._lost)))
        if self._moved_to is not None:
            return StoreStatus("rebuilt", f"a failed store was moved aside to {self._moved_to.name}", self._moved_to,
                               tuple(sorted(self._lost)))
        return StoreStatus()

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


def knowledge_root(settings: Settings) -> Path:
    """Where the knowledge base keeps its files: ``<data_dir>/knowledge`` (embedded Chroma, the manifest, keyword
    index and intent models), or with ``knowledge.chroma_url`` this node's replica of the server's manifest,
    ``<data_dir>/knowledge-replica/<hash of the URL>`` (see :mod:`.shared`)."""
    url = settings.knowledge.chroma_url
    if url is None:
        return settings.data_dir / "knowledge"
    return settings.data_dir / "knowledge-replica" / hashlib.sha256(url.encode()).hexdigest()[:12]


def open_knowledge(settings: Settings, plugins: Plugins) -> KnowledgeBase:
    """A knowledge base with the configured embedder, loaders and reranker: under ``<data_dir>/knowledge``, or on
    the Chroma server ``knowledge.chroma_url`` names (:func:`knowledge_root`)."""
    embedder = resolve_embedder(settings, plugins)
    try:
        reranker = plugins.engine("reranker", settings.knowledge.reranker) if settings.knowledge.reranker else None
    except PluginError as exc:
        raise KnowledgeError(f"knowledge base: {exc}") from None
    loaders = {suffix: _plugin_loader(fn) for suffix, fn in plugins.loaders.items()}
    return KnowledgeBase(knowledge_root(settings), embedder, settings.knowledge, loaders=loaders,
                         reranker=reranker, chroma_url=settings.knowledge.chroma_url)


def _plugin_loader(fn: Any) -> Any:
    def load(path: Any, source: str) -> list[Entry]:
        return list(fn(path, source))

    return load


def persona_collections(persona: Persona) -> list[str]:
    """The collections a persona searches: its ``knowledge.collections``, or ``persona-<id>`` if it names none,
    as its tenant's collections (:func:`fay_core.tenancy.tenant_collection`: the default tenant's names as
    written, ``tenant.<tenant>.<name>`` for the others)."""
    names = list(persona.knowledge.collections) or [f"persona-{persona.id}".replace("_", "-")]
    return [tenant_collection(persona.tenant, name) for name in names]


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
