// Talking to the Borderwatch API: the key (sessionStorage), JSON (GET, POST) and blob requests,
// problem+json errors, and a count of requests in flight (the "Loading…" badge).

import { lang, t } from "./i18n.js";

const KEY_STORAGE = "borderwatch.key";
const listeners = new Set();
const network = new Set(); // told whether each request reached the server
let inFlight = 0;

export class ApiError extends Error {
  constructor(status, title, detail, path, problem = {}) {
    super(detail || title || `HTTP ${status}`);
    this.status = status;
    this.title = title;
    this.path = path;
    this.problem = problem; // the whole problem+json body (allowed, errors, field …)
  }
}

/** The key from a `#key=…` sign-in link (then removed from the address bar) or the session. */
export function takeKeyFromUrl() {
  const hash = new URLSearchParams(window.location.hash.slice(1));
  const key = hash.get("key");
  if (key) {
    sessionStorage.setItem(KEY_STORAGE, key);
    hash.delete("key");
    const rest = hash.toString();
    const url = window.location.pathname + window.location.search + (rest ? `#${rest}` : "");
    window.history.replaceState(null, "", url);
  }
  return sessionStorage.getItem(KEY_STORAGE);
}

export function setKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function clearKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

export function getKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

/** The key, and the page's language for whatever the answer names (app/i18n.py). */
export function authHeaders() {
  const key = getKey();
  const headers = { "Accept-Language": lang() };
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

/** Subscribe to whether requests reach the server (true) or not (false). */
export function onNetwork(fn) {
  network.add(fn);
}

function reached(ok) {
  for (const fn of network) fn(ok);
}

/** Subscribe to the number of requests in flight. */
export function onBusy(fn) {
  listeners.add(fn);
}

function busy(delta) {
  inFlight += delta;
  for (const fn of listeners) fn(inFlight);
}

export function pending() {
  return inFlight;
}

/** A URL on this origin with the given query parameters (empty values left out). */
export function url(path, params = {}) {
  const u = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") u.searchParams.set(k, String(v));
  }
  return u.toString();
}

/** The path and query of a URL the API answered with (a `next` link, a photo's URL): requests
 * carry the key, so they go to this origin whatever host the answer names. */
export function localPath(href) {
  const u = new URL(href, window.location.origin);
  return u.pathname + u.search;
}

async function problemOf(response, path) {
  let title = response.statusText;
  let detail = "";
  let problem = {};
  try {
    problem = await response.json();
    title = problem.title || title;
    detail = problem.detail || "";
  } catch {
    // not JSON (a proxy's error page): the status line is all we have
  }
  return new ApiError(response.status, title, detail, path, problem);
}

async function request(path, params, signal, init = {}) {
  busy(+1);
  try {
    let response;
    try {
      response = await fetch(url(path, params), { ...init, headers: { ...authHeaders(), ...init.headers }, signal });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      reached(false);
      throw new ApiError(0, t("error.networkTitle"), t("error.network"), path);
    }
    reached(true);
    if (!response.ok) throw await problemOf(response, path);
    return response;
  } finally {
    busy(-1);
  }
}

/** GET a JSON document; throws ApiError (with the problem's detail) on failure. */
export async function getJSON(path, params = {}, signal = undefined) {
  const response = await request(path, params, signal);
  return response.json();
}

/** POST `body` as JSON (none: an empty body) and read the JSON answer; throws ApiError. */
export async function postJSON(path, body = undefined) {
  const init = { method: "POST" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { "Content-Type": "application/json" };
  }
  const response = await request(path, {}, undefined, init);
  return response.json();
}

/** GET a file as a Blob with the server's file name (Content-Disposition). */
export async function getBlob(path, params = {}) {
  const response = await request(path, params);
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = /filename="?([^";]+)"?/.exec(disposition);
  return { blob: await response.blob(), filename: match ? match[1] : "borderwatch-export" };
}

/** GET a JSON document with its ETag (for a later If-Match). */
export async function getWithETag(path) {
  const response = await request(path, {});
  return { body: await response.json(), etag: response.headers.get("ETag") };
}

/** PATCH `body` as JSON with If-Match; the answer's JSON and its new ETag. Throws ApiError
 * (412 stale, 409 illegal status, 403, 422 naming the field). */
export async function patchJSON(path, body, etag) {
  const response = await request(path, {}, undefined, { method: "PATCH", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "If-Match": etag } });
  return { body: await response.json(), etag: response.headers.get("ETag") };
}

/** POST a file as the request body (its own Content-Type); the JSON answer. */
export async function postFile(path, params, file) {
  const response = await request(path, params, undefined, { method: "POST", body: file,
    headers: { "Content-Type": file.type || "application/octet-stream" } });
  return response.json();
}
