// Photos before they are queued: the GPS position in the original's EXIF (read first: resizing
// drops it), then the picture drawn at most MAX_SIDE pixels on its longer side and re-encoded as
// JPEG. The original never leaves the device.

import { gps } from "/vendor/exifr/lite.esm.js";

export const ACCEPTED = ["image/jpeg", "image/png", "image/webp"];
const MAX_SIDE = 2048;
const QUALITY = 0.85;

/** The position in a photo's EXIF as {lat, lon}, else null. */
export async function positionOf(file) {
  try {
    const found = await gps(file);
    if (found && Number.isFinite(found.latitude) && Number.isFinite(found.longitude)) {
      return { lat: found.latitude, lon: found.longitude };
    }
  } catch {
    // no EXIF, or not readable: no position to offer
  }
  return null;
}

/** The picture as a JPEG Blob, at most MAX_SIDE px on its longer side (upright: the browser
 * applies the EXIF orientation when it decodes). */
export async function resized(file) {
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  context.fillStyle = "#ffffff"; // a transparent PNG gets a white background in JPEG
  context.fillRect(0, 0, width, height);
  context.drawImage(bitmap, 0, 0, width, height);
  bitmap.close();
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", QUALITY));
  if (!blob) throw new Error("jpeg-encoding-failed"); // the caller says it in the user's language
  return { blob, type: "image/jpeg", width, height };
}
