// One job: status, progress, pre-flight, live loss and validation curves, events, confusion
// matrix, cancel.
import { api, streamEvents } from "../api.js";
import { lineChart } from "../charts.js";
import { badge, bar, errorBox, fmtDuration, fmtNum, fmtTime, h, jobProgress } from "../dom.js";
import { downloadButton } from "../download.js";
import { evaluationCard } from "./evaluation.js";
import { ACTIVE } from "./jobs.js";

const POLL_MS = 1000;

export function series(metrics, names, x) {
  return names.map((name) => ({
    name, points: metrics.filter((m) => m.name === name).map((m) => [m[x], m.value]),
  })).filter((sr) => sr.points.length);
}

/** The latest evaluation: the validation metrics logged at the last step that has any. */
export function latestEvaluation(metrics) {
  const val = metrics.filter((m) => m.name.startsWith("val_"));
  if (!val.length) return null;
  const step = Math.max(...val.map((m) => m.step));
  const at = val.filter((m) => m.step === step);
  return { step, epoch: at[0].epoch, values: Object.fromEntries(at.map((m) => [m.name, m.value])) };
}

export const bestCheckpoint = (checkpoints) => (checkpoints || []).find((c) => c.is_best) || null;

const metricText = (values) => Object.entries(values || {}).sort(([a], [b]) => a.localeCompare(b))
  .map(([k, v]) => `${k} ${fmtNum(v, 4)}`).join(" · ");

/** "queued: position n, k workers" from the job's `queue` member, when the API gives one. */
function queueText(job) {
  const q = job.queue;
  if (job.status !== "queued" || !q || typeof q !== "object" || !Number.isFinite(q.position)) return null;
  const workers = Number.isFinite(q.workers) ? `, ${q.workers} worker${q.workers === 1 ? "" : "s"}` : "";
  return `queued: position ${q.position}${workers}`;
}

function header(job, onCancel) {
  return h("h1", null, "Job ", h("span", { class: "mono" }, job.id), badge(job.status),
    job.dry_run ? h("span", { class: "badge dry-run", id: "dry-run", title: "a pre-flight only: no model is made" },
      "dry run") : null,
    ACTIVE.includes(job.status) && job.status !== "cancelling"
      ? h("button", { type: "button", class: "danger", id: "cancel-job", onclick: onCancel }, "Cancel") : null,
    job.model ? h("a", { href: `#/models/${job.model}`, id: "model-link" }, `model ${job.model} →`) : null);
}

function progressCard(job, metrics, best, ctx) {
  const p = job.progress || {};
  const parts = [];
  if (p.total_steps) parts.push(`epoch ${p.epoch}/${p.epochs}`, `step ${p.step}/${p.total_steps}`);
  if (job.status === "running") parts.push(`ETA ${fmtDuration(p.eta_seconds)}`);
  if (p.samples_per_second) parts.push(`${fmtNum(p.samples_per_second, 1)} samples/s`);
  const latest = latestEvaluation(metrics);
  const queued = queueText(job);
  return h("div", { class: "card", id: "progress" },
    h("h2", null, "Progress"), bar(jobProgress(job), true),
    h("p", { class: "progress-text" }, parts.join(" · ") || (job.status === "queued" ? "waiting for a worker" : "—")),
    queued ? h("p", { class: "queue-note", id: "queue" }, queued) : null,
    job.error ? errorBox({ code: job.error.code, message: job.error.message }) : null,
    h("dl", { class: "facts" },
      h("dt", null, "Base model"), h("dd", null, job.base_model),
      h("dt", null, "Dataset"), h("dd", { class: "mono" }, job.training_dataset),
      h("dt", null, "Method"), h("dd", null, job.method),
      h("dt", null, "Hyperparameters"), h("dd", { class: "mono" },
        Object.entries(job.hyperparameters).map(([k, v]) => `${k}=${v}`).join("  ")),
      h("dt", null, "Latest evaluation"), h("dd", { id: "latest-metrics" }, latest
        ? `epoch ${fmtNum(latest.epoch, 2)}: ${metricText(latest.values)}` : "—"),
      h("dt", null, "Best (chosen checkpoint)"), h("dd", { id: "best-metrics", class: "actions" }, best
        ? [`epoch ${best.epoch} (by ${job.select_checkpoint_by}): ${metricText(
            Object.fromEntries(Object.entries(best.metrics).filter(([k]) => k.startsWith("val_"))))}`,
           downloadButton(best.id, { id: "download-best", onError: ctx.showError })]
        : "—"),
      h("dt", null, "Attempts"), h("dd", null, job.attempts),
      h("dt", null, "Created / finished"), h("dd", null, `${fmtTime(job.created_at)} / ${fmtTime(job.finished_at)}`)));
}

