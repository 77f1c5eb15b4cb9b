// Server-Sent Events over fetch(): the browser's EventSource cannot send the key as a header,
// and the key never goes into a URL. The parser follows the HTML standard's event-stream
// rules (lines end with CRLF, LF or CR; `event`, `data`, `id`, `retry`; a blank line
// dispatches; a line starting with ":" is a comment).

import { t } from "./i18n.js";

/** Feeds text chunks in, calls `onEvent({ event, data, id })` per dispatched event (`id` the
 * last event id seen, as the standard keeps it),
 * `onComment(text)` per comment and `onRetry(ms)` for a `retry:` field. */
export class SseParser {
  constructor({ onEvent, onComment = () => {}, onRetry = () => {} }) {
    this.onEvent = onEvent;
    this.onComment = onComment;
    this.onRetry = onRetry;
    this.buffer = "";
    this.skipLf = false; // the chunk before ended with CR: a LF now belongs to it
    this.id = null; // the last event id: it stays until an `id:` field changes it
    this.reset();
  }

  reset() {
    this.event = "";
    this.data = [];
    this.hasData = false;
  }

  /** Take the next piece of the stream (already decoded text). */
  push(chunk) {
    let text = chunk;
    if (this.skipLf && text.startsWith("\n")) text = text.slice(1);
    this.skipLf = false;
    this.buffer += text;
    let start = 0;
    for (let i = 0; i < this.buffer.length; i += 1) {
      const c = this.buffer[i];
      if (c !== "\n" && c !== "\r") continue;
      this.line(this.buffer.slice(start, i));
      if (c === "\r") {
        if (i + 1 < this.buffer.length) {
          if (this.buffer[i + 1] === "\n") i += 1;
        } else {
          this.skipLf = true;
        }
      }
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === "") {
      if (this.hasData) {
        this.onEvent({ event: this.event || "message", data: this.data.join("\n"), id: this.id });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) {
      this.onComment(line.slice(1).trimStart());
      return;
    }
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") this.event = value;
    else if (name === "data") {
      this.data.push(value);
      this.hasData = true;
    } else if (name === "id") {
      if (!value.includes("\0")) this.id = value;
    } else if (name === "retry") {
      if (/^\d+$/.test(value)) this.onRetry(Number(value));
    }
  }
}

export class StreamError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

/** Read `url` as an event stream until it ends (resolves) or fails (throws; StreamError for a
 * refused request, with its status). `onOpen()` once the server accepted it, `onActivity()`
 * whenever bytes arrive (heartbeats too); the rest of the handlers are SseParser's. */
export async function readStream({ url, headers, signal, onOpen, onActivity = () => {}, ...handlers }) {
  const response = await fetch(url, {
    headers: { Accept: "text/event-stream", ...headers },
    cache: "no-store",
    signal,
  });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = body.detail || body.title || detail;
    } catch {
      // not problem+json
    }
    throw new StreamError(response.status, detail);
  }
  if (!(response.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
    throw new StreamError(response.status, t("live.notAStream"));
  }
  onOpen();
  const parser = new SseParser(handlers);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let done = false;
  try {
    while (!done) {
      const next = await reader.read();
      done = next.done;
      if (!done) {
        onActivity();
        parser.push(next.value);
      }
    }
  } finally {
    if (!done) reader.cancel().catch(() => {}); // a handler failed: let the connection go
  }
}
