// One heatmap panel (title, axis labels, canvas, highlight overlay, colour bar), its layout,
// and the pixel work: a matrix becomes an image of one pixel per cell through ImageData, then is
// scaled onto the canvas (sharp squares when enlarged, averaged when shrunk).

import {
  LABEL_FONT,
  displayLabel,
  el,
  fitText,
  formatTick,
  labelSpan,
  labelStride,
  named,
  widestLabel,
} from "./dom.js";

export const MAX_CELL = 48; // largest cell edge in CSS pixels: small matrices stay readable
const MAX_QUERY_GUTTER = 160; // widest left label column, CSS pixels (longer labels get "…")
const MAX_INPUT_GUTTER = 120; // tallest rotated top label row, CSS pixels
export const COLORBAR_WIDTH = 14;
export const COLORBAR_GUTTER = 70; // colour bar plus its tick labels
const DIM = "rgba(255, 255, 255, 0.62)"; // veil over what a token highlight leaves out

/**
 * The matrix as an image of cols x rows pixels, one per cell: a canvas, or with asImageData
 * the ImageData itself (for a caller that puts it straight onto its own canvas).
 */
export function matrixImage(values, rows, cols, lut, lo, hi, asImageData = false) {
  const image = new ImageData(cols, rows);
  const data = image.data;
  const scale = 256 / (hi > lo ? hi - lo : 1);
  for (let p = 0, q = 0, end = rows * cols; p < end; p++, q += 4) {
    let k = Math.floor((values[p] - lo) * scale);
    k = k > 255 ? 255 : k >= 0 ? k : 0;
    const c = k * 3;
    data[q] = lut[c];
    data[q + 1] = lut[c + 1];
    data[q + 2] = lut[c + 2];
    data[q + 3] = 255;
  }
  if (asImageData) return image;
  const canvas = document.createElement("canvas");
  canvas.width = cols;
  canvas.height = rows;
  canvas.getContext("2d").putImageData(image, 0, 0);
  return canvas;
}

export function colorbarImage(lut) {
  const image = new ImageData(1, 256);
  for (let i = 0; i < 256; i++) {
    const c = (255 - i) * 3; // top of the bar is the high end
    image.data.set([lut[c], lut[c + 1], lut[c + 2], 255], i * 4);
  }
  const canvas = document.createElement("canvas");
  canvas.width = 1;
  canvas.height = 256;
  canvas.getContext("2d").putImageData(image, 0, 0);
  return canvas;
}

/** Draws a one-pixel-per-cell image onto a display canvas of cssW x cssH CSS pixels. */
export function paintScaled(canvas, source, cssW, cssH) {
  const dpr = window.devicePixelRatio || 1;
  canvas.style.width = `${cssW}px`;
  canvas.style.height = `${cssH}px`;
  canvas.width = Math.max(1, Math.round(cssW * dpr));
  canvas.height = Math.max(1, Math.round(cssH * dpr));
  const ctx = canvas.getContext("2d");
  // Enlarging keeps cells as sharp squares; shrinking (more cells than pixels) averages
  // neighbouring cells instead of dropping whole rows and columns.
  const shrinking = canvas.width < source.width || canvas.height < source.height;
  ctx.imageSmoothingEnabled = shrinking;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(source, 0, 0, canvas.width, canvas.height);
}

// One heatmap panel: title, axis labels, canvas, colour bar

/**
 * Sizes a panel for a matrix of rows x cols within widthBudget x heightBudget CSS pixels.
 * Returns {left, top, cell, W, H, vertical, rowStride, colStride}.
 */
