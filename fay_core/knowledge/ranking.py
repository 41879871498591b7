"""Ranking: dense vote shares, the intent model, keywords and exact codes, fused into scored hits.

A search ranks a collection's entries by their share of the dense votes (candidate rows aggregated per entry,
:func:`dense_shares`), refined for FAQ entries by the collection's intent model (:func:`mix_intents`), by BM25
over keywords, and by exact product codes, and fuses the rankings with reciprocal rank fusion.
``Hit.confidence`` (the best dense cosine of the entry's rows, lowered when the evidence is split between
entries) is what the guardrail compares with ``knowledge.min_score``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from ..errors import KnowledgeError
from ..settings import KnowledgeSettings
from .documents import Hit
from .index import VectorIndex
from .intents import IntentModel, fingerprint, recall, remember
from .keyword import KeywordIndex, code_tokens
from .manifest import Manifest

log = logging.getLogger(__name__)

#: fusion weight of the identifier signal: an exact product code in the query outranks paraphrase similarity
EXACT_WEIGHT = 2.0


def dense_shares(dense: dict[str, list[float]], temperature: float) -> dict[str, float]:
    """Each entry's share of the soft votes of the candidate rows: ``sum(exp((sim - best) / temperature))``,
    normalised to sum to 1.

    With a small temperature the order is the best row's similarity (nearest neighbour); larger temperatures let an
    entry with many close phrasings outrank one lucky phrasing of another entry.
    """
    if not dense:
        return {}
    top = max(max(v) for v in dense.values())
    t = max(temperature, 1e-6)
    score = {e: sum(math.exp((s - top) / t) for s in sims) for e, sims in dense.items()}
    total = sum(score.values())
    return {e: v / total for e, v in score.items()}


def mix_intents(share: dict[str, float], intents: dict[str, float], weight: float,
                known: frozenset[str]) -> dict[str, float]:
    """Redistribute the dense share held by the intent model's entries by its probabilities.

    Entries the model does not know (document chunks, FAQ entries of another file without phrasings) keep their
    dense share; the model's entries together keep theirs too, split ``(1 - weight) * dense + weight * model``.
    """
    held = sum(v for e, v in share.items() if e in known)
    if held <= 0:
        return share
    out = {e: (v * (1 - weight) if e in known else v) for e, v in share.items()}
    for e, p in intents.items():
        out[e] = out.get(e, 0.0) + weight * p * held
    return out


class Ranker:
    """Scores a collection's entries for a query, and keeps each collection's intent model (on disk under
    ``<knowledge>/intents/``, in memory until the collection changes). Not locked: the knowledge base serialises."""

    def __init__(self, root: Path, manifest: Manifest, index: VectorIndex, keywords: KeywordIndex,
                 settings: KnowledgeSettings) -> None:
        self.root = root
        self.manifest = manifest
        self.index = index
        self.keywords = keywords
        self.settings = settings
        self._intents: dict[str, IntentModel | None] = {}

    # --- intent model -----------------------------------------------------------------------------------

    def intent_model(self, collection: str) -> IntentModel | None:
        """The collection's intent model (see :mod:`fay_core.knowledge.intents`): loaded or trained when first
        needed after a change, None where it cannot help or is turned off."""
        if collection in self._intents:
            return self._intents[collection]
        model = self._load_or_train(collection)
        self._intents[collection] = model
        return model

    def forget(self, collection: str) -> None:
        """Drop the collection's intent model from memory (it changed)."""
        self._intents.pop(collection, None)

    def _load_or_train(self, collection: str) -> IntentModel | None:
        s = self.settings
        n_faq, n_phrasings = self.manifest.faq_counts(collection)
        if s.intent_weight <= 0 or n_faq < 2 or n_phrasings <= n_faq or n_faq > s.intent_max_entries:
            return None
        fp = fingerprint([self.index.embedder_name, *(f"{p}:{h}" for p, h in self.manifest.hashes(collection))])
        folder = self.root / "intents"
        path = folder / f"{collection}-{fp}.joblib"
        model = IntentModel.load(path) if path.exists() else None
        if model is not None:
            return model
        model = recall(fp)
        if model is None:
            texts, vectors, labels = self.index.questions(collection)
            if len(set(labels)) < 2:
                return None
            model = IntentModel.train(texts, vectors, labels, fingerprint=fp)
            log.info("intent model for %s: %d entries, %d phrasings, trained in %.1f s", collection,
                     len(model.entries), len(texts), model.train_seconds)
            remember(model)
        for old in folder.glob(f"{collection}-{'?' * len(fp)}.joblib"):
            old.unlink(missing_ok=True)
        model.save(path)
        return model

    # --- search -----------------------------------------------------------------------------------------

    def search(self, collection: str, query: str, qv: np.ndarray, top_k: int) -> list[Hit]:
        """The collection's best ``top_k`` entries for ``query`` (embedded as ``qv``), best first."""
        if not self.manifest.has(collection):
            raise KnowledgeError(f"unknown collection {collection!r}: ingest files into it first (fay kb ingest)")
        s = self.settings
        count = self.index.count(collection)
        dense: dict[str, list[float]] = {}
        closest: dict[str, int] = {}  # entry -> index (in Entry.rows()) of its closest row
        if count:
            # ids and distances only: neither the entry nor the matched row's text needs Chroma's metadata and
            # document fetch (~2.5 ms at 100,000 rows)
            for eid, row, sim in self.index.nearest(collection, qv, min(s.candidates, count)):
                dense.setdefault(eid, []).append(sim)
                closest.setdefault(eid, row)
        share = dense_shares(dense, s.vote_temperature)
        model = self.intent_model(collection) if count and s.intent_weight > 0 else None
        known: frozenset[str] = model.known if model is not None else frozenset()
        if model is not None:
            share = mix_intents(share, model.predict(query, qv), s.intent_weight, known)
        fused, exact = self._fuse(collection, query, share, known)
        best = sorted(fused, key=lambda e: fused[e], reverse=True)[: max(top_k, 1)]
        entries = self.manifest.entries(collection, best)
        out = []
        for eid in best:
            entry = entries.get(eid)
            if entry is None:
                continue
            sims = dense.get(eid)
            # an entry none of whose rows is among the dense candidates counts as dissimilar (0.0): with a full
            # candidate list it is below all of them, and looking its vectors up would cost a scan per hit
            sim = max(sims) if sims else (self.index.similarity(collection, eid, qv) if count <= s.candidates else 0.0)
            part = share.get(eid, 0.0)
            confidence = sim + s.confidence_weight * math.log(max(part, 1e-4))
            rows, i = entry.rows(), closest.get(eid, -1)
            matched = rows[i][1] if 0 <= i < len(rows) else ""
            out.append(Hit(entry, fused[eid], sim, collection, matched, exact=eid in exact,
                           share=part, confidence=confidence))
        return out

    def _fuse(self, collection: str, query: str, share: dict[str, float],
              known: frozenset[str]) -> tuple[dict[str, float], list[str]]:
        """Reciprocal rank fusion of exact codes, dense shares and keywords; the fused scores and the exact hits."""
        s = self.settings
        dense_rank = sorted(share, key=lambda e: share[e], reverse=True)
        kw_order: list[str] = []
        if s.keyword_weight > 0:
            # the intent model already weighs the words of its entries' phrasings: keywords rank the other entries
            for eid, _score in self.keywords.search(collection, query, s.candidates):
                if eid not in kw_order and eid not in known:
                    kw_order.append(eid)
        exact: list[str] = []
        codes = code_tokens(query)
        if codes:
            for eid, _score in self.keywords.search(collection, query, s.candidates, terms=codes):
                if eid not in exact:
                    exact.append(eid)
        fused: dict[str, float] = {}
        for r, eid in enumerate(exact):
            fused[eid] = EXACT_WEIGHT / (s.rrf_k + r + 1)
        for r, eid in enumerate(dense_rank):
            fused[eid] = fused.get(eid, 0.0) + 1.0 / (s.rrf_k + r + 1)
        for r, eid in enumerate(kw_order):
            fused[eid] = fused.get(eid, 0.0) + s.keyword_weight / (s.rrf_k + r + 1)
        return fused, exact
