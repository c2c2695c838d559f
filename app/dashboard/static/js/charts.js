// Hand-written SVG charts: a line chart for metric curves and a heatmap for confusion matrices.
import { s } from "./dom.js";

export const COLORS = ["#2f6fdf", "#d9822b", "#1f9d55", "#8e44ad", "#d64545", "#138d90"];

/** About `count` round tick values covering [lo, hi]; integers only with `integer`. */
export function ticks(lo, hi, count = 5, integer = false) {
  if (hi === lo) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map((m) => m * mag).find((v) => v >= raw);
  if (integer) step = Math.max(1, Math.round(step));
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

/** Tick labels rounded to what the step between ticks can tell apart, duplicates dropped. */
export function tickLabels(values) {
  const step = values.length > 1 ? Math.min(...values.slice(1).map((v, i) => v - values[i])) : 0;
  const digits = step > 0 ? Math.min(8, Math.max(0, -Math.floor(Math.log10(step) + 1e-9))) : 3;
  const seen = new Set();
  return values.map((v) => {
    const text = Math.abs(v) >= 1e5 ? v.toExponential(1) : (Object.is(+v.toFixed(digits), -0) ? 0 : v).toFixed(digits);
    if (seen.has(text)) return null;
    seen.add(text);
    return [v, text];
  }).filter(Boolean);
}

const label = (v) => (Math.abs(v) >= 1000 ? v.toExponential(1) : +v.toPrecision(3)).toString();

/**
 * The y range to draw: the data's, widened to at least 5 % of its magnitude (and 0.01) so that a
 * tiny difference is not spread over the full height, kept inside [0, 1] when every value is.
 */
export function yRange(lo, hi) {
  const mid = (lo + hi) / 2;
  const minSpan = Math.max(Math.abs(mid) * 0.05, 0.01);
  if (hi - lo < minSpan) [lo, hi] = [mid - minSpan / 2, mid + minSpan / 2];
  const pad = (hi - lo) * 0.06;
  let [y0, y1] = [lo - pad, hi + pad];
  if (lo >= 0 && y0 < 0) [y0, y1] = [0, y1 - y0];
  if (hi <= 1 && lo >= 0 && y1 > 1) [y0, y1] = [Math.max(0, y0 - (y1 - 1)), 1];
  return [y0, y1];
}

/**
 * A line chart. series: [{name, points: [[x, y], ...], color?, dashed?}]. Each series is a
 * <path class="series"> whose data-points attribute is its number of points (a single point is
 * also drawn as a dot). markers: [{x, y, label}] are drawn as a ring with a label (class
 * "marker"), e.g. the chosen checkpoint. integerX: only whole-number ticks on the x axis (epochs).
 */
export function lineChart(series, { xLabel = "", width = 520, height = 240, title = "",
                                    markers = [], integerX = false } = {}) {
  const finite = ([x, y]) => Number.isFinite(x) && Number.isFinite(y);
  const all = series.flatMap((sr) => sr.points).filter(finite);
  // The legend: as many rows as the names need.
  const items = [];
  let [lx, row] = [0, 0];
  series.forEach((sr, i) => {
    const w = 24 + String(sr.name).length * 6.6;
    if (lx && lx + w > width - 60) [lx, row] = [0, row + 1];
    items.push({ sr, i, x: lx, row });
    lx += w + 14;
  });
  const pad = { l: 52, r: 14, t: 26 + row * 16, b: 34 };
  height += row * 16;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
                         "aria-label": title || series.map((sr) => sr.name).join(", ") });
  if (!all.length) {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" },
                 "No values logged yet"));
    return svg;
  }
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (integerX) { x0 = Math.floor(x0); x1 = Math.ceil(x1); }
  const [y0, y1] = yRange(Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1])));
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const Y = (y) => height - pad.b - ((y - y0) / (y1 - y0)) * (height - pad.t - pad.b);

  const axis = s("g", { class: "axis" });
  const yTicks = s("g", { class: "y-ticks" });
  for (const [v, text] of tickLabels(ticks(y0, y1))) {
    axis.append(s("line", { class: "grid-line", x1: pad.l, x2: width - pad.r, y1: Y(v), y2: Y(v) }));
    yTicks.append(s("text", { x: pad.l - 6, y: Y(v) + 4, "text-anchor": "end" }, text));
  }
  const xTicks = s("g", { class: "x-ticks" });
  for (const [v, text] of tickLabels(ticks(x0, x1, 6, integerX))) {
    xTicks.append(s("text", { x: X(v), y: height - pad.b + 15, "text-anchor": "middle" }, text));
  }
  axis.append(yTicks, xTicks,
              s("line", { x1: pad.l, x2: width - pad.r, y1: height - pad.b, y2: height - pad.b }),
              s("text", { x: width - pad.r, y: height - 4, "text-anchor": "end" }, xLabel));
  svg.append(axis);

  const legend = s("g", { class: "legend" });
  for (const { sr, i, x, row: r } of items) {
    const color = sr.color || COLORS[i % COLORS.length];
    const pts = sr.points.filter(finite).sort((a, b) => a[0] - b[0]);
    const d = pts.map(([px, py], j) => `${j ? "L" : "M"}${X(px).toFixed(1)} ${Y(py).toFixed(1)}`).join(" ");
    svg.append(s("path", { class: "series", d, stroke: color, "stroke-dasharray": sr.dashed ? "5 3" : null,
                           dataset: { series: sr.name, points: pts.length } }));
    if (pts.length <= 30) {
      for (const [px, py] of pts) {
        svg.append(s("circle", { cx: X(px), cy: Y(py), r: 2.8, fill: color },
                     s("title", null, `${sr.name} @ ${label(px)}: ${py.toPrecision(4)}`)));
      }
    }
    const lxi = pad.l + 8 + x;
    const ly = 8 + r * 16;
    legend.append(s("rect", { x: lxi, y: ly, width: 12, height: 4, fill: color }),
                  s("text", { x: lxi + 16, y: ly + 6 }, sr.name));
  }
  svg.append(legend);

  const placed = []; // label boxes already drawn: a later label moves down until it is clear
  for (const m of markers) {
    if (!Number.isFinite(m.x) || !Number.isFinite(m.y)) continue;
    const [mx, my] = [X(m.x), Y(m.y)];
    const right = mx > width - 120;
    const w = String(m.label).length * 6.4;
    const lx = right ? mx - 9 - w : mx + 9;
    let ly = my < pad.t + 20 ? my + 16 : my - 9;
    while (placed.some(([px, py]) => Math.abs(py - ly) < 13 && lx < px + w + 4 && px < lx + w + 4)) ly += 13;
    placed.push([lx, ly]);
    const ring = s("circle", { cx: mx, cy: my, r: 6, class: "marker-ring" });
    const text = s("text", { x: lx, y: ly, class: "marker-label" }, m.label);
    if (m.color) [ring.style.stroke, text.style.fill] = [m.color, m.color]; // CSSOM: CSP-safe
    svg.append(s("g", { class: "marker", dataset: { x: m.x, y: m.y } },
      s("line", { x1: mx, x2: mx, y1: pad.t, y2: height - pad.b, class: "marker-line" }), ring, text,
      s("title", null, `${m.label}: ${m.y.toPrecision(4)} @ ${label(m.x)}`)));
  }
  return svg;
}

