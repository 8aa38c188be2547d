// The scalescope dashboard: TensorBoard loads this ES module in an iframe and calls render().
//
// Data: GET runs (the report over every run folder under --logdir) and timeline?run=NAME per shown run.
// Refresh: TensorBoard's DataReloaded / RunsChanged broadcasts, and the Refresh button.
// Run filter: TensorBoard does not tell iframe plugins which runs its selector has on (its plugin API
// has GetRuns = every run name, not the selection), so the dashboard has its own: a regex box, kept in
// TensorBoard's URL as `#scalescope&p.scalescope.filter=REGEX` (url.js), and a checkbox per run; both
// are remembered in this browser.
// Theme: TensorBoard's dark mode is a class on its own <body> and nothing is passed to the iframe; the
// page is same-origin, so the dashboard reads that class when it can, else prefers-color-scheme.

import {breakdownChart, categoryLegend, deviceChart, speedupChart, timelineChart} from "./charts.js";
import {h, withCode} from "./dom.js";
import {connectHost, DATA_RELOADED, GET_URL_DATA, RUNS_CHANGED} from "./ipc.js";
import {readFilter, writeFilter} from "./url.js";
import {findingsList, itemShown, notesView, recommendationsList, runsTable, tableView, whatifView} from "./views.js";

const STORE = "scalescope.dashboard";
const state = {
  data: null,          // the runs payload
  text: "",            // its JSON text, to skip redrawing when a reload changed nothing
  error: "",
  filter: "",
  hidden: new Set(),   // TensorBoard run names unchecked in the runs table
  timelines: new Map(),  // tb_run -> {key, data} | {key, pending}
  loading: false,
};
const ui = {};

function save() {
  try {
    localStorage.setItem(STORE, JSON.stringify({filter: state.filter, hidden: [...state.hidden]}));
  } catch (_) { /* storage off: the filter lasts for this page only */ }
}

function restore() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE) || "{}");
    state.filter = typeof saved.filter === "string" ? saved.filter : "";
    state.hidden = new Set(Array.isArray(saved.hidden) ? saved.hidden : []);
  } catch (_) { /* nothing saved */ }
}

// --- theme ---------------------------------------------------------------------------------------

function hostDarkMode() {
  try {
    if (window.parent === window) return null;
    const body = window.parent.document.body;
    return body ? body.classList.contains("dark-mode") : null;
  } catch (_) {
    return null;              // not same-origin: prefers-color-scheme decides
  }
}

function followTheme() {
  // one source of truth for the stylesheet: data-theme, from the host's class, else the media query
  const media = window.matchMedia("(prefers-color-scheme: dark)");
  const apply = () => {
    const host = hostDarkMode();
    const dark = host === null ? media.matches : host;
    document.documentElement.dataset.theme = dark ? "dark" : "light";
  };
  apply();
  media.addEventListener("change", apply);
  try {
    if (window.parent !== window) {
      new MutationObserver(apply).observe(window.parent.document.body, {attributes: true, attributeFilter: ["class"]});
    }
  } catch (_) { /* cannot watch the host: the media query still applies */ }
}

// --- filter --------------------------------------------------------------------------------------

function filterRegex() {
  try {
    ui.filter.classList.remove("ss-invalid");
    return new RegExp(state.filter, "i");
  } catch (_) {
    ui.filter.classList.add("ss-invalid");
    return /.*/;
  }
}

function matchedRuns() {
  const re = filterRegex();
  return state.data.runs.filter((r) => re.test(r.tb_run) || re.test(r.name));
}

// --- data ----------------------------------------------------------------------------------------

async function getJson(url) {
  const resp = await fetch(url, {headers: {Accept: "application/json"}});
  const text = await resp.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch (_) {
    throw new Error(`${url}: HTTP ${resp.status}: not JSON`);
  }
  if (!resp.ok) throw new Error(body && body.error ? body.error : `${url}: HTTP ${resp.status}`);
  return {body, text};
}

