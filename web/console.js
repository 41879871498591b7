// Fay console: plain ES module, no build step. Served at /console (fay_core/console/routes.py has the API).
//
// For the bank's team: live sessions with their state and latency, recent conversations (a click opens the
// review: questions, answers, sources, tool calls, latency marks), the latency and declines-per-day charts (inline
// SVG), the declined and low-confidence questions grouped by similarity, each with "Add to knowledge" (an FAQ entry
// written to the persona's files and re-ingested, with progress), the personas' knowledge: upload a document,
// see the documents and entries with their phrasings, delete; eval runs (run a suite, its history and cases), and
// audit search with export (JSON lines, CSV). Every call carries the admin key or server token
// typed in the header (kept in sessionStorage as "fay-token", like the web client's).
//
// For tests, window.fayConsole holds {loaded, error, groups, knowledge, entries, jobs (each job's states seen),
// review, evals, run (the run last opened), audit (the last search)}.

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const state = (window.fayConsole = {
  loaded: false, error: null, groups: [], knowledge: null, entries: [], jobs: {}, review: null, refreshes: 0,
});

function headers(extra = {}) {
  const token = sessionStorage.getItem("fay-token") || "";
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function api(path, options = {}) {
  const resp = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON */ }
  if (!resp.ok) throw new Error(body?.error || `${resp.status} ${resp.statusText}`);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined).map((c) => (typeof c === "number" ? String(c) : c)));
  return node;
}

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

const short = (id) => (id || "").slice(0, 8);
const ms = (v) => (v === null || v === undefined ? "–" : `${Math.round(v)} ms`);
const when = (iso) => (iso ? iso.replace("T", " ").slice(0, 19) : "");

function showError(message) {
  state.error = message;
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

// --- charts ---------------------------------------------------------------------------------------------------

function latencyChart(points) {
  const box = $("latency-chart");
  const w = 520, h = 160, pad = 34;
  const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "latency over time" });
  root.append(svg("line", { x1: pad, y1: h - pad, x2: w - 8, y2: h - pad, class: "axis" }));
  if (!points.length) root.append(svg("text", { x: w / 2, y: h / 2, class: "empty", "text-anchor": "middle" }, "no turns yet"));
  const times = points.map((p) => Date.parse(p.time));
  const t0 = Math.min(...times), t1 = Math.max(...times);
  // the scale follows the bulk of the answers: a first turn that waited for an ingest would flatten the rest, so
  // points over the 95th percentile are drawn at the top, marked, with their value in the tooltip
  const sorted = points.map((p) => p.ms).sort((a, b) => a - b);
  const p95 = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.95))] ?? 0;
  const top = Math.max(100, sorted.length >= 5 ? p95 * 1.1 : (sorted.at(-1) ?? 0));
  const x = (t) => pad + (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5) * (w - pad - 12);
  const y = (v) => h - pad - (Math.min(v, top) / top) * (h - pad - 12);
  root.append(svg("text", { x: pad - 4, y: 16, "text-anchor": "end", class: "tick" }, String(Math.round(top))));
  root.append(svg("text", { x: pad - 4, y: h - pad, "text-anchor": "end", class: "tick" }, "0"));
  if (points.length) {
    root.append(svg("text", { x: pad, y: h - pad + 14, class: "tick" }, when(points[0].time).slice(5, 16)));
    if (t1 > t0) root.append(svg("text", { x: w - 8, y: h - pad + 14, "text-anchor": "end", class: "tick" }, when(points.at(-1).time).slice(5, 16)));
  }
  if (points.length > 1) {
    const d = points.map((p, i) => `${i ? "L" : "M"}${x(times[i]).toFixed(1)},${y(p.ms).toFixed(1)}`).join(" ");
    root.append(svg("path", { d, class: "line" }));
  }
  points.forEach((p, i) => {
    const dot = svg("circle", { cx: x(times[i]).toFixed(1), cy: y(p.ms).toFixed(1), r: 3,
      class: p.ms > top ? "point over" : "point" });
    dot.append(svg("title", {}, `${when(p.time)}: ${Math.round(p.ms)} ms (session ${short(p.session)})`));
    root.append(dot);
  });
  box.replaceChildren(root);
}

