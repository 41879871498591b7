// Reader of Fay's binary avatar parameter stream (format: fay_core/avatar/stream.py), and the clock that shows
// each frame when its audio is heard.
//
//   const player = new FramePlayer({ delayMs: "auto", peerConnection, mouthChannel: "jawOpen" });
//   ctx.onBinary((buf) => player.push(buf));
//   // every animation frame:
//   const frame = player.current();   // {pts, flags, values: Float32Array, header} or null
//   const v = player.value("jawOpen"); // by channel name, or NaN
//
// Frames leave the server when the playout clock releases their audio and arrive within milliseconds on the
// data channel; the audio itself waits in the browser's jitter buffer (tens of ms on a good network, hundreds after
// the sender stalls, and NetEq stretches it), so each frame must wait until its audio is heard:
//   1. options.audio_delay_ms, if the persona sets a number: frames are shown that long after they arrive;
//   2. otherwise the AudioAligner tells which PTS is being heard (RTP timestamps of the audio played out, plus a
//      constant found by matching the played packets' audio levels with the frames' mouth channel) and the
//      player shows the frame of that PTS;
//   3. until it has locked (the first second or two of speech), frames wait for the jitter-buffer delay read
//      from the RTCPeerConnection's stats (window.fay.pc or ctx.peerConnection).

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

// Finds which frame PTS is being heard right now.
//
// The answer audio's RTP timestamps count the sender's samples, and Chrome reports, for the audio packet it has
// just played out, its RTP timestamp, its audio level and when it played (RTCRtpReceiver.
// getSynchronizationSources). So "the audio position now" is known exactly, jitter buffer, time-stretching and
// stalls included. What is unknown is one constant: the frames' PTS clock minus the sender's sample clock (the
// RTP origin is random). The aligner finds it by matching the audio level of the packets played (keyed by their
// RTP timestamps) against the frames' mouth channel (keyed by PTS), which the server derived from the same audio:
// the shift with the best correlation over the last 3 s of speech. It locks on a strong, unambiguous match, and
// keeps checking four times a second while the avatar speaks: if the sender drops audio frames (its RTP
// timestamps then stop matching the PTS clock by 20 ms per frame) or the stream restarts, it re-locks.
export class AudioAligner {
  constructor(receiverOf, { maxLagMs = 2000, windowMs = 3000, stepMs = 10, clockRate = 48000 } = {}) {
    this.receiverOf = receiverOf; // () => the audio RTCRtpReceiver or null
    this.maxLag = maxLagMs / 1000;
    this.window = windowMs / 1000;
    this.step = stepMs / 1000;
    this.clockRate = clockRate; // Opus
    this.levels = []; // [sender seconds, audio level] of played packets
    this.k = null; // frame pts = sender seconds + k, once locked
    this.lockedAt = null; // performance.now() of the first lock
    this.confidence = 0;
    this.estimates = 0;
    this._rtp = null; // {last, wraps}
    this._next = 0;
    this._timer = null;
  }

  _read() {
    const src = this.receiverOf()?.getSynchronizationSources?.()[0];
    if (!src || src.rtpTimestamp === undefined) return null;
    const r = this._rtp || (this._rtp = { last: src.rtpTimestamp, wraps: 0, seen: -1 });
    if (src.rtpTimestamp < r.last && r.last - src.rtpTimestamp > 2 ** 31) r.wraps++;
    r.last = src.rtpTimestamp;
    return { pos: (r.wraps * 2 ** 32 + src.rtpTimestamp) / this.clockRate, src };
  }

  // The sender-clock time (seconds) of the audio being heard at local time `now`, or null (also while the
  // audio has stopped playing out for more than 150 ms: a dropout; the player then goes by arrival times).
  position(now) {
    const got = this._read();
    if (!got) return null;
    const since = now - (got.src.timestamp - performance.timeOrigin); // epoch ms → this page's clock
    if (since > 150) return null;
    return got.pos + Math.max(0, since) / 1000;
  }

  // Record the level of each played packet (every 10 ms, on a timer: animation frames may be slow) and
  // estimate now and then; `source()` gives the player's recent frames in pts order and the mouth channel.
  start(source) {
    this._timer = setInterval(() => {
      const got = this._read();
      if (!got || got.src.audioLevel === undefined) return;
      const r = this._rtp;
      if (got.pos !== r.seen) {
        r.seen = got.pos;
        const lv = this.levels;
        if (lv.length && got.pos < lv[lv.length - 1][0]) lv.length = 0; // a new stream
        lv.push([got.pos, got.src.audioLevel]);
        while (lv.length && lv[0][0] < got.pos - this.window) lv.shift();
      }
      const now = performance.now();
      const [frames, mouthIndex] = source();
      if (now >= this._next && frames.length > 20 && mouthIndex !== undefined) {
        this._next = now + 250;
        this._estimate(got.pos, frames, mouthIndex);
      }
    }, 10);
  }

