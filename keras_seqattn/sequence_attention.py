"""`SequenceAttention`: Wolfram's SequenceAttentionLayer for Keras 3."""

from __future__ import annotations

import math
import numbers

import numpy as np
from keras import Input as KerasInput
from keras import KerasTensor, Model, layers, ops, random, saving

from keras_seqattn import fused, sequences
from keras_seqattn.runtime_checks import check_same_size
from keras_seqattn.scoring import SCORING_NAMES, named_scoring_net, score_custom_pairs
from keras_seqattn.sequences import set_keras_mask

RESCALINGS = (None, "length_sqrt", "dim_sqrt")


# The largest causal window: positions are int32 on every backend, so a wider window
# sees exactly what this one sees (use "causal" for no window at all).
MAX_WINDOW = 2**31 - 1


def _parse_mask_option(mask):
    """`None | "causal" | ("causal", window)` -> `(causal, window)`.

    The window may be any integral number (Python or NumPy int), 1 <= window <= 2**31 - 1.
    """
    if mask is None:
        return False, None
    if isinstance(mask, str) and mask == "causal":
        return True, None
    if isinstance(mask, (list, tuple)) and len(mask) == 2 and mask[0] == "causal":
        window = mask[1]
        if not isinstance(window, numbers.Integral) or isinstance(window, (bool, np.bool_)):
            raise TypeError(
                "The window of `mask=('causal', window)` must be an integer (int or a NumPy "
                f"integer); got {type(window).__name__}: {window!r}."
            )
        if not 1 <= int(window) <= MAX_WINDOW:
            raise ValueError(
                "The window of `mask=('causal', window)` must be in [1, 2**31 - 1] (the "
                f"number of inputs each query sees, itself included); got {int(window)}. "
                "Use mask='causal' for no window."
            )
        return True, int(window)
    raise ValueError(
        "`mask` must be None, 'causal' or ('causal', window) with an integer window >= 1; "
        f"got {mask!r}. (Padding masks go to call(): layer(inputs, query, mask=[...]).)"
    )


def _check_value_lengths(inputs, value) -> None:
    """Raises unless `value` has the lengths of `inputs`, where they can be read now."""
    if sequences.is_ragged(inputs) != sequences.is_ragged(value):
        raise ValueError(
            "`value` must be aligned with `inputs` position by position: both ragged or both "
            f"dense; got inputs {type(inputs).__name__} and value {type(value).__name__}."
        )
    if sequences.is_ragged(inputs):
        sequences.ragged_support("value", value).check_same_rows(inputs, value)
        return
    a, b = tuple(inputs.shape)[:2], tuple(value.shape)[:2]
    if all(x is not None for x in (*a, *b)) and a != b:
        raise ValueError(
            "`value` must have the batch size and length of `inputs`, position by position; "
            f"got inputs of shape {tuple(inputs.shape)} and value of shape {tuple(value.shape)}."
        )


def _zero_padding(x, mask):
    """`x` (batch, time, ...) with zeros where the (batch, time) `mask` is False."""
    while len(mask.shape) < len(x.shape):
        mask = ops.expand_dims(mask, -1)
    return ops.where(mask, x, ops.zeros((), x.dtype))


