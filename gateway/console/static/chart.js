// One small chart function: bars and lines over time buckets, drawn as inline SVG. No library:
// the console must work on sites that reach nothing but the gateway.

import { el } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const SIZE = { width: 640, height: 220, left: 64, right: 12, top: 12, bottom: 28 };

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function tooltip(text) {
  return svg("title", {}, text);
}

/** A step of 1, 2 or 5 times a power of ten that splits `max` into about `parts`. */
function niceStep(max, parts) {
  const rough = max / parts;
  const power = 10 ** Math.floor(Math.log10(rough));
  const scaled = rough / power;
  return (scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10) * power;
}

/**
 * A chart of `series` over `times` (one Date per bucket).
 *   series: [{name, values: (number|null)[], kind: "bar" | "line"}], drawn in order, each in
 *   its own colour (s0, s1, ... in console.css);
 *   format: how a value reads (axis and tooltips); label: how a bucket's time reads.
 * Returns a <figure data-chart=key>; every bar and point carries data-value.
 */
export function chart({ key, title, times, series, format, label }) {
  const { width, height, left, right, top, bottom } = SIZE;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const all = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
  const step = niceStep(Math.max(...all, 0) || 1, 4);
  const yMax = step * Math.max(1, Math.ceil(Math.max(...all, 0) / step));
  const y = (v) => top + plotH - (v / yMax) * plotH;
  const band = plotW / Math.max(times.length, 1);
  const x = (i) => left + band * i + band / 2;

  const grid = [];
  for (let v = 0; v <= yMax + step / 2; v += step) {
    grid.push(svg("line", { class: "grid", x1: left, x2: width - right, y1: y(v), y2: y(v) }));
    grid.push(svg("text", { class: "axis", x: left - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)));
  }
  const every = Math.max(1, Math.ceil(times.length / 6));
  const ticks = times.flatMap((t, i) =>
    i % every ? [] : [svg("text", { class: "axis", x: x(i), y: height - 8, "text-anchor": "middle" }, label(t))],
  );

  const bars = series.filter((s) => s.kind === "bar");
  const barW = (band * 0.8) / Math.max(bars.length, 1);
  const marks = series.flatMap((s, n) => {
    const tone = `s${n}`;
    if (s.kind === "bar") {
      const offset = bars.indexOf(s) * barW - band * 0.4;
      return s.values.map((v, i) =>
        svg(
          "rect",
          { class: `bar ${tone}`, x: x(i) + offset, y: y(v || 0), width: Math.max(barW - 1, 1), height: y(0) - y(v || 0), "data-value": v ?? "" },
          tooltip(`${s.name}, ${label(times[i])}: ${v === null ? "—" : format(v)}`),
        ),
      );
    }
    const points = s.values.map((v, i) => [i, v]).filter(([, v]) => v !== null && v !== undefined);
    let path = "";
    let drawing = false; // a gap (a bucket without a value) lifts the pen
    for (const [i, v] of s.values.entries()) {
      const known = v !== null && v !== undefined;
      if (known) path += `${drawing ? "L" : "M"}${x(i)},${y(v)}`;
      drawing = known;
    }
    return [
      svg("path", { class: `line ${tone}`, d: path }),
      ...points.map(([i, v]) =>
        svg("circle", { class: `dot ${tone}`, cx: x(i), cy: y(v), r: 3, "data-value": v }, tooltip(`${s.name}, ${label(times[i])}: ${format(v)}`)),
      ),
    ];
  });

  const picture = svg(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, class: "chart" },
    ...grid,
    ...ticks,
    ...marks,
  );
  const legend = el(
    "div",
    { class: "legend" },
    series.map((s, n) => el("span", {}, el("i", { class: `swatch s${n}` }), s.name)),
  );
  return el("figure", { class: "chart-box", dataset: { chart: key } }, el("figcaption", {}, title), picture, legend);
}
