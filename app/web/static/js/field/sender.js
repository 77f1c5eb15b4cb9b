// Sending the queue: the incident first (POST /incidents with its client id), then each photo
// (PUT /incidents/{id}/photos/{photo_id}). Both are idempotent by id, so a retry after a send
// cut half-way never doubles anything. A record leaves the queue only when the incident and
// every photo are acknowledged (200/201). A 4xx other than 408/429 is a rejection: the record
// keeps the server's reason and waits to be corrected. Anything else (no link, 408, 429, 5xx)
// is retried: when the link returns, after a growing pause (2 s doubling to 5 min, with
// jitter), and when the page opens.

import { ApiError } from "../api.js";
import { keyHash } from "./key.js";
import { onOnline, send } from "./net.js";
import * as store from "./store.js";

const BASE_MS = 2000;
const CAP_MS = 5 * 60 * 1000;
const listeners = new Set();
let failures = 0;
let timer = null;
let running = null;
let again = false;

export const stats = { posts: 0, puts: 0, flushes: 0 };

/** Call `fn()` after each change of a record's state. */
export function onChange(fn) {
  listeners.add(fn);
}

function changed() {
  for (const fn of listeners) fn();
}

function retryable(status) {
  return status === 0 || status === 408 || status === 429 || status >= 500;
}

function reasonOf(err) {
  return { status: err.status, title: err.title || "", detail: err.detail || err.message || "" };
}

async function sendRecord(record) {
  if (!record.incidentAcked) {
    stats.posts += 1;
    await send("/incidents", {
      method: "POST",
      body: JSON.stringify(record.payload),
      headers: { "Content-Type": "application/json" },
    });
    await store.update(record.id, (r) => {
      r.incidentAcked = true;
    });
    record.incidentAcked = true;
  }
  for (const photo of record.photos) {
    if (photo.acked) continue;
    stats.puts += 1;
    await send(`/incidents/${record.id}/photos/${photo.id}`, {
      method: "PUT",
      body: photo.blob,
      headers: { "Content-Type": photo.type },
    });
    await store.update(record.id, (r) => {
      const p = r.photos.find((x) => x.id === photo.id);
      p.acked = true;
    });
    photo.acked = true;
  }
  await store.update(record.id, (r) => {
    r.state = "sent";
    r.sentAt = new Date().toISOString();
    r.error = null;
    for (const p of r.photos) p.blob = null; // the server has them now
  });
}

async function flushOnce() {
  stats.flushes += 1;
  const hash = await keyHash();
  if (!hash) return;
  const queued = (await store.ofKey(hash)).filter((r) => r.state === "queued").reverse();
  let retry = false;
  for (const record of queued) {
    try {
      await sendRecord(record);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (retryable(err.status)) {
        await store.update(record.id, (r) => {
          r.attempts = (r.attempts || 0) + 1;
          r.error = reasonOf(err);
        });
        retry = true;
        if (err.status === 0) break; // no link: the others would fail the same way
      } else {
        await store.update(record.id, (r) => {
          r.state = "rejected";
          r.error = reasonOf(err);
        });
      }
    } finally {
      changed();
    }
  }
  await store.prune();
  if (retry) schedule();
  else failures = 0;
}

function schedule() {
  failures += 1;
  const wait = Math.min(CAP_MS, BASE_MS * 2 ** (failures - 1));
  clearTimeout(timer);
  timer = setTimeout(flush, wait / 2 + (Math.random() * wait) / 2);
}

/** Send every queued record of this key now (one pass at a time, one tab at a time). */
export function flush() {
  if (running) {
    again = true; // a record saved during a pass is sent by the next one
    return running;
  }
  const pass = () => flushOnce();
  running = (navigator.locks ? navigator.locks.request("borderwatch-field-send", pass) : pass())
    .catch((err) => console.error(err))
    .finally(() => {
      running = null;
      if (again) {
        again = false;
        flush();
      }
    });
  return running;
}

/** Start sending: now, on every return of the link, and every few minutes as a safety net. */
export function start() {
  onOnline(() => {
    failures = 0;
    flush();
  });
  setInterval(() => {
    if (navigator.onLine) flush();
  }, CAP_MS);
  return flush();
}
