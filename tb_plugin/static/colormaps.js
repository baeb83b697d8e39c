// Colour maps: 256-entry RGB lookup tables and the binning of a value into one.
// Pure data and functions (no DOM), shared by the heatmaps, the overview and the exports.


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

/** "#rrggbb" of LUT entry k: the colour of one cell in the SVG export. */
export function lutHex(lut, k) {
  const c = k * 3;
  return "#" + [lut[c], lut[c + 1], lut[c + 2]].map((x) => x.toString(16).padStart(2, "0")).join("");
}
