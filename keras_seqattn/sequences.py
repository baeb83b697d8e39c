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


def check_sequence(x, name: str) -> None:
    """Raises a clear error unless `x` is a float (batch, time, features) sequence."""
    if x is None:
        raise ValueError(f"`{name}` is required: a (batch, time, features) float sequence.")
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(
            f"`{name}` must be a tensor, a tf.RaggedTensor or an array of shape "
            f"(batch, time, features); got {type(x).__name__}."
        )
    if isinstance(x, tf.RaggedTensor) and x.ragged_rank != 1:
        raise ValueError(
            f"`{name}` may have one ragged dimension (its time axis); got a tf.RaggedTensor "
            f"with ragged_rank={x.ragged_rank}. Make the feature axis uniform, e.g. with "
            "`tf.RaggedTensor.from_row_lengths(values, lengths)` on a (total, features) tensor."
        )
    shape = tuple(x.shape)
    if len(shape) != 3:
        raise ValueError(
            f"`{name}` must have rank 3, (batch, time, features); got shape {shape} "
            f"(rank {len(shape)})."
        )
    if shape[-1] is None:
        raise ValueError(
            f"The feature size (last axis) of `{name}` must be known; got shape {shape}."
        )
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
    """Returns `(dense, lengths)`: a ragged tensor padded with zeros, and its row lengths.

    A dense tensor comes back as it is, with `lengths=None`.
    """
    if isinstance(x, tf.RaggedTensor):
        return x.to_tensor(), x.row_lengths()
    return x, None


def lengths_to_mask(lengths, maxlen):
    """A (batch, maxlen) boolean mask that is True below each row's length."""
    return tf.sequence_mask(lengths, maxlen=maxlen)


def to_ragged_like(dense, lengths):
    """Undoes `to_padded` on an output: keeps the first `lengths[b]` rows of example b."""
    return tf.RaggedTensor.from_tensor(dense, lengths=lengths)


def check_mask(mask, name: str):
    """Validates one (batch, time) padding mask and returns it as a boolean tensor."""
    if mask is None:
        return None
    mask = ops.convert_to_tensor(mask)
    if len(mask.shape) != 2:
        raise ValueError(
            f"`{name}` must have shape (batch, time); got shape {tuple(mask.shape)}."
        )
    if dtype_name(mask) != "bool":
        mask = ops.cast(mask, "bool")
    return mask
