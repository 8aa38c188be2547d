// The dashboard's text sections: the runs table (the report view's rows, as the terminal prints them),
// findings, ranked recommendations, the what-if table, the report's other tables and its notes.

import {fmt, h, label} from "./dom.js";

function cells(tag, values, left) {
  return values.map((v, i) => h(tag, {class: i < left ? "" : "num"}, v));
}

/**
 * The report view's "Runs" table with a checkbox per run (unchecked: left out of every section below).
 * @param {object} data the runs payload; @param {object[]} matched runs that pass the regex filter
 */
export function runsTable(data, matched, hidden, onToggle) {
  const table = data.tables.find((t) => t.title === "Runs");
  if (!table) return h("p", {class: "ss-empty"}, "no runs table");
  const rowOf = new Map(data.runs.map((r, i) => [r.tb_run, table.rows[i]]));
  const allOn = matched.every((r) => !hidden.has(r.tb_run));
  const head = h("tr", {},
    h("th", {}, h("input", {type: "checkbox", title: "show all / none", "aria-label": "show all runs",
      checked: allOn, onchange: (e) => onToggle(matched.map((r) => r.tb_run), e.target.checked)})),
    cells("th", table.header, table.left), h("th", {}, "status"));
  const body = [];
  for (const r of matched) {
    const row = rowOf.get(r.tb_run) || [r.name];
    const shown = !hidden.has(r.tb_run);
    const name = h("td", {class: "ss-run"}, r.tb_run, r.name !== r.tb_run ? h("small", {}, ` (${r.name})`) : null);
    const status = r.errors.length ? h("td", {class: "ss-bad"}, "error") :
      h("td", {class: r.status && r.status !== "complete" ? "ss-warn" : ""}, r.status || "–");
    body.push(h("tr", {class: shown ? "" : "ss-off", "data-run": r.tb_run},
      h("td", {}, h("input", {type: "checkbox", checked: shown, "aria-label": `show ${r.tb_run}`,
        onchange: (e) => onToggle([r.tb_run], e.target.checked)})),
      name, cells("td", row.slice(1), table.left - 1), status));
    for (const e of r.errors) {
      body.push(h("tr", {class: "ss-error-row", "data-run": r.tb_run},
        h("td", {}), h("td", {colspan: table.header.length + 1, class: "ss-bad"}, e)));
    }
  }
  return h("div", {class: "ss-scroll"},
    h("table", {class: "ss-table", id: "ss-runs-table"}, h("thead", {}, head), h("tbody", {}, body)),
    h("p", {class: "ss-foot"}, table.footnote));
}

function figureLines(figures, prefix = "") {
  const out = [];
  for (const [k, v] of Object.entries(figures || {})) {
    if (v && typeof v === "object" && !Array.isArray(v)) out.push(...figureLines(v, `${prefix}${k}.`));
    else out.push(`${prefix}${k} = ${Array.isArray(v) ? v.map(fmt.num).join(", ") : fmt.num(v)}`);
  }
  return out;
}

/** True for an item about a shown run, or about no run in particular. */
export function itemShown(item, shownNames, allNames) {
  return shownNames.has(item.run) || !allNames.has(item.run);
}

/** Numbered findings, each with the figures it rests on. */
export function findingsList(items) {
  if (!items.length) return h("p", {class: "ss-empty"}, "No findings for the shown runs.");
  return h("ol", {class: "ss-items"}, items.map((f) => h("li", {class: "ss-finding", "data-run": f.run, value: f.number},
    h("span", {class: "ss-kind"}, label(f.kind)), " ", f.text,
    h("details", {}, h("summary", {}, "figures"), h("code", {class: "ss-figures"}, figureLines(f.figures).join("\n"))))));
}