function declinesChart(days) {
  const box = $("declines-chart");
  const w = 520, h = 160, pad = 24;
  const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "declines per day" });
  const top = Math.max(1, ...days.map((d) => d.declined + d.unsure));
  const bw = (w - pad - 8) / Math.max(1, days.length);
  days.forEach((d, i) => {
    const x = pad + i * bw + 2;
    const hd = (d.declined / top) * (h - pad - 16), hu = (d.unsure / top) * (h - pad - 16);
    const bar = svg("rect", { x, y: h - pad - hd, width: bw - 4, height: hd, class: "bar declined", "data-day": d.day });
    bar.append(svg("title", {}, `${d.day}: ${d.declined} declined, ${d.unsure} unsure of ${d.turns} turns`));
    root.append(bar, svg("rect", { x, y: h - pad - hd - hu, width: bw - 4, height: hu, class: "bar unsure" }));
    if (i % Math.ceil(days.length / 7) === 0) {
      root.append(svg("text", { x: x + (bw - 4) / 2, y: h - 8, "text-anchor": "middle", class: "tick" }, d.day.slice(5)));
    }
  });
  root.append(svg("text", { x: 4, y: 14, class: "tick" }, String(top)));
  box.replaceChildren(root);
}

// --- sessions and review ----------------------------------------------------------------------------------------

function showSessions(body) {
  $("live-count").textContent = `${body.live.length} open`;
  $("live").replaceChildren(...body.live.map((s) => el("tr", { class: `state-${s.state}` },
    el("td", {}, el("a", { href: "#", onclick: (e) => { e.preventDefault(); openReview(s.session_id); } }, short(s.session_id))),
    el("td", {}, s.persona), el("td", { class: "state" }, s.state), el("td", {}, s.channel), el("td", {}, s.turns),
    el("td", {}, ms(s.latency_ms)), el("td", {}, `${Math.round(s.idle_s)} s`))));
  $("recent").replaceChildren(...body.recent.map((c) => el("tr", { "data-session": c.session_id },
    el("td", {}, el("a", { href: "#", onclick: (e) => { e.preventDefault(); openReview(c.session_id); } }, short(c.session_id))),
    el("td", {}, c.persona), el("td", {}, when(c.last)), el("td", {}, c.turns),
    el("td", { class: c.declined ? "bad" : "" }, c.declined), el("td", { class: c.unsure ? "warn" : "" }, c.unsure))));
}

async function openReview(sessionId) {
  const r = await api(`/api/console/sessions/${encodeURIComponent(sessionId)}`);
  state.review = r;
  $("review").hidden = false;
  $("review-id").textContent = sessionId;
  $("review-turns").replaceChildren(...r.turns.map((t) => {
    const tag = t.declined ? "declined" : t.unsure ? "unsure" : t.answer === null ? "running" : "answered";
    return el("li", { class: `turn ${tag}`, "data-turn": t.turn },
      el("div", { class: "q" }, el("span", { class: "who" }, `Customer (${t.source}) ${when(t.time)}`), t.question),
      el("div", { class: "a" }, el("span", { class: "who" }, `${t.answered_by || "…"} · ${tag}`), t.answer ?? ""),
      t.citations.length ? el("ul", { class: "sources" }, ...t.citations.map((c) =>
        el("li", {}, `[${c.index}] ${c.source}: ${c.section || c.title} (score ${Number(c.score).toFixed(3)})`))) : null,
      t.tools.length ? el("ul", { class: "tools" }, ...t.tools.map((c) =>
        el("li", {}, `${c.name}(${JSON.stringify(c.arguments)})${c.error ? ` error: ${c.error}` : ""}`))) : null,
      el("div", { class: "marks muted" }, Object.entries(t.latency_ms).map(([k, v]) => `${k} ${Math.round(v)} ms`).join(" · ")));
  }));
}

