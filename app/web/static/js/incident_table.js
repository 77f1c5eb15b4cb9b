// The incident table under the map (officers, analysts, admins): the incidents of the current
// filters (GET /incidents with the map's filter parameters, paged with the `next` link),
// sortable by time, severity, status and category (the server sends newest first; a sort
// orders the rows loaded so far), and in step with the map: a row selected (click, Enter or
// Space) rings its point on the map, flies there and opens its details; a point clicked on the
// map selects its row.

import { getJSON, localPath } from "./api.js";
import { categoryName, map, placeName } from "./context.js";
import { number, t } from "./i18n.js";
import { onIncidentShown, showIncident } from "./incident.js";
import { reportError } from "./messages.js";
import { newestOnly } from "./refresh.js";
import { filterParams, state, writeUrl } from "./state.js";
import { $, el, statusName, when } from "./ui.js";

const PAGE = 100; // rows per request
const MAX_ROWS = 1000; // a refresh reloads at most this many of the rows loaded so far
const FLY_ZOOM = 12; // a selected incident is shown at least this close (single points)
const LIFECYCLE = ["reported", "verified", "under_investigation", "solved", "closed", "rejected", "duplicate"];
const COLUMNS = [
  { key: "time", sortable: true },
  { key: "category", sortable: true },
  { key: "severity", sortable: true },
  { key: "status", sortable: true },
  { key: "unit" },
  { key: "province" },
];
const SORTS = {
  time: (f) => f.properties.occurred_at,
  category: (f) => categoryName(f.properties.category).toLocaleLowerCase(),
  severity: (f) => f.properties.severity,
  status: (f) => LIFECYCLE.indexOf(f.properties.status),
};

/** The table's state (also the test hook's `incidentTable`). */
export const incidentTable = { open: false, features: [], next: null, matched: null,
  sort: { key: "time", dir: "desc" }, selected: null, loads: 0 };

const newestLoad = newestOnly();

export function setUpIncidentTable() {
  const bar = $("table-bar");
  bar.hidden = !state.reader;
  if (!state.reader) return;
  $("table-toggle").addEventListener("click", () => setOpen(!incidentTable.open));
  $("table-more").addEventListener("click", loadMore);
  onIncidentShown((id) => select(id, { fly: false, open: false }));
  if (state.tableOpen) setOpen(true);
}

function setOpen(open) {
  incidentTable.open = open;
  state.tableOpen = open;
  $("table-toggle").setAttribute("aria-expanded", String(open));
  $("table-drawer").hidden = !open;
  if (map) {
    map.resize();
    writeUrl(map);
  }
  if (open) refreshIncidentTable();
}

/** One of apply()'s refreshers: the first rows again (as many as were loaded, up to MAX_ROWS). */
export async function refreshIncidentTable() {
  if (!incidentTable.open) return;
  const isNewest = newestLoad();
  const limit = Math.min(MAX_ROWS, Math.max(PAGE, incidentTable.features.length));
  try {
    const fc = await getJSON("/incidents", { ...filterParams(), limit, count: true });
    if (!isNewest()) return;
    incidentTable.features = fc.features;
    incidentTable.matched = fc.numberMatched ?? null;
    incidentTable.next = nextLink(fc);
    incidentTable.loads += 1;
    render();
  } catch (err) {
    reportError(t("table.failed"), err);
  }
}

async function loadMore() {
  if (!incidentTable.next) return;
  const isNewest = newestLoad();
  try {
    const fc = await getJSON(incidentTable.next);
    if (!isNewest()) return;
    incidentTable.features = incidentTable.features.concat(fc.features);
    incidentTable.next = nextLink(fc);
    incidentTable.loads += 1;
    render();
  } catch (err) {
    reportError(t("table.failed"), err);
  }
}

function nextLink(fc) {
  const link = (fc.links || []).find((l) => l.rel === "next");
  return link ? localPath(link.href) : null;
}

function sorted() {
  const { key, dir } = incidentTable.sort;
  const value = SORTS[key];
  const sign = dir === "asc" ? 1 : -1;
  // a stable sort: equal keys keep the server's order (newest first)
  return incidentTable.features.map((f, i) => [f, i]).sort(([a, i], [b, j]) => {
    const va = value(a);
    const vb = value(b);
    if (va < vb) return -sign;
    if (va > vb) return sign;
    return i - j;
  }).map(([f]) => f);
}

