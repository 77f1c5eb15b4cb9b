// What a click on the map does, in this order: the nearby tool when it is on; else the topmost
// of an incident (its details), an aggregate (zoom in), a border post (its name), an emerging
// hot-spot cell (its category, trend and counts), a post's area of responsibility (the post's
// name, kind and area), a province (select it, or clear it when it is selected).

import { map } from "./context.js";
import { nearbyToolOn, runNearby, showIncident } from "./incident.js";
import { isShown } from "./mapview.js";
import { localName } from "./names.js";
import { clearProvince, selectProvince } from "./neighbours.js";
import { state } from "./state.js";
import { el } from "./ui.js";
import { has, lang, number, t } from "./i18n.js";

const HIT_PX = 4; // a click this close to a circle hits it
const CLICKABLE = ["incident-points", "incident-clusters", "post-circles", "emerging-fill", "postarea-fill",
  "province-fill"];
const TREND_ALPHA = 0.1; // a Mann-Kendall trend is significant at p <= 0.10 (app/analysis/emerging.py)

export function setUpMapClicks() {
  map.on("click", onMapClick);
  for (const id of CLICKABLE) {
    if (!map.getLayer(id)) continue;
    // provinces cover the whole map: a pointer over them would say nothing
    map.on("mouseenter", id, () => { if (id !== "province-fill") map.getCanvas().style.cursor = "pointer"; });
    map.on("mouseleave", id, () => { map.getCanvas().style.cursor = ""; });
  }
}

function onMapClick(e) {
  if (nearbyToolOn()) {
    runNearby(e.lngLat.lng, e.lngLat.lat);
    return;
  }
  const box = [[e.point.x - HIT_PX, e.point.y - HIT_PX], [e.point.x + HIT_PX, e.point.y + HIT_PX]];
  const hits = (layer) => (isShown(map, layer) ? map.queryRenderedFeatures(box, { layers: [layer] }) : []);
  const points = hits("incident-points");
  if (points.length) { showIncident(points[0].properties.id); return; }
  if (hits("incident-clusters").length) {
    map.easeTo({ center: e.lngLat, zoom: Math.min(map.getZoom() + 2, 16) });
    return;
  }
  const posts = hits("post-circles");
  if (posts.length) {
    const p = posts[0].properties;
    const content = el("div", {}, el("strong", { text: localName(p), title: p.name }), el("div", { text: [t(`post.${p.kind}`), p.agency, p.border].filter(Boolean).join(" · ") }));
    new window.maplibregl.Popup().setLngLat(posts[0].geometry.coordinates).setDOMContent(content).addTo(map);
    return;
  }
  const cells = hits("emerging-fill");
  if (cells.length) {
    showEmergingCell(cells[0].properties, e.lngLat);
    return;
  }
  const areas = hits("postarea-fill");
  if (areas.length) {
    showPostArea(areas[0].properties, e.lngLat);
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

/** A post's area of responsibility: the post (Vietnamese name with its diacritics, the English
 * one when the page is English; the other on hover), its kind, border and area. */
function postAreaName(p) {
  return lang() === "en" ? p.name || localName(p) : localName(p);
}

function showPostArea(p, lngLat) {
  const name = postAreaName(p);
  const other = lang() === "en" ? localName(p) : p.name;
  const kind = has(`post.${p.kind}`) ? t(`post.${p.kind}`) : p.kind; // a kind added later: its code
  const content = el("div", { className: "postarea-popup", dataset: { code: p.code } },
    el("strong", { text: name, title: other && other !== name ? other : "" }),
    el("div", { text: [kind, p.border].filter(Boolean).join(" · ") }),
    el("div", { className: "muted", text: t(`postareas.${p.area_source === "generated" ? "generated" : "drawn"}`,
      { km2: number(p.area_km2, { maximumFractionDigits: 1 }) }) }));
  new window.maplibregl.Popup({ maxWidth: "280px" }).setLngLat(lngLat).setDOMContent(content).addTo(map);
}

/** An emerging hot-spot cell: its category, the trend of its z-scores and its counts. */
function showEmergingCell(p, lngLat) {
  let trend = t("emerging.popup.noTrend");
  if (p.trend_z !== undefined && p.trend_p !== undefined) {
    const direction = p.trend_p > TREND_ALPHA ? "none" : p.trend_z > 0 ? "up" : "down";
    trend = t("emerging.popup.trend", { direction: t(`emerging.trend.${direction}`),
      z: number(p.trend_z, { maximumFractionDigits: 2 }), p: number(p.trend_p, { maximumFractionDigits: 3 }) });
  }
  const [first, last] = String(p.period || "").split("/");
  const content = el("div", { className: "emerging-popup", dataset: { cell: p.cell, category: p.category } },
    el("strong", { text: t(`emerging.${p.category}`) }),
    el("div", { text: trend }),
    el("div", { text: t("emerging.popup.counts", { count: p.count, last: p.count_last, period: `${first} – ${last}` }) }),
    el("div", { className: "muted", text: t("emerging.popup.steps", { hot: p.hot_steps, cold: p.cold_steps }) }));
  new window.maplibregl.Popup({ maxWidth: "280px" }).setLngLat(lngLat).setDOMContent(content).addTo(map);
}
