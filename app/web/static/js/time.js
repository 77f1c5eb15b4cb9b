// The time filter: from and to months, the one-month slider and ▶ (month by month).

import { apply, scheduleApply, settled } from "./refresh.js";
import { monthRange, state } from "./state.js";
import { $ } from "./ui.js";
import { date, lang, t } from "./i18n.js";

const PLAY_STEP_MS = 1500; // how long ▶ shows each month once the map has drawn it
const SLIDER_DELAY_MS = 150;

let playing = null; // the timer of ▶'s next step

export function buildTime() {
  const f = state.filters;
  setBounds();
  $("f-from").value = f.from || "";
  $("f-to").value = f.to || "";
  $("f-from").addEventListener("change", (e) => { f.from = e.target.value || null; syncTime(); scheduleApply(); });
  $("f-to").addEventListener("change", (e) => { f.to = e.target.value || null; syncTime(); scheduleApply(); });

  const slider = $("month-slider");
  slider.addEventListener("input", () => {
    const m = state.months[Number(slider.value)];
    f.from = m;
    f.to = m;
    syncTime();
    scheduleApply(SLIDER_DELAY_MS);
  });
  $("all-months").addEventListener("click", () => pickMonths(null, null));
  $("play").addEventListener("click", () => (playing ? stopPlaying() : play()));
  syncTime();
}

/** The first and last month of the inputs and the slider's range, from state.months. */
function setBounds() {
  const first = state.months[0];
  const last = state.months[state.months.length - 1];
  for (const id of ["f-from", "f-to"]) {
    $(id).min = first;
    $(id).max = last;
  }
  $("month-slider").max = String(state.months.length - 1);
}

/** A new incident's month ("YYYY-MM") outside the months known so far widens them (the
 * inputs, the slider, the trend chart); true when it did. */
export function includeMonth(month) {
  const first = state.months[0];
  const last = state.months[state.months.length - 1];
  if (!month || (month >= first && month <= last)) return false;
  state.months = monthRange(month < first ? month : first, month > last ? month : last);
  setBounds();
  syncTime();
  return true;
}

/** Show these months now (All months, a bar of the trend chart); ▶ stops. */
export function pickMonths(from, to) {
  stopPlaying();
  state.filters.from = from;
  state.filters.to = to;
  syncTime();
  scheduleApply(0);
}

export function isPlaying() {
  return Boolean(playing);
}

/** The inputs, the slider and the label after the months changed (from ≤ to). */
function syncTime() {
  const f = state.filters;
  if (f.from && f.to && f.from > f.to) [f.from, f.to] = [f.to, f.from];
  // an open end shows the first or last month with data: the same incidents
  $("f-from").value = f.from || state.months[0];
  $("f-to").value = f.to || state.months[state.months.length - 1];
  const label = !f.from && !f.to ? t("time.allMonths")
    : f.from === f.to ? monthName(f.from, "long")
      : t("time.range", { from: f.from ? monthName(f.from) : t("time.start"), to: f.to ? monthName(f.to) : t("time.now") });
  $("month-label").textContent = label;
  const slider = $("month-slider");
  if (f.from && f.from === f.to) {
    slider.value = String(state.months.indexOf(f.from));
    slider.classList.remove("all");
  } else {
    // "All months" (or a range): the handle goes back to the start and reads as not chosen
    slider.value = "0";
    slider.classList.add("all");
  }
  slider.setAttribute("aria-valuetext", label);
}

function play() {
  const f = state.filters;
  let i = f.from && f.from === f.to ? state.months.indexOf(f.from) + 1 : 0;
  if (i >= state.months.length) i = 0;
  showPlayButton(true);
  const step = async () => {
    if (!playing) return;
    if (i >= state.months.length) { stopPlaying(); return; }
    f.from = state.months[i];
    f.to = state.months[i];
    i += 1;
    syncTime();
    await apply();
    try { await settled(); } catch { /* a slow tile: keep playing */ }
    if (playing) playing = setTimeout(step, PLAY_STEP_MS);
  };
  playing = setTimeout(step, 0);
}

function stopPlaying() {
  if (playing) clearTimeout(playing);
  playing = null;
  showPlayButton(false);
}

/** ▶ or ⏸ as CSS shapes (app.css: .play-glyph, .pause-glyph), not font glyphs that a browser
 * without the right font draws as boxes; the label says what a press does. */
function showPlayButton(isPlaying) {
  const button = $("play");
  button.firstElementChild.className = isPlaying ? "glyph pause-glyph" : "glyph play-glyph";
  button.dataset.i18nAttr = isPlaying ? "title=time.pause;aria-label=time.pause" : "title=time.play;aria-label=time.play";
  const label = t(isPlaying ? "time.pause" : "time.play");
  button.setAttribute("aria-label", label);
  button.title = label;
}

/** "2025-03" as the current language writes a month: "Tháng 3 năm 2025" / "March 2025"
 * (long), "thg 3 2025" / "Mar 2025" (short, in a range). */
function monthName(month, width = "short") {
  const name = date(`${month}-15T00:00:00+07:00`, { month: width, year: "numeric" });
  return name.charAt(0).toLocaleUpperCase(lang()) + name.slice(1);
}
