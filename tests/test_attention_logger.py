"""AttentionLogger on small real models, read back through the plugin's own routes.

Each model trains for a few steps with the logger; the logdir is then served by
`application.TensorBoardWSGI([AttentionPlugin], data_provider=...)` over TensorBoard's
Python loader and read with `werkzeug.test.Client`, as a user's TensorBoard would.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from logger_routes import Routes

from keras_seqattn import AttentionLogger, SequenceAttention, attention_probe
from keras_seqattn.attention_logger import attention_statistics
from keras_seqattn.attention_probe import ProbePass, find_attention_layers

VOCAB = list("_abcdefghijklmnopqrstuvwxyz")  # id 0 is padding
EXAMPLES, BATCH = 16, 4  # 4 steps per epoch


def _ids(rng, count, max_len, min_len=1):
    """Right-padded ids and their lengths."""
    lengths = rng.integers(min_len, max_len + 1, size=count)
    ids = np.zeros((count, max_len), dtype="int32")
    for b, n in enumerate(lengths):
        ids[b, :n] = rng.integers(1, len(VOCAB), size=n)
    return ids, lengths


def _tokens(ids_row) -> list[str]:
    return [VOCAB[i] for i in ids_row if i]


# -- the models ---------------------------------------------------------------------------


def functional_model() -> keras.Model:
    """Two SequenceAttention layers (cross- and self-attention) and a MultiHeadAttention."""
    source = keras.Input((None,), dtype="int32", name="source")
    target = keras.Input((None,), dtype="int32", name="target")
    embed = keras.layers.Embedding(len(VOCAB), 8, mask_zero=True, name="embed")
    src, tgt = embed(source), embed(target)
    cross = SequenceAttention(name="cross")(src, tgt)
    self_attended = SequenceAttention(scoring="dot", name="self_attn")(src, src)
    # Its own embedded tensors: MultiHeadAttention removes the Keras masks of the tensors
    # it is called on, which would unmask the other layers if they shared them.
    heads = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(
        embed(target), embed(source)
    )
    pooled = keras.layers.Concatenate()(
        [
            keras.layers.GlobalAveragePooling1D()(cross),
            keras.layers.GlobalAveragePooling1D()(self_attended),
            keras.layers.GlobalAveragePooling1D()(heads),
        ]
    )
    return keras.Model(
        {"source": source, "target": target}, keras.layers.Dense(1)(pooled), name="functional"
    )


@keras.saving.register_keras_serializable(package="test_attention_logger")
class SubclassedModel(keras.Model):
    """Ragged ids in, a SequenceAttention of learned queries over them."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embed = keras.layers.Embedding(len(VOCAB), 8)
        self.queries = keras.layers.Embedding(3, 8)
        self.attend = SequenceAttention(scoring="additive", name="pool_attn")
        self.head = keras.layers.Dense(1)

    def call(self, ids):
        chars = self.embed(ids)  # ragged in, ragged out
        batch = chars.nrows() if isinstance(chars, tf.RaggedTensor) else tf.shape(chars)[0]
        query = self.queries(tf.tile(tf.range(3)[tf.newaxis], [batch, 1]))
        pooled = self.attend(chars, query)
        return self.head(tf.reshape(pooled, [batch, 24]))


def nested_model() -> keras.Model:
    """An outer functional model holding two inner models, each with an 'attn' layer."""

    def inner(name):
        x = keras.Input((None, 8))
        q = keras.Input((2, 8))
        return keras.Model([x, q], SequenceAttention(name="attn")(x, q), name=name)

    ids = keras.Input((None,), dtype="int32")
    chars = keras.layers.Embedding(len(VOCAB), 8)(ids)
    query = keras.layers.Dense(8)(keras.layers.GlobalAveragePooling1D()(chars))
    query = keras.layers.Reshape((1, 8))(query)
    query = keras.layers.Concatenate(axis=1)([query, query])
    first = inner("first")([chars, query])
    second = inner("second")([chars, first])
    out = keras.layers.Dense(1)(keras.layers.Flatten()(second))
    return keras.Model(ids, out, name="nested")


def _compile(model):
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


# -- training them with the logger ----------------------------------------------------------


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Trains the three models with loggers; returns what the tests need to know.

    The eager passes' time budget is lifted, so that their count does not depend on how
    busy the machine is (the budget is tested in test_probe_pass.py).
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(attention_probe, "EAGER_SECONDS", math.inf)
        return _train_logged(tmp_path_factory)


