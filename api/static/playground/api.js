// The farm's HTTP API as the playground uses it: the saved key, JSON calls, uploads and the SSE stream.

const KEY_STORAGE = "farm.apiKey";
export const MODEL = "stability-ai/stable-diffusion-3.5-medium";
export const TERMINAL = ["succeeded", "failed", "canceled"];

export function savedKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function saveKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

// An error answer: `detail` says what is wrong, `errors` ({field, message, value}) name the fields (422).
export class ApiError extends Error {
  constructor(status, body) {
    super(typeof body?.detail === "string" ? body.detail : `The farm answered HTTP ${status}.`);
    this.status = status;
    this.errors = Array.isArray(body?.errors) ? body.errors : [];
  }
}

async function send(path, options = {}) {
  const headers = { Authorization: `Bearer ${savedKey()}`, ...options.headers };
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      // Not JSON (a proxy's page): the status alone tells what happened.
    }
    throw new ApiError(response.status, body);
  }
  return response;
}

export async function api(method, path, body) {
  const options = { method };
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers = { "Content-Type": "application/json" };
  }
  return (await send(path, options)).json();
}

export async function uploadFile(file) {
  const form = new FormData();
  form.append("content", file, file.name);
  return (await send("/v1/files", { method: "POST", body: form })).json();
}

// Server-sent events of a prediction as {event, data}. Read with fetch, not EventSource, because
// EventSource cannot send the Authorization header.
export async function* predictionEvents(id, signal) {
  const response = await send(`/v1/predictions/${encodeURIComponent(id)}/stream`, {
    signal,
    headers: { Accept: "text/event-stream" },
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const parsed = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (parsed) yield parsed;
    }
  }
}

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return data.length ? { event, data: data.join("\n") } : null; // comment-only blocks are keep-alives
}
