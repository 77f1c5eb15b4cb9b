// The device's records (IndexedDB through idb): each incident recorded here, with its client id,
// its body, its photos (Blobs with their client ids) and where it stands:
//   queued    waiting for the link (or for a retry after a failed send)
//   rejected  the server refused it (4xx): its reason is kept, it can be corrected and re-sent
//   sent      the incident and every photo acknowledged (200/201): photo bytes are dropped
// Records are marked with the hash of the key that made them and are only sent with that key.

import { openDB } from "/vendor/idb/index.js";

const DB = "borderwatch-field";
const STORE = "records";
const KEEP_SENT = 50; // sent records listed under "My records"

let dbPromise = null;

function db() {
  if (!dbPromise) {
    dbPromise = openDB(DB, 1, {
      upgrade(database) {
        const store = database.createObjectStore(STORE, { keyPath: "id" });
        store.createIndex("createdAt", "createdAt");
      },
    });
  }
  return dbPromise;
}

/** Save (add or replace) one record. */
export async function put(record) {
  await (await db()).put(STORE, record);
}

export async function get(id) {
  return (await db()).get(STORE, id);
}

/** Every record, newest first. */
export async function all() {
  const records = await (await db()).getAllFromIndex(STORE, "createdAt");
  return records.reverse();
}

/** Records of this key, newest first. */
export async function ofKey(hash) {
  return (await all()).filter((r) => r.keyHash === hash);
}

/** Change one record inside a transaction (the change sees the stored version). */
export async function update(id, change) {
  const database = await db();
  const tx = database.transaction(STORE, "readwrite");
  const record = await tx.store.get(id);
  if (record) {
    change(record);
    await tx.store.put(record);
  }
  await tx.done;
  return record;
}

/** Delete one record. */
export async function remove(id) {
  await (await db()).delete(STORE, id);
}

/** Drop the oldest sent records beyond KEEP_SENT. */
export async function prune() {
  const sent = (await all()).filter((r) => r.state === "sent");
  const database = await db();
  for (const record of sent.slice(KEEP_SENT)) await database.delete(STORE, record.id);
}
