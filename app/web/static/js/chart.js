// The monthly trend: plain SVG bars, the selected months darker, the months of a comparison
// period outlined; a click picks a month.

import { number, t } from "./i18n.js";

const NS = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, text = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

/** Bars for `months` (every month, in order) with counts from `groups` ({key, count});
 * `compared` ({from, to}, "YYYY-MM"): the comparison period's months, outlined. */
export function trendChart({ months, groups, from, to, onPick, compared = null }) {
  const counts = new Map(groups.map((g) => [g.key, g.count]));
  const width = 300;
  const height = 120;
  const pad = { left: 30, right: 4, top: 8, bottom: 20 };
  const max = Math.max(1, ...months.map((m) => counts.get(m) || 0));
  const bw = (width - pad.left - pad.right) / Math.max(1, months.length);
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, class: "trend", role: "img",
    "aria-label": t("stats.perMonth") });
  const y = (v) => pad.top + (height - pad.top - pad.bottom) * (1 - v / max);
  svg.append(el("line", { x1: pad.left, x2: width - pad.right, y1: y(0), y2: y(0), class: "axis" }));
  svg.append(el("text", { x: pad.left - 4, y: y(max) + 4, "text-anchor": "end", class: "tick" }, number(max)));
  svg.append(el("text", { x: pad.left - 4, y: y(0), "text-anchor": "end", class: "tick" }, "0"));
  months.forEach((m, i) => {
    const v = counts.get(m) || 0;
    const inside = (!from || m >= from) && (!to || m <= to);
    const before = compared && m >= compared.from && m <= compared.to;
    const bar = el("rect", { x: pad.left + i * bw + 0.5, y: y(v), width: Math.max(1, bw - 1),
      height: Math.max(0, y(0) - y(v)), class: `bar${inside ? " in" : ""}${before ? " compared" : ""}`,
      ...(before ? { stroke: "#495057", "stroke-width": 1, "stroke-dasharray": "2 1" } : {}) });
    bar.append(el("title", {}, t("chart.bar", { month: m, count: v })));
    bar.addEventListener("click", () => onPick && onPick(m));
    svg.append(bar);
    const janSoon = months.slice(1, 4).some((n) => n.endsWith("-01"));
    if (m.endsWith("-01") || (i === 0 && !janSoon)) {
      svg.append(el("text", { x: pad.left + i * bw, y: height - 6, class: "tick" }, m.slice(0, 4)));
    }
  });
  return svg;
}
