// Place search: provinces, communes and border posts of either map by name, accents and case
// ignored (GET /places?q=); the map flies to the first result's bounding box, the others are
// listed to pick from.

import { getJSON } from "./api.js";
import { map } from "./context.js";
import { geometryBounds } from "./geometry.js";
import { date, t } from "./i18n.js";
import { reportError } from "./messages.js";
import { newestOnly } from "./refresh.js";
import { $, el } from "./ui.js";

const RESULTS = 8;
const FLY = { padding: 40, maxZoom: 13, duration: 800 };
const newestSearch = newestOnly();

export function setUpPlaceSearch() {
  const input = el("input", { type: "search", id: "place-q", placeholder: t("places.placeholder"),
    autocomplete: "off", required: true });
  input.setAttribute("aria-label", t("places.label"));
  const form = el("form", { id: "place-search", role: "search", className: "row" },
    input, el("button", { type: "submit", text: t("places.search") }));
  $("places").replaceChildren(el("h2", { text: t("places.title") }), form,
    el("ul", { id: "place-results", className: "place-results" }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    search(input.value.trim());
  });
}

async function search(q) {
  if (!q) return;
  const isNewest = newestSearch();
  try {
    const fc = await getJSON("/places", { q, limit: RESULTS });
    if (!isNewest()) return;
    const features = (fc.features || []).slice(0, RESULTS);
    showResults(features);
    if (features.length) flyTo(features[0]);
  } catch (err) {
    reportError(t("places.failed"), err);
  }
}

function showResults(features) {
  const list = $("place-results");
  if (!features.length) {
    list.replaceChildren(el("li", { className: "muted", text: t("places.none") }));
    return;
  }
  list.replaceChildren(...features.map((f) => {
    const p = f.properties;
    const button = el("button", { type: "button", className: "link",
      text: p.name_local || p.display_name || p.name,
      title: p.name, dataset: { code: p.code || "" } });
    button.addEventListener("click", () => flyTo(f));
    return el("li", {}, button, el("span", { className: "small muted", text: ` ${describe(p)}` }));
  }));
}

/** Its level and, for a unit of one map only, when it was in force. */
function describe(p) {
  const parts = [t(`places.level.${p.level}`)];
  if (p.valid_to) parts.push(t("places.until", { day: date(p.valid_to) }));
  else if (p.valid_from) parts.push(t("places.since", { day: date(p.valid_from) }));
  if (Array.isArray(p.became) && p.became.length) {
    parts.push(t("places.became", { names: p.became.map((b) => b.name_local || b.name).join(", ") }));
  }
  return parts.filter(Boolean).join(" · ");
}

/** The map to the feature's bbox (or its geometry's bounds). */
function flyTo(feature) {
  const b = feature.bbox;
  const bounds = b && b.length >= 4
    ? [[b[0], b[1]], [b[b.length / 2], b[b.length / 2 + 1]]]
    : feature.geometry && geometryBounds(feature.geometry);
  if (bounds) map.fitBounds(bounds, FLY);
}
