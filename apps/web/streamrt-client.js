/**
 * streamrt-client.js: a minimal browser client of the streamrt wire protocol v1 (docs/protocol.md).
 *
 * Plain ES module, no dependencies, no build step. It owns one WebSocket session at a time: the
 * hello/ready handshake, the 32-byte binary frame header, flow control (at most `maxInFlight` input
 * frames unanswered), automatic reconnect with backoff and jitter, and keep-alive pings. It does not
 * know cameras, canvases or the page: it takes encoded images (Blob / ArrayBuffer) and emits events.
 *
 * Usage:
 *
 *   import { StreamrtClient } from "./streamrt-client.js";
 *   const c = new StreamrtClient("ws://127.0.0.1:8765/ws", { mode: "understand", params: { max_tokens: 24 } });
 *   c.addEventListener("text", (e) => console.log(e.detail.segment_id, e.detail.text, e.detail.final));
 *   c.addEventListener("frame", async (e) => ctx.drawImage(await createImageBitmap(e.detail.blob), 0, 0));
 *   c.addEventListener("state", (e) => console.log("state", e.detail.state, e.detail.reason));
 *   c.connect();
 *   if (c.canSend()) await c.sendFrame(jpegBlob);     // a JPEG from canvas.toBlob(..., "image/jpeg")
 *   c.ask("what colour is the square?");              // understand mode
 *   c.setParams({ prompt: "a blue circle" });         // generate mode: switches the prompt live
 *
 * Events (CustomEvent, payload in `detail`):
 *   state      {state, reason}   state: "connecting" | "open" | "reconnecting" | "closed" | "failed"
 *   ready      the server's ready message {session_id, mode, limits}
 *   text       {segment_id, ref_seq, text, final, question_id, stream_s}   (stream_s: stream time of
 *              the input frame ref_seq, seconds since this session's first frame; null if unknown)
 *   frame      {header, blob, latency_ms}   an output frame (latency: now - capture time, when the
 *              frame answers one of our inputs)
 *   stats      the server's stats message
 *   params_ack {rev, applies_at_seq}
 *   error      {code, message, fatal}   a server error, or a client-side one (E_FULL before the
 *              upgrade is detected through /healthz; E_CONNECT when the server cannot be reached)
 *   end        {reason}
 *
 * Flow control: a frame is "in flight" from `sendFrame` until an output answers it (ref_seq >= seq),
 * or, in modes without one output per input (understand), until the socket has handed it to the
 * network, or at the latest after the session's budget (the server drops frames past their
 * deadline). `canSend()` is false while `maxInFlight` frames are in flight: the caller skips the
 * camera frame instead of queueing it.
 */

export const SUBPROTOCOL = "streamrt.v1";
export const HEADER_SIZE = 32;
export const MAGIC = [0x53, 0x52, 0x54, 0x31]; // "SRT1"
export const KIND_INPUT = 1;
export const KIND_OUTPUT = 2;
export const CODECS = { 1: "jpeg", 2: "webp", 3: "png", 4: "raw" };
export const CODEC_IDS = { jpeg: 1, webp: 2, png: 3, raw: 4 };
export const FLAG_REPEATED = 1;
export const FLAG_DEGRADED = 2;
const MIME = { jpeg: "image/jpeg", webp: "image/webp", png: "image/png" };
/** Errors after which reconnecting cannot help (the user must change something). */
const FATAL = new Set(["E_AUTH", "E_MODE", "E_PARAM"]);

/**
 * Build a binary message: the 32-byte little-endian header (`<4sBBBBIHHqq`) followed by the payload.
 * @param {{kind?: number, codec?: string, flags?: number, seq: number, width?: number, height?: number,
 *          captureUs: number, refSeq?: number}} h
 * @param {ArrayBuffer|Uint8Array} payload
 * @returns {ArrayBuffer}
 */
