// The field page's service worker (served at /field/sw.js, scope /field).
//
// - The app shell (page, modules, styles, catalogues, icons, MapLibre, idb, exifr) is cached on
//   install and refreshed on every successful load: network first (a few seconds at most on a
//   weak link), the cached copy when the network fails or is too slow.
// - API answers (GET with an Authorization header) are cached per key: the cache's name holds a
//   SHA-256 hash of the key, never the key, so one key never reads another's answers; the page
//   deletes its key's cache on sign-out. A cached answer handed out instead of the network's
//   carries `X-Borderwatch-Saved-At` (when it was fetched) so the page can say how old it is.
// - Writes (POST, PUT …) are never touched: the page's own queue (IndexedDB) owns them.

const VERSION = "v1";
const SHELL = `bw-field-shell-${VERSION}`;
const DATA_PREFIX = "bw-field-data-";
const MAX_ANSWERS = 300; // per key: the oldest answers (nearby searches, places …) go first
const NETWORK_WAIT_MS = { shell: 4000, data: 6000 };
const SHELL_FILES = [
  "/field",
  "/static/field.css",
  "/static/manifest.webmanifest",
  "/static/icons/field.svg",
  "/static/icons/field-192.png",
  "/static/icons/field-512.png",
  "/static/icons/pin.svg",
  "/static/i18n/common.json",
  "/static/i18n/field.json",
  "/static/js/i18n.js",
  "/static/js/api.js",
  "/static/js/geometry.js",
  "/static/js/field/main.js",
  "/static/js/field/key.js",
  "/static/js/field/net.js",
  "/static/js/field/store.js",
  "/static/js/field/sender.js",
  "/static/js/field/form.js",
  "/static/js/field/photos.js",
  "/static/js/field/fieldmap.js",
  "/static/js/field/near.js",
  "/static/js/field/mine.js",
  "/static/js/field/util.js",
  "/vendor/maplibre-gl/maplibre-gl.js",
  "/vendor/maplibre-gl/maplibre-gl.css",
  "/vendor/idb/index.js",
  "/vendor/exifr/lite.esm.js",
];
// answers that are never kept: the live feed, downloads, photos' bytes
const NOT_CACHED = [/^\/events/, /^\/incidents\/export/, /^\/incidents\/import/];

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(SHELL);
      // one by one: a missing optional file must not stop the rest from being kept
      await Promise.all(
        SHELL_FILES.map(async (path) => {
          try {
            const response = await fetch(path, { cache: "no-cache" });
            if (response.ok) await cache.put(path, response);
          } catch {
            // kept on the next successful load instead
          }
        }),
      );
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith("bw-field-shell-") && name !== SHELL) await caches.delete(name);
      }
      await self.clients.claim();
    })(),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return; // writes go to the network as they are
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (NOT_CACHED.some((re) => re.test(url.pathname))) return;
  const auth = request.headers.get("Authorization");
  if (auth) {
    event.respondWith(keyed(request, auth));
  } else if (request.mode === "navigate" || isShell(url.pathname)) {
    event.respondWith(shell(request, url));
  }
});

function isShell(path) {
  return path.startsWith("/static/") || path.startsWith("/vendor/") || path === "/field";
}

async function hashOf(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest).slice(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The network within `ms`, else null (the request goes on: a late answer still refreshes the
 * cache through `update`). */
function within(promise, ms) {
  return Promise.race([promise, new Promise((resolve) => setTimeout(() => resolve(null), ms))]);
}

async function shell(request, url) {
  const cache = await caches.open(SHELL);
  const cacheKey = request.mode === "navigate" ? "/field" : url.pathname + url.search;
  const update = fetch(request)
    .then(async (response) => {
      if (response.ok) await cache.put(cacheKey, response.clone());
      return response;
    })
    .catch(() => null);
  const fresh = await within(update, NETWORK_WAIT_MS.shell);
  if (fresh) return fresh;
  const saved = (await cache.match(cacheKey)) || (await cache.match(url.pathname));
  if (saved) return saved;
  return (await update) || Response.error();
}

async function keyed(request, auth) {
  const cache = await caches.open(DATA_PREFIX + (await hashOf(auth)));
  const update = fetch(request)
    .then(async (response) => {
      if (response.ok) {
        const headers = new Headers(response.headers);
        headers.set("X-Borderwatch-Saved-At", new Date().toISOString());
        const body = await response.clone().blob();
        await cache.delete(request.url); // re-inserted last: the order is the answers' age
        await cache.put(request.url, new Response(body, { status: response.status, headers }));
        await trim(cache);
      }
      return response;
    })
    .catch(() => null);
  const fresh = await within(update, NETWORK_WAIT_MS.data);
  if (fresh) return fresh;
  const saved = await cache.match(request.url);
  if (saved) {
    const headers = new Headers(saved.headers);
    headers.set("X-Borderwatch-From-Cache", "1");
    return new Response(await saved.blob(), { status: saved.status, headers });
  }
  return (await update) || Response.error();
}

/** Keep at most MAX_ANSWERS answers in a key's cache (keys() lists them oldest first). */
async function trim(cache) {
  const keys = await cache.keys();
  for (const old of keys.slice(0, Math.max(0, keys.length - MAX_ANSWERS))) await cache.delete(old);
}
