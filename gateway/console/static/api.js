// The admin JSON API, called with the signed-in credential. The credential lives in this tab's
// sessionStorage only: closing the tab, or signing out, forgets it.

const STORED = "raygate.console.credential";

// The console is served at <gateway>/console/: the API is one level up, whatever prefix a
// proxy serves the gateway under.
const BASE = new URL("../", document.baseURI);

export const credential = {
  get: () => sessionStorage.getItem(STORED),
  set: (secret) => sessionStorage.setItem(STORED, secret),
  clear: () => sessionStorage.removeItem(STORED),
};

/** Whether the gateway offers "Sign in with SSO" (GET console/sso/config, no credential). */
export async function ssoEnabled() {
  try {
    const response = await fetch(new URL("sso/config", document.baseURI), {
      cache: "no-store",
      credentials: "omit",
    });
    return response.ok && (await response.json()).enabled === true;
  } catch {
    return false;
  }
}

/** An error answer of the API: its HTTP status and the OpenAI-shaped error's message and code. */
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** Whether signing in again could help (no credential, or one without the role). */
  get refusesCredential() {
    return this.status === 401 || this.status === 403;
  }
}

async function call(path, { method = "GET", query, body } = {}) {
  const url = new URL(path, BASE);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { authorization: `Bearer ${credential.get() || ""}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  if (!response.ok) throw await refusal(response);
  return response;
}

async function refusal(response) {
  try {
    const { error } = await response.json();
    return new ApiError(response.status, error.message, error.code);
  } catch {
    return new ApiError(response.status, `The gateway answered ${response.status}.`, null);
  }
}

/** The JSON answer of `path` (relative: "admin/keys"). */
export async function getJson(path, query) {
  return (await call(path, { query })).json();
}

/** Send `body` as JSON with `method`; the JSON answer. */
export async function send(method, path, body) {
  return (await call(path, { method, body })).json();
}

/** Save the answer of `path` as a file named `filename` (an export). */
export async function download(path, query, filename) {
  const blob = await (await call(path, { query })).blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}
