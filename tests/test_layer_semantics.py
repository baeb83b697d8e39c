"""SequenceAttention's numbers: against a NumPy reference, Keras's own layers, and itself.

On every backend (the ragged ones are in test_layer_ragged.py, TensorFlow only).
"""

import keras
import numpy as np
import pytest
from backend_tools import BACKEND, float64_enabled, to_numpy, value_and_grads
from keras.src.backend.common.masking import get_keras_mask
from reference import attend_batch, attend_one, score_fn_for

from keras_seqattn import SequenceAttention

pytestmark = pytest.mark.all_backends

RNG = np.random.default_rng(7)
BATCH, N, M, D = 3, 5, 4, 6
INPUT_LENGTHS = [5, 2, 0]  # the last example has no input vectors at all
QUERY_LENGTHS = [4, 3, 1]


def padded_batch(d1=D, d2=D):
    e = RNG.normal(size=(BATCH, N, d1)).astype("float32")
    q = RNG.normal(size=(BATCH, M, d2)).astype("float32")
    for b in range(BATCH):  # garbage in the padding must not matter
        e[b, INPUT_LENGTHS[b] :] = 1e3
        q[b, QUERY_LENGTHS[b] :] = -1e3
    in_mask = np.arange(N)[None, :] < np.array(INPUT_LENGTHS)[:, None]
    q_mask = np.arange(M)[None, :] < np.array(QUERY_LENGTHS)[:, None]
    return e, q, in_mask, q_mask


def attend(layer, *args, **kwargs):
    """The layer's results as NumPy arrays (a PyTorch result that needs grad is not one)."""
    result = layer(*args, **kwargs)
    if isinstance(result, tuple):
        return tuple(to_numpy(x) for x in result)
    return to_numpy(result)


MASK_OPTIONS = [None, "causal", ("causal", 2)]
RESCALINGS = [None, "length_sqrt", "dim_sqrt"]


@pytest.mark.parametrize("scoring", ["bilinear", "dot", "additive"])
@pytest.mark.parametrize("mask", MASK_OPTIONS)
@pytest.mark.parametrize("rescaling", RESCALINGS)
def test_padded_and_masked_matches_reference(scoring, mask, rescaling):
    e, q, in_mask, q_mask = padded_batch()
    layer = SequenceAttention(scoring, mask=mask, score_rescaling=rescaling)
    out, w = attend(layer, e, q, mask=[in_mask, q_mask], return_attention_scores=True)
    causal = mask is not None
    window = mask[1] if isinstance(mask, tuple) else None
    ref_out, ref_w = attend_batch(
        e,
        q,
        score_fn_for(layer),
        INPUT_LENGTHS,
        QUERY_LENGTHS,
        causal=causal,
        window=window,
        rescaling=rescaling,
    )
    np.testing.assert_allclose(w, ref_w, atol=2e-6)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=2e-5)
    # Outside an example's length the weights are exact zeros, not tiny numbers.
    assert np.all(np.asarray(w)[~(q_mask[:, :, None] & in_mask[:, None, :])] == 0.0)


def test_implicit_keras_masks_from_embedding():
    ids_in = np.array([[3, 4, 5, 0, 0], [6, 0, 0, 0, 0]])
    ids_q = np.array([[1, 2, 0], [7, 8, 9]])
    embedding = keras.layers.Embedding(10, D, mask_zero=True)
    layer = SequenceAttention("dot")
    result = layer(embedding(ids_in), embedding(ids_q), return_attention_scores=True)
    out, w = (to_numpy(x) for x in result)
    explicit_out, explicit_w = attend(
        layer,
        embedding(ids_in),
        embedding(ids_q),
        mask=[ids_in != 0, ids_q != 0],
        return_attention_scores=True,
    )
    np.testing.assert_allclose(w, explicit_w)
    np.testing.assert_allclose(out, explicit_out)
    assert np.all(np.asarray(w)[0, :, 3:] == 0) and np.all(np.asarray(w)[0, 2] == 0)
    # The output carries the query mask for downstream layers.
    np.testing.assert_array_equal(to_numpy(get_keras_mask(result[0])), ids_q != 0)


