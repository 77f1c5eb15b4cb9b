// Acting on an incident from its details (docs/dashboard.md, "Acting on an incident"): its
// status along the lifecycle (GET /statuses), corrections (PATCH with If-Match), notes and
// photos; and the history as what changed, old → new. Officers and admins act (officers on
// their own unit's incidents; any officer adds notes); analysts read.

import { ApiError, getBlob, getJSON, localPath, patchJSON, postFile, postJSON } from "./api.js";
import { categoryName, placeName } from "./context.js";
import { has, number, t } from "./i18n.js";
import { reportError } from "./messages.js";
import { state } from "./state.js";
import { $, closeButton, el, statusName, when } from "./ui.js";

const ACTORS = new Set(["officer", "admin"]); // roles that change incidents and add notes
const PHOTO_TYPES = ["image/jpeg", "image/png", "image/webp"];
const VIETNAM_MS = 7 * 3600 * 1000; // Vietnam's offset (no daylight saving)
// the fields the history lists, in this order; the rest (bookkeeping, derived codes) is left out
const HISTORY_FIELDS = ["status", "category", "severity", "occurred_at", "location",
  "location_precision_m", "description", "unit", "source", "source_id", "province", "deleted_at"];
const HISTORY_ALIASES = { province_code: "province" }; // the history's column → the field shown

let statuses = null; // GET /statuses, once: code → { next, final }
let objectUrls = []; // thumbnails of the panel shown (revoked when it is redrawn)

/** Whether this key adds notes (officers and admins). */
export function mayNote() {
  return ACTORS.has(state.me?.role);
}

/** Whether this key may change the incident: admins, and officers of the unit that reported it. */
export function mayChange(feature) {
  const me = state.me || {};
  if (me.role === "admin") return true;
  return me.role === "officer" && Boolean(me.unit) && me.unit === feature.properties.unit;
}

export async function loadStatuses() {
  if (!statuses) {
    const answer = await getJSON("/statuses");
    statuses = new Map(answer.statuses.map((s) => [s.code, s]));
  }
  return statuses;
}

/** A field's name in the page's language ("status" → "trạng thái"). */
export function fieldName(name) {
  return has(`incident.field.${name}`) ? t(`incident.field.${name}`) : name;
}

/** A value of the history (or the API) as people read it. */
function formatValue(name, value) {
  if (value === null || value === undefined || value === "") return "–";
  if (name === "status") return statusName(value);
  if (name === "category") return categoryName(value);
  if (name === "occurred_at" || name === "deleted_at") return when(value);
  if (name === "province") return placeName(value);
  if (name === "location_precision_m") return t("incident.metres", { m: Number(value) });
  if (name === "location" && value.coordinates) {
    const [lon, lat] = value.coordinates;
    const c = (v) => number(v, { minimumFractionDigits: 5, maximumFractionDigits: 5 });
    return t("incident.latLon", { lat: c(lat), lon: c(lon) });
  }
  if (typeof value === "number") return number(value);
  return String(value);
}

/** One history entry: who did what when, and per field old → new (not for a creation, whose
 * `changes` is the whole record). */
export function historyItem(e) {
  const action = has(`incident.action.${e.action}`) ? t(`incident.action.${e.action}`) : e.action;
  const li = el("li", {}, el("div", { text: t("incident.historyEntry", {
    version: e.version, action, actor: e.actor || "–", time: when(e.changed_at) }) }));
  if (e.action === "create" || e.action === "import") return li;
  const changes = {};
  for (const [key, pair] of Object.entries(e.changes || {})) {
    const name = HISTORY_ALIASES[key] || key;
    if (HISTORY_FIELDS.includes(name) && Array.isArray(pair)) changes[name] = pair;
  }
  for (const name of HISTORY_FIELDS.filter((n) => n in changes)) {
    const [before, after] = changes[name];
    li.append(el("div", { className: "change", text: t("incident.change", {
      field: fieldName(name), from: formatValue(name, before), to: formatValue(name, after) }) }));
  }
  return li;
}

