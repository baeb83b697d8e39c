"""The attention tab for transformers, in a real headless Chromium against a real TensorBoard.

Both loaders (`--load_fast=false` and `true`) serve one logdir written with
`keras_seqattn.attention_summary` and `tf.summary.scalar`, as the logger writes it: run "train"
holds two probe examples of a small encoder-decoder (self-attention layers of 2 and 3 heads, a
4-head cross-attention layer of another shape, a single-head decoder self-attention) at three
steps, with each layer's `mean_entropy` scalar; run "labels" holds tokens that try to lie
(direction overrides, spreadsheet formulas, a 1,000-character token); run "long" a 400-token
self-attention matrix whose labels are thinned.

Checked: the overview grid (one cell per layer and head, in the model's order), hover
enlargement, click-through to the detail view, the step slider and playback driving the grid,
the entropy lines and their step marks, token highlight in the detail and compare panels (also
with thinned labels), max of the heads and attention rollout against NumPy, SVG export, the
overview's PNG and SVG export, CSV escaping, and the bidi and long-label cases.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import urllib.parse
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from browser import chromium_path, launch_chromium
from PIL import Image
from tb_server import TensorBoardServer

pytestmark = [
    pytest.mark.browser,
    pytest.mark.server,
    pytest.mark.skipif(
        chromium_path() is None and not os.environ.get("CI"),
        reason="needs Chromium (apt-get install chromium; `make test`)",
    ),
]

TOKENS = [["the", "cat", "sat", "on", "mats"], ["a", "dog", "ran", "far", "away"]]
TARGETS = [["le", "chat", "assis", "."], ["un", "chien", "court", "!"]]
# (layer key, heads, self-attention?) in the model's order: not the tags' alphabetical order.
LAYERS = [
    ("encoder/self_attention", 2, "encoder"),
    ("encoder/block_2/self_attention", 3, "encoder"),
    ("decoder/cross_attention@2", 4, "cross"),
    ("decoder/self_attention", 1, "decoder"),
]
STEPS = (0, 5, 10)
CELLS = sum(heads for _, heads, _ in LAYERS)

RLO_LABEL = "\u202egnp.exe"
LONG_LABEL = "w" * 1000
FORMULAS = ["=SUM(A1:A9)", "+1", "-2", "@cmd", "\t=1+1", "\r-x"]
WEIRD_INPUTS = [RLO_LABEL, *FORMULAS, LONG_LABEL]
WEIRD_QUERIES = ["q\u202eabc", "plain"]
LONG_N = 400


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def layer_weights(step: int, example: int, k: int) -> tuple[np.ndarray, list[str], list[str]]:
    """The weights and (input, query) tokens of layer k for one step and example."""
    _, heads, kind = LAYERS[k]
    rng = np.random.default_rng(1000 * step + 100 * example + k)
    tokens, targets = TOKENS[example], TARGETS[example]
    inputs, queries = {
        "encoder": (tokens, tokens),
        "cross": (tokens, targets),
        "decoder": (targets, targets),
    }[kind]
    # Sharper with training, so that the entropy lines fall.
    weights = softmax((1 + step / 2) * rng.normal(size=(heads, len(queries), len(inputs))))
    return (weights if heads > 1 else weights[0]), inputs, queries


def mean_entropy(weights: np.ndarray) -> float:
    w = np.asarray(weights, dtype=np.float64)
    return float(np.mean(-np.sum(w * np.log(np.maximum(w, 1e-12)), axis=-1)))


def stored(weights: np.ndarray) -> np.ndarray:
    """Weights as the tab reads them back: through the plugin's own codec (format version 2
    keeps softmax weights to 4 decimals), as the float32 the routes serve, widened."""
    from tb_plugin import codec

    _, values = codec.decode(*codec.encode(np.asarray(weights)))
    return values.float32().astype(np.float64)


def numpy_rollout(matrices: list[np.ndarray]) -> np.ndarray:
    """Abnar & Zuidema (2020): A = 0.5 mean_heads(W) + 0.5 I, rows renormalised, A_L...A_1."""
    result = None
    for w in matrices:
        mean = w.mean(axis=0) if w.ndim == 3 else w
        a = 0.5 * mean + 0.5 * np.eye(mean.shape[0])
        a = a / a.sum(axis=-1, keepdims=True)
        result = a if result is None else a @ result
    return result


def write_logdir(logdir: str) -> None:
    import tensorflow as tf

    from keras_seqattn import attention_summary

    writer = tf.summary.create_file_writer(os.path.join(logdir, "train"))
    with writer.as_default():
        for step in STEPS:
            # As the logger does: every layer of every example, in the model's order, then
            # each layer's mean entropy over the examples.
            entropies = {key: [] for key, _, _ in LAYERS}
            for example in range(2):
                for k, (key, _, _) in enumerate(LAYERS):
                    weights, inputs, queries = layer_weights(step, example, k)
                    attention_summary(
                        f"{key}/{example}",
                        weights,
                        step=step,
                        input_labels=inputs,
                        query_labels=queries,
                    )
                    entropies[key].append(mean_entropy(weights))
            for key, values in entropies.items():
                tf.summary.scalar(f"{key}/mean_entropy", float(np.mean(values)), step=step)
    writer.close()
    writer = tf.summary.create_file_writer(os.path.join(logdir, "labels"))
    with writer.as_default():
        rng = np.random.default_rng(7)
        attention_summary(
            "weird/0",
            softmax(rng.normal(size=(2, len(WEIRD_INPUTS)))),
            step=0,
            input_labels=WEIRD_INPUTS,
            query_labels=WEIRD_QUERIES,
        )
    writer.close()
    writer = tf.summary.create_file_writer(os.path.join(logdir, "long"))
    with writer.as_default():
        rng = np.random.default_rng(8)
        labels = [f"t{i}" for i in range(LONG_N)]
        attention_summary(
            "self/0",
            softmax(rng.normal(size=(LONG_N, LONG_N))),
            step=0,
            input_labels=labels,
            query_labels=labels,
        )
    writer.close()


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("transformer_logs"))
    write_logdir(path)
    return path


@pytest.fixture(scope="module", params=[False, True], ids=["python-loader", "rust-loader"])
def server(request, logdir):
    with TensorBoardServer(logdir, load_fast=request.param, without=("tensorflow",)) as tb:

        def loaded() -> bool:
            tags = tb.get_json("data/plugin/attention/tags")
            entropy = tb.get_json("data/plugin/attention/entropy?run=train")
            return (
                len(tags.get("train", {})) == 2 * len(LAYERS)
                and all(t["num_steps"] == len(STEPS) for t in tags["train"].values())
                and "self/0" in tags.get("long", {})
                and "weird/0" in tags.get("labels", {})
                and all(len(entropy.get(key, [])) == len(STEPS) for key, _, _ in LAYERS)
            )

        tb.wait_until(loaded, timeout=120)
        yield tb


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    context.close()
    assert page.errors == [], page.errors


def open_tab(page, server, run: str = "train", tag: str | None = None):
    """The plugin's iframe, once the detail view has painted run's first (or the given) tag."""
    page.goto(server.url + "#attention")
    frame = page.frame_locator("iframe")
    frame.locator("#heatmap[data-painted]").wait_for(timeout=30_000)
    if frame.locator("#run-select").input_value() != run:
        frame.locator("#run-select").select_option(run)
    if tag is not None and frame.locator("#tag-select").input_value() != tag:
        frame.locator("#tag-select").select_option(tag)
    frame.locator(f'#heatmap[data-run="{run}"]' + (f'[data-tag="{tag}"]' if tag else "")).wait_for()
    return frame


def open_overview(page, server, example: str = "0"):
    frame = open_tab(page, server)
    frame.locator("#mode-overview").click()
    if frame.locator("#example-select").input_value() != example:
        frame.locator("#example-select").select_option(example)
    frame.locator(f'#overview[data-example="{example}"][data-painted="{STEPS[-1]}"]').wait_for()
    return frame


def app_values(frame, role: str = "main") -> np.ndarray:
    """The values the panel of role shows, from the tab's own state, as rows x cols."""
    rows, cols, values = frame.locator("#attention-root").evaluate(
        """async (_, role) => {
            const app = await (await import('./index.js')).render();
            const spec = app.panels.find(p => p.role === role).spec;
            return [spec.rows, spec.cols, Array.from(spec.values)];
        }""",
        role,
    )
    return np.reshape(values, (rows, cols))


