// The map: our own boundaries as the base map (no glyphs needed: labels are HTML markers),
// incidents, hot spots and the boundary lines of the era shown (provinces, and communes from
// zoom 9) from the app's vector tiles, the rest from small GeoJSON answers.

import { authHeaders } from "./api.js";
import { geometryBounds, labelPoint, midPoint } from "./geometry.js";
import { t } from "./i18n.js";
import { localName } from "./names.js";
// the category palette and the hot-spot colours: one file the GIS styles read too (app/ogc/styles.py)
// the colours shared with the GIS styles (app/ogc/styles.py), read once when the module loads:
// a fetch and top-level await, not a JSON module import (`with { type: "json" }`), which
// Firefox ESR 128 and Chromium before 123 refuse: the whole dashboard would fail to load there
const COLOURS_URL = new URL("../map_colours.json", import.meta.url);
const COLOURS = await fetch(COLOURS_URL).then((res) => {
  if (!res.ok) throw new Error(`${COLOURS_URL.pathname} ${res.status}`);
  return res.json();
});

const maplibregl = window.maplibregl;

/** Communes are drawn (and named) from this zoom on; the tiles carry them from there. */
export const COMMUNE_MIN_ZOOM = 9;
/** The dash of a boundary whose polygon is approximate (the legend shows the same). */
export const APPROXIMATE_DASH = [2, 2];
const MAX_COMMUNE_LABELS = 400;

const PALETTE = COLOURS.categories.palette;
const OTHER_CATEGORY = COLOURS.categories.other;
/** By Gi* bin (3 … -3; the keys are the bins as strings, so HOTSPOT_COLOURS[-1] works). */
export const HOTSPOT_COLOURS = COLOURS.hotspot_bins;
/** Emerging hot spots: a colour per category (no_pattern is not drawn), and the categories
 * outlined solid (hot or cold now, in a run) or dashed (on and off): a second cue beside the
 * colour for readers who cannot tell neighbouring shades apart. */
export const EMERGING_COLOURS = COLOURS.emerging_categories;
export const EMERGING_OUTLINE = COLOURS.emerging_outline;
// every kind of /border-posts/kinds (migration 0023): gates from black (international) to grey
// (secondary); a kind added later is drawn in the fallback grey of POST_COLOUR
export const POST_COLOURS = { border_gate: "#212529", border_gate_main: "#495057",
  border_gate_secondary: "#7d848b", border_guard_station: "#2b8a3e", police: "#1864ab",
  customs: "#e67700", coast_guard: "#0b7285", checkpoint: "#862e9c" };
/** The colour of a post's kind (the posts layer's ring, its area's outline and fill). */
export const POST_COLOUR = ["match", ["get", "kind"], ...Object.entries(POST_COLOURS).flat(), "#adb5bd"];

export const BAND_COLOURS = ["#ffd8a8", "#ffe8cc", "#fff4e6", "#fff9f0"];
const EMPTY = { type: "FeatureCollection", features: [] };

/** Layer ids per toggle in the side bar. */
export const TOGGLE_LAYERS = {
  incidents: ["incident-clusters", "incident-points"],
  density: ["incident-clusters"],
  heatmap: ["incident-heat"],
  hotspots: ["hotspot-fill", "hotspot-line"],
  emerging: ["emerging-fill", "emerging-line", "emerging-line-dashed"],
  posts: ["post-circles"],
  postareas: ["postarea-fill", "postarea-line"],
  borderzone: ["band-fill", "band-line"],
  boundaries: ["province-line", "commune-line", "commune-line-approximate"],
};

/** The colour of the i-th active category (legend, statistics and map agree). */
export function paletteColour(i) {
  return PALETTE[i % PALETTE.length];
}

export function categoryColour(categories) {
  const expr = ["match", ["get", "category"]];
  categories.forEach((c, i) => expr.push(c.code, paletteColour(i)));
  expr.push(OTHER_CATEGORY);
  return expr;
}

