"""Masks, labels and tags of AttentionLogger on small models, on every backend.

Each test runs the logger's first logging point (`on_train_begin`: the probe pass, every
check, the writes of step 0) on a model built here, and looks at what it decided.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_seqattn.attention_logger import AttentionLogger
from keras_seqattn.attention_probe import find_attention_layers

pytestmark = pytest.mark.all_backends

WORDS = list("_abcdefghij")


def _tokens(row):
    return [WORDS[i] for i in row if i]


def _begin(model, tmp_path, probe, **kwargs) -> AttentionLogger:
    logger = AttentionLogger(tmp_path, probe, images=False, **kwargs)
    logger.set_model(model)
    logger.on_train_begin()
    return logger


def _decided(logger):
    """{tag: (query labels, input labels, matrix shape)} of probe example 1 at step 0."""
    matrices, _ = logger._matrices(logger._pass(logger.probe))
    return {
        m.tag.rsplit("/", 1)[0]: (m.query_labels, m.input_labels, m.weights.shape)
        for m in matrices
        if m.tag.endswith("/1")
    }


# Probe: example 1 has 3 source and 3 target tokens of 5 (equal lengths), padded on the right.
SOURCE = np.array([[1, 2, 3, 4, 5], [6, 7, 8, 0, 0]])
TARGET = np.array([[9, 10, 1, 0, 0], [2, 4, 6, 0, 0]])


def _cross_with_attention_mask() -> keras.Model:
    """Cross-attention whose padding comes only as an explicit (B, T, S) attention mask."""
    source = keras.Input((5,), dtype="int32", name="source")
    target = keras.Input((5,), dtype="int32", name="target")
    embed = keras.layers.Embedding(len(WORDS), 8)  # no Keras mask
    both = keras.layers.Lambda(
        lambda ts: keras.ops.logical_and(
            keras.ops.not_equal(ts[1], 0)[:, :, None], keras.ops.not_equal(ts[0], 0)[:, None, :]
        )
    )([source, target])
    crossed = keras.layers.MultiHeadAttention(2, 4, name="cross")(
        embed(target), embed(source), attention_mask=both
    )
    return keras.Model({"source": source, "target": target}, crossed)


def test_explicit_attention_mask_trims_both_axes(tmp_path):
    logger = _begin(
        _cross_with_attention_mask(),
        tmp_path,
        {"source": SOURCE, "target": TARGET},
        labels={"source": [_tokens(r) for r in SOURCE], "target": [_tokens(r) for r in TARGET]},
    )
    queries, inputs, shape = _decided(logger)["cross"]
    assert shape == (2, 3, 3)
    assert queries == _tokens(TARGET[1]) and inputs == _tokens(SOURCE[1])


def test_keras_attention_mask_argument_trims(tmp_path):
    source = keras.Input((5,), dtype="int32")
    target = keras.Input((5,), dtype="int32")
    embed = keras.layers.Embedding(len(WORDS), 8)
    masks = [keras.ops.not_equal(target, 0), keras.ops.not_equal(source, 0)]
    out = keras.layers.Attention(name="luong")([embed(target), embed(source)], mask=masks)
    model = keras.Model([source, target], out)
    logger = _begin(model, tmp_path, [SOURCE, TARGET])
    queries, inputs, shape = _decided(logger)["luong"]
    assert shape == (3, 3) and queries == inputs == ["0", "1", "2"]


def test_labels_of_padded_length_on_a_trimmed_axis_are_told_to_drop_the_padding(tmp_path):
    padded = [[WORDS[i] for i in row] for row in SOURCE]  # 5 labels, padding included
    with pytest.raises(
        ValueError,
        match=r"`labels\['source'\]\[1\]` has 5 labels.*number 3 "
        r"in probe example 1 \(trimmed from 5.*without the padding",
    ):
        _begin(
            _cross_with_attention_mask(),
            tmp_path,
            {"source": SOURCE, "target": TARGET},
            labels={"source": padded},
        )
    assert not (tmp_path / "attention").exists()


def test_untrimmed_axis_advice_names_the_mask_to_pass(tmp_path):
    source = keras.Input((5,), dtype="int32")
    embed = keras.layers.Embedding(len(WORDS), 8)(source)  # no mask anywhere
    model = keras.Model(source, keras.layers.MultiHeadAttention(2, 4, name="self")(embed, embed))
    with pytest.raises(ValueError, match=r"all 5 positions.*give 5 labels.*Keras mask"):
        _begin(model, tmp_path, SOURCE, labels=[_tokens(r) for r in SOURCE])


def test_unknown_keys_of_labels_and_layer_labels(tmp_path):
    probe = {"source": SOURCE, "target": TARGET}
    with pytest.raises(ValueError, match=r"`labels` names 'tokens'.*'source', 'target'"):
        _begin(_cross_with_attention_mask(), tmp_path, probe, labels={"tokens": [["a"], ["b"]]})
    with pytest.raises(ValueError, match=r"`layer_labels` names 'nope'.*'cross'"):
        _begin(
            _cross_with_attention_mask(),
            tmp_path,
            probe,
            layer_labels={"nope": {"queries": [["a"], ["b"]]}},
        )
    with pytest.raises(TypeError, match=r"`layer_labels\['cross'\]` must be a dict with keys"):
        AttentionLogger(tmp_path, probe, layer_labels={"cross": [["a"], ["b"]]})
    with pytest.raises(TypeError, match=r"`labels` must be a dict \{model input: labels\}"):
        AttentionLogger(tmp_path, probe, labels=[["a"], ["b"]])


def test_paths_are_stable_when_keras_numbers_names_differently():
    def build():
        x = keras.Input((4, 8))
        inner_in = keras.Input((4, 8))
        inner = keras.Model(inner_in, keras.layers.MultiHeadAttention(2, 4)(inner_in, inner_in))
        first = keras.layers.MultiHeadAttention(2, 4)(x, x)
        second = keras.layers.MultiHeadAttention(2, 4)(first, first)
        return keras.Model(x, inner(second))

    paths = [p for p, _ in find_attention_layers(build())]
    assert paths == [
        "multi_head_attention",
        "multi_head_attention_1",
        "functional/multi_head_attention",
    ]
    assert [p for p, _ in find_attention_layers(build())] == paths


@keras.saving.register_keras_serializable(package="test_logger_labels")
class Block(keras.layers.Layer):
    """Takes `return_attention_scores` and hands it to the MultiHeadAttention it holds."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attention = keras.layers.MultiHeadAttention(2, 4)

    def call(self, x, return_attention_scores=False):
        return self.attention(x, x, return_attention_scores=return_attention_scores)


def test_a_layer_holding_attention_is_searched_not_logged_itself():
    x = keras.Input((4, 8))
    model = keras.Model(x, Block(name="block")(x))
    assert [p for p, _ in find_attention_layers(model)] == ["block/attention"]
