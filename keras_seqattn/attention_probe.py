"""Reading attention weights out of a model during training: the probe pass.

How the weights are reached. A layer hands out its attention weights only when it is
called with `return_attention_scores=True` (or as its adapter says, see
`attention_adapters`), and a model built without that has no tensor holding them: a side
`keras.Model(model.inputs, <weights>)` cannot be cut out of the graph, and subclassed
models have no graph at all. So `ProbePass` runs the probe through the model itself, in
inference mode, and swaps each attention layer's `call` for a thin wrapper that asks the
original `call` for the weights, keeps them with the example's real query and input
spans (see `attention_spans`), and returns exactly what the caller asked for. The swap is
undone as soon as the pass (or the trace of the compiled pass) ends.

Eager first, compiled later (a ski rental). A compiled pass costs a trace on its first
run and almost nothing after; an eager pass costs the same at every point. Measured here
on the 2-layer BERT of `benchmarks/logger.py` (TensorFlow, 2 probe examples, the 2-core
machine shared): the trace and first run of the compiled pass 0.56 to 0.64 s, later runs
6 to 11 ms; an eager pass 0.11 to 0.13 s (0.16 to 0.27 s the first). A `fit` logs every
epoch, so most runs have a handful of points and never earn the trace back. So:

* TensorFlow: the first `EAGER_PASSES` (10) logging points run eagerly, the layers'
  `call` swapped for each pass; from the next one on, a `tf.function` (no autograph, as
  Keras's own train step), traced once with the swap, re-run without touching Python.
  Eager passes also stop once their total time (CPU time of the training thread, so that
  a loaded machine does not cut them short) would pass `EAGER_SECONDS` (1 s; a slow
  eager model then pays the trace at most about a second late). A model holding a
  `keras.layers.RNN` (GRU, LSTM, ...) is compiled from the first point: eager, its loop
  runs step by step in Python (the date example: 0.65 s per eager pass, 0.76 s for the
  trace).
* JAX: `jax.jit` over the model's `stateless_call`, with the current variable values as
  arguments (later points see the trained weights without retracing), from the first
  point: eager JAX compiles each primitive on its first use, 4.8 s for the first eager
  pass of the BERT above against 1.1 s for the jit (`eager_passes` can still ask for it).
* PyTorch: eager, under `torch.no_grad()`, the swap made for each pass (Keras runs torch
  models eagerly unless `jit_compile=True`; a `torch.compile` of the whole model costs far
  more than the few probe passes it would speed up).

Same records either way. An eager pass cannot tell that a layer runs inside a graph loop
(TensorFlow runs `tf.while_loop` as a Python loop when eager; Keras's RNN also calls its
cell once before the loop, for the shapes), so its result is used only when every target
layer was called at most once in it, and, on JAX, when no weights are tracers (inside
`lax.scan`). Otherwise that point and every later one use the compiled pass, which gives
the records, tags and `unreachable` layers as it always did. A lazily built model is
built (called once without the swap) before its first eager pass.

Consequences:

* the compiled training step is neither changed nor retraced, and the model's outputs
  are the same (the wrapper returns what the unwrapped layer returns);
* it works the same for functional, Sequential, subclassed and nested models, because
  every call of a layer goes through `layer.call`;
* the eager passes and the compiled one return the same records and values (to float
  rounding: the compiled graph may fuse ops), except for a layer inside `ops.cond` on
  TensorFlow: eager runs the branch as Python and reads it, the compiled pass cannot
  return weights from a branch graph; the logger warns when the compiled pass takes
  over, and that layer's matrices stop there;
* it cannot reach (`AttentionLogger` warns, naming the layer) attention computed inside
  a loop that the backend compiles as a loop (a layer called from a recurrent cell in
  `keras.layers.RNN`, or inside `ops.scan`/`ops.fori_loop`/`tf.while_loop`) on TensorFlow
  and JAX: its weights live in the loop body and there is one matrix per iteration; nor
  layers created anew inside `call()` (Keras does not track them, so they cannot be
  found); nor attention written as plain ops (`ops.dot_product_attention`, einsums) rather
  than as a layer.

Tags. Each layer is named by its path inside the model: the names of the enclosing nested
models and layers joined by "/" (`bert_backbone/transformer_layer_0/self_attention_layer`).
Names Keras generated (`multi_head_attention_3`: a process-wide counter, different in the
next run of the same code) are replaced by something stable: the attribute that holds
the layer in its parent (`attention_1`), else the class's snake-case name numbered among
its siblings in order (`multi_head_attention`, `multi_head_attention_1`).
"""

