// Borderwatch dashboard start-up: sign in, load the reference data, build the side bar and the
// map, and wire the layers and panels to the filters. Each panel is a module of its own
// (docs/dashboard.md, "Code").
// Test hook (documented in docs/dashboard.md): window.borderwatch = { state, map, settled(),
// settledAt(), renderedIncidents(), live, incidentTable }.

import { getJSON } from "./api.js";
import { setUpMapClicks } from "./clicks.js";
import { map, setMap, setPosts } from "./context.js";
import { buildFilters, buildLayerToggles } from "./controls.js";
import { boundaryTiles, buildEra, loadUnits, setLabels } from "./era.js";
import { setUpExport } from "./export.js";
import { geometryBounds } from "./geometry.js";
import { refreshNearby, setUpNearbyTool } from "./incident.js";
import { incidentTable, refreshIncidentTable, setUpIncidentTable } from "./incident_table.js";
import { addFilteredLayers, incidentAndHotspotTiles, refreshBorderZone, refreshTiles, updateHint, watchForNewIncidents } from "./layers.js";
import { followFilters, live, liveReady, startLive } from "./live.js";
import { addBaseLayers, createLabels, createMap, earlyTiles, renderedIncidents } from "./mapview.js";
import { apply as applyText, load, onChange, setLang, lang, t } from "./i18n.js";
import { reachable, reportError, reportMapError, showMessage } from "./messages.js";
import { refreshNeighbours } from "./neighbours.js";
import { setUpPlaceSearch } from "./places.js";
import { debounced, onFiltersChange, settled, settledAt, watchTiles, whileWorking } from "./refresh.js";
import { setUpSignIn, signIn } from "./signin.js";
import { refreshStats, refreshStatsIfMoved } from "./stats.js";
import { monthsOf, readUrl, state, writeUrl } from "./state.js";
import { buildTime } from "./time.js";
import { $ } from "./ui.js";

const STATUSES = ["reported", "verified", "under_investigation", "solved", "closed", "rejected", "duplicate"];
const VIETNAM = [[102.1, 8.4], [109.5, 23.4]];
const MOVE_SETTLE_MS = 300; // statistics follow the view once panning has paused

window.borderwatch = { state, get map() { return map; }, settled, settledAt, renderedIncidents: () => renderedIncidents(map),
  live, incidentTable };

onFiltersChange(refreshTiles, refreshStats, refreshBorderZone, refreshNeighbours, refreshNearby,
  refreshIncidentTable, followFilters);

/** The language switch in the top bar; a switch redraws the page in the other language (the
 * address bar keeps the view, the filters and the selected province). */
function setUpLanguage() {
  applyText();
  $("lang-switch").addEventListener("click", () => setLang(lang() === "vi" ? "en" : "vi"));
  onChange(() => window.location.reload());
}

/** MapLibre's workers (they parse the tiles and index the GeoJSON), made now while the page
 * signs in and reads its reference data, not when the map is made; two or more, so that the
 * tiles are not queued behind the boundaries' GeoJSON in MapLibre's single default worker. */
function startMapWorkers() {
  const lib = window.maplibregl;
  if (!lib) return;
  lib.setWorkerCount(Math.min(3, Math.max(2, Math.floor((navigator.hardwareConcurrency || 2) / 2))));
  lib.prewarm();
}

