// The frontend of TensorBoard's "attention" plugin: labelled, interactive attention heatmaps.
//
// TensorBoard loads this module inside the plugin's iframe (whose <base href> is
// plugin/attention/ under data/) and calls render(). Hence:
// - every request uses a relative URL ("./tags"), so the tab works under --path_prefix and proxies;
// - nothing is loaded from elsewhere (TensorBoard's Content-Security-Policy forbids it) and no
//   third-party code is used;
// - user text (token labels, run and tag names) only ever reaches the page through textContent,
//   the title property or canvas fillText: never through HTML parsing, so a label such as
//   <img src=x onerror=alert(1)> is shown literally and runs nothing.
//
// The data contract (routes tags, steps, matrix; the binary matrix layout) is described in the
// README's "HTTP API" section.

const POLL_MS = 5000; // how often ./tags is re-read so that new steps appear during training
const PLAY_MS = 450; // pause between two frames of the step animation
const CACHE_BYTES = 192 * 1024 * 1024; // decoded matrices kept for slider scrubbing and playback
const MAX_CELL = 48; // largest cell edge in CSS pixels: small matrices stay readable, not huge
const LABEL_LINE = 14; // CSS pixels one axis label needs along its axis
const LABEL_FONT = '12px "DejaVu Sans", "Helvetica Neue", Arial, sans-serif';
const MAX_QUERY_GUTTER = 160; // widest left label column, CSS pixels (longer labels get "…")
const MAX_INPUT_GUTTER = 120; // tallest rotated top label row, CSS pixels
const COLORBAR_WIDTH = 14;
const COLORBAR_GUTTER = 70; // colour bar plus its tick labels

// ---------------------------------------------------------------------------------------------
// Colour maps

// Viridis, the default colour map of matplotlib (and so of the stock image summaries).
// Anchors: 33 evenly spaced entries (index in 0..255, then r, g, b in 0..1) of the published
// 256-entry viridis table by Stéfan van der Walt and Nathaniel Smith (2015),
// https://bids.github.io/colormap/ (the table ships as matplotlib's _viridis_data). Linear
// interpolation between these anchors stays within 2/255 of the full table.
const VIRIDIS_ANCHORS = [
  [0, 0.267004, 0.004874, 0.329415], [8, 0.277018, 0.050344, 0.375715],
  [16, 0.282327, 0.094955, 0.417331], [24, 0.282884, 0.13592, 0.453427],
  [32, 0.278826, 0.17549, 0.483397], [40, 0.270595, 0.214069, 0.507052],
  [48, 0.258965, 0.251537, 0.524736], [56, 0.244972, 0.287675, 0.53726],
  [64, 0.229739, 0.322361, 0.545706], [72, 0.214298, 0.355619, 0.551184],
  [80, 0.19943, 0.387607, 0.554642], [88, 0.185556, 0.41857, 0.556753],
  [96, 0.172719, 0.448791, 0.557885], [104, 0.160665, 0.47854, 0.558115],
  [112, 0.149039, 0.508051, 0.55725], [120, 0.13777, 0.537492, 0.554906],
  [128, 0.127568, 0.566949, 0.550556], [135, 0.121148, 0.592739, 0.544641],
  [143, 0.120081, 0.622161, 0.534946], [151, 0.130067, 0.651384, 0.521608],
  [159, 0.153894, 0.680203, 0.504172], [167, 0.19109, 0.708366, 0.482284],
  [175, 0.239374, 0.735588, 0.455688], [183, 0.296479, 0.761561, 0.424223],
  [191, 0.360741, 0.785964, 0.387814], [199, 0.430983, 0.808473, 0.346476],
  [207, 0.506271, 0.828786, 0.300362], [215, 0.585678, 0.846661, 0.249897],
  [223, 0.668054, 0.861999, 0.196293], [231, 0.751884, 0.874951, 0.143228],
  [239, 0.83527, 0.886029, 0.102646], [247, 0.916242, 0.896091, 0.100717],
  [255, 0.993248, 0.906157, 0.143936],
];

// Diverging map for differences: ColorBrewer's 11-class RdBu by Cynthia Brewer,
// https://colorbrewer2.org, listed from blue (decrease) through white to red (increase).
const DIVERGING_HEX = [
  "#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
  "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f",
];

function hexAnchors(hexes) {
  const last = hexes.length - 1;
  return hexes.map((hex, k) => [
    (k * 255) / last,
    parseInt(hex.slice(1, 3), 16) / 255,
    parseInt(hex.slice(3, 5), 16) / 255,
    parseInt(hex.slice(5, 7), 16) / 255,
  ]);
}

/** A 256-entry RGB lookup table (Uint8Array of 768) interpolated linearly between anchors. */
export function buildLut(anchors) {
  const lut = new Uint8Array(256 * 3);
  let a = 0;
  for (let i = 0; i < 256; i++) {
    while (a < anchors.length - 2 && anchors[a + 1][0] < i) a++;
    const [x0, ...c0] = anchors[a];
    const [x1, ...c1] = anchors[a + 1];
    const t = x1 === x0 ? 0 : Math.min(1, Math.max(0, (i - x0) / (x1 - x0)));
    for (let c = 0; c < 3; c++) {
      lut[i * 3 + c] = Math.round((c0[c] + (c1[c] - c0[c]) * t) * 255);
    }
  }
  return lut;
}

export const VIRIDIS_LUT = buildLut(VIRIDIS_ANCHORS);
export const DIVERGING_LUT = buildLut(hexAnchors(DIVERGING_HEX));

