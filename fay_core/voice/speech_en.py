"""English text as a voice should read it: times, amounts, rates, numbers, dates and phone numbers in words.

Piper and eSpeak read ``9:00`` as "nine zero zero", ``$2,000`` as "dollar two thousand" and ``400-800-1234`` as
"four hundred dash eight hundred dash one thousand…". :func:`english_pieces` finds the pieces to rewrite and
gives what a bank teller says for each; :class:`fay_core.voice.speech_text.SpeechText` builds the spoken form
from them (``language: en``), so the word timings measured on the spoken form are told in the written words
(captions and the history keep ``$2,000``).

How it reads, in the order the rules are tried:

- **Dates**: ``2026-12-01`` → December first, twenty twenty-six.
- **Times**: ``9:00`` → nine o'clock, ``9:30`` → nine thirty, ``9:05`` → nine oh five; hours from 13 are the
  afternoon: ``17:00`` → five p.m., ``13:30`` → one thirty p.m.; a morning time in a range that ends in the
  afternoon says so (``9:00 to 17:00`` → nine a.m. to five p.m.); ``12:00`` → twelve noon, ``0:00`` → midnight.
  ``5:30 pm``, ``10am`` keep their a.m./p.m. (five thirty p.m., ten a.m.).
- **Phone numbers** (``400-800-1234``, ``555-1234``, ``(212) 555-1234``) digit by digit, 0 read "oh", the groups
  apart: four oh oh, eight oh oh, one two three four.
- **Amounts**: ``$2,000`` → two thousand dollars, ``$2,000.50`` → two thousand dollars and fifty cents,
  ``$1`` → one dollar, ``$0.50`` → fifty cents, ``$1.5 million`` → one point five million dollars; ``€`` euros,
  ``£`` pounds (pence), ``¥`` yuan, ``HK$`` Hong Kong dollars, ``100 USD`` → one hundred US dollars.
- **Percentages**: ``3.85%`` → three point eight five percent, ``-0.5%`` → minus zero point five percent.
- **Codes**: capitals with digits or dashes are spelled, digits one by one: ``HB-TD-06M`` → H B dash T D dash
  zero six M, ``G101`` → G one zero one.
- **Ordinals**: ``1st`` → first, ``22nd`` → twenty-second.
- **Years**: four digits from 1100 to 2099 written without a comma: ``2026`` → twenty twenty-six, ``2005`` → two
  thousand five, ``1900`` → nineteen hundred.
- **Identifiers**: five or more digits without a comma (an account or a hotline: ``95999``) digit by digit.
- **Numbers**: ``2,000`` → two thousand, ``3.5`` → three point five, ``-3`` → minus three; ``3-5`` and
  ``3%-5%`` read the dash as "to"; ``1/2`` → one half, ``3/4`` → three quarters (denominators up to 10).

Words are left to the voice. Numbers of more than 15 digits are read digit by digit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["cardinal", "english_pieces", "ordinal"]

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ("", " thousand", " million", " billion", " trillion")
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_DENOMINATORS = {2: ("half", "halves"), 4: ("quarter", "quarters")}
#: currency sign or code → (one, many, cent, cents)
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"), "US$": ("US dollar", "US dollars", "cent", "cents"),
    "HK$": ("Hong Kong dollar", "Hong Kong dollars", "cent", "cents"), "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"), "¥": ("yuan", "yuan", "fen", "fen"),
    "USD": ("US dollar", "US dollars", "cent", "cents"), "EUR": ("euro", "euros", "cent", "cents"),
    "GBP": ("pound", "pounds", "penny", "pence"), "CNY": ("yuan", "yuan", "fen", "fen"),
    "RMB": ("yuan", "yuan", "fen", "fen"), "HKD": ("Hong Kong dollar", "Hong Kong dollars", "cent", "cents"),
}
_BIG = {"thousand": " thousand", "million": " million", "billion": " billion", "trillion": " trillion",
        "k": " thousand", "m": " million", "bn": " billion"}

_NUM = r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?"
_CLOCK = r"(?<![0-9:.,])(?P<h>[01]?[0-9]|2[0-4]):(?P<m>[0-5][0-9])(?::(?P<s>[0-5][0-9]))?(?![0-9:])"
_AMPM = r"(?:\s?(?P<ampm>[AaPp])\.?[Mm]\.?(?![A-Za-z]))"
_PATTERN = re.compile(
    "|".join(
        [
            r"(?P<date>(?<![0-9-])(?P<y>1[1-9][0-9]{2}|20[0-9]{2})-(?P<mo>0[1-9]|1[0-2])-(?P<d>0[1-9]|[12][0-9]|3[01])"
            r"(?![0-9-]))",
            rf"(?P<time>{_CLOCK}{_AMPM}?)",
            r"(?P<hour>(?<![0-9:.,])(?P<hh>1[0-2]|0?[1-9])\s?(?P<hap>[AaPp])\.?[Mm]\.?(?![A-Za-z]))",
            r"(?P<phone>(?<![0-9-])(?:\([0-9]{3}\)\s?[0-9]{3}-[0-9]{4}|(?:1-)?[0-9]{3}-[0-9]{3}-[0-9]{4}"
            r"|[0-9]{3} [0-9]{3} [0-9]{4}|[0-9]{3}-[0-9]{4})(?![0-9-]))",
            rf"(?P<money>(?P<mneg>(?<![0-9A-Za-z.%])-)?(?P<cur>US\$|HK\$|[$€£¥])\s?(?P<amount>{_NUM})"
            r"(?:\s?(?P<big>thousand|million|billion|trillion|bn|k|m)(?![A-Za-z]))?)",
            rf"(?P<money2>(?P<amount2>{_NUM})\s?(?P<cur2>USD|EUR|GBP|CNY|RMB|HKD)(?![A-Za-z]))",
            r"(?P<code>(?<![A-Za-z0-9-])(?:[A-Z]{2,}[0-9]*(?:-[A-Z0-9]+)+|[A-Z]+[0-9][A-Z0-9]*|[0-9]+[A-Z][A-Z0-9]*)"
            r"(?![A-Za-z0-9]))",
            rf"(?P<pct>(?P<pneg>(?<![0-9A-Za-z.%])-)?(?P<pvalue>{_NUM})\s?%)",
            r"(?P<ord>(?<![0-9.,])(?P<ordn>[0-9]+)(?:st|nd|rd|th)(?![A-Za-z]))",
            r"(?P<frac>(?<![0-9/.])(?P<fn>[0-9]{1,2})/(?P<fd>[2-9]|10)(?![0-9/]|\.[0-9]))",
            rf"(?P<number>(?P<neg>(?<![0-9A-Za-z.%])-)?(?P<value>{_NUM}))",
            r"(?P<range>(?<=[0-9%])\s*[-–~]\s*(?=[-$€£¥]?[0-9]))",
        ]
    )
)
_TRIGGER = re.compile(r"[0-9]")
_RANGE_TO = re.compile(r"\s*(?:[-–~]|to|until|till|through)\s*(?:[01]?[0-9]|2[0-4]):[0-5][0-9]")


# --- reading numbers --------------------------------------------------------------------------------------


def _under_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    words = [f"{_ONES[hundreds]} hundred"] if hundreds else []
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_TENS[tens] + (f"-{_ONES[ones]}" if ones else ""))
    elif rest or not hundreds:
        words.append(_ONES[rest])
    return " ".join(words)


def cardinal(n: int) -> str:
    """``n`` in words, as an American reads it: ``2500`` → two thousand five hundred, ``-3`` → minus three."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n < 1000:
        return _under_thousand(n)
    parts = []
    scale = 0
    while n:
        n, group = divmod(n, 1000)
        if group:
            parts.append(_under_thousand(group) + _SCALES[scale])
        scale += 1
    return " ".join(reversed(parts))


