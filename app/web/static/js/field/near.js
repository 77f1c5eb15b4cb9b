// "Near me": one tap asks the GPS, then GET /incidents/nearby (nearest first, with distance_m);
// a list with distance and compass direction, numbered markers on the map, the map fitted.

import { dateTime, number, t } from "../i18n.js";
import { categoryLabel } from "./form.js";
import * as fieldmap from "./fieldmap.js";
import { getJSON } from "./net.js";
import { $, compass, el } from "./util.js";

const LIMIT = 50;

export const last = { features: [], origin: null };

function here() {
  return new Promise((resolve, reject) => {
    if (!navigator.geolocation) {
      reject(new Error("no-geolocation")); // the caller says it in the user's language
      return;
    }
    navigator.geolocation.getCurrentPosition(
      (pos) => resolve([pos.coords.longitude, pos.coords.latitude]),
      reject,
      { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 },
    );
  });
}

function distance(m) {
  return m < 1000
    ? t("field.near.m", { n: Math.round(m) })
    : t("field.near.km", { n: number(m / 1000, { maximumFractionDigits: 1 }) });
}

function render(savedAt) {
  const list = $("near-list");
  list.replaceChildren();
  const [lon, lat] = last.origin;
  const status = last.features.length
    ? t("field.near.found", { count: last.features.length })
    : t("field.near.nothing");
  $("near-status").textContent = savedAt ? `${status} ${t("field.saved.short")}` : status;
  last.features.forEach((f, i) => {
    const p = f.properties;
    const [flon, flat] = f.geometry.coordinates;
    const where = p.distance_m < 10
      ? t("field.near.here")
      : t("field.near.where", {
        distance: distance(p.distance_m),
        direction: t(`field.compass.${compass(lat, lon, flat, flon)}`),
      });
    list.append(el("li", { class: "item" },
      el("span", { class: `num sev${p.severity}`, "aria-hidden": "true", text: String(i + 1) }),
      el("div", { class: "what" },
        el("strong", { text: categoryLabel(p.category) }),
        el("span", { text: where }),
        el("span", { class: "meta", text: t("field.near.meta", {
          severity: p.severity, when: dateTime(p.occurred_at),
          status: t(`status.${p.status}`),
        }) }),
      ),
    ));
  });
}

async function run() {
  $("near-status").textContent = t("field.gps.wait");
  let origin;
  try {
    origin = await here();
  } catch {
    $("near-status").textContent = t("field.gps.failed");
    return;
  }
  const radius = Number($("radius").value);
  const params = { lat: origin[1].toFixed(6), lon: origin[0].toFixed(6), radius_m: radius, limit: LIMIT };
  const days = Number($("days").value);
  if (days) params.datetime = `${new Date(Date.now() - days * 86400000).toISOString().slice(0, 19)}Z/..`;
  $("near-status").textContent = t("field.loading");
  try {
    const { body, savedAt } = await getJSON("/incidents/nearby", params);
    last.origin = origin;
    last.features = body.features || [];
    render(savedAt);
    fieldmap.showNear(origin, last.features, radius);
  } catch (err) {
    $("near-status").textContent = err.status === 0 ? t("field.near.offline") : t("field.near.failed", { reason: err.message });
  }
}

export function renderRadius() {
  for (const option of $("radius").options) {
    option.textContent = distance(Number(option.value));
  }
}

export function setUp() {
  renderRadius();
  $("near-go").addEventListener("click", run);
}

/** After a language switch. */
export function redraw() {
  renderRadius();
  if (last.origin) render(null);
}
