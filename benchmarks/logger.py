"""What `AttentionLogger` costs: the date example's training time with and without it.

Same process, same data, same seed; the runs alternate (without, with, with, without,
...) so that a drift in the machine's load hits both alike; medians are compared. The
logger runs with its default settings (every epoch, images and scalars on), on the
example's probe dates. Also printed: the process's CPU time with and without (less
sensitive than wall time to other work on a shared machine), and the time the training
thread spent inside the logger's hooks (it draws the heatmap images on a worker thread).

    python benchmarks/logger.py                       # the example's default run, 3 rounds
    python benchmarks/logger.py --epochs 1 --samples 8000 --rounds 2   # quicker
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

import date_translation as example  # noqa: E402
import keras  # noqa: E402

TARGET = 0.03  # the budget: at most 3% of the example's training time


class _HookTimer(keras.callbacks.Callback):
    """Wraps a logger's hooks to add up the time the training thread spends in them."""

    def __init__(self, logger):
        super().__init__()
        self.seconds = 0.0
        self.points = 0
        log = logger._log

        def timed(step):
            started = time.perf_counter()
            before = logger._last_step
            log(step)
            self.seconds += time.perf_counter() - started
            self.points += logger._last_step != before

        logger._log = timed
        finish = logger.on_train_end

        def timed_end(logs=None):
            started = time.perf_counter()
            finish(logs)
            self.seconds += time.perf_counter() - started

        logger.on_train_end = timed_end

        # The heatmap images are drawn on the logger's worker thread: add up its CPU time.
        self.worker_cpu = 0.0
        write_images = logger._write_images

        def timed_images(*args):
            started = time.thread_time()
            write_images(*args)
            self.worker_cpu += time.thread_time() - started

        logger._write_images = timed_images


def train_once(train_dates, epochs: int, batch_size: int, seed: int, log_dir: str | None):
    keras.utils.set_random_seed(seed)
    model = example.build_model()
    example.compile_model(model)
    callbacks, timer = [], None
    if log_dir:
        logger = example.attention_logger(log_dir)
        timer = _HookTimer(logger)
        callbacks = [logger]
    data = example.dataset(train_dates, batch_size, shuffle=True, seed=seed)
    started, cpu_started = time.perf_counter(), time.process_time()
    model.fit(data, epochs=epochs, verbose=0, callbacks=callbacks)
    return time.perf_counter() - started, time.process_time() - cpu_started, timer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=example.DEFAULT_EPOCHS)
    parser.add_argument("--samples", type=int, default=example.DEFAULT_SAMPLES)
    parser.add_argument("--batch-size", type=int, default=example.DEFAULT_BATCH_SIZE)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant (alternating)")
    args = parser.parse_args(argv)

    train_dates, _ = example.split_dates(args.samples, 1000, seed=0)
    times: dict[str, list[float]] = {"without": [], "with": []}
    cpu: dict[str, list[float]] = {"without": [], "with": []}
    hook_seconds, points, worker_cpu = [], [], []
    print(
        f"date example: {args.samples} dates, {args.epochs} epoch(s), batch "
        f"{args.batch_size}; {os.cpu_count()} CPU(s); {args.rounds} round(s)",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ("without", "with") if r % 2 == 0 else ("with", "without")
            for variant in order:
                log_dir = os.path.join(tmp, f"run{r}") if variant == "with" else None
                seconds, cpu_seconds, timer = train_once(
                    train_dates, args.epochs, args.batch_size, seed=0, log_dir=log_dir
                )
                times[variant].append(seconds)
                cpu[variant].append(cpu_seconds)
                extra = ""
                if timer:
                    hook_seconds.append(timer.seconds)
                    points.append(timer.points)
                    worker_cpu.append(timer.worker_cpu)
                    extra = (
                        f"  (logger: {timer.points} logging points, {timer.seconds:.2f} s "
                        f"in its hooks, {timer.worker_cpu:.2f} s CPU drawing images)"
                    )
                print(
                    f"round {r + 1} {variant:>7} logger: {seconds:7.2f} s wall, "
                    f"{cpu_seconds:7.2f} s CPU{extra}",
                    flush=True,
                )

    without, with_ = statistics.median(times["without"]), statistics.median(times["with"])
    overhead = with_ / without - 1
    hooks = statistics.median(hook_seconds)
    cpu_without, cpu_with = statistics.median(cpu["without"]), statistics.median(cpu["with"])
    print()
    print(f"median training time without the logger: {without:.2f} s")
    print(f"median training time with the logger:    {with_:.2f} s")
    print(
        f"ratio with/without: {with_ / without:.3f}  (overhead {overhead:+.1%}; "
        f"target <= {TARGET:.0%})"
    )
    print(
        f"CPU time (all threads of the process): {cpu_without:.2f} s without, "
        f"{cpu_with:.2f} s with: ratio {cpu_with / cpu_without:.3f} "
        f"(overhead {cpu_with / cpu_without - 1:+.1%})"
    )
    print(
        f"time in the logger's hooks: median {hooks:.2f} s = {hooks / without:.1%} of "
        f"training, {hooks / max(statistics.median(points), 1):.3f} s per logging point"
    )
    drawing = statistics.median(worker_cpu)
    print(
        f"CPU time drawing images on the worker thread: median {drawing:.2f} s "
        f"= {drawing / without:.1%} of the training time"
    )
    print(
        f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
        "(other work on the machine skews wall times; compare the CPU figures too)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
