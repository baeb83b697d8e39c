"""The stored form of one attention matrix, shared by the writer and the plugin.

One summary value is a rank-1 string tensor of two blobs, [header, values]. The header
is a blob of its own so that the plugin can list shapes and labels without reading (or
decompressing) the values. Labels live in every step's header, not in the summary
metadata, because TensorBoard keeps only the first event's metadata of a tag while the
probe example (and so its tokens) may change from step to step.

Format version 2 (written today):

* blob 0, the header: the UTF-8 JSON object
  `{"version": 2, "shape": [m, n] or [h, m, n], "encoding": E, "streams": [bytes, ...],
  "input_labels": [n strings], "query_labels": [m strings]}`, stored as it is (first
  byte `{`) or zlib-compressed (first byte 0x78), whichever is shorter. `"streams"`: the
  length of each zlib stream of blob 1, in order (1 to 3 of them, summing to its length).
  It was added after the first files of version 2 were written, so it may be missing; a
  reader never needs it to decode (zlib streams end by themselves), but with it the plugin
  can hand the blob to the browser as it is, which inflates each stream natively
  (tb_plugin/responses.py, the "stored" form).
* blob 1, the values, row-major (heads x queries x inputs), zlib-compressed; `E` says how:
  - `"decimal4"`, when every weight lies in [0, 1] (softmax weights): the code
    `q = round(w * 10000)` of each weight (0 to 10000), so a weight reads back as itself
    rounded to 4 decimals (error at most 5e-5: the tooltip's 4 decimals are exact). Laid
    out as `min(q, 15)` in 4 bits per weight, two to a byte (the first in the low
    nibble), then, for each weight whose nibble is 15, in order, `q - 15` as a uint16:
    all their high bytes, then all their low bytes.
  - `"float16"`: any other matrix (raw scores): little-endian float16 values, as in
    version 1; `"float16-planes"`: the same values with all high bytes first, then all
    low bytes. The writer keeps whichever is shorter.

Why this layout: attention weights are mostly near zero, and a peaked softmax row of
Gaussian scores is (nearly) independent noise from one weight to the next, so an entropy
coder over the weights' codes is all that helps; the order-0 entropy of the codes is the
floor (README, Performance). zlib's Huffman-only mode codes the nibble pairs within about
2% of that floor, several times faster than lzma and deflated natively by browsers; its
LZ77 mode wins on repetitive matrices (constant rows, one-hot). The writer tries both,
and the float16 forms against version 1's exact layout, and keeps the shortest, so no
matrix takes more bytes than in version 1.

Version 1 (still read): header `{"version": 1, "shape", "dtype": "<f2",
"compression": "zlib", "input_labels", "query_labels"}` as plain JSON; values as zlib
of little-endian float16.

Only numpy and the standard library are used here: the writer (TensorFlow) and the
reader (TensorBoard, possibly without TensorFlow) both import this module.
"""

from __future__ import annotations

import functools
import json
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tb_plugin import labels as labels_policy

# Version of the blob layout above; bump it when the layout changes, and teach
# `decode_header` to read the older ones.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)

# Largest number of weights in one summary (e.g. 2048 x 2048, or 16 heads of
# 512 x 512). Bigger matrices are almost certainly a mistake (a whole batch, not one
# example) and would stall the browser.
MAX_VALUES = 1 << 22

# Largest header (labels included), as stored JSON: bounds what a hostile or corrupt
# compressed header can inflate to.
MAX_HEADER_BYTES = 64 << 20

# Longest token label, in characters (the policy lives in tb_plugin/labels.py).
MAX_LABEL_CHARS = labels_policy.MAX_LABEL_CHARS

# float16's largest finite value; beyond it raw scores would be stored as infinity.
FLOAT16_MAX = float(np.finfo(np.float16).max)

# "decimal4": weights in [0, 1] as round(w * DECIMAL_SCALE).
DECIMAL_SCALE = 10_000
# The precision promised for weights in [0, 1]: half of the decimal step.
DECIMAL_ERROR = 0.5 / DECIMAL_SCALE
_NIBBLE_ESCAPE = 15

ENCODINGS = ("decimal4", "float16", "float16-planes")
_V1_DTYPE = "<f2"
_V1_COMPRESSION = "zlib"
_ZLIB_LEVEL = 6
_SEPARATE_PARTS_FROM = 4096
# The writer makes at most 3 zlib streams per blob; more means corrupt data.
_MAX_STREAMS = 3


