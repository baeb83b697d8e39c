"""SequenceAttention with a `value` sequence apart from the inputs (Wolfram's AttentionLayer).

The inputs are the keys; the values, aligned with them position by position, are what the
weights average. Without `value` the inputs are the values, exactly as before. Tests
without ragged tensors run on every backend.
"""

import keras
import numpy as np
import pytest
from keras import ops
from reference import attend_batch, score_fn_for

from keras_seqattn import SequenceAttention

RNG = np.random.default_rng(23)
BATCH, N, M, D, DV = 3, 5, 4, 3, 6
INPUT_LENGTHS = [5, 2, 0]
QUERY_LENGTHS = [4, 3, 1]
MASK_OPTIONS = [None, "causal", ("causal", 2)]
RESCALINGS = [None, "length_sqrt", "dim_sqrt"]


def value_batch(d1=D, d2=D, dv=DV):
    e = RNG.normal(size=(BATCH, N, d1)).astype("float32")
    q = RNG.normal(size=(BATCH, M, d2)).astype("float32")
    v = RNG.normal(size=(BATCH, N, dv)).astype("float32")
    for b in range(BATCH):  # garbage in the padding must not matter
        e[b, INPUT_LENGTHS[b] :] = 1e3
        v[b, INPUT_LENGTHS[b] :] = -1e3
        q[b, QUERY_LENGTHS[b] :] = -1e3
    in_mask = np.arange(N)[None, :] < np.array(INPUT_LENGTHS)[:, None]
    q_mask = np.arange(M)[None, :] < np.array(QUERY_LENGTHS)[:, None]
    return e, q, v, in_mask, q_mask


def mask_options(mask):
    return {"causal": mask is not None, "window": mask[1] if isinstance(mask, tuple) else None}


@pytest.mark.all_backends
@pytest.mark.parametrize("scoring", ["bilinear", "dot", "additive"])
@pytest.mark.parametrize("mask", MASK_OPTIONS)
@pytest.mark.parametrize("rescaling", RESCALINGS)
def test_padded_value_matches_reference(scoring, mask, rescaling):
    e, q, v, in_mask, q_mask = value_batch()
    layer = SequenceAttention(scoring, mask=mask, score_rescaling=rescaling)
    out, w = layer(e, q, v, mask=[in_mask, q_mask], return_attention_scores=True)
    ref_out, ref_w = attend_batch(
        e,
        q,
        score_fn_for(layer),
        INPUT_LENGTHS,
        QUERY_LENGTHS,
        value=v,
        rescaling=rescaling,
        **mask_options(mask),
    )
    assert tuple(out.shape) == (BATCH, M, DV)
    np.testing.assert_allclose(ops.convert_to_numpy(w), ref_w, atol=2e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(out), ref_out, rtol=1e-5, atol=2e-5)


@pytest.mark.all_backends
def test_value_defaults_to_the_inputs():
    e, q, _, in_mask, q_mask = value_batch()
    layer = SequenceAttention("additive", mask="causal")
    without = layer(e, q, mask=[in_mask, q_mask], return_attention_scores=True)
    with_inputs = layer(e, q, e, mask=[in_mask, q_mask], return_attention_scores=True)
    keyword = layer(e, q, value=e, mask=[in_mask, q_mask], return_attention_scores=True)
    for a, b, c in zip(without, with_inputs, keyword, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(c))


@pytest.mark.all_backends
def test_implicit_masks_of_inputs_and_value_both_apply():
    ids = np.array([[3, 4, 5, 0, 0], [6, 7, 0, 0, 0]])
    value_ids = np.array([[3, 4, 0, 0, 0], [6, 7, 0, 0, 0]])  # shorter in the first example
    ids_q = np.array([[1, 2, 0], [7, 8, 9]])
    embedding = keras.layers.Embedding(10, D, mask_zero=True)
    values = keras.layers.Embedding(10, DV, mask_zero=True)
    layer = SequenceAttention("dot")
    out, w = layer(
        embedding(ids), embedding(ids_q), values(value_ids), return_attention_scores=True
    )
    explicit_out, explicit_w = layer(
        embedding(ids),
        embedding(ids_q),
        values(value_ids),
        mask=[(ids != 0) & (value_ids != 0), ids_q != 0],
        return_attention_scores=True,
    )
    np.testing.assert_allclose(ops.convert_to_numpy(w), ops.convert_to_numpy(explicit_w))
    np.testing.assert_allclose(ops.convert_to_numpy(out), ops.convert_to_numpy(explicit_out))
    assert np.all(ops.convert_to_numpy(w)[0, :, 2:] == 0.0)


@pytest.mark.all_backends
def test_empty_example_with_value_gives_zeros():
    e, q, v, in_mask, q_mask = value_batch()
    out, w = SequenceAttention("bilinear", score_rescaling="length_sqrt")(
        e, q, v, mask=[in_mask, q_mask], return_attention_scores=True
    )
    out = ops.convert_to_numpy(out)
    assert np.all(np.isfinite(out)) and np.all(out[2] == 0.0)
    assert np.all(ops.convert_to_numpy(w)[2] == 0.0)


@pytest.mark.all_backends
def test_symbolic_shapes_with_value():
    inputs = keras.Input((None, 5))
    query = keras.Input((7, 3))
    value = keras.Input((None, 9))
    layer = SequenceAttention()
    out, w = layer(inputs, query, value, return_attention_scores=True)
    assert out.shape == (None, 7, 9) and w.shape == (None, 7, None)
    assert layer.compute_output_shape((2, 4, 5), (2, 3, 6), (2, 4, 9)) == (2, 3, 9)


