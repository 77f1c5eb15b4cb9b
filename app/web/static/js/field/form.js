// The record form: category, severity, time (Vietnam's, sent with +07:00), position (GPS with
// its accuracy, the pin, typed coordinates, a place name, a photo's EXIF), description, unit,
// photos. It checks the API's rules before anything is sent and names the field at fault; a
// valid record goes into the device's queue first and is sent from there.

import { lang, t } from "../i18n.js";
import * as fieldmap from "./fieldmap.js";
import { getJSON } from "./net.js";
import { ACCEPTED, positionOf, resized } from "./photos.js";
import * as sender from "./sender.js";
import * as store from "./store.js";
import { $, el, uuid, vietnamNowInput, vietnamTime } from "./util.js";

// the API's rules (app/incidents/rules.py)
const DESCRIPTION_MAX = 10000;
const UNIT_MAX = 200;
const PRECISION_MAX_M = 100000;
const CLOCK_SKEW_MS = 5 * 60 * 1000;
const EARLIEST = Date.parse("1900-01-01T00:00:00Z");

let categories = [];
let photos = []; // {id, blob, type, url}
let processing = Promise.resolve();
let exifPosition = null;
let editing = null; // the rejected record being corrected
let keyHashValue = null;
let defaultUnit = "";
let onSaved = () => {};

export const stats = { saved: 0 };

function categoryName(c) {
  return lang() === "vi" ? c.name_vi || c.name : c.name || c.name_vi;
}

/** The category list in the current language (also after a language switch). */
export function renderCategories() {
  const select = $("category");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", text: t("field.category.choose") }));
  for (const c of categories.filter((x) => x.active !== false)) {
    select.append(el("option", { value: c.code, text: categoryName(c) }));
  }
  select.value = chosen;
}

export function categoryLabel(code) {
  const c = categories.find((x) => x.code === code);
  return c ? categoryName(c) : code;
}

function setPosition(lon, lat, accuracy, { fly = false, source = "" } = {}) {
  $("lat").value = lat.toFixed(6);
  $("lon").value = lon.toFixed(6);
  $("precision").value = accuracy === null || accuracy === undefined ? "" : String(Math.round(accuracy));
  fieldmap.setPin(lon, lat, { fly });
  $("position-status").textContent = source;
}

/** The device's position (GPS), into the form with its accuracy. */
export function locate() {
  if (!navigator.geolocation) {
    $("position-status").textContent = t("field.gps.none");
    return Promise.resolve(null);
  }
  $("position-status").textContent = t("field.gps.wait");
  return new Promise((resolve) => {
    navigator.geolocation.getCurrentPosition(
      (pos) => {
        const { longitude, latitude, accuracy } = pos.coords;
        setPosition(longitude, latitude, accuracy, {
          fly: true,
          source: t("field.gps.ok", { m: Math.round(accuracy) }),
        });
        resolve([longitude, latitude]);
      },
      () => {
        $("position-status").textContent = t("field.gps.failed");
        resolve(null);
      },
      { enableHighAccuracy: true, timeout: 15000, maximumAge: 30000 },
    );
  });
}

async function searchPlace() {
  const q = $("place").value.trim();
  const list = $("place-results");
  list.replaceChildren();
  if (!q) return;
  try {
    const { body } = await getJSON("/places", { q, limit: 5, lang: lang() });
    const features = body.features || [];
    if (!features.length) list.append(el("li", { class: "note", text: t("field.place.none") }));
    for (const f of features) {
      const name = f.properties.display_name || f.properties.name;
      const parent = f.properties.parent && (f.properties.parent.display_name || f.properties.parent.name);
      list.append(el("li", {}, el("button", {
        type: "button",
        class: "result",
        text: parent ? `${name} · ${parent}` : name,
        onclick: () => {
          const [lon, lat] = f.geometry.coordinates;
          setPosition(lon, lat, placePrecision(f), { fly: true, source: t("field.place.used", { name }) });
          list.replaceChildren();
        },
      })));
    }
  } catch (err) {
    list.append(el("li", { class: "note", text: err.status === 0 ? t("field.place.offline") : t("field.place.failed") }));
  }
}

/** A place's position is only as good as its size: half its bbox's diagonal, in metres. */
function placePrecision(f) {
  const b = f.properties.bbox || f.bbox;
  if (!Array.isArray(b) || b.length < 4) return null;
  const dy = (b[3] - b[1]) * 111320;
  const dx = (b[2] - b[0]) * 111320 * Math.cos(((b[1] + b[3]) / 2) * (Math.PI / 180));
  return Math.min(PRECISION_MAX_M, Math.round(Math.hypot(dx, dy) / 2));
}