// --- declined questions -------------------------------------------------------------------------------------------

function showGroups(groups) {
  state.groups = groups;
  $("declined-empty").hidden = groups.length > 0;
  $("declined").replaceChildren(...groups.map((g) => {
    const form = el("form", { class: "add", hidden: true },
      el("label", {}, "Question ", el("input", { type: "text", name: "question", value: g.question, required: true })),
      el("label", {}, "Answer ", el("textarea", { name: "answer", rows: 2, required: true,
        placeholder: "the answer customers should get" })),
      el("button", { type: "submit" }, "Add and ingest"));
    form.addEventListener("submit", (e) => { e.preventDefault(); addToKnowledge(g, form); });
    const badge = g.resolved ? el("span", { class: "resolved" }, `answered by ${g.resolved}`) : null;
    return el("li", { class: `group${g.resolved ? " is-resolved" : ""}`, "data-group": g.id },
      el("div", { class: "head" },
        el("span", { class: "count", title: `${g.declined} declined, ${g.unsure} unsure` }, g.count),
        el("span", { class: "question" }, g.question), el("span", { class: "muted" }, `${g.persona} · ${g.sessions} session(s) · last ${when(g.last)}`),
        badge,
        g.resolved ? null : el("button", { type: "button", class: "add-open", onclick: () => { form.hidden = !form.hidden; } }, "Add to knowledge")),
      g.questions.length > 1 ? el("ul", { class: "wordings" }, ...g.questions.map((q) => el("li", {}, `${q.text} ×${q.count}`))) : null,
      form);
  }));
}

async function addToKnowledge(g, form) {
  const data = new FormData(form);
  const question = String(data.get("question") || "").trim();
  const questions = g.questions.map((q) => q.text);
  const out = await api("/api/console/declined/answer", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ persona: g.persona, question, answer: String(data.get("answer") || ""), questions }),
  });
  form.hidden = true;
  await follow(out.job);
  await refresh();
}

// --- knowledge ----------------------------------------------------------------------------------------------------

function selectedPersona() { return $("kb-persona").value; }

function showKnowledge(body) {
  state.knowledge = body;
  const sel = $("kb-persona");
  const keep = sel.value;
  sel.replaceChildren(...body.personas.map((p) => el("option", { value: p.persona }, `${p.name} (${p.persona})`)));
  if (body.personas.some((p) => p.persona === keep)) sel.value = keep;
  const p = body.personas.find((x) => x.persona === sel.value);
  $("kb-summary").textContent = p ? `${p.collection}: ${p.entries} entries${p.editable ? "" : ` · ${p.reason}`}` : "no persona with knowledge";
  $("upload-send").disabled = !p?.editable;
  $("kb-ingest").disabled = !p?.editable;
  $("documents").replaceChildren(...(p?.documents || []).map((d) => el("tr", { "data-path": d.path },
    el("td", {}, d.path, d.uploaded ? el("span", { class: "tag" }, "uploaded") : null, d.console ? el("span", { class: "tag" }, "console") : null),
    el("td", {}, d.entries),
    el("td", {}, el("button", { type: "button", class: "plain delete", onclick: () => deleteDocument(p.persona, d.path) }, "Delete")))));
}

async function loadEntries() {
  const persona = selectedPersona();
  if (!persona) return;
  const body = await api(`/api/console/knowledge/${encodeURIComponent(persona)}/entries`);
  state.entries = body.entries;
  showEntries();
}

function showEntries() {
  const filter = $("entry-filter").value.toLowerCase();
  const shown = state.entries.filter((e) => !filter || `${e.title} ${e.questions.join(" ")} ${e.text}`.toLowerCase().includes(filter));
  $("entries").replaceChildren(...shown.slice(0, 300).map((e) => el("li", { class: `entry ${e.kind}`, "data-entry": e.id },
    el("div", { class: "head" }, el("span", { class: "title" }, e.title), el("code", { class: "muted" }, e.id),
      e.deletable ? el("button", { type: "button", class: "plain delete", onclick: () => deleteEntry(selectedPersona(), e.id) }, "Delete") : null),
    e.questions.length ? el("ul", { class: "wordings" }, ...e.questions.map((q) => el("li", {}, q))) : null,
    el("div", { class: "text" }, e.text.length > 240 ? `${e.text.slice(0, 240)}…` : e.text))));
}

