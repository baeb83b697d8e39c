"""keras-seqattn: Wolfram-style sequence attention for Keras 3, and its view in TensorBoard.

Importing the package never imports TensorFlow: the layer's dense path is `keras.ops`
only, `keras_seqattn.ragged` is imported when a ragged tensor is seen, and
`AttentionLogger` is imported on first access (module `__getattr__`, PEP 562).
"""

from keras_seqattn.attention_adapters import AttentionAdapter, register_attention_adapter
from keras_seqattn.plotting import plot_attention
from keras_seqattn.scoring import AdditiveScore, BilinearScore, DotScore
from keras_seqattn.sequence_attention import SequenceAttention
from tb_plugin.read_logs import read_attention_logs
from tb_plugin.summary import attention as attention_summary

__version__ = "0.1.0"

__all__ = [
    "AdditiveScore",
    "AttentionAdapter",
    "AttentionLogger",
    "BilinearScore",
    "DotScore",
    "SequenceAttention",
    "attention_summary",
    "plot_attention",
    "read_attention_logs",
    "register_attention_adapter",
]


def __getattr__(name: str):
    if name == "AttentionLogger":
        from keras_seqattn.attention_logger import AttentionLogger

        return AttentionLogger
    raise AttributeError(f"module 'keras_seqattn' has no attribute {name!r}")
