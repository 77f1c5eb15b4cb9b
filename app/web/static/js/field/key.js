// The key on the field page. The dashboard's api.js keeps it in the tab's sessionStorage (and
// sends it with every request); a phone's app is closed and reopened all day, so the officer
// may choose to keep it on this device (localStorage) as well. Signing out forgets both and
// deletes this key's saved answers (the service worker's cache named after the key's hash).

import { clearKey, getKey, setKey, takeKeyFromUrl } from "../api.js";
import { hashOf } from "./util.js";

const REMEMBERED = "borderwatch.field.key";
const DATA_PREFIX = "bw-field-data-";

/** The key: from a #key= link, the tab, or this device; null when there is none. */
export function currentKey() {
  let key = takeKeyFromUrl();
  if (!key) {
    try {
      key = localStorage.getItem(REMEMBERED);
    } catch {
      key = null;
    }
    if (key) setKey(key);
  }
  return key || getKey();
}

/** Use `key` from now on; `remember` keeps it on this device. */
export function useKey(key, remember) {
  setKey(key);
  try {
    if (remember) localStorage.setItem(REMEMBERED, key);
    else localStorage.removeItem(REMEMBERED);
  } catch {
    // storage refused: the tab keeps it
  }
}

/** The hash that names this key's cache and marks its queued records. */
export async function keyHash(key = getKey()) {
  return key ? hashOf(`Bearer ${key}`) : null;
}

/** Forget the key and delete the answers saved for it. */
export async function forgetKey() {
  const hash = await keyHash();
  clearKey();
  try {
    localStorage.removeItem(REMEMBERED);
  } catch {
    // nothing kept
  }
  if (hash && "caches" in window) await caches.delete(DATA_PREFIX + hash);
}
