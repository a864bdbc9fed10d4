// The console's only way to the server: the /v1 API with the key as the bearer header.
// The key lives in this tab's sessionStorage; it never goes into a URL, a cookie or localStorage.

const KEY = "distillery.apiKey";

export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  signIn(key) {
    sessionStorage.setItem(KEY, key);
  },
  signOut() {
    sessionStorage.removeItem(KEY);
  },
};

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function authorised(headers = {}) {
  return { ...headers, Authorization: `Bearer ${session.key}` };
}

async function problem(response) {
  let detail = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    detail = body.detail || body.title || detail;
  } catch {
    // not a problem+json body: keep the status line
  }
  if (response.status === 401) {
    session.signOut();
    window.dispatchEvent(new Event("distillery:signed-out"));
  }
  return new ApiError(response.status, detail);
}

async function send(path, { method = "GET", json, form, signal, accept } = {}) {
  const headers = authorised(accept ? { Accept: accept } : {});
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form; // the browser sets multipart/form-data with its boundary
  }
  const response = await fetch(path, { method, headers, body, signal });
  if (!response.ok) throw await problem(response);
  return response;
}

/** JSON from the API (null for 204); a refusal throws ApiError with the server's sentence. */
export async function api(path, options) {
  const response = await send(path, options);
  return response.status === 204 ? null : response.json();
}

export async function text(path) {
  return (await send(path)).text();
}

/** Save a protected file: fetched with the header, handed to the browser as a Blob URL. */
export async function download(path, filename) {
  const blob = await (await send(path)).blob();
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Server-Sent Events read with fetch(), because EventSource cannot send an Authorization header. */
async function* streamEvents(path, signal) {
  const response = await send(path, { signal, accept: "text/event-stream" });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { type: "message", id: null, data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    // a "\r" at the very end may be the first half of "\r\n": keep it for the next chunk
    const complete = buffer.endsWith("\r") ? buffer.slice(0, -1) : buffer;
    const lines = complete.split(/\r\n|\r|\n/);
    buffer = lines.pop() + buffer.slice(complete.length);
    for (const line of lines) {
      if (line === "") {
        if (event.data.length) yield { type: event.type, id: event.id, data: event.data.join("\n") };
        event = { type: "message", id: event.id, data: [] };
        continue;
      }
      if (line.startsWith(":")) continue; // keep-alive comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const content = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") event.data.push(content);
      else if (field === "event") event.type = content;
      else if (field === "id") event.id = content;
    }
  }
}

/**
 * Follow a job's event stream until its "end" event or until `signal` aborts, calling onEvent(type, payload).
 * A dropped connection is resumed after the last event seen (?after=), so nothing is missed or repeated.
 */
export async function followJob(jobId, onEvent, signal) {
  let after = 0;
  while (!signal.aborted) {
    try {
      for await (const message of streamEvents(`/v1/jobs/${encodeURIComponent(jobId)}/events?after=${after}`, signal)) {
        if (message.id) after = Number(message.id);
        onEvent(message.type, JSON.parse(message.data));
        if (message.type === "end") return;
      }
    } catch (error) {
      if (signal.aborted || (error instanceof ApiError && error.status < 500)) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}
