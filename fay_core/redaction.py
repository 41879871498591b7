"""Redaction: a customer's card, phone, ID, e-mail and IBAN never reach the audit log, the server log or traces.

A :class:`Detector` finds the spans of one kind of personal data in a text; a :class:`Redactor` runs every
detector and replaces each span by its mask. Masks are the kind in square brackets, and for payment cards the
last four digits, which PCI DSS allows to be shown::

    [card ****1111]  [phone]  [id]  [email]  [iban]

A plugin detector's spans are masked the same way (``[<kind>]``, or ``[<kind> ****<keep>]``). Masks contain no
sequence a built-in detector finds, so redacting twice changes nothing.

What is redacted, and what is not:

- the audit log: :class:`fay_core.record.SessionRecord` redacts every string (and integer) of every record,
  recursively, before it is written. The history the model reads next and the tools keep the real values.
- the server log: :class:`RedactingFilter` on the handlers ``fay run`` and ``fay chat`` set up; library users
  call :func:`install_log_filter` after configuring logging. It also writes a session id (32 hex digits: it
  reaches a signed-in customer's session) as its :func:`log_tag`, whichever module logged it.
- traces: a span exporter passes span attributes through :func:`redact_attributes` (Fay has no tracing yet).

Speech transcripts are covered too: digits written with spaces (``1 3 8 1 2 3 4 5 6 7 8``), Chinese digits
(``一三八一二三四五六七八``, ``幺``, ``〇``/``零``) and full-width digits are read as digits for detection only; the
mask replaces the original characters. Numbers a bank's customers share with everyone are left alone: service
numbers (``95999``, ``400-820-8888``), amounts (``2,000.00``), dates, product codes and account ids such as
``A-1001-01``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from .errors import ConfigError

#: the built-in kinds, in the order their detectors run (an earlier one wins a tie over the same characters)
Kind = Literal["email", "iban", "id", "card", "phone"]
KINDS: tuple[Kind, ...] = ("email", "iban", "id", "card", "phone")


@dataclass(frozen=True, slots=True)
class Span:
    """Characters ``text[start:end]`` of one kind of personal data.

    :param kind: a short lower-case name shown in the mask (``card``, ``passport``).
    :param keep: characters the mask may show (``[card ****1111]``); empty: the mask shows only the kind.
    """

    start: int
    end: int
    kind: str
    keep: str = ""

    @property
    def mask(self) -> str:
        """What replaces the span: ``[kind]`` or ``[kind ****keep]``."""
        return f"[{self.kind} ****{self.keep}]" if self.keep else f"[{self.kind}]"


@runtime_checkable
class Detector(Protocol):
    """Finds the spans of one kind of personal data in a text (a plugin registers it with ``register_redactors``).

    ``find`` is called for every string Fay writes to its audit log or server log, so keep it fast and
    synchronous: a regular expression and a check digit, no I/O. Spans may overlap other detectors' spans; the
    :class:`Redactor` keeps the earliest (then the longest) and drops those that overlap it.
    """

    #: the kind this detector finds, as masks show it (``[passport]``)
    kind: str

    def find(self, text: str) -> Iterable[Span]:
        """The spans of :attr:`kind` in ``text`` (indices into ``text`` itself, in any order)."""
        ...


# --- reading digits ------------------------------------------------------------------------------------------

_DIGIT_CHARS = "零〇一二三四五六七八九幺０１２３４５６７８９"
_TO_ASCII = str.maketrans(
    {**{c: v for c, v in zip("零〇一二三四五六七八九幺", "001234567891", strict=True)},
     **{chr(0xFF10 + i): str(i) for i in range(10)}, "（": " ", "）": " ", "(": " ", ")": " ", "Ｘ": "X"}
)
#: a run of digits with single separators between groups (spaces, a dash), an optional leading "+" and a
#: trailing X (a resident ID's check digit); never part of a longer word or code
_RUN = re.compile(
    r"(?<![0-9A-Za-z+])(\+\s?)?\d(?:(?:[ \t\u00a0\u3000]{1,2}|[ \u00a0]?[-\u2010-\u2013][ \u00a0]?)?\d)*[Xx]?"
    r"(?![0-9A-Za-z])"
)
_QUICK = re.compile(r"[0-9@" + _DIGIT_CHARS + "]")


def normalise_digits(text: str) -> str:
    """``text`` with Chinese and full-width digits as ASCII digits and brackets as spaces (same length).

    For detection only: spans found in the result are spans of ``text``.
    """
    return text.translate(_TO_ASCII)


@dataclass(frozen=True, slots=True)
class _Run:
    """The digits of one run: their characters, where each stands in the text, and where groups start and end."""

    digits: str
    at: tuple[int, ...]
    starts: frozenset[int]
    ends: frozenset[int]
    plus: bool
    plus_at: int
    check_x: bool  # the run ends in X right after its last digit
    x_at: int


@functools.lru_cache(maxsize=32)
def _runs(text: str) -> tuple[_Run, ...]:
    """The digit runs of ``text`` (cached: the card, phone and ID detectors read the same runs of one text)."""
    return tuple(_read_runs(text))


def _read_runs(text: str) -> Iterator[_Run]:
    norm = normalise_digits(text)
    for m in _RUN.finditer(norm):
        if m.end() - m.start() < 8:  # fewer than 8 digits: no kind is that short
            continue
        digits: list[str] = []
        at: list[int] = []
        starts: set[int] = set()
        ends: set[int] = set()
        prev = -2
        body_start = m.start() if not m.group(1) else m.end(1)
        for i in range(body_start, m.end()):
            c = norm[i]
            if "0" <= c <= "9":
                if i != prev + 1:
                    starts.add(len(digits))
                    if digits:
                        ends.add(len(digits))
                digits.append(c)
                at.append(i)
                prev = i
        ends.add(len(digits))
        x = norm[m.end() - 1] in "Xx"
        yield _Run("".join(digits), tuple(at), frozenset(starts), frozenset(ends), bool(m.group(1)), m.start(), x,
                   m.end() - 1)


# --- checks ----------------------------------------------------------------------------------------------------

def luhn_ok(digits: str) -> bool:
    """Whether ``digits`` pass the Luhn check of payment card numbers."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = ord(c) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def resident_id_ok(value: str, today: dt.date | None = None) -> bool:
    """Whether ``value`` is a valid 18-character Chinese resident ID number (GB 11643).

    17 digits (region code, birth date ``YYYYMMDD``, sequence) and an ISO 7064 MOD 11-2 check character
    (``0``-``9`` or ``X``); the birth date must be a real date between 1900 and today.
    """
    if len(value) != 18 or not value[:17].isdigit() or value[0] == "0":
        return False
    try:
        born = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if not dt.date(1900, 1, 1) <= born <= (today or dt.date.today()):
        return False
    check = "10X98765432"[sum(int(c) * w for c, w in zip(value, _ID_WEIGHTS, strict=False)) % 11]
    return value[17].upper() == check


