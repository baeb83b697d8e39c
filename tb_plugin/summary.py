"""The attention summary writer: one example's attention weights, with token labels.

TensorFlow is imported inside `attention`, so that importing this module (and
TensorBoard loading the plugin) never needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tb_plugin import codec, metadata


def _to_host(value: Any, name: str, tf: Any) -> Any:
    """Turns an eager TensorFlow tensor (or variable) into numpy; leaves anything else."""
    if isinstance(value, (tf.Tensor, tf.Variable)):
        if not tf.executing_eagerly():
            raise TypeError(
                f"{name}: expected a numpy array or an eager tensor, got a symbolic tensor; "
                "attention() validates its input in Python, so call it eagerly (for "
                "example from a Keras callback), not inside a tf.function"
            )
        return value.numpy()
    return value


def attention(
    name: str,
    weights: Any,
    step: int | None = None,
    input_labels: Sequence[str] | None = None,
    query_labels: Sequence[str] | None = None,
    description: str | None = None,
) -> bool:
    """Writes one example's attention weights, with token labels, as an attention summary.

    The summary shows in TensorBoard's "Attention" tab as a labelled heatmap: rows are the
    queries, columns the inputs. Values are stored as float16, zlib-compressed (see
    `tb_plugin.codec`). Everything is validated before anything is written.

    ```python
    writer = tf.summary.create_file_writer("runs/demo")
    with writer.as_default():
        attention("encoder/attn/0", weights, step=epoch,
                  input_labels=["the", "cat", "sat"], query_labels=["le", "chat"])
    ```

    Args:
      name: the tag (prefixed by any active name scope), e.g. "<layer>/<example index>".
      weights: one example's weights, shape (queries, inputs) or (heads, queries, inputs);
        a numpy array, nested lists or an eager tensor of any floating-point dtype. At
        most `codec.MAX_VALUES` values, all finite and within float16's range.
      step: the training step; defaults to `tf.summary.experimental.get_step()`.
      input_labels: one string per input (column), e.g. the source tokens; default:
        the positions "0", "1", .... May differ from one step to the next.
      query_labels: one string per query (row); default: the positions.
      description: optional text shown with the tag (kept from the tag's first summary).

    Returns:
      True if the summary was written, False if there is no default summary writer.

    Raises:
      TypeError: non-float weights, labels that are not sequences of strings, a
        symbolic tensor.
      ValueError: weights not of rank 2 or 3, an empty axis, too many values,
        non-finite values or values beyond float16's range, label counts that do not
        match the matrix, overlong labels; or (from TensorFlow) no step given while no
        default step is set.
    """
    import tensorflow as tf

    if not isinstance(name, str) or not name:
        raise TypeError(f"name: expected a non-empty string, got {name!r}")
    if description is not None and not isinstance(description, str):
        raise TypeError(f"description: expected a string or None, got {type(description).__name__}")
    header_blob, values_blob = codec.encode(
        _to_host(weights, "weights", tf),
        _to_host(input_labels, "input_labels", tf),
        _to_host(query_labels, "query_labels", tf),
    )
    summary_metadata = metadata.create_summary_metadata(description)
    with tf.summary.experimental.summary_scope(name, "attention_summary") as (tag, _):
        written = tf.summary.write(
            tag=tag,
            tensor=tf.constant([header_blob, values_blob], dtype=tf.string),
            step=step,
            metadata=summary_metadata,
        )
    return bool(written)
