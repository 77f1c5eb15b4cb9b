// Borderwatch dashboard: sign-in, filters shared by every layer, the map, the panels.
// Test hook (documented in docs/dashboard.md): window.borderwatch = { state, map, settled(),
// renderedIncidents() }.

import { ApiError, clearKey, getBlob, getJSON, onBusy, pending, setKey, takeKeyFromUrl } from "./api.js";
import { trendChart } from "./chart.js";
import { addBaseLayers, addDataLayers, addLabels, circlePolygon, createMap, highlight,
  HOTSPOT_COLOURS, PALETTE, POST_COLOURS, renderedIncidents, setLayerVisibility, showShared } from "./mapview.js";
import { filterParams, LAYERS, monthRange, readUrl, state, writeUrl } from "./state.js";

const $ = (id) => document.getElementById(id);
const READERS = new Set(["officer", "analyst", "admin"]);
const EXPORTERS = new Set(["analyst", "admin"]);
const STATUS_LABEL = (s) => s.replaceAll("_", " ");
const NEARBY_LIMIT = 50;
const PLAY_STEP_MS = 1500;
const LIVE_CHECK_MS = 30000; // how often the map asks whether incidents changed

let map = null;
let names = new Map(); // jurisdiction code → name
let applying = 0;
const sharedBadges = [];
const SHARED_KM = 5;
const hook = { state, get map() { return map; }, settled, renderedIncidents: () => renderedIncidents(map) };
window.borderwatch = hook;

// ---------- messages and loading ----------

function showMessage(text, kind = "error") {
  const box = $("messages");
  for (const existing of box.children) {
    if (existing.dataset.text === text) return;
  }
  const item = document.createElement("div");
  item.className = `message ${kind}`;
  item.dataset.text = text;
  item.textContent = text;
  const close = document.createElement("button");
  close.type = "button";
  close.textContent = "×";
  close.setAttribute("aria-label", "Dismiss");
  close.addEventListener("click", () => item.remove());
  item.append(close);
  box.append(item);
  if (kind !== "error") setTimeout(() => item.remove(), 6000);
}

/** A failed request as a message a person can act on; a refused key asks for a new one. */
function reportError(what, err) {
  if (err && err.name === "AbortError") return;
  if (err instanceof ApiError && err.status === 401) {
    showMessage(`Your key was refused (${err.message}). Sign in again.`);
    askForKey(err.message);
    return;
  }
  if (err instanceof ApiError && err.status === 403) {
    showMessage(`${what}: not allowed for your role (${err.message}).`);
    return;
  }
  if (err instanceof ApiError && err.status === 429) {
    showMessage(`${what}: too many requests, wait a moment (${err.message}).`);
    return;
  }
  const detail = err instanceof ApiError ? `${err.title}: ${err.message}` : String(err);
  showMessage(`${what} failed — ${detail}`);
}

let requestsBusy = 0;
let tilesBusy = false;
function showBusy() {
  $("busy").hidden = requestsBusy === 0 && !tilesBusy;
}
onBusy((n) => {
  requestsBusy = n;
  showBusy();
});

/** Resolves when no request is in flight and the map has drawn every tile (tests, tools). */
function settled(timeoutMs = 30000) {
  const until = Date.now() + timeoutMs;
  let calm = 0;
  return new Promise((resolve, reject) => {
    const check = () => {
      const idle = map && map.loaded() && map.areTilesLoaded() && !map.isMoving()
        && pending() === 0 && applying === 0;
      calm = idle ? calm + 1 : 0;
      if (calm >= 3) { resolve(true); return; }
      if (Date.now() > until) { reject(new Error("dashboard did not settle")); return; }
      setTimeout(check, 100);
    };
    check();
  });
}

// ---------- sign-in ----------

function askForKey(reason) {
  const dialog = $("signin");
  if (reason) $("signin-reason").textContent = `The key was refused: ${reason}. Paste a valid API key.`;
  if (!dialog.open) dialog.showModal();
}

$("signin-form").addEventListener("submit", () => {
  setKey($("signin-key").value.trim());
  window.location.reload();
});

$("sign-out").addEventListener("click", () => {
  clearKey();
  window.location.reload();
});

// ---------- filters and layer controls ----------

