// Fay web client: plain ES module, no build step. Served by `fay run` at / (this file at /web/app.js).
//
// Flow: GET /api/personas -> pick one -> GET /api/webrtc/config -> RTCPeerConnection with a data channel "fay",
// the microphone (echo cancellation + noise suppression) and a video slot (receive-only; for personas whose
// camera.enabled (GET /api/personas), it sends the camera too) -> POST /api/webrtc/offer
// {sdp, type: "offer", persona} -> {sdp, type: "answer", session_id}. The data-channel protocol is documented in
// fay_core/transport/protocol.py; JSON text messages both ways, binary messages are avatar frames. Event messages
// use the names of fay_core/wire.py, the same as the HTTP API's server-sent events.
//
// Avatar viewers. When the "ready" message names a renderer ({name, kind, viewer, options, model}), the client
// imports `renderer.viewer` (by default /web/avatars/<name>.js) and calls its exported
//
//     mount(container, ctx) -> undefined | {unmount?(): void} | Promise of either
//
//   container  the <div id="avatar"> element (the viewer owns its content; the "AI-generated" label stays on top)
//   ctx = {
//     onBinary(cb)   register cb(data: ArrayBuffer) for every binary data-channel message (avatar frames, sent
//                    unchanged from the server's avatar stream); returns a function that unregisters cb
//     videoStream    MediaStream of the server's video track (video renderers), or null; it also holds the
//                    answer audio track (one stream id), so the browser keeps them in sync
//     audioElement   the <audio> element playing the answer audio (for lip-sync against audio time)
//     peerConnection the RTCPeerConnection (for getStats(): audio playout delay, jitter buffer)
//     persona        {id, name, language, greeting, avatar: {renderer, model, options}}
//     options        renderer options: the renderer's defaults merged with persona.avatar.options, plus
//                    {model: persona.avatar.model, kind: "data" | "video"}
//   }
//
// unmount() is called on disconnect. A viewer that fails to load is reported and the conversation goes on.
//
// For tests and embedding, window.fay exposes the live state: {connected, sessionId, state, messages (every JSON
// message received), remoteLevel, maxRemoteLevel, rttMs, micTrack, pc (the RTCPeerConnection or null),
// firstAudioAt (performance.now() when answer audio was first heard), firstWordAt (the first "word" message),
// recording (the last {enabled, consented, active} the server confirmed), scenario (a role-play's last
// scenario_step or scenario_end message, with "ended": true after the end)}.
//
// Role-play: "scenario_step" messages show the step (n of total), its aim and the elapsed time (ticking here from
// the message's elapsed_s); "scenario_end" stops the clock and links the report page (/web/report.html?session=).
//
// Camera: only for a persona with camera.enabled, and only after the page shows camera.notice (what the camera is
// used for: noticing a visitor and looking at them; nothing stored) in #camera-notice; refused or unavailable, the
// conversation goes on without it. "presence" messages ({present: true | false}) say when a visitor arrived or
// left. window.fay.camera = {asked, granted, error, notice}; window.fay.presence = every presence message.
//
// Trust: the "ready" message's disclosure (that an AI serves the customer) is the first bubble, before the
// greeting (the server speaks it before the first answer). If ready.recording.enabled, the recording notice is
// shown with Accept / Decline; the answer goes back as {"type": "consent", "recording": true | false}, and an
// accepted recording can be stopped from the same notice.

const $ = (id) => document.getElementById(id);
const els = {
  persona: $("persona"), connect: $("connect"), disconnect: $("disconnect"), micOn: $("mic-on"),
  connDot: $("conn-dot"), connText: $("conn-text"), latency: $("latency"), state: $("state"),
  micLevel: $("mic-level"), remoteLevel: $("remote-level"), notice: $("notice"), tokenRow: $("token-row"),
  token: $("token"), audio: $("remote-audio"), transcript: $("transcript"), live: $("live"), form: $("ask"),
  text: $("text"), send: $("send"), avatar: $("avatar"), placeholder: $("avatar-placeholder"),
  scenario: $("scenario"), scenarioStep: $("scenario-step"), scenarioAim: $("scenario-aim"),
  scenarioTime: $("scenario-time"), scenarioReport: $("scenario-report"), scenarioLabel: $("scenario-label"),
  cameraNotice: $("camera-notice"),
};

const fay = (window.fay = {
  connected: false, sessionId: null, state: "idle", messages: [], remoteLevel: 0, maxRemoteLevel: 0, rttMs: null,
  micTrack: null, pc: null, firstAudioAt: null, firstWordAt: null, recording: null, scenario: null,
  camera: { asked: false, granted: false, error: null, notice: "" }, presence: [],
});