def _train_logged(tmp_path_factory):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("logger")
    runs = {}

    # Functional: by epoch, images and scalars, labels as lists.
    source, src_len = _ids(rng, EXAMPLES, 6, min_len=2)
    target, tgt_len = _ids(rng, EXAMPLES, 4, min_len=2)
    x = {"source": source, "target": target}
    y = rng.normal(size=(EXAMPLES, 1)).astype("float32")
    model = _compile(functional_model())
    probe = {"source": source[:2], "target": target[:2]}
    logger = AttentionLogger(
        root / "functional",
        probe,
        input_labels=[_tokens(r) for r in source[:2]],
        query_labels=[_tokens(r) for r in target[:2]],
    )
    model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[logger])
    runs["functional"] = dict(
        model=model, logger=logger, probe=probe, x=x, y=y, src_len=src_len[:2], tgt_len=tgt_len[:2]
    )

    # Subclassed, ragged probe, labels from a callable, every 3 steps, no images.
    ids, _ = _ids(rng, EXAMPLES, 5)
    ragged = tf.RaggedTensor.from_tensor(ids, padding=0)
    model = _compile(SubclassedModel())
    logger = AttentionLogger(
        root / "subclassed", ragged[:3], input_labels=_tokens, every_n_steps=3, images=False
    )
    model.fit(ragged, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[logger])
    runs["subclassed"] = dict(model=model, logger=logger, ragged=ragged)

    # Nested: two inner models with layers of the same name; every 2nd epoch; no scalars.
    model = _compile(nested_model())
    logger = AttentionLogger(
        root / "nested", source[:2], every_n_epochs=2, scalars=False, images=False
    )
    model.fit(source, y, batch_size=BATCH, epochs=4, verbose=0, callbacks=[logger])
    runs["nested"] = dict(model=model, logger=logger)
    return root, runs


@pytest.fixture(scope="module")
def routes(logged):
    root, _ = logged
    return {name: Routes(root / name) for name in ("functional", "subclassed", "nested")}


# -- what the plugin serves -----------------------------------------------------------------


def test_one_matrix_per_layer_and_probe_example_at_every_logging_point(routes):
    tags = routes["functional"].get("tags")
    assert set(tags) == {"attention"}
    expected = {f"{layer}/{b}" for layer in ("cross", "self_attn", "mha") for b in (0, 1)}
    assert set(tags["attention"]) == expected
    for tag in expected:
        # Start of training, then after each of the 2 epochs of 4 steps.
        assert routes["functional"].steps(tag) == [0, 4, 8], tag


def test_matrices_are_trimmed_to_each_example_and_carry_its_labels(routes, logged):
    _, runs = logged
    run = runs["functional"]
    source, target = run["probe"]["source"], run["probe"]["target"]
    for b in range(2):
        n, m = int(run["src_len"][b]), int(run["tgt_len"][b])
        cross = routes["functional"].get("matrix", run="attention", tag=f"cross/{b}", step=8)
        assert cross["shape"] == [m, n]
        assert cross["input_labels"] == _tokens(source[b])
        assert cross["query_labels"] == _tokens(target[b])
        np.testing.assert_allclose(np.sum(cross["values"], axis=-1), 1.0, atol=3e-3)
        # Self-attention: its queries are the source, so both axes take the source labels.
        own = routes["functional"].get("matrix", run="attention", tag=f"self_attn/{b}")
        assert own["shape"] == [n, n]
        assert own["input_labels"] == own["query_labels"] == _tokens(source[b])
        heads = routes["functional"].get("matrix", run="attention", tag=f"mha/{b}")
        assert heads["shape"] == [2, m, n] and heads["heads"] == 2
        assert heads["input_labels"] == _tokens(source[b])
        assert heads["query_labels"] == _tokens(target[b])


def test_logged_values_are_the_layers_weights_at_that_step(logged, routes):
    _, runs = logged
    run = runs["functional"]
    model, probe = run["model"], run["probe"]
    # The weights after training (step 8), computed independently of the logger: call the
    # trained layers on the embedded probe.
    embed = model.get_layer("embed")
    src, tgt = embed(probe["source"]), embed(probe["target"])
    src_mask, tgt_mask = probe["source"] != 0, probe["target"] != 0
    _, cross = model.get_layer("cross")(
        src, tgt, mask=[src_mask, tgt_mask], return_attention_scores=True
    )
    _, heads = model.get_layer("mha")(
        tgt, src, query_mask=tgt_mask, value_mask=src_mask, return_attention_scores=True
    )
    for b in range(2):
        n, m = int(run["src_len"][b]), int(run["tgt_len"][b])
        got = routes["functional"].get("matrix", run="attention", tag=f"cross/{b}", step=8)
        np.testing.assert_allclose(got["values"], cross[b, :m, :n], atol=2e-3)
        got = routes["functional"].get("matrix", run="attention", tag=f"mha/{b}", step=8)
        np.testing.assert_allclose(got["values"], heads[b, :, :m, :n], atol=2e-3)


