"""A small logdir of attention summaries, and the exact values the plugin must serve.

Shared by the WSGI and the real-server tests, so both check the same facts:
labels that change between steps (and with them the shape), unicode and markup labels,
a multi-head matrix, a second run, a run without attention data, and tags the plugin
must skip or refuse (a newer format version, corrupt blobs). The run "model" is what
`AttentionLogger` writes: tags `<layer key>/<example>` in model order at each step, and
the scalars `<layer key>/mean_entropy`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import struct
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
import v1_fixture

MARKUP = "<img src=x onerror=alert(1)>"
UNICODE = "caf\u00e9 \u4e2d\u6587 \U0001f600"


@dataclass
class Written:
    """One stored step, as the plugin should return it."""

    step: int
    values: np.ndarray  # float64 as stored (see stored_values), the shape as written
    input_labels: list[str]
    query_labels: list[str]
    # The values blob as the writer stored it, where a test compares the bytes served.
    values_blob: bytes | None = None

    @property
    def values32(self) -> np.ndarray:
        """The values as the binary forms serve them: the nearest float32."""
        return self.values.astype(np.float32)


def stored_values(weights) -> np.ndarray:
    """What the format keeps of `weights` (codec.py, format version 2), as float64.

    Weights all in [0, 1]: rounded to 4 decimals. Anything else: float16.
    """
    array = np.asarray(weights, dtype=np.float64)
    if array.min() >= 0 and array.max() <= 1:
        return np.rint(array * 10_000) / 10_000
    return array.astype(np.float16).astype(np.float64)


@dataclass
class Logs:
    logdir: str
    # {run: {tag: [Written, ...]}} in step order
    written: dict[str, dict[str, list[Written]]] = field(default_factory=dict)
    # Run "model": {layer: [(step, mean entropy as float32), ...]}
    entropy: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    # Run "stored" (for the stored form of `matrix`), kept out of `written` so that the
    # tests that read every written step never make the plugin decode these first:
    # {tag: [Written, ...]}
    stored: dict[str, list[Written]] = field(default_factory=dict)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def write_logs(logdir: str, long_steps: int = 12) -> Logs:
    """Writes the logdir; returns what each run/tag/step holds."""
    import tensorflow as tf

    from tb_plugin import codec, metadata
    from tb_plugin.summary import attention

    rng = np.random.default_rng(0)
    logs = Logs(logdir, written={"v1": {}})

    def log(run: str, writer, tag: str, step: int, weights, inputs=None, queries=None, **kwargs):
        with writer.as_default():
            assert attention(
                tag, weights, step=step, input_labels=inputs, query_labels=queries, **kwargs
            )
        shape = np.shape(weights)
        logs.written.setdefault(run, {}).setdefault(tag, []).append(
            Written(
                step=step,
                values=stored_values(weights),
                input_labels=list(inputs)
                if inputs is not None
                else [str(i) for i in range(shape[-1])],
                query_labels=list(queries)
                if queries is not None
                else [str(i) for i in range(shape[-2])],
            )
        )

    train = tf.summary.create_file_writer(os.path.join(logdir, "train"))
    # A probe whose example (and so its tokens and shape) changes from step to step.
    examples = [
        (["the", "cat", "sat", "."], ["le", "chat", "."]),
        ([UNICODE, MARKUP, "a,b", '"q"', "end"], ["x", MARKUP]),
        (["only"], ["one", "two", "three"]),
    ]
    for step, (inputs, queries) in zip((0, 5, 10), examples, strict=True):
        weights = _softmax(rng.normal(size=(len(queries), len(inputs))))
        log(
            "train",
            train,
            "encoder/attn/0",
            step,
            weights,
            inputs,
            queries,
            description="probe example 0",
        )
    for step in range(2):
        log(
            "train",
            train,
            "decoder/heads/0",
            step,
            _softmax(rng.normal(size=(2, 3, 4))).astype(np.float32),
            ["a", "b", "c", "d"],
            ["p", "q", "r"],
        )
    # float16's edges: the largest values, the smallest subnormal, signed zero, thirds.
    edges = np.array([[65504.0, -65504.0, 2.0**-24], [-0.0, 1 / 3, -2 / 3]])
    log("train", train, "edges/0", 0, edges)
    for step in range(long_steps):
        log("train", train, "long/0", step, rng.random((2, 2)))

    # Tags that must not reach the tags listing: a newer format, and corrupt blobs.
    future = metadata.create_summary_metadata()
    future.plugin_data.content = json.dumps({"version": 99}).encode()
    with train.as_default():
        tf.summary.write("future/0", tf.constant([b"{}", b""]), step=0, metadata=future)
        tf.summary.write(
            "corrupt/0",
            tf.constant([b"not json", b"x"]),
            step=0,
            metadata=metadata.create_summary_metadata(),
        )
        tf.summary.write(
            "oneblob/0", tf.constant([b"{}"]), step=0, metadata=metadata.create_summary_metadata()
        )
        # A stored header with a lone surrogate in a label (JSON can escape one).
        surrogate = {
            "version": 2,
            "shape": [1, 1],
            "encoding": "decimal4",
            "input_labels": ["\ud800"],
            "query_labels": ["q"],
        }
        _, values_blob = codec.encode(np.ones((1, 1)))
        tf.summary.write(
            "surrogate/0",
            tf.constant([json.dumps(surrogate).encode(), values_blob]),
            step=0,
            metadata=metadata.create_summary_metadata(),
        )
        tf.summary.scalar("loss", 0.5, step=0)
    train.close()

    evaluation = tf.summary.create_file_writer(os.path.join(logdir, "eval"))
    log(
        "eval", evaluation, "encoder/attn/0", 3, np.array([[0.125, 0.875]]), ["in0", "in1"], ["out"]
    )
    evaluation.close()

    scalars_only = tf.summary.create_file_writer(os.path.join(logdir, "scalars_only"))
    with scalars_only.as_default():
        tf.summary.scalar("loss", 1.0, step=0)
    scalars_only.close()

    # Run "stored": values blobs of several zlib streams, for the stored form of `matrix`:
    # noise-like weights (with escapes), an odd count, repetitive rows, raw scores.
    stored = tf.summary.create_file_writer(os.path.join(logdir, "stored"))
    noise = np.random.default_rng(1)  # its own: the other runs' data stay as they were
    peaked = _softmax(3 * noise.normal(size=(64, 96)))
    matrices = [
        ("wide/0", 0, peaked),
        ("wide/0", 1, _softmax(4 * noise.normal(size=(33, 47)))),
        ("wide/0", 2, np.tile(np.eye(1, 90), (70, 1))),
        ("scores/0", 0, 5 * noise.normal(size=(3, 40, 50))),
    ]
    for tag, step, weights in matrices:
        with stored.as_default():
            assert attention(tag, weights, step=step)
        shape = np.shape(weights)
        logs.stored.setdefault(tag, []).append(
            Written(
                step,
                stored_values(weights),
                [str(i) for i in range(shape[-1])],
                [str(i) for i in range(shape[-2])],
                values_blob=codec.encode(weights)[1],
            )
        )
    # A header of version 2 without "streams", as written before the header said, and
    # one whose lengths do not add up to the blob's (a hint the plugin must not trust).
    legacy_header, legacy_values = codec.encode(peaked)
    legacy = codec.decode_header(legacy_header)
    assert legacy.streams is not None and len(legacy.streams) == 3
    without = {
        "version": 2,
        "shape": list(peaked.shape),
        "encoding": legacy.encoding,
        "input_labels": list(legacy.input_labels),
        "query_labels": list(legacy.query_labels),
    }
    for tag, header in (("legacy/0", without), ("mislengths/0", {**without, "streams": [1, 2]})):
        with stored.as_default():
            tf.summary.write(
                tag,
                tf.constant([json.dumps(header).encode(), legacy_values]),
                step=0,
                metadata=metadata.create_summary_metadata(),
            )
        first = logs.stored["wide/0"][0]
        logs.stored[tag] = [Written(0, first.values, first.input_labels, first.query_labels)]
    stored.close()

    # Run "v1": the committed event file of format version 1 (tests/v1_fixture.py).
    shutil.copytree(os.path.join(v1_fixture.LOGDIR, v1_fixture.RUN), os.path.join(logdir, "v1"))
    for tag, steps in v1_fixture.expected().items():
        logs.written["v1"][tag] = [
            Written(step, weights.astype(np.float16).astype(np.float64), inputs, queries)
            for step, weights, inputs, queries in steps
        ]

    model = tf.summary.create_file_writer(os.path.join(logdir, "model"))
    for step in MODEL_STEPS:
        for layer, shape in MODEL_LAYERS.items():
            for example in ("0", "1"):
                if (layer, example, step) == MODEL_GAP:
                    continue
                inputs = [f"{example}-in{i}" for i in range(shape[-1])]
                queries = [f"{example}-q{i}" for i in range(shape[-2])]
                weights = _softmax(3 * rng.normal(size=shape))
                log("model", model, f"{layer}/{example}", step, weights, inputs, queries)
                # Distinct wall times, as real layers (run one after another) have.
                time.sleep(0.002)
            entropy = float(np.float32(rng.random() * 2))
            with model.as_default():
                tf.summary.scalar(f"{layer}/mean_entropy", entropy, step=step)
                tf.summary.scalar(f"{layer}/mean_max_weight", 0.5, step=step)
            logs.entropy.setdefault(layer, []).append((step, entropy))
        with model.as_default():
            tf.summary.scalar("loss", 1.0 / (step + 1), step=step)
            if step == MODEL_STEPS[-1]:
                # Hostile tags of example 0: they must never hide the good ones.
                tf.summary.write(
                    "broken/0",
                    tf.constant([b"[" * 1000, b"x"]),
                    step=step,
                    metadata=metadata.create_summary_metadata(),
                )
                tf.summary.write("newer/0", tf.constant([b"{}", b""]), step=step, metadata=future)
    model.close()
    return logs


# The run "model": layer keys (as the logger makes them: "/" and "@2" inside) in model
# order, deliberately not alphabetical, and the shape each logs.
MODEL_LAYERS = {
    "encoder/block/1/attn": (3, 4),
    "encoder/mha@2": (2, 3, 3),
    "decoder/cross": (2, 4),
}
MODEL_STEPS = (0, 10, 20)
# (layer, example, step) not written: that layer is "missing" from example 0's last step.
MODEL_GAP = ("decoder/cross", "0", 20)
MODEL_BAD_TAGS = {"broken/0", "newer/0"}


VISIBLE_TAGS = {
    "train": ["decoder/heads/0", "edges/0", "encoder/attn/0", "long/0"],
    "eval": ["encoder/attn/0"],
    "model": sorted(f"{layer}/{e}" for layer in MODEL_LAYERS for e in ("0", "1")),
    "v1": ["dec/mha@2/0", "enc/attn/0", "scores/0"],
    "stored": ["legacy/0", "mislengths/0", "scores/0", "wide/0"],
}
HIDDEN_TAGS = ["future/0", "corrupt/0", "oneblob/0", "surrogate/0"]


def expected_json(w: Written, wall_time: float | None = None) -> dict:
    shape = list(w.values.shape)
    body = {
        "step": w.step,
        "shape": shape,
        "heads": shape[0] if len(shape) == 3 else 1,
        "input_labels": w.input_labels,
        "query_labels": w.query_labels,
        "values": w.values.tolist(),
    }
    if wall_time is not None:
        body["wall_time"] = wall_time
    return body


def _frame(body: bytes) -> tuple[dict, int]:
    """A binary answer's frame: a uint32 length, that much JSON, zero padding to 4 bytes.

    Returns the JSON and where what follows it starts."""
    (length,) = struct.unpack_from("<I", body, 0)
    header = json.loads(body[4 : 4 + length].decode("utf-8"))
    start = 4 + length + (-(4 + length) % 4)
    assert start % 4 == 0 and body[4 + length : start] == b"\0" * (start - 4 - length)
    return header, start


def parse_binary(body: bytes) -> tuple[dict, np.ndarray]:
    """Reads the binary form of `matrix`: header JSON, padding, float32 values."""
    header, values = _framed(body, "<f4")
    return header, values.reshape(header["shape"])


def widen_codes(codes: np.ndarray, encoding: str) -> np.ndarray:
    """The float32 values of stored codes, by NumPy alone (README, "The HTTP API")."""
    if encoding == "decimal4":
        assert int(codes.max(initial=0)) <= 10_000
        return codes.astype(np.float32) / np.float32(10_000)
    assert encoding == "float16"
    return codes.astype("<u2").view("<f2").astype(np.float32)


def _framed(body: bytes, dtype: str) -> tuple[dict, np.ndarray]:
    """A binary answer: its frame, then values of `dtype`."""
    header, start = _frame(body)
    return header, np.frombuffer(body, dtype=dtype, offset=start)


def parse_stored(body: bytes) -> tuple[dict, bytes]:
    """Reads the stored form of `matrix`: header JSON, padding, the values blob as stored."""
    header, start = _frame(body)
    return header, body[start:]


def check_stored(body: bytes, w: Written) -> dict:
    """Asserts a stored-form answer holds w's values in the zlib streams it announces.

    Each stream must inflate by itself, exactly to its end (what the browser's
    DecompressionStream needs), and together decode to w's values; the blob must be the
    one written where `w.values_blob` says. Returns the JSON.
    """
    from tb_plugin import codec

    header, blob = parse_stored(body)
    if w.values_blob is not None:
        assert blob == w.values_blob  # exactly as written
    expected = expected_json(w)
    del expected["values"]
    assert {k: header[k] for k in expected if k != "step"} == {
        k: v for k, v in expected.items() if k != "step"
    }
    assert header["step"] == w.step and header["encoding"] in codec.ENCODINGS
    streams = header["streams"]
    assert 1 <= len(streams) <= 3 and sum(streams) == len(blob)
    start = 0
    for length in streams:
        decompressor = zlib.decompressobj()
        decompressor.decompress(blob[start : start + length])
        assert decompressor.eof and not decompressor.unused_data
        start += length
    stored = codec.Header(2, tuple(header["shape"]), (), (), encoding=header["encoding"])
    values = codec.decode_values(stored, blob)
    np.testing.assert_array_equal(values.float32().reshape(w.values.shape), w.values32)
    return header


def parse_codes(body: bytes) -> tuple[dict, np.ndarray]:
    """Reads the codes form of `matrix` and `overview`: header JSON, padding, uint16 codes."""
    return _framed(body, "<u2")


def check_codes_overview(codes_body: bytes, binary_body: bytes) -> None:
    """Asserts the codes form of an `overview` answer says what its float32 form says."""
    described, codes = parse_codes(codes_body)
    expected, values = parse_overview(binary_body)
    for entry in described["layers"]:
        assert entry.pop("encoding") in ("decimal4", "float16")
    assert described == expected
    parsed, _ = parse_codes(codes_body)
    widened = [
        widen_codes(codes[e["offset"] : e["offset"] + int(np.prod(e["shape"]))], e["encoding"])
        for e in parsed["layers"]
    ]
    assert sum(w.size for w in widened) == codes.size == values.size
    np.testing.assert_array_equal(np.concatenate(widened or [np.zeros(0, np.float32)]), values)


def check_csv(text: str, w: Written) -> None:
    """Asserts the CSV form of `matrix` holds `w`'s labels and values (6 digits)."""
    rows = list(csv.reader(io.StringIO(text)))
    heads = w.values.reshape((-1, *w.values.shape[-2:]))
    with_heads = w.values.ndim == 3
    assert rows[0] == (["head"] if with_heads else []) + ["query", *w.input_labels]
    body = rows[1:]
    assert len(body) == heads.shape[0] * heads.shape[1]
    for i, row in enumerate(body):
        h, q = divmod(i, heads.shape[1])
        if with_heads:
            assert row[0] == str(h)
            row = row[1:]
        assert row[0] == w.query_labels[q]
        np.testing.assert_allclose(
            [float(c) for c in row[1:]], heads[h, q].astype(np.float64), rtol=1e-5
        )