def iban_ok(value: str) -> bool:
    """Whether ``value`` (no spaces) is an IBAN: two letters, two check digits, 11-30 letters or digits, mod 97."""
    value = value.upper()
    if not (15 <= len(value) <= 34 and value[:2].isalpha() and value[2:4].isdigit() and value.isalnum()):
        return False
    moved = value[4:] + value[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _is_card(digits: str) -> bool:
    # issuer prefixes in use: 2 (Mastercard 2-series, Mir), 3 (Amex, JCB, Diners), 4 (Visa), 5, 6 (UnionPay,
    # Discover, Maestro), 81 (UnionPay); 1, 7, 9 and other 8s start no card a customer holds
    return 13 <= len(digits) <= 19 and (digits[0] in "23456" or digits[:2] == "81") and luhn_ok(digits)


_MOBILE = re.compile(r"1[3-9]\d{9}")
_LANDLINE = re.compile(r"0[1-9]\d{9,10}")


# --- the built-in detectors ------------------------------------------------------------------------------------

class CardDetector:
    """Payment card numbers: 13-19 digits (spaced or dashed groups, spoken digits), Luhn-valid, a card's prefix.

    A number inside a longer group of digits (an order number) is not a card, nor is a non-Luhn number.
    """

    kind = "card"

    def find(self, text: str) -> Iterator[Span]:
        for run in _runs(text):
            yield from _scan(run, self._at)

    def _at(self, run: _Run, i: int) -> Span | None:
        for length in range(19, 12, -1):
            j = i + length
            if j in run.ends and _is_card(run.digits[i:j]):
                return Span(run.at[i], run.at[j - 1] + 1, self.kind, keep=run.digits[j - 4:j])
        return None


class PhoneDetector:
    """Phone numbers: Chinese mobiles (``1[3-9]`` + 9 digits, with ``+86``/``0086``), Chinese landlines with their
    area code (``010-12345678``, ``(0755) 8888 1234``), and international numbers written with ``+`` and a
    country code (8-15 digits). Short service numbers (``95999``) and ``400``/``800`` numbers are the bank's or
    a company's, not a customer's: left alone.
    """

    kind = "phone"

    def find(self, text: str) -> Iterator[Span]:
        for run in _runs(text):
            yield from _scan(run, self._at)

    def _at(self, run: _Run, i: int) -> Span | None:
        d = run.digits
        start = run.at[i]
        if i == 0 and run.plus:  # +CC ...: the longest reading of at most 15 digits (E.164) that ends a group
            for j in range(min(len(d), 15), 7, -1):
                if j in run.ends:
                    return Span(run.plus_at, run.at[j - 1] + 1, self.kind)
            return None
        prefix = 4 if d.startswith("0086", i) else 0
        for skip in (prefix, 0) if prefix else (0,):
            j = i + skip + 11
            if j in run.ends and _MOBILE.fullmatch(d, i + skip, j):
                return Span(start, run.at[j - 1] + 1, self.kind)
        for length in (12, 11):
            j = i + length
            if j in run.ends and _LANDLINE.fullmatch(d, i, j):
                return Span(start, run.at[j - 1] + 1, self.kind)
        return None


class ResidentIdDetector:
    """Chinese resident ID numbers: 18 characters with a valid birth date and MOD 11-2 check character (X too)."""

    kind = "id"

    def find(self, text: str) -> Iterator[Span]:
        for run in _runs(text):
            yield from _scan(run, self._at)

    def _at(self, run: _Run, i: int) -> Span | None:
        d = run.digits
        if i + 18 in run.ends and resident_id_ok(d[i:i + 18]):
            return Span(run.at[i], run.at[i + 17] + 1, self.kind)
        if run.check_x and i + 17 == len(d) and resident_id_ok(d[i:] + "X"):
            return Span(run.at[i], run.x_at + 1, self.kind)
        return None


class EmailDetector:
    """E-mail addresses (ASCII local part and domain, as banks' systems accept them)."""

    kind = "email"
    _pattern = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
                          r"(?![A-Za-z0-9-])")

    def find(self, text: str) -> Iterator[Span]:
        if "@" in text:
            for m in self._pattern.finditer(text):
                yield Span(m.start(), m.end(), self.kind)