/** MapLibre's own words (controls, the canvas's label) in the page's language. */
function mapLibreLocale() {
  return {
    "Map.Title": t("map.label"),
    "Marker.Title": t("map.marker"),
    "Popup.Close": t("close"),
    "NavigationControl.ZoomIn": t("map.zoomIn"),
    "NavigationControl.ZoomOut": t("map.zoomOut"),
    "NavigationControl.ResetBearing": t("map.resetBearing"),
    "AttributionControl.ToggleAttribution": t("map.toggleAttribution"),
    "AttributionControl.MapFeedback": t("map.feedback"),
  };
}

// Paints the opening view draws, shared with warmUpStyle(). Fills have no antialiasing
// outline pass (a line layer draws every edge that shows: country, province, band and hot-spot
// lines), so no second program is made for it.
const NO_OUTLINE = { "fill-antialias": false };
const landPaint = (homeCountry, opacity) => ({
  "fill-color": ["case", ["==", ["get", "code"], homeCountry], "#fbfaf5", "#ece9e0"],
  "fill-opacity": opacity, ...NO_OUTLINE });
const PROVINCE_LINE_PAINT = { "line-color": "#8c8c8c",
  "line-width": ["interpolate", ["linear"], ["zoom"], 4, 0.3, 9, 1.2] };
const BORDER_LINE_PAINT = { "line-color": "#c92a2a",
  "line-width": ["interpolate", ["linear"], ["zoom"], 4, 1.5, 10, 3], "line-dasharray": [3, 1.5] };
// an aggregate's ring is black when it holds a severe incident, as a single incident's is: the
// same paint properties depend on the data in both layers, so they share one program
const clusterPaint = (colour) => ({
  "circle-color": colour,
  "circle-opacity": 0.75,
  "circle-radius": ["interpolate", ["linear"], ["sqrt", ["get", "count"]], 1, 4, 10, 13, 40, 26],
  "circle-stroke-color": ["case", [">=", ["get", "severity_max"], 4], "#000000", "#212529"],
  "circle-stroke-width": ["case", [">=", ["get", "severity_max"], 4], 1.5, 0.5],
});
const pointPaint = (colour) => ({
  "circle-color": colour,
  "circle-radius": ["interpolate", ["linear"], ["get", "severity"], 1, 4, 5, 9],
  "circle-stroke-color": ["case", [">=", ["get", "severity"], 4], "#000000", "#ffffff"],
  "circle-stroke-width": ["case", [">=", ["get", "severity"], 4], 2, 1],
});
const POST_PAINT = {
  // rings (white centre), so posts never read as incidents (filled circles)
  "circle-color": "#ffffff",
  "circle-radius": ["interpolate", ["linear"], ["zoom"], 4, 3, 10, 6],
  "circle-stroke-color": POST_COLOUR,
  "circle-stroke-width": ["interpolate", ["linear"], ["zoom"], 4, 2, 10, 3.5],
};
/** The warm-up layers' opacity: drawn (MapLibre skips a layer of opacity 0), never seen. */
const UNSEEN = 0.001;
const POINT_WARMUP_ZOOM = 9;

/** Make the WebGL programs of the opening view's layers while the reference data is on its
 * way, instead of when its tiles first draw. MapLibre makes a program the first time a layer
 * of its kind draws (one per layer type and set of data-driven paint properties; 30-70 ms each
 * on a software GL, docs/performance.md), and that was on the path to a settled page: the
 * circles' programs waited for the incident tiles. The map's first style therefore holds
 * layers with the same paint as the real ones (only their opacity changed to UNSEEN: constants
 * do not change the program) drawing a point, a line and a square of 4 px at the map's centre;
 * they are removed once they have drawn. `?warmup=off` leaves them out (tests compare the
 * programs made). Returns the source and layers to add to the style, or null. */
