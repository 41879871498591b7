// Drives an avatar viewer in headless Chromium through Fay's web client, and records what the page shows and
// plays, for tests/test_avatar_browser.py.
//
//   node tests/browser/avatar.mjs '<json>'
//
// json: {url, persona, question, warmup (ask twice, measure the second answer), rest_png, talk_png,
//        mic_wav (fake microphone: silence), timeout_ms}
// Prints one JSON line: {ok, kind, steps, errors, console, audio: [[ms, rms]], mouth: [[ms, value]],
//   morphs (3D), received (frames), answer, delayMs}
// The mouth series comes from the viewer itself: the jawOpen / ParamMouthOpenY value applied to the model at each
// animation frame (params3d, live2d), or, for the video renderer, how much of the mouth area of the decoded video
// frame is dark (the open mouth's inside). The audio series is the RMS of the answer audio as the page receives
// it (WebAudio analyser on the <audio> element's stream), sampled at the same animation frames.

import { createRequire } from "node:module";

const require = createRequire(new URL("../../web/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const opts = JSON.parse(process.argv[2]);
const timeout = opts.timeout_ms ?? 60000;
const out = { ok: false, steps: [], errors: [], console: [] };
const step = (s) => out.steps.push(`${(performance.now() / 1000).toFixed(2)}s ${s}`);

const args = [
  "--headless=new", "--no-sandbox", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
  "--disable-domain-reliability", "--no-pings", "--disable-features=MediaRouter,OptimizationHints,Translate",
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
  "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
  "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
];
if (opts.mic_wav) args.push(`--use-file-for-fake-audio-capture=${opts.mic_wav}`);

let browser;
try {
  browser = await chromium.launch({ executablePath: opts.chromium ?? "/usr/bin/chromium", args, timeout: 30000 });
  const page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
  page.on("console", (m) => { if (["error", "warning"].includes(m.type())) out.console.push(`${m.type()}: ${m.text()}`); });
  page.on("pageerror", (e) => out.errors.push(`pageerror: ${e.message}`));
  page.setDefaultTimeout(timeout);

  await page.goto(`${opts.url}?persona=${encodeURIComponent(opts.persona)}`);
  await page.waitForFunction(() => document.querySelectorAll("#persona option").length > 0);
  await page.selectOption("#persona", opts.persona);
  await page.click("#connect");
  await page.waitForFunction(() => window.fay.connected && window.fay.pc?.connectionState === "connected");
  step("connected");
  await page.waitForFunction(() => window.fayAvatar);
  out.kind = await page.evaluate(() => (window.fayAvatar.video ? "video" : "data"));
  if (out.kind === "video") {
    await page.waitForFunction(() => window.fayAvatar.video.videoWidth > 0 && window.fayAvatar.video.currentTime > 0.5);
  } else {
    await page.waitForFunction(() => window.fayAvatar.player.received > 25 && window.fayAvatar.player.current());
  }
  step(`viewer mounted (${out.kind})`);

  // sample the answer audio's loudness and the mouth at every animation frame
  await page.evaluate((kind) => {
    const rec = (window.__rec = { audio: [], mouth: [] });
    const audioEl = document.getElementById("remote-audio");
    const ac = new AudioContext();
    const analyser = ac.createAnalyser();
    analyser.fftSize = 512; // ~10 ms at 48 kHz
    ac.createMediaStreamSource(audioEl.srcObject).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    let canvas = null, c2d = null;
    const videoMouth = () => {
      const v = window.fayAvatar.video;
      if (!canvas) {
        canvas = new OffscreenCanvas(v.videoWidth, v.videoHeight);
        c2d = canvas.getContext("2d", { willReadFrequently: true });
      }
      c2d.drawImage(v, 0, 0);
      // the portrait's mouth sits around (50%, 55%) of the frame; count its dark inside
      const w = Math.round(v.videoWidth * 0.25), h = Math.round(v.videoHeight * 0.14);
      const x0 = Math.round(v.videoWidth * 0.5 - w / 2), y0 = Math.round(v.videoHeight * 0.55 - h / 2);
      const d = c2d.getImageData(x0, y0, w, h).data;
      let dark = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] < 120 && d[i + 1] < 60 && d[i + 2] < 70) dark++;
      return dark / (w * h);
    };
    // every 10 ms: the audio's loudness, and the mouth as shown now (the value last applied by the viewer)
    window.__recTimer = setInterval(() => {
      const now = performance.now();
      analyser.getFloatTimeDomainData(buf);
      let s = 0;
      for (const x of buf) s += x * x;
      rec.audio.push([now, Math.sqrt(s / buf.length)]);
      if (kind === "video") rec.mouth.push([now, videoMouth()]);
      else {
        const t = window.fayAvatar.trace;
        rec.mouth.push([now, t.length ? t[t.length - 1][1] : 0]);
      }
    }, 10);
  }, out.kind);

  if (opts.probe) await page.evaluate(() => {
    const pl = window.fayAvatar.player; const orig = pl.push.bind(pl); window.__arr = [];
    pl.push = (buf) => { const dv = new DataView(buf); if (dv.getUint8(0) === 2) window.__arr.push([performance.timeOrigin + performance.now(), dv.getFloat64(8, true)]); orig(buf); };
  });
  // one answer: ask, then wait until the server has played all of it (state "speaking" then "listening") and the
  // page has heard 1.5 s of silence since (what is still in the jitter buffer plays out)
  const ask = async () => {
    const n0 = await page.evaluate(() => window.fay.messages.length);
    await page.fill("#text", opts.question);
    await page.click("#send");
    await page.waitForFunction((n0) => {
      const states = window.fay.messages.slice(n0).filter((m) => m.type === "state").map((m) => m.state);
      const spoke = states.indexOf("speaking");
      return spoke >= 0 && states.indexOf("listening", spoke) > spoke;
    }, n0, { timeout: 60000, polling: 50 });
    const doneAt = await page.evaluate(() => performance.now());
    await page.waitForFunction((doneAt) => {
      const last = window.__rec.audio.findLast(([, r]) => r > 0.01);
      return performance.now() - doneAt > 1500 && (!last || performance.now() - last[0] > 1500);
    }, doneAt, { timeout: 30000, polling: 100 });
  };
  if (opts.warmup) { // a first answer: the viewer locks onto the audio; the second one is measured
    await ask();
    step("warm-up answer played");
  }
  await page.waitForTimeout(500);
  if (opts.rest_png) await page.locator("#avatar").screenshot({ path: opts.rest_png });
  step("rest screenshot");
  const t0 = await page.evaluate(() => performance.now());
  // take the talking screenshot when the mouth is well open, while the answer plays
  const openAt = out.kind === "video" ? 0.08 : 0.45;
  const talking = page.waitForFunction((openAt) => {
    const m = window.__rec.mouth;
    return m.length && m[m.length - 1][1] > openAt;
  }, openAt, { timeout: 60000, polling: "raf" }).then(async () => {
    if (opts.talk_png) await page.locator("#avatar").screenshot({ path: opts.talk_png });
    step("talking screenshot");
  });
  await ask();
  await talking;
  step("answer played");
  const rec = await page.evaluate((t0) => {
    const cut = (s) => s.filter(([t]) => t >= t0);
    clearInterval(window.__recTimer);
    const frames = window.fayAvatar.trace ?? [];
    const gaps = frames.slice(1).map(([t], i) => t - frames[i][0]);
    return {
      audio: cut(window.__rec.audio), mouth: cut(window.__rec.mouth),
      drawFps: gaps.length ? 1000 / (gaps.reduce((a, b) => a + b, 0) / gaps.length) : null,
      received: window.fayAvatar.player?.received ?? null, delayMs: window.fayAvatar.player?.delayMs ?? null,
      video: window.fayAvatar.video ? { targetMs: window.fayAvatar.targetMs, audioDelayMs: window.fayAvatar.audioDelayMs } : null,
      sync: window.fayAvatar.player ? {
        locked: window.fayAvatar.player.locked, statsDelayMs: window.fayAvatar.player.audioDelayMs,
        estimates: window.fayAvatar.player.aligner?.estimates, lockedAt: window.fayAvatar.player.aligner?.lockedAt, confidence: window.fayAvatar.player.aligner?.confidence,
        levels: window.fayAvatar.player.aligner?.levels.length,
      } : null,
      morphs: window.fayAvatar.morphNames ?? null, arrivals: window.__arr ?? null, origin: performance.timeOrigin,
    };
  }, t0);
  out.askedAt = t0;
  Object.assign(out, rec);
  out.answer = await page.evaluate(() => window.fay.messages.find((m) => m.type === "answer")?.text ?? null);
  out.state = await page.evaluate(() => window.fay.state);
  out.ok = true;
} catch (err) {
  out.errors.push(String(err && err.stack ? err.stack : err));
  try {
    const page = browser?.contexts()[0]?.pages()[0];
    if (page && opts.rest_png) await page.screenshot({ path: opts.rest_png.replace(".png", "-error.png") });
    if (page) {
      out.debug = await page.evaluate(() => ({
        maxRemoteLevel: window.fay?.maxRemoteLevel, state: window.fay?.state,
        ready: window.fay?.messages?.find((m) => m.type === "ready"),
        types: [...new Set(window.fay?.messages?.map((m) => m.type) ?? [])],
        audioMax: Math.max(0, ...(window.__rec?.audio ?? []).map(([, r]) => r)),
        audioSamples: window.__rec?.audio?.length,
      }));
    }
  } catch { /* best effort */ }
} finally {
  if (browser) await browser.close();
}
console.log(JSON.stringify(out));
