// A model's evaluation on its validation data: summary, calibration, long texts, per-class table
// and confusion heatmap.
import { api } from "../api.js";
import { heatmap } from "../charts.js";
import { errorBox, fmtNum, h } from "../dom.js";

const MAX_DRAWN_CLASSES = 60; // beyond this a heatmap is unreadable (and thousands of cells)

/** Temperature scaling fitted on the validation data, and the per-label thresholds below which a
 *  prediction is "unsure" (when the job set target_precision). */
function calibrationView(c) {
  const line = h("p", { id: "calibration" },
    `Calibration: temperature ${fmtNum(c.temperature, 2)} · ECE ${fmtNum(c.ece_before, 3)} → ${fmtNum(c.ece_after, 3)}`,
    h("span", { class: "muted" }, ` (temperature scaling on ${fmtNum(c.examples)} validation examples; ` +
      "the ECE after is cross-fitted)"));
  if (!c.thresholds) return line;
  const table = h("table", { id: "thresholds", class: "per-class" },
    h("caption", null, `Unsure below, per label (for precision ≥ ${fmtNum(c.target_precision, 2)})`),
    h("thead", null, h("tr", null, h("th", null, "Label"), h("th", { class: "num" }, "Unsure below"))),
    h("tbody", null, Object.entries(c.thresholds).map(([name, t]) => h("tr", null, h("td", null, name),
      h("td", { class: "num" }, t === null ? "always (no threshold reaches it)" : fmtNum(t, 3))))));
  return [line, table];
}

/** Texts longer than max_length: how many, and whether they were cut or read in windows. */
function longTextsView(d) {
  const over = d.longer_than_max_length;
  let how = "";
  if (over && d.chunking) {
    how = " — split into windows (chunking)" +
      (d.truncated_examples ? `; ${fmtNum(d.truncated_examples)} still truncated past the last window` : "");
  } else if (over) {
    how = " — truncated";
  }
  return h("p", { id: "long-texts" },
    `Long texts: ${fmtNum(over)} of ${fmtNum(d.examples)} examples over max_length ${fmtNum(d.max_length)}${how}`);
}

export function evaluationView(ev) {
  const { labels, matrix } = ev.confusion_matrix;
  const perClass = h("table", { class: "per-class" },
    h("thead", null, h("tr", null, ["Class", "Precision", "Recall", "F1", "Support"].map((t, i) =>
      h("th", { class: i ? "num" : null }, t)))),
    h("tbody", null, Object.entries(ev.per_class).map(([name, c]) => h("tr", null,
      h("td", null, name), h("td", { class: "num" }, fmtNum(c.precision, 3)),
      h("td", { class: "num" }, fmtNum(c.recall, 3)), h("td", { class: "num" }, fmtNum(c.f1, 3)),
      h("td", { class: "num" }, fmtNum(c.support))))));
  return h("div", { class: "evaluation" },
    h("p", null, `Accuracy ${fmtNum(ev.accuracy, 3)} · macro-F1 ${fmtNum(ev.macro_f1, 3)}`),
    ev.calibration ? calibrationView(ev.calibration) : null,
    ev.data ? longTextsView(ev.data) : null,
    h("div", { class: "grid" },
      h("div", { id: "confusion" }, labels.length <= MAX_DRAWN_CLASSES ? heatmap(labels, matrix)
        : h("p", { class: "muted" }, `${labels.length} classes: too many to draw; see the table.`)),
      h("div", null, perClass)));
}

/** The evaluation of a model, fetched; a missing one is said in words, an error shown in place. */
export async function evaluationCard(modelId) {
  const card = h("div", { class: "card", id: "evaluation" }, h("h2", null, "Evaluation (validation data)"));
  try {
    card.append(evaluationView(await api(`v1/models/${encodeURIComponent(modelId)}/evaluation`)));
  } catch (err) {
    if (err.status === 401) throw err;
    card.append(err.code === "no_evaluation" ? h("p", { class: "muted" }, err.message) : errorBox(err));
  }
  return card;
}
