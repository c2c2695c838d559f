// A model's lineage: the model it was distilled or pruned from (with its figures beside this
// one's), and the "compressed descendants" made from it, as a table: name, kind, params, size,
// latency at batch 1, accuracy and the delta against this model. Self-contained: one card.
import { api } from "../api.js";
import { fmtNum, h } from "../dom.js";

const mb = (bytes) => (typeof bytes === "number" ? `${(bytes / 1e6).toFixed(1)} MB` : "—");
const ms = (v) => (typeof v === "number" ? `${v.toFixed(2)} ms` : "—");
const signed = (v) => (typeof v === "number" ? `${v >= 0 ? "+" : ""}${(v * 100).toFixed(2)} pts` : "—");
const times = (v) => (typeof v === "number" ? `${v.toFixed(2)}×` : "—");

function row(m) {
  const c = m.compression || {};
  const delta = c.delta || {};
  return h("tr", { dataset: { model: m.id } },
    h("td", null, h("a", { href: `#/models/${encodeURIComponent(m.id)}` }, m.name)),
    h("td", null, c.kind || (m.job ? "—" : "")),
    h("td", { class: "num" }, fmtNum(c.params)),
    h("td", { class: "num" }, mb(c.size_bytes)),
    h("td", { class: "num" }, ms(c.latency_ms_b1)),
    h("td", { class: "num" }, fmtNum(c.accuracy, 4)),
    h("td", { class: "num delta-accuracy" }, signed(delta.accuracy)),
    h("td", { class: "num" }, times(delta.speedup_b1)));
}

const HEAD = ["Name", "Kind", "Params", "Size", "Latency (b1)", "Accuracy", "Δ accuracy", "Speed-up"];

function origin(model) {
  const c = model.compression;
  if (!model.source_model) return null;
  const verb = c && c.kind === "prune" ? "Pruned from" : "Distilled from";
  const src = (c && c.source) || {};
  return h("p", { id: "model-origin" }, `${verb} `,
    h("a", { href: `#/models/${encodeURIComponent(model.source_model)}` }, model.source_model),
    c ? ` — its params ${fmtNum(src.params)}, ${mb(src.size_bytes)}, ${ms(src.latency_ms_b1)}, ` +
        `accuracy ${fmtNum(src.accuracy, 4)}; this model: ${signed((c.delta || {}).accuracy)}, ` +
        `${times((c.delta || {}).speedup_b1)} faster` : "");
}

export async function descendantsCard(model) {
  const list = await api(`v1/models/${encodeURIComponent(model.id)}/descendants`);
  const body = list.data.length
    ? h("table", { id: "descendants" },
        h("thead", null, h("tr", null, HEAD.map((t) => h("th", null, t)))),
        h("tbody", null, list.data.map(row)))
    : h("p", { class: "muted", id: "descendants-empty" },
        "None yet: distil it (a job with method distill and this model as teacher) or prune it.");
  return h("div", { class: "card", id: "lineage" }, h("h2", null, "Compressed descendants"),
    origin(model), body);
}
