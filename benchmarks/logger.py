"""What `AttentionLogger` costs: `fit` with and without it, on a small BERT and on the date example.

Two cases, each trained with and without the logger at its default settings (every
epoch, heatmap images and scalars on):

* `bert`: KerasHub's `BertBackbone` built from its class with a tiny random config
  (vocabulary 100, 2 layers, 2 heads, hidden 32, sequences of 32 with padding), a
  classifier on its pooled output, 2,048 examples, 2 epochs, batch 32, a probe of 2
  (the issue's budget: at most +5%);
* `date`: the date-translation example's default run (`examples/date_translation.py`;
  budget: at most +3%).

Same process, same data, same seed; the runs alternate (without, with, with, without,
...) so that a drift in the machine's load hits both alike; medians are compared, also
each round's pair; each run starts from a cleared Keras session (`_fresh`).
Also printed: the process's CPU time with and without (less sensitive than wall time to
other work on a shared machine), the time the training thread spent inside the
logger's hooks, and the CPU time of the logger's writer thread (attention summaries,
heatmap images, the event file).

    python benchmarks/logger.py                         # both cases, 5 rounds each
    python benchmarks/logger.py --case bert --rounds 3
    python benchmarks/logger.py --case date --samples 8000 --epochs 1   # quicker
    python benchmarks/logger.py --case bert --compiled  # also: probe pass compiled at once
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
sys.path.insert(0, os.path.join(HERE, ".."))

import date_translation as example  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_seqattn import AttentionLogger, attention_probe  # noqa: E402

TARGETS = {"bert": 0.05, "date": 0.03}  # the budgets
EAGER_PASSES = attention_probe.EAGER_PASSES


class _HookTimer:
    """Wraps a logger's hooks to add up the time the training thread spends in them,
    and its writer thread's CPU time."""

    def __init__(self, logger: AttentionLogger):
        self.seconds = 0.0
        self.end_seconds = 0.0  # of which waiting for the writer at the end of fit
        self.points = 0
        self.worker_cpu = 0.0
        self.logger = logger
        log, finish = logger._log, logger.on_train_end

        def timed_log(step):
            started = time.perf_counter()
            before = logger._last_step
            log(step)
            self.seconds += time.perf_counter() - started
            self.points += logger._last_step != before

        def timed_end(logs=None):
            started = time.perf_counter()
            finish(logs)
            self.end_seconds = time.perf_counter() - started
            self.seconds += self.end_seconds

        write = logger._writing._write

        def timed_write(*args):
            started = time.thread_time()
            write(*args)
            self.worker_cpu += time.thread_time() - started

        logger._log, logger.on_train_end = timed_log, timed_end
        logger._writing._write = timed_write


# -- the cases ------------------------------------------------------------------------------