class DecodeError(ValueError):
    """Stored data does not follow the format (corrupt, or written by a newer version)."""


@dataclass(frozen=True)
class Header:
    """What blob 0 says about one stored matrix."""

    version: int
    shape: tuple[int, ...]
    input_labels: tuple[str, ...]
    query_labels: tuple[str, ...]
    encoding: str = "float16"
    # The byte length of each zlib stream of the values blob, when the header says.
    streams: tuple[int, ...] | None = None

    @property
    def heads(self) -> int:
        return self.shape[0] if len(self.shape) == 3 else 1

    @property
    def shape3(self) -> tuple[int, int, int]:
        """The shape with the head axis made explicit: (heads, queries, inputs)."""
        if len(self.shape) == 3:
            return self.shape  # type: ignore[return-value]
        return (1, *self.shape)  # type: ignore[return-value]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Values:
    """One stored matrix's values: uint16 codes of `header.shape`, and what they mean.

    `encoding` "decimal4": the codes are round(w * 10000); "float16": they are the bits
    of float16 values. `float32()` gives the values; `codec.float64_table` and the
    response texts (tb_plugin/responses.py) are indexed by the codes.
    """

    encoding: str
    codes: np.ndarray

    def float32(self) -> np.ndarray:
        """The values as float32: each the float32 nearest to its code's value."""
        if self.encoding == "decimal4":
            # Both operands are exact in float32, and IEEE division rounds correctly.
            return self.codes.astype(np.float32) / np.float32(DECIMAL_SCALE)
        return np.take(float32_table(self.encoding), self.codes)

    def float64(self) -> np.ndarray:
        return np.take(float64_table(self.encoding), self.codes)


def value_kind(encoding: str) -> str:
    """ "decimal4" or "float16": which code table an encoding's codes index."""
    return "decimal4" if encoding == "decimal4" else "float16"


@functools.cache
def float64_table(encoding: str) -> np.ndarray:
    """The float64 value of every code of an encoding, indexed by the code."""
    if value_kind(encoding) == "decimal4":
        return np.arange(DECIMAL_SCALE + 1, dtype=np.float64) / DECIMAL_SCALE
    return np.arange(1 << 16, dtype=np.uint16).view("<f2").astype(np.float64)


@functools.cache
def float32_table(encoding: str) -> np.ndarray:
    """The float32 value of every code (the nearest to its float64 value)."""
    if value_kind(encoding) == "decimal4":
        return Values("decimal4", np.arange(DECIMAL_SCALE + 1, dtype=np.uint16)).float32()
    return np.arange(1 << 16, dtype=np.uint16).view("<f2").astype("<f4")


def check_version(version: Any, where: str) -> int:
    """Returns `version` if this code reads it; the one version check of the plugin.

    Raises:
      DecodeError: not a positive integer, or a version newer than `FORMAT_VERSION`.
    """
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DecodeError(f"{where} 'version': expected a positive integer, got {version!r}")
    if version not in READABLE_VERSIONS:
        raise DecodeError(
            f"format version {version} is newer than this plugin's ({FORMAT_VERSION}); "
            "upgrade keras-seqattn"
        )
    return version