function warmUpStyle({ reader, center, zoom }) {
  if (new URLSearchParams(window.location.search).get("warmup") === "off") return null;
  const [lon, lat] = center;
  const d = (4 * 360) / (512 * 2 ** zoom); // 4 px: a shorter line would vanish in the tile
  const props = { code: "", level: "country", cluster: true, count: 1, severity_max: 1, severity: 1,
    category: "", kind: "border_gate" };
  const feature = (geometry) => ({ type: "Feature", properties: props, geometry });
  const square = [[[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]];
  const source = { type: "geojson", data: { type: "FeatureCollection", features: [
    feature({ type: "Point", coordinates: [lon, lat] }),
    feature({ type: "LineString", coordinates: [[lon, lat], [lon + d, lat + d]] }),
    feature({ type: "Polygon", coordinates: square })] } };
  const colour = categoryColour([{ code: "" }]); // the same expression kind as the real palette
  const unseen = { "circle-opacity": UNSEEN, "circle-stroke-opacity": UNSEEN };
  const paints = [
    ["fill", landPaint("", UNSEEN)],
    ["line", { ...PROVINCE_LINE_PAINT, "line-opacity": UNSEEN }],
    ["line", { ...BORDER_LINE_PAINT, "line-opacity": UNSEEN }],
    ["circle", { ...clusterPaint(colour), ...unseen }],
    ["circle", { ...POST_PAINT, ...unseen }],
  ];
  if (reader && zoom >= POINT_WARMUP_ZOOM) { // single incidents are drawn from zoom 10
    paints.push(["circle", { ...pointPaint(colour), ...unseen }]);
  }
  const layers = paints.map(([type, paint], i) => ({ id: `warmup-${i}`, type, source: "warmup", paint }));
  return { source, layers };
}

/** Remove the warm-up layers and source after the frame that drew them: two frames after their
 * source has loaded (asked for: a map at rest draws no frame), or when the map is first at rest
 * (`idle`: every source loaded and drawn), whichever comes first. */
function endWarmUp(map, warmup) {
  let ended = false;
  const done = () => {
    if (ended) return;
    ended = true;
    map.off("sourcedata", ready);
    map.off("idle", done);
    for (const layer of warmup.layers) map.removeLayer(layer.id);
    map.removeSource("warmup");
  };
  function ready(e) {
    if (e.sourceId !== "warmup" || !e.isSourceLoaded) return;
    map.off("sourcedata", ready);
    map.once("render", () => {
      map.once("render", done);
      map.triggerRepaint();
    });
    map.triggerRepaint();
  }
  map.on("sourcedata", ready);
  map.on("idle", done);
}

/** A new map; every request to our own origin carries the key. */
export function createMap({ container, config, view, reader }) {
  const origin = window.location.origin;
  const sources = {};
  const layers = [{ id: "sea", type: "background", paint: { "background-color": "#d7e8f2" } }];
  if (config.basemap_url) {
    sources.basemap = { type: "raster", tiles: [config.basemap_url], tileSize: 256,
      attribution: config.basemap_attribution || "" };
    layers.push({ id: "basemap", type: "raster", source: "basemap" });
  }
  const center = view ? [view.lon, view.lat] : [106.0, 16.0];
  const zoom = view ? view.zoom : 4.6;
  const warmup = warmUpStyle({ reader, center, zoom });
  if (warmup) {
    sources.warmup = warmup.source;
    layers.push(...warmup.layers);
  }
  const map = new maplibregl.Map({
    container,
    style: { version: 8, sources, layers },
    center,
    zoom,
    minZoom: 2,
    maxZoom: 18,
    attributionControl: { compact: true, customAttribution: t("map.attribution") },
    locale: mapLibreLocale(),
    // every request to our API carries the key; tile URLs themselves hold no secret
    transformRequest: (requestUrl) =>
      requestUrl.startsWith(origin) ? { url: requestUrl, headers: authHeaders() } : { url: requestUrl },
  });
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");
  if (warmup) endWarmUp(map, warmup);
  return map;
}

// The vector tile sources, made once with the URLs the API gave (setTiles changes them later).
const TILE_SOURCES = {
  incidents: { minzoom: 0, maxzoom: 16 },
  hotspots: { minzoom: 5, maxzoom: 12 },
  boundaries: { minzoom: 0, maxzoom: 12 },
};
const EARLY = "early-"; // the id prefix of the layers earlyTiles() adds

/** Add a tile source unless earlyTiles() did. */
function addTileSource(map, id, tiles) {
  if (!map.getSource(id)) map.addSource(id, { type: "vector", tiles, ...TILE_SOURCES[id] });
}

/** The real layers of the tile source are there: its early layer goes. */
function endEarly(map, id) {
  if (map.getLayer(EARLY + id)) map.removeLayer(EARLY + id);
}

/** Ask for the opening view's tiles (incidents, hot spots, boundary lines) as soon as the style
 * is ready and their URLs are known, while the page still reads its reference data and makes
 * its WebGL programs; before, they were asked only once the map had loaded and the base layers
 * were added, ~1 s into a visit (docs/performance.md). MapLibre fetches a source's tiles only
 * while a visible layer uses it: each source gets a layer whose filter no feature passes, so
 * nothing is drawn and no program made. The real layers, added later, make the workers parse
 * the tiles they keep again: no second request. A source whose layers are off (hot spots
 * unless switched on, below their zoom 5) is left for later, as before. `layers`: the toggles
 * (state.layers). */
export function earlyTiles(map, { incidentTiles, hotspotTiles, boundaryTiles, layers }) {
  const wanted = {
    incidents: [incidentTiles, layers.incidents || layers.density || layers.heatmap, "incidents"],
    hotspots: [hotspotTiles, layers.hotspots, "hotspots"],
    boundaries: [boundaryTiles, layers.boundaries, "jurisdictions"],
  };
  for (const [id, [tiles, on, sourceLayer]] of Object.entries(wanted)) {
    if (!on || !tiles || !tiles.length || map.getSource(id)) continue;
    addTileSource(map, id, tiles);
    map.addLayer({ id: EARLY + id, type: "circle", source: id, "source-layer": sourceLayer,
      minzoom: TILE_SOURCES[id].minzoom, filter: ["has", "never-a-property"] });
  }
}

/** Countries and provinces (GeoJSON: fills, selection), the boundary lines of the era (vector
 * tiles: provinces, communes from COMMUNE_MIN_ZOOM), national borders, border posts and the
 * empty overlay sources. */
export function addBaseLayers(map, { jurisdictions, boundaryTiles, borders, posts, homeCountry, raster }) {
  map.addSource("jurisdictions", { type: "geojson", data: jurisdictions, promoteId: "code" });
  addTileSource(map, "boundaries", boundaryTiles);
  map.addSource("borders", { type: "geojson", data: borders });
  map.addSource("posts", { type: "geojson", data: posts });
  map.addSource("bands", { type: "geojson", data: EMPTY });
  map.addSource("nearby", { type: "geojson", data: EMPTY });
  map.addSource("shared", { type: "geojson", data: EMPTY });

  const land = raster ? 0.35 : 1;
  map.addLayer({ id: "country-fill", type: "fill", source: "jurisdictions",
    filter: ["==", ["get", "level"], "country"], paint: landPaint(homeCountry, land) });
  map.addLayer({ id: "province-fill", type: "fill", source: "jurisdictions",
    filter: ["==", ["get", "level"], "province"],
    paint: { "fill-color": "#fbfaf5", "fill-opacity": 0 } });
  map.addLayer({ id: "band-fill", type: "fill", source: "bands",
    layout: { visibility: "none" },
    paint: { "fill-color": ["step", ["get", "from_km"], BAND_COLOURS[0], 5, BAND_COLOURS[1],
      20, BAND_COLOURS[2], 50, BAND_COLOURS[3]], "fill-opacity": 0.75, ...NO_OUTLINE } });
  map.addLayer({ id: "band-line", type: "line", source: "bands",
    layout: { visibility: "none" },
    paint: { "line-color": "#e8590c", "line-width": 0.6, "line-opacity": 0.6 } });
  map.addLayer({ id: "neighbour-fill", type: "fill", source: "jurisdictions",
    filter: ["in", ["get", "code"], ["literal", []]],
    paint: { "fill-color": "#748ffc", "fill-opacity": 0.3, ...NO_OUTLINE } });
  map.addLayer({ id: "selected-fill", type: "fill", source: "jurisdictions",
    filter: ["==", ["get", "code"], ""],
    paint: { "fill-color": "#4c6ef5", "fill-opacity": 0.45, ...NO_OUTLINE } });
  const commune = (approximate) => ["all", ["==", ["get", "level"], "commune"],
    ["==", ["get", "geometry_approximate"], approximate]];
  map.addLayer({ id: "commune-line", type: "line", source: "boundaries", "source-layer": "jurisdictions",
    minzoom: COMMUNE_MIN_ZOOM, filter: commune(false),
    paint: { "line-color": "#a5a5a5", "line-width": 0.8 } });
  map.addLayer({ id: "commune-line-approximate", type: "line", source: "boundaries",
    "source-layer": "jurisdictions", minzoom: COMMUNE_MIN_ZOOM, filter: commune(true),
    paint: { "line-color": "#a5a5a5", "line-width": 0.8, "line-dasharray": APPROXIMATE_DASH } });
  map.addLayer({ id: "province-line", type: "line", source: "boundaries", "source-layer": "jurisdictions",
    filter: ["==", ["get", "level"], "province"], paint: PROVINCE_LINE_PAINT });
  map.addLayer({ id: "country-line", type: "line", source: "jurisdictions",
    filter: ["==", ["get", "level"], "country"],
    paint: { "line-color": "#5c5c5c", "line-width": 0.8 } });
  map.addLayer({ id: "neighbour-line", type: "line", source: "jurisdictions",
    filter: ["in", ["get", "code"], ["literal", []]],
    paint: { "line-color": "#364fc7", "line-width": 2 } });
  map.addLayer({ id: "shared-line", type: "line", source: "shared",
    layout: { "line-cap": "round", "line-join": "round" },
    paint: { "line-color": "#f59f00", "line-width": ["interpolate", ["linear"], ["zoom"], 5, 4, 10, 9],
      "line-opacity": 0.85, "line-blur": 1 } });
  map.addLayer({ id: "border-line", type: "line", source: "borders", paint: BORDER_LINE_PAINT });
  endEarly(map, "boundaries");
}

/** The incidents (vector tiles: aggregates below z10, points above) and hot-spot layers. */
export function addDataLayers(map, { incidentTiles, hotspotTiles, categories, reader }) {
  addTileSource(map, "incidents", incidentTiles);
  addTileSource(map, "hotspots", hotspotTiles);
  const colour = categoryColour(categories);
  // the cells' white outline is a line layer: the line program is made for the boundaries anyway
  const hotspots = { source: "hotspots", "source-layer": "hotspots", filter: ["!=", ["get", "bin"], 0],
    layout: { visibility: "none" } };
  map.addLayer({ ...hotspots, id: "hotspot-fill", type: "fill",
    paint: { "fill-color": ["match", ["get", "bin"], 3, HOTSPOT_COLOURS[3], 2, HOTSPOT_COLOURS[2],
      1, HOTSPOT_COLOURS[1], -1, HOTSPOT_COLOURS[-1], -2, HOTSPOT_COLOURS[-2], HOTSPOT_COLOURS[-3]],
    "fill-opacity": 0.7, ...NO_OUTLINE } }, "neighbour-line");
  map.addLayer({ ...hotspots, id: "hotspot-line", type: "line",
    paint: { "line-color": "#ffffff", "line-width": 0.6, "line-opacity": 0.9 } }, "neighbour-line");
  map.addLayer({ id: "incident-heat", type: "heatmap", source: "incidents", "source-layer": "incidents",
    layout: { visibility: "none" },
    paint: {
      // aggregates weigh by their count (saturating), single incidents a little each
      "heatmap-weight": ["case", ["get", "cluster"],
        ["interpolate", ["linear"], ["get", "count"], 1, 0.15, 20, 0.6, 100, 1], 0.15],
      "heatmap-intensity": ["interpolate", ["linear"], ["zoom"], 3, 1.6, 12, 2.5],
      // wider than a 32 px aggregate cell, so neighbouring cells merge into one surface
      "heatmap-radius": ["interpolate", ["linear"], ["zoom"], 3, 24, 9, 45, 12, 30],
      "heatmap-opacity": 0.8,
    } });
  map.addLayer({ id: "incident-clusters", type: "circle", source: "incidents", "source-layer": "incidents",
    filter: ["==", ["get", "cluster"], true], paint: clusterPaint(colour) });
  if (reader) {
    map.addLayer({ id: "incident-points", type: "circle", source: "incidents", "source-layer": "incidents",
      filter: ["==", ["get", "cluster"], false], paint: pointPaint(colour) });
  }
  map.addLayer({ id: "post-circles", type: "circle", source: "posts", paint: POST_PAINT });
  map.addLayer({ id: "nearby-fill", type: "fill", source: "nearby",
    filter: ["==", ["geometry-type"], "Polygon"],
    paint: { "fill-color": "#1c7ed6", "fill-opacity": 0.1 } });
  map.addLayer({ id: "nearby-line", type: "line", source: "nearby",
    filter: ["==", ["geometry-type"], "Polygon"],
    paint: { "line-color": "#1c7ed6", "line-width": 2 } });
  map.addLayer({ id: "nearby-points", type: "circle", source: "nearby",
    filter: ["==", ["geometry-type"], "Point"],
    paint: { "circle-radius": 7, "circle-color": "rgba(0,0,0,0)", "circle-stroke-color": "#1c7ed6",
      "circle-stroke-width": 2.5 } });
  endEarly(map, "incidents");
  endEarly(map, "hotspots");
}

/** The posts' areas of responsibility (GET /border-posts/areas): a light fill and an outline
 * in the colour of the post's kind, under the incidents and the selection; added when first
 * switched on, its data replaced by `setPostAreas`. */
export function addPostAreaLayer(map, areas) {
  map.addSource("postareas", { type: "geojson", data: areas, promoteId: "code" });
  map.addLayer({ id: "postarea-fill", type: "fill", source: "postareas",
    paint: { "fill-color": POST_COLOUR, "fill-opacity": 0.12 } }, "neighbour-fill");
  map.addLayer({ id: "postarea-line", type: "line", source: "postareas",
    paint: { "line-color": POST_COLOUR, "line-width": ["interpolate", ["linear"], ["zoom"], 5, 1, 10, 2],
      "line-opacity": 0.8 } }, "neighbour-fill");
}

/** The emerging hot-spot layer (vector tiles from zoom 5: 5 km cells), added when first
 * switched on: its cube costs the server seconds at a million incidents, once per version. */
export function addEmergingLayer(map, tiles) {
  map.addSource("emerging", { type: "vector", tiles, minzoom: 5, maxzoom: 12 });
  const colour = ["match", ["get", "category"], ...Object.entries(EMERGING_COLOURS).flat(), "rgba(0,0,0,0)"];
  const drawn = ["in", ["get", "category"], ["literal", Object.keys(EMERGING_COLOURS)]];
  const outlined = (kind) => ["in", ["get", "category"], ["literal", EMERGING_OUTLINE[kind]]];
  const layer = { source: "emerging", "source-layer": "emerging-hotspots", layout: { visibility: "none" } };
  map.addLayer({ ...layer, id: "emerging-fill", type: "fill", filter: drawn,
    paint: { "fill-color": colour, "fill-opacity": 0.8, "fill-outline-color": "#8c939a" } }, "neighbour-line");
  map.addLayer({ ...layer, id: "emerging-line", type: "line", filter: outlined("solid"),
    paint: { "line-color": "#212529", "line-width": ["interpolate", ["linear"], ["zoom"], 5, 0.8, 10, 2] } },
  "neighbour-line");
  map.addLayer({ ...layer, id: "emerging-line-dashed", type: "line", filter: outlined("dashed"),
    paint: { "line-color": "#212529", "line-dasharray": [2, 1.5],
      "line-width": ["interpolate", ["linear"], ["zoom"], 5, 0.8, 10, 2] } }, "neighbour-line");
}

export function setLayerVisibility(map, layers, reader) {
  const on = new Set();
  for (const [toggle, ids] of Object.entries(TOGGLE_LAYERS)) {
    if (!layers[toggle]) continue;
    if (toggle === "incidents" && !reader) continue;
    if (toggle === "density" && reader) continue;
    for (const id of ids) on.add(id);
  }
  for (const ids of Object.values(TOGGLE_LAYERS)) {
    for (const id of ids) {
      if (map.getLayer(id)) map.setLayoutProperty(id, "visibility", on.has(id) ? "visible" : "none");
    }
  }
}

/** Whether the layer exists (incident points do only for readers) and is switched on. */
export function isShown(map, id) {
  return Boolean(map.getLayer(id)) && map.getLayoutProperty(id, "visibility") !== "none";
}

/** The map's extent as the API's bbox parameter (west,south,east,north). */
export function viewBbox(map) {
  const b = map.getBounds();
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  return [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -90, 90),
    clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -90, 90)].map((v) => v.toFixed(5)).join(",");
}

