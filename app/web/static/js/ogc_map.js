// The small map of the OGC API's HTML pages (app/ogc/html.py): the page's features (items),
// one feature (item) or a collection's extent, drawn over the server's own country and
// province outlines (/jurisdictions, as the dashboard's base map: no internet, Vietnam's
// archipelagos in Vietnam). The data comes from the page's JSON data block; every text a
// person reads is in the page (the map's name, its note, the failure message).
// Test hook: window.borderwatch = { map, ready, failed, selected }.

const maplibregl = window.maplibregl;
const SOURCE = "ogc-features";
const FEATURE_LAYERS = ["ogc-point", "ogc-line", "ogc-fill"];
const SIMPLIFY_M = 500; // outlines for a small map (the dashboard's province list uses the same)
const VIETNAM = [[102.1, 8.4], [109.5, 23.4]]; // the view when there is nothing to fit
const FIT = { padding: 32, maxZoom: 12, duration: 0 };
const ACCENT = "#d9480f";
const SELECTED = "#1864ab";

const hook = { map: null, ready: false, failed: null, selected: null };
window.borderwatch = hook;

const isSelected = ["boolean", ["feature-state", "selected"], false];
const types = (...names) => ["match", ["geometry-type"], names, true, false];

/** Every [lon, lat] of a GeoJSON geometry. */
function* positions(geometry) {
  if (!geometry) return;
  if (geometry.geometries) { // a geometry collection
    for (const g of geometry.geometries) yield* positions(g);
    return;
  }
  const walk = function* (c) {
    if (typeof c[0] === "number") yield c;
    else for (const inner of c) yield* walk(inner);
  };
  yield* walk(geometry.coordinates);
}

/** [[west, south], [east, north]] of the features, or null when none has a position. */
function boundsOf(features) {
  let w = Infinity; let s = Infinity; let e = -Infinity; let n = -Infinity;
  for (const f of features) {
    for (const [x, y] of positions(f.geometry)) {
      w = Math.min(w, x); s = Math.min(s, y); e = Math.max(e, x); n = Math.max(n, y);
    }
  }
  return w <= e ? [[w, s], [e, n]] : null;
}

/** The features for the map's source: numbered by their place on the page (the table's
 * data-row), each with its id as `fid`; those without a geometry are left out. */
function sourceData(fc) {
  const features = [];
  fc.features.forEach((f, i) => {
    if (!f.geometry) return;
    features.push({ type: "Feature", id: i, geometry: f.geometry,
      properties: { row: i, fid: f.id === undefined || f.id === null ? "" : String(f.id) } });
  });
  return { type: "FeatureCollection", features };
}

async function outlines(level) {
  const url = new URL("/jurisdictions", window.location.origin);
  url.search = new URLSearchParams({ level, simplify: String(SIMPLIFY_M) }).toString();
  const r = await fetch(url, { headers: { Accept: "application/geo+json" } });
  if (!r.ok) throw new Error(`${url.pathname} ${r.status}`);
  return r.json();
}

function addLayers(map) {
  const empty = { type: "FeatureCollection", features: [] };
  map.addSource("countries", { type: "geojson", data: empty });
  map.addSource("provinces", { type: "geojson", data: empty });
  map.addLayer({ id: "country-fill", type: "fill", source: "countries",
    paint: { "fill-color": "#fbfaf5" } });
  map.addLayer({ id: "province-line", type: "line", source: "provinces",
    paint: { "line-color": "#a5a5a5", "line-width": 0.6 } });
  map.addLayer({ id: "country-line", type: "line", source: "countries",
    paint: { "line-color": "#5c5c5c", "line-width": 0.8 } });
  map.addLayer({ id: "ogc-fill", type: "fill", source: SOURCE,
    filter: types("Polygon", "MultiPolygon"),
    paint: { "fill-color": ["case", isSelected, SELECTED, ACCENT],
      "fill-opacity": ["case", isSelected, 0.45, 0.2] } });
  map.addLayer({ id: "ogc-line", type: "line", source: SOURCE,
    filter: types("LineString", "MultiLineString", "Polygon", "MultiPolygon"),
    layout: { "line-join": "round", "line-cap": "round" },
    paint: { "line-color": ["case", isSelected, SELECTED, ACCENT],
      "line-width": ["case", isSelected, 4, 2] } });
  map.addLayer({ id: "ogc-point", type: "circle", source: SOURCE,
    filter: types("Point", "MultiPoint"),
    paint: { "circle-color": ["case", isSelected, SELECTED, ACCENT],
      "circle-radius": ["case", isSelected, 8, 5.5],
      "circle-stroke-color": "#ffffff", "circle-stroke-width": 1.5 } });
}

