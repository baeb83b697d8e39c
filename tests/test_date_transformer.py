"""The transformer date example: multi-head `SequenceAttention` in a real model.

`examples/date_transformer.py` on a few hundred dates: it trains, saves and loads, and
the `AttentionLogger` logs every head of its three attentions (masked encoder
self-attention, causal decoder self-attention, cross-attention), which the plugin
serves with their head axis (what the tab's head selector reads). TensorFlow only: the
source arrives as a `tf.RaggedTensor` and the data is a `tf.data` pipeline.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
from pathlib import Path

import keras
import numpy as np
import pytest
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test

from keras_seqattn import SequenceAttention
from tb_plugin.plugin import AttentionPlugin

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import date_transformer as example  # noqa: E402

HEADS = 4
LAYERS = ("encoder_attention", "decoder_attention", "cross_attention")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("transformer")
    result = example.train(
        epochs=2,
        samples=384,
        test_samples=20,
        batch_size=128,
        log_dir=str(root / "run"),
        model_path=str(root / "model.keras"),
        verbose=0,
    )
    return root, result


def _get(logdir, route, **params):
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={"attention": 0, "images": 0, "scalars": 0}
    )
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    context = base_plugin.TBContext(
        logdir=str(logdir), data_provider=provider, sampling_hints={"attention": 0}
    )
    client = werkzeug_test.Client(
        application.TensorBoardWSGI([AttentionPlugin(context)], data_provider=provider)
    )
    response = client.get(f"/data/plugin/attention/{route}?" + urllib.parse.urlencode(params))
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(response.get_data())


def test_every_attention_is_a_multi_head_sequence_attention():
    model = example.build_model(heads=HEADS)
    attention = [layer for layer in model.layers if isinstance(layer, SequenceAttention)]
    assert sorted(layer.name for layer in attention) == sorted(LAYERS)
    assert all(layer.multi_head and layer.scoring == "dot" for layer in attention)
    assert model.get_layer("decoder_attention").attention_mask == "causal"


def test_it_trains(trained):
    _, result = trained
    assert all(np.isfinite(result.losses)) and result.losses[-1] < result.losses[0]


def test_saved_model_loads_and_gives_the_same_outputs(trained):
    root, result = trained
    model = keras.saving.load_model(result.model_path)
    again = keras.saving.load_model(result.model_path)
    probes = example.dates.probe_dates()
    decoder_input, _ = example.dates.encode_target([d.iso for d in probes])
    decoder_input = keras.ops.convert_to_tensor(decoder_input)
    inputs = {
        "source": example.dates.encode_source([d.text for d in probes]),
        "decoder_input": decoder_input,
    }
    np.testing.assert_array_equal(np.asarray(model(inputs)), np.asarray(again(inputs)))
    assert model.get_layer("cross_attention").get_config()["multi_head"] is True


def test_logger_logs_every_head_of_the_three_attentions(trained):
    root, result = trained
    logdir = root / "run"
    tags = _get(logdir, "tags")["attention"]
    probes = example.dates.probe_dates()
    assert set(tags) == {f"{name}/{b}" for name in LAYERS for b in range(len(probes))}
    model = keras.saving.load_model(result.model_path)
    viewer = keras.Model(
        model.inputs, [model.get_layer(name).output[1] for name in LAYERS]
    )  # (batch, heads, m, n) each
    decoder_input, _ = example.dates.encode_target([d.iso for d in probes])
    decoder_input = keras.ops.convert_to_tensor(decoder_input)
    source = example.dates.encode_source([d.text for d in probes])
    expected = dict(
        zip(LAYERS, viewer({"source": source, "decoder_input": decoder_input}), strict=True)
    )
    for b, date in enumerate(probes):
        n = len(date.text)
        shapes = {
            "encoder_attention": [HEADS, n, n],
            "decoder_attention": [HEADS, 10, 10],
            "cross_attention": [HEADS, 10, n],
        }
        for name in LAYERS:
            assert tags[f"{name}/{b}"]["heads"] == HEADS
            got = _get(logdir, "matrix", run="attention", tag=f"{name}/{b}")
            assert got["shape"] == shapes[name] and got["heads"] == HEADS
            values = np.asarray(got["values"])
            np.testing.assert_allclose(values.sum(axis=-1), 1.0, atol=3e-3)
            # The last logging point is the end of training: the saved model's weights.
            _, rows, columns = shapes[name]
            want = np.asarray(expected[name])[b, :, :rows, :columns]
            np.testing.assert_allclose(values, want, atol=2e-3)
        causal = _get(logdir, "matrix", run="attention", tag=f"decoder_attention/{b}")
        above = np.triu(np.ones((10, 10), bool), 1)  # character j never sees j + 1, ...
        assert np.all(np.asarray(causal["values"])[:, above] == 0.0)
