"""The logger end to end on each backend, and under JAX data parallelism.

On every backend: a small masked model trained with `AttentionLogger`, its run read back
through a real TensorBoard server (both loaders), in the Attention, Images and Scalars
tabs. On JAX: the same model trained with `keras.distribution.DataParallel` over two
CPU devices, in a subprocess (the device count is fixed when JAX starts), writing each
logging point once, from process 0, without importing TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.parse

import keras
import numpy as np
import pytest

from tb_plugin.read_logs import read_attention_logs
from tests.tb_server import TensorBoardServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = ["<pad>", "the", "cat", "sat", "on", "a", "mat", "dog", "ran"]


def _model() -> keras.Model:
    from keras_seqattn import SequenceAttention

    ids = keras.Input((7,), dtype="int32")
    words = keras.layers.Embedding(len(VOCAB), 8, mask_zero=True)(ids)
    attended = SequenceAttention(name="attn")(words, words)
    out = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(attended))
    return keras.Model(ids, out)


def _data(count: int = 32):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, len(VOCAB), size=(count, 7)).astype("int32")
    ids[::2, 5:] = 0  # every other sentence has 5 words
    return ids, rng.normal(size=(count, 1)).astype("float32")


def _get(server, route: str, **params):
    return server.get_json(route + "?" + urllib.parse.urlencode(params))


@pytest.mark.all_backends
def test_logger_on_this_backend_read_back_by_tensorboard(tmp_path):
    from keras_seqattn import AttentionLogger

    ids, y = _data()
    model = _model()
    model.compile("adam", "mse")
    labels = [[VOCAB[i] for i in row if i] for row in ids[:2]]
    logger = AttentionLogger(tmp_path, ids[:2], input_labels=labels, query_labels=labels)
    model.fit(ids, y, batch_size=8, epochs=2, verbose=0, callbacks=[logger])

    records = read_attention_logs(tmp_path)
    assert sorted({(r.tag, r.step) for r in records}) == [
        (f"attn/{b}", step) for b in (0, 1) for step in (0, 4, 8)
    ]
    # Read as this backend's users would: with TensorFlow on its backend, else without.
    without = () if keras.backend.backend() == "tensorflow" else ("tensorflow",)
    for load_fast in (True, False):
        with TensorBoardServer(str(tmp_path), load_fast=load_fast, without=without) as server:

            def ready():
                steps = _get(server, "data/plugin/attention/steps", run="attention", tag="attn/1")
                images = server.get_json("data/plugin/images/tags").get("attention", {})
                return len(steps) == 3 and len(images) == 2

            server.wait_until(ready)
            for b in (0, 1):
                got = _get(
                    server, "data/plugin/attention/matrix", run="attention", tag=f"attn/{b}",
                    step=8,
                )  # fmt: skip
                # Trimmed to the example's words (example 0 has 5), labelled with them.
                assert got["input_labels"] == got["query_labels"] == labels[b]
                record = next(r for r in records if r.tag == f"attn/{b}" and r.step == 8)
                np.testing.assert_allclose(got["values"], record.values, atol=1e-6)
                listed = _get(
                    server, "data/plugin/images/images", run="attention", tag=f"attn/{b}/heatmap"
                )
                assert [entry["step"] for entry in listed] == [0, 4, 8]
            entropy = _get(server, "data/plugin/scalars/scalars", run="attention",
                           tag="attn/mean_entropy")  # fmt: skip
            assert [step for _, step, _ in entropy] == [0, 4, 8]
            assert all(0 < value < np.log(7) for _, _, value in entropy)


DATA_PARALLEL = textwrap.dedent(
    """
    import json, sys
    import jax
    import keras
    import numpy as np
    sys.path.insert(0, {root!r})
    from keras_seqattn import AttentionLogger, read_attention_logs
    from tests.test_logger_end_to_end import _data, _model

    devices = jax.devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    ids, y = _data()
    model = _model()
    model.compile("adam", "mse")
    logger = AttentionLogger({logdir!r}, ids[:2], every_n_steps=2)
    model.fit(ids, y, batch_size=8, epochs=2, verbose=0, callbacks=[logger])
    records = read_attention_logs({logdir!r})
    kernel = model.trainable_variables[0].value
    print(json.dumps({{
        "devices": len(devices),
        "process_index": jax.process_index(),
        "variable_devices": len(kernel.sharding.device_set),
        "points": sorted([r.tag, r.step] for r in records),
        "tensorflow": "tensorflow" in sys.modules,
    }}))
    """
)


def test_jax_data_parallel_on_two_devices_writes_each_point_once(tmp_path):
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
    )
    done = subprocess.run(
        [sys.executable, "-c", DATA_PARALLEL.format(root=ROOT, logdir=str(tmp_path))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["devices"] == 2 and got["variable_devices"] == 2 and got["process_index"] == 0
    # 32 examples in batches of 8 for 2 epochs: steps 1-8; logged at 0, 2, 4, 6, 8, once each.
    assert got["points"] == [[f"attn/{b}", s] for b in (0, 1) for s in (0, 2, 4, 6, 8)]
    assert not got["tensorflow"]
