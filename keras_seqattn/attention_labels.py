"""Which tokens go on which axis of which layer: the logger's label policy.

Three ways to give labels, tried in this order for every axis (queries, inputs) of every
logged layer:

1. `layer_labels={layer: {"queries": ..., "inputs": ...}}`: labels for one layer (by name
   or path), per example lists, a callable of the probe example, or the key of a model
   input given in `labels` ("use that input's tokens here"). Nothing is inferred.
2. `labels={model input: ...}`: tokens per model input. The logger finds which model
   inputs each axis comes from by running the model eagerly once per labelled input with
   that input's values shuffled (`dependencies`): an axis comes from an input when its
   tensor changes. Among the labelled inputs an axis comes from, those whose padded length
   differs from the axis's are dropped (a query pooled from a sequence is not that
   sequence); one left: its tokens; several: the ones whose lengths fit every example;
   still several: an error that says how to choose (`layer_labels`).
3. `input_labels` / `query_labels`: the inputs' and the queries' tokens of every layer
   (the first release's arguments). Used on the axis they name; on a self-attention layer
   (queries and inputs are the same tensor) the other list fits too, and when both fit
   and differ the logger cannot know which sequence the layer attends over: an error
   (before training) says to use `labels` or `layer_labels`.

Otherwise positions ("0", "1", ...). Every check runs on the first probe pass, before
the first training step and before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from tb_plugin.labels import check_labels

AXES = ("queries", "inputs")

Labels = Sequence[Sequence[str]] | Callable[[Any], Sequence[str]] | None


# --------------------------------------------------------------------------------------
# Checking what was given
# --------------------------------------------------------------------------------------


def example(probe, index: int):
    """Example `index` of the probe, as numpy (a ragged row: only its own values)."""

    def row(x):
        value = x[index]
        return (
            value.numpy()
            if hasattr(value, "numpy")
            else np.asarray(keras.ops.convert_to_numpy(value))
        )

    return keras.tree.map_structure(row, probe)


def resolve(labels: Labels, probe, count: int, name: str) -> list[list[str]] | None:
    """Per-example label lists, from lists or a callable; checks their count and type."""
    if labels is None:
        return None
    if callable(labels):
        resolved = []
        for b in range(count):
            try:
                tokens = labels(example(probe, b))
            except Exception as err:
                raise ValueError(
                    f"`{name}`: the callable failed on probe example {b}: "
                    f"{type(err).__name__}: {err}"
                ) from err
            resolved.append(check_tokens(tokens, f"{name}(probe example {b})", b))
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
    return [check_tokens(tokens, f"{name}[{b}]", b) for b, tokens in enumerate(labels)]


def check_tokens(tokens, where: str, example: int) -> list[str]:
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
    # The project's one label policy (encodable text, bounded length), as the writer
    # and the plugin apply it: refused here, before training, rather than when writing.
    try:
        return list(check_labels(out, None, f"`{where}`"))
    except ValueError as err:
        raise ValueError(f"{err} (probe example {example})") from None


def leaf_keys(probe) -> list[tuple]:
    """The path of every input (leaf) of the probe, e.g. [("source",), ("target",)]."""
    return [path for path, _ in keras.tree.flatten_with_path(probe)]


def _key_text(path: tuple) -> str:
    return "/".join(str(p) for p in path) if path else "<the input>"


def per_input(labels, probe, count: int) -> dict[Any, list[list[str]] | tuple]:
    """`labels` checked: {leaf index or model input name: per-example labels}.

    A key that names a probe input (a dict key, a list position) is resolved now; any
    other string key is kept as the name of a model input, resolved once the model is
    known (`bind_names`).
    """
    if labels is None:
        return {}
    leaves = keras.tree.flatten_with_path(probe)
    if not isinstance(labels, Mapping):
        if len(leaves) != 1:
            raise TypeError(
                "`labels` must be a dict {model input: labels} for a probe of several "
                f"inputs ({', '.join(repr(_key_text(p)) for p, _ in leaves)}); got "
                f"{type(labels).__name__}."
            )
        labels = {0: labels}
    out: dict[Any, Any] = {}
    for key, value in labels.items():
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise TypeError(
                f"`labels`: keys name model inputs (a probe dict key, a model input's name, "
                f"or a position); got {key!r}."
            )
        index = _leaf_index(key, leaves)
        if index is None:
            if not isinstance(key, str):
                raise ValueError(
                    f"`labels[{key!r}]`: the probe has {len(leaves)} input(s), positions "
                    f"0 to {len(leaves) - 1}."
                )
            out[key] = ("pending", value)  # a model input name: resolved with the model
            continue
        leaf = leaves[index][1]
        out[index] = resolve(value, leaf, count, f"labels[{key!r}]")
    return out


def _leaf_index(key, leaves) -> int | None:
    for i, (path, _) in enumerate(leaves):
        if path and path[-1] == key and len(path) == 1:
            return i
    if (
        isinstance(key, int)
        and 0 <= key < len(leaves)
        and all(not isinstance(p[0], str) for p, _ in leaves if p)
    ):
        return key
    return None


def bind_names(resolved: dict, probe, count: int, model) -> dict[int, list[list[str]]]:
    """Resolves `labels` keys that are model input names; errors name the known inputs."""
    leaves = keras.tree.flatten_with_path(probe)
    names = [getattr(t, "name", None) for t in (getattr(model, "inputs", None) or [])]
    names = [n.split(":")[0] if isinstance(n, str) else n for n in names]
    out = {}
    for key, value in resolved.items():
        if not (isinstance(value, tuple) and value and value[0] == "pending"):
            out[key] = value
            continue
        if key in names and len(names) == len(leaves):
            index = names.index(key)
            out[index] = resolve(value[1], leaves[index][1], count, f"labels[{key!r}]")
            continue
        known = [_key_text(p) for p, _ in leaves if p] + [n for n in names if n]
        raise ValueError(
            f"AttentionLogger: `labels` names {key!r}, which is not an input of the probe "
            f"or of model {model.name!r}; its inputs are: "
            f"{', '.join(repr(k) for k in dict.fromkeys(known)) or '(one, unnamed)'}."
        )
    return out


def layer_specs(layer_labels) -> dict[str, dict[str, Any]]:
    """`layer_labels` checked for form: {layer name or path: {"queries"/"inputs": spec}}."""
    if layer_labels is None:
        return {}
    if not isinstance(layer_labels, Mapping):
        raise TypeError(
            "`layer_labels` must be a dict {layer name or path: {'queries': labels, "
            f"'inputs': labels}}; got {type(layer_labels).__name__}."
        )
    out = {}
    for layer, spec in layer_labels.items():
        if not isinstance(layer, str) or not layer:
            raise TypeError(f"`layer_labels`: keys are layer names or paths; got {layer!r}.")
        if not isinstance(spec, Mapping) or not spec or set(spec) - set(AXES):
            raise TypeError(
                f"`layer_labels[{layer!r}]` must be a dict with keys 'queries' and/or "
                f"'inputs'; got {spec!r}."
            )
        out[layer] = dict(spec)
    return out


# --------------------------------------------------------------------------------------
# Which model input each axis comes from
# --------------------------------------------------------------------------------------


def shuffled(probe, index: int):
    """The probe with input `index`'s values moved around (same values, same shape)."""
    leaves = keras.tree.flatten(probe)
    x = leaves[index]
    ragged = hasattr(x, "flat_values") and hasattr(x, "row_lengths")
    values = x.flat_values.numpy() if ragged else np.asarray(keras.ops.convert_to_numpy(x))
    flat = values.reshape(-1)
    if flat.size > 1 and not np.all(flat == flat[0]):
        moved = np.roll(flat, 1).reshape(values.shape)
    elif values.dtype == bool:
        moved = ~values
    else:
        moved = values + 1
    if ragged:
        new = x.with_flat_values(moved)
    else:
        new = keras.ops.convert_to_tensor(moved)
    leaves = list(leaves)
    leaves[index] = new
    return keras.tree.pack_sequence_as(probe, leaves)