from __future__ import annotations

import functools
import inspect
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_seqattn import attention_spans as spans
from keras_seqattn.attention_adapters import AttentionAdapter, registered_adapter, returns_scores

# --------------------------------------------------------------------------------------
# Finding the layers, and their stable paths
# --------------------------------------------------------------------------------------


def _snake(class_name: str) -> str:
    """`MultiHeadAttention` -> `multi_head_attention`, as Keras names layers by default."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _generated(layer) -> bool:
    """True when Keras made up the layer's name from its class (a process-wide counter)."""
    base = _snake(type(layer).__name__)
    name = layer.name
    if base == "functional" or isinstance(layer, keras.Model):
        bases = {base, "functional", "sequential"}
    else:
        bases = {base}
    return any(name == b or re.fullmatch(re.escape(b) + r"_\d+", name) for b in bases)


def _attribute_name(parent, child) -> str | None:
    """The attribute of `parent` that holds `child` (public names first), if any."""
    attributes = dict(vars(parent))
    # PyTorch modules keep their submodules apart (torch.nn.Module.__setattr__).
    attributes.update(vars(parent).get("_modules") or {})
    names = [k for k, v in attributes.items() if v is child]
    names.sort(key=lambda k: (k.startswith("_"), k))
    return names[0].lstrip("_") or None if names else None


def _segments(parent, children) -> list[str]:
    """A stable, unique path segment for each child layer of `parent`."""
    segments, counts = [], {}
    for child in children:
        if not _generated(child):
            segment = child.name
        else:
            segment = _attribute_name(parent, child)
            if segment is None:
                base = _snake(type(child).__name__)
                k = counts.get(base, 0)
                counts[base] = k + 1
                segment = base if k == 0 else f"{base}_{k}"
        segments.append(segment)
    # Siblings that ended with the same segment (a generated name equal to another's
    # given one): number the later ones, in order, so that paths stay unique.
    seen: dict[str, int] = {}
    unique = []
    for segment in segments:
        k = seen.get(segment, 0)
        seen[segment] = k + 1
        unique.append(segment if k == 0 else f"{segment}_{k}")
    return unique


def find_attention_layers(model: keras.layers.Layer) -> list[tuple[str, keras.layers.Layer]]:
    """All attention layers the logger can read in `model`, as (path, layer) pairs.

    The path joins stable names of the enclosing layers and models below `model` with "/"
    (see the module docstring). Nested models and layers held by subclassed models are
    searched; a registered attention layer's own sublayers are not. A layer found only
    because its `call` takes `return_attention_scores` is searched first, and logged
    itself only when it holds no attention layer (KerasHub's `TransformerEncoder` takes
    the argument and passes it to the `MultiHeadAttention` it holds: that one is logged).
    """
    found: list[tuple[str, keras.layers.Layer]] = []
    seen: set[int] = set()

    def walk(layer, prefix: str) -> int:
        before = len(found)
        children = [
            c
            for c in layer._flatten_layers(include_self=False, recursive=False)
            if id(c) not in seen
        ]
        for child in children:
            seen.add(id(child))
        for child, segment in zip(children, _segments(layer, children), strict=True):
            path = f"{prefix}{segment}"
            if registered_adapter(child) is not None:
                found.append((path, child))
                continue
            inside = walk(child, path + "/")
            if not inside and returns_scores(child) is not None:
                found.append((path, child))
        return len(found) - before

    walk(model, "")
    return found


def adapter_of(layer) -> AttentionAdapter | None:
    """The adapter the logger uses for `layer`, or None if it is no attention layer."""
    return registered_adapter(layer) or returns_scores(layer)


# --------------------------------------------------------------------------------------
# The probe pass
# --------------------------------------------------------------------------------------


@dataclass
class Target:
    """One attention layer being logged."""

    key: str  # tag prefix: the layer's path
    layer: keras.layers.Layer
    adapter: AttentionAdapter


@dataclass(frozen=True)
class Record:
    """What the probe pass returns for one call of one layer (Python side)."""

    target: Target
    tag: str  # "<layer key>" for its first call in a forward pass, "<key>@k" for call k
    self_attention: bool  # called with the same tensor as queries and inputs


def _tagged(captured: list[tuple[Target, bool, Any]], skip: set[str]):
    """Records (with "@k" tags for repeated calls) and their outputs, in call order."""
    calls: dict[str, int] = {}
    records, outputs = [], []
    for target, self_attention, out in captured:
        if target.key in skip:
            continue
        calls[target.key] = calls.get(target.key, 0) + 1
        count = calls[target.key]
        tag = target.key if count == 1 else f"{target.key}@{count}"
        records.append(Record(target, tag, self_attention))
        outputs.append(out)
    return records, outputs


