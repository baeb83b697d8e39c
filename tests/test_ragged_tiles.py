"""Ragged batches attended in tiles of real pairs equal the padded, masked batch.

TensorFlow only (ragged tensors are TensorFlow's). Each case runs the tiled path with a
forced tile shape, so that every example spans several tiles, and the layer's own choice
between tiles and padding (`ragged._attend_in_tiles_or_padded`), on a batch that takes
each branch, eagerly and in a `tf.function` (where the choice is a `tf.cond`).
"""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from keras_seqattn import SequenceAttention, ragged_tiles

# Mostly short examples, two long ones, an empty input and an empty query.
INPUT_LENGTHS = [3, 70, 0, 5, 40, 1, 2, 37, 2, 4]
QUERY_LENGTHS = [45, 2, 4, 0, 33, 1, 65, 2, 3, 3]


def ragged_batch(seed, d1=6, d2=6):
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((sum(INPUT_LENGTHS), d1)).astype("float32")
    q = rng.standard_normal((sum(QUERY_LENGTHS), d2)).astype("float32")
    return e, q


def flat_outputs(layer, e_values, q_values, lengths, ragged):
    """The layer's outputs of the real queries, flat: on the ragged batch, or on the same
    batch padded, with masks."""
    input_lengths, query_lengths = lengths
    e = tf.RaggedTensor.from_row_lengths(e_values, input_lengths)
    q = tf.RaggedTensor.from_row_lengths(q_values, query_lengths)
    if ragged:
        return layer(e, q).flat_values
    pe, pq = e.to_tensor(), q.to_tensor()
    masks = [
        tf.sequence_mask(input_lengths, tf.shape(pe)[1]),
        tf.sequence_mask(query_lengths, tf.shape(pq)[1]),
    ]
    dense = layer(pe, pq, mask=masks)
    return tf.RaggedTensor.from_tensor(dense, lengths=query_lengths).flat_values


def outputs_and_grads(layer, e_values, q_values, ragged, sizes=None):
    """Outputs (flat, per real query) and gradients w.r.t. inputs, query and weights."""
    e_values, q_values = tf.constant(e_values), tf.constant(q_values)
    with tf.GradientTape() as tape:
        tape.watch([e_values, q_values])
        if ragged and sizes is not None:
            e = tf.RaggedTensor.from_row_lengths(e_values, INPUT_LENGTHS)
            q = tf.RaggedTensor.from_row_lengths(q_values, QUERY_LENGTHS)
            spec = ragged_tiles.TileSpec(**layer._tile_options(training=False))
            out = ragged_tiles.attend_in_tiles(spec, e, q, sizes=sizes).flat_values
        else:
            lengths = (INPUT_LENGTHS, QUERY_LENGTHS)
            out = flat_outputs(layer, e_values, q_values, lengths, ragged)
        weights = np.random.default_rng(5).standard_normal(out.shape).astype("float32")
        loss = tf.reduce_sum(out * weights)
    grads = tape.gradient(loss, [e_values, q_values, *layer.trainable_variables])
    return [out.numpy()] + [tf.convert_to_tensor(g).numpy() for g in grads]


def custom_net(d1, d2):
    import keras

    e, q = keras.Input((d1,), name="input"), keras.Input((d2,), name="query")
    hidden = keras.layers.Dense(5, activation="tanh")(keras.layers.Concatenate()([e, q]))
    return keras.Model({"input": e, "query": q}, keras.layers.Dense(1)(hidden))


OPTIONS = list(
    itertools.product(
        ["dot", "bilinear", "additive", "custom"],
        [None, "causal", ("causal", 3), ("causal", 40)],
        [None, "length_sqrt", "dim_sqrt"],
    )
)


# Every option with small tiles (each long example spans many); a few with the layer's own.
CASES = [(*option, (4, 8)) for option in OPTIONS] + [
    ("bilinear", None, None, None),
    ("additive", ("causal", 40), "length_sqrt", None),
    ("dot", "causal", "dim_sqrt", (32, 32)),
]


@pytest.mark.parametrize(("scoring", "mask", "rescaling", "sizes"), CASES)
def test_tiled_ragged_attention_equals_padded_masked_attention(scoring, mask, rescaling, sizes):
    e, q = ragged_batch(seed=len(str((scoring, mask, rescaling))))
    net = custom_net(6, 6) if scoring == "custom" else scoring
    layer = SequenceAttention(net, mask=mask, score_rescaling=rescaling)
    layer.build((None, None, 6), (None, None, 6))
    tiled = outputs_and_grads(layer, e, q, ragged=True, sizes=sizes)
    padded = outputs_and_grads(layer, e, q, ragged=False)
    names = ["outputs", "d inputs", "d query"] + [v.name for v in layer.trainable_variables]
    for name, got, want in zip(names, tiled, padded, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5, err_msg=name)