function renderPhotos() {
  const list = $("photo-list");
  list.replaceChildren();
  photos.forEach((p, i) => {
    list.append(el("li", {},
      el("img", { src: p.url, alt: t("field.photo.alt", { n: i + 1 }) }),
      el("button", { type: "button", class: "secondary", text: t("field.photo.remove"),
        "aria-label": t("field.photo.remove.label", { n: i + 1 }),
        onclick: () => {
          URL.revokeObjectURL(p.url);
          photos = photos.filter((x) => x !== p);
          renderPhotos();
        } }),
    ));
  });
}

async function addPhotos(files) {
  const problems = [];
  for (const file of files) {
    if (!ACCEPTED.includes(file.type)) {
      problems.push(t("field.err.photo.type", { name: file.name }));
      continue;
    }
    const found = await positionOf(file); // before resizing: the copy has no EXIF
    if (found && !exifPosition) {
      exifPosition = found;
      $("exif-use").hidden = false;
    }
    try {
      const { blob, type } = await resized(file);
      photos.push({ id: uuid(), blob, type, url: URL.createObjectURL(blob) });
    } catch {
      problems.push(t("field.err.photo.read", { name: file.name }));
    }
  }
  showFieldError("photos", problems.join(" "));
  renderPhotos();
}

function showFieldError(id, message) {
  const node = $(`${id}-error`);
  node.textContent = message || "";
  node.hidden = !message;
  const control = id === "severity" || id === "position" ? $(id) : $(id === "occurred" ? "occurred" : id);
  if (control) control.toggleAttribute("aria-invalid", Boolean(message));
}

function parseNumber(text) {
  const s = String(text).trim().replace(",", ".");
  if (!s) return null;
  return /^[-+]?\d+(\.\d+)?$/.test(s) ? Number(s) : NaN;
}

/** Check the form against the API's rules: [{id, message}] (the message names the field). */
export function validate() {
  const errors = [];
  const add = (id, key, params = {}) =>
    errors.push({ id, message: t(key, { field: t(`field.${id === "occurred" ? "time" : id}`), ...params }) });
  if (!$("category").value) add("category", "field.err.required");
  if (!document.querySelector('input[name="severity"]:checked')) add("severity", "field.err.required");
  const when = vietnamTime($("occurred").value);
  if (!$("occurred").value) add("occurred", "field.err.required");
  else if (!when) add("occurred", "field.err.time");
  else if (Date.parse(when) > Date.now() + CLOCK_SKEW_MS) add("occurred", "field.err.future");
  else if (Date.parse(when) < EARLIEST) add("occurred", "field.err.early");
  const lat = parseNumber($("lat").value);
  const lon = parseNumber($("lon").value);
  if (lat === null || lon === null) add("position", "field.err.position");
  else if (!Number.isFinite(lat) || lat < -90 || lat > 90) add("position", "field.err.lat");
  else if (!Number.isFinite(lon) || lon < -180 || lon > 180) add("position", "field.err.lon");
  const precision = parseNumber($("precision").value);
  if (precision !== null && (!Number.isFinite(precision) || precision < 0 || precision > PRECISION_MAX_M)) {
    add("precision", "field.err.range", { min: 0, max: PRECISION_MAX_M });
  }
  if ($("description").value.length > DESCRIPTION_MAX) add("description", "field.err.long", { max: DESCRIPTION_MAX });
  if ($("unit").value.length > UNIT_MAX) add("unit", "field.err.long", { max: UNIT_MAX });
  return errors;
}

function showErrors(errors) {
  for (const id of ["category", "severity", "occurred", "position", "precision", "description", "unit"]) {
    const found = errors.find((e) => e.id === id);
    showFieldError(id, found ? found.message : "");
  }
  const box = $("errors");
  const list = $("error-list");
  list.replaceChildren(...errors.map((e) => el("li", {}, el("a", { href: `#${e.id}`, text: e.message,
    onclick: (ev) => {
      ev.preventDefault();
      const target = e.id === "severity" ? document.querySelector('input[name="severity"]')
        : e.id === "position" ? $("lat") : $(e.id);
      target.focus();
    } }))));
  box.hidden = errors.length === 0;
  if (errors.length) box.focus();
}

