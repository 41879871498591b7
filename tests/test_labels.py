"""The implicit AIGC label in Fay's WAV files: written, read back, verified, and the file still plays."""

from __future__ import annotations

import json
import struct
import wave
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from fay_core.labels import CHUNK_ID, AIGCLabel, WavWriter, read_label, verify, write_wav

FIELDS = ["Label", "ContentProducer", "ProduceID", "ReservedCode1", "ContentPropagator", "PropagateID",
          "ReservedCode2"]


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16)


def test_a_labelled_wav_reads_back_its_label_and_plays_everywhere(tmp_path: Path) -> None:
    left, right = tone(1.0, 16000, 440), tone(1.0, 16000, 880)
    stereo = np.stack([left, right], axis=1)
    path = tmp_path / "out.wav"
    label = AIGCLabel.for_session("s-123", tenant="harbor-bank")
    written = write_wav(path, stereo.tobytes(), 16000, 2, label)

    got = read_label(path)
    assert got == written and got is not None
    assert got.label == "1" and got.content_producer.startswith("Fay ") and got.produce_id == label.produce_id
    assert got.content_propagator == "harbor-bank" and got.propagate_id == "s-123"
    assert got.reserved_code1.startswith("sha256:") and len(got.reserved_code1) == 71 and verify(path)
    assert list(got.to_json()["AIGC"]) == FIELDS
    assert AIGCLabel.for_session("s-123").produce_id != label.produce_id  # a content id per file

    with wave.open(str(path)) as w:  # Python's wave module skips the label chunks
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth(), w.getnframes()) == (2, 16000, 2, 16000)
        assert w.readframes(16000) == stereo.tobytes()
    data, rate = soundfile.read(path, dtype="int16")  # libsndfile
    assert rate == 16000 and data.shape == (16000, 2) and np.array_equal(data, stereo)
    with av.open(str(path)) as container:  # ffmpeg: the INFO comment carries the label as well
        comment = json.loads(container.metadata["comment"])
        assert comment == got.to_json() and container.metadata["encoder"] == got.content_producer
        decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert len(decoded) == 2 * 16000


def riff_chunks(raw: bytes) -> list[tuple[bytes, bytes]]:
    assert raw[:4] == b"RIFF" and raw[8:12] == b"WAVE"
    assert struct.unpack("<I", raw[4:8])[0] == len(raw) - 8
    out, pos = [], 12
    while pos < len(raw):
        cid, size = raw[pos:pos + 4], struct.unpack("<I", raw[pos + 4:pos + 8])[0]
        out.append((cid, raw[pos + 8:pos + 8 + size]))
        pos += 8 + size + size % 2
    return out


def test_the_label_chunk_is_json_named_aigc_before_the_samples(tmp_path: Path) -> None:
    path = tmp_path / "zh.wav"
    write_wav(path, tone(0.1, 48000).tobytes(), 48000, 1, AIGCLabel.for_session("s", tenant="海港银行"))
    chunks = riff_chunks(path.read_bytes())
    ids = [cid for cid, _ in chunks]
    assert ids == [b"fmt ", b"LIST", CHUNK_ID, b"data"]  # the label before the samples
    doc = json.loads(chunks[2][1].decode())
    assert doc["AIGC"]["ContentPropagator"] == "海港银行"
    assert read_label(path).content_propagator == "海港银行"  # type: ignore[union-attr]


def test_a_changed_sample_fails_verification_and_a_plain_wav_has_no_label(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    write_wav(path, tone(0.2, 16000).tobytes(), 16000, 1, AIGCLabel())
    raw = bytearray(path.read_bytes())
    raw[-2] ^= 0x40
    path.write_bytes(bytes(raw))
    assert read_label(path) is not None and not verify(path)

    plain = tmp_path / "plain.wav"
    with wave.open(str(plain), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(tone(0.1, 16000).tobytes())
    assert read_label(plain) is None and not verify(plain)
    (tmp_path / "junk.wav").write_bytes(b"not a wav at all")
    with pytest.raises(ValueError, match="not a RIFF/WAVE"):
        read_label(tmp_path / "junk.wav")


def test_a_file_left_open_by_a_crash_still_plays_and_keeps_its_label(tmp_path: Path) -> None:
    path = tmp_path / "growing.wav"
    writer = WavWriter(path, 16000, 1, AIGCLabel.for_session("s"))
    writer.write(tone(0.5, 16000).tobytes())  # never closed: what a crash leaves
    label = read_label(path)
    assert label is not None and label.propagate_id == "s" and not verify(path)
    data, _ = soundfile.read(path, dtype="int16")
    assert len(data) == 8000
    writer.write(tone(0.5, 16000).tobytes()[:1001])  # half a sample is kept for later
    final = writer.close()
    assert verify(path) and read_label(path) == final and writer.seconds == pytest.approx(0.5 + 500 / 16000)
    with wave.open(str(path)) as w:
        assert w.getnframes() == 8500
