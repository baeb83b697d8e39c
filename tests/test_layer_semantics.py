"""SequenceAttention's numbers: against a NumPy reference, Keras's own layers, and itself."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from reference import attend_batch, attend_one, score_fn_for

from keras_seqattn import SequenceAttention

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


def ragged_batch(e, q):
    re = tf.RaggedTensor.from_tensor(e, lengths=INPUT_LENGTHS)
    rq = tf.RaggedTensor.from_tensor(q, lengths=QUERY_LENGTHS)
    return re, rq


MASK_OPTIONS = [None, "causal", ("causal", 2)]
RESCALINGS = [None, "length_sqrt", "dim_sqrt"]


@pytest.mark.parametrize("scoring", ["bilinear", "dot", "additive"])
@pytest.mark.parametrize("mask", MASK_OPTIONS)
@pytest.mark.parametrize("rescaling", RESCALINGS)
def test_padded_and_masked_matches_reference(scoring, mask, rescaling):
    e, q, in_mask, q_mask = padded_batch()
    layer = SequenceAttention(scoring, mask=mask, score_rescaling=rescaling)
    out, w = layer(e, q, mask=[in_mask, q_mask], return_attention_scores=True)
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


@pytest.mark.parametrize("scoring", ["bilinear", "dot", "additive"])
@pytest.mark.parametrize("mask", MASK_OPTIONS)
def test_ragged_equals_examples_one_at_a_time(scoring, mask):
    e, q, _, _ = padded_batch()
    re, rq = ragged_batch(e, q)
    layer = SequenceAttention(scoring, mask=mask, score_rescaling="length_sqrt")
    out, w = layer(re, rq, return_attention_scores=True)
    assert isinstance(out, tf.RaggedTensor) and isinstance(w, tf.RaggedTensor)
    assert out.row_lengths().numpy().tolist() == QUERY_LENGTHS
    n_max = max(INPUT_LENGTHS)
    for b in range(BATCH):
        ni, mi = INPUT_LENGTHS[b], QUERY_LENGTHS[b]
        single_out, single_w = layer(
            e[b : b + 1, :ni], q[b : b + 1, :mi], return_attention_scores=True
        )
        np.testing.assert_allclose(out[b].numpy(), single_out[0], rtol=1e-5, atol=1e-6)
        wb = w[b].numpy()
        assert wb.shape == (mi, n_max)
        np.testing.assert_allclose(wb[:, :ni], single_w[0], rtol=1e-5, atol=1e-7)
        assert np.all(wb[:, ni:] == 0.0)


def test_ragged_inputs_with_dense_query_and_vice_versa():
    e, q, in_mask, q_mask = padded_batch()
    re, rq = ragged_batch(e, q)
    layer = SequenceAttention("bilinear")
    reference, ref_w = layer(e, q, mask=[in_mask, q_mask], return_attention_scores=True)
    out, w = layer(re, q, mask=[None, q_mask], return_attention_scores=True)
    assert not isinstance(out, tf.RaggedTensor)
    np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w, ref_w, atol=1e-7)
    out, w = layer(e, rq, mask=[in_mask, None], return_attention_scores=True)
    assert isinstance(out, tf.RaggedTensor)
    np.testing.assert_allclose(out.to_tensor(), reference, rtol=1e-5, atol=1e-6)


def test_implicit_keras_masks_from_embedding():
    ids_in = np.array([[3, 4, 5, 0, 0], [6, 0, 0, 0, 0]])
    ids_q = np.array([[1, 2, 0], [7, 8, 9]])
    embedding = keras.layers.Embedding(10, D, mask_zero=True)
    layer = SequenceAttention("dot")
    out, w = layer(embedding(ids_in), embedding(ids_q), return_attention_scores=True)
    explicit_out, explicit_w = layer(
        embedding(ids_in),
        embedding(ids_q),
        mask=[ids_in != 0, ids_q != 0],
        return_attention_scores=True,
    )
    np.testing.assert_allclose(w, explicit_w)
    np.testing.assert_allclose(out, explicit_out)
    assert np.all(np.asarray(w)[0, :, 3:] == 0) and np.all(np.asarray(w)[0, 2] == 0)
    # The output carries the query mask for downstream layers.
    np.testing.assert_array_equal(out._keras_mask, ids_q != 0)


def test_unmasked_padding_is_attended_and_masked_padding_is_not():
    # NOTES §2: without a mask, padding silently takes weight (0.96 instead of 1.0).
    e = np.array([[[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]], "float32")
    q = np.array([[[1.0, 1.0]]], "float32")
    layer = SequenceAttention("dot")
    leaky = layer(e, q)
    masked = layer(e, q, mask=[np.array([[True, False, False]]), None])
    assert float(leaky[0, 0, 0]) < 0.99
    np.testing.assert_allclose(masked, [[[1.0, 1.0]]])


@pytest.mark.parametrize("causal", [False, True])
def test_dot_matches_keras_attention(causal):
    e, q, in_mask, q_mask = padded_batch()
    q = q[:, :N] if M >= N else np.concatenate([q, q[:, : N - M]], axis=1)
    q_mask = np.ones((BATCH, N), bool)
    in_mask = in_mask.copy()
    in_mask[:, 0] = True  # Keras's Attention gives empty rows a uniform spread, not zeros
    ours, our_w = SequenceAttention("dot", mask="causal" if causal else None)(
        e, q, mask=[in_mask, q_mask], return_attention_scores=True
    )
    theirs, their_w = keras.layers.Attention()(
        [q, e], mask=[q_mask, in_mask], use_causal_mask=causal, return_attention_scores=True
    )
    np.testing.assert_allclose(our_w, their_w, atol=1e-6)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_custom_scoring_net_matches_named_additive():
    # Wolfram's own tests use an additive net written by hand; the same weights in
    # a custom functional model must give the named "additive" layer's numbers.
    e, q, in_mask, q_mask = padded_batch(d1=4, d2=3)
    named = SequenceAttention("additive", units=5)
    named_out = named(e, q, mask=[in_mask, q_mask])
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
    net.get_layer("w1").set_weights([named.scorer.input_kernel.numpy()])
    net.get_layer("w2").set_weights([named.scorer.query_kernel.numpy()])
    net.get_layer("v").set_weights([named.scorer.score_vector.numpy()[:, None]])
    custom = SequenceAttention(net)
    custom_out = custom(e, q, mask=[in_mask, q_mask])
    np.testing.assert_allclose(custom_out, named_out, rtol=1e-5, atol=1e-5)


def test_custom_scoring_layer_with_rank_reduced_output():
    class NegativeDistance(keras.layers.Layer):
        def call(self, pair):
            return -keras.ops.sum(keras.ops.square(pair["input"] - pair["query"]), axis=-1)

    e, q, in_mask, q_mask = padded_batch()
    layer = SequenceAttention(NegativeDistance())
    out, w = layer(e, q, mask=[in_mask, q_mask], return_attention_scores=True)
    ref_out, ref_w = attend_batch(
        e, q, lambda a, b: -float(np.sum((a - b) ** 2)), INPUT_LENGTHS, QUERY_LENGTHS
    )
    np.testing.assert_allclose(w, ref_w, atol=1e-6)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-4)


def test_dropout_only_in_training_and_on_the_weights():
    e, q, in_mask, q_mask = padded_batch()
    layer = SequenceAttention("dot", dropout=0.5, seed=3)
    out_eval, w_eval = layer(e, q, mask=[in_mask, q_mask], return_attention_scores=True)
    plain = SequenceAttention("dot")
    np.testing.assert_allclose(out_eval, plain(e, q, mask=[in_mask, q_mask]), rtol=1e-6)
    out_train, w_train = layer(
        e, q, mask=[in_mask, q_mask], return_attention_scores=True, training=True
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
    out = np.asarray(layer(e, q))
    assert out.shape == (1, 4, 2)
    # The zero query scores every input 0: uniform weights, the mean of the inputs.
    np.testing.assert_allclose(out[0, 2], [3.0, 4.0], rtol=1e-6)
    ref_out, _ = attend_one(e[0], q[0], lambda a, b: float(a @ b))
    np.testing.assert_allclose(out[0], ref_out, rtol=1e-5)


def test_empty_example_gives_zeros_and_finite_gradients():
    e, q, in_mask, q_mask = padded_batch()
    re, rq = ragged_batch(e, q)
    layer = SequenceAttention("bilinear", mask="causal", score_rescaling="length_sqrt")
    for args in ((re, rq, None), (tf.constant(e), tf.constant(q), [in_mask, q_mask])):
        x, y, mask = args
        with tf.GradientTape() as tape:
            out, w = layer(x, y, mask=mask, return_attention_scores=True)
            dense_out = out.to_tensor() if isinstance(out, tf.RaggedTensor) else out
            loss = tf.reduce_sum(dense_out**2)
        grads = tape.gradient(loss, layer.trainable_variables)
        assert all(np.all(np.isfinite(g)) for g in grads)
        w = w.to_tensor() if isinstance(w, tf.RaggedTensor) else w
        assert np.all(np.asarray(w)[2] == 0.0)
        assert np.all(np.asarray(dense_out)[2] == 0.0)


def test_all_examples_empty():
    e = tf.RaggedTensor.from_row_lengths(tf.zeros((0, 3)), [0, 0])
    q = tf.ones((2, 2, 3))
    out, w = SequenceAttention("dot")(e, q, return_attention_scores=True)
    assert out.shape == (2, 2, 3) and w.shape == (2, 2, 0)
    assert np.all(np.asarray(out) == 0.0)


@pytest.mark.parametrize("scoring", ["bilinear", "additive"])
def test_gradients_match_finite_differences(scoring):
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
        return tf.reduce_sum(out * probe)

    e_var, q_var = tf.Variable(e), tf.Variable(q)
    with tf.GradientTape() as tape:
        value = loss(e_var, q_var)
    grad_e, grad_q, *grad_w = tape.gradient(value, [e_var, q_var, *layer.trainable_variables])

    def numeric(array, evaluate):
        grad = np.zeros_like(array)
        step = 1e-6
        for index in np.ndindex(array.shape):
            plus, minus = array.copy(), array.copy()
            plus[index] += step
            minus[index] -= step
            grad[index] = (evaluate(plus) - evaluate(minus)) / (2 * step)
        return grad

    np.testing.assert_allclose(grad_e, numeric(e, lambda x: float(loss(x, q))), atol=1e-7)
    np.testing.assert_allclose(grad_q, numeric(q, lambda x: float(loss(e, x))), atol=1e-7)
    for variable, analytic in zip(layer.trainable_variables, grad_w, strict=True):
        original = variable.numpy()

        def with_weight(value, variable=variable):
            variable.assign(value)
            return float(loss(e, q))

        expected = numeric(original, with_weight)
        variable.assign(original)
        np.testing.assert_allclose(analytic, expected, atol=1e-7)


@pytest.mark.parametrize("mask", [None, "causal"])
def test_skewed_ragged_batch_split_in_groups_equals_padded(mask):
    # Mostly short examples and one long one: the layer attends the short ones padded to
    # their own longest, not the batch's (see _attend_in_two_groups). Same numbers, and
    # the same gradients, as the whole batch padded and masked.
    rng = np.random.default_rng(11)
    in_len = [2, 3, 1, 2, 0, 3, 24]
    q_len = [1, 2, 2, 3, 1, 2, 20]
    e = rng.normal(size=(len(in_len), 24, 4)).astype("float32")
    q = rng.normal(size=(len(q_len), 20, 4)).astype("float32")
    in_mask = np.arange(24)[None, :] < np.array(in_len)[:, None]
    q_mask = np.arange(20)[None, :] < np.array(q_len)[:, None]
    re = tf.RaggedTensor.from_tensor(e, lengths=in_len)
    rq = tf.RaggedTensor.from_tensor(q, lengths=q_len)
    layer = SequenceAttention("bilinear", mask=mask, score_rescaling="length_sqrt")
    with tf.GradientTape() as tape:
        out, w = layer(re, rq, return_attention_scores=True)
        ragged_loss = tf.reduce_sum(out.flat_values**2) + tf.reduce_sum(w.flat_values)
    ragged_grads = tape.gradient(ragged_loss, layer.trainable_variables)
    with tf.GradientTape() as tape:
        dense_out, dense_w = layer(e, q, mask=[in_mask, q_mask], return_attention_scores=True)
        dense_loss = tf.reduce_sum(dense_out**2) + tf.reduce_sum(dense_w)
    dense_grads = tape.gradient(dense_loss, layer.trainable_variables)
    assert out.row_lengths().numpy().tolist() == q_len
    np.testing.assert_allclose(out.to_tensor(shape=(7, 20, 4)), dense_out, rtol=1e-5, atol=1e-6)
    assert w.to_tensor().shape == (7, 20, 24)
    np.testing.assert_allclose(w.to_tensor(shape=(7, 20, 24)), dense_w, atol=1e-6)
    for got, expected in zip(ragged_grads, dense_grads, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    compiled = tf.function(lambda a, b: layer(a, b))(re, rq)
    np.testing.assert_allclose(
        compiled.to_tensor(shape=(7, 20, 4)), dense_out, rtol=1e-5, atol=1e-6
    )