/** What a refused change means, in the user's language (null: not one of ours to explain). */
function explain(err, feature) {
  if (!(err instanceof ApiError)) return null;
  const p = err.problem || {};
  if (err.status === 403) return t("incident.forbidden", { unit: feature.properties.unit || "–" });
  if (err.status === 409 && Array.isArray(p.allowed)) {
    return p.allowed.length
      ? t("incident.illegalStatus", { current: statusName(p.current || feature.properties.status),
        allowed: p.allowed.map(statusName).join(", ") })
      : t("incident.finalStatus", { current: statusName(p.current || feature.properties.status) });
  }
  if (err.status === 422) {
    const first = (p.errors || [])[0];
    const parts = first ? String(first.location || "").split(".") : [];
    const name = parts.find((s) => has(`incident.field.${s}`)) || p.field || parts[parts.length - 1] || "";
    return t("incident.invalid", { field: fieldName(name), detail: first ? first.message : err.message });
  }
  return null;
}

/** "YYYY-MM-DDTHH:MM" in Vietnam's time for an instant (a datetime-local input's value). */
function vietnamLocal(iso) {
  return new Date(Date.parse(iso) + VIETNAM_MS).toISOString().slice(0, 16);
}

/** The action controls for `feature` (read with `etag`). `ctx.reload(pending)` shows the
 * incident again (fresh ETag), the correction form filled with `pending` when given;
 * `ctx.changed()` after a change was stored. */
export async function actionsSection(feature, etag, ctx) {
  const box = el("section", { className: "incident-actions", id: "incident-actions" });
  const message = el("div", { id: "incident-action-message", className: "action-message", hidden: true });
  message.setAttribute("role", "alert");
  box.append(el("h3", { text: t("incident.actions") }), message);
  if (!mayChange(feature)) {
    box.append(el("p", { className: "small muted", text: t("incident.otherUnit", { unit: feature.properties.unit || "–" }) }));
    return box;
  }
  const p = feature.properties;
  const say = (text, withReload = null) => {
    message.hidden = false;
    message.replaceChildren(el("span", { text }));
    if (withReload) {
      const button = el("button", { type: "button", id: "incident-reload", text: t("incident.reloadReapply") });
      button.addEventListener("click", () => ctx.reload(withReload));
      message.append(" ", button);
    }
  };
  const send = async (patch) => {
    try {
      await patchJSON(`/incidents/${feature.id}`, patch, etag);
    } catch (err) {
      if (err instanceof ApiError && err.status === 412) {
        say(t("incident.conflict"), patch);
        return;
      }
      const text = explain(err, feature);
      if (text) say(text);
      else reportError(t("incident.saving"), err);
      return;
    }
    await ctx.changed();
  };

  // status: only the allowed next states
  let lifecycle;
  try {
    lifecycle = await loadStatuses();
  } catch (err) {
    reportError(t("incident.loadingStatuses"), err);
    lifecycle = new Map();
  }
  const next = lifecycle.get(p.status)?.next || [];
  if (next.length) {
    const select = el("select", { id: "status-next" },
      ...next.map((code) => el("option", { value: code, text: statusName(code) })));
    if (next.includes(ctx.pending?.status)) select.value = ctx.pending.status;
    const button = el("button", { type: "button", id: "status-change", text: t("incident.changeStatus") });
    button.addEventListener("click", () => send({ status: select.value }));
    box.append(el("div", { className: "row" },
      el("label", {}, el("span", { text: t("incident.nextStatus") }), select), button));
  } else {
    box.append(el("p", { className: "small muted", text: t("incident.finalStatus", { current: statusName(p.status) }) }));
  }
  box.append(correctionForm(feature, ctx.pending, send));
  return box;
}

