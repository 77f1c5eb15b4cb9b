// The live feed: GET /events (Server-Sent Events, read with fetch() so the key travels as a
// header, never in a URL) with the page's filters. New and changed incidents pulse on the map
// and refresh the tiles (through their version token), statistics and panels, at most once per
// REFRESH_GAP_MS however many arrive; alerts go to the alerts panel. The connection resumes
// after a drop with Last-Event-ID (no event lost or repeated), with a growing wait between
// attempts; `resync` reloads everything, `end` stops and says why. The indicator in the top bar
// shows the state. Readers only (officer, analyst, admin): a viewer's key may not subscribe,
// and its map keeps checking the incidents' version every 30 s (layers.js).

import { ApiError, authHeaders, getJSON, url } from "./api.js";
import { loadAlerts, onAlertEvent, showAlertsPanel } from "./alerts.js";
import { map } from "./context.js";
import { pulse } from "./mapview.js";
import { t } from "./i18n.js";
import { reportError, showMessage } from "./messages.js";
import { apply, throttled } from "./refresh.js";
import { readStream, StreamError } from "./sse.js";
import { filterParams, monthsOf, state } from "./state.js";
import { includeMonth } from "./time.js";
import { $ } from "./ui.js";

const PULSE_MS = 6000; // how long a new or changed incident pulses on the map
const REFRESH_BURST_MS = 400; // events arriving this close together make one refresh
const REFRESH_GAP_MS = 2000; // and refreshes are at least this far apart
const DEFAULT_RETRY_MS = 3000; // until the server's `retry:` says otherwise
const MAX_BACKOFF_MS = 30000;
// the server sends a heartbeat every 15 s: this long without a byte means a dead connection
// (a half-open TCP connection through a proxy never errors by itself)
const SILENCE_MS = 45000;
const PULSING = new Set(["incident.created", "incident.changed", "incident.status",
  "incident.restored", "alert.raised"]);
const HOURS_AHEAD_OF_UTC = 7; // Vietnam's calendar months, as the filters and stats count them
// with a filter on, the feed carries only the alerts of incidents it lets through, while the
// panel lists every alert of the key: it re-reads the list this often
const FILTERED_ALERTS_MS = 60000;

/** The feed's state, also the test hook `window.borderwatch.live`. */
export const live = {
  status: "off", // off | connecting | live | reconnecting | ended
  lastEventId: null, // sent back as Last-Event-ID when the connection is made again
  connects: 0, // connections the server accepted
  received: [], // the latest events: { event, id, incident }
  refreshes: 0, // refreshes of the map and panels the feed caused (finished)
  refreshStarts: [], // when the latest of them began (performance.now(), ms)
  reason: null, // why it ended
};
const KEEP_RECEIVED = 50;

let controller = null; // of the connection in use
let generation = 0; // bumped by every new connection: late callbacks of older ones do nothing
let streamKey = ""; // the filters of the connection in use
let retryMs = DEFAULT_RETRY_MS;
let attempt = 0; // failed attempts since the last accepted connection
let retryTimer = null;
let silenceTimer = null;
let ready = false; // start-up has drawn the layers and panels: refreshes may run
let missed = false; // events came before that

const refreshSoon = throttled(async () => {
  live.refreshStarts.push(performance.now());
  if (live.refreshStarts.length > KEEP_RECEIVED) live.refreshStarts.shift();
  await apply();
  live.refreshes += 1;
}, { burstMs: REFRESH_BURST_MS, gapMs: REFRESH_GAP_MS });

/** The feed's query: the filters without the time window (▶ would restart it every month, and
 * the trend chart counts every month anyway); the time filter decides only what pulses. */
function streamParams() {
  return filterParams({ withTime: false });
}

/** Open the feed (readers only); the alerts panel with it. */
export function startLive() {
  if (!state.reader) return;
  showAlertsPanel();
  streamKey = JSON.stringify(streamParams());
  window.addEventListener("online", () => {
    if (live.status === "reconnecting") connect();
  });
  setInterval(() => {
    if (live.status === "live" && !document.hidden && streamKey !== "{}") loadAlerts();
  }, FILTERED_ALERTS_MS);
  connect();
}

/** Start-up has drawn everything: refreshes may run now (one now if events came before). */
export function liveReady() {
  ready = true;
  if (missed) refreshSoon();
}

/** One of apply()'s refreshers: new filters, a new subscription (resuming where the last one
 * stopped, so no event in between is lost). */
export async function followFilters() {
  if (!state.reader || live.status === "ended" || live.status === "off") return;
  const key = JSON.stringify(streamParams());
  if (key === streamKey) return;
  streamKey = key;
  attempt = 0;
  connect();
}

function setStatus(status, title) {
  live.status = status;
  const box = $("live-status");
  box.hidden = status === "off";
  box.className = `live-status ${status}`;
  box.textContent = status === "off" ? "" : t(`live.status.${status}`);
  box.title = title || (status === "connecting" || status === "live" ? t(`live.title.${status}`) : "");
}

