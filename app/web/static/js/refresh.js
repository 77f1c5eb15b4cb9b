// Keeping every layer and panel in step with the filters, and knowing when that is done:
// apply() pushes the filters everywhere, scheduleApply() does so once the controls have been
// still for a moment, settled() resolves when nothing is left to do (the test hook), and the
// "Loading…" badge shows while requests or tiles are under way.

import { onBusy, pending } from "./api.js";
import { map } from "./context.js";
import { state, writeUrl } from "./state.js";
import { $ } from "./ui.js";

// Work in progress besides the requests api.js counts: a refresh between its requests, or a
// change waiting out its debounce. settled() must not resolve in those gaps.
let working = 0;
const refreshers = [];
// when the last request, refresh or map draw finished (performance.now(): ms since the page's
// navigation began), and that instant for the last settled() that resolved
let lastActive = 0;
let lastSettledAt = null;

function active() {
  lastActive = performance.now();
}

/** Run `fn`, counted as work in progress. */
export async function whileWorking(fn) {
  working += 1;
  try {
    return await fn();
  } finally {
    working -= 1;
    active();
  }
}

export function isWorking() {
  return working > 0;
}

/** `fn` once calls have stopped for `delay` ms, counted as work in progress from the first
 * call on. */
export function debounced(fn, defaultDelay) {
  let timer = null;
  return (delay = defaultDelay) => {
    if (timer) clearTimeout(timer);
    else working += 1;
    timer = setTimeout(async () => {
      timer = null;
      try {
        await fn();
      } finally {
        working -= 1;
        active();
      }
    }, delay);
  };
}

/** `fn` at most once per `gapMs`: the first call runs it after `burstMs` (the rest of a burst
 * joins it), later calls wait out the gap since the last run; counted as work in progress
 * from the first call on. */
export function throttled(fn, { burstMs, gapMs }) {
  let timer = null;
  let lastRun = -Infinity;
  let running = Promise.resolve();
  return () => {
    if (timer) return;
    working += 1;
    const wait = Math.max(burstMs, lastRun + gapMs - Date.now());
    timer = setTimeout(async () => {
      try {
        await running; // never two at once: a slow run delays the next
        timer = null; // calls from here on make the next run
        lastRun = Date.now();
        running = fn().catch(() => {});
        await running;
      } finally {
        working -= 1;
        active();
      }
    }, wait);
  };
}

/** What apply() refreshes, in order; each does nothing while its layer or panel is closed. */
export function onFiltersChange(...fns) {
  refreshers.push(...fns);
}

/** Push the filters to every layer, the statistics and the open panels. */
export function apply() {
  return whileWorking(async () => {
    writeUrl(map);
    await Promise.all(refreshers.map((fn) => fn()));
    state.applied += 1;
  });
}

export const scheduleApply = debounced(apply, 250);

/** Answers can arrive out of order while the slider moves: only the newest request may draw.
 * `const isNewest = newest();` before a request, `if (!isNewest()) return;` after it. */
export function newestOnly() {
  let last = 0;
  return () => {
    const mine = ++last;
    return () => mine === last;
  };
}

let requestsBusy = 0;
let tilesBusy = false;

function showBusy() {
  $("busy").hidden = requestsBusy === 0 && !tilesBusy;
}

onBusy((n) => {
  requestsBusy = n;
  active();
  showBusy();
});

/** The badge also shows while the map loads tiles. */
export function watchTiles(m) {
  m.on("dataloading", () => { tilesBusy = true; showBusy(); });
  m.on("idle", () => { tilesBusy = false; active(); showBusy(); });
}

/** When the page last settled: the instant (ms since its navigation began) the last request,
 * refresh or map draw before the newest resolved settled() finished (or, when a look found the
 * map busy after that without an event, the first of the calm looks); null before one has.
 * settled() itself resolves 200-300 ms later, after three calm looks (bench_dashboard.py
 * reports both). */
export function settledAt() {
  return lastSettledAt;
}

/** Resolves when no request is in flight and the map has drawn every tile (tests, tools). */
export function settled(timeoutMs = 30000) {
  const until = Date.now() + timeoutMs;
  let calm = 0;
  let calmSince = 0; // the first look of the calm run
  let busySeen = -Infinity; // the last look that found something under way
  return new Promise((resolve, reject) => {
    const check = () => {
      const now = performance.now();
      const idle = map && map.loaded() && map.areTilesLoaded() && !map.isMoving()
        && pending() === 0 && working === 0;
      if (!idle) busySeen = now;
      calm = idle ? calm + 1 : 0;
      if (calm === 1) calmSince = now;
      if (calm >= 3) {
        // the end of the last activity when it came after the last busy look; else (the map was
        // busy without an event saying when it stopped) the first calm look, at most 100 ms late
        lastSettledAt = Math.round(lastActive >= busySeen ? lastActive : calmSince);
        resolve(true);
        return;
      }
      if (Date.now() > until) { reject(new Error("settled-timeout")); return; }
      setTimeout(check, 100);
    };
    check();
  });
}
