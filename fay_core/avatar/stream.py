"""The binary avatar parameter stream: what the 3D and Live2D renderers send over the WebRTC data channel.

One stream is a **header** message naming the channels once, then one **frame** message per animation frame with
every channel quantized to one byte. All numbers are little-endian. Each data-channel message is exactly one
header or one frame; the first byte tells which.

Header (type ``0x01``)::

    offset size  field
    0      1     type = 0x01
    1      1     version = 1
    2      2     fps (u16): nominal frame rate
    4      4     stream id (u32): CRC-32 of the channel table; frames carry its low 16 bits
    8      2     channel count N (u16)
    10     ...   N channel entries: name length (u8), name (UTF-8), min (f32), max (f32)
    ...    1     renderer name length (u8), renderer name (UTF-8)

Frame (type ``0x02``), ``16 + N`` bytes::

    0      1     type = 0x02
    1      1     flags: bit 0 speaking, bit 1 first frame after an interruption (reset smoothing)
    2      2     stream id, low 16 bits (u16): ignore frames whose header you have not seen
    4      4     sequence number (u32)
    8      8     pts (f64): seconds of playout time of the audio this frame belongs to
    16     N     values (u8): value = min + (max - min) * byte / 255

With the 52 ARKit blendshapes and 3 head angles (N = 55) a frame is 71 bytes: about 3.6 KB/s at 50 fps. The
header is sent when the stream starts and again every few seconds, so a client that connects late (or reloads)
starts animating within that time; clients keep the last header whose id matches the frames.

:class:`StreamEncoder` writes the format, :func:`decode` reads it (``web/avatars/stream.js`` is the browser's
reader).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

VERSION = 1
HEADER = 0x01
FRAME = 0x02
FLAG_SPEAKING = 0x01
FLAG_RESET = 0x02
_FRAME_HEAD = struct.Struct("<BBHId")


@dataclass(frozen=True, slots=True)
class Channel:
    """One quantized channel: its name and the range a byte maps onto."""

    name: str
    min: float = 0.0
    max: float = 1.0


@dataclass(frozen=True, slots=True)
class Header:
    renderer: str
    fps: int
    stream_id: int
    channels: tuple[Channel, ...]


@dataclass(frozen=True, slots=True)
class Frame:
    stream_id: int  # low 16 bits
    seq: int
    pts: float
    flags: int
    values: np.ndarray  # float32, dequantized

    @property
    def speaking(self) -> bool:
        return bool(self.flags & FLAG_SPEAKING)


class StreamEncoder:
    """Quantizes channel values into frames of the format above (one encoder per session)."""

    def __init__(self, renderer: str, channels: Sequence[Channel], fps: int = 50) -> None:
        if not channels or len(channels) > 0xFFFF:
            raise ValueError("a stream needs between 1 and 65535 channels")
        for c in channels:
            if not c.max > c.min:
                raise ValueError(f"channel {c.name!r}: max must be above min")
        self.renderer = renderer
        self.channels = tuple(channels)
        self.fps = fps
        body = bytearray(struct.pack("<H", len(self.channels)))
        for c in self.channels:
            name = c.name.encode()
            body += struct.pack("<B", len(name)) + name + struct.pack("<ff", c.min, c.max)
        rname = renderer.encode()[:255]
        body += struct.pack("<B", len(rname)) + rname
        self.stream_id = zlib.crc32(bytes(body))
        self._header = struct.pack("<BBHI", HEADER, VERSION, fps, self.stream_id) + bytes(body)
        self._lo = np.array([c.min for c in self.channels], dtype=np.float32)
        self._scale = np.array([255.0 / (c.max - c.min) for c in self.channels], dtype=np.float32)
        self._buf = np.empty(len(self.channels), dtype=np.float32)
        self.seq = 0

    def header(self) -> bytes:
        """The header message."""
        return self._header

    def frame(self, values: np.ndarray, pts: float, flags: int = 0) -> bytes:
        """A frame message for ``values`` (one float per channel, in channel order; clipped to each range)."""
        buf = self._buf
        np.subtract(values, self._lo, out=buf)
        buf *= self._scale
        np.clip(buf, 0.0, 255.0, out=buf)
        q = np.rint(buf).astype(np.uint8)
        head = _FRAME_HEAD.pack(FRAME, flags, self.stream_id & 0xFFFF, self.seq & 0xFFFFFFFF, pts)
        self.seq += 1
        return head + q.tobytes()


def decode_header(msg: bytes) -> Header:
    """Read a header message; raise ``ValueError`` if it is not one."""
    if len(msg) < 10 or msg[0] != HEADER:
        raise ValueError("not an avatar stream header")
    if msg[1] != VERSION:
        raise ValueError(f"avatar stream version {msg[1]} is not supported (this reader knows {VERSION})")
    fps, sid, n = struct.unpack_from("<HIH", msg, 2)
    off = 10
    channels = []
    for _ in range(n):
        ln = msg[off]
        name = msg[off + 1 : off + 1 + ln].decode()
        lo, hi = struct.unpack_from("<ff", msg, off + 1 + ln)
        channels.append(Channel(name, lo, hi))
        off += 1 + ln + 8
    ln = msg[off]
    renderer = msg[off + 1 : off + 1 + ln].decode()
    return Header(renderer=renderer, fps=fps, stream_id=sid, channels=tuple(channels))


def decode_frame(msg: bytes, header: Header) -> Frame:
    """Read a frame message against its ``header``; raise ``ValueError`` on a mismatch."""
    if len(msg) < _FRAME_HEAD.size or msg[0] != FRAME:
        raise ValueError("not an avatar stream frame")
    _, flags, sid, seq, pts = _FRAME_HEAD.unpack_from(msg)
    if sid != header.stream_id & 0xFFFF:
        raise ValueError("frame belongs to another stream header")
    n = len(header.channels)
    q = np.frombuffer(msg, dtype=np.uint8, count=n, offset=_FRAME_HEAD.size).astype(np.float32)
    lo = np.array([c.min for c in header.channels], dtype=np.float32)
    hi = np.array([c.max for c in header.channels], dtype=np.float32)
    return Frame(stream_id=sid, seq=seq, pts=pts, flags=flags, values=lo + (hi - lo) * q / 255.0)


def decode(msg: bytes, header: Header | None = None) -> Header | Frame:
    """Read either message type (a frame needs its ``header``)."""
    if msg[:1] == bytes([HEADER]):
        return decode_header(msg)
    if header is None:
        raise ValueError("a frame cannot be read before its header")
    return decode_frame(msg, header)