def test_tiles_are_taken_on_a_skewed_batch_and_padding_on_even_or_short_lengths():
    skewed = tf.constant([8, 20, 30, 128] * 8, tf.int64)
    even = tf.constant([120, 128, 100, 110], tf.int64)
    short = tf.constant([8, 20, 30, 32] * 8, tf.int64)
    assert bool(ragged_tiles.worth_tiling(skewed, skewed))
    assert not bool(ragged_tiles.worth_tiling(even, even[::-1]))
    assert not bool(ragged_tiles.worth_tiling(short, short))


# The layer's own choice, on a batch of each kind: a few long examples among short ones
# (tiles) and lengths all about the same (padded), with one empty input on each side.
BRANCH_LENGTHS = {
    "tiled": ([2, 70, 0, 5, 3, 1, 66, 4, 2, 3], [3, 64, 4, 0, 2, 1, 70, 2, 3, 3]),
    "padded": ([30, 28, 0, 31, 25, 29], [27, 31, 30, 0, 29, 26]),
}


def layer_outputs_and_grads(layer, lengths, ragged, compiled, seed=0):
    """Outputs (flat, real queries) and gradients w.r.t. inputs, query and weights, of the
    layer on a ragged batch, or on the same batch padded with masks."""
    input_lengths, query_lengths = lengths
    rng = np.random.default_rng(seed)
    e_values = tf.constant(rng.standard_normal((sum(input_lengths), 6)).astype("float32"))
    q_values = tf.constant(rng.standard_normal((sum(query_lengths), 6)).astype("float32"))
    upstream = rng.standard_normal((sum(query_lengths), 6)).astype("float32")

    def step(e_values, q_values):
        with tf.GradientTape() as tape:
            tape.watch([e_values, q_values])
            out = flat_outputs(layer, e_values, q_values, lengths, ragged)
            loss = tf.reduce_sum(out * upstream)
        grads = tape.gradient(loss, [e_values, q_values, *layer.trainable_variables])
        return [out] + [tf.convert_to_tensor(g) for g in grads]

    results = (tf.function(step) if compiled else step)(e_values, q_values)
    return [r.numpy() for r in results]


@pytest.mark.parametrize("branch", ["tiled", "padded"])
@pytest.mark.parametrize(
    ("scoring", "mask", "rescaling"),
    [
        ("dot", None, "length_sqrt"),
        ("dot", "causal", "dim_sqrt"),
        ("bilinear", ("causal", 5), "length_sqrt"),
        ("bilinear", None, None),
        ("additive", "causal", "length_sqrt"),
        ("additive", ("causal", 40), None),
    ],
)
def test_ragged_batch_equals_padded_masked_batch_on_the_branch_the_layer_takes(
    branch, scoring, mask, rescaling
):
    lengths = BRANCH_LENGTHS[branch]
    took_tiles = ragged_tiles.worth_tiling(*(tf.constant(x, tf.int64) for x in lengths))
    assert bool(took_tiles) == (branch == "tiled")
    layer = SequenceAttention(scoring, mask=mask, score_rescaling=rescaling)
    layer.build((None, None, 6), (None, None, 6))
    want = layer_outputs_and_grads(layer, lengths, ragged=False, compiled=False)
    names = ["outputs", "d inputs", "d query"] + [v.name for v in layer.trainable_variables]
    for compiled in (False, True):
        got = layer_outputs_and_grads(layer, lengths, ragged=True, compiled=compiled)
        for name, g, w in zip(names, got, want, strict=True):
            np.testing.assert_allclose(
                g, w, rtol=1e-4, atol=2e-5, err_msg=f"{name}, compiled={compiled}"
            )


def test_ragged_call_in_a_compiled_function_equals_eager_and_takes_the_padded_path_for_weights():
    e, q = ragged_batch(seed=3)
    re = tf.RaggedTensor.from_row_lengths(e, INPUT_LENGTHS)
    rq = tf.RaggedTensor.from_row_lengths(q, QUERY_LENGTHS)
    layer = SequenceAttention("bilinear", mask="causal")
    eager = layer(re, rq)
    compiled = tf.function(lambda a, b: layer(a, b))(re, rq)
    np.testing.assert_allclose(compiled.flat_values, eager.flat_values, rtol=1e-5, atol=1e-6)
    with_weights, weights = layer(re, rq, return_attention_scores=True)
    np.testing.assert_allclose(with_weights.flat_values, eager.flat_values, rtol=1e-5, atol=1e-6)
    assert weights.to_tensor().shape == (len(QUERY_LENGTHS), max(QUERY_LENGTHS), 70)