function sortBy(key) {
  const s = incidentTable.sort;
  if (s.key === key) s.dir = s.dir === "asc" ? "desc" : "asc";
  else incidentTable.sort = { key, dir: key === "category" ? "asc" : "desc" };
  render();
  $(`sort-${key}`)?.focus();
}

function render() {
  const { sort } = incidentTable;
  const head = el("tr", {}, ...COLUMNS.map((c) => {
    const th = el("th", { scope: "col" });
    if (!c.sortable) {
      th.textContent = t(`table.col.${c.key}`);
      return th;
    }
    const on = sort.key === c.key;
    th.setAttribute("aria-sort", on ? (sort.dir === "asc" ? "ascending" : "descending") : "none");
    const button = el("button", { type: "button", id: `sort-${c.key}`, className: "sort",
      text: t(`table.col.${c.key}`) }, el("span", { className: on ? `sort-mark ${sort.dir}` : "sort-mark" }));
    button.title = t("table.sortBy", { column: t(`table.col.${c.key}`) });
    button.addEventListener("click", () => sortBy(c.key));
    th.append(button);
    return th;
  }));
  const rows = sorted().map((f) => row(f));
  $("incident-table").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  const loaded = incidentTable.features.length;
  $("table-count").textContent = incidentTable.matched !== null
    ? t("table.countOf", { count: loaded, total: incidentTable.matched })
    : t("table.count", { count: loaded });
  $("table-more").hidden = !incidentTable.next;
  $("table-empty").hidden = loaded > 0;
  markSelected(false);
}

function row(f) {
  const p = f.properties;
  const tr = el("tr", { tabIndex: 0, dataset: { id: f.id } },
    el("td", { className: "time", text: when(p.occurred_at) }), el("td", { text: categoryName(p.category) }),
    el("td", { className: "num", text: number(p.severity) }), el("td", { text: statusName(p.status) }),
    el("td", { text: p.unit || "–" }), el("td", { text: p.province ? placeName(p.province) : "–" }));
  tr.addEventListener("click", () => select(f.id, { fly: true, open: true }));
  tr.addEventListener("keydown", (e) => {
    const key = e.key.toLowerCase();
    if (key === "enter" || key === " ") {
      e.preventDefault();
      select(f.id, { fly: true, open: true });
    } else if (key === "arrowdown" || key === "arrowup") {
      e.preventDefault();
      (key === "arrowdown" ? tr.nextElementSibling : tr.previousElementSibling)?.focus();
    }
  });
  return tr;
}

/** Select an incident: its row marked (and scrolled to), its point ringed on the map; `fly`:
 * the map flies there; `open`: its details open. */
export function select(id, { fly, open }) {
  incidentTable.selected = id;
  const f = id ? incidentTable.features.find((x) => x.id === id) : null;
  ring(f || (id && state.incident?.id === id ? state.incident : null));
  if (incidentTable.open) markSelected(true);
  if (f && fly && map) {
    map.flyTo({ center: f.geometry.coordinates, zoom: Math.max(map.getZoom(), FLY_ZOOM), duration: 800 });
  }
  if (id && open) showIncident(id);
}

function markSelected(scroll) {
  for (const tr of $("incident-table").tBodies[0]?.rows || []) {
    const on = tr.dataset.id === incidentTable.selected;
    tr.classList.toggle("selected", on);
    if (on) tr.setAttribute("aria-current", "true");
    else tr.removeAttribute("aria-current");
    if (on && scroll) tr.scrollIntoView({ block: "nearest" });
  }
}

/** The ring around the selected incident's point (a layer of its own above the incidents). */
function ring(feature) {
  if (!map || !map.getSource("incidents")) return;
  if (!map.getSource("selected-incident")) {
    map.addSource("selected-incident", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
    map.addLayer({ id: "selected-incident-ring", type: "circle", source: "selected-incident",
      paint: { "circle-radius": 13, "circle-color": "rgba(0,0,0,0)", "circle-stroke-color": "#f08c00",
        "circle-stroke-width": 3 } });
  }
  const features = feature ? [{ type: "Feature", id: feature.id, geometry: feature.geometry,
    properties: { id: feature.id } }] : [];
  map.getSource("selected-incident").setData({ type: "FeatureCollection", features });
}
