"""The plugin's routes through TensorBoard's own WSGI app, over real event files.

`application.TensorBoardWSGI([plugin], data_provider=...)` with TensorBoard's Python
loader (`MultiplexerDataProvider`) and `werkzeug.test.Client`, as TensorBoard's own
plugin tests do. The Rust loader is covered by test_plugin_server.py.
"""

from __future__ import annotations

import json
import os
import urllib.parse

import numpy as np
import pytest
from attention_logs import (
    HIDDEN_TAGS,
    MARKUP,
    MODEL_BAD_TAGS,
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
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test

from tb_plugin import codec, plugin, responses
from tb_plugin.plugin import AttentionPlugin

PREFIX = "/data/plugin/attention/"


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return write_logs(str(tmp_path_factory.mktemp("logs")))


@pytest.fixture(scope="module")
def provider(logs):
    # The loader keeps every step; what the plugin asks for is then its own choice.
    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={"attention": 0})
    multiplexer.AddRunsFromDirectory(logs.logdir)
    multiplexer.Reload()
    return data_provider.MultiplexerDataProvider(multiplexer, logs.logdir)


def _client(provider, logdir, sampling_hints=None, static_dir=None) -> werkzeug_test.Client:
    context = base_plugin.TBContext(
        logdir=logdir,
        data_provider=provider,
        sampling_hints=sampling_hints if sampling_hints is not None else {"attention": 0},
    )
    plugin = AttentionPlugin(context, static_dir=static_dir)
    return werkzeug_test.Client(application.TensorBoardWSGI([plugin], data_provider=provider))


@pytest.fixture(scope="module")
def client(provider, logs):
    return _client(provider, logs.logdir)


def _get(client, route: str, **params):
    query = urllib.parse.urlencode(params)
    return client.get(PREFIX + route + ("?" + query if query else ""))


def _json(client, route: str, **params):
    response = _get(client, route, **params)
    assert response.status_code == 200, response.get_data()
    assert response.mimetype == "application/json"
    return json.loads(response.get_data())


# -- happy paths -----------------------------------------------------------------------


def test_plugins_listing_shows_the_plugin_enabled_with_its_es_module(client):
    listing = json.loads(client.get("/data/plugins_listing").get_data())
    entry = listing["attention"]
    assert entry["enabled"] is True
    assert entry["tab_name"] == "Attention"
    assert entry["loading_mechanism"] == {
        "type": "IFRAME",
        "module_path": "/data/plugin/attention/index.js",
    }


def test_tags_lists_runs_and_tags_with_latest_shape(client, logs):
    tags = _json(client, "tags")
    assert {run: sorted(t) for run, t in tags.items()} == VISIBLE_TAGS
    encoder = tags["train"]["encoder/attn/0"]
    assert encoder == {
        "description": "probe example 0",
        "max_step": 10,
        "num_steps": 3,
        "shape": [1, 3, 1],
        "heads": 1,
    }
    assert tags["train"]["decoder/heads/0"] == {
        "description": "",
        "max_step": 1,
        "num_steps": 2,
        "shape": [2, 3, 4],
        "heads": 2,
    }
    assert tags["train"]["long/0"]["num_steps"] == 12
    assert "scalars_only" not in tags
    for hidden in HIDDEN_TAGS:
        assert hidden not in tags["train"]


def test_steps_are_every_retained_step_ascending(client, logs):
    for run, tags in logs.written.items():
        for tag, written in tags.items():
            steps = _json(client, "steps", run=run, tag=tag)
            assert [s["step"] for s in steps] == [w.step for w in written]
            assert all(isinstance(s["wall_time"], float) for s in steps)
            walls = [s["wall_time"] for s in steps]
            assert walls == sorted(walls)


def test_default_sampling_keeps_ten_steps_and_the_latest(provider, logs):
    client = _client(provider, logs.logdir, sampling_hints={})
    steps = [s["step"] for s in _json(client, "steps", run="train", tag="long/0")]
    assert len(steps) == 10 and steps[-1] == 11 and steps == sorted(steps)
    client = _client(provider, logs.logdir, sampling_hints={"attention": 3})
    assert len(_json(client, "steps", run="train", tag="long/0")) == 3


