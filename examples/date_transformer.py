"""The date translation of `date_translation.py` with a small transformer instead of GRUs.

The same data, probes and logger as the GRU example (imported from it); the model is
an encoder-decoder transformer (Vaswani et al., 2017) whose every attention is a
multi-head `SequenceAttention` (Wolfram's AttentionLayer with "MultiHead" -> True):

* queries, keys and values are projected per head with `EinsumDense`, to
  (batch, time, heads, key_dim), and the attended heads are merged back by one more
  `EinsumDense`, as inside `keras.layers.MultiHeadAttention`;
* the encoder attends over the source characters with multi-head self-attention,
  masked to each example's own length (the source arrives as a `tf.RaggedTensor` and
  is padded at the model's boundary, as in the GRU example);
* the decoder attends causally over the ISO characters written so far, then over the
  encoded source (cross-attention);
* `SequenceAttention("dot", multi_head=True, score_rescaling="dim_sqrt")` is the scaled
  dot product of the transformer; the `AttentionLogger` logs every head of the three
  attentions, and the TensorBoard tab's head selector shows them one by one.

Run it:

    python examples/date_transformer.py              # train, evaluate, save, log
    python examples/date_transformer.py --epochs 6   # better dates
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quiet_start import start_quietly  # noqa: E402

start_quietly()  # before TensorFlow is imported: no C++ start-up lines on the terminal

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import date_translation as dates  # noqa: E402

from keras_seqattn import SequenceAttention  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(HERE, "output", "date_transformer.keras")
MAX_SOURCE = 64  # longest source text the position embedding covers


@keras.saving.register_keras_serializable(package="date_transformer")
class Projection(layers.EinsumDense):
    """`EinsumDense` that passes the padding mask on: its equations here keep the batch
    and time axes, so a (batch, time) mask still marks the same positions. (Keras's own
    `EinsumDense` drops masks, since an equation may mix the time axis.)"""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.supports_masking = True


@keras.saving.register_keras_serializable(package="date_transformer")
class PositionEmbedding(layers.Layer):
    """Adds a learned embedding of each position (0, 1, ...) to a (batch, time, d) input."""

    def __init__(self, max_length: int, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length
        self.supports_masking = True

    def build(self, input_shape):
        self.positions = self.add_weight(
            name="positions", shape=(self.max_length, input_shape[-1]), initializer="normal"
        )

    def call(self, x):
        return x + ops.cast(self.positions[: ops.shape(x)[1]], x.dtype)

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length}


def attention_block(x, context, heads, key_dim, name, causal=False):
    """Multi-head attention of `x` (the queries) over `context`, residual and normalised.

    Returns (batch, time of x, d_model). With `context` = `x`, self-attention. The
    source's padding mask (from `Embedding(mask_zero=True)`) travels with the tensors
    as a Keras mask, through the projections, to `SequenceAttention`: padding never
    gets weight, and padded queries give zero rows.
    """
    d_model = x.shape[-1]

    def project(tensor, role):
        return Projection(
            "btd,dhk->bthk", output_shape=(None, heads, key_dim), name=f"{name}_{role}"
        )(tensor)

    # The weights are asked for so that `cross_attention_model` can return them too.
    attended, _ = SequenceAttention(
        "dot",
        multi_head=True,
        score_rescaling="dim_sqrt",
        mask="causal" if causal else None,
        name=name,
    )(
        project(context, "key"),
        project(x, "query"),
        project(context, "value"),
        return_attention_scores=True,
    )  # (batch, time, heads, key_dim)
    merged = Projection("bthk,hkd->btd", output_shape=(None, d_model), name=f"{name}_out")(attended)
    return layers.LayerNormalization(name=f"{name}_norm")(layers.Add()([x, merged]))


def feed_forward(x, hidden, name):
    d_model = x.shape[-1]
    h = layers.Dense(hidden, activation="relu", name=f"{name}_hidden")(x)
    h = layers.Dense(d_model, name=f"{name}_out")(h)
    return layers.LayerNormalization(name=f"{name}_norm")(layers.Add()([x, h]))


def build_model(d_model: int = 64, heads: int = 4, key_dim: int = 16) -> keras.Model:
    """One encoder and one decoder layer, every attention a multi-head SequenceAttention."""
    source = keras.Input(shape=(None,), dtype="int32", ragged=True, name="source")
    decoder_input = keras.Input(shape=(dates.TARGET_LEN,), dtype="int32", name="decoder_input")

    ids = dates.RaggedToPadded(name="to_padded")(source)
    x = layers.Embedding(
        len(dates.SOURCE_CHARS) + 1, d_model, mask_zero=True, name="source_embedding"
    )(ids)
    x = PositionEmbedding(MAX_SOURCE, name="source_positions")(x)
    x = attention_block(x, x, heads, key_dim, "encoder_attention")
    encoded = feed_forward(x, 2 * d_model, "encoder_ff")

    y = layers.Embedding(dates.DECODER_VOCAB, d_model, name="target_embedding")(decoder_input)
    y = PositionEmbedding(dates.TARGET_LEN, name="target_positions")(y)
    # Character j may look at the characters written before it and itself, never after.
    y = attention_block(y, y, heads, key_dim, "decoder_attention", causal=True)
    y = attention_block(y, encoded, heads, key_dim, "cross_attention")
    y = feed_forward(y, 2 * d_model, "decoder_ff")
    logits = layers.Dense(len(dates.OUTPUT_CHARS), name="logits")(y)
    return keras.Model([source, decoder_input], logits, name="date_transformer")


def cross_attention_model(model: keras.Model) -> keras.Model:
    """The same graph, also returning the cross-attention weights averaged over the heads,
    (batch, 10, source length): what `date_translation.greedy_translate` reads."""
    _, weights = model.get_layer("cross_attention").output  # (batch, heads, 10, n)
    return keras.Model(model.inputs, [model.output, ops.mean(weights, axis=1)])


@dataclass
class Result:
    accuracy: float
    losses: list[float]
    train_seconds: float
    model_path: str


def train(
    epochs: int = 4,
    samples: int = 20_000,
    test_samples: int = 500,
    batch_size: int = 128,
    seed: int = 0,
    log_dir: str | None = None,
    log_every_steps: int | None = None,
    model_path: str | None = DEFAULT_MODEL,
    verbose: int | str = "auto",
) -> Result:
    """Trains, evaluates on held-out dates (greedy decoding), saves; prints the figures."""
    keras.utils.set_random_seed(seed)
    train_dates, test_dates = dates.split_dates(samples, test_samples, seed)
    model = build_model()
    dates.compile_model(model, learning_rate=2e-3)
    callbacks = []
    if log_dir:
        callbacks.append(dates.attention_logger(log_dir, every_n_steps=log_every_steps))
    started = time.perf_counter()
    history = model.fit(
        dates.dataset(train_dates, batch_size, shuffle=True, seed=seed),
        epochs=epochs,
        callbacks=callbacks,
        verbose=verbose,
    )
    train_seconds = time.perf_counter() - started
    isos, _ = dates.greedy_translate(cross_attention_model(model), [d.text for d in test_dates])
    accuracy = float(np.mean([p == d.iso for p, d in zip(isos, test_dates, strict=True)]))
    print(f"training time: {train_seconds:.1f} s ({epochs} epochs, {samples} dates)")
    print(f"exact match on {len(test_dates)} held-out dates: {accuracy:.2%}")
    if model_path:
        os.makedirs(os.path.dirname(os.path.abspath(model_path)), exist_ok=True)
        model.save(model_path)
        print(f"model saved to {model_path}")
    return Result(accuracy, list(history.history["loss"]), train_seconds, model_path or "")


def run_name() -> str:
    return f"date_transformer-{datetime.datetime.now():%Y%m%d-%H%M%S}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--samples", type=int, default=20_000, help="training dates")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logdir", default=dates.DEFAULT_LOGDIR, help="'' to log nothing")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="where to save the model")
    args = parser.parse_args(argv)
    train(
        epochs=args.epochs,
        samples=args.samples,
        batch_size=args.batch_size,
        seed=args.seed,
        log_dir=os.path.join(args.logdir, run_name()) if args.logdir else None,
        model_path=args.model or None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
