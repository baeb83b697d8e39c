// Export of the current view: PNG (the panels drawn onto one canvas at 2x), SVG (vector cells,
// the tokens as real text, the colour bar; for papers) and CSV (the matrix with its tokens,
// made safe to open in a spreadsheet).

import { colorIndex, lutHex } from "./colormaps.js";
import { LABEL_FONT, displayLabel, fitText, formatTick, textWidth } from "./dom.js";
import { COLORBAR_WIDTH, colorbarTicks } from "./panel.js";

const MARGIN = 16;
const GAP = 24;
const HEADER = 24;

/** The view (every panel with its labels and colour bar) as one canvas, scale x CSS pixels. */
export function composePng(panels, heading, scale = 2) {
  const width = MARGIN * 2 + panels.reduce((sum, p) => sum + p.width(), 0) + GAP * (panels.length - 1);
  const height = MARGIN * 2 + HEADER + Math.max(...panels.map((p) => p.height()));
  const canvas = document.createElement("canvas");
  canvas.width = Math.ceil(width * scale);
  canvas.height = Math.ceil(height * scale);
  const ctx = canvas.getContext("2d");
  ctx.scale(scale, scale);
  ctx.direction = "ltr";
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, width, height);
  ctx.fillStyle = "#202124";
  ctx.font = `bold ${LABEL_FONT}`;
  ctx.textBaseline = "top";
  ctx.fillText(fitText(ctx, heading, width - 2 * MARGIN), MARGIN, MARGIN);
  let x = MARGIN;
  for (const panel of panels) {
    panel.drawInto(ctx, x, MARGIN + HEADER);
    x += panel.width() + GAP;
  }
  return canvas;
}

// ---- SVG

const SVG_NS = "http://www.w3.org/2000/svg";
const FONT_FAMILY = '"DejaVu Sans", "Helvetica Neue", Arial, sans-serif';

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text; // text, never markup
  return node;
}

const round = (v) => Math.round(v * 100) / 100;

/** Text cut with "…" to maxWidth CSS pixels of the label font (as on screen). */
function fitLabel(text, maxWidth) {
  if (textWidth(text) <= maxWidth) return text;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (textWidth(text.slice(0, mid) + "…") <= maxWidth) lo = mid;
    else hi = mid - 1;
  }
  return text.slice(0, lo) + "…";
}

/**
 * The cells of one matrix as rects, one per run of equal colour along a row (a 1024-wide row of
 * similar weights needs far fewer than 1024 rects), in a group scaled to the panel's size.
 */
function cellRects(spec, W, H) {
  const group = svg("g", {
    transform: `scale(${W / spec.cols} ${H / spec.rows})`,
    "shape-rendering": "crispEdges",
    "data-role": "cells",
  });
  const colour = [];
  for (let k = 0; k < 256; k++) colour.push(lutHex(spec.lut, k));
  for (let i = 0; i < spec.rows; i++) {
    let j = 0;
    while (j < spec.cols) {
      const k = colorIndex(spec.values[i * spec.cols + j], spec.lo, spec.hi);
      let end = j + 1;
      while (end < spec.cols && colorIndex(spec.values[i * spec.cols + end], spec.lo, spec.hi) === k) {
        end++;
      }
      group.append(svg("rect", { x: j, y: i, width: end - j, height: 1, fill: colour[k] }));
      j = end;
    }
  }
  return group;
}

function panelSvg(panel, x, y, id) {
  const { spec, layout } = panel;
  const { left, top, cell, W, H } = layout;
  const g = svg("g", { transform: `translate(${x} ${y})`, "data-role": panel.role });
  g.append(svg("text", { x: 0, y: 14, "font-weight": "bold", class: "title" }, spec.title));
  const body = svg("g", { transform: `translate(0 20)` });
  g.append(body);
  const cells = cellRects(spec, W, H);
  const place = svg("g", { transform: `translate(${left} ${top})` });
  place.append(cells);
  body.append(place);
  for (let i = 0; i < spec.rows; i += layout.rowStride) {
    const text = fitLabel(displayLabel(spec.queryLabels[i]), left - 8);
    body.append(
      svg(
        "text",
        {
          x: left - 5,
          y: round(top + (i + 0.5) * cell),
          "text-anchor": "end",
          "dominant-baseline": "central",
          class: "query-label",
          "data-index": i,
        },
        text,
      ),
    );
  }
  for (let j = 0; j < spec.cols; j += layout.colStride) {
    const label = displayLabel(spec.inputLabels[j]);
    const cx = round(left + (j + 0.5) * cell);
    const attrs = { class: "input-label", "data-index": j };
    if (layout.vertical) {
      Object.assign(attrs, {
        transform: `translate(${cx} ${top - 5}) rotate(-90)`,
        "dominant-baseline": "central",
      });
      body.append(svg("text", attrs, fitLabel(label, top - 8)));
    } else {
      Object.assign(attrs, { x: cx, y: top - 4, "text-anchor": "middle" });
      body.append(svg("text", attrs, fitLabel(label, Math.max(cell, 8))));
    }
  }
  // The colour bar: a vertical gradient through the colour map's anchors, with its ticks.
  const gradient = svg("linearGradient", { id, x1: 0, y1: 1, x2: 0, y2: 0 });
  for (let k = 0; k <= 16; k++) {
    const index = Math.min(255, k * 16);
    gradient.append(svg("stop", { offset: round(k / 16), "stop-color": lutHex(spec.lut, index) }));
  }
  const barX = left + W + 8;
  const defs = svg("defs");
  defs.append(gradient);
  body.append(
    defs,
    svg("rect", {
      x: barX,
      y: top,
      width: COLORBAR_WIDTH,
      height: H,
      fill: `url(#${id})`,
      "data-role": "colorbar",
    }),
  );
  for (const t of colorbarTicks(H)) {
    const value = spec.lo + (spec.hi - spec.lo) * t;
    body.append(
      svg(
        "text",
        {
          x: barX + COLORBAR_WIDTH + 4,
          y: round(top + (1 - t) * H),
          "dominant-baseline": "central",
          "font-size": 11,
          class: "tick",
        },
        formatTick(value),
      ),
    );
  }
  return g;
}