def test_matrix_json_returns_the_exact_stored_values_and_per_step_labels(client, logs):
    for run, tags in logs.written.items():
        for tag, written in tags.items():
            walls = {s["step"]: s["wall_time"] for s in _json(client, "steps", run=run, tag=tag)}
            for w in written:
                got = _json(client, "matrix", run=run, tag=tag, step=w.step)
                assert got == expected_json(w, walls[w.step]), (run, tag, w.step)


def test_labels_change_between_steps_and_markup_comes_back_verbatim(client, logs):
    first = _json(client, "matrix", run="train", tag="encoder/attn/0", step=0)
    second = _json(client, "matrix", run="train", tag="encoder/attn/0", step=5)
    assert first["input_labels"] == ["the", "cat", "sat", "."]
    assert second["query_labels"] == ["x", MARKUP]
    assert second["input_labels"][0] == "caf\u00e9 \u4e2d\u6587 \U0001f600"
    assert (first["shape"], second["shape"]) == ([3, 4], [2, 5])


def test_matrix_without_step_is_the_latest(client, logs):
    latest = logs.written["train"]["encoder/attn/0"][-1]
    got = _json(client, "matrix", run="train", tag="encoder/attn/0")
    assert got["step"] == latest.step == 10
    assert got["values"] == latest.values.tolist()


def test_heads_are_kept(client, logs):
    for w in logs.written["train"]["decoder/heads/0"]:
        got = _json(client, "matrix", run="train", tag="decoder/heads/0", step=w.step)
        assert got["shape"] == [2, 3, 4] and got["heads"] == 2
        assert np.array(got["values"]).shape == (2, 3, 4)
        np.testing.assert_array_equal(got["values"], w.values)


def test_matrix_binary_layout(client, logs):
    for tag in ("encoder/attn/0", "decoder/heads/0", "edges/0"):
        for w in logs.written["train"][tag]:
            response = _get(client, "matrix", run="train", tag=tag, step=w.step, format="binary")
            assert response.status_code == 200
            assert response.mimetype == "application/octet-stream"
            header, values = parse_binary(response.get_data())
            expected = expected_json(w)
            del expected["values"]
            assert {k: v for k, v in header.items() if k != "wall_time"} == expected
            assert isinstance(header["wall_time"], float)
            assert values.dtype == np.float32
            np.testing.assert_array_equal(values, w.values32)


def test_matrix_codes_are_the_stored_codes_and_widen_to_the_binary_values(client, logs):
    encodings = set()
    for tag in ("encoder/attn/0", "decoder/heads/0", "edges/0"):
        for w in logs.written["train"][tag]:
            response = _get(client, "matrix", run="train", tag=tag, step=w.step, format="codes")
            assert response.status_code == 200
            assert response.mimetype == "application/octet-stream"
            header, codes = parse_codes(response.get_data())
            encoding = header.pop("encoding")
            encodings.add(encoding)
            expected = expected_json(w)
            del expected["values"]
            assert {k: v for k, v in header.items() if k != "wall_time"} == expected
            assert codes.size == w.values.size
            widened = widen_codes(codes, encoding)
            binary = _get(client, "matrix", run="train", tag=tag, step=w.step, format="binary")
            np.testing.assert_array_equal(widened.reshape(w.values.shape), w.values32)
            np.testing.assert_array_equal(widened, parse_binary(binary.get_data())[1].ravel())
    # Weights in [0, 1] and raw scores: both encodings are served.
    assert encodings == {"decimal4", "float16"}


def test_matrix_stored_is_the_values_blob_as_written_in_the_zlib_streams_it_names(provider, logs):
    client = _client(provider, logs.logdir)  # nothing decoded yet
    encodings = set()
    steps = [("stored", tag, w) for tag in ("wide/0", "scores/0") for w in logs.stored[tag]]
    steps += [
        (run, tag, w)
        for run in ("v1", "train")
        for tag, ws in logs.written[run].items()
        for w in ws
    ]
    for run, tag, w in steps:
        response = _get(client, "matrix", run=run, tag=tag, step=w.step, format="stored")
        assert response.status_code == 200, response.get_data()
        assert response.mimetype == "application/octet-stream"
        header = check_stored(response.get_data(), w)
        encodings.add((header["encoding"], len(header["streams"])))
        # Asked again, it comes from the plugin's cache in the same form.
        again = _get(client, "matrix", run=run, tag=tag, step=w.step, format="stored")
        assert again.get_data() == response.get_data()
    # Every encoding, and blobs of one and of several streams (a v1 blob is one).
    assert {e for e, _ in encodings} == {"decimal4", "float16", "float16-planes"}
    assert {1, 2, 3} <= {n for _, n in encodings}


