"""The named scoring nets of `SequenceAttention`: "bilinear", "dot" and "additive".

A scoring net maps one input vector e (size d1) and one query vector q (size d2)
to a scalar score. Each named net here is a Keras layer with two ways in:

- `call({"input": e, "query": q})` scores matching pairs: shapes `(..., d1)` and
  `(..., d2)` give `(..., 1)`. This is the per-pair net a user extracts with
  `SequenceAttention.scoring_net`, as Wolfram's `NetExtract[layer, "ScoringNet"]`.
- `score_all(inputs, query)` scores every pair of a batch at once: `(B, n, d1)` and
  `(B, m, d2)` give `(B, m, n)`, with matrix products instead of a loop over pairs.

Both read the same weights, so the extracted net reproduces the layer exactly.
"""

from __future__ import annotations

from keras import initializers, layers, ops, saving

from keras_seqattn.blocked import additive_scores

SCORING_NAMES = ("bilinear", "dot", "additive")


class _PairScore(layers.Layer):
    """Shared plumbing of the named nets: the dict input and its validation."""

    def _split(self, pair):
        if not isinstance(pair, dict) or set(pair) != {"input", "query"}:
            got = sorted(pair) if isinstance(pair, dict) else type(pair).__name__
            raise ValueError(
                f"{type(self).__name__} expects a dict with keys 'input' and 'query'; got {got}."
            )
        return pair["input"], pair["query"]

    def compute_output_shape(self, input_shape):
        input_shape = input_shape["input"]
        return (*input_shape[:-1], 1)


@saving.register_keras_serializable(package="keras_seqattn")
class DotScore(_PairScore):
    """s(e, q) = q . e. Needs the input and query sizes to be equal; no weights."""

    def build(self, input_shape):
        d1, d2 = input_shape["input"][-1], input_shape["query"][-1]
        if d1 is not None and d2 is not None and d1 != d2:
            raise ValueError(
                "scoring='dot' needs inputs and query of the same feature size; got "
                f"inputs of size {d1} and query of size {d2}. Use scoring='bilinear' "
                "to score vectors of different sizes."
            )
        self.built = True

    def call(self, pair):
        e, q = self._split(pair)
        return ops.sum(e * q, axis=-1, keepdims=True)

    def score_all(self, inputs, query):
        return ops.matmul(query, ops.transpose(inputs, (0, 2, 1)))

    def fused_query(self, query):
        """The query in input space: s = fused_query(q) . e (`keras_seqattn.fused`)."""
        return query


@saving.register_keras_serializable(package="keras_seqattn")
class BilinearScore(_PairScore):
    """s(e, q) = q . (W e), with one weight W of shape (d2, d1) and no bias.

    Wolfram's default scoring net.
    """

    def __init__(self, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.kernel_initializer = initializers.get(kernel_initializer)

    def build(self, input_shape):
        d1, d2 = input_shape["input"][-1], input_shape["query"][-1]
        self.kernel = self.add_weight(
            name="kernel", shape=(d2, d1), initializer=self.kernel_initializer
        )
        self.built = True

    def call(self, pair):
        e, q = self._split(pair)
        projected = ops.matmul(e, ops.transpose(self.kernel))
        return ops.sum(q * projected, axis=-1, keepdims=True)

    def score_all(self, inputs, query):
        # Project the n inputs once (B, n, d2), then one batched product with the queries.
        keys = ops.matmul(inputs, ops.transpose(ops.cast(self.kernel, inputs.dtype)))
        return ops.matmul(query, ops.transpose(keys, (0, 2, 1)))

    def fused_query(self, query):
        """The query in input space: q . (W e) = (q W) . e (`keras_seqattn.fused`)."""
        return ops.matmul(query, ops.cast(self.kernel, query.dtype))

    def get_config(self):
        config = super().get_config()
        config["kernel_initializer"] = initializers.serialize(self.kernel_initializer)
        return config


@saving.register_keras_serializable(package="keras_seqattn")
class AdditiveScore(_PairScore):
    """s(e, q) = v . tanh(W1 e + W2 q), no biases (Bahdanau's score).

    Args:
        units: size of the hidden layer (the length of v). `None` takes the query size.
    """

    def __init__(self, units=None, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.kernel_initializer = initializers.get(kernel_initializer)

    def build(self, input_shape):
        d1, d2 = input_shape["input"][-1], input_shape["query"][-1]
        units = self.units or d2
        init = self.kernel_initializer
        self.input_kernel = self.add_weight(
            name="input_kernel", shape=(d1, units), initializer=init
        )
        self.query_kernel = self.add_weight(
            name="query_kernel", shape=(d2, units), initializer=init
        )
        self.score_vector = self.add_weight(name="score_vector", shape=(units,), initializer=init)
        self.built = True

    def call(self, pair):
        e, q = self._split(pair)
        hidden = ops.tanh(ops.matmul(e, self.input_kernel) + ops.matmul(q, self.query_kernel))
        return ops.sum(hidden * self.score_vector, axis=-1, keepdims=True)

    def score_all(self, inputs, query):
        dtype = inputs.dtype
        # Each input and each query is projected once; only the tanh is per pair.
        pe = ops.matmul(inputs, ops.cast(self.input_kernel, dtype))  # (B, n, u)
        pq = ops.matmul(query, ops.cast(self.query_kernel, dtype))  # (B, m, u)
        # Only the tanh is per pair; in blocks of units, so that no (B, m, n, u) tensor
        # is ever held, forward or backward (see `blocked`).
        return additive_scores(pq, pe, ops.cast(self.score_vector, dtype))

    def get_config(self):
        config = super().get_config()
        config["units"] = self.units
        config["kernel_initializer"] = initializers.serialize(self.kernel_initializer)
        return config


def named_scoring_net(name: str, units: int | None = None, dtype=None) -> _PairScore:
    """Returns a fresh named scoring layer; `units` only matters for "additive"."""
    if name == "dot":
        return DotScore(name="dot_score", dtype=dtype)
    if name == "bilinear":
        return BilinearScore(name="bilinear_score", dtype=dtype)
    if name == "additive":
        return AdditiveScore(units=units, name="additive_score", dtype=dtype)
    raise ValueError(
        f"`scoring` must be one of {', '.join(repr(n) for n in SCORING_NAMES)} or a Keras "
        f"layer/model; got {name!r}."
    )
