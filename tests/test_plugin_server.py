"""The plugin in a real TensorBoard server, under both data loaders.

`python -m tensorboard.main` in a subprocess (tests/tb_server.py) finds the plugin
through its `tensorboard_plugins` entry point, as a user's TensorBoard does. One server
per loader, shared by the module; the logdir is written once.
"""

from __future__ import annotations

import json
import os
import urllib.parse

import numpy as np
import pytest
from attention_logs import (
    HIDDEN_TAGS,
    MODEL_STEPS,
    VISIBLE_TAGS,
    check_codes_overview,
    check_csv,
    check_overview,
    check_stored,
    expected_json,
    parse_binary,
    parse_codes,
    parse_overview,
    widen_codes,
    write_logs,
)
from tb_server import TensorBoardServer

from tb_plugin import plugin

pytestmark = pytest.mark.server

PREFIX = "data/plugin/attention/"


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return write_logs(str(tmp_path_factory.mktemp("logs")))


def _all_data_loaded(server: TensorBoardServer, logs) -> bool:
    tags = server.get_json(PREFIX + "tags")
    return (
        {run: sorted(t) for run, t in tags.items()} == VISIBLE_TAGS
        and all(
            tags[run][tag]["num_steps"] == len(written)
            for run, by_tag in [*logs.written.items(), ("stored", logs.stored)]
            for tag, written in by_tag.items()
        )
        and server.get_json(PREFIX + "entropy?run=model")
        == {layer: [list(p) for p in series] for layer, series in logs.entropy.items()}
    )


@pytest.fixture(scope="module", params=[True, False], ids=["load_fast", "python_loader"])
def server(request, logs):
    with TensorBoardServer(logs.logdir, load_fast=request.param) as tb:
        tb.wait_until(lambda: _all_data_loaded(tb, logs))
        yield tb


def _url(route: str, **params) -> str:
    return PREFIX + route + "?" + urllib.parse.urlencode(params)


def test_plugins_listing_shows_attention_enabled(server):
    listing = server.get_json("data/plugins_listing")
    assert listing["attention"]["enabled"] is True
    assert listing["attention"]["tab_name"] == "Attention"
    assert listing["attention"]["loading_mechanism"]["module_path"] == (
        "/data/plugin/attention/index.js"
    )


def test_tags(server):
    tags = server.get_json(PREFIX + "tags")
    assert tags["train"]["encoder/attn/0"] == {
        "description": "probe example 0",
        "max_step": 10,
        "num_steps": 3,
        "shape": [1, 3, 1],
        "heads": 1,
    }
    assert tags["train"]["decoder/heads/0"]["shape"] == [2, 3, 4]
    assert tags["train"]["long/0"]["num_steps"] == 12  # --samples_per_plugin attention=0
    assert not set(HIDDEN_TAGS) & set(tags["train"])


def test_matrix_stored_form_is_the_blob_as_written_in_its_streams(server, logs):
    # Run "stored" is not in logs.written, so no other test has the plugin decode it (it
    # would then answer the codes form).
    for tag in ("wide/0", "scores/0"):
        for w in logs.stored[tag]:
            status, body, headers = server.get(
                _url("matrix", run="stored", tag=tag, step=w.step, format="stored")
            )
            assert status == 200 and headers["Content-Type"] == "application/octet-stream"
            check_stored(body, w)
    # Streams not stated (or stated wrongly): the plugin decodes; the codes form comes.
    for tag in ("legacy/0", "mislengths/0"):
        (w,) = logs.stored[tag]
        status, body, _ = server.get(_url("matrix", run="stored", tag=tag, format="stored"))
        header, codes = parse_codes(body)
        assert status == 200 and "streams" not in header
        widened = widen_codes(codes, header["encoding"]).reshape(header["shape"])
        np.testing.assert_array_equal(widened, w.values32)


def test_steps_and_matrix_json_are_exact(server, logs):
    for run, by_tag in logs.written.items():
        for tag, written in by_tag.items():
            steps = server.get_json(_url("steps", run=run, tag=tag))
            assert [s["step"] for s in steps] == [w.step for w in written]
            for w, s in zip(written, steps, strict=True):
                got = server.get_json(_url("matrix", run=run, tag=tag, step=w.step))
                assert got == expected_json(w, s["wall_time"]), (run, tag, w.step)


