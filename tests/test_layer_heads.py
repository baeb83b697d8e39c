"""SequenceAttention(multi_head=True): Wolfram's "MultiHead" -> True, heads on axis 2.

Checked against the NumPy reference (one head at a time), against h single-head layers
holding the per-head weight slices, and against the attention inside Keras's own
`MultiHeadAttention`. Tests without ragged tensors run on every backend.
"""

import keras
import numpy as np
import pytest
from keras import ops
from reference import attend_batch, score_fns_for

from keras_seqattn import SequenceAttention

RNG = np.random.default_rng(17)
BATCH, N, M, H, D, DV = 3, 5, 4, 2, 3, 4
INPUT_LENGTHS = [5, 2, 0]  # the last example has no input vectors at all
QUERY_LENGTHS = [4, 3, 1]
MASK_OPTIONS = [None, "causal", ("causal", 2)]
RESCALINGS = [None, "length_sqrt", "dim_sqrt"]


def head_batch(d1=D, d2=D, dv=DV):
    e = RNG.normal(size=(BATCH, N, H, d1)).astype("float32")
    q = RNG.normal(size=(BATCH, M, H, d2)).astype("float32")
    v = RNG.normal(size=(BATCH, N, H, dv)).astype("float32")
    for b in range(BATCH):  # garbage in the padding must not matter
        e[b, INPUT_LENGTHS[b] :] = 1e3
        v[b, INPUT_LENGTHS[b] :] = 1e3
        q[b, QUERY_LENGTHS[b] :] = -1e3
    in_mask = np.arange(N)[None, :] < np.array(INPUT_LENGTHS)[:, None]
    q_mask = np.arange(M)[None, :] < np.array(QUERY_LENGTHS)[:, None]
    return e, q, v, in_mask, q_mask


def mask_options(mask):
    return {"causal": mask is not None, "window": mask[1] if isinstance(mask, tuple) else None}


