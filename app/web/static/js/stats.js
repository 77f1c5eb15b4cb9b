// "In this view": counts by category, clearance rate, incidents per month and the busiest
// cross-boundary pairs, for the map's extent and the filters.

import { getJSON } from "./api.js";
import { trendChart } from "./chart.js";
import { categoryName, map, placeName } from "./context.js";
import { paletteColour, viewBbox } from "./mapview.js";
import { number, t } from "./i18n.js";
import { reportError } from "./messages.js";
import { filterParams, state } from "./state.js";
import { pickMonths } from "./time.js";
import { $, el, percent } from "./ui.js";

const TOP_PAIRS = 5;

let inFlight = null; // the AbortController of the statistics being fetched: a newer view wins
let askedFor = null; // the view and filters of the last statistics asked for

/** The statistics again if the view moved since they were asked for (a pan that came back,
 * or a resize that left the box as it was, asks nothing). */
export function refreshStatsIfMoved() {
  return askedFor === `${viewBbox(map)} ${JSON.stringify(filterParams())}` ? undefined : refreshStats();
}

export async function refreshStats() {
  if (inFlight) inFlight.abort();
  inFlight = new AbortController();
  const signal = inFlight.signal;
  const bbox = viewBbox(map);
  askedFor = `${bbox} ${JSON.stringify(filterParams())}`;
  try {
    const [byCategory, byMonth, cross] = await Promise.all([
      getJSON("/analysis/stats", { ...filterParams(), bbox, group_by: "category" }, signal),
      // every month, whatever the time filter: the chart shows where the selection sits
      getJSON("/analysis/stats", { ...filterParams({ withTime: false }), bbox, group_by: "month" }, signal),
      getJSON("/analysis/cross-boundary", { ...filterParams(), bbox }, signal),
    ]);
    renderStats(byCategory, byMonth, cross.pairs);
  } catch (err) {
    if (err.name === "AbortError") return;
    askedFor = null; // a move asks again
    $("stats-body").textContent = t("stats.unavailable");
    reportError(t("stats.failed"), err);
  }
}

function renderStats(byCategory, byMonth, pairs) {
  const body = $("stats-body");
  body.className = "";
  const kpi = (id, value, after) => el("div", {}, el("span", { className: "kpi", id, text: value }), " ", after);
  body.replaceChildren(
    el("div", { className: "kpis" },
      kpi("stat-total", number(byCategory.total), t("stats.incidents", { count: byCategory.total })),
      kpi("stat-clearance", percent(byCategory.clearance_rate), t("stats.cleared"))),
    categoryBars(byCategory.groups),
    el("h3", { text: t("stats.perMonth") }),
    trendChart({ months: state.months, groups: byMonth.groups, from: state.filters.from,
      to: state.filters.to, onPick: (m) => pickMonths(m, m) }),
    el("h3", { text: t("stats.pairsTitle") }),
    busiestPairs(pairs));
}

function categoryBars(groups) {
  const max = Math.max(1, ...groups.map((g) => g.count));
  const index = new Map(state.categories.map((c, i) => [c.code, i]));
  const list = el("div", { className: "bars", id: "stat-categories" });
  for (const g of groups) {
    const fill = el("span", { className: "bar-fill" });
    Object.assign(fill.style, { width: `${(100 * g.count) / max}%`, background: paletteColour(index.get(g.key) ?? 0) });
    list.append(el("div", { className: "bar-row", dataset: { category: g.key, count: g.count } },
      el("span", { className: "bar-label", text: categoryName(g.key) }),
      el("span", { className: "bar-track" }, fill),
      el("span", { className: "bar-value", text: number(g.count) })));
  }
  if (!groups.length) list.textContent = t("stats.noIncidents");
  return list;
}

function busiestPairs(pairs) {
  const ol = el("ol", { className: "pairs" }, ...pairs.filter((p) => p.count > 0).slice(0, TOP_PAIRS)
    .map((p) => el("li", { text: t("stats.pair", { a: placeName(p.a), b: placeName(p.b), count: p.count }) })));
  // an empty list says so in a paragraph (text straight in an <ol> is not a list item)
  return ol.children.length ? ol : el("p", { className: "small muted", text: t("stats.noPairs") });
}
