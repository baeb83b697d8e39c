"""Internal information about the attention plugin: its name and summary metadata."""

from __future__ import annotations

import json

from tensorboard.compat.proto import summary_pb2

from tb_plugin import codec

PLUGIN_NAME = "attention"

# Attention summaries are BLOB_SEQUENCEs: [header, values] per step (see codec.py).
DATA_CLASS = summary_pb2.DATA_CLASS_BLOB_SEQUENCE


def create_summary_metadata(description: str | None = None) -> summary_pb2.SummaryMetadata:
    """Returns the `SummaryMetadata` proto that marks a summary as attention data.

    `data_class` is set: without it both of TensorBoard's loaders drop the data.
    """
    content = json.dumps({"version": codec.FORMAT_VERSION}).encode("utf-8")
    return summary_pb2.SummaryMetadata(
        summary_description=description or "",
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=content
        ),
        data_class=DATA_CLASS,
    )


def parse_plugin_metadata(content: bytes) -> int:
    """Returns the format version recorded in a summary's `plugin_data.content`.

    The plugin reads a tag only when this succeeds, in every route.

    Raises:
      TypeError: when `content` is not bytes.
      ValueError (`codec.DecodeError`): when it is not the JSON object this plugin
        writes, or names a version this plugin cannot read.
    """
    if not isinstance(content, bytes):
        raise TypeError(f"content: expected bytes, got {type(content).__name__}")
    try:
        parsed = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise codec.DecodeError(f"plugin content is not UTF-8 JSON: {content[:60]!r}") from None
    if not isinstance(parsed, dict):
        raise codec.DecodeError(f"plugin content: expected a JSON object, got {content[:60]!r}")
    return codec.check_version(parsed.get("version"), "plugin content")
