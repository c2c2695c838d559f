// One dataset: what it holds and its data-quality report (duplicates, validation-split leaks,
// class balance, lengths, likely label errors), polled until a worker has computed it.
import { api } from "../api.js";
import { badge, errorBox, fmtNum, fmtTime, h } from "../dom.js";

const POLL_MS = 2000;
const SHOWN_ROWS = 50;

const where = (r) => (r.line !== undefined ? `line ${r.line}` : r.member);

function duplicatesCard(dup) {
  const groups = (kind, title) => {
    const d = dup[kind];
    return h("div", { class: `duplicates ${kind}`, dataset: { groups: String(d.groups) } },
      h("h4", null, `${title}: ${fmtNum(d.groups)} group(s), ${fmtNum(d.rows)} rows`,
        d.conflicting_labels ? `, ${d.conflicting_labels} with different labels` : ""),
      d.examples.length ? h("ul", null, d.examples.map((g) => h("li", null,
        g.map((r) => `${where(r)} (${r.label})`).join(" · ")))) : h("p", { class: "muted" }, "None."));
  };
  const leaks = dup.validation_split_leaks;
  return h("div", { class: "card", id: "quality-duplicates" }, h("h2", null, "Duplicates"),
    groups("exact", "Identical"), groups("near", "Near-identical"),
    leaks ? h("p", { id: "split-leaks" }, `With validation_split ${leaks.validation_split} (seed ${leaks.seed}), `,
      `${leaks.groups} group(s) have copies in training and validation (${leaks.validation_rows} validation rows).`)
      : h("p", { class: "muted" }, "Validation-split leaks are counted only when every row was examined."));
}

function labelIssuesCard(issues) {
  if (issues.count === null) return h("div", { class: "card", id: "quality-labels" },
    h("h2", null, "Likely label errors"), h("p", { class: "muted" }, `Not checked: ${issues.skipped}.`));
  return h("div", { class: "card", id: "quality-labels" },
    h("h2", null, `Likely label errors: ${fmtNum(issues.count)} (${(issues.share * 100).toFixed(1)} %)`),
    h("p", { class: "muted" }, issues.method),
    h("table", null, h("thead", null, h("tr", null, ["Row", "Label", "Suggested", "Quality"].map((t) => h("th", null, t)))),
      h("tbody", null, issues.rows.slice(0, SHOWN_ROWS).map((r) => h("tr", null,
        h("td", null, where(r)), h("td", null, r.label), h("td", null, r.suggested),
        h("td", { class: "num" }, fmtNum(r.quality, 3)))))));
}

function balanceCard(balance, lengths) {
  const total = Object.values(balance.counts).reduce((a, b) => a + b, 0);
  return h("div", { class: "card", id: "quality-balance" }, h("h2", null, "Classes and lengths"),
    h("p", null, `Majority ${balance.majority}, minority ${balance.minority}: ratio ${fmtNum(balance.imbalance_ratio, 2)}, `,
      `normalised entropy ${fmtNum(balance.normalized_entropy, 3)}.`),
    h("ul", null, Object.entries(balance.counts).map(([k, v]) => h("li", null, `${k}: ${fmtNum(v)} (${(100 * v / total).toFixed(1)} %)`))),
    h("table", null, h("thead", null, h("tr", null, ["", "min", "p50", "p90", "p99", "max"].map((t) => h("th", null, t)))),
      h("tbody", null, Object.entries(lengths).map(([name, d]) => h("tr", null, h("td", null, name),
        ["min", "p50", "p90", "p99", "max"].map((k) => h("td", { class: "num" }, fmtNum(d[k], 1))))))));
}

function reportView(report) {
  const summary = report.summary || {};
  const head = h("div", { class: "card", id: "quality" }, h("h2", null, "Data quality ", badge(report.status)),
    report.error ? errorBox(report.error) : null,
    (summary.warnings || []).length ? h("ul", { class: "warnings" }, summary.warnings.map((w) => h("li", null, w)))
      : report.status === "succeeded" ? h("p", null, "Nothing to report.") : null,
    report.details ? h("p", { class: "muted" }, `Examined ${fmtNum(report.details.examined.rows)} of `,
      `${fmtNum(report.details.examined.of)} rows; features of ${report.details.base_model}.`) : null);
  if (!report.details) return [head];
  const d = report.details;
  return [head, duplicatesCard(d.duplicates), labelIssuesCard(d.label_issues), balanceCard(d.class_balance, d.lengths)];
}

export async function render(view, id, ctx) {
  const ds = await api(`v1/datasets/${encodeURIComponent(id)}`);
  let report = null;
  if (ds.quality) report = await api(`v1/datasets/${encodeURIComponent(id)}/quality`);
  const check = h("button", { type: "button", class: "secondary", onclick: async () => {
    await api(`v1/datasets/${encodeURIComponent(id)}/quality`, { method: "POST", json: {} });
    ctx.refresh();
  } }, report ? "Check again" : "Check quality");
  view.append(h("h1", null, ds.name),
    h("div", { class: "card" }, h("dl", { class: "facts" },
      h("dt", null, "Id"), h("dd", { class: "mono" }, ds.id), h("dt", null, "Task"), h("dd", null, ds.task),
      h("dt", null, "Examples"), h("dd", null, fmtNum(ds.num_examples)), h("dt", null, "Labels"),
      h("dd", null, ds.labels.join(", ")), h("dt", null, "Uploaded"), h("dd", null, fmtTime(ds.created_at))),
      h("p", null, h("a", { href: `#/jobs?dataset=${ds.id}` }, "Train a model on it →"), " ", check)),
    ...(report ? reportView(report) : [h("div", { class: "card", id: "quality" }, h("h2", null, "Data quality"),
      h("p", { class: "muted" }, "No report yet."))]));
  if (report && !["succeeded", "failed"].includes(report.status)) {
    const timer = setTimeout(() => { if (ctx.alive()) ctx.refresh(); }, POLL_MS);
    ctx.onLeave(() => clearTimeout(timer));
  }
}
