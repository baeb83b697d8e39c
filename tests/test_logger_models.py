"""AttentionLogger on the models Keras users train: KerasHub backbones, keras-io architectures.

Real third-party model code: KerasHub's `BertBackbone` and `GPT2Backbone` built from their
classes with tiny random configurations (no download), the keras-io English-to-Spanish
Transformer and keras-io style Bahdanau models written here after the tutorials. Each
trains briefly with the logger and is read back through the plugin's routes.

TensorFlow only: the KerasHub and seq2seq trainings cost most of this file's time, and the
backend-neutral parts of the logger are covered on every backend by
`test_logger_backends.py`.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from keras_seqattn.attention_logger import AttentionLogger, attention_statistics
from keras_seqattn.attention_probe import find_attention_layers
from tests.logger_routes import Routes

VOCAB = [f"w{i}" for i in range(100)]  # id 0 is padding
LENGTH = 32


def _ids(rng, lengths, pad, vocab=100):
    ids = np.zeros((len(lengths), pad), dtype="int32")
    for b, n in enumerate(lengths):
        ids[b, :n] = rng.integers(1, vocab, size=n)
    return ids


def _tokens(row) -> list[str]:
    return [VOCAB[i] for i in row if i]


def _fit(model, x, y, logger, epochs=1):
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=[logger])


# -- KerasHub ---------------------------------------------------------------------------------


def _backbone_classifier(kind: str):
    import keras_hub

    config = dict(
        vocabulary_size=len(VOCAB),
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=LENGTH,
    )
    if kind == "bert":
        backbone = keras_hub.models.BertBackbone(**config)
        features = backbone(backbone.input)["pooled_output"]
    else:
        backbone = keras_hub.models.GPT2Backbone(**config)
        features = keras.layers.GlobalAveragePooling1D()(backbone(backbone.input))
    return keras.Model(backbone.input, keras.layers.Dense(1)(features), name=f"{kind}_classifier")


@pytest.fixture(scope="module", params=["bert", "gpt2"])
def backbone_run(request, tmp_path_factory):
    kind = request.param
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    lengths = [29, 17] + list(rng.integers(5, LENGTH + 1, size=30))
    ids = _ids(rng, lengths, LENGTH)
    x = {"token_ids": ids, "padding_mask": ids != 0}
    if kind == "bert":
        x["segment_ids"] = np.zeros_like(ids)
    y = rng.normal(size=(len(ids), 1)).astype("float32")
    probe = {k: v[:2] for k, v in x.items()}
    tokens = [_tokens(r) for r in ids[:2]]
    model = _backbone_classifier(kind)
    logdir = tmp_path_factory.mktemp(kind)
    # BERT: the first release's argument with real-length labels (what the issue tried);
    # GPT-2: labels per model input.
    labels = dict(input_labels=tokens) if kind == "bert" else dict(labels={"token_ids": tokens})
    logger = AttentionLogger(logdir, probe, images=False, **labels)
    _fit(model, x, y, logger)
    return kind, model, logger, Routes(logdir), tokens


def test_backbone_layers_are_found_with_stable_paths(backbone_run):
    kind, model, _, routes, _ = backbone_run
    name = "self_attention_layer" if kind == "bert" else "self_attention"
    paths = [path for path, _ in find_attention_layers(model)]
    assert paths == [f"{kind}_backbone/transformer_layer_{i}/{name}" for i in (0, 1)]
    # The same model built again in this process: Keras's generated names move on
    # (gpt2_backbone_1, ...), the paths do not.
    again = _backbone_classifier(kind)
    assert [path for path, _ in find_attention_layers(again)] == paths
    assert routes.tags() == {f"{p}/{b}" for p in paths for b in (0, 1)}


def test_backbone_matrices_trimmed_to_real_length_with_real_length_labels(backbone_run):
    kind, model, logger, routes, tokens = backbone_run
    for path, _ in find_attention_layers(model):
        for b, n in enumerate((29, 17)):
            got = routes.matrix(f"{path}/{b}")
            assert got["shape"] == [2, n, n]
            assert got["input_labels"] == got["query_labels"] == tokens[b]
            values = np.asarray(got["values"])
            np.testing.assert_allclose(values.sum(axis=-1), 1.0, atol=3e-3)
            if kind == "gpt2":  # causal: nothing above the diagonal
                assert np.all(np.triu(values, k=1) == 0)


def test_backbone_padded_columns_are_exactly_zero_and_entropy_counts_real_rows(backbone_run):
    _, _, logger, routes, _ = backbone_run
    outputs = logger._pass(logger.probe)
    matrices, stats = logger._matrices(outputs)
    scalars = routes.scalars()
    for record, out in zip(logger._pass.records, outputs, strict=True):
        for b, n in enumerate((29, 17)):
            assert int(out["query_end"][b]) == int(out["input_end"][b]) == n
            # What trimming drops held no weight at all for the real queries.
            assert np.all(out["weights"][b][:, :n, n:] == 0)
        real = [m.weights for m in matrices if m.tag.startswith(record.tag + "/")]
        assert stats[record.tag] == attention_statistics(real)
        logged = scalars[f"{record.tag}/mean_entropy"][-1].value
        assert logged == pytest.approx(stats[record.tag][0], rel=1e-5)


# -- the keras-io English-to-Spanish Transformer ---------------------------------------------
# After keras-io's examples/nlp/neural_machine_translation_with_transformer.py (the model
# section), written with keras.ops.

EMBED, LATENT, HEADS, SEQ = 16, 32, 2, 6


class PositionalEmbedding(keras.layers.Layer):
    def __init__(self, sequence_length, vocab_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.token_embeddings = keras.layers.Embedding(vocab_size, embed_dim)
        self.position_embeddings = keras.layers.Embedding(sequence_length, embed_dim)

    def call(self, inputs):
        positions = ops.arange(ops.shape(inputs)[-1])
        return self.token_embeddings(inputs) + self.position_embeddings(positions)

    def compute_mask(self, inputs, mask=None):
        return ops.not_equal(inputs, 0)


class TransformerEncoder(keras.layers.Layer):
    def __init__(self, embed_dim, dense_dim, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.attention = keras.layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.dense_proj = keras.Sequential(
            [keras.layers.Dense(dense_dim, activation="relu"), keras.layers.Dense(embed_dim)]
        )
        self.layernorm_1 = keras.layers.LayerNormalization()
        self.layernorm_2 = keras.layers.LayerNormalization()
        self.supports_masking = True

    def call(self, inputs, mask=None):
        padding_mask = None if mask is None else ops.cast(mask[:, None, :], "int32")
        attention_output = self.attention(
            query=inputs, value=inputs, key=inputs, attention_mask=padding_mask
        )
        proj_input = self.layernorm_1(inputs + attention_output)
        return self.layernorm_2(proj_input + self.dense_proj(proj_input))


class TransformerDecoder(keras.layers.Layer):
    def __init__(self, embed_dim, latent_dim, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.attention_1 = keras.layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.attention_2 = keras.layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.dense_proj = keras.Sequential(
            [keras.layers.Dense(latent_dim, activation="relu"), keras.layers.Dense(embed_dim)]
        )
        self.layernorm_1 = keras.layers.LayerNormalization()
        self.layernorm_2 = keras.layers.LayerNormalization()
        self.layernorm_3 = keras.layers.LayerNormalization()
        self.supports_masking = True

    def call(self, inputs, encoder_outputs, mask=None):
        causal_mask = self.get_causal_attention_mask(inputs)
        padding_mask = causal_mask
        if mask is not None:
            padding_mask = ops.minimum(ops.cast(mask[:, None, :], "int32"), causal_mask)
        attention_output_1 = self.attention_1(
            query=inputs, value=inputs, key=inputs, attention_mask=causal_mask
        )
        out_1 = self.layernorm_1(inputs + attention_output_1)
        attention_output_2 = self.attention_2(
            query=out_1, value=encoder_outputs, key=encoder_outputs, attention_mask=padding_mask
        )
        out_2 = self.layernorm_2(out_1 + attention_output_2)
        return self.layernorm_3(out_2 + self.dense_proj(out_2))

    def get_causal_attention_mask(self, inputs):
        length = ops.shape(inputs)[1]
        i = ops.arange(length)[:, None]
        j = ops.arange(length)
        mask = ops.cast(i >= j, "int32")[None]
        return ops.tile(mask, (ops.shape(inputs)[0], 1, 1))


def keras_io_transformer(vocab_size: int) -> keras.Model:
    encoder_inputs = keras.Input(shape=(None,), dtype="int64", name="encoder_inputs")
    x = PositionalEmbedding(SEQ, vocab_size, EMBED)(encoder_inputs)
    encoder_outputs = TransformerEncoder(EMBED, LATENT, HEADS)(x)
    decoder_inputs = keras.Input(shape=(None,), dtype="int64", name="decoder_inputs")
    encoded_seq_inputs = keras.Input(shape=(None, EMBED), name="decoder_state_inputs")
    x = PositionalEmbedding(SEQ, vocab_size, EMBED)(decoder_inputs)
    x = TransformerDecoder(EMBED, LATENT, HEADS)(x, encoded_seq_inputs)
    x = keras.layers.Dropout(0.5)(x)
    decoder_outputs = keras.layers.Dense(vocab_size, activation="softmax")(x)
    decoder = keras.Model([decoder_inputs, encoded_seq_inputs], decoder_outputs)
    decoder_outputs = decoder([decoder_inputs, encoder_outputs])
    return keras.Model([encoder_inputs, decoder_inputs], decoder_outputs, name="transformer")


TRANSFORMER_PATHS = {
    "transformer_encoder/attention": ("encoder_inputs", "encoder_inputs"),
    "functional/transformer_decoder/attention_1": ("decoder_inputs", "decoder_inputs"),
    "functional/transformer_decoder/attention_2": ("decoder_inputs", "encoder_inputs"),
}


@pytest.fixture(scope="module")
def transformer_data():
    rng = np.random.default_rng(1)
    # Source and target of the same length: lengths alone cannot tell them apart.
    source = _ids(rng, [SEQ] * 16, SEQ, vocab=50)
    target = _ids(rng, [SEQ] * 16, SEQ, vocab=50)
    target[:, 0] = 1  # "[start]"
    y = np.roll(target, -1, axis=1)
    return source, target, y


def test_keras_io_transformer_gets_the_right_tokens_on_every_axis(transformer_data, tmp_path):
    source, target, y = transformer_data
    keras.utils.set_random_seed(0)
    model = keras_io_transformer(50)
    assert {p for p, _ in find_attention_layers(model)} == set(TRANSFORMER_PATHS)
    probe = {"encoder_inputs": source[:2], "decoder_inputs": target[:2]}
    tokens = {name: [_tokens(r) for r in ids] for name, ids in probe.items()}
    logger = AttentionLogger(tmp_path, [source[:2], target[:2]], labels=tokens, images=False)
    model.compile("rmsprop", "sparse_categorical_crossentropy")
    model.fit([source, target], y, batch_size=8, epochs=1, verbose=0, callbacks=[logger])
    routes = Routes(tmp_path)
    for path, (queries, inputs) in TRANSFORMER_PATHS.items():
        for b in (0, 1):
            got = routes.matrix(f"{path}/{b}")
            assert got["shape"] == [HEADS, SEQ, SEQ]
            assert got["query_labels"] == tokens[queries][b], path
            assert got["input_labels"] == tokens[inputs][b], path


def test_keras_io_transformer_with_ambiguous_labels_stops_before_training(
    transformer_data, tmp_path
):
    source, target, y = transformer_data
    model = keras_io_transformer(50)
    model.compile("rmsprop", "sparse_categorical_crossentropy")
    logger = AttentionLogger(
        tmp_path,
        [source[:2], target[:2]],
        input_labels=[_tokens(r) for r in source[:2]],
        query_labels=[_tokens(r) for r in target[:2]],
    )
    with pytest.raises(ValueError, match=r"attends a sequence over itself.*labels=\{"):
        model.fit([source, target], y, batch_size=8, epochs=1, verbose=0, callbacks=[logger])
    assert int(model.optimizer.iterations.numpy()) == 0
    assert not (tmp_path / "attention").exists()


def test_layer_labels_name_the_sequence_of_each_axis(transformer_data, tmp_path):
    source, target, y = transformer_data
    model = keras_io_transformer(50)
    src = [_tokens(r) for r in source[:2]]
    tgt = [_tokens(r) for r in target[:2]]
    decoder = "functional/transformer_decoder"
    logger = AttentionLogger(
        tmp_path,
        [source[:2], target[:2]],
        labels={"encoder_inputs": src, "decoder_inputs": tgt},
        layer_labels={
            "transformer_encoder/attention": {"queries": src, "inputs": src},
            f"{decoder}/attention_2": {"queries": "decoder_inputs", "inputs": "encoder_inputs"},
        },
        layers=["transformer_encoder/attention", f"{decoder}/attention_2"],
        images=False,
        scalars=False,
    )
    model.compile("rmsprop", "sparse_categorical_crossentropy")
    model.fit([source, target], y, batch_size=8, epochs=1, verbose=0, callbacks=[logger])
    routes = Routes(tmp_path)
    got = routes.matrix(f"{decoder}/attention_2/1")
    assert got["query_labels"] == tgt[1] and got["input_labels"] == src[1]


# -- keras-io style Bahdanau models -------------------------------------------------------------


def bahdanau(layer: type) -> keras.Model:
    """A GRU encoder-decoder whose decoder states attend over the encoder's (Luong/Bahdanau)."""
    source = keras.Input((None,), dtype="int32", name="source")
    target = keras.Input((None,), dtype="int32", name="target")
    encoded, state = keras.layers.GRU(16, return_sequences=True, return_state=True)(
        keras.layers.Embedding(len(VOCAB), 16, mask_zero=True)(source)
    )
    decoded = keras.layers.GRU(16, return_sequences=True)(
        keras.layers.Embedding(len(VOCAB), 16, mask_zero=True)(target), initial_state=state
    )
    context = layer(name="attention")([decoded, encoded])
    merged = keras.layers.Concatenate()([decoded, context])
    out = keras.layers.Dense(len(VOCAB), activation="softmax")(merged)
    return keras.Model({"source": source, "target": target}, out, name="bahdanau")


