// The overview of a model: for one run, step and probe example, a grid of small heatmaps, one
// row per logged layer (in the model's order, as GET overview lists them) and one column per
// head, each row with a line of the layer's mean attention entropy over training (the current
// step marked). Hovering a thumbnail enlarges it; clicking it opens the detail view.
//
// Cost: a thumbnail of a matrix up to THUMB_DIRECT cells a side is its matrix as pixels (one
// putImageData, scaled by CSS without smoothing), so a step of 24 layers x 12 heads of 64 x 64
// repaints in a few milliseconds; larger matrices are shrunk with smoothing first. The grid's
// elements are kept from step to step while the layers and their shapes stay the same.

import { VIRIDIS_LUT } from "./colormaps.js";
import { el, labelSpan, named, placeTooltip } from "./dom.js";
import { extent, headValues } from "./matrix.js";
import { matrixImage } from "./panel.js";

const THUMB = 56; // longest thumbnail edge, CSS pixels
const THUMB_DIRECT = 256; // matrices up to this many cells a side are drawn one pixel per cell
const ZOOM = 280; // longest edge of the enlarged thumbnail, CSS pixels
const SPARK_W = 120;
const SPARK_H = 30;
const SVG_NS = "http://www.w3.org/2000/svg";

/** Size in CSS pixels of a rows x cols matrix whose longest edge is edge pixels. */
function fitted(rows, cols, edge) {
  const scale = edge / Math.max(rows, cols);
  return [Math.max(4, Math.round(cols * scale)), Math.max(4, Math.round(rows * scale))];
}

/** Paints values (rows x cols) onto canvas at cssW x cssH CSS pixels. */
function paintThumb(canvas, values, rows, cols, lo, hi, cssW, cssH) {
  canvas.style.width = `${cssW}px`;
  canvas.style.height = `${cssH}px`;
  if (rows <= THUMB_DIRECT && cols <= THUMB_DIRECT) {
    const image = matrixImage(values, rows, cols, VIRIDIS_LUT, lo, hi, true);
    if (canvas.width !== cols || canvas.height !== rows) {
      canvas.width = cols;
      canvas.height = rows;
    }
    canvas.getContext("2d").putImageData(image, 0, 0);
    canvas.classList.add("pixelated");
    return;
  }
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  canvas.classList.remove("pixelated");
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(matrixImage(values, rows, cols, VIRIDIS_LUT, lo, hi), 0, 0, canvas.width, canvas.height);
}

/**
 * The layer's mean entropy over the steps as an SVG polyline, the current step marked by a
 * vertical line and a dot (at the logged step nearest to it).
 */
export function sparkline(points, step) {
  const root = document.createElementNS(SVG_NS, "svg");
  root.setAttribute("width", String(SPARK_W));
  root.setAttribute("height", String(SPARK_H));
  root.setAttribute("class", "sparkline");
  if (!points || points.length === 0) {
    root.dataset.points = "0";
    return root;
  }
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const px = (x) => 2 + ((x - x0) / (x1 - x0 || 1)) * (SPARK_W - 4);
  const py = (y) => SPARK_H - 3 - ((y - y0) / (y1 - y0 || 1)) * (SPARK_H - 6);
  const line = document.createElementNS(SVG_NS, "polyline");
  line.setAttribute("points", points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" "));
  line.setAttribute("class", "spark-line");
  root.append(line);
  root.dataset.points = String(points.length);
  if (step !== null && step !== undefined) {
    let best = 0;
    for (let k = 1; k < points.length; k++) {
      if (Math.abs(points[k][0] - step) < Math.abs(points[best][0] - step)) best = k;
    }
    const [sx, sy] = points[best];
    const mark = document.createElementNS(SVG_NS, "line");
    mark.setAttribute("x1", px(sx).toFixed(1));
    mark.setAttribute("x2", px(sx).toFixed(1));
    mark.setAttribute("y1", "0");
    mark.setAttribute("y2", String(SPARK_H));
    mark.setAttribute("class", "spark-mark");
    const dot = document.createElementNS(SVG_NS, "circle");
    dot.setAttribute("cx", px(sx).toFixed(1));
    dot.setAttribute("cy", py(sy).toFixed(1));
    dot.setAttribute("r", "2.5");
    dot.setAttribute("class", "spark-dot");
    root.append(mark, dot);
    root.dataset.markedStep = String(sx);
    root.dataset.markedValue = String(sy);
  }
  const title = document.createElementNS(SVG_NS, "title");
  title.textContent = `mean attention entropy (nats), steps ${x0}–${x1}`;
  root.append(title);
  return root;
}

export class Overview {
  /** open(tag, head): called when a thumbnail is clicked. */
  constructor(open) {
    this.open = open;
    this.root = named("div", "overview", { class: "overview", hidden: "" });
    this.grid = el("div", { class: "overview-grid" });
    this.zoom = named("div", "overview-zoom", { class: "overview-zoom", hidden: "" });
    this.zoomTitle = el("div", { class: "zoom-title" });
    this.zoomCanvas = named("canvas", "overview-zoom-canvas", { class: "pixelated-maybe" });
    this.zoom.append(this.zoomTitle, this.zoomCanvas);
    this.root.append(this.grid, this.zoom);
    this.structure = "";
    this.cells = []; // [{canvas, layer, head}]
    this.sparks = []; // one holder per layer row
    this.data = null;
    this.grid.addEventListener("mouseover", (event) => this.hover(event));
    this.grid.addEventListener("mousemove", (event) => this.hover(event));
    this.grid.addEventListener("mouseleave", () => this.unhover());
    this.grid.addEventListener("click", (event) => {
      const cell = event.target.closest(".thumb");
      if (cell) this.open(cell.dataset.tag, Number(cell.dataset.head), cell.dataset.heads);
    });
  }

