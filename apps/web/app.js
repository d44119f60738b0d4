/**
 * app.js: the live demo page served by `streamrt serve` at `/`.
 *
 * Camera -> canvas -> JPEG -> StreamrtClient (streamrt-client.js) with at most 2 frames in flight;
 * two modes: understand (commentary segments that settle, questions answered inline with their
 * stream time) and generate (a live prompt; text to video, or restyling the camera). A HUD shows the
 * server's stats and the measured end-to-end latency; the connection state, reconnects and errors
 * (camera denied, server full, wrong token) are shown on the page. Owns the page's DOM and the
 * camera; the protocol lives in streamrt-client.js.
 *
 * URL parameters: ?mode=understand|generate, ?token=..., ?fps=N (camera frames per second sent),
 * ?size=N (longer side of the JPEGs sent, default 320), ?server=ws://host:port/ws.
 * `window.streamrtDemo` exposes counters (sent, framesOut, texts) for tests and curious users.
 */

import { StreamrtClient } from "./streamrt-client.js";

const $ = (id) => document.getElementById(id);
const url = new URL(location.href);
const q = url.searchParams;
const SERVER = q.get("server") ?? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const SEND_FPS = { understand: 8, generate: 15 };
const MAX_SIDE = Number(q.get("size") ?? 320);

const demo = { sent: 0, framesOut: 0, texts: 0, answers: 0, client: null };
window.streamrtDemo = demo;

let mode = q.get("mode") ?? "understand";
let served = ["understand", "generate"];
let stream = null; // MediaStream
let facing = "user";
let client = null;
let encoding = false;
const e2e = []; // recent end-to-end latencies (ms)
const rows = new Map(); // segment key -> <li>
const questions = new Map(); // question id -> <li> of the question

// ---- banner and connection state -------------------------------------------------------------------
let bannerFrom = null; // "conn" or "camera": a connection that opens clears only its own notices

function banner(text, level = "error", from = "conn") {
  const b = $("banner");
  b.hidden = !text;
  b.textContent = text ?? "";
  b.className = `banner ${level === "warn" ? "warn" : ""}`;
  bannerFrom = text ? from : null;
}

function showState(state, reason) {
  const c = $("conn");
  c.dataset.state = state;
  const label = { connecting: "connecting…", open: "connected", reconnecting: "reconnecting", closed: "disconnected", failed: "refused" }[state];
  $("conn-text").textContent = reason ? `${label}: ${reason}` : label;
  if (state === "open" && bannerFrom === "conn") banner(null);
}

const ERRORS = {
  E_AUTH: "Wrong or missing token: enter the server's token in the token box (or open the page with ?token=…).",
  E_FULL: "The server is full (all sessions busy): retrying automatically.",
  E_CONNECT: "The server cannot be reached: retrying automatically.",
  E_MODE: "This server does not run that mode.",
};

// ---- camera ------------------------------------------------------------------------------------------
const needsCamera = () => mode === "understand" || $("restyle").checked;

async function startCamera() {
  if (stream) return true;
  if (!navigator.mediaDevices?.getUserMedia) {
    banner("No camera API here: browsers allow cameras only on https:// pages or on localhost.", "error", "camera");
    return false;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: facing, width: { ideal: 640 }, height: { ideal: 480 } },
      audio: false,
    });
  } catch (e) {
    const why = {
      NotAllowedError: "Camera access denied: allow the camera for this site (address bar / site settings), then press Start camera.",
      NotFoundError: "No camera found on this device.",
      NotReadableError: "The camera is in use by another application.",
      OverconstrainedError: "This camera cannot deliver the requested video.",
    }[e.name];
    banner(why ?? `Camera error: ${e.name}: ${e.message}`, "error", "camera");
    return false;
  }
  const v = $("cam");
  v.srcObject = stream;
  await v.play().catch(() => {});
  $("camera-btn").textContent = "Stop camera";
  return true;
}

