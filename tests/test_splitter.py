"""Sentence splitting of streamed LLM text: Chinese punctuation, numbers, abbreviations, streaming."""

from __future__ import annotations

import re

import pytest

from fay_core.voice.splitter import SentenceSplitter, ends_sentence, speakable


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
    ("营业时间为9:00至17:00，周六9:00至13:00。周日休息。", ["营业时间为9:00至17:00，周六9:00至13:00。", "周日休息。"]),
    ("限额为2,000.50元。谢谢！", ["限额为2,000.50元。", "谢谢！"]),
    ("金额为¥2,000.50，年利率1.75%；期限1.5年。", ["金额为¥2,000.50，年利率1.75%；", "期限1.5年。"]),
    ("请稍等……好的。", ["请稍等……", "好的。"]),
    ("真的吗?好的!再见。", ["真的吗?", "好的!", "再见。"]),
    ("请拨打400-800-1234。好。", ["请拨打400-800-1234。", "好。"]),
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


@pytest.mark.parametrize("cut", [22, 24, 26, 28])
def test_a_long_chinese_sentence_is_not_cut_inside_a_number(cut: int) -> None:
    # without a comma of its own the first cut would fall on the comma of 2,000.50 or the colon of 9:00
    text = "本月应还款金额为人民币二千元整另加利息2,000.50元还款日为每月十五日上午9:00之前请留意并按时还款谢谢"
    s = SentenceSplitter(max_chars=cut)
    out = s.feed(text) + s.flush()
    assert "".join(out) == text and len(out) > 1
    assert all(len(part) <= cut for part in out[:-1])
    for part in out:
        assert not re.search(r"[0-9][,:]$|^[,:.]?[0-9]", part), out


def test_a_long_chinese_sentence_without_commas_is_still_cut() -> None:
    text = "我们的营业时间是周一至周五上午九点到下午五点周六上午九点到下午一点周日休息节假日另行通知敬请谅解谢谢"
    s = SentenceSplitter(max_chars=30)
    first = s.feed(text)
    assert first and len(first[0]) <= 30
    assert "".join(first + s.flush()) == text


# --- the first piece: a clause ----------------------------------------------------------------------------


def first_clause(text: str, step: int | None = None) -> list[str]:
    s = SentenceSplitter(first_clause_chars=20, first_phrase_chars=40)
    out: list[str] = []
    pieces = [text] if step is None else [text[i : i + step] for i in range(0, len(text), step)]
    for piece in pieces:
        out += s.feed(piece)
    return out + s.flush()


CLAUSE_CASES = [
    # the first piece ends at its first clause mark once it is long enough; later pieces are sentences
    ("Our branches are open every weekday, from nine to five, and on Saturday mornings. Call us, any time.",
     ["Our branches are open every weekday,", "from nine to five, and on Saturday mornings.", "Call us, any time."]),
    # too short to stand alone ("Yes,"): the first clause mark that leaves enough is taken
    ("Yes, of course, you can open an account online. It takes ten minutes.",
     ["Yes, of course, you can open an account online.", "It takes ten minutes."]),
    ("Yes, of course you can, and it only takes ten minutes. Bring ID.",
     ["Yes, of course you can,", "and it only takes ten minutes.", "Bring ID."]),
    # never inside a number or a time
    ("The annual fee is 2,000 dollars for the premium card; the standard card is free.",
     ["The annual fee is 2,000 dollars for the premium card;", "the standard card is free."]),
    ("We open at 9:00 and close at 17:00 on weekdays, and at 13:00 on Saturdays.",
     ["We open at 9:00 and close at 17:00 on weekdays,", "and at 13:00 on Saturdays."]),
    # no clause mark in a long first sentence: cut before a conjunction
    ("Harbor Bank branches are open Monday to Friday from 9:00 to 17:00 and Saturday from 9:00 to 13:00. "
     "They are closed on Sundays.",
     ["Harbor Bank branches are open Monday to Friday from 9:00 to 17:00", "and Saturday from 9:00 to 13:00.",
      "They are closed on Sundays."]),
    # a short first sentence is spoken whole
    ("Sure. Our branches open at nine in the morning, every day.",
     ["Sure.", "Our branches open at nine in the morning, every day."]),
    ("营业时间为周一至周五9:00至17:00，周六9:00至13:00，周日休息。如需帮助，请拨打热线。",
     ["营业时间为周一至周五9:00至17:00，", "周六9:00至13:00，周日休息。", "如需帮助，请拨打热线。"]),
    ("您好，我们的年费为¥2,000，首年免年费。", ["您好，我们的年费为¥2,000，", "首年免年费。"]),
    ("他说：“好的。”然后离开了。", ["他说：“好的。”", "然后离开了。"]),
]


@pytest.mark.parametrize(("text", "expected"), CLAUSE_CASES)
def test_the_first_piece_is_a_clause_whole_and_streamed(text: str, expected: list[str]) -> None:
    assert first_clause(text) == expected
    for step in (1, 2, 3, 7):
        assert first_clause(text, step) == expected


def test_a_comma_after_a_digit_waits_for_the_next_character() -> None:
    s = SentenceSplitter(first_clause_chars=10)
    assert s.feed("The annual fee is 2,") == []  # 2,000 or "2, and"?
    assert s.feed("000 dollars, paid yearly") == ["The annual fee is 2,000 dollars,"]
    s = SentenceSplitter(first_clause_chars=10)
    assert s.feed("We have branches in 12,") == []
    assert s.feed(" cities") == ["We have branches in 12,"]


def test_which_pieces_end_a_sentence() -> None:
    assert ends_sentence("Sure.") and ends_sentence("他说：“好的。”") and ends_sentence("Really?")
    assert not ends_sentence("Our branches are open every weekday,")
    assert not ends_sentence("open Monday to Friday from 9:00 to 17:00")
    assert not ends_sentence("营业时间为9:00至17:00，")


def test_without_the_first_clause_settings_the_first_piece_is_a_sentence() -> None:
    text = "Our branches are open every weekday, from nine to five. Call us."
    assert split(text) == ["Our branches are open every weekday, from nine to five.", "Call us."]
