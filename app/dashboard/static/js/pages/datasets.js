// Datasets: the list and the upload form.
import { api } from "../api.js";
import { badge, errorBox, fmtNum, fmtTime, h } from "../dom.js";

function uploadForm(table, ctx) {
  const status = h("div", { class: "form-status" });
  const form = h("form", { id: "upload-form", class: "inline" },
    h("label", null, "File (CSV, JSONL or image ZIP)",
      h("input", { type: "file", name: "file", required: true, accept: ".csv,.jsonl,.json,.zip,.tsv,.txt" })),
    h("label", null, "Name", h("input", { name: "name", placeholder: "(the file name)" })),
    h("label", null, "Text column", h("input", { name: "text_column", value: "text", size: 10 })),
    h("label", null, "Label column", h("input", { name: "label_column", value: "label", size: 10 })),
    h("label", null, "Task", h("select", { name: "task" },
      h("option", { value: "" }, "from the file"),
      h("option", { value: "text-classification" }, "text-classification"),
      h("option", { value: "image-classification" }, "image-classification"))),
    h("button", { type: "submit" }, "Upload"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    for (const k of ["name", "task"]) if (!data.get(k)) data.delete(k);
    const button = form.querySelector("button");
    button.disabled = true;
    status.replaceChildren(h("p", { class: "muted" }, "Uploading and validating…"));
    try {
      const ds = await api("v1/datasets", { method: "POST", form: data });
      status.replaceChildren(h("div", { class: "notice", id: "upload-result" }, "Uploaded ",
        h("a", { href: `#/jobs?dataset=${ds.id}` }, ds.name), ` (${ds.id}): ${ds.num_examples} examples, `,
        `labels ${ds.labels.join(", ")}. `, h("a", { href: `#/jobs?dataset=${ds.id}` }, "Train a model on it →")));
      form.reset();
      await fillTable(table, ctx);
    } catch (err) {
      if (err.status === 401) throw err;
      status.replaceChildren(errorBox(err));
    } finally {
      button.disabled = false;
    }
  });
  return h("div", { class: "card" }, h("h2", null, "Upload a dataset"), form, status);
}

// The quality report in brief: its status until it has succeeded, then its warnings' count.
function qualityCell(ds) {
  const q = ds.quality;
  if (!q) return "—";
  if (q.status !== "succeeded" || !q.summary) return badge(q.status);
  const warnings = (q.summary.warnings || []).length;
  return h("a", { href: `#/datasets/${ds.id}`, dataset: { warnings: String(warnings) } },
    warnings ? `${warnings} warning(s)` : "nothing found");
}

function row(ds) {
  return h("tr", { dataset: { id: ds.id } },
    h("td", null, h("a", { href: `#/datasets/${ds.id}` }, ds.name), h("div", { class: "muted mono" }, ds.id)),
    h("td", null, ds.task),
    h("td", { class: "num" }, fmtNum(ds.num_examples)),
    h("td", null, ds.labels.length > 6 ? `${ds.labels.slice(0, 6).join(", ")} … (${ds.labels.length})` : ds.labels.join(", ")),
    h("td", null, badge(ds.status)),
    h("td", { class: "quality" }, qualityCell(ds)),
    h("td", null, fmtTime(ds.created_at)),
    h("td", null, h("a", { href: `#/jobs?dataset=${ds.id}` }, "train")));
}

async function fillTable(table, ctx, after = null) {
  const page = await api(`v1/datasets?limit=50${after ? `&after=${after}` : ""}`);
  if (!ctx.alive()) return;
  const body = table.querySelector("tbody");
  if (!after) body.replaceChildren();
  body.append(...page.data.map(row));
  if (!body.children.length) body.append(h("tr", null, h("td", { colspan: 8, class: "muted" }, "No datasets yet: upload one above.")));
  const more = table.querySelector(".more");
  more.replaceChildren(page.has_more ? h("button", { type: "button", class: "secondary",
    onclick: () => fillTable(table, ctx, page.data.at(-1).id).catch(ctx.showError) }, "Load more") : "");
}

export async function render(view, _id, ctx) {
  const table = h("div", { class: "card" }, h("h2", null, "Datasets"),
    h("table", { id: "datasets" }, h("thead", null, h("tr", null,
      ["Name", "Task", "Examples", "Labels", "Status", "Quality", "Created", ""].map((t, i) =>
        h("th", { class: i === 2 ? "num" : null }, t)))), h("tbody")),
    h("div", { class: "more" }));
  await fillTable(table, ctx);
  view.append(h("h1", null, "Datasets"), uploadForm(table, ctx), table);
}
