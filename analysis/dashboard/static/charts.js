// The dashboard's charts as plain SVG: breakdown bars, speedup vs ideal, per-device busy, one step's timeline.
// Colours come from the server (analysis.plots' palette), so the charts match the HTML report's.

import {fmt, h, inkOn, label, s, textPx, ticks} from "./dom.js";

const ROW = 22;       // bar height
const GAP = 8;        // between bars
const TOP = 6;
const AXIS = 34;      // room for tick labels and the axis name under the bars

function clip(text, px) {
  if (textPx(text) <= px) return text;
  const keep = Math.max(3, Math.floor(px / (12 * 0.58)) - 1);
  return `${text.slice(0, keep)}…`;
}

function frame(width, labelWidth, rightWidth) {
  const left = Math.min(labelWidth, Math.max(110, Math.round(width * 0.28)));
  return {left, plot: Math.max(100, width - left - rightWidth - 12)};
}

function svgRoot(width, height, name) {
  return s("svg", {width, height, viewBox: `0 0 ${width} ${height}`, class: "ss-chart", role: "img",
    "aria-label": name});
}

/** Vertical grid lines with tick labels under them, and the axis name under those. */
function grid(svg, values, scale, left, top, bottom, tickText, name) {
  const g = s("g", {class: "ss-grid"});
  for (const v of values) {
    const x = left + v * scale;
    g.append(s("line", {x1: x, x2: x, y1: top, y2: bottom}));
    g.append(s("text", {x, y: bottom + 14, "text-anchor": "middle"}, tickText(v)));
  }
  g.append(s("text", {x: left + values[values.length - 1] * scale, y: bottom + 30, "text-anchor": "end",
    class: "ss-axis-name"}, name));
  svg.append(g);
}

function rowLabel(text, full, left, y, cls = "ss-row-label") {
  return s("text", {x: left - 8, y: y + ROW / 2, "text-anchor": "end", "dominant-baseline": "central", class: cls},
    clip(text, left - 12), s("title", {text: full}));
}

function segment(x, y, w, colour, tip, text, attrs = {}) {
  const out = [s("rect", {x, y, width: Math.max(w, 0.5), height: ROW, fill: colour, ...attrs}, s("title", {text: tip}))];
  if (text && w > textPx(text, 11) + 8) {
    // style, not the fill attribute: the stylesheet's text colour would win over an attribute
    out.push(s("text", {x: x + w / 2, y: y + ROW / 2, style: `fill:${inkOn(colour)}`, class: "ss-seg-label",
      "text-anchor": "middle", "dominant-baseline": "central"}, text));
  }
  return out;
}

/** Why a run has no bar: its first error, else the step's source. */
export function missingReason(run) {
  if (run.errors && run.errors.length) return `not analysed: ${run.errors[0]}`;
  if (run.step_ms_source === "run.json") return `no trace: step ${fmt.ms(run.step_ms)} ms from run.json, no breakdown`;
  return "no profiled step: no breakdown";
}

/**
 * One stacked bar per run of where its step's wall time goes, to scale, step ms at the end.
 * Each bar is <g class="ss-bar" data-run=TensorBoard run name>; a run without a breakdown gets a line saying why.
 */