def select_step(frame, key: str) -> None:
    slider = frame.locator("#step-slider")
    slider.focus()
    slider.press(key)


def hover(page, locator) -> None:
    box = locator.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def hover_cell(page, frame, row: int, col: int, canvas: str = "heatmap") -> None:
    node = frame.locator(f"#{canvas}")
    box = node.bounding_box()
    rows, cols = int(node.get_attribute("data-rows")), int(node.get_attribute("data-cols"))
    page.mouse.move(
        box["x"] + (col + 0.5) * box["width"] / cols, box["y"] + (row + 0.5) * box["height"] / rows
    )


def overlay_alpha(frame, canvas: str, row: int, col: int) -> int:
    """The highlight overlay's alpha at the centre of cell (row, col)."""
    return frame.locator(f"#{canvas}").evaluate(
        """(c, [i, j]) => {
            const x = Math.floor((j + 0.5) * c.width / Number(c.dataset.cols));
            const y = Math.floor((i + 0.5) * c.height / Number(c.dataset.rows));
            return c.getContext('2d').getImageData(x, y, 1, 1).data[3];
        }""",
        [row, col],
    )


# ---- the overview -------------------------------------------------------------------------


def test_overview_has_one_cell_per_layer_and_head_in_model_order(page, server):
    frame = open_overview(page, server)
    thumbs = frame.locator("#overview .thumb")
    assert thumbs.count() == CELLS
    cells = [
        (t.get_attribute("data-layer"), int(t.get_attribute("data-head"))) for t in thumbs.all()
    ]
    assert cells == [(key, h) for key, heads, _ in LAYERS for h in range(heads)]
    names = frame.locator("#overview .overview-layer .layer-name").all_text_contents()
    assert names == [key for key, _, _ in LAYERS]
    # Each cell is labelled with its layer and head.
    assert thumbs.nth(1).get_attribute("title") == "encoder/self_attention · head 1"
    # Self- and cross-attention of different shapes in one grid: the cross layer is 4 x 5,
    # its thumbnails wider than tall.
    cross = frame.locator('#overview .thumb[data-layer="decoder/cross_attention@2"]').first
    box = cross.bounding_box()
    assert box["width"] / box["height"] == pytest.approx(5 / 4, rel=0.05)
    # A thumbnail shows its head on its own min-max scale: its largest weight is the top of
    # viridis (the most green), its smallest the bottom. Read back from the layer's canvas
    # under the thumbnail, at each cell's centre.
    weights = stored(layer_weights(STEPS[-1], 0, 2)[0][1])
    green = (
        frame.locator('#overview .thumb[data-layer="decoder/cross_attention@2"]')
        .nth(1)
        .evaluate(
            """t => {
            const c = t.parentElement.querySelector('canvas');
            const dpr = c.width / c.clientWidth;
            const ctx = c.getContext('2d');
            const out = [];
            for (let i = 0; i < 4; i++) for (let j = 0; j < 5; j++) {
                const x = Math.floor((t.offsetLeft + (j + 0.5) * t.offsetWidth / 5) * dpr);
                const y = Math.floor((i + 0.5) * t.offsetHeight / 4 * dpr);
                out.push(ctx.getImageData(x, y, 1, 1).data[1]);
            }
            return out;
        }"""
        )
    )
    green = np.reshape(green, (4, 5))
    assert green.flat[np.argmax(weights)] == green.max() > green.min() + 150
    assert green.flat[np.argmin(weights)] == green.min()


