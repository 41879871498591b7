// Drives Fay's web client in headless Chromium (Debian /usr/bin/chromium) with playwright-core.
//
//   node tests/browser/drive.mjs '<json>'
//
// json: {url, persona, wav (fake microphone file, played once), screenshot, question (typed after the spoken
// one, optional), voice (expect a spoken transcript and answer audio), timeout_ms, chromium,
// end: "disconnect" (default: the Disconnect button) | "reload" (a page refresh) | "none",
// consent: true | false (click Accept / Decline on the recording notice as soon as it shows; absent: no click)}
// Prints one JSON line: {ok, steps, transcript, answers, sources, maxRemoteLevel, errors, console, types,
// firstBubble: {cls, text}, firstAudioAt, firstWordAt (performance.now() ms), recording, notice}.
// Network: the page is on 127.0.0.1; DNS is disabled for every other host; WebRTC is allowed on loopback.

import { createRequire } from "node:module";

const require = createRequire(new URL("../../web/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const opts = JSON.parse(process.argv[2]);
const timeout = opts.timeout_ms ?? 60000;
const out = { ok: false, steps: [], transcript: null, answers: [], sources: [], maxRemoteLevel: 0, errors: [],
  console: [], types: [] };
const step = (s) => out.steps.push(`${(performance.now() / 1000).toFixed(2)}s ${s}`);

const args = [
  "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
  "--disable-domain-reliability", "--no-pings", "--disable-features=MediaRouter,OptimizationHints,Translate",
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
  "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
];
if (opts.wav) args.push(`--use-file-for-fake-audio-capture=${opts.wav}%noloop`);

let browser;
try {
  browser = await chromium.launch({ executablePath: opts.chromium ?? "/usr/bin/chromium", args, timeout: 30000 });
  const page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
  page.on("console", (m) => { if (["error", "warning"].includes(m.type())) out.console.push(`${m.type()}: ${m.text()}`); });
  page.on("pageerror", (e) => out.errors.push(`pageerror: ${e.message}`));
  page.setDefaultTimeout(timeout);

  await page.goto(`${opts.url}?persona=${encodeURIComponent(opts.persona ?? "")}`);
  await page.waitForFunction(() => document.querySelectorAll("#persona option").length > 0);
  step("page loaded, personas listed");
  await page.click("#connect");
  await page.waitForFunction(() => window.fay.connected && window.fay.state !== "idle");
  step("connected");
  await page.waitForSelector("#ai-label", { state: "visible" });
  await page.waitForSelector("#transcript .msg");
  out.firstBubble = await page.$eval("#transcript .msg", (e) => ({ cls: e.className,
    text: e.querySelector(".text").textContent }));
  step(`first bubble: ${out.firstBubble.text}`);
  if (opts.consent !== undefined) {
    const notice = await page.waitForSelector(".msg.consent");
    out.notice = await notice.$eval(".text", (e) => e.textContent);
    await page.click(`.msg.consent button[data-consent="${opts.consent}"]`);
    await page.waitForFunction((v) => window.fay.recording && window.fay.recording.consented === v, opts.consent);
    out.recording = await page.evaluate(() => window.fay.recording);
    step(`recording consent ${opts.consent}: ${JSON.stringify(out.recording)}`);
  }
  await page.waitForFunction(() => window.fay.pc?.connectionState === "connected");
  // the candidate pair in use (the transport's selected pair; it can take a moment to be reported)
  const selectedPair = async () => page.evaluate(async () => {
    const stats = [...(await window.fay.pc.getStats()).values()];
    const byId = new Map(stats.map((s) => [s.id, s]));
    const transport = stats.find((s) => s.type === "transport" && s.selectedCandidatePairId);
    const pair = transport ? byId.get(transport.selectedCandidatePairId)
      : stats.find((s) => s.type === "candidate-pair" && s.nominated && s.state === "succeeded");
    if (!pair) return null;
    const ip = (c) => `${c.address ?? c.ip}:${c.port}`;
    return { local: ip(byId.get(pair.localCandidateId)), remote: ip(byId.get(pair.remoteCandidateId)) };
  });
  for (let i = 0; i < 50 && !out.pair; i++) {
    out.pair = await selectedPair();
    if (!out.pair) await page.waitForTimeout(100);
  }
  step(`ICE pair ${JSON.stringify(out.pair)}`);

  if (opts.voice) {
    // the fake microphone speaks the question: its transcript, then an answer, then answer audio
    const said = await page.waitForSelector(".msg.user .text");
    out.transcript = await said.textContent();
    step(`transcript on page: ${out.transcript}`);
    await page.waitForFunction(() => window.fay.messages.some((m) => m.type === "answer"));
    step("spoken question answered");
    await page.waitForFunction(() => window.fay.maxRemoteLevel > 0.01, null, { timeout: 30000 });
    step("audio arrived");
    await page.waitForFunction(() => window.fay.firstWordAt !== null, null, { timeout: 30000 });
    step("the answer's first word was played");
  }
  if (opts.question) {
    const before = await page.evaluate(() => window.fay.messages.filter((m) => m.type === "answer").length);
    await page.fill("#text", opts.question);
    await page.click("#send");
    await page.waitForFunction((n) => window.fay.messages.filter((m) => m.type === "answer").length > n, before);
    step("typed question answered");
  }
  await page.waitForTimeout(300);
  out.answers = await page.$$eval(".msg.bot[data-turn] .text", (els) => els.map((e) => e.textContent));
  out.sources = await page.$$eval(".msg.bot .sources li", (els) => els.map((e) => e.textContent));
  out.maxRemoteLevel = await page.evaluate(() => window.fay.maxRemoteLevel);
  out.types = await page.evaluate(() => [...new Set(window.fay.messages.map((m) => m.type))]);
  out.label = await page.textContent("#ai-label");
  out.state = await page.evaluate(() => window.fay.state);
  out.session_id = await page.evaluate(() => window.fay.sessionId);
  out.latency = await page.textContent("#latency");
  out.firstAudioAt = await page.evaluate(() => window.fay.firstAudioAt);
  out.firstWordAt = await page.evaluate(() => window.fay.firstWordAt);
  if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });
  step("screenshot saved");
  if (opts.end === "reload") {
    // a page refresh: the old page's peer connection goes away with it
    await page.reload();
    await page.waitForFunction(() => document.querySelectorAll("#persona option").length > 0);
    out.after_reload = await page.evaluate(() => ({ connected: window.fay.connected, state: window.fay.state }));
    step("page reloaded");
  } else if (opts.end !== "none") {
    await page.click("#disconnect");
    await page.waitForFunction(() => !window.fay.connected);
    step("disconnected");
  }
  out.ok = true;
} catch (err) {
  out.errors.push(String(err && err.stack ? err.stack : err));
  try {
    const page = browser?.contexts()[0]?.pages()[0];
    if (page) {
      out.types = await page.evaluate(() => [...new Set(window.fay?.messages?.map((m) => m.type) ?? [])]);
      out.messages = await page.evaluate(() => window.fay?.messages?.slice(-30) ?? []);
      if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });
    }
  } catch { /* best effort */ }
} finally {
  if (browser) await browser.close();
}
console.log(JSON.stringify(out));
