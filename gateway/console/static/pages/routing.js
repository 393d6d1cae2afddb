// Routing: every target's breaker, health and load as each router replica last published them
// (GET /admin/routing/replicas), or, before any has, as the replica that answered sees them
// (GET /admin/routing); the aliases, recent breaker transitions, and the providers
// (GET /admin/providers).

import { getJson } from "../api.js";
import { badge, el, fill, fmt, heading, note, show, table } from "../dom.js";

const TARGETS = [
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
];

const ago = (s) => `${s.toFixed(0)} s ago`;

/** Every replica's published view ({replica, age_s, status}); when none has published yet,
 * the one view of the replica that answered, as a replica without an id. */
async function replicaViews() {
  const board = await getJson("admin/routing/replicas");
  if (board.replicas.length) return { replicas: board.replicas, interval: board.interval_s };
  return { replicas: [{ replica: null, age_s: 0, status: await getJson("admin/routing") }] };
}

function explanation({ replicas, interval }) {
  if (replicas[0].replica === null) {
    return note(
      "One router replica's view: no replica has published its own to the gateway's database yet, and with several a refresh may ask another. A breaker opens on the failures its replica saw.",
    );
  }
  return note(
    `Each router replica's own breakers and health, as it last published them (every ${interval} s, and soon after a breaker changes). A breaker opens on the failures its replica saw.`,
  );
}

function targets({ replica, age_s, status }, index) {
  const title = replica === null ? "Targets" : ["Targets on replica ", el("code", {}, replica), ` (published ${ago(age_s)})`];
  return el(
    "section",
    { dataset: replica === null ? {} : { replica } },
    el("h2", {}, title),
    table(TARGETS, status.targets, { id: `targets-table-${index}`, rowKey: (t) => t.target }),
  );
}

/** Recent transitions of every replica, newest first, each aged from now. */
function transitions(replicas) {
  const labelled = replicas[0].replica !== null;
  const rows = replicas
    .flatMap((r) => r.status.transitions.map((t) => ({ ...t, replica: r.replica, ago_s: t.ago_s + r.age_s })))
    .sort((a, b) => a.ago_s - b.ago_s);
  return table(
    [
      ...(labelled ? [{ key: "replica", title: "Replica" }] : []),
      { key: "target", title: "Target" },
      { key: "change", title: "Change", render: (t) => el("span", {}, badge(t.before), " → ", badge(t.after)) },
      { key: "reason", title: "Reason" },
      { key: "ago_s", title: "When", num: true, render: (t) => ago(t.ago_s) },
    ],
    rows,
    { id: "transitions-table", empty: "No transitions." },
  );
}

export default {
  id: "routing",
  title: "Routing",
  needs: "reports.read",
  async render(view, { act }) {
    const body = el("div");
    const load = async () => {
      const [views, providers] = await Promise.all([replicaViews(), getJson("admin/providers")]);
      const { replicas } = views;
      fill(
        body,
        explanation(views),
        replicas.map(targets),
        el("h2", {}, "Aliases"),
        table(
          [
            { key: "alias", title: "Alias" },
            { key: "strategy", title: "Strategy" },
            { key: "targets", title: "Targets, in order" },
          ],
          Object.entries(replicas[0].status.aliases).map(([alias, a]) => ({ alias, ...a })),
          { id: "aliases-table", rowKey: (a) => a.alias },
        ),
        el("h2", {}, "Recent breaker transitions"),
        transitions(replicas),
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
    fill(view, heading("Routing", el("button", { type: "button", class: "quiet", onclick: act(load) }, "Refresh")), body);
    await load();
  },
};
