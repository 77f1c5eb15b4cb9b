// "My records": what this device recorded with this key (there is no filter on the creator in
// the API), newest first: queued (with the last reason it could not be sent), rejected (with
// the server's reason, to correct and re-send) or sent (with its status on the server, read
// from GET /incidents/{id} when there is a link).

import { dateTime, t } from "../i18n.js";
import { categoryLabel, edit } from "./form.js";
import { online, send } from "./net.js";
import * as sender from "./sender.js";
import * as store from "./store.js";
import { $, el } from "./util.js";

let hash = null;
const serverStatus = new Map();
let showTab = () => {};

export async function render() {
  const records = await store.ofKey(hash);
  const queued = records.filter((r) => r.state !== "sent").length;
  const badge = $("queued-badge");
  badge.hidden = queued === 0;
  badge.textContent = String(queued);
  badge.setAttribute("aria-label", t("field.mine.badge", { count: queued }));
  $("mine-status").textContent = records.length ? "" : t("field.mine.none");
  const list = $("mine-list");
  list.replaceChildren();
  for (const r of records) {
    const p = r.payload;
    const photoCount = r.photos.length;
    const status = r.state === "sent" && serverStatus.get(r.id)
      ? t(`field.status.${serverStatus.get(r.id)}`)
      : t(`field.state.${r.state}`);
    const children = [
      el("span", { class: `state ${r.state}`, text: status }),
      el("div", { class: "what" },
        el("strong", { text: categoryLabel(p.category) }),
        el("span", { class: "meta", text: t("field.mine.meta", {
          severity: p.severity, when: dateTime(p.occurred_at), photos: photoCount, count: photoCount,
        }) }),
        r.state === "queued" && r.error ? el("span", { class: "meta", text: t("field.mine.retry", {
          reason: r.error.status ? `${r.error.status} ${r.error.title}` : t("field.mine.nolink") }) }) : null,
        r.state === "rejected" ? el("span", { class: "reason", text: t("field.mine.rejected", {
          reason: r.error.detail || r.error.title || String(r.error.status) }) }) : null,
      ),
    ];
    if (r.state === "rejected") {
      children.push(el("button", { type: "button", class: "secondary", text: t("field.mine.fix"),
        onclick: () => {
          showTab("record");
          edit(r);
        } }));
    }
    list.append(el("li", { class: "item", dataset: { id: r.id, state: r.state } }, ...children));
  }
}

/** The server's status of the records sent recently (one GET each, when there is a link). */
async function statuses() {
  if (!online()) return;
  const sent = (await store.ofKey(hash)).filter((r) => r.state === "sent").slice(0, 20);
  await Promise.all(sent.map(async (r) => {
    try {
      const res = await send(`/incidents/${r.id}`);
      serverStatus.set(r.id, (await res.json()).properties.status);
    } catch {
      // kept as "sent"
    }
  }));
  await render();
}

export function setUp({ keyHashValue, openTab }) {
  hash = keyHashValue;
  showTab = openTab;
  $("send-now").addEventListener("click", () => sender.flush());
  sender.onChange(render);
  return render();
}

export { statuses };