/** An SVG root of this size in the tab's font: a white page with `heading` at its top. */
function svgDocument(width, height, heading) {
  const root = svg("svg", {
    xmlns: SVG_NS,
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    "font-family": FONT_FAMILY,
    "font-size": 12,
    fill: "#202124",
    direction: "ltr",
  });
  root.append(svg("rect", { width, height, fill: "#ffffff" }));
  root.append(svg("text", { x: MARGIN, y: MARGIN + 12, "font-weight": "bold", class: "heading" }, heading));
  return root;
}

/** The view as an SVG document (a string): vector cells, real text, colour bars. */
export function composeSvg(panels, heading) {
  const width = MARGIN * 2 + panels.reduce((sum, p) => sum + p.width(), 0) + GAP * (panels.length - 1);
  const height = MARGIN * 2 + HEADER + Math.max(...panels.map((p) => p.height()));
  const root = svgDocument(width, height, heading);
  let x = MARGIN;
  panels.forEach((panel, k) => {
    root.append(panelSvg(panel, x, MARGIN + HEADER, `colorbar-gradient-${k}`));
    x += panel.width() + GAP;
  });
  return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(root);
}

// ---- CSV

/**
 * A text cell made safe for spreadsheets: one that starts with "=", "+", "-" or "@" (or a tab
 * or carriage return, which some spreadsheets skip before reading a formula) gets a leading
 * apostrophe, so that it is read as text, never as a formula (the advice of OWASP's "CSV
 * Injection" page). Then quoted as RFC 4180 says when it holds a comma, quote or line break.
 */
