// The overview of a model: for one run, step and probe example, a grid of small heatmaps, one
// row per logged layer (in the model's order, as GET overview lists them) and one column per
// head, each row with a line of the layer's mean attention entropy over training (the current
// step marked). Hovering a thumbnail enlarges it; clicking it opens the detail view.
//
// Cost: each layer's row is one canvas (all its heads side by side), drawn from one atlas
// image of the layer (its heads' matrices as pixels, one putImageData); the thumbnails are
// transparent elements over it that take the hover and the click. A canvas per head would
// make the browser composite hundreds of canvases each frame (in headless Chromium without a
// GPU that alone took 150-350 ms for 288 of them); one per layer repaints a step of 24 layers
// x 12 heads of 64 x 64 in tens of milliseconds. The grid's elements are kept from step to
// step while the layers and their shapes stay the same.

import { VIRIDIS_LUT } from "./colormaps.js";
import { el, labelSpan, named, placeTooltip } from "./dom.js";
import { extent, headValues } from "./matrix.js";
import { matrixImage } from "./panel.js";

const THUMB = 56; // longest thumbnail edge, CSS pixels
const GAP = 6; // between two heads' thumbnails, CSS pixels
const SLOT = THUMB + GAP; // one head's column
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

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const packedLuts = new Map(); // lut -> its colours as opaque RGBA pixels, one uint32 each

/** The colours of lut as uint32 pixels in ImageData's RGBA byte order (little-endian). */
function packedLut(lut) {
  let packed = packedLuts.get(lut);
  if (!packed) {
    packed = new Uint32Array(256);
    for (let k = 0; k < 256; k++) {
      packed[k] = (0xff000000 | (lut[3 * k + 2] << 16) | (lut[3 * k + 1] << 8) | lut[3 * k]) >>> 0;
    }
    packedLuts.set(lut, packed);
  }
  return packed;
}

/**
 * Writes values (rows x cols) as colours into image at column x0 (alpha 255): one uint32 store
 * per pixel where the machine is little-endian (a step of 24 x 12 heads of 64 x 64 is 1.2
 * million pixels), else four byte stores.
 */
function fillPixels(image, x0, values, rows, cols, lut, lo, hi) {
  if (LITTLE_ENDIAN) {
    const pixels = new Uint32Array(image.data.buffer, image.data.byteOffset, image.width * image.height);
    const colours = packedLut(lut);
    const scale = 256 / (hi > lo ? hi - lo : 1);
    for (let i = 0; i < rows; i++) {
      let q = i * image.width + x0;
      for (let j = 0, p = i * cols; j < cols; j++, p++, q++) {
        const k = Math.floor((values[p] - lo) * scale);
        pixels[q] = colours[k > 255 ? 255 : k >= 0 ? k : 0]; // NaN lands on 0 too
      }
    }
    return;
  }
  const data = image.data;
  const stride = image.width * 4;
  const scale = 256 / (hi > lo ? hi - lo : 1);
  for (let i = 0; i < rows; i++) {
    let q = i * stride + x0 * 4;
    for (let j = 0, p = i * cols; j < cols; j++, p++, q += 4) {
      let k = Math.floor((values[p] - lo) * scale);
      k = k > 255 ? 255 : k >= 0 ? k : 0; // NaN lands on 0 too
      const c = k * 3;
      data[q] = lut[c];
      data[q + 1] = lut[c + 1];
      data[q + 2] = lut[c + 2];
      data[q + 3] = 255;
    }
  }
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
  const title = document.createElementNS(SVG_NS, "title");
  title.textContent = `mean attention entropy (nats), steps ${x0}–${x1}`;
  root.append(title);
  root.place = (x, y) => [px(x), py(y)];
  markStep(root, points, step);
  return root;
}

/**
 * Marks step on a sparkline made by sparkline(points): a vertical line and a dot at the logged
 * step nearest to it. Moves the marks it made before, so that a step move changes two
 * elements per line instead of rebuilding the line (24 lines of 500 points each step).
 */
