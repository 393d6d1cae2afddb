// Building the page: elements, tables, forms and the formats numbers and times are shown in.
// Everything is created through the DOM (never innerHTML), so no text from the gateway is ever
// read as markup.

/** An element: `el("td", {class: "num", dataset: {col: "cost"}}, "1.2")`. Props that start
 * with `on` are listeners; `dataset` sets data-* attributes; other props are attributes, or
 * properties where the element has one (value, checked, disabled, hidden). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name in node && name !== "list" && name !== "form") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.flat(Infinity).filter((c) => c !== undefined && c !== null && c !== false));
  return node;
}

/** Empty `node`, then fill it with `children`. */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== undefined && c !== null));
  return node;
}

/** A table: `columns` are {key, title, render?(row), num?}; each row a <tr> keyed by
 * `rowKey(row)` (data-key); an empty table says `empty`. */
export function table(columns, rows, { id, rowKey, empty = "Nothing to show.", onRow } = {}) {
  const head = el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null }, c.title)));
  const body = rows.map((row) =>
    el(
      "tr",
      {
        dataset: rowKey ? { key: rowKey(row) } : {},
        class: onRow ? "clickable" : null,
        onclick: onRow ? () => onRow(row) : null,
      },
      columns.map((c) =>
        el(
          "td",
          { class: c.num ? "num" : null, dataset: { col: c.key } },
          c.render ? c.render(row) : show(row[c.key]),
        ),
      ),
    ),
  );
  if (!rows.length) body.push(el("tr", {}, el("td", { colspan: columns.length, class: "empty" }, empty)));
  return el("table", { id, class: "grid" }, el("thead", {}, head), el("tbody", {}, body));
}

/** A labelled input; `options` makes it a <select> of [value, label] pairs. */
export function field(label, name, { type = "text", value = "", placeholder, options, required, min, step } = {}) {
  const control = options
    ? el("select", { name }, options.map(([v, text]) => el("option", { value: v, selected: v === value }, text)))
    : el("input", { name, type, value, placeholder, required, min, step, autocomplete: "off" });
  return el("label", {}, el("span", {}, label), control);
}

/** The form's fields by name, as trimmed text ("" where left empty). */
export function values(form) {
  const out = {};
  for (const [name, value] of new FormData(form)) out[name] = String(value).trim();
  return out;
}

/** A comma-separated list as an array (none: undefined, so the field is left out). */
export function list(text) {
  const items = (text || "").split(",").map((s) => s.trim()).filter(Boolean);
  return items.length ? items : undefined;
}

/** A small labelled figure: `card("Requests", "1,204", "requests")`. */
export function card(label, value, key) {
  return el("div", { class: "card", dataset: { total: key } }, el("span", { class: "label" }, label), el("strong", {}, value));
}

/** A coloured word for a state: ok, warn or bad by the state's name. */
export function badge(text) {
  const tone = {
    closed: "ok", healthy: "ok", active: "ok", allow: "ok", exact: "ok", normalized: "ok", semantic: "ok",
    half_open: "warn", monitor: "warn", redact: "warn", flag: "warn", unchecked: "quiet", miss: "quiet", bypass: "quiet",
    open: "bad", unhealthy: "bad", ejected: "bad", block: "bad", revoked: "bad", expired: "bad",
  }[text] || "quiet";
  return el("span", { class: `badge ${tone}` }, text);
}

const numbers = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const dollars = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD", maximumFractionDigits: 4 });
const cents = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD", maximumSignificantDigits: 2 });

/** How values are shown. */
export const fmt = {
  count: (n) => (n === null || n === undefined ? "—" : numbers.format(n)),
  usd: (n) => (n === null || n === undefined ? "—" : (n && Math.abs(n) < 0.001 ? cents : dollars).format(n)),
  ms: (n) => (n === null || n === undefined ? "—" : `${n < 10 ? n.toFixed(1) : Math.round(n)} ms`),
  percent: (n) => (n === null || n === undefined || Number.isNaN(n) ? "—" : `${(100 * n).toFixed(1)}%`),
  time: (t) => (t ? new Date(typeof t === "number" ? t * 1000 : t).toLocaleString() : "—"),
  clock: (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
};

/** A value as table text: lists joined, nothing as a dash. */
export function show(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (Array.isArray(value)) return value.length ? value.join(", ") : "—";
  return String(value);
}

/** A page's heading, with controls on its right. */
export function heading(title, ...controls) {
  return el("div", { class: "heading" }, el("h1", {}, title), el("div", { class: "controls" }, controls));
}

/** A note under a heading. */
export function note(text) {
  return el("p", { class: "note" }, text);
}
