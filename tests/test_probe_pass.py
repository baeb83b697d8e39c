"""The probe pass: eager for the first logging points, compiled after, the same records.

`ProbePass` runs its first `eager_passes` logging points through the model eagerly (no
trace to pay) and compiles from the next one on (TensorFlow, and JAX when asked); an
eager pass whose target layers are called more than once (a loop) is not used. These
tests count traces and compare what the two ways return, on small real models, on every
backend (PyTorch has no compiled pass: the tests about compiling skip there).
"""

from __future__ import annotations

import logging
import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_seqattn import AttentionLogger, SequenceAttention, attention_probe
from keras_seqattn import attention_spans as spans
from keras_seqattn.attention_probe import ProbePass, Target, adapter_of, find_attention_layers
from tests.logger_routes import Routes

pytestmark = pytest.mark.all_backends

BACKEND = keras.backend.backend()
compiled_backends = pytest.mark.skipif(
    BACKEND == "torch", reason="PyTorch: the probe pass is always eager, nothing is compiled"
)
VOCAB, LENGTH = 12, 6


def _ids(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ids = np.zeros((count, LENGTH), dtype="int32")
    for b, n in enumerate(rng.integers(2, LENGTH + 1, size=count)):
        ids[b, :n] = rng.integers(1, VOCAB, size=n)
    return ids


# -- the models -----------------------------------------------------------------------------


def functional_model() -> keras.Model:
    """Masked MultiHeadAttention self-attention and a SequenceAttention over its output."""
    ids = keras.Input((LENGTH,), dtype="int32")
    embed = keras.layers.Embedding(VOCAB, 8, mask_zero=True)
    states = keras.layers.MultiHeadAttention(2, 4, name="mha")(embed(ids), embed(ids))
    pooled = SequenceAttention(name="pool")(embed(ids), states)
    return keras.Model(ids, keras.layers.Dense(1)(keras.layers.Flatten()(pooled)))


class Subclassed(keras.Model):
    """Learned queries over the embedded ids, in `call()`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embed = keras.layers.Embedding(VOCAB, 8, mask_zero=True)
        self.queries = self.add_weight(shape=(1, 3, 8), initializer="normal", name="q")
        self.attend = SequenceAttention(scoring="additive")
        self.head = keras.layers.Dense(1)

    def call(self, ids, training=None):
        chars = self.embed(ids)
        query = ops.repeat(self.queries, ops.shape(ids)[0], axis=0)
        return self.head(ops.reshape(self.attend(chars, query), (-1, 24)))


def nested_model() -> keras.Model:
    """Two inner models with an "attn" layer each, inside an outer one."""

    def inner(name):
        x, q = keras.Input((LENGTH, 8)), keras.Input((2, 8))
        return keras.Model([x, q], SequenceAttention(name="attn")(x, q), name=name)

    ids = keras.Input((LENGTH,), dtype="int32")
    chars = keras.layers.Embedding(VOCAB, 8)(ids)
    query = keras.layers.Dense(16)(keras.layers.GlobalAveragePooling1D()(chars))
    query = keras.layers.Reshape((2, 8))(query)
    second = inner("second")([chars, inner("first")([chars, query])])
    return keras.Model(ids, keras.layers.Dense(1)(keras.layers.Flatten()(second)))


class _InnerAttention(keras.layers.Layer):
    """Holds a "dot" SequenceAttention named `inner` that its `call` runs in a construct."""

    inner = ""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attend = SequenceAttention(scoring="dot", name=self.inner)

    def build(self, shape):
        self.attend.build(shape, (shape[0], 1, shape[-1]))


class LoopedAttention(_InnerAttention):
    """Attends from a running state over the sequence, 3 times, in `ops.fori_loop`."""

    inner = "in_loop"

    def call(self, x):
        def step(_, state):
            return self.attend(x, state)

        return ops.fori_loop(0, 3, step, ops.mean(x, axis=1, keepdims=True))


def looped_model() -> keras.Model:
    inputs = keras.Input((LENGTH, 8))
    looped = LoopedAttention()(inputs)
    outer = SequenceAttention(name="outer")(inputs, looped)
    return keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(outer)))


def _build(name: str):
    model = {"functional": functional_model, "subclassed": Subclassed, "nested": nested_model}[
        name
    ]()
    probe = _ids(2)
    model(probe)  # builds the subclassed model
    return model, probe


def _targets(model) -> list[Target]:
    return [Target(path, layer, adapter_of(layer)) for path, layer in find_attention_layers(model)]


def _traces(probe_pass: ProbePass) -> int:
    if BACKEND == "tensorflow":
        # TensorFlow's own count agrees with the pass's.
        assert probe_pass._function.experimental_get_tracing_count() == probe_pass.traces
    return probe_pass.traces  # JAX: `_forward_jax` runs only while jax.jit traces it


# -- eager first, compiled after ------------------------------------------------------------


@compiled_backends
@pytest.mark.parametrize("name", ["functional", "subclassed", "nested"])
def test_first_points_run_eagerly_then_one_trace_and_no_retrace(name):
    model, probe = _build(name)
    probe_pass = ProbePass(model, _targets(model), eager_passes=2, eager_seconds=math.inf)
    counts = []
    for _ in range(5):
        probe_pass(probe)
        counts.append((probe_pass.eager_runs, _traces(probe_pass)))
    assert counts == [(1, 0), (2, 0), (2, 1), (2, 1), (2, 1)]
    for _, layer in find_attention_layers(model):
        assert "call" not in layer.__dict__


@pytest.mark.parametrize("name", ["functional", "subclassed", "nested"])
def test_eager_and_compiled_passes_return_the_same_records_and_values(name):
    model, probe = _build(name)
    eager_pass = ProbePass(model, _targets(model), eager_passes=1, eager_seconds=math.inf)
    compiled_pass = ProbePass(model, _targets(model), eager_passes=0)
    eager, compiled = eager_pass(probe), compiled_pass(probe)
    if BACKEND != "torch":
        assert (eager_pass.eager_runs, _traces(eager_pass)) == (1, 0)
        assert (compiled_pass.eager_runs, _traces(compiled_pass)) == (0, 1)
    assert [(r.tag, r.self_attention) for r in eager_pass.records] == [
        (r.tag, r.self_attention) for r in compiled_pass.records
    ]
    assert len(eager_pass.records) == len(find_attention_layers(model))
    assert eager_pass.unreachable == compiled_pass.unreachable == set()
    for a, b in zip(eager, compiled, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].shape == b[key].shape, key
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    # The model's weights moved: the next point sees them, eagerly and compiled.
    for variable in model.trainable_variables:
        variable.assign(variable.value * 1.5)
    eager, compiled = eager_pass(probe), compiled_pass(probe)
    assert _traces(compiled_pass) == (1 if BACKEND != "torch" else 2)
    for a, b in zip(eager, compiled, strict=True):
        np.testing.assert_allclose(a["weights"], b["weights"], rtol=1e-5, atol=1e-6)


def test_span_runs_from_the_first_real_position_to_the_last_whatever_the_padding():
    # right padding, left padding, a masked position inside the span, no padding, no
    # real position at all
    mask = np.array(
        [
            [1, 1, 1, 0, 0, 0],
            [0, 0, 0, 1, 1, 1],
            [0, 1, 0, 0, 1, 0],
            [1, 1, 1, 1, 1, 1],
            [0, 0, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    start, end = spans.span(mask, 5, 6)
    assert start.tolist() == [0, 3, 1, 0, 0]
    assert end.tolist() == [3, 6, 5, 6, 0]
    assert start.dtype == end.dtype == np.int32
    start, end = spans.span(None, 2, 7)  # no mask: the whole axis
    assert start.tolist() == [0, 0] and end.tolist() == [7, 7]
    start, end = spans.span(np.zeros((2, 0), bool), 2, 0)  # an empty axis
    assert start.tolist() == end.tolist() == [0, 0]


def test_time_budget_stops_the_eager_passes():
    model, probe = _build("functional")
    probe_pass = ProbePass(model, _targets(model), eager_passes=10, eager_seconds=0.0)
    for _ in range(3):
        probe_pass(probe)
    # The first pass is always tried; its time then exceeds a budget of 0 s.
    assert probe_pass.eager_runs == (1 if BACKEND != "torch" else 0)
    if BACKEND != "torch":
        assert _traces(probe_pass) == 1


def test_default_eager_points_per_backend_and_model():
    model, _ = _build("functional")
    recurrent = keras.Sequential([keras.Input((4, 8)), keras.layers.GRU(4)])
    expected = attention_probe.EAGER_PASSES if BACKEND == "tensorflow" else 0
    assert ProbePass(model, _targets(model)).eager_passes == expected
    # A recurrent layer runs its loop step by step in Python when eager: compiled at once.
    assert ProbePass(recurrent, []).eager_passes == 0


# -- attention in a loop: the compiled pass decides, as before ------------------------------


@compiled_backends
def test_attention_called_in_a_loop_goes_to_the_compiled_pass():
    model = looped_model()
    probe = np.random.default_rng(1).normal(size=(2, LENGTH, 8)).astype("float32")
    probe_pass = ProbePass(model, _targets(model), eager_passes=5, eager_seconds=math.inf)
    compiled_pass = ProbePass(model, _targets(model), eager_passes=0)
    for _ in range(3):
        outputs = probe_pass(probe)
    expected = compiled_pass(probe)
    assert probe_pass.eager_runs == 0
    assert _traces(probe_pass) == 1
    assert [r.tag for r in probe_pass.records] == [r.tag for r in compiled_pass.records]
    assert [r.tag for r in probe_pass.records] == ["outer"]
    assert probe_pass.unreachable == compiled_pass.unreachable
    assert probe_pass.unreachable == {"looped_attention/in_loop"}
    np.testing.assert_allclose(outputs[0]["weights"], expected[0]["weights"], rtol=1e-5)


def _fit_logged(model, tmp_path, caplog) -> AttentionLogger:
    """Trains `model` 2 epochs of 2 steps with a logger of 2 probe examples."""
    model.compile("adam", "mse")
    x = np.random.default_rng(1).normal(size=(8, LENGTH, 8)).astype("float32")
    logger = AttentionLogger(tmp_path, x[:2], images=False)
    with caplog.at_level(logging.WARNING, logger="keras_seqattn.attention_logger"):
        model.fit(x, np.zeros((8, 1)), batch_size=4, epochs=2, verbose=0, callbacks=[logger])
    return logger


@compiled_backends
def test_logger_on_attention_in_a_loop_warns_and_logs_the_rest(tmp_path, caplog):
    logger = _fit_logged(looped_model(), tmp_path, caplog)
    assert caplog.text.count("'in_loop' runs inside a graph loop") == 1
    assert logger._pass.eager_runs == 0
    routes = Routes(tmp_path)
    assert set(routes.get("tags")["attention"]) == {"outer/0", "outer/1"}
    assert routes.steps("outer/0") == [0, 2, 4]


class BranchedAttention(_InnerAttention):
    """Attends in one branch of `ops.cond`: eager runs the branch as Python, a compiled
    TensorFlow graph as a branch function whose weights cannot be returned."""

    inner = "in_cond"

    def call(self, x):
        query = ops.mean(x, axis=1, keepdims=True)
        return ops.cond(ops.sum(x) > -1e9, lambda: self.attend(x, query), lambda: query)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="a tf.cond branch graph is TensorFlow's")
def test_layer_the_compiled_pass_cannot_read_is_warned_of_when_it_takes_over(
    tmp_path, caplog, monkeypatch
):
    monkeypatch.setattr(attention_probe, "EAGER_PASSES", 1)
    inputs = keras.Input((LENGTH, 8))
    outer = SequenceAttention(name="outer")(inputs, BranchedAttention()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(outer)))
    logger = _fit_logged(model, tmp_path, caplog)
    # Step 0 ran eagerly and read the branch; steps 2 and 4 compiled, which cannot.
    assert caplog.text.count("'in_cond' runs inside a graph loop") == 1
    assert logger._pass.eager_runs == 1
    routes = Routes(tmp_path)
    assert routes.steps("outer/0") == [0, 2, 4]
    assert routes.steps("branched_attention/in_cond/0") == [0]
