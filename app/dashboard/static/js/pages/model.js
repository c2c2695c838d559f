// One model: what it is, its evaluation, and a predict box (texts, or images for image models)
// whose Explain action shows why: words shaded by their score, or the image's heatmap overlaid.
import { api } from "../api.js";
import { bar, errorBox, fmtNum, fmtTime, h } from "../dom.js";
import { downloadButton } from "../download.js";
import { descendantsCard } from "./descendants.js";
import { evaluationCard } from "./evaluation.js";
import { exportsCard } from "./exports.js";

function scores(top) {
  return h("div", { class: "scores" }, top.map((t) => h("div", { class: "score" },
    h("span", { class: "label" }, t.label), bar(t.score), h("span", { class: "num" }, fmtNum(t.score, 3)))));
}

function results(inputs, out) {
  return h("table", { id: "predictions" },
    h("thead", null, h("tr", null, h("th", null, "Input"), h("th", null, "Label"), h("th", null, "Scores"))),
    h("tbody", null, out.predictions.map((p, i) => h("tr", null,
      h("td", null, inputs[i]),
      h("td", null, labelCell(p)),
      h("td", null, scores(p.top))))));
}

/** The predicted label and its score; an unsure prediction (label null) says so, muted. */
function labelCell(p) {
  if (!p.unsure) return [h("strong", { class: "predicted-label" }, p.label), ` ${fmtNum(p.score, 3)}`];
  return [h("span", { class: "unsure", title: "below the confidence threshold: no label (the scores are still ranked)" },
    "unsure"), ` ${fmtNum(p.score, 3)}`];
}

// Shading strength: a word's |score| relative to the text's largest, at most this opacity.
const MAX_ALPHA = 0.65;

/** The text as written (its whitespace kept), each word shaded: green toward the explained
 *  label, red against; the score in its tooltip and data-score. */
function shadedText(text, words) {
  const peak = Math.max(1e-12, ...words.map((w) => Math.abs(w.score)));
  const parts = [];
  let at = 0;
  for (const w of words) {
    parts.push(text.slice(at, w.start));
    const alpha = (MAX_ALPHA * Math.abs(w.score) / peak).toFixed(3);
    const rgb = w.score >= 0 ? "22, 163, 74" : "220, 38, 38";
    const word = h("span", { class: "word", title: `${w.word}: ${fmtNum(w.score, 4)}`,
                             dataset: { score: String(w.score) } }, text.slice(w.start, w.end));
    word.style.background = `rgba(${rgb}, ${alpha})`; // the CSSOM: the CSP allows no style attribute
    parts.push(word);
    at = w.end;
  }
  parts.push(text.slice(at));
  return h("span", { class: "explained-text" }, parts);
}

/** The image with its heatmap drawn over it (red, as opaque as the evidence is strong). */
function heatmapOverlay(src, alt, heatmap) {
  const canvas = h("canvas", { class: "heatmap", width: heatmap.width, height: heatmap.height,
                               dataset: { width: String(heatmap.width), height: String(heatmap.height) } });
  const grey = new Image();
  grey.onload = () => {
    const ctx = canvas.getContext("2d");
    ctx.drawImage(grey, 0, 0);
    const px = ctx.getImageData(0, 0, heatmap.width, heatmap.height);
    for (let i = 0; i < px.data.length; i += 4) {
      const v = px.data[i];
      px.data.set([255, 40, 0, Math.round(v * MAX_ALPHA)], i);
    }
    ctx.putImageData(px, 0, 0);
    canvas.dataset.drawn = "true";
  };
  grey.src = `data:image/png;base64,${heatmap.png_base64}`;
  return h("span", { class: "heatmap-overlay" }, h("img", { class: "thumb", src, alt }), canvas);
}

function explanations(inputs, sources, out) {
  return h("table", { id: "explanations" },
    h("thead", null, h("tr", null, h("th", null, "Why (explaining the label)"), h("th", null, "Label"), h("th", null, "Scores"))),
    h("tbody", null, out.explanations.map((p, i) => h("tr", null,
      h("td", null, p.words ? shadedText(inputs[i], p.words) : heatmapOverlay(sources[i], `input ${i + 1}`, p.heatmap),
        h("div", { class: "muted" }, "explaining ", h("strong", { class: "explained-label" }, p.target))),
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
  const minConfidence = h("input", { type: "number", name: "min_confidence", min: 0, max: 1, step: "any",
                                     placeholder: "model's" });
  const target = h("select", { name: "target" }, h("option", { value: "" }, "(the predicted label)"),
    model.labels.map((l) => h("option", { value: l }, l)));
  const out = h("div", { id: "predict-output" });
  const form = h("form", { id: "predict-form" },
    h("label", null, isImage ? "Images" : "Texts (one per line)", field),
    h("div", { class: "inline-row" }, h("label", null, "Top k", topK),
      h("label", { title: "0–1: below this score a prediction answers \"unsure\" (empty: the thresholds the model learned, if any)" },
        "Unsure below", minConfidence),
      h("button", { type: "submit", value: "predict" }, "Predict"),
      h("label", null, "Explain", target),
      h("button", { type: "submit", value: "explain", id: "explain-button",
                    title: "Why: each word's score, or the image's heatmap" }, "Explain")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const explain = e.submitter && e.submitter.value === "explain";
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      let shown, request, sources = [];
      if (isImage) {
        const data = new FormData();
        for (const f of field.files) data.append("files", f, f.name);
        data.append("top_k", topK.value);
        if (explain && target.value) data.append("target", target.value);
        if (!explain && minConfidence.value !== "") data.append("min_confidence", minConfidence.value);
        sources = Array.from(field.files, (f) => URL.createObjectURL(f));
        shown = Array.from(field.files, (f, i) => h("img", { class: "thumb", src: sources[i], alt: f.name }));
        request = { method: "POST", form: data };
      } else {
        const texts = field.value.split("\n").map((t) => t.trim()).filter(Boolean);
        shown = texts;
        request = { method: "POST", json: { inputs: texts, top_k: Number(topK.value),
                                            ...(explain && target.value ? { target: target.value } : {}),
                                            ...(!explain && minConfidence.value !== ""
                                              ? { min_confidence: Number(minConfidence.value) } : {}) } };
      }
      const path = `v1/models/${encodeURIComponent(model.id)}/${explain ? "explain" : "predict"}`;
      const answer = await api(path, request);
      out.replaceChildren(explain ? explanations(shown, sources, answer) : results(shown, answer));
    } catch (err) {
      if (err.status === 401) throw err;
      out.replaceChildren(errorBox(err));
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
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
    predictCard(model), await evaluationCard(model.id), await exportsCard(model, ctx));
  view.append(await descendantsCard(model));
}