async function start() {
  startMapWorkers();
  try {
    await load("common", "dashboard");
  } catch (err) {
    console.error(err); // the page cannot say anything without its catalogues
    return;
  }
  setUpLanguage();
  setUpSignIn();
  try {
    if (!(await signIn())) return;
  } catch (err) {
    reportError(t("main.signingIn"), err);
    return;
  }
  readUrl();
  if (!window.maplibregl) {
    showMessage(t("main.noMapLibrary"));
    return;
  }
  let config; let categories; let months; let jurisdictions; let boundaries; let borders; let posts;
  let areas;
  // the tile URLs of the filtered layers, asked beside the reference data (the map adds the
  // layers as soon as it has loaded, without a round trip more)
  const tileUrlsSoon = incidentAndHotspotTiles();
  tileUrlsSoon.catch(() => {}); // reported by addFilteredLayers
  const configSoon = getJSON("/dashboard/config.json");
  const boundariesSoon = boundaryTiles();
  const referenceSoon = Promise.all([
    getJSON("/categories"), getJSON("/analysis/stats", { group_by: "month" }),
    loadUnits(), boundariesSoon, getJSON("/borders"), getJSON("/border-posts"),
    getJSON("/cooperation-areas")]);
  referenceSoon.catch(() => {}); // reported below
  try {
    config = await configSoon;
  } catch (err) {
    reportError(t("main.referenceData"), err);
    return;
  }
  // the map is made as soon as its configuration is known: its canvas, style and workers get
  // ready while the reference data is on its way. The table bar takes its room first: shown
  // later, it would shrink the map, and the statistics would be asked again for the smaller view
  $("table-bar").hidden = !state.reader;
  setMap(createMap({ container: "map", config, view: state.view, reader: state.reader }));
  map.on("error", reportMapError);
  // a tile that arrives says the server is reachable again
  map.on("data", (e) => { if (e.dataType === "source" && e.tile) reachable(true); });
  watchTiles(map);
  // the style (the sea, the warm-up layers) is ready one frame after the map is made; the map's
  // `load` waits for every source's tiles as well, and the layers need only the style
  const styleReady = new Promise((resolve) => {
    if (map.isStyleLoaded()) resolve(); else map.once("style.load", resolve);
  });
  // the opening view's tiles are asked as soon as the style and their URLs are there, beside
  // the reference data (a refused URL is reported by addFilteredLayers, or with the reference data)
  Promise.all([tileUrlsSoon, boundariesSoon, styleReady]).then(([[incidentTiles, hotspotTiles], boundaryUrls]) => {
    earlyTiles(map, { incidentTiles, hotspotTiles, boundaryTiles: boundaryUrls, layers: state.layers });
  }).catch(() => {});
  try {
    [categories, months, jurisdictions, boundaries, borders, posts, areas] = await referenceSoon;
  } catch (err) {
    reportError(t("main.referenceData"), err);
    return;
  }
  state.categories = categories.categories.filter((c) => c.active);
  setPosts(posts.features);
  state.statuses = STATUSES;
  state.cooperationAreas = areas.areas;
  state.months = monthsOf(months.groups);
  buildEra();
  setUpPlaceSearch();
  buildFilters();
  buildTime();
  buildLayerToggles();
  setUpExport();
  setUpNearbyTool();

  await styleReady;
  // the live feed opens first, so nothing that happens while the layers load is missed
  // (its events wait for liveReady() below)
  startLive();
  if (!state.view) map.fitBounds(homeBounds(jurisdictions), { padding: 20, duration: 0 });
  addBaseLayers(map, { jurisdictions, boundaryTiles: boundaries, borders, posts,
    homeCountry: config.home_country, raster: Boolean(config.basemap_url) });
  const labels = createLabels(map);
  labels.setUnits(jurisdictions.features);
  setLabels(labels);
  // the panels start now, beside the tile layers (neither waits for the other)
  const panels = whileWorking(() => Promise.all([refreshStats(), refreshBorderZone(), refreshNeighbours()]));
  await addFilteredLayers(tileUrlsSoon);
  setUpMapClicks();
  setUpIncidentTable();
  const refreshStatsSoon = debounced(refreshStatsIfMoved, MOVE_SETTLE_MS);
  map.on("moveend", () => {
    writeUrl(map);
    updateHint();
    refreshStatsSoon();
  });
  watchForNewIncidents();
  await whileWorking(async () => {
    await panels;
    updateHint();
    writeUrl(map);
  });
  liveReady();
}

/** The key's own area for a scoped key, else Vietnam. */
function homeBounds(jurisdictions) {
  const code = state.me.jurisdiction;
  const f = code && jurisdictions.features.find((x) => x.properties.code === code);
  return f ? geometryBounds(f.geometry) : VIETNAM;
}

start();