@pytest.mark.parametrize("layer", [keras.layers.AdditiveAttention, keras.layers.Attention])
def test_bahdanau_models_on_keras_attention_layers(layer, tmp_path):
    rng = np.random.default_rng(2)
    # Probe example 0: source and target of the same real length.
    source = _ids(rng, [5, 6, *rng.integers(2, 8, size=14)], 7)
    target = _ids(rng, [5, 3, *rng.integers(2, 6, size=14)], 5)
    probe = {"source": source[:2], "target": target[:2]}
    tokens = {k: [_tokens(r) for r in v] for k, v in probe.items()}
    logger = AttentionLogger(tmp_path, probe, labels=tokens, images=False)
    model = bahdanau(layer)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(
        {"source": source, "target": target},
        target,
        batch_size=8,
        epochs=1,
        verbose=0,
        callbacks=[logger],
    )
    routes = Routes(tmp_path)
    for b in (0, 1):
        got = routes.matrix(f"attention/{b}")
        # The decoder states come from both inputs (the encoder's state starts the
        # decoder), but only the target has their length: its tokens label the queries.
        assert got["query_labels"] == tokens["target"][b]
        assert got["input_labels"] == tokens["source"][b]
        assert got["shape"] == [len(tokens["target"][b]), len(tokens["source"][b])]
        np.testing.assert_allclose(np.sum(got["values"], axis=-1), 1.0, atol=3e-3)
