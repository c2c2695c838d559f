// One model: what it is, its evaluation, and a predict box (texts, or images for image models).
import { api } from "../api.js";
import { bar, errorBox, fmtNum, fmtTime, h } from "../dom.js";
import { downloadButton } from "../download.js";
import { evaluationCard } from "./evaluation.js";

function scores(top) {
  return h("div", { class: "scores" }, top.map((t) => h("div", { class: "score" },
    h("span", { class: "label" }, t.label), bar(t.score), h("span", { class: "num" }, fmtNum(t.score, 3)))));
}

function results(inputs, out) {
  return h("table", { id: "predictions" },
    h("thead", null, h("tr", null, h("th", null, "Input"), h("th", null, "Label"), h("th", null, "Scores"))),
    h("tbody", null, out.predictions.map((p, i) => h("tr", null,
      h("td", null, inputs[i]),
      h("td", null, h("strong", { class: "predicted-label" }, p.label), ` ${fmtNum(p.score, 3)}`),
      h("td", null, scores(p.top))))));
}

function predictCard(model) {
  const isImage = model.task === "image-classification";
  const field = isImage
    ? h("input", { type: "file", name: "files", accept: "image/*", multiple: true, required: true })
    : h("textarea", { name: "inputs", required: true, placeholder: "One input per line" });
  const topK = h("input", { type: "number", name: "top_k", min: 1, max: Math.max(1, model.labels.length),
                           value: Math.min(3, Math.max(1, model.labels.length)) });
  const out = h("div", { id: "predict-output" });
  const form = h("form", { id: "predict-form" },
    h("label", null, isImage ? "Images" : "Texts (one per line)", field),
    h("div", { class: "inline-row" }, h("label", null, "Top k", topK),
      h("button", { type: "submit" }, "Predict")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      let shown, request;
      if (isImage) {
        const data = new FormData();
        for (const f of field.files) data.append("files", f, f.name);
        data.append("top_k", topK.value);
        shown = Array.from(field.files, (f) => h("img", { class: "thumb", src: URL.createObjectURL(f), alt: f.name }));
        request = { method: "POST", form: data };
      } else {
        const texts = field.value.split("\n").map((t) => t.trim()).filter(Boolean);
        shown = texts;
        request = { method: "POST", json: { inputs: texts, top_k: Number(topK.value) } };
      }
      out.replaceChildren(results(shown, await api(`v1/models/${encodeURIComponent(model.id)}/predict`, request)));
    } catch (err) {
      if (err.status === 401) throw err;
      out.replaceChildren(errorBox(err));
    } finally {
      button.disabled = false;
    }
  });
  return h("div", { class: "card" }, h("h2", null, "Predict"), form, out);
}

export async function render(view, modelId, ctx) {
  const model = await api(`v1/models/${encodeURIComponent(modelId)}`);
  const metrics = model.metrics || {};
  view.append(h("h1", null, "Model ", h("span", { class: "mono" }, model.name)),
    h("div", { class: "card" }, h("dl", { class: "facts" },
      h("dt", null, "Id"), h("dd", { class: "mono" }, model.id),
      h("dt", null, "Task"), h("dd", null, model.task),
      h("dt", null, "Labels"), h("dd", null, model.labels.join(", ")),
      h("dt", null, "Base model"), h("dd", null, model.base_model),
      h("dt", null, "Job"), h("dd", null, model.job ? h("a", { href: `#/jobs/${model.job}` }, model.job) : "—"),
      h("dt", null, "Checkpoint"), h("dd", { class: "actions" }, h("span", { class: "mono" }, model.checkpoint),
        downloadButton(model.checkpoint, { onError: ctx.showError })),
      h("dt", null, "Metrics"), h("dd", null, Object.entries(metrics).map(([k, v]) => `${k} ${fmtNum(v, 4)}`).join(" · ") || "—"),
      h("dt", null, "Created"), h("dd", null, fmtTime(model.created_at)))),
    predictCard(model), await evaluationCard(model.id));
}