def test_overview_hover_enlarges_and_click_opens_the_detail_view(page, server):
    frame = open_overview(page, server)
    select_step(frame, "Home")
    frame.locator(f'#overview[data-painted="{STEPS[0]}"]').wait_for()
    thumb = frame.locator('#overview .thumb[data-layer="decoder/cross_attention@2"][data-head="2"]')
    hover(page, thumb)
    zoom = frame.locator("#overview-zoom")
    zoom.wait_for(state="visible")
    assert zoom.get_attribute("data-tag") == "decoder/cross_attention@2/0"
    assert zoom.get_attribute("data-head") == "2"
    small = thumb.bounding_box()
    large = frame.locator("#overview-zoom-canvas").bounding_box()
    assert large["width"] > 3 * small["width"]
    thumb.click()
    frame.locator(
        f'#heatmap[data-tag="decoder/cross_attention@2/0"][data-head="2"][data-painted="{STEPS[0]}"]'
    ).wait_for()
    assert frame.locator("#overview").is_hidden()
    assert frame.locator("#head-select").input_value() == "2"
    assert frame.locator("#step-label").text_content() == f"step {STEPS[0]}"
    weights, _, _ = layer_weights(STEPS[0], 0, 2)
    np.testing.assert_allclose(app_values(frame), stored(weights[2]), atol=1e-6)