def check_weights(weights: Any) -> np.ndarray:
    """Returns `weights` as a float64 array of rank 2 or 3 that the format can store.

    Args:
      weights: a numpy array (or nested lists) of floats, shape (m, n) or (heads, m, n).

    Raises:
      TypeError: when the values are not floating point.
      ValueError: for a wrong rank, an empty axis, too many values, non-finite values
        or values beyond float16's range.
    """
    try:
        array = np.asarray(weights)
    except (ValueError, TypeError) as err:
        raise TypeError(
            f"weights: expected a rectangular array of floats, got {type(weights).__name__} "
            f"that numpy cannot read as one ({err})"
        ) from err
    if array.dtype.kind != "f" and array.dtype.name != "bfloat16":
        raise TypeError(
            "weights: expected floating-point values (float16, bfloat16, float32 or "
            f"float64), got dtype {array.dtype}"
        )
    if array.ndim not in (2, 3):
        raise ValueError(
            "weights: expected one example's matrix of shape (queries, inputs) or "
            f"(heads, queries, inputs), got shape {tuple(array.shape)} (rank {array.ndim}); "
            "log a single example, not a batch"
        )
    if min(array.shape) == 0:
        raise ValueError(
            f"weights: expected every axis to have at least one entry, got shape "
            f"{tuple(array.shape)}"
        )
    if array.size > MAX_VALUES:
        raise ValueError(
            f"weights: expected at most {MAX_VALUES} values (e.g. 2048 x 2048), got shape "
            f"{tuple(array.shape)} = {array.size} values; log a smaller example or crop it"
        )
    array = array.astype(np.float64, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        bad = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(
            f"weights: expected finite values, got {int((~finite).sum())} non-finite "
            f"value(s), the first {array[bad]} at index {bad}"
        )
    too_big = np.abs(array) > FLOAT16_MAX
    if too_big.any():
        bad = tuple(int(i) for i in np.argwhere(too_big)[0])
        raise ValueError(
            f"weights: expected values within float16's range (+-{FLOAT16_MAX:g}), got "
            f"{array[bad]:g} at index {bad}"
        )
    return array


# -- writing ----------------------------------------------------------------------------


def _zlib(data: bytes, strategy: int, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 15, 9, strategy)
    return compressor.compress(data) + compressor.flush()


def _deflate(parts: Sequence[bytes]) -> list[bytes]:
    """The parts as zlib streams (to store one after another), each compressed as suits it.

    The parts (nibble pairs, high bytes, low bytes) differ: noise-like codes compress
    best with Huffman codes alone, constant or repetitive ones with LZ77 (at zlib's
    fastest level, which finds those repeats). Small data goes in one stream, where a
    stream's framing would cost more than separate codes save.
    """
    if sum(len(part) for part in parts) < _SEPARATE_PARTS_FROM:
        parts = [b"".join(parts)]
    return [
        min(
            _zlib(part, zlib.Z_HUFFMAN_ONLY, _ZLIB_LEVEL),
            _zlib(part, zlib.Z_DEFAULT_STRATEGY, 1),
            key=len,
        )
        for part in parts
        if part or len(parts) == 1
    ]


def _decimal4_layout(codes: np.ndarray) -> list[bytes]:
    flat = codes.reshape(-1)
    nibbles = np.minimum(flat, _NIBBLE_ESCAPE).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    packed = nibbles[0::2] | (nibbles[1::2] << 4)
    escaped = (flat[flat >= _NIBBLE_ESCAPE] - _NIBBLE_ESCAPE).astype(">u2")
    planes = escaped.view(np.uint8).reshape(-1, 2).T  # row 0: high bytes, row 1: low
    return [packed.tobytes(), planes[0].tobytes(), planes[1].tobytes()]


def _encode_values(array: np.ndarray) -> tuple[str, list[bytes]]:
    """The encoding and the zlib streams of the values blob."""
    if array.min() >= 0.0 and array.max() <= 1.0:
        codes = np.rint(array * DECIMAL_SCALE).astype(np.uint16)
        raw = _decimal4_layout(codes)
        # Huffman codes alone suit noise-like weights; LZ77 (at its fastest level) catches
        # repetition (constant rows, one-hot rows), where Huffman alone costs a bit a pair.
        return "decimal4", _deflate(raw)
    halves = array.astype("<f2")
    planes = halves.view(np.uint8).reshape(-1, 2).T[::-1]  # high bytes first
    return min(
        # Version 1's exact values blob: never more bytes than it.
        ("float16", [zlib.compress(halves.tobytes(), _ZLIB_LEVEL)]),
        ("float16-planes", _deflate([plane.tobytes() for plane in planes])),
        key=lambda candidate: sum(map(len, candidate[1])),
    )


def encode(
    weights: Any,
    input_labels: Sequence[str] | None = None,
    query_labels: Sequence[str] | None = None,
) -> tuple[bytes, bytes]:
    """Encodes one matrix and its labels as the two blobs (header, values).

    Args:
      weights: floats of shape (queries, inputs) or (heads, queries, inputs).
      input_labels: one string per input (column); default: positions.
      query_labels: one string per query (row); default: positions.

    Returns:
      The pair of blobs to store, in order.

    Raises:
      TypeError, ValueError: as `check_weights` and `tb_plugin.labels.check_labels` do,
        and ValueError for labels longer than `MAX_HEADER_BYTES` in all.
    """
    array = check_weights(weights)
    inputs = labels_policy.check_labels(input_labels, array.shape[-1], "input_labels")
    queries = labels_policy.check_labels(query_labels, array.shape[-2], "query_labels")
    encoding, streams = _encode_values(array)
    header = {
        "version": FORMAT_VERSION,
        "shape": [int(d) for d in array.shape],
        "encoding": encoding,
        "streams": [len(stream) for stream in streams],
        "input_labels": list(inputs),
        "query_labels": list(queries),
    }
    header_json = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    if len(header_json) > MAX_HEADER_BYTES:
        raise ValueError(
            f"input_labels, query_labels: expected at most {MAX_HEADER_BYTES} bytes of "
            f"labels in all, got {len(header_json)}; shorten the labels"
        )
    compressed = zlib.compress(header_json, 9)
    header_blob = compressed if len(compressed) < len(header_json) else header_json
    return header_blob, b"".join(streams)


# -- reading ----------------------------------------------------------------------------


def _inflate(blob: bytes, limit: int, what: str) -> bytes:
    """Inflates zlib streams one after another, refusing more than `limit` bytes in all.

    Bounded, so that a corrupt or hostile blob (a "zip bomb") never inflates in full.
    """
    out: list[bytes] = []
    size, rest = 0, bytes(blob)
    for _ in range(_MAX_STREAMS):
        decompressor = zlib.decompressobj()
        try:
            raw = decompressor.decompress(rest, limit - size + 1)
        except zlib.error as err:
            raise DecodeError(f"{what} are not zlib data: {err}") from err
        size += len(raw)
        out.append(raw)
        if size > limit or not decompressor.eof:
            raise DecodeError(
                f"{what}: expected at most {limit} bytes, got "
                f"{size}{'' if decompressor.eof else ' or more'}"
            )
        rest = decompressor.unused_data
        if not rest:
            return b"".join(out)
    raise DecodeError(f"{what}: expected at most {_MAX_STREAMS} zlib streams")


def _string_list(value: Any, length: int, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) != length:
        raise DecodeError(f"header field {field!r}: expected a list of {length} strings")
    if not all(isinstance(label, str) for label in value):
        raise DecodeError(f"header field {field!r}: expected strings only")
    bad = labels_policy.find_unencodable(value)
    if bad is not None:
        raise DecodeError(f"header field {field!r}: label {bad} is not valid Unicode text")
    return tuple(value)


def decode_header(blob: bytes) -> Header:
    """Parses blob 0 (of any readable version).

    Raises:
      DecodeError: when the blob is not a header of a version this code knows, whatever
        is wrong with it (never another exception).
    """
    blob = bytes(blob)
    if blob[:1] == b"\x78":  # zlib's first byte; a JSON header starts with "{"
        blob = _inflate(blob, MAX_HEADER_BYTES, "header")
    try:
        header = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, TypeError, RecursionError) as err:
        raise DecodeError(f"header is not UTF-8 JSON: {labels_policy.describe(err)}") from None
    if not isinstance(header, dict):
        raise DecodeError("header: expected a JSON object")
    version = check_version(header.get("version"), "header field")
    if version == 1:
        if header.get("dtype") != _V1_DTYPE or header.get("compression") != _V1_COMPRESSION:
            raise DecodeError(
                f"header: expected dtype {_V1_DTYPE!r} and compression {_V1_COMPRESSION!r}, "
                f"got {labels_policy.describe(header.get('dtype'))} and "
                f"{labels_policy.describe(header.get('compression'))}"
            )
        encoding = "float16"
    else:
        encoding = header.get("encoding")
        if encoding not in ENCODINGS:
            raise DecodeError(
                f"header field 'encoding': expected one of {', '.join(ENCODINGS)}, got "
                f"{labels_policy.describe(encoding)}"
            )
    shape = header.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) not in (2, 3)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
        or math.prod(shape) > MAX_VALUES
    ):
        raise DecodeError(
            "header field 'shape': expected 2 or 3 positive sizes, got "
            + labels_policy.describe(shape)
        )
    streams = header.get("streams") if version >= 2 else None
    if not (
        isinstance(streams, list)
        and 1 <= len(streams) <= _MAX_STREAMS
        and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in streams)
    ):
        # A hint for serving the blob as it is, never needed to decode it: one that is
        # missing or malformed is no reason to hide a readable matrix.
        streams = None
    return Header(
        version=version,
        shape=tuple(shape),
        input_labels=_string_list(header.get("input_labels"), shape[-1], "input_labels"),
        query_labels=_string_list(header.get("query_labels"), shape[-2], "query_labels"),
        encoding=encoding,
        streams=None if streams is None else tuple(streams),
    )


