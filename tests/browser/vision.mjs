// Drives Fay's web client in headless Chromium with a fake camera (a Y4M file) and a silent fake microphone.
//
//   node tests/browser/vision.mjs '<json>'
//
// json: {url, persona, y4m (the fake camera, played once), mic_wav, timeout_ms, chromium, deny_camera (refuse the
// camera: no --use-fake-ui-for-media-stream prompt acceptance for video)}
// Samples every 50 ms the 3D head's yaw as the viewer shows it, and the answer audio's level; waits for a visitor
// to arrive (a "presence" message, present: true) and leave (present: false).
// Prints one JSON line: {ok, steps, errors, console, notice, noticeVisible, camera, presence: [{present, at}], bubbles,
// answers: [{text, answered_by, at}], yaw: [[t, deg]], level: [[t, rms]], ready}. Times are performance.now() ms.
// Network: the page is on 127.0.0.1; DNS is disabled for every other host; WebRTC is allowed on loopback.

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
if (opts.y4m) args.push(`--use-file-for-fake-video-capture=${opts.y4m}`);

let browser;
try {
  browser = await chromium.launch({ executablePath: opts.chromium ?? "/usr/bin/chromium", args, timeout: 30000 });
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  if (opts.deny_camera) { // the visitor says no to the camera (the microphone is still allowed)
    await context.addInitScript(() => {
      const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
      navigator.mediaDevices.getUserMedia = (c) => c?.video
        ? Promise.reject(new DOMException("Permission denied", "NotAllowedError")) : original(c);
    });
  }
  const page = await context.newPage();
  page.on("console", (m) => { if (["error", "warning"].includes(m.type())) out.console.push(`${m.type()}: ${m.text()}`); });
  page.on("pageerror", (e) => out.errors.push(`pageerror: ${e.message}`));
  page.on("response", (r) => { if (r.status() >= 400) out.console.push(`${r.status()} ${r.url()}`); });
  page.setDefaultTimeout(timeout);

  await page.goto(`${opts.url}?persona=${encodeURIComponent(opts.persona)}`);
  await page.waitForFunction(() => document.querySelectorAll("#persona option").length > 0);
  await page.selectOption("#persona", opts.persona);
  await page.click("#connect");
  await page.waitForFunction(() => window.fay.connected && window.fay.pc?.connectionState === "connected");
  step("connected");
  out.noticeVisible = await page.isVisible("#camera-notice");
  out.notice = await page.$eval("#camera-notice", (e) => e.textContent);
  out.camera = await page.evaluate(() => window.fay.camera);
  // "ready" comes on the data channel, which may open a moment after the peer connection says "connected"
  await page.waitForFunction(() => window.fay.messages.some((m) => m.type === "ready"), null, { polling: 50 });
  out.ready = await page.evaluate(() => window.fay.messages.find((m) => m.type === "ready"));
  step(`camera ${JSON.stringify(out.camera)}`);
  await page.waitForFunction(() => window.fayAvatar?.player?.received > 10);
  step("avatar streaming");

  await page.evaluate(() => {
    const rec = (window.__rec = { yaw: [], level: [], presence: [], answers: [], seen: 0 });
    const audioEl = document.getElementById("remote-audio");
    const ac = new AudioContext();
    const analyser = ac.createAnalyser();
    analyser.fftSize = 1024;
    ac.createMediaStreamSource(audioEl.srcObject).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    window.__recTimer = setInterval(() => {
      const now = performance.now();
      const pl = window.fayAvatar.player;
      const f = pl.current(now);
      if (f) rec.yaw.push([now, pl.value("headYaw", f)]);
      analyser.getFloatTimeDomainData(buf);
      let s = 0;
      for (const x of buf) s += x * x;
      rec.level.push([now, Math.sqrt(s / buf.length)]);
      const msgs = window.fay.messages;
      for (; rec.seen < msgs.length; rec.seen++) {
        const m = msgs[rec.seen];
        if (m.type === "presence") rec.presence.push({ present: m.present, pts: m.pts, at: now });
        if (m.type === "answer") rec.answers.push({ text: m.text, answered_by: m.answered_by, at: now });
      }
    }, 50);
  });
  if (opts.deny_camera) {
    await page.waitForTimeout(opts.watch_ms ?? 3000);
  } else {
    await page.waitForFunction(() => window.__rec.presence.some((p) => p.present), null, { polling: 100 });
    step("visitor arrived");
    await page.waitForFunction(() => window.__rec.presence.some((p) => !p.present), null, { polling: 100 });
    step("visitor left");
    await page.waitForTimeout(500);
  }
  const rec = await page.evaluate(() => { clearInterval(window.__recTimer); return window.__rec; });
  out.bubbles = await page.$$eval("#transcript .msg .text", (els) => els.map((e) => e.textContent));
  Object.assign(out, { yaw: rec.yaw, level: rec.level, presence: rec.presence, answers: rec.answers });
  out.ok = true;
} catch (err) {
  out.errors.push(String(err && err.stack ? err.stack : err));
  try {
    const page = browser?.contexts()[0]?.pages()[0];
    if (page) {
      out.cameraStats = await page.evaluate(async () => {
        const stats = [];
        (await window.fay.pc?.getStats())?.forEach((r) => {
          if (r.type === "outbound-rtp" || r.type === "media-source") stats.push(r);
        });
        return { stats, senders: window.fay.pc?.getSenders().map((s) => [s.track?.kind, s.track?.readyState]),
          transceivers: window.fay.pc?.getTransceivers().map((t) => [t.mid, t.direction, t.currentDirection]) };
      });
      out.debug = await page.evaluate(() => ({
        state: window.fay?.state, camera: window.fay?.camera, presence: window.fay?.presence,
        avatar: !!window.fayAvatar, received: window.fayAvatar?.player?.received,
        transcript: [...document.querySelectorAll("#transcript .msg")].map((e) => e.textContent),
        types: [...new Set(window.fay?.messages?.map((m) => m.type) ?? [])],
        errors: window.fay?.messages?.filter((m) => m.type === "error"),
      }));
    }
  } catch { /* best effort */ }
} finally {
  if (browser) await browser.close();
}
console.log(JSON.stringify(out));