def test_subclassed_ragged_model_logged_every_n_steps_with_callable_labels(routes, logged):
    _, runs = logged
    ragged = runs["subclassed"]["ragged"]
    tags = routes["subclassed"].get("tags")["attention"]
    assert set(tags) == {"pool_attn/0", "pool_attn/1", "pool_attn/2"}
    # 8 steps, every 3: the start and steps 3 and 6; nothing at epoch ends.
    assert routes["subclassed"].steps("pool_attn/0") == [0, 3, 6]
    for b in range(3):
        got = routes["subclassed"].get("matrix", run="attention", tag=f"pool_attn/{b}")
        row = ragged[b].numpy()
        assert got["shape"] == [3, len(row)]
        assert got["input_labels"] == _tokens(row)
        assert got["query_labels"] == ["0", "1", "2"]  # no query labels: positions


def test_nested_models_same_layer_names_get_their_paths(routes, logged):
    _, runs = logged
    assert [p for p, _ in find_attention_layers(runs["nested"]["model"])] == [
        "first/attn",
        "second/attn",
    ]
    tags = routes["nested"].get("tags")["attention"]
    assert set(tags) == {"first/attn/0", "first/attn/1", "second/attn/0", "second/attn/1"}
    # 4 epochs of 4 steps, every 2nd epoch.
    assert routes["nested"].steps("second/attn/1") == [0, 8, 16]


def test_image_summaries_of_every_matrix(routes):
    provider = routes["functional"].provider
    ctx = _context()
    images = provider.list_blob_sequences(ctx, experiment_id="", plugin_name="images")
    expected = {f"{layer}/{b}/heatmap" for layer in ("cross", "self_attn", "mha") for b in (0, 1)}
    assert set(images["attention"]) == expected
    series = provider.read_blob_sequences(
        ctx, experiment_id="", plugin_name="images", downsample=100
    )["attention"]["mha/1/heatmap"]
    assert [d.step for d in series] == [0, 4, 8]
    width, height, png = (provider.read_blob(ctx, blob_key=v.blob_key) for v in series[-1].values)
    assert png.startswith(b"\x89PNG") and int(width) > 200 and int(height) > 100
    # images=False writes none.
    none = routes["subclassed"].provider.list_blob_sequences(
        ctx, experiment_id="", plugin_name="images"
    )
    assert not none


def test_scalar_summaries_per_layer(routes, logged):
    provider = routes["functional"].provider
    ctx = _context()
    scalars = provider.read_scalars(ctx, experiment_id="", plugin_name="scalars", downsample=100)[
        "attention"
    ]
    for layer, n_max in (("cross", 6), ("self_attn", 6), ("mha", 6)):
        entropy = scalars[f"{layer}/mean_entropy"]
        largest = scalars[f"{layer}/mean_max_weight"]
        assert [p.step for p in entropy] == [p.step for p in largest] == [0, 4, 8]
        for e, w in zip(entropy, largest, strict=True):
            assert 0.0 <= e.value <= math.log(n_max) + 1e-6
            assert 1 / n_max - 1e-6 <= w.value <= 1.0 + 1e-6
    assert not routes["nested"].provider.list_scalars(ctx, experiment_id="", plugin_name="scalars")


def _context():
    from tensorboard import context

    return context.RequestContext()


def test_statistics_of_known_rows():
    uniform = np.full((2, 4), 0.25)
    sharp = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # second row: a padded query
    entropy, largest = attention_statistics([uniform, sharp])
    assert entropy == pytest.approx(2 * math.log(4) / 3)
    assert largest == pytest.approx((0.25 + 0.25 + 1.0) / 3)


# -- the training itself is untouched ------------------------------------------------------