function buildControls() {
  const f = state.filters;
  const cats = $("f-categories");
  state.categories.forEach((c, i) => {
    const label = document.createElement("label");
    label.title = c.name_vi;
    label.innerHTML = `<input type="checkbox" name="category" value="${c.code}">`;
    label.append(swatch({ background: PALETTE[i % PALETTE.length] }), document.createTextNode(c.name));
    label.querySelector("input").checked = f.categories.includes(c.code);
    cats.append(label);
  });
  cats.addEventListener("change", () => {
    f.categories = [...cats.querySelectorAll("input:checked")].map((i) => i.value);
    scheduleApply();
  });
  $("all-categories").addEventListener("click", () => {
    for (const input of cats.querySelectorAll("input")) input.checked = false;
    f.categories = [];
    scheduleApply();
  });

  const statuses = $("f-statuses");
  for (const s of state.statuses) {
    const label = document.createElement("label");
    label.innerHTML = `<input type="checkbox" name="status" value="${s}">`;
    label.append(document.createTextNode(STATUS_LABEL(s)));
    label.querySelector("input").checked = f.statuses.includes(s);
    statuses.append(label);
  }
  statuses.addEventListener("change", () => {
    f.statuses = [...statuses.querySelectorAll("input:checked")].map((i) => i.value);
    scheduleApply();
  });

  $("f-severity").value = f.severityMin ? String(f.severityMin) : "";
  $("f-severity").addEventListener("change", (e) => {
    f.severityMin = e.target.value ? Number(e.target.value) : null;
    scheduleApply();
  });

  const first = state.months[0];
  const last = state.months[state.months.length - 1];
  for (const id of ["f-from", "f-to"]) {
    $(id).min = first;
    $(id).max = last;
  }
  $("f-from").value = f.from || "";
  $("f-to").value = f.to || "";
  $("f-from").addEventListener("change", (e) => { f.from = e.target.value || null; syncTime(); scheduleApply(); });
  $("f-to").addEventListener("change", (e) => { f.to = e.target.value || null; syncTime(); scheduleApply(); });

  const slider = $("month-slider");
  slider.max = String(state.months.length - 1);
  slider.addEventListener("input", () => {
    const m = state.months[Number(slider.value)];
    f.from = m;
    f.to = m;
    syncTime();
    scheduleApply(150);
  });
  $("all-months").addEventListener("click", () => {
    stopPlaying();
    f.from = null;
    f.to = null;
    syncTime();
    scheduleApply(0);
  });
  $("play").addEventListener("click", () => (playing ? stopPlaying() : play()));
  syncTime();

  const toggles = $("layer-toggles");
  for (const layer of LAYERS) {
    if (layer.reader && !state.reader) continue;
    if (layer.viewerOnly && state.reader) continue;
    const label = document.createElement("label");
    label.innerHTML = `<input type="checkbox" data-layer="${layer.id}">`;
    label.append(document.createTextNode(layer.label));
    label.querySelector("input").checked = state.layers[layer.id];
    toggles.append(label);
  }
  toggles.addEventListener("change", (e) => {
    const id = e.target.dataset.layer;
    state.layers[id] = e.target.checked;
    setLayerVisibility(map, state.layers, state.reader);
    if (id === "borderzone" && e.target.checked) refreshBorderZone();
    $("bands-summary").hidden = !state.layers.borderzone;
    updateHint();
    writeUrl(map);
  });
  buildLegend();

  for (const button of document.querySelectorAll("[data-export]")) {
    button.disabled = !EXPORTERS.has(state.me.role);
    if (button.disabled) button.title = "Exports need an analyst or admin key";
    button.addEventListener("click", () => exportView(button.dataset.export));
  }
  const nearbyButton = $("nearby-tool");
  nearbyButton.disabled = !state.reader;
  if (!state.reader) nearbyButton.title = "Incident-level tools need an officer, analyst or admin key";
  nearbyButton.addEventListener("click", () => {
    const on = nearbyButton.getAttribute("aria-pressed") !== "true";
    nearbyButton.setAttribute("aria-pressed", String(on));
    map.getCanvas().style.cursor = on ? "crosshair" : "";
    if (on) showMessage("Click the map to list the incidents around that point.", "info");
  });
  $("copy-link").addEventListener("click", async () => {
    writeUrl(map);
    try {
      await navigator.clipboard.writeText(window.location.href);
      showMessage("Link copied (it holds no key: whoever opens it signs in with their own).", "info");
    } catch {
      showMessage(`Share this link: ${window.location.href}`, "info");
    }
  });
}