/**
 * A confusion matrix: rows are the true labels, columns the predicted ones; each cell is a
 * <rect class="cell"> shaded by its share of the row (recall per class), with its count written in.
 */
export function heatmap(labels, matrix, { cell = 44 } = {}) {
  const k = labels.length;
  const size = k > 12 ? Math.max(14, Math.floor(520 / k)) : cell;
  const left = Math.min(160, 16 + Math.max(...labels.map((l) => String(l).length)) * 7);
  const top = 44;
  const width = left + k * size + 8;
  const height = top + k * size + 8;
  const svg = s("svg", { class: "heatmap", viewBox: `0 0 ${width} ${height}`, width, height,
                         role: "img", "aria-label": "confusion matrix" });
  svg.append(s("text", { x: left + (k * size) / 2, y: 14, "text-anchor": "middle", class: "axis-title" }, "predicted →"),
             s("text", { x: 4, y: top - 6, class: "axis-title" }, "true ↓"));
  labels.forEach((name, i) => {
    if (k <= 24) {
      svg.append(s("text", { x: left + i * size + size / 2, y: top - 8, "text-anchor": "middle" },
                   String(name).slice(0, 8)),
                 s("text", { x: left - 6, y: top + i * size + size / 2 + 4, "text-anchor": "end" },
                   String(name).slice(0, 20)));
    }
  });
  matrix.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    row.forEach((count, j) => {
      const share = count / total;
      const fill = i === j ? `rgba(31,157,85,${0.08 + share * 0.85})` : `rgba(214,69,69,${0.05 + share * 0.85})`;
      const rect = s("rect", { class: "cell", x: left + j * size, y: top + i * size, width: size - 2,
                               height: size - 2, rx: 3, fill,
                               dataset: { true: labels[i], pred: labels[j], count } },
                     s("title", null, `true ${labels[i]}, predicted ${labels[j]}: ${count} (${(share * 100).toFixed(1)}% of the row)`));
      svg.append(rect);
      if (size >= 28) {
        svg.append(s("text", { x: left + j * size + size / 2 - 1, y: top + i * size + size / 2 + 4,
                               "text-anchor": "middle" }, String(count)));
      }
    });
  });
  return svg;
}
