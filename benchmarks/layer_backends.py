"""Benchmark: SequenceAttention against Keras's own attention layers on every Keras backend.

The dense cases of `layer.py` ("dot", "bilinear", "additive", "dot, masked"; batch 32,
n = m = 128, d = 64, float32), one training step's work each: forward, then the gradient
of the summed output with respect to the inputs, the query and every trainable weight (the
loss returned too, as a training step reports it).
Ours and the peer (the same function built from Keras's layers, see
`bench_common.peer`) run on the same backend, in the same process, interleaved, and the
table quotes the medians and their ratio (target: at most 1.10).

How a step is compiled, per backend, as a user's training step would be:
- tensorflow: `tf.function` around a `tf.GradientTape` (jit_compile False and True);
- jax: `jax.jit(jax.value_and_grad(...))` of a stateless loss (the weights passed in through
  `keras.StatelessScope`), which is always XLA;
- torch: eager autograd (`torch.autograd.grad`), as Keras's PyTorch trainer runs.

Run: .venv/bin/python benchmarks/layer_backends.py [--backend all|tensorflow|jax|torch]
     [--repeats 15] [--inner 3]
`--backend all` (the default) runs itself once per backend in a subprocess (Keras picks
its backend once per process) and prints each table. Never asserted in a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BACKENDS = ("tensorflow", "jax", "torch")


def _compile_tensorflow(forward, weights, jit):
    import tensorflow as tf

    def step(inputs, query, *masks):
        with tf.GradientTape() as tape:
            tape.watch([inputs, query])
            loss = tf.reduce_sum(forward(inputs, query, *masks))
        # The loss too, as a training step reports it (else the forward output's product
        # may be pruned as dead code on the compiled backends).
        return loss, tape.gradient(loss, [inputs, query, *weights])

    return tf.function(step, jit_compile=jit)


def _compile_jax(forward, weights, jit):
    import jax
    import keras

    def loss(values, inputs, query, *masks):
        with keras.StatelessScope(state_mapping=list(zip(weights, values, strict=True))):
            return forward(inputs, query, *masks).sum()

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    values = [w.value for w in weights]

    def step(inputs, query, *masks):
        return jax.block_until_ready(grad(values, inputs, query, *masks))

    return step


def _compile_torch(forward, weights, jit):
    import torch

    def step(inputs, query, *masks):
        inputs = inputs.detach().requires_grad_(True)
        query = query.detach().requires_grad_(True)
        loss = forward(inputs, query, *masks).sum()
        grads = torch.autograd.grad(loss, [inputs, query, *(w.value for w in weights)])
        return loss.detach(), grads

    return step


def run_backend(repeats: int, inner: int, warmup: int, seed: int) -> None:
    import keras
    import numpy as np

    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.join(HERE, os.pardir))
    from bench_common import (
        BATCH,
        TARGET,
        Case,
        D,
        M,
        N,
        measure,
        ours,
        peer,
        print_table,
        report,
        skewed_lengths,
    )

    backend = keras.backend.backend()
    compile_step = {
        "tensorflow": _compile_tensorflow,
        "jax": _compile_jax,
        "torch": _compile_torch,
    }[backend]
    modes = {"tensorflow": (False, True), "jax": (True,), "torch": (False,)}[backend]
    labels = {"dot": "Attention", "bilinear": "Dense+Attention"}
    rng = np.random.default_rng(seed)
    tensor = keras.ops.convert_to_tensor
    inputs = tensor(rng.standard_normal((BATCH, N, D)).astype("float32"))
    query = tensor(rng.standard_normal((BATCH, M, D)).astype("float32"))
    in_mask = tensor(np.arange(N)[None, :] < skewed_lengths(rng, BATCH, N)[:, None])
    q_mask = tensor(np.arange(M)[None, :] < skewed_lengths(rng, BATCH, M)[:, None])
    print(
        f"backend {backend}: Keras {keras.__version__}, Python {platform.python_version()}, "
        f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    rows = []
    for jit in modes:
        cases = []
        for name, scoring, masks in (
            ("dot", "dot", ()),
            ("bilinear", "bilinear", ()),
            ("additive", "additive", ()),
            ("dot, masked", "dot", (in_mask, q_mask)),
        ):
            cases.append(
                Case(
                    name,
                    TARGET,
                    compile_step(*ours(scoring), jit),
                    compile_step(*peer(scoring), jit),
                    (inputs, query, *masks),
                    (inputs, query, *masks),
                    peer_label=labels.get(scoring, "2 Dense+AdditiveAttention"),
                )
            )
        start = time.perf_counter()
        measure(cases, repeats, inner, warmup)
        label = {"tensorflow": f"tf.function jit={jit}", "jax": "jax.jit", "torch": "eager"}
        rows += report(cases, label[backend])
        print(f"[{label[backend]}: {time.perf_counter() - start:.0f} s]", file=sys.stderr)
    print_table(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("all", *BACKENDS), default="all")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved timings per case")
    parser.add_argument("--inner", type=int, default=3, help="calls per timing, averaged")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per side")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeats < 2:
        parser.error("--repeats must be at least 2")
    if args.backend == "all":
        for backend in BACKENDS:
            env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
            flags = ["--repeats", str(args.repeats), "--inner", str(args.inner)]
            flags += ["--warmup", str(args.warmup), "--seed", str(args.seed)]
            cmd = [sys.executable, os.path.abspath(__file__), "--backend", backend, *flags]
            subprocess.run(cmd, env=env, check=False)
            print()
        print(
            "ratio = median(ours) / median(peer), judged against the target; paired ratio = "
            "median [quartiles] of per-repeat ratios (a wide spread means a busy machine)."
        )
        return 0
    if os.environ.get("KERAS_BACKEND", args.backend) != args.backend:
        parser.error(f"KERAS_BACKEND={os.environ['KERAS_BACKEND']} but --backend {args.backend}")
    os.environ["KERAS_BACKEND"] = args.backend  # before keras is first imported
    run_backend(args.repeats, args.inner, args.warmup, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
