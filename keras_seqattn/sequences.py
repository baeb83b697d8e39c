"""Padded sequences and their masks: the backend-neutral checks `SequenceAttention` needs.

Attention is computed on dense, padded tensors with a boolean mask of valid positions,
with `keras.ops` only, so this module (and the layer's dense path) never imports
TensorFlow. Ragged tensors are TensorFlow's: `ragged_support()` imports
`keras_seqattn.ragged` only when one is seen, and refuses them on JAX and PyTorch.
"""

from __future__ import annotations

import sys

import keras
from keras import ops

_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")

try:  # Keras keeps this helper private; the attribute it sets is what Keras layers read.
    from keras.src.backend import set_keras_mask
except ImportError:  # pragma: no cover - older or newer Keras layouts

    def set_keras_mask(x, mask):
        x._keras_mask = mask


def is_ragged(x) -> bool:
    """True for a `tf.RaggedTensor`, a ragged symbolic `KerasTensor` or a PyTorch nested
    tensor. Never imports TensorFlow: a `tf.RaggedTensor` exists only once it is imported.
    """
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(x, getattr(tf, "RaggedTensor", ())):
        return True
    return getattr(x, "ragged", False) is True or getattr(x, "is_nested", False) is True


def ragged_support(name: str | None = None, x=None):
    """The `keras_seqattn.ragged` module, imported on first use; TensorFlow only.

    Args:
        name: the argument that is ragged, for the error message.
        x: that argument, to name its type in the error message.

    Raises:
        ValueError: on JAX or PyTorch, saying what to do instead.
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        got = f"`{name}` is ragged (a {type(x).__name__}); " if name else ""
        raise ValueError(
            f"{got}SequenceAttention takes ragged sequences (tf.RaggedTensor, ragged "
            f"keras.Input) only on the TensorFlow backend; this is Keras on {backend!r}. "
            "Pad the sequences to a common length and pass a mask instead: "
            "keras.Input(shape=(None, d)) with Masking()/Embedding(mask_zero=True), or "
            "layer(inputs, query, mask=[inputs_mask, query_mask]) with boolean "
            "(batch, time) masks."
        )
    from keras_seqattn import ragged

    return ragged


def dtype_name(x) -> str:
    """`x`'s dtype as Keras names it ("float32", "bool", ...) on every backend."""
    return keras.backend.standardize_dtype(x.dtype)


def check_sequence(x, name: str) -> None:
    """Raises a clear error unless `x` is a float (batch, time, features) sequence."""
    if x is None:
        raise ValueError(f"`{name}` is required: a (batch, time, features) float sequence.")
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(
            f"`{name}` must be a tensor, a tf.RaggedTensor or an array of shape "
            f"(batch, time, features); got {type(x).__name__}."
        )
    if is_ragged(x):
        ragged_support(name, x).check_ragged(x, name)
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