@saving.register_keras_serializable(package="keras_seqattn")
class SequenceAttention(layers.Layer):
    """Attention of a query sequence over an input sequence, as Wolfram's layer.

    For every query vector q_j and every input vector e_i a scoring net gives a
    score s_ji = f(e_i, q_j); the weights are w_j = softmax_i(s_j) over the input
    vectors the query may see, and the output is o_j = sum_i w_ji e_i. The input
    vectors are both the keys and the values, so there is one output vector of the
    input size d1 per query vector, unless a separate `value` sequence is given
    (Wolfram's AttentionLayer): then o_j = sum_i w_ji v_i, of the value size dv.

    With `multi_head=True` the second-to-last axis of inputs, query and value is a
    head axis (Wolfram's "MultiHead" -> True, the layout of projected tensors inside
    `keras.layers.MultiHeadAttention`): every head attends on its own slices, with its
    own scoring weights and the same masks and options, and the outputs keep the head
    axis. The head count is read from the data when the layer is built.

    Both sequences may have lengths that vary per example, independently: pass a
    `tf.RaggedTensor` (one ragged dimension, the time axis) or a padded dense
    tensor with a padding mask (an implicit Keras mask from
    `Embedding(mask_zero=True)` or `Masking`, or `mask=[inputs_mask, query_mask]`
    in the call). Padded positions never receive weight.

    Args:
        scoring: the scoring net f(e, q). "bilinear" (default, Wolfram's):
            s = q . (W e) with W of shape (d2, d1) and no bias; "dot": s = q . e
            (needs d1 == d2); "additive": s = v . tanh(W1 e + W2 q), no biases; or
            a Keras layer or model taking a dict `{"input": (..., d1),
            "query": (..., d2)}` and returning one score per pair, of shape
            (..., 1) or (...). With heads, the named nets hold one weight per head,
            stacked on a leading head axis: bilinear W (h, d2, d1), additive
            W1 (h, d1, u), W2 (h, d2, u) and v (h, u), head k's slice being that
            head's single-head weight; a custom net scores vector pairs and is shared
            by all heads (it is called once on all pairs of all heads).
        units: hidden size of the "additive" net. Defaults to the query size d2.
        mask: None, "causal" (query j sees inputs i <= j) or ("causal", w)
            (query j sees inputs j - w < i <= j). Positions count from the start
            of each example.
        score_rescaling: None, "length_sqrt" (divide the scores by the square root
            of the number of inputs the query can see) or "dim_sqrt" (by sqrt(d1),
            the input size of one head).
        dropout: fraction of the attention weights dropped in training, in [0, 1).
        seed: seed of the dropout.
        multi_head: whether the second-to-last axis of inputs, query and value is a
            head axis (see above).
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: (batch, n, d1) float tensor or tf.RaggedTensor; (batch, n, h, d1)
            with `multi_head=True`. The keys, and the values when `value` is None.
        query: (batch, m, d2) float tensor or tf.RaggedTensor; (batch, m, h, d2)
            with `multi_head=True`.
        value: optional (batch, n, dv) values ((batch, n, h, dv) with heads),
            aligned with `inputs` position by position: the same lengths (ragged with
            the same row lengths when `inputs` is ragged); the inputs' padding mask
            applies to it (and a Keras mask it carries is combined with it).
        mask: optional list `[inputs_mask, query_mask]` of boolean (batch, n) and
            (batch, m) masks, each may be None; combined with implicit Keras masks.
        return_attention_scores: also return the attention weights.
        training: dropout on the weights is active only when True.

    Returns:
        The outputs, (batch, m, d1) ((batch, m, dv) with `value`; (batch, m, h, d1
        or dv) with heads): ragged on the query axis when `query` is ragged,
        otherwise dense with zero rows at padded queries (and the query mask
        attached as the Keras mask). With `return_attention_scores=True`, a tuple
        `(outputs, weights)`: weights of shape (batch, m, n) ((batch, h, m, n) with
        heads, the layout of `MultiHeadAttention`), softmax over the input axis,
        before dropout. Their query axis is ragged when `query` is; their input
        axis is always padded to the longest input of the batch, with exact zeros
        at positions an example does not have.
    """

    def __init__(
        self,
        scoring="bilinear",
        units=None,
        mask=None,
        score_rescaling=None,
        dropout=0.0,
        seed=None,
        multi_head=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(multi_head, bool):
            raise TypeError(f"`multi_head` must be True or False; got {multi_head!r}.")
        self.multi_head = multi_head
        if isinstance(scoring, str):
            self.scorer = named_scoring_net(
                scoring, units, dtype=self.dtype_policy, multi_head=multi_head
            )
        elif isinstance(scoring, layers.Layer):
            self.scorer = scoring
        else:
            raise TypeError(
                f"`scoring` must be one of {', '.join(repr(n) for n in SCORING_NAMES)} or a "
                f"Keras layer/model; got {type(scoring).__name__}: {scoring!r}."
            )
        if units is not None:
            if scoring != "additive":
                raise ValueError(
                    f"`units` is only used by scoring='additive'; got units={units!r} with "
                    f"scoring={scoring!r}."
                )
            if not isinstance(units, int) or isinstance(units, bool) or units < 1:
                raise ValueError(f"`units` must be a positive integer; got {units!r}.")
        self.scoring = scoring if isinstance(scoring, str) else None
        self.units = units
        self.causal, self.window = _parse_mask_option(mask)
        if score_rescaling not in RESCALINGS:
            raise ValueError(
                f"`score_rescaling` must be one of {RESCALINGS}; got {score_rescaling!r}."
            )
        self.score_rescaling = score_rescaling
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise TypeError(f"`dropout` must be a float in [0, 1); got {dropout!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1); got {dropout!r}.")
        self.dropout = float(dropout)
        self.seed = seed
        if self.dropout > 0:
            self.seed_generator = random.SeedGenerator(seed)
        self.supports_masking = True
        self._input_dim = None
        self._query_dim = None
        self._heads = None

    def __call__(self, inputs, query=None, *args, **kwargs):
        # Check before Keras builds the layer: build() sees shapes only, and a nested
        # ragged tensor or an int tensor would otherwise fail with a vaguer message.
        rank = 4 if self.multi_head else 3
        sequences.check_sequence(inputs, "inputs", rank)
        sequences.check_sequence(query, "query", rank)
        value = args[0] if args else kwargs.get("value")
        if value is not None:
            sequences.check_sequence(value, "value", rank)
            _check_value_lengths(inputs, value)
        mask = kwargs.get("mask")
        if isinstance(mask, (list, tuple)) and len(mask) == 2:
            for index, (each, of) in enumerate(zip(mask, ("inputs", "query"), strict=True)):
                if each is not None:
                    sequences.check_mask_type(each, f"mask[{index}]", of)
        if self.built:
            for name, x, size in (
                ("inputs", inputs, self._input_dim),
                ("query", query, self._query_dim),
            ):
                if x.shape[-1] != size:
                    raise ValueError(
                        f"This SequenceAttention layer ({self.name!r}) was built for `{name}` "
                        f"of feature size {size}; got shape {tuple(x.shape)}. A layer's "
                        "weights fix its sizes: use a new layer for other sizes."
                    )
        return super().__call__(inputs, query, *args, **kwargs)

    @property
    def attention_mask(self):
        """The `mask` option as given: None, "causal" or ("causal", window)."""
        if not self.causal:
            return None
        return "causal" if self.window is None else ("causal", self.window)

    def build(self, inputs_shape, query_shape, value_shape=None):
        shapes = {"inputs": inputs_shape, "query": query_shape}
        if value_shape is not None:
            shapes["value"] = value_shape
        rank = 4 if self.multi_head else 3
        for name, shape in shapes.items():
            if len(shape) != rank or shape[-1] is None:
                raise ValueError(sequences.rank_message(name, tuple(shape), rank))
        b1, b2 = inputs_shape[0], query_shape[0]
        if b1 is not None and b2 is not None and b1 != b2:
            raise ValueError(
                f"`inputs` and `query` must have the same batch size; got {b1} and {b2}."
            )
        if value_shape is not None:
            for axis, what in ((0, "batch size"), (1, "length (axis 1)")):
                a, b = inputs_shape[axis], value_shape[axis]
                if a is not None and b is not None and a != b:
                    raise ValueError(
                        f"`value` must have the {what} of `inputs`, position by position; "
                        f"got inputs of shape {tuple(inputs_shape)} and value of shape "
                        f"{tuple(value_shape)}."
                    )
        if self.multi_head:
            heads = {name: shape[2] for name, shape in shapes.items()}
            if None in heads.values() or len(set(heads.values())) != 1:
                got = ", ".join(f"{name} {h}" for name, h in heads.items())
                raise ValueError(
                    "multi_head=True needs the same known head count (axis 2) in "
                    f"{', '.join(f'`{name}`' for name in heads)}; got {got}."
                )
            self._heads = int(inputs_shape[2])
        self._input_dim, self._query_dim = int(inputs_shape[-1]), int(query_shape[-1])
        head = () if self._heads is None else (self._heads,)
        pair_shape = {
            "input": (None, *head, self._input_dim),
            "query": (None, *head, self._query_dim),
        }
        if self.scoring is not None:
            self.scorer.build(pair_shape)
        else:
            self._check_custom_scorer()
        self.built = True

    def _check_custom_scorer(self):
        """Builds a custom scoring net symbolically and checks it gives one score per pair."""
        pair = {
            "input": KerasTensor((None, self._input_dim)),
            "query": KerasTensor((None, self._query_dim)),
        }
        try:
            out = self.scorer(pair)
        except Exception as err:
            raise ValueError(
                "A custom scoring net must accept a dict {'input': (..., d1), 'query': "
                f"(..., d2)}} with d1={self._input_dim} and d2={self._query_dim}; calling "
                f"{self.scorer.name!r} on it failed: {err}"
            ) from err
        shape = tuple(getattr(out, "shape", ()))
        if not isinstance(out, KerasTensor) or shape not in ((None,), (None, 1)):
            raise ValueError(
                "A custom scoring net must return one score per (input, query) pair, of "
                f"shape (..., 1) or (...); {self.scorer.name!r} returned "
                f"{shape if isinstance(out, KerasTensor) else type(out).__name__} for a "
                "batch of pairs of shape (None, d)."
            )

    def _check_custom_scores(self, scores, pairs):
        """A custom net declares its output shape when built; check what it really gives."""
        shape = tuple(getattr(scores, "shape", ()))
        message = (
            f"The custom scoring net {self.scorer.name!r} must return one score per (input, "
            f"query) pair: shape (pairs, 1) or (pairs,) for a batch of pairs; it returned "
            f"shape {shape} for {pairs} pairs. Check its call() (and compute_output_shape)."
        )
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise ValueError(message)
        return check_same_size(scores, ops.shape(scores)[0], pairs, message)

    @property
    def scoring_net(self) -> Model:
        """The scoring net as a Keras model, sharing its weights with this layer.

        Inputs `{"input": (batch, d1), "query": (batch, d2)}`, output one score per
        pair. Scoring every input vector against one query vector and taking the
        softmax over the inputs reproduces the layer's weights for that query.

        With `multi_head=True`: inputs `{"input": (batch, h, d1), "query": (batch,
        h, d2)}`, one pair per head, and output (batch, h, 1): head k's pair scored
        by head k's net (a custom net is the same for every head). Scoring every input
        position against one query position and taking the softmax over the positions
        gives that query's row of weights of every head.
        """
        if not self.built:
            raise ValueError(
                "`scoring_net` is available once the layer is built: call the layer on "
                "data, or call `layer.build(inputs_shape, query_shape)` first."
            )
        head = () if self._heads is None else (self._heads,)
        pair = {
            "input": KerasInput((*head, self._input_dim), name="input"),
            "query": KerasInput((*head, self._query_dim), name="query"),
        }
        if self._heads is not None and self.scoring is None:
            # The shared custom net scores vector pairs: one batch of all heads' pairs.
            flat = {
                "input": ops.reshape(pair["input"], (-1, self._input_dim)),
                "query": ops.reshape(pair["query"], (-1, self._query_dim)),
            }
            scores = ops.reshape(self.scorer(flat), (-1, self._heads, 1))
        else:
            scores = self.scorer(pair)
        return Model(pair, scores, name=f"{self.name}_scoring_net")

    def _score_all(self, inputs, query):
        """(B, n, d1), (B, m, d2) -> raw scores (B, m, n) in at least float32.

        With heads: (B, n, h, d1), (B, m, h, d2) -> (B, h, m, n).
        """
        if self.multi_head:
            if self.scoring is None:
                scores = score_custom_pairs(self.scorer, inputs, query, multi_head=True)
                dtype = "float64" if sequences.dtype_name(scores) == "float64" else "float32"
                return ops.cast(scores, dtype)
            score_dtype = "float64" if sequences.dtype_name(inputs) == "float64" else "float32"
            return self.scorer.score_all_heads(
                ops.cast(inputs, score_dtype), ops.cast(query, score_dtype)
            )
        if self.scoring is not None:
            # Named nets score in float32 (or float64), whatever the compute dtype:
            # a float16 product of large vectors overflows to inf before any softmax.
            score_dtype = "float64" if sequences.dtype_name(inputs) == "float64" else "float32"
            return self.scorer.score_all(
                ops.cast(inputs, score_dtype), ops.cast(query, score_dtype)
            )
        # A custom net sees every (input, query) pair once, in one batched call.
        batch, n, m = ops.shape(inputs)[0], ops.shape(inputs)[1], ops.shape(query)[1]
        pairs_e = ops.broadcast_to(ops.expand_dims(inputs, 1), (batch, m, n, self._input_dim))
        pairs_q = ops.broadcast_to(ops.expand_dims(query, 2), (batch, m, n, self._query_dim))
        scores = self.scorer(
            {
                "input": ops.reshape(pairs_e, (-1, self._input_dim)),
                "query": ops.reshape(pairs_q, (-1, self._query_dim)),
            }
        )
        scores = self._check_custom_scores(scores, batch * m * n)
        scores = ops.reshape(scores, (batch, m, n))
        return ops.cast(
            scores, "float64" if sequences.dtype_name(scores) == "float64" else "float32"
        )

    def _visible_inputs(self, inputs_mask, n, m):
        """Boolean mask of the inputs each query may see, (B or 1, m or 1, n), or None.

        The query mask stays apart (see `_softmax`): ANDing it in here would build a
        (B, m, n) tensor where a (B, m, 1) one does.
        """
        visible = None
        if self.causal:
            q_pos = ops.expand_dims(ops.arange(m), 1)
            i_pos = ops.expand_dims(ops.arange(n), 0)
            visible = i_pos <= q_pos
            if self.window is not None:
                visible = ops.logical_and(visible, i_pos > q_pos - self.window)
            visible = ops.expand_dims(visible, 0)
        if inputs_mask is not None:
            m_in = ops.expand_dims(inputs_mask, 1)
            visible = m_in if visible is None else ops.logical_and(visible, m_in)
        return visible

    def _rescale(self, scores, valid, n):
        if self.score_rescaling == "dim_sqrt":
            return scores / math.sqrt(self._input_dim)
        if self.score_rescaling == "length_sqrt":
            if valid is None:
                count = ops.cast(n, scores.dtype)
            else:  # (B or 1, m or 1, 1), broadcast by the division
                count = ops.sum(ops.cast(valid, scores.dtype), axis=-1, keepdims=True)
            return scores / ops.sqrt(ops.maximum(count, 1.0))
        return scores

    def call(
        self,
        inputs,
        query,
        value=None,
        inputs_mask=None,
        query_mask=None,
        value_mask=None,
        mask=None,
        return_attention_scores=False,
        training=None,
    ):
        # `inputs`, `query` and `value` were checked by __call__, before Keras built
        # the layer.
        inputs_mask, query_mask = self._merge_masks(inputs_mask, query_mask, mask, inputs, query)
        if value_mask is not None:  # padding of the values is padding of the inputs
            inputs_mask = self._and(
                inputs_mask, sequences.check_mask(value_mask, "value_mask", value, "value")
            )
        if sequences.is_ragged(inputs) or sequences.is_ragged(query):
            return sequences.ragged_support().attend(
                self._attend,
                inputs,
                query,
                inputs_mask,
                query_mask,
                return_attention_scores,
                training,
                value=value,
                tile_options=self._tile_options(training),
            )
        query = check_same_size(
            query,
            ops.shape(query)[0],
            ops.shape(inputs)[0],
            "`inputs` and `query` must have the same batch size; batches are not broadcast.",
        )
        outputs, weights = self._attend(
            inputs, query, inputs_mask, query_mask, return_attention_scores, training, value
        )
        if query_mask is not None:
            # Downstream layers (a decoder RNN, a loss) should skip the padded queries.
            set_keras_mask(outputs, query_mask)
        if not return_attention_scores:
            return outputs
        return outputs, weights

    def _tile_options(self, training):
        """What `keras_seqattn.ragged_tiles` needs to attend over tiles of real pairs, or
        None where it cannot: dropout in training, several heads."""
        if (training and self.dropout > 0) or self.multi_head:
            return None
        return {
            "score_all": lambda e, q: self._score_all(
                ops.cast(e, self.compute_dtype), ops.cast(q, self.compute_dtype)
            ),
            "causal": self.causal,
            "window": self.window,
            "score_rescaling": self.score_rescaling,
            "input_dim": self._input_dim,
            "compute_dtype": self.compute_dtype,
        }

    def _attend(
        self,
        inputs,
        query,
        inputs_mask,
        query_mask,
        return_attention_scores,
        training,
        value=None,
        padding_is_zero=False,
    ):
        """Attention on one dense batch: `(outputs, weights)`, weights None unless asked for.

        Every backend's path; `keras_seqattn.ragged` calls it on padded ragged batches,
        with `padding_is_zero=True` where it padded them itself: zeros, whose gradient it
        drops, so the padding need not be zeroed again (two selects fewer each way).
        """
        n, m = ops.shape(inputs)[1], ops.shape(query)[1]
        inputs = ops.cast(inputs, self.compute_dtype)
        query = ops.cast(query, self.compute_dtype)
        fuse = (
            value is None
            and not self.multi_head
            and fused.can_fuse(
                self.scoring,
                return_attention_scores,
                bool(training) and self.dropout > 0,
                self.compute_dtype,
            )
        )
        separate_value = value is not None
        value = ops.cast(value, self.compute_dtype) if separate_value else inputs
        # Padding holds anything (NaN, inf): zero it, so that it reaches neither the
        # scores nor the output, nor any gradient (weight 0 times NaN would be NaN).
        if inputs_mask is not None and not padding_is_zero:
            inputs = _zero_padding(inputs, inputs_mask)
            # The inputs as values: zeroed once (one select fewer each way).
            value = _zero_padding(value, inputs_mask) if separate_value else inputs
        if query_mask is not None and not padding_is_zero:
            query = _zero_padding(query, query_mask)
        if fuse:
            # No weights needed: one fused kernel (cuDNN / flash attention on GPUs).
            outputs = fused.attend(
                self.scorer.fused_query(query),
                inputs,
                inputs_mask,
                query_mask,
                causal=self.causal,
                window=self.window,
                score_rescaling=self.score_rescaling,
            )
            return outputs, None
        scores = self._score_all(inputs, query)
        visible = self._visible_inputs(inputs_mask, n, m)
        if self.multi_head and visible is not None:
            visible = ops.expand_dims(visible, 1)  # the same for every head
        scores = self._rescale(scores, visible, n)
        weights, keep = self._softmax(scores, visible, query_mask)
        used = weights
        if training and self.dropout > 0:
            used = random.dropout(weights, self.dropout, seed=self.seed_generator)
        used = ops.cast(used, self.compute_dtype)
        if self.multi_head:
            # The contraction of keras.layers.MultiHeadAttention: (B, h, m, n) x (B, n, h, dv).
            outputs = ops.einsum("bhmn,bnhv->bmhv", used, value)
        else:
            outputs = ops.matmul(used, value)
        if keep is not None:
            # A zero weight row gives a zero output row: zero the (smaller) outputs, and
            # the weights only when they are returned.
            zero = ops.zeros((), outputs.dtype)
            outputs = ops.where(
                ops.transpose(keep, (0, 2, 1, 3)) if self.multi_head else keep, outputs, zero
            )
        if not return_attention_scores:
            return outputs, None
        if keep is not None:
            weights = ops.where(keep, weights, ops.zeros((), weights.dtype))
        return outputs, ops.cast(weights, self.compute_dtype)

    @staticmethod
    def _and(a, b):
        return b if a is None else ops.logical_and(a, b)

    def _merge_masks(self, inputs_mask, query_mask, mask, inputs, query):
        if mask is not None:
            if not isinstance(mask, (list, tuple)) or len(mask) != 2:
                raise ValueError(
                    "`mask` in call() must be a list [inputs_mask, query_mask] (either may be "
                    f"None); got {type(mask).__name__}"
                    f"{' of length ' + str(len(mask)) if isinstance(mask, (list, tuple)) else ''}."
                )
            inputs_mask = self._and(
                sequences.check_mask(inputs_mask, "the Keras mask of inputs", inputs, "inputs"),
                sequences.check_mask(mask[0], "mask[0]", inputs, "inputs"),
            )
            query_mask = self._and(
                sequences.check_mask(query_mask, "the Keras mask of query", query, "query"),
                sequences.check_mask(mask[1], "mask[1]", query, "query"),
            )
            return inputs_mask, query_mask
        inputs_mask = sequences.check_mask(
            inputs_mask, "the Keras mask of inputs", inputs, "inputs"
        )
        query_mask = sequences.check_mask(query_mask, "the Keras mask of query", query, "query")
        return inputs_mask, query_mask

    def _softmax(self, scores, visible, query_mask):
        """Softmax over the visible inputs, and the rows to keep (None: all).

        Scores (B, m, n), visible (B or 1, m or 1, n); with heads, a head axis after
        the batch axis in both. `keep` (B or 1, m or 1, 1) (with heads (B or 1, 1,
        m or 1, 1)) is False at the rows that must be zeros: padded queries, and
        queries that may see nothing. The caller zeroes them.
        """
        if visible is not None:
            # A finite floor instead of -inf, so that a row with nothing to see gives no
            # NaN, nor does its gradient; in a row that sees something, exp(floor - max)
            # is exactly 0. Half the most negative float: safe to subtract from. (A Python
            # float, exact in `dtype`: a NumPy scalar would break torch.compile's graph.)
            dtype = sequences.dtype_name(scores)
            floor = ops.convert_to_tensor(float(np.finfo(dtype).min) / 2, dtype=dtype)
            scores = ops.where(visible, scores, floor)
        weights = ops.softmax(scores, axis=-1)
        # Rows to zero: padded queries, and queries that see no input (an empty example,
        # where the floor alone would spread the weight evenly). A (B, m, 1) condition,
        # not a (B, m, n) one.
        keep = None if visible is None else ops.any(visible, axis=-1, keepdims=True)
        if query_mask is not None:
            q_keep = ops.expand_dims(query_mask, 2)
            if self.multi_head:
                q_keep = ops.expand_dims(q_keep, 1)
            keep = q_keep if keep is None else ops.logical_and(keep, q_keep)
        return weights, keep

    def compute_mask(self, inputs, previous_mask=None):
        # The output has one row per query: its mask is the query mask, which call()
        # attaches to the output; the inputs' mask must not travel on.
        return None

    def compute_output_spec(
        self,
        inputs,
        query,
        value=None,
        inputs_mask=None,
        query_mask=None,
        value_mask=None,
        mask=None,
        return_attention_scores=False,
        training=None,
    ):
        if sequences.is_ragged(inputs) or sequences.is_ragged(query):
            sequences.ragged_support().check_not_distributed(inputs, query)
        ragged = sequences.is_ragged(query)
        shape = self.compute_output_shape(
            inputs.shape, query.shape, None if value is None else value.shape
        )
        out = KerasTensor(shape, dtype=self.compute_dtype, ragged=ragged)
        if not return_attention_scores:
            return out
        batch, m, n = query.shape[0], query.shape[1], inputs.shape[1]
        head = (inputs.shape[2],) if self.multi_head else ()
        weights = KerasTensor((batch, *head, m, n), dtype=self.compute_dtype, ragged=ragged)
        return out, weights

    def compute_output_shape(self, inputs_shape, query_shape, value_shape=None):
        values = inputs_shape if value_shape is None else value_shape
        return (query_shape[0], query_shape[1], *values[2:])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "scoring": self.scoring
                if self.scoring is not None
                else saving.serialize_keras_object(self.scorer),
                "units": self.units,
                "mask": self.attention_mask,
                "score_rescaling": self.score_rescaling,
                "dropout": self.dropout,
                "seed": self.seed,
                "multi_head": self.multi_head,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("scoring"), dict):
            config["scoring"] = saving.deserialize_keras_object(config["scoring"])
        if isinstance(config.get("mask"), list):
            config["mask"] = tuple(config["mask"])
        return cls(**config)
