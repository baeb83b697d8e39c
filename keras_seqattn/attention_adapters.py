"""How `AttentionLogger` reads each kind of attention layer: adapters, and where to add yours.

An adapter answers, for one call of a layer inside the probe pass: how to make the layer
return its weights (by default: call it with `return_attention_scores=True`), which call
arguments hold its queries and its inputs (for Keras masks, self-attention and labels per
model input), and which hold masks of its queries, of its inputs, or an attention mask
(for trimming padding, see `attention_spans`). Built in:

* `SequenceAttention` (`inputs`, `query`, `value`, their masks, `mask=[...]`);
* `keras.layers.MultiHeadAttention` and its subclasses (KerasHub's
  `CachedMultiHeadAttention`), `keras.layers.GroupQueryAttention` (weights per query
  head): `query`, `value`/`key`, their masks and `attention_mask`;
* `keras.layers.Attention` and `keras.layers.AdditiveAttention`: `inputs=[query, value,
  key]`, `mask=[query_mask, value_mask]`;
* any other layer whose `call` takes `return_attention_scores` (`ReturnScoresAdapter`,
  found without registering; a layer holding one of the layers above is searched instead,
  e.g. KerasHub's `TransformerEncoder`, so that the innermost attention is what is logged).

A model's own attention layer that cannot return its weights that way gets an adapter
subclass registered with `register_attention_adapter(MyLayer, MyAdapter())`; the README
shows one. The weights an adapter returns are `(batch, queries, inputs)` or, for one matrix
per head, `(batch, heads, queries, inputs)`, with each row summing to 1 over the inputs
a query may see.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import keras

from keras_seqattn.attention_spans import keras_mask
from keras_seqattn.sequence_attention import SequenceAttention


class AttentionAdapter:
    """Tells `AttentionLogger` how to read one kind of attention layer.

    Subclass it for a layer of your own and register it with
    `register_attention_adapter`; override what differs from the defaults. Every method
    gets `arguments`: the layer's `call` arguments by name, as the caller passed them
    (defaults not filled in; Keras has already filled `*_mask` arguments from Keras masks).
    Methods run while the probe pass is traced, so they use `keras.ops`.
    """

    def run(self, call: Callable[..., Any], arguments: dict) -> tuple[Any, Any]:
        """Runs the layer's own `call` so that it also yields its attention weights.

        Args:
            call: `call(**changes)` runs the layer's original `call` with `arguments`
                changed by `changes` (e.g. `call(return_attention_scores=True)`).
            arguments: the call's arguments by name.

        Returns:
            `(result, weights)`: what the caller of the layer must get (exactly what the
            unwrapped layer returns for `arguments`), and the attention weights,
            `(batch, queries, inputs)` or `(batch, heads, queries, inputs)`.
        """
        asked = bool(arguments.get("return_attention_scores", False))
        result = call(return_attention_scores=True)
        weights = result[1]
        if asked:
            return result, weights
        rest = [item for i, item in enumerate(result) if i != 1]
        return (rest[0] if len(rest) == 1 else tuple(rest)), weights

    def query(self, arguments: dict) -> Any | None:
        """The queries tensor `(batch, queries, ...)`, or None if unknown."""
        return arguments.get("query")

    def inputs(self, arguments: dict) -> Any | None:
        """The inputs (keys/values) tensor `(batch, inputs, ...)`, or None if unknown."""
        return arguments.get("value", arguments.get("inputs"))

    def query_masks(self, arguments: dict) -> list[Any]:
        """Masks `(batch, queries)` of the real queries (besides the query's Keras mask)."""
        return [arguments.get("query_mask")]

    def input_masks(self, arguments: dict) -> list[Any]:
        """Masks `(batch, inputs)` of the real inputs (besides the inputs' Keras mask)."""
        return [arguments.get("value_mask"), arguments.get("key_mask")]

    def attention_mask(self, arguments: dict) -> Any | None:
        """An explicit attention mask `(batch, queries or 1, inputs)`, or None."""
        return arguments.get("attention_mask")


class ReturnScoresAdapter(AttentionAdapter):
    """Any layer whose `call` takes `return_attention_scores` and returns `(out, weights)`.

    Queries and inputs are read from arguments named like Keras's own (`query`;
    `value`, `inputs`, `key`); a layer called on a single tensor is taken as
    self-attention over it, its `mask` argument the mask of both axes.
    """

    _QUERY = ("query", "queries", "q")
    _INPUTS = ("value", "values", "inputs", "key", "keys", "memory", "context")

    def _tensors(self, arguments: dict) -> dict:
        return {
            k: v
            for k, v in arguments.items()
            if hasattr(v, "shape") and hasattr(v, "dtype") and not k.endswith("mask")
        }

    def _own_mask(self, arguments: dict):
        """`mask` of a layer called on one sequence: the mask of its queries and inputs."""
        mask = arguments.get("mask")
        single = len(self._tensors(arguments)) == 1
        return mask if single and hasattr(mask, "shape") else None

    def query_masks(self, arguments):
        return [arguments.get("query_mask"), self._own_mask(arguments)]

    def query(self, arguments):
        tensors = self._tensors(arguments)
        for name in self._QUERY:
            if name in tensors:
                return tensors[name]
        return next(iter(tensors.values())) if len(tensors) == 1 else None

    def inputs(self, arguments):
        tensors = self._tensors(arguments)
        for name in self._INPUTS:
            if name in tensors:
                return tensors[name]
        return next(iter(tensors.values())) if len(tensors) == 1 else None

    def input_masks(self, arguments):
        names = ("value_mask", "key_mask", "inputs_mask")
        return [arguments.get(name) for name in names] + [self._own_mask(arguments)]


class SequenceAttentionAdapter(AttentionAdapter):
    """`SequenceAttention(inputs, query, inputs_mask, query_mask, mask=[inputs, query])`."""

    def query(self, arguments):
        return arguments.get("query")

    def inputs(self, arguments):
        return arguments.get("inputs")

    def query_masks(self, arguments):
        return [arguments.get("query_mask"), _item(arguments.get("mask"), 1)]

    def input_masks(self, arguments):
        # `value` (when given) has the inputs' positions: its Keras mask marks them too.
        return [
            arguments.get("inputs_mask"),
            _item(arguments.get("mask"), 0),
            arguments.get("value_mask"),
        ]

    def attention_mask(self, arguments):
        return None


class MultiHeadAttentionAdapter(AttentionAdapter):
    """`MultiHeadAttention` and subclasses, `GroupQueryAttention`: `(query, value, key)`."""

    def input_masks(self, arguments):
        # The key's Keras mask too: read here, before the call, because MultiHeadAttention
        # removes the Keras masks of the tensors it is called on.
        key = arguments.get("key")
        return [arguments.get("value_mask"), arguments.get("key_mask"), keras_mask(key)]


class KerasAttentionAdapter(AttentionAdapter):
    """`keras.layers.Attention` / `AdditiveAttention`: `inputs=[query, value, key]`."""

    def query(self, arguments):
        return _item(arguments.get("inputs"), 0)

    def inputs(self, arguments):
        return _item(arguments.get("inputs"), 1)

    def query_masks(self, arguments):
        return [_item(arguments.get("mask"), 0)]

    def input_masks(self, arguments):
        return [_item(arguments.get("mask"), 1), keras_mask(_item(arguments.get("inputs"), 2))]

    def attention_mask(self, arguments):
        return None


def _item(value, index: int):
    """`value[index]` of a list/tuple argument, or None."""
    if isinstance(value, (list, tuple)) and len(value) > index:
        return value[index]
    return None


# Most specific class first is found by walking each layer's MRO against this table.
_ADAPTERS: dict[type, AttentionAdapter] = {
    SequenceAttention: SequenceAttentionAdapter(),
    keras.layers.MultiHeadAttention: MultiHeadAttentionAdapter(),
    keras.layers.GroupQueryAttention: MultiHeadAttentionAdapter(),
    keras.layers.Attention: KerasAttentionAdapter(),
    keras.layers.AdditiveAttention: KerasAttentionAdapter(),
}
_RETURN_SCORES = ReturnScoresAdapter()


def register_attention_adapter(layer_class: type, adapter: AttentionAdapter) -> None:
    """Makes `AttentionLogger` log layers of `layer_class` (and subclasses) through `adapter`.

    Args:
        layer_class: a `keras.layers.Layer` subclass.
        adapter: an `AttentionAdapter` (usually a subclass of it) saying how to get the
            layer's weights and masks.

    Raises:
        TypeError: for anything else.
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(
            f"`layer_class` must be a keras.layers.Layer subclass; got {layer_class!r}."
        )
    if not isinstance(adapter, AttentionAdapter):
        raise TypeError(
            "`adapter` must be an AttentionAdapter instance (subclass it and override what "
            f"differs); got {type(adapter).__name__}."
        )
    _ADAPTERS[layer_class] = adapter


def registered_adapter(layer) -> AttentionAdapter | None:
    """The adapter registered for `layer`'s class or its nearest registered base class."""
    for cls in type(layer).__mro__:
        if cls in _ADAPTERS:
            return _ADAPTERS[cls]
    return None


def returns_scores(layer) -> AttentionAdapter | None:
    """`ReturnScoresAdapter` for a layer whose `call` takes `return_attention_scores`."""
    try:
        parameters = inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return None
    return _RETURN_SCORES if "return_attention_scores" in parameters else None