/** The correction form: only the fields that differ from what was read are sent. */
function correctionForm(feature, pending, send) {
  const p = feature.properties;
  const [lon, lat] = feature.geometry.coordinates;
  const field = (name, control) => el("label", { className: "field" }, el("span", { text: name }), control);
  const severity = el("select", { name: "severity" },
    ...[1, 2, 3, 4, 5].map((v) => el("option", { value: String(v), text: number(v) })));
  severity.value = String(p.severity);
  const category = el("select", { name: "category" },
    ...state.categories.map((c) => el("option", { value: c.code, text: categoryName(c.code) })));
  // a category no longer offered stays the incident's until the user picks another
  if (!state.categories.some((c) => c.code === p.category)) {
    category.prepend(el("option", { value: p.category, text: categoryName(p.category) }));
  }
  category.value = p.category;
  const description = el("textarea", { name: "description", rows: 3, value: p.description || "" });
  const unit = el("input", { name: "unit", type: "text", value: p.unit || "" });
  const occurred = el("input", { name: "occurred_at", type: "datetime-local", step: 60, value: vietnamLocal(p.occurred_at) });
  const latIn = el("input", { name: "lat", type: "number", step: "any", min: -90, max: 90, value: String(lat) });
  const lonIn = el("input", { name: "lon", type: "number", step: "any", min: -180, max: 180, value: String(lon) });
  // noValidate: the server checks the values and the page names the field in its language
  const form = el("form", { id: "incident-correct", className: "correct", noValidate: true },
    field(fieldName("severity"), severity), field(fieldName("category"), category),
    field(fieldName("description"), description), field(fieldName("unit"), unit),
    field(t("incident.occurredVietnam"), occurred),
    el("div", { className: "row" }, field(t("incident.lat"), latIn), field(t("incident.lon"), lonIn)),
    el("button", { type: "submit", id: "incident-save", text: t("incident.save") }));
  const details = el("details", { id: "incident-correct-box" }, el("summary", { text: t("incident.correct") }), form);
  if (pending && Object.keys(pending).some((k) => k !== "status")) {
    // re-apply what the user had typed onto the fresh incident, for them to save again
    details.open = true;
    if ("severity" in pending) severity.value = String(pending.severity);
    if ("category" in pending) category.value = pending.category;
    if ("description" in pending) description.value = pending.description || "";
    if ("unit" in pending) unit.value = pending.unit || "";
    if ("occurred_at" in pending) occurred.value = pending.occurred_at.slice(0, 16);
    if ("location" in pending) [lonIn.value, latIn.value] = pending.location.coordinates.map(String);
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const patch = {};
    if (Number(severity.value) !== p.severity) patch.severity = Number(severity.value);
    if (category.value !== p.category) patch.category = category.value;
    if (description.value.trim() !== (p.description || "")) patch.description = description.value.trim() || null;
    if (unit.value.trim() !== (p.unit || "")) patch.unit = unit.value.trim() || null;
    if (occurred.value && occurred.value !== vietnamLocal(p.occurred_at)) patch.occurred_at = `${occurred.value}:00+07:00`;
    const [newLat, newLon] = [Number(latIn.value), Number(lonIn.value)];
    if (latIn.value === "" || lonIn.value === "" || !Number.isFinite(newLat) || !Number.isFinite(newLon)) {
      send({ location: { type: "Point", coordinates: [lonIn.value, latIn.value] } });
      return;
    }
    if (newLat.toFixed(6) !== lat.toFixed(6) || newLon.toFixed(6) !== lon.toFixed(6)) {
      patch.location = { type: "Point", coordinates: [newLon, newLat] };
    }
    if (!Object.keys(patch).length) {
      const message = $("incident-action-message");
      message.hidden = false;
      message.textContent = t("incident.nothingChanged");
      return;
    }
    send(patch);
  });
  return details;
}

/** The notes, oldest first (time in Vietnam's zone, the unit), and a box to add one. */
export function notesSection(feature, notes, ctx) {
  const list = el("ol", { id: "incident-notes", className: "notes" }, ...notes.map((n) => el("li", {},
    el("div", { className: "note-meta", text: t("incident.noteMeta", { time: when(n.created_at),
      unit: n.unit || n.created_by || "–" }) }),
    el("div", { className: "note-text", text: n.text }))));
  const box = el("section", { className: "incident-notes" }, el("h3", { text: t("incident.notes") }));
  box.append(notes.length ? list : el("p", { className: "small muted", id: "incident-notes-none", text: t("incident.noNotes") }));
  if (!mayNote()) return box;
  const text = el("textarea", { id: "note-text", rows: 2, maxLength: 4000 });
  const status = el("p", { className: "action-message", hidden: true });
  status.setAttribute("role", "alert");
  const form = el("form", { id: "note-form", className: "note-form" },
    el("label", { className: "field" }, el("span", { text: t("incident.noteLabel") }), text),
    el("button", { type: "submit", id: "note-add", text: t("incident.addNote") }), status);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!text.value.trim()) {
      status.hidden = false;
      status.textContent = t("incident.noteEmpty");
      return;
    }
    try {
      await postJSON(`/incidents/${feature.id}/notes`, { text: text.value });
    } catch (err) {
      const why = explain(err, feature);
      if (why) {
        status.hidden = false;
        status.textContent = why;
      } else reportError(t("incident.addingNote"), err);
      return;
    }
    await ctx.changed();
  });
  box.append(form);
  return box;
}

