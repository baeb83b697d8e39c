"""`plot_attention`: a labelled matplotlib heatmap of attention weights.

Layout as Bahdanau et al. (2015), fig. 3: one row per query (generated token),
one column per input (source token), the tokens on the axes, a colour bar.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from tb_plugin.labels import check_labels

# Beyond this many ticks on an axis, labels are thinned so that they stay readable.
_MAX_TICKS = 60


def _as_matrix(weights) -> np.ndarray:
    if hasattr(weights, "to_tensor"):  # a tf.RaggedTensor: pad its ragged axis
        weights = weights.to_tensor()
    if hasattr(weights, "numpy"):
        weights = weights.numpy()
    array = np.asarray(weights)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"`weights` must be numeric; got dtype {array.dtype}.")
    if array.ndim not in (2, 3):
        raise ValueError(
            "`weights` must be one example's (queries, inputs) matrix or (heads, queries, "
            f"inputs); got shape {array.shape}. Index the batch first, e.g. weights[0]."
        )
    return array.astype(np.float32)


def _labels(labels, size: int, name: str) -> list[str]:
    # The one label policy of the project, shared with the summary writer and the logger.
    return list(check_labels(labels, size, name))


def _set_ticks(ax, axis: str, labels: list[str]) -> None:
    step = max(1, int(np.ceil(len(labels) / _MAX_TICKS)))
    positions = np.arange(0, len(labels), step)
    fontsize = 10 if len(positions) <= 20 else 8 if len(positions) <= 40 else 6
    shown = [labels[i] for i in positions]
    if axis == "x":
        ax.set_xticks(positions)
        ax.set_xticklabels(shown, rotation=90, fontsize=fontsize)
    else:
        ax.set_yticks(positions)
        ax.set_yticklabels(shown, fontsize=fontsize)


def _draw(ax, matrix, input_labels, query_labels, cmap, vmin, vmax, colorbar, title):
    image = ax.imshow(
        matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest"
    )
    _set_ticks(ax, "x", input_labels)
    _set_ticks(ax, "y", query_labels)
    ax.set_xlabel("input")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return image


def plot_attention(
    weights,
    input_labels: Sequence[str] | None = None,
    query_labels: Sequence[str] | None = None,
    ax=None,
    *,
    head: int | None = None,
    cmap: str = "viridis",
    vmin: float | None = 0.0,
    vmax: float | None = None,
    colorbar: bool = True,
    title: str | None = None,
):
    """Draws attention weights as a labelled heatmap: rows queries, columns inputs.

    Args:
        weights: one example's weights, (queries, inputs) or (heads, queries,
            inputs); a NumPy array, a tensor or a tf.RaggedTensor.
        input_labels: n strings for the columns (default: positions).
        query_labels: m strings for the rows (default: positions).
        ax: a matplotlib Axes to draw on (for several heads: a sequence of Axes,
            one per head). Default: a new figure.
        head: with (heads, m, n) weights, draw only this head.
        cmap: matplotlib colour map; viridis as TensorBoard's image summaries.
        vmin, vmax: colour range. Default 0 to the largest weight.
        colorbar: add a colour bar.
        title: axes title (per head, " head k" is appended).

    Returns:
        The Axes drawn on, or a list of Axes for several heads.
    """
    matrix = _as_matrix(weights)
    if matrix.ndim == 3 and head is not None:
        if not -matrix.shape[0] <= head < matrix.shape[0]:
            raise ValueError(f"`head` must be in [0, {matrix.shape[0]}); got {head}.")
        matrix = matrix[head]
    m, n = matrix.shape[-2:]
    input_labels = _labels(input_labels, n, "input_labels")
    query_labels = _labels(query_labels, m, "query_labels")
    vmax = vmax if vmax is not None else color_max(matrix)

    if matrix.ndim == 2:
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=_figsize(m, n))
        _draw(ax, matrix, input_labels, query_labels, cmap, vmin, vmax, colorbar, title)
        return ax

    heads = matrix.shape[0]
    if ax is None:
        import matplotlib.pyplot as plt

        width, height = _figsize(m, n)
        _, axes = plt.subplots(1, heads, figsize=(width * heads, height), squeeze=False)
        axes = list(axes[0])
    else:
        axes = list(ax) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
        if len(axes) != heads:
            raise ValueError(f"`ax` must hold {heads} Axes, one per head; got {len(axes)}.")
    for k, axis in enumerate(axes):
        head_title = f"{title} head {k}" if title else f"head {k}"
        _draw(axis, matrix[k], input_labels, query_labels, cmap, vmin, vmax, colorbar, head_title)
    return axes


def color_max(matrix: np.ndarray) -> float:
    """The top of the default colour range: the largest weight (never 0, so never empty)."""
    return max(float(np.nanmax(matrix)) if matrix.size else 1.0, 1e-9)


def _figsize(m: int, n: int) -> tuple[float, float]:
    # About a quarter inch per labelled cell, within sensible page limits.
    width = min(max(3.0 + 0.25 * min(n, _MAX_TICKS), 4.0), 16.0)
    height = min(max(2.0 + 0.25 * min(m, _MAX_TICKS), 3.0), 16.0)
    return width, height


def attention_png(
    weights,
    input_labels: Sequence[str] | None = None,
    query_labels: Sequence[str] | None = None,
    *,
    title: str | None = None,
    dpi: int = 100,
) -> bytes:
    """Renders `plot_attention`'s heatmap of one (m, n) or (h, m, n) matrix to PNG bytes.

    Uses a bare `matplotlib.figure.Figure` (no pyplot), so it is safe off the main
    thread and leaves the user's open figures alone.
    """
    figure, _ = heatmap_figure(
        _as_matrix(weights), input_labels, query_labels, title=title, dpi=dpi
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def heatmap_figure(matrix: np.ndarray, input_labels, query_labels, *, title: str | None, dpi: int):
    """A bare `Figure` (no pyplot) with `plot_attention`'s heatmap, one Axes per head.

    Returns `(figure, axes)`. A bare figure is safe off the main thread and leaves the
    user's pyplot figures alone; shared by `attention_png` and the logger's images.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    heads = matrix.shape[0] if matrix.ndim == 3 else 1
    width, height = _figsize(*matrix.shape[-2:])
    figure = Figure(figsize=(width * heads, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(1, heads, squeeze=False)[0])
    plot_attention(
        matrix, input_labels, query_labels, ax=axes if heads > 1 else axes[0], title=title
    )
    return figure, axes
