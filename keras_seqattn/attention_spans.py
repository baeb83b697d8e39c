"""Which queries and inputs of a probe example are real: spans from the masks a layer sees.

The probe pass logs each example's attention matrix trimmed to the example's real
positions. Those are known from whatever padding information reaches the attention
layer's call, in this order of trust:

1. per-sequence masks: a Keras mask carried by the tensor (`Embedding(mask_zero=True)`,
   `Masking`, a layer's `compute_mask`), the layer's own mask arguments (`query_mask`,
   `value_mask`/`key_mask`, `inputs_mask`, `mask=[...]`), or a ragged tensor's row lengths;
2. an explicit `attention_mask` of shape `(batch, queries or 1, inputs)`: an input is real
   when at least one query may see it, a query when it may see at least one input. A
   `(batch, 1, inputs)` mask (KerasHub's `padding_mask` path) or a causal `(batch, T, T)`
   one says nothing about the queries;
3. for self-attention (the layer is called with the same tensor as queries and inputs), the
   queries are the inputs: the input positions serve both axes.

An axis with none of these is kept whole. The span of an example is from its first real
position to its last (left or right padding both trim; masked positions inside the span stay,
so that labels keep their order).

The masks are read with `keras.ops`, inside the probe pass on every backend (TensorFlow is
touched only for a `tf.RaggedTensor`, which only exists when TensorFlow is the backend and
already imported); `span` turns them into start and end in NumPy after the pass, where a
dozen eager ops per layer call would cost more than the rest of the reading.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from keras import ops

try:  # Keras keeps this helper private; it reads the attribute Keras layers set.
    from keras.src.backend import get_keras_mask
except ImportError:  # pragma: no cover - other Keras layouts

    def get_keras_mask(x):
        return getattr(x, "_keras_mask", None)


def is_ragged(x) -> bool:
    """True for a `tf.RaggedTensor` (without importing TensorFlow when nothing did)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(x, tf.RaggedTensor)


def dense(x):
    """A ragged tensor padded with zeros; anything else as it is."""
    return x.to_tensor() if is_ragged(x) else x


def keras_mask(x):
    """The Keras mask a tensor carries (None for None, non-tensors and ragged tensors)."""
    if x is None or is_ragged(x):
        return None
    try:
        return get_keras_mask(x)
    except Exception:  # noqa: BLE001 - some tensor types refuse attributes
        return None


def sequence_mask(x, length) -> Any | None:
    """`(batch, length)` booleans of the real positions of sequence `x`, if `x` says so.

    A ragged `x` says so by its row lengths; a dense one by the Keras mask it carries.
    """
    if x is None:
        return None
    if is_ragged(x):
        import tensorflow as tf  # only reached on TensorFlow, where it is loaded already

        return tf.sequence_mask(x.row_lengths(), maxlen=length)
    return keras_mask(x)


def combine(masks: Sequence[Any], batch, length) -> Any | None:
    """The logical and of `(batch, length)`-broadcastable masks (None entries skipped)."""
    combined = None
    for mask in masks:
        if mask is None or is_ragged(mask):
            continue
        mask = ops.cast(mask, "bool")
        if len(mask.shape) == 1:  # (length,): the same for every example
            mask = ops.expand_dims(mask, 0)
        if len(mask.shape) != 2:
            continue  # not a per-position mask (a caller's own convention): ignore it
        mask = ops.broadcast_to(mask, (batch, length))
        combined = mask if combined is None else ops.logical_and(combined, mask)
    return combined


def attention_mask_axes(attention_mask, batch, queries, inputs) -> tuple[Any, Any]:
    """(query mask or None, input mask) read from an explicit attention mask.

    `attention_mask` is `(inputs,)`, `(queries or 1, inputs)`, `(batch, queries or 1,
    inputs)` or `(batch, heads, queries or 1, inputs)`; true (non-zero) where a query may
    see an input. Queries are known only when the mask has a query axis longer than 1.
    """
    mask = ops.cast(attention_mask, "bool")
    rank = len(mask.shape)
    if rank == 4:  # (batch, heads, T, S): visible in any head
        mask = ops.any(mask, axis=1)
    while len(mask.shape) < 3:
        mask = ops.expand_dims(mask, 0)
    input_mask = ops.broadcast_to(ops.any(mask, axis=1), (batch, inputs))
    if mask.shape[1] == 1:
        return None, input_mask
    return ops.broadcast_to(ops.any(mask, axis=2), (batch, queries)), input_mask


def span(mask: np.ndarray | None, batch: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-example (start, end) of the real positions: first real one, last real one + 1.

    `mask` is a NumPy `(batch, length)` array (read after the probe pass); with no mask,
    the whole axis. An example without any real position gets (0, 0).
    """
    if mask is None:
        return np.zeros(batch, "int32"), np.full(batch, length, "int32")
    mask = np.asarray(mask, bool)
    positions = np.arange(length, dtype="int32")
    # `initial` gives rows without a real position (and an empty axis) their (0, 0).
    end = np.where(mask, positions + 1, 0).max(axis=1, initial=0)
    start = np.where(mask, positions, length).min(axis=1, initial=length)
    return np.where(end > 0, start, 0).astype("int32"), end.astype("int32")
