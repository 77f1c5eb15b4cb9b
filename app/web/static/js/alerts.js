// The alerts panel: the newest alerts sent to this key (GET /alerts) with the number nobody
// has acknowledged yet, each with its rule, the incident's category, severity, time (with the
// zone's offset) and place; *Acknowledge* (POST /alerts/{id}/ack) shows everyone who did it
// and when. The live feed (live.js) brings new alerts and others' acknowledgements; a click
// flies the map to the incident and opens its details. Readers only: a viewer's key receives
// no alerts, and the panel stays hidden.

import { getJSON, postJSON } from "./api.js";
import { categoryName, map, placeName } from "./context.js";
import { showIncident } from "./incident.js";
import { pulse } from "./mapview.js";
import { number, t } from "./i18n.js";
import { reportError } from "./messages.js";
import { debounced, newestOnly } from "./refresh.js";
import { state } from "./state.js";
import { $, el, whenZoned } from "./ui.js";

const LIST_LIMIT = 20;
const PULSE_MS = 6000;
const FLY_ZOOM = 11;
const RELOAD_MS = 500; // after live alert events: the server's list and count, once per burst

let alerts = []; // as GET /alerts lists them, newest first
let unread = 0;
const places = new Map(); // incident id → { jurisdictions, border_segment, border_distance_km }
const asking = new Set(); // incident ids whose place is being fetched

export function showAlertsPanel() {
  $("alerts").hidden = false;
  render();
}

const newestList = newestOnly();

/** The newest alerts and the unacknowledged count, from the server. */
export async function loadAlerts() {
  if (!state.reader) return;
  const isNewest = newestList();
  try {
    const page = await getJSON("/alerts", { limit: LIST_LIMIT });
    if (!isNewest()) return;
    alerts = page.alerts;
    unread = page.unacknowledged;
    render();
    await findPlaces();
  } catch (err) {
    reportError(t("alerts.loading"), err);
  }
}

const reloadSoon = debounced(loadAlerts, RELOAD_MS);

/** An alert event from the live feed: shown at once, then the server's list confirms. */
export function onAlertEvent(kind, body) {
  const a = body.alert;
  if (!a) return;
  if (body.incident) {
    rememberPlace(body.incident.id, body.incident);
  }
  const known = alerts.find((x) => x.id === a.id);
  if (kind === "alert.raised" && !known) {
    alerts = [{ ...a, incident: body.incident }, ...alerts].slice(0, LIST_LIMIT);
    if (!a.acknowledged_at) unread += 1;
  } else if (kind === "alert.acknowledged" && known && !known.acknowledged_at) {
    Object.assign(known, { acknowledged_at: a.acknowledged_at, acknowledged_by: a.acknowledged_by });
    unread = Math.max(0, unread - 1);
  }
  render();
  reloadSoon();
}

function rememberPlace(id, p) {
  if (p && p.jurisdictions) {
    // a list in the live feed's events, one "|"-joined string in an incident's Feature
    const codes = Array.isArray(p.jurisdictions) ? p.jurisdictions : p.jurisdictions.split("|");
    places.set(id, { jurisdictions: codes, border_segment: p.border_segment,
      border_distance_km: p.border_distance_km });
  }
}

/** The place of each listed incident the feed did not describe (the list carries only the
 * point): its details, once per incident. */
async function findPlaces() {
  const missing = alerts.map((a) => a.incident.id).filter((id) => !places.has(id) && !asking.has(id));
  if (!missing.length) return;
  for (const id of missing) asking.add(id);
  await Promise.all(missing.map(async (id) => {
    try {
      const feature = await getJSON(`/incidents/${id}`);
      rememberPlace(id, feature.properties);
    } catch {
      places.set(id, null); // gone or out of reach: the coordinates will do
    } finally {
      asking.delete(id);
    }
  }));
  render();
}

function render() {
  const badge = $("alerts-unread");
  badge.textContent = String(unread);
  badge.className = unread ? "badge" : "badge zero";
  badge.title = t("alerts.unread", { count: unread });
  badge.setAttribute("aria-label", badge.title);
  const list = $("alert-list");
  if (!alerts.length) {
    list.replaceChildren(el("li", { className: "muted", text: t("alerts.none") }));
    return;
  }
  list.replaceChildren(...alerts.map(item));
}

function item(a) {
  const i = a.incident;
  const [lon, lat] = i.location.coordinates;
  const li = el("li", {
    className: a.acknowledged_at ? "alert-item acknowledged" : "alert-item",
    dataset: { alert: String(a.id), incident: i.id },
    title: `${t("alerts.show")} · ${t("alerts.raised", { time: whenZoned(a.raised_at) })}`,
  },
  el("div", { className: "alert-rule", text: a.rule.name }),
  el("div", { className: "alert-meta",
    text: `${categoryName(i.category)} · ${t("alerts.severity", { severity: i.severity })} · ${t("alerts.occurred", { time: whenZoned(i.occurred_at) })}` }),
  el("div", { className: "alert-where", text: where(i.id, lat, lon) }),
  acknowledgement(a));
  li.addEventListener("click", () => flyTo(a));
  return li;
}

/** The provinces of the incident the map can name, its distance to the border, else (not
 * known yet, or at sea) its coordinates. */
function where(id, lat, lon) {
  const place = places.get(id);
  const parts = [];
  if (place) {
    const named = place.jurisdictions.filter((c) => placeName(c) !== c).map(placeName);
    parts.push(...new Set(named));
    if (place.border_distance_km != null && place.border_segment) {
      parts.push(t("alerts.border", { km: number(Number(place.border_distance_km), { minimumFractionDigits: 1, maximumFractionDigits: 1 }), segment: place.border_segment }));
    }
  }
  if (!parts.length) parts.push(`${number(lat, { maximumFractionDigits: 4 })}; ${number(lon, { maximumFractionDigits: 4 })}`);
  return parts.join(" · ");
}

function acknowledgement(a) {
  if (a.acknowledged_at) {
    return el("div", { className: "alert-ack alert-acked",
      text: t("alerts.acknowledged", { who: actorName(a.acknowledged_by), time: whenZoned(a.acknowledged_at) }) });
  }
  const button = el("button", { type: "button", className: "ack", text: t("alerts.acknowledge"),
    title: t("alerts.acknowledgeTitle") });
  button.addEventListener("click", (e) => {
    e.stopPropagation(); // acknowledging does not fly the map
    acknowledge(a, button);
  });
  return el("div", { className: "alert-ack" }, button);
}

/** "principal:12:An Giang duty officer" (how the audit log names a key) → its name. */
function actorName(actor) {
  const m = /^principal:\d+:(.*)$/s.exec(actor || "");
  return m ? m[1] : actor || "";
}

async function acknowledge(a, button) {
  button.disabled = true;
  try {
    const done = await postJSON(`/alerts/${a.id}/ack`);
    const known = alerts.find((x) => x.id === a.id);
    if (known && !known.acknowledged_at) {
      Object.assign(known, { acknowledged_at: done.acknowledged_at, acknowledged_by: done.acknowledged_by });
      unread = Math.max(0, unread - 1);
    }
    render();
  } catch (err) {
    button.disabled = false;
    reportError(t("alerts.acknowledging"), err);
  }
}

function flyTo(a) {
  const i = a.incident;
  const at = i.location.coordinates;
  map.flyTo({ center: at, zoom: Math.max(map.getZoom(), FLY_ZOOM) });
  pulse(map, at, { id: i.id, severity: i.severity, ms: PULSE_MS });
  showIncident(i.id);
}