function connect() {
  clearTimeout(retryTimer);
  retryTimer = null;
  if (controller) controller.abort();
  controller = new AbortController();
  const mine = ++generation;
  const current = () => mine === generation;
  const hadPosition = Boolean(live.lastEventId);
  setStatus(attempt ? "reconnecting" : "connecting");
  const headers = authHeaders();
  if (live.lastEventId) headers["Last-Event-ID"] = live.lastEventId;
  const quiet = () => {
    clearTimeout(silenceTimer);
    silenceTimer = setTimeout(() => { if (current()) retry(); }, SILENCE_MS);
  };
  readStream({
    url: url("/events", streamParams()),
    headers,
    signal: controller.signal,
    onOpen: () => {
      if (!current()) return;
      const reconnected = live.connects > 0;
      live.connects += 1;
      attempt = 0;
      setStatus("live");
      quiet();
      loadAlerts(); // alerts raised while the feed was away, or before it opened
      // without a position to resume from, the server starts at its newest event: whatever
      // happened while we were away is only in a fresh reload
      if (reconnected && !hadPosition) changed();
    },
    onActivity: () => { if (current()) quiet(); },
    onRetry: (ms) => { retryMs = Math.max(500, ms); },
    onEvent: (e) => { if (current()) receive(e); },
  }).then(() => {
    if (current() && live.status !== "ended") retry(); // the server closed the stream
  }).catch((err) => {
    if (!current() || err.name === "AbortError") return;
    if (err instanceof StreamError && err.status === 401) {
      stop(err.message);
      reportError(t("live.refused"), new ApiError(401, t("error.unauthorized"), err.message, "/events"));
    } else if (err instanceof StreamError && err.status === 403) {
      stop(err.message); // this key may not follow the feed (its role changed): stay quiet
      $("live-status").hidden = true;
      $("alerts").hidden = true;
    } else {
      retry();
    }
  });
}

/** The connection failed or went quiet: try again after a growing, jittered wait. */
function retry() {
  if (controller) controller.abort();
  controller = null;
  generation += 1;
  clearTimeout(silenceTimer);
  attempt += 1;
  const wait = Math.min(MAX_BACKOFF_MS, retryMs * 2 ** (attempt - 1)) * (0.8 + 0.4 * Math.random());
  setStatus("reconnecting", t("live.title.reconnecting", { seconds: Math.round(wait / 1000) }));
  retryTimer = setTimeout(connect, wait);
}

/** The feed ends for good (the key stopped working, or was refused). */
function stop(reason) {
  if (controller) controller.abort();
  controller = null;
  generation += 1;
  clearTimeout(silenceTimer);
  clearTimeout(retryTimer);
  live.reason = reason;
  setStatus("ended", t("live.title.ended", { reason }));
}

function receive({ event, data, id }) {
  if (id) live.lastEventId = id;
  let body;
  try {
    body = JSON.parse(data);
  } catch {
    return; // not ours
  }
  const incident = body.incident || null;
  live.received.push({ event, id, incident: incident && incident.id });
  if (live.received.length > KEEP_RECEIVED) live.received.shift();
  if (event === "end") {
    stop(body.reason || "");
    showMessage(t("live.ended", { reason: body.reason || "" }));
    return;
  }
  if (event === "resync") {
    showMessage(t("live.resync"), "info");
    resync();
    return;
  }
  if (event.startsWith("alert.")) onAlertEvent(event, body);
  if (incident && PULSING.has(event)) show(incident);
  if (event.startsWith("incident.")) changed();
}

/** The map and panels follow, soon (one refresh for a burst). */
function changed() {
  if (!ready) {
    missed = true;
    return;
  }
  refreshSoon();
}

/** A pulse where the incident is, if the time filter lets it through; its month joins the
 * time filter's months when it is new. */
function show(incident) {
  const month = monthOf(incident.occurred_at);
  includeMonth(month);
  const f = state.filters;
  const inTime = !month || ((!f.from || month >= f.from) && (!f.to || month <= f.to));
  const at = incident.location && incident.location.coordinates;
  if (map && at && inTime) pulse(map, at, { id: incident.id, severity: incident.severity, ms: PULSE_MS });
}

/** "YYYY-MM" of an instant in Vietnam. */
function monthOf(iso) {
  const t = Date.parse(iso || "");
  return Number.isNaN(t) ? null : new Date(t + HOURS_AHEAD_OF_UTC * 3600e3).toISOString().slice(0, 7);
}

/** Events were lost (past the retention): reload the months, every layer and panel, the
 * alerts. */
async function resync() {
  loadAlerts();
  if (!ready) {
    missed = true;
    return;
  }
  try {
    const months = await getJSON("/analysis/stats", { group_by: "month" });
    for (const m of monthsOf(months.groups)) includeMonth(m);
  } catch (err) {
    reportError(t("live.refreshing"), err);
  }
  refreshSoon();
}
