// Overview: the model API's traffic over time (GET /admin/audit/timeseries), its totals, and
// the same window per model (GET /admin/audit/summary?by=model).

import { getJson } from "../api.js";
import { chart } from "../chart.js";
import { card, el, field, fill, fmt, heading, table } from "../dom.js";

// Windows offered, each with the bucket that draws it in 15 to 170 bars.
const WINDOWS = [
  ["5m", "last 5 minutes", "10s"],
  ["15m", "last 15 minutes", "1m"],
  ["1h", "last hour", "1m"],
  ["24h", "last 24 hours", "1h"],
  ["7d", "last 7 days", "1h"],
  ["30d", "last 30 days", "1d"],
];

function totals(points) {
  const sum = (key) => points.reduce((total, p) => total + p[key], 0);
  const timed = points.filter((p) => p.latency_mean_ms !== null);
  const requests = sum("requests");
  const lookups = sum("cache_lookups");
  return {
    requests,
    errors: sum("errors"),
    tokens: sum("tokens_in") + sum("tokens_out"),
    cost: sum("cost_usd"),
    avoided: sum("cost_avoided_usd"),
    hitRate: lookups ? sum("cache_hits") / lookups : null,
    mean: timed.length
      ? timed.reduce((t, p) => t + p.latency_mean_ms * p.requests, 0) /
        timed.reduce((t, p) => t + p.requests, 0)
      : null,
    p95: timed.length ? Math.max(...timed.map((p) => p.latency_p95_ms)) : null,
  };
}

function charts(series) {
  const times = series.points.map((p) => new Date(p.start));
  const daily = series.bucket_s >= 86400;
  const label = (t) => (daily ? t.toLocaleDateString() : fmt.clock(t));
  const column = (key) => series.points.map((p) => p[key]);
  const rate = series.points.map((p) => (p.cache_lookups ? p.cache_hits / p.cache_lookups : null));
  return [
    chart({
      key: "requests", title: "Requests", times, label, format: fmt.count,
      series: [
        { name: "requests", values: column("requests"), kind: "bar" },
        { name: "cache hits", values: column("cache_hits"), kind: "bar" },
        { name: "errors", values: column("errors"), kind: "bar" },
      ],
    }),
    chart({
      key: "latency", title: "Latency", times, label, format: fmt.ms,
      series: [
        { name: "p50", values: column("latency_p50_ms"), kind: "line" },
        { name: "p95", values: column("latency_p95_ms"), kind: "line" },
      ],
    }),
    chart({
      key: "cost", title: "Cost and cost avoided by the cache", times, label, format: fmt.usd,
      series: [
        { name: "cost", values: column("cost_usd"), kind: "bar" },
        { name: "avoided", values: column("cost_avoided_usd"), kind: "bar" },
      ],
    }),
    chart({
      key: "hit-rate", title: "Cache hit rate", times, label, format: fmt.percent,
      series: [{ name: "hit rate", values: rate, kind: "line" }],
    }),
  ];
}

async function show(body, since, bucket) {
  const [series, byModel] = await Promise.all([
    getJson("admin/audit/timeseries", { since, bucket }),
    getJson("admin/audit/summary", { since, by: "model" }),
  ]);
  const t = totals(series.points);
  body.dataset.window = since;
  fill(
    body,
    el(
      "div",
      { class: "cards" },
      card("Requests", fmt.count(t.requests), "requests"),
      card("Errors", fmt.count(t.errors), "errors"),
      card("Tokens", fmt.count(t.tokens), "tokens"),
      card("Cost", fmt.usd(t.cost), "cost"),
      card("Cost avoided", fmt.usd(t.avoided), "avoided"),
      card("Cache hit rate", fmt.percent(t.hitRate), "hit-rate"),
      card("Mean latency", fmt.ms(t.mean), "latency"),
      card("Worst p95", fmt.ms(t.p95), "p95"),
    ),
    el("div", { class: "charts" }, charts(series)),
    el("h2", {}, "By model"),
    table(
      [
        { key: "key", title: "Model" },
        { key: "count", title: "Requests", num: true, render: (r) => fmt.count(r.count) },
        { key: "tokens", title: "Tokens", num: true, render: (r) => fmt.count(r.tokens_in + r.tokens_out) },
        { key: "cost_usd", title: "Cost", num: true, render: (r) => fmt.usd(r.cost_usd) },
        { key: "cost_avoided_usd", title: "Avoided", num: true, render: (r) => fmt.usd(r.cost_avoided_usd) },
      ],
      byModel.rows.filter((r) => r.key !== null),
      { id: "by-model", rowKey: (r) => r.key, empty: "No requests to a model in this window." },
    ),
  );
}

export default {
  id: "overview",
  title: "Overview",
  needs: "audit.read",
  async render(view, { act }) {
    const body = el("div");
    const choice = field("Window", "window", {
      value: "1h",
      options: WINDOWS.map(([since, text]) => [since, text]),
    });
    const select = choice.querySelector("select");
    const reload = () => {
      const [since, , bucket] = WINDOWS.find(([s]) => s === select.value);
      return show(body, since, bucket);
    };
    select.addEventListener("change", act(reload));
    fill(
      view,
      heading("Overview", choice, el("button", { type: "button", class: "quiet", onclick: act(reload) }, "Refresh")),
      el("p", { class: "note" }, "Requests to the model API (/v1/...), from the audit trail."),
      body,
    );
    await reload();
  },
};
