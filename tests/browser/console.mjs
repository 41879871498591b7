// Drives Fay's console (/console) in headless Chromium: a declined question is answered and a PDF uploaded.
//
//   node tests/browser/console.mjs '<json>'
//
// json: {url, token (typed into the key field), session (a conversation to open), question (a declined question
// expected in the list), answer (typed as its FAQ answer), pdf (a file to upload), suite (an eval suite to run),
// audit_q (words to search the audit log for), chromium, timeout_ms, screenshot}
// Prints one JSON line: {ok, steps, errors, console, group: {count, questions, resolvedBefore}, charts: {points,
// bars}, review: {turns, declined}, addJob: [phases], resolved, uploadJob: [phases], document, uploadEntries,
// evalRuns, evalCases: [{id, verdict, failures}], audit: {total, shown}, csvHead}.

import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(new URL("../../web/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const opts = JSON.parse(process.argv[2]);
const timeout = opts.timeout_ms ?? 60000;
const out = { ok: false, steps: [], errors: [], console: [] };
const step = (s) => out.steps.push(`${(performance.now() / 1000).toFixed(2)}s ${s}`);
const args = [
  "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
];

let browser;
try {
  browser = await chromium.launch({ executablePath: opts.chromium ?? "/usr/bin/chromium", args, timeout: 30000 });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 }, acceptDownloads: true });
  page.on("console", (m) => { if (["error", "warning"].includes(m.type())) out.console.push(`${m.type()}: ${m.text()}`); });
  page.on("pageerror", (e) => out.errors.push(`pageerror: ${e.message}`));
  page.on("dialog", (d) => d.accept());
  page.setDefaultTimeout(timeout);

  // without the key the page says what is wrong; with it, it loads
  await page.goto(`${opts.url}/console`);
  await page.waitForFunction(() => window.fayConsole?.loaded);
  out.withoutKey = await page.evaluate(() => window.fayConsole.error);
  await page.fill("#key", opts.token);
  await page.click("#key-use");
  await page.waitForFunction(() => window.fayConsole.refreshes > 0);
  step("loaded");

  // the declined question in the list, with its count
  const groupSel = `li.group:has(.question:text-is(${JSON.stringify(opts.question)}))`;
  await page.waitForSelector(groupSel);
  const group = page.locator(groupSel);
  out.group = {
    count: Number(await group.locator(".count").textContent()),
    questions: await group.locator(".wordings li").allTextContents(),
    resolvedBefore: await group.evaluate((n) => n.classList.contains("is-resolved")),
  };
  out.charts = await page.evaluate(() => ({
    points: document.querySelectorAll("#latency-chart circle.point").length,
    bars: [...document.querySelectorAll("#declines-chart rect.bar.declined")].filter((r) => Number(r.getAttribute("height")) > 0).length,
  }));

  // the conversation's review
  await page.click(`#recent tr[data-session="${opts.session}"] a`);
  await page.waitForSelector("#review:not([hidden]) li.turn");
  out.review = await page.evaluate(() => ({
    turns: document.querySelectorAll("#review-turns li.turn").length,
    declined: document.querySelectorAll("#review-turns li.turn.declined").length,
  }));
  step("reviewed");

  // "Add to knowledge": type the answer, follow the job to its end, the group is answered now
  await group.locator("button.add-open").click();
  await group.locator("textarea[name=answer]").fill(opts.answer);
  const jobsBefore = await page.evaluate(() => Object.keys(window.fayConsole.jobs).length);
  await group.locator("form.add button[type=submit]").click();
  await page.waitForFunction((n) => {
    const jobs = Object.values(window.fayConsole.jobs);
    return jobs.length > n && jobs.at(-1).at(-1).state !== "running";
  }, jobsBefore);
  out.addJob = await page.evaluate(() => Object.values(window.fayConsole.jobs).at(-1).map((j) => `${j.state}:${j.phase}`));
  await page.waitForSelector(`${groupSel}.is-resolved`);
  out.resolved = await page.locator(`${groupSel} .resolved`).textContent();
  step("added to knowledge");

  // upload the PDF, follow its job, see it among the documents and its text among the entries
  await page.setInputFiles("#upload-file", opts.pdf);
  const uploadsBefore = await page.evaluate(() => Object.keys(window.fayConsole.jobs).length);
  await page.click("#upload-send");
  await page.waitForFunction((n) => {
    const jobs = Object.values(window.fayConsole.jobs);
    return jobs.length > n && jobs.at(-1).at(-1).state !== "running";
  }, uploadsBefore);
  out.uploadJob = await page.evaluate(() => Object.values(window.fayConsole.jobs).at(-1).map((j) => `${j.state}:${j.phase}`));
  out.jobText = await page.textContent("#job-state");
  const name = path.basename(opts.pdf);
  await page.waitForFunction((n) => [...document.querySelectorAll("#documents tr")].some((r) => r.dataset.path.endsWith(n)), name);
  out.document = await page.evaluate((n) => [...document.querySelectorAll("#documents tr")].map((r) => r.dataset.path).find((p) => p.endsWith(n)), name);
  out.uploadEntries = await page.evaluate(() => [...document.querySelectorAll("#entries li.entry")]
    .filter((e) => e.dataset.entry.includes("/uploads/")).map((e) => e.querySelector(".text").textContent));
  step("uploaded");

  // an eval run: its job, its row in the history, its cases (one expectation is wrong on purpose)
  if (opts.suite) {
    await page.selectOption("#eval-suite", opts.suite);
    const before = await page.evaluate(() => Object.keys(window.fayConsole.jobs).length);
    await page.click("#eval-run");
    await page.waitForFunction((n) => {
      const jobs = Object.values(window.fayConsole.jobs);
      return jobs.length > n && jobs.at(-1).at(-1).state !== "running";
    }, before);
    await page.waitForSelector("#eval-cases-box:not([hidden]) #eval-cases tr");
    out.evalRuns = await page.locator("#eval-runs tr").count();
    out.evalCases = await page.$$eval("#eval-cases tr", (rows) => rows.map((r) => ({
      id: r.dataset.case, verdict: r.children[1].textContent, failures: r.children[3].textContent })));
    step("eval run");
  }

  // audit search, and the CSV export as a download
  await page.fill("#audit-q", opts.audit_q);
  await page.click("#audit-search");
  await page.waitForFunction(() => window.fayConsole.audit);
  out.audit = await page.evaluate(() => ({ total: window.fayConsole.audit.total,
    shown: document.querySelectorAll("#audit-records li.record").length }));
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#audit-csv")]);
  const fs = await import("node:fs/promises");
  out.csvHead = (await fs.readFile(await download.path(), "utf-8")).split("\n")[0];
  step("audit");
  if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });
  out.ok = true;
} catch (err) {
  out.errors.push(String(err?.stack || err));
} finally {
  if (browser) await browser.close();
  console.log(JSON.stringify(out));
}
