"""Cost of reading a sentence aloud: :func:`fay_core.voice.speech_text.SpeechText.of` per sentence of the Chinese
demo bank's answers (it runs on the event loop, once per sentence), and of the English ones (left unchanged).

    python bench/speech_text.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import yaml

from fay_core.voice.speech_text import SpeechText
from fay_core.voice.splitter import SentenceSplitter

ROOT = Path(__file__).resolve().parent.parent


def sentences(language: str) -> list[str]:
    faq = yaml.safe_load((ROOT / f"knowledge/demo_bank/{language}/faq.yaml").read_text(encoding="utf-8"))["faq"]
    out: list[str] = []
    for entry in faq:
        splitter = SentenceSplitter()
        out += splitter.feed(entry["answer"]) + splitter.flush()
    return out


def per_sentence_us(texts: list[str], language: str, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for text in texts:
            SpeechText.of(text, language)
        times.append((time.perf_counter() - t0) / len(texts) * 1e6)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    for language in ("zh", "en"):
        texts = sentences(language)
        times = per_sentence_us(texts, language, args.rounds)
        print(f"{language}: {len(texts)} sentences, median {statistics.median(times):.1f} µs/sentence, "
              f"max {max(times):.1f} µs/sentence over {args.rounds} rounds")


if __name__ == "__main__":
    main()