export function highlight(map, selected, neighbours) {
  map.setFilter("selected-fill", ["==", ["get", "code"], selected || ""]);
  const codes = ["literal", neighbours];
  map.setFilter("neighbour-fill", ["in", ["get", "code"], codes]);
  map.setFilter("neighbour-line", ["in", ["get", "code"], codes]);
}

/** Shared boundaries of the selected province, lit, each with a badge of its count. */
export function showShared(map, lines, markers) {
  for (const m of markers.splice(0)) m.remove();
  map.getSource("shared").setData({ type: "FeatureCollection", features: lines.map((l) => l.feature) });
  for (const l of lines) {
    const at = midPoint(l.feature.geometry);
    if (!at) continue;
    const el = document.createElement("div");
    el.className = "shared-badge";
    el.dataset.code = l.code;
    el.textContent = String(l.count);
    el.title = t("map.sharedBadge", { count: l.count });
    markers.push(labelMarker(el, el.title).setLngLat(at).addTo(map));
  }
}

// Vietnam's archipelagos, named as Vietnam administers them (geodata/README.md, "Point of
// view"): at the special zones' official centroids.
const ARCHIPELAGOS = [
  { at: [112.135, 16.568], key: "map.hoangSa", titleKey: "map.hoangSa.title" },
  { at: [114.45, 9.71], key: "map.truongSa", titleKey: "map.truongSa.title" },
];

