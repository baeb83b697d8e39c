"""keras-seqattn: Wolfram-style sequence attention for Keras 3, and its view in TensorBoard."""

from keras_seqattn.plotting import plot_attention
from keras_seqattn.scoring import AdditiveScore, BilinearScore, DotScore
from keras_seqattn.sequence_attention import SequenceAttention

__version__ = "0.1.0"

__all__ = [
    "AdditiveScore",
    "BilinearScore",
    "DotScore",
    "SequenceAttention",
    "plot_attention",
]