let pc = null;
let channel = null;
let timers = [];
let binaryListeners = new Set();
let viewer = null;
let videoStream = null;
let micStream = null;
let camStream = null;
let turns = new Map(); // turn id -> {el, text}
let lastAnswerMs = null;
let askedAt = null; // when the current question reached the server (user_text), for the latency indicator
let voice = false;

// --- small helpers ------------------------------------------------------------------------------------------

function headers(extra = {}) {
  const token = els.token.value || sessionStorage.getItem("fay-token") || "";
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function api(path, options = {}) {
  const resp = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON */ }
  if (resp.status === 401) {
    els.tokenRow.hidden = false;
    throw new Error(body?.error || "this server needs an access token");
  }
  if (!resp.ok) throw new Error(body?.error || `${resp.status} ${resp.statusText}`);
  if (els.token.value) sessionStorage.setItem("fay-token", els.token.value);
  return body;
}

function notice(text) {
  els.notice.textContent = text || "";
  els.notice.hidden = !text;
}

function setConn(kind, text) {
  els.connDot.className = `dot ${kind}`;
  els.connText.textContent = text;
}

function setState(state) {
  fay.state = state;
  els.state.textContent = state;
}

function showLatency() {
  const parts = [];
  if (fay.rttMs !== null) parts.push(`RTT ${fay.rttMs.toFixed(0)} ms`);
  if (lastAnswerMs !== null) parts.push(`answer ${lastAnswerMs.toFixed(0)} ms`);
  els.latency.textContent = parts.join(" · ");
}

function bubble(kind, who, text) {
  const el = document.createElement("div");
  el.className = `msg ${kind}`;
  if (who) {
    const w = document.createElement("span");
    w.className = "who";
    w.textContent = who;
    el.append(w);
  }
  const t = document.createElement("span");
  t.className = "text";
  t.textContent = text;
  el.append(t);
  els.transcript.append(el);
  els.transcript.scrollTop = els.transcript.scrollHeight;
  return el;
}

function botTurn(turn) {
  let entry = turns.get(turn);
  if (!entry) {
    entry = { el: bubble("bot", currentPersona?.name || "Fay", ""), text: "" };
    entry.el.dataset.turn = String(turn);
    turns.set(turn, entry);
  }
  return entry;
}

// --- personas -------------------------------------------------------------------------------------------------

let personas = [];
let currentPersona = null;

async function loadPersonas() {
  try {
    personas = await api("/api/personas");
  } catch (err) {
    notice(`cannot list personas: ${err.message}`);
    return;
  }
  els.persona.replaceChildren();
  for (const p of personas) {
    if (p.error) continue;
    const opt = document.createElement("option");
    opt.value = p.id;
    opt.textContent = `${p.name} (${p.language})`;
    if (p.default) opt.selected = true;
    els.persona.append(opt);
  }
  const wanted = new URLSearchParams(location.search).get("persona");
  if (wanted) els.persona.value = wanted;
  els.connect.disabled = els.persona.options.length === 0;
}

// --- connecting -----------------------------------------------------------------------------------------------

async function getMicrophone() {
  if (!els.micOn.checked) return null;
  if (!navigator.mediaDevices?.getUserMedia) {
    notice("No microphone access here: browsers allow it only over HTTPS or on localhost. Type instead.");
    return null;
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
  } catch (err) {
    notice(`Microphone unavailable (${err.name}: ${err.message}). Type instead.`);
    return null;
  }
}

// The camera, for personas that use it: the notice first (what it is for), then the browser's own prompt.
async function getCamera(camera) {
  fay.camera = { asked: false, granted: false, error: null, notice: "" };
  els.cameraNotice.hidden = true;
  if (!camera?.enabled) return null;
  fay.camera.notice = camera.notice;
  els.cameraNotice.textContent = camera.notice;
  els.cameraNotice.hidden = false;
  if (!navigator.mediaDevices?.getUserMedia) {
    fay.camera.error = "no camera access on this page";
    return null;
  }
  fay.camera.asked = true;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15, max: 30 } },
    });
    fay.camera.granted = true;
    return stream;
  } catch (err) {
    fay.camera.error = `${err.name}: ${err.message}`;
    els.cameraNotice.textContent = `${camera.notice} (Camera not used: ${err.name}.)`;
    return null;
  }
}

function waitForIce(conn, ms) {
  if (conn.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { conn.removeEventListener("icegatheringstatechange", check); resolve(); };
    const check = () => { if (conn.iceGatheringState === "complete") done(); };
    conn.addEventListener("icegatheringstatechange", check);
    setTimeout(done, ms);
  });
}