/** The LUT index of value v on [lo, hi], binned like matplotlib's colormaps (floor(x * 256)). */
export function colorIndex(v, lo, hi) {
  const span = hi > lo ? hi - lo : 1;
  const k = Math.floor(((v - lo) / span) * 256);
  return k > 255 ? 255 : k >= 0 ? k : 0; // NaN lands on 0 too
}

// ---------------------------------------------------------------------------------------------
// Data: parsing and helpers (pure functions, exported for tests)

/**
 * Decodes the binary form of GET matrix: uint32 LE header length L, L bytes of UTF-8 JSON,
 * zero padding to a multiple of 4, then heads * queries * inputs float32 LE values.
 */
export function parseMatrixBinary(buffer) {
  if (buffer.byteLength < 4) throw new Error("matrix response too short");
  const view = new DataView(buffer);
  const headerLength = view.getUint32(0, true);
  if (4 + headerLength > buffer.byteLength) throw new Error("matrix header overruns the response");
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, headerLength)));
  const shape = header.shape;
  if (!Array.isArray(shape) || shape.length < 2 || shape.length > 3) {
    throw new Error(`matrix shape must have 2 or 3 dimensions, got ${JSON.stringify(shape)}`);
  }
  const rows = shape[shape.length - 2];
  const cols = shape[shape.length - 1];
  const heads = shape.length === 3 ? shape[0] : 1;
  const count = heads * rows * cols;
  const offset = Math.ceil((4 + headerLength) / 4) * 4;
  if (offset + count * 4 > buffer.byteLength) {
    throw new Error(`matrix values truncated: expected ${count} float32 values`);
  }
  let values;
  if (LITTLE_ENDIAN) {
    values = new Float32Array(buffer, offset, count);
  } else {
    values = new Float32Array(count);
    for (let i = 0; i < count; i++) values[i] = view.getFloat32(offset + 4 * i, true);
  }
  const inputLabels = header.input_labels || [];
  const queryLabels = header.query_labels || [];
  if (inputLabels.length !== cols || queryLabels.length !== rows) {
    throw new Error(
      `matrix labels do not match its shape: ${queryLabels.length} query and ` +
        `${inputLabels.length} input labels for ${rows} x ${cols}`,
    );
  }
  return {
    step: header.step,
    wallTime: header.wall_time,
    heads,
    rows,
    cols,
    values,
    inputLabels: inputLabels.map(String),
    queryLabels: queryLabels.map(String),
    bytes: buffer.byteLength,
  };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

const naturalOrder = (a, b) => a.localeCompare(b, undefined, { numeric: true });

/**
 * Groups tag names by layer: the part before the last "/" ("" when there is none).
 * Returns [{layer, tags: [{tag, name}]}] in natural order (example 10 after example 9).
 */
export function groupTags(tags) {
  const groups = new Map();
  for (const tag of [...tags].sort(naturalOrder)) {
    const cut = tag.lastIndexOf("/");
    const layer = cut < 0 ? "" : tag.slice(0, cut);
    if (!groups.has(layer)) groups.set(layer, []);
    groups.get(layer).push({ tag, name: cut < 0 ? tag : tag.slice(cut + 1) });
  }
  return [...groups.keys()].sort(naturalOrder).map((layer) => ({ layer, tags: groups.get(layer) }));
}

/** Every how-many-th label fits when each cell is cellPx wide and a label needs linePx. */
export function labelStride(cellPx, linePx = LABEL_LINE) {
  return cellPx >= linePx ? 1 : Math.ceil(linePx / Math.max(cellPx, 1e-6));
}

/** One head of a (heads, rows, cols) block, or the mean over heads when head is "mean". */
export function headValues(matrix, head) {
  const size = matrix.rows * matrix.cols;
  if (head === "mean") {
    const out = new Float32Array(size);
    for (let h = 0; h < matrix.heads; h++) {
      const part = matrix.values.subarray(h * size, (h + 1) * size);
      for (let i = 0; i < size; i++) out[i] += part[i];
    }
    for (let i = 0; i < size; i++) out[i] /= matrix.heads;
    return out;
  }
  const h = Math.min(Math.max(0, head | 0), matrix.heads - 1);
  return matrix.values.subarray(h * size, (h + 1) * size);
}

/** Minimum and maximum of finite values ([0, 1] for an empty array). */
export function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : [0, 1];
}

/** Token labels as shown: whitespace-only tokens become visible ("␣" for a space). */
export function displayLabel(label) {
  if (label === "") return "∅";
  if (/^\s+$/.test(label)) return label.replace(/ /g, "␣").replace(/\n/g, "↵").replace(/\t/g, "⇥");
  return label;
}

export function formatWeight(v) {
  return Number.isFinite(v) ? v.toFixed(4) : String(v);
}

function formatTick(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e-3 && a < 1e4 ? String(Number(v.toPrecision(3))) : v.toExponential(1);
}

function safeFileName(text) {
  return text.replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^_+|_+$/g, "") || "attention";
}

// ---------------------------------------------------------------------------------------------
// HTTP

function query(params) {
  return Object.entries(params)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join("&");
}

async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) message = String(body.error);
  } catch {
    // not JSON: keep the status line
  }
  return new Error(message);
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw await failure(response);
  return response.json();
}

const matrixCache = new Map(); // key -> Promise<matrix>, in least-recently-used order
let cachedBytes = 0;

function matrixKey(run, tag, step) {
  return JSON.stringify([run, tag, step]);
}