def ordinal(n: int) -> str:
    """``n`` as an ordinal: ``1`` → first, ``22`` → twenty-second, ``100`` → one hundredth."""
    words = cardinal(n)
    head, sep, last = words.rpartition("-") if "-" in words.split(" ")[-1] else words.rpartition(" ")
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def _digits(digits: str, zero: str = "zero") -> str:
    return " ".join(zero if d == "0" else _ONES[int(d)] for d in digits if d.isdigit())


def _number(written: str) -> str:
    """A written number (``2,000.50``, ``-3``, ``007``) in words; decimals digit by digit after "point"."""
    s = written.replace(",", "")
    sign = ""
    if s.startswith("-"):
        sign, s = "minus ", s[1:]
    whole, _, frac = s.partition(".")
    out = _digits(whole) if len(whole) > 15 or (len(whole) > 1 and whole.startswith("0")) else cardinal(int(whole))
    if frac:
        out += " point " + _digits(frac)
    return sign + out


def _year(n: int) -> str:
    century, rest = divmod(n, 100)
    if century % 10 == 0 and rest < 10:  # 2000, 2005: two thousand five
        return cardinal(n)
    if rest == 0:
        return cardinal(century) + " hundred"
    return cardinal(century) + " " + (f"oh {_ONES[rest]}" if rest < 10 else cardinal(rest))


# --- the rules --------------------------------------------------------------------------------------------


