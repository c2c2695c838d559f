// Tiny DOM helpers. Text from the API always goes in as text nodes, never as HTML.
const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** h("a", {href: "#/x", class: "y"}, "text", child, [more]) → an HTML element. */
export const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);

/** The same for SVG elements. */
export const s = (tag, attrs, ...children) => build(document.createElementNS(SVG_NS, tag), attrs, children);

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function fmtNum(v, digits = 4) {
  if (v === null || v === undefined || v === "") return "—";
  if (typeof v !== "number") return String(v);
  return Number.isInteger(v) ? v.toLocaleString() : v.toFixed(digits);
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const t = Math.max(0, Math.round(seconds));
  const m = Math.floor(t / 60);
  return m ? `${m} min ${t % 60} s` : `${t} s`;
}

export function badge(status) {
  return h("span", { class: `badge ${status}`, dataset: { status } }, status);
}

/** A progress bar; `fraction` in [0, 1]. */
export function bar(fraction, big = false) {
  const fill = h("span");
  fill.style.width = `${Math.round(Math.min(1, Math.max(0, fraction || 0)) * 100)}%`;
  return h("div", { class: big ? "bar big" : "bar", role: "progressbar",
                    "aria-valuemin": 0, "aria-valuemax": 100,
                    "aria-valuenow": Math.round((fraction || 0) * 100) }, fill);
}

/** An API error (code + message + details) as a box; any other error by its message. */
export function errorBox(err, onClose) {
  const details = (err.details || []).map((d) => {
    const where = d.line !== undefined ? `line ${d.line}` : d.member || d.field || d.param || "";
    return h("li", null, where ? `${where}: ` : "", d.message || JSON.stringify(d));
  });
  return h("div", { class: "error", dataset: { code: err.code || "error" } },
    onClose && h("button", { class: "close", type: "button", title: "Dismiss", onclick: onClose }, "×"),
    h("span", { class: "code" }, err.status ? `${err.status} ${err.code}` : err.code || err.name || "Error"),
    h("span", { class: "message" }, err.message || String(err)),
    details.length ? h("ul", null, details) : null);
}

export const jobProgress = (job) => {
  const p = job.progress || {};
  if (job.status === "succeeded") return 1;
  return p.total_steps ? p.step / p.total_steps : 0;
};