async function refresh() {
  if (state.loading) return;
  state.loading = true;
  ui.refresh.disabled = true;
  try {
    const {body, text} = await getJson("runs");
    const same = text.replace(/"analysed":\[[^\]]*\]/, "") === state.text.replace(/"analysed":\[[^\]]*\]/, "");
    state.data = body;
    state.error = "";
    state.text = text;
    if (!same) draw();
    status(body);
  } catch (e) {
    state.error = String(e.message || e);
    draw();
  } finally {
    state.loading = false;
    ui.refresh.disabled = false;
  }
}

function status(data) {
  const now = new Date().toLocaleTimeString();
  const fresh = data.analysed && data.analysed.length ? ` · analysed now: ${data.analysed.join(", ")}` : "";
  ui.status.textContent = `${data.runs.length} run(s) under ${data.logdir || "?"} · updated ${now}${fresh}`;
}

function timelineKey(run) {
  return JSON.stringify((run.trace_files || []).map((t) => [t.path, t.steps, t.mean_step_ms]));
}

function drawTimelines(box, runs) {
  box.replaceChildren();
  const width = box.clientWidth || 900;
  for (const r of runs) {
    if (!(r.trace_files || []).some((t) => t.steps > 0)) continue;
    const key = timelineKey(r);
    const got = state.timelines.get(r.tb_run);
    const card = h("div", {class: "ss-timeline", "data-run": r.tb_run});
    box.append(card);
    if (got && got.key === key && got.data) {
      const tl = got.data;
      card.append(h("h3", {}, `${r.tb_run} (${tl.worker}): step ${tl.step}, ${tl.step_ms.toFixed(1)} ms (median wall)`),
        timelineChart(tl, state.data, width, colourOf));
      if (tl.message) card.append(h("p", {class: "ss-foot"}, tl.message));
    } else if (got && got.key === key && got.error) {
      card.append(h("h3", {}, r.tb_run), h("p", {class: "ss-bad"}, got.error));
    } else {
      card.append(h("h3", {}, r.tb_run), h("p", {class: "ss-empty"}, "loading…"));
      if (!got || got.key !== key) {
        state.timelines.set(r.tb_run, {key, pending: true});
        getJson(`timeline?run=${encodeURIComponent(r.tb_run)}`)
          .then(({body}) => state.timelines.set(r.tb_run, {key, data: body}))
          .catch((e) => state.timelines.set(r.tb_run, {key, error: String(e.message || e)}))
          .finally(() => box.isConnected && drawTimelines(box, runs));
      }
    }
  }
  if (!box.children.length) box.append(h("p", {class: "ss-empty"}, "No profiled step in the shown runs."));
}

const phaseColours = new Map();
function colourOf(what) {
  const data = state.data;
  if (data.colours[what]) return data.colours[what];
  if (!phaseColours.has(what)) {
    phaseColours.set(what, data.phase_colours[phaseColours.size % data.phase_colours.length] || "#999");
  }
  return phaseColours.get(what);
}

// --- drawing -------------------------------------------------------------------------------------

function section(id, title, ...body) {
  return h("section", {id, class: "ss-card"}, h("h2", {}, title), ...body);
}

