// The field page's map: the key's area as the base map (country outlines, its province or the
// provinces, communes, national borders, border posts, names as HTML labels: no glyphs needed),
// the area's latest incidents, the record's pin (dragged, or set by a tap) and the numbered
// markers of "Near me". Every layer comes from a GeoJSON answer fetched by the page, so the
// service worker keeps it for offline use.

import { t } from "../i18n.js";
import { circlePolygon, geometryBounds, labelPoint } from "../geometry.js";
import { el } from "./util.js";

const EMPTY = { type: "FeatureCollection", features: [] };
const VIETNAM = [[102.1, 8.2], [109.5, 23.4]];
const MAX_LABELS = 60;

let map = null;
let pin = null;
let ready = null;
let labels = [];
let labelMarkers = [];
let nearMarkers = [];
let pinListener = () => {};

/** The map, once created. */
export function theMap() {
  return map;
}

/** Create the map (MapLibre from /vendor/maplibre-gl, loaded by the page). */
export function createMap(container) {
  const maplibregl = window.maplibregl;
  map = new maplibregl.Map({
    container,
    style: {
      version: 8,
      sources: {},
      layers: [{ id: "sea", type: "background", paint: { "background-color": "#d7e8f2" } }],
    },
    bounds: VIETNAM,
    minZoom: 2,
    maxZoom: 18,
    attributionControl: { compact: true },
    cooperativeGestures: false,
    dragRotate: false,
    pitchWithRotate: false,
  });
  map.touchZoomRotate.disableRotation();
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");
  ready = new Promise((resolve) => map.on("load", resolve)).then(addLayers);
  map.on("moveend", drawLabels);
  return map;
}

function addLayers() {
  for (const id of ["countries", "area", "units", "borders", "posts", "incidents", "near", "radius"]) {
    map.addSource(id, { type: "geojson", data: EMPTY });
  }
  map.addLayer({ id: "country-fill", type: "fill", source: "countries",
    paint: { "fill-color": ["case", ["==", ["get", "code"], "VNM"], "#fbfaf5", "#ece9e0"] } });
  map.addLayer({ id: "area-fill", type: "fill", source: "area",
    paint: { "fill-color": "#fff7d6", "fill-opacity": 0.6 } });
  map.addLayer({ id: "unit-line", type: "line", source: "units",
    paint: { "line-color": "#8c8c8c", "line-width": 0.8 } });
  map.addLayer({ id: "country-line", type: "line", source: "countries",
    paint: { "line-color": "#5c5c5c", "line-width": 0.8 } });
  map.addLayer({ id: "area-line", type: "line", source: "area",
    paint: { "line-color": "#17324d", "line-width": 2 } });
  map.addLayer({ id: "border-line", type: "line", source: "borders",
    paint: { "line-color": "#c92a2a", "line-width": 2, "line-dasharray": [3, 1.5] } });
  map.addLayer({ id: "radius-line", type: "line", source: "radius",
    paint: { "line-color": "#1864ab", "line-width": 1.5, "line-dasharray": [2, 2] } });
  map.addLayer({ id: "post-circles", type: "circle", source: "posts",
    paint: { "circle-radius": 5, "circle-color": "#ffffff", "circle-stroke-color": "#2b8a3e",
      "circle-stroke-width": 2.5 } });
  map.addLayer({ id: "incident-points", type: "circle", source: "incidents",
    paint: { "circle-radius": ["interpolate", ["linear"], ["get", "severity"], 1, 4, 5, 8],
      "circle-color": "#e8590c", "circle-opacity": 0.8, "circle-stroke-color": "#ffffff",
      "circle-stroke-width": 1 } });
}

/** Fill the base layers: {countries, area, units, borders, posts, incidents} (GeoJSON). */
export async function setBase(layers) {
  await ready;
  for (const [id, data] of Object.entries(layers)) {
    if (data) map.getSource(id).setData(data);
  }
  labels = [];
  for (const f of (layers.units || EMPTY).features) {
    const at = f.geometry && labelPoint(f.geometry);
    if (at) labels.push({ at, text: f.properties.display_name || f.properties.name, kind: "unit" });
  }
  for (const f of (layers.posts || EMPTY).features) {
    labels.push({ at: f.geometry.coordinates, text: f.properties.name, kind: "post" });
  }
  drawLabels();
}

/** Fit the map to a GeoJSON geometry. */
export function fitTo(geometry) {
  if (!geometry) return;
  map.fitBounds(geometryBounds(geometry), { padding: 24, duration: 0, maxZoom: 13 });
}

