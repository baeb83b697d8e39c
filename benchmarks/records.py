"""Benchmark: framing event records without TensorFlow, `tb_plugin.records` against
TensorBoard's `RecordWriter`.

On JAX and PyTorch, `AttentionLogger` writes its event files without TensorFlow. Each
record carries two masked CRC-32C checksums; TensorBoard's `RecordWriter` computes them
in Python (its stub's `crc32c`), ours in numpy. The payloads are real events, as
`tb_plugin.summary.attention` makes them: softmax matrices of three sizes, and a whole
logging point of a BERT-base-sized model (12 layers x 2 probe examples of 12 heads x
128 x 128). Both write the same records into memory, interleaved, repeated; medians and
the ratio (ours / TensorBoard's) are printed, and the bytes are checked to be equal.

Usage: .venv/bin/python benchmarks/records.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time

import numpy as np
from tables import print_rows
from tensorboard.summary.writer.record_writer import RecordWriter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tb_plugin import records  # noqa: E402
from tb_plugin.summary import attention  # noqa: E402


class _Collector:
    """Takes events as a writer would and keeps their serialized bytes."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    def add_event(self, event) -> None:
        self.payloads.append(event.SerializeToString())


def _softmax(shape: tuple[int, ...], seed: int) -> np.ndarray:
    scores = 3.0 * np.random.default_rng(seed).normal(size=shape)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def payloads(shape: tuple[int, ...], count: int) -> list[bytes]:
    collector = _Collector()
    for i in range(count):
        attention(f"layer_{i}/0", _softmax(shape, seed=i), step=0, writer=collector)
    return collector.payloads


def theirs(batch: list[bytes]) -> bytes:
    stream = io.BytesIO()
    writer = RecordWriter(stream)
    for payload in batch:
        writer.write(payload)
    return stream.getvalue()


def ours(batch: list[bytes]) -> bytes:
    return b"".join(records.frame(payload) for payload in batch)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    print(f"machine: {machine}, Python {platform.python_version()}")
    cases = [
        ("64 x 64", payloads((64, 64), 1)),
        ("12 heads x 128 x 128", payloads((12, 128, 128), 1)),
        ("1024 x 1024", payloads((1024, 1024), 1)),
        ("logging point, 24 x (12 x 128 x 128)", payloads((12, 128, 128), 24)),
    ]
    rows = []
    for name, batch in cases:
        assert ours(batch) == theirs(batch), name
        times: dict[str, list[float]] = {"ours": [], "theirs": []}
        for _ in range(args.repeats):
            for label, write in (("ours", ours), ("theirs", theirs)):
                start = time.perf_counter()
                write(batch)
                times[label].append(time.perf_counter() - start)
        mine, peer = statistics.median(times["ours"]), statistics.median(times["theirs"])
        size = sum(len(p) for p in batch)
        timed = (f"{mine * 1e3:.2f} ms", f"{peer * 1e3:.2f} ms", f"{mine / peer:.3f}")
        rows.append((name, f"{size:,} B", *timed))
    print_rows(rows, ("payload", "bytes", "ours", "TensorBoard's RecordWriter", "ratio"))
    print("(the same bytes from both; medians of interleaved repeats)")


if __name__ == "__main__":
    main()
