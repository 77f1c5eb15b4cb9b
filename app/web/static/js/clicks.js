// What a click on the map does, in this order: the nearby tool when it is on; else the topmost
// of an incident (its details), an aggregate (zoom in), a border post (its name), a province
// (select it, or clear it when it is selected).

import { map } from "./context.js";
import { nearbyToolOn, runNearby, showIncident } from "./incident.js";
import { isShown } from "./mapview.js";
import { localName } from "./names.js";
import { clearProvince, selectProvince } from "./neighbours.js";
import { state } from "./state.js";
import { el } from "./ui.js";
import { t } from "./i18n.js";

const HIT_PX = 4; // a click this close to a circle hits it
const CLICKABLE = ["incident-points", "incident-clusters", "post-circles", "province-fill"];

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
  const provinces = map.queryRenderedFeatures(e.point, { layers: ["province-fill"] });
  if (provinces.length) {
    const code = provinces[0].properties.code;
    if (code === state.selected) clearProvince();
    else selectProvince(code);
  } else if (state.selected) {
    clearProvince();
  }
}
