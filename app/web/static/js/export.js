// Taking the view away: the incidents in it as a file, and a link to it.

import { getBlob } from "./api.js";
import { map } from "./context.js";
import { viewBbox } from "./mapview.js";
import { reportError, showMessage } from "./messages.js";
import { filterParams, state, writeUrl } from "./state.js";
import { $, el } from "./ui.js";

const TEXT = {
  needsExporter: "Exports need an analyst or admin key",
  preparing: (format) => `Preparing the ${format.toUpperCase()} export…`,
  failed: "The export",
  copied: "Link copied (it holds no key: whoever opens it signs in with their own).",
  share: (href) => `Share this link: ${href}`,
};
const EXPORTERS = new Set(["analyst", "admin"]);
const REVOKE_AFTER_MS = 10000; // the download has long begun by then

export function setUpExport() {
  for (const button of document.querySelectorAll("[data-export]")) {
    button.disabled = !EXPORTERS.has(state.me.role);
    if (button.disabled) button.title = TEXT.needsExporter;
    button.addEventListener("click", () => exportView(button.dataset.export));
  }
  $("copy-link").addEventListener("click", copyLink);
}

/** Every incident matching the filters in the map's extent, saved under the server's name. */
async function exportView(format) {
  try {
    showMessage(TEXT.preparing(format), "info");
    const { blob, filename } = await getBlob("/incidents/export", { ...filterParams(), bbox: viewBbox(map), format });
    const a = el("a", { href: URL.createObjectURL(blob), download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), REVOKE_AFTER_MS);
  } catch (err) {
    reportError(TEXT.failed, err);
  }
}

async function copyLink() {
  writeUrl(map);
  try {
    await navigator.clipboard.writeText(window.location.href);
    showMessage(TEXT.copied, "info");
  } catch {
    showMessage(TEXT.share(window.location.href), "info");
  }
}