function stopCamera() {
  stream?.getTracks().forEach((t) => t.stop());
  stream = null;
  $("cam").srcObject = null;
  $("camera-btn").textContent = "Start camera";
}

const grab = document.createElement("canvas");

/** One camera frame -> JPEG -> the server, unless the client has too many frames in flight. */
async function sendOne() {
  const v = $("cam");
  if (encoding || !client || !stream || !needsCamera() || v.readyState < 2 || !client.canSend()) return;
  encoding = true;
  try {
    const scale = Math.min(1, MAX_SIDE / Math.max(v.videoWidth, v.videoHeight));
    grab.width = Math.round(v.videoWidth * scale);
    grab.height = Math.round(v.videoHeight * scale);
    const captureUs = Math.round((performance.timeOrigin + performance.now()) * 1000);
    grab.getContext("2d").drawImage(v, 0, 0, grab.width, grab.height);
    const blob = await new Promise((res) => grab.toBlob(res, "image/jpeg", 0.8));
    if (blob && (await client.sendFrame(blob, { captureUs })) >= 0) demo.sent += 1;
  } finally {
    encoding = false;
  }
}

function captureLoop() {
  const fps = Number(q.get("fps") ?? SEND_FPS[mode]);
  sendOne();
  setTimeout(captureLoop, 1000 / fps);
}

// ---- session -----------------------------------------------------------------------------------------
function fmtTime(s) {
  return s == null ? "" : `${s.toFixed(1)} s`;
}

function sessionParams() {
  if (mode === "understand") return { max_tokens: 32, max_answer_tokens: 24 };
  return { prompt: $("prompt").value, input: $("restyle").checked ? "video" : "none" };
}

function connect() {
  client?.close();
  const token = $("token").value || null;
  const c = new StreamrtClient(SERVER, { mode, params: sessionParams(), token, maxInFlight: 2 });
  client = demo.client = c;
  const on = (type, fn) => c.addEventListener(type, (e) => c === client && fn(e.detail)); // ignore a replaced client
  on("state", (d) => showState(d.state, d.reason));
  on("error", ({ code, message }) => {
    banner(ERRORS[code] ? `${ERRORS[code]} (${code}: ${message})` : `${code}: ${message}`, code === "E_FULL" || code === "E_CONNECT" ? "warn" : "error");
    if (code === "E_AUTH") $("token").focus();
  });
  on("text", onText);
  on("frame", onFrame);
  on("stats", onStats);
  on("params_ack", (d) => {
    $("prompt-state").textContent = `prompt applied from frame ${d.applies_at_seq} (rev ${d.rev})`;
  });
  c.connect();
}

