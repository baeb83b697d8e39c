// The "stored" form of GET matrix (tb_plugin/responses.py): the values blob exactly as the
// writer stored it, unpacked here into the uint16 codes that the codes form would have sent.
//
// Why in the browser: a new step then costs the plugin one blob read and no decoding (a
// 1024 x 1024 softmax matrix is about 320 kB stored, 2.1 MB of codes), and the browser
// inflates zlib natively (DecompressionStream, "deflate" being zlib's format). The layout is
// the one tb_plugin/codec.py documents (the one home of the format); tests/test_browser.py
// checks that this reader gives the codes that codec.py's reader gives, for every encoding.
//
// Stored data may be corrupt or hostile: every stream is inflated with a bound on its size,
// and every count and code is checked as codec.py checks it; a problem is an Error, which
// the tab shows for that matrix alone.

const NIBBLE_ESCAPE = 15;
const DECIMAL_MAX = 10000; // "decimal4" codes are round(weight * 10000)

/** The most bytes the values of an encoding inflate to (as codec.py's `decode_values` bounds them). */
function rawLimit(encoding, count) {
  return encoding === "decimal4" ? ((count + 1) >> 1) + 2 * count : 2 * count;
}

// Compressed bytes handed to the inflater at a time. Chromium inflates a whole input chunk
// before its output can be read, so a small input that inflates to gigabytes (a "zip bomb")
// is stopped only if it comes in slices: one slice inflates to at most ~1032 times its size.
const FEED_BYTES = 4096;

/** Inflates one zlib stream, refusing more than limit bytes. Returns {chunks, size}. */
async function inflate(bytes, limit) {
  const stream = new DecompressionStream("deflate");
  const writer = stream.writable.getWriter();
  const reader = stream.readable.getReader();
  const ignore = () => {}; // the same error reaches the reader, which reports it
  // Fed with backpressure (writer.ready waits until the output is read), while reading.
  (async () => {
    for (let at = 0; at < bytes.length; at += FEED_BYTES) {
      await writer.ready;
      writer.write(bytes.subarray(at, at + FEED_BYTES)).catch(ignore);
    }
    await writer.ready;
    writer.close().catch(ignore);
  })().catch(ignore);
  const chunks = [];
  let size = 0;
  for (;;) {
    let read;
    try {
      read = await reader.read();
    } catch (err) {
      throw new Error(`values are not zlib data: ${err.message}`);
    }
    if (read.done) return { chunks, size };
    size += read.value.byteLength;
    if (size > limit) {
      reader.cancel().catch(ignore);
      writer.abort().catch(ignore);
      throw new Error(`values: expected at most ${limit} bytes, got more`);
    }
    chunks.push(read.value);
  }
}

/** Inflates the streams (their byte lengths in order) of bytes into one Uint8Array. */
async function inflateAll(bytes, streams, limit) {
  let start = 0;
  const parts = streams.map((length) => {
    if (!Number.isInteger(length) || length <= 0 || start + length > bytes.length) {
      throw new Error(`values: stream lengths ${JSON.stringify(streams)} overrun the answer`);
    }
    const part = bytes.subarray(start, start + length);
    start += length;
    return part;
  });
  if (start !== bytes.length) {
    throw new Error(
      `values: stream lengths add up to ${start} bytes, the answer holds ${bytes.length}`,
    );
  }
  // One after another, each bounded by what the others left of the limit.
  const inflated = [];
  let size = 0;
  for (const part of parts) {
    const one = await inflate(part, limit - size);
    inflated.push(one);
    size += one.size;
  }
  const raw = new Uint8Array(size);
  let offset = 0;
  for (const { chunks } of inflated) {
    for (const chunk of chunks) {
      raw.set(chunk, offset);
      offset += chunk.byteLength;
    }
  }
  return raw;
}

/** "decimal4": 4-bit codes two to a byte (low nibble first), 15 meaning "escaped": then
 * each escaped code's (code - 15) as uint16, all high bytes first, then all low bytes. */
function unpackDecimal4(raw, count) {
  const packed = (count + 1) >> 1;
  if (raw.length < packed) {
    throw new Error(`values: expected at least ${packed} bytes, got ${raw.length}`);
  }
  const codes = new Uint16Array(count);
  const pairs = count >> 1;
  let escapes = 0;
  for (let i = 0; i < pairs; i++) {
    const byte = raw[i];
    const low = byte & 15;
    const high = byte >> 4;
    codes[2 * i] = low;
    codes[2 * i + 1] = high;
    escapes += (low === NIBBLE_ESCAPE) + (high === NIBBLE_ESCAPE);
  }
  if (count & 1) {
    codes[count - 1] = raw[pairs] & 15;
    escapes += codes[count - 1] === NIBBLE_ESCAPE;
  }
  if (raw.length !== packed + 2 * escapes) {
    throw new Error(
      `values: expected ${packed + 2 * escapes} bytes for ${count} weights with ${escapes} ` +
        `escapes, got ${raw.length}`,
    );
  }
  for (let i = 0, e = 0; e < escapes; i++) {
    if (codes[i] !== NIBBLE_ESCAPE) continue;
    const code = NIBBLE_ESCAPE + ((raw[packed + e] << 8) | raw[packed + escapes + e]);
    if (code > DECIMAL_MAX) {
      throw new Error(`values: found a code above ${DECIMAL_MAX}, which is never written`);
    }
    codes[i] = code;
    e++;
  }
  return codes;
}

/** "float16": little-endian float16 bits; "float16-planes": all high bytes, then all low. */
function unpackFloat16(raw, count, planes) {
  if (raw.length !== 2 * count) {
    throw new Error(`values: expected ${2 * count} bytes for ${count} values, got ${raw.length}`);
  }
  const codes = new Uint16Array(count);
  for (let i = 0; i < count; i++) {
    codes[i] = planes ? (raw[i] << 8) | raw[count + i] : raw[2 * i] | (raw[2 * i + 1] << 8);
    // An all-ones exponent is inf or NaN, which the writer never stores.
    if ((codes[i] & 0x7c00) === 0x7c00) {
      throw new Error("values: found a non-finite value, which the writer never stores");
    }
  }
  return codes;
}

/**
 * The count uint16 codes of a stored values blob (bytes: a Uint8Array; streams: the byte
 * length of each zlib stream in it; encoding: "decimal4", "float16" or "float16-planes").
 * Rejects with an Error saying what is wrong with the data.
 */
export async function storedCodes(bytes, streams, encoding, count) {
  if (!["decimal4", "float16", "float16-planes"].includes(encoding)) {
    throw new Error(`unknown value encoding ${JSON.stringify(encoding)}`);
  }
  if (!Array.isArray(streams) || streams.length === 0) {
    throw new Error(`values: expected the lengths of the zlib streams, got ${JSON.stringify(streams)}`);
  }
  const raw = await inflateAll(bytes, streams, rawLimit(encoding, count));
  if (encoding === "decimal4") return unpackDecimal4(raw, count);
  return unpackFloat16(raw, count, encoding === "float16-planes");
}

/** "decimal4" or "float16": which table of values an encoding's codes index. */
export function valueKind(encoding) {
  return encoding === "decimal4" ? "decimal4" : "float16";
}
