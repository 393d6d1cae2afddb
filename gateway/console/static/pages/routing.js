// Routing: every target's breaker, health and load as the router replica that answered sees
// them (GET /admin/routing), the aliases, recent breaker transitions, and the providers
// (GET /admin/providers).

import { getJson } from "../api.js";
import { badge, el, fill, fmt, heading, note, show, table } from "../dom.js";

export default {
  id: "routing",
  title: "Routing",
  needs: "reports.read",
  async render(view, { act }) {
    const body = el("div");
    const load = async () => {
      const [status, providers] = await Promise.all([getJson("admin/routing"), getJson("admin/providers")]);
      fill(
        body,
        el("h2", {}, "Targets"),
        table(
          [
            { key: "target", title: "Target" },
            { key: "breaker", title: "Breaker", render: (t) => badge(t.breaker) },
            { key: "health", title: "Health", render: (t) => badge(t.health) },
            { key: "failure_rate", title: "Failure rate", num: true, render: (t) => fmt.percent(t.failure_rate) },
            { key: "window_requests", title: "In window", num: true },
            { key: "in_flight", title: "In flight", num: true },
            { key: "latency_ewma_ms", title: "Latency (EWMA)", num: true, render: (t) => fmt.ms(t.latency_ewma_ms) },
            { key: "trips", title: "Trips", num: true },
            { key: "open_reason", title: "Why open" },
            { key: "next_probe_in_s", title: "Next probe", num: true, render: (t) => (t.next_probe_in_s === null ? "—" : `${t.next_probe_in_s.toFixed(0)} s`) },
          ],
          status.targets,
          { id: "targets-table", rowKey: (t) => t.target },
        ),
        el("h2", {}, "Aliases"),
        table(
          [
            { key: "alias", title: "Alias" },
            { key: "strategy", title: "Strategy" },
            { key: "targets", title: "Targets, in order" },
          ],
          Object.entries(status.aliases).map(([alias, a]) => ({ alias, ...a })),
          { id: "aliases-table", rowKey: (a) => a.alias },
        ),
        el("h2", {}, "Recent breaker transitions"),
        table(
          [
            { key: "target", title: "Target" },
            { key: "change", title: "Change", render: (t) => el("span", {}, badge(t.before), " → ", badge(t.after)) },
            { key: "reason", title: "Reason" },
            { key: "ago_s", title: "When", num: true, render: (t) => `${t.ago_s.toFixed(0)} s ago` },
          ],
          status.transitions,
          { id: "transitions-table", empty: "No transitions." },
        ),
        el("h2", {}, "Providers"),
        table(
          [
            { key: "name", title: "Provider" },
            { key: "kind", title: "Kind" },
            { key: "base_url", title: "Base URL" },
            { key: "enabled", title: "State", render: (p) => (p.enabled ? badge("active") : el("span", {}, badge("off"), ` ${show(p.disabled_reason)}`)) },
            { key: "runtime_key", title: "Key set at run time", render: (p) => (p.runtime_key ? `${p.runtime_key.hint} by ${p.runtime_key.updated_by}, ${fmt.time(p.runtime_key.updated_at)}` : "—") },
          ],
          providers.providers,
          { id: "providers-table", rowKey: (p) => p.name },
        ),
      );
    };
    fill(
      view,
      heading("Routing", el("button", { type: "button", class: "quiet", onclick: act(load) }, "Refresh")),
      note("One router replica's view: with several router replicas, a refresh may ask another. Breakers and health are per replica; a breaker opens on the failures that replica saw."),
      body,
    );
    await load();
  },
};
