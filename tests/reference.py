"""A plain NumPy reference of SequenceAttention, one example and one query at a time.

Written as literally as Wolfram's definition reads (NOTES §1), so that the layer's
batched, masked, matrix-product implementation is checked against the meaning
rather than against itself.
"""

from __future__ import annotations

import keras
import numpy as np


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def score_fn_for(layer):
    """A per-pair NumPy scoring function with the layer's current weights."""
    if layer.scoring == "dot":
        return lambda e, q: float(q @ e)
    if layer.scoring == "bilinear":
        kernel = np.asarray(to_numpy(layer.scorer.kernel), np.float64)  # (d2, d1)
        return lambda e, q: float(q @ (kernel @ e))
    if layer.scoring == "additive":
        w1 = np.asarray(to_numpy(layer.scorer.input_kernel), np.float64)
        w2 = np.asarray(to_numpy(layer.scorer.query_kernel), np.float64)
        v = np.asarray(to_numpy(layer.scorer.score_vector), np.float64)
        return lambda e, q: float(v @ np.tanh(e @ w1 + q @ w2))
    raise ValueError(f"no NumPy reference for {layer.scoring!r}")


def attend_one(e, q, score, *, causal=False, window=None, rescaling=None):
    """Outputs (m, d1) and weights (m, n) for one example without padding."""
    e = np.asarray(e, np.float64)
    q = np.asarray(q, np.float64)
    n, m = len(e), len(q)
    outputs = np.zeros((m, e.shape[1]))
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
        outputs[j] = w @ e[visible]
    return outputs, weights


def attend_batch(e, q, score, input_lengths, query_lengths, **options):
    """The padded-batch view of `attend_one`: zeros wherever an example has no position."""
    batch, n, d1 = e.shape
    m = q.shape[1]
    outputs = np.zeros((batch, m, d1))
    weights = np.zeros((batch, m, n))
    for b in range(batch):
        ni, mi = input_lengths[b], query_lengths[b]
        o, w = attend_one(e[b, :ni], q[b, :mi], score, **options)
        outputs[b, :mi] = o
        weights[b, :mi, :ni] = w
    return outputs, weights