function drawLabels() {
  if (!map) return;
  for (const m of labelMarkers) m.remove();
  labelMarkers = [];
  const bounds = map.getBounds();
  const zoom = map.getZoom();
  const shown = labels.filter(
    (l) => (l.kind === "post" ? zoom >= 8 : zoom >= 7.5) && bounds.contains(l.at),
  );
  if (shown.length > MAX_LABELS) return; // too many to read: zoom in
  const taken = []; // screen boxes of the labels placed: a label that would overlap is left out
  for (const l of shown) {
    const p = map.project(l.at);
    const half = Math.min(90, l.text.length * 3.5);
    const box = [p.x - half, p.y - 8, p.x + half, p.y + (l.kind === "post" ? 24 : 8)];
    if (taken.some((b) => box[0] < b[2] && b[0] < box[2] && box[1] < b[3] && b[1] < box[3])) continue;
    taken.push(box);
    const node = el("div", { class: `map-label ${l.kind}`, text: l.text, "aria-hidden": "true" });
    labelMarkers.push(new window.maplibregl.Marker({ element: node, anchor: l.kind === "post" ? "top" : "center",
      offset: l.kind === "post" ? [0, 6] : [0, 0] }).setLngLat(l.at).addTo(map));
  }
}

/** Call `fn(lon, lat)` when the pin is dragged or the map tapped. */
export function onPinMoved(fn) {
  pinListener = fn;
}

/** Put the record's pin at (lon, lat); `fly` centres the map on it. */
export function setPin(lon, lat, { fly = false } = {}) {
  if (!map) return;
  if (!pin) {
    const node = el("div", { class: "pin", "aria-label": t("field.pin"), role: "img" });
    pin = new window.maplibregl.Marker({ element: node, draggable: true, anchor: "bottom" })
      .setLngLat([lon, lat])
      .addTo(map);
    pin.on("dragend", () => {
      const p = pin.getLngLat();
      pinListener(p.lng, p.lat);
    });
  } else {
    pin.setLngLat([lon, lat]);
  }
  if (fly) map.jumpTo({ center: [lon, lat], zoom: Math.max(map.getZoom(), 13) });
}

/** Show or hide the record's pin (hidden while "Near me" is shown). */
export function showPin(visible) {
  if (pin) pin.getElement().hidden = !visible;
}

export function clearPin() {
  if (pin) pin.remove();
  pin = null;
}

/** A tap on the map (not a drag) moves the pin while `active()` says so. */
export function tapMovesPin(active) {
  map.on("click", (e) => {
    if (!active()) return;
    setPin(e.lngLat.lng, e.lngLat.lat);
    pinListener(e.lngLat.lng, e.lngLat.lat);
  });
}

/** Numbered markers for a nearby list (1 = nearest), the search circle, the map fitted. */
export function showNear(origin, features, radiusM) {
  for (const m of nearMarkers) m.remove();
  nearMarkers = [];
  map.getSource("radius").setData(radiusM ? circlePolygon(origin[0], origin[1], radiusM) : EMPTY);
  const me = el("div", { class: "me", "aria-hidden": "true" });
  nearMarkers.push(new window.maplibregl.Marker({ element: me }).setLngLat(origin).addTo(map));
  // incidents at the same place are fanned out around it, so that each number stays visible
  const groups = new Map();
  for (const f of features) {
    const key = f.geometry.coordinates.map((c) => c.toFixed(5)).join(",");
    groups.set(key, (groups.get(key) || 0) + 1);
  }
  const seen = new Map();
  features.forEach((f, i) => {
    const key = f.geometry.coordinates.map((c) => c.toFixed(5)).join(",");
    const n = groups.get(key);
    const k = seen.get(key) || 0;
    seen.set(key, k + 1);
    const angle = (2 * Math.PI * k) / n - Math.PI / 2;
    const spread = n > 1 ? 14 + 3 * n : 0;
    const offset = [Math.round(spread * Math.cos(angle)), Math.round(spread * Math.sin(angle))];
    const node = el("div", { class: `near-marker sev${f.properties.severity}`, text: String(i + 1),
      "aria-hidden": "true" });
    nearMarkers.push(new window.maplibregl.Marker({ element: node, offset })
      .setLngLat(f.geometry.coordinates).addTo(map));
  });
  const points = [origin, ...features.map((f) => f.geometry.coordinates)];
  if (points.length > 1) {
    map.fitBounds(geometryBounds({ type: "MultiPoint", coordinates: points }),
      { padding: 48, duration: 0, maxZoom: 14 });
  } else {
    map.jumpTo({ center: origin, zoom: 12 });
  }
}