/** The items page: a feature chosen on the map lights its row and opens a small popup that
 * links to the feature's own page (the row's link); a row's link that takes the focus (the
 * keyboard's way through the table) lights its feature. The page never scrolls by itself: the
 * pointer would land on another row. */
function linkRows(map) {
  const rowOf = (i) => document.querySelector(`tr[data-row="${i}"]`);
  const popup = new maplibregl.Popup({ closeButton: true, maxWidth: "24rem" });
  const select = (i) => {
    if (hook.selected !== null) {
      map.setFeatureState({ source: SOURCE, id: hook.selected }, { selected: false });
      rowOf(hook.selected)?.classList.remove("selected");
    }
    hook.selected = i;
    map.setFeatureState({ source: SOURCE, id: i }, { selected: true });
    rowOf(i)?.classList.add("selected");
  };
  map.on("click", FEATURE_LAYERS, (e) => {
    const { row, fid } = e.features[0].properties;
    select(row);
    const href = rowOf(row)?.querySelector("a")?.getAttribute("href");
    if (!href) return;
    const link = document.createElement("a");
    link.href = href;
    link.textContent = fid;
    link.className = "ogc-map-link";
    popup.setLngLat(e.lngLat).setDOMContent(link).addTo(map);
  });
  map.on("mouseenter", FEATURE_LAYERS, () => { map.getCanvas().style.cursor = "pointer"; });
  map.on("mouseleave", FEATURE_LAYERS, () => { map.getCanvas().style.cursor = ""; });
  for (const row of document.querySelectorAll("tr[data-row]")) {
    row.addEventListener("focusin", () => select(Number(row.dataset.row)));
  }
}

function fail(container, err) {
  hook.failed = String(err && err.message ? err.message : err);
  container.closest("figure")?.querySelector(".ogc-map-failed")?.removeAttribute("hidden");
  container.hidden = true;
  console.error(err);
}

async function start() {
  const container = document.getElementById("ogc-map");
  const block = document.getElementById("ogc-map-data");
  if (!container || !block) return;
  if (!maplibregl) {
    fail(container, new Error("window.maplibregl"));
    return;
  }
  const kind = container.dataset.kind;
  const data = sourceData(JSON.parse(block.textContent));
  const box = boundsOf(data.features);
  // the outlines load while the map starts
  // (without them the features are still drawn, on the plain sea colour)
  const base = Promise.all([outlines("country"), outlines("province")]).catch((err) => {
    console.warn(err);
    return null;
  });
  let map;
  try {
    map = new maplibregl.Map({
      container,
      style: { version: 8, sources: {},
        layers: [{ id: "sea", type: "background", paint: { "background-color": "#d7e8f2" } }] },
      bounds: box || VIETNAM,
      fitBoundsOptions: FIT,
      attributionControl: false,
      // the canvas is the map's region: named and described by the page's own words
      locale: { "Map.Title": container.dataset.label },
    });
    map.getCanvas().setAttribute("aria-describedby", "ogc-map-note");
  } catch (err) {
    fail(container, err);
    return;
  }
  hook.map = map;
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");
  map.on("load", async () => {
    try {
      map.addSource(SOURCE, { type: "geojson", data });
      addLayers(map);
      if (kind === "items") linkRows(map);
    } catch (err) {
      fail(container, err);
      return;
    }
    const outlined = await base;
    if (outlined) {
      map.getSource("countries").setData(outlined[0]);
      map.getSource("provinces").setData(outlined[1]);
    }
    map.once("idle", () => { hook.ready = true; });
    map.triggerRepaint();
  });
}

start();