  _estimate(pos, frames, mouthIndex) {
    const a = this.levels;
    if (a.length < 60) return;
    let loud = 0;
    for (const [, v] of a) if (v > 0.01) loud++;
    if (loud < a.length * 0.2) return; // not enough speech in the window to tell
    const norm = (x) => {
      const mean = x.reduce((p, v) => p + v, 0) / x.length;
      let sd = 0;
      for (let i = 0; i < x.length; i++) { x[i] -= mean; sd += x[i] * x[i]; }
      sd = Math.sqrt(sd / x.length);
      if (sd < 1e-6) return false;
      for (let i = 0; i < x.length; i++) x[i] /= sd;
      return true;
    };
    const ax = a.map(([, v]) => v);
    if (!norm(ax)) return;
    const mouthAt = (pts) => { // the mouth value of the frame at pts (frames sorted by pts)
      const hi0 = frames.length - 1;
      if (pts < frames[0].pts || pts > frames[hi0].pts + 0.04) return null;
      let lo = 0, hi = hi0;
      while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (frames[mid].pts <= pts) lo = mid; else hi = mid - 1; }
      return frames[lo].values[mouthIndex];
    };
    // the newest frame is at most maxLag ahead of what is heard
    const k0 = frames[frames.length - 1].pts - pos;
    const scores = [];
    let best = -1, bestK = null;
    for (let k = k0 - this.maxLag; k <= k0 + 0.05; k += this.step) {
      const mx = [];
      for (const [p] of a) {
        const v = mouthAt(p + k);
        if (v === null) break;
        mx.push(v);
      }
      if (mx.length < a.length * 0.9 || !norm(mx)) continue;
      let c = 0;
      for (let i = 0; i < mx.length; i++) c += ax[i] * mx[i];
      c /= mx.length;
      scores.push([k, c]);
      if (c > best) { best = c; bestK = k; }
    }
    if (bestK === null) return;
    // take only a strong, unambiguous match: no shift 100 ms away or more nearly as good
    const rival = Math.max(-1, ...scores.filter(([k]) => Math.abs(k - bestK) >= 0.1).map(([, c]) => c));
    if (best < 0.6 || rival > best - 0.1) return;
    this.estimates++;
    this.confidence = best;
    if (this.k === null) this.lockedAt = performance.now();
    // the shift is constant between sender drops and changes by steps of a frame: follow the median of the last
    // three estimates, at once when it moved by a frame or more, smoothly otherwise
    const recent = (this._recent = [...(this._recent || []), bestK].slice(-3));
    const median = [...recent].sort((x, y) => x - y)[recent.length >> 1];
    this.k = this.k === null ? bestK : Math.abs(median - this.k) >= 0.015 ? median : 0.7 * this.k + 0.3 * median;
  }

  close() {
    clearInterval(this._timer);
  }
}

export class FramePlayer {
  constructor({ delayMs = "auto", peerConnection = null, maxQueue = 250, mouthChannel = null } = {}) {
    this.fixedDelay = typeof delayMs === "number" ? delayMs : null;
    this.pc = peerConnection;
    this.maxQueue = maxQueue;
    this.mouthChannel = mouthChannel;
    this.aligner = this.fixedDelay === null ? new AudioAligner(() => this._receiver()) : null;
    this.history = []; // recent frames in pts order, for the aligner
    this.heardPts = null;
    if (this.aligner) {
      this.aligner.start(() => [this.history, this.history[0]?.header.index[this.mouthChannel]]);
    }
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
    if (this.fixedDelay !== null) return this.fixedDelay;
    if (this.heardPts !== null && this.frame) return Math.max(0, (this._lastPts - this.heardPts) * 1000);
    return this.audioDelayMs;
  }

  get locked() {
    return Boolean(this.aligner && this.aligner.k !== null);
  }

  _receiver() {
    const pc = this.pc || globalThis.fay?.pc;
    return pc?.getReceivers?.().find((r) => r.track?.kind === "audio") ?? null;
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
    if (this.aligner) {
      const h = this.history;
      if (h.length && f.pts < h[h.length - 1].pts) h.length = 0;
      h.push(f);
      if (h.length > 400) h.splice(0, h.length - 400); // 8 s at 50 fps
    }
    if (this.queue.length > this.maxQueue) this.queue.splice(0, this.queue.length - this.maxQueue);
  }

  // The frame to show now (the last one whose audio is being heard), or the last shown.
  current(now = performance.now()) {
    if (this.offset === null) return this.frame;
    const q = this.queue;
    let due = (now - this.offset - this.audioDelayMs) / 1000; // until locked: arrival time + jitter buffer
    this.heardPts = null;
    if (this.fixedDelay !== null) {
      due = (now - this.offset - this.fixedDelay) / 1000;
    } else if (this.aligner && this.aligner.k !== null) {
      const pos = this.aligner.position(now);
      if (pos !== null) {
        this.heardPts = pos + this.aligner.k;
        due = this.heardPts;
      }
    }
    while (q.length && q[0].pts <= due) this.frame = q.shift();
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
    if (this.aligner) this.aligner.close();
  }
}

export function audioDelayOption(options) {
  const v = options?.audio_delay_ms;
  return typeof v === "number" ? v : "auto";
}