def _decode_decimal4(raw: bytes, size: int) -> np.ndarray:
    packed_len = (size + 1) // 2
    if len(raw) < packed_len:
        raise DecodeError(f"values: expected at least {packed_len} bytes, got {len(raw)}")
    packed = np.frombuffer(raw, np.uint8, packed_len)
    codes = np.empty(packed_len * 2, np.uint16)
    codes[0::2] = packed & 0x0F
    codes[1::2] = packed >> 4
    codes = codes[:size]
    escaped = np.flatnonzero(codes == _NIBBLE_ESCAPE)
    count = len(escaped)
    if len(raw) != packed_len + 2 * count:
        raise DecodeError(
            f"values: expected {packed_len + 2 * count} bytes for {size} weights with "
            f"{count} escapes, got {len(raw)}"
        )
    planes = np.frombuffer(raw, np.uint8, 2 * count, packed_len).reshape(2, count)
    if count:
        tail = _NIBBLE_ESCAPE + ((planes[0].astype(np.uint32) << 8) | planes[1])
        if int(tail.max()) > DECIMAL_SCALE:
            raise DecodeError(f"values: found a code above {DECIMAL_SCALE}, which is never written")
        codes[escaped] = tail
    return codes


def _raw_limit(header: Header) -> int:
    """The most bytes the values blob of `header` may inflate to."""
    size = header.size
    return (size + 1) // 2 + 2 * size if header.encoding == "decimal4" else 2 * size


