"""`AttentionLogger`: logs the attention of fixed probe examples to TensorBoard during `fit`.

The weights come from a probe pass through the model (`attention_probe.ProbePass`: a
`tf.function` of its own, in inference mode; the training step is not touched). Per
logging point the logger writes, in the run `<log_dir>/attention`, the plugin's
attention summaries, labelled heatmap images and entropy scalars.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_seqattn.attention_probe import ProbePass, Target, find_attention_layers, kind_of
from keras_seqattn.summary_writing import SummaryWriting, is_chief

logger = logging.getLogger(__name__)

# The run (a subdirectory of `log_dir`) the logger writes: next to the `train/` and
# `validation/` runs of `keras.callbacks.TensorBoard`, never inside them, so that two
# writers never append to the same run.
RUN_NAME = "attention"

Labels = Sequence[Sequence[str]] | Callable[[Any], Sequence[str]] | None


# --------------------------------------------------------------------------------------
# Probe and labels
# --------------------------------------------------------------------------------------


def _to_tensor_leaf(x, path: str):
    if isinstance(x, (tf.Tensor, tf.RaggedTensor, tf.SparseTensor)):
        return x
    try:
        return tf.convert_to_tensor(np.asarray(x) if not hasattr(x, "numpy") else x)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"`probe`{path}: expected an array, a tensor or a tf.RaggedTensor (a batch of "
            f"probe examples); got {type(x).__name__}: {err}"
        ) from err


def _prepare_probe(probe):
    """The probe as tensors, and its number of examples; clear errors otherwise."""
    if probe is None:
        raise ValueError(
            "`probe` is required: the model input of a few fixed examples, e.g. x[:4], "
            "a list or dict of arrays, or a tf.RaggedTensor."
        )
    if isinstance(probe, tf.data.Dataset):
        raise TypeError(
            "`probe` must be the model input itself (arrays, tensors, a list or dict of "
            "them), not a tf.data.Dataset; take a few examples, e.g. "
            "next(iter(dataset))[0]."
        )
    flat = keras.tree.flatten_with_path(probe)
    paths = ["".join(f"[{p!r}]" for p in path) for path, _ in flat]
    leaves = [leaf for _, leaf in flat]
    if not leaves:
        raise ValueError("`probe` is empty: expected arrays or tensors of a few examples.")
    converted = [_to_tensor_leaf(x, p) for x, p in zip(leaves, paths, strict=True)]
    sizes = []
    for x, path in zip(converted, paths, strict=True):
        if x.shape.rank is None or x.shape.rank == 0:
            raise ValueError(
                f"`probe`{path}: expected a batch of examples (rank >= 1); got a scalar."
            )
        sizes.append(int(x.shape[0]) if x.shape[0] is not None else int(tf.shape(x)[0]))
    if len(set(sizes)) != 1:
        listed = ", ".join(f"probe{p or ''}: {s}" for p, s in zip(paths, sizes, strict=True))
        raise ValueError(
            f"`probe`: every input must hold the same number of examples; got {listed}."
        )
    if sizes[0] < 1:
        raise ValueError("`probe`: expected at least one example; got a batch of 0.")
    return keras.tree.pack_sequence_as(probe, converted), sizes[0]


def _example(probe, index: int):
    """Example `index` of the probe, as numpy (a ragged row: only its own values)."""

    def row(x):
        value = x[index]
        return value.numpy() if hasattr(value, "numpy") else np.asarray(value)

    return keras.tree.map_structure(row, probe)


def _resolve_labels(labels: Labels, probe, count: int, name: str) -> list[list[str]] | None:
    """Per-example label lists, from lists or a callable; checks their count and type."""
    if labels is None:
        return None
    if callable(labels):
        resolved = []
        for b in range(count):
            try:
                tokens = labels(_example(probe, b))
            except Exception as err:
                raise ValueError(
                    f"`{name}`: the callable failed on probe example {b}: "
                    f"{type(err).__name__}: {err}"
                ) from err
            resolved.append(_check_tokens(tokens, f"{name}(probe example {b})"))
        return resolved
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
        raise TypeError(
            f"`{name}` must be one list of token strings per probe example, or a callable "
            f"mapping a probe example to its tokens; got {type(labels).__name__}."
        )
    if len(labels) != count:
        raise ValueError(
            f"`{name}` must hold one list of tokens per probe example: the probe has "
            f"{count} example(s), `{name}` has {len(labels)}."
        )
    return [_check_tokens(tokens, f"{name}[{b}]") for b, tokens in enumerate(labels)]


def _check_tokens(tokens, where: str) -> list[str]:
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, (Sequence, np.ndarray)):
        raise TypeError(
            f"`{where}`: expected a sequence of token strings, one per position; got "
            f"{type(tokens).__name__}{' ' + repr(tokens[:40]) if isinstance(tokens, str) else ''}"
            ". (For characters, pass list(text).)"
        )
    out = []
    for i, token in enumerate(tokens):
        if isinstance(token, bytes):
            token = token.decode("utf-8", errors="replace")
        if not isinstance(token, (str, np.str_)):
            raise TypeError(
                f"`{where}[{i}]`: expected a string token; got {type(token).__name__} {token!r}."
            )
        out.append(str(token))
    return out


def _pick_labels(length: int, own: list[str] | None, other: list[str] | None) -> list[str]:
    """An axis's labels: its own list if it fits, else the other list if that fits.

    The other list fits a self-attention layer: its queries are its inputs.
    """
    if own is not None and len(own) == length:
        return own
    if other is not None and len(other) == length:
        return other
    return [str(i) for i in range(length)]


# --------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------


def attention_statistics(matrices: Sequence[np.ndarray]) -> tuple[float, float]:
    """Mean entropy (nats) and mean largest weight over all rows of (m, n)/(h, m, n) matrices.

    Rows without any weight (queries with nothing to see) are left out.
    """
    entropies, largest = [], []
    for matrix in matrices:
        rows = matrix.reshape(-1, matrix.shape[-1]).astype(np.float64)
        rows = rows[rows.sum(axis=1) > 0] if rows.size else rows
        if not rows.size:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(rows > 0, rows * np.log(rows), 0.0)
        entropies.append(-terms.sum(axis=1))
        largest.append(rows.max(axis=1))
    if not entropies:
        return math.nan, math.nan
    return float(np.concatenate(entropies).mean()), float(np.concatenate(largest).mean())


@dataclass
class _Matrix:
    """One example's attention matrix of one layer at one logging point, ready to write."""

    tag: str
    weights: np.ndarray  # (m, n) or (heads, m, n), trimmed to the example's lengths
    input_labels: list[str]
    query_labels: list[str]
    description: str


