// Taking the view away: the incidents in it as a file, and a link to it.

import { getBlob } from "./api.js";
import { map } from "./context.js";
import { viewBbox } from "./mapview.js";
import { number, t } from "./i18n.js";
import { reportError, showMessage } from "./messages.js";
import { filterParams, state, writeUrl } from "./state.js";
import { $, el } from "./ui.js";

const FORMATS = { geojson: "GeoJSON", csv: "CSV", gpkg: "GeoPackage" }; // as the buttons read
const EXPORTERS = new Set(["analyst", "admin"]);
const REVOKE_AFTER_MS = 10000; // the download has long begun by then

export function setUpExport() {
  for (const button of document.querySelectorAll("[data-export]")) {
    button.disabled = !EXPORTERS.has(state.me.role);
    if (button.disabled) button.title = t("export.needsExporter");
    button.addEventListener("click", () => exportView(button.dataset.export));
  }
  $("copy-link").addEventListener("click", copyLink);
}

/** Every incident matching the filters in the map's extent, saved under the server's name. */
async function exportView(format) {
  try {
    showMessage(t("export.preparing", { format: FORMATS[format] || format }), "info");
    const { blob, filename } = await getBlob("/incidents/export", { ...filterParams(), bbox: viewBbox(map), format });
    const a = el("a", { href: URL.createObjectURL(blob), download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), REVOKE_AFTER_MS);
    // the download is the browser's: say it is done, and under which name
    showMessage(t("export.done", { filename, size: number(blob.size / 1024, { maximumFractionDigits: 1 }) }), "info");
  } catch (err) {
    reportError(t("export.failed"), err);
  }
}

async function copyLink() {
  writeUrl(map);
  try {
    await navigator.clipboard.writeText(window.location.href);
    showMessage(t("export.copied"), "info");
  } catch {
    showMessage(t("export.share", { href: window.location.href }), "info");
  }
}
