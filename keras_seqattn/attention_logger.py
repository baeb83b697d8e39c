"""`AttentionLogger`: logs the attention of fixed probe examples to TensorBoard during `fit`.

The weights come from a probe pass through the model (`attention_probe.ProbePass`, in
inference mode: eager for the first logging points and then a compiled function of its
own on TensorFlow, compiled on JAX, eager on PyTorch; the training step is not touched);
which tokens label which axis is decided by `attention_labels`. Per logging point the
logger writes, in the run `<log_dir>/attention`, the plugin's attention summaries,
labelled heatmap images and entropy scalars.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from keras_seqattn import attention_labels
from keras_seqattn.attention_labels import Labels
from keras_seqattn.attention_probe import ProbePass, Target, adapter_of, find_attention_layers
from keras_seqattn.attention_spans import is_ragged
from keras_seqattn.summary_writing import SummaryWriting, is_chief

logger = logging.getLogger(__name__)

# The run (a subdirectory of `log_dir`) the logger writes: next to the `train/` and
# `validation/` runs of `keras.callbacks.TensorBoard`, never inside them, so that two
# writers never append to the same run.
RUN_NAME = "attention"


# --------------------------------------------------------------------------------------
# Probe
# --------------------------------------------------------------------------------------


def _to_tensor_leaf(x, path: str):
    if is_ragged(x):
        if keras.backend.backend() != "tensorflow":
            raise TypeError(
                f"`probe`{path}: a tf.RaggedTensor needs the TensorFlow backend (this is "
                f"{keras.backend.backend()}); pad the probe and give the model a mask."
            )
        return x
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(x, tf.SparseTensor):
        return x
    try:
        if hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, np.ndarray):
            return keras.ops.convert_to_tensor(x)
        return keras.ops.convert_to_tensor(np.asarray(x))
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
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(probe, tf.data.Dataset):
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
        if len(x.shape) == 0:
            raise ValueError(
                f"`probe`{path}: expected a batch of examples (rank >= 1); got a scalar."
            )
        size = x.shape[0]
        if size is None:  # a ragged tensor of unknown row count
            size = int(x.nrows())
        sizes.append(int(size))
    if len(set(sizes)) != 1:
        listed = ", ".join(f"probe{p or ''}: {s}" for p, s in zip(paths, sizes, strict=True))
        raise ValueError(
            f"`probe`: every input must hold the same number of examples; got {listed}."
        )
    if sizes[0] < 1:
        raise ValueError("`probe`: expected at least one example; got a batch of 0.")
    return keras.tree.pack_sequence_as(probe, converted), sizes[0]


def _padded_length(x) -> int | None:
    """The sequence length of a probe input (its second axis), None for non-sequences."""
    if len(x.shape) < 2:
        return None
    if is_ragged(x):
        return int(x.bounding_shape()[1])
    return None if x.shape[1] is None else int(x.shape[1])


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
    mode and, for every attention layer the logger can read (nested and subclassed
    models included: `SequenceAttention`, `keras.layers.MultiHeadAttention` and its
    subclasses, `GroupQueryAttention`, `Attention`, `AdditiveAttention`, any layer
    whose `call` takes `return_attention_scores`, and layers with a registered
    `AttentionAdapter`), or the layers named in `layers`, the logger writes to the run
    `<log_dir>/attention`:

    * per probe example, an attention summary with tag `<layer path>/<example index>`
      (rows: queries, columns: inputs, tokens on the axes; heads kept for multi-head
      layers), trimmed to the example's real queries and inputs (see the README for
      which masks show padding), for TensorBoard's Attention tab;
    * unless `images=False`, the same labelled heatmap as a stock image summary, tag
      `<layer path>/<example index>/heatmap`, for the Images tab;
    * unless `scalars=False`, per layer the mean attention entropy in nats
      (`<layer path>/mean_entropy`) and the mean largest weight
      (`<layer path>/mean_max_weight`) over the probe's real queries, for the Scalars tab.

    The layer path is its place inside nested models (`encoder/attention_1`), stable
    across runs of the same code. The step of every summary is the training step (the
    optimizer's iteration count). A layer called twice in one forward pass gets tags
    `<layer path>@2/...` for its second call. The compiled training step is not touched
    (see `attention_probe` for how, on each backend, and for what the logger cannot
    reach). Under `tf.distribute`, only the chief writes, once per logging point.

    ```python
    logger = AttentionLogger("runs/demo", probe=x_train[:4],
                             input_labels=[src_tokens(x) for x in x_train[:4]])
    model.fit(x_train, y_train, epochs=5, callbacks=[logger])
    ```

    Labels (see `attention_labels` for the whole policy): each of them is one list of
    token strings per probe example, for the example's real positions (no padding), or a
    callable mapping one probe example (numpy; a ragged row holds only its own values) to
    that list.

    Args:
        log_dir: the TensorBoard log directory, as given to `keras.callbacks.TensorBoard`
            (the logger writes its own run below it, `<log_dir>/attention`).
        probe: the model input of a few fixed examples, in any form the model takes:
            an array, a list or dict of arrays, tensors or (TensorFlow) tf.RaggedTensors.
            The same examples at every logging point, so that steps compare.
        input_labels: the input tokens of each probe example, for the inputs axis of
            every layer (on a self-attention layer, its queries too). Default: positions.
        query_labels: the query tokens of each probe example, for the queries axis.
        labels: tokens per model input, `{input: labels}` keyed by the probe's dict keys,
            a model input's name or its position (for a single-input model, the labels
            themselves). The logger finds which model inputs each layer's queries and
            inputs come from, so that an encoder-decoder model gets source tokens on
            encoder axes and target tokens on decoder axes whatever their lengths.
        layer_labels: per layer (name or path): `{"queries": labels, "inputs": labels}`,
            where labels may also be a key of `labels` (that input's tokens). Overrides
            the other two ways for that layer.
        every_n_epochs: log after every this many epochs (and at the start).
        every_n_steps: log every this many training steps instead of by epoch.
            Per-batch logging makes Keras wait for every batch's results.
        layers: names or paths of the attention layers to log; default: all of them.
        images: also write the heatmaps as image summaries: `plot_attention`'s
            picture (tokens on the axes, a colour bar), composed from a colour lookup
            table on a worker thread while training goes on (`heatmap_images`).
        scalars: also write the mean entropy and mean largest weight per layer.

    Raises:
        TypeError, ValueError: at construction for bad arguments, a probe whose inputs
            disagree on the number of examples, or label lists whose count differs from
            the probe's; before the first training step (in `on_train_begin`) for a
            probe the model cannot take, a model without attention layers, unknown
            `layers` or `layer_labels` or `labels` keys, labels whose lengths do not fit
            the axis they belong to, or labels that could belong to either sequence of
            a layer with nothing to say which.
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
        labels: Any = None,
        layer_labels: dict[str, dict[str, Any]] | None = None,
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
        self.input_labels = attention_labels.resolve(
            input_labels, self.probe, self.num_examples, "input_labels"
        )
        self.query_labels = attention_labels.resolve(
            query_labels, self.probe, self.num_examples, "query_labels"
        )
        self._input_label_specs = attention_labels.per_input(labels, self.probe, self.num_examples)
        self._layer_label_specs = self._check_layer_labels(layer_labels)
        self._policy: attention_labels.LabelPolicy | None = None
        self._writing = SummaryWriting(self.run_dir, images=images, scalars=scalars)
        self._pass: ProbePass | None = None
        self._warned: set[str] = set()  # layers warned of as unreachable
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
            self._warned = set()
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
        value = getattr(iterations, "value", iterations)  # the backend's value
        return int(keras.ops.convert_to_numpy(value))

    # -- which layers, which labels --------------------------------------------------------

    def _check_layer_labels(self, layer_labels) -> dict[str, dict[str, Any]]:
        """`layer_labels` with every list or callable resolved to per-example lists."""
        specs = attention_labels.layer_specs(layer_labels)
        for layer, spec in specs.items():
            for axis, value in spec.items():
                where = f"layer_labels[{layer!r}][{axis!r}]"
                if isinstance(value, (str, int)) and not isinstance(value, bool):
                    spec[axis] = ("input", value)
                else:
                    spec[axis] = attention_labels.resolve(
                        value, self.probe, self.num_examples, where
                    )
        return specs

    def _targets(self) -> list[Target]:
        found = find_attention_layers(self.model)
        targets = [Target(path, layer, adapter_of(layer)) for path, layer in found]
        if not targets:
            raise ValueError(
                f"AttentionLogger: model {self.model.name!r} has no attention layer to log: "
                "it looks for SequenceAttention, keras.layers.MultiHeadAttention (and "
                "subclasses), GroupQueryAttention, Attention, AdditiveAttention, layers "
                "whose call takes `return_attention_scores`, and layers with a registered "
                "AttentionAdapter (also inside nested models and layers)."
            )
        listed = ", ".join(repr(t.key) for t in targets)
        for name in self._layer_label_specs:
            if not any(name in (t.key, t.layer.name) for t in targets):
                raise ValueError(
                    f"AttentionLogger: `layer_labels` names {name!r}, which is not an "
                    f"attention layer of model {self.model.name!r}; its attention layers "
                    f"are: {listed}."
                )
        if self.layers is None:
            return targets
        chosen = []
        for name in self.layers:
            match = [t for t in targets if name in (t.key, t.layer.name)]
            if not match:
                raise ValueError(
                    f"AttentionLogger: `layers` names {name!r}, which is not an attention "
                    f"layer of model {self.model.name!r}; its attention layers are: {listed}."
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
        """Trims each record's weights to each example's real spans and labels them.

        On the first run this also checks and decides every label, before anything of
        the logging point is written.
        """
        if self._first_run:
            self._check_reached()
            self._decide_labels(outputs)
        matrices, stats = [], {}
        for record, out in zip(self._pass.records, outputs, strict=True):
            weights = out["weights"]
            heads = weights.ndim == 4
            per_example = []
            for b in range(self.num_examples):
                q0, q1 = int(out["query_start"][b]), int(out["query_end"][b])
                i0, i1 = int(out["input_start"][b]), int(out["input_end"][b])
                matrix = weights[b][..., q0:q1, i0:i1]
                per_example.append(matrix)
                kind = type(record.target.layer).__name__
                matrices.append(
                    _Matrix(
                        tag=f"{record.tag}/{b}",
                        weights=matrix,
                        input_labels=self._policy.labels(record.tag, "inputs", b, i1 - i0),
                        query_labels=self._policy.labels(record.tag, "queries", b, q1 - q0),
                        description=(
                            f"{kind} layer {record.target.key!r}, probe example {b}: rows are "
                            "queries, columns inputs" + (", one matrix per head" if heads else "")
                        ),
                    )
                )
            stats[record.tag] = attention_statistics(per_example)
        return matrices, stats

    def _decide_labels(self, outputs) -> None:
        """Checks the labels against the first probe pass and decides every axis's."""
        records = self._pass.records
        axes = []
        for record, out in zip(records, outputs, strict=True):
            shape = out["weights"].shape
            for axis, start, end, padded in (
                ("queries", "query_start", "query_end", shape[-2]),
                ("inputs", "input_start", "input_end", shape[-1]),
            ):
                lengths = tuple(int(e) - int(s) for s, e in zip(out[start], out[end], strict=True))
                axes.append(
                    attention_labels.Axis(
                        tag=record.tag,
                        key=record.target.key,
                        name=record.target.layer.name,
                        axis=axis,
                        padded=int(padded),
                        lengths=lengths,
                        self_attention=record.self_attention,
                    )
                )
        self._check_label_lengths(axes)
        inputs = attention_labels.bind_names(
            self._input_label_specs, self.probe, self.num_examples, self.model
        )
        leaves = keras.tree.flatten_with_path(self.probe)
        leaf_names = {
            i: "/".join(str(p) for p in path) if path else str(i)
            for i, (path, _) in enumerate(leaves)
        }
        model_inputs = getattr(self.model, "inputs", None) or []
        if len(model_inputs) == len(leaves):
            for i, (path, _) in enumerate(leaves):
                if not path or not isinstance(path[-1], str):
                    leaf_names[i] = getattr(model_inputs[i], "name", None) or leaf_names[i]
        layers = {}
        for layer, spec in self._layer_label_specs.items():
            layers[layer] = {}
            for axis, value in spec.items():
                if isinstance(value, tuple) and value[0] == "input":
                    index = self._leaf_of(value[1], leaves, leaf_names, inputs, layer, axis)
                    layers[layer][axis] = index
                else:
                    layers[layer][axis] = value
        depends = {}
        if inputs:
            depends = attention_labels.dependencies(self._pass, self.probe, sorted(inputs))
        self._policy = attention_labels.LabelPolicy(
            count=self.num_examples,
            input_labels=self.input_labels,
            query_labels=self.query_labels,
            inputs=inputs,
            leaf_names=leaf_names,
            leaf_lengths={i: _padded_length(x) for i, (_, x) in enumerate(leaves)},
            layers=layers,
            depends=depends,
        )
        self._policy.decide(axes)

    def _leaf_of(self, key, leaves, leaf_names, inputs, layer, axis) -> int:
        """The probe input that `layer_labels[layer][axis] = key` names; it must have labels."""
        for i in inputs:
            path = leaves[i][0]
            if key in (i, leaf_names[i]) or (path and path[-1] == key):
                return i
        raise ValueError(
            f"AttentionLogger: `layer_labels[{layer!r}][{axis!r}]` is {key!r}, which names "
            "no model input given in `labels`; the inputs with labels are: "
            f"{', '.join(repr(leaf_names[i]) for i in inputs) or '(none)'}."
        )

    def _warn_unreachable(self) -> None:
        """One warning per layer the probe pass cannot read (checked at every point: an
        eager pass may read a layer that its compiled successor cannot)."""
        for target in self._pass.targets:
            if target.key not in self._pass.unreachable or target.key in self._warned:
                continue
            self._warned.add(target.key)
            logger.warning(
                "AttentionLogger: layer %r runs inside a graph loop or branch (e.g. a "
                "recurrent cell, `ops.cond`; at %r); its weights cannot be read from "
                "outside it and are not logged (from this step on).",
                target.layer.name,
                target.key,
            )

    def _check_reached(self) -> None:
        called = {r.target.key for r in self._pass.records}
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

    def _check_label_lengths(self, axes) -> None:
        """`input_labels`/`query_labels` must fit their axis in at least one layer."""
        for name, labels, axis in (
            ("input_labels", self.input_labels, "inputs"),
            ("query_labels", self.query_labels, "queries"),
        ):
            if labels is None:
                continue
            for b, tokens in enumerate(labels):
                lengths = {a.tag: a for a in axes if a.axis == axis}
                if any(a.lengths[b] == len(tokens) for a in lengths.values()):
                    continue
                # Self-attention layers take the other list's tokens on this axis too.
                if any(
                    a.self_attention and a.lengths[b] == len(tokens) for a in axes if a.axis != axis
                ):
                    continue
                listed = ", ".join(
                    f"{tag!r}: {a.lengths[b]}"
                    + (f" of {a.padded} (padding trimmed)" if a.lengths[b] != a.padded else "")
                    for tag, a in lengths.items()
                )
                padded = {a.padded for a in lengths.values()}
                advice = (
                    "Give one label per real position of the example, without padding."
                    if len(tokens) in padded
                    else "Give one label per position the layer attends; where a layer keeps "
                    "padded positions (nothing it is given marks them), give it a mask "
                    "(a Keras mask, or its own mask argument) or label those positions too; "
                    "`layer_labels` sets one layer's labels."
                )
                raise ValueError(
                    f"AttentionLogger: `{name}[{b}]` has {len(tokens)} labels, but probe "
                    f"example {b} has a different number of {axis} in every logged "
                    f"layer ({listed}). {advice}"
                )

    def _log(self, step: int) -> None:
        if step == self._last_step:
            return
        outputs = self._run_probe()
        self._warn_unreachable()
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
