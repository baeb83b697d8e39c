"""The attention summary: validation, the stored format, and its size on disk."""

from __future__ import annotations

import glob
import json
import os
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
    assert metadata.parse_plugin_metadata(value.metadata.plugin_data.content) == 1
    header_blob, values_blob = value.tensor.string_val
    header, values = codec.decode(header_blob, values_blob)
    assert header.shape == (3, 5)
    assert header.input_labels == ("0", "1", "2", "3", "4")
    assert header.query_labels == ("0", "1", "2")
    np.testing.assert_array_equal(values, weights.astype(np.float16))


def test_round_trip_keeps_heads_labels_and_float16_values():
    rng = np.random.default_rng(1)
    weights = rng.random((2, 3, 4)).astype(np.float32)
    inputs = ["état", "<img src=x onerror=alert(1)>", "\u4e2d\u6587", 'a "quoted", comma']
    queries = ["q0", "", "\U0001f600"]
    header, values = codec.decode(*codec.encode(weights, inputs, queries))
    assert header.shape == (2, 3, 4) and header.heads == 2 and header.shape3 == (2, 3, 4)
    assert header.input_labels == tuple(inputs)
    assert header.query_labels == tuple(queries)
    assert values.dtype == np.float16
    np.testing.assert_array_equal(values, weights.astype(np.float16))


def test_header_is_json_and_values_are_zlib_float16_little_endian():
    weights = np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float64)
    header_blob, values_blob = codec.encode(weights, ["a", "b"], ["x", "y"])
    header = json.loads(header_blob)
    assert header == {
        "version": 1,
        "shape": [2, 2],
        "dtype": "<f2",
        "compression": "zlib",
        "input_labels": ["a", "b"],
        "query_labels": ["x", "y"],
    }
    assert zlib.decompress(values_blob) == weights.astype("<f2").tobytes()


def test_bytes_labels_and_tensors_are_accepted(tmp_path):
    weights = tf.constant([[0.5, 0.5]], dtype=tf.bfloat16)
    labels = tf.constant(["α", "β"])
    assert _write(str(tmp_path), "t", weights, step=0, input_labels=labels, query_labels=[b"q"])
    (event,) = _events(str(tmp_path))
    header, values = codec.decode(*event.summary.value[0].tensor.string_val)
    assert header.input_labels == ("α", "β") and header.query_labels == ("q",)
    np.testing.assert_array_equal(values, [[0.5, 0.5]])


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
    ({"input_labels": ["a", b"\xff", "c"]}, ValueError, ["input_labels[1]", "UTF-8"]),
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
        (_header(version=2), "newer"),
        (_header(version="1"), "version"),
        (_header(shape=[2]), "shape"),
        (_header(shape=[1, -2]), "shape"),
        (_header(shape=[4096, 4096]), "shape"),
        (_header(dtype="<f4"), "dtype"),
        (_header(input_labels=["a"]), "input_labels"),
        (_header(query_labels=[1]), "query_labels"),
    ],
)
def test_corrupt_headers_raise_decode_error(blob, words):
    with pytest.raises(codec.DecodeError, match=words):
        codec.decode_header(blob)


def test_corrupt_values_raise_decode_error():
    header = codec.decode_header(_header())
    with pytest.raises(codec.DecodeError, match="zlib"):
        codec.decode_values(header, b"not zlib")
    with pytest.raises(codec.DecodeError, match="expected 4 bytes"):
        codec.decode_values(header, zlib.compress(b"\0" * 2))
    # A "bomb": far more data than the header announces is never inflated in full.
    with pytest.raises(codec.DecodeError, match="or more"):
        codec.decode_values(header, zlib.compress(b"\0" * 10_000_000))


def test_non_finite_stored_values_are_refused():
    header = codec.decode_header(_header())
    for bad in (np.inf, -np.inf, np.nan):
        blob = zlib.compress(np.array([[0.5, bad]], "<f2").tobytes())
        with pytest.raises(codec.DecodeError, match="non-finite"):
            codec.decode_values(header, blob)


def test_widen_is_exact_for_every_float16():
    every = np.arange(1 << 16, dtype=np.uint16).view("<f2")
    every = every[np.isfinite(every)]
    np.testing.assert_array_equal(
        codec.widen(every).view(np.uint32), every.astype(np.float32).view(np.uint32)
    )


def test_plugin_metadata_round_trip_and_errors():
    md = metadata.create_summary_metadata("d")
    assert md.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    assert md.plugin_data.plugin_name == metadata.PLUGIN_NAME == "attention"
    assert metadata.parse_plugin_metadata(md.plugin_data.content) == codec.FORMAT_VERSION
    with pytest.raises(TypeError, match="bytes"):
        metadata.parse_plugin_metadata("{}")
    for bad in (b"", b"\x80", b"[]", b'{"version": 0}'):
        with pytest.raises(ValueError):
            metadata.parse_plugin_metadata(bad)


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


@pytest.mark.parametrize("kind", ["peaked softmax", "uniform random"])
def test_bytes_per_128x128_matrix_vs_stock_image_summary(tmp_path, kind):
    rng = np.random.default_rng(2)
    if kind == "peaked softmax":
        weights = _softmax(3 * rng.normal(size=(128, 128)))
    else:
        weights = rng.random((128, 128))
    ours = _bytes_on_disk(tmp_path, "ours", lambda: attention("m", weights, step=0))
    image = _bytes_on_disk(
        tmp_path, "image", lambda: tf.summary.image("m", _viridis_rgb(weights)[None], step=0)
    )
    print(
        f"\n{kind} 128x128: attention summary {ours} B, stock image summary {image} B, "
        f"ratio {ours / image:.2f}"
    )
    # float16 is 2 bytes a value before compression; labels and framing add little.
    assert ours < 128 * 128 * 2 + 2048
    # Against an RGB image of the same matrix (3 bytes a pixel raw), which keeps only
    # 8 bits of colour: ours keeps float16 and still stays below the raw image size;
    # PNG beats it only where the colours are mostly the same (peaked attention).
    assert ours < 128 * 128 * 3
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
