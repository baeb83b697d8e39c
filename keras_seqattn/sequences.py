"""Ragged and padded sequences: the conversions and checks `SequenceAttention` needs.

Attention is computed on dense, padded tensors with a boolean mask of valid positions;
a `tf.RaggedTensor` is padded on the way in and its lengths come back on the way out.
"""

from __future__ import annotations

import tensorflow as tf
from keras import ops

_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")

try:  # Keras keeps this helper private; the attribute it sets is what Keras layers read.
    from keras.src.backend import set_keras_mask
except ImportError:  # pragma: no cover - older or newer Keras layouts

    def set_keras_mask(x, mask):
        x._keras_mask = mask


def is_ragged(x) -> bool:
    """True for a `tf.RaggedTensor` or a ragged symbolic `KerasTensor`."""
    return isinstance(x, tf.RaggedTensor) or bool(getattr(x, "ragged", False))


def dtype_name(x) -> str:
    dtype = x.dtype
    return getattr(dtype, "name", str(dtype))


_LAYOUTS = {3: "(batch, time, features)", 4: "(batch, time, heads, features)"}


def rank_message(name: str, shape: tuple, rank: int) -> str:
    """The error for a sequence of the wrong rank (3 without heads, 4 with them)."""
    if len(shape) == rank and shape[-1] is None:
        return f"The feature size (last axis) of `{name}` must be known; got shape {shape}."
    message = f"`{name}` must have rank {rank}, {_LAYOUTS[rank]}"
    if rank == 4:
        message += " with multi_head=True"
    message += f"; got shape {shape} (rank {len(shape)})."
    if rank == 4 and len(shape) == 3:
        message += (
            " Split the features into heads (e.g. with keras.layers.EinsumDense or "
            "ops.reshape), or use multi_head=False."
        )
    elif rank == 3 and len(shape) == 4:
        message += " For a head axis (axis 2), use SequenceAttention(multi_head=True)."
    return message


def check_sequence(x, name: str, rank: int = 3) -> None:
    """Raises a clear error unless `x` is a float sequence of `rank` (3, or 4 with heads)."""
    if x is None:
        raise ValueError(f"`{name}` is required: a {_LAYOUTS[rank]} float sequence.")
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(
            f"`{name}` must be a tensor, a tf.RaggedTensor or an array of shape "
            f"{_LAYOUTS[rank]}; got {type(x).__name__}."
        )
    if isinstance(x, tf.RaggedTensor) and x.ragged_rank != 1:
        raise ValueError(
            f"`{name}` may have one ragged dimension (its time axis); got a tf.RaggedTensor "
            f"with ragged_rank={x.ragged_rank}. Make the feature axis uniform, e.g. with "
            "`tf.RaggedTensor.from_row_lengths(values, lengths)` on a (total, features) tensor."
        )
    shape = tuple(x.shape)
    if len(shape) != rank or shape[-1] is None:
        raise ValueError(rank_message(name, shape, rank))
    if dtype_name(x) not in _FLOAT_DTYPES:
        raise TypeError(
            f"`{name}` must be a float tensor ({', '.join(_FLOAT_DTYPES)}); got dtype "
            f"{dtype_name(x)}. Embed token ids first, e.g. with keras.layers.Embedding."
        )


def check_not_distributed_ragged(inputs, query) -> None:
    """Refuses a model with ragged inputs built under a multi-replica strategy.

    Keras's `fit` under `tf.distribute` averages a first batch across replicas to
    build the model, and that step fails on tf.RaggedTensor ("'RaggedTensor' object
    has no attribute 'device'", NOTES §2), before any layer runs. Saying so when the
    model is built saves the user a confusing traceback.
    """
    if not (is_ragged(inputs) or is_ragged(query)) or not tf.distribute.has_strategy():
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


def to_padded(x):
    """Returns `(dense, lengths, index)` for a ragged `x`: its values padded with zeros to
    (batch, longest, ...), its row lengths, and where each value went in the padded
    tensor with its first two axes merged (for `to_ragged_like`). A dense tensor comes
    back as it is, with `None`s.
    """
    if not isinstance(x, tf.RaggedTensor):
        return x, None, None
    rows = x.value_rowids()
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


def lengths_to_mask(lengths, maxlen):
    """A (batch, maxlen) boolean mask that is True below each row's length."""
    return tf.sequence_mask(lengths, maxlen=maxlen)


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
    shape = tf.shape(weights)
    flat = tf.reshape(weights, tf.concat([[-1], shape[2:]], 0))  # (batch * h, m, n)
    per_head = tf.RaggedTensor.from_tensor(flat, lengths=tf.repeat(lengths, heads))
    return tf.RaggedTensor.from_uniform_row_length(per_head, heads)


def check_mask(mask, name: str):
    """Validates one (batch, time) padding mask and returns it as a boolean tensor."""
    if mask is None:
        return None
    mask = ops.convert_to_tensor(mask)
    if len(mask.shape) != 2:
        raise ValueError(f"`{name}` must have shape (batch, time); got shape {tuple(mask.shape)}.")
    if dtype_name(mask) != "bool":
        mask = ops.cast(mask, "bool")
    return mask