def test_matrix_stored_is_the_codes_form_where_the_streams_are_not_stated_or_held_decoded(
    provider, logs
):
    client = _client(provider, logs.logdir)
    w = logs.stored["wide/0"][0]
    # Held decoded, because another form asked for the step first.
    codes = _get(client, "matrix", run="stored", tag="wide/0", step=w.step, format="codes")
    cases = [("wide/0", codes.get_data())]
    # A header written before it named its streams, and one whose lengths are wrong: only
    # inflating finds the streams' ends, so the plugin decodes (and keeps) the codes.
    cases += [("legacy/0", None), ("mislengths/0", None)]
    for tag, expected in cases:
        for _ in range(2):
            stored = _get(client, "matrix", run="stored", tag=tag, step=0, format="stored")
            assert stored.status_code == 200, stored.get_data()
            header, values = parse_codes(stored.get_data())
            assert "streams" not in header and header["encoding"] == "decimal4"
            assert expected is None or stored.get_data() == expected
            np.testing.assert_array_equal(
                widen_codes(values, header["encoding"]).reshape(w.values.shape), w.values32
            )


def test_matrix_csv_export(client, logs):
    for tag in ("encoder/attn/0", "decoder/heads/0", "edges/0"):
        for w in logs.written["train"][tag]:
            response = _get(client, "matrix", run="train", tag=tag, step=w.step, format="csv")
            assert response.status_code == 200
            assert response.mimetype == "text/csv"
            disposition = response.headers["Content-Disposition"]
            assert disposition.startswith('attachment; filename="attention_train_')
            assert disposition.endswith(f'step{w.step}.csv"')
            check_csv(response.get_data(as_text=True), w)


def test_gzip_is_used_when_accepted(client):
    response = client.get(
        PREFIX + "matrix?run=train&tag=long/0", headers={"Accept-Encoding": "gzip"}
    )
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"


# -- overview and entropy -----------------------------------------------------------------


def _overview(client, **params):
    response = _get(client, "overview", **params)
    assert response.status_code == 200, response.get_data()[:300]
    assert response.mimetype == "application/octet-stream"
    return parse_overview(response.get_data())


def test_overview_holds_every_layer_of_one_example_at_one_step_in_model_order(client, logs):
    for example in ("0", "1"):
        for step in MODEL_STEPS:
            described, values = _overview(client, run="model", example=example, step=step)
            check_overview(described, values, logs, example, step)


def test_overview_without_step_shows_the_latest_step_of_that_example(client, logs):
    for example in ("0", "1"):
        described, values = _overview(client, run="model", example=example)
        assert described["step"] == MODEL_STEPS[-1]
        check_overview(described, values, logs, example, MODEL_STEPS[-1])


def test_overview_codes_form_says_what_the_float32_form_says(client, logs):
    for example in ("0", "1"):
        for step in MODEL_STEPS:
            params = {"run": "model", "example": example, "step": step}
            codes = _get(client, "overview", format="codes", **params)
            binary = _get(client, "overview", format="binary", **params)
            assert codes.status_code == binary.status_code == 200
            assert len(codes.get_data()) < len(binary.get_data())
            check_codes_overview(codes.get_data(), binary.get_data())
            # The default form is the float32 one (clients written before the codes form).
            assert _get(client, "overview", **params).get_data() == binary.get_data()


def test_overview_reports_bad_tags_without_hiding_the_good_ones(client):
    described, _ = _overview(client, run="model", example="0")
    errors = {e["tag"]: e["error"] for e in described["errors"]}
    assert set(errors) == MODEL_BAD_TAGS
    assert "version 99" in errors["newer/0"]
    assert "JSON" in errors["broken/0"]
    assert len(described["layers"]) == 2