function onText(t) {
  demo.texts += 1;
  const key = `${client.session?.session_id}:${t.segment_id}`;
  let li = rows.get(key);
  if (!li) {
    li = document.createElement("li");
    li.innerHTML = '<span class="t"></span><span class="text"></span>';
    const qli = t.question_id ? questions.get(t.question_id) : null;
    if (qli) {
      li.classList.add("answer");
      qli.after(li);
    } else $("commentary").append(li);
    rows.set(key, li);
  }
  li.classList.toggle("pending", !t.final);
  li.querySelector(".t").textContent = fmtTime(t.stream_s);
  li.querySelector(".text").textContent = t.text || (t.final ? "(no answer)" : "…");
  if (t.final && t.question_id) demo.answers += 1;
  if (t.final && !t.text && !t.question_id) li.remove(); // an empty commentary says nothing
  const list = $("commentary");
  while (list.children.length > 200) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

async function onFrame(f) {
  demo.framesOut += 1;
  if (f.latency_ms != null) {
    e2e.push(f.latency_ms);
    if (e2e.length > 60) e2e.shift();
  }
  if (mode !== "generate") return;
  const bmp = await createImageBitmap(f.blob);
  const c = $("out");
  if (c.width !== bmp.width || c.height !== bmp.height) [c.width, c.height] = [bmp.width, bmp.height];
  c.getContext("2d").drawImage(bmp, 0, 0);
  bmp.close();
}

function onStats(s) {
  const drops = Object.entries(s.drops ?? {}).filter(([, n]) => n > 0);
  $("hud-fps-in").textContent = s.fps_in.toFixed(1);
  $("hud-fps-out").textContent = s.fps_out.toFixed(1);
  $("hud-p50").textContent = s.latency_ms.p50.toFixed(0);
  $("hud-p99").textContent = s.latency_ms.p99.toFixed(0);
  $("hud-miss").textContent = `${(100 * s.deadline_miss_rate).toFixed(1)}%`;
  $("hud-drops").textContent = String(drops.reduce((a, [, n]) => a + n, 0));
  $("hud-drops").title = drops.map(([k, n]) => `${k}: ${n}`).join("\n") || "no drops";
  $("hud-level").textContent = String(s.level);
  const sorted = [...e2e].sort((a, b) => a - b);
  $("hud-e2e").textContent = sorted.length ? sorted[Math.floor(sorted.length / 2)].toFixed(0) : "–";
}

// ---- modes and controls ------------------------------------------------------------------------------
async function setMode(m) {
  mode = m;
  for (const b of document.querySelectorAll(".modes button")) b.setAttribute("aria-selected", String(b.dataset.mode === m));
  $("panel-understand").hidden = m !== "understand";
  $("panel-generate").hidden = m !== "generate";
  $("out").hidden = m !== "generate";
  $("cam").hidden = m === "generate" && !$("restyle").checked;
  $("cam").parentElement.classList.toggle("pip", m === "generate"); // the camera as a small inset while restyling
  $("prompt-state").textContent = "";
  q.set("mode", m);
  history.replaceState(null, "", url);
  if (needsCamera()) await startCamera();
  connect();
}

function wire() {
  for (const b of document.querySelectorAll(".modes button")) b.addEventListener("click", () => b.dataset.mode !== mode && setMode(b.dataset.mode));
  $("camera-btn").addEventListener("click", async () => (stream ? stopCamera() : startCamera().then((ok) => ok && bannerFrom === "camera" && banner(null))));
  $("flip-btn").addEventListener("click", async () => {
    facing = facing === "user" ? "environment" : "user";
    stopCamera();
    await startCamera();
  });
  $("ask-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("question").value.trim();
    if (!text || !client) return;
    const id = client.ask(text);
    if (!id) return banner("Not connected: the question was not sent.", "warn");
    const li = document.createElement("li");
    li.className = "question";
    li.innerHTML = '<span class="t"></span><span class="text"></span>';
    li.querySelector(".t").textContent = fmtTime(client.streamTime(client.seq - 1));
    li.querySelector(".text").textContent = `Q: ${text}`;
    $("commentary").append(li);
    questions.set(id, li);
    $("question").value = "";
  });
  $("prompt-form").addEventListener("submit", (e) => {
    e.preventDefault();
    client?.setParams({ prompt: $("prompt").value });
    $("prompt-state").textContent = "prompt sent…";
  });
  $("restyle").addEventListener("change", () => setMode("generate"));
  $("token").addEventListener("change", () => {
    localStorage.setItem("streamrt-token", $("token").value);
    connect();
  });
}

async function main() {
  $("token").value = q.get("token") ?? localStorage.getItem("streamrt-token") ?? "";
  try {
    const h = await (await fetch("/healthz", { cache: "no-store" })).json();
    served = h.modes;
  } catch {
    /* the page may come from elsewhere (?server=): keep both modes */
  }
  for (const b of document.querySelectorAll(".modes button")) {
    b.disabled = !served.includes(b.dataset.mode);
    if (b.disabled) b.title = "this server does not run this mode (streamrt serve --modes ...)";
  }
  if (!served.includes(mode)) mode = served[0];
  wire();
  captureLoop();
  await setMode(mode);
}

main();
