"""One knowledge base for every node: the manifest on a Chroma server, each node's keyword index a replica of it.

With ``knowledge.chroma_url`` set (``FAY_KNOWLEDGE__CHROMA_URL=http://chroma:8000``, a ``chroma run`` server),
the server is the one store all nodes read and write:

- the vectors, in one Chroma collection per knowledge collection, as embedded Chroma holds them;
- the manifest, in the Chroma collection :data:`MANIFEST`: one record per ingested file (its path, size, hash,
  embedder, and its entries as JSON in the record's document), one per collection, and a change ``stamp``
  rewritten after every write.

Each node keeps, under ``<data_dir>/knowledge-replica/<hash of the URL>/``, a replica of the manifest in SQLite
with the FTS5 keyword index built from it, and the intent models it trains from the server's FAQ phrasings. Why a
replica rather than a shared folder: SQLite must not be shared over a network file system (its locks do not hold
there, and a bank's nodes rarely share a disk), while the keyword index and the intent models are derived data, a
few seconds to rebuild from the entries. Before every search, ingest and listing a node reads the stamp (one small
request); when it moved, the node applies the files that changed (:meth:`SharedManifest.sync_into`), so an ingest
through any node, or ``fay kb ingest``, is answered from by every node without a restart.

Concurrent ingests of one collection: Chroma serialises each write, row ids carry the file's content hash
(``<path hash><sha256 prefix>:<entry>:<row>``) so two versions of a file never overwrite each other's rows, and
a search counts only rows of the version the manifest names (:meth:`VectorIndex.nearest` with ``live``). When two
nodes ingest one file at once, the last manifest write wins; the other removes its own rows when it sees it lost.
In a narrow race (the loser checks before the winner's manifest write) the loser's rows stay in Chroma, never
counted, until the file is ingested again or removed.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import KnowledgeError
from .documents import Entry

#: the Chroma collection that holds the manifest (no knowledge collection may take this name)
MANIFEST = "fay-manifest"
_STAMP = "stamp"
_DUMMY = [1.0]  # Chroma wants an embedding per record; manifest records are only ever fetched by id or metadata


def chroma_client(url: str) -> Any:
    """A Chroma ``HttpClient`` for ``http(s)://host:port``; a malformed URL is a :class:`KnowledgeError`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise KnowledgeError(f"knowledge.chroma_url {url!r} is not a Chroma server URL: use http://host:port "
                             "(the address `chroma run --host ... --port ...` listens on)")
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    port = parts.port or (443 if parts.scheme == "https" else 8000)
    try:
        return chromadb.HttpClient(host=parts.hostname, port=port, ssl=parts.scheme == "https",
                                   settings=ChromaSettings(anonymized_telemetry=False))
    except Exception as exc:
        raise KnowledgeError(f"the Chroma server at {url} cannot be reached: {type(exc).__name__}: {exc} (is "
                             "`chroma run` up?)") from None


def row_prefix(path: str, sha256: str) -> str:
    """The first part of the row ids of one version of a file (no ``:`` in it)."""
    return hashlib.sha1(path.encode()).hexdigest()[:10] + sha256[:10]


@dataclass(frozen=True)
class RemoteFile:
    """A file as the server's manifest lists it."""

    collection: str
    path: str
    sha256: str
    size: int
    mtime_ns: int

    @property
    def key(self) -> str:
        return "file:" + hashlib.sha1(f"{self.collection}\0{self.path}".encode()).hexdigest()


def _file_key(collection: str, path: str) -> str:
    return RemoteFile(collection, path, "", 0, 0).key


class SharedManifest:
    """The manifest records on the Chroma server (see the module docstring). Not locked: the knowledge base
    serialises its own calls; other nodes' writes are what :meth:`stamp` detects."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.col = client.get_or_create_collection(MANIFEST, embedding_function=None)

    def stamp(self) -> str:
        """The change stamp: a new value after every write by any node (``""`` before the first)."""
        got = self.col.get(ids=[_STAMP], include=["metadatas"])
        metas = got.get("metadatas") or []
        return str(metas[0]["value"]) if metas else ""

    def bump(self) -> None:
        self.col.upsert(ids=[_STAMP], embeddings=[_DUMMY], metadatas=[{"kind": "stamp", "value": uuid.uuid4().hex}])

    # --- collections and files ----------------------------------------------------------------------------

    def collections(self) -> dict[str, str]:
        """Every collection with the embedder that built it."""
        got = self.col.get(where={"kind": "collection"}, include=["metadatas"])
        return {str(m["collection"]): str(m["embedder"]) for m in got.get("metadatas") or []}

    def put_collection(self, name: str, embedder: str) -> None:
        self.col.upsert(ids=[f"collection:{name}"], embeddings=[_DUMMY],
                        metadatas=[{"kind": "collection", "collection": name, "embedder": embedder}])

    def drop_collection(self, name: str) -> None:
        self.col.delete(where={"collection": name})

    def files(self) -> list[RemoteFile]:
        got = self.col.get(where={"kind": "file"}, include=["metadatas"])
        return [RemoteFile(str(m["collection"]), str(m["path"]), str(m["sha256"]), int(m["size"]),
                           int(m["mtime_ns"])) for m in got.get("metadatas") or []]

    def sha_of(self, collection: str, path: str) -> str | None:
        got = self.col.get(ids=[_file_key(collection, path)], include=["metadatas"])
        metas = got.get("metadatas") or []
        return str(metas[0]["sha256"]) if metas else None

    def put_file(self, collection: str, path: str, sha256: str, size: int, mtime_ns: int,
                 entries: list[Entry]) -> None:
        doc = json.dumps([e.__dict__ for e in entries], ensure_ascii=False, default=str)
        meta = {"kind": "file", "collection": collection, "path": path, "sha256": sha256, "size": size,
                "mtime_ns": mtime_ns}
        self.col.upsert(ids=[_file_key(collection, path)], embeddings=[_DUMMY], metadatas=[meta], documents=[doc])

    def drop_file(self, collection: str, path: str) -> None:
        self.col.delete(ids=[_file_key(collection, path)])

    def entries(self, files: Iterable[RemoteFile]) -> dict[str, list[Entry]]:
        """The entries of ``files``, by their record keys."""
        keys = [f.key for f in files]
        out: dict[str, list[Entry]] = {}
        for start in range(0, len(keys), 200):
            got = self.col.get(ids=keys[start:start + 200], include=["documents"])
            for key, doc in zip(got["ids"], got.get("documents") or [], strict=True):
                out[key] = [_entry(d) for d in json.loads(doc or "[]")]
        return out


def _entry(d: dict[str, Any]) -> Entry:
    return Entry(**{**d, "questions": tuple(d.get("questions") or ())})
