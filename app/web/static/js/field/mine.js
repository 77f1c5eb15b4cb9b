// "My records": what this key recorded. The records still on this device first (queued, with
// the last reason they could not be sent; rejected, with the server's reason, to correct and
// re-send), then what the server holds as recorded by this key (GET /incidents?recorded_by=me,
// with its status; the saved answer when offline), then any record this device sent that the
// server's list does not show yet.

import { dateTime, t } from "../i18n.js";
import { categoryLabel, edit } from "./form.js";
import { getJSON, online } from "./net.js";
import * as sender from "./sender.js";
import * as store from "./store.js";
import { $, el } from "./util.js";

const LIMIT = 30;
let hash = null;
let server = []; // features of GET /incidents?recorded_by=me
let showTab = () => {};
let later = null;

function item({ id, state, label, category, severity, when, photos, extra = [], button = null }) {
  return el("li", { class: "item", dataset: { id, state } },
    el("span", { class: `state ${state}`, text: label }),
    el("div", { class: "what" },
      el("strong", { text: categoryLabel(category) }),
      el("span", { class: "meta", text: photos === null
        ? t("field.mine.meta.server", { severity, when: dateTime(when) })
        : t("field.mine.meta", { severity, when: dateTime(when), photos, count: photos }) }),
      ...extra),
    button);
}

export async function render() {
  const records = await store.ofKey(hash);
  const waiting = records.filter((r) => r.state !== "sent");
  const badge = $("queued-badge");
  badge.hidden = waiting.length === 0;
  badge.textContent = String(waiting.length);
  badge.setAttribute("aria-label", t("field.mine.badge", { count: waiting.length }));
  const list = $("mine-list");
  list.replaceChildren();
  for (const r of waiting) {
    const p = r.payload;
    const extra = [];
    if (r.state === "queued" && r.error) {
      extra.push(el("span", { class: "meta", text: t("field.mine.retry", {
        reason: r.error.status ? `${r.error.status} ${r.error.title}` : t("field.mine.nolink") }) }));
    }
    if (r.state === "rejected") {
      extra.push(el("span", { class: "reason", text: t("field.mine.rejected", {
        reason: r.error.detail || r.error.title || String(r.error.status) }) }));
    }
    const button = r.state === "rejected"
      ? el("button", { type: "button", class: "secondary", text: t("field.mine.fix"),
        onclick: () => {
          showTab("record");
          edit(r);
        } })
      : null;
    list.append(item({ id: r.id, state: r.state, label: t(`field.state.${r.state}`),
      category: p.category, severity: p.severity, when: p.occurred_at, photos: r.photos.length,
      extra, button }));
  }
  const shown = new Set(waiting.map((r) => r.id));
  for (const f of server) {
    if (shown.has(f.id)) continue;
    shown.add(f.id);
    const p = f.properties;
    list.append(item({ id: f.id, state: "sent", label: t(`status.${p.status}`),
      category: p.category, severity: p.severity, when: p.occurred_at, photos: null }));
  }
  for (const r of records.filter((x) => x.state === "sent" && !shown.has(x.id))) {
    const p = r.payload;
    list.append(item({ id: r.id, state: "sent", label: t("field.state.sent"), category: p.category,
      severity: p.severity, when: p.occurred_at, photos: r.photos.length }));
  }
  $("mine-status").textContent = list.children.length ? "" : t("field.mine.none");
}

/** What the server holds as recorded by this key (the saved list when offline). */
export async function refresh() {
  try {
    const { body } = await getJSON("/incidents", { recorded_by: "me", limit: LIMIT });
    server = body.features || [];
  } catch {
    // no link and nothing saved, or refused: the device's records are still listed
  }
  await render();
}

export function setUp({ keyHashValue, openTab }) {
  hash = keyHashValue;
  showTab = openTab;
  $("send-now").addEventListener("click", () => sender.flush());
  sender.onChange(() => {
    render();
    clearTimeout(later); // one read of the server's list after a pass, not one per record
    later = setTimeout(() => online() && refresh(), 1000);
  });
  return render();
}