export function csvCell(text, isText = true) {
  let cell = String(text);
  if (isText && /^[=+\-@\t\r]/.test(cell)) cell = `'${cell}`;
  return /[",\r\n]/.test(cell) ? `"${cell.replace(/"/g, '""')}"` : cell;
}

/** A weight as the matrix route's CSV writes it: 6 significant digits. */
function csvNumber(v) {
  return Number.isFinite(v) ? String(Number(v.toPrecision(6))) : String(v);
}

/**
 * The matrix (every head) as CSV: a "head" column for multi-head matrices, then "query" and
 * one column per input token; token cells escaped by csvCell, numbers as they are.
 */
export function matrixCsv(matrix) {
  const withHeads = matrix.heads > 1;
  const lines = [];
  const header = [...(withHeads ? ["head"] : []), "query", ...matrix.inputLabels.map((l) => csvCell(l))];
  lines.push(header.join(","));
  const size = matrix.rows * matrix.cols;
  for (let h = 0; h < matrix.heads; h++) {
    for (let i = 0; i < matrix.rows; i++) {
      const row = withHeads ? [String(h)] : [];
      row.push(csvCell(matrix.queryLabels[i]));
      const base = h * size + i * matrix.cols;
      for (let j = 0; j < matrix.cols; j++) row.push(csvNumber(matrix.values[base + j]));
      lines.push(row.join(","));
    }
  }
  return lines.join("\n") + "\n";
}

// ---- the overview grid (PNG and SVG)
//
// The grid has no colour bar to export: each thumbnail is on its own min-max scale (or all on
// 0-1), which the heading says. In the SVG each cell is a PNG image (a data URL) at twice its
// drawn size rather than vector rects: 24 layers x 12 heads of 64 x 64 would be a million
// rects. Layer names and head labels are real text. No CSV: a grid of heads is not one table
// (the detail view's CSV exports a layer with all its heads).

const GRID_LABEL_MAX = 360; // the layer names' column at most, CSS pixels (longer names are cut)
const GRID_HEADS_H = 18; // the head labels' line
const GRID_ROW_MIN = 30; // a row holds its layer's name and shape
const GRID_ROW_GAP = 8;
const SMALL_FONT = '11px "DejaVu Sans", "Helvetica Neue", Arial, sans-serif';

/** Where everything of a grid snapshot (Overview.snapshot) goes, in CSS pixels. */
function gridLayout(grid, heading) {
  const widest = Math.max(100, ...grid.layers.map((l) => textWidth(displayLabel(l.name))));
  const labelWidth = Math.ceil(Math.min(GRID_LABEL_MAX, widest + 12));
  const cellsLeft = MARGIN + labelWidth;
  // Wide enough for the heading too (bold is at most ~15% wider than the measured font).
  const cellsRight = cellsLeft + grid.maxHeads * grid.slot - grid.gap + MARGIN;
  const width = Math.max(cellsRight, Math.ceil(textWidth(heading) * 1.15) + 2 * MARGIN);
  let y = MARGIN + HEADER + GRID_HEADS_H;
  const rows = grid.layers.map((layer) => {
    const top = y;
    y += Math.max(layer.h, GRID_ROW_MIN) + GRID_ROW_GAP;
    return { layer, top };
  });
  const height = y - GRID_ROW_GAP + MARGIN;
  return { width, height, labelWidth, cellsLeft, headsTop: MARGIN + HEADER, rows };
}

/** Draws head `head` of a layer's atlas at x, y, w x h of ctx (at scale device pixels per px). */
function drawCell(ctx, layer, head, x, y, w, h, scale) {
  // As the grid draws it: sharp squares when enlarged, averaged neighbours when shrunk.
  ctx.imageSmoothingEnabled = w * scale < layer.cols || h * scale < layer.rows;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(layer.atlas, head * layer.cols, 0, layer.cols, layer.rows, x, y, w, h);
}

/** The overview grid as one canvas, scale x CSS pixels: heading, head labels, layers, cells. */
export function composeGridPng(grid, heading, scale = 2) {
  const layout = gridLayout(grid, heading);
  const canvas = document.createElement("canvas");
  canvas.width = Math.ceil(layout.width * scale);
  canvas.height = Math.ceil(layout.height * scale);
  const ctx = canvas.getContext("2d");
  ctx.scale(scale, scale);
  ctx.direction = "ltr";
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, layout.width, layout.height);
  ctx.fillStyle = "#202124";
  ctx.textBaseline = "top";
  ctx.font = `bold ${LABEL_FONT}`;
  ctx.fillText(fitText(ctx, heading, layout.width - 2 * MARGIN), MARGIN, MARGIN);
  ctx.font = SMALL_FONT;
  ctx.textAlign = "center";
  for (let h = 0; h < grid.maxHeads; h++) {
    ctx.fillText(`head ${h}`, layout.cellsLeft + h * grid.slot + grid.thumb / 2, layout.headsTop);
  }
  ctx.textAlign = "left";
  for (const { layer, top } of layout.rows) {
    ctx.font = LABEL_FONT;
    ctx.fillText(fitText(ctx, displayLabel(layer.name), layout.labelWidth - 8), MARGIN, top);
    ctx.font = SMALL_FONT;
    ctx.fillText(layer.shape, MARGIN, top + 15);
    for (let head = 0; head < layer.heads; head++) {
      drawCell(ctx, layer, head, layout.cellsLeft + head * grid.slot, top, layer.w, layer.h, scale);
    }
  }
  return canvas;
}

const XLINK_NS = "http://www.w3.org/1999/xlink";

/** One head of a layer as a PNG data URL, scale x its drawn size. */
function cellDataUrl(layer, head, scale) {
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(layer.w * scale);
  canvas.height = Math.round(layer.h * scale);
  drawCell(canvas.getContext("2d"), layer, head, 0, 0, canvas.width, canvas.height, 1);
  return canvas.toDataURL("image/png");
}

/** The overview grid as an SVG document (a string): cells as PNG images, labels as text. */
export function composeGridSvg(grid, heading, scale = 2) {
  const layout = gridLayout(grid, heading);
  const { width, height } = layout;
  const root = svgDocument(width, height, heading);
  root.setAttributeNS("http://www.w3.org/2000/xmlns/", "xmlns:xlink", XLINK_NS);
  root.prepend(svg("title", {}, heading));
  for (let h = 0; h < grid.maxHeads; h++) {
    const x = round(layout.cellsLeft + h * grid.slot + grid.thumb / 2);
    const attrs = { x, y: layout.headsTop + 11, "text-anchor": "middle", "font-size": 11 };
    root.append(svg("text", { ...attrs, class: "head-label" }, `head ${h}`));
  }
  for (const { layer, top } of layout.rows) {
    const g = svg("g", { "data-role": "layer", "data-layer": layer.name });
    const name = fitLabel(displayLabel(layer.name), layout.labelWidth - 8);
    g.append(
      svg("text", { x: MARGIN, y: top + 12, class: "layer-name" }, name),
      svg("text", { x: MARGIN, y: top + 27, "font-size": 11, class: "layer-shape" }, layer.shape),
    );
    for (let head = 0; head < layer.heads; head++) {
      const image = svg("image", {
        x: layout.cellsLeft + head * grid.slot,
        y: top,
        width: layer.w,
        height: layer.h,
        preserveAspectRatio: "none",
        "data-head": head,
      });
      image.setAttributeNS(XLINK_NS, "xlink:href", cellDataUrl(layer, head, scale));
      g.append(image);
    }
    root.append(g);
  }
  return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(root);
}