def test_overview_of_other_runs_uses_the_same_tag_rule(client, logs):
    described, values = _overview(client, run="train", example="0", step=0)
    assert [e["tag"] for e in described["layers"]] == [
        "encoder/attn/0",
        "decoder/heads/0",
        "edges/0",
        "long/0",
    ]
    assert described["missing"] == []
    assert sorted(e["tag"] for e in described["errors"]) == sorted(HIDDEN_TAGS)
    long0 = described["layers"][-1]
    np.testing.assert_array_equal(
        values[long0["offset"] :], logs.written["train"]["long/0"][0].values32.reshape(-1)
    )


def test_overview_beyond_its_value_limit_is_refused_with_413(client, monkeypatch):
    monkeypatch.setattr(plugin, "MAX_OVERVIEW_VALUES", 20)
    response = _get(client, "overview", run="model", example="1", step=0)
    assert response.status_code == 413
    error = json.loads(response.get_data())["error"]
    assert "more than" in error and "20" in error and "'matrix'" in error


def test_entropy_is_each_layers_mean_entropy_series_ascending(client, logs):
    got = _json(client, "entropy", run="model")
    assert got == {
        layer: [[step, value] for step, value in series] for layer, series in logs.entropy.items()
    }
    assert _json(client, "entropy", run="train") == {}
    assert _json(client, "entropy", run="nope") == {}


def test_the_tab_is_active_for_attention_data_only(tmp_path):
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(tmp_path / "run"))
    with writer.as_default():
        tf.summary.scalar("layer/mean_entropy", 1.0, step=0)
    writer.close()
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path))
    client = _client(provider, str(tmp_path))
    listing = json.loads(client.get("/data/plugins_listing").get_data())
    assert listing["attention"]["enabled"] is False


# -- hostile data: a bad tag never hides the good ones ------------------------------------


def test_a_tag_of_unknown_version_is_refused_alike_by_every_route(client):
    assert "future/0" not in _json(client, "tags")["train"]
    for route, params in (
        ("steps", {}),
        ("matrix", {}),
        ("matrix", {"step": 0}),
        ("matrix", {"step": 0, "format": "binary"}),
    ):
        response = _get(client, route, run="train", tag="future/0", **params)
        assert response.status_code == 404, (route, params)
        assert "version 99 is newer" in json.loads(response.get_data())["error"]
    described, _ = _overview(client, run="train", example="0", step=0)
    assert {e["tag"]: e["error"] for e in described["errors"]}["future/0"].startswith(
        "format version 99 is newer"
    )


def test_stored_garbage_is_unreadable_data_not_a_failed_request(client):
    for tag, words in (
        ("surrogate/0", "not valid Unicode"),
        ("corrupt/0", "not UTF-8 JSON"),
        ("oneblob/0", "expected 2 blobs"),
    ):
        response = _get(client, "matrix", run="train", tag=tag)
        assert response.status_code == 404
        error = json.loads(response.get_data())["error"]
        assert error.startswith("no readable attention data for run 'train'"), error
        assert words in error


def test_a_deeply_nested_header_leaves_every_other_tag_listed(client):
    tags = _json(client, "tags")
    assert "broken/0" not in tags["model"]
    assert sorted(tags["model"]) == VISIBLE_TAGS["model"]


# -- static files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def static_client(provider, logs, tmp_path_factory):
    static = tmp_path_factory.mktemp("static")
    (static / "index.js").write_text("export function render() {}\n")
    (static / "style.css").write_text("body { margin: 0 }\n")
    (static / "notes.txt").write_text("not served")
    (static / "dir.js").mkdir()
    return _client(provider, logs.logdir, static_dir=str(static))


def test_static_files_are_served_by_name_with_their_mime_types(static_client):
    response = static_client.get(PREFIX + "index.js")
    assert response.status_code == 200
    assert response.mimetype == "application/javascript"
    assert response.get_data() == b"export function render() {}\n"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    response = static_client.get(PREFIX + "style.css")
    assert response.status_code == 200 and response.mimetype == "text/css"


def test_packaged_static_index_js_is_served_when_present(client):
    if not os.path.isfile(os.path.join(plugin.STATIC_DIR, "index.js")):
        pytest.skip("tb_plugin/static/index.js not written yet (frontend)")
    response = client.get(PREFIX + "index.js")
    assert response.status_code == 200
    assert response.mimetype == "application/javascript"
    assert b"render" in response.get_data()


