// A province and its neighbours: both highlighted on the map, the boundaries they share lit
// with a count of the incidents near each, and the table in the panel.

import { getJSON } from "./api.js";
import { map, placeName } from "./context.js";
import { highlight, showShared } from "./mapview.js";
import { localName, PLACE_LANG } from "./names.js";
import { number, t } from "./i18n.js";
import { reportError } from "./messages.js";
import { newestOnly } from "./refresh.js";
import { filterParams, state, writeUrl } from "./state.js";
import { $, el, heading, showPanelStatus, table, tableRow } from "./ui.js";

const SHARED_KM = 5;
const sharedBadges = []; // the count markers on the shared boundaries
const newestProvince = newestOnly();

export async function selectProvince(code) {
  state.selected = code;
  const panel = $("adjacency");
  showPanelStatus(panel, placeName(code), t("neighbours.loading"));
  try {
    const isNewest = newestProvince();
    const fc = await getJSON(`/jurisdictions/${encodeURIComponent(code)}/neighbours`,
      { ...filterParams(), lang: PLACE_LANG });
    if (!isNewest()) return;
    state.neighbours = fc.features.map((f) => f.properties.code);
    highlight(map, code, state.neighbours);
    const near = await sharedZones(code, state.neighbours);
    if (!isNewest()) return;
    renderNeighbours(code, fc.features, near);
  } catch (err) {
    showPanelStatus(panel, placeName(code), t("neighbours.unavailable"));
    reportError(t("neighbours.failed"), err);
  }
  writeUrl(map);
}

/** The selected province again, with the filters as they are now. */
export function refreshNeighbours() {
  return state.selected ? selectProvince(state.selected) : undefined;
}

export function clearProvince() {
  state.selected = null;
  state.neighbours = [];
  highlight(map, null, []);
  showShared(map, [], sharedBadges);
  $("adjacency").hidden = true;
  writeUrl(map);
}

/** Incidents within 5 km of each shared boundary (with the filters); readers also get the
 * lines themselves (`limit=0`: the line and the count, no incident list). */
async function sharedZones(code, neighbours) {
  const near = new Map();
  if (state.reader) {
    const zones = await Promise.all(neighbours.map((other) => getJSON(
      `/jurisdictions/${encodeURIComponent(code)}/shared-zone/${encodeURIComponent(other)}`,
      { ...filterParams(), km: SHARED_KM, limit: 0 })));
    const lines = zones.map((z) => ({ code: z.b, count: z.numberMatched, feature: z.shared_line }));
    for (const l of lines) near.set(l.code, l.count);
    showShared(map, lines, sharedBadges);
  } else {
    const cross = await getJSON("/analysis/cross-boundary", { ...filterParams(), km: SHARED_KM });
    for (const p of cross.pairs) {
      if (p.a === code) near.set(p.b, p.count);
      if (p.b === code) near.set(p.a, p.count);
    }
  }
  return near;
}

function renderNeighbours(code, features, near) {
  const rows = features.map((f) => {
    const p = f.properties;
    const tr = tableRow([localName(p), p.shared_km == null ? null : number(p.shared_km, { maximumFractionDigits: 1 }), p.incident_count, near.get(p.code)]);
    tr.dataset.code = p.code;
    tr.addEventListener("click", () => selectProvince(p.code));
    return tr;
  });
  $("adjacency").replaceChildren(
    heading(t("neighbours.title", { name: placeName(code) }), clearProvince),
    table({ id: "neighbour-table", head: columns(), rows }),
    el("p", { className: "muted small", text: t("neighbours.note", { km: SHARED_KM }) }));
}

function columns() {
  return [t("neighbours.col.name"), [t("neighbours.col.km"), t("neighbours.col.kmTitle")],
    [t("neighbours.col.in"), t("neighbours.col.inTitle")],
    [t("neighbours.col.near"), t("neighbours.col.nearTitle", { km: SHARED_KM })]];
}