// Colours are set through the style object, never a style="" attribute: the page's Content
// Security Policy allows no inline style (docs/access.md, "Headers").
function swatch(style, round = false) {
  const s = document.createElement("span");
  s.className = round ? "swatch round" : "swatch";
  Object.assign(s.style, style);
  return s;
}

function legendBlock(title, items) {
  const head = document.createElement("div");
  head.className = "legend-title";
  head.textContent = title;
  const row = document.createElement("div");
  row.className = "legend-row";
  for (const [sw, label] of items) {
    const item = document.createElement("span");
    item.append(sw, document.createTextNode(label));
    row.append(item);
  }
  return [head, row];
}

function buildLegend() {
  const hot = [[3, "99 %"], [2, "95 %"], [1, "90 % hot"], [-1, "90 %"], [-2, "95 %"], [-3, "99 % cold"]]
    .map(([bin, label]) => [swatch({ background: HOTSPOT_COLOURS[bin] }), label]);
  const posts = Object.entries(POST_COLOURS)
    .map(([kind, colour]) => [swatch({ borderColor: colour }, true), STATUS_LABEL(kind)]);
  const note = document.createElement("div");
  note.className = "legend-note";
  note.textContent = "Circles: colour = category; size = count (aggregates) or severity; dark outline = severity 4–5.";
  $("legend").replaceChildren(
    ...legendBlock("Hot spots (Gi*)", hot), ...legendBlock("Border posts", posts), note);
}

function syncTime() {
  const f = state.filters;
  if (f.from && f.to && f.from > f.to) [f.from, f.to] = [f.to, f.from];
  // an open end shows the first or last month with data: the same incidents
  $("f-from").value = f.from || state.months[0];
  $("f-to").value = f.to || state.months[state.months.length - 1];
  const label = !f.from && !f.to ? "All months"
    : f.from === f.to ? `Month ${f.from}` : `${f.from || "start"} – ${f.to || "now"}`;
  $("month-label").textContent = label;
  if (f.from && f.from === f.to) $("month-slider").value = String(state.months.indexOf(f.from));
}

let playing = null;

function play() {
  const f = state.filters;
  let i = f.from && f.from === f.to ? state.months.indexOf(f.from) + 1 : 0;
  if (i >= state.months.length) i = 0;
  $("play").textContent = "⏸";
  $("play").setAttribute("aria-label", "Pause");
  const step = async () => {
    if (!playing) return;
    if (i >= state.months.length) { stopPlaying(); return; }
    f.from = state.months[i];
    f.to = state.months[i];
    i += 1;
    syncTime();
    await apply();
    try { await settled(); } catch { /* a slow tile: keep playing */ }
    if (playing) playing = setTimeout(step, PLAY_STEP_MS);
  };
  playing = setTimeout(step, 0);
}

function stopPlaying() {
  if (playing) clearTimeout(playing);
  playing = null;
  $("play").textContent = "▶";
  $("play").setAttribute("aria-label", "Play month by month");
}

let applyTimer = null;

function scheduleApply(delay = 250) {
  if (applyTimer) clearTimeout(applyTimer);
  else applying += 1;
  applyTimer = setTimeout(async () => {
    applyTimer = null;
    try {
      await apply();
    } finally {
      applying -= 1;
    }
  }, delay);
}

/** Push the filters to every layer, the statistics and the open panels. */
async function apply() {
  applying += 1;
  try {
    writeUrl(map);
    const tasks = [refreshTiles(), refreshStats()];
    if (state.layers.borderzone) tasks.push(refreshBorderZone());
    if (state.selected) tasks.push(selectProvince(state.selected));
    if (state.nearby) tasks.push(runNearby(state.nearby.lon, state.nearby.lat));
    await Promise.all(tasks);
    state.applied += 1;
  } finally {
    applying -= 1;
  }
}

async function tileUrls(layer) {
  const tj = await getJSON(`/tiles/${layer}.json`, filterParams());
  return tj.tiles;
}

