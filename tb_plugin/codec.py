"""The stored form of one attention matrix, shared by the writer and the plugin.

One summary value is a rank-1 string tensor of two blobs:

* blob 0, the header: UTF-8 JSON object
  `{"version": 1, "shape": [m, n] or [h, m, n], "dtype": "<f2", "compression": "zlib",
  "input_labels": [n strings], "query_labels": [m strings]}`;
* blob 1, the values: zlib-compressed little-endian float16 values, row-major
  (heads x queries x inputs).

The header is a blob of its own so that the plugin can list shapes and labels without
reading (or decompressing) the values. Labels live in every step's header, not in the
summary metadata, because TensorBoard keeps only the first event's metadata of a tag
while the probe example (and so its tokens) may change from step to step.

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

# Version of the blob layout above; bump it when the layout changes, and teach
# `decode_header` to read the older ones.
FORMAT_VERSION = 1

# Largest number of weights in one summary (e.g. 2048 x 2048, or 16 heads of
# 512 x 512): about 8 MiB of float16 before compression. Bigger matrices are almost
# certainly a mistake (a whole batch, not one example) and would stall the browser.
MAX_VALUES = 1 << 22

# Longest token label, in characters.
MAX_LABEL_CHARS = 1000

# float16's largest finite value; beyond it values would be stored as infinity.
FLOAT16_MAX = float(np.finfo(np.float16).max)

_DTYPE = "<f2"
_COMPRESSION = "zlib"
_ZLIB_LEVEL = 6


class DecodeError(ValueError):
    """Stored data does not follow the format (corrupt, or written by a newer version)."""


@dataclass(frozen=True)
class Header:
    """What blob 0 says about one stored matrix."""

    version: int
    shape: tuple[int, ...]
    input_labels: tuple[str, ...]
    query_labels: tuple[str, ...]

    @property
    def heads(self) -> int:
        return self.shape[0] if len(self.shape) == 3 else 1

    @property
    def shape3(self) -> tuple[int, int, int]:
        """The shape with the head axis made explicit: (heads, queries, inputs)."""
        if len(self.shape) == 3:
            return self.shape  # type: ignore[return-value]
        return (1, *self.shape)  # type: ignore[return-value]

    def to_json(self) -> dict[str, Any]:
        """The header as served by the plugin's HTTP API (without the values)."""
        return {
            "shape": list(self.shape),
            "heads": self.heads,
            "input_labels": list(self.input_labels),
            "query_labels": list(self.query_labels),
        }


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_weights(weights: Any) -> np.ndarray:
    """Returns `weights` as a float array of rank 2 or 3 that float16 stores faithfully.

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


def check_labels(labels: Any, length: int, name: str) -> tuple[str, ...]:
    """Returns `labels` as a tuple of `length` strings; None gives the positions "0", "1", ...

    Accepts any sequence (list, tuple, 1-D numpy array) of `str`, or of UTF-8 `bytes`
    (what `tf.strings` and tokenizers often produce).

    Raises:
      TypeError: when `labels` is not a sequence of strings.
      ValueError: for the wrong number of labels, undecodable bytes, or a label that is
        too long.
    """
    if labels is None:
        return tuple(str(i) for i in range(length))
    if isinstance(labels, (str, bytes)):
        raise TypeError(
            f"{name}: expected a sequence of {length} strings, got a single "
            f"{type(labels).__name__} {_describe(labels)}"
        )
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1:
            raise ValueError(
                f"{name}: expected a 1-D sequence of {length} strings, got an array of "
                f"shape {labels.shape}"
            )
        labels = labels.tolist()
    if not isinstance(labels, Sequence):
        raise TypeError(
            f"{name}: expected a sequence of {length} strings, got {type(labels).__name__}"
        )
    if len(labels) != length:
        raise ValueError(
            f"{name}: expected {length} labels (one per "
            f"{'input' if name == 'input_labels' else 'query'} position), got {len(labels)}"
        )
    result = []
    for i, label in enumerate(labels):
        if isinstance(label, bytes):
            try:
                label = label.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{name}[{i}]: expected UTF-8 text, got undecodable bytes {_describe(label)}"
                ) from err
        elif not isinstance(label, str):
            raise TypeError(
                f"{name}[{i}]: expected a string, got {type(label).__name__} {_describe(label)}"
            )
        if len(label) > MAX_LABEL_CHARS:
            raise ValueError(
                f"{name}[{i}]: expected at most {MAX_LABEL_CHARS} characters, got {len(label)}"
            )
        result.append(str(label))
    return tuple(result)


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
      TypeError, ValueError: as `check_weights` and `check_labels` do.
    """
    array = check_weights(weights)
    inputs = check_labels(input_labels, array.shape[-1], "input_labels")
    queries = check_labels(query_labels, array.shape[-2], "query_labels")
    header = {
        "version": FORMAT_VERSION,
        "shape": [int(d) for d in array.shape],
        "dtype": _DTYPE,
        "compression": _COMPRESSION,
        "input_labels": list(inputs),
        "query_labels": list(queries),
    }
    header_blob = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    values_blob = zlib.compress(array.astype(_DTYPE).tobytes(order="C"), _ZLIB_LEVEL)
    return header_blob, values_blob


