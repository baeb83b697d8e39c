"""Additive scores in bounded memory: s_ji = v . tanh(p_j + k_i), a few units at a time.

The additive (Bahdanau) score of every query j against every input i needs the hidden
vector tanh(p_j + k_i) of `units` values per pair. Computed at once, as
`keras.layers.AdditiveAttention` does, that is a (batch, m, n, units) tensor, and automatic
differentiation keeps it (and its tanh) for the backward pass: at batch 8, n = m = 1,024
and 64 units, 2.1 GB per copy.

Here the units are taken a block at a time: each block adds its share
sum_{u in block} v_u tanh(p_ju + k_iu) to a (…, m, n) accumulator, so the forward pass
holds one (…, block, m, n) slab at a time. The backward pass has its own rule
(`keras.ops.custom_gradient`) that recomputes each block's tanh instead of storing it:
with t = tanh(p_j + k_i) and the upstream gradient g_ji,

    d p_ju = sum_i g_ji v_u (1 - t_jiu^2)      d k_iu = sum_j g_ji v_u (1 - t_jiu^2)
    d v_u  = sum_ji g_ji t_jiu

so peak memory grows with (…, m, n), not (…, m, n, units). (On PyTorch a tensor of at most
`ALL_AT_ONCE_BYTES` is formed at once, as Keras's layer does: there the loop costs more
than it saves at that size.) Blocks are visited by
`keras.ops.fori_loop` (one `tf.while_loop`, `jax.lax.fori_loop`, or a Python loop on
PyTorch), which keeps the number of slabs alive small on every backend; the number of
blocks is static (the units are a weight's size) so no shape needs to be known. On JAX
the blocked computation is one `jax.jit` function, so that eager calls reuse its compiled
loop instead of compiling one per call.

Leading axes are free: (batch, m, units) and (batch, n, units), or with a head axis
(batch, heads, m, units) and (batch, heads, n, units) with v of shape (heads, units).
The result equals the all-at-once computation up to float rounding (the sum over units
runs in another order).
"""

from __future__ import annotations

import functools

import keras
from keras import ops

# Units per block. Each block's slab is (…, UNITS_PER_BLOCK, m, n): 4 keeps the forward
# and backward slabs to a few (…, m, n) tensors while leaving each step enough work that
# the loop's own overhead stays small (benchmarks/layer.py, "additive memory").
UNITS_PER_BLOCK = 4

# On PyTorch, where Keras runs eagerly op by op, the blocks' loop and the recomputed tanh
# of the backward pass cost more than they save while the whole (…, m, n, units) tensor
# is small: 1.3x the time of Keras's AdditiveAttention at batch 32, n = m = 128, 64 units
# (benchmarks/layer_backends.py). Up to this many bytes the tensor is formed at once there,
# as Keras's layer forms it; beyond, in blocks. TensorFlow and JAX compile the loop and
# measured at or below Keras's time in blocks, so they always block.
ALL_AT_ONCE_BYTES = {"torch": 256 * 2**20}


def _block_size(units: int, most: int) -> int:
    """The largest divisor of `units` that is at most `most` (blocks must tile exactly)."""
    for size in range(min(units, most), 0, -1):
        if units % size == 0:
            return size
    return 1


def additive_scores(query_proj, input_proj, score_vector, units_per_block=UNITS_PER_BLOCK):
    """sum_u v_u tanh(query_proj_ju + input_proj_iu) for every (j, i), in blocks of units.

    Args:
        query_proj: (..., m, units), the projected queries p_j = W2 q_j.
        input_proj: (..., n, units), the projected inputs k_i = W1 e_i; the same leading
            axes as `query_proj`.
        score_vector: v, of shape (units,) or (..., units) with leading axes that
            broadcast against those of the projections (e.g. (heads, units) for
            projections of shape (batch, heads, m, units)).
        units_per_block: the most units in one block (the block size divides `units`).

    Returns:
        Scores of shape (..., m, n), in the projections' dtype.
    """
    lead = ops.shape(query_proj)[:-2]
    m, units = ops.shape(query_proj)[-2], query_proj.shape[-1]
    n = ops.shape(input_proj)[-2]
    if units is None or input_proj.shape[-1] != units or score_vector.shape[-1] != units:
        raise ValueError(
            "additive_scores needs projections and score vector with the same, known last "
            f"axis (units); got {tuple(query_proj.shape)}, {tuple(input_proj.shape)} and "
            f"{tuple(score_vector.shape)}."
        )
    if _small_enough(query_proj, input_proj, int(units)):
        hidden = ops.tanh(ops.expand_dims(query_proj, -2) + ops.expand_dims(input_proj, -3))
        v = ops.reshape(score_vector, (*score_vector.shape[:-1], 1, 1, units))
        return ops.sum(hidden * v, axis=-1)
    block = _block_size(int(units), units_per_block)
    # One flat leading axis L, units second: a block is then a contiguous slice of axis 1.
    pq = ops.transpose(ops.reshape(query_proj, (-1, m, units)), (0, 2, 1))  # (L, u, m)
    pe = ops.transpose(ops.reshape(input_proj, (-1, n, units)), (0, 2, 1))  # (L, u, n)
    # Broadcasting v is left to automatic differentiation (it sums the gradient back).
    v = ops.reshape(
        ops.broadcast_to(
            ops.reshape(score_vector, (*score_vector.shape[:-1], 1, units)),
            (*lead, 1, units),
        ),
        (-1, units),
    )  # (L, u)
    blocked = _jax_blocked() if keras.backend.backend() == "jax" else _blocked
    scores = blocked(pq, pe, v, block)
    return ops.reshape(scores, (*lead, m, n))