class BertCase:
    name = "bert"
    vocabulary, length, examples, epochs, batch_size, probe = 100, 32, 2048, 2, 32, 2

    def __init__(self, args):
        rng = np.random.default_rng(0)
        lengths = rng.integers(8, self.length + 1, size=self.examples)
        ids = np.zeros((self.examples, self.length), dtype="int32")
        for b, n in enumerate(lengths):
            ids[b, :n] = rng.integers(1, self.vocabulary, size=n)
        self.x = {
            "token_ids": ids,
            "segment_ids": np.zeros_like(ids),
            "padding_mask": ids != 0,
        }
        self.y = rng.integers(0, 2, size=self.examples).astype("int32")
        self.describe = (
            f"BertBackbone (vocabulary {self.vocabulary}, 2 layers, 2 heads, hidden 32, "
            f"length {self.length}), {self.examples} examples, {self.epochs} epochs, batch "
            f"{self.batch_size}, probe of {self.probe}"
        )

    def train(self, log_dir: str | None):
        import keras_hub

        _fresh()
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=self.vocabulary,
            num_layers=2,
            num_heads=2,
            hidden_dim=32,
            intermediate_dim=64,
            max_sequence_length=self.length,
        )
        inputs = {
            name: keras.Input((self.length,), dtype=dtype, name=name)
            for name, dtype in (
                ("token_ids", "int32"),
                ("segment_ids", "int32"),
                ("padding_mask", "bool"),
            )
        }
        pooled = backbone(inputs)["pooled_output"]
        model = keras.Model(inputs, keras.layers.Dense(2)(pooled))
        model.compile(
            keras.optimizers.Adam(1e-3),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        callbacks, timer = [], None
        if log_dir:
            probe = {name: value[: self.probe] for name, value in self.x.items()}
            logger = AttentionLogger(log_dir, probe)
            timer = _HookTimer(logger)
            callbacks = [logger]
        return _timed_fit(
            model, timer, x=self.x, y=self.y, epochs=self.epochs, batch_size=self.batch_size,
            callbacks=callbacks,
        )  # fmt: skip


class DateCase:
    name = "date"

    def __init__(self, args):
        self.epochs, self.batch_size = args.epochs, args.batch_size
        self.train_dates, _ = example.split_dates(args.samples, 1000, seed=0)
        self.describe = (
            f"date example: {args.samples} dates, {args.epochs} epoch(s), batch {args.batch_size}"
        )

    def train(self, log_dir: str | None):
        _fresh()
        model = example.build_model()
        example.compile_model(model)
        callbacks, timer = [], None
        if log_dir:
            logger = example.attention_logger(log_dir)
            timer = _HookTimer(logger)
            callbacks = [logger]
        data = example.dataset(self.train_dates, self.batch_size, shuffle=True, seed=0)
        return _timed_fit(model, timer, x=data, epochs=self.epochs, callbacks=callbacks)


def _fresh() -> None:
    """Each run starts as a user's single `fit` in a new process would, as far as one
    process can: Keras's global state and TensorFlow's kernel cache cleared, and the earlier
    runs' models (cyclic garbage) collected. Left to the collector, a full collection (0.7
    to 1.1 s here by the 4th round, growing with the heap) lands in whichever run crosses
    its threshold, more often in the one that allocates more."""
    keras.backend.clear_session()  # also gc.collect()
    keras.utils.set_random_seed(0)


def _timed_fit(model, timer, **kwargs):
    started, cpu_started = time.perf_counter(), time.process_time()
    model.fit(verbose=0, **kwargs)
    return time.perf_counter() - started, time.process_time() - cpu_started, timer


# -- the measurement ------------------------------------------------------------------------


def measure(case, rounds: int, tmp: str, compiled: bool = False) -> float:
    variants = ["without", "with"] + (["compiled"] if compiled else [])
    times: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    hooks: dict[str, list[float]] = {v: [] for v in variants[1:]}
    points, worker, ends = [], [], []
    print(f"\n== {case.name}: {case.describe}; {rounds} round(s)", flush=True)
    case.train(None)  # warm-up: imports, first traces, caches; not counted
    try:
        for r in range(rounds):
            # Each round starts with the next variant, so that none always runs first.
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for variant in order:
                log_dir = (
                    os.path.join(tmp, f"{case.name}{r}{variant}") if variant != "without" else None
                )
                # "compiled": the probe pass compiled from the first point (no eager passes),
                # as it was before the eager first points.
                attention_probe.EAGER_PASSES = 0 if variant == "compiled" else EAGER_PASSES
                seconds, cpu_seconds, timer = case.train(log_dir)
                times[variant].append(seconds)
                cpu[variant].append(cpu_seconds)
                extra = ""
                if timer:
                    hooks[variant].append(timer.seconds)
                    if variant == "with":
                        points.append(timer.points)
                        worker.append(timer.worker_cpu)
                        ends.append(timer.end_seconds)
                    probe_pass = timer.logger._pass
                    extra = (
                        f"  (logger: {timer.points} points, {probe_pass.eager_runs} eager, "
                        f"{probe_pass.traces} trace(s); {timer.seconds:.2f} s in its hooks, of "
                        f"which {timer.end_seconds:.2f} s waiting at the end; "
                        f"{timer.worker_cpu:.2f} s CPU on its writer thread)"
                    )
                print(
                    f"round {r + 1} {variant:>8} logger: {seconds:7.2f} s wall, "
                    f"{cpu_seconds:7.2f} s CPU{extra}",
                    flush=True,
                )
    finally:
        attention_probe.EAGER_PASSES = EAGER_PASSES
    without, with_ = statistics.median(times["without"]), statistics.median(times["with"])
    cpu_without, cpu_with = statistics.median(cpu["without"]), statistics.median(cpu["with"])
    hook = statistics.median(hooks["with"])
    ratio = with_ / without
    # Each round's "with" against the same round's "without": a drift that lasts a round
    # hits both alike.
    pairs = zip(times["with"], times["without"], strict=True)
    paired = statistics.median(w / wo for w, wo in pairs)
    print(f"median fit time without the logger: {without:.2f} s, with: {with_:.2f} s")
    print(
        f"{case.name}: ratio with/without {ratio:.3f} (overhead {ratio - 1:+.1%}; "
        f"target <= {TARGETS[case.name]:+.0%}); paired per round: median {paired - 1:+.1%}"
    )
    print(
        f"CPU time of the process: {cpu_without:.2f} s without, {cpu_with:.2f} s with "
        f"(overhead {cpu_with / cpu_without - 1:+.1%})"
    )
    print(
        f"training thread in the logger's hooks: median {hook:.2f} s = {hook / without:.1%} "
        f"of fit, {hook / max(statistics.median(points), 1):.3f} s per logging point "
        f"(waiting for the writer at the end: median {statistics.median(ends):.2f} s); "
        f"writer thread CPU: median {statistics.median(worker):.2f} s"
    )
    if compiled:
        wall, cpu_c = statistics.median(times["compiled"]), statistics.median(cpu["compiled"])
        print(
            f"compiled from the first point: {wall:.2f} s wall ({wall / without - 1:+.1%}), "
            f"{cpu_c:.2f} s CPU ({cpu_c / cpu_without - 1:+.1%}), hooks median "
            f"{statistics.median(hooks['compiled']):.2f} s"
        )
    return ratio


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=("both", "bert", "date"), default="both")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each variant")
    parser.add_argument("--epochs", type=int, default=example.DEFAULT_EPOCHS, help="date case")
    parser.add_argument("--samples", type=int, default=example.DEFAULT_SAMPLES, help="date case")
    parser.add_argument("--batch-size", type=int, default=example.DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="also run the logger with its probe pass compiled from the first point",
    )
    args = parser.parse_args(argv)
    print(
        f"keras backend {keras.backend.backend()}; {os.cpu_count()} CPU(s); load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} at the start (a shared machine "
        "skews wall times: compare the CPU figures too)",
        flush=True,
    )
    cases = [BertCase, DateCase] if args.case == "both" else [
        {"bert": BertCase, "date": DateCase}[args.case]
    ]  # fmt: skip
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            ratios[case.name] = measure(case(args), args.rounds, tmp, args.compiled)
    print()
    for name, ratio in ratios.items():
        print(f"{name}: fit with the default logger / without = {ratio:.3f} ({ratio - 1:+.1%})")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