def test_training_is_identical_with_and_without_the_logger(logged, tmp_path):
    _, runs = logged
    run = runs["functional"]
    results = []
    for with_logger in (False, True):
        keras.utils.set_random_seed(1)
        model = _compile(functional_model())
        callbacks = (
            [AttentionLogger(tmp_path, run["probe"], every_n_steps=1, images=False)]
            if with_logger
            else []
        )
        history = model.fit(
            run["x"],
            run["y"],
            batch_size=BATCH,
            epochs=1,
            verbose=0,
            shuffle=False,
            callbacks=callbacks,
        )
        results.append((history.history["loss"], model.predict(run["x"], verbose=0)))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_probe_pass_runs_eagerly_first_then_is_traced_once_and_layers_are_left_as_they_were(
    logged,
):
    _, runs = logged
    for name in ("functional", "subclassed", "nested"):
        logger, model = runs[name]["logger"], runs[name]["model"]
        # The fixture's few logging points ran eagerly: nothing was traced.
        assert logger._pass.eager_runs >= 3, name
        assert logger._pass._function.experimental_get_tracing_count() == 0, name
        eager = logger._pass(logger.probe)
        # Compiled from the first point (eager_passes=0): traced once, then not again.
        probe_pass = ProbePass(model, logger._pass.targets, eager_passes=0)
        compiled = probe_pass(logger.probe)
        assert probe_pass._function.experimental_get_tracing_count() == 1, name
        again = probe_pass(logger.probe)
        assert probe_pass._function.experimental_get_tracing_count() == 1, name
        assert probe_pass.eager_runs == 0
        assert [r.tag for r in probe_pass.records] == [r.tag for r in logger._pass.records]
        for a, b, c in zip(eager, compiled, again, strict=True):
            for key in a:
                np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)
                np.testing.assert_array_equal(b[key], c[key])
        for _, layer in find_attention_layers(model):
            assert "call" not in layer.__dict__


# -- beside keras.callbacks.TensorBoard -----------------------------------------------------


def test_beside_keras_tensorboard_on_the_same_log_dir(logged, tmp_path):
    _, runs = logged
    run = runs["functional"]
    model = _compile(functional_model())
    callbacks = [
        # A batch-level update_freq: Keras then keeps a `record_if(step % 3 == 0)` open
        # all along, which would drop the logger's writes at steps 4 and 8.
        keras.callbacks.TensorBoard(tmp_path, update_freq=3),
        AttentionLogger(tmp_path, run["probe"], images=False),
    ]
    model.fit(run["x"], run["y"], batch_size=BATCH, epochs=2, verbose=0, callbacks=callbacks)
    routes = Routes(tmp_path)
    assert routes.steps("cross/1") == [0, 4, 8]
    assert set(routes.get("tags")) == {"attention"}
    scalars = routes.provider.list_scalars(_context(), experiment_id="", plugin_name="scalars")
    assert set(scalars) == {"train", "attention"}
    assert "batch_loss" in scalars["train"] and "cross/mean_entropy" in scalars["attention"]
    assert not any("cross" in tag for tag in scalars["train"])


# -- under tf.distribute ---------------------------------------------------------------------


def test_mirrored_strategy_writes_once_per_logging_point(tmp_path):
    # Logical devices must be configured before TensorFlow initialises: a fresh process.
    worker = Path(__file__).with_name("logger_mirrored_worker.py")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, str(worker), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["event_files"] == 1
    steps = report["steps"]
    assert set(steps) == {
        "attn/0",
        "attn/1",
        "attn/0/heatmap",
        "attn/1/heatmap",
        "attn/mean_entropy",
        "attn/mean_max_weight",
    }
    for tag, logged_steps in steps.items():
        assert logged_steps == [0, 4, 8, 12], tag  # once each: start + 3 epochs of 4 steps


# -- mistakes caught before the first step --------------------------------------------------


@pytest.fixture()
def small(logged):
    _, runs = logged
    run = runs["functional"]
    return run["x"], run["y"], run["probe"]


def _fit_fails(model, x, y, logger, error, match):
    with pytest.raises(error, match=match):
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[logger])
    assert int(model.optimizer.iterations.numpy()) == 0  # not a single training step


def test_probe_that_does_not_fit_the_model(small, tmp_path):
    x, y, probe = small
    bad = {"source": probe["source"], "target": np.zeros((2, 3, 5), "float32")}
    _fit_fails(
        _compile(functional_model()),
        x,
        y,
        AttentionLogger(tmp_path, bad),
        ValueError,
        "the probe does not fit model 'functional'",
    )
    assert not (tmp_path / "attention").exists()