def test_unmasked_padding_is_attended_and_masked_padding_is_not():
    # NOTES §2: without a mask, padding silently takes weight (0.96 instead of 1.0).
    e = np.array([[[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]], "float32")
    q = np.array([[[1.0, 1.0]]], "float32")
    layer = SequenceAttention("dot")
    leaky = attend(layer, e, q)
    masked = attend(layer, e, q, mask=[np.array([[True, False, False]]), None])
    assert float(leaky[0, 0, 0]) < 0.99
    np.testing.assert_allclose(masked, [[[1.0, 1.0]]])


@pytest.mark.parametrize("causal", [False, True])
def test_dot_matches_keras_attention(causal):
    e, q, in_mask, q_mask = padded_batch()
    q = q[:, :N] if M >= N else np.concatenate([q, q[:, : N - M]], axis=1)
    q_mask = np.ones((BATCH, N), bool)
    in_mask = in_mask.copy()
    in_mask[:, 0] = True  # Keras's Attention gives empty rows a uniform spread, not zeros
    ours, our_w = attend(
        SequenceAttention("dot", mask="causal" if causal else None),
        e,
        q,
        mask=[in_mask, q_mask],
        return_attention_scores=True,
    )
    theirs, their_w = attend(
        keras.layers.Attention(),
        [q, e],
        mask=[q_mask, in_mask],
        use_causal_mask=causal,
        return_attention_scores=True,
    )
    np.testing.assert_allclose(our_w, their_w, atol=1e-6)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_custom_scoring_net_matches_named_additive():
    # Wolfram's own tests use an additive net written by hand; the same weights in
    # a custom functional model must give the named "additive" layer's numbers.
    e, q, in_mask, q_mask = padded_batch(d1=4, d2=3)
    named = SequenceAttention("additive", units=5)
    named_out = attend(named, e, q, mask=[in_mask, q_mask])
    pair_e = keras.Input((4,), name="input")
    pair_q = keras.Input((3,), name="query")
    hidden = keras.layers.Add()(
        [
            keras.layers.Dense(5, use_bias=False, name="w1")(pair_e),
            keras.layers.Dense(5, use_bias=False, name="w2")(pair_q),
        ]
    )
    score = keras.layers.Dense(1, use_bias=False, name="v")(keras.layers.Activation("tanh")(hidden))
    net = keras.Model({"input": pair_e, "query": pair_q}, score)
    net.get_layer("w1").set_weights([to_numpy(named.scorer.input_kernel)])
    net.get_layer("w2").set_weights([to_numpy(named.scorer.query_kernel)])
    net.get_layer("v").set_weights([to_numpy(named.scorer.score_vector)[:, None]])
    custom = SequenceAttention(net)
    custom_out = attend(custom, e, q, mask=[in_mask, q_mask])
    np.testing.assert_allclose(custom_out, named_out, rtol=1e-5, atol=1e-5)


def test_custom_scoring_layer_with_rank_reduced_output():
    class NegativeDistance(keras.layers.Layer):
        def call(self, pair):
            return -keras.ops.sum(keras.ops.square(pair["input"] - pair["query"]), axis=-1)

    e, q, in_mask, q_mask = padded_batch()
    layer = SequenceAttention(NegativeDistance())
    out, w = attend(layer, e, q, mask=[in_mask, q_mask], return_attention_scores=True)
    ref_out, ref_w = attend_batch(
        e, q, lambda a, b: -float(np.sum((a - b) ** 2)), INPUT_LENGTHS, QUERY_LENGTHS
    )
    np.testing.assert_allclose(w, ref_w, atol=1e-6)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-4)


def test_dropout_only_in_training_and_on_the_weights():
    e, q, in_mask, q_mask = padded_batch()
    layer = SequenceAttention("dot", dropout=0.5, seed=3)
    out_eval, w_eval = attend(layer, e, q, mask=[in_mask, q_mask], return_attention_scores=True)
    plain = SequenceAttention("dot")
    np.testing.assert_allclose(out_eval, attend(plain, e, q, mask=[in_mask, q_mask]), rtol=1e-6)
    out_train, w_train = attend(
        layer, e, q, mask=[in_mask, q_mask], return_attention_scores=True, training=True
    )
    # The returned weights are before dropout; the output uses dropped ones, which are
    # each either 0 or w / (1 - rate). Recover them from the output: o = w_drop @ e.
    np.testing.assert_allclose(w_train, w_eval, rtol=1e-6)
    b, j = 0, 3
    w_row = np.asarray(w_eval)[b, j, : INPUT_LENGTHS[b]]
    visible = e[b, : INPUT_LENGTHS[b]]
    dropped = np.linalg.lstsq(visible.T, np.asarray(out_train)[b, j], rcond=None)[0]
    for got, full in zip(dropped, w_row, strict=True):
        assert np.isclose(got, 0.0, atol=1e-4) or np.isclose(got, full / 0.5, rtol=1e-3)
    assert not np.allclose(out_train, out_eval)


