// "In this view": counts by category, clearance rate, incidents per month and the busiest
// cross-boundary pairs, for the map's extent and the filters; with a comparison chosen (the
// previous period of the same length, or the same period last year) each count beside the
// comparison period's, the change, and ▲/▼ where the exact Poisson test calls it significant.

import { getJSON } from "./api.js";
import { trendChart } from "./chart.js";
import { categoryName, map, placeName } from "./context.js";
import { paletteColour, viewBbox } from "./mapview.js";
import { apply, date, number, t } from "./i18n.js";
import { reportError } from "./messages.js";
import { filterParams, state, writeUrl } from "./state.js";
import { pickMonths } from "./time.js";
import { $, el, percent } from "./ui.js";

const TOP_PAIRS = 5;
const COMPARE_MODES = ["none", "previous_period", "same_period_last_year"];
const RISE = "#c92a2a"; // more incidents: the border's red
const FALL = "#2b8a3e";

let inFlight = null; // the AbortController of the statistics being fetched: a newer view wins
let askedFor = null; // the view and filters of the last statistics asked for

/** The statistics again if the view moved since they were asked for (a pan that came back,
 * or a resize that left the box as it was, asks nothing). */
export function refreshStatsIfMoved() {
  return askedFor === asked(viewBbox(map)) ? undefined : refreshStats();
}

function asked(bbox) {
  return `${bbox} ${JSON.stringify(filterParams())} ${state.compare}`;
}

/** The comparison asked of the API: null unless one is chosen and the time filter has both
 * ends (the API needs a bounded period). */
function comparison() {
  const f = state.filters;
  return state.compare !== "none" && f.from && f.to ? state.compare : null;
}

/** The "compare with" selector above the panel's figures (made once). */
function compareControl() {
  if ($("stats-compare")) return;
  const select = el("select", { id: "stats-compare" },
    ...COMPARE_MODES.map((mode) => el("option", { value: mode, dataset: { i18n: `stats.compare.${mode}` } })));
  select.value = state.compare;
  select.addEventListener("change", () => {
    state.compare = select.value;
    writeUrl(map); // kept in the link (and through a change of language)
    refreshStats();
  });
  const label = el("label", { className: "small", htmlFor: "stats-compare", dataset: { i18n: "stats.compare" } });
  const row = el("div", { id: "stats-compare-row", className: "small" }, label, " ", select);
  $("stats-body").before(row);
  apply(row);
}

export async function refreshStats() {
  if (inFlight) inFlight.abort();
  inFlight = new AbortController();
  const signal = inFlight.signal;
  const bbox = viewBbox(map);
  askedFor = asked(bbox);
  compareControl();
  const compare = comparison();
  try {
    const [byCategory, byMonth, cross] = await Promise.all([
      getJSON("/analysis/stats", { ...filterParams(), bbox, group_by: "category", ...(compare ? { compare } : {}) }, signal),
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
  const compared = byCategory.compare ? byCategory : null;
  body.replaceChildren(
    el("div", { className: "kpis" },
      kpi("stat-total", number(byCategory.total), t("stats.incidents", { count: byCategory.total })),
      kpi("stat-clearance", percent(byCategory.clearance_rate), t("stats.cleared"))),
    comparisonLine(compared),
    categoryBars(byCategory.groups, compared !== null),
    el("h3", { text: t("stats.perMonth") }),
    trendChart({ months: state.months, groups: byMonth.groups, from: state.filters.from,
      to: state.filters.to, onPick: (m) => pickMonths(m, m),
      compared: compared && { from: compared.comparison_period.start.slice(0, 7),
        to: compared.comparison_period.end.slice(0, 7) } }),
    el("h3", { text: t("stats.pairsTitle") }),
    busiestPairs(pairs));
}

/** The comparison period and its total, and the total's change; or why there is none. */
function comparisonLine(compared) {
  if (state.compare === "none") return "";
  if (!compared) return el("p", { id: "stat-compare", className: "small muted", text: t("stats.compare.needsPeriod") });
  const p = compared.comparison_period;
  const line = el("div", { id: "stat-compare", className: "small",
    dataset: { compare: compared.compare, previous: compared.previous_total, change: compared.change,
      significant: compared.significant } },
  el("span", { text: `${t(`stats.compare.${compared.compare}`)}, ${t("stats.compare.summary",
    { from: day(p.start), to: day(p.end), count: compared.previous_total })}` }),
  " · ", el("span", { text: `${t("stats.compare.change")}: ` }), changeBadge(compared, "stat-change"));
  return el("div", {}, line, el("p", { className: "small muted", text: t("stats.compare.legend") }));
}

/** A local (Vietnam) calendar day of an ISO time, in the page's language. */
function day(iso) {
  return date(iso, { day: "2-digit", month: "2-digit", year: "numeric" });
}

/** "+25 (+166,7 %) ▲": the change, in percent of the comparison count ("new" when that was
 * 0), and the marker of a significant change; the p-value in the tooltip. */
function changeBadge(g, id) {
  const signed = { signDisplay: "exceptZero" };
  const pct = g.change_pct === null
    ? (g.count > 0 ? t("stats.compare.new") : "–")
    : number(g.change_pct / 100, { ...signed, style: "percent", maximumFractionDigits: 1 });
  const marker = g.significant ? (g.change > 0 ? " ▲" : " ▼") : "";
  const p = g.p_value === null ? "–" : number(g.p_value, { maximumSignificantDigits: 2 });
  const badge = el("span", { id, className: "bar-change", text: `${number(g.change, signed)} (${pct})${marker}`,
    title: t(g.significant ? "stats.compare.significant" : "stats.compare.chance", { p }) });
  if (g.significant) Object.assign(badge.style, { color: g.change > 0 ? RISE : FALL, fontWeight: "700" });
  return badge;
}

function categoryBars(groups, comparing) {
  const max = Math.max(1, ...groups.map((g) => g.count));
  const index = new Map(state.categories.map((c, i) => [c.code, i]));
  const list = el("div", { className: "bars", id: "stat-categories" });
  for (const g of groups) {
    const fill = el("span", { className: "bar-fill" });
    Object.assign(fill.style, { width: `${(100 * g.count) / max}%`, background: paletteColour(index.get(g.key) ?? 0) });
    const row = el("div", { className: "bar-row", dataset: { category: g.key, count: g.count } },
      el("span", { className: "bar-label", text: categoryName(g.key) }),
      el("span", { className: "bar-track" }, fill),
      el("span", { className: "bar-value", text: number(g.count) }));
    if (comparing) {
      Object.assign(row.dataset, { previous: g.previous_count, change: g.change, significant: g.significant });
      row.style.gridTemplateColumns = "112px 1fr 26px 88px";
      row.append(changeBadge(g));
    }
    list.append(row);
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
