// One incident (its facts and change history) and the nearby tool (the incidents around a
// clicked point, nearest first).

import { getJSON } from "./api.js";
import { categoryName, map, placeName } from "./context.js";
import { circlePolygon } from "./geometry.js";
import { reportError, showMessage } from "./messages.js";
import { newestOnly } from "./refresh.js";
import { filterParams, state } from "./state.js";
import { $, el, heading, showPanelStatus, table, tableRow, when, words } from "./ui.js";

const TEXT = {
  incident: "Incident",
  nearby: "Nearby",
  loading: "Loading…",
  unavailable: "Unavailable.",
  loadingIncident: "Loading the incident",
  listingNearby: "Listing nearby incidents",
  facts: {
    severity: "severity", status: "status", occurred: "occurred", reported: "reported",
    description: "description", unit: "unit", source: "source", jurisdiction: "jurisdiction",
    border: "to the border", post: "nearest post", position: "position", id: "id",
  },
  severity: (s) => `${s} / 5`,
  border: (km, segment) => `${km} km (${segment})`,
  post: (name, km) => `${name}, ${km} km`,
  position: (lat, lon, precisionM) => `${lat}, ${lon} (± ${precisionM} m)`,
  history: "History",
  historyEntry: (e, time) => `v${e.version} ${e.action} by ${e.actor}, ${time}`,
  changed: (fields) => ` — ${fields.join(", ")}`,
  within: (km, count, more) => `Within ${km} km: ${count}${more ? "+" : ""}`,
  nearbyItem: (km, category, severity, time) => `${km} km — ${category}, sev ${severity}, ${time}`,
  noneNearby: "No incidents match within this radius.",
  toolNeedsReader: "Incident-level tools need an officer, analyst or admin key",
  clickTheMap: "Click the map to list the incidents around that point.",
};
const NEARBY_LIMIT = 50;
const BOOKKEEPING = ["updated_at", "version"]; // changed by every update: not worth listing

export async function showIncident(id) {
  const panel = $("detail");
  showPanelStatus(panel, TEXT.incident, TEXT.loading);
  try {
    const [feature, history] = await Promise.all([
      getJSON(`/incidents/${id}`), getJSON(`/incidents/${id}/history`)]);
    state.incident = feature;
    panel.replaceChildren(
      heading(categoryName(feature.properties.category), () => { panel.hidden = true; state.incident = null; }),
      table({ className: "facts", rows: facts(feature).map((cells) => tableRow(cells, 1)) }),
      el("h3", { text: TEXT.history }),
      el("ol", { className: "history" }, ...history.entries.map((e) => el("li", { text: historyEntry(e) }))));
  } catch (err) {
    showPanelStatus(panel, TEXT.incident, TEXT.unavailable);
    reportError(TEXT.loadingIncident, err);
  }
}

/** [label, value] per row of the detail panel; an empty value reads "–". */
function facts(feature) {
  const p = feature.properties;
  const [lon, lat] = feature.geometry.coordinates;
  const km = (v) => Number(v).toFixed(1);
  const label = TEXT.facts;
  return [
    [label.severity, TEXT.severity(p.severity)], [label.status, words(p.status)],
    [label.occurred, when(p.occurred_at)], [label.reported, when(p.reported_at)],
    [label.description, p.description], [label.unit, p.unit], [label.source, p.source],
    [label.jurisdiction, (p.jurisdictions || []).map((c) => placeName(c)).join(" › ")],
    [label.border, p.border_distance_km != null ? TEXT.border(km(p.border_distance_km), p.border_segment) : null],
    [label.post, p.nearest_post_name ? TEXT.post(p.nearest_post_name, km(p.nearest_post_km)) : null],
    [label.position, TEXT.position(lat.toFixed(5), lon.toFixed(5), p.location_precision_m)],
    [label.id, feature.id],
  ];
}

function historyEntry(e) {
  const changed = Object.keys(e.changes || {}).filter((k) => !BOOKKEEPING.includes(k));
  return TEXT.historyEntry(e, when(e.changed_at))
    + (e.action === "update" && changed.length ? TEXT.changed(changed) : "");
}

export function setUpNearbyTool() {
  const button = $("nearby-tool");
  button.disabled = !state.reader;
  if (!state.reader) button.title = TEXT.toolNeedsReader;
  button.addEventListener("click", () => {
    const on = !nearbyToolOn();
    button.setAttribute("aria-pressed", String(on));
    map.getCanvas().style.cursor = on ? "crosshair" : "";
    if (on) showMessage(TEXT.clickTheMap, "info");
  });
}

/** Whether a click on the map lists the incidents around it (clicks.js). */
export function nearbyToolOn() {
  return $("nearby-tool").getAttribute("aria-pressed") === "true";
}

const newestNearby = newestOnly();

function drawNearby(features) {
  map.getSource("nearby").setData({ type: "FeatureCollection", features });
}

export async function runNearby(lon, lat) {
  const radius = Number($("nearby-radius").value);
  state.nearby = { lon, lat, radius_m: radius, ids: null };
  const circle = circlePolygon(lon, lat, radius);
  drawNearby([circle]);
  const panel = $("nearby");
  showPanelStatus(panel, TEXT.nearby, TEXT.loading);
  const isNewest = newestNearby();
  try {
    const fc = await getJSON("/incidents/nearby", { ...filterParams(), lat: lat.toFixed(6),
      lon: lon.toFixed(6), radius_m: radius, limit: NEARBY_LIMIT });
    if (!isNewest() || !state.nearby) return;
    state.nearby.ids = fc.features.map((f) => f.id);
    drawNearby([circle, ...fc.features]);
    const list = el("ol", { id: "nearby-list" });
    for (const f of fc.features) {
      const p = f.properties;
      const li = el("li", { dataset: { id: f.id }, text: TEXT.nearbyItem((p.distance_m / 1000).toFixed(2),
        categoryName(p.category), p.severity, when(p.occurred_at)) });
      li.addEventListener("click", () => showIncident(f.id));
      list.append(li);
    }
    if (!fc.features.length) list.textContent = TEXT.noneNearby;
    const count = fc.features.length;
    panel.replaceChildren(heading(TEXT.within(radius / 1000, count, count === NEARBY_LIMIT), closeNearby), list);
  } catch (err) {
    showPanelStatus(panel, TEXT.nearby, TEXT.unavailable);
    reportError(TEXT.listingNearby, err);
  }
}

/** The same point again, with the filters (and the radius) as they are now. */
export function refreshNearby() {
  return state.nearby ? runNearby(state.nearby.lon, state.nearby.lat) : undefined;
}

function closeNearby() {
  $("nearby").hidden = true;
  state.nearby = null;
  drawNearby([]);
}
