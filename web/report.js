// Fay role-play report page: plain ES module, no build step. Served at /web/report.html?session=<session id>.
//
// Reads GET /api/sessions/{id}/report (fay_core/roleplay/reports.py) and shows: the total (the trainer's overrides
// applied, the AI's total beside it when they differ), per-criterion score bars with the evidence quotes (a click on
// a quote highlights its turn in the transcript, with its time), missing checks, violations, the speech metrics as
// small SVG charts, a timeline of who spoke when, the trend of the trainee's sessions of this persona, and a form
// for a trainer's override (POST /api/sessions/{id}/report/overrides {criterion, score, comment}); the AI's score
// stays beside an overridden one. The access token, if the server needs one, is read as app.js stores it.
//
// For tests, window.report holds {loaded, data (the last report), error, highlighted (the turn index last shown)}.

const $ = (id) => document.getElementById(id);
const state = (window.report = { loaded: false, data: null, error: null, highlighted: null });
const sessionId = new URLSearchParams(location.search).get("session") || "";
const SVG = "http://www.w3.org/2000/svg";

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
    else node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

const fmt = (n, digits = 1) => (n === null || n === undefined ? "–" : Number(n).toFixed(digits).replace(/\.0+$/, ""));
function clock(s) {
  if (s === null || s === undefined) return "";
  const m = Math.floor(s / 60);
  return `${m}:${(s - m * 60).toFixed(1).padStart(4, "0")}`;
}

// --- the parts ------------------------------------------------------------------------------------------------

function showSummary(r) {
  const final = r.final || {};
  const ai = r.scorecard?.total ?? null;
  $("total").textContent = fmt(final.total);
  $("total-ai").textContent = ai !== null && final.total !== ai ? `AI total ${fmt(ai)} (before overrides)` : "";
  const facts = $("facts");
  facts.replaceChildren();
  const rows = [
    ["Persona", r.persona_name || r.persona], ["Scenario", `${r.scenario?.kind} · ${r.scenario?.difficulty}`],
    ["Trainee", r.trainee || "—"], ["Ended", `${new Date(r.ended * 1000).toLocaleString()} (${r.ended_reason})`],
    ["Steps", `${(r.steps_visited || []).length} of ${(r.scenario?.steps || []).length}`],
  ];
  for (const [k, v] of rows) facts.append(el("dt", {}, k), el("dd", {}, String(v)));
  $("who").textContent = r.trainee ? `trainee ${r.trainee}` : "";
  const error = $("error");
  error.hidden = !r.error;
  error.textContent = r.error || "";
}

function quoteButton(turn, quote) {
  return el("button", { class: "quote", type: "button", "data-turn": String(turn), onclick: () => highlight(turn, quote) },
    `“${quote}” @ ${clock(state.data.transcript.turns[turn]?.start_s) || `turn ${turn}`}`);
}

function showCriteria(r) {
  const box = $("criteria");
  box.replaceChildren();
  const select = $("ov-criterion");
  select.replaceChildren();
  const overrides = r.overrides || {};
  for (const c of r.scorecard?.criteria || []) {
    const ov = overrides[c.criterion];
    const shown = ov ? ov.score : c.score;
    const bar = el("div", { class: `bar${ov ? " overridden" : ""}` }, el("div", { class: "fill" }));
    bar.firstChild.style.width = `${Math.max(0, Math.min(100, (100 * (shown ?? 0)) / c.max_score))}%`;
    if (ov && c.score !== null) {
      const mark = el("div", { class: "ai-mark", title: `AI score ${fmt(c.score)}` });
      mark.style.left = `calc(${(100 * c.score) / c.max_score}% - 1px)`;
      bar.append(mark);
    }
    const list = el("ul", { class: "evidence" });
    for (const k of c.checks || []) {
      list.append(k.found
        ? el("li", { class: "found" }, k.check, quoteButton(k.turn, k.quote))
        : el("li", { class: "missing" }, `${k.check} — not found`));
    }
    for (const v of c.violations || []) list.append(el("li", { class: "violation" }, v.avoid, quoteButton(v.turn, v.quote)));
    const head = el("div", { class: "head" }, el("span", {}, c.criterion),
      el("span", { class: "score" }, `${fmt(shown)} / ${fmt(c.max_score)}`,
        ov ? el("span", { class: "ai" }, `AI ${fmt(c.score)}`) : null));
    const item = el("div", { class: "criterion", "data-criterion": c.criterion }, head, bar, list);
    if (c.note) item.append(el("div", { class: "muted" }, c.note));
    if (ov) item.append(el("div", { class: "comment" }, `Trainer: ${ov.comment}`));
    box.append(item);
    select.append(el("option", { value: c.criterion }, c.criterion));
  }
  if (!box.childElementCount) box.append(el("p", { class: "muted" }, "No scores (see the note above)."));
}

