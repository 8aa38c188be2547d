// Small DOM helpers: elements from data without innerHTML (run names are folder names, never markup).

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(el, attrs, children, svg) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") el.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class" && svg) el.setAttribute("class", value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h("td", {class: "num"}, "12.3"). */
export function h(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children, false);
}

/** An SVG element: s("rect", {x: 0, y: 0, width: 10, height: 4}). */
export function s(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children, true);
}

/** Text with `backticked` spans as <code>, as the server's messages write commands. */
export function withCode(text) {
  return String(text).split("`").map((part, i) => (i % 2 ? h("code", {}, part) : part));
}

/** Numbers as the report prints them. */
export const fmt = {
  ms: (x) => (x === null || x === undefined ? "–" : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)),
  pct: (x) => (x === null || x === undefined ? "–" : `${(x * 100).toFixed(x < 0.1 ? 1 : 0)} %`),
  times: (x) => (x === null || x === undefined ? "–" : `${x.toFixed(2)}×`),
  tick: (x) => (Number.isInteger(x) ? x.toLocaleString("en") : String(Number(x.toFixed(2)))),
  num: (x) => (typeof x !== "number" ? String(x) : Number.isInteger(x) ? x.toLocaleString("en") :
    Math.abs(x) >= 100 ? x.toFixed(1) : x.toPrecision(4)),
};

/** Round axis ticks from 0 to at least max. */
export function ticks(max, count = 5) {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw);
  const out = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) out.push(v);
  if (out[out.length - 1] < max) out.push(out[out.length - 1] + step);
  return out;
}

/** Black or white text, whichever reads better on a #rrggbb fill. */
export function inkOn(hex) {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex || "");
  if (!m) return "#000";
  const [r, g, b] = m.slice(1).map((x) => parseInt(x, 16) / 255);
  return 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.55 ? "#111" : "#fff";
}

/** Rough width in px of text at the charts' 12px font (enough to decide whether a label fits). */
export function textPx(text, size = 12) {
  return String(text).length * size * 0.58;
}

/** "host_to_device" -> "host to device" (the report's words for its categories). */
export function label(category) {
  return String(category).replace(/_/g, " ");
}
