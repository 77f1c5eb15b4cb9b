// The map layers that follow the filters: incident, hot-spot and emerging hot-spot tiles (and
// the check for new incidents), the border-zone bands with their table, the posts' areas of
// responsibility, and the hint to zoom in for hot spots.

import { getJSON } from "./api.js";
import { map } from "./context.js";
import { live } from "./live.js";
import { addDataLayers, addEmergingLayer, addPostAreaLayer, setLayerVisibility } from "./mapview.js";
import { t } from "./i18n.js";
import { reportError } from "./messages.js";
import { apply, isWorking, newestOnly } from "./refresh.js";
import { filterParams, state } from "./state.js";
import { isPlaying } from "./time.js";
import { $, el, table, tableRow } from "./ui.js";

const HOTSPOT_MIN_ZOOM = 5; // the hot-spot tiles start there (mapview.js)
const LIVE_CHECK_MS = 30000; // how often the map asks whether incidents changed

/** Tile URLs for the filters; they change with the data's version, so a new URL means new data. */
async function tileUrls(layer) {
  const tj = await getJSON(`/tiles/${layer}.json`, filterParams());
  return tj.tiles;
}

/** The emerging hot spots' tile URLs: the filters without the time (the cube is the last 24
 * complete months, its trend needs many months: one month of the slider has no trend). */
async function emergingTileUrls() {
  const tj = await getJSON("/tiles/emerging-hotspots.json", filterParams({ withTime: false }));
  return tj.tiles;
}

/** The emerging hot-spot layer, added the first time it is switched on (or when the link
 * names it); nothing is asked of the server while it stays off. */
export async function showEmerging() {
  if (!state.layers.emerging || !map || map.getSource("emerging")) return;
  try {
    const tiles = await emergingTileUrls();
    if (map.getSource("emerging")) return; // switched on twice while the URLs were asked
    addEmergingLayer(map, tiles);
    setLayerVisibility(map, state.layers, state.reader);
  } catch (err) {
    reportError(t("layers.loadingEmerging"), err);
  }
}

const POST_AREAS_SIMPLIFY_M = 200; // a 200 m outline is exact enough for areas tens of km deep
let postAreasVersion; // the border_posts tile URL (it holds the layer's version) the areas were read at
const newestPostAreas = newestOnly();

/** The posts' areas of responsibility (GET /border-posts/areas), read the first time the layer
 * is switched on (or when the link names it), and again on a later switch-on only when the
 * border_posts layer's version moved (a post added, moved, closed, or an area redrawn). */
export async function showPostAreas() {
  if (!state.layers.postareas || !map) return;
  const isNewest = newestPostAreas();
  try {
    let version = null;
    try {
      [version] = (await getJSON("/tiles/border_posts.json")).tiles;
    } catch {
      version = null; // no version to compare: read the areas (once more)
    }
    if (map.getSource("postareas") && version !== null && version === postAreasVersion) return;
    const areas = await getJSON("/border-posts/areas", { simplify: POST_AREAS_SIMPLIFY_M });
    if (!isNewest()) return;
    postAreasVersion = version;
    if (map.getSource("postareas")) map.getSource("postareas").setData(areas);
    else addPostAreaLayer(map, areas);
    setLayerVisibility(map, state.layers, state.reader);
  } catch (err) {
    reportError(t("layers.loadingPostAreas"), err);
  }
}

export const incidentAndHotspotTiles = () => Promise.all([tileUrls("incidents"), tileUrls("hotspots")]);

/** The incident and hot-spot layers (`asked`: their tile URLs, asked for already); refused
 * tiles leave them empty, the rest of the map works. */
export async function addFilteredLayers(asked = incidentAndHotspotTiles()) {
  let tiles;
  try {
    tiles = await asked;
  } catch (err) {
    reportError(t("layers.loadingTiles"), err);
    tiles = [[], []];
  }
  addDataLayers(map, { incidentTiles: tiles[0], hotspotTiles: tiles[1],
    categories: state.categories, reader: state.reader });
  setLayerVisibility(map, state.layers, state.reader);
  await Promise.all([showEmerging(), showPostAreas()]);
}

const newestTiles = newestOnly();

export async function refreshTiles() {
  const isNewest = newestTiles();
  try {
    const [incidents, hotspots] = await incidentAndHotspotTiles();
    if (!isNewest()) return;
    map.getSource("incidents").setTiles(incidents);
    map.getSource("hotspots").setTiles(hotspots);
    if (map.getSource("emerging")) {
      // the time filter does not reach it: most changes (the slider) leave its URL as it was
      const emerging = await emergingTileUrls();
      const source = map.getSource("emerging");
      if (isNewest() && (source.tiles || [])[0] !== emerging[0]) source.setTiles(emerging);
    }
  } catch (err) {
    reportError(t("layers.loadingTiles"), err);
  }
}

/** A live map without the live feed (viewer keys, or while it reconnects): when the
 * incidents' version moved (a new or changed incident), redraw. */
export function watchForNewIncidents() {
  setInterval(checkForNewIncidents, LIVE_CHECK_MS);
}

async function checkForNewIncidents() {
  if (document.hidden || isPlaying() || isWorking() || !map.getSource("incidents")) return;
  if (live.status === "live") return; // the feed says when
  try {
    const [latest] = await tileUrls("incidents");
    const current = map.getSource("incidents").tiles || [];
    if (latest !== current[0]) await apply();
  } catch (err) {
    reportError(t("layers.checking"), err);
  }
}

const newestBands = newestOnly();

/** The bands and their table, while the layer is on. */
export async function refreshBorderZone() {
  if (!state.layers.borderzone) return;
  try {
    const isNewest = newestBands();
    const fc = await getJSON("/analysis/border-zone", { ...filterParams(), simplify: 1000 });
    if (!isNewest()) return;
    map.getSource("bands").setData(fc);
    renderBands(fc.features);
  } catch (err) {
    reportError(t("layers.loadingBands"), err);
  }
}

/** Incidents per border segment and distance band (the whole border, not just the view). */
function renderBands(features) {
  const band = (p) => `${p.from_km}–${p.to_km}`;
  const segments = [...new Set(features.map((f) => f.properties.segment))];
  const bands = [...new Set(features.map((f) => band(f.properties)))];
  const count = new Map(features.map((f) => [`${f.properties.segment} ${band(f.properties)}`, f.properties.count]));
  const rows = bands.map((b) => tableRow([b, ...segments.map((s) => count.get(`${s} ${b}`) ?? 0)]));
  const box = $("bands-summary");
  box.replaceChildren(el("h2", { text: t("layers.bandsTitle") }),
    table({ id: "band-table", head: [t("layers.bandsColumn"), ...segments], rows }));
  box.hidden = !state.layers.borderzone;
}

export function updateHint() {
  const hint = $("map-hint");
  const wantHot = (state.layers.hotspots || state.layers.emerging) && map.getZoom() < HOTSPOT_MIN_ZOOM;
  hint.hidden = !wantHot;
  hint.textContent = wantHot ? t("layers.zoomForHotspots", { zoom: HOTSPOT_MIN_ZOOM }) : "";
}