def test_seed_question_example():
    # The Mathematica question: 3 input vectors of size 2, 4 query vectors of size 2.
    e = np.array([[[1, 2], [3, 4], [5, 6]]], "float32")
    q = np.array([[[1, 0], [0, 1], [0, 0], [1, 1]]], "float32")
    layer = SequenceAttention("dot")
    out = attend(layer, e, q)
    assert out.shape == (1, 4, 2)
    # The zero query scores every input 0: uniform weights, the mean of the inputs.
    np.testing.assert_allclose(out[0, 2], [3.0, 4.0], rtol=1e-6)
    ref_out, _ = attend_one(e[0], q[0], lambda a, b: float(a @ b))
    np.testing.assert_allclose(out[0], ref_out, rtol=1e-5)


@pytest.mark.parametrize("scoring", ["bilinear", "additive"])
def test_gradients_match_finite_differences(scoring):
    with float64_enabled():
        _check_gradients_by_finite_differences(scoring)


def _check_gradients_by_finite_differences(scoring):
    rng = np.random.default_rng(0)
    e = rng.normal(size=(2, 3, 2))
    q = rng.normal(size=(2, 3, 2))
    in_mask = np.array([[True, True, True], [True, True, False]])
    q_mask = np.array([[True, True, True], [True, False, False]])
    layer = SequenceAttention(
        scoring, mask="causal", score_rescaling="length_sqrt", dtype="float64"
    )
    layer(e, q, mask=[in_mask, q_mask])
    probe = rng.normal(size=(2, 3, 2))

    def loss(e_value, q_value):
        out = layer(e_value, q_value, mask=[in_mask, q_mask])
        return keras.ops.sum(keras.ops.multiply(out, probe))

    def evaluate(e_value, q_value):
        return float(to_numpy(loss(e_value, q_value)))

    _, (grad_e, grad_q), grad_w = value_and_grads(loss, [e, q], layer.trainable_variables)

    # Keras 3.15's tanh on JAX computes float64 in float32 (keras/src/backend/jax/numpy.py:
    # `dtypes.result_type(x.dtype, float)` is float32), so there the additive net's loss
    # is float32-exact only. Keras on PyTorch computes float64 matrix products in float32
    # (keras/src/backend/common/dtypes.py: BIT64_TO_BIT32_DTYPE, as JAX without x64).
    # Where the loss is float32-exact the check is in float32: a wide step keeps the
    # difference quotient far above float32 rounding (about 1e-7 / step), and Richardson
    # extrapolation cancels the wide step's truncation error. A step of 1e-3 without
    # it missed by 1e-5 once the additive kernels got their own seeds.
    float32_exact = BACKEND == "torch" or (BACKEND == "jax" and scoring == "additive")
    step, atol = (1e-2, 2e-4) if float32_exact else (1e-6, 1e-7)
    richardson, h = float32_exact, step

    def numeric(array, evaluate):
        grad = np.zeros_like(array)
        for index in np.ndindex(array.shape):

            def quotient(step, index=index):
                plus, minus = array.copy(), array.copy()
                plus[index] += step
                minus[index] -= step
                return (evaluate(plus) - evaluate(minus)) / (2 * step)

            grad[index] = (4 * quotient(h / 2) - quotient(h)) / 3 if richardson else quotient(h)
        return grad

    np.testing.assert_allclose(grad_e, numeric(e, lambda x: evaluate(x, q)), atol=atol)
    np.testing.assert_allclose(grad_q, numeric(q, lambda x: evaluate(e, x)), atol=atol)
    for variable, analytic in zip(layer.trainable_variables, grad_w, strict=True):
        original = to_numpy(variable)

        def with_weight(value, variable=variable):
            variable.assign(value)
            return evaluate(e, q)

        expected = numeric(original, with_weight)
        variable.assign(original)
        np.testing.assert_allclose(analytic, expected, atol=atol)


def test_empty_example_gives_zeros_and_finite_gradients():
    e, q, in_mask, q_mask = padded_batch()
    layer = SequenceAttention("bilinear", mask="causal", score_rescaling="length_sqrt")
    out, w = attend(layer, e, q, mask=[in_mask, q_mask], return_attention_scores=True)
    assert np.all(w[2] == 0.0) and np.all(out[2] == 0.0)

    def loss(e_value, q_value):
        return keras.ops.sum(layer(e_value, q_value, mask=[in_mask, q_mask]) ** 2)

    _, by_inputs, by_weights = value_and_grads(loss, [e, q], layer.trainable_variables)
    assert all(np.all(np.isfinite(g)) for g in by_inputs + by_weights)


def test_additive_net_starts_with_different_input_and_query_kernels():
    layer = SequenceAttention("additive")
    x = np.ones((1, 3, 4), "float32")
    layer(x, x)
    w1 = keras.ops.convert_to_numpy(layer.scorer.input_kernel)
    w2 = keras.ops.convert_to_numpy(layer.scorer.query_kernel)
    assert w1.shape == w2.shape and not np.allclose(w1, w2)
