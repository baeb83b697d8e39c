"""How `AttentionLogger` writes a logging point: checked first, then written on a worker thread.

A logging point is written in two halves.

1. On the training thread, before anything is written: every attention matrix is
   encoded (`tb_plugin.codec.encode`), which checks its values and labels; a label the
   format refuses (too long, say) raises here, naming the probe example, the layer and
   the axis, and nothing of the point is written. A layer whose weights hold NaN or
   infinity is not an error (training went bad, `keras.callbacks.TerminateOnNaN` is
   the user's tool for that): its attention summaries are left out (the format stores
   finite values only), its scalars are written as NaN and its images show the NaN
   cells blank; one warning per layer names the first step it happened at.
2. On one worker thread, in order: the attention summaries and scalars are appended to
   the event file, the heatmap images are drawn (`heatmap_images`, a few ms each) and
   appended, and the file is flushed, so that TensorBoard sees the point soon. The
   training thread never waits for this, except at the end of `fit`
   (`SummaryWriting.finish`), so that everything is on disk when `fit` returns.

Everything goes through `tb_plugin.summary.EventFile`, not `tf.summary`, on every
backend: no TensorFlow on JAX and PyTorch, and one code path to test. It writes each
record on the worker thread itself (TensorBoard's `EventFileWriter` would add a thread of
its own, which dies with a traceback on stderr when a write fails). The values are the
protos TensorFlow's summary ops write (the Images and Scalars tabs read them the same way,
under both of TensorBoard's loaders).

A failure to write (no permission, a full disk, a file-size limit, a writer that
raises) is not an error of training: it becomes one warning naming the run directory,
and the logger stops writing for the rest of that `fit`.

Only one process writes: the chief under `tf.distribute`, process 0 under JAX's
multi-process runtime, rank 0 under `torch.distributed` (`is_chief`).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata

from keras_seqattn.heatmap_images import HeatmapImages, png
from tb_plugin import codec
from tb_plugin import summary as attention_summary

logger = logging.getLogger("keras_seqattn.attention_logger")


# --------------------------------------------------------------------------------------
# Which process writes
# --------------------------------------------------------------------------------------


def _is_tf_chief(strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster.

    The chief is the task of type "chief", or worker 0 when the cluster has no chief
    (TensorFlow's own convention, `multi_worker_util.is_chief`).
    """
    resolver = getattr(getattr(strategy, "extended", None), "_cluster_resolver", None)
    resolver = resolver or getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    if task_type == "chief":
        return True
    try:
        cluster = resolver.cluster_spec().as_dict()
    except Exception:  # noqa: BLE001 - no cluster spec: a single process
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def is_chief(model: Any) -> bool:
    """Whether this process writes the summaries of `model`'s training.

    TensorFlow: the chief of the model's `tf.distribute` strategy (every process of a
    `MirroredStrategy` on one machine). JAX: process 0 (`jax.process_index()`), which
    covers `keras.distribution` over one process's devices and multi-process runs
    (`jax.distributed.initialize`). PyTorch: rank 0 when `torch.distributed` is set up.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
        return _is_tf_chief(strategy)
    if backend == "jax":
        import jax

        return jax.process_index() == 0
    if backend == "torch":
        import torch.distributed as dist

        return not (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)
    return True


# --------------------------------------------------------------------------------------
# The stock summaries, as TensorFlow's summary ops write them
# --------------------------------------------------------------------------------------


def image_pb(tag: str, pixels: np.ndarray, description: str | None = None) -> summary_pb2.Summary:
    """An image summary of one (height, width, 3) uint8 image, as `tf.summary.image`'s.

    The value is a rank-1 string tensor [width, height, PNG] with the image plugin's
    metadata (tensorboard/plugins/image/summary_v2.py).
    """
    height, width = pixels.shape[:2]
    blobs = [str(width).encode(), str(height).encode(), png(pixels)]
    summary_metadata = image_metadata.create_summary_metadata(
        display_name=None, description=description or ""
    )
    summary_metadata.data_class = summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    return _tensor_summary(tag, blobs, types_pb2.DT_STRING, summary_metadata)


def scalar_pb(tag: str, value: float, description: str | None = None) -> summary_pb2.Summary:
    """A scalar summary (a float32 rank-0 tensor), as `tf.summary.scalar`'s."""
    summary_metadata = scalar_metadata.create_summary_metadata(
        display_name=None, description=description or ""
    )
    summary_metadata.data_class = summary_pb2.DATA_CLASS_SCALAR
    return _tensor_summary(tag, [float(value)], types_pb2.DT_FLOAT, summary_metadata)


def _tensor_summary(tag, values, dtype, summary_metadata) -> summary_pb2.Summary:
    if dtype == types_pb2.DT_STRING:
        tensor = tensor_pb2.TensorProto(
            dtype=dtype,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))]
            ),
            string_val=values,
        )
    else:
        tensor = tensor_pb2.TensorProto(
            dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(), float_val=values
        )
    summary = summary_pb2.Summary()
    summary.value.add(tag=tag, tensor=tensor, metadata=summary_metadata)
    return summary


# --------------------------------------------------------------------------------------
# A logging point
# --------------------------------------------------------------------------------------


def layer_of(tag: str) -> str:
    """The layer part of a matrix tag `<layer>/<example index>`."""
    return tag.rpartition("/")[0] or tag


