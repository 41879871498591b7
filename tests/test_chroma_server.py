"""One knowledge base for several nodes: a real ``chroma run`` server, knowledge bases that share it.

An ingest through one is answered from by another without a restart; concurrent ingests of one collection leave it
consistent; without ``knowledge.chroma_url`` nothing changes.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fay_core.errors import KnowledgeError
from fay_core.knowledge import KnowledgeBase, knowledge_root
from fay_core.knowledge.shared import MANIFEST, row_prefix
from fay_core.testing import test_settings

CHROMA = Path(sys.executable).with_name("chroma")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Chroma server on a free loopback port, for this module."""
    port = _free_port()
    path = tmp_path_factory.mktemp("chroma")
    proc = subprocess.Popen([str(CHROMA), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2):
                break
        except OSError:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "chroma run did not answer in 60 s"
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(20)


@pytest.fixture
def nodes(tmp_path: Path, embedder, chroma_url: str) -> Iterator[list[KnowledgeBase]]:
    """Three knowledge bases, as three nodes would have them: one server, a replica each."""
    bases = [KnowledgeBase(tmp_path / f"node{i}", embedder, chroma_url=chroma_url) for i in range(3)]
    yield bases
    for kb in bases:
        kb.close()


def _doc(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(body, encoding="utf-8")
    return path


def test_an_ingest_through_one_node_is_answered_from_another(nodes, tmp_path: Path) -> None:
    a, b, _ = nodes
    coll = f"shared-{tmp_path.name[-12:].strip('_-')}"
    doc = _doc(tmp_path / "docs", "vault.md", "# Safe deposit boxes\nA small safe deposit box costs 45 euros a year.\n")
    assert not b.has(coll)
    report = a.ingest([doc], coll)
    assert report.added and report.rows >= 1
    hits = b.search("How much is a safe deposit box?", coll)  # no restart: b learns of it from the server
    assert hits and "45 euros" in hits[0].entry.text
    assert b.has(coll) and b.embedder_of(coll) == a.embedder_name
    assert b.keywords.search(coll, "deposit", 5)  # its keyword index is a replica too
    # a new version through b replaces the old one for a
    doc.write_text("# Safe deposit boxes\nA small safe deposit box costs 60 euros a year.\n", encoding="utf-8")
    assert b.ingest([doc], coll).updated
    hits = a.search("How much is a safe deposit box?", coll)
    assert "60 euros" in hits[0].entry.text and all("45 euros" not in h.entry.text for h in hits)
    assert a.delete(coll) and not b.has(coll)
    with pytest.raises(KnowledgeError, match="unknown collection"):
        b.search("safe deposit box", coll)


def test_concurrent_ingests_of_one_collection_leave_it_consistent(nodes, tmp_path: Path) -> None:
    a, b, c = nodes
    coll = f"race-{tmp_path.name[-12:].strip('_-')}"
    shared_doc = tmp_path / "shared.md"
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    for i in range(6):
        _doc(a_dir, f"a{i}.md", f"# Product A{i}\nProduct A{i} is a savings account with rate {i}.{i} percent.\n")
        _doc(b_dir, f"b{i}.md", f"# Card B{i}\nCard B{i} has a yearly fee of {10 + i} euros.\n")
    versions = {"a": "# Branch hours\nThe branch opens at eight.\n" * 3,
                "b": "# Branch hours\nThe branch opens at nine.\n"}
    a.ingest([a_dir], coll)  # the collection exists before the race
    errors: list[BaseException] = []

    def run(kb: KnowledgeBase, folder: Path, who: str) -> None:
        try:
            kb.ingest([folder], coll)
            path = tmp_path / who / "shared.md"
            path.write_text(versions[who], encoding="utf-8")
            kb.ingest_entries(coll, str(shared_doc), kb.load(path, "shared.md"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a, a_dir, "a")), threading.Thread(target=run, args=(b, b_dir, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    info = {i.name: i for i in c.collections()}[coll]
    assert info.files == 13  # 6 + 6 files and the one both wrote
    winner = c.manifest.file(coll, str(shared_doc))
    assert winner is not None
    # every node counts exactly the rows of the versions the manifest names, whatever the interleaving was
    col = c.index.collection(coll)
    got = col.get(include=["metadatas"])
    live = c.index.live[coll]
    counted = [rid for rid in got["ids"] if rid.split(":", 1)[0] in live]
    assert len(counted) == info.rows
    assert row_prefix(str(shared_doc), winner.sha256) in live
    hits = c.search("When does the branch open?", coll)
    assert hits[0].entry.source == "shared.md"
    assert ("eight" in hits[0].entry.text) != ("nine" in hits[0].entry.text)  # one version, never a mixture
    assert any("B3" in h.entry.text for h in c.search("yearly fee of card B3", coll))
    assert any("A4" in h.entry.text for h in c.search("savings rate of product A4", coll))


def test_the_manifest_collection_name_is_reserved_and_the_default_stays_embedded(nodes, tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match="reserved"):
        nodes[0].ingest_entries(MANIFEST, "x", [])
    settings = test_settings(tmp_path / "data")
    assert knowledge_root(settings) == tmp_path / "data" / "knowledge"
    assert settings.knowledge.chroma_url is None
    shared = test_settings(tmp_path / "data", knowledge={"chroma_url": "http://chroma:8000"})
    assert knowledge_root(shared).parent == tmp_path / "data" / "knowledge-replica"


def test_a_bad_chroma_url_fails_clearly(tmp_path: Path, embedder) -> None:
    kb = KnowledgeBase(tmp_path / "k", embedder, chroma_url="chroma:8000")
    with pytest.raises(KnowledgeError, match="not a Chroma server URL"):
        kb.has("anything")
    kb.close()