# -- bad requests: always 4xx with a JSON message, never a 5xx ---------------------------

HUGE = "x" * 100_000
BAD_REQUESTS = [
    # (path and query, status)
    ("steps", 400),
    ("steps?run=train", 400),
    ("steps?tag=long/0", 400),
    ("steps?run=&tag=long/0", 400),
    ("steps?run=nope&tag=long/0", 404),
    ("steps?run=train&tag=nope", 404),
    ("steps?run=scalars_only&tag=loss", 404),
    ("steps?run=train&tag=loss", 404),
    (f"steps?run={HUGE}&tag={HUGE}", 404),
    ("steps?run=../../etc/passwd&tag=long/0", 404),
    ("steps?run=%ff%fe&tag=%00", 404),
    ("matrix", 400),
    ("matrix?run=train", 400),
    ("matrix?tag=long/0&step=1", 400),
    ("matrix?run=train&tag=long/0&step=abc", 400),
    ("matrix?run=train&tag=long/0&step=1.5", 400),
    ("matrix?run=train&tag=long/0&step=1e3", 400),
    ("matrix?run=train&tag=long/0&step=", 400),
    ("matrix?run=train&tag=long/0&step=%201", 400),
    ("matrix?run=train&tag=long/0&step=0x10", 400),
    ("matrix?run=train&tag=long/0&step=" + "9" * 40, 400),
    ("matrix?run=train&tag=long/0&step=99999999999999999999", 400),
    ("matrix?run=train&tag=long/0&step=" + "1" * 100_000, 400),
    ("matrix?run=train&tag=long/0&step=-1", 404),
    ("matrix?run=train&tag=long/0&step=9223372036854775807", 404),
    ("matrix?run=train&tag=long/0&step=12", 404),
    ("matrix?run=train&tag=long/0&format=xml", 400),
    ("matrix?run=train&tag=long/0&format=", 400),
    ("matrix?run=train&tag=long/0&format=JSON", 400),
    ("matrix?run=train&tag=long/0&format=" + HUGE, 400),
    ("matrix?run=nope&tag=long/0&step=0", 404),
    ("matrix?run=train&tag=future/0", 404),
    ("matrix?run=train&tag=corrupt/0", 404),
    ("matrix?run=train&tag=oneblob/0", 404),
    ("matrix?run=train&tag=corrupt/0&format=binary", 404),
    ("matrix?run=train&tag=surrogate/0", 404),
    ("matrix?run=train&tag=surrogate/0&format=csv", 404),
    ("steps?run=train&tag=future/0", 404),
    ("matrix?run=train&tag=future/0&step=0", 404),
    ("steps?run=model&tag=newer/0", 404),
    ("matrix?run=../../../../etc/passwd&tag=../tb_plugin/plugin.py", 404),
    ("../../etc/passwd", 404),
    ("%2e%2e/%2e%2e/%2e%2e/etc/passwd", 404),
    ("..%2f..%2fplugin.py", 404),
    ("..%5c..%5cplugin.py", 404),
    ("plugin.py", 404),
    ("__init__.py", 404),
    ("static/index.js", 404),
    ("/etc/passwd", 404),
    ("%2fetc%2fpasswd", 404),
    ("index.js%00.css", 404),
    ("notes.txt", 404),
    ("dir.js", 404),
    ("nope.js", 404),
    ("tags/extra", 404),
    ("overview", 400),
    ("overview?run=model", 400),
    ("overview?example=0", 400),
    ("overview?run=model&example=", 400),
    ("overview?run=model&example=a/0", 400),
    ("overview?run=model&example=0&step=abc", 400),
    ("overview?run=model&example=0&step=" + "9" * 40, 400),
    ("overview?run=model&example=0&step=5", 404),
    ("overview?run=model&example=0&format=json", 400),
    ("overview?run=model&example=0&format=", 400),
    ("overview?run=model&example=0&format=CODES", 400),
    ("matrix?run=train&tag=corrupt/0&format=codes", 404),
    ("matrix?run=train&tag=corrupt/0&format=stored", 404),
    ("overview?run=model&example=0&format=stored", 400),
    ("overview?run=model&example=7", 404),
    ("overview?run=nope&example=0", 404),
    ("overview?run=scalars_only&example=0", 404),
    (f"overview?run={HUGE}&example={HUGE}", 404),
    ("entropy", 400),
    ("entropy?run=", 400),
    (HUGE, 404),
]