class IbanDetector:
    """IBANs: country code, check digits and account (grouped by fours or not), valid under ISO 13616 mod 97."""

    kind = "iban"
    _pattern = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}")

    def find(self, text: str) -> Iterator[Span]:
        for m in self._pattern.finditer(text):
            s = m.group()
            # the greedy match may have taken the next words: try each end of a group, longest first
            for k in range(len(s), 14, -1):
                end = m.start() + k
                if end < len(text) and text[end].isascii() and text[end].isalnum():
                    continue
                if iban_ok(s[:k].replace(" ", "")):
                    yield Span(m.start(), m.start() + k, self.kind)
                    break


def _scan(run: _Run, at: Callable[[_Run, int], Span | None]) -> Iterator[Span]:
    """Try ``at`` from each start of a group, left to right; after a find, go on after it."""
    i, n = 0, len(run.digits)
    while i < n:
        span = at(run, i) if i in run.starts else None
        if span is None:
            i += 1
            continue
        yield span
        # the digits the span covers
        while i < n and run.at[i] < span.end:
            i += 1


BUILTIN: dict[str, Callable[[], Detector]] = {
    "email": EmailDetector,
    "iban": IbanDetector,
    "id": ResidentIdDetector,
    "card": CardDetector,
    "phone": PhoneDetector,
}


# --- the redactor ----------------------------------------------------------------------------------------------

