"""SequenceAttention as a Keras citizen: scoring net, symbolic use, saving, fit, precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_seqattn import SequenceAttention


def additive_scoring_model(d1, d2, units=4):
    pair_e = keras.Input((d1,), name="input")
    pair_q = keras.Input((d2,), name="query")
    hidden = keras.layers.Concatenate()([pair_e, pair_q])
    hidden = keras.layers.Dense(units, activation="tanh", use_bias=False)(hidden)
    score = keras.layers.Dense(1, use_bias=False)(hidden)
    return keras.Model({"input": pair_e, "query": pair_q}, score, name="my_scorer")


@pytest.mark.parametrize("scoring", ["bilinear", "dot", "additive", "custom"])
def test_scoring_net_reproduces_the_weights(scoring):
    # The seed's workflow: extract the scoring net, score every input against one
    # query, softmax over the inputs: that is the layer's weight row, and the
    # weighted sum of the inputs is the layer's output row.
    e = np.array([[[1, 2], [3, 4], [5, 6]]], "float32")
    q = np.array([[[1, 0], [0, 1], [0, 0], [1, 1]]], "float32")
    layer = SequenceAttention(additive_scoring_model(2, 2) if scoring == "custom" else scoring)
    out, w = layer(e, q, return_attention_scores=True)
    net = layer.scoring_net
    assert isinstance(net, keras.Model)
    assert net.output_shape in ((None, 1), (None,))
    shared = {id(v) for v in layer.weights}
    assert all(id(v) in shared for v in net.weights)
    for j in range(4):
        scores = net({"input": e[0], "query": np.repeat(q[0, j : j + 1], 3, axis=0)})
        scores = np.asarray(scores).reshape(-1)
        by_hand = np.exp(scores - scores.max())
        by_hand /= by_hand.sum()
        np.testing.assert_allclose(by_hand, np.asarray(w)[0, j], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(by_hand @ e[0], np.asarray(out)[0, j], rtol=1e-5)


def test_scoring_net_before_build_is_a_clear_error():
    with pytest.raises(ValueError, match="built"):
        SequenceAttention().scoring_net  # noqa: B018


def test_symbolic_shapes_dense_and_ragged():
    inputs = keras.Input((None, 5))
    query = keras.Input((7, 3))
    out, w = SequenceAttention()(inputs, query, return_attention_scores=True)
    assert out.shape == (None, 7, 5) and w.shape == (None, 7, None)
    assert not out.ragged
    ragged_inputs = keras.Input((None, 5), ragged=True)
    ragged_query = keras.Input((None, 3), ragged=True)
    out, w = SequenceAttention()(ragged_inputs, ragged_query, return_attention_scores=True)
    assert out.ragged and w.ragged
    assert out.shape == (None, None, 5)
    layer = SequenceAttention()
    assert layer.compute_output_shape((2, 4, 5), (2, 3, 6)) == (2, 3, 5)


def ragged_model(scoring):
    inputs = keras.Input((None, 3), ragged=True, name="inputs")
    query = keras.Input((None, 2), ragged=True, name="query")
    out, w = SequenceAttention(
        scoring, mask=("causal", 2), score_rescaling="length_sqrt", name="attention"
    )(inputs, query, return_attention_scores=True)
    return keras.Model([inputs, query], [out, w])


def masked_model(scoring):
    ids_in = keras.Input((None,), dtype="int32")
    ids_q = keras.Input((None,), dtype="int32")
    e = keras.layers.Embedding(20, 4, mask_zero=True)(ids_in)
    q = keras.layers.Embedding(20, 4, mask_zero=True)(ids_q)
    out = SequenceAttention(scoring, dropout=0.1, seed=1)(e, q)
    out = keras.layers.GRU(3)(out)
    return keras.Model([ids_in, ids_q], out)


def ragged_data():
    rng = np.random.default_rng(1)
    in_len, q_len = [3, 1, 4], [2, 2, 1]
    e = tf.RaggedTensor.from_row_lengths(
        rng.normal(size=(sum(in_len), 3)).astype("float32"), in_len
    )
    q = tf.RaggedTensor.from_row_lengths(rng.normal(size=(sum(q_len), 2)).astype("float32"), q_len)
    return e, q


@pytest.mark.parametrize("scoring", ["bilinear", "dot_dense", "additive", "custom"])
def test_save_and_load_round_trip(tmp_path, scoring):
    if scoring == "dot_dense":
        model = masked_model("dot")
        data = [np.array([[1, 2, 3, 0], [4, 0, 0, 0]]), np.array([[5, 6], [7, 0]])]
    else:
        net = additive_scoring_model(3, 2) if scoring == "custom" else scoring
        model = ragged_model(net)
        data = list(ragged_data())
    before = model(data)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: the layer is registered
    after = loaded(data)
    for a, b in zip(
        tf.nest.flatten(before, expand_composites=True),
        tf.nest.flatten(after, expand_composites=True),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    config = next(x for x in loaded.layers if isinstance(x, SequenceAttention)).get_config()
    original = next(x for x in model.layers if isinstance(x, SequenceAttention)).get_config()
    if isinstance(original["scoring"], dict):
        assert config.pop("scoring")["class_name"] == original.pop("scoring")["class_name"]
    assert config == original


def test_config_round_trip():
    layer = SequenceAttention(
        "additive",
        units=7,
        mask=("causal", 3),
        score_rescaling="dim_sqrt",
        dropout=0.25,
        seed=4,
        name="att",
    )
    clone = SequenceAttention.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.attention_mask == ("causal", 3) and clone.units == 7


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


@pytest.fixture
def policy():
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("scoring", ["dot", "bilinear", "additive"])
def test_mixed_precision_with_huge_scores(policy, name, scoring):
    # Scores of about 2e5 overflow float16 (max 65504) unless the layer scores in float32.
    e = np.full((2, 4, 8), 150.0, "float32")
    e[:, 1] = 160.0
    q = np.full((2, 3, 8), 160.0, "float32")
    in_mask = np.array([[True] * 4, [True, True, False, False]])
    reference_layer = SequenceAttention(scoring)
    reference = reference_layer(e, q, mask=[in_mask, None], return_attention_scores=True)
    policy(name)
    layer = SequenceAttention(scoring)
    layer.build(e.shape, q.shape)
    layer.set_weights(reference_layer.get_weights())
    with tf.GradientTape() as tape:
        out, w = layer(e, q, mask=[in_mask, None], return_attention_scores=True)
        loss = tf.reduce_sum(tf.cast(out, "float32"))
    assert out.dtype == name.split("_")[1] and w.dtype == out.dtype
    grads = tape.gradient(loss, layer.trainable_variables)
    assert np.all(np.isfinite(np.asarray(tf.cast(out, "float32"))))
    assert all(np.all(np.isfinite(g)) for g in grads)
    tolerance = 1e-2 if name == "mixed_float16" else 4e-2
    np.testing.assert_allclose(np.asarray(tf.cast(w, "float32")), reference[1], atol=tolerance)


def test_jit_compile_on_dense_masked_inputs():
    rng = np.random.default_rng(3)
    e = rng.normal(size=(4, 6, 5)).astype("float32")
    q = rng.normal(size=(4, 3, 5)).astype("float32")
    in_mask = np.arange(6)[None, :] < np.array([6, 3, 1, 0])[:, None]
    layer = SequenceAttention("additive", mask="causal", score_rescaling="length_sqrt")
    eager = layer(e, q, mask=[in_mask, None])

    @tf.function(jit_compile=True)
    def compiled(e, q, m):
        with tf.GradientTape() as tape:
            tape.watch(e)
            out = layer(e, q, mask=[m, None])
            loss = tf.reduce_sum(out)
        return out, tape.gradient(loss, e)

    out, grad = compiled(tf.constant(e), tf.constant(q), tf.constant(in_mask))
    np.testing.assert_allclose(out, eager, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(grad))

    # And through model.fit(jit_compile=True).
    ids = keras.Input((6, 5))
    qs = keras.Input((3, 5))
    pooled = keras.layers.Flatten()(SequenceAttention("bilinear")(ids, qs))
    model = keras.Model([ids, qs], keras.layers.Dense(1)(pooled))
    model.compile("adam", "mse", jit_compile=True)
    history = model.fit([e, q], np.ones((4, 1)), epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
