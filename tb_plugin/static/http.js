// HTTP: the plugin's routes (README, "The HTTP API"), always by relative URL ("./tags") so that
// the tab works under --path_prefix and behind proxies, and a bounded cache of decoded
// matrices so that scrubbing the slider and playback do not refetch them.

import { parseMatrixBinary, parseOverviewBinary } from "./matrix.js";

// Decoded matrices and overviews kept, in bytes of their float32 values. Scrubbing 500 steps
// of an overview of 24 layers x 12 heads of 64 x 64 (4.7 MB a step) keeps the last ~40. A
// matrix is fetched in the "stored" form (the values blob as written, unpacked by stored.js:
// about a sixth of the codes' bytes, and no decoding in the plugin), an overview in the
// "codes" form (the stored uint16 codes: half the bytes of float32; its 64 x 64 layers cost
// the plugin little to decode); both widened exactly to float32 here.
export const CACHE_BYTES = 192 * 1024 * 1024;

export function query(params) {
  return Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join("&");
}

/** An Error carrying the route's JSON {"error"} message, else the status line. */
async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) message = String(body.error);
  } catch {
    // not JSON: keep the status line
  }
  const error = new Error(message);
  error.status = response.status;
  return error;
}

export async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw await failure(response);
  return response.json();
}

const cache = new Map(); // key -> {promise, bytes}, in least-recently-used order
let cachedBytes = 0; // bytes of the loaded entries still in the cache

/** The cached promise of key, or a new one from load() (failed loads are not kept). */
function cached(key, load) {
  const hit = cache.get(key);
  if (hit) {
    cache.delete(key); // re-insert: most recently used
    cache.set(key, hit);
    return hit.promise;
  }
  const entry = { promise: null, bytes: 0 };
  entry.promise = load().then((decoded) => {
    if (cache.get(key) === entry) {
      entry.bytes = decoded.bytes;
      cachedBytes += entry.bytes;
      evict();
    }
    return decoded;
  });
  cache.set(key, entry);
  entry.promise.catch(() => {
    if (cache.get(key) === entry) cache.delete(key); // a failed load may succeed later
  });
  return entry.promise;
}

/** Drops the least recently used entries until the cache fits CACHE_BYTES (keeps one). */
function evict() {
  for (const [key, entry] of cache) {
    if (cachedBytes <= CACHE_BYTES || cache.size <= 1) break;
    cache.delete(key);
    cachedBytes -= entry.bytes;
  }
}

async function getBinary(url, parse) {
  const response = await fetch(url);
  if (!response.ok) throw await failure(response);
  return parse(await response.arrayBuffer());
}

// Browsers without DecompressionStream (before Chrome 80, Firefox 113, Safari 16.4) cannot
// unpack the stored form: they fetch the codes form.
const UNPACKS_STORED = typeof DecompressionStream === "function";

/** One run/tag/step matrix, decoded ({step, heads, rows, cols, values, labels}). */
export function loadMatrix(run, tag, step) {
  const url = (format) => `./matrix?${query({ run, tag, step, format })}`;
  return cached(JSON.stringify(["matrix", run, tag, step]), async () => {
    if (!UNPACKS_STORED) return getBinary(url("codes"), parseMatrixBinary);
    try {
      return await getBinary(url("stored"), parseMatrixBinary);
    } catch (err) {
      if (err.status) throw err; // the route's own answer: the codes form would say the same
      // Stored data that this browser could not unpack (say, a header naming its streams
      // wrongly): the plugin's own reader may still read it.
      return getBinary(url("codes"), parseMatrixBinary);
    }
  });
}

/** Every layer of one probe example at one step (the latest when step is null). */
export function loadOverview(run, example, step) {
  return cached(JSON.stringify(["overview", run, example, step]), () =>
    getBinary(`./overview?${query({ run, example, step, format: "codes" })}`, parseOverviewBinary),
  );
}

/** {layer: [[step, mean entropy], ...]} of a run (the logger's <layer>/mean_entropy scalars). */
export function loadEntropy(run) {
  return getJson(`./entropy?${query({ run })}`);
}

/** How many bytes the cache holds now (for the memory benchmark). */
export function cacheBytes() {
  return cachedBytes;
}