class Redactor:
    """Masks what its detectors find; safe to share between sessions and threads (it keeps no state)."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self.detectors = tuple(detectors)
        self._quick = all(type(d) in _QUICK_KINDS for d in self.detectors)

    @classmethod
    def builtin(cls, kinds: Iterable[str] = KINDS, extra: Sequence[Detector] = ()) -> Redactor:
        """A redactor with the built-in detectors of ``kinds`` (all by default), then ``extra`` ones.

        Raises :class:`~fay_core.errors.ConfigError` for a kind that is not built in.
        """
        unknown = set(kinds) - set(BUILTIN)
        if unknown:
            raise ConfigError(f"unknown redaction kind(s) {', '.join(sorted(unknown))} (redaction.kinds): "
                              f"the built-in kinds are {', '.join(KINDS)}")
        return cls([BUILTIN[k]() for k in KINDS if k in set(kinds)] + list(extra))

    def spans(self, text: str) -> list[Span]:
        """The spans to mask in ``text``, in order, none overlapping (earliest first, then longest)."""
        if self._quick and not _QUICK.search(text):
            return []
        found: list[tuple[int, int, int, Span]] = []
        for rank, detector in enumerate(self.detectors):
            for span in detector.find(text):
                if 0 <= span.start < span.end <= len(text):
                    found.append((span.start, -span.end, rank, span))
        found.sort(key=lambda f: f[:3])
        kept: list[Span] = []
        for *_, span in found:
            if not kept or span.start >= kept[-1].end:
                kept.append(span)
        return kept

    def redact(self, text: str) -> str:
        """``text`` with every span masked."""
        spans = self.spans(text)
        if not spans:
            return text
        out: list[str] = []
        pos = 0
        for span in spans:
            start = span.start
            if start > 0 and text[start - 1] in "(（" and any(b in text[start:span.end] for b in ")）"):
                start -= 1  # "(010) 1234 5678": the bracket goes with the number
            out.append(text[pos:start])
            out.append(span.mask)
            pos = span.end
        out.append(text[pos:])
        return "".join(out)

    def redact_value(self, value: Any) -> Any:
        """``value`` with every string in it redacted: dicts (values), lists, tuples, and integers, recursively.

        An integer that holds personal data (a card number the model sent as a JSON number) becomes its mask.
        """
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {k: self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_value(v) for v in value]
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**7:
            masked = self.redact(str(value))
            return value if masked == str(value) else masked
        return value


#: detectors that find nothing in a text without a digit (of any script) or an "@"
_QUICK_KINDS = (CardDetector, PhoneDetector, ResidentIdDetector, IbanDetector, EmailDetector)
_default: Redactor | None = None


def default_redactor() -> Redactor:
    """The redactor with every built-in detector (what :func:`install_log_filter` uses if given none)."""
    global _default
    if _default is None:
        _default = Redactor.builtin()
    return _default


# --- logs and traces -------------------------------------------------------------------------------------------

#: a session id as Fay makes them (``uuid4().hex``), not inside a longer run of hex digits (a sha256)
SESSION_ID = re.compile(r"(?<![0-9a-fA-F])[0-9a-f]{32}(?![0-9a-fA-F])")


def log_tag(session_id: str) -> str:
    """A short hash naming a session in logs: the id itself reaches a signed-in customer's session.

    ``#s1`` and 10 hex digits: a letter then a digit first, so no detector reads the tag (with the words after it)
    as an IBAN, which starts with two letters."""
    return "#s1" + hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]


def _tag_ids(text: str) -> str:
    return SESSION_ID.sub(lambda m: log_tag(m.group(0)), text)


class RedactingFilter(logging.Filter):
    """A :class:`logging.Filter` that masks personal data in each record's message and exception text.

    Put it on handlers (a filter on a logger does not see records its children propagate). The message is
    formatted here (``record.getMessage()``), redacted, and stored without its arguments; the traceback is
    formatted and redacted into ``record.exc_text``, which formatters then print as they are. Session ids in
    either become their :func:`log_tag`.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or default_redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it when the handler formats the record
            return True
        masked = _tag_ids(self.redactor.redact(message))
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _tag_ids(self.redactor.redact(record.exc_text))
        if record.stack_info:
            record.stack_info = self.redactor.redact(record.stack_info)
        return True


def install_log_filter(redactor: Redactor | None = None, logger: logging.Logger | None = None) -> RedactingFilter:
    """Put a :class:`RedactingFilter` on every handler of ``logger`` (the root logger by default); returns it.

    Call it after logging is configured (``logging.basicConfig``, ``dictConfig``): handlers added later are not
    covered. Installing again replaces the earlier Fay filter, so it is safe to call more than once::

        logging.basicConfig(level="DEBUG")
        fay_core.redaction.install_log_filter()
    """
    target = logger or logging.getLogger()
    filt = RedactingFilter(redactor)
    for handler in target.handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(filt)
    return filt


def redact_attributes(attributes: Mapping[str, Any], redactor: Redactor | None = None) -> dict[str, Any]:
    """Span (or event) attributes with personal data masked, for a trace exporter to call before it sends them.

    Strings, integers and sequences of them are redacted; keys and other values are kept as they are.
    """
    r = redactor or default_redactor()
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        masked = r.redact_value(value)
        out[key] = tuple(masked) if isinstance(value, tuple) else masked
    return out
