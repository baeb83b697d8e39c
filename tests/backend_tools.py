"""The few things a layer test does differently per Keras backend: gradients, compiling.

Everything else in the layer tests is `keras.ops` and NumPy, the same on TensorFlow,
JAX and PyTorch. Gradients go through `keras.StatelessScope`, which lets a function read
chosen values in place of the layer's variables, so each backend differentiates a plain
function of arrays.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import keras
import numpy as np

BACKEND = keras.backend.backend()


def to_numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def value_and_grads(
    loss: Callable, arrays: Sequence, variables: Sequence = ()
) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """`loss(*arrays)` (a scalar) and its gradients by `arrays` and by `variables`."""
    variables = list(variables)

    def stateless(values, inputs):
        with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            return loss(*inputs)

    values = [keras.ops.convert_to_tensor(v.value) for v in variables]
    if BACKEND == "jax":
        import jax

        inputs = [keras.ops.convert_to_tensor(a) for a in arrays]
        value, (by_values, by_inputs) = jax.value_and_grad(stateless, argnums=(0, 1))(
            values, inputs
        )
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        inputs = [tf.convert_to_tensor(a) for a in arrays]
        with tf.GradientTape() as tape:
            tape.watch(values + inputs)
            value = stateless(values, inputs)
        grads = tape.gradient(value, values + inputs)
        by_values, by_inputs = grads[: len(values)], grads[len(values) :]
    elif BACKEND == "torch":
        import torch

        values = [v.detach().clone().requires_grad_(True) for v in values]
        inputs = [
            keras.ops.convert_to_tensor(a).detach().clone().requires_grad_(True) for a in arrays
        ]
        value = stateless(values, inputs)
        grads = torch.autograd.grad(value, values + inputs, allow_unused=True)
        by_values, by_inputs = grads[: len(values)], grads[len(values) :]
    else:  # pragma: no cover
        raise NotImplementedError(BACKEND)
    as_numpy = [to_numpy(g) for g in by_inputs], [to_numpy(g) for g in by_values]
    return float(to_numpy(value)), *as_numpy


def jit_compiled(fn: Callable) -> Callable | None:
    """`fn` compiled by XLA where the backend does that (TensorFlow, JAX), else None."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    return None


def input_grad_fn(fn: Callable) -> Callable:
    """A function giving the gradient of the scalar `fn(x)` by `x`, in the backend's
    own terms (so that `jit_compiled` can compile it)."""
    if BACKEND == "jax":
        import jax

        return jax.grad(fn)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def grad(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = fn(x)
            return tape.gradient(value, x)

        return grad
    import torch

    def torch_grad(x):
        x = keras.ops.convert_to_tensor(x).detach().clone().requires_grad_(True)
        return torch.autograd.grad(fn(x), x)[0]

    return torch_grad


def float64_enabled():
    """A context where float64 computes in float64 (JAX computes float32 by default)."""
    if BACKEND == "jax":
        import jax

        return jax.enable_x64(True)
    return contextlib.nullcontext()
