// Hand-written SVG charts: a line chart for metric curves and a heatmap for confusion matrices.
import { s } from "./dom.js";

export const COLORS = ["#2f6fdf", "#d9822b", "#1f9d55", "#8e44ad", "#d64545", "#138d90"];

/** About `count` round tick values covering [lo, hi]. */
function ticks(lo, hi, count = 5) {
  if (hi === lo) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((v) => v >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

const label = (v) => (Math.abs(v) >= 1000 ? v.toExponential(1) : +v.toPrecision(3)).toString();

/**
 * A line chart. series: [{name, points: [[x, y], ...]}]. Each series is a <path class="series">
 * whose data-points attribute is its number of points (a single point is also drawn as a dot).
 */
export function lineChart(series, { xLabel = "", width = 520, height = 240, title = "" } = {}) {
  const pad = { l: 48, r: 12, t: 26, b: 34 };
  const all = series.flatMap((sr) => sr.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
                         "aria-label": title || series.map((sr) => sr.name).join(", ") });
  if (!all.length) {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" },
                 "No values logged yet"));
    return svg;
  }
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const yPad = (y1 - y0) * 0.06;
  [y0, y1] = [y0 - yPad, y1 + yPad];
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const Y = (y) => height - pad.b - ((y - y0) / (y1 - y0)) * (height - pad.t - pad.b);

  const axis = s("g", { class: "axis" });
  for (const v of ticks(y0, y1)) {
    axis.append(s("line", { class: "grid-line", x1: pad.l, x2: width - pad.r, y1: Y(v), y2: Y(v) }),
                s("text", { x: pad.l - 6, y: Y(v) + 4, "text-anchor": "end" }, label(v)));
  }
  for (const v of ticks(x0, x1, 6)) {
    axis.append(s("text", { x: X(v), y: height - pad.b + 15, "text-anchor": "middle" }, label(v)));
  }
  axis.append(s("line", { x1: pad.l, x2: width - pad.r, y1: height - pad.b, y2: height - pad.b }),
              s("text", { x: width - pad.r, y: height - 4, "text-anchor": "end" }, xLabel));
  svg.append(axis);

  const legend = s("g", { class: "legend" });
  series.forEach((sr, i) => {
    const color = sr.color || COLORS[i % COLORS.length];
    const pts = sr.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y))
      .sort((a, b) => a[0] - b[0]);
    const d = pts.map(([x, y], j) => `${j ? "L" : "M"}${X(x).toFixed(1)} ${Y(y).toFixed(1)}`).join(" ");
    svg.append(s("path", { class: "series", d, stroke: color, dataset: { series: sr.name, points: pts.length } }));
    if (pts.length <= 30) {
      for (const [x, y] of pts) {
        svg.append(s("circle", { cx: X(x), cy: Y(y), r: 2.8, fill: color },
                     s("title", null, `${sr.name} @ ${label(x)}: ${y.toPrecision(4)}`)));
      }
    }
    const lx = pad.l + 8 + i * 130;
    legend.append(s("rect", { x: lx, y: 8, width: 12, height: 4, fill: color }),
                  s("text", { x: lx + 16, y: 14 }, sr.name));
  });
  svg.append(legend);
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