async function upload(e) {
  e.preventDefault();
  const file = $("upload-file").files[0];
  if (!file) { showError("choose a file to upload"); return; }
  const form = new FormData();
  form.append("file", file, file.name);
  const out = await api(`/api/console/knowledge/${encodeURIComponent(selectedPersona())}/documents`, { method: "POST", body: form });
  $("upload-file").value = "";
  await follow(out.job);
  await refresh();
}

async function reingest() {
  const out = await api(`/api/console/knowledge/${encodeURIComponent(selectedPersona())}/ingest`, { method: "POST" });
  await follow(out.job);
  await refresh();
}

async function deleteDocument(persona, path) {
  if (!window.confirm(`Delete ${path}? It is moved to the server's trash and the knowledge re-ingested.`)) return;
  const out = await api(`/api/console/knowledge/${encodeURIComponent(persona)}/documents?path=${encodeURIComponent(path)}`, { method: "DELETE" });
  await follow(out.job);
  await refresh();
}

async function deleteEntry(persona, id) {
  if (!window.confirm(`Delete the entry ${id}?`)) return;
  const out = await api(`/api/console/knowledge/${encodeURIComponent(persona)}/entries?id=${encodeURIComponent(id)}`, { method: "DELETE" });
  await follow(out.job);
  await refresh();
}

// a job's progress: polled until it ends; every state seen is kept for tests
async function follow(job) {
  const seen = (state.jobs[job.id] = [job]);
  $("job").hidden = false;
  $("job-title").textContent = `${job.kind}: ${job.title}`;
  for (;;) {
    $("job-progress").value = job.fraction;
    $("job-state").textContent = job.state === "failed" ? `failed: ${job.error}`
      : job.phase === "ingesting" && job.total ? `ingesting ${job.done} / ${job.total} rows` : job.phase;
    $("job").dataset.state = job.state;
    if (job.state !== "running") break;
    await new Promise((r) => setTimeout(r, 150));
    job = await api(`/api/console/jobs/${job.id}`);
    seen.push(job);
  }
  if (job.state === "failed") showError(`${job.kind} ${job.title}: ${job.error}`);
  return job;
}

// --- eval runs ----------------------------------------------------------------------------------------------------

function showEvals(body) {
  state.evals = body;
  const sel = $("eval-suite");
  const keep = sel.value;
  const runnable = body.suites.filter((x) => !x.error);
  sel.replaceChildren(...runnable.map((x) => el("option", { value: x.suite }, `${x.suite} (${x.persona}, ${x.cases} cases)`)));
  if (runnable.some((x) => x.suite === keep)) sel.value = keep;
  $("eval-run").disabled = !runnable.length;
  $("eval-runs").replaceChildren(...body.runs.map((r) => el("tr", { "data-run": r.id, class: r.failed ? "failed" : "passed" },
    el("td", {}, el("a", { href: "#", onclick: (e) => { e.preventDefault(); openRun(r.id); } }, when(r.started))),
    el("td", {}, r.suite), el("td", {}, r.answerer), el("td", {}, r.passed),
    el("td", { class: r.failed ? "bad" : "" }, r.failed), el("td", {}, `${r.took_s} s`))));
}

async function openRun(id) {
  const run = await api(`/api/console/evals/${encodeURIComponent(id)}`);
  state.run = run;
  $("eval-cases-box").hidden = false;
  $("eval-run-id").textContent = id;
  $("eval-cases").replaceChildren(...run.cases.map((c) => el("tr", { "data-case": c.id },
    el("td", {}, c.id), el("td", { class: c.passed === false ? "bad" : "" }, c.passed === null ? "skipped" : c.passed ? "pass" : "FAIL"),
    el("td", {}, c.answer.length > 120 ? `${c.answer.slice(0, 120)}…` : c.answer), el("td", {}, c.failures.join("; ")))));
}

