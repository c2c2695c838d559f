// Jobs: the list (status, progress) and the "new job" form.
import { api, newRequestKey } from "../api.js";
import { badge, bar, errorBox, fmtDuration, fmtNum, fmtTime, h, jobProgress } from "../dom.js";

export const ACTIVE = ["queued", "running", "cancelling"];
export const [MIN_JOBS, MAX_JOBS] = [2, 5]; // how many jobs the compare view takes
const METHODS = [["full", "full: all weights"], ["head", "head: frozen encoder, new head"],
                 ["partial", "partial: last blocks + head"], ["lora", "lora: low-rank adapters (text)"]];

function newJobForm(datasets, baseModels, ctx) {
  const chosen = ctx.params.get("dataset");
  const ready = datasets.filter((d) => d.status === "ready");
  const status = h("div", { class: "form-status" });
  const dsSelect = h("select", { name: "training_dataset", required: true },
    ready.map((d) => h("option", { value: d.id, selected: d.id === chosen, dataset: { task: d.task } },
      `${d.name} (${d.id}, ${d.num_examples} ex.)`)));
  const bmSelect = h("select", { name: "base_model", required: true });
  const fillBaseModels = () => {
    const task = dsSelect.selectedOptions[0]?.dataset.task;
    const fits = baseModels.filter((b) => !task || b.task === task);
    bmSelect.replaceChildren(...fits.map((b) => h("option", { value: b.id }, `${b.id} (${b.source})`)));
  };
  dsSelect.addEventListener("change", fillBaseModels);
  fillBaseModels();
  const form = h("form", { id: "new-job-form", class: "inline" },
    h("label", null, "Dataset", dsSelect),
    h("label", null, "Base model", bmSelect),
    h("label", null, "Method", h("select", { name: "method" },
      METHODS.map(([v, t]) => h("option", { value: v }, t)))),
    h("label", null, "Epochs", h("input", { name: "epochs", type: "number", min: 1, max: 1000, value: 3, required: true })),
    h("label", null, "Batch size", h("select", { name: "batch_size" },
      h("option", { value: "" }, "the method's default"),
      h("option", { value: "auto" }, "auto: the largest that fits"))),
    h("label", { class: "check", title: "validate, then measure memory and time on a worker; no model is trained" },
      h("input", { type: "checkbox", name: "dry_run" }), "Dry run (pre-flight only)"),
    h("button", { type: "submit", disabled: !ready.length }, "Start job"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const hyperparameters = { epochs: Number(data.get("epochs")) };
      if (data.get("batch_size")) hyperparameters.batch_size = data.get("batch_size");
      const job = await api("v1/jobs", {
        method: "POST", idempotencyKey: newRequestKey(),
        json: { training_dataset: data.get("training_dataset"), base_model: data.get("base_model"),
                method: data.get("method"), hyperparameters, dry_run: data.get("dry_run") === "on" },
      });
      location.hash = `#/jobs/${job.id}`;
    } catch (err) {
      if (err.status === 401) throw err;
      status.replaceChildren(errorBox(err));
      button.disabled = false;
    }
  });
  return h("div", { class: "card" }, h("h2", null, "New job"),
    ready.length ? form : h("p", { class: "muted" }, "No ready dataset: ", h("a", { href: "#/datasets" }, "upload one"), " first."),
    status);
}

function progressCell(job) {
  const p = job.progress || {};
  const text = job.status === "running" && p.total_steps
    ? `epoch ${p.epoch}/${p.epochs} · step ${p.step}/${p.total_steps} · ETA ${fmtDuration(p.eta_seconds)}`
    : job.status === "succeeded" ? "done" : "";
  return h("td", null, bar(jobProgress(job)), h("div", { class: "muted" }, text));
}

function row(job, picked) {
  const m = job.metrics || {};
  return h("tr", { dataset: { id: job.id, status: job.status } },
    h("td", { class: "pick" }, h("input", { type: "checkbox", name: "compare", value: job.id,
      checked: picked.has(job.id), "aria-label": `compare ${job.id}`,
      onchange: (e) => picked.toggle(job.id, e.target.checked) })),
    h("td", null, h("a", { href: `#/jobs/${job.id}` }, job.id)),
    h("td", null, badge(job.status)),
    progressCell(job),
    h("td", null, job.base_model, h("div", { class: "muted" }, job.method)),
    h("td", { class: "num" }, fmtNum(m.val_accuracy, 3)),
    h("td", null, job.model ? h("a", { href: `#/models/${job.model}` }, job.model) : "—"),
    h("td", null, fmtTime(job.created_at)));
}

/** The jobs ticked for comparison, and the "Compare" button that opens #/compare with them. */
function picker() {
  const ids = [];
  const button = h("button", { type: "button", id: "compare-jobs", class: "secondary", disabled: true,
    onclick: () => { location.hash = `#/compare?jobs=${ids.join(",")}`; } }, "Compare");
  const note = h("span", { class: "muted" });
  const sync = () => {
    button.disabled = ids.length < MIN_JOBS || ids.length > MAX_JOBS;
    note.textContent = ids.length ? `${ids.length} chosen (${MIN_JOBS}–${MAX_JOBS})` : `tick ${MIN_JOBS}–${MAX_JOBS} jobs to compare them`;
  };
  sync();
  return {
    has: (id) => ids.includes(id),
    toggle: (id, on) => {
      const at = ids.indexOf(id);
      if (on && at < 0) ids.push(id);
      if (!on && at >= 0) ids.splice(at, 1);
      sync();
    },
    controls: h("div", { class: "actions" }, button, note),
  };
}

export async function render(view, _id, ctx) {
  const [jobs, datasets, baseModels] = await Promise.all([
    api("v1/jobs?limit=50"), api("v1/datasets?limit=100"), api("v1/base-models")]);
  const picked = picker();
  const body = h("tbody", null, jobs.data.map((j) => row(j, picked)));
  if (!jobs.data.length) body.append(h("tr", null, h("td", { colspan: 8, class: "muted" }, "No jobs yet.")));
  view.append(h("h1", null, "Jobs"), newJobForm(datasets.data, baseModels.data, ctx),
    h("div", { class: "card" }, h("h2", null, "Recent jobs"),
      h("table", { id: "jobs" }, h("thead", null, h("tr", null,
        ["", "Job", "Status", "Progress", "Base model", "Val. accuracy", "Model", "Created"].map((t) => h("th", null, t)))),
      body),
      picked.controls,
      jobs.has_more ? h("p", { class: "muted" }, "Showing the 50 newest jobs.") : null));
  // While something is queued or running, keep the list current.
  const timer = setInterval(async () => {
    if (!jobs.data.some((j) => ACTIVE.includes(j.status))) return;
    try {
      const fresh = await api("v1/jobs?limit=50");
      if (!ctx.alive()) return;
      jobs.data = fresh.data;
      body.replaceChildren(...fresh.data.map((j) => row(j, picked)));
    } catch (err) { ctx.showError(err); }
  }, 2000);
  ctx.onLeave(() => clearInterval(timer));
}
