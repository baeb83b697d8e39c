"""SequenceAttention as a Keras citizen: scoring net, symbolic use, saving, fit, precision.

On every backend; the ragged counterparts are in test_layer_ragged.py (TensorFlow only).
"""

import keras
import numpy as np
import pytest
from backend_tools import BACKEND, jit_compiled, to_numpy, value_and_grads

from keras_seqattn import SequenceAttention

pytestmark = pytest.mark.all_backends


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
    out, w = (to_numpy(x) for x in layer(e, q, return_attention_scores=True))
    net = layer.scoring_net
    assert isinstance(net, keras.Model)
    assert net.output_shape in ((None, 1), (None,))
    shared = {id(v) for v in layer.weights}
    assert all(id(v) in shared for v in net.weights)
    for j in range(4):
        scores = net({"input": e[0], "query": np.repeat(q[0, j : j + 1], 3, axis=0)})
        scores = to_numpy(scores).reshape(-1)
        by_hand = np.exp(scores - scores.max())
        by_hand /= by_hand.sum()
        np.testing.assert_allclose(by_hand, w[0, j], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(by_hand @ e[0], out[0, j], rtol=1e-5)


def test_scoring_net_before_build_is_a_clear_error():
    with pytest.raises(ValueError, match="built"):
        SequenceAttention().scoring_net  # noqa: B018


def test_symbolic_shapes():
    inputs = keras.Input((None, 5))
    query = keras.Input((7, 3))
    out, w = SequenceAttention()(inputs, query, return_attention_scores=True)
    assert out.shape == (None, 7, 5) and w.shape == (None, 7, None)
    assert not out.ragged
    layer = SequenceAttention()
    assert layer.compute_output_shape((2, 4, 5), (2, 3, 6)) == (2, 3, 5)


def masked_model(scoring):
    ids_in = keras.Input((None,), dtype="int32")
    ids_q = keras.Input((None,), dtype="int32")
    e = keras.layers.Embedding(20, 4, mask_zero=True)(ids_in)
    q = keras.layers.Embedding(20, 4, mask_zero=True)(ids_q)
    out = SequenceAttention(scoring, dropout=0.1, seed=1)(e, q)
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(out))
    return keras.Model([ids_in, ids_q], out)


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


def masked_data():
    return [np.array([[1, 2, 3, 0], [4, 0, 0, 0]]), np.array([[5, 6], [7, 0]])]


@pytest.mark.parametrize("scoring", ["bilinear", "dot", "additive", "custom"])
def test_save_and_load_round_trip(tmp_path, scoring):
    model = masked_model(additive_scoring_model(4, 4) if scoring == "custom" else scoring)
    data = masked_data()
    before = to_numpy(model(data))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: the layer is registered
    np.testing.assert_array_equal(to_numpy(loaded(data)), before)
    config = next(x for x in loaded.layers if isinstance(x, SequenceAttention)).get_config()
    original = next(x for x in model.layers if isinstance(x, SequenceAttention)).get_config()
    if isinstance(original["scoring"], dict):
        assert config.pop("scoring")["class_name"] == original.pop("scoring")["class_name"]
    assert config == original


