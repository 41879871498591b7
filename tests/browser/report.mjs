// Plays a role-play in Fay's web client by typing, then checks its report page, in headless Chromium.
//
//   node tests/browser/report.mjs '<json>'
//
// json: {url, persona, lines (the trainee's turns, typed), screenshot_client, screenshot_report, chromium,
// timeout_ms, override: {score, comment}, trend_url (a report page whose trend chart is read), screenshot_trend}
// Prints one JSON line: {ok, steps, errors, console, scenario (the bar's step/aim/time after each turn), ticked
// (the clock moved while the scenario ran), ended, reportHref, report: {total, criteria: [{name, width, score}],
// quotes, highlighted: {turn, cls, when, mark}, metrics, timeline, trend, afterOverride: {score, ai, comment,
// overridden, status}}, trend: {points: [{session, current}]}}.

import { createRequire } from "node:module";

const require = createRequire(new URL("../../web/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const opts = JSON.parse(process.argv[2]);
const timeout = opts.timeout_ms ?? 60000;
const out = { ok: false, steps: [], errors: [], console: [], scenario: [] };
const step = (s) => out.steps.push(`${(performance.now() / 1000).toFixed(2)}s ${s}`);
const args = [
  "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--allow-loopback-in-peer-connection",
  "--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
];

let browser;
try {
  browser = await chromium.launch({ executablePath: opts.chromium ?? "/usr/bin/chromium", args, timeout: 30000 });
  let page = await browser.newPage({ viewport: { width: 1280, height: 820 } });
  page.on("console", (m) => { if (["error", "warning"].includes(m.type())) out.console.push(`${m.type()}: ${m.text()}`); });
  page.on("pageerror", (e) => out.errors.push(`pageerror: ${e.message}`));
  page.setDefaultTimeout(timeout);

  // --- the role-play in the web client (typed: the microphone is off) ---
  await page.goto(`${opts.url}?persona=${encodeURIComponent(opts.persona)}`);
  await page.waitForFunction(() => document.querySelectorAll("#persona option").length > 0);
  await page.uncheck("#mic-on");
  await page.click("#connect");
  await page.waitForFunction(() => window.fay.connected && !document.querySelector("#text").disabled);
  step("connected");
  const bar = async () => page.evaluate(() => ({
    hidden: document.querySelector("#scenario").hidden, step: document.querySelector("#scenario-step").textContent,
    aim: document.querySelector("#scenario-aim").textContent, time: document.querySelector("#scenario-time").textContent,
  }));
  for (const [i, line] of opts.lines.entries()) {
    const before = await page.evaluate(() => window.fay.messages.filter((m) => m.type === "answer").length);
    await page.fill("#text", line);
    await page.click("#send");
    await page.waitForFunction((n) => window.fay.messages.filter((m) => m.type === "answer").length > n, before);
    out.scenario.push(await bar());
    if (i === 0) {
      const t0 = (await bar()).time;
      await page.waitForTimeout(2100);
      out.ticked = (await bar()).time !== t0;
    }
  }
  step("all lines said");
  await page.waitForFunction(() => window.fay.scenario?.ended);
  out.ended = await bar();
  out.reportHref = await page.getAttribute("#scenario-report", "href");
  out.reportVisible = await page.isVisible("#scenario-report");
  if (opts.screenshot_client) await page.screenshot({ path: opts.screenshot_client, fullPage: true });
  step("scenario ended");

  // --- the report page ---
  // the link opens a new tab: the conversation stays open beside its report
  const [tab] = await Promise.all([page.context().waitForEvent("page"), page.click("#scenario-report")]);
  page = tab;
  page.on("pageerror", (e) => out.errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => { if (["error", "warning"].includes(m.type())) out.console.push(`${m.type()}: ${m.text()}`); });
  page.setDefaultTimeout(timeout);
  await page.setViewportSize({ width: 1280, height: 820 });
  await page.waitForFunction(() => window.report?.loaded);
  const error = await page.evaluate(() => window.report.error);
  if (error) throw new Error(`report page: ${error}`);
  const report = {};
  report.total = await page.textContent("#total");
  report.criteria = await page.$$eval(".criterion", (els) => els.map((e) => ({
    name: e.dataset.criterion, width: e.querySelector(".bar .fill").style.width,
    score: e.querySelector(".score").textContent, found: e.querySelectorAll(".found").length,
    missing: e.querySelectorAll(".missing").length, violations: e.querySelectorAll(".violation").length,
  })));
  report.quotes = await page.$$eval(".quote", (els) => els.map((e) => ({ turn: e.dataset.turn, text: e.textContent })));
  report.metrics = await page.$$eval(".metric", (els) => els.map((e) => e.dataset.metric));
  report.timeline = await page.$$eval("#timeline rect", (els) => els.length);
  report.trend = await page.textContent("#trend");
  if (report.quotes.length) {
    await page.click(".quote >> nth=0");
    await page.waitForSelector(".turns li.hl");
    report.highlighted = await page.$eval(".turns li.hl", (e) => ({
      turn: e.dataset.turn, cls: e.className, when: e.querySelector(".when").textContent,
      mark: e.querySelector("mark")?.textContent ?? null,
      visible: (() => { const r = e.getBoundingClientRect(); const p = e.parentElement.getBoundingClientRect();
        return r.bottom > p.top && r.top < p.bottom; })(),
    }));
    step(`quote opened turn ${report.highlighted.turn}`);
  }
  const name = report.criteria[0].name;
  await page.selectOption("#ov-criterion", name);
  await page.fill("#ov-score", String(opts.override.score));
  await page.fill("#ov-comment", opts.override.comment);
  await page.click("#override button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#ov-status").textContent !== "saving…");
  report.afterOverride = await page.evaluate((n) => {
    const e = [...document.querySelectorAll(".criterion")].find((c) => c.dataset.criterion === n);
    return { status: document.querySelector("#ov-status").textContent, score: e.querySelector(".score").textContent,
      ai: e.querySelector(".ai")?.textContent ?? null, comment: e.querySelector(".comment")?.textContent ?? null,
      overridden: e.querySelector(".bar").classList.contains("overridden"),
      aiMark: !!e.querySelector(".bar .ai-mark"), total: document.querySelector("#total").textContent,
      totalAi: document.querySelector("#total-ai").textContent };
  }, name);
  step(`override: ${JSON.stringify(report.afterOverride)}`);
  await page.click(".quote >> nth=0");  // leave a highlighted quote in the screenshot
  if (opts.screenshot_report) await page.screenshot({ path: opts.screenshot_report, fullPage: true });
  out.report = report;
  if (opts.trend_url) {  // a trainee's sessions: the trend chart
    await page.goto(opts.trend_url);
    await page.waitForFunction(() => window.report?.loaded);
    out.trend = await page.evaluate(() => ({ error: window.report.error,
      points: [...document.querySelectorAll("#trend circle")].map((c) => ({ session: c.dataset.session,
        current: c.getAttribute("r") === "4.5" })) }));
    if (opts.screenshot_trend) await page.screenshot({ path: opts.screenshot_trend, fullPage: true });
  }
  out.ok = true;
} catch (err) {
  out.errors.push(String(err && err.stack ? err.stack : err));
  try {
    const page = browser?.contexts()[0]?.pages()[0];
    if (page) {
      out.messages = await page.evaluate(() => window.fay?.messages?.slice(-20) ?? window.report ?? null);
      if (opts.screenshot_report) await page.screenshot({ path: opts.screenshot_report, fullPage: true });
    }
  } catch { /* best effort */ }
} finally {
  if (browser) await browser.close();
}
console.log(JSON.stringify(out));