/** Recommendations in the report's rank order (by estimated saving), with the saving as a bar. */
export function recommendationsList(items) {
  if (!items.length) return h("p", {class: "ss-empty"}, "No recommendations for the shown runs.");
  return h("ol", {class: "ss-items"}, items.map((r) => {
    const share = typeof r.saving_share === "number" ? Math.max(0, Math.min(1, r.saving_share)) : 0;
    return h("li", {class: "ss-rec", "data-run": r.run, value: r.number},
      h("span", {class: "ss-saving", title: `saves ~${fmt.ms(r.saving_ms)} ms of ${fmt.ms(r.step_ms)} ms (${r.basis})`},
        h("i", {style: `width:${(share * 100).toFixed(1)}%`})),
      h("span", {class: "ss-kind"}, `${fmt.pct(share)} · ${r.basis}`), " ", r.text,
      h("details", {}, h("summary", {}, "figures"), h("code", {class: "ss-figures"}, figureLines(r.figures).join("\n"))));
  }));
}

/** The what-if: each 1-device run's default predictions, with the measured step and error where one was run. */
export function whatifView(whatif, shownNames) {
  const rows = (whatif.rows || []).filter((p) => shownNames.has(p.input_run));
  if (!rows.length) {
    return h("p", {class: "ss-empty"}, "No what-if: it predicts from a profiled 1-device run among the shown runs.");
  }
  const header = ["from", "strategy", "devices", "batch", "predicted ms", "img/s", "speedup", "measured ms", "error",
    "basis"];
  const body = rows.map((p) => {
    const unit = p.device_type === "cuda" ? (p.gpu || "gpu") : "cpu";
    const err = typeof p.error === "number" ? `${p.error >= 0 ? "+" : ""}${(p.error * 100).toFixed(1)} %` : "–";
    const tags = [p.analytic ? "analytic" : "measured terms", p.assumed ? "assumed" : null].filter(Boolean).join(", ");
    return h("tr", {class: p.measured_run ? "ss-measured" : "", "data-run": p.input_run},
      cells("td", [p.input_run, p.strategy, `${p.devices} ${unit}`, String(p.global_batch), fmt.ms(p.step_ms),
        p.images_per_s.toFixed(0), fmt.times(p.speedup),
        p.measured_ms === null ? "–" : `${fmt.ms(p.measured_ms)} (${p.measured_run})`, err], 2),
      h("td", {}, h("details", {}, h("summary", {}, tags),
        h("code", {class: "ss-figures"}, p.terms.map((t) => `${t.name} ${fmt.ms(t.ms)} ms: ${t.basis}`).join("\n")))));
  });
  const s = whatif.summary || {};
  const summary = s.configurations ? `${s.configurations} measured configuration(s): median |error| ` +
    `${(s.median_abs_error * 100).toFixed(1)} %, worst ${(s.worst_abs_error * 100).toFixed(1)} %` : "";
  return h("div", {class: "ss-scroll"},
    (whatif.inputs || []).map((line) => h("p", {class: "ss-foot"}, line)),
    h("table", {class: "ss-table", id: "ss-whatif-table"}, h("thead", {}, h("tr", {}, cells("th", header, 2))),
      h("tbody", {}, body)),
    h("p", {class: "ss-foot"}, [summary, whatif.foot, "other configurations: python -m analysis.whatif RUN " +
      "(--gpu NAME for a GPU from a CPU profile)"].filter(Boolean).join("; ")));
}

/** One of the report view's tables (op diff, cost model), cut to the shown runs. */
export function tableView(table, shownNames) {
  const rows = table.rows.filter((r) => shownNames.has(r[0]));
  if (!rows.length) return null;
  return h("div", {class: "ss-scroll"},
    h("table", {class: "ss-table"}, h("thead", {}, h("tr", {}, cells("th", table.header, table.left))),
      h("tbody", {}, rows.map((r) => h("tr", {}, cells("td", r, table.left))))),
    h("p", {class: "ss-foot"}, table.footnote));
}

/** The report's notes about the shown runs (and the general ones), folded away. */
export function notesView(notes, shownNames, allNames) {
  const about = (n) => [...allNames].find((name) => n.startsWith(`${name}:`) || n.startsWith(`${name} (`));
  const kept = notes.filter((n) => {
    const run = about(n);
    return run === undefined || shownNames.has(run);
  });
  if (!kept.length) return null;
  return h("details", {class: "ss-notes"}, h("summary", {}, `Notes (${kept.length})`),
    h("ul", {}, kept.map((n) => h("li", {}, n))));
}