/** Thumbnails (fetched with the key, shown through object URLs), a click opens the photo;
 * and an upload (JPEG, PNG, WebP: the file itself is the body). */
export function photosSection(feature, photos, ctx) {
  for (const u of objectUrls.splice(0)) URL.revokeObjectURL(u);
  const strip = el("div", { id: "incident-photos", className: "photos" });
  photos.forEach((photo, i) => {
    const alt = photo.caption || t("incident.photoN", { n: i + 1 });
    const img = el("img", { alt, width: 96, height: 72 });
    const button = el("button", { type: "button", className: "photo", dataset: { id: photo.id } }, img);
    button.setAttribute("aria-label", t("incident.openPhoto", { name: alt }));
    button.addEventListener("click", () => openPhoto(photo, alt));
    strip.append(button);
    getBlob(localPath(photo.thumbnail_url)).then(({ blob }) => {
      const u = URL.createObjectURL(blob);
      objectUrls.push(u);
      img.src = u;
      img.dataset.loaded = "true";
    }).catch((err) => reportError(t("incident.loadingPhotos"), err));
  });
  const box = el("section", { className: "incident-photos" }, el("h3", { text: t("incident.photos") }));
  box.append(photos.length ? strip : el("p", { className: "small muted", text: t("incident.noPhotos") }));
  if (!mayChange(feature)) return box;
  const file = el("input", { id: "photo-file", type: "file", accept: PHOTO_TYPES.join(","), multiple: true });
  const caption = el("input", { id: "photo-caption", type: "text", maxLength: 500 });
  const status = el("p", { className: "action-message", hidden: true });
  status.setAttribute("role", "alert");
  const form = el("form", { id: "photo-form", className: "photo-form" },
    el("label", { className: "field" }, el("span", { text: t("incident.photoFile") }), file),
    el("label", { className: "field" }, el("span", { text: t("incident.photoCaption") }), caption),
    el("button", { type: "submit", id: "photo-add", text: t("incident.addPhoto") }), status);
  const say = (text) => { status.hidden = false; status.textContent = text; };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const files = [...file.files];
    if (!files.length) { say(t("incident.photoPick")); return; }
    const wrong = files.find((f) => !PHOTO_TYPES.includes(f.type));
    if (wrong) { say(t("incident.photoType", { name: wrong.name })); return; }
    for (const f of files) {
      try {
        await postFile(`/incidents/${feature.id}/photos`, { caption: caption.value.trim() }, f);
      } catch (err) {
        const known = err instanceof ApiError && [413, 415, 422].includes(err.status);
        if (known) say(t(`incident.photoRefused.${err.status}`, { name: f.name, detail: err.message }));
        else if (err instanceof ApiError && err.status === 403) say(explain(err, feature));
        else reportError(t("incident.addingPhoto"), err);
        return;
      }
    }
    await ctx.changed();
  });
  box.append(form);
  return box;
}

/** The full photo in a dialog (fetched with the key). */
async function openPhoto(photo, alt) {
  const dialog = $("photo-viewer");
  try {
    const { blob } = await getBlob(localPath(photo.url));
    const u = URL.createObjectURL(blob);
    const img = el("img", { alt, src: u });
    dialog.replaceChildren(closeButton(t("close"), () => dialog.close(), "close"), img,
      el("p", { className: "small", text: alt }));
    dialog.addEventListener("close", () => URL.revokeObjectURL(u), { once: true });
    dialog.showModal();
  } catch (err) {
    reportError(t("incident.loadingPhotos"), err);
  }
}
