// Messages at the top of the map: notes that go away by themselves, and failed requests in
// words a person can act on.

import { ApiError } from "./api.js";
import { askForKey } from "./signin.js";
import { $, closeButton, el } from "./ui.js";

const TEXT = {
  dismiss: "Dismiss",
  keyRefused: (detail) => `Your key was refused (${detail}). Sign in again.`,
  forbidden: (what, detail) => `${what}: not allowed for your role (${detail}).`,
  tooMany: (what, detail) => `${what}: too many requests, wait a moment (${detail}).`,
  failed: (what, detail) => `${what} failed — ${detail}`,
};
const NOTE_MS = 6000; // a note ("info") goes after this; an error stays until dismissed

/** One message per text: the same failure from several panels shows once. */
export function showMessage(text, kind = "error") {
  const box = $("messages");
  for (const existing of box.children) {
    if (existing.dataset.text === text) return;
  }
  const item = el("div", { className: `message ${kind}`, dataset: { text }, text });
  item.append(closeButton(TEXT.dismiss, () => item.remove()));
  box.append(item);
  if (kind !== "error") setTimeout(() => item.remove(), NOTE_MS);
}

/** A failed request as a message ("`what` failed …"); a refused key asks for a new one. */
export function reportError(what, err) {
  if (err && err.name === "AbortError") return;
  if (err instanceof ApiError && err.status === 401) {
    showMessage(TEXT.keyRefused(err.message));
    askForKey(err.message);
    return;
  }
  if (err instanceof ApiError && err.status === 403) {
    showMessage(TEXT.forbidden(what, err.message));
    return;
  }
  if (err instanceof ApiError && err.status === 429) {
    showMessage(TEXT.tooMany(what, err.message));
    return;
  }
  const detail = err instanceof ApiError ? `${err.title}: ${err.message}` : String(err);
  showMessage(TEXT.failed(what, detail));
}