// answers can arrive out of order while the slider moves: only the newest request may draw
const latest = { tiles: 0, bands: 0, province: 0, nearby: 0 };

async function refreshTiles() {
  const seq = ++latest.tiles;
  try {
    const [incidents, hotspots] = await Promise.all([tileUrls("incidents"), tileUrls("hotspots")]);
    if (seq !== latest.tiles) return;
    map.getSource("incidents").setTiles(incidents);
    map.getSource("hotspots").setTiles(hotspots);
  } catch (err) {
    reportError("Loading the incident layer", err);
  }
}

async function refreshBorderZone() {
  try {
    const seq = ++latest.bands;
    const fc = await getJSON("/analysis/border-zone", { ...filterParams(), simplify: 1000 });
    if (seq !== latest.bands) return;
    map.getSource("bands").setData(fc);
    renderBands(fc.features);
  } catch (err) {
    reportError("Loading the border-zone bands", err);
  }
}

/** Incidents per border segment and distance band (the whole border, not just the view). */
function renderBands(features) {
  const box = $("bands-summary");
  const segments = [...new Set(features.map((f) => f.properties.segment))];
  const bands = [...new Set(features.map((f) => `${f.properties.from_km}–${f.properties.to_km}`))];
  const count = new Map(features.map((f) => [`${f.properties.segment} ${f.properties.from_km}–${f.properties.to_km}`, f.properties.count]));
  const table = document.createElement("table");
  table.id = "band-table";
  table.innerHTML = `<thead><tr><th>km from border</th>${segments.map((s) => `<th>${s}</th>`).join("")}</tr></thead>`;
  const tbody = document.createElement("tbody");
  for (const band of bands) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${band}</td>${segments.map((s) => `<td>${count.get(`${s} ${band}`) ?? 0}</td>`).join("")}`;
    tbody.append(tr);
  }
  table.append(tbody);
  const h = document.createElement("h2");
  h.textContent = "Border zone: incidents per band";
  box.replaceChildren(h, table);
  box.hidden = !state.layers.borderzone;
}

function updateHint() {
  const hint = $("map-hint");
  const wantHot = state.layers.hotspots && map.getZoom() < 5;
  hint.hidden = !wantHot;
  hint.textContent = wantHot ? "Zoom in (level 5 or more) to see the 5 km hot-spot cells." : "";
}

// ---------- statistics for the current view ----------

function viewBbox() {
  const b = map.getBounds();
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  return [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -90, 90),
    clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -90, 90)].map((v) => v.toFixed(5)).join(",");
}

let statsAbort = null;

async function refreshStats() {
  if (statsAbort) statsAbort.abort();
  statsAbort = new AbortController();
  const signal = statsAbort.signal;
  const bbox = viewBbox();
  try {
    const [byCategory, byMonth, cross] = await Promise.all([
      getJSON("/analysis/stats", { ...filterParams(), bbox, group_by: "category" }, signal),
      getJSON("/analysis/stats", { ...filterParams({ withTime: false }), bbox, group_by: "month" }, signal),
      getJSON("/analysis/cross-boundary", { ...filterParams(), bbox }, signal),
    ]);
    renderStats(byCategory, byMonth, cross.pairs);
  } catch (err) {
    if (err.name === "AbortError") return;
    $("stats-body").textContent = "Statistics unavailable.";
    reportError("Loading the statistics", err);
  }
}

function pct(v) {
  return v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)} %`;
}

