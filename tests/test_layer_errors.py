"""Every bad input gets an error that names the argument, what was expected and what came."""

import keras
import numpy as np
import pytest
from backend_tools import BACKEND, to_numpy, value_and_grads

from keras_seqattn import SequenceAttention

pytestmark = pytest.mark.all_backends

E = np.zeros((2, 3, 4), "float32")
Q = np.zeros((2, 5, 4), "float32")


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"scoring": "cosine"}, ValueError, r"`scoring` must be one of .*got 'cosine'"),
        ({"scoring": 3}, TypeError, r"`scoring` must be .*got int"),
        ({"mask": "future"}, ValueError, r"`mask` must be None, 'causal'.*got 'future'"),
        ({"mask": ("causal", 0)}, ValueError, r"window of `mask=\('causal', window\)`.*got 0"),
        ({"mask": ("causal", 2.5)}, TypeError, r"window of `mask=\('causal', window\)`.*float"),
        ({"mask": ("causal", True)}, TypeError, r"window .* must be an integer"),
        ({"mask": ("causal", 2**63)}, ValueError, r"window .* \[1, 2\*\*31 - 1\].*got 9223"),
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


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.RaggedTensor: TensorFlow only")
def test_more_than_one_ragged_dimension():
    import tensorflow as tf

    nested = tf.RaggedTensor.from_nested_row_lengths(tf.zeros((6,)), [[2, 1], [1, 2, 3]])
    assert nested.ragged_rank == 2
    with pytest.raises(ValueError, match=r"`inputs` may have one ragged dimension.*ragged_rank=2"):
        SequenceAttention()(nested, Q[:, :, :1])


@pytest.mark.skipif(BACKEND == "tensorflow", reason="ragged works on TensorFlow")
def test_ragged_on_jax_and_pytorch_says_pad_and_mask():
    # Keras itself refuses keras.Input(ragged=True) there; a tf.RaggedTensor can still
    # come from a tf.data pipeline. (Importing TensorFlow here is the test's, not ours.)
    import tensorflow as tf

    ragged = tf.RaggedTensor.from_row_lengths(np.zeros((5, 4), "float32"), [2, 3])
    pattern = rf"`inputs` is ragged .*only on the TensorFlow backend.*'{BACKEND}'.*Pad"
    with pytest.raises(ValueError, match=pattern):
        SequenceAttention()(ragged, Q)


def test_window_of_any_integral_type():
    assert SequenceAttention(mask=("causal", np.int64(2))).window == 2
    assert SequenceAttention(mask=("causal", np.int32(2**31 - 1))).window == 2**31 - 1
    assert isinstance(SequenceAttention(mask=("causal", np.int64(2))).get_config()["mask"][1], int)


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


def test_feature_size_differs_from_the_built_layer():
    layer = SequenceAttention()
    layer(E, Q)
    with pytest.raises(
        ValueError, match=r"built for `inputs` of feature size 4; got shape \(2, 3, 6\)"
    ):
        layer(np.zeros((2, 3, 6), "float32"), Q)
    with pytest.raises(ValueError, match=r"built for `query` of feature size 4"):
        layer(E, np.zeros((2, 5, 3), "float32"))


def test_custom_scoring_net_whose_declared_shape_lies():
    class Liar(keras.layers.Layer):
        def call(self, pair):
            return keras.ops.concatenate([pair["input"][:, :1], pair["query"][:, :1]], axis=-1)

        def compute_output_shape(self, input_shape):
            return (input_shape["input"][0], 1)

    with pytest.raises(
        ValueError, match=r"'liar' must return one score per .*\(30, 2\) for 30 pairs"
    ):
        SequenceAttention(Liar(name="liar"))(E, Q)