class SummaryWriting:
    """Writes `AttentionLogger`'s logging points to one run directory.

    Args:
        run_dir: the run to write (created when first written to).
        images: also write the heatmap images.
        scalars: also write the per-layer scalars.
    """

    def __init__(self, run_dir: str, images: bool = True, scalars: bool = True):
        self.run_dir = run_dir
        self.images = images
        self.scalars = scalars
        self._writer = None
        self._executor: ThreadPoolExecutor | None = None
        self._jobs: list[Future] = []
        self._heatmaps = HeatmapImages()  # used on the worker thread only
        self._non_finite_warned: set[str] = set()
        self._failed = False
        self._images_failed = False
        self._lock = threading.Lock()

    # -- the training thread ---------------------------------------------------------

    def write_point(
        self,
        step: int,
        matrices: Sequence[Any],
        stats: Mapping[str, tuple[float, float]],
    ) -> None:
        """Checks and encodes a logging point, then hands it to the worker thread.

        Args:
            step: the training step.
            matrices: objects with `tag` ("<layer>/<example>"), `weights`,
                `input_labels`, `query_labels` and `description`, one per probe
                example and layer.
            stats: per layer tag, (mean entropy, mean largest weight).

        Raises:
            ValueError, TypeError: a label or matrix the format refuses, naming the
                probe example, the layer and the axis; nothing of the point is written.
        """
        summaries, bad_layers = [], set()
        for matrix in matrices:
            weights = np.asarray(matrix.weights)
            layer = layer_of(matrix.tag)
            if weights.dtype.kind == "f" and not np.isfinite(weights).all():
                bad_layers.add(layer)
                continue
            try:
                blobs = codec.encode(weights, matrix.input_labels, matrix.query_labels)
            except (TypeError, ValueError) as err:
                example = matrix.tag.rpartition("/")[2]
                axis = (
                    "input axis (columns)"
                    if "input_labels" in str(err)
                    else "query axis (rows)"
                    if "query_labels" in str(err)
                    else "weights"
                )
                raise type(err)(
                    f"AttentionLogger: step {step}, probe example {example}, layer "
                    f"{layer!r}, {axis}: {err}. Nothing of this logging point was written."
                ) from err
            summaries.append(attention_summary.blobs_pb(matrix.tag, blobs, matrix.description))
        for layer in sorted(bad_layers - self._non_finite_warned):
            self._non_finite_warned.add(layer)
            logger.warning(
                "AttentionLogger: the attention weights of layer %r are not finite (NaN or "
                "infinity) at step %d; its attention summaries are skipped at this and any "
                "later such step (the Attention tab stores finite values), its scalars "
                "are written as NaN and its heatmap images show the NaN cells blank.",
                layer,
                step,
            )
        if self.scalars:
            for tag, (entropy, largest) in stats.items():
                if tag in bad_layers:
                    entropy = largest = math.nan
                elif math.isnan(entropy):
                    continue  # no row with any weight: nothing to average
                summaries.append(
                    scalar_pb(
                        f"{tag}/mean_entropy",
                        entropy,
                        "mean entropy (nats) of the probe's attention rows",
                    )
                )
                summaries.append(
                    scalar_pb(
                        f"{tag}/mean_max_weight",
                        largest,
                        "mean largest weight of the probe's attention rows",
                    )
                )
        if self._failed:
            return
        drawings = list(matrices) if self.images and not self._images_failed else []
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="AttentionLogger")
        self._jobs = [job for job in self._jobs if not job.done()]
        self._jobs.append(self._executor.submit(self._write, step, summaries, drawings))

    def finish(self) -> None:
        """Waits for the points handed over, then closes the event file (end of `fit`).

        Never raises: a failure was (or is now) a warning.
        """
        jobs, self._jobs = self._jobs, []
        for job in jobs:
            job.result()  # _write catches everything
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception as err:  # noqa: BLE001 - a write failure is a warning
                self._fail(err)
        self._failed = False  # a later fit tries again, with a new event file

    # -- the worker thread -----------------------------------------------------------

    def _write(self, step: int, summaries, drawings) -> None:
        if self._failed:
            return
        try:
            if self._writer is None:
                self._writer = attention_summary.EventFile(self.run_dir)
            for summary in summaries:
                attention_summary.write_event(self._writer, summary, step)
        except Exception as err:  # noqa: BLE001
            self._fail(err)
            return
        for matrix in drawings:
            try:
                pixels = self._heatmaps.rgb(
                    matrix.tag,
                    np.asarray(matrix.weights, dtype=np.float32),
                    matrix.input_labels,
                    matrix.query_labels,
                    title=matrix.tag,
                )
                image = image_pb(f"{matrix.tag}/heatmap", pixels, matrix.description)
            except Exception as err:  # noqa: BLE001 - drawing must never stop training
                self._images_failed = True
                logger.warning(
                    "AttentionLogger: drawing the heatmap image of %r at step %d failed "
                    "(%s: %s); no more images are written in this fit.",
                    matrix.tag,
                    step,
                    type(err).__name__,
                    err,
                )
                break
            try:
                attention_summary.write_event(self._writer, image, step)
            except Exception as err:  # noqa: BLE001
                self._fail(err)
                return
        try:
            self._writer.flush()
        except Exception as err:  # noqa: BLE001
            self._fail(err)

    def _fail(self, err: BaseException) -> None:
        with self._lock:
            if self._failed:
                return
            self._failed = True
        logger.warning(
            "AttentionLogger: could not write to the log directory %r (%s: %s); no more "
            "attention summaries are written in this fit. Check that the directory is "
            "writable and the disk has room.",
            self.run_dir,
            type(err).__name__,
            err,
        )