def test_matrix_binary_and_csv(server, logs):
    for tag in ("encoder/attn/0", "decoder/heads/0"):
        for w in logs.written["train"][tag]:
            status, body, headers = server.get(
                _url("matrix", run="train", tag=tag, step=w.step, format="binary")
            )
            assert status == 200 and headers["Content-Type"] == "application/octet-stream"
            header, values = parse_binary(body)
            assert header["input_labels"] == w.input_labels
            assert header["query_labels"] == w.query_labels
            np.testing.assert_array_equal(values, w.values32)
            status, body, headers = server.get(
                _url("matrix", run="train", tag=tag, step=w.step, format="csv")
            )
            assert status == 200 and headers["Content-Type"].startswith("text/csv")
            check_csv(body.decode("utf-8"), w)
            status, body, headers = server.get(
                _url("matrix", run="train", tag=tag, step=w.step, format="codes")
            )
            assert status == 200 and headers["Content-Type"] == "application/octet-stream"
            header, codes = parse_codes(body)
            assert header["query_labels"] == w.query_labels
            widened = widen_codes(codes, header["encoding"]).reshape(header["shape"])
            np.testing.assert_array_equal(widened, w.values32)


def test_overview_of_each_example_and_step(server, logs):
    for example in ("0", "1"):
        for step in (*MODEL_STEPS, None):
            params = {"run": "model", "example": example}
            if step is not None:
                params["step"] = step
            status, body, headers = server.get(_url("overview", **params))
            assert status == 200 and headers["Content-Type"] == "application/octet-stream"
            described, values = parse_overview(body)
            check_overview(
                described, values, logs, example, MODEL_STEPS[-1] if step is None else step
            )
            status, codes, _ = server.get(_url("overview", format="codes", **params))
            assert status == 200
            check_codes_overview(codes, body)


def test_entropy_series_and_the_tab_only_for_attention_data(server, logs):
    # (the fixture waited until the entropy route answered exactly logs.entropy)
    assert server.get_json(_url("entropy", run="model")).keys() == logs.entropy.keys()
    assert server.get_json(_url("entropy", run="scalars_only")) == {}
    # The Scalars tab sees the same logdir; the attention tab stays for attention data.
    listing = server.get_json("data/plugins_listing")
    assert listing["attention"]["enabled"] and listing["scalars"]["enabled"]


def test_static_index_js_is_served_as_javascript(server):
    if not os.path.isfile(os.path.join(plugin.STATIC_DIR, "index.js")):
        pytest.skip("tb_plugin/static/index.js not written yet (frontend)")
    status, body, headers = server.get(PREFIX + "index.js")
    assert status == 200
    assert headers["Content-Type"].split(";")[0] in ("application/javascript", "text/javascript")
    assert b"render" in body


@pytest.mark.parametrize(
    "path,status",
    [
        ("steps", 400),
        ("steps?run=train&tag=nope", 404),
        ("matrix?run=train&tag=long/0&step=abc", 400),
        ("matrix?run=train&tag=long/0&step=-5", 404),
        ("matrix?run=train&tag=long/0&step=" + "9" * 30, 400),
        ("matrix?run=train&tag=long/0&format=pdf", 400),
        ("matrix?run=train&tag=corrupt/0", 404),
        ("matrix?run=train&tag=future/0", 404),
        ("%2e%2e/%2e%2e/%2e%2e/etc/passwd", 404),
        ("..%2fplugin.py", 404),
        ("plugin.py", 404),
        ("nope.js", 404),
        ("overview?run=model", 400),
        ("overview?run=model&example=a/0", 400),
        ("overview?run=model&example=0&step=5", 404),
        ("overview?run=nope&example=0", 404),
        ("entropy", 400),
    ],
)
def test_bad_requests_get_a_json_4xx(server, path, status):
    got, body, headers = server.get(PREFIX + path)
    assert got == status, body[:300]
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["error"]


# -- TensorBoard starts, and serves the plugin, without TensorFlow, Keras or keras_seqattn


@pytest.fixture(scope="module")
def bare_server(logs):
    with TensorBoardServer(
        logs.logdir, load_fast=False, without=("tensorflow", "keras", "keras_seqattn")
    ) as tb:
        tb.wait_until(lambda: _all_data_loaded(tb, logs))
        yield tb


def test_tensorboard_serves_the_plugin_without_tensorflow_or_keras(bare_server, logs):
    output = "".join(bare_server.output)
    assert "TensorFlow installation not found" in output, output
    listing = bare_server.get_json("data/plugins_listing")
    assert listing["attention"]["enabled"] is True
    w = logs.written["train"]["decoder/heads/0"][-1]
    got = bare_server.get_json(_url("matrix", run="train", tag="decoder/heads/0"))
    np.testing.assert_array_equal(got["values"], w.values)
