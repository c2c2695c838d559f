// Compare 2–5 jobs (#/compare?jobs=job_a,job_b): their curves overlaid, one chart per metric, and
// their settings and best metrics side by side, the rows that differ highlighted.
import { api } from "../api.js";
import { COLORS, lineChart } from "../charts.js";
import { badge, fmtNum, h } from "../dom.js";
import { bestCheckpoint, latestEvaluation } from "./job.js";
import { MAX_JOBS, MIN_JOBS } from "./jobs.js";

const CHARTS = [["val_accuracy", "Validation accuracy"], ["val_macro_f1", "Validation macro-F1"],
                ["val_loss", "Validation loss"], ["train_loss", "Training loss"]];

function curve(metrics, name) {
  return metrics.filter((m) => m.name === name).map((m) => [m.epoch, m.value]);
}

function chartCard(name, title, runs) {
  const series = runs.map((r, i) => ({ name: r.job.id, color: COLORS[i % COLORS.length],
                                       points: curve(r.metrics, name) }));
  const best = runs.map((r, i) => {
    const value = r.best?.metrics?.[name];
    return r.best && Number.isFinite(value) && name.startsWith("val_")
      ? { x: r.best.epoch, y: value, label: `best (${r.job.id.slice(-6)})`, color: COLORS[i % COLORS.length] } : null;
  }).filter(Boolean);
  return h("div", { class: "card compare-chart", id: `compare-${name}`, dataset: { metric: name } },
    h("h2", null, title),
    lineChart(series, { xLabel: "epoch", title, integerX: true, markers: best }));
}

function swatch(color) {
  const el = h("span", { class: "swatch" });
  el.style.background = color; // through the CSSOM: the page's CSP allows no inline style attribute
  return el;
}

const show = (v) => (v === null || v === undefined ? "—" : typeof v === "object" ? JSON.stringify(v) : fmtNum(v, 4));

function table(runs) {
  const rows = [["Status", (r) => r.job.status], ["Base model", (r) => r.job.base_model],
    ["Method", (r) => r.job.method], ["Dataset", (r) => r.job.training_dataset],
    ["Select checkpoint by", (r) => r.job.select_checkpoint_by], ["Seed", (r) => r.job.seed]];
  const hpKeys = [...new Set(runs.flatMap((r) => Object.keys(r.job.hyperparameters || {})))].sort();
  for (const k of hpKeys) rows.push([k, (r) => r.job.hyperparameters?.[k], "hp"]);
  rows.push(["Best epoch", (r) => r.best?.epoch, "best"]);
  for (const m of ["val_accuracy", "val_macro_f1", "val_loss"]) rows.push([`best ${m}`, (r) => r.best?.metrics?.[m], "best"]);
  rows.push(["Latest evaluation epoch", (r) => r.latest?.epoch, "latest"]);
  const body = rows.map(([name, get, kind]) => {
    const values = runs.map((r) => show(get(r)));
    const differs = new Set(values).size > 1;
    return h("tr", { class: differs ? "differs" : null, dataset: { row: name, kind: kind || "job" } },
      h("th", { scope: "row" }, name),
      values.map((v) => h("td", { class: differs ? "differs mono" : "mono" }, v)));
  });
  return h("table", { class: "compare", id: "compare-table" },
    h("thead", null, h("tr", null, h("th", null, ""), runs.map((r, i) => h("th", null,
      swatch(COLORS[i % COLORS.length]),
      h("a", { href: `#/jobs/${r.job.id}` }, r.job.id), " ", badge(r.job.status))))),
    h("tbody", null, body));
}

export async function render(view, _id, ctx) {
  const ids = [...new Set((ctx.params.get("jobs") || "").split(",").map((s) => s.trim()).filter(Boolean))];
  view.append(h("h1", null, "Compare jobs"));
  if (ids.length < MIN_JOBS || ids.length > MAX_JOBS) {
    view.append(h("div", { class: "error", dataset: { code: "compare_jobs" } },
      `Compare needs ${MIN_JOBS} to ${MAX_JOBS} jobs (#/compare?jobs=job_a,job_b); got ${ids.length}. `,
      h("a", { href: "#/jobs" }, "Choose them in the jobs list")));
    return;
  }
  const runs = await Promise.all(ids.map(async (jobId) => {
    const id = encodeURIComponent(jobId);
    const [job, metrics, checkpoints] = await Promise.all([
      api(`v1/jobs/${id}`), api(`v1/jobs/${id}/metrics`), api(`v1/jobs/${id}/checkpoints`)]);
    return { job, metrics: metrics.data, best: bestCheckpoint(checkpoints.data),
             latest: latestEvaluation(metrics.data) };
  }));
  view.append(
    h("div", { class: "card" }, h("h2", null, "Settings and best metrics"),
      h("p", { class: "muted" }, "Highlighted rows differ between the jobs. Best = the chosen checkpoint."),
      table(runs)),
    h("div", { class: "grid", id: "compare-charts" }, CHARTS.map(([name, title]) => chartCard(name, title, runs))));
}
