// The page's language: Vietnamese or English, chosen by the user (remembered), else the
// browser's first language we have, else Vietnamese. Every text a person reads comes from a
// catalogue under /static/i18n/ (JSON: key → {"vi": …, "en": …}); no page module holds its own.
//
// A value is a string with {name} placeholders, or for English an object {"one": …, "other":
// …} chosen by the count. Elements carry `data-i18n="key"` (their text) and
// `data-i18n-attr="title=key;aria-label=key"` (attributes); `apply()` fills them.

export const LANGS = ["vi", "en"];
const STORED = "borderwatch.lang";
const LOCALES = { vi: "vi-VN", en: "en-GB" };
const TIME_ZONE = "Asia/Ho_Chi_Minh";
const messages = {};
const listeners = new Set();
let current = null;

function fromBrowser() {
  for (const tag of navigator.languages || [navigator.language || ""]) {
    const base = tag.toLowerCase().split("-")[0];
    if (LANGS.includes(base)) return base;
  }
  return "vi";
}

/** The current language ("vi" or "en"). */
export function lang() {
  if (current === null) {
    let stored = null;
    try {
      stored = localStorage.getItem(STORED);
    } catch {
      stored = null; // storage refused (private mode): the browser's language
    }
    current = LANGS.includes(stored) ? stored : fromBrowser();
  }
  return current;
}

/** The locale for Intl formats ("vi-VN" or "en-GB": day before month in both). */
export function locale() {
  return LOCALES[lang()];
}

/** Load catalogues by name (common, dashboard, field …) before the page renders text. */
export async function load(...names) {
  await Promise.all(
    names.map(async (name) => {
      const res = await fetch(`/static/i18n/${name}.json`);
      if (!res.ok) throw new Error(`catalogue ${name}: HTTP ${res.status}`);
      Object.assign(messages, await res.json());
    }),
  );
  document.documentElement.lang = lang();
}

const FORMATTERS = new Map(); // kind, locale and options → an Intl formatter of the page

/** An Intl formatter (NumberFormat, DateTimeFormat, PluralRules) for the current locale, made
 * once per options: the panels format hundreds of numbers and dates (the page's first formatter
 * still loads the locale's data, ~20 ms; docs/decisions.md). */
export function intl(Kind, options = {}) {
  const key = `${Kind.name} ${locale()} ${JSON.stringify(options)}`;
  let made = FORMATTERS.get(key);
  if (!made) {
    made = new Kind(locale(), options);
    FORMATTERS.set(key, made);
  }
  return made;
}

/** The text of `key` in the current language, with {name} placeholders filled. */
export function t(key, params = {}) {
  const entry = messages[key];
  if (entry === undefined) {
    console.error(`i18n: no message "${key}"`);
    return key;
  }
  let text = entry[lang()];
  if (text !== null && typeof text === "object") {
    const rule = intl(Intl.PluralRules).select(Number(params.count ?? 0));
    text = text[rule] ?? text.other;
  }
  return String(text).replace(/\{(\w+)\}/g, (whole, name) =>
    name in params ? format(params[name]) : whole,
  );
}

function format(value) {
  return typeof value === "number" ? number(value) : String(value);
}

/** Whether the catalogues have `key` (for optional texts, e.g. a category code). */
export function has(key) {
  return key in messages;
}

/** Fill `data-i18n` and `data-i18n-attr` under `root`. */
export function apply(root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) {
    node.textContent = t(node.dataset.i18n);
  }
  for (const node of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of node.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split("=").map((s) => s.trim());
      if (attr && key) node.setAttribute(attr, t(key));
    }
  }
}

/** Switch the language: remembered, applied to the page, and announced to `onChange`. */
export function setLang(next) {
  if (!LANGS.includes(next) || next === lang()) return;
  current = next;
  try {
    localStorage.setItem(STORED, next);
  } catch {
    // not remembered; the page still switches
  }
  document.documentElement.lang = next;
  apply();
  for (const fn of listeners) fn(next);
}

/** Call `fn(lang)` after every switch (panels that render text redraw). */
export function onChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** A number in the current locale (1.234,5 in Vietnamese; 1,234.5 in English). */
export function number(value, options = {}) {
  return intl(Intl.NumberFormat, options).format(value);
}

/** A share (0.196 → "19,6 %" / "19.6%"). */
export function percent(value, digits = 1) {
  return number(value, { style: "percent", maximumFractionDigits: digits });
}

// dateStyle/timeStyle cannot be combined with a zone name in Intl: they become fields
const DATE_STYLES = { full: { weekday: "long", day: "numeric", month: "long", year: "numeric" },
  medium: { day: "numeric", month: "short", year: "numeric" },
  long: { day: "numeric", month: "long", year: "numeric" }, short: { day: "2-digit", month: "2-digit", year: "numeric" } };
const TIME_STYLES = { short: { hour: "2-digit", minute: "2-digit" },
  medium: { hour: "2-digit", minute: "2-digit", second: "2-digit" } };

/** A date and time in Vietnam's time zone, with the zone named ("7 Dec 2026, 03:39 GMT+7"). */
export function dateTime(value, options = { dateStyle: "medium", timeStyle: "short" }) {
  const d = value instanceof Date ? value : new Date(value);
  const { dateStyle, timeStyle, ...rest } = options;
  const fields = { ...(DATE_STYLES[dateStyle] || {}), ...(TIME_STYLES[timeStyle] || {}), ...rest };
  if (fields.hour && !fields.timeZoneName) fields.timeZoneName = "shortOffset";
  return intl(Intl.DateTimeFormat, { ...fields, timeZone: TIME_ZONE }).format(d);
}

/** A date (no time) in Vietnam's time zone. */
export function date(value, options = { dateStyle: "medium" }) {
  const d = value instanceof Date ? value : new Date(value);
  return intl(Intl.DateTimeFormat, { ...options, timeZone: TIME_ZONE }).format(d);
}