function draw() {
  const root = ui.content;
  root.replaceChildren();
  if (state.error) root.append(h("p", {class: "ss-bad ss-banner", id: "ss-error"}, state.error));
  const data = state.data;
  if (!data) return;
  if (data.message) {
    root.append(h("div", {class: "ss-card ss-howto", id: "ss-message"}, h("p", {}, withCode(data.message))));
    return;
  }
  const matched = matchedRuns();
  const shown = matched.filter((r) => !state.hidden.has(r.tb_run));
  const shownNames = new Set(shown.map((r) => r.name));
  const allNames = new Set(data.runs.map((r) => r.name));
  const width = Math.max(560, root.clientWidth - 34);
  const left = data.runs.length - matched.length;

  const onToggle = (names, on) => {
    for (const n of names) (on ? state.hidden.delete(n) : state.hidden.add(n));
    save();
    draw();
  };
  const ofRuns = new Set(data.runs.flatMap((r) => r.errors));
  const general = data.errors.filter((e) => !ofRuns.has(e));     // a run's own errors show in its table row
  if (general.length) {
    root.append(h("div", {class: "ss-banner ss-bad", id: "ss-errors"},
      h("ul", {}, general.map((e) => h("li", {}, e)))));
  }
  root.append(section("ss-runs", "Runs",
    left ? h("p", {class: "ss-foot"}, `${left} run(s) hidden by the filter /${state.filter}/`) : null,
    runsTable(data, matched, state.hidden, onToggle)));
  root.append(section("ss-breakdown", "Where each step's time goes", categoryLegend(data, shown),
    breakdownChart(shown, data, width),
    h("p", {class: "ss-foot"}, "Every instant of the step's wall time in exactly one category, by priority where " +
      "activities overlap (compute > communication > host→device > data loading > host overhead > idle); the " +
      "parts sum to the step. DDP: mean over ranks.")));
  root.append(section("ss-speedup", "Speedup vs ideal", speedupChart(shown, width)));
  root.append(section("ss-devices", "Per device", deviceChart(shown, data, width),
    h("p", {class: "ss-foot"}, "Each GPU on its own, never merged (DataParallel's GPU 0 does the gather, loss and " +
      "optimizer alone). busy = compute + communication + host→device copies on that device.")));
  const timelines = h("div", {class: "ss-timelines"});
  root.append(section("ss-timeline", "One step per run", timelines,
    h("p", {class: "ss-foot"}, "The median profiled step; each column shows what covers most of it, blank = idle.")));
  const findings = data.findings.filter((f) => itemShown(f, shownNames, allNames));
  root.append(section("ss-findings", "Findings", findingsList(findings)));
  const recs = data.recommendations.filter((r) => itemShown(r, shownNames, allNames));
  root.append(section("ss-recommendations", "Recommendations, by estimated saving", recommendationsList(recs)));
  root.append(section("ss-whatif", "What if", whatifView(data.whatif, shownNames)));
  for (const [id, title] of [["ss-ops", "What changed, op by op"], ["ss-cost", "Communication cost model"]]) {
    const table = data.tables.find((t) => t.title === title);
    const view = table ? tableView(table, shownNames) : null;
    if (view) root.append(section(id, table.title, view));
  }
  const notes = notesView(data.notes, shownNames, allNames);
  if (notes) root.append(h("section", {class: "ss-card"}, notes));
  drawTimelines(timelines, shown);
}

function header() {
  ui.filter = h("input", {type: "search", id: "ss-filter", placeholder: "filter runs (regex)", value: state.filter,
    title: "Regular expression on the run names (case-insensitive). TensorBoard's run selector does not reach " +
      "iframe plugins, so the dashboard filters here.",
    oninput: (e) => {
      state.filter = e.target.value;
      save();
      writeFilter(state.filter);
      if (state.data) draw();
    }});
  ui.refresh = h("button", {type: "button", id: "ss-refresh", onclick: () => refresh()}, "Refresh");
  ui.status = h("span", {class: "ss-status", id: "ss-status"}, "loading…");
  return h("header", {class: "ss-header"},
    h("div", {class: "ss-title"}, h("strong", {}, "scalescope"), h("span", {}, " · why is N devices slower")),
    h("div", {class: "ss-tools"}, ui.filter, ui.refresh), ui.status);
}

function debounce(fn, ms) {
  let timer = 0;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

/** Entry point TensorBoard's plugin_entry.html calls. */
export async function render() {
  document.title = "scalescope";
  const css = h("link", {rel: "stylesheet", href: new URL("./style.css", import.meta.url).href});
  const styled = new Promise((resolve) => {
    css.onload = resolve;
    css.onerror = resolve;
  });
  document.head.append(css);
  restore();
  followTheme();
  ui.content = h("main", {id: "ss-content"});
  document.body.append(h("div", {id: "ss-root"}, header(), ui.content));

  const host = connectHost(window);
  let fromUrl = Promise.resolve(null);
  if (host) {
    host.on(DATA_RELOADED, () => refresh());
    host.on(RUNS_CHANGED, () => refresh());
    fromUrl = host.send(GET_URL_DATA).catch(() => null);
  }
  const fromHash = readFilter(await fromUrl);
  if (fromHash !== null) {
    state.filter = fromHash;
    ui.filter.value = state.filter;
  }
  await styled;
  await refresh();
  window.addEventListener("resize", debounce(() => state.data && draw(), 150));
}
