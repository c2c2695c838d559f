// A model's ONNX exports: a table (format, quantisation, status, size, latency, accuracy, the
// delta to the original) with a download per export, and a form that creates one. While an
// export is queued or running the table refreshes itself.
import { api, download } from "../api.js";
import { badge, errorBox, fmtNum, h } from "../dom.js";

const POLL_MS = 2000;

const mb = (bytes) => (bytes === null || bytes === undefined ? "—" : `${(bytes / 1e6).toFixed(1)} MB`);
const ms = (v) => (v === null || v === undefined ? "—" : `${v.toFixed(1)} ms`);

function points(delta) {
  if (delta === null || delta === undefined) return "—";
  const p = delta * 100;
  return `${p >= 0 ? "+" : ""}${p.toFixed(2)} pts`;
}

function downloadCell(exp, onError) {
  if (exp.status !== "succeeded") return exp.error ? h("span", { class: "muted" }, exp.error.message) : "—";
  const button = h("button", { type: "button", class: "download export-download", dataset: { export: exp.id },
                               title: `Download ${exp.id}.zip (model.onnx, tokenizer or preprocessing, labels, README)` },
    "Download");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await download(`v1/exports/${encodeURIComponent(exp.id)}/download`, `${exp.id}.zip`);
    } catch (err) {
      onError(err);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

function row(exp, onError) {
  const ev = exp.evaluation || {};
  const out = ev.export || {};
  const delta = ev.delta || {};
  return h("tr", { dataset: { id: exp.id, status: exp.status } },
    h("td", null, exp.format), h("td", null, exp.quantize || "fp32"), h("td", null, badge(exp.status)),
    h("td", { class: "num" }, mb(exp.size_bytes)),
    h("td", { class: "num latency-b1" }, ms(out.latency_ms_b1)),
    h("td", { class: "num latency-b32" }, ms(out.latency_ms_b32)),
    h("td", { class: "num accuracy" }, fmtNum(out.accuracy, 4)),
    h("td", { class: "num delta" }, points(delta.accuracy),
      delta.speedup_b1 ? h("div", { class: "muted" }, `${delta.speedup_b1.toFixed(2)}× at b1`) : null),
    h("td", null, downloadCell(exp, onError)));
}

export async function exportsCard(model, ctx) {
  const path = `v1/models/${encodeURIComponent(model.id)}/exports`;
  const body = h("tbody");
  const message = h("div", { id: "export-message" });
  const showError = (err) => message.replaceChildren(errorBox(err, () => message.replaceChildren()));
  let timer = null;
  const card = h("div", { class: "card", id: "exports" }, h("h2", null, "Exports"));

  async function refresh() {
    clearTimeout(timer);
    const list = await api(`${path}?limit=100`);
    body.replaceChildren(...list.data.map((e) => row(e, showError)));
    if (!list.data.length) {
      body.append(h("tr", null, h("td", { colspan: 9, class: "muted" }, "No exports yet.")));
    }
    if (list.data.some((e) => e.status === "queued" || e.status === "running")) {
      timer = setTimeout(() => { if (card.isConnected) refresh().catch(showError); }, POLL_MS);
    }
  }

  const quantize = h("select", { name: "quantize", id: "export-quantize" },
    h("option", { value: "" }, "fp32 (none)"), h("option", { value: "int8" }, "int8"),
    h("option", { value: "fp16" }, "fp16"));
  const form = h("form", { id: "export-form", class: "inline-row" },
    h("label", null, "Quantisation", quantize), h("button", { type: "submit" }, "Export to ONNX"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      await api(path, { method: "POST", json: { format: "onnx", quantize: quantize.value || null } });
      message.replaceChildren();
      await refresh();
    } catch (err) {
      if (err.status === 401) throw err;
      showError(err);
    } finally {
      button.disabled = false;
    }
  });
  card.append(
    h("p", { class: "muted" }, "ONNX files that run with onnxruntime alone, measured on this model's validation data ",
      "beside the original (PyTorch, fp32, on the worker's CPU)."),
    h("table", { id: "exports-table" }, h("thead", null, h("tr", null,
      ["Format", "Quantize", "Status", "Size", "Latency b1", "Latency b32", "Accuracy", "Δ accuracy", "Download"]
        .map((t, i) => h("th", { class: i >= 3 && i <= 7 ? "num" : null }, t)))), body),
    form, message);
  await refresh().catch((err) => (ctx && ctx.showError ? ctx.showError(err) : showError(err)));
  return card;
}
