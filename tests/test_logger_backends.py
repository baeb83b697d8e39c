"""AttentionLogger's probe pass on TensorFlow, JAX and PyTorch: every Keras attention layer.

One two-input model holds every built-in kind the logger reads (MultiHeadAttention as
self-attention, Attention, AdditiveAttention, GroupQueryAttention and SequenceAttention
across the two sequences), plus a layer of the user's own found through
`return_attention_scores` and one read through a registered `AttentionAdapter`. It trains
with the logger (labels per model input) and is read back through the plugin's routes.
The same file runs on each backend (`make test`).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_seqattn import (
    AttentionAdapter,
    SequenceAttention,
    attention_probe,
    register_attention_adapter,
)
from keras_seqattn.attention_logger import AttentionLogger, attention_statistics
from keras_seqattn.attention_probe import find_attention_layers
from tests.logger_routes import Routes

pytestmark = pytest.mark.all_backends

VOCAB = list("_abcdefghijklmnopqrstuvwxyz")  # id 0 is padding
EXAMPLES, BATCH, PAD = 8, 4, 7


@keras.saving.register_keras_serializable(package="test_logger_backends")
class DotSelfAttention(keras.layers.Layer):
    """A user's own layer: plain dot-product self-attention that can return its weights."""

    def call(self, x, mask=None, return_attention_scores=False):
        scores = ops.matmul(x, ops.transpose(x, (0, 2, 1)))
        if mask is not None:
            scores = ops.where(ops.expand_dims(mask, 1), scores, -1e9)
        weights = ops.softmax(scores, axis=-1)
        out = ops.matmul(weights, x)
        return (out, weights) if return_attention_scores else out

    def compute_mask(self, x, mask=None):
        return mask


@keras.saving.register_keras_serializable(package="test_logger_backends")
class PoolingAttention(keras.layers.Layer):
    """A user's own layer with its own convention: `with_weights=True` returns them."""

    def build(self, shape):
        self.score = keras.layers.Dense(1)
        self.score.build(shape)

    def call(self, x, mask=None, with_weights=False):
        scores = ops.squeeze(self.score(x), -1)  # (batch, n)
        if mask is not None:
            scores = ops.where(mask, scores, -1e9)
        weights = ops.softmax(scores, axis=-1)
        pooled = ops.sum(x * ops.expand_dims(weights, -1), axis=1)
        return (pooled, weights[:, None, :]) if with_weights else pooled

    def compute_mask(self, x, mask=None):
        return None


class PoolingAdapter(AttentionAdapter):
    """How the logger reads PoolingAttention: one query (the pooled vector) over `x`."""

    def run(self, call, arguments):
        pooled, weights = call(with_weights=True)
        return pooled, weights

    def query(self, arguments):
        return None  # a learned query, not a sequence of the model

    def inputs(self, arguments):
        return arguments["x"]

    def input_masks(self, arguments):
        return [arguments.get("mask")]


register_attention_adapter(PoolingAttention, PoolingAdapter())


def build_model() -> keras.Model:
    source = keras.Input((None,), dtype="int32", name="source")
    target = keras.Input((None,), dtype="int32", name="target")
    src_embed = keras.layers.Embedding(len(VOCAB), 8, mask_zero=True, name="src_embed")
    tgt_embed = keras.layers.Embedding(len(VOCAB), 8, mask_zero=True, name="tgt_embed")
    # Each layer gets its own embedded tensors: MultiHeadAttention removes the Keras masks
    # of the tensors it is called on.
    src = src_embed(source)
    encoded = keras.layers.MultiHeadAttention(2, 4, name="encoder_self")(src, src)
    dot = keras.layers.Attention(name="dot")([tgt_embed(target), src_embed(source)])
    additive = keras.layers.AdditiveAttention(name="additive")(
        [tgt_embed(target), src_embed(source)]
    )
    grouped = keras.layers.GroupQueryAttention(
        4, num_query_heads=4, num_key_value_heads=2, name="grouped"
    )(tgt_embed(target), src_embed(source))
    sequence = SequenceAttention(name="sequence")(src_embed(source), tgt_embed(target))
    own = DotSelfAttention(name="own")(tgt_embed(target))
    pooled_own = PoolingAttention(name="pool")(src_embed(source))
    pooled = [
        keras.layers.GlobalAveragePooling1D()(t)
        for t in (encoded, dot, additive, grouped, sequence, own)
    ]
    merged = keras.layers.Concatenate()([*pooled, pooled_own])
    return keras.Model(
        {"source": source, "target": target}, keras.layers.Dense(1)(merged), name="every_kind"
    )


def _ids(rng, lengths):
    ids = np.zeros((len(lengths), PAD), dtype="int32")
    for b, n in enumerate(lengths):
        ids[b, :n] = rng.integers(1, len(VOCAB), size=n)
    return ids


def _tokens(row) -> list[str]:
    return [VOCAB[i] for i in row if i]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    # Probe examples 0 and 1: equal source and target lengths in example 0, so that only
    # the model's structure can put the right tokens on each axis.
    source = _ids(rng, [5, 6, 3, 7, 2, 4, 6, 1])
    target = _ids(rng, [5, 3, 4, 2, 6, 7, 1, 3])
    y = rng.normal(size=(EXAMPLES, 1)).astype("float32")
    return {"source": source, "target": target}, y


