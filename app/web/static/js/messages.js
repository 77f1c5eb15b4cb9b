// Messages at the top of the map: notes that go away by themselves, failed requests in words a
// person can act on, and one connection banner for every request that could not reach the
// server (tiles included) instead of a message per request.

import { ApiError, onNetwork } from "./api.js";
import { t } from "./i18n.js";
import { askForKey } from "./signin.js";
import { $, closeButton, el } from "./ui.js";

const NOTE_MS = 6000; // a note ("info") goes after this; an error stays until dismissed

/** The connection as the page sees it: offline (navigator.onLine, or requests failing to reach
 * the server) shows the banner; a request that gets through again hides it. */
export const connection = { ok: true, failures: 0 };

function showConnection() {
  const banner = $("connection");
  if (banner) banner.hidden = connection.ok && navigator.onLine;
}

/** A request (or tile) could not reach the server (false) or got an answer (true). */
export function reachable(ok) {
  if (!ok) connection.failures += 1;
  if (connection.ok === ok) {
    if (!ok) showConnection();
    return;
  }
  connection.ok = ok;
  showConnection();
}

onNetwork(reachable);
window.addEventListener("offline", showConnection);
window.addEventListener("online", showConnection);

/** One message per text: the same failure from several panels shows once. */
export function showMessage(text, kind = "error") {
  const box = $("messages");
  for (const existing of box.children) {
    if (existing.dataset.text === text) return;
  }
  const item = el("div", { className: `message ${kind}`, dataset: { text } }, el("span", { text }));
  item.append(closeButton(t("dismiss"), () => item.remove()));
  box.append(item);
  if (kind !== "error") setTimeout(() => item.remove(), NOTE_MS);
}

/** A failed request as a message ("`what` failed …"); a refused key asks for a new one; a
 * server out of reach is the connection banner, not a message. */
export function reportError(what, err) {
  if (err && err.name === "AbortError") return;
  if (err instanceof ApiError && err.status === 0) {
    reachable(false);
    return;
  }
  if (err instanceof ApiError && err.status === 401) {
    showMessage(t("error.keyRefused", { detail: err.message }));
    askForKey(err.message);
    return;
  }
  if (err instanceof ApiError && err.status === 403) {
    showMessage(t("error.forbidden", { what, detail: err.message }));
    return;
  }
  if (err instanceof ApiError && err.status === 429) {
    showMessage(t("error.tooMany", { what, detail: err.message }));
    return;
  }
  const detail = err instanceof ApiError ? `${err.title}: ${err.message}` : String(err);
  showMessage(t("error.failed", { what, detail }));
}

/** A tile or source the map could not load: its HTTP status when there was an answer (a
 * refused key, the budget), else the connection banner; never the tile's URL. */
export function reportMapError(event) {
  const error = event && event.error;
  const status = error && error.status;
  if (!status) {
    // MapLibre reports a tile it could not fetch as an error without a status
    if (error && (error.name === "AbortError")) return;
    if (error && !/fetch|network|load/i.test(String(error.message || ""))) {
      console.error(error);
      return;
    }
    reachable(false);
    return;
  }
  if (status >= 500) {
    reachable(false);
    return;
  }
  reportError(t("error.tiles"), new ApiError(status, t("error.tileTitle"), t("error.tileDetail", { status })));
}