def test_step_slider_and_playback_drive_the_overview(page, server):
    frame = open_overview(page, server, example="1")
    overview = frame.locator("#overview")
    before = frame.locator("#overview .overview-row").first.evaluate("c => c.toDataURL()")
    select_step(frame, "Home")
    frame.locator(f'#overview[data-painted="{STEPS[0]}"]').wait_for()
    assert frame.locator("#overview .overview-row").first.evaluate("c => c.toDataURL()") != before
    # Every step the grid paints during playback, recorded in the page as it happens.
    overview.evaluate(
        """o => {
            window.__painted = [];
            new MutationObserver(() => window.__painted.push(o.dataset.painted))
                .observe(o, {attributes: true, attributeFilter: ['data-painted']});
        }"""
    )
    frame.locator("#play-button").click()
    frame.locator("#play-button.playing").wait_for()
    frame.locator("#play-button:not(.playing)").wait_for()
    painted = overview.evaluate("() => window.__painted")
    assert [int(s) for s in dict.fromkeys(painted)] == list(STEPS)
    assert overview.get_attribute("data-example") == "1"


def test_entropy_lines_sit_beside_each_layer_and_mark_the_step(page, server):
    frame = open_overview(page, server)
    sparks = frame.locator("#overview .overview-spark svg")
    assert sparks.count() == len(LAYERS)
    for k, (key, _, _) in enumerate(LAYERS):
        spark = sparks.nth(k)
        assert spark.locator("xpath=..").get_attribute("data-layer") == key
        assert spark.get_attribute("data-points") == str(len(STEPS))
        assert spark.get_attribute("data-marked-step") == str(STEPS[-1])
        expected = np.mean(
            [mean_entropy(layer_weights(STEPS[-1], example, k)[0]) for example in range(2)]
        )
        assert float(spark.get_attribute("data-marked-value")) == pytest.approx(expected, 1e-5)
        assert spark.locator("polyline").count() == 1
    select_step(frame, "ArrowLeft")
    frame.locator(f'#overview[data-painted="{STEPS[1]}"]').wait_for()
    assert sparks.first.get_attribute("data-marked-step") == str(STEPS[1])


# ---- token highlight ----------------------------------------------------------------------


def test_hovering_tokens_highlights_rows_and_columns_in_every_panel(page, server):
    frame = open_tab(page, server, tag="decoder/cross_attention@2/0")
    frame.locator("#compare-toggle").check()
    frame.locator("#heatmap-diff[data-painted]").wait_for()
    # A query (row) label: its row stays clear, the rest is veiled, in all three panels.
    hover(page, frame.locator('#query-labels .label[data-index="2"]'))
    frame.locator('#highlight[data-row="2"][data-col=""]').wait_for()
    for overlay in ("highlight", "highlight-reference", "highlight-diff"):
        assert frame.locator(f"#{overlay}").get_attribute("data-row") == "2"
        assert overlay_alpha(frame, overlay, 2, 0) == 0
        assert overlay_alpha(frame, overlay, 1, 0) > 100
    assert "highlighted" in frame.locator('#query-labels .label[data-index="2"]').get_attribute(
        "class"
    )
    tooltip = frame.locator("#tooltip")
    assert TARGETS[0][2] in tooltip.text_content() and "(#2)" in tooltip.text_content()
    # An input (column) label.
    hover(page, frame.locator('#input-labels-reference .label[data-index="3"]'))
    frame.locator('#highlight[data-col="3"][data-row=""]').wait_for()
    assert overlay_alpha(frame, "highlight-diff", 0, 3) == 0
    assert overlay_alpha(frame, "highlight-diff", 0, 2) > 100
    # A cell: both of its tokens.
    hover_cell(page, frame, 1, 4)
    frame.locator('#highlight[data-row="1"][data-col="4"]').wait_for()
    assert overlay_alpha(frame, "highlight", 1, 0) == 0
    assert overlay_alpha(frame, "highlight", 3, 4) == 0
    assert overlay_alpha(frame, "highlight", 0, 0) > 100
    page.mouse.move(1, 1)
    frame.locator('#highlight[data-row=""][data-col=""]').wait_for()
    assert overlay_alpha(frame, "highlight", 0, 0) == 0


