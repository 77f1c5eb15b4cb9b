// Requests of the field page and the one offline banner: a GET that the service worker answered
// from its cache ("saved 2 h ago"), a request that could not reach the server, the browser's
// online/offline events. No request shows an error of its own for a missing link.

import { ApiError, authHeaders, url } from "../api.js";
import { dateTime, t } from "../i18n.js";
import { $ } from "./util.js";

let oldestSaved = null; // the oldest saved answer shown since the link went
let unreachable = false;
const onlineListeners = new Set();

/** Whether the page believes it has a link. */
export function online() {
  return navigator.onLine && !unreachable;
}

/** Call `fn()` when the link returns. */
export function onOnline(fn) {
  onlineListeners.add(fn);
}

function linkBack() {
  unreachable = false;
  oldestSaved = null;
  render();
  for (const fn of onlineListeners) fn();
}

export function setUpBanner() {
  window.addEventListener("online", linkBack);
  window.addEventListener("offline", render);
  render();
}

/** "just now", "5 min ago", "2 h ago", else the date and time. */
export function age(iso) {
  const minutes = Math.round((Date.now() - Date.parse(iso)) / 60000);
  if (minutes < 1) return t("field.age.now");
  if (minutes < 60) return t("field.age.minutes", { count: minutes });
  if (minutes < 48 * 60) return t("field.age.hours", { count: Math.round(minutes / 60) });
  return dateTime(iso);
}

export function render() {
  const banner = $("offline");
  const off = !navigator.onLine || unreachable;
  banner.hidden = !off && !oldestSaved;
  $("saved-at").textContent = oldestSaved ? t("field.saved", { age: age(oldestSaved) }) : "";
}

function noteSaved(response) {
  if (response.headers.get("X-Borderwatch-From-Cache") !== "1") return;
  const at = response.headers.get("X-Borderwatch-Saved-At");
  if (at && (!oldestSaved || at < oldestSaved)) oldestSaved = at;
  render();
}

/** The server could not be reached (the banner says so until a request gets through). */
export function markUnreachable() {
  if (!unreachable) {
    unreachable = true;
    render();
  }
}

/** A request reached the server. */
export function markReachable() {
  if (unreachable) linkBack();
}

async function problemOf(response, path) {
  let title = response.statusText;
  let detail = "";
  try {
    const body = await response.json();
    title = body.title || title;
    detail = body.detail || "";
  } catch {
    // not problem+json: the status line is all there is
  }
  return new ApiError(response.status, title, detail, path);
}

/** A request with the key; throws ApiError (status 0 when the server cannot be reached). */
export async function send(path, { params = {}, method = "GET", body, headers = {}, signal } = {}) {
  let response;
  try {
    response = await fetch(url(path, params), {
      method, body, signal, headers: { ...authHeaders(), ...headers },
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    markUnreachable();
    throw new ApiError(0, "", "", path);
  }
  if (response.headers.get("X-Borderwatch-From-Cache") === "1") noteSaved(response);
  else markReachable();
  if (!response.ok) throw await problemOf(response, path);
  return response;
}

/** GET a JSON document (the saved one when offline, with the banner saying how old). */
export async function getJSON(path, params = {}) {
  const response = await send(path, { params });
  return { body: await response.json(), savedAt: savedAt(response) };
}

function savedAt(response) {
  return response.headers.get("X-Borderwatch-From-Cache") === "1"
    ? response.headers.get("X-Borderwatch-Saved-At")
    : null;
}