class SelfAttentionClassifier(keras.Model):
    """A subclassed model: Keras builds its layers from the first batch (symbolically)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embedding = keras.layers.Embedding(20, 8, mask_zero=True)
        self.attention = SequenceAttention(
            "additive", mask=("causal", 3), score_rescaling="length_sqrt", dropout=0.1, seed=2
        )
        self.head = keras.layers.Dense(3)

    def call(self, ids):
        x = self.embedding(ids)
        return self.head(keras.ops.mean(self.attention(x, x), axis=1))


@pytest.mark.parametrize("subclassed", [False, True])
def test_fit_evaluate_predict_on_padded_masked_batches(subclassed):
    # NOTES §5: on PyTorch, fit() of such a model stopped with "Unable to automatically
    # build the model" (the layer's dtype check failed on torch dtypes).
    rng = np.random.default_rng(4)
    ids = rng.integers(1, 20, size=(32, 9))
    for row, length in enumerate(rng.integers(1, 10, size=32)):  # pooling needs one
        ids[row, length:] = 0
    labels = rng.integers(0, 3, size=32)
    if subclassed:
        model = SelfAttentionClassifier()
    else:
        tokens = keras.Input((None,), dtype="int32")
        x = keras.layers.Embedding(20, 8, mask_zero=True)(tokens)
        x = SequenceAttention("bilinear", mask="causal", dropout=0.1, seed=2)(x, x)
        pooled = keras.layers.GlobalAveragePooling1D()(x)  # mask-aware: skips padding
        model = keras.Model(tokens, keras.layers.Dense(3)(pooled))
    model.compile(
        keras.optimizers.Adam(0.02),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model(ids[:2])  # built (for a subclassed model, by this call), to read the weights
    attention = next(x for x in model.layers if isinstance(x, SequenceAttention))
    before = [to_numpy(v) for v in attention.trainable_variables]
    history = model.fit(ids, labels, batch_size=8, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    after = [to_numpy(v) for v in attention.trainable_variables]
    assert all(
        np.all(np.isfinite(a)) and not np.allclose(a, b) for a, b in zip(after, before, strict=True)
    )
    loss, accuracy = model.evaluate(ids, labels, verbose=0)
    assert np.isfinite(loss) and 0 <= accuracy <= 1
    assert model.predict(ids, batch_size=8, verbose=0).shape == (32, 3)


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
    reference = to_numpy(
        reference_layer(e, q, mask=[in_mask, None], return_attention_scores=True)[1]
    )
    policy(name)
    layer = SequenceAttention(scoring)
    layer.build(e.shape, q.shape)
    layer.set_weights(reference_layer.get_weights())
    out, w = layer(e, q, mask=[in_mask, None], return_attention_scores=True)
    assert keras.backend.standardize_dtype(out.dtype) == name.split("_")[1]
    assert keras.backend.standardize_dtype(w.dtype) == name.split("_")[1]

    def loss(e_value, q_value):
        out = layer(e_value, q_value, mask=[in_mask, None])
        return keras.ops.sum(keras.ops.cast(out, "float32"))

    _, by_inputs, by_weights = value_and_grads(loss, [e, q], layer.trainable_variables)
    assert np.all(np.isfinite(to_numpy(keras.ops.cast(out, "float32"))))
    assert all(np.all(np.isfinite(g)) for g in by_inputs + by_weights)
    tolerance = 1e-2 if name == "mixed_float16" else 4e-2
    np.testing.assert_allclose(to_numpy(keras.ops.cast(w, "float32")), reference, atol=tolerance)


TORCH_COMPILE_CASES = {
    "dot": ({"scoring": "dot"}, {}),
    "bilinear, causal": ({"scoring": "bilinear", "mask": "causal"}, {}),
    "additive": ({"scoring": "additive"}, {}),
    "dot, window, length_sqrt": (
        {"scoring": "dot", "mask": ("causal", 2), "score_rescaling": "length_sqrt"},
        {},
    ),
    "bilinear, dim_sqrt": ({"scoring": "bilinear", "score_rescaling": "dim_sqrt"}, {}),
    "dot, weights asked for": ({"scoring": "dot"}, {"return_attention_scores": True}),
    # The explicit path (weights asked for) with the options the fused path takes above.
    "dot, window, length_sqrt, weights asked for": (
        {"scoring": "dot", "mask": ("causal", 2), "score_rescaling": "length_sqrt"},
        {"return_attention_scores": True},
    ),
    "multi-head, value": ({"scoring": "dot", "multi_head": True}, {"value": "heads"}),
}


@pytest.mark.skipif(BACKEND != "torch", reason="torch.compile is PyTorch's jit_compile")
@pytest.mark.parametrize("case", list(TORCH_COMPILE_CASES))
def test_layer_compiles_into_one_torch_graph_with_eager_results(case):
    # Keras's jit_compile=True on PyTorch is torch.compile of the training step; a graph
    # break in the layer would split it and run the pieces eagerly. fullgraph=True makes
    # any break an error. "aot_eager" traces as torch.compile does (Dynamo, then
    # AOTAutograd for the backward) and runs the captured graphs without generating code;
    # fit(jit_compile=True) with the default code generator (inductor) was checked by
    # hand (README, Backends): about 40 s of compiling on 2 CPU cores for a tiny model.
    import torch

    options, call = TORCH_COMPILE_CASES[case]
    rng = np.random.default_rng(5)
    heads = (2,) if options.get("multi_head") else ()  # (batch, time, heads, size)
    e = rng.normal(size=(3, 6, *heads, 4)).astype("float32")
    q = rng.normal(size=(3, 5, *heads, 4)).astype("float32")
    if call.get("value") == "heads":
        call = {"value": torch.as_tensor(rng.normal(size=(3, 6, 2, 3)).astype("float32"))}
    in_mask = torch.as_tensor(np.arange(6)[None, :] < np.array([6, 3, 0])[:, None])
    q_mask = torch.as_tensor(np.arange(5)[None, :] < np.array([5, 5, 2])[:, None])
    layer = SequenceAttention(**options)

    def loss(e, q):
        result = layer(e, q, mask=[in_mask, q_mask], **call)
        return sum(torch.sum(x**2) for x in (result if isinstance(result, tuple) else [result]))

    loss(torch.as_tensor(e), torch.as_tensor(q))  # builds the layer
    torch._dynamo.reset()
    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    results = {}
    for name, fn in (("eager", loss), ("compiled", compiled)):
        a, b = (torch.tensor(x, requires_grad=True) for x in (e, q))
        value = fn(a, b)
        value.backward()
        results[name] = [to_numpy(x) for x in (value.detach(), a.grad, b.grad)]
    for got, want in zip(results["compiled"], results["eager"], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(BACKEND == "torch", reason="jit_compile is XLA's: TensorFlow and JAX")
def test_jit_compile_on_dense_masked_inputs():
    rng = np.random.default_rng(3)
    e = rng.normal(size=(4, 6, 5)).astype("float32")
    q = rng.normal(size=(4, 3, 5)).astype("float32")
    in_mask = np.arange(6)[None, :] < np.array([6, 3, 1, 0])[:, None]
    layer = SequenceAttention("additive", mask="causal", score_rescaling="length_sqrt")
    eager = to_numpy(layer(e, q, mask=[in_mask, None]))
    compiled = jit_compiled(lambda e, q, m: layer(e, q, mask=[m, None]))
    np.testing.assert_allclose(to_numpy(compiled(e, q, in_mask)), eager, rtol=1e-5, atol=1e-6)
    _, (grad_e, _), _ = value_and_grads(
        lambda e, q: keras.ops.sum(layer(e, q, mask=[in_mask, None])), [e, q]
    )
    assert np.all(np.isfinite(grad_e))

    # And through model.fit(jit_compile=True).
    ids = keras.Input((6, 5))
    qs = keras.Input((3, 5))
    pooled = keras.layers.Flatten()(SequenceAttention("bilinear")(ids, qs))
    model = keras.Model([ids, qs], keras.layers.Dense(1)(pooled))
    model.compile("adam", "mse", jit_compile=True)
    history = model.fit([e, q], np.ones((4, 1)), epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
