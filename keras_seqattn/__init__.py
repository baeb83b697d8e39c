"""keras-seqattn: Wolfram-style sequence attention for Keras 3, and its view in TensorBoard."""

from keras_seqattn.attention_logger import AttentionLogger
from keras_seqattn.plotting import plot_attention
from keras_seqattn.scoring import AdditiveScore, BilinearScore, DotScore
from keras_seqattn.sequence_attention import SequenceAttention
from tb_plugin.read_logs import read_attention_logs
from tb_plugin.summary import attention as attention_summary

__version__ = "0.1.0"

__all__ = [
    "AdditiveScore",
    "AttentionLogger",
    "BilinearScore",
    "DotScore",
    "SequenceAttention",
    "attention_summary",
    "plot_attention",
    "read_attention_logs",
]
