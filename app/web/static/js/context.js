// What the panels share once the page has started: the map, and names for the codes the API
// answers with (jurisdictions, categories).

import { lang } from "./i18n.js";
import { localName } from "./names.js";
import { state } from "./state.js";

/** The MapLibre map, null until start-up creates it (importers see the current one). */
export let map = null;
const places = new Map(); // jurisdiction code → name
const posts = new Map(); // border post code → name

export function setMap(created) {
  map = created;
}

/** Names for codes; kept across eras (an incident's path names units of both maps). */
export function setPlaces(jurisdictionFeatures) {
  for (const f of jurisdictionFeatures) places.set(f.properties.code, localName(f.properties));
}

/** Names of the border posts (GET /border-posts), with their diacritics. */
export function setPosts(postFeatures) {
  for (const f of postFeatures) posts.set(f.properties.code, localName(f.properties));
}

/** A border post's name as Vietnamese readers write it, else `fallback` (the API's). */
export function postName(code, fallback) {
  return posts.get(code) || fallback;
}

export function placeName(code) {
  return places.get(code) || code;
}

/** A category's name in the current language (GET /categories has both). */
export function categoryName(code) {
  const c = state.categories.find((x) => x.code === code);
  if (!c) return code;
  return (lang() === "vi" ? c.name_vi : c.name) || c.name || code;
}
