"""`tf.RaggedTensor` support of `SequenceAttention`: everything TensorFlow-specific, in one place.

Attention itself is computed on dense, padded tensors with boolean masks of valid
positions, written with `keras.ops` so that it runs on every backend. Ragged tensors are
TensorFlow's alone (Keras 3 has no ragged type on JAX or PyTorch, keras-team/keras#20073),
so this module is imported only when the backend is TensorFlow and a ragged tensor (or a
ragged symbolic `KerasTensor`) is actually seen (`sequences.ragged_support`). It pads a
`tf.RaggedTensor` on the way in, hands the padded batch and its masks to the layer's
dense attention, and gives the outputs the query's row partition on the way out.

Where inputs and query are both ragged and only the outputs are wanted (no weights, no
dropout, one head), padding is often mostly waste, so `attend` chooses per batch, with one
`tf.cond` on the row lengths (`_attend_in_tiles_or_padded`): tiles of real pairs
(`keras_seqattn.ragged_tiles`) when they hold at most half the padded pairs, else the
batch padded to its longest (`_padded_outputs`, which skips re-zeroing the zero padding
and masking padded queries, whose outputs it drops). The cond is not free: measured on
2 CPU cores it adds about a millisecond per training step (its two-branch gradient and the
untaken branch's operations), a tenth or more of a small batch's step. And a ragged batch
padded here has a shape unknown until run time, which costs about 10% against the same
padded batch given with static shapes (benchmarks/layer.py, the "padded with unknown length"
row). So an even or all-short ragged batch still costs more than the same batch padded and
masked by its caller (README, "Ragged batches"). With weights or dropout, both ragged
batches are split into a short and a long group, each padded to its own longest, when that
halves the padded work (`_attend_in_two_groups`).

Limits: one ragged dimension (the time axis); no `tf.distribute` strategy with several
replicas (Keras's distributed `fit` cannot take ragged batches, NOTES §2).
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
from keras import ops

from keras_seqattn.sequences import set_keras_mask

# attend_dense(inputs, query, inputs_mask, query_mask, return_attention_scores, training)
# -> (outputs, weights or None): the layer's attention on padded tensors.
DenseAttend = Callable


def check_ragged(x, name: str) -> None:
    """Raises a clear error unless a `tf.RaggedTensor` has one ragged dimension."""
    if isinstance(x, tf.RaggedTensor) and x.ragged_rank != 1:
        raise ValueError(
            f"`{name}` may have one ragged dimension (its time axis); got a tf.RaggedTensor "
            f"with ragged_rank={x.ragged_rank}. Make the feature axis uniform, e.g. with "
            "`tf.RaggedTensor.from_row_lengths(values, lengths)` on a (total, features) tensor."
        )


def check_same_rows(inputs, value) -> None:
    """Raises unless a ragged `value` has the row lengths of the ragged `inputs` (checked
    when the lengths can be read, eagerly; in a graph the layer trusts them)."""
    if not (isinstance(inputs, tf.RaggedTensor) and isinstance(value, tf.RaggedTensor)):
        return
    if not tf.executing_eagerly():
        return
    a, b = inputs.row_lengths().numpy().tolist(), value.row_lengths().numpy().tolist()
    if a != b:
        raise ValueError(
            f"`value` must have the row lengths of `inputs`; got inputs of lengths {a} and "
            f"value of lengths {b}."
        )


def check_not_distributed(inputs, query) -> None:
    """Refuses a model with ragged inputs built under a multi-replica strategy.

    Keras's `fit` under `tf.distribute` averages a first batch across replicas to
    build the model, and that step fails on tf.RaggedTensor ("'RaggedTensor' object
    has no attribute 'device'", NOTES §2), before any layer runs. Saying so when the
    model is built saves the user a confusing traceback.
    """
    if not tf.distribute.has_strategy():
        return
    if tf.distribute.get_strategy().num_replicas_in_sync <= 1:
        return
    raise ValueError(
        "SequenceAttention got ragged symbolic inputs under a tf.distribute strategy with "
        "several replicas; Keras's distributed fit() cannot take tf.RaggedTensor batches. "
        "Use padded inputs with a mask instead: keras.Input(shape=(None, d)) with "
        "Masking()/Embedding(mask_zero=True) or mask=[inputs_mask, query_mask], and pad the "
        "data at the dataset boundary, e.g. dataset.map(lambda x, y: (x.to_tensor(), y))."
    )


def attend(
    attend_dense: DenseAttend,
    inputs,
    query,
    inputs_mask,
    query_mask,
    return_attention_scores: bool,
    training,
    value=None,
    tile_options: dict | None = None,
):
    """The layer's attention where `inputs` or `query` (or both) is a `tf.RaggedTensor`.

    `value`, when given, is ragged like `inputs` (the layer checked it). `tile_options`:
    the fields of `ragged_tiles.TileSpec` when the layer's attention can be computed in
    tiles of real pairs (no dropout in this call, one head), else None. Returns what
    `SequenceAttention.call` returns: the outputs ragged on the query axis when `query`
    is ragged, and the weights with them when asked for (with heads, (batch, h, (m), n)).
    """
    both_ragged = (
        isinstance(inputs, tf.RaggedTensor)
        and isinstance(query, tf.RaggedTensor)
        and inputs_mask is None
        and query_mask is None
    )
    if both_ragged and tile_options is not None and value is None and not return_attention_scores:
        from keras_seqattn import ragged_tiles  # only once a ragged call needs it

        spec = ragged_tiles.TileSpec(**tile_options)
        return _attend_in_tiles_or_padded(attend_dense, spec, inputs, query, training)
    if both_ragged:
        return _attend_in_two_groups(
            attend_dense, inputs, query, return_attention_scores, training, value
        )
    return _attend_padded(
        attend_dense,
        inputs,
        query,
        inputs_mask,
        query_mask,
        return_attention_scores,
        training,
        value,
    )


def _attend_padded(
    attend_dense,
    inputs,
    query,
    inputs_mask,
    query_mask,
    return_attention_scores,
    training,
    value=None,
):
    """Attention on one batch, padded to its longest example."""
    ragged_query = query if isinstance(query, tf.RaggedTensor) else None
    inputs, input_lengths, _ = to_padded(inputs)
    query, query_lengths, query_index = to_padded(query)
    if value is not None:
        value, _, _ = to_padded(value)
    n, m = ops.shape(inputs)[1], ops.shape(query)[1]
    if input_lengths is not None:
        inputs_mask = _and(inputs_mask, tf.sequence_mask(input_lengths, maxlen=n))
    if query_lengths is not None:
        query_mask = _and(query_mask, tf.sequence_mask(query_lengths, maxlen=m))
    outputs, weights = attend_dense(
        inputs, query, inputs_mask, query_mask, return_attention_scores, training, value
    )
    if ragged_query is not None:
        outputs = to_ragged_like(outputs, ragged_query, query_index)
    elif query_mask is not None:
        # Downstream layers (a decoder RNN, a loss) should skip the padded queries.
        set_keras_mask(outputs, query_mask)
    if not return_attention_scores:
        return outputs
    if ragged_query is not None and len(weights.shape) == 4:  # heads: (batch, h, m, n)
        weights = heads_to_ragged(weights, ragged_query.row_lengths())
    elif ragged_query is not None:
        weights = to_ragged_like(weights, ragged_query, query_index)
    return outputs, weights


def _attend_in_tiles_or_padded(attend_dense, spec, inputs, query, training):
    """Outputs of ragged `inputs` and `query`: in tiles of real pairs when they hold at
    most half the padded pairs (`ragged_tiles.worth_tiling`), else padded. One `tf.cond`
    on the row lengths; both branches give the query's flat values, so only those cross it.
    """
    from keras_seqattn import ragged_tiles

    worth = ragged_tiles.worth_tiling(
        tf.cast(inputs.row_lengths(), tf.int64), tf.cast(query.row_lengths(), tf.int64)
    )
    flat = tf.cond(
        worth,
        lambda: ragged_tiles.attend_in_tiles(spec, inputs, query).flat_values,
        lambda: _padded_outputs(attend_dense, inputs, query, training),
    )
    return query.with_flat_values(flat)


def _padded_outputs(attend_dense, inputs, query, training):
    """The query's flat output values, ragged `inputs` and `query` padded to their longest.

    Leaner than `_attend_padded`: the padding is zeros whose gradient `to_padded` drops,
    so it need not be zeroed again, and padded query rows need no mask: their outputs are
    dropped on the way back (and send no gradient).
    """
    inputs, input_lengths, _ = to_padded(inputs)
    padded_query, _, query_index = to_padded(query)
    inputs_mask = tf.sequence_mask(input_lengths, maxlen=tf.shape(inputs)[1])
    outputs, _ = attend_dense(
        inputs, padded_query, inputs_mask, None, False, training, None, padding_is_zero=True
    )
    return _unpad(outputs, query.row_splits, query_index)


def _and(a, b):
    return b if a is None else ops.logical_and(a, b)


def _attend_in_two_groups(attend_dense, inputs, query, return_attention_scores, training, value):
    """Ragged inputs and query, without padding every example to the batch's longest.

    Padding is work: 28 examples of ~20 vectors and 4 of 128, all padded to 128, score
    32 * 128 * 128 pairs of which 85% are padding. Split the examples, by size, into
    a short and a long group (where the split minimises the padded work) and attend
    in each, padded to its own longest, when that saves enough. Same result per example.
    """
    first, second, worth_it = split_by_size(tf.maximum(inputs.row_lengths(), query.row_lengths()))
    return tf.cond(
        worth_it,
        lambda: _attend_groups(
            attend_dense, inputs, query, (first, second), return_attention_scores, training, value
        ),
        lambda: _attend_padded(
            attend_dense, inputs, query, None, None, return_attention_scores, training, value
        ),
    )


def _attend_groups(attend_dense, inputs, query, groups, return_attention_scores, training, value):
    first, second = groups
    outs, weights = [], []
    for group in (first, second):
        out, w = _attend_padded(
            attend_dense,
            tf.gather(inputs, group),
            tf.gather(query, group),
            None,
            None,
            True,
            training,
            None if value is None else tf.gather(value, group),
        )
        outs.append(out)
        weights.append(w)
    # Back to the batch's order, on the query's own row partition.
    back = tf.math.invert_permutation(tf.concat([first, second], 0))
    outputs = query.with_flat_values(tf.gather(tf.concat(outs, 0), back).flat_values)
    if not return_attention_scores:
        return outputs
    # Each group's weights are padded to its longest input; pad to the batch's.
    lengths = inputs.row_lengths()
    n = tf.reduce_max(tf.concat([lengths, tf.zeros([1], lengths.dtype)], 0))
    weights = [
        w.with_flat_values(
            tf.pad(w.flat_values, [[0, 0], [0, n - tf.shape(w.flat_values, lengths.dtype)[1]]])
        )
        for w in weights
    ]
    if weights[0].ragged_rank == 2:  # heads: (batch, h, (m), n), its own row partition
        return outputs, tf.gather(tf.concat(weights, 0), back)
    weights = query.with_flat_values(tf.gather(tf.concat(weights, 0), back).flat_values)
    return outputs, weights


def to_padded(x):
    """Returns `(dense, lengths, index)` for a ragged `x`: its values padded with zeros to
    (batch, longest, ...), its row lengths, and where each value went in the padded
    tensor with its first two axes merged (for `to_ragged_like`). A dense tensor comes
    back as it is, with `None`s.
    """
    if not isinstance(x, tf.RaggedTensor):
        return x, None, None
    rows = value_rowids(x.row_splits)
    lengths = x.row_lengths()
    longest = tf.reduce_max(tf.concat([lengths, tf.zeros([1], lengths.dtype)], 0))
    positions = tf.range(tf.shape(rows, out_type=rows.dtype)[0]) - tf.gather(x.row_starts(), rows)
    index = rows * longest + positions
    dense = _pad(x.flat_values, x.row_splits, index)
    dense.set_shape([x.shape[0], None, *x.shape[2:]])
    return dense, lengths, index


@tf.custom_gradient
def _pad(values, row_splits, index):
    dense = tf.RaggedTensor.from_row_splits(values, row_splits, validate=False).to_tensor()

    def grad(upstream):
        # The gradient of the real rows only. tf's own gradient of to_tensor() also
        # gathers every padded row with two boolean masks, to sum them into the default.
        return _merge_rows(upstream, index), None, None

    return dense, grad


@tf.custom_gradient
def _unpad(dense, row_splits, index):
    values = _merge_rows(dense, index)

    def grad(upstream):
        padded = tf.RaggedTensor.from_row_splits(upstream, row_splits, validate=False)
        return padded.to_tensor(shape=tf.shape(dense)), None, None

    return values, grad


def _merge_rows(dense, index):
    """The rows `index` of `dense` with its first two axes merged: (total, features)."""
    return tf.gather(tf.reshape(dense, tf.concat([[-1], tf.shape(dense)[2:]], 0)), index)


def split_by_size(sizes):
    """Splits examples in two groups, short and long, to pad each to its own longest.

    `sizes`: (batch,) integer lengths. Returns two int32 vectors of example ids and a
    boolean scalar, whether splitting is worth it. The split minimises the padded work,
    (number of examples) * longest**2 summed over the groups; either group may be empty.
    """
    order = tf.argsort(sizes, stable=True)
    ordered = tf.cast(tf.gather(sizes, order), tf.float32)
    batch = tf.shape(ordered)[0]
    # Split at k: the first group is order[:k], padded to ordered[k - 1] (0 when empty).
    longest_first = tf.concat([[0.0], ordered], 0)
    longest = longest_first[-1]
    k = tf.cast(tf.range(batch + 1), tf.float32)
    work = k * longest_first**2 + (tf.cast(batch, tf.float32) - k) * longest**2
    split = tf.argmin(work, output_type=tf.int32)
    # Two groups cost two passes of small ops and the gathers between them: worth it only
    # when they save at least half of the padded work (measured on 2 CPU cores: a batch
    # of uniform lengths split in two would be slower than one pass).
    worth_it = work[split] < 0.5 * work[0]
    return order[:split], order[split:], worth_it


def value_rowids(row_splits):
    """The row of every value, from a ragged tensor's `row_splits`: what its
    `value_rowids()` gives, in one `tf.searchsorted` (TensorFlow builds it from a boolean
    mask, a `Where` and about a dozen more small operations, each a cost in a graph that
    runs every training step)."""
    return tf.searchsorted(
        row_splits[1:], tf.range(row_splits[-1]), side="right", out_type=row_splits.dtype
    )


def to_ragged_like(dense, like, index):
    """Undoes `to_padded` on an output: the rows of `dense` where `like` has values,
    as a ragged tensor with `like`'s row partition (nothing to rebuild or validate).
    """
    return like.with_flat_values(_unpad(dense, like.row_splits, index))


def heads_to_ragged(weights, lengths):
    """Multi-head weights (batch, h, m, n), padded on the query axis m, as a ragged tensor
    of shape (batch, h, (m), n): a uniform head axis, then the query axis ragged with each
    example's `lengths` (int, (batch,)) in every head."""
    heads = weights.shape[1]
    if heads is None:
        heads = tf.shape(weights)[1]
    flat = tf.reshape(weights, tf.concat([[-1], tf.shape(weights)[2:]], 0))  # (batch * h, m, n)
    per_head = tf.RaggedTensor.from_tensor(flat, lengths=tf.repeat(lengths, heads))
    return tf.RaggedTensor.from_uniform_row_length(per_head, heads)