export function encodeFrame(h, payload) {
  const body = payload instanceof Uint8Array ? payload : new Uint8Array(payload);
  const buf = new ArrayBuffer(HEADER_SIZE + body.byteLength);
  const v = new DataView(buf);
  MAGIC.forEach((b, i) => v.setUint8(i, b));
  v.setUint8(4, 1);
  v.setUint8(5, h.kind ?? KIND_INPUT);
  v.setUint8(6, CODEC_IDS[h.codec ?? "jpeg"]);
  v.setUint8(7, h.flags ?? 0);
  v.setUint32(8, h.seq >>> 0, true);
  v.setUint16(12, h.width ?? 0, true);
  v.setUint16(14, h.height ?? 0, true);
  v.setBigInt64(16, BigInt(Math.round(h.captureUs)), true);
  v.setBigInt64(24, BigInt(h.refSeq ?? -1), true);
  new Uint8Array(buf, HEADER_SIZE).set(body);
  return buf;
}

/**
 * Parse a binary message into {header, payload}; throws Error on a malformed header.
 * @param {ArrayBuffer} buf
 */
export function decodeFrame(buf) {
  if (buf.byteLength < HEADER_SIZE) throw new Error(`binary frame of ${buf.byteLength} bytes < header`);
  const v = new DataView(buf);
  for (let i = 0; i < 4; i++) if (v.getUint8(i) !== MAGIC[i]) throw new Error("bad magic");
  if (v.getUint8(4) !== 1) throw new Error(`protocol version ${v.getUint8(4)} not supported`);
  const codec = CODECS[v.getUint8(6)];
  if (!codec) throw new Error(`unknown codec ${v.getUint8(6)}`);
  const header = {
    kind: v.getUint8(5),
    codec,
    flags: v.getUint8(7),
    seq: v.getUint32(8, true),
    width: v.getUint16(12, true),
    height: v.getUint16(14, true),
    captureUs: Number(v.getBigInt64(16, true)),
    refSeq: Number(v.getBigInt64(24, true)),
  };
  return { header, payload: new Uint8Array(buf, HEADER_SIZE) };
}