class NegativeDistance(keras.layers.Layer):
    """A custom scoring net without weights, scoring vector pairs."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.batches = []

    def call(self, pair):
        self.batches.append(tuple(pair["input"].shape))
        return -ops.sum(ops.square(pair["input"] - pair["query"]), axis=-1, keepdims=True)


def negative_distance(e, q):
    return -float(np.sum((e - q) ** 2))


@pytest.mark.all_backends
@pytest.mark.parametrize("scoring", ["bilinear", "dot", "additive", "custom"])
@pytest.mark.parametrize("mask", MASK_OPTIONS)
@pytest.mark.parametrize("rescaling", RESCALINGS)
@pytest.mark.parametrize("with_value", [False, True])
def test_padded_heads_match_reference(scoring, mask, rescaling, with_value):
    e, q, v, in_mask, q_mask = head_batch()
    net = NegativeDistance() if scoring == "custom" else scoring
    layer = SequenceAttention(net, mask=mask, score_rescaling=rescaling, multi_head=True)
    value = v if with_value else None
    out, w = layer(e, q, value, mask=[in_mask, q_mask], return_attention_scores=True)
    scores = [negative_distance] * H if scoring == "custom" else score_fns_for(layer, H)
    ref_out, ref_w = attend_batch(
        e,
        q,
        scores,
        INPUT_LENGTHS,
        QUERY_LENGTHS,
        value=value,
        rescaling=rescaling,
        **mask_options(mask),
    )
    assert tuple(out.shape) == (BATCH, M, H, DV if with_value else D)
    assert tuple(w.shape) == (BATCH, H, M, N)
    np.testing.assert_allclose(ops.convert_to_numpy(w), ref_w, atol=2e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(out), ref_out, rtol=1e-5, atol=2e-5)
    # Outside an example's length the weights are exact zeros, in every head.
    outside = ~(q_mask[:, None, :, None] & in_mask[:, None, None, :])
    assert np.all(ops.convert_to_numpy(w)[np.broadcast_to(outside, w.shape)] == 0.0)


@pytest.mark.all_backends
def test_custom_net_is_shared_by_all_heads_and_called_once_on_all_pairs():
    e, q, v, in_mask, q_mask = head_batch()
    net = NegativeDistance()
    layer = SequenceAttention(net, multi_head=True)
    layer(e, q, v, mask=[in_mask, q_mask])
    net.batches.clear()
    layer(e, q, v, mask=[in_mask, q_mask])
    # One call, one flat batch of every (input, query) pair of every head of every example.
    assert net.batches == [(BATCH * H * M * N, D)]


@pytest.mark.all_backends
@pytest.mark.parametrize("scoring", ["dot", "bilinear", "additive"])
def test_multi_head_equals_single_head_layers_on_the_kernel_slices(scoring):
    e, q, v, in_mask, q_mask = head_batch(d2=D if scoring == "dot" else 2)
    options = {"mask": ("causal", 3), "score_rescaling": "length_sqrt"}
    layer = SequenceAttention(scoring, multi_head=True, **options)
    out, w = layer(e, q, v, mask=[in_mask, q_mask], return_attention_scores=True)
    stacked = [ops.convert_to_numpy(x) for x in layer.get_weights()]
    assert all(x.shape[0] == H for x in stacked)
    for k in range(H):
        single = SequenceAttention(scoring, **options)
        single.build(e[:, :, k].shape, q[:, :, k].shape)
        single.set_weights([x[k] for x in stacked])
        out_k, w_k = single(
            e[:, :, k], q[:, :, k], v[:, :, k], mask=[in_mask, q_mask], return_attention_scores=True
        )
        w_k, out_k = ops.convert_to_numpy(w_k), ops.convert_to_numpy(out_k)
        np.testing.assert_allclose(ops.convert_to_numpy(w)[:, k], w_k, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(ops.convert_to_numpy(out)[:, :, k], out_k, rtol=1e-5, atol=1e-6)


@pytest.mark.all_backends
@pytest.mark.parametrize("scoring", ["bilinear", "additive"])
def test_heads_start_with_different_weights(scoring):
    e, q, v, _, _ = head_batch()
    layer = SequenceAttention(scoring, multi_head=True)
    layer.build(e.shape, q.shape)
    for weight in layer.get_weights():
        weight = ops.convert_to_numpy(weight)
        assert not np.allclose(weight[0], weight[1])


@pytest.mark.all_backends
@pytest.mark.parametrize("masked", [False, True])
def test_dot_dim_sqrt_equals_the_attention_inside_multi_head_attention(masked):
    heads, key_dim, value_dim, d_model = 3, 4, 5, 6
    query = RNG.normal(size=(2, 4, d_model)).astype("float32")
    source = RNG.normal(size=(2, 7, d_model)).astype("float32")
    mha = keras.layers.MultiHeadAttention(heads, key_dim, value_dim=value_dim)
    key_mask = np.arange(7)[None, :] < np.array([[7], [3]])
    attention_mask = np.broadcast_to(key_mask[:, None, :], (2, 4, 7)) if masked else None
    theirs, their_w = mha(
        query, source, attention_mask=attention_mask, return_attention_scores=True
    )
    # The same projections, by the MultiHeadAttention's own EinsumDense layers.
    q = mha._query_dense(query)  # (batch, m, h, key_dim)
    k = mha._key_dense(source)
    v = mha._value_dense(source)
    layer = SequenceAttention("dot", multi_head=True, score_rescaling="dim_sqrt")
    ours, our_w = layer(
        k, q, v, mask=[key_mask, None] if masked else None, return_attention_scores=True
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(our_w), ops.convert_to_numpy(their_w), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(mha._output_dense(ours)),
        ops.convert_to_numpy(theirs),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.all_backends
@pytest.mark.parametrize("scoring", ["bilinear", "dot", "additive", "custom"])
def test_scoring_net_with_heads_reproduces_one_query_row_of_every_head(scoring):
    e, q, v, _, _ = head_batch()
    net = NegativeDistance() if scoring == "custom" else scoring
    layer = SequenceAttention(net, multi_head=True)
    out, w = layer(e[:1], q[:1], v[:1], return_attention_scores=True)
    scoring_net = layer.scoring_net
    assert scoring_net.output_shape == (None, H, 1)
    assert {id(x) for x in scoring_net.weights} <= {id(x) for x in layer.weights}
    j = 2
    scores = scoring_net({"input": e[0], "query": np.repeat(q[0, j : j + 1], N, axis=0)})
    scores = ops.convert_to_numpy(scores)[:, :, 0]  # (n, h)
    by_hand = np.exp(scores - scores.max(axis=0))
    by_hand /= by_hand.sum(axis=0)
    np.testing.assert_allclose(by_hand.T, ops.convert_to_numpy(w)[0, :, j], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        # atol: float32 sums of O(1) products; a value near 0 has no relative precision.
        np.einsum("nh,nhv->hv", by_hand, v[0]),
        ops.convert_to_numpy(out)[0, j],
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.all_backends
def test_empty_examples_give_zeros_in_every_head():
    e, q, v, in_mask, q_mask = head_batch()
    layer = SequenceAttention("bilinear", multi_head=True, mask="causal")
    out, w = layer(e, q, v, mask=[in_mask, q_mask], return_attention_scores=True)
    out, w = ops.convert_to_numpy(out), ops.convert_to_numpy(w)
    assert np.all(np.isfinite(out)) and np.all(out[2] == 0.0) and np.all(w[2] == 0.0)


@pytest.mark.all_backends
def test_symbolic_shapes_with_heads():
    inputs = keras.Input((None, H, 5))
    query = keras.Input((7, H, 3))
    value = keras.Input((None, H, 6))
    layer = SequenceAttention(multi_head=True)
    out, w = layer(inputs, query, value, return_attention_scores=True)
    assert out.shape == (None, 7, H, 6) and w.shape == (None, H, 7, None)
    out = SequenceAttention(multi_head=True)(inputs, query)
    assert out.shape == (None, 7, H, 5)
    assert layer.compute_output_shape((2, 4, H, 5), (2, 3, H, 6)) == (2, 3, H, 5)


@pytest.mark.all_backends
@pytest.mark.parametrize(
    "shapes, multi_head, pattern",
    [
        (
            [(2, 5, 2, 3), (2, 4, 3, 3), None],
            True,
            r"same known head count .*`inputs`, `query`.*inputs 2, query 3",
        ),
        (
            [(2, 5, 2, 3), (2, 4, 2, 3), (2, 5, 4, 3)],
            True,
            r"same known head count.*`value`.*value 4",
        ),
        ([(2, 5, 3), (2, 4, 2, 3), None], True, r"`inputs` must have rank 4, \(batch, time, "),
        ([(2, 5, 2, 3), (2, 4, 2, 3), (2, 5, 3)], True, r"`value` must have rank 4.*rank 3"),
        ([(2, 5, 2, 3), (2, 4, 3), None], False, r"`inputs` must have rank 3.*multi_head=True"),
        ([(2, 5, 2, 3), (2, 4, 2, 3), (2, 6, 2, 3)], True, r"`value` must have the batch size"),
    ],
)
def test_bad_head_shapes_are_named(shapes, multi_head, pattern):
    arrays = [None if s is None else np.zeros(s, "float32") for s in shapes]
    with pytest.raises(ValueError, match=pattern):
        SequenceAttention("dot", multi_head=multi_head)(*arrays)


@pytest.mark.all_backends
def test_multi_head_must_be_a_bool():
    with pytest.raises(TypeError, match=r"`multi_head` must be True or False; got 'yes'"):
        SequenceAttention(multi_head="yes")


@pytest.mark.all_backends
def test_config_and_save_round_trip_with_heads(tmp_path):
    inputs = keras.Input((None, H, 3))
    query = keras.Input((None, H, 2))
    value = keras.Input((None, H, 4))
    out, w = SequenceAttention(
        "additive", units=5, mask="causal", multi_head=True, name="attention"
    )(inputs, query, value, return_attention_scores=True)
    model = keras.Model([inputs, query, value], [out, w])
    e, q, v, in_mask, q_mask = head_batch(d1=3, d2=2)
    before = model([e, q, v])
    path = tmp_path / "heads.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    after = loaded([e, q, v])
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
    config = loaded.get_layer("attention").get_config()
    assert config["multi_head"] is True
    assert config == model.get_layer("attention").get_config()


# ---------------------------------------------------------------------------------------
# TensorFlow only: ragged heads, gradients, XLA and mixed precision
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scoring", ["bilinear", "dot", "additive"])
@pytest.mark.parametrize("mask", MASK_OPTIONS)
@pytest.mark.parametrize("with_value", [False, True])
def test_ragged_heads_match_reference(scoring, mask, with_value):
    import tensorflow as tf

    e, q, v, _, _ = head_batch()
    re = tf.RaggedTensor.from_tensor(e, lengths=INPUT_LENGTHS)
    rq = tf.RaggedTensor.from_tensor(q, lengths=QUERY_LENGTHS)
    rv = tf.RaggedTensor.from_tensor(v, lengths=INPUT_LENGTHS) if with_value else None
    layer = SequenceAttention(scoring, mask=mask, score_rescaling="length_sqrt", multi_head=True)
    out, w = layer(re, rq, rv, return_attention_scores=True)
    assert isinstance(out, tf.RaggedTensor) and isinstance(w, tf.RaggedTensor)
    assert out.shape.as_list() == [BATCH, None, H, DV if with_value else D]
    assert w.shape.as_list()[:3] == [BATCH, H, None]
    ref_out, ref_w = attend_batch(
        e,
        q,
        score_fns_for(layer, H),
        INPUT_LENGTHS,
        QUERY_LENGTHS,
        value=v if with_value else None,
        rescaling="length_sqrt",
        **mask_options(mask),
    )
    assert out.row_lengths().numpy().tolist() == QUERY_LENGTHS
    np.testing.assert_allclose(out.to_tensor(shape=ref_out.shape), ref_out, rtol=1e-5, atol=2e-5)
    for b in range(BATCH):  # each head's query axis has the example's length
        assert w[b].row_lengths().numpy().tolist() == [QUERY_LENGTHS[b]] * H
    np.testing.assert_allclose(w.to_tensor(shape=ref_w.shape), ref_w, atol=2e-6)


def test_symbolic_ragged_heads_and_compiled_model():
    import tensorflow as tf

    inputs = keras.Input((None, H, 3), ragged=True)
    query = keras.Input((None, H, 3), ragged=True)
    value = keras.Input((None, H, 4), ragged=True)
    out, w = SequenceAttention("dot", multi_head=True)(
        inputs, query, value, return_attention_scores=True
    )
    assert out.ragged and w.ragged and out.shape == (None, None, H, 4)
    assert w.shape == (None, H, None, None)
    model = keras.Model([inputs, query, value], [out, w])
    e, q, v, _, _ = head_batch()
    data = [
        tf.RaggedTensor.from_tensor(e, lengths=INPUT_LENGTHS),
        tf.RaggedTensor.from_tensor(q, lengths=QUERY_LENGTHS),
        tf.RaggedTensor.from_tensor(v, lengths=INPUT_LENGTHS),
    ]
    eager = model(data)
    compiled = tf.function(model)(data)
    for a, b in zip(eager, compiled, strict=True):
        np.testing.assert_allclose(a.to_tensor(), b.to_tensor(), rtol=1e-6)


@pytest.mark.parametrize("scoring", ["bilinear", "additive"])
def test_head_gradients_match_finite_differences(scoring):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    e = rng.normal(size=(2, 3, 2, 2))
    q = rng.normal(size=(2, 3, 2, 2))
    v = rng.normal(size=(2, 3, 2, 2))
    in_mask = np.array([[True, True, True], [True, True, False]])
    q_mask = np.array([[True, True, True], [True, False, False]])
    layer = SequenceAttention(
        scoring, mask="causal", score_rescaling="length_sqrt", multi_head=True, dtype="float64"
    )
    layer(e, q, v, mask=[in_mask, q_mask])
    probe = rng.normal(size=(2, 3, 2, 2))

    def loss(e_value, q_value, v_value):
        return tf.reduce_sum(layer(e_value, q_value, v_value, mask=[in_mask, q_mask]) * probe)

    variables = [tf.Variable(x) for x in (e, q, v)]
    with tf.GradientTape() as tape:
        value = loss(*variables)
    grads = tape.gradient(value, [*variables, *layer.trainable_variables])

    def numeric(array, evaluate):
        grad = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            plus, minus = array.copy(), array.copy()
            plus[index] += 1e-6
            minus[index] -= 1e-6
            grad[index] = (evaluate(plus) - evaluate(minus)) / 2e-6
        return grad

    arrays = [e, q, v]
    for position in range(3):

        def with_array(x, position=position):
            args = list(arrays)
            args[position] = x
            return float(loss(*args))

        np.testing.assert_allclose(
            grads[position], numeric(arrays[position], with_array), atol=1e-7
        )
    for variable, analytic in zip(layer.trainable_variables, grads[3:], strict=True):
        original = variable.numpy()

        def with_weight(x, variable=variable):
            variable.assign(x)
            return float(loss(e, q, v))

        expected = numeric(original, with_weight)
        variable.assign(original)
        np.testing.assert_allclose(analytic, expected, atol=1e-7)


def test_ragged_heads_with_an_empty_example_have_finite_gradients():
    import tensorflow as tf

    e, q, v, _, _ = head_batch()
    re = tf.RaggedTensor.from_tensor(e, lengths=INPUT_LENGTHS)
    rq = tf.RaggedTensor.from_tensor(q, lengths=QUERY_LENGTHS)
    rv = tf.RaggedTensor.from_tensor(v, lengths=INPUT_LENGTHS)
    layer = SequenceAttention("additive", multi_head=True, score_rescaling="length_sqrt")
    with tf.GradientTape() as tape:
        out, w = layer(re, rq, rv, return_attention_scores=True)
        loss = tf.reduce_sum(out.flat_values**2) + tf.reduce_sum(w.flat_values)
    grads = tape.gradient(loss, layer.trainable_variables)
    assert all(np.all(np.isfinite(g)) for g in grads)
    assert np.all(out[2].numpy() == 0.0)


@pytest.fixture
def policy():
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_heads_with_huge_scores(policy, name):
    import tensorflow as tf

    e = np.full((2, 4, H, 8), 150.0, "float32")
    e[:, 1] = 160.0
    q = np.full((2, 3, H, 8), 160.0, "float32")
    in_mask = np.array([[True] * 4, [True, True, False, False]])
    reference = SequenceAttention("dot", multi_head=True)(
        e, q, mask=[in_mask, None], return_attention_scores=True
    )
    policy(name)
    out, w = SequenceAttention("dot", multi_head=True)(
        e, q, mask=[in_mask, None], return_attention_scores=True
    )
    assert out.dtype == name.split("_")[1] and w.dtype == out.dtype
    assert np.all(np.isfinite(np.asarray(tf.cast(out, "float32"))))
    np.testing.assert_allclose(np.asarray(tf.cast(w, "float32")), reference[1], atol=1e-2)


def test_jit_compile_with_heads_and_value():
    import tensorflow as tf

    e, q, v, in_mask, q_mask = head_batch()
    layer = SequenceAttention("bilinear", multi_head=True, mask="causal")
    eager = layer(e, q, v, mask=[in_mask, q_mask])
    compiled = tf.function(lambda *a: layer(a[0], a[1], a[2], mask=[a[3], a[4]]), jit_compile=True)
    out = compiled(*(tf.constant(x) for x in (e, q, v, in_mask, q_mask)))
    np.testing.assert_allclose(out, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("heads", [False, True])
def test_skewed_ragged_batch_with_values_split_in_groups_equals_padded(heads):
    # Mostly short examples and one long one: the ragged path attends in two groups
    # (keras_seqattn.ragged); with values and heads, the same numbers as padded and masked.
    import tensorflow as tf

    rng = np.random.default_rng(11)
    in_len = [2, 3, 1, 2, 0, 3, 24]
    q_len = [1, 2, 2, 3, 1, 2, 20]
    head = (H,) if heads else ()
    e = rng.normal(size=(7, 24, *head, 4)).astype("float32")
    v = rng.normal(size=(7, 24, *head, 5)).astype("float32")
    q = rng.normal(size=(7, 20, *head, 4)).astype("float32")
    in_mask = np.arange(24)[None, :] < np.array(in_len)[:, None]
    q_mask = np.arange(20)[None, :] < np.array(q_len)[:, None]
    re, rv = (tf.RaggedTensor.from_tensor(x, lengths=in_len) for x in (e, v))
    rq = tf.RaggedTensor.from_tensor(q, lengths=q_len)
    layer = SequenceAttention("bilinear", mask="causal", multi_head=heads)
    dense_out, dense_w = layer(e, q, v, mask=[in_mask, q_mask], return_attention_scores=True)
    for run in (layer, tf.function(layer)):
        out, w = run(re, rq, rv, return_attention_scores=True)
        assert out.row_lengths().numpy().tolist() == q_len
        np.testing.assert_allclose(
            out.to_tensor(shape=dense_out.shape), dense_out, rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(w.to_tensor(shape=dense_w.shape), dense_w, atol=1e-6)
