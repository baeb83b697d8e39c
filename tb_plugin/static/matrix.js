// Matrices: decoding the binary routes, and the arithmetic the views need (head mean and max,
// attention rollout, ranges, grouping tags by layer). Pure functions, no DOM: exported so that
// the browser tests can check them against NumPy.

import { storedCodes, valueKind } from "./stored.js";

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

export const naturalOrder = (a, b) => a.localeCompare(b, undefined, { numeric: true });

/**
 * Reads the frame both binary routes share: uint32 LE header length L, L bytes of UTF-8 JSON,
 * zero padding to a multiple of 4, then float32 LE values. Returns {header, buffer, offset}.
 */
function readFrame(buffer) {
  if (buffer.byteLength < 4) throw new Error("response too short");
  const view = new DataView(buffer);
  const headerLength = view.getUint32(0, true);
  if (4 + headerLength > buffer.byteLength) throw new Error("response header overruns the body");
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, headerLength)));
  return { header, view, offset: Math.ceil((4 + headerLength) / 4) * 4 };
}

/** count float32 LE values starting at byte offset (a view when the machine is little-endian). */
function floats(buffer, view, offset, count) {
  if (offset + count * 4 > buffer.byteLength) {
    throw new Error(`values truncated: expected ${count} float32 values`);
  }
  if (LITTLE_ENDIAN) return new Float32Array(buffer, offset, count);
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = view.getFloat32(offset + 4 * i, true);
  return values;
}

// The value of every stored code, by encoding (tb_plugin/codec.py): "decimal4" codes are
// round(w * 10000), read back as the float32 nearest to code / 10000 (Math.fround of the
// double quotient is that float32 for every code 0..10000, as tests/test_browser.py checks
// against NumPy); "float16" codes are the bits of a float16, which a float32 holds exactly.
const codeTables = new Map();

function codeTable(encoding) {
  encoding = valueKind(encoding); // "float16-planes" codes are float16 bits too
  let table = codeTables.get(encoding);
  if (table) return table;
  if (encoding === "decimal4") {
    table = new Float32Array(10001);
    for (let k = 0; k <= 10000; k++) table[k] = k / 10000;
  } else if (encoding === "float16") {
    table = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) {
      const sign = bits & 0x8000 ? -1 : 1;
      const exponent = (bits >> 10) & 0x1f;
      const fraction = bits & 0x3ff;
      if (exponent === 0) table[bits] = sign * fraction * 2 ** -24;
      else if (exponent === 31) table[bits] = fraction ? NaN : sign * Infinity;
      else table[bits] = sign * (1024 + fraction) * 2 ** (exponent - 25);
    }
  } else {
    throw new Error(`unknown value encoding ${JSON.stringify(encoding)}`);
  }
  codeTables.set(encoding, table);
  return table;
}

/** Widens count uint16 LE codes at byte offset to float32 values through the code table. */
export function decodeCodes(buffer, view, offset, count, encoding) {
  if (offset + count * 2 > buffer.byteLength) {
    throw new Error(`values truncated: expected ${count} uint16 codes`);
  }
  if (LITTLE_ENDIAN && offset % 2 === 0) {
    return widen(new Uint16Array(buffer, offset, count), encoding);
  }
  const table = codeTable(encoding);
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = table[view.getUint16(offset + 2 * i, true)];
  return values;
}

/** The float32 value of each code (a Uint16Array) of an encoding. */
function widen(codes, encoding) {
  const table = codeTable(encoding);
  const values = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) values[i] = table[codes[i]];
  return values;
}

/** {heads, rows, cols} of a [rows, cols] or [heads, rows, cols] shape; throws otherwise. */
function dims(shape) {
  if (!Array.isArray(shape) || shape.length < 2 || shape.length > 3) {
    throw new Error(`matrix shape must have 2 or 3 dimensions, got ${JSON.stringify(shape)}`);
  }
  return {
    heads: shape.length === 3 ? shape[0] : 1,
    rows: shape[shape.length - 2],
    cols: shape[shape.length - 1],
  };
}

