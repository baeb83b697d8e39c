"""Plain-text tables for the benchmarks' output (no Keras: gpu_layer.py imports it before
it picks a backend)."""

from __future__ import annotations

from collections.abc import Sequence


def print_rows(rows: Sequence[Sequence], header: Sequence[str]) -> None:
    """Prints `header` and `rows` as left-aligned columns, each as wide as its widest cell."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("{:<" + str(w) + "}" for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