function loadMatrix(run, tag, step) {
  const key = matrixKey(run, tag, step);
  const hit = matrixCache.get(key);
  if (hit) {
    matrixCache.delete(key); // re-insert: most recently used
    matrixCache.set(key, hit);
    return hit;
  }
  const promise = (async () => {
    const response = await fetch(`./matrix?${query({ run, tag, step, format: "binary" })}`);
    if (!response.ok) throw await failure(response);
    const matrix = parseMatrixBinary(await response.arrayBuffer());
    cachedBytes += matrix.bytes;
    while (cachedBytes > CACHE_BYTES && matrixCache.size > 1) {
      const [oldKey, oldPromise] = matrixCache.entries().next().value;
      matrixCache.delete(oldKey);
      oldPromise.then((m) => (cachedBytes -= m.bytes)).catch(() => {});
    }
    return matrix;
  })();
  matrixCache.set(key, promise);
  promise.catch(() => matrixCache.delete(key)); // a failed load may succeed later
  return promise;
}

// ---------------------------------------------------------------------------------------------
// DOM helpers (text only through textContent)

function el(tag, attrs = {}, ...children) {
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
function named(tag, name, attrs = {}, ...children) {
  return el(tag, { id: name, "data-testid": name, ...attrs }, ...children);
}

let measureContext = null;
function textWidth(text) {
  if (!measureContext) {
    measureContext = document.createElement("canvas").getContext("2d");
    measureContext.font = LABEL_FONT;
  }
  return measureContext.measureText(text).width;
}

function widestLabel(labels, cap) {
  let widest = 0;
  for (const label of labels) {
    widest = Math.max(widest, textWidth(displayLabel(label)));
    if (widest >= cap) return cap;
  }
  return Math.ceil(widest);
}

/** Fits text into maxWidth pixels of the current canvas font, ending with "…" when cut. */
function fitText(ctx, text, maxWidth) {
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

// ---------------------------------------------------------------------------------------------
// Painting

/** The matrix as an image of cols x rows pixels, one per cell, via ImageData. */
function matrixImage(values, rows, cols, lut, lo, hi) {
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
  const canvas = document.createElement("canvas");
  canvas.width = cols;
  canvas.height = rows;
  canvas.getContext("2d").putImageData(image, 0, 0);
  return canvas;
}

function colorbarImage(lut) {
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
function paintScaled(canvas, source, cssW, cssH) {
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

// ---------------------------------------------------------------------------------------------
// One heatmap panel: title, axis labels, canvas, colour bar

/**
 * Sizes a panel for a matrix of rows x cols within widthBudget x heightBudget CSS pixels.
 * Returns {left, top, cell, W, H, vertical, rowStride, colStride}.
 */
function layoutPanel(spec, widthBudget, heightBudget) {
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
function alignLayouts(layouts) {
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

class Panel {
  constructor(role, onHover, onLeave) {
    const suffix = role === "main" ? "" : `-${role}`;
    this.role = role;
    this.title = named("figcaption", `panel-title${suffix}`, { class: "panel-title" });
    this.canvas = named("canvas", `heatmap${suffix}`, { class: "heatmap" });
    this.queryAxis = named("div", `query-labels${suffix}`, { class: "axis axis-query" });
    this.inputAxis = named("div", `input-labels${suffix}`, { class: "axis axis-input" });
    this.colorbar = named("canvas", `colorbar${suffix}`, { class: "colorbar" });
    this.ticks = el("div", { class: "colorbar-ticks" });
    const colorbarCell = el("div", { class: "colorbar-cell" }, this.colorbar, this.ticks);
    // Grid: row 1 holds the input labels above the heatmap; row 2 the query labels, the
    // heatmap and the colour bar.
    const place = (node, row, column) => Object.assign(node.style, { gridRow: row, gridColumn: column });
    place(this.inputAxis, 1, 2);
    place(this.queryAxis, 2, 1);
    place(this.canvas, 2, 2);
    place(colorbarCell, 2, 3);
    this.grid = el(
      "div",
      { class: "panel-grid" },
      this.inputAxis,
      this.queryAxis,
      this.canvas,
      colorbarCell,
    );
    this.root = el("figure", { class: "panel", "data-role": role }, this.title, this.grid);
    this.spec = null;
    this.canvas.addEventListener("mousemove", (event) => {
      if (this.spec) onHover(this, this.cellAt(event), event);
    });
    this.canvas.addEventListener("mouseleave", onLeave);
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

    this.queryAxis.replaceChildren();
    for (let i = 0; i < spec.rows; i += layout.rowStride) {
      const label = spec.queryLabels[i];
      const span = el("span", { class: "label", text: displayLabel(label) });
      span.title = label; // the full text on hover, as a property: never parsed as HTML
      span.dataset.index = String(i);
      span.style.top = `${(i + 0.5) * cell}px`;
      span.style.maxWidth = `${left - 8}px`;
      this.queryAxis.append(span);
    }
    this.inputAxis.replaceChildren();
    this.inputAxis.classList.toggle("vertical", layout.vertical);
    for (let j = 0; j < spec.cols; j += layout.colStride) {
      const label = spec.inputLabels[j];
      const span = el("span", { class: "label", text: displayLabel(label) });
      span.title = label;
      span.dataset.index = String(j);
      span.style.left = `${(j + 0.5) * cell}px`;
      if (layout.vertical) span.style.maxHeight = `${top - 8}px`;
      else span.style.maxWidth = `${Math.max(cell, 8)}px`;
      this.inputAxis.append(span);
    }

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

  /** Draws the panel (as on screen) onto an export canvas context at (x, y). */
  drawInto(ctx, x, y) {
    const { spec, layout } = this;
    const { left, top, cell, W, H } = layout;
    ctx.save();
    ctx.translate(x, y);
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

function colorbarTicks(height) {
  return height >= 160 ? [0, 0.25, 0.5, 0.75, 1] : height >= 60 ? [0, 0.5, 1] : [0, 1];
}

// ---------------------------------------------------------------------------------------------
// Styles (injected with textContent: the iframe loads nothing but this module)

const STYLE = `
.attn { font: 13px/1.4 "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #202124;
  padding: 12px 16px; }
.attn .toolbar { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 16px;
  margin-bottom: 8px; }
.attn .toolbar label { display: inline-flex; align-items: center; gap: 6px; }
.attn select { max-width: 320px; font: inherit; padding: 2px 4px; }
.attn button { font: inherit; padding: 3px 10px; border: 1px solid #bbb; border-radius: 4px;
  background: #f8f9fa; cursor: pointer; }
.attn button:hover:not(:disabled) { background: #e8eaed; }
.attn button:disabled, .attn input:disabled, .attn select:disabled { opacity: .5; cursor: default; }
.attn input[type=range] { width: 240px; }
.attn .step-label { font-variant-numeric: tabular-nums; min-width: 92px; font-weight: 600; }
.attn .step-position { color: #5f6368; font-variant-numeric: tabular-nums; }
.attn .spacer { flex: 1; }
.attn [hidden] { display: none !important; }
.attn .status { min-height: 1.4em; color: #5f6368; }
.attn .status.error { color: #c5221f; }
.attn .view { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.attn .panel { margin: 0; }
.attn .panel-title { font-weight: 600; height: 20px; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.attn .panel-grid { display: grid; }
.attn .heatmap { display: block; cursor: crosshair; }
.attn .axis { position: relative; font: ${LABEL_FONT}; color: #3c4043; }
.attn .axis .label { position: absolute; white-space: pre; overflow: hidden;
  text-overflow: ellipsis; line-height: 14px; }
.attn .axis-query .label { right: 6px; transform: translateY(-50%); }
.attn .axis-input .label { bottom: 4px; transform: translateX(-50%); text-align: center; }
.attn .axis-input.vertical .label { writing-mode: vertical-rl;
  transform: translateX(-50%) rotate(180deg); text-align: left; }
.attn .colorbar-cell { position: relative; display: flex; gap: 4px; padding-left: 8px; }
.attn .colorbar { display: block; border: 0; }
.attn .colorbar-ticks { position: relative; font-size: 11px; color: #3c4043; flex: 1; }
.attn .colorbar-ticks span { position: absolute; left: 0; transform: translateY(-50%);
  white-space: nowrap; font-variant-numeric: tabular-nums; }
.attn .tooltip { position: fixed; z-index: 10; pointer-events: none; background: #202124;
  color: #fff; padding: 6px 8px; border-radius: 4px; font-size: 12px; max-width: 360px;
  box-shadow: 0 2px 6px rgba(0,0,0,.3); }
.attn .tooltip div { white-space: pre-wrap; word-break: break-all; }
.attn .tooltip .key { color: #9aa0a6; display: inline-block; min-width: 52px; }
.attn .tooltip .value { font-weight: 600; font-variant-numeric: tabular-nums; }
.attn .empty { max-width: 760px; }
.attn .empty h2 { font-size: 18px; margin: 8px 0; }
.attn .empty pre { background: #f1f3f4; padding: 10px 12px; border-radius: 4px; overflow: auto;
  font: 12px/1.5 "DejaVu Sans Mono", monospace; }
.attn .notice { color: #b06000; }
`;

// ---------------------------------------------------------------------------------------------
// The application

const SNIPPET_SUMMARY = `import tensorflow as tf
from tb_plugin.summary import attention

with tf.summary.create_file_writer("runs/example").as_default():
    # weights: one example's (queries, inputs) matrix, or (heads, queries, inputs)
    attention("decoder_attention/0", weights, step=step,
              input_labels=["le", "chat", "noir", "."],
              query_labels=["the", "black", "cat", "."])`;

const SNIPPET_CALLBACK = `from keras_seqattn import AttentionLogger

model.fit(x, y, epochs=10, callbacks=[
    AttentionLogger("runs/example", probe=x_probe,
                    input_labels=source_tokens, query_labels=target_tokens),
])`;

const SNIPPET_SERVE = `tensorboard --logdir runs --samples_per_plugin attention=0`;

function emptyState() {
  return named(
    "div",
    "empty-state",
    { class: "empty", hidden: "" },
    el("h2", { text: "No attention data in this logdir yet" }),
    el("p", {
      text:
        "This tab shows attention weights written with the attention summary, as heatmaps " +
        "labelled with their tokens. Log the weights of a few fixed examples during training:",
    }),
    named("pre", "empty-snippet", { text: SNIPPET_SUMMARY }),
    el("p", { text: "or, with a Keras model holding SequenceAttention layers, add the callback:" }),
    el("pre", { text: SNIPPET_CALLBACK }),
    el("p", {
      text:
        "New data appears here on its own while training runs. TensorBoard keeps only a " +
        "sample of the steps by default; to browse every logged step, start it with:",
    }),
    el("pre", { text: SNIPPET_SERVE }),
  );
}

class AttentionApp {
  constructor(host) {
    this.tags = {}; // run -> tag -> info, as served by ./tags
    this.tagsJson = "";
    this.menuNames = null;
    this.run = null;
    this.tag = null;
    this.head = 0;
    this.steps = []; // [{step, wall_time}]
    this.stepIndex = -1;
    this.followLatest = true; // at the latest step: move on when new steps arrive
    this.compare = false;
    this.compareIndex = 0;
    this.scale = "auto";
    this.playing = false;
    this.playTimer = null;
    this.rendering = null;
    this.renderPending = false;
    this.refreshing = null;
    this.panels = [];
    this.build(host);
  }

  build(host) {
    const style = document.createElement("style");
    style.textContent = STYLE;
    document.head.append(style);

    this.runSelect = named("select", "run-select", { "aria-label": "run" });
    this.tagSelect = named("select", "tag-select", { "aria-label": "tag" });
    this.headSelect = named("select", "head-select", { "aria-label": "head" });
    this.headField = el("label", { hidden: "" }, "Head", this.headSelect);
    this.scaleSelect = named("select", "scale-select", { "aria-label": "colour scale" });
    this.scaleSelect.append(
      el("option", { value: "auto", text: "min – max of the matrix" }),
      el("option", { value: "unit", text: "fixed 0 – 1" }),
    );
    this.playButton = named("button", "play-button", { type: "button", text: "▶ Play" });
    this.stepSlider = named("input", "step-slider", {
      type: "range",
      min: "0",
      max: "0",
      value: "0",
      "aria-label": "training step",
    });
    this.stepLabel = named("span", "step-label", { class: "step-label", text: "step –" });
    this.stepPosition = named("span", "step-position", { class: "step-position" });
    this.compareToggle = named("input", "compare-toggle", { type: "checkbox" });
    this.compareSlider = named("input", "compare-slider", {
      type: "range",
      min: "0",
      max: "0",
      value: "0",
      "aria-label": "reference step",
    });
    this.compareLabel = named("span", "compare-label", { class: "step-label" });
    this.compareField = el("span", { hidden: "" }, this.compareSlider, this.compareLabel);
    this.exportPng = named("button", "export-png", { type: "button", text: "Export PNG" });
    this.exportCsv = named("button", "export-csv", { type: "button", text: "Export CSV" });
    this.status = named("div", "status", { class: "status", role: "status" });
    this.empty = emptyState();
    this.view = named("div", "view", { class: "view" });
    this.tooltip = named("div", "tooltip", { class: "tooltip", role: "tooltip", hidden: "" });
    this.controls = el(
      "div",
      {},
      el(
        "div",
        { class: "toolbar" },
        el("label", {}, "Run", this.runSelect),
        el("label", {}, "Tag", this.tagSelect),
        this.headField,
        el("label", {}, "Colour scale", this.scaleSelect),
      ),
      el(
        "div",
        { class: "toolbar" },
        this.playButton,
        this.stepSlider,
        this.stepLabel,
        this.stepPosition,
        el("label", {}, this.compareToggle, "Compare with"),
        this.compareField,
        el("span", { class: "spacer" }),
        this.exportPng,
        this.exportCsv,
      ),
    );
    this.root = named(
      "div",
      "attention-root",
      { class: "attn", "data-state": "loading" },
      this.controls,
      this.status,
      this.empty,
      this.view,
      this.tooltip,
    );
    host.append(this.root);

    this.runSelect.addEventListener("change", () => this.chooseRun(this.runSelect.value));
    this.tagSelect.addEventListener("change", () => this.chooseTag(this.tagSelect.value));
    this.headSelect.addEventListener("change", () => {
      this.head = this.headSelect.value === "mean" ? "mean" : Number(this.headSelect.value);
      this.renderView();
    });
    this.scaleSelect.addEventListener("change", () => {
      this.scale = this.scaleSelect.value;
      this.renderView();
    });
    this.stepSlider.addEventListener("input", () => {
      this.setStepIndex(Number(this.stepSlider.value));
      this.renderView();
    });
    this.compareToggle.addEventListener("change", () => {
      this.compare = this.compareToggle.checked;
      this.compareField.hidden = !this.compare;
      this.renderView();
    });
    this.compareSlider.addEventListener("input", () => {
      this.compareIndex = Number(this.compareSlider.value);
      this.updateStepControls();
      this.renderView();
    });
    this.playButton.addEventListener("click", () => (this.playing ? this.stop() : this.play()));
    this.exportPng.addEventListener("click", () => this.downloadPng());
    this.exportCsv.addEventListener("click", () => this.downloadCsv());
    let resizeFrame = 0;
    window.addEventListener("resize", () => {
      cancelAnimationFrame(resizeFrame);
      resizeFrame = requestAnimationFrame(() => this.renderView());
    });
    this.setControlsEnabled(false);
    this.setStatus("Loading…");
  }

  setStatus(text, isError = false) {
    this.status.textContent = text;
    this.status.classList.toggle("error", isError);
  }

  setControlsEnabled(enabled) {
    for (const control of [
      this.runSelect,
      this.tagSelect,
      this.headSelect,
      this.stepSlider,
      this.playButton,
      this.compareToggle,
      this.compareSlider,
      this.exportPng,
      this.exportCsv,
    ]) {
      control.disabled = !enabled;
    }
  }

  // ---- data refresh (initial load, polling, TensorBoard's reload)

  /**
   * Re-reads ./tags (or takes the given pending answer); keeps the user's run, tag, head and
   * step where they still exist.
   */
  refresh(pendingTags = null) {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh(pendingTags).finally(() => (this.refreshing = null));
    }
    return this.refreshing;
  }

  async doRefresh(pendingTags) {
    let tags;
    try {
      tags = await (pendingTags || getJson("./tags"));
    } catch (error) {
      this.setStatus(`Could not load the tag list: ${error.message}`, true);
      if (this.root.dataset.state === "loading") this.root.dataset.state = "error";
      return;
    }
    const json = JSON.stringify(tags);
    if (json === this.tagsJson) return;
    const previous = this.tags;
    this.tags = tags;
    this.tagsJson = json;
    const runs = Object.keys(tags).sort(naturalOrder);
    if (runs.length === 0) {
      this.root.dataset.state = "empty";
      this.empty.hidden = false;
      this.controls.hidden = true;
      this.view.replaceChildren();
      this.panels = [];
      this.stop();
      this.setStatus("");
      return;
    }
    this.empty.hidden = true;
    this.controls.hidden = false;
    if (this.runSelect.disabled) this.setControlsEnabled(true);
    if (!this.run || !tags[this.run]) this.run = runs[0];
    // Rebuild the menus only when names come or go: new steps alone leave them (and a menu
    // the user has open) alone.
    const names = JSON.stringify([runs, this.run, Object.keys(tags[this.run]).sort()]);
    if (names !== this.menuNames) {
      this.menuNames = names;
      this.fillRuns(runs);
      this.fillTags();
    }
    this.runSelect.value = this.run;
    const tagNames = Object.keys(tags[this.run]);
    if (!this.tag || !tags[this.run][this.tag]) {
      this.tag = groupTags(tagNames)[0].tags[0].tag;
      this.stop();
      this.resetSteps();
    }
    this.tagSelect.value = this.tag;
    const before = previous[this.run] && previous[this.run][this.tag];
    const now = tags[this.run][this.tag];
    if (!before || before.max_step !== now.max_step || before.num_steps !== now.num_steps ||
        this.steps.length === 0) {
      await this.loadSteps();
    } else {
      this.updateStepControls();
    }
  }

  fillRuns(runs) {
    this.runSelect.replaceChildren(...runs.map((run) => el("option", { value: run, text: run })));
  }

  fillTags() {
    const groups = groupTags(Object.keys(this.tags[this.run] || {}));
    const options = [];
    for (const { layer, tags } of groups) {
      const items = tags.map(({ tag, name }) => {
        // The full tag as text: a closed <select> shows no group name.
        const option = el("option", { value: tag, text: tag });
        option.dataset.example = name;
        return option;
      });
      if (layer) {
        const group = document.createElement("optgroup");
        group.label = layer; // a property: the layer name stays text
        group.append(...items);
        options.push(group);
      } else {
        options.push(...items);
      }
    }
    this.tagSelect.replaceChildren(...options);
  }

  fillHeads(heads) {
    this.headField.hidden = heads <= 1;
    if (Number(this.headSelect.dataset.heads) === heads) return;
    this.headSelect.dataset.heads = String(heads);
    const options = [];
    for (let h = 0; h < heads; h++) options.push(el("option", { value: String(h), text: `${h}` }));
    options.push(el("option", { value: "mean", text: "mean of heads" }));
    this.headSelect.replaceChildren(...options);
    if (this.head !== "mean" && this.head >= heads) this.head = 0;
    this.headSelect.value = String(this.head);
  }

  async loadSteps() {
    const run = this.run;
    const tag = this.tag;
    const info = this.tags[run] && this.tags[run][tag];
    if (this.followLatest && info) {
      // The latest step is the default view: fetch it alongside the step list, and paint it
      // as soon as it is here if the list is not.
      loadMatrix(run, tag, info.max_step)
        .then((matrix) => {
          if (this.steps.length === 0 && run === this.run && tag === this.tag) {
            this.stepLabel.textContent = `step ${matrix.step}`;
            this.draw(matrix, null);
            this.setStatus(this.statusText(matrix, null));
            this.root.dataset.state = "ready";
          }
        })
        .catch(() => {}); // reported by renderView()
    }
    let steps;
    try {
      steps = await getJson(`./steps?${query({ run, tag })}`);
    } catch (error) {
      this.setStatus(`Could not load the steps of ${tag}: ${error.message}`, true);
      return;
    }
    if (run !== this.run || tag !== this.tag) return; // the user moved on meanwhile
    const current = this.steps[this.stepIndex];
    const reference = this.steps[this.compareIndex];
    this.steps = steps;
    const last = steps.length - 1;
    if (this.followLatest || !current) this.stepIndex = last;
    else this.stepIndex = nearestIndex(steps, current.step);
    this.compareIndex = reference ? nearestIndex(steps, reference.step) : 0;
    this.updateStepControls();
    await this.renderView();
  }

  chooseRun(run) {
    this.stop();
    this.run = run;
    this.menuNames = null;
    this.fillTags();
    const names = Object.keys(this.tags[run] || {});
    if (!names.includes(this.tag)) this.tag = names.length ? groupTags(names)[0].tags[0].tag : null;
    this.tagSelect.value = this.tag;
    this.resetSteps();
    return this.loadSteps();
  }

  chooseTag(tag) {
    this.stop();
    this.tag = tag;
    this.resetSteps();
    return this.loadSteps();
  }

  resetSteps() {
    this.steps = [];
    this.stepIndex = -1;
    this.compareIndex = 0;
    this.followLatest = true;
  }

  setStepIndex(index) {
    this.stepIndex = Math.min(Math.max(0, index), this.steps.length - 1);
    this.followLatest = this.stepIndex === this.steps.length - 1;
    this.updateStepControls();
  }

  updateStepControls() {
    const last = Math.max(0, this.steps.length - 1);
    for (const slider of [this.stepSlider, this.compareSlider]) {
      slider.max = String(last);
      slider.disabled = this.steps.length < 2;
    }
    this.stepSlider.value = String(Math.max(0, this.stepIndex));
    this.compareSlider.value = String(this.compareIndex);
    const step = this.steps[this.stepIndex];
    this.stepLabel.textContent = step ? `step ${step.step}` : "step –";
    this.stepLabel.title = step ? new Date(step.wall_time * 1000).toLocaleString() : "";
    this.stepPosition.textContent = step ? `${this.stepIndex + 1} / ${this.steps.length}` : "";
    const reference = this.steps[this.compareIndex];
    this.compareLabel.textContent = reference ? `step ${reference.step}` : "";
    this.playButton.disabled = this.steps.length < 2;
  }

  // ---- playback

  play() {
    if (this.steps.length < 2) return;
    this.playing = true;
    this.playButton.textContent = "❚❚ Pause";
    this.playButton.classList.add("playing");
    if (this.stepIndex >= this.steps.length - 1) this.setStepIndex(0);
    this.renderView().then(() => this.scheduleFrame());
  }

  scheduleFrame() {
    clearTimeout(this.playTimer);
    if (!this.playing) return;
    this.playTimer = setTimeout(async () => {
      if (!this.playing) return;
      if (this.stepIndex >= this.steps.length - 1) {
        this.stop();
        return;
      }
      this.setStepIndex(this.stepIndex + 1);
      await this.renderView();
      this.scheduleFrame();
    }, PLAY_MS);
  }

  stop() {
    this.playing = false;
    clearTimeout(this.playTimer);
    this.playButton.textContent = "▶ Play";
    this.playButton.classList.remove("playing");
  }

  // ---- drawing

  /**
   * Paints the view for the current selection. Calls made while a paint is loading coalesce
   * into one more paint of the latest selection, so scrubbing the slider over many large
   * matrices never queues a request per intermediate step.
   */
  renderView() {
    if (this.rendering) {
      this.renderPending = true;
      return this.rendering;
    }
    this.rendering = (async () => {
      do {
        this.renderPending = false;
        await this.renderOnce();
      } while (this.renderPending);
    })().finally(() => (this.rendering = null));
    return this.rendering;
  }

  async renderOnce() {
    const run = this.run;
    const tag = this.tag;
    const current = this.steps[this.stepIndex];
    if (!run || !tag || !current) return;
    const reference = this.compare ? this.steps[this.compareIndex] : null;
    let main;
    let ref = null;
    try {
      [main, ref] = await Promise.all([
        loadMatrix(run, tag, current.step),
        reference ? loadMatrix(run, tag, reference.step) : null,
      ]);
    } catch (error) {
      this.setStatus(`Could not load the matrix: ${error.message}`, true);
      return;
    }
    if (this.playing && this.stepIndex + 1 < this.steps.length) {
      loadMatrix(run, tag, this.steps[this.stepIndex + 1].step).catch(() => {});
    }
    this.draw(main, ref);
    this.setStatus(this.statusText(main, ref));
    this.root.dataset.state = "ready";
  }

  statusText(main, ref) {
    const heads = main.heads > 1 ? `, ${main.heads} heads` : "";
    let text = `rows: ${main.rows} queries × columns: ${main.cols} inputs${heads}`;
    if (ref && (ref.rows !== main.rows || ref.cols !== main.cols)) {
      text += ` · step ${ref.step} is ${ref.rows} × ${ref.cols}: no difference shown`;
    } else if (ref && !sameLabels(ref, main)) {
      text += " · the two steps have different tokens: the difference is by position";
    }
    return text;
  }

  specsFor(main, ref) {
    this.fillHeads(main.heads);
    const head = this.head;
    const mainValues = headValues(main, head);
    const headText = main.heads > 1 ? (head === "mean" ? " · mean of heads" : ` · head ${head}`) : "";
    const specs = [];
    let [lo, hi] = this.scale === "unit" ? [0, 1] : extent(mainValues);
    let refValues = null;
    if (ref) {
      refValues = headValues(ref, head);
      if (this.scale !== "unit") {
        const [rlo, rhi] = extent(refValues);
        lo = Math.min(lo, rlo);
        hi = Math.max(hi, rhi);
      }
    }
    const base = (matrix, values, title) => ({
      title,
      values,
      rows: matrix.rows,
      cols: matrix.cols,
      queryLabels: matrix.queryLabels,
      inputLabels: matrix.inputLabels,
      lut: VIRIDIS_LUT,
      lo,
      hi,
      step: matrix.step,
      extra: () => [],
    });
    if (ref) specs.push({ role: "reference", ...base(ref, refValues, `step ${ref.step}${headText}`) });
    specs.push({ role: "main", ...base(main, mainValues, `step ${main.step}${headText}`) });
    if (ref && ref.rows === main.rows && ref.cols === main.cols) {
      const diff = new Float32Array(mainValues.length);
      let bound = 0;
      for (let i = 0; i < diff.length; i++) {
        diff[i] = mainValues[i] - refValues[i];
        bound = Math.max(bound, Math.abs(diff[i]));
      }
      bound = bound || 1e-6;
      specs.push({
        role: "diff",
        ...base(main, diff, `difference: step ${main.step} − step ${ref.step}${headText}`),
        lut: DIVERGING_LUT,
        lo: -bound,
        hi: bound,
        isDifference: true,
        extra: (i, j) => [
          [`step ${ref.step}`, formatWeight(refValues[i * main.cols + j])],
          [`step ${main.step}`, formatWeight(mainValues[i * main.cols + j])],
        ],
      });
    }
    return specs;
  }

  draw(main, ref) {
    const specs = this.specsFor(main, ref);
    const roles = specs.map((s) => s.role).join(",");
    if (this.panels.map((p) => p.role).join(",") !== roles) {
      this.panels = specs.map(
        (s) => new Panel(s.role, (...args) => this.showTooltip(...args), () => this.hideTooltip()),
      );
      this.view.replaceChildren(...this.panels.map((p) => p.root));
    }
    const gap = 24;
    const width = Math.max(320, this.view.clientWidth || window.innerWidth - 32);
    const widthBudget = (width - gap * (specs.length - 1)) / specs.length;
    const top = this.view.getBoundingClientRect().top;
    const heightBudget = Math.max(240, window.innerHeight - top - 36);
    const layouts = alignLayouts(specs.map((spec) => layoutPanel(spec, widthBudget, heightBudget)));
    specs.forEach((spec, k) => {
      const canvas = this.panels[k].canvas;
      // DOM signals of what is on screen, for tests and benchmarks.
      canvas.dataset.run = this.run;
      canvas.dataset.tag = this.tag;
      canvas.dataset.head = String(this.head);
      this.panels[k].paint(spec, layouts[k]);
    });
    this.hideTooltip();
  }

  // ---- tooltip

  showTooltip(panel, [i, j], event) {
    const spec = panel.spec;
    const value = spec.values[i * spec.cols + j];
    const line = (key, text, cls = "") => {
      const row = el("div");
      row.append(el("span", { class: "key", text: key }), el("span", { class: cls, text }));
      return row;
    };
    const lines = [
      line("query", `${displayLabel(spec.queryLabels[i])}  (#${i})`),
      line("input", `${displayLabel(spec.inputLabels[j])}  (#${j})`),
    ];
    for (const [key, text] of spec.extra(i, j)) lines.push(line(key, text));
    const shown = spec.isDifference ? (value >= 0 ? "+" : "") + formatWeight(value) : formatWeight(value);
    lines.push(line(spec.isDifference ? "change" : "weight", shown, "value"));
    this.tooltip.replaceChildren(...lines);
    this.tooltip.dataset.row = String(i);
    this.tooltip.dataset.col = String(j);
    this.tooltip.hidden = false;
    const pad = 14;
    const { offsetWidth: w, offsetHeight: h } = this.tooltip;
    let x = event.clientX + pad;
    let y = event.clientY + pad;
    if (x + w > window.innerWidth) x = Math.max(0, event.clientX - pad - w);
    if (y + h > window.innerHeight) y = Math.max(0, event.clientY - pad - h);
    this.tooltip.style.left = `${x}px`;
    this.tooltip.style.top = `${y}px`;
  }

  hideTooltip() {
    this.tooltip.hidden = true;
  }

  // ---- export

  fileStem() {
    const step = this.steps[this.stepIndex];
    const head = this.headField.hidden ? "" : `_head${this.head}`;
    return safeFileName(`attention_${this.run}_${this.tag}${head}_step${step ? step.step : ""}`);
  }

  /** The current view (every panel with its labels and colour bar) as one canvas. */
  composeView(scale = 2) {
    const margin = 16;
    const gap = 24;
    const header = 24;
    const panels = this.panels.filter((p) => p.spec);
    const width = margin * 2 + panels.reduce((sum, p) => sum + p.width(), 0) + gap * (panels.length - 1);
    const height = margin * 2 + header + Math.max(...panels.map((p) => p.height()));
    const canvas = document.createElement("canvas");
    canvas.width = Math.ceil(width * scale);
    canvas.height = Math.ceil(height * scale);
    const ctx = canvas.getContext("2d");
    ctx.scale(scale, scale);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, width, height);
    ctx.fillStyle = "#202124";
    ctx.font = `bold ${LABEL_FONT}`;
    ctx.textBaseline = "top";
    ctx.fillText(fitText(ctx, `${this.run} · ${this.tag}`, width - 2 * margin), margin, margin);
    let x = margin;
    for (const panel of panels) {
      panel.drawInto(ctx, x, margin + header);
      x += panel.width() + gap;
    }
    return canvas;
  }

  downloadPng() {
    if (!this.panels.some((p) => p.spec)) return;
    this.composeView().toBlob((blob) => {
      if (blob) save(URL.createObjectURL(blob), `${this.fileStem()}.png`, true);
    }, "image/png");
  }

  downloadCsv() {
    const step = this.steps[this.stepIndex];
    if (!step) return;
    // The backend writes the CSV (every head, labels csv-quoted), so the file matches the API.
    const url = `./matrix?${query({ run: this.run, tag: this.tag, step: step.step, format: "csv" })}`;
    save(url, `${this.fileStem()}.csv`, false);
  }
}

function save(url, fileName, revoke) {
  const link = el("a", { href: url, download: fileName, hidden: "" });
  document.body.append(link);
  link.click();
  link.remove();
  if (revoke) setTimeout(() => URL.revokeObjectURL(url), 60000);
}

function sameLabels(a, b) {
  const same = (x, y) => x.length === y.length && x.every((v, i) => v === y[i]);
  return same(a.inputLabels, b.inputLabels) && same(a.queryLabels, b.queryLabels);
}

function nearestIndex(steps, step) {
  let best = 0;
  for (let i = 0; i < steps.length; i++) {
    if (Math.abs(steps[i].step - step) < Math.abs(steps[best].step - step)) best = i;
  }
  return best;
}

/**
 * TensorBoard's host page announces data reloads over a MessageChannel that a plugin iframe
 * opens by posting "experimental.bootstrap" with a port (the protocol of TensorBoard's
 * experimental plugin API, messages are JSON {type, id, payload, error, isReply}).
 */
function listenForReload(onReload) {
  if (window.parent === window) return;
  const channel = new MessageChannel();
  channel.port1.onmessage = (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!message || message.isReply) return;
    if (message.type === "experimental.DataReloaded") onReload();
    channel.port1.postMessage(
      JSON.stringify({ type: message.type, id: message.id, payload: null, error: null, isReply: true }),
    );
  };
  try {
    window.parent.postMessage("experimental.bootstrap", window.location.origin, [channel.port2]);
  } catch {
    // a cross-origin parent: polling alone keeps the view fresh
  }
}

let app = null;

/** Entry point: TensorBoard calls this once the module has loaded in the plugin's iframe. */
export function render() {
  if (app) return app;
  const tags = getJson("./tags"); // first, so the request overlaps building the page
  tags.catch(() => {}); // reported by refresh()
  document.body.style.margin = "0";
  app = new AttentionApp(document.body);
  app.refresh(tags);
  listenForReload(() => app.refresh());
  setInterval(() => {
    if (!document.hidden) app.refresh();
  }, POLL_MS);
  return app;
}
