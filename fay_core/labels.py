"""Implicit AI-content labels: the ``AIGC`` metadata every audio file Fay writes carries.

China's labelling measures for AI-generated content (in force since 1 September 2025, with the standard
GB 45438-2025) ask for an *implicit* label in the metadata of every generated file, and TC260's practice guide
names its fields; the EU AI Act (Art. 50) asks for a machine-readable mark on synthetic audio. Fay writes WAV
files only through :func:`write_wav` (or :class:`WavWriter`, for a file written as it grows), so each one holds::

    RIFF/WAVE
      fmt                     16-bit PCM, ``channels`` x ``sample_rate``
      LIST/INFO  ISFT         "Fay <version>" (the software)
                 ICMT         the label as compact ASCII JSON (what ``ffprobe`` shows as ``comment``)
      AIGC                    the label: UTF-8 JSON ``{"AIGC": {"Label": "1", "ContentProducer": ..., ...}}``
      data                    the samples

The dedicated chunk's id is ``AIGC`` (four ASCII bytes, the label's own name); readers skip chunks they do not
know, so players, Python's :mod:`wave`, libsndfile (``soundfile``) and ffmpeg read the file as any WAV. Both copies
come *before* the samples: a file whose writer died (a recording during a crash) still carries its label.
``ReservedCode1`` holds ``sha256:<hex>`` of the ``data`` chunk's bytes, so :func:`verify` can tell whether the
samples are those the label was written for.
"""

from __future__ import annotations

import hashlib
import json
import struct
import uuid
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

#: the id of the RIFF chunk holding the label's JSON
CHUNK_ID = b"AIGC"
#: TC260's ``Label`` values: the content is AI-generated ("1"), possibly ("2"), suspected ("3")
GENERATED = "1"
_DIGEST_PLACEHOLDER = "sha256:" + "0" * 64
#: the data size written while a :class:`WavWriter` is open (readers take it as "up to the end of the file")
_OPEN_SIZE = 0xFFFFFFFF


def fay_version() -> str:
    try:
        return metadata.version("fay")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


@dataclass(frozen=True, slots=True)
class AIGCLabel:
    """The implicit label of one file, with TC260's field names in :meth:`to_json`.

    ``produce_id`` identifies this file (one per file); the propagation fields name who serves it: the tenant
    (``content_propagator``) and the session (``propagate_id``).
    """

    content_producer: str = field(default_factory=lambda: f"Fay {fay_version()}")
    produce_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    label: str = GENERATED
    reserved_code1: str = ""
    content_propagator: str = ""
    propagate_id: str = ""
    reserved_code2: str = ""

    @classmethod
    def for_session(cls, session_id: str, tenant: str = "default") -> AIGCLabel:
        """A fresh label (a new content id) for a file written in ``session_id`` of ``tenant``."""
        return cls(content_propagator=tenant, propagate_id=session_id)

    def to_json(self) -> dict[str, Any]:
        """``{"AIGC": {"Label", "ContentProducer", "ProduceID", "ReservedCode1", "ContentPropagator",
        "PropagateID", "ReservedCode2"}}``."""
        return {"AIGC": {
            "Label": self.label, "ContentProducer": self.content_producer, "ProduceID": self.produce_id,
            "ReservedCode1": self.reserved_code1, "ContentPropagator": self.content_propagator,
            "PropagateID": self.propagate_id, "ReservedCode2": self.reserved_code2,
        }}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AIGCLabel:
        d = data.get("AIGC", data)
        return cls(label=str(d.get("Label", "")), content_producer=str(d.get("ContentProducer", "")),
                   produce_id=str(d.get("ProduceID", "")), reserved_code1=str(d.get("ReservedCode1", "")),
                   content_propagator=str(d.get("ContentPropagator", "")),
                   propagate_id=str(d.get("PropagateID", "")), reserved_code2=str(d.get("ReservedCode2", "")))