@functools.cache
def _jax_blocked():
    """`_blocked` under `jax.jit`, made once per process.

    A `lax.fori_loop` called outside any jit (an eager call of the layer, or
    `jax.grad` without jit) compiles its loop anew at each call, since each call traces
    new closures: 0.24 s for a 2 x 3 x 3 batch. Under jit, compiled once per shape and
    reused; inside an outer jit it is simply inlined.
    """
    import jax

    return jax.jit(_blocked, static_argnums=3)


def _small_enough(query_proj, input_proj, units: int) -> bool:
    """Whether this backend forms the (…, m, n, units) tensor at once (`ALL_AT_ONCE_BYTES`)."""
    limit = ALL_AT_ONCE_BYTES.get(keras.backend.backend())
    shapes = (*query_proj.shape[:-1], input_proj.shape[-2])
    if limit is None or any(size is None for size in shapes):
        return False
    count = units
    for size in shapes:
        count *= int(size)
    dtype = keras.backend.standardize_dtype(query_proj.dtype)
    return count * _BYTES.get(dtype, 4) <= limit


_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


def _fori_loop(steps, body, init):
    """`keras.ops.fori_loop(0, steps, body, init)`, one step at a time on every backend.

    On TensorFlow, Keras's fori_loop is a `tf.while_loop` with TensorFlow's default of 10
    parallel iterations: a step's slab depends only on the step's index, so ten slabs
    could be alive at once (measured: 3.1 GB instead of 0.4 GB at batch 8, n = m = 1,024,
    64 units). One iteration at a time keeps one slab. JAX and PyTorch loop in order.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # only on the TensorFlow backend, where it is loaded

        return tf.while_loop(
            lambda i, _: i < steps,
            lambda i, val: (i + 1, body(i, val)),
            (tf.constant(0), init),
            parallel_iterations=1,
        )[1]
    return ops.fori_loop(0, steps, body, init)


def _slab(pq, pe, start, block):
    """tanh(p + k) of one block of units: (L, block, m, n)."""
    rows, cols = ops.shape(pq)[0], ops.shape(pq)[2]
    p = ops.slice(pq, (0, start, 0), (rows, block, cols))
    k = ops.slice(pe, (0, start, 0), (rows, block, ops.shape(pe)[2]))
    return ops.tanh(ops.expand_dims(p, 3) + ops.expand_dims(k, 2))


def _blocked(pq, pe, v, block):
    """(L, u, m), (L, u, n), (L, u) -> (L, m, n), with the gradient rule above."""
    units = pq.shape[1]
    steps = units // block

    @ops.custom_gradient
    def scores_fn(pq, pe, v):
        def forward_step(step, total):
            start = step * block
            t = _slab(pq, pe, start, block)
            w = ops.slice(v, (0, start), (ops.shape(v)[0], block))
            # sum over the block's units of v_u t_u: (L, 1, block) @ (L, block, m*n).
            shape = ops.shape(t)
            flat = ops.reshape(t, (shape[0], block, -1))
            part = ops.matmul(ops.expand_dims(w, 1), flat)
            return total + ops.reshape(part, (shape[0], shape[2], shape[3]))

        zeros = ops.zeros((ops.shape(pq)[0], ops.shape(pq)[2], ops.shape(pe)[2]), pq.dtype)
        scores = _fori_loop(steps, forward_step, zeros)

        def grad(*args, upstream=None):
            g = args[-1] if upstream is None else upstream  # (L, m, n)
            pq_, pe_, v_ = (pq, pe, v) if upstream is None else args[:3]
            rows, m, n = ops.shape(g)[0], ops.shape(g)[1], ops.shape(g)[2]
            g_flat = ops.reshape(g, (rows, 1, -1))  # (L, 1, m*n)

            def backward_step(step, grads):
                d_pq, d_pe, d_v = grads
                start = step * block
                t = _slab(pq_, pe_, start, block)  # recomputed, never stored
                w = ops.slice(v_, (0, start), (rows, block))
                t_flat = ops.reshape(t, (rows, block, -1))
                # d v_u = sum_ji g_ji t_jiu: (L, block, m*n) @ (L, m*n, 1).
                dv_block = ops.squeeze(ops.matmul(t_flat, ops.transpose(g_flat, (0, 2, 1))), 2)
                dh = (1.0 - ops.square(t)) * ops.reshape(g, (rows, 1, m, n))
                dh = dh * ops.reshape(w, (rows, block, 1, 1))
                d_pq = ops.slice_update(d_pq, (0, start, 0), ops.sum(dh, axis=3))
                d_pe = ops.slice_update(d_pe, (0, start, 0), ops.sum(dh, axis=2))
                d_v = ops.slice_update(d_v, (0, start), dv_block)
                return d_pq, d_pe, d_v

            init = (ops.zeros_like(pq_), ops.zeros_like(pe_), ops.zeros_like(v_))
            return _fori_loop(steps, backward_step, init)

        return scores, grad

    return scores_fn(pq, pe, v)