export function layoutPanel(spec, widthBudget, heightBudget) {
  const left = widestLabel(spec.queryLabels, MAX_QUERY_GUTTER) + 12;
  const inputWidest = widestLabel(spec.inputLabels, MAX_INPUT_GUTTER);
  const fit = (top) =>
    Math.min(
      MAX_CELL,
      (widthBudget - left - COLORBAR_GUTTER) / spec.cols,
      (heightBudget - top) / spec.rows,
    );
  let top = 22;
  let cell = fit(top);
  let vertical = cell < inputWidest + 6;
  if (vertical) {
    top = inputWidest + 12;
    cell = fit(top);
  }
  cell = Math.max(cell, 120 / Math.max(spec.rows, spec.cols), 0.25); // never vanish entirely
  if (cell >= 2) cell = Math.floor(cell); // whole pixels keep cells evenly sized
  return {
    left,
    top,
    cell,
    inputWidest,
    rows: spec.rows,
    cols: spec.cols,
    W: Math.round(cell * spec.cols),
    H: Math.round(cell * spec.rows),
    vertical,
    rowStride: labelStride(cell),
    colStride: vertical ? labelStride(cell) : 1,
  };
}

/**
 * Side by side panels (compare mode) share one cell size, label gutters and rows, so that
 * the same cell sits at the same height in each.
 */
export function alignLayouts(layouts) {
  if (layouts.length < 2) return layouts;
  const cell = Math.min(...layouts.map((l) => l.cell));
  const vertical = layouts.some((l) => l.vertical || cell < l.inputWidest + 6);
  const top = vertical ? Math.max(...layouts.map((l) => l.inputWidest)) + 12 : 22;
  const left = Math.max(...layouts.map((l) => l.left));
  return layouts.map((l) => ({
    ...l,
    cell,
    top,
    left,
    vertical,
    W: Math.round(cell * l.cols),
    H: Math.round(cell * l.rows),
    rowStride: labelStride(cell),
    colStride: vertical ? labelStride(cell) : 1,
  }));
}

export class Panel {
  /**
   * handlers: {hover(panel, [i, j], event), leave(), label(panel, axis, index, event)} where
   * axis is "query" (a row label) or "input" (a column label).
   */
  constructor(role, handlers) {
    const suffix = role === "main" ? "" : `-${role}`;
    this.role = role;
    this.title = named("figcaption", `panel-title${suffix}`, { class: "panel-title" });
    this.canvas = named("canvas", `heatmap${suffix}`, { class: "heatmap" });
    // Token highlights are drawn on a canvas above the heatmap, so the heatmap's own pixels
    // (which the tests and exports read) never change with the mouse.
    this.overlay = named("canvas", `highlight${suffix}`, { class: "highlight" });
    this.queryAxis = named("div", `query-labels${suffix}`, { class: "axis axis-query" });
    this.inputAxis = named("div", `input-labels${suffix}`, { class: "axis axis-input" });
    this.colorbar = named("canvas", `colorbar${suffix}`, { class: "colorbar" });
    this.ticks = el("div", { class: "colorbar-ticks" });
    const colorbarCell = el("div", { class: "colorbar-cell" }, this.colorbar, this.ticks);
    const heatmapCell = el("div", { class: "heatmap-cell" }, this.canvas, this.overlay);
    // Grid: row 1 holds the input labels above the heatmap; row 2 the query labels, the
    // heatmap and the colour bar.
    const place = (node, row, column) => Object.assign(node.style, { gridRow: row, gridColumn: column });
    place(this.inputAxis, 1, 2);
    place(this.queryAxis, 2, 1);
    place(heatmapCell, 2, 2);
    place(colorbarCell, 2, 3);
    this.grid = el(
      "div",
      { class: "panel-grid" },
      this.inputAxis,
      this.queryAxis,
      heatmapCell,
      colorbarCell,
    );
    this.root = el("figure", { class: "panel", "data-role": role }, this.title, this.grid);
    this.spec = null;
    this.highlighted = [null, null];
    this.canvas.addEventListener("mousemove", (event) => {
      if (this.spec) handlers.hover(this, this.cellAt(event), event);
    });
    this.canvas.addEventListener("mouseleave", handlers.leave);
    for (const [axis, node] of [["query", this.queryAxis], ["input", this.inputAxis]]) {
      node.addEventListener("mouseover", (event) => {
        const label = event.target.closest(".label");
        if (label && this.spec) handlers.label(this, axis, Number(label.dataset.index), event);
      });
      node.addEventListener("mouseleave", handlers.leave);
    }
  }

