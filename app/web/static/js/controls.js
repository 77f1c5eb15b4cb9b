// The side bar's filters (categories, statuses, severity), layer toggles and legend. The time
// filter is in time.js, the tools in export.js and incident.js.

import { getJSON } from "./api.js";
import { map } from "./context.js";
import { refreshBorderZone, showEmerging, showPostAreas, updateHint } from "./layers.js";
import { t } from "./i18n.js";
import { BAND_COLOURS, COMMUNE_MIN_ZOOM, EMERGING_COLOURS, EMERGING_OUTLINE, HOTSPOT_COLOURS, paletteColour, POST_COLOURS, setLayerVisibility } from "./mapview.js";
import { scheduleApply } from "./refresh.js";
import { LAYERS, state, writeUrl } from "./state.js";
import { categoryName } from "./context.js";
import { $, el, statusName } from "./ui.js";

const HOTSPOT_BINS = [3, 2, 1, -1, -2, -3]; // hottest first
const HOTSPOT_CONFIDENCE = { 3: 99, 2: 95, 1: 90 }; // per cent, by |bin|
const BANDS = [[0, 5], [5, 20], [20, 50]]; // km from the border (the API's bands)

export function buildFilters() {
  const f = state.filters;
  const cats = $("f-categories");
  state.categories.forEach((c, i) => {
    const label = checkbox({ name: "category", value: c.code }, f.categories.includes(c.code),
      swatch({ background: paletteColour(i) }), categoryName(c.code));
    cats.append(label);
  });
  cats.addEventListener("change", () => {
    f.categories = checkedValues(cats);
    scheduleApply();
  });
  $("all-categories").addEventListener("click", () => {
    for (const input of cats.querySelectorAll("input")) input.checked = false;
    f.categories = [];
    scheduleApply();
  });

  const statuses = $("f-statuses");
  for (const s of state.statuses) {
    statuses.append(checkbox({ name: "status", value: s }, f.statuses.includes(s), statusName(s)));
  }
  statuses.addEventListener("change", () => {
    f.statuses = checkedValues(statuses);
    scheduleApply();
  });

  buildCooperation();

  $("f-severity").value = f.severityMin ? String(f.severityMin) : "";
  $("f-severity").addEventListener("change", (e) => {
    f.severityMin = e.target.value ? Number(e.target.value) : null;
    scheduleApply();
  });
}

/** The cooperation areas (/cooperation-areas) as a filter of every panel: `cooperation=`. An
 * area the link names that no longer exists is dropped. */
function buildCooperation() {
  const f = state.filters;
  const select = $("f-cooperation");
  for (const a of state.cooperationAreas) {
    const tags = [a.example ? t("cooperation.example") : "", a.in_force ? "" : t("cooperation.ended")].filter(Boolean);
    const label = tags.length ? `${a.name} (${tags.join(", ")})` : a.name;
    const option = el("option", { value: String(a.id), text: label });
    option.title = [a.lead_unit, a.purpose].filter(Boolean).join(" · ");
    select.append(option);
  }
  if (!state.cooperationAreas.some((a) => a.id === f.cooperation)) f.cooperation = null;
  select.value = f.cooperation ? String(f.cooperation) : "";
  const note = () => {
    const area = state.cooperationAreas.find((a) => a.id === f.cooperation);
    $("cooperation-note").hidden = !area;
    const members = area ? t("cooperation.members", { count: area.member_count }) : "";
    $("cooperation-note").textContent = area ? [area.lead_unit, members].filter(Boolean).join(" · ") : "";
  };
  note();
  select.addEventListener("change", (e) => {
    f.cooperation = e.target.value ? Number(e.target.value) : null;
    note();
    scheduleApply();
    if (f.cooperation) frameArea(f.cooperation);
  });
}

/** Fly to the chosen area (its box, from GET /cooperation-areas/{id}); a failure only leaves
 * the view where it was. */
async function frameArea(id) {
  try {
    const area = await getJSON(`/cooperation-areas/${id}`);
    if (area.bbox && state.filters.cooperation === id) {
      const [x1, y1, x2, y2] = area.bbox;
      map.fitBounds([[x1, y1], [x2, y2]], { padding: 40, duration: 0 });
    }
  } catch {
    // the filter applies all the same; the map keeps its view
  }
}

/** The toggles this key may use (incident points for readers, density cells for viewers). */
export function buildLayerToggles() {
  const toggles = $("layer-toggles");
  for (const layer of LAYERS) {
    if (layer.reader && !state.reader) continue;
    if (layer.viewerOnly && state.reader) continue;
    toggles.append(checkbox({ "data-layer": layer.id }, state.layers[layer.id], t(`layer.${layer.id}`)));
  }
  toggles.addEventListener("change", (e) => {
    const id = e.target.dataset.layer;
    state.layers[id] = e.target.checked;
    setLayerVisibility(map, state.layers, state.reader);
    if (id === "borderzone") refreshBorderZone();
    if (id === "emerging") showEmerging();
    if (id === "postareas") showPostAreas();
    $("bands-summary").hidden = !state.layers.borderzone;
    updateHint();
    writeUrl(map);
    buildLegend();
  });
  buildLegend();
}

function checkbox(attributes, checked, ...label) {
  const input = el("input", { type: "checkbox" });
  for (const [name, value] of Object.entries(attributes)) input.setAttribute(name, value);
  input.checked = checked;
  return el("label", {}, input, ...label);
}

