"""Benchmark: SequenceAttention against Keras's own attention layers, and ragged against padded.

Every case is one training step's worth of work, compiled with `tf.function`:
forward, then the gradient (`tf.GradientTape`) of the summed output with respect to
the inputs, the query and every trainable weight. Ours and its peer run in the same
process, interleaved (ours, peer, peer, ours, ...), and the table quotes the median
time of each and the ratio of the medians. Shapes: batch 32, n = m = 128, d = 64.

Cases:
- "dot": SequenceAttention("dot") vs keras.layers.Attention().
- "bilinear": SequenceAttention("bilinear") vs Dense(d, no bias) on the inputs as the
  key + keras.layers.Attention() (value = the inputs).
- "additive": SequenceAttention("additive") vs two Dense(d, no bias) (inputs -> key,
  query -> query) + keras.layers.AdditiveAttention() (value = the inputs).
- "dot, masked": the same with padding masks on both sides (ours: mask=[...]; peer:
  mask=[query_mask, value_mask]), the form real models use.
- "ragged, <lengths>, <scoring>": our layer on a ragged batch (inputs and query, lengths
  drawn independently) vs the same batch padded to its longest example with masks, on
  four length distributions: "skewed" (mostly 8 to 32, 1 in 8 of the full 128; target
  0.35, for "dot", "bilinear" and "additive"), "uniform" (100 to 128; target 1.05), "one
  long" (8 to 32 and one of 128) and "all short" (8 to 32) (targets 1.0, "bilinear").
  One "(info)" row times the uniform batch's padded, masked step traced for (batch, None, d)
  shapes against the same step with its static shapes: what a padded length unknown until
  run time costs by itself (the ragged path pads inside the graph, so it always pays it).

- "multi-head": SequenceAttention("dot", multi_head=True, score_rescaling="dim_sqrt") on
  projected (batch, time, heads, head size) query, key and value tensors (8 heads of 8,
  so d = 64 in all) vs the attention core of keras.layers.MultiHeadAttention on the same
  tensors (its `_compute_attention`, what `call` runs between its projections), the
  gradient taken with respect to query, key and value. Two peers: the core as `call` runs
  it when no scores are asked for (`ops.dot_product_attention`, a fused kernel where the
  backend has one), and the core asked for its scores (the explicit einsum-softmax-einsum
  path, the work ours does, since ours always forms the weights); "multi-head, masked"
  adds padding masks (peer: the equivalent (batch, m, n) attention_mask).

The jit_compile=True (XLA) pass has no ragged rows: XLA takes no ragged batch.

Additive memory (`additive_memory`): peak memory of one forward + backward step of
"additive" against its peer at batch 8, n = m = 1,024, units 64, where the peer's
(batch, m, n, units) tensor is 2.1 GB. Each side runs alone in a fresh subprocess (so
neither inherits the other's freed but retained memory): it traces the step, reads its
resident set size (VmRSS), runs the step once, and reports the growth of its peak resident
set size (ru_maxrss) over that. Target: ours at most a quarter of the peer's.

Run: .venv/bin/python benchmarks/layer.py [--repeats 25] [--inner 3] [--no-jit] [--no-memory]
[--only TEXT]. `--only ragged` times only the cases whose name holds "ragged" (none of
them is in the XLA pass, so that pass times nothing).
Performance is measured here and never asserted in a test; the exit status is 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # one tf.function per case: its retracing notes are noise

from bench_common import (  # noqa: E402
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

from keras_seqattn import SequenceAttention  # noqa: E402

# Additive memory case: the shape of the issue, and the target ratio of RSS growths.
MEMORY_SHAPE = {"batch": 8, "n": 1024, "m": 1024, "units": 64}
MEMORY_TARGET = 0.25


def _loss(out):
    values = out.flat_values if isinstance(out, tf.RaggedTensor) else out
    return tf.reduce_sum(values)


def _differentiable(x):
    # The float tensor a gradient can be taken with respect to (a ragged tensor's values).
    return x.flat_values if isinstance(x, tf.RaggedTensor) else x


def training_step(forward, weights, jit, signature=None):
    """Compiles forward + backward: d(sum of outputs)/d(inputs, query, weights)."""

    def step(inputs, query, *masks):
        with tf.GradientTape() as tape:
            sources = [_differentiable(inputs), _differentiable(query)]
            tape.watch(sources)
            loss = _loss(forward(inputs, query, *masks))
        # The loss too, as Keras's train_step reports it: without it grappler may prune the
        # forward output's product where shapes are static (the gradient of a sum needs
        # only its shape), which flattered padded steps against ragged ones.
        return loss, tape.gradient(loss, sources + list(weights))

    return tf.function(step, jit_compile=jit, input_signature=signature)


# Length distributions of the ragged cases: name -> lengths(rng, batch, longest), and the
# most ragged / padded may be (the targets).
LENGTHS = {
    "skewed": (skewed_lengths, 0.35),
    "uniform": (lambda rng, b, longest: rng.integers(100, longest + 1, size=b), 1.05),
    "one long": (
        lambda rng, b, longest: np.concatenate([rng.integers(8, 33, size=b - 1), [longest]]),
        1.0,
    ),
    "all short": (lambda rng, b, longest: rng.integers(8, 33, size=b), 1.0),
}


def ragged_and_padded(rng, lengths, dim):
    """The same batch ragged, and padded to its longest example with its mask."""
    values = rng.standard_normal((int(lengths.sum()), dim)).astype("float32")
    ragged = tf.RaggedTensor.from_row_lengths(values, lengths.astype("int64"))
    padded = ragged.to_tensor()
    mask = tf.sequence_mask(lengths, maxlen=int(lengths.max()))
    return ragged, padded, mask


def ragged_cases(rng):
    """Our layer on ragged batches against the same batches padded, with masks."""
    cases = []
    runs = [("skewed", scoring) for scoring in ("dot", "bilinear", "additive")]
    runs += [(name, "bilinear") for name in ("uniform", "one long", "all short")]
    for name, scoring in runs:
        lengths, target = LENGTHS[name]
        in_r, in_p, in_m = ragged_and_padded(rng, lengths(rng, BATCH, N), D)
        q_r, q_p, q_m = ragged_and_padded(rng, lengths(rng, BATCH, M), D)
        forward, weights = ours(scoring)
        cases.append(
            Case(
                f"ragged, {name}, {scoring}",
                target,
                training_step(forward, weights, False),
                training_step(forward, weights, False),
                (in_r, q_r),
                (in_p, q_p, in_m, q_m),
                ours_label="ours ragged",
                peer_label="ours padded+mask",
            )
        )
        if name == "uniform":
            # What an unknown padded length costs by itself: the padded, masked step traced
            # for (batch, None, d), as a ragged batch padded inside the graph must be.
            unknown = [tf.TensorSpec((BATCH, None, D)), tf.TensorSpec((BATCH, None, D))]
            unknown += [tf.TensorSpec((BATCH, None), tf.bool)] * 2
            cases.append(
                Case(
                    f"ragged, {name}: padded with unknown length, {scoring} (info)",
                    None,
                    training_step(forward, weights, False, signature=unknown),
                    training_step(forward, weights, False),
                    (in_p, q_p, in_m, q_m),
                    (in_p, q_p, in_m, q_m),
                    ours_label="padded, (b, None, d)",
                    peer_label="padded, static",
                )
            )
    return cases


def make_cases(jit, rng):
    inputs = tf.constant(rng.standard_normal((BATCH, N, D)), "float32")
    query = tf.constant(rng.standard_normal((BATCH, M, D)), "float32")
    cases = []
    for scoring in ("dot", "bilinear", "additive"):
        cases.append(
            Case(
                scoring,
                TARGET,
                training_step(*ours(scoring), jit),
                training_step(*peer(scoring), jit),
                (inputs, query),
                (inputs, query),
                peer_label={
                    "dot": "Attention",
                    "bilinear": "Dense+Attention",
                    "additive": "2 Dense+AdditiveAttention",
                }[scoring],
            )
        )
    in_mask = tf.sequence_mask(skewed_lengths(rng, BATCH, N), maxlen=N)
    q_mask = tf.sequence_mask(skewed_lengths(rng, BATCH, M), maxlen=M)
    cases.append(
        Case(
            "dot, masked",
            TARGET,
            training_step(*ours("dot"), jit),
            training_step(*peer("dot"), jit),
            (inputs, query, in_mask, q_mask),
            (inputs, query, in_mask, q_mask),
            peer_label="Attention",
        )
    )
    if not jit:  # XLA needs static shapes; a ragged batch has none.
        cases += ragged_cases(rng)
    return cases


def _memory_child(side):
    """In a fresh process: peak RSS growth (MiB) of one "additive" training step."""
    import resource

    batch, n, m, units = (MEMORY_SHAPE[k] for k in ("batch", "n", "m", "units"))
    # The peer's Dense layers and our units both take the feature size; make it `units`.
    global D
    D = units
    forward, weights = (ours if side == "ours" else peer)("additive")
    step = training_step(forward, weights, jit=False)
    rng = np.random.default_rng(0)
    inputs = tf.constant(rng.standard_normal((batch, n, units)), "float32")
    query = tf.constant(rng.standard_normal((batch, m, units)), "float32")
    step.get_concrete_function(inputs, query)  # trace outside the measurement

    with open("/proc/self/status") as status:
        base_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    start = time.perf_counter()
    step(inputs, query)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"MEMORY {side} {(peak_kib - base_kib) / 1024:.1f} {seconds:.2f}")


def additive_memory():
    """Runs `_memory_child` for ours and the peer, one after the other; returns table rows."""
    import subprocess

    results = {}
    for side in ("ours", "peer"):
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--memory-child", side],
            capture_output=True,
            text=True,
            check=False,
        )
        line = next((x for x in proc.stdout.splitlines() if x.startswith("MEMORY ")), None)
        if proc.returncode != 0 or line is None:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"memory subprocess ({side}) failed: {' | '.join(tail)}")
        _, _, mib, seconds = line.split()
        results[side] = (float(mib), float(seconds))
    ratio = results["ours"][0] / results["peer"][0]
    shape = "b{batch} n{n} m{m} u{units}".format(**MEMORY_SHAPE)
    return [
        (
            f"additive memory ({shape}), peak RSS growth MiB",
            "jit=False",
            f"ours {results['ours'][0]:.0f} ({results['ours'][1]:.1f} s)",
            f"2 Dense+AdditiveAttention {results['peer'][0]:.0f} ({results['peer'][1]:.1f} s)",
            f"{ratio:.3f}",
            "(one step each)",
            f"<= {MEMORY_TARGET:.2f}",
            "PASS" if ratio <= MEMORY_TARGET else "FAIL",
        )
    ]


HEADS, HEAD_SIZE = 8, D // 8


def multi_head_cases(jit, rng):
    """Ours with heads vs the attention inside keras.layers.MultiHeadAttention."""
    shape = (BATCH, N, HEADS, HEAD_SIZE)
    key, value = (tf.constant(rng.standard_normal(shape), "float32") for _ in range(2))
    query = tf.constant(rng.standard_normal((BATCH, M, HEADS, HEAD_SIZE)), "float32")
    layer = SequenceAttention("dot", multi_head=True, score_rescaling="dim_sqrt")
    mha = keras.layers.MultiHeadAttention(HEADS, HEAD_SIZE)
    mha.build((None, None, D), (None, None, D))

    def step(forward):
        def run(k, q, v, *masks):
            with tf.GradientTape() as tape:
                tape.watch([k, q, v])
                loss = tf.reduce_sum(forward(k, q, v, *masks))
            return loss, tape.gradient(loss, [k, q, v])  # the loss too: see training_step

        return tf.function(run, jit_compile=jit)

    def ours_forward(k, q, v, *masks):
        return layer(k, q, v, mask=list(masks) if masks else None)

    def core(with_scores):
        def forward(k, q, v, *masks):
            # Ours takes [inputs_mask, query_mask]; the core one (batch, m, n) mask.
            attention_mask = masks[1][:, :, None] & masks[0][:, None, :] if masks else None
            out, _ = mha._compute_attention(
                q, k, v, attention_mask, training=True, return_attention_scores=with_scores
            )
            return out

        return forward

    in_mask = tf.sequence_mask(skewed_lengths(rng, BATCH, N), maxlen=N)
    q_mask = tf.sequence_mask(skewed_lengths(rng, BATCH, M), maxlen=M)
    ours_step = step(ours_forward)
    cases = []
    for name, masks in (("multi-head", ()), ("multi-head, masked", (in_mask, q_mask))):
        for with_scores, label in ((True, "MHA core, scores"), (False, "MHA core, fused")):
            cases.append(
                Case(
                    name + ("" if with_scores else " (info)"),
                    TARGET if with_scores else None,
                    ours_step,
                    step(core(with_scores)),
                    (key, query, value, *masks),
                    (key, query, value, *masks),
                    peer_label=label,
                )
            )
    return cases


def machine():
    cpus = os.cpu_count()
    try:
        cpus = f"{len(os.sched_getaffinity(0))} usable of {os.cpu_count()}"
    except AttributeError:  # pragma: no cover - not on Linux
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"machine: {platform.machine()}, {cpus} cores, load average {load}; "
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__} (backend {keras.backend.backend()})"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats",
        type=int,
        default=25,
        help="interleaved (ours, peer) timings per case (default 25)",
    )
    parser.add_argument(
        "--inner", type=int, default=3, help="calls per timing, averaged (default 3)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per side")
    parser.add_argument(
        "--no-jit", action="store_true", help="skip the jit_compile=True (XLA) pass"
    )
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the additive memory case (subprocesses)"
    )
    parser.add_argument(
        "--only",
        metavar="TEXT",
        help='time only the cases whose name contains TEXT (e.g. "ragged"); skips the '
        "additive memory case unless TEXT is in its name",
    )
    parser.add_argument("--memory-child", choices=("ours", "peer"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.memory_child:
        _memory_child(args.memory_child)
        return 0
    if args.repeats < 2:
        parser.error("--repeats must be at least 2")

    print(machine())
    print(
        f"shapes: batch {BATCH}, n {N}, m {M}, d {D}; forward + backward (inputs, query, "
        f"weights); {args.repeats} interleaved repeats x {args.inner} calls; float32"
    )
    rows = []
    for jit in (False,) if args.no_jit else (False, True):
        rng = np.random.default_rng(args.seed)
        cases = make_cases(jit, rng) + multi_head_cases(jit, rng)
        if args.only:
            cases = [case for case in cases if args.only in case.name]
        if not cases:
            continue
        start = time.perf_counter()
        measure(cases, args.repeats, args.inner, args.warmup)
        label = f"jit={jit}"
        rows += report(cases, label)
        print(f"[{label}: {time.perf_counter() - start:.0f} s]", file=sys.stderr)
    if not args.no_memory and (not args.only or args.only in "additive memory"):
        start = time.perf_counter()
        rows += additive_memory()
        print(f"[additive memory: {time.perf_counter() - start:.0f} s]", file=sys.stderr)
    print()
    print_table(rows)
    print()
    print(
        "ratio = median(ours) / median(peer), the figure judged against the target. "
        "paired ratio = median and quartiles of the per-repeat ratios ours/peer, each pair "
        "timed side by side: when it disagrees with the ratio, or its quartiles straddle the "
        "target, the machine was busy; rerun with more --repeats."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
