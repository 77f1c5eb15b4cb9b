// DOM helpers every panel uses: elements, × buttons, a panel's "Loading…" state, tables, and
// how codes, times and rates read. Elements are built from text (textContent), never from
// markup with data in it; colours go through the style object, never a style="" attribute:
// the page's Content Security Policy allows no inline style (docs/access.md, "Headers").

import { dateTime, percent as sharePercent, t } from "./i18n.js";

const NONE = "–"; // a value the API left empty

export const $ = (id) => document.getElementById(id);

/** An element: `props` are its properties (`text` its text, `dataset` its data-* attributes;
 * undefined ones are left out), `children` nodes or strings. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined) continue;
    if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

/** The × of a message or a panel. */
export function closeButton(label, onClick, className) {
  const button = el("button", { type: "button", className, text: "×" });
  button.setAttribute("aria-label", label);
  button.addEventListener("click", onClick);
  return button;
}

/** A panel's title with a × that closes the panel. */
export function heading(title, onClose) {
  return el("h2", { text: title }, closeButton(t("close"), onClose, "close"));
}

/** Show a panel with its title and one line of state only ("Loading…", "Unavailable."). */
export function showPanelStatus(panel, title, status) {
  panel.hidden = false;
  panel.replaceChildren(el("h2", { text: title }), el("p", { className: "muted", text: status }));
}

/** A table row of text cells, the first `headerCells` of them <th>. A cell given as
 * [text, tooltip] gets a title; an empty one reads "–". */
export function tableRow(cells, headerCells = 0) {
  const tr = el("tr");
  cells.forEach((cell, i) => {
    const [text, title] = Array.isArray(cell) ? cell : [cell];
    tr.append(el(i < headerCells ? "th" : "td", { text: String(text ?? NONE), title }));
  });
  return tr;
}

/** A table: an optional header row (column names, or [name, tooltip]) and rows from tableRow. */
export function table({ id, className, head, rows }) {
  const thead = head ? [el("thead", {}, tableRow(head, head.length))] : [];
  return el("table", { id, className }, ...thead, el("tbody", {}, ...rows));
}

/** A status code in the current language ("under_investigation" → "đang điều tra"). */
export function statusName(code) {
  return t(`status.${code}`);
}

/** A time as people in Vietnam read it, with the zone ("–" when there is none): a notice
 * others act on must say which clock it means. vi-VN or en-GB after the language. */
export function when(iso) {
  return iso ? dateTime(iso) : NONE;
}

/** The same (kept for the panels that say "zoned"). */
export function whenZoned(iso) {
  return iso ? dateTime(iso) : NONE;
}

/** A rate (0–1) as a percentage in the current locale ("–" when there is none). */
export function percent(rate) {
  return rate === null || rate === undefined ? NONE : sharePercent(rate);
}
