"""A TensorBoard plugin that shows attention weights as labelled, interactive heatmaps.

`tb_plugin.summary.attention` writes the summaries (TensorFlow is imported when it is
called, not before); `tb_plugin.plugin.AttentionPlugin` serves them. Importing this
package imports neither TensorFlow nor Keras, so TensorBoard loads the plugin without them.
"""

from tb_plugin.metadata import PLUGIN_NAME
from tb_plugin.summary import attention

__all__ = ["PLUGIN_NAME", "attention"]
