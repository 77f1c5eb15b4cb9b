// The time filter: from and to months, the one-month slider and ▶ (month by month).

import { apply, scheduleApply, settled } from "./refresh.js";
import { monthRange, state } from "./state.js";
import { $ } from "./ui.js";

const TEXT = {
  allMonths: "All months",
  month: (m) => `Month ${m}`,
  range: (from, to) => `${from || "start"} – ${to || "now"}`,
  play: "Play month by month",
  pause: "Pause",
};
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
  const label = !f.from && !f.to ? TEXT.allMonths
    : f.from === f.to ? TEXT.month(f.from) : TEXT.range(f.from, f.to);
  $("month-label").textContent = label;
  if (f.from && f.from === f.to) $("month-slider").value = String(state.months.indexOf(f.from));
}

function play() {
  const f = state.filters;
  let i = f.from && f.from === f.to ? state.months.indexOf(f.from) + 1 : 0;
  if (i >= state.months.length) i = 0;
  $("play").textContent = "⏸";
  $("play").setAttribute("aria-label", TEXT.pause);
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
  $("play").textContent = "▶";
  $("play").setAttribute("aria-label", TEXT.play);
}