def test_highlight_names_the_exact_token_where_labels_are_thinned(page, server):
    frame = open_tab(page, server, run="long", tag="self/0")
    shown = frame.locator("#query-labels .label")
    assert 10 < shown.count() < LONG_N
    label = shown.nth(5)
    index = int(label.get_attribute("data-index"))
    assert index > 5  # thinned: the sixth label shown is not the sixth token
    hover(page, label)
    frame.locator(f'#highlight[data-row="{index}"]').wait_for()
    tooltip = frame.locator("#tooltip")
    assert f"t{index}" in tooltip.text_content() and f"(#{index})" in tooltip.text_content()
    # A cell between shown labels: the tooltip and the highlight name the same exact row.
    hover_cell(page, frame, index + 1, 17)
    tooltip.wait_for(state="visible")
    row = tooltip.get_attribute("data-row")
    assert frame.locator("#highlight").get_attribute("data-row") == row
    assert f"t{row}" in tooltip.text_content()


# ---- aggregations -------------------------------------------------------------------------


def test_max_of_heads_and_attention_rollout_match_numpy(page, server):
    frame = open_tab(page, server, tag="encoder/block_2/self_attention/0")
    head = frame.locator("#head-select")
    options = head.locator("option").all_inner_texts()
    assert options == ["0", "1", "2", "mean of heads", "max of heads", "attention rollout"]
    step = STEPS[-1]
    head.select_option("max")
    frame.locator('#heatmap[data-head="max"]').wait_for()
    block2, _, _ = layer_weights(step, 0, 1)
    np.testing.assert_allclose(app_values(frame), stored(block2).max(axis=0), atol=1e-6)
    assert "largest weight" in frame.locator("#head-help").text_content()
    head.select_option("rollout")
    frame.locator('#heatmap[data-head="rollout"]').wait_for()
    first, _, _ = layer_weights(step, 0, 0)
    expected = numpy_rollout([stored(first), stored(block2)])
    np.testing.assert_allclose(app_values(frame), expected, atol=1e-5)
    assert "Abnar" in frame.locator("#head-help").text_content()
    assert "rollout from encoder/self_attention" in frame.locator("#status").text_content()
    # At an earlier step (the slider) and compared with it, rollout of that step's layers.
    frame.locator("#compare-toggle").check()
    frame.locator("#heatmap-reference[data-painted]").wait_for()
    first0, _, _ = layer_weights(STEPS[0], 0, 0)
    block0, _, _ = layer_weights(STEPS[0], 0, 1)
    np.testing.assert_allclose(
        app_values(frame, "reference"), numpy_rollout([stored(first0), stored(block0)]), atol=1e-5
    )
    # Offered only where defined: not for the cross-attention layer (queries are not inputs),
    # and the single-head decoder layer's rollout is its own (its neighbour is cross-attention).
    frame.locator("#compare-toggle").uncheck()
    frame.locator("#tag-select").select_option("decoder/cross_attention@2/0")
    frame.locator('#heatmap[data-tag="decoder/cross_attention@2/0"]').wait_for()
    assert "attention rollout" not in head.locator("option").all_inner_texts()
    assert head.input_value() == "0"
    frame.locator("#tag-select").select_option("decoder/self_attention/0")
    frame.locator('#heatmap[data-tag="decoder/self_attention/0"]').wait_for()
    assert head.locator("option").all_inner_texts() == ["the head", "attention rollout"]
    head.select_option("rollout")
    frame.locator('#heatmap[data-tag="decoder/self_attention/0"][data-head="rollout"]').wait_for()
    own, _, _ = layer_weights(step, 0, 3)
    np.testing.assert_allclose(app_values(frame), numpy_rollout([stored(own)]), atol=1e-5)


# ---- export -------------------------------------------------------------------------------