  /**
   * Highlights query row i and/or input column j (null: none) and dims the rest; both null
   * clears it. Indices outside this panel's matrix are ignored.
   */
  highlight(i, j) {
    if (!this.spec) return;
    const row = i !== null && i < this.spec.rows ? i : null;
    const col = j !== null && j < this.spec.cols ? j : null;
    this.highlighted = [row, col];
    const canvas = this.overlay;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    canvas.dataset.row = row === null ? "" : String(row);
    canvas.dataset.col = col === null ? "" : String(col);
    for (const [axis, index] of [[this.queryAxis, row], [this.inputAxis, col]]) {
      for (const label of axis.querySelectorAll(".label.highlighted")) {
        label.classList.remove("highlighted");
      }
      if (index !== null) {
        const label = axis.querySelector(`.label[data-index="${index}"]`);
        if (label) label.classList.add("highlighted");
      }
    }
    if (row === null && col === null) return;
    const sx = canvas.width / this.spec.cols;
    const sy = canvas.height / this.spec.rows;
    ctx.fillStyle = DIM;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    // At least one device pixel wide, so a row of a 1024-row matrix still shows.
    if (row !== null) ctx.clearRect(0, Math.floor(row * sy), canvas.width, Math.max(1, Math.ceil(sy)));
    if (col !== null) ctx.clearRect(Math.floor(col * sx), 0, Math.max(1, Math.ceil(sx)), canvas.height);
  }

  cellAt(event) {
    const rect = this.canvas.getBoundingClientRect();
    const { rows, cols } = this.spec;
    const j = Math.floor(((event.clientX - rect.left) / rect.width) * cols);
    const i = Math.floor(((event.clientY - rect.top) / rect.height) * rows);
    return [Math.min(Math.max(i, 0), rows - 1), Math.min(Math.max(j, 0), cols - 1)];
  }

  /**
   * spec: {title, values, rows, cols, queryLabels, inputLabels, lut, lo, hi, step, extra}
   * where extra(i, j) gives further tooltip lines.
   */
  paint(spec, layout) {
    this.spec = spec;
    this.layout = layout;
    const { left, top, cell, W, H } = layout;
    this.title.textContent = spec.title;
    this.grid.style.gridTemplateColumns = `${left}px ${W}px ${COLORBAR_GUTTER}px`;
    this.grid.style.gridTemplateRows = `${top}px ${H}px`;
    this.source = matrixImage(spec.values, spec.rows, spec.cols, spec.lut, spec.lo, spec.hi);
    paintScaled(this.canvas, this.source, W, H);
    this.canvas.dataset.rows = String(spec.rows);
    this.canvas.dataset.cols = String(spec.cols);

    this.overlay.style.width = `${W}px`;
    this.overlay.style.height = `${H}px`;
    this.overlay.width = this.canvas.width;
    this.overlay.height = this.canvas.height;
    this.overlay.dataset.rows = String(spec.rows);
    this.overlay.dataset.cols = String(spec.cols);

    // The axis labels are rebuilt only when the tokens or their places change: playing or
    // scrubbing through the steps of one probe example leaves them (and a hovered one) alone.
    const labelsKey = JSON.stringify([left, top, cell, layout.rowStride, layout.colStride,
      layout.vertical, spec.queryLabels.join("\u0000"), spec.inputLabels.join("\u0000")]);
    if (labelsKey !== this.labelsKey) {
      this.labelsKey = labelsKey;
      this.paintLabels(spec, layout);
    }
    this.highlight(...this.highlighted);

    paintScaled(this.colorbar, colorbarImage(spec.lut), COLORBAR_WIDTH, H);
    this.ticks.replaceChildren();
    this.ticks.style.height = `${H}px`;
    for (const t of colorbarTicks(H)) {
      const value = spec.lo + (spec.hi - spec.lo) * t;
      const tick = el("span", { text: formatTick(value) });
      tick.style.top = `${(1 - t) * H}px`;
      this.ticks.append(tick);
    }
    const count = (Number(this.canvas.dataset.paintCount) || 0) + 1;
    this.canvas.dataset.painted = String(spec.step);
    this.canvas.dataset.paintCount = String(count);
    // When the frame showing this paint starts (epoch ms, comparable across frames): the
    // first-paint benchmark reads it.
    requestAnimationFrame(() => {
      if (this.canvas.dataset.paintCount === String(count)) {
        this.canvas.dataset.paintedAt = (performance.timeOrigin + performance.now()).toFixed(1);
      }
    });
  }

