"""Reading attention summaries back from a log directory, as labelled matrices.

`read_attention_logs(logdir)` walks `logdir` the way TensorBoard does (every directory
holding event files is a run, named by its path relative to `logdir`), reads every
event file, keeps the summary values whose metadata names this plugin, and decodes
them with `codec` (the same code the plugin serves them with). It returns one
`AttentionRecord` per stored matrix, or a pandas DataFrame of them.

TensorFlow is not needed and not imported: the event files are read record by record
here (the TFRecord framing: a little-endian uint64 length, its masked CRC32C, the
payload, the payload's masked CRC32C; see tensorflow/core/lib/io/record_writer.cc).
Both checksums are verified (`tb_plugin.records`: 5 to 7 ms a megabyte in numpy;
records under 3 kB, scalars and the like, take a Python loop: about 14 us for one of 60
bytes), so a corrupt record is reported as such, naming its file and offset. A record cut
short at the end of a file (a writer still writing) ends that file.

TensorBoard keeps a tag's metadata from its first value; writers may leave it out of
later values (TensorFlow's does). So a tag is recognised by the first of its values in
a run that has metadata, and later values of that tag are read as attention too.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from tensorboard.compat.proto import event_pb2

from tb_plugin import codec
from tb_plugin.metadata import PLUGIN_NAME
from tb_plugin.records import masked_crc32c

COLUMNS = (
    "run",
    "tag",
    "step",
    "wall_time",
    "heads",
    "query_labels",
    "input_labels",
    "values",
)


@dataclass(frozen=True)
class AttentionRecord:
    """One stored attention matrix.

    Attributes:
      run: the run's directory relative to the log directory ("." for the directory
        itself), e.g. "attention" for `AttentionLogger`'s run.
      tag: e.g. "<layer>/<example index>".
      step: the training step it was logged at.
      wall_time: when it was written (seconds since the epoch).
      heads: the number of heads (1 for a single matrix).
      query_labels: one string per row.
      input_labels: one string per column.
      values: float32, (queries, inputs) or (heads, queries, inputs) as written,
        with the stored precision (`tb_plugin.codec`: softmax weights to 4 decimals,
        other values as float16).
    """

    run: str
    tag: str
    step: int
    wall_time: float
    heads: int
    query_labels: tuple[str, ...]
    input_labels: tuple[str, ...]
    values: np.ndarray


def _records(path: str) -> Iterator[bytes]:
    """The payloads of a TFRecord file; stops at a truncated record at its end."""
    offset = 0
    with open(path, "rb") as stream:
        while True:
            header = stream.read(12)
            if len(header) < 12:
                return
            length_bytes, length_crc = header[:8], struct.unpack("<I", header[8:])[0]
            if masked_crc32c(length_bytes) != length_crc:
                raise codec.DecodeError(_corrupt(path, offset, "length"))
            (length,) = struct.unpack("<Q", length_bytes)
            payload = stream.read(length)
            payload_crc = stream.read(4)
            if len(payload) < length or len(payload_crc) < 4:
                return
            if masked_crc32c(payload) != struct.unpack("<I", payload_crc)[0]:
                raise codec.DecodeError(_corrupt(path, offset, "payload"))
            offset += 16 + length
            yield payload


def _corrupt(path: str, offset: int, part: str) -> str:
    return (
        f"{path}: the record at byte {offset} is corrupt (its {part} fails its checksum); "
        "move this file out of the log directory to read the others"
    )


def _runs(logdir: str) -> list[tuple[str, list[str]]]:
    """(run name, its event files in name order, i.e. by creation time) per run."""
    runs = []
    for directory, subdirectories, files in os.walk(logdir):
        subdirectories.sort()
        events = sorted(name for name in files if "tfevents" in name)
        if events:
            run = os.path.relpath(directory, logdir).replace(os.sep, "/")
            runs.append((run, [os.path.join(directory, name) for name in events]))
    return runs


def read_attention_logs(
    logdir: str | os.PathLike,
    *,
    runs: list[str] | None = None,
    tags: list[str] | None = None,
    dataframe: bool = False,
):
    """Reads every attention summary under `logdir` back as labelled matrices.

    ```python
    from keras_seqattn import read_attention_logs

    for record in read_attention_logs("runs/demo"):
        print(record.run, record.tag, record.step, record.values.shape)
    frame = read_attention_logs("runs/demo", dataframe=True)   # needs pandas
    ```

    Args:
      logdir: the log directory (as given to TensorBoard), or one run's directory.
      runs: only these runs (names relative to `logdir`, e.g. ["attention"]).
      tags: only these tags.
      dataframe: return a pandas DataFrame (one row per matrix, columns `COLUMNS`)
        instead of a list.

    Returns:
      A list of `AttentionRecord`, ordered by run, tag, then step (then wall time),
      or the same as a DataFrame.

    Raises:
      FileNotFoundError: `logdir` is not a directory.
      ImportError: `dataframe=True` without pandas installed.
      codec.DecodeError: a stored attention summary is corrupt or of a newer format.
    """
    logdir = os.fspath(logdir)
    if not os.path.isdir(logdir):
        raise FileNotFoundError(f"logdir: {logdir!r} is not a directory")
    if dataframe:
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError(
                "read_attention_logs(..., dataframe=True) needs pandas (pip install "
                "pandas); without it, use the list of records it returns by default."
            ) from err
    found: list[AttentionRecord] = []
    for run, paths in _runs(logdir):
        if runs is not None and run not in runs:
            continue
        attention_tags: set[str] = set()
        other_tags: set[str] = set()
        for path in paths:
            for payload in _records(path):
                event = event_pb2.Event.FromString(payload)
                if not event.HasField("summary"):
                    continue
                for value in event.summary.value:
                    tag = value.tag
                    if tag not in attention_tags and tag not in other_tags:
                        if not value.HasField("metadata"):
                            continue  # a tag first seen without metadata: not ours
                        plugin = value.metadata.plugin_data.plugin_name
                        (attention_tags if plugin == PLUGIN_NAME else other_tags).add(tag)
                    if tag not in attention_tags or (tags is not None and tag not in tags):
                        continue
                    blobs = list(value.tensor.string_val)
                    if len(blobs) != 2:
                        raise codec.DecodeError(
                            f"{path}: tag {tag!r} step {event.step}: expected 2 blobs, got "
                            f"{len(blobs)}"
                        )
                    header, values = codec.decode(*blobs)
                    found.append(
                        AttentionRecord(
                            run=run,
                            tag=tag,
                            step=int(event.step),
                            wall_time=float(event.wall_time),
                            heads=header.heads,
                            query_labels=tuple(header.query_labels),
                            input_labels=tuple(header.input_labels),
                            values=values.float32(),
                        )
                    )
    found.sort(key=lambda r: (r.run, r.tag, r.step, r.wall_time))
    if not dataframe:
        return found
    return pd.DataFrame([[getattr(r, c) for c in COLUMNS] for r in found], columns=list(COLUMNS))
