// The field page (/field): start-up. Catalogues and language, the service worker, the key, the
// map of the key's area, the record form, "Near me", "My records", the queue's sender, the
// test hook (window.borderwatch.field).

import { ApiError } from "../api.js";
import { apply, lang, load, onChange, setLang, t } from "../i18n.js";
import * as fieldmap from "./fieldmap.js";
import * as form from "./form.js";
import { currentKey, forgetKey, keyHash, useKey } from "./key.js";
import * as mine from "./mine.js";
import * as near from "./near.js";
import { age, getJSON, setUpBanner } from "./net.js";
import * as sender from "./sender.js";
import * as store from "./store.js";
import { $ } from "./util.js";

const TABS = ["record", "near", "mine"];
const hook = { ready: false, failed: null, sw: false };
window.borderwatch = { field: hook };

function openTab(name) {
  for (const tab of TABS) {
    const on = tab === name;
    $(`tab-${tab}`).setAttribute("aria-selected", String(on));
    $(`tab-${tab}`).tabIndex = on ? 0 : -1;
    $(`panel-${tab}`).hidden = !on;
  }
  fieldmap.showPin(name === "record");
  if (name === "mine") mine.refresh();
}

function setUpTabs() {
  TABS.forEach((tab, i) => {
    const button = $(`tab-${tab}`);
    button.addEventListener("click", () => openTab(tab));
    button.addEventListener("keydown", (e) => {
      const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      const next = TABS[(i + step + TABS.length) % TABS.length];
      openTab(next);
      $(`tab-${next}`).focus();
    });
  });
  openTab("record");
}

async function registerWorker() {
  if (!("serviceWorker" in navigator)) return;
  try {
    await navigator.serviceWorker.register("/field/sw.js", { scope: "/field" });
    navigator.serviceWorker.ready.then(() => {
      hook.sw = true;
    });
  } catch (err) {
    console.warn("service worker", err); // the page works online without it
  }
}

function setUpSignIn(reason) {
  const dialog = $("signin");
  $("signin-reason").textContent = reason || "";
  $("signin-form").addEventListener("submit", () => {
    const key = $("signin-key").value.trim();
    if (key) {
      useKey(key, $("signin-remember").checked);
      window.location.reload();
    }
  });
  if (!dialog.open) dialog.showModal();
}

async function optional(promise) {
  try {
    return await promise;
  } catch (err) {
    if (err instanceof ApiError) return null;
    throw err;
  }
}

/** The key's area: outline, units (its communes, or the provinces for a national key), national
 * borders, border posts, its latest incidents. What came from the device's copy says when it
 * was saved. */
async function loadArea(me) {
  const l = lang();
  const code = me && me.jurisdiction;
  const [countries, borders, posts, area, units, incidents] = await Promise.all([
    optional(getJSON("/jurisdictions", { level: "country", simplify: 2000, lang: l })),
    optional(getJSON("/borders")),
    optional(getJSON("/border-posts")),
    code ? optional(getJSON(`/jurisdictions/${code}`, { lang: l })) : null,
    optional(getJSON("/jurisdictions", code
      ? { parent: code, level: "commune", simplify: 50, lang: l }
      : { level: "province", simplify: 500, lang: l })),
    optional(getJSON("/incidents", { limit: 200 })),
  ]);
  const body = (x) => (x ? x.body : null);
  await fieldmap.setBase({
    countries: body(countries),
    borders: body(borders),
    posts: body(posts),
    area: area ? { type: "FeatureCollection", features: [area.body] } : null,
    units: body(units),
    incidents: body(incidents),
  });
  if (area) fieldmap.fitTo(area.body.geometry);
  const saved = [countries, units, incidents].map((x) => x && x.savedAt).filter(Boolean).sort();
  $("map-note").textContent = saved.length ? t("field.map.saved", { age: age(saved[0]) }) : "";
  hook.incidents = incidents && incidents.body.features ? incidents.body.features.length : 0;
}

async function start() {
  await load("common", "field");
  apply();
  $("lang").addEventListener("click", () => setLang(lang() === "vi" ? "en" : "vi"));
  setUpBanner();
  const controlled = "serviceWorker" in navigator && !navigator.serviceWorker.controller
    ? new Promise((resolve) => {
      navigator.serviceWorker.addEventListener("controllerchange", resolve, { once: true });
    })
    : null;
  const worker = registerWorker();
  const key = currentKey();
  if (!key) {
    setUpSignIn("");
    hook.ready = true;
    return;
  }
  fieldmap.createMap($("map"));
  let me = null;
  try {
    me = (await getJSON("/me")).body;
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      await forgetKey();
      setUpSignIn(t("field.signin.refused", { reason: err.message }));
      hook.ready = true;
      return;
    }
    // no link and nothing saved yet: the queue still works; the names come back with the link
  }
  const whoami = () => {
    if (me) $("whoami").textContent = t("field.whoami", { name: me.name, role: t(`field.role.${me.role}`) });
  };
  whoami();
  if (me && me.role === "viewer") $("saved").textContent = t("field.viewer");
  $("sign-out").hidden = false;
  $("sign-out").addEventListener("click", async () => {
    await forgetKey();
    window.location.reload();
  });
  const hash = await keyHash(key);
  const categories = await optional(getJSON("/categories"));
  setUpTabs();
  form.setUp({
    categoryList: categories ? categories.body.categories : [],
    hash,
    unit: me && me.unit,
    fixedUnit: me && me.role === "officer",
    saved: () => mine.render(),
  });
  fieldmap.tapMovesPin(() => !$("panel-record").hidden);
  near.setUp();
  await mine.setUp({ keyHashValue: hash, openTab });
  onChange(() => {
    whoami();
    form.renderCategories();
    near.redraw();
    mine.render();
  });
  const area = Promise.all([loadArea(me), mine.refresh()]);
  // on the first visit, answers may have come before the worker controlled the page: ask again
  // through it once it does, so that every one is kept for offline use
  if (controlled) {
    controlled.then(async () => {
      await area;
      await Promise.all([optional(getJSON("/me")), optional(getJSON("/categories")), loadArea(me),
        mine.refresh()]);
      hook.warm = true;
    });
  } else {
    hook.warm = true;
  }
  hook.map = fieldmap.theMap();
  hook.flush = () => sender.flush();
  hook.stats = { sender: sender.stats, form: form.stats };
  hook.queue = async () =>
    (await store.ofKey(hash)).map((r) => ({
      id: r.id, state: r.state, photos: r.photos.map((p) => p.id), acked: r.incidentAcked,
      error: r.error, category: r.payload.category,
    }));
  hook.photosPending = () => form.photosPending();
  sender.start();
  await Promise.all([area, worker]);
  hook.ready = true;
}

start().catch((err) => {
  hook.failed = String(err);
  console.error(err);
});
