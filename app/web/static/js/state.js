// The dashboard's state, its reflection in the address bar (a shareable link) and the
// incident filters every layer, the statistics and the exports share.

// Months are calendar months in Vietnam's time (UTC+7), as /analysis/stats groups them.
export const TZ_OFFSET = "+07:00";

/** The layer toggles, in the side bar's order (their names are in controls.js). */
export const LAYERS = [
  { id: "incidents", reader: true },
  { id: "density", viewerOnly: true },
  { id: "heatmap" },
  { id: "hotspots" },
  { id: "emerging" },
  { id: "posts" },
  { id: "postareas" },
  { id: "borderzone" },
  { id: "boundaries" },
];

// The administrative map before 1 July 2025 (Resolution 202/2025/QH15): its last day.
export const LAST_DAY_BEFORE_2025 = "2025-06-30";

export const state = {
  me: null,
  reader: false, // may read incident-level data (officer, analyst, admin)
  categories: [],
  statuses: [],
  months: [], // every month from the first to the last incident, "YYYY-MM"
  filters: { from: null, to: null, categories: [], statuses: [], severityMin: null, cooperation: null },
  compare: "none", // the statistics panel's comparison: none, previous_period, same_period_last_year
  cooperationAreas: [], // /cooperation-areas: id, name, example, in_force
  layers: { incidents: true, density: true, heatmap: false, hotspots: false, emerging: false, posts: true,
    postareas: false, borderzone: false, boundaries: true },
  view: null, // { lon, lat, zoom } from the link, else the default
  era: { mode: "today", date: "" }, // the administrative map shown: today, before 2025-07-01, a day
  provinces: [], // the codes of the provinces of that map (the province list)
  selected: null, // province code whose neighbours are highlighted
  neighbours: [], // their codes, as /jurisdictions/{code}/neighbours answered
  nearby: null, // { lon, lat, radius_m, ids: [...] }
  incident: null, // the incident shown in the detail panel
  incidentVersion: null, // its version as read (the ETag the page sends as If-Match)
  tableOpen: false, // the incident table under the map is open (table=1 in the address bar)
  applied: 0, // bumped whenever the filters reached every layer
};

/** "YYYY-MM" → the first instant of that month (UTC+7). */
export function monthStart(month) {
  return `${month}-01T00:00:00${TZ_OFFSET}`;
}

/** "YYYY-MM" → the last instant of that month (the API's end is inclusive). */
export function monthEnd(month) {
  const [y, m] = month.split("-").map(Number);
  const last = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return `${month}-${String(last).padStart(2, "0")}T23:59:59.999999${TZ_OFFSET}`;
}

/** Every month from a to b inclusive ("YYYY-MM"). */
export function monthRange(a, b) {
  const out = [];
  let [y, m] = a.split("-").map(Number);
  const [yb, mb] = b.split("-").map(Number);
  while (y < yb || (y === yb && m <= mb)) {
    out.push(`${y}-${String(m).padStart(2, "0")}`);
    m += 1;
    if (m > 12) { m = 1; y += 1; }
  }
  return out;
}

/** The months of the time filter from /analysis/stats' month groups: every month from the
 * first to the last with incidents, or this month when there are none. */
export function monthsOf(groups) {
  const keys = groups.map((g) => g.key).sort();
  if (!keys.length) {
    const now = new Date();
    return [`${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, "0")}`];
  }
  return monthRange(keys[0], keys[keys.length - 1]);
}

/** The day whose administrative units the map shows (`at=` of /jurisdictions and of the
 * jurisdiction tiles), or null for today (the server's today in Vietnam). */
export function eraDay() {
  if (state.era.mode === "before") return LAST_DAY_BEFORE_2025;
  if (state.era.mode === "date" && state.era.date) return state.era.date;
  return null;
}

/** `{ at }` for the era, or nothing for today. */
export function eraParams() {
  const day = eraDay();
  return day ? { at: day } : {};
}

/** The query parameters of GET /incidents for the current filters (without bbox). */
export function filterParams({ withTime = true } = {}) {
  const f = state.filters;
  const p = {};
  if (withTime && (f.from || f.to)) {
    p.datetime = `${f.from ? monthStart(f.from) : ".."}/${f.to ? monthEnd(f.to) : ".."}`;
  }
  if (f.categories.length) p.category = f.categories.join(",");
  if (f.statuses.length) p.status = f.statuses.join(",");
  if (f.severityMin) p.severity_min = f.severityMin;
  if (f.cooperation) p.cooperation = f.cooperation;
  return p;
}

/** Read filters, layers, view and selection from the address bar. */
export function readUrl() {
  const q = new URLSearchParams(window.location.search);
  const month = /^\d{4}-\d{2}$/;
  const list = (name) => (q.get(name) || "").split(",").filter(Boolean);
  if (month.test(q.get("from") || "")) state.filters.from = q.get("from");
  if (month.test(q.get("to") || "")) state.filters.to = q.get("to");
  state.filters.categories = list("category");
  state.filters.statuses = list("status");
  const sev = Number(q.get("severity_min"));
  state.filters.severityMin = sev >= 1 && sev <= 5 ? sev : null;
  const area = Number(q.get("cooperation"));
  state.filters.cooperation = Number.isInteger(area) && area > 0 ? area : null;
  if (q.has("layers")) {
    const on = new Set(list("layers"));
    for (const layer of LAYERS) state.layers[layer.id] = on.has(layer.id);
  }
  const at = list("at").map(Number);
  if (at.length === 3 && at.every(Number.isFinite)) {
    state.view = { lon: at[0], lat: at[1], zoom: at[2] };
  }
  if (q.get("province")) state.selected = q.get("province");
  if (["previous_period", "same_period_last_year"].includes(q.get("compare"))) state.compare = q.get("compare");
  state.tableOpen = q.get("table") === "1";
  const era = q.get("era") || "";
  if (era === "before") state.era = { mode: "before", date: "" };
  else if (isDay(era)) state.era = { mode: "date", date: era };
}

/** Whether `text` is a real calendar day written YYYY-MM-DD. */
function isDay(text) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(text)) return false;
  const d = new Date(`${text}T00:00:00Z`);
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === text;
}

/** Write the state into the address bar (replaceState: no history entry per pan). */
export function writeUrl(map) {
  const q = new URLSearchParams();
  const f = state.filters;
  if (f.from) q.set("from", f.from);
  if (f.to) q.set("to", f.to);
  if (f.categories.length) q.set("category", f.categories.join(","));
  if (f.statuses.length) q.set("status", f.statuses.join(","));
  if (f.severityMin) q.set("severity_min", String(f.severityMin));
  if (f.cooperation) q.set("cooperation", String(f.cooperation));
  q.set("layers", LAYERS.filter((l) => state.layers[l.id]).map((l) => l.id).join(","));
  if (map) {
    const c = map.getCenter();
    q.set("at", [c.lng.toFixed(4), c.lat.toFixed(4), map.getZoom().toFixed(2)].join(","));
  }
  if (state.selected) q.set("province", state.selected);
  if (state.compare !== "none") q.set("compare", state.compare);
  if (state.tableOpen) q.set("table", "1");
  if (state.era.mode === "before") q.set("era", "before");
  else if (state.era.mode === "date" && state.era.date) q.set("era", state.era.date);
  const search = `?${q.toString().replaceAll("%2C", ",")}`;
  // replaceState is a round trip to the browser process: only on a change
  if (search !== window.location.search) {
    window.history.replaceState(null, "", `${window.location.pathname}${search}`);
  }
}