# --------------------------------------------------------------------------------------
# The callback
# --------------------------------------------------------------------------------------


class AttentionLogger(keras.callbacks.Callback):
    """Logs the attention weights of fixed probe examples to TensorBoard during `fit`.

    At the start of training and then every `every_n_epochs` epochs (or every
    `every_n_steps` training steps), the probe runs through the model in inference
    mode and, for every `SequenceAttention` layer (nested and subclassed models
    included) and every Keras `MultiHeadAttention` layer, or the layers named in
    `layers`, the logger writes to the run `<log_dir>/attention`:

    * per probe example, an attention summary with tag `<layer name>/<example index>`
      (rows: queries, columns: inputs, tokens on the axes; heads kept for
      `MultiHeadAttention`) for TensorBoard's Attention tab;
    * unless `images=False`, the same labelled heatmap as a stock image summary, tag
      `<layer name>/<example index>/heatmap`, for the Images tab;
    * unless `scalars=False`, per layer the mean attention entropy in nats
      (`<layer name>/mean_entropy`) and the mean largest weight
      (`<layer name>/mean_max_weight`) over all probe queries, for the Scalars tab.

    The step of every summary is the training step (the optimizer's iteration count).
    A layer called twice in one forward pass gets tags `<layer name>@2/...` for its
    second call. The compiled training step is not touched (see the module docstring
    for how, and for what the logger cannot reach). Under `tf.distribute`, only the
    chief writes, once per logging point.

    ```python
    logger = AttentionLogger("runs/demo", probe=x_train[:4],
                             input_labels=[src_tokens(x) for x in x_train[:4]])
    model.fit(x_train, y_train, epochs=5, callbacks=[logger])
    ```

    Args:
        log_dir: the TensorBoard log directory, as given to `keras.callbacks.TensorBoard`
            (the logger writes its own run below it, `<log_dir>/attention`).
        probe: the model input of a few fixed examples, in any form the model takes:
            an array, a list or dict of arrays, tensors or tf.RaggedTensors. The same
            examples at every logging point, so that steps compare.
        input_labels: the input tokens of each probe example: one list of strings per
            example, or a callable mapping one probe example (numpy; a ragged row holds
            only its own values) to its list of tokens. Default: positions.
        query_labels: the query tokens of each probe example, in the same forms.
            A layer whose axis length does not match its own labels but matches the
            other list (a self-attention layer's queries are its inputs) uses that one;
            otherwise it is labelled with positions.
        every_n_epochs: log after every this many epochs (and at the start).
        every_n_steps: log every this many training steps instead of by epoch.
            Per-batch logging makes Keras wait for every batch's results.
        layers: names (or "/"-joined paths inside nested models) of the attention
            layers to log; default: all of them.
        images: also write the heatmaps as image summaries: `plot_attention`'s
            picture (tokens on the axes, a colour bar), composed from a colour lookup
            table on a worker thread while training goes on (`heatmap_images`).
        scalars: also write the mean entropy and mean largest weight per layer.

    Raises:
        TypeError, ValueError: at construction for bad arguments, a probe whose inputs
            disagree on the number of examples, or label lists whose count differs from
            the probe's; before the first training step (in `on_train_begin`) for a
            probe the model cannot take, a model without attention layers, unknown
            `layers`, or labels whose lengths match no logged layer.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        probe: Any,
        input_labels: Labels = None,
        query_labels: Labels = None,
        every_n_epochs: int = 1,
        every_n_steps: int | None = None,
        layers: Sequence[str] | None = None,
        images: bool = True,
        scalars: bool = True,
    ):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
            raise TypeError(f"`log_dir` must be a non-empty path; got {log_dir!r}.")
        self.log_dir = os.fspath(log_dir)
        self.every_n_epochs = _positive_int(every_n_epochs, "every_n_epochs")
        self.every_n_steps = (
            None if every_n_steps is None else _positive_int(every_n_steps, "every_n_steps")
        )
        if layers is not None:
            if (
                isinstance(layers, str)
                or not isinstance(layers, Sequence)
                or not all(isinstance(name, str) and name for name in layers)
            ):
                raise TypeError(
                    f"`layers` must be a list of layer names (strings) or None; got {layers!r}."
                )
            if not layers:
                raise ValueError("`layers` is empty: name at least one layer, or pass None.")
        self.layers = None if layers is None else list(layers)
        for name, value in (("images", images), ("scalars", scalars)):
            if not isinstance(value, bool):
                raise TypeError(f"`{name}` must be True or False; got {value!r}.")
        self.images = images
        self.scalars = scalars
        self.probe, self.num_examples = _prepare_probe(probe)
        self.input_labels = _resolve_labels(
            input_labels, self.probe, self.num_examples, "input_labels"
        )
        self.query_labels = _resolve_labels(
            query_labels, self.probe, self.num_examples, "query_labels"
        )
        self._writing = SummaryWriting(self.run_dir, images=images, scalars=scalars)
        self._pass: ProbePass | None = None
        self._pass_model = None
        self._last_step: int | None = None
        self._last_batch_step = 0
        self._first_run = True
        self._chief = True
        if self.every_n_steps is not None:
            # Only then is a batch hook defined: a callback with one makes Keras give up
            # dispatching batch callbacks asynchronously.
            self.on_train_batch_end = self._on_train_batch_end

    @property
    def run_dir(self) -> str:
        """Where the summaries go: the `attention` run below `log_dir`."""
        return os.path.join(self.log_dir, RUN_NAME)

    # -- Keras hooks ----------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._chief = is_chief(self.model)
        if self._pass is None or self._pass_model is not self.model:
            self._pass = ProbePass(self.model, self._targets())
            self._pass_model = self.model
            self._first_run = True
        self._last_batch_step = self._global_step()
        # The probe pass at step 0 doubles as the check of probe and labels: it runs
        # before the first training step, so a mistake surfaces before any training.
        self._log(self._global_step())

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_steps is None and (epoch + 1) % self.every_n_epochs == 0:
            self._log(self._global_step())

    def _on_train_batch_end(self, batch, logs=None):
        step = self._global_step()
        # Crossing a multiple of every_n_steps, also when Keras reports several steps at
        # once (steps_per_execution > 1).
        if step // self.every_n_steps > self._last_batch_step // self.every_n_steps:
            self._log(step)
        self._last_batch_step = step

    def on_train_end(self, logs=None):
        # Waits for the last points' images and closes the event file: everything is
        # on disk when fit returns. A write failure was a warning, never an error.
        self._writing.finish()

    # -- the work -------------------------------------------------------------------------

    def _global_step(self) -> int:
        optimizer = getattr(self.model, "optimizer", None)
        iterations = getattr(optimizer, "iterations", None)
        if iterations is None:
            return 0
        value = getattr(iterations, "value", iterations)  # a Keras variable's TF value
        return int(value.numpy()) if hasattr(value, "numpy") else int(value)

    def _targets(self) -> list[Target]:
        found = find_attention_layers(self.model)
        names = [layer.name for _, layer in found]
        targets = []
        for path, layer in found:
            key = layer.name if names.count(layer.name) == 1 else path
            targets.append(Target(key, layer, kind_of(layer)))
        if not targets:
            raise ValueError(
                f"AttentionLogger: model {self.model.name!r} has no attention layer to log: "
                "it looks for SequenceAttention and keras.layers.MultiHeadAttention layers "
                "(also inside nested models and layers)."
            )
        if self.layers is None:
            return targets
        chosen = []
        for name in self.layers:
            match = [t for t in targets if name in (t.key, t.layer.name)] or [
                t for t, (path, _) in zip(targets, found, strict=True) if path == name
            ]
            if not match:
                raise ValueError(
                    f"AttentionLogger: `layers` names {name!r}, which is not an attention "
                    f"layer of model {self.model.name!r}; its attention layers are: "
                    f"{', '.join(repr(t.key) for t in targets)}."
                )
            chosen.extend(t for t in match if t not in chosen)
        return chosen

    def _run_probe(self) -> list[dict[str, np.ndarray]]:
        try:
            return self._pass(self.probe)
        except Exception as err:
            if not self._first_run:
                raise
            raise ValueError(
                f"AttentionLogger: the probe does not fit model {self.model.name!r}: "
                f"calling the model on it failed with {type(err).__name__}: {err}\n"
                "`probe` must be model input for a few examples, in the form `fit` gets "
                "as x (e.g. x[:4], or a dict/list of arrays for a multi-input model)."
            ) from err

    def _matrices(self, outputs) -> tuple[list[_Matrix], dict[str, tuple[float, float]]]:
        """Trims each record's weights to each example's lengths and labels them."""
        if self._first_run:
            self._check_reached()
        matrices, stats = [], {}
        for record, out in zip(self._pass.records, outputs, strict=True):
            weights, query_len, input_len = out["weights"], out["query_len"], out["input_len"]
            per_example = []
            for b in range(self.num_examples):
                m, n = int(query_len[b]), int(input_len[b])
                matrix = weights[b][..., :m, :n]
                per_example.append(matrix)
                own_in = self.input_labels[b] if self.input_labels else None
                own_q = self.query_labels[b] if self.query_labels else None
                kind = type(record.target.layer).__name__
                matrices.append(
                    _Matrix(
                        tag=f"{record.tag}/{b}",
                        weights=matrix,
                        input_labels=_pick_labels(n, own_in, own_q),
                        query_labels=_pick_labels(m, own_q, own_in),
                        description=(
                            f"{kind} layer {record.target.key!r}, probe example {b}: rows are "
                            "queries, columns inputs"
                            + (", one matrix per head" if record.target.kind.heads else "")
                        ),
                    )
                )
            stats[record.tag] = attention_statistics(per_example)
        if self._first_run:
            self._check_label_lengths(outputs)
        return matrices, stats

    def _check_reached(self) -> None:
        called = {r.target.key for r in self._pass.records}
        for key in sorted(self._pass.unreachable):
            logger.warning(
                "AttentionLogger: layer %r runs inside a graph loop (e.g. a recurrent "
                "cell); its weights cannot be read from outside the loop and are not "
                "logged.",
                key,
            )
        for target in self._pass.targets:
            if target.key in called or target.key in self._pass.unreachable:
                continue
            if self.layers is not None:
                raise ValueError(
                    f"AttentionLogger: layer {target.key!r} named in `layers` is not called "
                    f"when model {self.model.name!r} runs on the probe."
                )
            logger.warning(
                "AttentionLogger: layer %r is not called on the probe; skipped.", target.key
            )
        if not called:
            raise ValueError(
                f"AttentionLogger: none of the attention layers of model {self.model.name!r} "
                "could be read on the probe pass "
                f"({', '.join(repr(t.key) for t in self._pass.targets)})."
            )

    def _check_label_lengths(self, outputs) -> None:
        for name, labels, axis in (
            ("input_labels", self.input_labels, "input_len"),
            ("query_labels", self.query_labels, "query_len"),
        ):
            if labels is None:
                continue
            for b, tokens in enumerate(labels):
                lengths = {
                    r.tag: int(out[axis][b])
                    for r, out in zip(self._pass.records, outputs, strict=True)
                }
                if len(tokens) not in lengths.values():
                    what = "inputs" if axis == "input_len" else "queries"
                    listed = ", ".join(f"{tag!r}: {n}" for tag, n in lengths.items())
                    raise ValueError(
                        f"AttentionLogger: `{name}[{b}]` has {len(tokens)} labels, but probe "
                        f"example {b} has a different number of {what} in every logged "
                        f"layer ({listed}). Give one label per position of the example "
                        "(without padding)."
                    )

    def _log(self, step: int) -> None:
        if step == self._last_step:
            return
        outputs = self._run_probe()
        matrices, stats = self._matrices(outputs)
        if self._chief:
            # Checks (and encodes) the whole point before writing any of it, then
            # writes it on a worker thread (summary_writing).
            self._writing.write_point(step, matrices, stats)
        self._first_run = False
        self._last_step = step


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    return int(value)
