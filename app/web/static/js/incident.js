// One incident (its facts, what this key may do with it, history, notes, photos) and the nearby tool (the incidents around a
// clicked point, nearest first).

import { getJSON, getWithETag } from "./api.js";
import { categoryName, map, placeName, postName } from "./context.js";
import { circlePolygon } from "./geometry.js";
import { number, t } from "./i18n.js";
import { actionsSection, historyItem, mayNote, notesSection, photosSection } from "./incident_actions.js";
import { reportError, showMessage } from "./messages.js";
import { apply, newestOnly } from "./refresh.js";
import { filterParams, state } from "./state.js";
import { $, el, heading, showPanelStatus, statusName, table, tableRow, when } from "./ui.js";

const NEARBY_LIMIT = 50;

const shown = new Set(); // told the id of each incident the panel opens (the table, the map)

/** Call `fn(id)` whenever the detail panel shows an incident (null: it closed). */
export function onIncidentShown(fn) {
  shown.add(fn);
}

const newestDetail = newestOnly();

/** The detail panel: facts, the actions this key may take, history (old → new), notes and
 * photos. `pending`: a correction to fill in again (after a conflict). */
export async function showIncident(id, { pending = null, keepScroll = false } = {}) {
  const panel = $("detail");
  const scroll = panel.closest(".panel")?.scrollTop;
  if (!keepScroll) showPanelStatus(panel, t("incident.title"), t("busy"));
  for (const fn of shown) fn(id);
  const isNewest = newestDetail();
  try {
    const [{ body: feature, etag }, history, notes, photos] = await Promise.all([
      getWithETag(`/incidents/${id}`), getJSON(`/incidents/${id}/history`),
      getJSON(`/incidents/${id}/notes`), getJSON(`/incidents/${id}/photos`)]);
    if (!isNewest()) return;
    const ctx = {
      pending,
      reload: (again) => showIncident(id, { pending: again, keepScroll: true }),
      changed: async () => {
        await showIncident(id, { keepScroll: true });
        await apply(); // the map, the table and the panels show the change
      },
    };
    const actions = mayNote() ? await actionsSection(feature, etag, ctx) : null;
    if (!isNewest()) return;
    state.incident = feature;
    state.incidentVersion = Number(String(etag || "").replace(/\D/g, "")) || null;
    panel.hidden = false;
    panel.replaceChildren(
      heading(categoryName(feature.properties.category), closeIncident),
      table({ className: "facts", rows: facts(feature).map((cells) => tableRow(cells, 1)) }),
      ...(actions ? [actions] : []),
      el("h3", { text: t("incident.history") }),
      el("ol", { className: "history" }, ...history.entries.map(historyItem)),
      notesSection(feature, notes.notes, ctx),
      photosSection(feature, photos.photos, ctx));
    if (keepScroll && scroll !== undefined) panel.closest(".panel").scrollTop = scroll;
    for (const fn of shown) fn(id); // again, now that its position is known (the map's ring)
  } catch (err) {
    if (!isNewest()) return;
    showPanelStatus(panel, t("incident.title"), t("unavailable"));
    reportError(t("incident.loading"), err);
  }
}

function closeIncident() {
  $("detail").hidden = true;
  state.incident = null;
  for (const fn of shown) fn(null);
}

/** [label, value] per row of the detail panel; an empty value reads "–". */
function facts(feature) {
  const p = feature.properties;
  const [lon, lat] = feature.geometry.coordinates;
  const km = (v) => number(Number(v), { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const coordinate = (v) => number(v, { minimumFractionDigits: 5, maximumFractionDigits: 5 });
  const label = (name) => t(`incident.fact.${name}`);
  return [
    [label("severity"), t("incident.severity", { severity: p.severity })], [label("status"), statusName(p.status)],
    [label("occurred"), when(p.occurred_at)], [label("reported"), when(p.reported_at)],
    [label("description"), p.description], [label("unit"), p.unit], [label("source"), p.source],
    // every unit holding it, of both maps, as codes joined with "|" (docs/fields.md)
    [label("jurisdiction"), (p.jurisdictions || "").split("|").filter(Boolean).map((c) => placeName(c)).join(" › ")],
    [label("border"), p.border_distance_km != null
      ? t("incident.border", { km: km(p.border_distance_km), segment: p.border_segment }) : null],
    [label("post"), p.nearest_post_name ? t("incident.post", {
      name: postName(p.nearest_post, p.nearest_post_name), km: km(p.nearest_post_km) }) : null],
    [label("position"), t("incident.position", { lat: coordinate(lat), lon: coordinate(lon),
      precision: p.location_precision_m ?? "–" })],
    [label("id"), feature.id],
  ];
}

export function setUpNearbyTool() {
  const button = $("nearby-tool");
  button.disabled = !state.reader;
  if (!state.reader) button.title = t("nearby.needsReader");
  button.addEventListener("click", () => {
    const on = !nearbyToolOn();
    button.setAttribute("aria-pressed", String(on));
    map.getCanvas().style.cursor = on ? "crosshair" : "";
    if (on) showMessage(t("nearby.clickTheMap"), "info");
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
  showPanelStatus(panel, t("nearby.title"), t("busy"));
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
      const li = el("li", { dataset: { id: f.id }, text: t("nearby.item", {
        km: number(p.distance_m / 1000, { minimumFractionDigits: 2, maximumFractionDigits: 2 }),
        category: categoryName(p.category), severity: p.severity, time: when(p.occurred_at) }) });
      li.addEventListener("click", () => showIncident(f.id));
      list.append(li);
    }
    if (!fc.features.length) list.textContent = t("nearby.none");
    const count = fc.features.length;
    const title = t(count === NEARBY_LIMIT ? "nearby.withinMore" : "nearby.within", { km: radius / 1000, count });
    panel.replaceChildren(heading(title, closeNearby), list);
  } catch (err) {
    showPanelStatus(panel, t("nearby.title"), t("unavailable"));
    reportError(t("nearby.failed"), err);
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