@pytest.mark.parametrize("path,status", BAD_REQUESTS, ids=[p[:60] for p, _ in BAD_REQUESTS])
def test_bad_requests_get_a_json_4xx(static_client, path, status):
    response = static_client.get(PREFIX + path)
    assert response.status_code == status, response.get_data()[:300]
    assert response.mimetype == "application/json"
    error = json.loads(response.get_data())["error"]
    assert isinstance(error, str) and error
    assert "Traceback" not in error
    assert len(error) < 1000


def test_error_messages_name_the_parameter_and_what_came(client):
    body = json.loads(_get(client, "matrix", run="train", tag="long/0", step="abc").get_data())
    assert "'step'" in body["error"] and "integer" in body["error"] and "'abc'" in body["error"]
    body = json.loads(_get(client, "matrix", run="train", tag="long/0", step=99).get_data())
    assert "no step 99" in body["error"] and "from 0 to 11" in body["error"]
    body = json.loads(_get(client, "matrix", run="train", tag="long/0", format="xml").get_data())
    assert "'format'" in body["error"] and "json, binary, codes, stored, csv" in body["error"]
    body = json.loads(_get(client, "overview", run="model", example="0", format="csv").get_data())
    assert "'format'" in body["error"] and "binary, codes" in body["error"]
    assert "'csv'" in body["error"]
    body = json.loads(_get(client, "steps", run="train").get_data())
    assert "'tag'" in body["error"]


def test_an_unexpected_failure_in_the_data_provider_is_a_json_4xx(logs):
    class Broken:
        def list_blob_sequences(self, *args, **kwargs):
            raise RuntimeError("disk on fire")

        read_blob_sequences = list_scalars = read_scalars = list_blob_sequences

        def list_plugins(self, *args, **kwargs):
            return ["attention"]

    client = _client(Broken(), logs.logdir)
    routes = ("tags", "steps?run=a&tag=b", "matrix?run=a&tag=b", "overview?run=a&example=0")
    for route in (*routes, "entropy?run=a"):
        response = client.get(PREFIX + route)
        assert response.status_code == 400
        assert "disk on fire" in json.loads(response.get_data())["error"]


def test_json_and_csv_texts_match_json_dumps_for_every_stored_value():
    every = np.arange(1 << 16, dtype=np.uint16)
    every = every[np.isfinite(every.view("<f2"))].reshape(62, 1024)
    decimals = np.arange(10_001, dtype=np.uint16).reshape(73, 137)
    for kind, codes in (("float16", every), ("decimal4", decimals)):
        values = codec.Values(kind, codes)
        numbers = values.float64()
        assert responses.values_json(values) == json.dumps(numbers.tolist(), separators=(",", ":"))
        heads = codec.Values(kind, codes[:72].reshape(2, -1, codes.shape[-1]))
        assert json.loads(responses.values_json(heads)) == heads.float64().tolist()
        csv_texts = np.take(responses.value_texts(kind, "csv"), codes)
        assert csv_texts[3, 5] == format(float(numbers[3, 5]), ".6g")
    # A decimal weight prints as its 4 decimals: what the tooltip shows is what was written.
    assert responses.values_json(codec.Values("decimal4", np.array([[1235, 10000]]))) == (
        "[[0.1235,1.0]]"
    )


# -- remembered listings -----------------------------------------------------------------


