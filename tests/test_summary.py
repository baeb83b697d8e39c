"""The attention summary: validation, the stored format, and its size on disk."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.proto import summary_pb2

from tb_plugin import codec, metadata
from tb_plugin.summary import attention

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _events(logdir: str) -> list:
    """All events with a summary value, from every event file under `logdir`."""
    events = []
    for path in sorted(
        glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True)
    ):
        for event in event_file_loader.EventFileLoader(path).Load():
            if event.HasField("summary"):
                events.append(event)
    return events


def _write(logdir: str, *args, **kwargs) -> bool:
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        result = attention(*args, **kwargs)
    writer.close()
    return result


def _logdir_bytes(logdir: str) -> int:
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(logdir, "*")))


# -- the stored format -----------------------------------------------------------------


def _v1_bytes(weights: np.ndarray, inputs=None, queries=None) -> int:
    """What format version 1 stored for this matrix (header JSON + zlib float16)."""
    shape = list(weights.shape)
    header = {
        "version": 1,
        "shape": shape,
        "dtype": "<f2",
        "compression": "zlib",
        "input_labels": inputs or [str(i) for i in range(shape[-1])],
        "query_labels": queries or [str(i) for i in range(shape[-2])],
    }
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    return len(text) + len(zlib.compress(weights.astype("<f2").tobytes(), 6))


def test_written_summary_is_a_blob_sequence_with_metadata(tmp_path):
    weights = _softmax(np.random.default_rng(0).normal(size=(3, 5)))
    assert _write(str(tmp_path), "layer/0", weights, step=7, description="probe 0")
    (event,) = _events(str(tmp_path))
    (value,) = event.summary.value
    assert event.step == 7
    assert value.tag == "layer/0"
    assert value.metadata.plugin_data.plugin_name == "attention"
    assert value.metadata.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    assert value.metadata.summary_description == "probe 0"
    assert metadata.parse_plugin_metadata(value.metadata.plugin_data.content) == 2
    header_blob, values_blob = value.tensor.string_val
    header, values = codec.decode(header_blob, values_blob)
    assert header.version == 2 and header.encoding == "decimal4"
    assert header.shape == (3, 5)
    assert header.input_labels == ("0", "1", "2", "3", "4")
    assert header.query_labels == ("0", "1", "2")
    np.testing.assert_array_equal(values.float64(), np.rint(weights * 10_000) / 10_000)


def test_round_trip_keeps_heads_labels_and_4_decimals():
    rng = np.random.default_rng(1)
    weights = rng.random((2, 3, 4)).astype(np.float32)
    inputs = ["état", "<img src=x onerror=alert(1)>", "\u4e2d\u6587", 'a "quoted", comma']
    queries = ["q0", "", "\U0001f600"]
    header, values = codec.decode(*codec.encode(weights, inputs, queries))
    assert header.shape == (2, 3, 4) and header.heads == 2 and header.shape3 == (2, 3, 4)
    assert header.input_labels == tuple(inputs)
    assert header.query_labels == tuple(queries)
    assert values.codes.dtype == np.uint16 and values.codes.shape == (2, 3, 4)
    np.testing.assert_array_equal(values.float64(), np.rint(weights.astype(float) * 1e4) / 1e4)
    # float32: the nearest float32 to each 4-decimal value.
    np.testing.assert_array_equal(values.float32(), values.float64().astype(np.float32))


def _peaked(rng, shape, scale=3.0):
    return _softmax(scale * rng.normal(size=shape))


# Every kind of matrix the writer may meet, each in several size classes.
MATRIX_KINDS = {
    "peaked softmax": _peaked,
    "flat softmax": lambda rng, shape: _peaked(rng, shape, 0.1),
    "uniform random": lambda rng, shape: rng.random(shape),
    "constant": lambda rng, shape: np.full(shape, 1 / 3),
    "one-hot rows": lambda rng, shape: np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])],
    "sparse, exact zeros": lambda rng, shape: rng.random(shape) * (rng.random(shape) < 0.05),
    "near 1": lambda rng, shape: 1 - rng.random(shape) * 1e-3,
    "float32 softmax": lambda rng, shape: _peaked(rng, shape).astype(np.float32),
    "raw scores": lambda rng, shape: 5 * rng.normal(size=shape),
    "large raw scores": lambda rng, shape: rng.uniform(-65504, 65504, shape),
    "integer scores": lambda rng, shape: np.round(5 * rng.normal(size=shape)),
    "negative zeros and ones": lambda rng, shape: -np.eye(shape[-1])[np.zeros(shape[:-1], int)],
}
SIZE_CLASSES = [(1, 1), (3, 5), (4, 7, 9), (64, 64), (12, 64, 64), (128, 128), (512, 512)]


@pytest.mark.parametrize("shape", SIZE_CLASSES, ids=[str(s) for s in SIZE_CLASSES])
@pytest.mark.parametrize("kind", list(MATRIX_KINDS))
def test_every_matrix_kind_round_trips_within_its_precision_and_v1_bytes(kind, shape):
    weights = np.asarray(MATRIX_KINDS[kind](np.random.default_rng(len(kind)), shape))
    header_blob, values_blob = codec.encode(weights)
    header, values = codec.decode(header_blob, values_blob)
    assert header.shape == shape
    exact = weights.astype(np.float64)
    if exact.min() >= 0 and exact.max() <= 1:
        # In [0, 1]: within 5e-5, the weight rounded to 4 decimals (float64 reading),
        # and float32 adds at most its own rounding of that.
        assert header.encoding == "decimal4"
        assert np.abs(values.float64() - exact).max() <= 5e-5 + 1e-15
        read32 = values.float32().astype(np.float64)
        assert (np.abs(read32 - exact) <= 5e-5 + np.spacing(np.float32(1)) / 2).all()
        np.testing.assert_array_equal(values.float64(), np.rint(exact * 10_000) / 10_000)
    else:
        # Raw scores keep float16 precision.
        assert header.encoding in ("float16", "float16-planes")
        np.testing.assert_array_equal(values.float64(), exact.astype(np.float16))
    if kind == "near 1":
        # Here float16 kept 2 distinct values (0.99951171875 and 1), 2.4e-4 apart, where
        # the 4 decimals are 11: version 2 keeps those, so it may take more bytes.
        assert len(header_blob) + len(values_blob) <= _v1_bytes(exact) or len(
            np.unique(values.codes)
        ) > len(np.unique(exact.astype(np.float16)))
    else:
        # Never more bytes than format version 1 stored.
        assert len(header_blob) + len(values_blob) <= _v1_bytes(exact)
    # The header names each zlib stream of the values, each complete by itself.
    assert codec.stated_streams(header, values_blob) == header.streams
    start = 0
    for length in header.streams:
        decompressor = zlib.decompressobj()
        decompressor.decompress(values_blob[start : start + length])
        assert decompressor.eof and not decompressor.unused_data
        start += length
    assert start == len(values_blob)


def test_float16_would_miss_the_4_decimals_that_version_2_keeps():
    # The reason for version 2: float16 keeps only about 3 decimals near 1.
    weights = np.array([[0.9997, 0.0003]])
    _, values = codec.decode(*codec.encode(weights))
    assert values.float64().tolist() == [[0.9997, 0.0003]]
    assert abs(float(np.float16(0.9997)) - 0.9997) > 1e-4


def test_header_is_json_or_its_zlib_and_values_follow_the_documented_layout():
    weights = np.array([[0.25, 0.0004, 1.0], [0.0, 0.12345, 0.0015]])
    header_blob, values_blob = codec.encode(weights, ["a", "b", "c"], ["x", "y"])
    text = header_blob if header_blob[:1] == b"{" else zlib.decompress(header_blob)
    assert len(header_blob) == min(len(text), len(zlib.compress(text, 9)))
    assert json.loads(text) == {
        "version": 2,
        "shape": [2, 3],
        "encoding": "decimal4",
        "streams": [len(values_blob)],  # small values: one zlib stream
        "input_labels": ["a", "b", "c"],
        "query_labels": ["x", "y"],
    }
    raw = zlib.decompress(values_blob)
    # Codes 2500, 4, 10000, 0, 1234 (0.12345 is a tie: to even), 15: nibbles 15, 4, 15,
    # 0, 15, 15 (low nibble first), then the escapes' q - 15 as uint16: high bytes, low.
    escapes = np.array([2500, 10000, 1234, 15]) - 15
    assert raw == bytes([0x4F, 0x0F, 0xFF, *(escapes >> 8), *(escapes & 0xFF)])
    # Long labels: the header is stored zlib-compressed.
    words = [f"token number {i}" for i in range(200)]
    header_blob, _ = codec.encode(np.eye(200), words, words)
    assert header_blob[:1] == b"\x78"
    assert json.loads(zlib.decompress(header_blob))["input_labels"] == words
    assert codec.decode_header(header_blob).input_labels == tuple(words)


def test_raw_scores_are_float16_in_one_of_two_layouts():
    scores = np.array([[-3.5, 2.0], [100.0, 0.5]])
    header_blob, values_blob = codec.encode(scores)
    header = json.loads(header_blob if header_blob[:1] == b"{" else zlib.decompress(header_blob))
    raw = zlib.decompress(values_blob)
    halves = scores.astype("<f2").tobytes()
    if header["encoding"] == "float16":
        assert raw == halves
    else:
        assert header["encoding"] == "float16-planes"
        assert raw == halves[1::2] + halves[0::2]


def test_bytes_labels_and_tensors_are_accepted(tmp_path):
    weights = tf.constant([[0.5, 0.5]], dtype=tf.bfloat16)
    labels = tf.constant(["α", "β"])
    assert _write(str(tmp_path), "t", weights, step=0, input_labels=labels, query_labels=[b"q"])
    (event,) = _events(str(tmp_path))
    header, values = codec.decode(*event.summary.value[0].tensor.string_val)
    assert header.input_labels == ("α", "β") and header.query_labels == ("q",)
    np.testing.assert_array_equal(values.float64(), [[0.5, 0.5]])


def test_undecodable_label_bytes_become_replacement_characters():
    # Byte-level tokenizers split characters across tokens: one token's bytes need not
    # be UTF-8 on their own.
    header, _ = codec.decode(*codec.encode(np.eye(2), [b"\xf0\x9f", b"ok"], None))
    assert header.input_labels == ("\ufffd", "ok")


def test_without_a_default_writer_nothing_is_written_and_false_returned():
    assert attention("t", np.eye(2), step=0) is False


def test_default_step_comes_from_tf_summary(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        tf.summary.experimental.set_step(42)
        try:
            assert attention("t", np.eye(2))
        finally:
            tf.summary.experimental.set_step(None)
    writer.close()
    assert [e.step for e in _events(str(tmp_path))] == [42]


# -- version 1: event files written before version 2 still load ---------------------------


def test_the_committed_version_1_event_file_decodes_exactly():
    import v1_fixture

    events = _events(v1_fixture.LOGDIR)
    expected = {
        (tag, step): (weights, inputs, queries)
        for tag, steps in v1_fixture.expected().items()
        for step, weights, inputs, queries in steps
    }
    seen = set()
    for event in events:
        (value,) = event.summary.value
        assert metadata.parse_plugin_metadata(value.metadata.plugin_data.content) == 1
        header, values = codec.decode(*value.tensor.string_val)
        weights, inputs, queries = expected[(value.tag, event.step)]
        assert header.version == 1 and header.encoding == "float16"
        assert header.shape == weights.shape
        assert (list(header.input_labels), list(header.query_labels)) == (inputs, queries)
        np.testing.assert_array_equal(values.float64(), weights.astype(np.float16))
        np.testing.assert_array_equal(values.float32(), weights.astype(np.float16))
        seen.add((value.tag, event.step))
    assert seen == set(expected)


# -- validation: clear errors, and nothing written ---------------------------------------

BAD_CALLS = [
    # (kwargs, exception, words the message must contain)
    ({"weights": np.ones(4)}, ValueError, ["weights", "(queries, inputs)", "rank 1"]),
    ({"weights": np.ones((2, 2, 2, 2))}, ValueError, ["weights", "rank 4"]),
    ({"weights": np.ones((0, 3))}, ValueError, ["weights", "at least one", "(0, 3)"]),
    (
        {"weights": np.zeros((2049, 2048), np.float16)},
        ValueError,
        ["weights", "at most 4194304", "(2049, 2048)"],
    ),
    ({"weights": np.array([[0.5, np.nan]])}, ValueError, ["weights", "finite", "nan", "(0, 1)"]),
    ({"weights": np.array([[np.inf, 0.5]])}, ValueError, ["weights", "finite", "inf"]),
    ({"weights": np.array([[1e6, 0.5]])}, ValueError, ["weights", "float16", "65504"]),
    ({"weights": np.ones((2, 2), np.int32)}, TypeError, ["weights", "floating-point", "int32"]),
    ({"weights": [[0.5, 0.5], [1.0]]}, TypeError, ["weights", "rectangular"]),
    ({"weights": "0.5"}, TypeError, ["weights", "floating-point"]),
    ({"input_labels": ["a"]}, ValueError, ["input_labels", "expected 3", "got 1"]),
    ({"query_labels": ["a", "b", "c"]}, ValueError, ["query_labels", "expected 2", "got 3"]),
    ({"input_labels": "abc"}, TypeError, ["input_labels", "sequence of 3 strings", "str"]),
    ({"input_labels": ["a", 1, "c"]}, TypeError, ["input_labels[1]", "string", "int"]),
    ({"input_labels": {"a", "b", "c"}}, TypeError, ["input_labels", "sequence", "set"]),
    (
        {"input_labels": ["a", "\ud800", "c"]},
        ValueError,
        ["input_labels[1]", "lone surrogate", "'\\ud800'", "errors='replace'"],
    ),
    ({"query_labels": ["\udfff", "b"]}, ValueError, ["query_labels[0]", "surrogate"]),
    ({"query_labels": ["a", "x" * 1001]}, ValueError, ["query_labels[1]", "1000", "1001"]),
    ({"input_labels": np.array([["a", "b", "c"]])}, ValueError, ["input_labels", "1-D"]),
    ({"name": ""}, TypeError, ["name", "non-empty"]),
    ({"description": 3}, TypeError, ["description", "int"]),
]


@pytest.mark.parametrize(
    "kwargs,error,words", BAD_CALLS, ids=[str(i) for i in range(len(BAD_CALLS))]
)
def test_bad_input_raises_a_clear_error_and_writes_nothing(tmp_path, kwargs, error, words):
    call = {"name": "t", "weights": np.full((2, 3), 1 / 3), "step": 0, **kwargs}
    with pytest.raises(error) as info:
        _write(str(tmp_path), **call)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert _events(str(tmp_path)) == []


def test_symbolic_tensor_is_refused_with_advice():
    @tf.function
    def log(w):
        attention("t", w, step=0)

    with pytest.raises(TypeError, match="weights: .*symbolic tensor.*eagerly"):
        log(tf.ones((2, 2)))


# -- reading stored data defensively -----------------------------------------------------


def _header(**changes) -> bytes:
    header = {
        "version": 2,
        "shape": [1, 2],
        "encoding": "decimal4",
        "input_labels": ["a", "b"],
        "query_labels": ["q"],
    }
    header.update(changes)
    return json.dumps(header).encode()


def _v1_header(**changes) -> bytes:
    header = {
        "version": 1,
        "shape": [1, 2],
        "dtype": "<f2",
        "compression": "zlib",
        "input_labels": ["a", "b"],
        "query_labels": ["q"],
    }
    header.update(changes)
    return json.dumps(header).encode()


@pytest.mark.parametrize(
    "blob,words",
    [
        (b"\xff\xfe", "UTF-8 JSON"),
        (b"[1, 2]", "JSON object"),
        (b"[" * 1000, "UTF-8 JSON"),  # deeper than json's recursion limit
        (b"[" * 100_000, "UTF-8 JSON"),
        (b'{"a":' * 5000, "UTF-8 JSON"),
        (_header(version=3), "newer"),
        (_header(version="2"), "version"),
        (_header(version=True), "version"),
        (_header(shape=[2]), "shape"),
        (_header(shape=[1, -2]), "shape"),
        (_header(shape=[4096, 4096]), "shape"),
        (_header(encoding="float32"), "encoding"),
        (_header(encoding=["decimal4"]), "encoding"),
        (_v1_header(dtype="<f4"), "dtype"),
        (_header(input_labels=["a"]), "input_labels"),
        (_header(query_labels=[1]), "query_labels"),
        (_header(query_labels=["\ud800"]), "query_labels"),  # a lone surrogate, stored
        (_header(input_labels=["a", "\udc00b"]), "input_labels"),
        (zlib.compress(b"[" * 1000), "UTF-8 JSON"),
        (b"\x78not zlib", "zlib"),
        (zlib.compress(b" " * (codec.MAX_HEADER_BYTES + 10)), "at most"),  # a "bomb"
    ],
)
def test_corrupt_headers_raise_decode_error(blob, words):
    with pytest.raises(codec.DecodeError, match=re.escape(words)):
        codec.decode_header(blob)


def test_corrupt_values_raise_decode_error():
    for make_header in (_header, _v1_header):
        header = codec.decode_header(make_header())
        with pytest.raises(codec.DecodeError, match="zlib"):
            codec.decode_values(header, b"not zlib")
        # A "bomb": far more data than the header announces is never inflated in full.
        with pytest.raises(codec.DecodeError, match="or more"):
            codec.decode_values(header, zlib.compress(b"\0" * 10_000_000))
    v1 = codec.decode_header(_v1_header())
    with pytest.raises(codec.DecodeError, match="expected 4 bytes"):
        codec.decode_values(v1, zlib.compress(b"\0" * 2))
    v2 = codec.decode_header(_header())
    with pytest.raises(codec.DecodeError, match="escapes"):
        codec.decode_values(v2, zlib.compress(bytes([0xFF])))  # 2 escapes, no bytes for them
    with pytest.raises(codec.DecodeError, match="at least 1"):
        codec.decode_values(v2, zlib.compress(b""))
    with pytest.raises(codec.DecodeError, match="above 10000"):
        codec.decode_values(v2, zlib.compress(bytes([0xF0, 0xFF, 0xFF])))  # 15 + 65535


def test_stream_lengths_are_stated_by_the_header_when_they_add_up():
    weights = np.random.default_rng(3).dirichlet(np.full(200, 0.1), size=100)
    header_blob, blob = codec.encode(weights)
    said = codec.decode_header(header_blob)
    assert len(said.streams) == 3 and codec.stated_streams(said, blob) == said.streams
    # Written before the header said, or said wrongly: not known without inflating.
    for streams in (None, (1, 2), (len(blob) + 1,)):
        assert codec.stated_streams(dataclasses.replace(said, streams=streams), blob) is None
    # Version 1: always one stream.
    v1 = codec.decode_header(_v1_header())
    assert codec.stated_streams(v1, b"anything") == (8,)
    # Longer than any blob the writer makes for the shape: not sent on as it is.
    huge = os.urandom(200_000)
    assert codec.stated_streams(v1, huge) is None
    padded = dataclasses.replace(said, streams=(len(huge),))
    assert codec.stated_streams(padded, huge) is None
    # The bound holds for the worst the writer does: incompressible raw scores.
    noise = np.random.default_rng(4).uniform(-60000, 60000, size=(3, 100, 100))
    header_blob, blob = codec.encode(noise)
    header = codec.decode_header(header_blob)
    assert codec.stated_streams(header, blob) == header.streams


@pytest.mark.parametrize("streams", [[], [0], [1, 2, 3, 4], [True], "12", [1.5], None])
def test_a_malformed_streams_hint_is_ignored_not_an_unreadable_header(streams):
    # The hint is never needed to decode: a bad one must not hide a readable matrix.
    header = codec.decode_header(_header(streams=streams))
    assert header.streams is None and header.shape == (1, 2)


def test_non_finite_stored_values_are_refused():
    for header_blob in (_v1_header(), _header(encoding="float16")):
        header = codec.decode_header(header_blob)
        for bad in (np.inf, -np.inf, np.nan):
            blob = zlib.compress(np.array([[0.5, bad]], "<f2").tobytes())
            with pytest.raises(codec.DecodeError, match="non-finite"):
                codec.decode_values(header, blob)


def test_float32_and_float64_readings_are_exact_for_every_code():
    every = np.arange(1 << 16, dtype=np.uint16)
    every = every[np.isfinite(every.view("<f2"))]
    values = codec.Values("float16", every)
    np.testing.assert_array_equal(values.float32(), every.view("<f2").astype(np.float32))
    np.testing.assert_array_equal(values.float64(), every.view("<f2").astype(np.float64))
    codes = np.arange(10_001, dtype=np.uint16)
    decimals = codec.Values("decimal4", codes)
    assert decimals.float64().tolist() == [q / 10_000 for q in range(10_001)]
    np.testing.assert_array_equal(
        decimals.float32(), [np.float32(q) / np.float32(10_000) for q in range(10_001)]
    )


def test_plugin_metadata_round_trip_and_errors():
    md = metadata.create_summary_metadata("d")
    assert md.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    assert md.plugin_data.plugin_name == metadata.PLUGIN_NAME == "attention"
    assert metadata.parse_plugin_metadata(md.plugin_data.content) == codec.FORMAT_VERSION == 2
    assert metadata.parse_plugin_metadata(b'{"version": 1}') == 1
    with pytest.raises(TypeError, match="bytes"):
        metadata.parse_plugin_metadata("{}")
    for bad in (b"", b"\x80", b"[]", b'{"version": 0}', b"[" * 1000, b'{"version": 3}'):
        with pytest.raises(ValueError):
            metadata.parse_plugin_metadata(bad)
    with pytest.raises(codec.DecodeError, match="newer"):
        metadata.parse_plugin_metadata(b'{"version": 3}')


# -- size on disk, against the stock image summary of the same matrix --------------------


def _viridis_rgb(weights: np.ndarray) -> np.ndarray:
    import matplotlib

    scaled = (weights - weights.min()) / max(float(np.ptp(weights)), 1e-12)
    return (matplotlib.colormaps["viridis"](scaled)[..., :3] * 255).astype(np.uint8)


def _bytes_on_disk(tmp_path, name: str, write) -> int:
    """Bytes that one summary adds to an event file (less an empty writer's file)."""
    empty, full = tmp_path / f"{name}-empty", tmp_path / name
    for logdir, body in ((empty, lambda: None), (full, write)):
        writer = tf.summary.create_file_writer(str(logdir))
        with writer.as_default():
            body()
        writer.close()
    return _logdir_bytes(str(full)) - _logdir_bytes(str(empty))


def _entropy_bytes(codes: np.ndarray) -> float:
    """The order-0 entropy of `codes`, in bytes: no coder of independent codes does better."""
    _, counts = np.unique(codes, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum() * codes.size / 8)


@pytest.mark.parametrize("kind", ["peaked softmax", "uniform random"])
def test_bytes_per_128x128_matrix_vs_stock_image_summary(tmp_path, kind):
    rng = np.random.default_rng(2)
    if kind == "peaked softmax":
        weights = _softmax(3 * rng.normal(size=(128, 128)))
    else:
        weights = rng.random((128, 128))
    inputs, queries = [f"in{i}" for i in range(128)], [f"out{i}" for i in range(128)]
    ours = _bytes_on_disk(
        tmp_path,
        "ours",
        lambda: attention("m", weights, step=0, input_labels=inputs, query_labels=queries),
    )
    image = _bytes_on_disk(
        tmp_path, "image", lambda: tf.summary.image("m", _viridis_rgb(weights)[None], step=0)
    )
    labels = json.dumps([inputs, queries], separators=(",", ":")).encode()
    floor = _entropy_bytes(np.rint(weights * 10_000)) + len(zlib.compress(labels, 9))
    print(
        f"\n{kind} 128x128: attention summary {ours} B, stock image summary {image} B, "
        f"ratio {ours / image:.3f}; entropy of the 4-decimal codes + labels {floor:.0f} B"
    )
    # Version 1 took 3.0x the image for peaked softmax weights (float16 + zlib).
    assert ours < 1.1 * image
    # Within 10% of the order-0 entropy of what it must keep (labels, framing included).
    assert ours < 1.1 * floor
    if kind == "uniform random":
        assert ours < image


# -- imports -----------------------------------------------------------------------------


def test_tb_plugin_imports_neither_tensorflow_keras_nor_keras_seqattn():
    code = (
        "import sys, tb_plugin, tb_plugin.plugin, tb_plugin.summary, tb_plugin.codec;"
        "print(sorted(m for m in ('tensorflow', 'keras', 'keras_seqattn') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
