// Cache: one replica's counters (GET /admin/cache), the entries (GET /admin/cache/entries),
// and invalidation of one entry (DELETE /admin/cache/entries/{id}) or of every entry a
// selector matches (POST /admin/cache/invalidate).

import { ApiError, getJson, send } from "../api.js";
import { card, el, field, fill, fmt, heading, note, table, values } from "../dom.js";

function counters(stats) {
  const hits = Object.values(stats.hits || {}).reduce((a, b) => a + b, 0);
  return el(
    "div",
    { class: "cards" },
    card("Entries", fmt.count(stats.entries), "entries"),
    card("Hits", fmt.count(hits), "hits"),
    ...Object.entries(stats.hits || {}).map(([phase, n]) => card(`${phase} hits`, fmt.count(n), `hits-${phase}`)),
    card("Misses", fmt.count(stats.misses), "misses"),
    card("Refused by verification", fmt.count(stats.rejected_by_verification), "rejected"),
    card("Evicted", fmt.count(stats.evicted), "evicted"),
    card("Expired", fmt.count(stats.expired), "expired"),
  );
}

function clip(text, mode) {
  if (text === null) return el("span", { class: "quiet" }, `(${mode})`);
  if (mode === "hash") return el("code", { title: text }, `sha256:${text.slice(0, 12)}…`);
  return el("span", { title: text }, text.length > 120 ? `${text.slice(0, 120)}…` : text);
}

function invalidation(act, done) {
  const form = el(
    "form",
    { id: "invalidate-form", class: "filters" },
    field("Model", "model", { placeholder: "every entry of this alias" }),
    field("Scope", "scope", { placeholder: "a scope hash" }),
    field("Older than (hours)", "older", { type: "number", min: "0", step: "any" }),
    el("div", { class: "buttons" }, el("button", { type: "submit", class: "danger" }, "Invalidate")),
  );
  form.addEventListener(
    "submit",
    act(async () => {
      const f = values(form);
      const answer = await send("POST", "admin/cache/invalidate", {
        model: f.model || undefined,
        scope: f.scope || undefined,
        older_than_s: f.older ? Number(f.older) * 3600 : undefined,
      });
      await done(`${answer.invalidated} entries invalidated; every replica drops them within one sync interval.`);
    }),
  );
  return form;
}

export default {
  id: "cache",
  title: "Cache",
  needs: "reports.read",
  async render(view, { act, may }) {
    let stats;
    try {
      stats = await getJson("admin/cache");
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404) throw error;
      fill(view, heading("Cache"), note("The cache is off in this gateway (no alias uses it)."));
      return;
    }
    const message = el("p", { id: "cache-message", class: "note", role: "status" });
    const entries = el("div", { id: "cache-entries" });
    const filter = el("form", { id: "cache-filter", class: "filters inline" }, field("Model", "model", { placeholder: "every model" }), el("div", { class: "buttons" }, el("button", { type: "submit", class: "quiet" }, "Show")));
    const more = el("button", { type: "button", class: "quiet", hidden: true }, "Older entries");
    const writes = may("cache.write");
    let rows = [];
    let before = null;

    const refresh = async (text) => {
      fill(view.querySelector("#cache-counters"), counters(await getJson("admin/cache")));
      await browse(null);
      message.textContent = text || ""; // once the page shows what it says
    };
    const remove = (entry) =>
      act(async () => {
        await send("DELETE", `admin/cache/entries/${entry.id}`);
        await refresh(`Entry ${entry.id} invalidated.`);
      });
    const browse = async (next) => {
      if (!may("audit.read")) return;
      const page = await getJson("admin/cache/entries", { ...values(filter), limit: 50, before: next });
      rows = next ? rows.concat(page.entries) : page.entries;
      before = page.next_before;
      more.hidden = before === null;
      fill(
        entries,
        table(
          [
            { key: "id", title: "Entry", num: true },
            { key: "model", title: "Model" },
            { key: "created_at", title: "Stored", render: (e) => fmt.time(e.created_at) },
            { key: "scope", title: "Scope", render: (e) => el("code", { title: e.scope }, e.scope.slice(0, 12)) },
            { key: "prompt", title: "Prompt", render: (e) => clip(e.prompt, e.prompt_mode) },
            { key: "answer", title: "Answer", render: (e) => clip(e.answer, e.answer_mode) },
            ...(writes ? [{ key: "actions", title: "", render: (e) => el("button", { type: "button", class: "quiet", onclick: remove(e) }, "Invalidate") }] : []),
          ],
          rows,
          { id: "cache-table", rowKey: (e) => e.id, empty: "No entries." },
        ),
      );
    };

    filter.addEventListener("submit", act(() => browse(null)));
    more.addEventListener("click", act(() => browse(before)));
    fill(
      view,
      heading("Cache", el("button", { type: "button", class: "quiet", onclick: act(() => refresh()) }, "Refresh")),
      note("Counters are one cache replica's since it started; entries come from the shared entry log. Prompts and answers show as the audit trail keeps them (audit.prompt, audit.response)."),
      el("div", { id: "cache-counters" }, counters(stats)),
      message,
      writes ? [el("h2", {}, "Invalidate by selector"), invalidation(act, refresh)] : null,
      may("audit.read") ? [el("h2", {}, "Entries"), filter, entries, more] : null,
    );
    await browse(null);
  },
};