async function connect() {
  notice("");
  els.connect.disabled = true;
  setConn("wait", "connecting…");
  try {
    const config = await api("/api/webrtc/config");
    pc = fay.pc = new RTCPeerConnection({ iceServers: config.iceServers, iceTransportPolicy: config.iceTransportPolicy });
    fay.maxMessageBytes = config.maxMessageBytes;
    channel = pc.createDataChannel("fay");
    channel.binaryType = "arraybuffer";
    channel.onopen = () => { fay.connected = true; };
    channel.onmessage = (ev) => onMessage(ev.data);
    channel.onclose = () => disconnect("the server closed the conversation");

    micStream = await getMicrophone();
    if (micStream) {
      fay.micTrack = micStream.getAudioTracks()[0];
      pc.addTrack(fay.micTrack, micStream);
      meterFor(micStream, els.micLevel);
    } else {
      pc.addTransceiver("audio", { direction: "recvonly" });
    }
    // one video slot: the avatar's video comes in on it, the camera (if any) goes out on it (aiortc mis-bundles a
    // second video transceiver)
    camStream = await getCamera(personas.find((p) => p.id === els.persona.value)?.camera);
    if (camStream) {
      const cam = pc.addTransceiver(camStream.getVideoTracks()[0], { direction: "sendrecv", streams: [camStream] });
      // the server looks at a few frames a second: under load keep the resolution (faces stay detectable) and let
      // the frame rate drop, rather than Chromium's default of shrinking the picture
      const params = cam.sender.getParameters();
      params.degradationPreference = "maintain-resolution";
      await cam.sender.setParameters(params).catch(() => {});
    }
    else pc.addTransceiver("video", { direction: "recvonly" });
    pc.ontrack = onTrack;
    pc.onconnectionstatechange = () => {
      const s = pc?.connectionState;
      if (s === "connected") setConn("on", "connected");
      else if (s === "failed") disconnect("connection failed (check the firewall, UDP ports or TURN settings)");
      else if (s === "disconnected") setConn("wait", "reconnecting…");
    };

    await pc.setLocalDescription(await pc.createOffer());
    await waitForIce(pc, 2000);
    const answer = await api("/api/webrtc/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", persona: els.persona.value }),
    });
    fay.sessionId = answer.session_id;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    els.disconnect.disabled = false;
    els.persona.disabled = true;
    timers.push(setInterval(ping, 2000), setInterval(pollStats, 200));
  } catch (err) {
    notice(`Could not connect: ${err.message}`);
    await disconnect();
  }
}

function onTrack(ev) {
  if (ev.track.kind === "audio") {
    els.audio.srcObject = ev.streams[0] || new MediaStream([ev.track]);
    els.audio.play().catch(() => notice("Click anywhere to allow the answer audio to play."));
  } else if (ev.track.kind === "video") {
    videoStream = ev.streams[0] || new MediaStream([ev.track]);
  }
}

async function disconnect(reason) {
  for (const t of timers) clearInterval(t);
  timers = [];
  clearInterval(scenarioClock);
  if (channel && channel.readyState === "open") {
    try { channel.send(JSON.stringify({ type: "bye" })); } catch { /* closing anyway */ }
  }
  if (channel) channel.onclose = null;
  channel = null;
  if (pc) pc.close();
  pc = fay.pc = null;
  if (micStream) micStream.getTracks().forEach((t) => t.stop());
  micStream = null;
  if (camStream) camStream.getTracks().forEach((t) => t.stop());
  camStream = null;
  els.cameraNotice.hidden = true;
  fay.micTrack = null;
  if (viewer?.unmount) { try { viewer.unmount(); } catch (err) { console.error(err); } }
  viewer = null;
  binaryListeners = new Set();
  videoStream = null;
  fay.connected = false;
  setConn("off", reason ? `disconnected: ${reason}` : "not connected");
  setState("idle");
  els.connect.disabled = els.persona.options.length === 0;
  els.disconnect.disabled = true;
  els.persona.disabled = false;
  els.text.disabled = els.send.disabled = true;
  els.placeholder.hidden = false;
}

function ping() {
  if (channel?.readyState === "open") channel.send(JSON.stringify({ type: "ping", t: performance.now() }));
}

// answer audio level from the receiver's stats (works whether or not the page may play audio)
async function pollStats() {
  if (!pc) return;
  const stats = await pc.getStats();
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio" && typeof s.audioLevel === "number") {
      fay.remoteLevel = s.audioLevel;
      fay.maxRemoteLevel = Math.max(fay.maxRemoteLevel, s.audioLevel);
      if (s.audioLevel > 0.01 && fay.firstAudioAt === null) fay.firstAudioAt = performance.now();
      els.remoteLevel.value = s.audioLevel;
    }
  });
}