function showTranscript(r) {
  const list = $("transcript");
  list.replaceChildren();
  r.transcript.turns.forEach((t, i) => {
    list.append(el("li", { class: `turn-${t.speaker}`, id: `turn-${i}`, "data-turn": String(i) },
      el("span", { class: "when" }, t.start_s !== null ? clock(t.start_s) : ""),
      el("span", { class: "who" }, t.speaker === "trainee" ? "Trainee " : `${r.persona_name || "Avatar"} `),
      el("span", { class: "text" }, t.text)));
  });
}

function highlight(turn, quote) {
  for (const li of document.querySelectorAll(".turns li.hl")) {
    li.classList.remove("hl");
    li.querySelector(".text").textContent = state.data.transcript.turns[Number(li.dataset.turn)].text;
  }
  const li = $(`turn-${turn}`);
  if (!li) return;
  li.classList.add("hl");
  const span = li.querySelector(".text");
  const text = span.textContent;
  const at = quote ? text.indexOf(quote) : -1;
  if (at >= 0) span.replaceChildren(text.slice(0, at), el("mark", {}, quote), text.slice(at + quote.length));
  li.scrollIntoView({ block: "center" });
  state.highlighted = turn;
}

const METRICS = [
  ["talk_share", "talk share", (v) => `${fmt(v * 100, 0)}%`, 1],
  ["words_per_minute", "words / min", (v) => fmt(v, 0), 250],
  ["fillers_per_minute", "fillers / min", (v) => fmt(v), 10],
  ["longest_pause_s", "longest pause", (v) => `${fmt(v)} s`, 10],
  ["response_latency_mean_s", "reply latency", (v) => `${fmt(v)} s`, 5],
  ["interruptions_by_trainee", "interruptions (you)", (v) => fmt(v, 0), 5],
  ["interruptions_by_avatar", "interruptions (avatar)", (v) => fmt(v, 0), 5],
  ["fillers", "fillers", (v) => fmt(v, 0), 20],
];

function showMetrics(r) {
  const box = $("metrics");
  box.replaceChildren();
  const m = r.scorecard?.metrics || {};
  for (const [key, label, show, scale] of METRICS) {
    if (!(key in m)) continue;
    const v = m[key];
    const chart = svg("svg", { viewBox: "0 0 100 6", preserveAspectRatio: "none", "aria-hidden": "true" });
    chart.append(svg("rect", { x: 0, y: 0, width: 100, height: 6, fill: "#eef1f5", rx: 3 }));
    if (v !== null) chart.append(svg("rect", { x: 0, y: 0, width: Math.min(100, (100 * v) / scale), height: 6, fill: "#1f6feb", rx: 3 }));
    box.append(el("div", { class: "metric", "data-metric": key }, label, el("b", {}, v === null ? "–" : show(v)), chart));
  }
  if (m.talk_share === null && m.words_per_minute === null) {
    box.append(el("p", { class: "muted wide" }, "Typed session: the timings of speech (talk share, pace) are missing."));
  }
  showTimeline(r);
}

