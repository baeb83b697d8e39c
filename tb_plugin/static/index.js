// The frontend of TensorBoard's "attention" plugin: labelled, interactive attention heatmaps.
//
// TensorBoard loads this module inside the plugin's iframe (whose <base href> is
// plugin/attention/ under data/) and calls render() (NOTES §3). The frontend is plain ES
// modules served by the plugin from static/, with no build step (the layout of TensorBoard's
// own example_raw_scalars plugin: index.js, a few modules, a style sheet):
//
//   colormaps.js  viridis and the diverging map as lookup tables
//   matrix.js     decoding the binary, codes and stored forms; head mean / max, attention rollout
//   stored.js     the stored form: inflating and unpacking the values blob as written
//   http.js       the routes, by relative URL, and the cache of decoded matrices
//   dom.js        DOM helpers: text-only labels, direction isolation, tooltip placement
//   panel.js      one heatmap panel: layout, painting, token highlight
//   export.js     PNG, SVG and CSV of the current view
//   overview.js   every layer and head of one example, with mean-entropy lines
//   app.js        the toolbar, the views, the step slider and playback
//   empty.js      the how-to shown for a logdir without attention data
//   host.js       TensorBoard's reload messages to the iframe
//   style.css     the styles
//
// Hence too: every request uses a relative URL, nothing is loaded from elsewhere (TensorBoard's
// Content-Security-Policy forbids it), no third-party code is used, and user text reaches the
// page only as text (dom.js). The data contract is the README's "The HTTP API" section.

import { AttentionApp, POLL_MS } from "./app.js";
import { listenForReload } from "./host.js";
import { getJson } from "./http.js";

export { VIRIDIS_LUT, DIVERGING_LUT, buildLut, colorIndex } from "./colormaps.js";
export {
  parseMatrixBinary,
  parseOverviewBinary,
  groupTags,
  headValues,
  extent,
  rollout,
  rolloutSpan,
} from "./matrix.js";
export { displayLabel, formatWeight, labelStride } from "./dom.js";
export { csvCell, matrixCsv } from "./export.js";

let started = null;

/** The style sheet, loaded before the first paint (layout reads the toolbar's height). */
function loadStyles() {
  return new Promise((resolve) => {
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = new URL("./style.css", import.meta.url).href;
    link.onload = resolve;
    link.onerror = resolve; // unstyled beats blank
    document.head.append(link);
  });
}

/** Entry point: TensorBoard calls this once the module has loaded in the plugin's iframe. */
export function render() {
  if (!started) started = start();
  return started;
}

async function start() {
  const tags = getJson("./tags"); // first, so the request overlaps building the page
  tags.catch(() => {}); // reported by refresh()
  document.body.style.margin = "0";
  await loadStyles();
  const app = new AttentionApp(document.body);
  app.refresh(tags);
  listenForReload(() => app.refresh());
  setInterval(() => {
    if (!document.hidden) app.refresh();
  }, POLL_MS);
  return app;
}