export function breakdownChart(runs, data, width) {
  const drawn = (r) => r.step_ms_source === "trace" && r.step_ms > 0;
  const max = Math.max(0, ...runs.filter(drawn).map((r) => r.step_ms));
  const {left, plot} = frame(width, 260, 80);
  const tk = ticks(max);
  const scale = plot / tk[tk.length - 1];
  const bottom = TOP + runs.length * (ROW + GAP) - GAP;
  const svg = svgRoot(width, bottom + AXIS, "step breakdown per run");
  grid(svg, tk, scale, left, TOP - 3, bottom + 3, fmt.tick, "ms per step (mean of the profiled steps)");
  runs.forEach((r, i) => {
    const y = TOP + i * (ROW + GAP);
    svg.append(rowLabel(r.tb_run, `${r.tb_run} (${r.name})`, left, y));
    if (!drawn(r)) {
      svg.append(s("text", {x: left + 4, y: y + ROW / 2, "dominant-baseline": "central", class: "ss-missing"},
        clip(missingReason(r), plot + 60), s("title", {text: missingReason(r)})));
      return;
    }
    const g = s("g", {class: "ss-bar", "data-run": r.tb_run});
    let x = left;
    for (const c of data.categories) {
      const ms = (r.parts_ms || {})[c] || 0;
      if (ms <= 0) continue;
      const w = ms * scale;
      const share = (r.shares || {})[c] || 0;
      g.append(...segment(x, y, w, data.colours[c], `${r.tb_run}: ${label(c)} ${fmt.ms(ms)} ms (${fmt.pct(share)})`,
        fmt.pct(share), {"data-category": c}));
      x += w;
    }
    g.append(s("text", {x: x + 6, y: y + ROW / 2, "dominant-baseline": "central", class: "ss-end"},
      `${fmt.ms(r.step_ms)} ms`));
    svg.append(g);
  });
  return svg;
}

/** Speedup vs the 1-device run beside the ideal (N devices = N×), for the runs that have one. */
export function speedupChart(runs, width) {
  const rows = runs.filter((r) => typeof r.speedup === "number");
  if (!rows.length) {
    return h("p", {class: "ss-empty"}, "No speedup: it needs a 1-device run of the same device type with images/s " +
      "(run.json or its trace) under the logdir.");
  }
  const max = Math.max(...rows.map((r) => Math.max(r.speedup, r.devices)));
  const {left, plot} = frame(width, 260, 200);
  const tk = ticks(max, 4);
  const scale = plot / tk[tk.length - 1];
  const bottom = TOP + rows.length * (ROW + GAP) - GAP;
  const svg = svgRoot(width, bottom + AXIS, "speedup vs ideal");
  grid(svg, tk, scale, left, TOP - 3, bottom + 3, (v) => `${fmt.tick(v)}×`,
    "images/s ÷ the 1-device run's; dashed box: ideal (N devices = N×)");
  rows.forEach((r, i) => {
    const y = TOP + i * (ROW + GAP);
    const eff = typeof r.efficiency === "number" ? r.efficiency : r.speedup / r.devices;
    const cls = eff >= 0.9 ? "ss-good" : eff >= 0.5 ? "ss-fair" : "ss-poor";
    svg.append(rowLabel(r.tb_run, `${r.tb_run}: vs ${r.baseline || "?"}`, left, y));
    const g = s("g", {class: "ss-speedup", "data-run": r.tb_run});
    g.append(s("rect", {x: left, y: y + 2, width: r.devices * scale, height: ROW - 4, class: "ss-ideal"},
      s("title", {text: `ideal: ${r.devices}× on ${r.devices} device(s)`})));
    g.append(s("rect", {x: left, y: y + 5, width: Math.max(1, r.speedup * scale), height: ROW - 10, class: cls},
      s("title", {text: `${r.tb_run}: ${fmt.times(r.speedup)} vs ${r.baseline}`})));
    const end = left + Math.max(r.speedup, r.devices) * scale;
    g.append(s("text", {x: end + 6, y: y + ROW / 2, "dominant-baseline": "central", class: "ss-end"},
      `${fmt.times(r.speedup)} of ${r.devices}× ideal · ${fmt.pct(eff)}`));
    svg.append(g);
  });
  return svg;
}