/** Wall clock in microseconds (the capture time we stamp on input frames). */
export function nowUs() {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/** A bounded seq -> value map (oldest entries evicted): capture times of recently sent frames. */
class Recent {
  constructor(limit) {
    this.limit = limit;
    this.map = new Map();
  }
  set(k, v) {
    this.map.set(k, v);
    if (this.map.size > this.limit) this.map.delete(this.map.keys().next().value);
  }
  get(k) {
    return this.map.get(k);
  }
  clear() {
    this.map.clear();
  }
}

export class StreamrtClient extends EventTarget {
  /**
   * @param {string} url  ws:// or wss:// URL of the server's /ws endpoint
   * @param {{mode: string, params?: object, token?: string|null, maxInFlight?: number,
   *          reconnect?: boolean, maxBackoffMs?: number, healthUrl?: string|null}} opts
   *   healthUrl: the server's /healthz (default: derived from url) used to tell "server full" apart
   *   from "unreachable" when the upgrade fails (browsers hide the HTTP status of a failed upgrade).
   */
  constructor(url, opts) {
    super();
    this.url = url;
    this.mode = opts.mode;
    this.params = { ...(opts.params ?? {}) };
    this.token = opts.token ?? null;
    this.maxInFlight = opts.maxInFlight ?? 2;
    this.reconnect = opts.reconnect ?? true;
    this.maxBackoffMs = opts.maxBackoffMs ?? 10000;
    this.healthUrl = opts.healthUrl ?? url.replace(/^ws/, "http").replace(/\/ws$|\/$/, "") + "/healthz";
    this.state = "closed";
    this.ws = null;
    this.session = null;
    this.seq = 0;
    this.rev = 0;
    this.qid = 0;
    this.firstCaptureUs = null;
    this.captures = new Recent(512);
    this.inFlight = new Map(); // seq -> time sent (performance.now())
    this.attempt = 0;
    this.stopped = true;
    this.timer = null;
    this.pinger = null;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state, reason = "") {
    this.state = state;
    this._emit("state", { state, reason });
  }

  /** Open the session (and keep it open, reconnecting, until close()). */
  connect() {
    this.stopped = false;
    this._open();
  }

  _open() {
    clearTimeout(this.timer);
    this._setState(this.attempt ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new WebSocket(this.url, SUBPROTOCOL);
    } catch (e) {
      this._fail("E_CONNECT", `cannot open ${this.url}: ${e.message}`, true);
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let opened = false;
    let fatal = false;
    ws.onopen = () => {
      opened = true;
      const hello = { type: "hello", mode: this.mode, params: this.params };
      if (this.token) hello.token = this.token;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        const msg = JSON.parse(ev.data);
        if (msg.type === "error" && FATAL.has(msg.code)) fatal = true;
        this._control(msg);
      } else this._binary(ev.data);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.session = null;
      this.inFlight.clear();
      clearInterval(this.pinger);
      if (this.stopped) return this._setState("closed", "closed by the page");
      if (fatal || ev.code === 1008) return this._setState("failed", ev.reason || "refused");
      if (!opened) this._diagnose();
      else this._retry(ev.code === 1013 ? "server full" : `connection closed (${ev.code})`);
    };
  }

  /** The upgrade failed: the server is full (503), down, or refused the origin. Ask /healthz. */
  async _diagnose() {
    let why = "server unreachable";
    try {
      const r = await fetch(this.healthUrl, { cache: "no-store" });
      const h = await r.json();
      if (h.status !== "ok") why = `server ${h.status}`;
      else if (h.sessions >= h.max_sessions) {
        why = "server full";
        this._emit("error", { code: "E_FULL", message: `server at capacity (${h.sessions}/${h.max_sessions} sessions)`, fatal: false });
      } else why = "connection refused (origin not allowed?)";
    } catch {
      this._emit("error", { code: "E_CONNECT", message: `cannot reach ${this.healthUrl}`, fatal: false });
    }
    if (!this.stopped) this._retry(why);
  }

  _retry(reason) {
    if (!this.reconnect || this.stopped) return this._setState("closed", reason);
    this.attempt += 1;
    const base = Math.min(this.maxBackoffMs, 500 * 2 ** Math.min(this.attempt - 1, 6));
    const delay = base / 2 + Math.random() * (base / 2);
    this._setState("reconnecting", `${reason}; retry in ${(delay / 1000).toFixed(1)} s`);
    this.timer = setTimeout(() => this._open(), delay);
  }

  _fail(code, message, retry) {
    this._emit("error", { code, message, fatal: !retry });
    if (retry) this._retry(message);
    else this._setState("failed", message);
  }

  _control(msg) {
    switch (msg.type) {
      case "ready": {
        this.session = msg;
        this.attempt = 0;
        this.firstCaptureUs = null;
        this.captures.clear();
        this._setState("open", `session ${msg.session_id.slice(0, 6)}…`);
        const every = Math.max(1, (msg.limits?.idle_timeout_s ?? 120) / 3) * 1000;
        this.pinger = setInterval(() => this._sendJson({ type: "ping" }), every);
        this._emit("ready", msg);
        break;
      }
      case "text": {
        const cap = this.captures.get(msg.ref_seq);
        const stream_s = cap != null && this.firstCaptureUs != null ? (cap - this.firstCaptureUs) / 1e6 : null;
        this._emit("text", { ...msg, stream_s });
        break;
      }
      case "error":
        this._emit("error", { code: msg.code, message: msg.message, fatal: FATAL.has(msg.code) });
        break;
      case "stats":
      case "params_ack":
      case "end":
      case "pong":
        this._emit(msg.type, msg);
        break;
      default:
        break; // unknown types are ignored (later minor versions may add them)
    }
  }

  _binary(buf) {
    let f;
    try {
      f = decodeFrame(buf);
    } catch (e) {
      this._emit("error", { code: "E_BAD_HEADER", message: `from server: ${e.message}`, fatal: false });
      return;
    }
    const { header, payload } = f;
    if (header.refSeq >= 0) for (const s of this.inFlight.keys()) if (s <= header.refSeq) this.inFlight.delete(s);
    const answered = header.refSeq >= 0 && this.captures.get(header.refSeq) != null;
    const latency_ms = answered ? (nowUs() - header.captureUs) / 1000 : null;
    const blob = new Blob([payload], { type: MIME[header.codec] ?? "application/octet-stream" });
    this._emit("frame", { header, blob, latency_ms });
  }

  _sendJson(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.session) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  /** Forget in-flight frames that can no longer be answered (sent, past the budget, or flushed). */
  _expire() {
    const budget = this.session?.limits?.budget_ms ?? 250;
    const now = performance.now();
    const perInput = this.mode === "generate" && this.params.input === "video";
    const flushed = this.ws && this.ws.bufferedAmount === 0;
    for (const [s, t] of this.inFlight) if ((!perInput && flushed) || now - t > 2 * budget + 250) this.inFlight.delete(s);
  }

  /** True when a session is open and fewer than maxInFlight frames are unanswered. */
  canSend() {
    if (!this.session || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this._expire();
    return this.inFlight.size < this.maxInFlight;
  }

  /** Frames currently in flight (see module docstring). */
  get pending() {
    this._expire();
    return this.inFlight.size;
  }

  /**
   * Send one encoded image as an input frame; returns its seq, or -1 when it was not sent (no session
   * or too many frames in flight).
   * @param {Blob|ArrayBuffer|Uint8Array} image  JPEG (default), WebP or PNG bytes
   * @param {{codec?: string, captureUs?: number, width?: number, height?: number}} [o]
   */
  async sendFrame(image, o = {}) {
    if (!this.canSend()) return -1;
    const captureUs = o.captureUs ?? nowUs();
    const bytes = image instanceof Blob ? new Uint8Array(await image.arrayBuffer()) : image;
    if (!this.canSend()) return -1; // the session may have closed while the blob was read
    const seq = this.seq++;
    const buf = encodeFrame({ seq, captureUs, codec: o.codec ?? "jpeg", width: o.width, height: o.height }, bytes);
    if (this.firstCaptureUs == null) this.firstCaptureUs = captureUs;
    this.captures.set(seq, captureUs);
    this.inFlight.set(seq, performance.now());
    this.ws.send(buf);
    return seq;
  }

  /** Change parameters (latest wins per key; kept for reconnects); returns the rev. */
  setParams(values) {
    Object.assign(this.params, values);
    this.rev += 1;
    this._sendJson({ type: "params", rev: this.rev, set: values });
    return this.rev;
  }

  /** Ask a question (understand mode); returns its id, or null when no session is open. */
  ask(text, id = null) {
    const qid = id ?? `q${++this.qid}`;
    return this._sendJson({ type: "ask", id: qid, text }) ? qid : null;
  }

  pause() {
    return this._sendJson({ type: "pause" });
  }
  resume() {
    return this._sendJson({ type: "resume" });
  }
  endInput() {
    return this._sendJson({ type: "end_input" });
  }
  ping() {
    return this._sendJson({ type: "ping" });
  }

  /** Stream time (s) of an input seq, relative to this session's first frame; null if unknown. */
  streamTime(seq) {
    const cap = this.captures.get(seq);
    return cap != null && this.firstCaptureUs != null ? (cap - this.firstCaptureUs) / 1e6 : null;
  }

  /** Close the session for good (no reconnect). */
  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    const ws = this.ws;
    if (ws) ws.close(1000, "bye");
    else this._setState("closed", "closed by the page");
  }
}
