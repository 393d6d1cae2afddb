// The console's shell: sign-in, navigation between pages, and what happens to errors.
// Each page is a module under pages/ exporting {id, title, needs, render(view, context)}.

import { ApiError, credential, getJson, ssoEnabled } from "./api.js";
import { el, fill } from "./dom.js";
import audit from "./pages/audit.js";
import cache from "./pages/cache.js";
import keys from "./pages/keys.js";
import overview from "./pages/overview.js";
import policy from "./pages/policy.js";
import routing from "./pages/routing.js";
import users from "./pages/users.js";

const PAGES = [overview, audit, keys, users, policy, cache, routing];
const $ = (id) => document.getElementById(id);

let me = null; // the signed-in admin, as GET /admin/whoami describes them
let shown = 0; // the latest page shown: an older page that finishes loading late is dropped

function may(permission) {
  return me !== null && me.permissions.includes(permission);
}

function showSignIn(message) {
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signin-error").hidden = !message;
  $("signin-error").textContent = message || "";
  $("signin-secret").focus();
}

function signOut(message) {
  credential.clear();
  me = null;
  showSignIn(message);
}

/** An error from a page: a refused credential signs out, saying why; anything else is shown
 * above the page. */
function failed(error) {
  if (error instanceof ApiError && error.refusesCredential) {
    signOut(error.message);
    return;
  }
  $("flash").textContent = error.message;
  $("flash").hidden = false;
}

const context = {
  may,
  get me() {
    return me;
  },
  /** A listener that runs `action` (async), with its errors handled as the page's are. */
  act(action) {
    return async (event) => {
      event?.preventDefault?.();
      $("flash").hidden = true;
      try {
        await action(event);
      } catch (error) {
        failed(error);
      }
    };
  },
};

async function render() {
  const allowed = PAGES.filter((page) => may(page.needs));
  const wanted = location.hash.replace(/^#\/?/, "");
  const page = allowed.find((p) => p.id === wanted) || allowed[0];
  $("signin").hidden = true;
  $("app").hidden = false;
  $("flash").hidden = true;
  $("who").textContent = `${me.user} · ${me.roles.join(", ")}`;
  fill(
    $("nav"),
    allowed.map((p) =>
      el("a", { href: `#/${p.id}`, "aria-current": p === page ? "page" : null }, p.title),
    ),
  );
  const generation = ++shown;
  const view = el("section", { class: "view", dataset: { page: page.id } });
  fill($("page"), el("p", { class: "loading" }, "Loading…"));
  try {
    await page.render(view, context);
  } catch (error) {
    failed(error);
  }
  if (generation === shown && me !== null) {
    fill($("page"), view);
    view.dataset.ready = "true";
  }
}

async function signIn(event) {
  event.preventDefault();
  credential.set($("signin-secret").value.trim());
  try {
    me = await getJson("admin/whoami");
  } catch (error) {
    signOut(error.message);
    return;
  }
  $("signin-secret").value = "";
  await render();
}

/** After "Sign in with SSO", the gateway sends the browser to #token=...: keep the token in
 * sessionStorage like a pasted one, and take it out of the address bar and the history. */
function takeSsoToken() {
  const token = new URLSearchParams(location.hash.replace(/^#/, "")).get("token");
  if (token) {
    credential.set(token);
    history.replaceState(null, "", location.pathname + location.search);
  }
}

async function start() {
  takeSsoToken();
  ssoEnabled().then((enabled) => {
    $("signin-sso").hidden = !enabled;
  });
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => signOut("Signed out."));
  window.addEventListener("hashchange", () => me && render());
  if (!credential.get()) {
    showSignIn();
    return;
  }
  try {
    me = await getJson("admin/whoami");
  } catch (error) {
    signOut(error.message);
    return;
  }
  await render();
}

start();
