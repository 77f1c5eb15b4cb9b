// Signing in: the key from a sign-in link or the sign-in box, whom it belongs to (GET /me),
// signing out.

import { ApiError, clearKey, getJSON, setKey, takeKeyFromUrl } from "./api.js";
import { has, t } from "./i18n.js";
import { state } from "./state.js";
import { $ } from "./ui.js";

/** "name · role · area" of the top bar, in the current language. */
function whoami(me) {
  const role = has(`role.${me.role}`) ? t(`role.${me.role}`) : me.role;
  return t("signin.whoami", { name: me.name, role, area: me.jurisdiction || t("signin.national") });
}
// roles that may read incident-level data; viewers see aggregates only
const READERS = new Set(["officer", "analyst", "admin"]);

export function askForKey(reason) {
  const dialog = $("signin");
  if (reason) $("signin-reason").textContent = t("signin.refused", { reason });
  if (!dialog.open) dialog.showModal();
}

/** The sign-in box and Sign out both reload the page, so every panel starts afresh. */
export function setUpSignIn() {
  $("signin-form").addEventListener("submit", () => {
    setKey($("signin-key").value.trim());
    window.location.reload();
  });
  $("sign-out").addEventListener("click", () => {
    clearKey();
    window.location.reload();
  });
}

/** Whom the key belongs to, into the state and the top bar. False when there is no key or it
 * was refused (the sign-in box is open then); any other failure is thrown. */
export async function signIn() {
  if (!takeKeyFromUrl()) {
    askForKey();
    return false;
  }
  try {
    state.me = await getJSON("/me");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      clearKey();
      askForKey(err.message);
      return false;
    }
    throw err;
  }
  state.reader = READERS.has(state.me.role);
  $("whoami").textContent = whoami(state.me);
  $("sign-out").hidden = false;
  return true;
}