/** A marker of an HTML label: named by what it shows (MapLibre would call every marker "map
 * marker", which a screen reader reads instead of the name on screen). */
function labelMarker(el, name = el.textContent) {
  const marker = new maplibregl.Marker({ element: el });
  el.setAttribute("aria-label", name);
  return marker;
}

/** HTML labels (no glyph server needed): countries (low zoom), provinces (zoom ≥ 6) and
 * Vietnam's archipelagos always; communes from COMMUNE_MIN_ZOOM, from the boundary tiles on
 * screen. `setUnits(features)` replaces the countries and provinces (another era). */
export function createLabels(map) {
  const fixed = []; // the archipelagos
  let units = []; // countries and provinces of the era shown
  let communes = new Map(); // code → marker, those on screen
  for (const a of ARCHIPELAGOS) {
    const el = document.createElement("div");
    el.className = "map-label map-label-archipelago";
    el.textContent = t(a.key); // a place name: Vietnamese in both languages
    el.title = t(a.titleKey);
    fixed.push({ level: "archipelago", el, marker: labelMarker(el).setLngLat(a.at).addTo(map) });
  }
  const show = (m, z) => {
    const on = m.level === "country" ? z < 7.5 : m.level === "archipelago" ? z < 9 : z >= 6;
    m.el.style.display = on ? "" : "none";
  };
  const update = () => {
    const z = map.getZoom();
    for (const m of [...fixed, ...units]) show(m, z);
  };
  const setUnits = (features) => {
    for (const m of units) m.marker.remove();
    units = [];
    for (const f of features) {
      const at = labelPoint(f.geometry);
      if (!at) continue;
      const el = document.createElement("div");
      el.className = `map-label map-label-${f.properties.level}`;
      // names as Vietnamese readers write them (diacritics), the English name on hover
      el.textContent = localName(f.properties);
      el.title = f.properties.name;
      units.push({ level: f.properties.level, el, marker: labelMarker(el).setLngLat(at).addTo(map) });
    }
    update();
  };
  // commune names: one per commune whose largest piece on screen has its label point in view
  const updateCommunes = () => {
    const wanted = new Map();
    if (map.getZoom() >= COMMUNE_MIN_ZOOM && map.getSource("boundaries")
        && map.getLayoutProperty("commune-line", "visibility") !== "none") {
      const bounds = map.getBounds();
      const pieces = map.querySourceFeatures("boundaries", { sourceLayer: "jurisdictions",
        filter: ["==", ["get", "level"], "commune"] });
      for (const f of pieces) {
        const at = labelPoint(f.geometry);
        if (!at || !bounds.contains(at)) continue;
        const size = extentOf(f.geometry);
        const had = wanted.get(f.properties.code);
        if (!had || size > had.size) wanted.set(f.properties.code, { at, size, p: f.properties });
      }
    }
    const keep = [...wanted.values()].sort((a, b) => b.size - a.size).slice(0, MAX_COMMUNE_LABELS);
    const next = new Map();
    for (const { at, p } of keep) {
      let marker = communes.get(p.code);
      if (marker) marker.setLngLat(at);
      else {
        const el = document.createElement("div");
        el.className = "map-label map-label-commune";
        el.dataset.code = p.code;
        el.textContent = p.name_local || p.name;
        el.title = p.geometry_approximate ? t("map.approximateName", { name: p.name }) : p.name;
        if (p.geometry_approximate) el.classList.add("approximate");
        marker = labelMarker(el).setLngLat(at).addTo(map);
      }
      next.set(p.code, marker);
    }
    for (const [code, marker] of communes) if (!next.has(code)) marker.remove();
    communes = next;
  };
  map.on("zoomend", update);
  map.on("idle", updateCommunes); // after a move, or new boundary tiles, once all are drawn
  update();
  return { setUnits, updateCommunes };
}

