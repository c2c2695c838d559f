// A model's evaluation on its validation data: summary, per-class table and confusion heatmap.
import { api } from "../api.js";
import { heatmap } from "../charts.js";
import { errorBox, fmtNum, h } from "../dom.js";

const MAX_DRAWN_CLASSES = 60; // beyond this a heatmap is unreadable (and thousands of cells)

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
