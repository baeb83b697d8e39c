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
against the chunk's maximum (`tf.math.unsorted_segment_max`, its gradient stopped: the
shift cancels in the softmax), and sums and weighted values are added up per query chunk
with `tf.math.unsorted_segment_sum`. The result equals the padded computation up to float
rounding (sums run in another order); queries that see nothing give zeros, as there.

The tile shape is chosen per batch (`tile_sizes`): TILE x TILE where that saves at least
half the padded pairs, otherwise one tile per example, which is the padded layout. Both
go through the same graph, so no `tf.cond` is paid for (its gradient alone cost more
than the attention of a small batch, measured on 2 CPU cores).

Limits: the weights are not formed as a (batch, m, n) tensor here, so a call that asks for
them, or applies dropout to them, takes the padded path (`keras_seqattn.ragged`). The
gathers and segment sums cost more small operations than a padded softmax: a batch of even
lengths is somewhat slower ragged than padded (benchmarks/layer.py, "ragged, uniform").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

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
    every slot's value is in `x.flat_values` (one past the end for slots past an
    example's end, where `_gather_rows` puts a zero row), the example of each chunk, the
    position of every slot within its example, and whether the slot holds a value.
    """
    within = tf.ragged.range((lengths + size - 1) // size)
    example = within.value_rowids()
    position = within.flat_values[:, None] * size + tf.range(size, dtype=lengths.dtype)[None, :]
    valid = position < tf.gather(lengths, example)[:, None]
    flat = tf.gather(x.row_starts(), example)[:, None] + position
    total = tf.shape(x.flat_values, out_type=lengths.dtype)[0]
    return tf.where(valid, flat, total), example, position, valid


def _gather_rows(x, index):
    """x.flat_values[index], with zeros where index is one past the end: (S, T, d)."""
    padded = tf.concat([x.flat_values, tf.zeros_like(x.flat_values[:1])], 0)
    return tf.gather(padded, index)


def _longest(lengths):
    return tf.reduce_max(tf.concat([lengths, tf.ones([1], lengths.dtype)], 0))


def tile_sizes(input_lengths, query_lengths):
    """The tile shape for this batch: (query positions, input positions), int64 scalars.

    (TILE, TILE) when those tiles hold at most half the pairs that padding to the batch's
    longest would; otherwise one tile per example, (longest query, longest input): the
    padded layout itself. Chosen per batch without a `tf.cond`, whose two-branch gradient
    cost more than the whole attention on small batches (measured on 2 CPU cores).
    """
    chunks = ((query_lengths + TILE - 1) // TILE) * ((input_lengths + TILE - 1) // TILE)
    tiled = tf.reduce_sum(chunks) * TILE * TILE
    longest_q, longest_e = _longest(query_lengths), _longest(input_lengths)
    padded = tf.size(query_lengths, out_type=tf.int64) * longest_q * longest_e
    small = 2 * tiled <= padded
    tile = tf.constant(TILE, tf.int64)
    return tf.where(small, tile, longest_q), tf.where(small, tile, longest_e)


def attend_in_tiles(spec: TileSpec, inputs: tf.RaggedTensor, query: tf.RaggedTensor, sizes=None):
    """The layer's outputs for ragged `inputs` and `query`, ragged like `query`.

    `sizes`: the tile shape (query positions, input positions); `tile_sizes` by default.
    """
    input_lengths = tf.cast(inputs.row_lengths(), tf.int64)
    query_lengths = tf.cast(query.row_lengths(), tf.int64)
    tq, te = tile_sizes(input_lengths, query_lengths) if sizes is None else sizes
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
    tile_q = tiles.value_rowids()  # the query chunk of each tile
    tile_e = tf.gather(e_first_chunk, tile_q) + tiles.flat_values  # its input chunk

    # One gather per side, straight from the flat values (one gradient each).
    e = _gather_rows(inputs, tf.gather(e_index, tile_e))
    q = _gather_rows(query, tf.gather(q_index, tile_q))
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

    floor = tf.constant(np.finfo(dtype.as_numpy_dtype).min / 2, dtype)
    scores = tf.where(visible, scores, floor)
    # The shift of a softmax cancels: no gradient through the chunk's maximum.
    top = tf.stop_gradient(tf.math.unsorted_segment_max(tf.reduce_max(scores, -1), tile_q, num_q))
    exp = tf.exp(scores - tf.gather(top, tile_q)[:, :, None])
    exp = tf.where(visible, exp, tf.zeros((), dtype))
    total = tf.math.unsorted_segment_sum(tf.reduce_sum(exp, -1), tile_q, num_q)  # (Cq, T)
    # A query that sees nothing has total 0: its weights, hence output, stay 0.
    safe = tf.where(total > 0, total, tf.ones_like(total))
    weights = exp / tf.gather(safe, tile_q)[:, :, None]
    values = tf.cast(e, spec.compute_dtype)
    out = tf.matmul(tf.cast(weights, spec.compute_dtype), values)  # (S, T, d1)
    out = tf.math.unsorted_segment_sum(out, tile_q, num_q)  # (Cq, T, d1)

    # Back to the query's flat values: slot (chunk, p % T) of each query position.
    rows = query.value_rowids()
    pos = tf.range(tf.shape(rows, out_type=rows.dtype)[0]) - tf.gather(query.row_starts(), rows)
    q_first_chunk = tf.cumsum((query_lengths + tq - 1) // tq, exclusive=True)
    slot = (tf.gather(q_first_chunk, rows) + pos // tq) * tq + pos % tq
    flat = tf.gather(tf.reshape(out, [-1, tf.shape(out)[-1]]), slot)
    return query.with_flat_values(flat)