function labelled(described, shape, values) {
  const { heads, rows, cols } = dims(shape);
  const inputLabels = described.input_labels || [];
  const queryLabels = described.query_labels || [];
  if (inputLabels.length !== cols || queryLabels.length !== rows) {
    throw new Error(
      `matrix labels do not match its shape: ${queryLabels.length} query and ` +
        `${inputLabels.length} input labels for ${rows} x ${cols}`,
    );
  }
  return {
    heads,
    rows,
    cols,
    values,
    inputLabels: inputLabels.map(String),
    queryLabels: queryLabels.map(String),
  };
}

/**
 * Decodes the binary, codes or stored form of GET matrix (README, "The HTTP API"): the codes
 * form says its "encoding", the stored form its "encoding" and "streams" (stored.js). Async,
 * for the stored form's inflating. `bytes`: what the decoded matrix holds in memory (for the
 * cache's bound).
 */
export async function parseMatrixBinary(buffer) {
  const { header, view, offset } = readFrame(buffer);
  const { heads, rows, cols } = dims(header.shape);
  const count = heads * rows * cols;
  let values;
  if (header.streams !== undefined) {
    const stored = new Uint8Array(buffer, offset);
    values = widen(await storedCodes(stored, header.streams, header.encoding, count), header.encoding);
  } else if (header.encoding) {
    values = decodeCodes(buffer, view, offset, count, header.encoding);
  } else {
    values = floats(buffer, view, offset, count);
  }
  return {
    step: header.step,
    wallTime: header.wall_time,
    ...labelled(header, header.shape, values),
    bytes: header.encoding ? offset + 4 * count : buffer.byteLength,
  };
}

/**
 * Decodes GET overview: the same frame, its JSON listing every layer of one example at one
 * step (with each layer's offset into the values, in float32 elements), in the model's order.
 * Returns {run, example, step, layers: [matrix + {tag, layer, description}], missing, errors}.
 */
export function parseOverviewBinary(buffer) {
  const { header, view, offset } = readFrame(buffer);
  let decoded = 0; // bytes of float32 values made from codes
  const layers = (header.layers || []).map((layer) => {
    const { heads, rows, cols } = dims(layer.shape);
    const count = heads * rows * cols;
    let values;
    if (layer.encoding) {
      values = decodeCodes(buffer, view, offset + 2 * layer.offset, count, layer.encoding);
      decoded += 4 * count;
    } else {
      values = floats(buffer, view, offset + 4 * layer.offset, count);
    }
    return {
      tag: String(layer.tag),
      layer: String(layer.layer),
      description: layer.description || "",
      step: header.step,
      wallTime: layer.wall_time,
      ...labelled(layer, layer.shape, values),
    };
  });
  return {
    run: header.run,
    example: header.example,
    step: header.step,
    layers,
    missing: header.missing || [],
    errors: header.errors || [],
    // In memory: the float32 values (the codes' buffer is dropped once widened).
    bytes: decoded ? offset + decoded : buffer.byteLength,
  };
}

/** [layer, example] of a tag "<layer key>/<example>" (the layer key may hold "/" itself). */
export function splitTag(tag) {
  const cut = tag.lastIndexOf("/");
  return cut < 0 ? ["", tag] : [tag.slice(0, cut), tag.slice(cut + 1)];
}

/**
 * Groups tag names by layer: the part before the last "/" ("" when there is none).
 * Returns [{layer, tags: [{tag, name}]}] in natural order (example 10 after example 9).
 */
export function groupTags(tags) {
  const groups = new Map();
  for (const tag of [...tags].sort(naturalOrder)) {
    const [layer, name] = splitTag(tag);
    if (!groups.has(layer)) groups.set(layer, []);
    groups.get(layer).push({ tag, name });
  }
  return [...groups.keys()].sort(naturalOrder).map((layer) => ({ layer, tags: groups.get(layer) }));
}

/** The probe examples (tag suffixes) among tags, in natural order. */
export function examplesOf(tags) {
  return [...new Set(tags.map((tag) => splitTag(tag)[1]))].sort(naturalOrder);
}

