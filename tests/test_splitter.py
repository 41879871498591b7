"""Sentence splitting of streamed LLM text: Chinese punctuation, numbers, abbreviations, streaming."""

from __future__ import annotations

import pytest

from fay_core.voice.splitter import SentenceSplitter, speakable


def split(text: str, step: int | None = None) -> list[str]:
    s = SentenceSplitter()
    out: list[str] = []
    pieces = [text] if step is None else [text[i : i + step] for i in range(0, len(text), step)]
    for piece in pieces:
        out += s.feed(piece)
    return out + s.flush()


CASES = [
    ("Our rate is 3.5% a year. It is fixed for 2 years.", ["Our rate is 3.5% a year.", "It is fixed for 2 years."]),
    ("Mr. Smith opened the U.S. account today. Thanks!", ["Mr. Smith opened the U.S. account today.", "Thanks!"]),
    ("Bring ID, e.g. a passport. Then sign here.", ["Bring ID, e.g. a passport.", "Then sign here."]),
    ("The fee is $1,000.50 per year! Is that ok? Yes.", ["The fee is $1,000.50 per year!", "Is that ok?", "Yes."]),
    ("J. K. Rowling wrote it. Read it.", ["J. K. Rowling wrote it.", "Read it."]),
    ("年利率为3.5%。请问还有什么问题？没有了！", ["年利率为3.5%。", "请问还有什么问题？", "没有了！"]),
    ("他说：“好的。”然后离开了。", ["他说：“好的。”", "然后离开了。"]),
    ("Steps:\n1. Open the app.\n2. Tap pay.", ["Steps:", "1. Open the app.", "2. Tap pay."]),
    ("Wait... what? OK.", ["Wait... what?", "OK."]),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_sentences_whole_and_streamed(text: str, expected: list[str]) -> None:
    assert split(text) == expected
    for step in (1, 3, 7):  # the same sentences however the deltas are cut
        assert split(text, step) == expected


def test_first_sentence_is_ready_before_the_rest_arrives() -> None:
    s = SentenceSplitter()
    assert s.feed("Hello there. How") == ["Hello there."]
    assert s.feed(" are you") == []
    assert s.flush() == ["How are you"]


def test_a_period_at_the_end_of_a_delta_waits_for_what_follows() -> None:
    s = SentenceSplitter()
    assert s.feed("The rate is 3.") == []  # could be 3.5
    assert s.feed("5% now. Next") == ["The rate is 3.5% now."]


def test_run_on_text_is_cut_at_a_comma() -> None:
    s = SentenceSplitter(max_chars=60)
    text = "We offer savings accounts, current accounts, fixed deposits, loans, cards and more for everyone"
    out = s.feed(text)
    assert out and len(out[0]) <= 60 and out[0].endswith(",")
    assert " ".join(out + s.flush()) == text


def test_speakable_drops_citations_and_markdown() -> None:
    assert speakable("**Savings** pay 2.1% [1] a year [2, 3].") == "Savings pay 2.1% a year."
    assert speakable("## Fees\n- none") == "Fees\nnone"


def test_emotion_tags_are_not_read_aloud() -> None:
    assert speakable("[happy] Sure, I can help. [1]") == "Sure, I can help."
