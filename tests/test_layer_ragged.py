"""SequenceAttention on tf.RaggedTensor: TensorFlow only (see test_layer_semantics.py for
the same numbers on padded, masked batches on every backend)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_layer_keras import additive_scoring_model
from test_layer_semantics import BATCH, INPUT_LENGTHS, MASK_OPTIONS, QUERY_LENGTHS, padded_batch

from keras_seqattn import SequenceAttention


def ragged_batch(e, q):
    re = tf.RaggedTensor.from_tensor(e, lengths=INPUT_LENGTHS)
    rq = tf.RaggedTensor.from_tensor(q, lengths=QUERY_LENGTHS)
    return re, rq


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


def test_all_examples_empty():
    e = tf.RaggedTensor.from_row_lengths(tf.zeros((0, 3)), [0, 0])
    q = tf.ones((2, 2, 3))
    out, w = SequenceAttention("dot")(e, q, return_attention_scores=True)
    assert out.shape == (2, 2, 3) and w.shape == (2, 2, 0)
    assert np.all(np.asarray(out) == 0.0)


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


def test_empty_ragged_example_gives_zeros_and_finite_gradients():
    e, q, _, _ = padded_batch()
    re, rq = ragged_batch(e, q)
    layer = SequenceAttention("bilinear", mask="causal", score_rescaling="length_sqrt")
    with tf.GradientTape() as tape:
        out, w = layer(re, rq, return_attention_scores=True)
        loss = tf.reduce_sum(out.to_tensor() ** 2)
    grads = tape.gradient(loss, layer.trainable_variables)
    assert all(np.all(np.isfinite(g)) for g in grads)
    assert np.all(w.to_tensor().numpy()[2] == 0.0)
    assert np.all(out.to_tensor().numpy()[2] == 0.0)


def test_symbolic_ragged_shapes():
    ragged_inputs = keras.Input((None, 5), ragged=True)
    ragged_query = keras.Input((None, 3), ragged=True)
    out, w = SequenceAttention()(ragged_inputs, ragged_query, return_attention_scores=True)
    assert out.ragged and w.ragged
    assert out.shape == (None, None, 5)


def ragged_model(scoring):
    inputs = keras.Input((None, 3), ragged=True, name="inputs")
    query = keras.Input((None, 2), ragged=True, name="query")
    out, w = SequenceAttention(
        scoring, mask=("causal", 2), score_rescaling="length_sqrt", name="attention"
    )(inputs, query, return_attention_scores=True)
    return keras.Model([inputs, query], [out, w])


def ragged_data():
    rng = np.random.default_rng(1)
    in_len, q_len = [3, 1, 4], [2, 2, 1]
    e = tf.RaggedTensor.from_row_lengths(
        rng.normal(size=(sum(in_len), 3)).astype("float32"), in_len
    )
    q = tf.RaggedTensor.from_row_lengths(rng.normal(size=(sum(q_len), 2)).astype("float32"), q_len)
    return e, q


@pytest.mark.parametrize("scoring", ["bilinear", "additive", "custom"])
def test_ragged_save_and_load_round_trip(tmp_path, scoring):
    model = ragged_model(additive_scoring_model(3, 2) if scoring == "custom" else scoring)
    data = list(ragged_data())
    before = model(data)
    path = tmp_path / "model.keras"
    model.save(path)
    after = keras.models.load_model(path)(data)
    for a, b in zip(
        tf.nest.flatten(before, expand_composites=True),
        tf.nest.flatten(after, expand_composites=True),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_fit_on_a_dataset_of_ragged_batches():
    rng = np.random.default_rng(2)
    count = 32
    lengths = rng.integers(0, 7, size=count)  # some examples have no inputs at all
    values = rng.normal(size=(int(lengths.sum()), 3)).astype("float32")
    inputs = tf.RaggedTensor.from_row_lengths(values, lengths)
    q_lengths = rng.integers(1, 4, size=count)
    query = tf.RaggedTensor.from_row_lengths(
        rng.normal(size=(int(q_lengths.sum()), 3)).astype("float32"), q_lengths
    )
    target = rng.normal(size=(count, 1)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices(((inputs, query), target)).batch(8)

    class RaggedMean(keras.layers.Layer):
        def call(self, x):
            return tf.reduce_mean(x, axis=1)

    e_in = keras.Input((None, 3), ragged=True)
    q_in = keras.Input((None, 3), ragged=True)
    attended = SequenceAttention("bilinear")(e_in, q_in)
    model = keras.Model([e_in, q_in], keras.layers.Dense(1)(RaggedMean()(attended)))
    model.compile(keras.optimizers.Adam(0.05), "mse")
    history = model.fit(dataset, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    kernel = model.layers[2].scorer.kernel.numpy()
    assert np.all(np.isfinite(kernel))
