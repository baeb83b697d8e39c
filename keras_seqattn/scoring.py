"""The named scoring nets of `SequenceAttention`: "bilinear", "dot" and "additive".

A scoring net maps one input vector e (size d1) and one query vector q (size d2)
to a scalar score. Each named net here is a Keras layer with two ways in:

- `call({"input": e, "query": q})` scores matching pairs: shapes `(..., d1)` and
  `(..., d2)` give `(..., 1)`. This is the per-pair net a user extracts with
  `SequenceAttention.scoring_net`, as Wolfram's `NetExtract[layer, "ScoringNet"]`.
- `score_all(inputs, query)` scores every pair of a batch at once: `(B, n, d1)` and
  `(B, m, d2)` give `(B, m, n)`, with matrix products instead of a loop over pairs.

Both read the same weights, so the extracted net reproduces the layer exactly.

With heads (`SequenceAttention(multi_head=True)`, Wolfram's "MultiHead" -> True) each
named net holds one set of weights per head, stacked on a leading head axis: bilinear
W (h, d2, d1), additive W1 (h, d1, u), W2 (h, d2, u) and v (h, u); head k's slice is
exactly the single-head net's weight. Then

- `call` takes one pair per head, `(..., h, d1)` and `(..., h, d2)`, and gives
  `(..., h, 1)`: head k's pair scored by head k's weights;
- `score_all_heads(inputs, query)` scores every pair of every head at once:
  `(B, n, h, d1)` and `(B, m, h, d2)` give `(B, h, m, n)`, the layout of the weights.

The head count is read from the data when the net is built. `score_custom_pairs` is the
batched way in for a custom net (any Keras layer scoring vector pairs), which is shared
by all heads: it is called once on all pairs of all heads, never in a loop over heads.
"""

from __future__ import annotations

from keras import initializers, layers, ops, saving

from keras_seqattn.blocked import additive_scores

SCORING_NAMES = ("bilinear", "dot", "additive")


def _heads_of(input_shape, multi_head: bool):
    """The head count of a pair shape `{"input": (..., h, d1), ...}`, or None without heads."""
    if not multi_head:
        return None
    heads = input_shape["input"][-2]
    if heads is None:
        raise ValueError(
            f"multi_head=True needs a known head count (the second-to-last axis); got input "
            f"shape {tuple(input_shape['input'])}."
        )
    return int(heads)


class _PairScore(layers.Layer):
    """Shared plumbing of the named nets: the dict input and its validation.

    Args:
        multi_head: one set of weights per head (the second-to-last axis of the pairs).
    """

    def __init__(self, multi_head=False, **kwargs):
        super().__init__(**kwargs)
        self.multi_head = bool(multi_head)
        self.heads = None  # read from the data at build time when multi_head

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

    def get_config(self):
        config = super().get_config()
        config["multi_head"] = self.multi_head
        return config


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
        self.heads = _heads_of(input_shape, self.multi_head)
        self.built = True

    def call(self, pair):
        e, q = self._split(pair)
        return ops.sum(e * q, axis=-1, keepdims=True)

    def score_all(self, inputs, query):
        return ops.matmul(query, ops.transpose(inputs, (0, 2, 1)))

    def fused_query(self, query):
        """The query in input space: s = fused_query(q) . e (`keras_seqattn.fused`)."""
        return query

    def score_all_heads(self, inputs, query):
        return _dot_heads(inputs, query)


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
        self.heads = _heads_of(input_shape, self.multi_head)
        shape = (d2, d1) if self.heads is None else (self.heads, d2, d1)
        self.kernel = self.add_weight(
            name="kernel", shape=shape, initializer=_per_head(self.kernel_initializer, self.heads)
        )
        self.built = True

    def call(self, pair):
        e, q = self._split(pair)
        if self.heads is None:
            projected = ops.matmul(e, ops.transpose(self.kernel))
        else:  # (..., h, 1, d1) * (h, d2, d1) summed over d1: head k's W_k e_k
            projected = ops.sum(ops.expand_dims(e, -2) * self.kernel, axis=-1)
        return ops.sum(q * projected, axis=-1, keepdims=True)

    def score_all_heads(self, inputs, query):
        keys = ops.einsum("bnhe,hde->bnhd", inputs, ops.cast(self.kernel, inputs.dtype))
        return _dot_heads(keys, query)

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
        self.heads = _heads_of(input_shape, self.multi_head)
        head = () if self.heads is None else (self.heads,)
        # Three weights, three draws: with one unseeded initializer for all (it keeps a
        # fixed seed), W1 and W2 would start equal whenever d1 == d2.
        init = [_per_head(_reseeded(self.kernel_initializer, k), self.heads) for k in range(3)]
        self.input_kernel = self.add_weight(
            name="input_kernel", shape=(*head, d1, units), initializer=init[0]
        )
        self.query_kernel = self.add_weight(
            name="query_kernel", shape=(*head, d2, units), initializer=init[1]
        )
        self.score_vector = self.add_weight(
            name="score_vector", shape=(*head, units), initializer=init[2]
        )
        self.built = True

    def call(self, pair):
        e, q = self._split(pair)
        if self.heads is None:
            hidden = ops.matmul(e, self.input_kernel) + ops.matmul(q, self.query_kernel)
        else:  # (..., h, d, 1) * (h, d, u) summed over d: head k's W_k x_k
            hidden = ops.sum(ops.expand_dims(e, -1) * self.input_kernel, axis=-2) + ops.sum(
                ops.expand_dims(q, -1) * self.query_kernel, axis=-2
            )
        return ops.sum(ops.tanh(hidden) * self.score_vector, axis=-1, keepdims=True)

    def score_all(self, inputs, query):
        dtype = inputs.dtype
        # Each input and each query is projected once; only the tanh is per pair.
        pe = ops.matmul(inputs, ops.cast(self.input_kernel, dtype))  # (B, n, u)
        pq = ops.matmul(query, ops.cast(self.query_kernel, dtype))  # (B, m, u)
        # Only the tanh is per pair; in blocks of units, so that no (B, m, n, u) tensor
        # is ever held, forward or backward (see `blocked`).
        return additive_scores(pq, pe, ops.cast(self.score_vector, dtype))

    def score_all_heads(self, inputs, query):
        dtype = inputs.dtype
        pe = ops.einsum("bnhd,hdu->bhnu", inputs, ops.cast(self.input_kernel, dtype))
        pq = ops.einsum("bmhd,hdu->bhmu", query, ops.cast(self.query_kernel, dtype))
        # In blocks of units, as score_all: no (B, h, m, n, u) tensor (see `blocked`).
        return additive_scores(pq, pe, ops.cast(self.score_vector, dtype))

    def get_config(self):
        config = super().get_config()
        config["units"] = self.units
        config["kernel_initializer"] = initializers.serialize(self.kernel_initializer)
        return config