function renderStats(byCategory, byMonth, pairs) {
  const body = $("stats-body");
  body.className = "";
  body.replaceChildren();
  const head = document.createElement("div");
  head.className = "kpis";
  head.innerHTML = `<div><span class="kpi" id="stat-total">${byCategory.total.toLocaleString("en-US")}</span> incidents</div>`
    + `<div><span class="kpi" id="stat-clearance">${pct(byCategory.clearance_rate)}</span> cleared</div>`;
  body.append(head);

  const max = Math.max(1, ...byCategory.groups.map((g) => g.count));
  const list = document.createElement("div");
  list.className = "bars";
  list.id = "stat-categories";
  const index = new Map(state.categories.map((c, i) => [c.code, i]));
  for (const g of byCategory.groups) {
    const row = document.createElement("div");
    row.className = "bar-row";
    row.dataset.category = g.key;
    row.dataset.count = g.count;
    const colour = PALETTE[(index.get(g.key) ?? 0) % PALETTE.length];
    row.innerHTML = `<span class="bar-label"></span><span class="bar-track"><span class="bar-fill"></span></span><span class="bar-value">${g.count}</span>`;
    Object.assign(row.querySelector(".bar-fill").style, { width: `${(100 * g.count) / max}%`, background: colour });
    row.querySelector(".bar-label").textContent = g.name || g.key;
    list.append(row);
  }
  if (!byCategory.groups.length) list.textContent = "No incidents match in this view.";
  body.append(list);

  const h = document.createElement("h3");
  h.textContent = "Per month";
  body.append(h);
  body.append(trendChart({ months: state.months, groups: byMonth.groups, from: state.filters.from,
    to: state.filters.to, onPick: (m) => { stopPlaying(); state.filters.from = m; state.filters.to = m; syncTime(); scheduleApply(0); } }));

  const h2 = document.createElement("h3");
  h2.textContent = "Busiest cross-boundary pairs (5 km)";
  body.append(h2);
  const ol = document.createElement("ol");
  ol.className = "pairs";
  for (const p of pairs.filter((q) => q.count > 0).slice(0, 5)) {
    const li = document.createElement("li");
    li.textContent = `${names.get(p.a) || p.a} – ${names.get(p.b) || p.b}: ${p.count}`;
    ol.append(li);
  }
  if (!ol.children.length) ol.textContent = "None in this view.";
  body.append(ol);
}

// ---------- provinces and their neighbours ----------

async function selectProvince(code) {
  state.selected = code;
  const panel = $("adjacency");
  panel.hidden = false;
  const title = names.get(code) || code;
  panel.innerHTML = "<h2></h2><p class='muted'>Loading neighbours…</p>";
  panel.querySelector("h2").textContent = title;
  try {
    const seq = ++latest.province;
    const fc = await getJSON(`/jurisdictions/${encodeURIComponent(code)}/neighbours`, filterParams());
    if (seq !== latest.province) return;
    state.neighbours = fc.features.map((f) => f.properties.code);
    highlight(map, code, state.neighbours);
    const near = await sharedZones(code, state.neighbours);
    if (seq !== latest.province) return;
    renderNeighbours(code, fc.features, near);
  } catch (err) {
    panel.innerHTML = "<h2></h2><p class='muted'>Neighbours unavailable.</p>";
    panel.querySelector("h2").textContent = title;
    reportError("Loading the neighbours", err);
  }
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
    const table = await getJSON("/analysis/cross-boundary", { ...filterParams(), km: SHARED_KM });
    for (const p of table.pairs) {
      if (p.a === code) near.set(p.b, p.count);
      if (p.b === code) near.set(p.a, p.count);
    }
  }
  return near;
}

function renderNeighbours(code, features, near) {
  const panel = $("adjacency");
  panel.replaceChildren();
  const h = document.createElement("h2");
  h.textContent = `${names.get(code) || code} and its neighbours`;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "close";
  close.textContent = "×";
  close.setAttribute("aria-label", "Close");
  close.addEventListener("click", clearProvince);
  h.append(close);
  panel.append(h);
  const table = document.createElement("table");
  table.id = "neighbour-table";
  table.innerHTML = "<thead><tr><th>neighbour</th><th title='shared boundary'>km</th><th title='incidents in the neighbour'>in it</th><th title='incidents within 5 km of the shared boundary'>near line</th></tr></thead>";
  const tbody = document.createElement("tbody");
  for (const f of features) {
    const p = f.properties;
    const tr = document.createElement("tr");
    tr.dataset.code = p.code;
    tr.innerHTML = `<td></td><td>${p.shared_km}</td><td>${p.incident_count ?? "–"}</td><td>${near.get(p.code) ?? "–"}</td>`;
    tr.firstChild.textContent = p.name;
    tr.addEventListener("click", () => selectProvince(p.code));
    tbody.append(tr);
  }
  table.append(tbody);
  panel.append(table);
  const note = document.createElement("p");
  note.className = "muted small";
  note.textContent = "Counts follow the filters; \"near line\" counts the incidents within 5 km of the boundary the two share (lit on the map).";
  panel.append(note);
}