def _probe(x):
    return {"source": x["source"][:2], "target": x["target"][:2]}


def _compiled(seed=0):
    keras.utils.set_random_seed(seed)
    model = build_model()
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


@pytest.fixture(scope="module")
def logged(data, tmp_path_factory):
    x, y = data
    logdir = tmp_path_factory.mktemp("every_kind")
    model = _compiled()
    probe = _probe(x)
    logger = AttentionLogger(
        logdir,
        probe,
        labels={
            "source": [_tokens(r) for r in probe["source"]],
            "target": [_tokens(r) for r in probe["target"]],
        },
        images=False,
    )
    # The eager passes' time budget lifted: their count must not depend on how busy the
    # machine is (the budget is tested in test_probe_pass.py).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(attention_probe, "EAGER_SECONDS", math.inf)
        model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[logger])
    return model, logger, Routes(logdir)


# Which sequence each layer's queries and inputs are, as built above.
AXES = {
    "encoder_self": ("source", "source", 2),
    "dot": ("target", "source", None),
    "additive": ("target", "source", None),
    "grouped": ("target", "source", 4),
    "sequence": ("target", "source", None),
    "own": ("target", "target", None),
    "pool": (None, "source", None),
}


def test_every_kind_of_layer_is_found_with_its_path(logged):
    model, _, routes = logged
    assert {path for path, _ in find_attention_layers(model)} == set(AXES)
    assert routes.tags() == {f"{layer}/{b}" for layer in AXES for b in (0, 1)}
    assert routes.steps("grouped/1") == [0, 2, 4]


def test_matrices_trimmed_to_real_positions_with_each_inputs_tokens(logged, data):
    x, _ = data
    _, _, routes = logged
    probe = _probe(x)
    for layer, (queries, inputs, heads) in AXES.items():
        for b in (0, 1):
            got = routes.matrix(f"{layer}/{b}")
            input_tokens = _tokens(probe[inputs][b])
            query_tokens = _tokens(probe[queries][b]) if queries else ["0"]
            assert got["input_labels"] == input_tokens, (layer, b)
            assert got["query_labels"] == query_tokens, (layer, b)
            expected = [len(query_tokens), len(input_tokens)]
            assert got["shape"] == ([heads] if heads else []) + expected, (layer, b)
            # Every real query's weights lie on the real inputs: the trimmed columns held
            # nothing.
            np.testing.assert_allclose(np.sum(got["values"], axis=-1), 1.0, atol=3e-3)


def test_entropy_scalars_count_real_rows_only(logged):
    _, logger, routes = logged
    outputs = logger._pass(logger.probe)
    matrices, stats = logger._matrices(outputs)
    scalars = routes.scalars()
    for layer in AXES:
        # At the last step, from the matrices as logged (trimmed), not from padded rows.
        logged_entropy = scalars[f"{layer}/mean_entropy"][-1].value
        assert logged_entropy == pytest.approx(stats[layer][0], rel=1e-5)
        mine = [m.weights for m in matrices if m.tag.startswith(f"{layer}/")]
        assert stats[layer] == attention_statistics(mine)
        assert 0 <= logged_entropy <= math.log(PAD)


def test_probe_pass_eager_or_compiled_once_and_layers_left_as_they_were(logged):
    model, logger, _ = logged
    probe_pass = logger._pass
    backend = keras.backend.backend()
    if backend == "tensorflow":
        # 3 logging points, run eagerly (attention_probe.EAGER_PASSES): no trace.
        assert probe_pass.eager_runs >= 3  # (and any pass another test ran)
        assert probe_pass._function.experimental_get_tracing_count() == 0
    elif backend == "jax":
        assert (probe_pass.eager_runs, probe_pass.traces) == (0, 1)  # 3 points, one trace
    else:
        assert probe_pass.traces >= 3  # PyTorch: eager, the swap made for each pass
    for _, layer in find_attention_layers(model):
        assert "call" not in layer.__dict__


def test_losses_bit_for_bit_the_same_with_and_without_the_logger(data, tmp_path):
    x, y = data
    results = []
    for with_logger in (False, True):
        model = _compiled(seed=3)
        callbacks = (
            [AttentionLogger(tmp_path, _probe(x), every_n_steps=1, images=False)]
            if with_logger
            else []
        )
        history = model.fit(
            x, y, batch_size=BATCH, epochs=2, verbose=0, shuffle=False, callbacks=callbacks
        )
        results.append((history.history["loss"], model.predict(x, verbose=0)))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_register_attention_adapter_rejects_what_is_not_an_adapter():
    with pytest.raises(TypeError, match="`layer_class` must be a keras.layers.Layer subclass"):
        register_attention_adapter(int, PoolingAdapter())
    with pytest.raises(TypeError, match="`adapter` must be an AttentionAdapter instance"):
        register_attention_adapter(PoolingAttention, lambda *a: None)
