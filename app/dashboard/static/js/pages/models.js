// Models: the list.
import { api } from "../api.js";
import { fmtNum, fmtTime, h } from "../dom.js";

function row(m) {
  const metrics = m.metrics || {};
  return h("tr", { dataset: { id: m.id } },
    h("td", null, h("a", { href: `#/models/${m.id}` }, m.name), h("div", { class: "muted mono" }, m.id)),
    h("td", null, m.task),
    h("td", null, m.base_model),
    h("td", { class: "num" }, fmtNum(metrics.val_accuracy, 3)),
    h("td", { class: "num" }, fmtNum(metrics.val_macro_f1, 3)),
    h("td", null, m.job ? h("a", { href: `#/jobs/${m.job}` }, m.job) : "—"),
    h("td", null, fmtTime(m.created_at)));
}

export async function render(view, _id, ctx) {
  const models = await api("v1/models?limit=100");
  const body = h("tbody", null, models.data.map(row));
  if (!models.data.length) {
    body.append(h("tr", null, h("td", { colspan: 7, class: "muted" }, "No models yet: a succeeded job makes one.")));
  }
  view.append(h("h1", null, "Models"), h("div", { class: "card" },
    h("table", { id: "models" }, h("thead", null, h("tr", null,
      ["Model", "Task", "Base model", "Val. accuracy", "Val. macro-F1", "Job", "Created"].map((t, i) =>
        h("th", { class: i === 3 || i === 4 ? "num" : null }, t)))), body),
    models.has_more ? h("p", { class: "muted" }, "Showing the 100 newest models.") : null));
}
