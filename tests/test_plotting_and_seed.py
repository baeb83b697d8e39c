"""plot_attention, attention_png and the seed example."""

import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_seqattn import plot_attention  # noqa: E402
from keras_seqattn.plotting import attention_png  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_labelled_heatmap_rows_are_queries_columns_are_inputs():
    weights = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5]])
    ax = plot_attention(weights, ["a", "b", "<c>"], ["x", "y"], title="t")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "<c>"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y"]
    image = ax.get_images()[0]
    np.testing.assert_allclose(image.get_array(), weights)
    assert image.get_cmap().name == "viridis"
    assert len(ax.figure.axes) == 2  # the heatmap and its colour bar
    plt.close(ax.figure)


def test_heads_tensors_and_ragged():
    weights = tf.random.uniform((2, 3, 4))
    axes = plot_attention(weights)
    assert len(axes) == 2 and axes[1].get_title() == "head 1"
    plt.close(axes[0].figure)
    ax = plot_attention(weights, head=1)
    np.testing.assert_allclose(ax.get_images()[0].get_array(), weights[1].numpy())
    plt.close(ax.figure)
    ragged = tf.RaggedTensor.from_row_lengths(tf.ones((3, 4)), [3])[0]
    plt.close(plot_attention(ragged).figure)


def test_long_sequences_thin_their_labels():
    ax = plot_attention(np.random.default_rng(0).random((5, 500)))
    assert 30 <= len(ax.get_xticks()) <= 60
    plt.close(ax.figure)


@pytest.mark.parametrize(
    "weights, kwargs, pattern",
    [
        (np.zeros((2, 3, 4, 5)), {}, r"`weights` must be one example's"),
        (np.zeros((2, 3)), {"input_labels": ["a"]}, r"input_labels: expected 3 labels.*got 1"),
        (
            np.zeros((2, 3)),
            {"query_labels": "ab"},
            r"query_labels: expected a sequence of 2 strings.*single str",
        ),
        (np.zeros((2, 2, 3)), {"head": 2}, r"`head` must be in \[0, 2\)"),
    ],
)
def test_bad_arguments(weights, kwargs, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        plot_attention(weights, **kwargs)


def test_png_bytes():
    png = attention_png(np.eye(3), ["a", "b", "c"], ["x", "y", "z"], title="eye")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_seed_example_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "seed_example.py"), "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "It is 4 x 2" in done.stdout and "they match." in done.stdout
    assert (tmp_path / "seed_attention.png").read_bytes().startswith(b"\x89PNG")
