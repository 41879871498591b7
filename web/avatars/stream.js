// Reader of Fay's binary avatar parameter stream (format: fay_core/avatar/stream.py), and the clock that shows
// each frame when its audio is heard.
//
//   const player = new FramePlayer({ delayMs: "auto" });
//   ctx.onBinary((buf) => player.push(buf));
//   // every animation frame:
//   const frame = player.current();   // {pts, flags, values: Float32Array, header} or null
//   const v = player.value("jawOpen"); // by channel name, or NaN
//
// Frames leave the server when the playout clock releases their audio; the audio then waits in the browser's
// jitter buffer. The player maps each frame's PTS to local time (with the smallest arrival lag seen, so network
// jitter does not shake the mouth) and holds it back by the audio's current jitter-buffer delay, read from the
// RTCPeerConnection's stats (window.fay.pc, or ctx.peerConnection), or by options.audio_delay_ms if given.

export const HEADER = 0x01;
export const FRAME = 0x02;
export const FLAG_SPEAKING = 0x01;
export const FLAG_RESET = 0x02;

export function decodeHeader(buf) {
  const dv = new DataView(buf);
  if (dv.getUint8(0) !== HEADER) throw new Error("not an avatar stream header");
  const version = dv.getUint8(1);
  if (version !== 1) throw new Error(`avatar stream version ${version} is not supported`);
  const fps = dv.getUint16(2, true);
  const streamId = dv.getUint32(4, true);
  const n = dv.getUint16(8, true);
  const dec = new TextDecoder();
  let off = 10;
  const channels = [];
  for (let i = 0; i < n; i++) {
    const len = dv.getUint8(off);
    const name = dec.decode(new Uint8Array(buf, off + 1, len));
    const min = dv.getFloat32(off + 1 + len, true);
    const max = dv.getFloat32(off + 5 + len, true);
    channels.push({ name, min, max });
    off += 1 + len + 8;
  }
  const rlen = dv.getUint8(off);
  const renderer = dec.decode(new Uint8Array(buf, off + 1, rlen));
  const index = Object.fromEntries(channels.map((c, i) => [c.name, i]));
  return { fps, streamId, channels, index, renderer };
}

export function decodeFrame(buf, header) {
  const dv = new DataView(buf);
  if (dv.getUint8(0) !== FRAME) throw new Error("not an avatar stream frame");
  const sid = dv.getUint16(2, true);
  if (sid !== (header.streamId & 0xffff)) return null; // a frame of another header
  const n = header.channels.length;
  const q = new Uint8Array(buf, 16, n);
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const c = header.channels[i];
    values[i] = c.min + ((c.max - c.min) * q[i]) / 255;
  }
  return { flags: dv.getUint8(1), seq: dv.getUint32(4, true), pts: dv.getFloat64(8, true), values, header };
}

export class FramePlayer {
  constructor({ delayMs = "auto", peerConnection = null, maxQueue = 150 } = {}) {
    this.fixedDelay = typeof delayMs === "number" ? delayMs : null;
    this.pc = peerConnection;
    this.maxQueue = maxQueue;
    this.header = null;
    this.queue = [];
    this.frame = null;
    this.offset = null; // local ms minus pts ms, smallest seen
    this.audioDelayMs = 0;
    this.received = 0;
    this.headers = 0;
    this._lastPts = null;
    this._prev = null;
    this._timer = this.fixedDelay === null ? setInterval(() => this._poll(), 500) : null;
  }

  get delayMs() {
    return this.fixedDelay !== null ? this.fixedDelay : this.audioDelayMs;
  }

  push(buf) {
    const kind = new Uint8Array(buf, 0, 1)[0];
    if (kind === HEADER) {
      const h = decodeHeader(buf);
      if (!this.header || this.header.streamId !== h.streamId) this.header = h;
      this.headers++;
      return;
    }
    if (kind !== FRAME || !this.header) return;
    const f = decodeFrame(buf, this.header);
    if (!f) return;
    this.received++;
    const now = performance.now();
    const lag = now - f.pts * 1000;
    // a new clock (voice attached, server restarted) or a jump: start the mapping again
    if (this._lastPts === null || f.pts < this._lastPts - 0.001 || f.pts - this._lastPts > 1.0) {
      this.offset = lag;
      this.queue.length = 0;
    } else {
      this.offset = Math.min(this.offset + 0.02, lag); // drifts up slowly, so a one-off early frame is forgotten
    }
    this._lastPts = f.pts;
    if (f.flags & FLAG_RESET) this.queue.length = 0; // interruption: what was pending goes with the audio
    this.queue.push(f);
    if (this.queue.length > this.maxQueue) this.queue.splice(0, this.queue.length - this.maxQueue);
  }

  // The frame to show now (the last one whose audio is being heard), or the last shown.
  current(now = performance.now()) {
    if (this.offset === null) return this.frame;
    const q = this.queue;
    const due = now - this.offset - this.delayMs;
    while (q.length && q[0].pts * 1000 <= due) this.frame = q.shift();
    return this.frame;
  }

  value(name, frame = this.frame) {
    if (!frame) return NaN;
    const i = frame.header.index[name];
    return i === undefined ? NaN : frame.values[i];
  }

  async _poll() {
    const pc = this.pc || globalThis.fay?.pc;
    if (!pc || typeof pc.getStats !== "function") return;
    try {
      const stats = await pc.getStats();
      stats.forEach((s) => {
        if (s.type !== "inbound-rtp" || s.kind !== "audio" || !s.jitterBufferEmittedCount) return;
        const prev = this._prev;
        this._prev = { d: s.jitterBufferDelay, n: s.jitterBufferEmittedCount };
        if (prev && s.jitterBufferEmittedCount > prev.n) {
          const ms = ((s.jitterBufferDelay - prev.d) / (s.jitterBufferEmittedCount - prev.n)) * 1000;
          this.audioDelayMs = this.audioDelayMs ? 0.7 * this.audioDelayMs + 0.3 * ms : ms;
        }
      });
    } catch (err) {
      /* the connection went away */
    }
  }

  close() {
    if (this._timer) clearInterval(this._timer);
  }
}

export function audioDelayOption(options) {
  const v = options?.audio_delay_ms;
  return typeof v === "number" ? v : "auto";
}