def parse_overview(body: bytes) -> tuple[dict, np.ndarray]:
    """Reads the `overview` answer: its JSON description and all its float32 values."""
    return _framed(body, "<f4")


def check_overview(described: dict, values: np.ndarray, logs: Logs, example: str, step: int):
    """Asserts an `overview` answer holds exactly what run "model" has at `step`."""
    assert (described["run"], described["example"], described["step"]) == ("model", example, step)
    expected_layers = [layer for layer in MODEL_LAYERS if (layer, example, step) != MODEL_GAP]
    # Model order (the order of writing), not alphabetical.
    assert [entry["layer"] for entry in described["layers"]] == expected_layers
    walls = [entry["wall_time"] for entry in described["layers"]]
    assert walls == sorted(walls)
    offset = 0
    for entry in described["layers"]:
        tag = entry["layer"] + "/" + example
        assert entry["tag"] == tag
        (w,) = [w for w in logs.written["model"][tag] if w.step == step]
        shape3 = list(w.values.shape) if w.values.ndim == 3 else [1, *w.values.shape]
        assert entry["shape"] == shape3 and entry["heads"] == shape3[0]
        assert entry["input_labels"] == w.input_labels
        assert entry["query_labels"] == w.query_labels
        assert entry["description"] == ""
        assert entry["offset"] == offset
        size = int(np.prod(shape3))
        np.testing.assert_array_equal(values[offset : offset + size], w.values32.reshape(-1))
        offset += size
    assert offset == values.size
    # A layer without this step is "missing"; so is the corrupt tag, which has only the last.
    last = (example, step) == ("0", MODEL_STEPS[-1])
    missing = [MODEL_GAP[0] + "/0"] if (example, step) == MODEL_GAP[1:] else []
    missing += ["broken/0"] if example == "0" and not last else []
    assert described["missing"] == sorted(missing)
    # Unreadable: the newer format always, the corrupt header where it has this step.
    bad = (["broken/0"] if last else []) + (["newer/0"] if example == "0" else [])
    assert [e["tag"] for e in described["errors"]] == bad
    assert all(isinstance(e["error"], str) and e["error"] for e in described["errors"])
