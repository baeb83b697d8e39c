"""Checks of sizes that are known only when the computation runs (TensorFlow graphs).

JAX traces every function with static shapes and PyTorch runs eagerly, so there every
size the layer checks is a Python int and a mismatch is a `ValueError` at once. Only
TensorFlow's graphs (`tf.function`, `model.fit` with an unknown batch size) leave a
size as a tensor until the graph runs; there the check becomes a
`tf.debugging.assert_equal` with the same message, raised as `InvalidArgumentError`
when the graph runs (XLA compiles assertions away; there the ops fail as they would).
This is the layer's one piece of backend-specific code outside `keras_seqattn.ragged`;
it imports TensorFlow only where TensorFlow is the backend.
"""

from __future__ import annotations

import keras


def check_same_size(x, got, expected, message: str):
    """Returns `x` once two sizes (ints, or scalar tensors) are known to be equal.

    Raises `ValueError(message)` at once where both sizes are ints; in a TensorFlow graph
    returns `x` behind an assertion, so that nothing computed from it runs before the
    assertion has passed (an op without side effects is otherwise free to run first and
    fail with a message that names nothing).
    """
    if _is_int(got) and _is_int(expected):
        if int(got) != int(expected):
            raise ValueError(message)
        return x
    if keras.backend.backend() != "tensorflow":
        return x  # symbolic sizes there (e.g. torch.compile's) are checked by the ops
    import tensorflow as tf  # the backend: already imported by Keras

    with tf.control_dependencies([tf.debugging.assert_equal(got, expected, message=message)]):
        return tf.identity(x)


def _is_int(size) -> bool:
    return isinstance(size, int) or type(size).__module__ == "numpy"
