"""The attention summary writer: one example's attention weights, with token labels.

Two ways to the same bytes on disk. `attention_pb` builds the `Summary` proto of one
attention summary with TensorBoard's own protos (`tensorboard.compat.proto`), from
`codec.encode` and `metadata.create_summary_metadata`; `write_event` appends it to an
event file through TensorBoard's `EventFileWriter` (`event_file_writer` opens one), or
through `EventFile`, which writes each record on the caller's thread (what
`AttentionLogger`'s worker thread uses). No TensorFlow is needed for either: that is the
path on JAX and PyTorch, and the one `AttentionLogger` takes on every backend.
`attention` writes the same value through TensorFlow's default summary writer
(`tf.summary.write`), for code that already uses `tf.summary`; it imports TensorFlow only
when TensorFlow is already loaded, since without it no default summary writer can exist.

Importing this module never imports TensorFlow (TensorBoard loads the plugin without it).
"""

from __future__ import annotations

import itertools
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from tb_plugin import codec, metadata, records


def attention_pb(
    tag: str,
    weights: Any,
    input_labels: Sequence[str] | None = None,
    query_labels: Sequence[str] | None = None,
    description: str | None = None,
) -> summary_pb2.Summary:
    """The `Summary` proto of one attention summary, without TensorFlow.

    The value is what `attention` writes: a rank-1 string tensor [header, values]
    (`tb_plugin.codec`) with the plugin's metadata. Everything is validated first.

    Args:
      tag: the summary's tag, e.g. "<layer>/<example index>".
      weights: one example's weights, (queries, inputs) or (heads, queries, inputs),
        numpy or nested lists of floats (see `attention`).
      input_labels, query_labels, description: as for `attention`.

    Returns:
      A `summary_pb2.Summary` with one value.

    Raises:
      TypeError, ValueError: as `attention` does.
    """
    if not isinstance(tag, str) or not tag:
        raise TypeError(f"name: expected a non-empty string, got {tag!r}")
    if description is not None and not isinstance(description, str):
        raise TypeError(f"description: expected a string or None, got {type(description).__name__}")
    blobs = codec.encode(weights, input_labels, query_labels)
    return blobs_pb(tag, blobs, description)


def blobs_pb(
    tag: str, blobs: tuple[bytes, bytes], description: str | None = None
) -> summary_pb2.Summary:
    """The `Summary` proto of an attention summary whose blobs `codec.encode` made."""
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(blobs))]
        ),
        string_val=list(blobs),
    )
    summary = summary_pb2.Summary()
    summary.value.add(
        tag=tag, tensor=tensor, metadata=metadata.create_summary_metadata(description)
    )
    return summary