def test_labels_of_the_wrong_length(small, tmp_path):
    x, y, probe = small
    labels = [_tokens(r) for r in probe["source"]]
    labels[1] = labels[1] + ["extra"]
    logger = AttentionLogger(tmp_path, probe, input_labels=labels)
    _fit_fails(
        _compile(functional_model()),
        x,
        y,
        logger,
        ValueError,
        r"`input_labels\[1\]` has \d+ labels, but probe example 1 has a different "
        r"number of inputs in every logged layer \(.*'cross': \d+",
    )


def test_unknown_layer_name(small, tmp_path):
    x, y, probe = small
    logger = AttentionLogger(tmp_path, probe, layers=["cross", "nope"])
    _fit_fails(
        _compile(functional_model()),
        x,
        y,
        logger,
        ValueError,
        r"`layers` names 'nope'.*'cross', 'self_attn', 'mha'",
    )


def test_model_without_attention(tmp_path):
    inputs = keras.Input((3,))
    model = _compile(keras.Model(inputs, keras.layers.Dense(1)(inputs), name="plain"))
    _fit_fails(
        model,
        np.zeros((4, 3)),
        np.zeros((4, 1)),
        AttentionLogger(tmp_path, np.zeros((2, 3))),
        ValueError,
        "model 'plain' has no attention layer",
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(probe=None), ValueError, "`probe` is required"),
        (
            dict(probe={"source": np.zeros((2, 3)), "target": np.zeros((3, 3))}),
            ValueError,
            r"same number of examples; got probe\['source'\]: 2, probe\['target'\]: 3",
        ),
        (dict(input_labels=[["a"]]), ValueError, "the probe has 2 example.*`input_labels` has 1"),
        (dict(query_labels="abc"), TypeError, "one list of token strings per probe example"),
        (dict(input_labels=["abc", "de"]), TypeError, r"`input_labels\[0\]`.*list\(text\)"),
        (
            dict(input_labels=[[1, 2], [3]]),
            TypeError,
            r"`input_labels\[0\]\[0\]`: expected a "
            "string token; got int",
        ),
        (
            dict(input_labels=lambda example: 1 / 0),
            ValueError,
            "`input_labels`: the callable failed on probe example 0: ZeroDivisionError",
        ),
        (dict(every_n_epochs=0), ValueError, "`every_n_epochs` must be a positive integer"),
        (dict(every_n_steps=2.5), ValueError, "`every_n_steps` must be a positive integer"),
        (dict(layers="cross"), TypeError, "`layers` must be a list of layer names"),
        (dict(images="yes"), TypeError, "`images` must be True or False"),
    ],
)
def test_bad_arguments_rejected_at_construction(small, tmp_path, kwargs, error, match):
    _, _, probe = small
    arguments = dict(log_dir=tmp_path, probe=probe) | kwargs
    with pytest.raises(error, match=match):
        AttentionLogger(**arguments)


# -- what it cannot reach --------------------------------------------------------------------


class AttendingCell(keras.layers.Layer):
    """An RNN cell that attends over a memory made from its step input: a graph loop body."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.state_size = 8
        self.attend = SequenceAttention(scoring="dot", name="in_loop")
        self.memory = keras.layers.Dense(32)
        self.query = keras.layers.Dense(8)

    def build(self, input_shape):
        self.memory.build(input_shape)
        self.query.build(input_shape)
        self.attend.build((None, 4, 8), (None, 1, 8))

    def call(self, inputs, states):
        memory = keras.ops.reshape(self.memory(inputs), (-1, 4, 8))
        query = keras.ops.expand_dims(self.query(inputs), 1)
        context = self.attend(memory, query)[:, 0]
        return context, [context]


def test_attention_inside_a_graph_loop_is_skipped_with_a_warning(tmp_path, caplog):
    inputs = keras.Input((3, 8))
    looped = keras.layers.Reshape((1, 8))(keras.layers.RNN(AttendingCell())(inputs))
    outer = SequenceAttention(name="outer")(inputs, looped)
    model = _compile(keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(outer))))
    x = np.random.default_rng(1).normal(size=(8, 3, 8)).astype("float32")
    logger = AttentionLogger(tmp_path, x[:2], images=False)
    with caplog.at_level(logging.WARNING, logger="keras_seqattn.attention_logger"):
        model.fit(x, np.zeros((8, 1)), batch_size=4, epochs=1, verbose=0, callbacks=[logger])
    assert "'in_loop' runs inside a graph loop" in caplog.text
    assert set(Routes(tmp_path).get("tags")["attention"]) == {"outer/0", "outer/1"}
