"""The intent model over FAQ phrasings, and the confidence the guardrail reads.

Real e5-fast embeddings, real Chroma and scikit-learn; BANKING77 questions from ``../shared/data``.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from pathlib import Path

import pytest

from fay_core.knowledge import KnowledgeBase, ingest_persona
from fay_core.knowledge.documents import Entry
from fay_core.knowledge.intents import IntentModel
from fay_core.persona import load_persona
from fay_e5.fast import FastE5Embedder

#: card intents of BANKING77 that dense nearest-neighbour search confuses with one another
CARD_INTENTS = ("card_arrival", "card_delivery_estimate", "card_not_working", "declined_card_payment",
                "lost_or_stolen_card", "compromised_card", "card_payment_not_recognised", "card_swallowed",
                "activate_my_card", "card_linking", "pin_blocked", "change_pin")


def banking77(shared_data: Path, split: str, per_intent: int) -> dict[str, list[str]]:
    by: dict[str, list[str]] = defaultdict(list)
    with (shared_data / "banking77" / f"{split}.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["category"] in CARD_INTENTS and len(by[row["category"]]) < per_intent:
                by[row["category"]].append(row["text"])
    return by


def faq(by_intent: dict[str, list[str]]) -> list[Entry]:
    return [Entry(id=i, title=qs[0], text=f"About {i}.", kind="faq", source="card-faq.yaml", questions=tuple(qs[1:]))
            for i, qs in sorted(by_intent.items())]


def hit_at_1(kb: KnowledgeBase, queries: list[tuple[str, str]]) -> float:
    return sum(kb.search(q, "cards", top_k=1)[0].id == intent for q, intent in queries) / len(queries)


def test_the_intent_model_tells_close_faq_entries_apart(kb: KnowledgeBase, shared_data: Path) -> None:
    kb.ingest_entries("cards", "card-faq.yaml", faq(banking77(shared_data, "train", 60)))
    model = kb.intent_model("cards")
    assert model is not None and sorted(model.entries) == sorted(CARD_INTENTS)
    queries = [(q, i) for i, qs in banking77(shared_data, "test", 30).items() for q in qs]
    with_model = hit_at_1(kb, queries)
    kb.settings = kb.settings.model_copy(update={"intent_weight": 0.0})
    dense_only = hit_at_1(kb, queries)
    assert with_model >= dense_only + 0.02, (with_model, dense_only)  # measured: 0.950 against 0.919


def test_the_model_is_kept_on_disk_and_retrained_only_after_a_change(
    tmp_path: Path, embedder: FastE5Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "faq"
    folder.mkdir()
    doc = folder / "faq.yaml"
    doc.write_text(
        "- id: freeze\n  question: How do I freeze my card?\n  questions: ['Can I block my card for a while?', "
        "'Pause my card']\n  answer: Tap Freeze card in the app.\n"
        "- id: hours\n  question: When are you open?\n  questions: ['Opening hours?', 'Are you open on Saturday?']\n"
        "  answer: 9 to 5 on weekdays.\n", encoding="utf-8")
    kb = KnowledgeBase(tmp_path / "knowledge", embedder)
    kb.ingest([folder], "faq")
    saved = sorted((tmp_path / "knowledge" / "intents").glob("faq-*.joblib"))
    assert len(saved) == 1 and kb.intent_model("faq") is not None
    kb.close()

    def no_training(*args: object, **kwargs: object) -> IntentModel:
        raise AssertionError("the saved model should have been loaded")

    monkeypatch.setattr(IntentModel, "train", no_training)
    again = KnowledgeBase(tmp_path / "knowledge", embedder)
    assert again.search("is the branch open on saturday", "faq")[0].id.endswith("hours")
    monkeypatch.undo()
    doc.write_text(doc.read_text(encoding="utf-8") + "- id: pin\n  question: I forgot my PIN\n"
                   "  questions: [Reset my PIN]\n  answer: Reset it in the app.\n", encoding="utf-8")
    again.ingest([folder], "faq")
    model = again.intent_model("faq")
    assert model is not None and len(model.entries) == 3
    now = sorted((tmp_path / "knowledge" / "intents").glob("faq-*.joblib"))
    assert len(now) == 1 and now != saved  # retrained under a new fingerprint, the stale file removed
    again.close()


def test_a_match_shared_by_two_entries_is_less_confident(kb: KnowledgeBase) -> None:
    kb.ingest_entries("shared", "faq", [
        Entry(id="a", title="How do I close my account?", text="Visit a branch.", kind="faq", source="a.yaml"),
        Entry(id="b", title="How do I close my account?", text="Call us.", kind="faq", source="b.yaml"),
        Entry(id="c", title="What are your opening hours?", text="9 to 5.", kind="faq", source="c.yaml"),
    ])
    split = kb.search("How do I close my account?", "shared")[0]
    clear = kb.search("What are your opening hours?", "shared")[0]
    assert split.similarity > 0.99 and clear.similarity > 0.99
    assert split.share < 0.6 and clear.share > 0.9
    assert split.confidence < split.similarity - 0.025 and clear.confidence > clear.similarity - 0.01


def test_a_persona_collection_built_by_another_embedder_is_rebuilt(tmp_path: Path, embedder: FastE5Embedder) -> None:
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "faq.yaml").write_text(
        "- question: When are you open?\n  answer: 9 to 5 on weekdays.\n", encoding="utf-8")
    (tmp_path / "teller.yaml").write_text(
        "name: Teller\nsystem_prompt: You are a teller.\nknowledge:\n  paths: [kb]\n  collections: [teller-kb]\n",
        encoding="utf-8")
    persona = load_persona(tmp_path / "teller.yaml")

    class Renamed(FastE5Embedder):
        name = "older-embedder"

    old = KnowledgeBase(tmp_path / "knowledge", Renamed())
    ingest_persona(old, persona)
    assert old.embedder_of("teller-kb") == "older-embedder"
    old.close()
    kb = KnowledgeBase(tmp_path / "knowledge", embedder)
    ingest_persona(kb, persona)
    assert kb.embedder_of("teller-kb") == "e5-fast"
    assert kb.search("opening hours", "teller-kb")[0].entry.text.startswith("9 to 5")
    kb.close()


def test_chinese_phrasings_train_a_model_too(kb: KnowledgeBase) -> None:
    rng = random.Random(3)
    entries = [
        Entry(id="lost", title="我的卡丢了怎么办", text="请立即在手机银行挂失。", kind="faq", source="zh.yaml",
              questions=("银行卡丢失了", "卡被偷了怎么挂失", "我找不到我的银行卡了")),
        Entry(id="hours", title="你们几点开门", text="工作日九点到五点。", kind="faq", source="zh.yaml",
              questions=("营业时间是什么", "周六营业吗", "网点几点关门")),
    ]
    rng.shuffle(entries)
    kb.ingest_entries("zh-faq", "zh.yaml", entries)
    assert kb.intent_model("zh-faq") is not None
    assert kb.search("我的信用卡不见了", "zh-faq")[0].id == "lost"
    assert kb.search("星期天开门吗", "zh-faq")[0].id == "hours"