function checkedValues(box) {
  return [...box.querySelectorAll("input:checked")].map((i) => i.value);
}

// colours through the style object: the page's policy allows no inline style (ui.js)
function swatch(style, round = false) {
  const s = el("span", { className: round ? "swatch round" : "swatch" });
  Object.assign(s.style, style);
  return s;
}

function legendBlock(title, items) {
  return [
    el("div", { className: "legend-title", text: title }),
    el("div", { className: "legend-row" }, ...items.map(([sw, label]) => el("span", {}, sw, label))),
  ];
}

// a boundary line in the legend: solid, or dashed for approximate polygons (app.css)
function lineSwatch(dashed) {
  return el("span", { className: dashed ? "line-swatch dashed" : "line-swatch" });
}

/** The emerging hot spots' categories, hot then cold, darkest (strongest, most current)
 * first, each with its fill and outline as drawn (mapview.js); no pattern is not drawn. */
function emergingLegend() {
  const outline = (code) => (EMERGING_OUTLINE.solid.includes(code) ? "solid"
    : EMERGING_OUTLINE.dashed.includes(code) ? "dashed" : "none");
  const item = (code) => el("div", { className: "legend-item", dataset: { category: code } },
    swatch({ background: EMERGING_COLOURS[code], borderStyle: outline(code) }), t(`emerging.${code}`));
  const codes = Object.keys(EMERGING_COLOURS);
  return el("div", { className: "legend-block emerging-legend", dataset: { legend: "emerging" } },
    el("div", { className: "legend-title", text: t("legend.emergingTitle") }),
    el("div", { className: "legend-list" }, ...codes.filter((c) => c.endsWith("_hot_spot")).map(item)),
    el("div", { className: "legend-list" }, ...codes.filter((c) => c.endsWith("_cold_spot")).map(item)),
    el("div", { className: "legend-item", dataset: { category: "no_pattern" } },
      swatch({ background: "transparent", borderStyle: "dotted" }), t("emerging.no_pattern")),
    el("div", { className: "legend-note", text: t("legend.emergingNote") }));
}

/** A legend for each layer that is on (in the toggles' order), none for a layer that is off. */
export function buildLegend() {
  const on = (id) => state.layers[id] && LAYERS.some((l) => l.id === id
    && !(l.reader && !state.reader) && !(l.viewerOnly && state.reader));
  const blocks = [];
  if (on("incidents") || on("density")) {
    const cats = state.categories.map((c, i) => [swatch({ background: paletteColour(i) }), categoryName(c.code)]);
    blocks.push(el("div", { className: "legend-block", dataset: { legend: on("incidents") ? "incidents" : "density" } },
      ...legendBlock(t(on("incidents") ? "layer.incidents" : "layer.density"), cats),
      el("div", { className: "legend-note", text: t("legend.circles") })));
  }
  if (on("heatmap")) {
    blocks.push(el("div", { className: "legend-block", dataset: { legend: "heatmap" } },
      el("div", { className: "legend-title", text: t("layer.heatmap") }),
      el("div", { className: "legend-row" }, el("span", { className: "heat-swatch" }), t("legend.heatmap"))));
  }
  if (on("hotspots")) {
    const hot = HOTSPOT_BINS.map((bin) => [swatch({ background: HOTSPOT_COLOURS[bin] }), t(`legend.hotspot.${bin > 0 ? "hot" : "cold"}`, { confidence: HOTSPOT_CONFIDENCE[Math.abs(bin)] })]);
    blocks.push(el("div", { className: "legend-block", dataset: { legend: "hotspots" } },
      ...legendBlock(t("legend.hotspotsTitle"), hot)));
  }
  if (on("emerging")) blocks.push(emergingLegend());
  if (on("posts")) {
    const posts = Object.entries(POST_COLOURS).map(([kind, colour]) => [swatch({ borderColor: colour }, true), t(`post.${kind}`)]);
    blocks.push(el("div", { className: "legend-block", dataset: { legend: "posts" } },
      ...legendBlock(t("layer.posts"), posts)));
  }
  if (on("postareas")) {
    // each kind's fill and outline as drawn (mapview.js addPostAreaLayer)
    const areas = Object.entries(POST_COLOURS).map(([kind, colour]) =>
      [swatch({ background: `${colour}33`, borderColor: colour }), t(`post.${kind}`)]);
    blocks.push(el("div", { className: "legend-block", dataset: { legend: "postareas" } },
      ...legendBlock(t("layer.postareas"), areas),
      el("div", { className: "legend-note", text: t("legend.postareasNote") })));
  }
  if (on("borderzone")) {
    const bands = BANDS.map(([from, to], i) => [swatch({ background: BAND_COLOURS[i] }), t("legend.band", { from, to })]);
    blocks.push(el("div", { className: "legend-block", dataset: { legend: "borderzone" } },
      ...legendBlock(t("layer.borderzone"), bands)));
  }
  if (on("boundaries")) {
    const lines = [[lineSwatch(false), t("legend.province")], [lineSwatch(false), t("legend.commune")],
      [lineSwatch(true), t("legend.approximate")]];
    blocks.push(el("div", { className: "legend-block", dataset: { legend: "boundaries" } },
      ...legendBlock(t("layer.boundaries"), lines),
      el("div", { className: "legend-note", id: "legend-approximate", text: t("legend.communesFrom", { zoom: COMMUNE_MIN_ZOOM }) })));
  }
  $("legend").replaceChildren(...blocks);
}
