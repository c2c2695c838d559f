// The API client: relative URLs (the page is served by the API itself), the stored key as a
// Bearer token, and every failure turned into an ApiError carrying the API's code and message.
const KEY_STORAGE = "adapt.apiKey";

export class ApiError extends Error {
  constructor(status, code, message, details = [], param = null) {
    super(message);
    Object.assign(this, { status, code, details: details || [], param });
  }
}

export const apiKey = {
  get: () => localStorage.getItem(KEY_STORAGE),
  set: (key) => localStorage.setItem(KEY_STORAGE, key.trim()),
  clear: () => localStorage.removeItem(KEY_STORAGE),
};

function headers(extra = {}) {
  const h = new Headers(extra);
  const key = apiKey.get();
  if (key) h.set("Authorization", `Bearer ${key}`);
  return h;
}

async function send(path, init) {
  try {
    return await fetch(path.replace(/^\//, ""), init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network_error", `Could not reach the API (${e.message}).`);
  }
}

async function failure(res) {
  const text = await res.text();
  let err = {};
  try { err = JSON.parse(text).error || {}; } catch { /* not the API's error body */ }
  return new ApiError(res.status, err.code || `http_${res.status}`,
                      err.message || text.slice(0, 300) || res.statusText, err.details, err.param);
}

/** Call the API: `json` for a JSON body, `form` (FormData) for multipart; returns the parsed body. */
export async function api(path, { method = "GET", json, form, signal, idempotencyKey } = {}) {
  const init = { method, signal, headers: headers({ Accept: "application/json" }) };
  if (json !== undefined) {
    init.headers.set("Content-Type", "application/json");
    init.body = JSON.stringify(json);
  } else if (form) {
    init.body = form;
  }
  if (idempotencyKey) init.headers.set("Idempotency-Key", idempotencyKey);
  const res = await send(path, init);
  if (!res.ok) throw await failure(res);
  return res.status === 204 ? null : res.json();
}

/** A random key for Idempotency-Key (crypto.randomUUID needs a secure context; this does not). */
export function newRequestKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "dash-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** One SSE frame ("event:", "id:", "data:" lines) → {type, id, data}; null for a keep-alive. */
function parseFrame(frame) {
  const out = { type: "message", id: null, data: [] };
  for (const line of frame.split("\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue; // a comment (keep-alive) or a blank line
    const [field, value] = [line.slice(0, colon), line.slice(colon + 1).replace(/^ /, "")];
    if (field === "event") out.type = value;
    else if (field === "id") out.id = Number(value);
    else if (field === "data") out.data.push(value);
  }
  return out.data.length ? { ...out, data: JSON.parse(out.data.join("\n")) } : null;
}

/**
 * Follow a job's events as Server-Sent Events through fetch() streaming (EventSource cannot send
 * an Authorization header). Calls onEvent({type, id, data}) for each one (logged events carry an
 * id; `progress` ones don't). Returns the last event id seen when the server ends the stream (the
 * job has finished); pass it back as `after` to resume.
 */
export async function streamEvents(jobId, { after = 0, signal, onEvent }) {
  const init = { signal, headers: headers({ Accept: "text/event-stream" }) };
  if (after) init.headers.set("Last-Event-ID", String(after));
  const res = await send(`v1/jobs/${encodeURIComponent(jobId)}/events`, init);
  if (!res.ok) throw await failure(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let last = after;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return last;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseFrame(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (!event) continue;
      if (event.id !== null) last = event.id;
      onEvent(event);
    }
  }
}

/**
 * Download a file the API serves (a checkpoint ZIP): fetched with the key like any call, then
 * handed to the browser as a blob's object URL (a plain link could not send the Authorization
 * header).
 */
export async function download(path, filename) {
  const res = await send(path, { headers: headers() });
  if (!res.ok) throw await failure(res);
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.style.display = "none";
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Where a checkpoint's ZIP is served (`GET /v1/checkpoints/{id}/content`). */
export function checkpointDownloadUrl(checkpointId) {
  return `v1/checkpoints/${encodeURIComponent(checkpointId)}/content`;
}