def test_batch_of_one_query_is_not_broadcast():
    inputs, query = keras.Input((None, 4)), keras.Input((None, 4))
    model = keras.Model([inputs, query], SequenceAttention()(inputs, query))
    with pytest.raises(ValueError, match=r"same batch size; batches are not broadcast"):
        model([np.zeros((4, 3, 4), "float32"), np.zeros((1, 5, 4), "float32")])
    with pytest.raises(ValueError, match=r"same batch size"):
        model([np.zeros((1, 3, 4), "float32"), np.zeros((4, 5, 4), "float32")])


@pytest.mark.parametrize(
    "mask, error, pattern",
    [
        (np.ones((2, 1), bool), ValueError, r"`mask\[0\]` must have shape .*\(2, 3\).*\(2, 1\)"),
        (np.ones((1, 3), bool), ValueError, r"`mask\[0\]` .*got shape \(1, 3\).*not broadcast"),
        (np.ones((3, 3), bool), ValueError, r"`mask\[0\]` .*got shape \(3, 3\)"),
        (np.ones((2, 4), bool), ValueError, r"`mask\[0\]` .*got shape \(2, 4\)"),
        (np.full((2, 3), "yes"), TypeError, r"`mask\[0\]` must be a boolean .*got dtype str"),
        (np.full((2, 3), 0.2), TypeError, r"`mask\[0\]` must be a boolean .*float64"),
    ],
)
def test_bad_padding_masks_name_the_argument(mask, error, pattern):
    with pytest.raises(error, match=pattern):
        SequenceAttention()(E, Q, mask=[mask, None])


def test_integer_masks_count_nonzero_as_visible():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(2, 3, 4)).astype("float32")
    layer = SequenceAttention()
    as_bool = to_numpy(layer(e, Q, mask=[np.array([[1, 1, 0], [1, 0, 0]]) > 0, None]))
    as_int = to_numpy(layer(e, Q, mask=[np.array([[1, 1, 0], [1, 0, 0]], "int32"), None]))
    np.testing.assert_array_equal(as_int, as_bool)


@pytest.mark.parametrize("garbage", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_in_padding_reach_neither_outputs_nor_gradients(garbage):
    rng = np.random.default_rng(1)
    e = rng.normal(size=(2, 4, 3)).astype("float32")
    q = rng.normal(size=(2, 2, 3)).astype("float32")
    in_mask = np.array([[True, True, False, False], [True, True, True, True]])
    q_mask = np.array([[True, False], [True, True]])
    clean = to_numpy(SequenceAttention("additive", seed=1)(e, q, mask=[in_mask, q_mask]))
    e[~in_mask] = garbage
    q[~q_mask] = garbage
    layer = SequenceAttention("additive", score_rescaling="length_sqrt")
    layer.build(e.shape, q.shape)

    def loss(e_value, q_value):
        return keras.ops.sum(layer(e_value, q_value, mask=[in_mask, q_mask]))

    _, by_inputs, by_weights = value_and_grads(loss, [e, q], layer.trainable_variables)
    out = to_numpy(layer(e, q, mask=[in_mask, q_mask]))
    assert np.all(np.isfinite(out)) and clean.shape == out.shape
    assert all(np.all(np.isfinite(g)) for g in by_inputs + by_weights)
    assert np.all(by_inputs[0][~in_mask] == 0) and np.all(by_inputs[1][~q_mask] == 0)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="sizes unknown until run: TF graphs only")
def test_sizes_unknown_until_the_graph_runs_are_checked_when_it_runs():
    import tensorflow as tf

    layer = SequenceAttention()
    layer(E, Q)
    spec = tf.TensorSpec((None, None, 4))
    run = tf.function(
        lambda e, q, m: layer(e, q, mask=[m, None]),
        input_signature=[spec, spec, tf.TensorSpec((None, None), tf.bool)],
    )
    assert run(E, Q, np.ones((2, 3), bool)).shape == (2, 5, 4)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`mask\[0\]` must have the time"):
        run(E, Q, np.ones((2, 4), bool))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"same batch size"):
        run(E, Q[:1], np.ones((2, 3), bool))