const bytes = (n) => (typeof n !== "number" ? "—"
  : n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`);
const secs = (v) => (typeof v !== "number" ? "—" : v < 10 ? `${v.toFixed(1)} s` : fmtDuration(v));

/** What the pre-flight measured on the worker's device: memory, the largest batch that fits, time. */
function preflightCard(job) {
  const pf = job.preflight;
  const largest = pf.max_batch_size ?? `none: batch size ${pf.batch_size} is over the budget`;
  return h("div", { class: "card", id: "preflight" }, h("h2", null, "Pre-flight"),
    job.dry_run ? h("p", { class: "muted" }, "A dry run: the pre-flight only, no model is trained.") : null,
    h("dl", { class: "facts" },
      h("dt", null, "Device"), h("dd", { id: "preflight-device" }, pf.device),
      h("dt", null, "Peak memory"), h("dd", { id: "preflight-memory" },
        `${bytes(pf.peak_memory_bytes)} at batch size ${pf.batch_size} (budget ${bytes(pf.memory_budget_bytes)})`),
      h("dt", null, "Largest batch that fits"), h("dd", { id: "preflight-batch" }, largest),
      h("dt", null, "Estimated time"), h("dd", { id: "preflight-time" },
        `${secs(pf.seconds_per_epoch)} per epoch · ${secs(pf.seconds_total)} in total ` +
        `(${pf.epochs} epoch${pf.epochs === 1 ? "" : "s"}, setup ${secs(pf.setup_seconds)})`)));
}

function chartsCard(metrics, best, selectBy) {
  const valueAt = (name, step) => metrics.find((m) => m.name === name && m.step === step)?.value;
  const label = best ? `chosen: epoch ${best.epoch}` : "";
  const lossMarker = best && Number.isFinite(valueAt("val_loss", best.step))
    ? [{ x: best.step, y: valueAt("val_loss", best.step), label }] : [];
  const valName = ["val_accuracy", "val_macro_f1"].includes(selectBy) ? selectBy : "val_accuracy";
  const valMarker = best && Number.isFinite(valueAt(valName, best.step))
    ? [{ x: best.epoch, y: valueAt(valName, best.step), label }] : [];
  return h("div", { class: "grid", id: "charts" },
    h("div", { class: "card", id: "loss-chart" }, h("h2", null, "Loss"),
      lineChart(series(metrics, ["train_loss", "val_loss"], "step"),
                { xLabel: "step", title: "loss", markers: lossMarker })),
    h("div", { class: "card", id: "val-chart" }, h("h2", null, "Validation metrics"),
      lineChart(series(metrics, ["val_accuracy", "val_macro_f1"], "epoch"),
                { xLabel: "epoch", title: "validation metrics", markers: valMarker, integerX: true })));
}

function eventItem(e) {
  const when = new Date(e.created_at).toLocaleTimeString();
  return h("li", { class: e.level, dataset: { id: e.id, type: e.type } }, h("span", { class: "when" }, when), e.message);
}

export async function render(view, jobId, ctx) {
  const id = encodeURIComponent(jobId);
  let [job, metrics, checkpoints] = await Promise.all([api(`v1/jobs/${id}`), api(`v1/jobs/${id}/metrics`),
                                                       api(`v1/jobs/${id}/checkpoints`)]);
  let lastStep = -1;
  let evaluationShown = false;
  const slots = { header: h("div"), progress: h("div"), preflight: h("div"), charts: h("div"), evaluation: h("div") };
  const events = h("ol", { class: "events", id: "events" });
  const abort = new AbortController();

  const cancel = async () => {
    try { job = await api(`v1/jobs/${id}/cancel`, { method: "POST" }); draw(); } catch (err) { ctx.showError(err); }
  };
  async function draw() {
    slots.header.replaceChildren(header(job, cancel));
    const best = bestCheckpoint(checkpoints.data);
    slots.progress.replaceChildren(progressCard(job, metrics.data, best, ctx));
    slots.preflight.replaceChildren(job.preflight ? preflightCard(job) : "");
    const step = (job.progress || {}).step ?? 0;
    if (step !== lastStep || !ACTIVE.includes(job.status)) {
      lastStep = step;
      slots.charts.replaceChildren(chartsCard(metrics.data, best, job.select_checkpoint_by));
    }
    if (job.model && !evaluationShown) {
      evaluationShown = true;
      slots.evaluation.replaceChildren(await evaluationCard(job.model));
    }
  }
  async function refresh(withMetrics) {
    const fresh = await api(`v1/jobs/${id}`, { signal: abort.signal });
    const step = (fresh.progress || {}).step ?? 0;
    if (withMetrics || step !== lastStep || fresh.status !== job.status) {
      [metrics, checkpoints] = await Promise.all([api(`v1/jobs/${id}/metrics`, { signal: abort.signal }),
                                                  api(`v1/jobs/${id}/checkpoints`, { signal: abort.signal })]);
    }
    job = fresh;
    if (ctx.alive()) await draw();
  }

  await draw();
  view.append(slots.header, slots.progress, slots.preflight, slots.charts, slots.evaluation,
    h("div", { class: "card" }, h("h2", null, "Events ", h("span", { class: "muted", id: "stream-state" })), events));

  // Live: the SSE stream (fetch streaming) says when something changed — `progress` events as the
  // worker writes the row, logged events (epoch metrics, status) — and the page then re-reads the
  // job and, when the step moved, its metrics. While the stream is down, poll every second.
  let busy = false;
  let pending = null; // an update asked for while one ran: run once more after it
  let live = false;
  const update = async (withMetrics = false) => {
    if (busy) { pending = pending || withMetrics; return; }
    busy = true;
    try { await refresh(withMetrics); } catch (err) { ctx.showError(err); } finally { busy = false; }
    if (pending !== null && ctx.alive()) {
      const again = pending;
      pending = null;
      await update(again);
    }
  };
  const timer = setInterval(() => { if (!live && ACTIVE.includes(job.status)) update(); }, POLL_MS);
  ctx.onLeave(() => { clearInterval(timer); abort.abort(); });
  follow(jobId, {
    signal: abort.signal,
    onLive: (on) => {
      live = on;
      const el = document.getElementById("stream-state");
      if (el) el.textContent = on ? "(live)" : "";
    },
    onEvent: (e) => {
      if (e.id !== null) {
        // The log opens at its first event; it follows new ones only while the reader is at
        // the bottom of a list long enough to scroll.
        const following = events.scrollHeight > events.clientHeight
          && events.scrollTop + events.clientHeight >= events.scrollHeight - 8;
        events.append(eventItem(e.data));
        if (following) events.scrollTop = events.scrollHeight;
      }
      if (e.type !== "message") update(e.type !== "progress");
    },
    onEnd: () => update(true),
    onError: ctx.showError,
  });
}

/** Follow the event stream until the job has finished, reconnecting (resumably) when it drops. */
async function follow(jobId, { signal, onLive, onEvent, onEnd, onError }) {
  let after = 0;
  for (let attempt = 0; !signal.aborted && attempt < 30; attempt++) {
    try {
      onLive(true);
      after = await streamEvents(jobId, { after, signal, onEvent });
      onLive(false);
      onEnd(); // the server ends the stream once the job has finished
      return;
    } catch (err) {
      onLive(false);
      if (signal.aborted) return;
      if (err.status) { onError(err); return; }
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}