  /** Builds the rows and cells for these layers (only when the layers or shapes change). */
  build(layers) {
    const structure = JSON.stringify(layers.map((l) => [l.tag, l.heads, l.rows, l.cols]));
    if (structure === this.structure) return;
    this.structure = structure;
    const maxHeads = Math.max(1, ...layers.map((l) => l.heads));
    this.grid.style.gridTemplateColumns = `minmax(120px, max-content) ${SPARK_W}px repeat(${maxHeads}, max-content)`;
    const header = [el("div", { class: "overview-head", text: "layer" }), el("div", { class: "overview-head", text: "mean entropy" })];
    for (let h = 0; h < maxHeads; h++) header.push(el("div", { class: "overview-head", text: `head ${h}` }));
    this.cells = [];
    this.sparks = [];
    const nodes = [...header];
    layers.forEach((layer, k) => {
      const name = el("div", { class: "overview-layer" });
      const title = labelSpan(layer.layer, "layer-name");
      title.title = layer.layer;
      const shape = el("span", {
        class: "layer-shape",
        text: `${layer.heads > 1 ? `${layer.heads} × ` : ""}${layer.rows} × ${layer.cols}`,
      });
      name.append(title, shape);
      name.dataset.layer = layer.layer;
      const spark = el("div", { class: "overview-spark" });
      spark.dataset.layer = layer.layer;
      this.sparks.push(spark);
      nodes.push(name, spark);
      const [w, h] = fitted(layer.rows, layer.cols, THUMB);
      for (let head = 0; head < maxHeads; head++) {
        if (head >= layer.heads) {
          nodes.push(el("div", { class: "thumb-empty" }));
          continue;
        }
        const canvas = el("canvas", { class: "thumb" });
        canvas.dataset.tag = layer.tag;
        canvas.dataset.layer = layer.layer;
        canvas.dataset.head = String(head);
        canvas.dataset.heads = String(layer.heads);
        canvas.dataset.index = String(k);
        canvas.title = layer.heads > 1 ? `${layer.layer} · head ${head}` : layer.layer;
        canvas.setAttribute("role", "button");
        canvas.setAttribute("aria-label", canvas.title);
        canvas.style.width = `${w}px`;
        canvas.style.height = `${h}px`;
        const holder = el("div", { class: "thumb-cell" }, canvas);
        nodes.push(holder);
        this.cells.push({ canvas, layer: k, head });
      }
    });
    this.grid.replaceChildren(...nodes);
  }

  /** Paints one step: data from loadOverview, entropy {layer: [[step, value]]}. */
  paint(data, entropy, scale) {
    this.data = data;
    this.scale = scale;
    this.build(data.layers);
    for (const { canvas, layer, head } of this.cells) {
      const matrix = data.layers[layer];
      const values = headValues(matrix, head);
      const [lo, hi] = scale === "unit" ? [0, 1] : extent(values);
      const [w, h] = fitted(matrix.rows, matrix.cols, THUMB);
      paintThumb(canvas, values, matrix.rows, matrix.cols, lo, hi, w, h);
    }
    this.paintSparks(entropy, data.step);
    const count = (Number(this.root.dataset.paintCount) || 0) + 1;
    this.root.dataset.painted = String(data.step);
    this.root.dataset.example = String(data.example);
    this.root.dataset.paintCount = String(count);
    this.root.dataset.cells = String(this.cells.length);
    requestAnimationFrame(() => {
      if (this.root.dataset.paintCount === String(count)) {
        this.root.dataset.paintedAt = (performance.timeOrigin + performance.now()).toFixed(1);
      }
    });
    if (!this.zoom.hidden && this.zoomed) this.showZoom(this.zoomed);
  }

  paintSparks(entropy, step) {
    if (!this.data) return;
    this.data.layers.forEach((layer, k) => {
      const points = entropy ? entropy[layer.layer] : null;
      this.sparks[k].replaceChildren(sparkline(points, step));
    });
  }

  hover(event) {
    const cell = event.target.closest(".thumb");
    if (!cell) {
      this.unhover();
      return;
    }
    if (this.zoomed !== cell) this.showZoom(cell);
    const rect = cell.getBoundingClientRect();
    placeTooltip(this.zoom, rect.right - 14, rect.top - 14, 8);
  }

  showZoom(cell) {
    this.zoomed = cell;
    const matrix = this.data.layers[Number(cell.dataset.index)];
    if (!matrix || matrix.tag !== cell.dataset.tag) return;
    const head = Number(cell.dataset.head);
    const values = headValues(matrix, head);
    const [lo, hi] = this.scale === "unit" ? [0, 1] : extent(values);
    const [w, h] = fitted(matrix.rows, matrix.cols, ZOOM);
    this.zoomTitle.replaceChildren(
      labelSpan(matrix.layer),
      el("span", { text: matrix.heads > 1 ? ` · head ${head}` : "" }),
      el("span", { class: "zoom-hint", text: " · click for details" }),
    );
    paintThumb(this.zoomCanvas, values, matrix.rows, matrix.cols, lo, hi, w, h);
    this.zoom.dataset.tag = matrix.tag;
    this.zoom.dataset.head = String(head);
    this.zoom.hidden = false;
  }

  unhover() {
    this.zoomed = null;
    this.zoom.hidden = true;
  }
}