/** Each device's own busy share (compute, communication, copies) over the profiled steps, rows grouped by run. */
export function deviceChart(runs, data, width) {
  const rows = [];
  for (const r of runs) {
    if (!(r.device_busy || []).length) continue;
    rows.push({head: r.tb_run});
    for (const d of r.device_busy) rows.push({run: r, d});
  }
  if (!rows.length) return h("p", {class: "ss-empty"}, "No per-device figures in the shown runs (no trace analysed).");
  const {left, plot} = frame(width, 260, 90);
  const scale = plot;
  const bottom = TOP + rows.length * (ROW + GAP) - GAP;
  const svg = svgRoot(width, bottom + AXIS, "busy share per device");
  grid(svg, [0, 0.25, 0.5, 0.75, 1], scale, left, TOP - 3, bottom + 3, (v) => `${v * 100} %`,
    "share of the profiled steps' wall time");
  const c = data.colours;
  rows.forEach((row, i) => {
    const y = TOP + i * (ROW + GAP);
    if (row.head) {
      svg.append(s("text", {x: 4, y: y + ROW / 2 + 2, "dominant-baseline": "central", class: "ss-group"},
        clip(row.head, width - 8)));
      return;
    }
    const {run, d} = row;
    svg.append(rowLabel(d.device, `${run.tb_run}: ${d.device}`, left, y));
    const g = s("g", {class: "ss-device", "data-run": run.tb_run, "data-device": d.device});
    const busy = Math.min(1, d.busy);
    const copies = Math.max(0, busy - d.compute - d.communication);
    let x = left;
    for (const [share, colour, what] of [[d.compute, c.compute, "compute"], [d.communication, c.communication,
      "communication"], [copies, c.host_to_device, "host→device copies"]]) {
      if (share <= 0) continue;
      const w = Math.min(share, 1) * scale;
      g.append(...segment(x, y, w, colour, `${d.device}: ${what} ${fmt.pct(share)}`, fmt.pct(share)));
      x += w;
    }
    if (busy < 1) {
      g.append(s("rect", {x, y, width: (1 - busy) * scale, height: ROW, class: "ss-idle"},
        s("title", {text: `${d.device}: idle ${fmt.pct(d.idle)} (no work on this device)`})));
    }
    g.append(s("text", {x: left + scale + 6, y: y + ROW / 2, "dominant-baseline": "central", class: "ss-end"},
      `busy ${fmt.pct(d.busy)}`));
    svg.append(g);
  });
  return svg;
}

/** One step's lanes (each GPU, the exclusive breakdown, host phases), as the HTML report draws them. */
export function timelineChart(tl, data, width, colourOf) {
  const lanes = tl.lanes || [];
  if (!lanes.length) return h("p", {class: "ss-empty"}, tl.message || "no timeline");
  const {left, plot} = frame(width, 170, 16);
  const tk = ticks(tl.step_ms);
  const scale = plot / tk[tk.length - 1];
  const lane = 18;
  const gap = 5;
  const bottom = TOP + lanes.length * (lane + gap) - gap;
  const svg = svgRoot(width, bottom + AXIS, `one step of ${tl.tb_run}`);
  grid(svg, tk, scale, left, TOP - 3, bottom + 3, fmt.tick, "ms from the step's start");
  const used = new Map();
  lanes.forEach((ln, i) => {
    const y = TOP + i * (lane + gap);
    svg.append(s("text", {x: left - 8, y: y + lane / 2, "text-anchor": "end", "dominant-baseline": "central",
      class: "ss-row-label"}, clip(ln.lane, left - 12)));
    svg.append(s("rect", {x: left, y, width: tl.step_ms * scale, height: lane, class: "ss-lane"}));
    const g = s("g", {class: "ss-lane-spans", "data-lane": ln.lane});
    for (const [a, b, what] of ln.spans) {
      const colour = colourOf(what);
      used.set(what, colour);
      g.append(s("rect", {x: left + a * scale, y, width: Math.max(0.6, (b - a) * scale), height: lane, fill: colour},
        s("title", {text: `${ln.lane}: ${label(what)} ${fmt.ms(a)}–${fmt.ms(b)} ms`})));
    }
    svg.append(g);
  });
  const legend = h("div", {class: "ss-legend"},
    [...used].map(([what, colour]) => h("span", {class: "ss-key"}, h("i", {style: `background:${colour}`}), label(what))));
  return h("div", {}, svg, legend);
}

/** The category legend shared by the breakdown bars. */
export function categoryLegend(data, runs) {
  const present = data.categories.filter((c) => runs.some((r) => ((r.parts_ms || {})[c] || 0) > 0));
  return h("div", {class: "ss-legend"}, present.map((c) =>
    h("span", {class: "ss-key"}, h("i", {style: `background:${data.colours[c]}`}), label(c))));
}