function showTimeline(r) {
  const box = $("timeline");
  box.replaceChildren();
  const timed = r.transcript.turns.filter((t) => t.start_s !== null && t.end_s !== null);
  if (!timed.length) return;
  const start = Math.min(...timed.map((t) => t.start_s));
  const span = Math.max(Math.max(...timed.map((t) => t.end_s)) - start, 1);
  const end = start + span;
  const chart = svg("svg", { viewBox: "0 0 300 44", role: "img", "aria-label": "who spoke when" });
  chart.append(svg("text", { x: 0, y: 10, "font-size": 8, fill: "#667085" }, "avatar"),
    svg("text", { x: 0, y: 30, "font-size": 8, fill: "#667085" }, "trainee"),
    svg("text", { x: 40, y: 43, "font-size": 7, fill: "#667085" }, clock(start)),
    svg("text", { x: 300, y: 43, "font-size": 7, fill: "#667085", "text-anchor": "end" }, clock(end)));
  for (const t of timed) {
    const x = 40 + (258 * (t.start_s - start)) / span;
    const w = Math.max(2, (258 * (t.end_s - t.start_s)) / span);
    chart.append(svg("rect", { x, y: t.speaker === "avatar" ? 3 : 23, width: w, height: 10, rx: 2,
      fill: t.speaker === "avatar" ? "#98a2b3" : "#1f6feb" }));
  }
  box.append(chart);
}

function showTrend(r) {
  const box = $("trend");
  box.replaceChildren();
  const points = (r.trend || []).filter((p) => p.total !== null);
  if (points.length < 2) {
    box.append(el("p", { class: "muted" }, r.trainee ? "The first scored session of this trainee with this persona."
      : "Give a trainee id when creating sessions to see a trend."));
    return;
  }
  const W = 300, H = 90, step = (W - 40) / (points.length - 1);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "total score by session" });
  for (const y of [0, 50, 100]) {
    const py = H - 12 - (y * (H - 24)) / 100;
    chart.append(svg("line", { x1: 24, x2: W, y1: py, y2: py, stroke: "#d9dee7" }),
      svg("text", { x: 0, y: py + 3, "font-size": 8, fill: "#667085" }, String(y)));
  }
  const xy = points.map((p, i) => [30 + i * step, H - 12 - (p.total * (H - 24)) / 100]);
  chart.append(svg("polyline", { points: xy.map((p) => p.join(",")).join(" "), fill: "none", stroke: "#1f6feb", "stroke-width": 2 }));
  points.forEach((p, i) => {
    chart.append(svg("circle", { cx: xy[i][0], cy: xy[i][1], r: p.current ? 4.5 : 3, fill: p.current ? "#b54708" : "#1f6feb",
      "data-session": p.session_id }));
    chart.append(svg("text", { x: xy[i][0], y: xy[i][1] - 7, "font-size": 8, "text-anchor": "middle" }, fmt(p.total, 0)));
  });
  box.append(chart);
}

function render(r) {
  state.data = r;
  showSummary(r);
  showCriteria(r);
  showTranscript(r);
  showMetrics(r);
  showTrend(r);
}

async function saveOverride(ev) {
  ev.preventDefault();
  const status = $("ov-status");
  status.textContent = "saving…";
  try {
    const r = await api(`/api/sessions/${encodeURIComponent(sessionId)}/report/overrides`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ criterion: $("ov-criterion").value, score: Number($("ov-score").value),
        comment: $("ov-comment").value }),
    });
    render(r);
    status.textContent = "saved";
  } catch (err) {
    status.textContent = err.message;
  }
}

async function load() {
  $("override").addEventListener("submit", saveOverride);
  try {
    if (!sessionId) throw new Error("no session: open this page as /web/report.html?session=<session id>");
    render(await api(`/api/sessions/${encodeURIComponent(sessionId)}/report`));
  } catch (err) {
    state.error = err.message;
    const error = $("error");
    error.hidden = false;
    error.textContent = err.message;
  }
  state.loaded = true;
}

load();