async function runEval(e) {
  e.preventDefault();
  const out = await api("/api/console/evals", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ suite: $("eval-suite").value }),
  });
  const job = await follow(out.job);
  showEvals(await api("/api/console/evals"));
  if (job.state === "done") await openRun(job.result.run);
}

// --- the audit log ------------------------------------------------------------------------------------------------

function auditQuery() {
  const q = new URLSearchParams();
  for (const [k, id] of [["q", "audit-q"], ["kind", "audit-kind"], ["session", "audit-session"], ["since", "audit-since"], ["until", "audit-until"]]) {
    if ($(id).value.trim()) q.set(k, $(id).value.trim());
  }
  return q;
}

async function searchAudit(e) {
  e?.preventDefault();
  const q = auditQuery();
  const body = await api(`/api/console/audit?${q}`);
  state.audit = body;
  $("audit-total").textContent = `${body.total} record(s)${body.total > body.records.length ? `, newest ${body.records.length} shown` : ""}`;
  $("audit-records").replaceChildren(...body.records.map((r) => el("li", { class: `record ${r.kind}` },
    el("span", { class: "who" }, `${when(r.time)} · ${r.kind} · ${short(r.session)} · turn ${r.turn ?? "–"}`),
    r.text ?? r.message ?? r.via ?? "")));
}

// the export links carry the query; the key goes as a header, so they are fetched, not followed
async function exportAudit(e, format) {
  e.preventDefault();
  const q = auditQuery();
  q.set("format", format);
  const resp = await fetch(`/api/console/audit/export?${q}`, { headers: headers() });
  if (!resp.ok) { showError(`export: ${resp.status} ${resp.statusText}`); return; }
  const url = URL.createObjectURL(await resp.blob());
  const a = el("a", { href: url, download: `audit.${format}` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// --- refresh ------------------------------------------------------------------------------------------------------

async function refresh() {
  try {
    const [sessions, stats, declined, knowledge, evals] = await Promise.all([
      api("/api/console/sessions"), api("/api/console/stats?days=14"), api("/api/console/declined"),
      api("/api/console/knowledge"), api("/api/console/evals"),
    ]);
    showEvals(evals);
    showSessions(sessions);
    latencyChart(stats.latency);
    declinesChart(stats.days);
    // a form being filled in is not redrawn under the typist's hands
    if (!document.querySelector("#declined form.add:not([hidden])")) showGroups(declined.groups);
    showKnowledge(knowledge);
    await loadEntries();
    $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
    showError(null);
    state.refreshes += 1;
  } catch (err) {
    showError(err.message);
  } finally {
    state.loaded = true;
  }
}

$("key").value = sessionStorage.getItem("fay-token") || "";
$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("fay-token", $("key").value.trim());
  refresh();
});
$("upload").addEventListener("submit", (e) => upload(e).catch((err) => showError(err.message)));
$("kb-ingest").addEventListener("click", () => reingest().catch((err) => showError(err.message)));
$("kb-persona").addEventListener("change", () => { showKnowledge(state.knowledge); loadEntries().catch((err) => showError(err.message)); });
$("entry-filter").addEventListener("input", showEntries);
$("review-close").addEventListener("click", () => { $("review").hidden = true; });
$("eval-form").addEventListener("submit", (e) => runEval(e).catch((err) => showError(err.message)));
$("audit-form").addEventListener("submit", (e) => searchAudit(e).catch((err) => showError(err.message)));
$("audit-jsonl").addEventListener("click", (e) => exportAudit(e, "jsonl").catch((err) => showError(err.message)));
$("audit-csv").addEventListener("click", (e) => exportAudit(e, "csv").catch((err) => showError(err.message)));
window.addEventListener("unhandledrejection", (e) => showError(e.reason?.message || String(e.reason)));
refresh();
setInterval(() => { if (!document.hidden) refresh(); }, 10000);