def _changed(a, b) -> bool:
    if a is None or b is None:
        return False
    if a.shape != b.shape:
        return True
    a, b = a.astype(np.float64), b.astype(np.float64)
    return bool(np.max(np.abs(a - b), initial=0.0) > 1e-6 * (1.0 + np.max(np.abs(a), initial=0)))


def dependencies(probe_pass, probe, indices: Sequence[int]) -> dict[str, dict[str, set]]:
    """{record tag: {"queries": {input index, ...}, "inputs": {...}}} by shuffling inputs.

    An input whose shuffled run fails, or changes the number of calls, is left out.
    """
    base = probe_pass.sequences(probe)
    found = {r.tag: {axis: set() for axis in AXES} for r, _, _ in base}
    for index in indices:
        try:
            moved = probe_pass.sequences(shuffled(probe, index))
        except Exception:  # noqa: BLE001 - the model refuses shuffled values: unknown
            continue
        if [r.tag for r, _, _ in moved] != [r.tag for r, _, _ in base]:
            continue
        for (record, q, i), (_, q2, i2) in zip(base, moved, strict=True):
            if _changed(q, q2):
                found[record.tag]["queries"].add(index)
            if _changed(i, i2):
                found[record.tag]["inputs"].add(index)
    return found


# --------------------------------------------------------------------------------------
# The policy
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """One axis of one record, as the probe pass found it."""

    tag: str  # the record's tag
    key: str  # the layer's path
    name: str  # the layer's own name
    axis: str  # "queries" or "inputs"
    padded: int  # its length before trimming
    lengths: tuple[int, ...]  # per example, after trimming
    self_attention: bool


