"""A small log directory in attention format version 1, committed as a test fixture.

`tests/data/v1_logs/` was written by `write()` below with the version-1 writer (the
code at commit 33f4170) before format version 2 existed, and is committed as it came
out: the tests check that today's plugin still reads it, values and labels exact.
Re-running `write()` now would write the current version, so never regenerate it;
`expected()` is the recipe's data, recomputed by the tests.

    .venv/bin/python tests/v1_fixture.py   # (only ever run once, under version 1)
"""

from __future__ import annotations

import os

import numpy as np

LOGDIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "v1_logs")
RUN = "train"


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def expected() -> dict[str, list[tuple[int, np.ndarray, list[str], list[str]]]]:
    """{tag: [(step, float64 weights as written, input labels, query labels), ...]}."""
    rng = np.random.default_rng(20261125)
    out: dict[str, list] = {}
    words = ["the", "caf\u00e9", "\u4e2d\u6587", "\U0001f600", "<b>x</b>", "a,b"]
    for step in (0, 25):
        # A peaked softmax of one head, and of three heads, per example.
        out.setdefault("enc/attn/0", []).append(
            (step, _softmax(4 * rng.normal(size=(5, 6))), words, [f"q{i}" for i in range(5)])
        )
        out.setdefault("dec/mha@2/0", []).append(
            (step, _softmax(3 * rng.normal(size=(3, 4, 6))), words, ["p", "q", "r", "s"])
        )
    # Raw scores outside [0, 1], with float16's edges, and default (position) labels.
    scores = rng.normal(scale=30, size=(4, 7))
    scores[0, :3] = [65504.0, -65504.0, 2.0**-24]
    out["scores/0"] = [(25, scores, [str(i) for i in range(7)], [str(i) for i in range(4)])]
    return out


def write(logdir: str = LOGDIR) -> None:
    import tensorflow as tf

    from tb_plugin.summary import attention

    writer = tf.summary.create_file_writer(os.path.join(logdir, RUN))
    # In step order: TensorBoard's Python loader drops data when a step goes backwards.
    written = sorted(
        (step, tag, weights, inputs, queries)
        for tag, steps in expected().items()
        for step, weights, inputs, queries in steps
    )
    with writer.as_default():
        for step, tag, weights, inputs, queries in written:
            attention(
                tag,
                weights,
                step=step,
                input_labels=inputs,
                query_labels=queries,
                description=f"v1 fixture {tag}",
            )
    writer.close()


if __name__ == "__main__":
    write()
