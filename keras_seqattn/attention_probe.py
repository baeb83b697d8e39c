"""Reading attention weights out of a model during training: the probe pass.

How the weights are reached. A layer hands out its attention weights only when it is
called with `return_attention_scores=True`, and a model built without that flag has no
tensor holding them: a side `keras.Model(model.inputs, <weights>)` cannot be cut out of
the graph, and subclassed models have no graph at all. So `ProbePass` runs the probe
through the model itself, in a separate `tf.function` of its own (inference mode), and,
while that function is being traced, it swaps each attention layer's `call` for a thin
wrapper that asks the original `call` for the weights, keeps them, and returns exactly
what the caller asked for. The swap is undone as soon as the trace ends; later logging
points re-run the traced graph without touching Python again. Consequences:

* the compiled training step is neither changed nor retraced, and the model's outputs
  are the same (the wrapper returns what the unwrapped layer returns);
* it works the same for functional, Sequential, subclassed and nested models, because
  every call of a layer goes through `layer.call`;
* it cannot reach (`AttentionLogger` warns, naming the layer) attention computed inside
  a loop that TensorFlow builds as a graph loop (a layer called from a recurrent cell in
  `keras.layers.RNN`, or inside `tf.while_loop`/`ops.scan`/`ops.fori_loop`): its weights
  live in the loop body's graph and there is one matrix per iteration; nor layers
  created anew inside `call()` (Keras does not track them, so they cannot be found);
  nor attention written as plain ops (`ops.dot_product_attention`, einsums) rather
  than as a `SequenceAttention` or `MultiHeadAttention` layer.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_seqattn.sequence_attention import SequenceAttention

try:  # Keras keeps this helper private; it reads the attribute Keras layers set.
    from keras.src.backend import get_keras_mask
except ImportError:  # pragma: no cover - other Keras layouts

    def get_keras_mask(x):
        return getattr(x, "_keras_mask", None)


# --------------------------------------------------------------------------------------
# Which layers, and how to read their weights and lengths
# --------------------------------------------------------------------------------------


def _masks_length(x, *masks):
    """Per-example length of sequence `x`: last valid position + 1 (all of it if no mask)."""
    if isinstance(x, tf.RaggedTensor):
        return tf.cast(x.row_lengths(), tf.int32)
    shape = tf.shape(x)
    combined = None
    for mask in masks:
        if mask is None or isinstance(mask, tf.RaggedTensor):
            continue
        mask = tf.cast(mask, tf.bool)
        combined = mask if combined is None else tf.logical_and(combined, mask)
    if combined is None:
        return tf.fill(shape[:1], shape[1])
    positions = tf.range(1, tf.shape(combined)[1] + 1)[tf.newaxis, :]
    return tf.reduce_max(tf.where(combined, positions, 0), axis=1)


def _mask_part(mask, index):
    """`mask[index]` of a `[inputs_mask, query_mask]` call argument, or None."""
    if isinstance(mask, (list, tuple)) and len(mask) == 2:
        return mask[index]
    return None


def _sequence_attention_lengths(args: dict) -> tuple[Any, Any]:
    mask = args.get("mask")
    inputs, query = args["inputs"], args["query"]
    query_len = _masks_length(
        query, args.get("query_mask"), _mask_part(mask, 1), get_keras_mask(query)
    )
    input_len = _masks_length(
        inputs, args.get("inputs_mask"), _mask_part(mask, 0), get_keras_mask(inputs)
    )
    return query_len, input_len


def _multi_head_attention_lengths(args: dict) -> tuple[Any, Any]:
    query, value, key = args["query"], args["value"], args.get("key")
    # Read before the call: MultiHeadAttention removes the Keras masks from its inputs.
    query_len = _masks_length(query, args.get("query_mask"), get_keras_mask(query))
    key_masks = [args.get("value_mask"), get_keras_mask(value)]
    if key is not None and key is not value:
        key_masks += [args.get("key_mask"), get_keras_mask(key)]
    return query_len, _masks_length(value, *key_masks)


@dataclass(frozen=True)
class Kind:
    """How to read one kind of attention layer."""

    lengths: Callable[[dict], tuple[Any, Any]]  # bound call args -> (query, input) lengths
    heads: bool  # weights are (batch, heads, m, n) rather than (batch, m, n)


KINDS: dict[type, Kind] = {
    SequenceAttention: Kind(_sequence_attention_lengths, heads=False),
    keras.layers.MultiHeadAttention: Kind(_multi_head_attention_lengths, heads=True),
}


def kind_of(layer) -> Kind | None:
    for cls, kind in KINDS.items():
        if isinstance(layer, cls):
            if getattr(layer, "multi_head", False) and not kind.heads:
                # SequenceAttention(multi_head=True): weights (batch, heads, m, n).
                return replace(kind, heads=True)
            return kind
    return None


def find_attention_layers(model: keras.layers.Layer) -> list[tuple[str, keras.layers.Layer]]:
    """All attention layers the logger can read in `model`, as (path, layer) pairs.

    The path joins the names of the enclosing layers and models below `model` with "/".
    Nested models and layers held by subclassed models are searched; an attention
    layer's own sublayers are not.
    """
    found: list[tuple[str, keras.layers.Layer]] = []
    seen: set[int] = set()

    def walk(layer, prefix: str) -> None:
        for child in layer._flatten_layers(include_self=False, recursive=False):
            if id(child) in seen:
                continue
            seen.add(id(child))
            path = f"{prefix}{child.name}"
            if kind_of(child) is not None:
                found.append((path, child))
            else:
                walk(child, path + "/")

    walk(model, "")
    return found


# --------------------------------------------------------------------------------------
# The probe pass
# --------------------------------------------------------------------------------------


@dataclass
class Target:
    """One attention layer being logged."""

    key: str  # tag prefix
    layer: keras.layers.Layer
    kind: Kind


@dataclass(frozen=True)
class Record:
    """What the probe pass returns for one call of one layer (Python side)."""

    target: Target
    tag: str  # "<layer key>" for its first call in a forward pass, "<key>@k" for call k


class ProbePass:
    """A `tf.function` running the probe through the model and returning attention weights.

    Built once per model; traced on its first run (with the layers' `call` wrapped while
    tracing, see the module docstring) and re-run as a graph at every logging point.
    """

    def __init__(self, model: keras.Model, targets: Sequence[Target]):
        self.model = model
        self.targets = list(targets)
        self.records: list[Record] = []
        self.unreachable: set[str] = set()
        # A partial rather than the bound method: TensorFlow counts traces per code object,
        # and one trace by each of several loggers would read as "frequent retracing".
        # No autograph: Keras's own train step does not convert the model either
        # (`do_not_convert`), so any model that trains traces here; and converting it
        # made the first probe pass of the date example 5x slower (1.7 s instead of 0.35 s).
        self._function = tf.function(functools.partial(self._forward), autograph=False)

    def __call__(self, probe) -> list[dict[str, np.ndarray]]:
        outputs = self._function(probe)
        return [{name: t.numpy() for name, t in out.items()} for out in outputs]

    def _forward(self, probe):
        graph = tf.compat.v1.get_default_graph()
        captured: list[tuple[Target, dict]] = []
        unreachable: set[str] = set()
        restore = [self._wrap(t, graph, captured, unreachable) for t in self.targets]
        try:
            self.model(probe, training=False)
        finally:
            for undo in restore:
                undo()
        calls: dict[str, int] = {}
        records, outputs = [], []
        for target, tensors in captured:
            if target.key in unreachable:
                # Also called outside the loop (Keras's RNN runs its cell once before the
                # loop to learn the output shapes): those weights are not the loop's.
                continue
            calls[target.key] = calls.get(target.key, 0) + 1
            count = calls[target.key]
            records.append(Record(target, target.key if count == 1 else f"{target.key}@{count}"))
            outputs.append(tensors)
        self.records, self.unreachable = records, unreachable
        return outputs

    @staticmethod
    def _wrap(target: Target, graph, captured: list, unreachable: set) -> Callable[[], None]:
        layer = target.layer
        had_own = "call" in layer.__dict__
        original = layer.call
        signature = inspect.signature(original)

        def call(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            asked = bool(bound.arguments.get("return_attention_scores", False))
            if tf.compat.v1.get_default_graph() is not graph:
                # Inside a graph loop (e.g. an RNN cell): weights of the loop body's graph
                # cannot be returned from the probe function. Leave the call alone.
                unreachable.add(target.key)
                return original(*args, **kwargs)
            arguments = dict(bound.arguments)
            query_len, input_len = target.kind.lengths(arguments)
            bound.arguments["return_attention_scores"] = True
            result = original(*bound.args, **bound.kwargs)
            outputs, weights = result[0], result[1]
            if isinstance(weights, tf.RaggedTensor):
                weights = weights.to_tensor()
            captured.append(
                (
                    target,
                    {
                        "weights": tf.cast(weights, tf.float32),
                        "query_len": query_len,
                        "input_len": input_len,
                    },
                )
            )
            return result if asked else outputs

        # Set on the instance, bypassing Keras's attribute tracking: Layer.__call__ (via
        # Operation.__call__) looks `self.call` up at every call.
        object.__setattr__(layer, "call", call)

        def undo() -> None:
            if had_own:
                object.__setattr__(layer, "call", original)
            else:
                object.__delattr__(layer, "call")

        return undo