@pytest.mark.all_backends
@pytest.mark.parametrize(
    "value_shape, pattern",
    [
        ((2, 4, DV), r"`value` must have the batch size and length of `inputs`.*\(2, 4, 6\)"),
        ((3, 5, DV), r"`value` must have the batch size and length of `inputs`"),
        ((2, 5, 2, DV), r"`value` must have rank 3.*rank 4.*multi_head=True"),
    ],
)
def test_bad_values_are_named(value_shape, pattern):
    e = np.zeros((2, 5, D), "float32")
    q = np.zeros((2, 4, D), "float32")
    with pytest.raises(ValueError, match=pattern):
        SequenceAttention("dot")(e, q, np.zeros(value_shape, "float32"))


@pytest.mark.all_backends
def test_int_value_is_refused():
    e = np.zeros((2, 5, D), "float32")
    with pytest.raises(TypeError, match=r"`value` must be a float tensor.*int32"):
        SequenceAttention("dot")(e, e, np.zeros((2, 5, 2), "int32"))


@pytest.mark.all_backends
def test_save_and_load_a_model_with_values(tmp_path):
    inputs = keras.Input((None, D))
    query = keras.Input((None, 2))
    value = keras.Input((None, DV))
    out = SequenceAttention("bilinear", mask="causal", name="attention")(inputs, query, value)
    model = keras.Model([inputs, query, value], out)
    e, q, v, _, _ = value_batch(d2=2)
    before = ops.convert_to_numpy(model([e, q, v]))
    model.save(tmp_path / "value.keras")
    after = ops.convert_to_numpy(keras.models.load_model(tmp_path / "value.keras")([e, q, v]))
    np.testing.assert_array_equal(before, after)


# ---------------------------------------------------------------------------------------
# TensorFlow only: ragged values and gradients
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scoring", ["bilinear", "dot", "additive"])
@pytest.mark.parametrize("mask", MASK_OPTIONS)
def test_ragged_value_matches_reference(scoring, mask):
    import tensorflow as tf

    e, q, v, _, _ = value_batch()
    re = tf.RaggedTensor.from_tensor(e, lengths=INPUT_LENGTHS)
    rq = tf.RaggedTensor.from_tensor(q, lengths=QUERY_LENGTHS)
    rv = tf.RaggedTensor.from_tensor(v, lengths=INPUT_LENGTHS)
    layer = SequenceAttention(scoring, mask=mask, score_rescaling="length_sqrt")
    out, w = layer(re, rq, rv, return_attention_scores=True)
    assert isinstance(out, tf.RaggedTensor) and out.shape.as_list() == [BATCH, None, DV]
    ref_out, ref_w = attend_batch(
        e,
        q,
        score_fn_for(layer),
        INPUT_LENGTHS,
        QUERY_LENGTHS,
        value=v,
        rescaling="length_sqrt",
        **mask_options(mask),
    )
    np.testing.assert_allclose(out.to_tensor(shape=ref_out.shape), ref_out, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(w.to_tensor(shape=ref_w.shape), ref_w, atol=2e-6)


def test_ragged_value_must_have_the_row_lengths_of_the_inputs():
    import tensorflow as tf

    e, q, v, _, _ = value_batch()
    re = tf.RaggedTensor.from_tensor(e, lengths=INPUT_LENGTHS)
    rq = tf.RaggedTensor.from_tensor(q, lengths=QUERY_LENGTHS)
    layer = SequenceAttention("dot")
    bad = tf.RaggedTensor.from_tensor(v, lengths=[5, 1, 0])
    with pytest.raises(
        ValueError, match=r"`value` must have the row lengths of `inputs`.*\[5, 1, 0\]"
    ):
        layer(re, rq, bad)
    with pytest.raises(ValueError, match=r"`value` must be aligned .*both ragged or both dense"):
        layer(re, rq, v)


def test_symbolic_ragged_value():
    inputs = keras.Input((None, D), ragged=True)
    query = keras.Input((None, D), ragged=True)
    value = keras.Input((None, DV), ragged=True)
    out, w = SequenceAttention()(inputs, query, value, return_attention_scores=True)
    assert out.ragged and w.ragged and out.shape == (None, None, DV)


@pytest.mark.parametrize("scoring", ["bilinear", "additive"])
def test_value_gradients_match_finite_differences(scoring):
    import tensorflow as tf

    rng = np.random.default_rng(5)
    e, q, v = (rng.normal(size=(2, 3, 2)) for _ in range(3))
    v = np.concatenate([v, rng.normal(size=(2, 3, 1))], axis=-1)  # dv = 3 != d1 = 2
    in_mask = np.array([[True, True, True], [True, True, False]])
    q_mask = np.array([[True, True, True], [True, False, False]])
    layer = SequenceAttention(
        scoring, mask=("causal", 2), score_rescaling="length_sqrt", dtype="float64"
    )
    probe = rng.normal(size=(2, 3, 3))

    def loss(e_value, v_value):
        return tf.reduce_sum(layer(e_value, q, v_value, mask=[in_mask, q_mask]) * probe)

    e_var, v_var = tf.Variable(e), tf.Variable(v)
    with tf.GradientTape() as tape:
        value = loss(e_var, v_var)
    grad_e, grad_v = tape.gradient(value, [e_var, v_var])

    def numeric(array, evaluate):
        grad = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            plus, minus = array.copy(), array.copy()
            plus[index] += 1e-6
            minus[index] -= 1e-6
            grad[index] = (evaluate(plus) - evaluate(minus)) / 2e-6
        return grad

    np.testing.assert_allclose(grad_e, numeric(e, lambda x: float(loss(x, v))), atol=1e-7)
    np.testing.assert_allclose(grad_v, numeric(v, lambda x: float(loss(e, x))), atol=1e-7)
