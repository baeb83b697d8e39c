// DOM helpers. User text (token labels, run and tag names) reaches the page only through
// textContent, the title property, canvas fillText or an SVG text node's textContent: never
// through HTML parsing, so a label such as <img src=x onerror=alert(1)> is shown literally.

export const LABEL_FONT = '12px "DejaVu Sans", "Helvetica Neue", Arial, sans-serif';
export const LABEL_LINE = 14; // CSS pixels one axis label needs along its axis

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

/** An element with id and data-testid both set to name, for people and for tests. */
export function named(tag, name, attrs = {}, ...children) {
  return el(tag, { id: name, "data-testid": name, ...attrs }, ...children);
}

// Unicode's explicit directional formatting characters (UAX #9, "Explicit Directional
// Embeddings, Overrides and Isolates", and the implicit marks): LRE RLE PDF LRO RLO, LRI RLI
// FSI PDI, LRM RLM ALM. A token holding one can make its text, and the text after it, render
// in another order than it is stored ("\u202egnp.exe" shows as "exe.png"), so the tab shows
// them as visible names instead; each label also sits in its own direction isolate (CSS
// unicode-bidi: isolate), so a right-to-left token never reorders the text around it.
const BIDI_CONTROLS = /[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]/g;
const BIDI_NAMES = {
  "\u202a": "LRE",
  "\u202b": "RLE",
  "\u202c": "PDF",
  "\u202d": "LRO",
  "\u202e": "RLO",
  "\u2066": "LRI",
  "\u2067": "RLI",
  "\u2068": "FSI",
  "\u2069": "PDI",
  "\u200e": "LRM",
  "\u200f": "RLM",
  "\u061c": "ALM",
};

/**
 * Token labels as shown: whitespace-only tokens become visible ("␣" for a space), and
 * directional control characters are named ("⟦RLO⟧") rather than obeyed.
 */
export function displayLabel(label) {
  if (label === "") return "∅";
  if (/^\s+$/.test(label)) return label.replace(/ /g, "␣").replace(/\n/g, "↵").replace(/\t/g, "⇥");
  return label.replace(BIDI_CONTROLS, (c) => `⟦${BIDI_NAMES[c]}⟧`);
}

/** A span showing a label as text, in its own direction isolate (see style.css, .bidi). */
export function labelSpan(label, className = "") {
  const span = el("span", { class: `bidi ${className}`.trim(), text: displayLabel(label) });
  span.dir = "auto"; // the label's own first strong character sets its direction
  return span;
}

export function formatWeight(v) {
  return Number.isFinite(v) ? v.toFixed(4) : String(v);
}

export function formatTick(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e-3 && a < 1e4 ? String(Number(v.toPrecision(3))) : v.toExponential(1);
}

export function safeFileName(text) {
  return text.replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^_+|_+$/g, "") || "attention";
}

/** Every how-many-th label fits when each cell is cellPx wide and a label needs linePx. */
export function labelStride(cellPx, linePx = LABEL_LINE) {
  return cellPx >= linePx ? 1 : Math.ceil(linePx / Math.max(cellPx, 1e-6));
}

let measureContext = null;
export function textWidth(text) {
  if (!measureContext) {
    measureContext = document.createElement("canvas").getContext("2d");
    measureContext.font = LABEL_FONT;
  }
  return measureContext.measureText(text).width;
}

export function widestLabel(labels, cap) {
  let widest = 0;
  for (const label of labels) {
    widest = Math.max(widest, textWidth(displayLabel(label)));
    if (widest >= cap) return cap;
  }
  return Math.ceil(widest);
}

/** Fits text into maxWidth pixels of the current canvas font, ending with "…" when cut. */
export function fitText(ctx, text, maxWidth) {
  if (ctx.measureText(text).width <= maxWidth) return text;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ctx.measureText(text.slice(0, mid) + "…").width <= maxWidth) lo = mid;
    else hi = mid - 1;
  }
  return text.slice(0, lo) + "…";
}

/**
 * Puts a fixed-position tooltip near (x, y) and keeps all of it inside the window: beside the
 * pointer where it fits, else against the window's edge. Its CSS caps its height at the
 * window's (a 1,000-character token is clipped, not pushed off screen).
 */
export function placeTooltip(tooltip, x, y, pad = 14) {
  tooltip.hidden = false;
  const { offsetWidth: w, offsetHeight: h } = tooltip;
  const maxX = Math.max(0, window.innerWidth - w);
  const maxY = Math.max(0, window.innerHeight - h);
  let left = x + pad;
  let top = y + pad;
  if (left > maxX) left = x - pad - w >= 0 ? x - pad - w : maxX;
  if (top > maxY) top = y - pad - h >= 0 ? y - pad - h : maxY;
  tooltip.style.left = `${Math.min(Math.max(0, left), maxX)}px`;
  tooltip.style.top = `${Math.min(Math.max(0, top), maxY)}px`;
}

/** Downloads url as fileName (an object URL is revoked a minute later). */
export function save(url, fileName, revoke) {
  const link = el("a", { href: url, download: fileName, hidden: "" });
  document.body.append(link);
  link.click();
  link.remove();
  if (revoke) setTimeout(() => URL.revokeObjectURL(url), 60000);
}