/**
 * One head of a (heads, rows, cols) block, or an aggregate over the heads: "mean" or "max"
 * (per cell, over the heads).
 */
export function headValues(matrix, head) {
  const size = matrix.rows * matrix.cols;
  if (head === "mean" || head === "max") {
    const out = new Float32Array(size);
    if (head === "max") out.set(matrix.values.subarray(0, size));
    for (let h = head === "max" ? 1 : 0; h < matrix.heads; h++) {
      const part = matrix.values.subarray(h * size, (h + 1) * size);
      if (head === "max") {
        for (let i = 0; i < size; i++) if (part[i] > out[i]) out[i] = part[i];
      } else {
        for (let i = 0; i < size; i++) out[i] += part[i];
      }
    }
    if (head === "mean") for (let i = 0; i < size; i++) out[i] /= matrix.heads;
    return out;
  }
  const h = Math.min(Math.max(0, head | 0), matrix.heads - 1);
  return matrix.values.subarray(h * size, (h + 1) * size);
}

function sameList(x, y) {
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

export function sameLabels(a, b) {
  return sameList(a.inputLabels, b.inputLabels) && sameList(a.queryLabels, b.queryLabels);
}

/** Self-attention over the given tokens: square, its queries and inputs those tokens. */
function selfAttentionOver(matrix, tokens) {
  return (
    matrix.rows === matrix.cols &&
    sameList(matrix.queryLabels, tokens) &&
    sameList(matrix.inputLabels, tokens)
  );
}

/** Self-attention: a square matrix whose queries are its inputs (the same tokens). */
export function isSelfAttention(matrix) {
  return selfAttentionOver(matrix, matrix.inputLabels);
}

/**
 * The layers attention rollout runs through for layers[index]: the longest run of consecutive
 * layers ending there that are all self-attention over the same tokens. Returns [first, index],
 * or null where rollout is not defined (the layer attends from other tokens than it attends to).
 */
export function rolloutSpan(layers, index) {
  const target = layers[index];
  if (!target || !selfAttentionOver(target, target.queryLabels)) return null;
  let first = index;
  while (first > 0 && selfAttentionOver(layers[first - 1], target.queryLabels)) first--;
  return [first, index];
}

/**
 * Attention rollout (Abnar and Zuidema 2020, "Quantifying Attention Flow in Transformers",
 * https://arxiv.org/abs/2005.00928): per layer A = 0.5 * mean over heads + 0.5 * I with rows
 * renormalised, multiplied through the layers: A_last ... A_first. Returns
 * {values, first, last} (values: a rows x cols Float32Array), or null where not defined.
 */
export function rollout(layers, index) {
  const span = rolloutSpan(layers, index);
  if (!span) return null;
  const n = layers[index].rows;
  let result = null;
  for (let k = span[0]; k <= span[1]; k++) {
    const mean = headValues(layers[k], "mean");
    const a = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      let sum = 0;
      for (let j = 0; j < n; j++) {
        const v = 0.5 * mean[i * n + j] + (i === j ? 0.5 : 0);
        a[i * n + j] = v;
        sum += v;
      }
      if (sum > 0) for (let j = 0; j < n; j++) a[i * n + j] /= sum;
    }
    if (result === null) {
      result = a;
      continue;
    }
    // result = a @ result: the later layer's mixing applied on top of the earlier ones.
    const next = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let m = 0; m < n; m++) {
        const w = a[i * n + m];
        if (w === 0) continue;
        const row = m * n;
        for (let j = 0; j < n; j++) next[i * n + j] += w * result[row + j];
      }
    }
    result = next;
  }
  return { values: Float32Array.from(result), first: span[0], last: span[1] };
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

/** The index of the step nearest to step in [{step}, ...]. */
export function nearestIndex(steps, step) {
  let best = 0;
  for (let i = 0; i < steps.length; i++) {
    if (Math.abs(steps[i].step - step) < Math.abs(steps[best].step - step)) best = i;
  }
  return best;
}
