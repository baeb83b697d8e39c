"""What the layer benchmarks share: the cases' shapes, ours and Keras's peer layers built
for the same function, and the interleaved timing and its report.

Backend-neutral (no TensorFlow): `layer.py` (TensorFlow, tf.function) and
`layer_backends.py` (every Keras backend) both use it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import keras
from tables import print_rows

from keras_seqattn import SequenceAttention

BATCH, N, M, D = 32, 128, 128, 64
TARGET = 1.10


@dataclass
class Case:
    """One comparison: two compiled steps on the same data, and the ratio's target."""

    name: str
    target: float | None  # None: for information
    ours: object
    peer: object
    args: tuple
    peer_args: tuple
    ours_label: str = "ours"
    peer_label: str = "peer"
    ours_times: list = field(default_factory=list)
    peer_times: list = field(default_factory=list)


def ours(scoring):
    layer = SequenceAttention(scoring=scoring)
    layer.build((None, None, D), (None, None, D))

    def forward(inputs, query, *masks):
        return layer(inputs, query, mask=list(masks) if masks else None)

    return forward, layer.trainable_weights


def _peer_mask(masks):
    # Ours takes [inputs_mask, query_mask]; Keras's attention layers [query_mask, value_mask].
    return [masks[1], masks[0]] if masks else None


def peer(scoring):
    """Keras's own layers computing the same function as our named scoring net."""
    if scoring == "dot":
        attention = keras.layers.Attention()
        attention.build([(None, None, D), (None, None, D)])

        def forward(inputs, query, *masks):
            return attention([query, inputs], mask=_peer_mask(masks))

        return forward, attention.trainable_weights
    if scoring == "bilinear":
        key = keras.layers.Dense(D, use_bias=False)
        attention = keras.layers.Attention()
        key.build((None, None, D))
        attention.build([(None, None, D), (None, None, D), (None, None, D)])

        def forward(inputs, query, *masks):
            return attention([query, inputs, key(inputs)], mask=_peer_mask(masks))

        return forward, key.trainable_weights + attention.trainable_weights
    if scoring == "additive":
        key = keras.layers.Dense(D, use_bias=False)
        qry = keras.layers.Dense(D, use_bias=False)
        attention = keras.layers.AdditiveAttention()
        key.build((None, None, D))
        qry.build((None, None, D))
        attention.build([(None, None, D), (None, None, D), (None, None, D)])

        def forward(inputs, query, *masks):
            return attention([qry(query), inputs, key(inputs)], mask=_peer_mask(masks))

        weights = key.trainable_weights + qry.trainable_weights + attention.trainable_weights
        return forward, weights
    raise ValueError(scoring)


def skewed_lengths(rng, batch, longest):
    """Mostly short sequences (8 to 32) with a few (1 in 8) of the full length."""
    lengths = rng.integers(8, 33, size=batch)
    lengths[rng.choice(batch, size=max(1, batch // 8), replace=False)] = longest
    return lengths


def time_call(fn, args, inner):
    start = time.perf_counter()
    for _ in range(inner):
        fn(*args)  # CPU tf.function calls return once the work is done.
    return (time.perf_counter() - start) / inner * 1e3


def measure(cases, repeats, inner, warmup):
    for case in cases:
        for _ in range(warmup):
            case.ours(*case.args)
            case.peer(*case.peer_args)
    # Interleave ours and peer, alternating which goes first, so that load from other
    # processes and cache or frequency drift hit both sides alike.
    for r in range(repeats):
        for case in cases:
            first_ours = r % 2 == 0
            for is_ours in (first_ours, not first_ours):
                if is_ours:
                    case.ours_times.append(time_call(case.ours, case.args, inner))
                else:
                    case.peer_times.append(time_call(case.peer, case.peer_args, inner))


def paired_ratios(case):
    """Median and quartiles of ours/peer taken side by side (robust to load drift)."""
    ratios = [o / p for o, p in zip(case.ours_times, case.peer_times, strict=True)]
    q1, median, q3 = statistics.quantiles(ratios, n=4)
    return median, q1, q3


def report(cases, compile_label):
    rows = []
    for case in cases:
        ours_ms = statistics.median(case.ours_times)
        peer_ms = statistics.median(case.peer_times)
        ratio = ours_ms / peer_ms
        paired, q1, q3 = paired_ratios(case)
        rows.append(
            (
                case.name,
                compile_label,
                f"{case.ours_label} {ours_ms:.2f}",
                f"{case.peer_label} {peer_ms:.2f}",
                f"{ratio:.3f}",
                f"{paired:.2f} [{q1:.2f}-{q3:.2f}]",
                "info" if case.target is None else f"<= {case.target:.2f}",
                "" if case.target is None else ("PASS" if ratio <= case.target else "FAIL"),
            )
        )
    return rows


def print_table(rows):
    header = (
        "case",
        "compile",
        "ours ms (median)",
        "peer ms (median)",
        "ratio",
        "paired ratio [IQR]",
        "target",
        "",
    )
    print_rows(rows, header)