def _blob_limit(header: Header) -> int:
    """More bytes than any values blob of `header` the writer makes: zlib's deflateBound
    (the data, 1 byte in 4096 + 1 in 16384, 13 bytes, and 6 of zlib's frame) per stream."""
    raw = _raw_limit(header)
    return raw + (raw >> 12) + (raw >> 14) + _MAX_STREAMS * (13 + 6)


def stated_streams(header: Header, blob: bytes) -> tuple[int, ...] | None:
    """The byte length of each zlib stream of a values blob, when known without inflating it.

    One stream for version 1; for version 2, what the header says, if that adds up to the
    blob's length; else None (a file written before the header said, or a wrong header:
    the streams' ends are then known only by inflating, what decoding does). None too for
    a blob longer than any the writer makes for its shape: corrupt, left to the decoder to
    refuse, rather than sent on whole.
    """
    if len(blob) > _blob_limit(header):
        return None
    if header.version == 1:
        return (len(blob),)
    if header.streams is not None and sum(header.streams) == len(blob):
        return header.streams
    return None


def decode_values(header: Header, blob: bytes) -> Values:
    """Decompresses blob 1 into the codes of `header.shape`.

    Raises:
      DecodeError: when the blob does not hold exactly the values the header announces.
    """
    size = header.size
    raw = _inflate(blob, _raw_limit(header), "values")
    if header.encoding == "decimal4":
        codes = _decode_decimal4(raw, size)
    else:
        if len(raw) != 2 * size:
            raise DecodeError(
                f"values: expected {2 * size} bytes for shape {list(header.shape)}, got {len(raw)}"
            )
        if header.encoding == "float16-planes":
            planes = np.frombuffer(raw, np.uint8).reshape(2, size)
            codes = (planes[0].astype(np.uint16) << 8) | planes[1]
        else:
            codes = np.frombuffer(raw, "<u2")
        # Non-finite values are refused by the writer; finding one means corrupt data.
        # (Tested on the bits: an all-ones exponent is inf or nan.)
        if ((codes & 0x7C00) == 0x7C00).any():
            raise DecodeError("values: found a non-finite value, which the writer never stores")
    return Values(value_kind(header.encoding), codes.reshape(header.shape))


def decode(header_blob: bytes, values_blob: bytes) -> tuple[Header, Values]:
    """Decodes both blobs; the inverse of `encode` (up to the encoding's precision)."""
    header = decode_header(header_blob)
    return header, decode_values(header, values_blob)
