"""A `.keras` file saved on one backend loads on each other one and gives the same outputs.

Keras fixes its backend at import, so JAX and PyTorch run in subprocesses, in a chain:
this (TensorFlow) process saves a padded, masked model with every named scoring net; JAX
loads it, checks its outputs and saves its own; PyTorch loads both, checks them and
saves its own; TensorFlow loads the JAX and PyTorch files. Every file is loaded on every
other backend, with two subprocesses. Run once, from the TensorFlow pass of the suite.
"""

import os
import subprocess
import sys

import keras
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="run once, from the TensorFlow pass"
)

MODEL = """
import numpy as np, keras
from keras_seqattn import SequenceAttention

def build():
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(30, 8, mask_zero=True)(tokens)
    outputs = []
    for scoring, mask, rescaling in [
        ("bilinear", None, None),
        ("dot", "causal", "length_sqrt"),
        ("additive", ("causal", 2), "dim_sqrt"),
    ]:
        attention = SequenceAttention(scoring, mask=mask, score_rescaling=rescaling, dropout=0.1)
        outputs.append(keras.layers.GlobalAveragePooling1D()(attention(x, x)))
    return keras.Model(tokens, keras.layers.Concatenate()(outputs))

IDS = np.random.default_rng(0).integers(1, 30, (4, 6))
IDS[1, 3:] = 0
IDS[3, 1:] = 0

def save(folder, backend):
    model = build()
    np.save(f"{folder}/{backend}.npy", keras.ops.convert_to_numpy(model(IDS)))
    model.save(f"{folder}/{backend}.keras")

def check(folder, backend):
    model = keras.models.load_model(f"{folder}/{backend}.keras")
    got = keras.ops.convert_to_numpy(model(IDS))
    expected = np.load(f"{folder}/{backend}.npy")
    assert got.shape == (4, 24), got.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=backend)
"""


def step(backend, folder, loads):
    script = MODEL + "".join(f"\ncheck({str(folder)!r}, {b!r})" for b in loads)
    script += f"\nsave({str(folder)!r}, {backend!r})\nprint('done')"
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "done" in done.stdout, f"{backend}: {done.stderr[-2000:]}"


def test_keras_files_move_between_tensorflow_jax_and_pytorch(tmp_path):
    namespace = {}
    exec(MODEL, namespace)
    namespace["save"](str(tmp_path), "tensorflow")
    step("jax", tmp_path, loads=["tensorflow"])
    step("torch", tmp_path, loads=["tensorflow", "jax"])
    for saved_on in ("jax", "torch"):
        namespace["check"](str(tmp_path), saved_on)