class CountingProvider:
    """The real data provider, counting the listing calls that reach it."""

    def __init__(self, inner):
        self._inner = inner
        self.listings = 0

    def read_blob_sequences(self, *args, **kwargs):
        self.listings += 1
        return self._inner.read_blob_sequences(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_matrix_of_a_listed_step_needs_no_new_listing(provider, logs):
    counting = CountingProvider(provider)
    client = _client(counting, logs.logdir)
    steps = _json(client, "steps", run="train", tag="long/0")
    assert counting.listings == 1
    for s in steps:
        got = _json(client, "matrix", run="train", tag="long/0", step=s["step"])
        assert got["wall_time"] == s["wall_time"]
    assert counting.listings == 1
    _json(client, "matrix", run="train", tag="long/0")  # the latest: always a fresh look
    assert counting.listings == 2


def test_a_step_dropped_by_the_loader_after_listing_is_looked_up_again(tmp_path):
    import tensorflow as tf

    from tb_plugin.summary import attention

    logdir = str(tmp_path)
    writer = tf.summary.create_file_writer(logdir + "/run")

    def log(steps):
        with writer.as_default():
            for step in steps:
                attention("t", np.full((1, 2), step / 100), step=step)
        writer.flush()

    # The Python loader keeps at most 2 steps of a tag (a reservoir, always the latest).
    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={"attention": 2})
    multiplexer.AddRunsFromDirectory(logdir)
    log([0, 1])
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
    client = _client(provider, logdir)
    assert [s["step"] for s in _json(client, "steps", run="run", tag="t")] == [0, 1]
    log(range(2, 40))
    multiplexer.Reload()
    writer.close()
    # A second plugin instance, with no memory, says what the loader holds now.
    fresh = _client(provider, logdir)
    retained = {s["step"] for s in _json(fresh, "steps", run="run", tag="t")}
    assert len(retained) == 2 and 39 in retained  # so step 0 or 1 (or both) was dropped
    for step in (0, 1):
        response = _get(client, "matrix", run="run", tag="t", step=step)
        if step in retained:
            assert response.status_code == 200
        else:
            assert response.status_code == 404
            assert f"no step {step}" in json.loads(response.get_data())["error"]
    assert _json(client, "matrix", run="run", tag="t")["step"] == 39


def test_tags_and_overview_read_the_steps_again_only_when_a_tag_changed(tmp_path):
    import tensorflow as tf

    from tb_plugin.summary import attention

    logdir = str(tmp_path)
    writer = tf.summary.create_file_writer(logdir + "/run")

    def log(steps):
        with writer.as_default():
            for step in steps:
                for layer in ("a", "b"):
                    attention(f"{layer}/0", np.full((1, 2), 0.5), step=step)
        writer.flush()

    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={"attention": 0})
    multiplexer.AddRunsFromDirectory(logdir)
    log(range(3))
    multiplexer.Reload()
    counting = CountingProvider(data_provider.MultiplexerDataProvider(multiplexer, logdir))
    client = _client(counting, logdir)
    assert _json(client, "tags")["run"]["a/0"]["num_steps"] == 3
    assert counting.listings == 1
    for _ in range(2):
        assert _json(client, "tags")["run"]["b/0"]["max_step"] == 2
        described, _ = _overview(client, run="run", example="0")
        assert described["step"] == 2 and len(described["layers"]) == 2
    assert counting.listings == 1  # nothing changed: no step was read again
    log(range(3, 5))
    multiplexer.Reload()
    writer.close()
    tags = _json(client, "tags")["run"]
    assert counting.listings == 2
    assert (tags["a/0"]["num_steps"], tags["b/0"]["max_step"]) == (5, 4)
    described, _ = _overview(client, run="run", example="0")
    assert described["step"] == 4 and counting.listings == 2
    # The slider's `steps` reads one tag's steps; the overview after it reads none again.
    assert len(_json(client, "steps", run="run", tag="a/0")) == 5
    assert counting.listings == 3
    described, _ = _overview(client, run="run", example="0", step=3)
    assert described["step"] == 3 and counting.listings == 3


class CountingReads:
    """The real data provider, counting the blobs read, by key."""

    def __init__(self, inner):
        self._inner = inner
        self.reads: dict[str, int] = {}

    def read_blob(self, ctx, blob_key):
        self.reads[blob_key] = self.reads.get(blob_key, 0) + 1
        return self._inner.read_blob(ctx, blob_key=blob_key)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_overview_reads_each_blob_of_a_step_once_even_when_read_ahead(provider, logs):
    # The blobs a step had at the last listing are read while the listing is made again;
    # what the listing then names is served, each blob read once, the same as without.
    counting = CountingReads(provider)
    client = _client(counting, logs.logdir)
    _json(client, "tags")
    for step in MODEL_STEPS:
        before = dict(counting.reads)
        described, values = _overview(client, run="model", example="1", step=step)
        check_overview(described, values, logs, "1", step)
        new = {k: n - before.get(k, 0) for k, n in counting.reads.items() if n != before.get(k)}
        assert new and set(new.values()) == {1}
        again = dict(counting.reads)
        assert _overview(client, run="model", example="1", step=step)[0] == described
        assert counting.reads == again  # decoded and cached: nothing read twice