class LabelPolicy:
    """Decides, once, the labels of every axis of every record; `labels(axis, b)` after.

    Args:
        count: number of probe examples.
        input_labels, query_labels: per-example lists (or None).
        inputs: {leaf index: per-example lists} (labels per model input).
        leaf_names: a readable name per leaf index.
        leaf_lengths: padded length per leaf index (None for non-sequences).
        layers: {layer name or path: {axis: per-example lists or a leaf index}}.
        depends: {record tag: {axis: {leaf index}}}.
    """

    def __init__(
        self,
        count: int,
        input_labels,
        query_labels,
        inputs: dict[int, list[list[str]]],
        leaf_names: dict[int, str],
        leaf_lengths: dict[int, int | None],
        layers: dict[str, dict[str, Any]],
        depends: dict[str, dict[str, set]],
    ):
        self.count = count
        self.legacy = {"inputs": input_labels, "queries": query_labels}
        self.inputs = inputs
        self.leaf_names = leaf_names
        self.leaf_lengths = leaf_lengths
        self.layers = layers
        self.depends = depends
        self._chosen: dict[tuple[str, str], list[list[str]] | None] = {}

    def decide(self, axes: Sequence[Axis]) -> None:
        """Chooses every axis's labels; raises ValueError where they do not fit."""
        for axis in axes:
            self._chosen[(axis.tag, axis.axis)] = self._choose(axis)

    def labels(self, tag: str, axis: str, b: int, length: int) -> list[str]:
        chosen = self._chosen.get((tag, axis))
        if chosen is None or chosen[b] is None or len(chosen[b]) != length:
            return [str(i) for i in range(length)]
        return chosen[b]

    # -- the rules ---------------------------------------------------------------------

    def _choose(self, axis: Axis):
        spec = self.layers.get(axis.key, self.layers.get(axis.name))
        if spec is not None and axis.axis in spec:
            value = spec[axis.axis]
            name = f"layer_labels[{(axis.key if axis.key in self.layers else axis.name)!r}]"
            if isinstance(value, int) and not isinstance(value, bool):
                name = f"labels[{self.leaf_names[value]!r}] (as {name}[{axis.axis!r}])"
                value = self.inputs[value]
            else:
                name = f"{name}[{axis.axis!r}]"
            self._fit(axis, value, name, how="given for this layer")
            return value
        from_input = self._from_inputs(axis)
        if from_input is not None:
            return from_input
        return self._legacy(axis)

    def _from_inputs(self, axis: Axis):
        sources = self.depends.get(axis.tag, {}).get(axis.axis, set())
        candidates = [k for k in sorted(sources) if k in self.inputs]
        # A pooled or learned axis is not the sequence it was computed from.
        candidates = [k for k in candidates if self.leaf_lengths.get(k) in (None, axis.padded)]
        if not candidates:
            return None
        if len(candidates) > 1:
            fitting = [k for k in candidates if self._fits(axis, self.inputs[k])]
            if len(fitting) != 1:
                names = ", ".join(repr(self.leaf_names[k]) for k in candidates)
                raise ValueError(
                    f"AttentionLogger: the {axis.axis} of layer {axis.key!r} come from "
                    f"model inputs {names}, whose labels "
                    + ("all fit" if fitting else "none fit")
                    + f" its lengths ({_lengths(axis)}); the logger will not guess which "
                    f"sequence it is. Say it with layer_labels={{{axis.key!r}: "
                    f"{{{axis.axis!r}: <model input key>}}}}."
                )
            candidates = fitting
        k = candidates[0]
        self._fit(
            axis,
            self.inputs[k],
            f"labels[{self.leaf_names[k]!r}]",
            how=f"found to come from model input {self.leaf_names[k]!r}",
        )
        return self.inputs[k]

    def _legacy(self, axis: Axis):
        own_name = "input_labels" if axis.axis == "inputs" else "query_labels"
        other_name = "query_labels" if axis.axis == "inputs" else "input_labels"
        own, other = self.legacy[axis.axis], self.legacy[AXES[AXES.index(axis.axis) - 1]]
        if own is None and other is None:
            return None
        chosen = []
        for b in range(self.count):
            n = axis.lengths[b]
            own_fits = own is not None and len(own[b]) == n
            # The other list belongs on this axis only when the layer attends a sequence
            # over itself (its queries are its inputs).
            other_fits = axis.self_attention and other is not None and len(other[b]) == n
            if own_fits and other_fits and own[b] != other[b]:
                raise ValueError(
                    f"AttentionLogger: layer {axis.key!r} attends a sequence over itself, "
                    f"and both `{own_name}[{b}]` and `{other_name}[{b}]` have {n} labels "
                    f"(probe example {b}): the logger cannot know which sequence it is. "
                    "Give labels per model input, e.g. labels={'<input name>': tokens}, "
                    f"or per layer: layer_labels={{{axis.key!r}: {{'queries': ..., "
                    "'inputs': ...}}."
                )
            chosen.append(own[b] if own_fits else other[b] if other_fits else None)
        return chosen

    # -- checks ------------------------------------------------------------------------

    def _fits(self, axis: Axis, labels) -> bool:
        return all(len(labels[b]) == axis.lengths[b] for b in range(self.count))

    def _fit(self, axis: Axis, labels, name: str, how: str) -> None:
        for b in range(self.count):
            n = axis.lengths[b]
            if len(labels[b]) == n:
                continue
            trimmed = n != axis.padded
            raise ValueError(
                f"AttentionLogger: `{name}[{b}]` has {len(labels[b])} labels, but the "
                f"{axis.axis} of layer {axis.key!r} ({how}) number {n} in probe example "
                f"{b}"
                + (
                    f" (trimmed from {axis.padded} by the padding its masks show). "
                    if trimmed
                    else f" (all {axis.padded} positions: nothing the layer is given marks "
                    f"padding on this axis). "
                )
                + _advice(axis, len(labels[b]))
            )


def _lengths(axis: Axis) -> str:
    return ", ".join(f"example {b}: {n}" for b, n in enumerate(axis.lengths))


def _advice(axis: Axis, given: int) -> str:
    """What to do about labels of the wrong length on an axis."""
    if given == axis.padded:
        return f"Give one label per real position ({_lengths(axis)}), without the padding."
    if axis.lengths and all(n == axis.padded for n in axis.lengths):
        mask = "query_mask" if axis.axis == "queries" else "value_mask"
        return (
            f"Either give {axis.padded} labels (padding included), or let the layer see "
            f"the padding: a Keras mask on its {axis.axis} (Embedding(mask_zero=True), "
            f"Masking) or its own mask argument (e.g. `{mask}=` for MultiHeadAttention)."
        )
    return f"Give one label per real position ({_lengths(axis)})."