function payload(id) {
  const body = {
    id,
    category: $("category").value,
    severity: Number(document.querySelector('input[name="severity"]:checked').value),
    occurred_at: vietnamTime($("occurred").value),
    location: { type: "Point", coordinates: [parseNumber($("lon").value), parseNumber($("lat").value)] },
  };
  const precision = parseNumber($("precision").value);
  if (precision !== null) body.location_precision_m = precision;
  const description = $("description").value.trim();
  if (description) body.description = description;
  const unit = $("unit").value.trim();
  if (unit) body.unit = unit;
  return body;
}

/** Empty the form for the next record (time now, the unit kept, GPS asked again). */
export function reset({ gps = true } = {}) {
  $("record").reset();
  for (const p of photos) URL.revokeObjectURL(p.url);
  photos = [];
  exifPosition = null;
  editing = null;
  $("exif-use").hidden = true;
  $("occurred").value = vietnamNowInput();
  $("unit").value = defaultUnit;
  $("place-results").replaceChildren();
  $("save").textContent = t("field.save");
  renderPhotos();
  showErrors([]);
  if (gps) locate();
}

/** Load a rejected record into the form to be corrected and re-sent. */
export function edit(record) {
  reset({ gps: false });
  editing = record;
  const p = record.payload;
  $("category").value = p.category;
  const sev = document.querySelector(`input[name="severity"][value="${p.severity}"]`);
  if (sev) sev.checked = true;
  $("occurred").value = p.occurred_at.slice(0, 16);
  const [lon, lat] = p.location.coordinates;
  setPosition(lon, lat, p.location_precision_m ?? null, { fly: true });
  $("description").value = p.description || "";
  $("unit").value = p.unit || "";
  photos = record.photos
    .filter((x) => x.blob)
    .map((x) => ({ id: x.id, blob: x.blob, type: x.type, url: URL.createObjectURL(x.blob) }));
  renderPhotos();
  $("save").textContent = t("field.resend");
  showErrors([]);
  $("category").focus();
}

async function save(event) {
  event.preventDefault();
  await processing;
  const errors = validate();
  showErrors(errors);
  if (errors.length) return;
  // a correction keeps its id unless the server holds that id already with other content
  const fresh = !editing || editing.error?.status === 409;
  const id = fresh ? uuid() : editing.id;
  const record = {
    id,
    keyHash: keyHashValue,
    payload: payload(id),
    photos: photos.map((p) => ({ id: fresh ? uuid() : p.id, blob: p.blob, type: p.type, acked: false })),
    state: "queued",
    incidentAcked: false,
    error: null,
    attempts: 0,
    createdAt: editing && !fresh ? editing.createdAt : new Date().toISOString(),
    sentAt: null,
  };
  await store.put(record);
  if (editing && fresh) await store.remove(editing.id); // replaced by the record under a new id
  stats.saved += 1;
  reset(); // the next record starts from where the officer is now
  $("saved").textContent = t("field.saved.queued");
  onSaved(record);
  sender.flush();
}

/** Wire the form: the categories, the key's hash (marks its records), the unit of the key. */
export function setUp({ categoryList, hash, unit, fixedUnit, saved }) {
  categories = categoryList;
  keyHashValue = hash;
  defaultUnit = unit || "";
  // an officer's records are their unit's (the server lets officers add photos to those only)
  $("unit").readOnly = Boolean(fixedUnit && unit);
  onSaved = saved;
  renderCategories();
  $("record").addEventListener("submit", save);
  $("gps").addEventListener("click", () => locate());
  $("now").addEventListener("click", () => {
    $("occurred").value = vietnamNowInput();
  });
  $("place-go").addEventListener("click", searchPlace);
  $("place").addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      searchPlace();
    }
  });
  $("exif-use").addEventListener("click", () => {
    if (exifPosition) {
      setPosition(exifPosition.lon, exifPosition.lat, null, { fly: true, source: t("field.position.fromexif") });
    }
  });
  $("photos").addEventListener("change", (e) => {
    const files = Array.from(e.target.files || []);
    e.target.value = "";
    processing = processing.then(() => addPhotos(files));
  });
  for (const id of ["lat", "lon"]) {
    $(id).addEventListener("change", () => {
      const lat = parseNumber($("lat").value);
      const lon = parseNumber($("lon").value);
      if (Number.isFinite(lat) && Number.isFinite(lon) && Math.abs(lat) <= 90 && Math.abs(lon) <= 180) {
        fieldmap.setPin(lon, lat, { fly: true });
      }
      $("precision").value = "";
      $("position-status").textContent = t("field.position.typed");
    });
  }
  fieldmap.onPinMoved((lon, lat) => {
    setPosition(lon, lat, null, { source: t("field.position.moved") });
  });
  reset();
}

export function photosPending() {
  return processing;
}