function clearProvince() {
  state.selected = null;
  state.neighbours = [];
  highlight(map, null, []);
  showShared(map, [], sharedBadges);
  $("adjacency").hidden = true;
  writeUrl(map);
}

// ---------- incidents: detail and nearby ----------

function row(label, value) {
  const tr = document.createElement("tr");
  tr.innerHTML = "<th></th><td></td>";
  tr.children[0].textContent = label;
  tr.children[1].textContent = value ?? "–";
  return tr;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString("en-GB", { timeZone: "Asia/Ho_Chi_Minh", dateStyle: "medium", timeStyle: "short" }) : "–";
}

function categoryName(code) {
  const c = state.categories.find((x) => x.code === code);
  return c ? c.name : code;
}

async function showIncident(id) {
  const panel = $("detail");
  panel.hidden = false;
  panel.innerHTML = "<h2>Incident</h2><p class='muted'>Loading…</p>";
  try {
    const [feature, history] = await Promise.all([
      getJSON(`/incidents/${id}`), getJSON(`/incidents/${id}/history`)]);
    state.incident = feature;
    const p = feature.properties;
    panel.replaceChildren();
    const h = document.createElement("h2");
    h.textContent = categoryName(p.category);
    const close = document.createElement("button");
    close.type = "button";
    close.className = "close";
    close.textContent = "×";
    close.setAttribute("aria-label", "Close");
    close.addEventListener("click", () => { panel.hidden = true; state.incident = null; });
    h.append(close);
    panel.append(h);
    const table = document.createElement("table");
    table.className = "facts";
    const [lon, lat] = feature.geometry.coordinates;
    table.append(
      row("severity", `${p.severity} / 5`), row("status", STATUS_LABEL(p.status)),
      row("occurred", when(p.occurred_at)), row("reported", when(p.reported_at)),
      row("description", p.description), row("unit", p.unit), row("source", p.source),
      row("jurisdiction", (p.jurisdictions || []).map((c) => names.get(c) || c).join(" › ")),
      row("to the border", p.border_distance_km != null ? `${Number(p.border_distance_km).toFixed(1)} km (${p.border_segment})` : null),
      row("nearest post", p.nearest_post_name ? `${p.nearest_post_name}, ${Number(p.nearest_post_km).toFixed(1)} km` : null),
      row("position", `${lat.toFixed(5)}, ${lon.toFixed(5)} (± ${p.location_precision_m} m)`),
      row("id", feature.id));
    panel.append(table);
    const hh = document.createElement("h3");
    hh.textContent = "History";
    panel.append(hh);
    const ol = document.createElement("ol");
    ol.className = "history";
    for (const e of history.entries) {
      const li = document.createElement("li");
      const changed = Object.keys(e.changes || {}).filter((k) => !["updated_at", "version"].includes(k));
      li.textContent = `v${e.version} ${e.action} by ${e.actor}, ${when(e.changed_at)}`
        + (e.action === "update" && changed.length ? ` — ${changed.join(", ")}` : "");
      ol.append(li);
    }
    panel.append(ol);
  } catch (err) {
    panel.innerHTML = "<h2>Incident</h2><p class='muted'>Unavailable.</p>";
    reportError("Loading the incident", err);
  }
}

