"""How the logger writes: heatmap pixels, the event files every tab reads, bad training, bad disks.

The writing half of `AttentionLogger` (`keras_seqattn.summary_writing`) is driven here
directly where no model is needed (those tests run on every backend), and through `fit`
where the logger's behaviour around training is the point.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import textwrap
import urllib.parse
from dataclasses import dataclass

import keras
import numpy as np
import pytest

from keras_seqattn.heatmap_images import HeatmapImages, color_ticks, png
from keras_seqattn.summary_writing import SummaryWriting
from tb_plugin.read_logs import read_attention_logs
from tests.tb_server import TensorBoardServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Matrix:
    tag: str
    weights: np.ndarray
    input_labels: list[str]
    query_labels: list[str]
    description: str = ""


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _viridis(values: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    return np.round(np.asarray(colormaps["viridis"](values))[..., :3] * 255).astype(int)


# -- heatmap pixels ----------------------------------------------------------------------


@pytest.mark.all_backends
@pytest.mark.parametrize("shape", [(3, 6), (2, 4, 7)])
def test_every_cell_has_matplotlibs_viridis_colour_of_its_weight(shape):
    rng = np.random.default_rng(0)
    weights = _softmax(rng.normal(size=shape) * 2).astype(np.float32)
    weights[..., 0, 1] = np.nan
    inputs, queries = [f"in{i}" for i in range(shape[-1])], [f"q{i}" for i in range(shape[-2])]
    images = HeatmapImages()
    pixels = images.rgb("layer/0", weights, inputs, queries, title="layer/0")
    frame = images._frames["layer/0"]
    heads = weights if weights.ndim == 3 else weights[np.newaxis]
    vmax = float(np.nanmax(weights))
    for panel, head in zip(frame.panels, heads, strict=True):
        height, width = len(panel.rows), len(panel.cols)
        m, n = head.shape
        for i in range(m):
            for j in range(n):
                y = panel.top + int((i + 0.5) * height / m)
                x = panel.left + int((j + 0.5) * width / n)
                got = pixels[y, x].astype(int)
                if np.isnan(head[i, j]):
                    assert got.tolist() == [255, 255, 255]  # matplotlib's "bad": blank
                else:
                    # matplotlib maps [0, vmax] onto its 256 colours the same way.
                    assert np.abs(got - _viridis(head[i, j] / vmax)).max() <= 1, (i, j)
        # Labels: dark text left of the rows and below the columns, none on white margins.
        left_of_rows = pixels[panel.top : panel.top + height, panel.left - 40 : panel.left - 6]
        below_columns = pixels[panel.top + height + 8 : panel.top + height + 30, panel.left :][
            :, :width
        ]
        assert (left_of_rows < 100).any() and (below_columns < 100).any()
    assert (pixels[:3] == 255).all()  # the top margin stays white


@pytest.mark.all_backends
def test_frame_is_kept_per_tag_and_redrawn_when_labels_change():
    images = HeatmapImages()
    weights = _softmax(np.random.default_rng(1).normal(size=(2, 3)))
    first = images.rgb("t/0", weights, ["a", "b", "c"], ["x", "y"], title="t/0")
    frame = images._frames["t/0"]
    again = images.rgb("t/0", weights[:, ::-1], ["a", "b", "c"], ["x", "y"], title="t/0")
    assert images._frames["t/0"] is frame and not np.array_equal(first, again)
    other = images.rgb("t/0", weights, ["a", "b", "WIDER LABEL"], ["x", "y"], title="t/0")
    assert images._frames["t/0"] is not frame and other.shape != first.shape


@pytest.mark.all_backends
def test_colour_bar_ticks_are_round_values_up_to_the_largest_weight():
    assert [text for _, text in color_ticks(0.41)] == ["0.00", "0.10", "0.20", "0.30", "0.40"]
    assert [text for _, text in color_ticks(1.0)] == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
    assert [v for v, _ in color_ticks(0.0062)][-1] == pytest.approx(0.006)
    assert all(v <= 0.0062 for v, _ in color_ticks(0.0062))


@pytest.mark.all_backends
def test_png_decodes_to_the_same_pixels():
    from PIL import Image

    pixels = np.random.default_rng(2).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    pixels[10:20] = pixels[10]  # repeated rows, as a heatmap's cells make
    decoded = np.asarray(Image.open(io.BytesIO(png(pixels))).convert("RGB"))
    np.testing.assert_array_equal(decoded, pixels)


# -- the event files, read by both loaders in every tab --------------------------------


def _point(step: int, rng) -> tuple[list[Matrix], dict]:
    one = _softmax(rng.normal(size=(3, 4)))
    heads = _softmax(rng.normal(size=(2, 2, 3)))
    matrices = [
        Matrix("enc/attn/0", one, ["the", "cat", "sat", "."], ["le", "chat", "."], "example 0"),
        Matrix("dec/mha/1", heads, ["a", "b", "c"], ["p", "q"], "example 1"),
    ]
    return matrices, {"enc/attn": (0.5 + step, 0.6), "dec/mha": (0.25, 0.75)}


def _get(server, route: str, **params) -> object:
    return server.get_json(route + "?" + urllib.parse.urlencode(params))


@pytest.mark.all_backends
@pytest.mark.parametrize("load_fast", [True, False])
def test_points_show_in_the_attention_images_and_scalars_tabs(tmp_path, load_fast):
    rng = np.random.default_rng(3)
    writing = SummaryWriting(str(tmp_path / "attention"))
    points = {step: _point(step, rng) for step in (0, 5)}
    for step, (matrices, stats) in points.items():
        writing.write_point(step, matrices, stats)
    writing.finish()

    with TensorBoardServer(str(tmp_path), load_fast=load_fast, without=("tensorflow",)) as server:

        def ready():
            tags = server.get_json("data/plugin/attention/tags")
            images = server.get_json("data/plugin/images/tags")
            return (
                len(tags.get("attention", {})) == 2
                and len(images.get("attention", {})) == 2
                and all(
                    len(_get(server, "data/plugin/attention/steps", run="attention", tag=t)) == 2
                    for t in ("enc/attn/0", "dec/mha/1")
                )
            )

        server.wait_until(ready)
        for step, (matrices, _) in points.items():
            for matrix in matrices:
                got = _get(
                    server, "data/plugin/attention/matrix", run="attention", tag=matrix.tag,
                    step=step,
                )  # fmt: skip
                assert got["input_labels"] == matrix.input_labels
                assert got["query_labels"] == matrix.query_labels
                np.testing.assert_allclose(got["values"], matrix.weights, atol=1e-3)
        for matrix in points[0][0]:
            listed = _get(
                server, "data/plugin/images/images", run="attention", tag=f"{matrix.tag}/heatmap"
            )
            assert [entry["step"] for entry in listed] == [0, 5]
            status, body, _ = server.get("data/plugin/images/individualImage?" + listed[0]["query"])
            assert status == 200 and body.startswith(b"\x89PNG")
        for layer in ("enc/attn", "dec/mha"):
            values = _get(
                server, "data/plugin/scalars/scalars", run="attention", tag=f"{layer}/mean_entropy"
            )
            assert [(s, round(v, 5)) for _, s, v in values] == [
                (step, round(points[step][1][layer][0], 5)) for step in (0, 5)
            ]


@pytest.mark.all_backends
def test_a_bad_label_at_example_1_raises_naming_it_and_writes_nothing(tmp_path):
    rng = np.random.default_rng(4)
    matrices, stats = _point(0, rng)
    matrices[1].input_labels = ["a", "b" * 1001, "c"]
    writing = SummaryWriting(str(tmp_path / "attention"))
    with pytest.raises(ValueError) as caught:
        writing.write_point(0, matrices, stats)
    message = str(caught.value)
    assert "probe example 1" in message and "'dec/mha'" in message
    assert "input axis" in message and "input_labels[1]" in message
    writing.finish()
    assert not (tmp_path / "attention").exists()


@pytest.mark.all_backends
def test_non_finite_layer_skipped_with_one_warning_others_written(tmp_path, caplog):
    rng = np.random.default_rng(5)
    writing = SummaryWriting(str(tmp_path / "attention"))
    with caplog.at_level(logging.WARNING, logger="keras_seqattn.attention_logger"):
        for step in (0, 1, 2):
            matrices, stats = _point(step, rng)
            if step:
                matrices[1].weights[0, 1, :] = np.nan  # the multi-head layer goes bad
            writing.write_point(step, matrices, stats)
        writing.finish()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "'dec/mha'" in warnings[0] and "step 1" in warnings[0]
    records = read_attention_logs(tmp_path)
    assert [(r.tag, r.step) for r in records] == [
        ("dec/mha/1", 0),
        ("enc/attn/0", 0),
        ("enc/attn/0", 1),
        ("enc/attn/0", 2),
    ]


# -- through fit ---------------------------------------------------------------------------


def _attention_model(length: int = 6) -> keras.Model:
    from keras_seqattn import SequenceAttention

    ids = keras.Input((length,), dtype="int32")
    x = keras.layers.Embedding(20, 8, mask_zero=True)(ids)
    x = SequenceAttention(name="attn")(x, x)
    out = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(x))
    return keras.Model(ids, out)


def test_nan_training_stops_with_terminate_on_nan_as_without_the_logger(tmp_path, caplog):
    from keras_seqattn import AttentionLogger

    rng = np.random.default_rng(6)
    x = rng.integers(1, 20, size=(32, 6)).astype("int32")
    y = rng.normal(size=(32, 1)).astype("float32")
    y[9] = np.nan  # batch 3 of the first epoch makes the loss, then every weight, NaN

    def train(callbacks):
        keras.utils.set_random_seed(0)
        model = _attention_model()
        model.compile(keras.optimizers.SGD(0.01), "mse")
        history = model.fit(
            x, y, batch_size=4, epochs=3, shuffle=False, verbose=0,
            callbacks=[keras.callbacks.TerminateOnNaN(), *callbacks],
        )  # fmt: skip
        return model, history

    plain, plain_history = train([])
    with caplog.at_level(logging.WARNING, logger="keras_seqattn.attention_logger"):
        logged, logged_history = train([AttentionLogger(tmp_path, x[:2], every_n_steps=1)])
    assert int(logged.optimizer.iterations) == int(plain.optimizer.iterations) == 3
    assert np.isnan(logged_history.history["loss"][-1])
    warnings = [r.getMessage() for r in caplog.records if "not finite" in r.getMessage()]
    assert len(warnings) == 1 and "'attn'" in warnings[0] and "step 3" in warnings[0]
    # The finite points are all there; the images of the NaN point were written too.
    assert sorted({r.step for r in read_attention_logs(tmp_path)}) == [0, 1, 2]


def test_label_over_the_limit_at_example_1_stops_fit_before_training(tmp_path):
    from keras_seqattn import AttentionLogger

    x = np.array([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]], dtype="int32")
    labels = [list("abcdef"), list("abcde") + ["z" * 1001]]
    model = _attention_model()
    model.compile("sgd", "mse")
    with pytest.raises(ValueError) as caught:
        logger = AttentionLogger(tmp_path, x, input_labels=labels, query_labels=labels)
        model.fit(x, np.zeros((2, 1)), epochs=1, verbose=0, callbacks=[logger])
    message = str(caught.value)
    assert "example 1" in message and "1000" in message
    assert int(model.optimizer.iterations) == 0
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


WRITE_FAILURE = textwrap.dedent(
    """
    import logging, resource, signal, sys
    import numpy as np
    import keras
    from keras_seqattn import AttentionLogger
    sys.path.insert(0, {root!r})
    from tests.test_logger_writing import _attention_model

    # To a file of its own, apart from whatever else reaches stderr.
    logging.basicConfig(filename={log_file!r}, level=logging.WARNING, format="LOG %(message)s")
    # A write past the limit gets EFBIG instead of the signal that would kill us.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    x = np.random.default_rng(0).integers(1, 20, size=(64, 6)).astype("int32")
    model = _attention_model()
    model.compile("sgd", "mse")
    logger = AttentionLogger({logdir!r}, x[:4], every_n_steps=1)
    resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))
    history = model.fit(x, np.zeros((64, 1)), batch_size=4, epochs=2, verbose=0,
                        callbacks=[logger])
    print("FIT RETURNED", len(history.history["loss"]))
    """
)


def test_a_file_size_limit_becomes_one_warning_naming_the_log_directory(tmp_path):
    logdir = str(tmp_path / "logs")
    log_file = tmp_path / "warnings.txt"
    code = WRITE_FAILURE.format(root=ROOT, logdir=logdir, log_file=str(log_file))
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert "FIT RETURNED 2" in out.stdout, out.stdout + out.stderr
    warnings = [line for line in log_file.read_text().splitlines() if line.startswith("LOG ")]
    assert len(warnings) == 1, log_file.read_text() + out.stderr[-3000:]
    # No writer thread of its own dies with a traceback beside the warning.
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert os.path.join(logdir, "attention") in warnings[0]
    assert "File too large" in warnings[0]
    # What was written before the limit is still readable.
    assert read_attention_logs(logdir)


# -- no TensorFlow on JAX and PyTorch ------------------------------------------------------

NO_TENSORFLOW = textwrap.dedent(
    """
    import sys
    import numpy as np
    from tb_plugin.summary import attention, event_file_writer
    from tb_plugin.read_logs import read_attention_logs

    weights = np.array([[0.25, 0.75], [1.0, 0.0]])
    assert attention("no/writer/0", weights, step=0) is False  # nothing to write to
    writer = event_file_writer({logdir!r})
    assert attention("layer/0", weights, step=3, input_labels=["a", "b"], writer=writer)
    writer.close()
    (record,) = read_attention_logs({logdir!r})
    assert record.step == 3 and record.input_labels == ("a", "b")
    np.testing.assert_array_equal(record.values, weights)
    print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
    """
)


@pytest.mark.all_backends
def test_attention_summaries_written_and_read_without_importing_tensorflow(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW.format(logdir=str(tmp_path))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
