"""Values and gradients of a function of tensors, on whichever Keras backend runs the tests.

`value_and_grads(f, arrays)` calls `f(*tensors)` and differentiates the sum of its output
weighted by fixed random numbers (so that every output element matters, each differently)
with respect to every argument, through the backend's own automatic differentiation:
`tf.GradientTape`, `jax.grad` or PyTorch's `backward()`. Returns NumPy arrays.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def value_and_grads(f, arrays, seed=0):
    """(f(*arrays) as NumPy, [d(sum(f * r))/d(array) for each array]) for random r."""
    backend = keras.backend.backend()
    out_shape = ops.convert_to_numpy(f(*[ops.convert_to_tensor(a) for a in arrays])).shape
    weights = np.random.default_rng(seed).standard_normal(out_shape).astype(arrays[0].dtype)

    def loss(*tensors):
        out = f(*tensors)
        return ops.sum(out * ops.convert_to_tensor(weights)), out

    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in arrays]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            total, out = loss(*tensors)
        grads = tape.gradient(total, tensors)
        return out.numpy(), [g.numpy() for g in grads]
    if backend == "jax":
        import jax

        (_, out), grads = jax.value_and_grad(loss, argnums=tuple(range(len(arrays))), has_aux=True)(
            *arrays
        )
        return np.asarray(out), [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
        total, out = loss(*tensors)
        total.backward()
        return out.detach().numpy(), [t.grad.numpy() for t in tensors]
    raise NotImplementedError(f"no gradient helper for backend {backend!r}")