def _chunk(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")


def _label_chunks(label: AIGCLabel) -> tuple[bytes, bytes]:
    """The LIST/INFO chunk and the AIGC chunk for ``label``."""
    doc = label.to_json()
    info = _chunk(b"ISFT", label.content_producer.encode("ascii", "replace") + b"\0")
    info += _chunk(b"ICMT", json.dumps(doc, separators=(",", ":")).encode("ascii") + b"\0")
    return _chunk(b"LIST", b"INFO" + info), _chunk(CHUNK_ID, json.dumps(doc, ensure_ascii=False).encode())


class WavWriter:
    """A labelled 16-bit PCM WAV written as it grows; :meth:`close` fills in the sizes and the samples' digest.

    Until it is closed the header's sizes say "to the end of the file" and ``ReservedCode1`` holds a digest of
    zeros: a file left by a crash plays (ffmpeg, libsndfile and :mod:`wave` read up to its end) and keeps its
    label, but :func:`verify` reports it unverified.
    """

    def __init__(self, path: str | Path, sample_rate: int, channels: int, label: AIGCLabel) -> None:
        if channels < 1 or sample_rate < 1:
            raise ValueError(f"a WAV needs at least one channel and a positive rate (got {channels}, {sample_rate})")
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.channels = channels
        self.label = replace(label, reserved_code1=_DIGEST_PLACEHOLDER)
        self.bytes_written = 0
        self._digest = hashlib.sha256()
        self._pending = b""  # half a sample frame, kept for the next write
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        block = channels * 2
        fmt = _chunk(b"fmt ", struct.pack("<HHIIHH", 1, channels, sample_rate, sample_rate * block, block, 16))
        listing, aigc = _label_chunks(self.label)
        self._label_at = 12 + len(fmt)
        head = b"WAVE" + fmt + listing + aigc
        self._data_at = 8 + len(head) + 8  # where the samples start
        self._file.write(b"RIFF" + struct.pack("<I", _OPEN_SIZE) + head + b"data" + struct.pack("<I", _OPEN_SIZE))
        self._file.flush()

    @property
    def seconds(self) -> float:
        return self.bytes_written / (2 * self.channels * self.sample_rate)

    def write(self, pcm: bytes) -> None:
        """Append interleaved 16-bit little-endian samples (written through to the file: a crash loses none)."""
        if self._file is None:
            raise ValueError(f"{self.path}: the WAV writer is closed")
        data = self._pending + pcm
        whole = len(data) - len(data) % 2
        self._pending = data[whole:]
        if whole:
            chunk = data[:whole]
            self._file.write(chunk)
            self._file.flush()
            self._digest.update(chunk)
            self.bytes_written += whole

    def close(self) -> AIGCLabel:
        """Finish the file: sizes, and ``ReservedCode1`` = the digest of its samples. Returns the final label."""
        f = self._file
        if f is None:
            return self.label
        self._file = None
        try:
            if self.bytes_written % 2:  # pragma: no cover - writes keep whole samples
                f.write(b"\0")
            self.label = replace(self.label, reserved_code1=f"sha256:{self._digest.hexdigest()}")
            listing, aigc = _label_chunks(self.label)
            f.seek(4)
            f.write(struct.pack("<I", self._data_at + self.bytes_written + self.bytes_written % 2 - 8))
            f.seek(self._label_at)
            f.write(listing + aigc)  # the same length as the placeholder's: only the digest's hex changed
            f.seek(self._data_at - 4)
            f.write(struct.pack("<I", self.bytes_written))
        finally:
            f.close()
        return self.label

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_wav(path: str | Path, pcm: bytes, sample_rate: int, channels: int, label: AIGCLabel) -> AIGCLabel:
    """Write ``pcm`` (16-bit little-endian, interleaved if ``channels`` > 1) to ``path`` as a labelled WAV.

    The one way Fay writes an audio file. Returns the label as written (with the samples' digest).
    """
    with WavWriter(path, sample_rate, channels, label) as w:
        w.write(pcm)
    return w.label


def _chunks(path: Path) -> dict[bytes, bytes]:
    """The chunks before ``data`` (and the INFO sub-chunks, prefixed ``INFO/``), by id."""
    out: dict[bytes, bytes] = {}
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise ValueError(f"{path}: not a RIFF/WAVE file")
        while True:
            hdr = f.read(8)
            if len(hdr) < 8:
                return out
            cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
            if cid == b"data":
                return out
            body = f.read(min(size, 1 << 20))
            f.seek(size % 2, 1)
            if cid == b"LIST" and body[:4] == b"INFO":
                pos = 4
                while pos + 8 <= len(body):
                    sid, n = body[pos:pos + 4], struct.unpack("<I", body[pos + 4:pos + 8])[0]
                    out[b"INFO/" + sid] = body[pos + 8:pos + 8 + n]
                    pos += 8 + n + n % 2
            else:
                out[cid] = body


def read_label(path: str | Path) -> AIGCLabel | None:
    """The label of the WAV at ``path`` (from its ``AIGC`` chunk, else its INFO comment), or ``None`` if it has
    none. Raises :class:`ValueError` if the file is not a WAV."""
    chunks = _chunks(Path(path))
    for raw in (chunks.get(CHUNK_ID), chunks.get(b"INFO/ICMT")):
        if raw:
            try:
                doc = json.loads(raw.rstrip(b"\0").decode())
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(doc, dict) and isinstance(doc.get("AIGC"), dict):
                return AIGCLabel.from_json(doc)
    return None


def verify(path: str | Path) -> bool:
    """Whether the WAV's samples are those its label's ``ReservedCode1`` digest was made for."""
    label = read_label(path)
    if label is None or not label.reserved_code1.startswith("sha256:"):
        return False
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(12)
        while hdr := f.read(8):
            cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
            if cid == b"data":
                while size and (block := f.read(min(size, 1 << 16))):
                    digest.update(block)
                    size -= len(block)
                break
            f.seek(size + size % 2, 1)
    return label.reserved_code1 == f"sha256:{digest.hexdigest()}"
