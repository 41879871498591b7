"""The intent model: a classifier over a collection's FAQ entries, trained on their phrasings.

Nearest-neighbour search compares a question with one phrasing at a time. A linear model trained on all the
phrasings of all the entries at once learns what tells two close entries apart ("my card was declined" against
"my card does not work"): which words and character n-grams, and which directions of the embedding. It is trained
when a collection changes (seconds for a few thousand phrasings), kept beside the collection under
``<knowledge>/intents/`` and, by what it was trained from, in the process (:func:`recall`: a knowledge base opened
again over the same files, as ``fay eval`` and the tests do, does not train again), and only for collections
where it can help: at least two FAQ entries, more phrasings than entries, at most
``knowledge.intent_max_entries`` entries. Features: TF-IDF of character 2-5-grams (which also covers Chinese,
written without spaces) and of words and word pairs, next to the query's embedding; a multinomial logistic
regression (scikit-learn) gives each entry a probability.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: bump when the features or the model change: older saved models are retrained
VERSION = "2"


class IntentModel:
    """Entry probabilities for a question, from its text and its query embedding."""

    def __init__(self, features: Any, classifier: Any, entries: Sequence[str], fingerprint: str,
                 train_seconds: float = 0.0) -> None:
        self.features = features
        self.classifier = classifier
        self.entries = list(entries)
        self.known = frozenset(self.entries)
        self.fingerprint = fingerprint
        self.train_seconds = train_seconds

    @classmethod
    def train(cls, texts: Sequence[str], vectors: np.ndarray, labels: Sequence[str], *, fingerprint: str,
              c: float = 16.0) -> IntentModel:
        """Fit on phrasings ``texts`` (their embeddings ``vectors``) labelled with their entry ids."""
        from scipy import sparse
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_union

        started = time.monotonic()
        features = make_union(
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
            TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b"),
        )
        lexical = features.fit_transform(list(texts))
        x = sparse.hstack([lexical, sparse.csr_matrix(np.asarray(vectors, np.float32))]).tocsr()
        entries = sorted(set(labels))
        index = {e: i for i, e in enumerate(entries)}
        y = np.fromiter((index[lab] for lab in labels), dtype=np.int64, count=len(labels))
        classifier = LogisticRegression(C=c, max_iter=300).fit(x, y)
        return cls(features, classifier, entries, fingerprint, time.monotonic() - started)

    def predict(self, query: str, vector: np.ndarray, top: int = 20) -> dict[str, float]:
        """The ``top`` most likely entries for ``query`` (embedded as ``vector``) with their probabilities."""
        from scipy import sparse

        x = sparse.hstack([self.features.transform([query]), sparse.csr_matrix(vector.reshape(1, -1))]).tocsr()
        p = self.classifier.predict_proba(x)[0]
        best = np.argsort(-p)[:top]
        return {self.entries[i]: float(p[i]) for i in best}

    # --- on disk ----------------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write atomically (a temporary file renamed into place)."""
        import joblib

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        joblib.dump(self, tmp)
        os.replace(tmp, path)

    @staticmethod
    def load(path: Path) -> IntentModel | None:
        """A saved model, or None when it is missing or unreadable (it is then trained again)."""
        import joblib

        try:
            model = joblib.load(path)
        except Exception:
            return None
        return model if isinstance(model, IntentModel) else None


_TRAINED: OrderedDict[str, IntentModel] = OrderedDict()
_TRAINED_LOCK = threading.Lock()
_TRAINED_MAX = 16


def recall(fp: str) -> IntentModel | None:
    """The model this process last trained from fingerprint ``fp``, if it still keeps it."""
    with _TRAINED_LOCK:
        return _TRAINED.get(fp)


def remember(model: IntentModel) -> None:
    """Keep ``model`` for :func:`recall` (the last few only)."""
    with _TRAINED_LOCK:
        _TRAINED[model.fingerprint] = model
        _TRAINED.move_to_end(model.fingerprint)
        while len(_TRAINED) > _TRAINED_MAX:
            _TRAINED.popitem(last=False)


def fingerprint(parts: Sequence[str]) -> str:
    """A short hash of what a model was trained from (the collection's file hashes and the embedder)."""
    h = hashlib.sha256(f"intents/{VERSION}".encode())
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]