def test_svg_export_has_vector_cells_text_tokens_and_a_colour_bar(page, server):
    frame = open_tab(page, server, tag="decoder/cross_attention@2/0")
    frame.locator("#compare-toggle").check()
    frame.locator("#heatmap-diff[data-painted]").wait_for()
    with page.expect_download() as download_info:
        frame.locator("#export-svg").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".svg")
    with open(download.path(), encoding="utf-8") as f:
        root = ET.fromstring(f.read())
    ns = {"svg": "http://www.w3.org/2000/svg"}
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    panels = root.findall("svg:g[@data-role]", ns)
    assert [p.get("data-role") for p in panels] == ["reference", "main", "diff"]
    for panel in panels:
        cells = panel.findall(".//svg:g[@data-role='cells']/svg:rect", ns)
        # One rect per run of equally coloured cells in a row: at least a row's worth each.
        assert 4 <= len(cells) <= 4 * 5
        assert sum(float(r.get("width")) for r in cells) == 4 * 5
        assert panel.find(".//svg:rect[@data-role='colorbar']", ns) is not None
        inputs = [t.text for t in panel.findall(".//svg:text[@class='input-label']", ns)]
        queries = [t.text for t in panel.findall(".//svg:text[@class='query-label']", ns)]
        assert inputs == TOKENS[0] and queries == TARGETS[0]
        assert len(panel.findall(".//svg:text[@class='tick']", ns)) >= 2
    assert root.find("svg:g/svg:g/svg:defs/svg:linearGradient", ns) is not None


def test_overview_exports_the_grid_as_png_and_svg_but_not_csv(page, server):
    frame = open_overview(page, server)
    assert frame.locator("#export-png").is_visible()
    assert frame.locator("#export-svg").is_visible()
    assert frame.locator("#export-csv").is_hidden()  # a grid of heads is not one table
    with page.expect_download() as download_info:
        frame.locator("#export-svg").click()
    download = download_info.value
    assert download.suggested_filename == f"attention_overview_train_example0_step{STEPS[-1]}.svg"
    with open(download.path(), encoding="utf-8") as f:
        root = ET.fromstring(f.read())
    ns = {"svg": "http://www.w3.org/2000/svg"}
    href = "{http://www.w3.org/1999/xlink}href"
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    title = root.find("svg:title", ns).text
    assert "train" in title and f"step {STEPS[-1]}" in title
    layers = root.findall("svg:g[@data-role='layer']", ns)
    assert [g.find("svg:text[@class='layer-name']", ns).text for g in layers] == [
        key for key, _, _ in LAYERS
    ]
    # One embedded PNG per cell, each at its thumbnail's drawn size.
    images = root.findall(".//svg:image", ns)
    assert len(images) == CELLS
    assert all(image.get(href).startswith("data:image/png;base64,") for image in images)
    for g, (_, heads, _) in zip(layers, LAYERS, strict=True):
        assert [int(i.get("data-head")) for i in g.findall("svg:image", ns)] == list(range(heads))
    thumbs = frame.locator("#overview .thumb")
    for image, thumb in zip(images, thumbs.all(), strict=True):
        box = thumb.bounding_box()
        assert float(image.get("width")) == pytest.approx(box["width"], abs=0.5)
        assert float(image.get("height")) == pytest.approx(box["height"], abs=0.5)
    heads = [t.text for t in root.findall("svg:text[@class='head-label']", ns)]
    assert heads == [f"head {h}" for h in range(max(h for _, h, _ in LAYERS))]
    # The cross layer's head 1: its PNG's greenest pixel is at the largest weight (own scale).
    cross = layers[2].findall("svg:image", ns)[1].get(href)
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(cross.split(",", 1)[1]))))
    green = pixels[:, :, 1]
    weights = stored(layer_weights(STEPS[-1], 0, 2)[0][1])
    rows, cols = green.shape
    centres = green[(np.arange(4) * 2 + 1) * rows // 8][:, (np.arange(5) * 2 + 1) * cols // 10]
    assert centres.flat[np.argmax(weights)] == centres.max() > centres.min() + 150
    assert centres.flat[np.argmin(weights)] == centres.min()

    with page.expect_download() as download_info:
        frame.locator("#export-png").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".png")
    picture = Image.open(download.path())
    picture.load()
    # At 2x: wide enough for every head's column, tall enough for every layer's row, plus
    # room for the labels (not a page's worth).
    width, height = picture.size
    boxes = [thumb.bounding_box() for thumb in thumbs.all()]
    cells_width = max(b["x"] + b["width"] for b in boxes) - min(b["x"] for b in boxes)
    first = [boxes[sum(h for _, h, _ in LAYERS[:k])] for k in range(len(LAYERS))]
    rows_height = sum(b["height"] for b in first)
    assert 2 * cells_width < width < 2 * (cells_width + 400)
    assert 2 * rows_height < height < 2 * (rows_height + 400)


