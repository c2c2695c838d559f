// The dashboard's shell: hash routing, the API key prompt, and error display (never a blank page).
import { ApiError, apiKey } from "./api.js";
import { errorBox, h } from "./dom.js";
import * as compare from "./pages/compare.js";
import * as dataset from "./pages/dataset.js";
import * as datasets from "./pages/datasets.js";
import * as jobs from "./pages/jobs.js";
import * as job from "./pages/job.js";
import * as models from "./pages/models.js";
import * as model from "./pages/model.js";

const ROUTES = [
  [/^#\/datasets$/, datasets, "datasets"],
  [/^#\/datasets\/([\w-]+)$/, dataset, "datasets"],
  [/^#\/jobs$/, jobs, "jobs"],
  [/^#\/jobs\/([\w-]+)$/, job, "jobs"],
  [/^#\/compare$/, compare, "jobs"],
  [/^#\/models$/, models, "models"],
  [/^#\/models\/([\w-]+)$/, model, "models"],
];

const main = document.getElementById("main");
const errors = document.getElementById("errors");
let cleanups = [];
let generation = 0;

/** Show an error above the page; a 401 asks for the API key instead. */
export function showError(err) {
  if (err && err.name === "AbortError") return;
  console.error(err);
  if (err instanceof ApiError && err.status === 401) return askForKey(err);
  const box = errorBox(err, () => box.remove());
  errors.append(box);
  while (errors.children.length > 3) errors.firstChild.remove();
}

function askForKey(err) {
  cleanup();
  errors.replaceChildren();
  const input = h("input", { type: "password", name: "api_key", placeholder: "adapt_…", size: 48,
                             autocomplete: "off", required: true });
  const form = h("form", { class: "inline", id: "key-form" },
    h("label", null, "API key", input),
    h("button", { type: "submit" }, "Save key"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    apiKey.set(input.value);
    route();
  });
  main.replaceChildren(h("div", { class: "card" },
    h("h1", null, "This API needs a key"),
    apiKey.get() ? errorBox(err) : null,
    h("p", { class: "muted" }, "The key is kept in this browser (localStorage) and sent as ",
      h("span", { class: "mono" }, "Authorization: Bearer …"), ". Create one with ",
      h("span", { class: "mono" }, "adapt-admin keys create --tenant <name> --name dashboard"), "."),
    form));
  input.focus();
  renderKeyStatus();
}

function renderKeyStatus() {
  const el = document.getElementById("key-status");
  el.replaceChildren();
  if (apiKey.get()) {
    el.append("key set ", h("button", { type: "button", title: "Forget the stored API key",
      onclick: () => { apiKey.clear(); route(); } }, "forget"));
  }
}

function cleanup() {
  generation += 1;
  for (const fn of cleanups) {
    try { fn(); } catch (e) { console.error(e); }
  }
  cleanups = [];
}

async function route() {
  cleanup();
  const mine = generation;
  const hash = location.hash.split("?")[0] || "#/";
  if (hash === "#/" || hash === "#") { location.replace("#/jobs"); return; }
  const found = ROUTES.map(([re, page, nav]) => [hash.match(re), page, nav]).find(([m]) => m);
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", Boolean(found) && a.dataset.nav === found[2]);
  }
  renderKeyStatus();
  errors.replaceChildren();
  if (!found) {
    main.replaceChildren(h("div", { class: "error" }, `No page at ${hash}. `, h("a", { href: "#/jobs" }, "Go to jobs")));
    return;
  }
  const [match, page] = found;
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const ctx = {
    params,
    onLeave: (fn) => cleanups.push(fn),
    alive: () => generation === mine,
    showError,
    refresh: route,
  };
  const view = h("div", { class: "page" });
  const slow = setTimeout(() => {
    if (ctx.alive()) main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  }, 250);
  try {
    await page.render(view, match[1], ctx);
    if (ctx.alive()) main.replaceChildren(view);
  } catch (err) {
    if (!ctx.alive()) return;
    if (err instanceof ApiError && err.status === 401) { askForKey(err); return; }
    main.replaceChildren(h("div", { class: "card" }, h("h1", null, "Could not load this page"),
      errorBox(err), h("button", { type: "button", onclick: route }, "Retry")));
  } finally {
    clearTimeout(slow);
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("error", (e) => showError(e.error || new Error(e.message)));
window.addEventListener("unhandledrejection", (e) => showError(e.reason));
route();