function meterFor(stream, meter) {
  try {
    const ctx = new AudioContext();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 512;
    ctx.createMediaStreamSource(stream).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    const tick = () => {
      if (!micStream) { ctx.close(); return; }
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      meter.value = Math.min(1, Math.sqrt(sum / buf.length) * 4);
      requestAnimationFrame(tick);
    };
    tick();
  } catch (err) {
    console.warn("no microphone meter:", err);
  }
}

// --- messages from the server ---------------------------------------------------------------------------------

function onMessage(data) {
  if (typeof data !== "string") {
    for (const cb of binaryListeners) {
      try { cb(data); } catch (err) { console.error("avatar viewer failed on a frame:", err); }
    }
    return;
  }
  let msg;
  try { msg = JSON.parse(data); } catch { return; }
  fay.messages.push(msg);
  switch (msg.type) {
    case "ready": return onReady(msg);
    case "state":
      if (msg.state === "speaking" && askedAt !== null) {
        lastAnswerMs = performance.now() - askedAt; // question heard -> answer audio starts
        askedAt = null;
        showLatency();
      }
      return setState(msg.state);
    case "transcript":
      els.live.textContent = msg.final ? "" : msg.text;
      if (msg.final && msg.text) els.live.dataset.last = msg.text;
      return;
    case "presence":
      fay.presence.push(msg);
      return;
    case "user_text":
      if (!msg.text) return; // the avatar speaks unprompted (a greeting when a visitor arrives)
      els.live.textContent = "";
      if (askedAt === null) askedAt = performance.now();
      bubble("user", "You", msg.text).dataset.turn = String(msg.turn);
      return;
    case "delta": {
      if (!voice && askedAt !== null) {
        lastAnswerMs = performance.now() - askedAt; // question sent -> first answer text
        askedAt = null;
        showLatency();
      }
      const t = botTurn(msg.turn);
      t.text += msg.text;
      t.el.querySelector(".text").textContent = displayText(t.text);
      return;
    }
    case "answer": return onAnswer(msg);
    case "interrupted": {
      const t = turns.get(msg.turn);
      if (t) t.el.classList.add("interrupted");
      return;
    }
    case "latency":
      return; // per-stage marks: kept in window.fay.messages for diagnostics
    case "pong":
      fay.rttMs = performance.now() - msg.t;
      return showLatency();
    case "error":
      bubble("error", null, `${msg.source}: ${msg.message}`);
      return;
    case "word":
      if (fay.firstWordAt === null) fay.firstWordAt = performance.now();
      return;
    case "consent":
      fay.recording = msg.recording;
      return showConsent();
    case "tool_called":
    case "tool_returned":
      return; // nothing to show yet
    case "tool":
      return; // deprecated copy of "tool_called" (sent until 0.3): read "tool_called"
    case "scenario_step":
    case "scenario_end":
      return showScenario(msg);
    default:
      return;
  }
}

// emotion tags such as "[happy]" drive the avatar's expression (fay_core/avatar/emotion.py); never show them
const EMOTION_TAG = /\[(happy|sad|surprised|angry|thinking|concerned|neutral)\]\s?/gi;
function displayText(text) {
  return text.replace(EMOTION_TAG, "");
}

function onAnswer(msg) {
  const t = botTurn(msg.turn);
  t.text = msg.text;
  t.el.querySelector(".text").textContent = displayText(msg.text);
  t.el.classList.toggle("interrupted", msg.interrupted);
  t.el.querySelector(".sources")?.remove();
  if (msg.citations.length) {
    const ol = document.createElement("ol");
    ol.className = "sources";
    for (const c of msg.citations) {
      const li = document.createElement("li");
      li.value = c.index;
      li.textContent = [c.title, c.section].filter(Boolean).join(" — ") + ` (${c.source}${c.page ? `, p. ${c.page}` : ""})`;
      ol.append(li);
    }
    t.el.append(ol);
  }
}

async function onReady(msg) {
  fay.sessionId = msg.session_id;
  currentPersona = msg.persona;
  voice = msg.voice;
  setConn("on", `connected to ${msg.persona.name}${msg.voice ? "" : " (text only)"}`);
  setState("listening");
  els.text.disabled = els.send.disabled = false;
  if (msg.disclosure) bubble("bot disclosure", msg.persona.name, msg.disclosure);
  const greetsLater = msg.camera && personas.find((p) => p.id === msg.persona.id)?.camera?.greet_on_arrival;
  if (msg.persona.greeting && !greetsLater) bubble("bot", msg.persona.name, msg.persona.greeting); // else on arrival
  if (msg.recording?.enabled) askConsent(msg.recording.notice);
  if (msg.renderer && msg.renderer.kind !== "none") await mountViewer(msg);
  else if (msg.renderer?.error) bubble("error", null, `avatar: ${msg.renderer.error}`);
}

