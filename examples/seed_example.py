"""The Mathematica question about SequenceAttentionLayer, asked of keras_seqattn.

"Inputs {{1,2},{3,4},{5,6}}, queries {{1,0},{0,1},{0,0},{1,1}}: why is the output
4 x 2, what does the layer compute, and how do I see it?"

    python examples/seed_example.py [--output DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quiet_start import start_quietly  # noqa: E402

start_quietly()  # before TensorFlow is imported: no C++ start-up lines on the terminal

import keras  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keras_seqattn import SequenceAttention, plot_attention  # noqa: E402

INPUTS = np.array([[1, 2], [3, 4], [5, 6]], "float32")  # n = 3 input vectors, d1 = 2
QUERIES = np.array([[1, 0], [0, 1], [0, 0], [1, 1]], "float32")  # m = 4 queries, d2 = 2


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="examples/output", help="folder for the PNG")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(args.seed)

    layer = SequenceAttention()  # the default scoring net is "bilinear", as Wolfram's
    outputs, weights = layer(INPUTS[None], QUERIES[None], return_attention_scores=True)
    outputs, weights = np.asarray(outputs)[0], np.asarray(weights)[0]
    print("output, one row per query vector:")
    print(np.array2string(outputs, precision=4, suppress_small=True))
    print(
        f"\nIt is {outputs.shape[0]} x {outputs.shape[1]}: one output vector per query "
        f"({len(QUERIES)} queries), each a weighted mean of the {len(INPUTS)} input vectors, "
        f"so of the input size ({INPUTS.shape[1]}). The query size only matters to the scores."
    )

    # Wolfram's NetExtract[layer, "ScoringNet"]: score the first query against every input.
    net = layer.scoring_net
    first = np.repeat(QUERIES[:1], len(INPUTS), axis=0)
    scores = np.asarray(net({"input": INPUTS, "query": first})).reshape(-1)
    by_hand = np.exp(scores - scores.max())
    by_hand /= by_hand.sum()
    print("\nfirst query, by hand with the extracted scoring net:")
    print("  scores          ", np.array2string(scores, precision=4))
    print("  softmax(scores) ", np.array2string(by_hand, precision=4))
    print("  layer's weights ", np.array2string(weights[0], precision=4))
    print(
        "  weights . inputs",
        np.array2string(by_hand @ INPUTS, precision=4),
        "= output row",
        np.array2string(outputs[0], precision=4),
    )
    assert np.allclose(by_hand, weights[0], atol=1e-6)
    assert np.allclose(by_hand @ INPUTS, outputs[0], atol=1e-5)
    print("  they match.")

    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    ax = plot_attention(
        weights,
        input_labels=[str(v.astype(int).tolist()) for v in INPUTS],
        query_labels=[str(v.astype(int).tolist()) for v in QUERIES],
        title="SequenceAttention weights",
    )
    path = out_dir / "seed_attention.png"
    ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(ax.figure)
    print(f"\nheatmap: {path}")
    return path


if __name__ == "__main__":
    main()
