"""The bodies of the plugin's HTTP answers: the one home of the response encoding.

`codec.py` is the stored format; this module turns decoded matrices into what the HTTP
API (README, "The HTTP API") promises:

* JSON: `{"step", "wall_time", "shape", "heads", "input_labels", "query_labels",
  "values"}`, values nested row-major, each the stored value widened exactly to a float
  (a "decimal4" weight prints as its 4 decimals, e.g. 0.1235);
* binary: a little-endian uint32 `L`, `L` bytes of UTF-8 JSON, zero padding to a multiple
  of 4 bytes, then little-endian float32 values (one matrix, or the `overview`'s layers
  one after another);
* codes: the binary form's frame with the stored values instead of float32s: each
  matrix's uint16 codes, little-endian, and its `"encoding"` in the JSON saying what they
  mean (`"decimal4"`: the weight is code / 10000; `"float16"`: the bits of a float16).
  Exact (the stored values themselves) at half the binary form's bytes; the frontend
  widens them to float32 with a table of every code's value (tb_plugin/static/matrix.js),
  the same float32 as the binary form sends;
* stored: the same frame with the values blob exactly as stored instead of codes: its
  JSON says the `"encoding"` and `"streams"`, the byte length of each zlib stream that
  follows, in order; the frontend inflates each (the browser's `DecompressionStream`) and
  unpacks the codes from the layout that `codec.py` documents, with the same table as for
  the codes form. A step move then costs the plugin one blob read and no decoding (a
  stored 1024 x 1024 softmax matrix is about 320 kB, its codes 2.1 MB). The plugin answers
  the codes form instead, which the frontend tells by the missing `"streams"`, when it
  already holds the step decoded (another form or the overview asked for it), or when the
  step's header does not say where its streams end (files written before it said);
* CSV: a header row `[head,]query,<input labels>`, then one row per (head and) query with
  6 significant digits.

Values are formatted by table lookup: a stored value is one of at most 65,536 codes, so
each code's text is made once, about 20 times faster than formatting a 1024 x 1024
matrix number by number.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
import struct
from typing import Any

import numpy as np

from tb_plugin import codec


def describe(header: codec.Header) -> dict[str, Any]:
    """What every answer says about one stored matrix, besides its step and values."""
    return {
        "shape": list(header.shape),
        "heads": header.heads,
        "input_labels": list(header.input_labels),
        "query_labels": list(header.query_labels),
    }


def dumps(value: Any) -> str:
    """Compact JSON with non-ASCII text kept as it is (labels are often not English)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@functools.cache
def value_texts(kind: str, style: str) -> np.ndarray:
    """The text of every code of a value kind ("decimal4" or "float16"), by code.

    `style` "json" gives `repr` of the float (what json.dumps writes), "csv" 6
    significant digits.
    """
    numbers = codec.float64_table(kind).tolist()
    if style == "json":
        return np.array([repr(x) for x in numbers], dtype=object)
    return np.array([format(x, ".6g") for x in numbers], dtype=object)


def values_json(values: codec.Values) -> str:
    """Nested JSON lists of the values, as json.dumps of their exact float64 values."""
    codes = values.codes
    texts = np.take(value_texts(values.encoding, "json"), codes)
    rows = ["[" + ",".join(row) + "]" for row in texts.reshape(-1, codes.shape[-1]).tolist()]
    if codes.ndim == 2:
        return "[" + ",".join(rows) + "]"
    m = codes.shape[1]
    return (
        "["
        + ",".join("[" + ",".join(rows[h * m : (h + 1) * m]) + "]" for h in range(codes.shape[0]))
        + "]"
    )


def json_body(described: dict[str, Any], values: codec.Values) -> str:
    """The JSON form: `described` with a last key "values" (spliced, not re-encoded)."""
    return dumps(described)[:-1] + ',"values":' + values_json(values) + "}"


def _frame(described: dict[str, Any]) -> list[bytes]:
    """The frame's start: uint32 length, UTF-8 JSON, zero padding to a multiple of 4."""
    header = dumps(described).encode("utf-8")
    return [struct.pack("<I", len(header)), header, b"\0" * (-(4 + len(header)) % 4)]


def binary_body(described: dict[str, Any], arrays: list[np.ndarray]) -> bytes:
    """The binary form: uint32 length, UTF-8 JSON, zero padding to 4 bytes, float32s."""
    parts = _frame(described)
    parts.extend(np.ascontiguousarray(a, dtype="<f4").tobytes() for a in arrays)
    return b"".join(parts)


def codes_body(described: dict[str, Any], values: list[codec.Values]) -> bytes:
    """The codes form: the frame, then each matrix's uint16 codes."""
    parts = _frame(described)
    parts.extend(np.ascontiguousarray(v.codes, dtype="<u2").tobytes() for v in values)
    return b"".join(parts)


def stored_body(
    described: dict[str, Any], header: codec.Header, streams: tuple[int, ...], blob: bytes
) -> bytes:
    """The stored form: the frame, its JSON with the encoding and stream lengths, the blob."""
    parts = _frame({**described, "encoding": header.encoding, "streams": list(streams)})
    parts.append(blob)
    return b"".join(parts)


def csv_body(header: codec.Header, values: codec.Values) -> str:
    """The CSV form of one matrix."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    with_heads = len(header.shape) == 3
    writer.writerow((["head"] if with_heads else []) + ["query", *header.input_labels])
    texts = np.take(value_texts(values.encoding, "csv"), values.codes)
    for h, matrix in enumerate(texts.reshape(header.shape3).tolist()):
        for label, cells in zip(header.query_labels, matrix, strict=True):
            writer.writerow(([h] if with_heads else []) + [label, *cells])
    return out.getvalue()


def safe_filename(*parts: Any) -> str:
    """A download's file name from user-supplied parts: letters, digits, `._-` only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(str(p) for p in parts)).strip("_")[:150]
