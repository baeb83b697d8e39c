"""Ragged attention that scores only tiles holding real pairs (TensorFlow only).

Padding a ragged batch to its longest example makes every example cost what the longest
costs: 28 examples of about 20 vectors and 4 of 128, padded to 128, score 32 * 128 * 128
pairs of which about nine in ten are padding. Here each example's queries and inputs are
cut into chunks of `TILE` consecutive positions, and only the (query chunk, input chunk)
tiles of the same example are scored: sum_b ceil(m_b / T) * ceil(n_b / T) tiles of T x T
pairs, about a tenth of the padded pairs on such a batch. With a causal mask, tiles that
lie wholly above the diagonal (or before the window) are not even built.

All tiles have the same shape, so they are scored in one batched call of the layer's own
scoring (`score_all` on (tiles, T, d) tensors: any named or custom net). The softmax over
one query's inputs spans the tiles of its query chunk: each tile's exponentials are taken
against the chunk's maximum (`tf.math.unsorted_segment_max`), and sums and weighted values
are added up per query chunk with `tf.math.unsorted_segment_sum` (`_softmax_and_sum`).
That step has its own gradient, written as flash attention writes it (two batched
products and two elementwise passes over the tiles), because TensorFlow's gradient of the
max-shift, exponentials, masks, segment sums and division was about ten passes and the
larger part of this path's cost. Slots past an example's end (its last chunk is partly
empty) hold copies of its first vector, kept out of every result by the masks. The result
equals the padded computation up to float rounding (sums run in another order); queries
that see nothing give zeros, as there.

Tiles win only where they skip much padding. `worth_tiling` says, per batch, whether
TILE x TILE tiles hold at most half the pairs that padding to the batch's longest would;
`keras_seqattn.ragged` then takes this path, or else attends the batch padded, with one
`tf.cond` on the row lengths. (An earlier version ran even batches here as "one tile per
example", to avoid a cond, but its gathers and segment sums made a batch of even lengths
1.4 to 1.9 times as slow as padded.)

Limits: the weights are not formed as a (batch, m, n) tensor here, so a call that asks for
them, or applies dropout to them, takes the padded path. Small batched products are slow
on a CPU: TensorFlow runs (S, 32, 64) x (S, 64, 32) at about a quarter of the floating-point
rate of a padded batch's (B, 128, 64) x (B, 64, 128) on 2 cores, and the products are about
half of this path's time (TensorFlow's profiler), so a skewed batch scoring a ninth of the
padded pairs costs 0.55 to 0.75 of the padded time, not a ninth (benchmarks/layer.py,
"ragged, skewed"; README, "Ragged batches").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from keras_seqattn.ragged import value_rowids

# Positions per chunk. 32 keeps short examples (tens of vectors) to one tile and gives
# each batched product enough work; benchmarks/layer.py, "ragged" cases.
TILE = 32


@dataclass(frozen=True)
class TileSpec:
    """What the tiled path needs of the layer.

    score_all: (S, T, d1), (S, T, d2) -> raw scores (S, T, T) in float32 or float64.
    causal, window: the layer's mask option. score_rescaling: None, "dim_sqrt" or
    "length_sqrt". input_dim: d1. compute_dtype: the layer's compute dtype.
    """

    score_all: object
    causal: bool
    window: int | None
    score_rescaling: str | None
    input_dim: int
    compute_dtype: str


def _chunks(x, lengths, size):
    """Chunks of `size` positions of every example of a ragged `x` (integer tables only).

    Returns `(index, example, position, valid)`, each (C, size) but `example` (C,): where
    every slot's value is in `x.flat_values`, the example of each chunk, the position of
    every slot within its example, and whether the slot holds a value. A slot past its
    example's end points at the example's first value (a chunk exists only where the
    example has one): a copy that the masks keep out of every result, and whose gradient
    is zero, which saves padding the values with a zero row (a copy of them, and a slice
    of their gradient).
    """
    within = tf.ragged.range((lengths + size - 1) // size)
    example = value_rowids(within.row_splits)
    position = within.flat_values[:, None] * size + tf.range(size, dtype=lengths.dtype)[None, :]
    valid = position < tf.gather(lengths, example)[:, None]
    start = tf.gather(x.row_starts(), example)[:, None]
    return start + tf.where(valid, position, 0), example, position, valid


def _longest(lengths):
    return tf.reduce_max(tf.concat([lengths, tf.ones([1], lengths.dtype)], 0))


def worth_tiling(input_lengths, query_lengths):
    """Whether TILE x TILE tiles hold at most half the pairs that padding to the batch's
    longest would (a boolean scalar, from the (batch,) int64 row lengths). Where they do
    not, `keras_seqattn.ragged` attends the batch padded instead."""
    chunks = ((query_lengths + TILE - 1) // TILE) * ((input_lengths + TILE - 1) // TILE)
    tiled = tf.reduce_sum(chunks) * TILE * TILE
    longest_q, longest_e = _longest(query_lengths), _longest(input_lengths)
    padded = tf.size(query_lengths, out_type=tf.int64) * longest_q * longest_e
    return 2 * tiled <= padded


def _softmax_and_sum(scores, values, visible, tile_q, num_q):
    """Per query chunk, the softmax over all its tiles' scores, times the tiles' values.

    scores (S, Tq, Te) in float32/64, values (S, Te, d) in the compute dtype, visible
    (S, Tq, Te) boolean, tile_q (S,) the query chunk of each tile, num_q the number of
    query chunks. Returns (num_q, Tq, d). A query that sees nothing gets zeros.

    Its own gradient, as flash attention writes it: with the normalised weights P kept
    from the forward pass and G the upstream gradient, dV = P^T G and
    dS = P * (G V^T - rowsum(G * O)). Two batched products and two elementwise passes over
    the tiles, where TensorFlow's gradient of the max-shift, exp, masks, segment sums and
    division took about ten (the cost of this path on small tiles).
    """
    dtype = scores.dtype
    floor = tf.constant(np.finfo(dtype.as_numpy_dtype).min / 2, dtype)

    @tf.custom_gradient
    def core(scores, values):
        scores = tf.where(visible, scores, floor)
        # The shift of a softmax cancels: the chunk's maximum needs no gradient of its own.
        top = tf.math.unsorted_segment_max(tf.reduce_max(scores, -1), tile_q, num_q)
        exp = tf.where(visible, tf.exp(scores - tf.gather(top, tile_q)[:, :, None]), 0.0)
        total = tf.math.unsorted_segment_sum(tf.reduce_sum(exp, -1), tile_q, num_q)
        # A query that sees nothing has total 0: its weights, hence output, stay 0.
        inverse = tf.where(total > 0, 1.0 / tf.where(total > 0, total, 1.0), 0.0)
        p = exp * tf.gather(inverse, tile_q)[:, :, None]  # the weights, (S, Tq, Te)
        weights = tf.cast(p, values.dtype)
        out = tf.math.unsorted_segment_sum(tf.matmul(weights, values), tile_q, num_q)

        def grad(upstream):
            g = tf.gather(upstream, tile_q)  # (S, Tq, d)
            d_values = tf.matmul(weights, g, transpose_a=True)
            d_weights = tf.cast(tf.matmul(g, values, transpose_b=True), dtype)
            row = tf.cast(tf.gather(tf.reduce_sum(upstream * out, -1), tile_q), dtype)
            return p * (d_weights - row[:, :, None]), d_values

        return out, grad

    return core(scores, values)


def attend_in_tiles(spec: TileSpec, inputs: tf.RaggedTensor, query: tf.RaggedTensor, sizes=None):
    """The layer's outputs for ragged `inputs` and `query`, ragged like `query`.

    `sizes`: the tile shape (query positions, input positions), (TILE, TILE) by default
    (tests force small tiles so that every example spans several).
    """
    input_lengths = tf.cast(inputs.row_lengths(), tf.int64)
    query_lengths = tf.cast(query.row_lengths(), tf.int64)
    tq, te = (TILE, TILE) if sizes is None else sizes
    tq, te = tf.cast(tq, tf.int64), tf.cast(te, tf.int64)
    e_index, _, e_pos, e_valid = _chunks(inputs, input_lengths, te)
    q_index, q_example, q_pos, _ = _chunks(query, query_lengths, tq)
    num_q = tf.shape(q_index, out_type=tf.int64)[0]

    # For each query chunk, the input chunks of its example it may see: [lo, hi).
    e_chunks = (input_lengths + te - 1) // te
    e_first_chunk = tf.gather(tf.cumsum(e_chunks, exclusive=True), q_example)
    hi = tf.gather(e_chunks, q_example)
    lo = tf.zeros_like(hi)
    if spec.causal:
        first_q = q_pos[:, 0]  # the chunk's first query position
        # The chunk's last query sees positions <= first_q + tq - 1.
        hi = tf.minimum(hi, (first_q + tq - 1) // te + 1)
        if spec.window is not None:
            # Its first query sees positions > first_q - window.
            lo = tf.maximum(lo, (first_q - spec.window + 1) // te)
        hi = tf.maximum(hi, lo)
    tiles = tf.ragged.range(lo, hi)
    tile_q = value_rowids(tiles.row_splits)  # the query chunk of each tile
    tile_e = tf.gather(e_first_chunk, tile_q) + tiles.flat_values  # its input chunk

    # One gather per side, straight from the flat values (one gradient each).
    e = tf.gather(inputs.flat_values, tf.gather(e_index, tile_e))
    q = tf.gather(query.flat_values, tf.gather(q_index, tile_q))
    scores = spec.score_all(e, q)  # (S, T, T): [tile, query slot, input slot]
    dtype = scores.dtype

    visible = tf.gather(e_valid, tile_e)[:, None, :]
    q_at = tf.gather(q_pos, tile_q)[:, :, None]
    e_at = tf.gather(e_pos, tile_e)[:, None, :]
    if spec.causal:
        visible = tf.logical_and(visible, e_at <= q_at)
        if spec.window is not None:
            visible = tf.logical_and(visible, e_at > q_at - spec.window)

    if spec.score_rescaling == "dim_sqrt":
        scores = scores / math.sqrt(spec.input_dim)
    elif spec.score_rescaling == "length_sqrt":
        # Inputs each query sees, as the padded path counts them (at least 1).
        seen = tf.gather(input_lengths, q_example)[:, None]  # (Cq, 1)
        if spec.causal:
            last = tf.minimum(q_pos, seen - 1)
            first = tf.zeros_like(q_pos)
            if spec.window is not None:
                first = tf.maximum(first, q_pos - spec.window + 1)
            seen = tf.maximum(last - first + 1, 0)
        count = tf.cast(tf.maximum(seen, 1), dtype)
        scores = (
            scores / tf.gather(tf.broadcast_to(tf.sqrt(count), tf.shape(q_pos)), tile_q)[:, :, None]
        )

    values = tf.cast(e, spec.compute_dtype)
    out = _softmax_and_sum(scores, values, visible, tile_q, num_q)  # (Cq, T, d1)

    # Back to the query's flat values: slot (chunk, p % T) of each query position.
    rows = value_rowids(query.row_splits)
    pos = tf.range(tf.shape(rows, out_type=rows.dtype)[0]) - tf.gather(query.row_starts(), rows)
    q_first_chunk = tf.cumsum((query_lengths + tq - 1) // tq, exclusive=True)
    slot = (tf.gather(q_first_chunk, rows) + pos // tq) * tq + pos % tq
    flat = tf.gather(tf.reshape(out, [-1, tf.shape(out)[-1]]), slot)
    return query.with_flat_values(flat)