async function runNearby(lon, lat) {
  const radius = Number($("nearby-radius").value);
  state.nearby = { lon, lat, radius_m: radius, ids: null };
  const circle = circlePolygon(lon, lat, radius);
  map.getSource("nearby").setData({ type: "FeatureCollection", features: [circle] });
  const panel = $("nearby");
  panel.hidden = false;
  panel.innerHTML = "<h2>Nearby</h2><p class='muted'>Loading…</p>";
  const seq = ++latest.nearby;
  try {
    const fc = await getJSON("/incidents/nearby", { ...filterParams(), lat: lat.toFixed(6),
      lon: lon.toFixed(6), radius_m: radius, limit: NEARBY_LIMIT });
    if (seq !== latest.nearby || !state.nearby) return;
    state.nearby.ids = fc.features.map((f) => f.id);
    map.getSource("nearby").setData({ type: "FeatureCollection", features: [circle, ...fc.features] });
    panel.replaceChildren();
    const h = document.createElement("h2");
    h.textContent = `Within ${radius / 1000} km: ${fc.features.length}${fc.features.length === NEARBY_LIMIT ? "+" : ""}`;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "close";
    close.textContent = "×";
    close.setAttribute("aria-label", "Close");
    close.addEventListener("click", () => {
      panel.hidden = true;
      state.nearby = null;
      map.getSource("nearby").setData({ type: "FeatureCollection", features: [] });
    });
    h.append(close);
    panel.append(h);
    const ol = document.createElement("ol");
    ol.id = "nearby-list";
    for (const f of fc.features) {
      const li = document.createElement("li");
      li.dataset.id = f.id;
      li.textContent = `${(f.properties.distance_m / 1000).toFixed(2)} km — ${categoryName(f.properties.category)}, sev ${f.properties.severity}, ${when(f.properties.occurred_at)}`;
      li.addEventListener("click", () => showIncident(f.id));
      ol.append(li);
    }
    if (!fc.features.length) ol.textContent = "No incidents match within this radius.";
    panel.append(ol);
  } catch (err) {
    panel.innerHTML = "<h2>Nearby</h2><p class='muted'>Unavailable.</p>";
    reportError("Listing nearby incidents", err);
  }
}

// ---------- export ----------