/** A cheap size of a geometry: its bounding box's area in square degrees. */
function extentOf(geometry) {
  const [[w, s], [e, n]] = geometryBounds(geometry);
  return (e - w) * (n - s);
}

/** Incidents drawn on screen: points count 1, aggregates their `count`. */
export function renderedIncidents(map) {
  const layers = ["incident-clusters", "incident-points"].filter((id) => isShown(map, id));
  if (!layers.length) return { features: 0, incidents: 0, points: 0 };
  const features = map.queryRenderedFeatures({ layers });
  let incidents = 0;
  let points = 0;
  for (const f of features) {
    if (f.properties.cluster) incidents += f.properties.count;
    else { incidents += 1; points += 1; }
  }
  return { features: features.length, incidents, points };
}

const pulses = new Map(); // incident id → { marker, timer }: the live highlights on the map

/** A pulsing ring at `lngLat` for `ms` milliseconds (a new or changed incident, a flown-to
 * alert), then gone; one per incident (a second event restarts it). An HTML marker: its
 * animation is CSS (app.css `.live-pulse`), no redraw of the map. */
export function pulse(map, lngLat, { id, severity, ms }) {
  const had = pulses.get(id);
  if (had) {
    clearTimeout(had.timer);
    had.marker.remove();
  }
  const el = document.createElement("div");
  el.className = severity >= 4 ? "live-pulse severe" : "live-pulse";
  el.dataset.incident = id;
  el.append(document.createElement("span"));
  const marker = new maplibregl.Marker({ element: el }).setLngLat(lngLat).addTo(map);
  const timer = setTimeout(() => {
    marker.remove();
    if (pulses.get(id)?.marker === marker) pulses.delete(id);
  }, ms);
  pulses.set(id, { marker, timer });
}