  paintLabels(spec, layout) {
    const { left, top, cell } = layout;
    this.queryAxis.replaceChildren();
    for (let i = 0; i < spec.rows; i += layout.rowStride) {
      const span = this.axisLabel(spec.queryLabels[i], i);
      span.style.top = `${(i + 0.5) * cell}px`;
      span.style.maxWidth = `${left - 8}px`;
      this.queryAxis.append(span);
    }
    this.inputAxis.replaceChildren();
    this.inputAxis.classList.toggle("vertical", layout.vertical);
    for (let j = 0; j < spec.cols; j += layout.colStride) {
      const span = this.axisLabel(spec.inputLabels[j], j);
      span.style.left = `${(j + 0.5) * cell}px`;
      if (layout.vertical) span.style.maxHeight = `${top - 8}px`;
      else span.style.maxWidth = `${Math.max(cell, 8)}px`;
      this.inputAxis.append(span);
    }
  }

  axisLabel(label, index) {
    const span = labelSpan(label, "label");
    // The full text on hover, as a property: never parsed as HTML.
    span.title = displayLabel(label);
    span.dataset.index = String(index);
    return span;
  }

  /** Draws the panel (as on screen) onto an export canvas context at (x, y). */
  drawInto(ctx, x, y) {
    const { spec, layout } = this;
    const { left, top, cell, W, H } = layout;
    ctx.save();
    ctx.translate(x, y);
    ctx.direction = "ltr"; // labels carry no direction controls (displayLabel names them)
    ctx.fillStyle = "#202124";
    ctx.font = `bold ${LABEL_FONT}`;
    ctx.textBaseline = "top";
    ctx.textAlign = "left";
    ctx.fillText(fitText(ctx, spec.title, this.width()), 0, 0);
    ctx.translate(0, 20);
    ctx.imageSmoothingEnabled = W < spec.cols || H < spec.rows;
    ctx.drawImage(this.source, left, top, W, H);
    ctx.font = LABEL_FONT;
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (let i = 0; i < spec.rows; i += layout.rowStride) {
      const text = fitText(ctx, displayLabel(spec.queryLabels[i]), left - 8);
      ctx.fillText(text, left - 5, top + (i + 0.5) * cell);
    }
    for (let j = 0; j < spec.cols; j += layout.colStride) {
      const label = displayLabel(spec.inputLabels[j]);
      const cx = left + (j + 0.5) * cell;
      if (layout.vertical) {
        ctx.save();
        ctx.translate(cx, top - 5);
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "left";
        ctx.fillText(fitText(ctx, label, top - 8), 0, 0);
        ctx.restore();
      } else {
        ctx.textAlign = "center";
        ctx.textBaseline = "bottom";
        ctx.fillText(fitText(ctx, label, Math.max(cell, 8)), cx, top - 4);
        ctx.textBaseline = "middle";
      }
    }
    const barX = left + W + 8;
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(colorbarImage(spec.lut), barX, top, COLORBAR_WIDTH, H);
    ctx.textAlign = "left";
    for (const t of colorbarTicks(H)) {
      const value = spec.lo + (spec.hi - spec.lo) * t;
      ctx.fillText(formatTick(value), barX + COLORBAR_WIDTH + 4, top + (1 - t) * H);
    }
    ctx.restore();
  }

  width() {
    return this.layout.left + this.layout.W + COLORBAR_GUTTER;
  }

  height() {
    return 20 + this.layout.top + this.layout.H;
  }
}

export function colorbarTicks(height) {
  return height >= 160 ? [0, 0.25, 0.5, 0.75, 1] : height >= 60 ? [0, 0.5, 1] : [0, 1];
}