async function exportView(format) {
  try {
    showMessage(`Preparing the ${format.toUpperCase()} export…`, "info");
    const { blob, filename } = await getBlob("/incidents/export", { ...filterParams(), bbox: viewBbox(), format });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = filename;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (err) {
    reportError("The export", err);
  }
}

// ---------- map clicks ----------

function onMapClick(e) {
  if ($("nearby-tool").getAttribute("aria-pressed") === "true") {
    runNearby(e.lngLat.lng, e.lngLat.lat);
    return;
  }
  const box = [[e.point.x - 4, e.point.y - 4], [e.point.x + 4, e.point.y + 4]];
  const visible = (ids) => ids.filter((id) => map.getLayer(id) && map.getLayoutProperty(id, "visibility") !== "none");
  const points = visible(["incident-points"]).length ? map.queryRenderedFeatures(box, { layers: ["incident-points"] }) : [];
  if (points.length) { showIncident(points[0].properties.id); return; }
  const clusters = visible(["incident-clusters"]).length ? map.queryRenderedFeatures(box, { layers: ["incident-clusters"] }) : [];
  if (clusters.length) {
    map.easeTo({ center: e.lngLat, zoom: Math.min(map.getZoom() + 2, 16) });
    return;
  }
  const posts = visible(["post-circles"]).length ? map.queryRenderedFeatures(box, { layers: ["post-circles"] }) : [];
  if (posts.length) {
    const p = posts[0].properties;
    const content = document.createElement("div");
    const title = document.createElement("strong");
    title.textContent = p.name;
    const sub = document.createElement("div");
    sub.textContent = `${STATUS_LABEL(p.kind)} · ${p.agency} · ${p.border}`;
    content.append(title, sub);
    new window.maplibregl.Popup().setLngLat(posts[0].geometry.coordinates).setDOMContent(content).addTo(map);
    return;
  }
  const provinces = map.queryRenderedFeatures(e.point, { layers: ["province-fill"] });
  if (provinces.length) {
    const code = provinces[0].properties.code;
    if (code === state.selected) clearProvince();
    else selectProvince(code);
  } else if (state.selected) {
    clearProvince();
  }
}

// ---------- start ----------

/** The key's own area for a scoped key, else Vietnam. */
function homeBounds(jurisdictions) {
  const code = state.me.jurisdiction;
  const f = code && jurisdictions.features.find((x) => x.properties.code === code);
  if (!f) return [[102.1, 8.4], [109.5, 23.4]];
  let [w, s, e, n] = [180, 90, -180, -90];
  const walk = (c) => {
    if (typeof c[0] === "number") {
      w = Math.min(w, c[0]); e = Math.max(e, c[0]); s = Math.min(s, c[1]); n = Math.max(n, c[1]);
    } else c.forEach(walk);
  };
  walk(f.geometry.coordinates);
  return [[w, s], [e, n]];
}

/** A live map: when the incidents' version moved (a new or changed incident), redraw. */
async function checkForNewData() {
  if (document.hidden || playing || applying || !map.getSource("incidents")) return;
  try {
    const tj = await getJSON("/tiles/incidents.json", filterParams());
    const current = map.getSource("incidents").tiles || [];
    if (tj.tiles[0] !== current[0]) await apply();
  } catch (err) {
    reportError("Checking for new incidents", err);
  }
}

function monthsOf(groups) {
  const keys = groups.map((g) => g.key).sort();
  if (!keys.length) {
    const now = new Date();
    const m = `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, "0")}`;
    return [m];
  }
  return monthRange(keys[0], keys[keys.length - 1]);
}

async function start() {
  const key = takeKeyFromUrl();
  if (!key) { askForKey(); return; }
  try {
    state.me = await getJSON("/me");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) { clearKey(); askForKey(err.message); return; }
    reportError("Signing in", err);
    return;
  }
  state.reader = READERS.has(state.me.role);
  $("whoami").textContent = `${state.me.name} · ${state.me.role}${state.me.jurisdiction ? ` · ${state.me.jurisdiction}` : " · national"}`;
  $("sign-out").hidden = false;
  readUrl();
  if (!window.maplibregl) {
    showMessage("The map library is missing on the server (run `make setup`, which runs `npm ci`).");
    return;
  }
  let config; let categories; let months; let jurisdictions; let borders; let posts;
  try {
    [config, categories, months, jurisdictions, borders, posts] = await Promise.all([
      getJSON("/dashboard/config.json"), getJSON("/categories"),
      getJSON("/analysis/stats", { group_by: "month" }),
      getJSON("/jurisdictions", { simplify: 500 }), getJSON("/borders"), getJSON("/border-posts")]);
  } catch (err) {
    reportError("Loading the reference data", err);
    return;
  }
  state.categories = categories.categories.filter((c) => c.active);
  state.statuses = ["reported", "verified", "under_investigation", "solved", "closed", "rejected", "duplicate"];
  state.months = monthsOf(months.groups);
  names = new Map(jurisdictions.features.map((f) => [f.properties.code, f.properties.name]));
  buildControls();

  map = createMap({ container: "map", config, view: state.view });
  map.on("error", (e) => reportError("Drawing the map", e.error && e.error.status
    ? new ApiError(e.error.status, "Tile request", e.error.message) : (e.error || e)));
  map.on("dataloading", () => { tilesBusy = true; showBusy(); });
  map.on("idle", () => { tilesBusy = false; showBusy(); });
  map.on("load", async () => {
    if (!state.view) map.fitBounds(homeBounds(jurisdictions), { padding: 20, duration: 0 });
    addBaseLayers(map, { jurisdictions, borders, posts, homeCountry: config.home_country,
      raster: Boolean(config.basemap_url) });
    addLabels(map, jurisdictions.features);
    let tiles;
    try {
      tiles = await Promise.all([tileUrls("incidents"), tileUrls("hotspots")]);
    } catch (err) {
      reportError("Loading the incident layer", err);
      tiles = [[], []];
    }
    addDataLayers(map, { incidentTiles: tiles[0], hotspotTiles: tiles[1],
      categories: state.categories, reader: state.reader });
    setLayerVisibility(map, state.layers, state.reader);
    map.on("click", onMapClick);
    for (const id of ["incident-points", "incident-clusters", "post-circles", "province-fill"]) {
      if (!map.getLayer(id)) continue;
      map.on("mouseenter", id, () => { if (id !== "province-fill") map.getCanvas().style.cursor = "pointer"; });
      map.on("mouseleave", id, () => { map.getCanvas().style.cursor = ""; });
    }
    let moveTimer = null;
    map.on("moveend", () => {
      writeUrl(map);
      updateHint();
      if (moveTimer) clearTimeout(moveTimer);
      else applying += 1;
      moveTimer = setTimeout(async () => {
        moveTimer = null;
        try { await refreshStats(); } finally { applying -= 1; }
      }, 300);
    });
    setInterval(checkForNewData, LIVE_CHECK_MS);
    applying += 1;
    try {
      const tasks = [refreshStats()];
      if (state.layers.borderzone) tasks.push(refreshBorderZone());
      if (state.selected) tasks.push(selectProvince(state.selected));
      await Promise.all(tasks);
      updateHint();
      writeUrl(map);
    } finally {
      applying -= 1;
    }
  });
}

start();
