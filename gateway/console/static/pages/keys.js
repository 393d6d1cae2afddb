// Keys: the issued API keys (GET /admin/keys); issue one (POST /admin/keys), rotate
// (POST /admin/keys/{id}/rotate) and revoke (DELETE /admin/keys/{id}). A new secret is shown
// once, here, and never again.

import { getJson, send } from "../api.js";
import { badge, el, field, fill, fmt, heading, list, show, table, values } from "../dom.js";

/** A button that asks to be pressed twice: the second press within five seconds acts. */
function twice(label, action) {
  const button = el("button", { type: "button", class: "quiet" }, label);
  let armed = null;
  button.addEventListener("click", async (event) => {
    if (armed === null) {
      button.textContent = `Confirm ${label.toLowerCase()}`;
      button.classList.add("danger");
      armed = setTimeout(() => {
        armed = null;
        button.textContent = label;
        button.classList.remove("danger");
      }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    await action(event);
  });
  return button;
}

function issueForm(ctx, issued) {
  const roles = [["", "none (an API key)"], ["auditor", "auditor"], ["key_manager", "key manager"], ["admin", "admin"]];
  return el(
    "form",
    { id: "issue-form", class: "filters", onsubmit: ctx.act(async (event) => issued(await send("POST", "admin/keys", body(values(event.target))))) },
    field("User", "user", { required: true, placeholder: "user id" }),
    field("Name", "name", { placeholder: "what it is for" }),
    field("Department", "department"),
    field("Groups", "groups", { placeholder: "comma-separated" }),
    field("Models", "models", { placeholder: "all, or comma-separated" }),
    field("Expires in (days)", "expires_in_days", { type: "number", min: "0", step: "any" }),
    ctx.may("admin_keys.write") ? field("Admin role", "admin_role", { options: roles }) : null,
    el("div", { class: "buttons" }, el("button", { type: "submit" }, "Issue key")),
  );
}

function body(form) {
  return {
    user: form.user,
    name: form.name,
    department: form.department || undefined,
    groups: list(form.groups),
    models: list(form.models),
    expires_in_days: form.expires_in_days ? Number(form.expires_in_days) : undefined,
    admin_role: form.admin_role || undefined,
  };
}

export default {
  id: "keys",
  title: "Keys",
  needs: "keys.read",
  async render(view, ctx) {
    const secret = el("div", { id: "issued", class: "panel secret", hidden: true });
    const listing = el("div");
    const filter = el(
      "form",
      { class: "filters inline" },
      field("User", "user", { placeholder: "everyone" }),
      el("label", { class: "check" }, el("input", { type: "checkbox", name: "all", value: "true" }), el("span", {}, "revoked and expired too")),
      field("Rotation grace (s)", "grace", { type: "number", value: "0", min: "0" }),
      el("div", { class: "buttons" }, el("button", { type: "submit", class: "quiet" }, "Show")),
    );

    const reveal = (answer, verb) => {
      fill(
        secret,
        el("p", {}, `${verb} key ${answer.key.id} for ${answer.key.user}. Copy the secret now: it is not shown again.`),
        el("code", { id: "issued-secret" }, answer.secret),
      );
      secret.hidden = false;
    };
    const load = async () => {
      const { user, all } = values(filter);
      const keys = (await getJson("admin/keys", { user, all })).data;
      const writable = ctx.may("keys.write");
      const rotate = (key) =>
        ctx.act(async () => {
          const grace_seconds = Number(values(filter).grace || 0);
          reveal(await send("POST", `admin/keys/${encodeURIComponent(key.id)}/rotate`, { grace_seconds }), "Rotated");
          await load();
        });
      const revoke = (key) =>
        ctx.act(async () => {
          await send("DELETE", `admin/keys/${encodeURIComponent(key.id)}`);
          await load();
        });
      fill(
        listing,
        table(
          [
            { key: "id", title: "Key" },
            { key: "hint", title: "Hint" },
            { key: "user", title: "User" },
            { key: "name", title: "Name" },
            { key: "admin_role", title: "Admin role" },
            { key: "models", title: "Models", render: (k) => (k.models ? show(k.models) : "all") },
            { key: "created_at", title: "Issued", render: (k) => fmt.time(k.created_at) },
            { key: "expires_at", title: "Expires", render: (k) => (k.expires_at ? fmt.time(k.expires_at) : "never") },
            { key: "state", title: "State", render: (k) => badge(k.state) },
            {
              key: "actions",
              title: "",
              render: (k) =>
                writable && k.state === "active"
                  ? el("span", { class: "row-actions" }, twice("Rotate", rotate(k)), twice("Revoke", revoke(k)))
                  : "",
            },
          ],
          keys,
          { id: "keys-table", rowKey: (k) => k.id, empty: "No key matches." },
        ),
      );
    };

    filter.addEventListener("submit", ctx.act(load));
    fill(
      view,
      heading("Keys"),
      ctx.may("keys.write")
        ? [el("h2", {}, "Issue a key"), issueForm(ctx, async (answer) => (reveal(answer, "Issued"), await load())), secret]
        : null,
      el("h2", {}, "Issued keys"),
      filter,
      listing,
    );
    await load();
  },
};