function markStep(root, points, step) {
  if (!root.place || step === null || step === undefined) return;
  let best = 0;
  for (let k = 1; k < points.length; k++) {
    if (Math.abs(points[k][0] - step) < Math.abs(points[best][0] - step)) best = k;
  }
  const [sx, sy] = points[best];
  const [x, y] = root.place(sx, sy);
  let mark = root.querySelector(".spark-mark");
  let dot = root.querySelector(".spark-dot");
  if (!mark) {
    mark = document.createElementNS(SVG_NS, "line");
    mark.setAttribute("y1", "0");
    mark.setAttribute("y2", String(SPARK_H));
    mark.setAttribute("class", "spark-mark");
    dot = document.createElementNS(SVG_NS, "circle");
    dot.setAttribute("r", "2.5");
    dot.setAttribute("class", "spark-dot");
    root.append(mark, dot);
  }
  mark.setAttribute("x1", x.toFixed(1));
  mark.setAttribute("x2", x.toFixed(1));
  dot.setAttribute("cx", x.toFixed(1));
  dot.setAttribute("cy", y.toFixed(1));
  root.dataset.markedStep = String(sx);
  root.dataset.markedValue = String(sy);
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
    this.cells = []; // [{thumb, layer, head}]
    this.rows = []; // per layer: {canvas, atlas, w, h}
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
    this.grid.style.gridTemplateColumns = `minmax(120px, max-content) ${SPARK_W}px max-content`;
    const headLabels = el("div", { class: "overview-head heads-head" });
    headLabels.style.width = `${maxHeads * SLOT - GAP}px`;
    for (let h = 0; h < maxHeads; h++) {
      const span = el("span", { text: `head ${h}` });
      span.style.left = `${h * SLOT}px`;
      span.style.width = `${THUMB}px`;
      headLabels.append(span);
    }
    const nodes = [
      el("div", { class: "overview-head", text: "layer" }),
      el("div", { class: "overview-head", text: "mean entropy" }),
      headLabels,
    ];
    this.cells = [];
    this.rows = [];
    this.sparks = [];
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
      const [w, h] = fitted(layer.rows, layer.cols, THUMB);
      const canvas = el("canvas", { class: "overview-row" });
      canvas.dataset.layer = layer.layer;
      canvas.dataset.slot = String(SLOT);
      canvas.style.width = `${layer.heads * SLOT - GAP}px`;
      canvas.style.height = `${h}px`;
      const heads = el("div", { class: "overview-heads" }, canvas);
      heads.style.height = `${h}px`;
      for (let head = 0; head < layer.heads; head++) {
        const thumb = el("div", { class: "thumb" });
        thumb.dataset.tag = layer.tag;
        thumb.dataset.layer = layer.layer;
        thumb.dataset.head = String(head);
        thumb.dataset.heads = String(layer.heads);
        thumb.dataset.index = String(k);
        thumb.title = layer.heads > 1 ? `${layer.layer} · head ${head}` : layer.layer;
        thumb.setAttribute("role", "button");
        thumb.setAttribute("aria-label", thumb.title);
        Object.assign(thumb.style, { left: `${head * SLOT}px`, width: `${w}px`, height: `${h}px` });
        heads.append(thumb);
        this.cells.push({ thumb, layer: k, head });
      }
      this.rows.push({ canvas, atlas: document.createElement("canvas"), w, h });
      nodes.push(name, spark, heads);
    });
    this.grid.replaceChildren(...nodes);
  }

  /** Paints one step: data from loadOverview, entropy {layer: [[step, value]]}. */
  paint(data, entropy, scale) {
    this.data = data;
    this.scale = scale;
    this.build(data.layers);
    const dpr = window.devicePixelRatio || 1;
    data.layers.forEach((matrix, k) => {
      const { canvas, atlas, w, h } = this.rows[k];
      const { heads, rows, cols } = matrix;
      // The atlas: every head's matrix as pixels, side by side, on its own colour range.
      const image = new ImageData(cols * heads, rows);
      for (let head = 0; head < heads; head++) {
        const values = headValues(matrix, head);
        const [lo, hi] = scale === "unit" ? [0, 1] : extent(values);
        fillPixels(image, head * cols, values, rows, cols, VIRIDIS_LUT, lo, hi);
      }
      atlas.width = cols * heads;
      atlas.height = rows;
      atlas.getContext("2d").putImageData(image, 0, 0);
      const width = Math.round((heads * SLOT - GAP) * dpr);
      const height = Math.round(h * dpr);
      if (canvas.width !== width || canvas.height !== height) {
        canvas.width = width;
        canvas.height = height;
      }
      const ctx = canvas.getContext("2d");
      ctx.clearRect(0, 0, width, height);
      // Enlarging keeps cells as sharp squares; shrinking averages neighbouring cells, with
      // the costlier high-quality filter only where many cells fall on one pixel (in a
      // browser without a GPU it took most of a 24 x 12 grid's paint for 64 -> 56 pixels).
      ctx.imageSmoothingEnabled = w * dpr < cols || h * dpr < rows;
      ctx.imageSmoothingQuality = w * dpr * 2 < cols || h * dpr * 2 < rows ? "high" : "low";
      for (let head = 0; head < heads; head++) {
        ctx.drawImage(atlas, head * cols, 0, cols, rows, head * SLOT * dpr, 0, w * dpr, height);
      }
    });
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
      const holder = this.sparks[k];
      // The line stays while its points do; a new step only moves the mark.
      if (holder.points !== points) {
        holder.points = points;
        holder.replaceChildren(sparkline(points, step));
      } else if (holder.step !== step && holder.firstChild) {
        markStep(holder.firstChild, points, step);
      }
      holder.step = step;
    });
  }

  /**
   * What the grid shows now, for export.js (composeGridPng, composeGridSvg): per layer its name,
   * shape text, heads, thumbnail size (CSS pixels) and atlas (every head's matrix as pixels,
   * side by side); null before the first paint.
   */
  snapshot() {
    if (!this.data) return null;
    const layers = this.data.layers.map((matrix, k) => ({
      name: matrix.layer,
      shape: `${matrix.heads > 1 ? `${matrix.heads} × ` : ""}${matrix.rows} × ${matrix.cols}`,
      heads: matrix.heads,
      rows: matrix.rows,
      cols: matrix.cols,
      w: this.rows[k].w,
      h: this.rows[k].h,
      atlas: this.rows[k].atlas,
    }));
    const maxHeads = Math.max(1, ...layers.map((l) => l.heads));
    return { layers, maxHeads, slot: SLOT, gap: GAP, thumb: THUMB, step: this.data.step, example: this.data.example };
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
