"""The fused attention kernel for "dot" and "bilinear" scoring when no weights are asked for.

`keras.ops.dot_product_attention` computes softmax(scale * Q K^T + mask) V in one call that
reaches cuDNN / flash attention on JAX and PyTorch GPUs (and XLA elsewhere), without
holding the (batch, m, n) weights in memory. The layer's "dot" and "bilinear" nets are dot
products: s = q . e, and s = q . (W e) = (q W) . e. So with the inputs as keys and values
and the query (projected by W for "bilinear") as queries, the kernel computes the layer's
outputs. Every option the kernel can express is mapped onto it:

- padding masks of the inputs and the causal / windowed masks (positions counted from
  each example's start, as the layer counts them) become one boolean mask, or the
  kernel's own `is_causal` when the mask is causal alone;
- "dim_sqrt" is the kernel's `scale`; "length_sqrt" divides each query row by the square
  root of the number of inputs it sees, which scales that row's scores alike;
- a query that sees nothing (an empty example, a padded query) gives zeros, as on the
  explicit path: its row is unmasked for the kernel (a fully masked row is NaN on some
  backends) and its output replaced by zeros, so no gradient flows from it.

On TensorFlow the explicit path is kept (`FUSED_BACKENDS`: Keras has no fused kernel there).
What the kernel cannot express takes the layer's explicit path (`SequenceAttention.
_attend`), exactly and silently: weights asked for (`return_attention_scores=True`, the
logger's probe pass), dropout on the weights in training, and the "additive" or custom
nets (`can_fuse`). The kernel computes in the layer's compute dtype (bfloat16 under a
mixed policy), where the explicit path scores in float32: outputs agree to that dtype's
precision.
"""

from __future__ import annotations

import functools
import math

import keras
from keras import ops

FUSABLE_SCORING = ("dot", "bilinear")
# Keras's `flash_attention` argument per backend (None: Keras decides). On PyTorch, None
# makes Keras confine `scaled_dot_product_attention` to its flash kernel wherever that one
# applies; False leaves the choice to PyTorch, which may take another fused kernel (cuDNN's
# on Hopper GPUs). On JAX, None is what reaches cuDNN; False would mean XLA's plain ops.
_FLASH_ATTENTION = {"torch": False}
# Backends where keras.ops.dot_product_attention reaches a fused kernel: cuDNN / flash
# attention through jax.nn.dot_product_attention, and torch's scaled_dot_product_attention
# (fused on CPU too). On TensorFlow, Keras 3.15 computes it with plain XLA ops (its
# flash_attention is always off there), which measured up to 1.2x slower than the
# explicit path under jit_compile (benchmarks/layer.py): the explicit path stays.
FUSED_BACKENDS = ("jax", "torch")
# Of those, the backends whose kernel is fused on CPU as well. JAX's is XLA's plain ops on
# CPU (jax.nn.dot_product_attention has no CPU kernel), measured 1.3x slower than the
# explicit path under jax.jit on 2 cores (benchmarks/layer_backends.py, batch 32, n = m =
# 128): on a JAX CPU device the explicit path stays.
FUSED_ON_CPU = ("torch",)


def can_fuse(scoring, return_attention_scores, dropout_active, dtype="float32") -> bool:
    """Whether `attend` computes what the layer's explicit path would, on a fused kernel.

    Not on a JAX CPU device (`FUSED_ON_CPU`), and not in float64: Keras's JAX kernel
    returns float32 for float64 operands (seen with Keras 3.15, jax_enable_x64 on), and
    fused kernels exist for 16- and 32-bit floats.
    """
    backend = keras.backend.backend()
    return (
        backend in FUSED_BACKENDS
        and (backend in FUSED_ON_CPU or not _on_cpu(backend))
        and keras.backend.standardize_dtype(dtype) != "float64"
        and scoring in FUSABLE_SCORING
        and not return_attention_scores
        and not dropout_active
    )


@functools.cache
def _on_cpu(backend: str) -> bool:
    """Whether `backend` computes on CPU (JAX's default device; asked once per process)."""
    if backend == "jax":
        import jax  # the backend in use: already loaded

        return jax.default_backend() == "cpu"
    if backend == "torch":
        import torch

        return not torch.cuda.is_available()
    return True


def attend(
    query,
    inputs,
    inputs_mask,
    query_mask,
    *,
    causal: bool,
    window: int | None,
    score_rescaling: str | None,
):
    """Outputs (batch, m, d1) of the layer for `query` already in input space.

    Args:
        query: (batch, m, d1): the query for "dot", the query times W for "bilinear".
        inputs: (batch, n, d1): keys and values.
        inputs_mask, query_mask: boolean (batch, n) and (batch, m) masks or None.
        causal, window, score_rescaling: the layer's options.

    Returns:
        (batch, m, d1) in the inputs' dtype; zero rows where a query sees nothing or is
        masked.
    """
    n, m = ops.shape(inputs)[1], ops.shape(query)[1]
    d1 = inputs.shape[-1]
    # The kernel's own causal mask where it is the whole mask (cuDNN needs no mask tensor).
    is_causal = causal and window is None and inputs_mask is None
    visible = None if is_causal else _visible(inputs_mask, n, m, causal, window)
    keep = None if visible is None else ops.any(visible, axis=-1, keepdims=True)
    if score_rescaling == "length_sqrt":
        if causal and inputs_mask is None:
            # Query j sees inputs max(0, j - window + 1) .. min(j, n - 1): no (m, n) mask.
            j = ops.expand_dims(ops.arange(m), 1)
            last = ops.minimum(j, n - 1)
            first = 0 if window is None else ops.maximum(j - window + 1, 0)
            count = ops.expand_dims(ops.cast(last - first + 1, query.dtype), 0)
        elif visible is None:
            count = ops.cast(n, query.dtype)
        else:
            count = ops.sum(ops.cast(visible, query.dtype), axis=-1, keepdims=True)
        query = query / ops.sqrt(ops.maximum(count, 1.0))
    scale = 1.0 / math.sqrt(d1) if score_rescaling == "dim_sqrt" else 1.0

    mask = None
    if visible is not None and not is_causal:
        # Rows that see nothing: let the kernel see everything, then zero them below.
        mask = ops.expand_dims(ops.logical_or(visible, ops.logical_not(keep)), 1)
    outputs = ops.dot_product_attention(
        ops.expand_dims(query, 2),
        ops.expand_dims(inputs, 2),
        ops.expand_dims(inputs, 2),
        mask=mask,
        scale=scale,
        is_causal=is_causal,
        flash_attention=_FLASH_ATTENTION.get(keras.backend.backend()),
    )[:, :, 0, :]
    if query_mask is not None:
        q_keep = ops.expand_dims(query_mask, 2)
        keep = q_keep if keep is None else ops.logical_and(keep, q_keep)
    if keep is None:
        return outputs
    return ops.where(keep, outputs, ops.zeros((), outputs.dtype))


def _visible(inputs_mask, n, m, causal, window):
    """The inputs each query may see, (B or 1, m or 1, n) boolean, or None (all)."""
    visible = None
    if causal:
        q_pos = ops.expand_dims(ops.arange(m), 1)
        i_pos = ops.expand_dims(ops.arange(n), 0)
        visible = i_pos <= q_pos
        if window is not None:
            visible = ops.logical_and(visible, i_pos > q_pos - window)
        visible = ops.expand_dims(visible, 0)
    if inputs_mask is not None:
        m_in = ops.expand_dims(inputs_mask, 1)
        visible = m_in if visible is None else ops.logical_and(visible, m_in)
    return visible