def test_csv_export_makes_formula_tokens_safe(page, server):
    frame = open_tab(page, server, run="labels", tag="weird/0")
    with page.expect_download() as download_info:
        frame.locator("#export-csv").click()
    with open(download_info.value.path(), encoding="utf-8", newline="") as f:
        rows = list(csv.reader(io.StringIO(f.read(), newline="")))
    header = rows[0]
    assert header[0] == "query"
    assert header[2 : 2 + len(FORMULAS)] == ["'" + text for text in FORMULAS]
    assert header[1] == RLO_LABEL and header[-1] == LONG_LABEL  # harmless text stays as it is
    assert [row[0] for row in rows[1:]] == WEIRD_QUERIES
    # Numbers stay numbers (a negative weight would keep its "-").
    assert all(0 <= float(v) <= 1 for row in rows[1:] for v in row[1:])
    # The matrix route still gives the raw tokens.
    query = urllib.parse.urlencode({"run": "labels", "tag": "weird/0"})
    body = server.get_json(f"data/plugin/attention/matrix?{query}")
    assert body["input_labels"] == WEIRD_INPUTS


# ---- labels that cannot lie ---------------------------------------------------------------


def test_direction_overrides_are_shown_and_isolated(page, server):
    frame = open_tab(page, server, run="labels", tag="weird/0")
    label = frame.locator('#input-labels .label[data-index="0"]')
    assert label.text_content() == "⟦RLO⟧gnp.exe"
    assert label.evaluate("e => getComputedStyle(e).unicodeBidi") == "isolate"
    query = frame.locator('#query-labels .label[data-index="0"]')
    assert query.text_content() == "q⟦RLO⟧abc"
    tooltip = frame.locator('#tooltip[data-row="0"][data-col="0"]')
    # Both boxes read at once in the page, hovering again if a repaint (the tag poll) hid
    # the tooltip in between, as in the 1000-character token's test below.
    measure = """e => {
        if (e.hidden) return null;
        const x = (name) => e.querySelector(name).getBoundingClientRect().left;
        return [x(".token"), x(".position")];
    }"""
    for _ in range(5):
        hover_cell(page, frame, 0, 0)
        tooltip.wait_for(state="visible")
        seen = tooltip.evaluate(measure)
        if seen is not None:
            break
    assert seen is not None, "a repaint hid the tooltip at each of 5 hovers"
    token = tooltip.locator(".token").first
    position = tooltip.locator(".position").first
    assert token.evaluate("e => getComputedStyle(e).unicodeBidi") == "isolate"
    assert "⟦RLO⟧" in token.text_content()
    # The position stays where it belongs, after the token: nothing reordered it.
    token_x, position_x = seen
    assert position_x > token_x
    assert position.text_content() == "(#0)"


def test_tooltip_of_a_1000_character_token_stays_in_the_window(browser, server):
    context = browser.new_context(viewport={"width": 640, "height": 420})
    try:
        page = context.new_page()
        frame = open_tab(page, server, run="labels", tag="weird/0")
        col = len(WEIRD_INPUTS) - 1
        # The tooltip's box and the window's size, read at once in the page (in its
        # coordinates): a repaint (the tab re-reads its tags every 5 s) hides the tooltip,
        # and between two separate reads it may have. Then the cell is hovered again.
        measure = """e => {
            if (e.hidden) return null;
            const r = e.getBoundingClientRect();
            return [r.left, r.top, r.right, r.bottom, innerWidth, innerHeight];
        }"""
        for row in (0, 1):
            for _ in range(5):
                frame.locator("#heatmap").scroll_into_view_if_needed()
                hover_cell(page, frame, row, col)
                tooltip = frame.locator(f'#tooltip[data-row="{row}"][data-col="{col}"]')
                tooltip.wait_for(state="visible")
                seen = tooltip.evaluate(measure)
                if seen is not None:
                    break
            left, top, right, bottom, width, height = seen
            assert left >= 0 and top >= 0
            assert right <= width + 0.5 and bottom <= height + 0.5
        # The label's own hover text names it whole, as text.
        last = frame.locator(f'#input-labels .label[data-index="{col}"]')
        assert last.get_attribute("title") == LONG_LABEL
    finally:
        context.close()
