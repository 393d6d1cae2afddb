// Audit: search the trail (GET /admin/audit/records), page through it, open a record, and
// export what matches (GET /admin/audit/export).

import { download, getJson } from "../api.js";
import { badge, el, field, fill, fmt, heading, show, table, values } from "../dom.js";

const FILTERS = [
  ["User", "user", "user id"],
  ["Department", "department", ""],
  ["Group", "group", ""],
  ["Topic", "topic", ""],
  ["Model", "model", "alias asked for"],
  ["Policy action", "action", "block, redact, flag…"],
  ["Since", "since", "24h, 7d or 2025-03-01"],
  ["Until", "until", "2025-03-31T18:00Z"],
];

function actions(record) {
  const taken = [...new Set(record.decisions.map((d) => d.action))];
  return el("span", {}, taken.map(badge), record.topics.length ? ` ${record.topics.join(", ")}` : "");
}

const COLUMNS = [
  { key: "ts", title: "Time", render: (r) => fmt.time(r.ts) },
  { key: "user", title: "User", render: (r) => show(r.principal?.user_id) },
  { key: "department", title: "Department", render: (r) => show(r.principal?.department) },
  { key: "request", title: "Request", render: (r) => r.admin_action || r.route },
  { key: "model", title: "Model", render: (r) => show(r.model_requested) },
  { key: "route_taken", title: "Answered by", render: (r) => show(r.route_taken) },
  { key: "cache", title: "Cache", render: (r) => (r.cache_phase ? badge(r.cache_phase) : "—") },
  { key: "status", title: "Status", num: true, render: (r) => show(r.status) },
  { key: "policy", title: "Policy", render: actions },
  { key: "cost", title: "Cost", num: true, render: (r) => fmt.usd(r.cost_usd) },
  { key: "latency", title: "Latency", num: true, render: (r) => fmt.ms(r.latency_ms) },
];

export default {
  id: "audit",
  title: "Audit",
  needs: "audit.read",
  async render(view, { act }) {
    const form = el(
      "form",
      { id: "audit-search", class: "filters" },
      FILTERS.map(([label, name, placeholder]) =>
        field(label, name, { placeholder, value: name === "since" ? "24h" : "" }),
      ),
      el("div", { class: "buttons" }, el("button", { type: "submit" }, "Search")),
    );
    const results = el("div", { id: "audit-results" });
    const detail = el("pre", { id: "audit-detail", class: "detail", hidden: true });
    const more = el("button", { type: "button", class: "quiet", hidden: true }, "Older records");
    let rows = [];
    let cursor = null;

    const filters = () => values(form);
    const open = (record) => {
      detail.textContent = JSON.stringify(record, null, 2);
      detail.hidden = false;
    };
    const draw = () =>
      fill(
        results,
        table(COLUMNS, rows, {
          id: "audit-table",
          rowKey: (r) => r.seq,
          empty: "No record matches.",
          onRow: open,
        }),
      );
    const search = async (next) => {
      const page = await getJson("admin/audit/records", { ...filters(), limit: 100, cursor: next });
      rows = next ? rows.concat(page.records) : page.records;
      cursor = page.next_cursor;
      more.hidden = !cursor;
      detail.hidden = true;
      draw();
    };
    const exporting = (format) =>
      act(() => download("admin/audit/export", { ...filters(), format }, `raygate-audit.${format}`));

    form.addEventListener("submit", act(() => search(null)));
    more.addEventListener("click", act(() => search(cursor)));
    fill(
      view,
      heading(
        "Audit",
        el("button", { type: "button", id: "export-csv", class: "quiet", onclick: exporting("csv") }, "Export CSV"),
        el("button", { type: "button", id: "export-json", class: "quiet", onclick: exporting("json") }, "Export JSON"),
      ),
      el("p", { class: "note" }, "Every request and admin action, newest first. Select a row to see its whole record; an export holds every matching record, oldest first, with its hashes."),
      form,
      results,
      more,
      detail,
    );
    await search(null);
  },
};
