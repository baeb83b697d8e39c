"""Every bad input gets an error that names the argument, what was expected and what came."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_seqattn import SequenceAttention

E = np.zeros((2, 3, 4), "float32")
Q = np.zeros((2, 5, 4), "float32")


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"scoring": "cosine"}, ValueError, r"`scoring` must be one of .*got 'cosine'"),
        ({"scoring": 3}, TypeError, r"`scoring` must be .*got int"),
        ({"mask": "future"}, ValueError, r"`mask` must be None, 'causal'.*got 'future'"),
        ({"mask": ("causal", 0)}, ValueError, r"`mask` .*window >= 1.*got \('causal', 0\)"),
        ({"mask": ("causal", 2.5)}, ValueError, r"`mask`"),
        ({"score_rescaling": "sqrt"}, ValueError, r"`score_rescaling` must be one of.*'sqrt'"),
        ({"dropout": 1.0}, ValueError, r"`dropout` must be in \[0, 1\); got 1.0"),
        ({"dropout": -0.1}, ValueError, r"`dropout` must be in \[0, 1\); got -0.1"),
        ({"dropout": "0.1"}, TypeError, r"`dropout` must be a float"),
        ({"units": 4}, ValueError, r"`units` is only used by scoring='additive'"),
        ({"scoring": "additive", "units": 0}, ValueError, r"`units` must be a positive integer"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        SequenceAttention(**kwargs)


@pytest.mark.parametrize(
    "inputs, query, error, pattern",
    [
        (np.zeros((2, 3), "float32"), Q, ValueError, r"`inputs` must have rank 3.*\(2, 3\)"),
        (E, np.zeros((2, 5, 4, 1), "float32"), ValueError, r"`query` must have rank 3.*rank 4"),
        (E, np.zeros((3, 5, 4), "float32"), ValueError, r"same batch size; got 2 and 3"),
        (np.zeros((2, 3, 4), "int32"), Q, TypeError, r"`inputs` must be a float tensor.*int32"),
        (E, "hello", TypeError, r"`query` must be a tensor.*got str"),
    ],
)
def test_bad_call_inputs(inputs, query, error, pattern):
    with pytest.raises(error, match=pattern):
        SequenceAttention("bilinear")(inputs, query)


def test_more_than_one_ragged_dimension():
    nested = tf.RaggedTensor.from_nested_row_lengths(tf.zeros((6,)), [[2, 1], [1, 2, 3]])
    assert nested.ragged_rank == 2
    with pytest.raises(ValueError, match=r"`inputs` may have one ragged dimension.*ragged_rank=2"):
        SequenceAttention()(nested, Q[:, :, :1])


def test_dot_with_different_sizes():
    with pytest.raises(ValueError, match=r"scoring='dot' needs .* size 4 and query of size 3"):
        SequenceAttention("dot")(E, np.zeros((2, 5, 3), "float32"))


def test_symbolic_bad_inputs_fail_at_model_construction():
    with pytest.raises(ValueError, match="same batch size"):
        SequenceAttention()(keras.Input((3, 4), batch_size=2), keras.Input((5, 4), batch_size=3))
    with pytest.raises(TypeError, match="float"):
        SequenceAttention()(keras.Input((3, 4), dtype="int32"), keras.Input((5, 4)))


def test_custom_scoring_net_with_wrong_output_shape():
    pair_e = keras.Input((4,), name="input")
    pair_q = keras.Input((4,), name="query")
    two_scores = keras.layers.Dense(2)(keras.layers.Concatenate()([pair_e, pair_q]))
    net = keras.Model({"input": pair_e, "query": pair_q}, two_scores)
    pattern = r"one score per .* shape \(..., 1\) or \(...\).*\(None, 2\)"
    with pytest.raises(ValueError, match=pattern):
        SequenceAttention(net)(E, Q)


def test_custom_scoring_net_with_wrong_inputs():
    single = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match=r"custom scoring net must accept a dict"):
        SequenceAttention(single)(E, Q)


def test_bad_call_masks():
    layer = SequenceAttention()
    with pytest.raises(ValueError, match=r"`mask` in call\(\) must be a list \[inputs_mask"):
        layer(E, Q, mask=np.ones((2, 3), bool))
    with pytest.raises(ValueError, match=r"`mask\[1\]` must have shape \(batch, time\)"):
        layer(E, Q, mask=[None, np.ones((2, 5, 1), bool)])