class RecordingListings:
    """The real data provider, recording the tags each blob listing asked for."""

    def __init__(self, inner):
        self._inner = inner
        self.asked: list = []

    def list_blob_sequences(self, ctx, *, experiment_id, plugin_name, run_tag_filter=None):
        tags = None if run_tag_filter is None else run_tag_filter.tags
        self.asked.append(None if tags is None else sorted(tags))
        return self._inner.list_blob_sequences(
            ctx,
            experiment_id=experiment_id,
            plugin_name=plugin_name,
            run_tag_filter=run_tag_filter,
        )

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_overview_lists_only_its_examples_tags_and_sees_new_ones_after_a_while(
    tmp_path, monkeypatch
):
    import tensorflow as tf

    from tb_plugin.summary import attention

    logdir = str(tmp_path)
    writer = tf.summary.create_file_writer(logdir + "/run")

    def log(layers, step):
        with writer.as_default():
            for layer in layers:
                for example in (0, 1):
                    attention(f"{layer}/{example}", np.full((1, 2), 0.5), step=step)
        writer.flush()

    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={"attention": 0})
    multiplexer.AddRunsFromDirectory(logdir)
    log(("a", "b"), 0)
    multiplexer.Reload()
    recording = RecordingListings(data_provider.MultiplexerDataProvider(multiplexer, logdir))
    client = _client(recording, logdir)
    assert sorted(_json(client, "tags")["run"]) == ["a/0", "a/1", "b/0", "b/1"]
    described, _ = _overview(client, run="run", example="1", step=0)
    assert [layer["tag"] for layer in described["layers"]] == ["a/1", "b/1"]
    # Only the example's tags were listed (a listing costs per tag), named by `tags`'s listing.
    assert recording.asked[-1] == ["a/1", "b/1"]
    # A layer that appears later: in the overview once the names are older than
    # TAG_NAMES_SECONDS (the whole run is listed again then), or after a `tags` listing.
    log(("c",), 0)
    multiplexer.Reload()
    monkeypatch.setattr(plugin, "TAG_NAMES_SECONDS", 0.0)
    described, _ = _overview(client, run="run", example="1", step=0)
    assert [layer["tag"] for layer in described["layers"]][-1] == "c/1"
    assert recording.asked[-1] is None
    monkeypatch.setattr(plugin, "TAG_NAMES_SECONDS", 3600.0)
    log(("d",), 0)
    multiplexer.Reload()
    writer.close()
    _json(client, "tags")
    described, _ = _overview(client, run="run", example="0", step=0)
    assert {layer["tag"] for layer in described["layers"]} == {"a/0", "b/0", "c/0", "d/0"}
    assert recording.asked[-1] == ["a/0", "b/0", "c/0", "d/0"]


def test_listing_a_tags_steps_reads_their_headers_ahead_so_a_step_move_reads_one_blob(
    provider, logs
):
    import time

    counting = CountingReads(provider)
    client = _client(counting, logs.logdir)
    steps = _json(client, "steps", run="train", tag="long/0")
    assert len(steps) == len(logs.written["train"]["long/0"]) > 2
    deadline = time.monotonic() + 30
    while len(counting.reads) < len(steps) and time.monotonic() < deadline:
        time.sleep(0.01)  # read in the background, on threads of their own
    assert len(counting.reads) == len(steps)  # one header per step, each read once
    assert set(counting.reads.values()) == {1}
    for s, w in zip(steps, logs.written["train"]["long/0"], strict=True):
        before = dict(counting.reads)
        response = _get(client, "matrix", run="train", tag="long/0", step=s["step"], format="codes")
        header, codes = parse_codes(response.get_data())
        assert header["query_labels"] == w.query_labels and header["step"] == w.step
        np.testing.assert_array_equal(
            widen_codes(codes, header["encoding"]).reshape(header["shape"]), w.values32
        )
        new = [k for k, n in counting.reads.items() if n != before.get(k)]
        assert len(new) == 1 and counting.reads[new[0]] == 1  # the values blob alone