def _tensorflow_or_stub() -> Any:
    """TensorFlow when it is loaded (its file systems: gs:// and the rest), else
    TensorBoard's stub of it (local paths, and s3:// or fsspec URLs where installed)."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    from tensorboard.compat import tensorflow_stub

    return tensorflow_stub


# Held while `event_file_writer` swaps names in TensorBoard's event_file_writer module.
_STUB_LOCK = threading.Lock()


def event_file_writer(logdir: str, **kwargs: Any):
    """Opens TensorBoard's `EventFileWriter` on `logdir` without importing TensorFlow.

    `EventFileWriter` reaches the file system through `tensorboard.compat.tf`, which
    imports TensorFlow whenever it is installed (tensorboard/compat/__init__.py), and
    TensorFlow next to JAX or PyTorch takes GPU memory. Unless TensorFlow is already
    loaded, the writer is therefore opened with TensorBoard's own stub file system
    (`tensorboard.compat.tensorflow_stub`: local paths, and s3:// or fsspec URLs where
    those are installed); with TensorFlow loaded, TensorFlow's (gs:// and the rest).
    The writer only touches the file system while it is opened: afterwards it holds
    the open file. Either way its records are framed by `tb_plugin.records` (checksums in
    numpy), not by TensorBoard's `RecordWriter`, which computes them in Python.

    Args:
      logdir: the directory (a run) to write an event file in; created if missing.
      **kwargs: passed on to `EventFileWriter` (`max_queue_size`, `flush_secs`, ...).

    Returns:
      A `tensorboard.summary.writer.event_file_writer.EventFileWriter`.
    """
    from tensorboard.summary.writer import event_file_writer as module

    swapped = {"RecordWriter": _RecordFile, "tf": _tensorflow_or_stub()}
    with _STUB_LOCK:
        kept = {name: getattr(module, name) for name in swapped}
        for name, value in swapped.items():
            setattr(module, name, value)
        try:
            return module.EventFileWriter(logdir, **kwargs)
        finally:
            for name, value in kept.items():
                setattr(module, name, value)


# Numbers the event files `EventFile` opens in this process (names must be unique).
_EVENT_FILE_IDS = itertools.count()


class EventFile:
    """An event file written record by record on the caller's thread.

    TensorBoard's `EventFileWriter` writes from a thread of its own: a write that fails (a
    full disk, a file-size limit) kills that thread with a traceback on stderr, and the
    caller hears of it only at a later call. Code that writes on a worker thread of its
    own (`AttentionLogger`) needs neither the second thread nor its traceback: here a
    failed write raises in the call that made it. The records are TFRecords (length,
    data, masked CRC-32C of each), the event file format, framed by `tb_plugin.records`
    (checksums in numpy, 5 to 7 ms a megabyte, where TensorBoard's `RecordWriter` takes
    0.3 s in Python) on every backend, so that one framing is tested everywhere; the file
    system is TensorFlow's when it is loaded, else TensorBoard's stub, as for
    `event_file_writer`.

    Args:
      logdir: the directory (a run) to write a new event file in; created if missing.
    """

    def __init__(self, logdir: str) -> None:
        # TensorBoard's own naming, with a suffix of ours: the number is this module's.
        name = (
            f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
            f"{os.getpid()}.{next(_EVENT_FILE_IDS)}.attention"
        )
        gfile = _tensorflow_or_stub().io.gfile
        gfile.makedirs(logdir)
        self._records = _RecordFile(gfile.GFile(os.path.join(logdir, name), "wb"))
        self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    def add_event(self, event: event_pb2.Event) -> None:
        self._records.write(event.SerializeToString())

    def flush(self) -> None:
        self._records.flush()

    def close(self) -> None:
        self._records.close()


class _RecordFile:
    """A file that takes payloads and stores them as TFRecords (what TensorBoard's
    `RecordWriter` does, with the checksums in numpy)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._closed = False  # TensorFlow's GFile has no `closed` of its own

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, payload: bytes) -> None:
        self._stream.write(records.frame(payload))

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()
        self._closed = True


def write_event(writer: Any, summary: summary_pb2.Summary, step: int) -> None:
    """Appends `summary` at `step` (wall time: now) to an `EventFileWriter`."""
    writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))


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


def _is_integer(value: Any) -> bool:
    return hasattr(value, "__index__")


def _to_numpy(value: Any) -> Any:
    """A JAX or PyTorch array (or anything with `__array__`) as numpy; lists as they are."""
    if hasattr(value, "detach"):  # a torch.Tensor, possibly requiring grad or on a GPU
        value = value.detach().cpu()
    if hasattr(value, "__array__") and not isinstance(value, list):
        return np.asarray(value)
    return value


def attention(
    name: str,
    weights: Any,
    step: int | None = None,
    input_labels: Sequence[str] | None = None,
    query_labels: Sequence[str] | None = None,
    description: str | None = None,
    writer: Any = None,
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

    Without TensorFlow (JAX, PyTorch), give an `EventFileWriter` as `writer`:

    ```python
    writer = event_file_writer("runs/demo")
    attention("encoder/attn/0", weights, step=epoch, writer=writer)
    writer.flush()
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
      writer: an `EventFileWriter` (see `event_file_writer`) to write to instead of
        TensorFlow's default summary writer; `step` is then required.

    Returns:
      True if the summary was written (or, with `writer`, queued for writing), False
      if there is no default summary writer.

    Raises:
      TypeError: non-float weights, labels that are not sequences of strings, a
        symbolic tensor.
      ValueError: weights not of rank 2 or 3, an empty axis, too many values,
        non-finite values or values beyond float16's range, label counts that do not
        match the matrix, overlong labels; or (from TensorFlow) no step given while no
        default step is set.
    """
    if writer is not None or "tensorflow" not in sys.modules:
        # Without TensorFlow loaded there can be no default summary writer (nor a
        # TensorFlow tensor): validate, and write to `writer` if there is one.
        if writer is not None and (isinstance(step, bool) or not _is_integer(step)):
            raise TypeError(f"step: expected an integer with `writer`, got {step!r}")
        summary = attention_pb(name, _to_numpy(weights), input_labels, query_labels, description)
        if writer is None:
            return False
        write_event(writer, summary, step)
        return True

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
