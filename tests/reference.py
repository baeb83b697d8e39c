"""A plain NumPy reference of SequenceAttention, one example and one query at a time.

Written as literally as Wolfram's definition reads (NOTES §1), so that the layer's
batched, masked, matrix-product implementation is checked against the meaning
rather than against itself. Values apart from the inputs and heads (Wolfram's
AttentionLayer, NOTES §5) are the same loops: head k is a single-head attention of
head k's slices with head k's scoring function.
"""

from __future__ import annotations

import keras
import numpy as np


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def score_fn_for(layer, head=None):
    """A per-pair NumPy scoring function with the layer's current weights.

    For a multi-head layer, `head` picks the head whose weight slice scores.
    """

    def weight(variable):
        value = np.asarray(to_numpy(variable), np.float64)
        return value if head is None else value[head]

    if layer.scoring == "dot":
        return lambda e, q: float(q @ e)
    if layer.scoring == "bilinear":
        kernel = weight(layer.scorer.kernel)  # (d2, d1)
        return lambda e, q: float(q @ (kernel @ e))
    if layer.scoring == "additive":
        w1 = weight(layer.scorer.input_kernel)
        w2 = weight(layer.scorer.query_kernel)
        v = weight(layer.scorer.score_vector)
        return lambda e, q: float(v @ np.tanh(e @ w1 + q @ w2))
    raise ValueError(f"no NumPy reference for {layer.scoring!r}")


def score_fns_for(layer, heads):
    """One per-pair scoring function per head of a multi-head layer."""
    return [score_fn_for(layer, head=k) for k in range(heads)]


def attend_one(e, q, score, *, value=None, causal=False, window=None, rescaling=None):
    """Outputs (m, dv) and weights (m, n) for one example without padding.

    `value` (n, dv) defaults to the inputs `e` (n, d1), which are then also the values.
    """
    e = np.asarray(e, np.float64)
    q = np.asarray(q, np.float64)
    v = e if value is None else np.asarray(value, np.float64)
    n, m = len(e), len(q)
    outputs = np.zeros((m, v.shape[1]))
    weights = np.zeros((m, n))
    for j in range(m):
        visible = [
            i for i in range(n) if (not causal or i <= j) and (window is None or i > j - window)
        ]
        if not visible:
            continue
        s = np.array([score(e[i], q[j]) for i in visible])
        if rescaling == "length_sqrt":
            s = s / np.sqrt(len(visible))
        elif rescaling == "dim_sqrt":
            s = s / np.sqrt(e.shape[1])
        w = np.exp(s - s.max())
        w /= w.sum()
        weights[j, visible] = w
        outputs[j] = w @ v[visible]
    return outputs, weights


def attend_one_heads(e, q, scores, *, value=None, **options):
    """Multi-head: e (n, h, d1), q (m, h, d2), value (n, h, dv) or None, one scoring
    function per head. Outputs (m, h, dv), weights (h, m, n)."""
    heads = e.shape[1]
    per_head = [
        attend_one(
            e[:, k], q[:, k], scores[k], value=None if value is None else value[:, k], **options
        )
        for k in range(heads)
    ]
    outputs = np.stack([o for o, _ in per_head], axis=1)
    weights = np.stack([w for _, w in per_head], axis=0)
    return outputs, weights


def attend_batch(e, q, score, input_lengths, query_lengths, value=None, **options):
    """The padded-batch view of `attend_one`: zeros wherever an example has no position.

    Inputs of rank 4 are multi-head, (batch, n, h, d1): `score` is then a list of one
    scoring function per head, and the weights come out as (batch, h, m, n).
    """
    heads = e.shape[2] if e.ndim == 4 else None
    batch, n = e.shape[:2]
    m = q.shape[1]
    dv = (e if value is None else value).shape[-1]
    head = () if heads is None else (heads,)
    outputs = np.zeros((batch, m, *head, dv))
    weights = np.zeros((batch, *head, m, n))
    for b in range(batch):
        ni, mi = input_lengths[b], query_lengths[b]
        vb = None if value is None else value[b, :ni]
        if heads is None:
            o, w = attend_one(e[b, :ni], q[b, :mi], score, value=vb, **options)
            weights[b, :mi, :ni] = w
        else:
            o, w = attend_one_heads(e[b, :ni], q[b, :mi], score, value=vb, **options)
            weights[b, :, :mi, :ni] = w
        outputs[b, :mi] = o
    return outputs, weights
