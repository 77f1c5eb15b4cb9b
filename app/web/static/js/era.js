// The administrative map shown: today's (34 provinces and their communes since 1 July 2025),
// the one before 1 July 2025 (63 provinces), or the one in force on a chosen day. It sets
// `at=` of the province list (/jurisdictions: fills, names, clicks) and of the boundary tiles
// (/tiles/jurisdictions: province and commune lines); incidents and statistics do not change.

import { getJSON } from "./api.js";
import { map, setPlaces } from "./context.js";
import { t } from "./i18n.js";
import { reportError } from "./messages.js";
import { PLACE_LANG } from "./names.js";
import { clearProvince } from "./neighbours.js";
import { newestOnly, whileWorking } from "./refresh.js";
import { eraParams, state, writeUrl } from "./state.js";
import { $, el } from "./ui.js";

const MODES = ["today", "before", "date"];
const SIMPLIFY_M = 500; // the province list is for fills and clicks: 500 m is plenty

let labels = null; // mapview.js createLabels(), once the map is up
let pending = false; // an era chosen before the map could show it

/** Countries and provinces in force on the era's day (GeoJSON FeatureCollection). */
export async function loadUnits() {
  const at = eraParams();
  const [countries, provinces] = await Promise.all([
    getJSON("/jurisdictions", { level: "country", simplify: SIMPLIFY_M, lang: PLACE_LANG, ...at }),
    getJSON("/jurisdictions", { level: "province", simplify: SIMPLIFY_M, lang: PLACE_LANG, ...at })]);
  state.provinces = provinces.features.map((f) => f.properties.code);
  setPlaces(provinces.features);
  return { type: "FeatureCollection", features: [...countries.features, ...provinces.features] };
}

/** The boundary tiles of the era (their URLs carry `at` and the layer's version). */
export async function boundaryTiles() {
  const tj = await getJSON("/tiles/jurisdictions.json", eraParams());
  return tj.tiles;
}

/** The radio buttons and the day, in the side bar's first section. */
export function buildEra() {
  const box = $("era");
  const day = el("input", { type: "date", id: "era-date", value: state.era.date,
    disabled: state.era.mode !== "date" });
  day.setAttribute("aria-label", t("era.day"));
  const radios = MODES.map((mode) => {
    const input = el("input", { type: "radio", name: "era", value: mode, checked: state.era.mode === mode });
    return el("label", {}, input, t(`era.mode.${mode}`));
  });
  box.replaceChildren(el("h2", { text: t("era.title") }),
    el("div", { className: "checks", role: "radiogroup" }, ...radios),
    el("div", { className: "row" }, day),
    el("div", { id: "era-count", className: "small muted" }));
  box.addEventListener("change", (e) => {
    if (e.target.name === "era") {
      state.era = { mode: e.target.value, date: day.value };
      day.disabled = e.target.value !== "date";
      if (e.target.value === "date" && !day.value) return; // waits for a day
    } else if (e.target === day) {
      if (!day.value) return;
      state.era = { mode: "date", date: day.value };
    } else return;
    showEra();
  });
  showCount();
}

/** The labels to keep in step with the era (set once the map has loaded); an era chosen
 * while the map was still loading is shown now. */
export function setLabels(created) {
  labels = created;
  if (pending) {
    pending = false;
    showEra();
  }
}

const newestEra = newestOnly();

/** Redraw the map with the units of the era now chosen. */
export function showEra() {
  writeUrl(map);
  return whileWorking(async () => {
    const isNewest = newestEra();
    try {
      const [units, tiles] = await Promise.all([loadUnits(), boundaryTiles()]);
      if (!isNewest()) return;
      if (!map || !map.getSource("boundaries")) {
        pending = true; // the map is not up yet: setLabels shows it
        return;
      }
      map.getSource("jurisdictions").setData(units);
      map.getSource("boundaries").setTiles(tiles);
      if (labels) labels.setUnits(units.features);
      showCount();
      // a province of another map cannot stay selected
      if (state.selected && !state.provinces.includes(state.selected)) clearProvince();
    } catch (err) {
      reportError(t("era.failed"), err);
    }
  });
}

function showCount() {
  const out = $("era-count");
  if (out) out.textContent = state.provinces.length ? t("era.count", { count: state.provinces.length }) : "";
}