def _string_list(value: Any, length: int, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) != length:
        raise DecodeError(f"header field {field!r}: expected a list of {length} strings")
    if not all(isinstance(label, str) for label in value):
        raise DecodeError(f"header field {field!r}: expected strings only")
    return tuple(value)


def decode_header(blob: bytes) -> Header:
    """Parses blob 0.

    Raises:
      DecodeError: when the blob is not a header of a version this code knows.
    """
    try:
        header = json.loads(bytes(blob).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, TypeError, RecursionError) as err:
        raise DecodeError(f"header is not UTF-8 JSON: {err}") from err
    if not isinstance(header, dict):
        raise DecodeError("header: expected a JSON object")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DecodeError(f"header field 'version': expected a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise DecodeError(
            f"format version {version} is newer than this plugin's ({FORMAT_VERSION}); "
            "upgrade keras-seqattn"
        )
    if header.get("dtype") != _DTYPE or header.get("compression") != _COMPRESSION:
        raise DecodeError(
            f"header: expected dtype {_DTYPE!r} and compression {_COMPRESSION!r}, got "
            f"{header.get('dtype')!r} and {header.get('compression')!r}"
        )
    shape = header.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) not in (2, 3)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
        or math.prod(shape) > MAX_VALUES
    ):
        raise DecodeError(f"header field 'shape': expected 2 or 3 positive sizes, got {shape!r}")
    return Header(
        version=version,
        shape=tuple(shape),
        input_labels=_string_list(header.get("input_labels"), shape[-1], "input_labels"),
        query_labels=_string_list(header.get("query_labels"), shape[-2], "query_labels"),
    )


def decode_values(header: Header, blob: bytes) -> np.ndarray:
    """Decompresses blob 1 into a float16 array of `header.shape`.

    Raises:
      DecodeError: when the blob does not hold exactly that many values.
    """
    expected = math.prod(header.shape) * 2
    decompressor = zlib.decompressobj()
    try:
        # Bounded, so that a corrupt or hostile blob cannot inflate without limit.
        raw = decompressor.decompress(bytes(blob), expected + 1)
    except zlib.error as err:
        raise DecodeError(f"values are not zlib data: {err}") from err
    if len(raw) != expected or not decompressor.eof:
        raise DecodeError(
            f"values: expected {expected} bytes for shape {list(header.shape)}, "
            f"got {len(raw)}{'' if decompressor.eof else ' or more'}"
        )
    values = np.frombuffer(raw, dtype=_DTYPE).reshape(header.shape)
    # Non-finite values are refused by the writer; finding one means corrupt data.
    # (Tested on the bits: an all-ones exponent is inf or nan.)
    if ((values.view("<u2") & 0x7C00) == 0x7C00).any():
        raise DecodeError("values: found a non-finite value, which the writer never stores")
    return values


@functools.cache
def _float16_to_float32() -> np.ndarray:
    return np.arange(1 << 16, dtype=np.uint16).view(_DTYPE).astype("<f4")


def widen(values: np.ndarray) -> np.ndarray:
    """float16 values (as decoded) to float32, exactly; faster than `astype` for big arrays."""
    return _float16_to_float32()[values.view("<u2")]


def decode(header_blob: bytes, values_blob: bytes) -> tuple[Header, np.ndarray]:
    """Decodes both blobs; the inverse of `encode` (values rounded to float16)."""
    header = decode_header(header_blob)
    return header, decode_values(header, values_blob)