def _clock(h: int, m: int, s: int, ampm: str, *, morning: bool) -> str:
    """One time of day; ``ampm`` as written (``a``/``p``, or empty); ``morning``: say a.m. for hours before 12."""
    if not ampm and m == 0 and s == 0:
        if h in (0, 24):
            return "midnight"
        if h == 12:
            return "twelve noon"
    if ampm:
        suffix = " a.m." if ampm.lower() == "a" else " p.m."
    elif 13 <= h <= 23:
        suffix = " p.m."
    elif morning and h < 12:
        suffix = " a.m."
    else:
        suffix = ""
    h12 = h % 12 or 12
    out = cardinal(h12)
    if m:
        out += " " + (f"oh {_ONES[m]}" if m < 10 else cardinal(m))
    elif not suffix:
        out += " o'clock"
    if s:
        out += f" and {cardinal(s)} second" + ("s" if s > 1 else "")
    return out + suffix


def _time(m: re.Match[str], text: str) -> str:
    h, mi = int(m.group("h")), int(m.group("m"))
    s = int(m.group("s") or 0)
    ampm = m.group("ampm") or ""
    morning = False
    if not ampm and h < 12:
        after = _RANGE_TO.match(text, m.end())
        if after is not None:
            later = re.search(r"([01]?[0-9]|2[0-4]):", after.group())
            morning = later is not None and 13 <= int(later.group(1)) <= 23
    return _clock(h, mi, s, ampm, morning=morning)


def _money(amount: str, cur: str, big: str, negative: bool) -> str:
    one, many, cent, cents = _CURRENCIES[cur]
    sign = "minus " if negative else ""
    if big:
        return f"{sign}{_number(amount)}{_BIG[big.lower()]} {many}"
    s = amount.replace(",", "")
    whole, _, frac = s.partition(".")
    if len(frac) != 2 or len(whole) > 15:
        value = _number(amount)
        return f"{sign}{value} {one if value == 'one' else many}"
    n, c = int(whole or "0"), int(frac)
    parts = []
    if n or not c:
        parts.append(f"{cardinal(n)} {one if n == 1 else many}")
    if c:
        parts.append(f"{cardinal(c)} {cent if c == 1 else cents}")
    return sign + " and ".join(parts)


def _plain_number(m: re.Match[str]) -> str:
    value = m.group("value")
    negative = bool(m.group("neg"))
    if "," not in value and "." not in value:
        if len(value) >= 5:
            return ("minus " if negative else "") + _digits(value)
        if len(value) == 4 and 1100 <= int(value) <= 2099 and not negative:
            return _year(int(value))
    return _number(("-" if negative else "") + value)


def _code(code: str) -> str:
    """A product code, spelled: letters apart, digits one by one, ``-`` read "dash" (``HB-TD-06M``)."""
    words = []
    for part in code.split("-"):
        for run in re.findall(r"[A-Za-z]+|[0-9]+", part):
            words.append(" ".join(run) if run.isalpha() else _digits(run))
        words.append("dash")
    return " ".join(words[:-1])


def _fraction(m: re.Match[str]) -> str:
    num, den = int(m.group("fn")), int(m.group("fd"))
    one, many = _DENOMINATORS.get(den, (ordinal(den), ordinal(den) + "s"))
    return f"{cardinal(num)} {one if num == 1 else many}"


def _read(m: re.Match[str], text: str) -> str:
    kind = m.lastgroup
    if kind == "date":
        y, mo, d = int(m.group("y")), int(m.group("mo")), int(m.group("d"))
        return f"{_MONTHS[mo - 1]} {ordinal(d)}, {_year(y)}"
    if kind == "time":
        return _time(m, text)
    if kind == "hour":
        return _clock(int(m.group("hh")), 0, 0, m.group("hap"), morning=False)
    if kind == "phone":
        groups = re.findall(r"[0-9]+", m.group("phone"))
        return ", ".join(_digits(g, zero="oh") for g in groups)
    if kind == "money":
        return _money(m.group("amount"), m.group("cur"), m.group("big") or "", bool(m.group("mneg")))
    if kind == "money2":
        return _money(m.group("amount2"), m.group("cur2"), "", False)
    if kind == "code":
        return _code(m.group("code"))
    if kind == "pct":
        return ("minus " if m.group("pneg") else "") + _number(m.group("pvalue")) + " percent"
    if kind == "ord":
        return ordinal(int(m.group("ordn")))
    if kind == "frac":
        return _fraction(m)
    if kind == "range":
        return " to "
    return _plain_number(m)


def english_pieces(text: str) -> Iterator[tuple[int, int, str]]:
    """The pieces of ``text`` to read otherwise, in order: ``(start, end, spoken)`` (see the module's table)."""
    if not _TRIGGER.search(text):
        return
    for m in _PATTERN.finditer(text):
        # the rule's group is the outermost one that matched (named inner groups close before it)
        said = _read(m, text)
        start, end = m.span()
        if said.endswith(".") and text[end : end + 1] == ".":
            said = said[:-1]  # "five p.m." at the end of a sentence: one period
        if said != text[start:end]:
            yield start, end, said
