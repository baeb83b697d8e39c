"""Padded sequences and their masks: the backend-neutral checks `SequenceAttention` needs.

Attention is computed on dense, padded tensors with a boolean mask of valid positions,
with `keras.ops` only, so this module (and the layer's dense path) never imports
TensorFlow. Ragged tensors are TensorFlow's: `ragged_support()` imports
`keras_seqattn.ragged` only when one is seen, and refuses them on JAX and PyTorch.
"""

from __future__ import annotations

import sys

import keras
import numpy as np
from keras import ops

from keras_seqattn.runtime_checks import check_same_size

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
    try:
        return keras.backend.standardize_dtype(x.dtype)
    except (ValueError, TypeError):  # strings, objects: named as their library names them
        return str(getattr(x.dtype, "name", x.dtype))


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
    if is_ragged(x):
        ragged_support(name, x).check_ragged(x, name)
    shape = tuple(x.shape)
    if len(shape) != rank or shape[-1] is None:
        raise ValueError(rank_message(name, shape, rank))
    if dtype_name(x) not in _FLOAT_DTYPES:
        raise TypeError(
            f"`{name}` must be a float tensor ({', '.join(_FLOAT_DTYPES)}); got dtype "
            f"{dtype_name(x)}. Embed token ids first, e.g. with keras.layers.Embedding."
        )


def check_mask_type(mask, name: str, sequence_name: str):
    """The dtype part of `check_mask`, also run before Keras converts call arguments
    (a NumPy string array would fail there with a message that names nothing).
    Returns the mask (a NumPy array if it was a list) and its dtype name.
    """
    if is_ragged(mask):
        raise TypeError(
            f"`{name}` must be a dense boolean (batch, time) mask; got a ragged "
            f"{type(mask).__name__}. A ragged `{sequence_name}` needs no mask: its row "
            "lengths are its mask."
        )
    if not hasattr(mask, "shape") or not hasattr(mask, "dtype"):
        mask = np.asarray(mask)
    dtype = dtype_name(mask)
    if dtype != "bool" and not dtype.startswith(("int", "uint")):
        raise TypeError(
            f"`{name}` must be a boolean (batch, time) mask, True where `{sequence_name}` "
            f"has a vector (integer 0/1 is accepted too); got dtype {dtype}. For a float "
            "mask m, pass m > 0.5."
        )
    return mask, dtype


def check_mask(mask, name: str, sequence, sequence_name: str):
    """Validates one padding mask of `sequence` and returns it as a boolean tensor.

    A mask is boolean (True where the sequence has a vector) or integer 0/1 (nonzero
    counts as True, as a tokenizer's `attention_mask`), of shape (batch, time) equal to
    the sequence's first two axes. Floats are refused (is 0.2 visible?), and so are masks
    that would broadcast, such as (batch, 1) or (1, time).
    """
    if mask is None:
        return None
    mask, dtype = check_mask_type(mask, name, sequence_name)
    shape = tuple(mask.shape)
    expected = tuple(sequence.shape[:2])
    if len(shape) != 2:
        raise ValueError(
            f"`{name}` must have shape (batch, time) = {expected}, the first two axes of "
            f"`{sequence_name}`; got shape {shape}."
        )
    for axis, (got, want) in enumerate(zip(shape, expected, strict=True)):
        if got is not None and want is not None and got != want:
            raise ValueError(
                f"`{name}` must have shape (batch, time) = {expected}, the first two axes "
                f"of `{sequence_name}`; got shape {shape} (axis {axis}: {got} != {want}). "
                "Masks are not broadcast."
            )
    mask = ops.convert_to_tensor(mask)
    if not is_ragged(sequence):
        for axis, what in ((0, "batch"), (1, "time")):
            if shape[axis] is None or expected[axis] is None:
                mask = check_same_size(
                    mask,
                    ops.shape(mask)[axis],
                    ops.shape(sequence)[axis],
                    f"`{name}` must have the {what} size of `{sequence_name}` (axis {axis}); "
                    "masks are not broadcast.",
                )
    if dtype != "bool":
        mask = ops.not_equal(mask, ops.zeros((), mask.dtype))
    return mask