def _bind(original) -> Callable:
    """`bind(*args, **kwargs)` -> (arguments by name, `call_with(**changes)`)."""
    signature = inspect.signature(original)
    var_keyword = next(
        (p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD), None
    )

    def bind(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        arguments = dict(bound.arguments)
        if var_keyword and var_keyword in arguments:
            arguments.update(arguments.pop(var_keyword))

        def call_with(**changes):
            again = signature.bind(*args, **kwargs)
            for name, value in changes.items():
                if name in signature.parameters:
                    again.arguments[name] = value
                elif var_keyword is not None:
                    again.arguments.setdefault(var_keyword, {})[name] = value
                else:
                    raise TypeError(f"{original!r} takes no argument {name!r}")
            return original(*again.args, **again.kwargs)

        return arguments, call_with

    return bind


def _install(targets: Sequence[Target], on_call) -> Callable[[], None]:
    """Swaps each target layer's `call` for `on_call(target, original, args, kwargs)`."""
    undos = []
    for target in targets:
        layer = target.layer
        had_own = "call" in layer.__dict__
        original = layer.call

        def call(*args, _target=target, _original=original, **kwargs):
            return on_call(_target, _original, args, kwargs)

        # Set on the instance, bypassing Keras's attribute tracking: Layer.__call__ (via
        # Operation.__call__) looks `self.call` up at every call.
        object.__setattr__(layer, "call", call)

        def undo(layer=layer, had_own=had_own, original=original) -> None:
            if had_own:
                object.__setattr__(layer, "call", original)
            else:
                object.__delattr__(layer, "call")

        undos.append(undo)

    def restore() -> None:
        for undo in undos:
            undo()

    return restore


def _read(target: Target, original, args, kwargs):
    """Runs one wrapped call: (result for the caller, record, self-attention).

    The record holds the weights and the masks of the real queries and inputs
    (`query_valid`, `input_valid`; absent where nothing says), which `_spans` turns into
    each example's spans after the pass.
    """
    arguments, call_with = _bind(original)(*args, **kwargs)
    adapter = target.adapter
    query, inputs = adapter.query(arguments), adapter.inputs(arguments)
    self_attention = query is not None and query is inputs
    # Everything read from the arguments is read before the call: MultiHeadAttention
    # removes the Keras masks of the tensors it is called on.
    query_masks = [spans.keras_mask(query), *adapter.query_masks(arguments)]
    input_masks = [spans.keras_mask(inputs), *adapter.input_masks(arguments)]
    attention_mask = adapter.attention_mask(arguments)
    result, weights = adapter.run(call_with, arguments)
    weights = ops.cast(spans.dense(weights), "float32")
    shape = ops.shape(weights)
    batch, m, n = shape[0], shape[-2], shape[-1]
    query_masks.append(spans.sequence_mask(query, m) if spans.is_ragged(query) else None)
    input_masks.append(spans.sequence_mask(inputs, n) if spans.is_ragged(inputs) else None)
    query_valid = spans.combine(query_masks, batch, m)
    input_valid = spans.combine(input_masks, batch, n)
    from_attention = None
    if attention_mask is not None:
        from_attention, rows = spans.attention_mask_axes(attention_mask, batch, m, n)
        if input_valid is None:
            input_valid = rows
    if query_valid is None and self_attention:
        query_valid = input_valid  # the queries are the inputs
    if query_valid is None:
        query_valid = from_attention
    # The spans themselves are read after the pass, in NumPy (`_spans`): a dozen eager
    # ops per layer call cost more than the rest of the reading.
    out = {"weights": weights}
    if query_valid is not None:
        out["query_valid"] = query_valid
    if input_valid is not None:
        out["input_valid"] = input_valid
    return result, out, self_attention


def _spans(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A record's weights with each example's spans, from the masks the pass returned."""
    weights = out["weights"]
    batch, m, n = weights.shape[0], weights.shape[-2], weights.shape[-1]
    query_start, query_end = spans.span(out.get("query_valid"), batch, m)
    input_start, input_end = spans.span(out.get("input_valid"), batch, n)
    return {
        "weights": weights,
        "query_start": query_start,
        "query_end": query_end,
        "input_start": input_start,
        "input_end": input_end,
    }


EAGER_PASSES = 10
"""Logging points run eagerly (TensorFlow) before the probe pass is compiled; see the module
docstring. `ProbePass(..., eager_passes=...)` sets it for one pass."""

EAGER_SECONDS = 1.0
"""Eager passes stop once the next one would bring their total time (CPU seconds of the
calling thread) above this."""


def _has_recurrent_layer(model) -> bool:
    """True when `model` holds a `keras.layers.RNN` (GRU, LSTM, ... also in Bidirectional)."""
    return any(
        isinstance(layer, keras.layers.RNN)
        for layer in model._flatten_layers(include_self=False, recursive=True)
    )


class ProbePass:
    """Runs the probe through the model and returns attention weights and spans.

    Built once per model. On TensorFlow its first logging points run the model eagerly
    and later ones a compiled function (traced once, with the layers' `call` wrapped while
    tracing); on JAX it is compiled from the first point; on PyTorch always eager. See the
    module docstring. `__call__` returns one dict of numpy arrays per record (`records`,
    in call order): `weights` `(batch, [heads,] m, n)` and per example `query_start`,
    `query_end`, `input_start`, `input_end`.

    Args:
        model: the model.
        targets: the attention layers to read.
        eager_passes: how many logging points may run eagerly before the compiled pass
            takes over. Default: `EAGER_PASSES` on TensorFlow for a model without a
            `keras.layers.RNN` (whose loop runs step by step in Python when eager), else
            0. An eager pass is used only while every target layer is called at most
            once in it (see the module docstring); `0` compiles from the first point.
        eager_seconds: eager passes also stop once their total time would pass this.
            Default: `EAGER_SECONDS`.
    """

    def __init__(
        self,
        model: keras.Model,
        targets: Sequence[Target],
        eager_passes: int | None = None,
        eager_seconds: float | None = None,
    ):
        self.model = model
        self.targets = list(targets)
        self.records: list[Record] = []
        self.unreachable: set[str] = set()
        self.backend = keras.backend.backend()
        if self.backend == "tensorflow":
            import tensorflow as tf

            # A partial rather than the bound method: TensorFlow counts traces per code
            # object, and one trace by each of several loggers would read as "frequent
            # retracing". No autograph: Keras's own train step does not convert the model
            # either (`do_not_convert`), so any model that trains traces here; and
            # converting it made the first probe pass of the date example 5x slower.
            self._function = tf.function(functools.partial(self._forward_tf), autograph=False)
        elif self.backend == "jax":
            import jax

            self._function = jax.jit(functools.partial(self._forward_jax))
        else:
            self._function = None
        if eager_passes is None:
            eager = self.backend == "tensorflow" and not _has_recurrent_layer(model)
            eager_passes = EAGER_PASSES if eager else 0
        self.eager_passes = eager_passes
        self.eager_seconds = EAGER_SECONDS if eager_seconds is None else eager_seconds
        self.eager_runs = 0  # logging points whose eager pass was used
        self._eager_time = 0.0  # their total time, seconds
        self._eager_last = 0.0
        self.traces = 0  # how many times the pass was traced (PyTorch: run) with the swap

    # -- per backend -------------------------------------------------------------------

    def __call__(self, probe) -> list[dict[str, np.ndarray]]:
        outputs = None
        if self.backend != "torch" and self._eager_next():
            outputs = self._eager(probe)
        if outputs is None:
            outputs = self._compiled(probe)
        return [_spans({k: ops.convert_to_numpy(v) for k, v in out.items()}) for out in outputs]

    def _compiled(self, probe) -> list[dict]:
        """The pass as each backend compiles it (PyTorch: eager, see the module docstring)."""
        if self.backend == "tensorflow":
            return self._function(probe)
        if self.backend == "jax":
            self._build(probe)
            return self._function(
                [v.value for v in self.model.trainable_variables],
                [v.value for v in self.model.non_trainable_variables],
                probe,
            )
        import torch

        with torch.no_grad():
            outputs = self._run(lambda: self.model(probe, training=False), lambda: True)
        self.traces += 1
        return outputs

    def _eager_next(self) -> bool:
        """Whether this logging point may try the eager pass (ski rental, see above)."""
        if self.eager_runs >= self.eager_passes:
            return False
        return self._eager_time + self._eager_last <= self.eager_seconds

    def _eager(self, probe) -> list[dict] | None:
        """The eager pass; None (and no more eager passes) when its result cannot be used."""
        self._build(probe)
        # The training thread's CPU time, not wall time: a loaded machine slows every
        # pass alike and must not make the eager passes look dear.
        started = time.thread_time()
        outputs = self._run(lambda: self.model(probe, training=False), self._concrete, eager=True)
        if outputs is None:
            self.eager_passes = 0
            return None
        self.eager_runs += 1
        self._eager_last = time.thread_time() - started
        self._eager_time += self._eager_last
        return outputs

    def _build(self, probe) -> None:
        """Builds a lazily built model, without the swap: building calls the model on
        symbolic tensors, which an eager pass would count as a second call of each layer,
        and JAX's pass needs the variables built to pass them in."""
        if not self.model.built:
            self.model(probe, training=False)

    def _concrete(self, weights) -> bool:
        """Eager on JAX: weights that are tracers come from inside a loop (`lax.scan`)."""
        if self.backend != "jax":
            return True
        import jax

        return not isinstance(weights, jax.core.Tracer)

    def _forward_tf(self, probe):
        import tensorflow as tf

        graph = tf.compat.v1.get_default_graph()
        self.traces += 1
        return self._run(
            lambda: self.model(probe, training=False),
            lambda: tf.compat.v1.get_default_graph() is graph,
        )

    def _forward_jax(self, trainable, non_trainable, probe):
        leaves = [x for x in keras.tree.flatten(probe) if hasattr(x, "_trace")]
        outer = leaves[0]._trace if leaves else None

        def in_reach(weights) -> bool:
            # Inside `lax.scan` (Keras's RNN on JAX) values belong to the loop body's
            # trace, which cannot be returned from the jitted function.
            return outer is None or getattr(weights, "_trace", outer) is outer

        self.traces += 1
        return self._run(
            lambda: self.model.stateless_call(trainable, non_trainable, probe, training=False),
            in_reach,
            check_weights=True,
        )

    def _run(
        self, forward, in_reach, check_weights: bool = False, eager: bool = False
    ) -> list[dict] | None:
        """Calls `forward()` with the layers' `call` wrapped; sets `records`.

        `eager`: returns None, setting nothing, if a target layer was called more than
        once or its weights are out of reach (`in_reach(weights)`): a loop, which the
        compiled pass reports as `unreachable`.
        """
        captured: list[tuple[Target, bool, dict]] = []
        unreachable: set[str] = set()
        calls: dict[str, int] = {}

        def on_call(target, original, args, kwargs):
            calls[target.key] = calls.get(target.key, 0) + 1
            if eager and calls[target.key] > 1:
                return original(*args, **kwargs)
            if not (check_weights or eager) and not in_reach():
                # Inside a graph loop (e.g. an RNN cell): weights of the loop body's graph
                # cannot be returned from the probe function. Leave the call alone.
                unreachable.add(target.key)
                return original(*args, **kwargs)
            result, out, self_attention = _read(target, original, args, kwargs)
            if (check_weights or eager) and not in_reach(out["weights"]):
                unreachable.add(target.key)
            else:
                captured.append((target, self_attention, out))
            return result

        restore = _install(self.targets, on_call)
        try:
            forward()
        finally:
            restore()
        if eager and (unreachable or any(n > 1 for n in calls.values())):
            return None
        # A layer also called outside the loop (Keras's RNN runs its cell once before the
        # loop to learn the output shapes): those weights are not the loop's.
        self.records, outputs = _tagged(captured, unreachable)
        self.unreachable = unreachable
        return outputs

    # -- which model input each layer's queries and inputs come from ----------------------

    def sequences(self, probe) -> list[tuple[Record, Any, Any]]:
        """One eager pass: each record's query and inputs tensors, as numpy (or None).

        Used once, to find which model inputs feed which axis (`attention_labels`).
        """
        captured: list[tuple[Target, bool, tuple]] = []

        def on_call(target, original, args, kwargs):
            arguments, _ = _bind(original)(*args, **kwargs)
            query = target.adapter.query(arguments)
            inputs = target.adapter.inputs(arguments)
            captured.append(
                (target, query is not None and query is inputs, (_numpy(query), _numpy(inputs)))
            )
            return original(*args, **kwargs)

        restore = _install(self.targets, on_call)
        try:
            if self.backend == "torch":
                import torch

                with torch.no_grad():
                    self.model(probe, training=False)
            else:
                self.model(probe, training=False)
        finally:
            restore()
        records, outputs = _tagged(captured, self.unreachable)
        return [(r, q, i) for r, (q, i) in zip(records, outputs, strict=True)]


def _numpy(x):
    if x is None:
        return None
    if spans.is_ragged(x):
        x = x.to_tensor()
    try:
        return np.asarray(ops.convert_to_numpy(x))
    except Exception:  # noqa: BLE001 - not a tensor after all
        return None