def _dot_heads(keys, query):
    """(B, n, h, d) keys and (B, m, h, d) queries -> dot products (B, h, m, n).

    The query goes first: on TensorFlow, Keras maps this einsum to one batched matmul
    whose result is already (B, h, m, n); keys first would transpose the (B, h, n, m)
    result, the largest tensor of the layer, once more forward and backward.
    """
    return ops.einsum("bmhd,bnhd->bhmn", query, keys)


def _reseeded(initializer, k: int):
    """A copy of `initializer` drawing with seed + k * 1_000_003 (apart from the per-head
    seeds of `_per_head`), or the initializer itself when it has no integer seed."""
    seed = getattr(initializer, "seed", None)
    if k == 0 or not isinstance(seed, int):
        return initializer
    return type(initializer).from_config({**initializer.get_config(), "seed": seed + k * 1_000_003})


def _per_head(initializer, heads):
    """The initializer for a stack of per-head weights, each head's slice drawn as the
    single-head weight would be.

    Not the initializer on the stacked shape: glorot's fans read from (h, d2, d1) count the
    head axis as a receptive field and shrink the scale. Not the same initializer h times
    either: an unseeded Keras initializer holds a fixed integer seed and draws the same
    values at every call (its docstring says so), which would start every head equal.
    Head k draws with seed + k, so head 0 starts as the single-head weight would.
    """
    if heads is None:
        return initializer
    seed = getattr(initializer, "seed", None)
    if isinstance(seed, int):
        config = initializer.get_config()
        draws = [type(initializer).from_config({**config, "seed": seed + k}) for k in range(heads)]
    else:  # a SeedGenerator advances by itself; a constant initializer has no seed
        draws = [initializer] * heads

    def init(shape, dtype=None):
        return ops.stack([draw(shape[1:], dtype=dtype) for draw in draws])

    return init


def score_custom_pairs(net, inputs, query, multi_head: bool):
    """A custom scoring net on every pair of a batch, in one call of the net.

    Without heads, `(B, n, d1)` and `(B, m, d2)` give `(B, m, n)`; with heads, `(B, n, h,
    d1)` and `(B, m, h, d2)` give `(B, h, m, n)`: the same net scores every head's pairs.
    """
    d1, d2 = inputs.shape[-1], query.shape[-1]
    batch, n, m = ops.shape(inputs)[0], ops.shape(inputs)[1], ops.shape(query)[1]
    if multi_head:
        heads = inputs.shape[2]
        inputs = ops.transpose(inputs, (0, 2, 1, 3))  # (B, h, n, d1)
        query = ops.transpose(query, (0, 2, 1, 3))  # (B, h, m, d2)
        grid = (batch, heads, m, n)
    else:
        grid = (batch, m, n)
    pairs_e = ops.broadcast_to(ops.expand_dims(inputs, -3), (*grid, d1))
    pairs_q = ops.broadcast_to(ops.expand_dims(query, -2), (*grid, d2))
    scores = net({"input": ops.reshape(pairs_e, (-1, d1)), "query": ops.reshape(pairs_q, (-1, d2))})
    return ops.reshape(scores, grid)


def named_scoring_net(
    name: str, units: int | None = None, dtype=None, multi_head: bool = False
) -> _PairScore:
    """Returns a fresh named scoring layer; `units` only matters for "additive"."""
    if name == "dot":
        return DotScore(name="dot_score", dtype=dtype, multi_head=multi_head)
    if name == "bilinear":
        return BilinearScore(name="bilinear_score", dtype=dtype, multi_head=multi_head)
    if name == "additive":
        return AdditiveScore(units=units, name="additive_score", dtype=dtype, multi_head=multi_head)
    raise ValueError(
        f"`scoring` must be one of {', '.join(repr(n) for n in SCORING_NAMES)} or a Keras "
        f"layer/model; got {name!r}."
    )