// --- role-play scenarios -------------------------------------------------------------------------------------

let scenarioClock = null;
function showScenario(msg) {
  const ended = msg.type === "scenario_end";
  fay.scenario = { ...(fay.scenario || {}), ...msg, ended };
  els.scenario.hidden = false;
  if (!ended) {
    els.scenarioLabel.textContent = "Step";
    els.scenarioStep.textContent = `${msg.index + 1} of ${msg.total}`;
    els.scenarioAim.textContent = msg.aim;
  } else {
    els.scenarioLabel.textContent = "Scenario";
    els.scenarioStep.textContent = "ended";
    els.scenarioAim.textContent = msg.reason === "time_limit" ? "time is up" : "scenario complete";
    els.scenarioReport.href = `/web/report.html?session=${encodeURIComponent(fay.sessionId || "")}`;
    els.scenarioReport.hidden = false;
  }
  const since = performance.now() - msg.elapsed_s * 1000;
  const limit = fay.scenario.time_limit_s;
  const tick = () => {
    const s = Math.floor((performance.now() - since) / 1000);
    const text = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
    els.scenarioTime.textContent = limit ? `${text} / ${Math.floor(limit / 60)}:${String(Math.round(limit % 60)).padStart(2, "0")}` : text;
  };
  clearInterval(scenarioClock);
  tick();
  if (!ended) scenarioClock = setInterval(tick, 1000);
}

// --- consent to record ----------------------------------------------------------------------------------------

let consentEl = null;

function askConsent(notice) {
  consentEl = bubble("system consent", null, notice);
  const buttons = document.createElement("span");
  buttons.className = "buttons";
  for (const [label, value] of [["Accept", true], ["Decline", false]]) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.dataset.consent = String(value);
    b.addEventListener("click", () => sendConsent(value));
    buttons.append(b);
  }
  consentEl.append(buttons);
}

function sendConsent(value) {
  if (channel?.readyState === "open") channel.send(JSON.stringify({ type: "consent", recording: value }));
}

function showConsent() {
  if (!consentEl) return;
  const r = fay.recording;
  consentEl.dataset.state = r.active ? "recording" : "declined";
  const buttons = consentEl.querySelector(".buttons");
  buttons.replaceChildren();
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = r.active ? "Stop recording" : "Allow recording";
  b.dataset.consent = String(!r.active);
  b.addEventListener("click", () => sendConsent(!r.active));
  const s = document.createElement("span");
  s.className = "status";
  s.textContent = r.active ? "Recording (you agreed)." : "Not recorded.";
  buttons.append(s, b);
}

async function mountViewer(msg) {
  const r = msg.renderer;
  const ctx = {
    onBinary(cb) { binaryListeners.add(cb); return () => binaryListeners.delete(cb); },
    videoStream,
    audioElement: els.audio,
    peerConnection: pc,
    persona: msg.persona,
    options: { ...r.options, model: r.model ?? msg.persona.avatar?.model ?? null, kind: r.kind },
  };
  try {
    const mod = await import(r.viewer || `/web/avatars/${r.name}.js`);
    els.placeholder.hidden = true;
    viewer = (await mod.mount(els.avatar, ctx)) || null;
  } catch (err) {
    els.placeholder.hidden = false;
    bubble("error", null, `avatar viewer ${r.name} failed to load: ${err.message}`);
  }
}

// --- typing ---------------------------------------------------------------------------------------------------

els.form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = els.text.value.trim();
  if (!text || channel?.readyState !== "open") return;
  if (fay.maxMessageBytes && new TextEncoder().encode(text).length > fay.maxMessageBytes - 64) {
    notice("That message is too long.");
    return;
  }
  askedAt = performance.now();
  channel.send(JSON.stringify({ type: "text", text }));
  els.text.value = "";
});

els.connect.addEventListener("click", connect);
els.disconnect.addEventListener("click", () => disconnect());
els.token.addEventListener("change", loadPersonas);
document.addEventListener("click", () => { if (els.audio.srcObject && els.audio.paused) els.audio.play().catch(() => {}); });
window.addEventListener("pagehide", () => { if (pc) disconnect(); });

els.token.value = sessionStorage.getItem("fay-token") || "";
loadPersonas();
