"""Takes the README's pictures of the Attention tab, from a real headless Chromium.

`make screenshots` runs this. It trains, from scratch and on this machine:

1. the date example (`examples/date_translation.py`, a GRU encoder-decoder with
   `SequenceAttention`, logged by `AttentionLogger`) for one short epoch;
2. a small transformer written here (3 self-attention layers of 4 heads, Keras's own
   `MultiHeadAttention`) on a toy task, reversing a sequence of digits, its attention of two
   probe sequences logged with `keras_seqattn.attention_summary` and each layer's mean
   entropy with `tf.summary.scalar`, as `AttentionLogger` names them;

then serves both with a real TensorBoard and photographs the tab: the overview of the
transformer (a thumbnail enlarged), the detail view of a date with a tooltip and a token
highlight, and a comparison of two training steps with their difference. The PNGs go to
docs/images/, reduced to a 256-colour palette to stay small. Runs in about two minutes on 2
cores; the pictures differ a little from run to run (training is not bit-for-bit repeatable).

Run: .venv/bin/python docs/screenshots.py [--out docs/images] [--keep-logdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, os.pardir)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "examples"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

DIGITS = 10
LENGTH = 10
LAYERS = 3
HEADS = 4
TRANSFORMER_RUN = "transformer"
DATE_RUN = "date_translation/attention"  # AttentionLogger writes the run "attention" below


def reversal_data(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.integers(0, DIGITS, size=(count, LENGTH))
    return x, x[:, ::-1].copy()


def train_transformer(logdir: str, steps: int = 600, log_every: int = 30) -> None:
    """A 3-layer, 4-head transformer encoder learning to reverse digits, with its attention
    of two probe sequences logged every `log_every` steps."""
    import keras
    import tensorflow as tf

    from keras_seqattn import attention_summary

    keras.utils.set_random_seed(0)
    tokens = keras.Input((LENGTH,), dtype="int32")
    positions = keras.ops.arange(LENGTH)
    x = keras.layers.Embedding(DIGITS, 64)(tokens) + keras.layers.Embedding(LENGTH, 64)(positions)
    scores = []
    for layer in range(LAYERS):
        attended, weights = keras.layers.MultiHeadAttention(
            HEADS, 16, name=f"self_attention_{layer}"
        )(x, x, return_attention_scores=True)
        x = keras.layers.LayerNormalization()(x + attended)
        x = keras.layers.LayerNormalization()(x + keras.layers.Dense(64, activation="relu")(x))
        scores.append(weights)
    logits = keras.layers.Dense(DIGITS)(x)
    model = keras.Model(tokens, logits)
    probe_model = keras.Model(tokens, scores)
    model.compile(
        keras.optimizers.Adam(2e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    rng = np.random.default_rng(0)
    x_train, y_train = reversal_data(rng, 64 * steps)
    probes = np.array([[3, 1, 4, 1, 5, 9, 2, 6, 5, 3], [2, 7, 1, 8, 2, 8, 1, 8, 2, 8]])
    labels = [[str(d) for d in probe] for probe in probes]
    writer = tf.summary.create_file_writer(os.path.join(logdir, TRANSFORMER_RUN))

    class LogAttention(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch % log_every:
                return
            weights = [np.asarray(w) for w in probe_model(probes, training=False)]
            with writer.as_default():
                for layer, w in enumerate(weights):
                    key = f"encoder/self_attention_{layer}"
                    for example, (probe_w, probe_labels) in enumerate(zip(w, labels, strict=True)):
                        attention_summary(
                            f"{key}/{example}",
                            probe_w,
                            step=batch,
                            input_labels=probe_labels,
                            query_labels=probe_labels,
                        )
                    entropy = -np.sum(w * np.log(np.maximum(w, 1e-12)), axis=-1).mean()
                    tf.summary.scalar(f"{key}/mean_entropy", float(entropy), step=batch)

    model.fit(x_train, y_train, batch_size=64, epochs=1, verbose=0, callbacks=[LogAttention()])
    writer.close()


def train_dates(logdir: str) -> None:
    import date_translation

    date_translation.train(
        epochs=1,
        samples=24_000,
        test_samples=200,
        log_dir=os.path.join(logdir, "date_translation"),
        log_every_steps=20,
        model_path=None,
        verbose=0,
    )


def shrink(path: str) -> None:
    """Re-saves a screenshot with a 256-colour palette (a third of the bytes, same look)."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def photograph(logdir: str, out: str) -> list[str]:
    from browser import launch_chromium
    from tb_server import TensorBoardServer

    os.makedirs(out, exist_ok=True)
    taken = []
    with TensorBoardServer(logdir, load_fast=True) as server:

        def loaded() -> bool:
            tags = server.get_json("data/plugin/attention/tags")
            return bool(tags.get(TRANSFORMER_RUN)) and bool(tags.get(DATE_RUN))

        server.wait_until(loaded, timeout=120)
        with launch_chromium() as browser:
            context = browser.new_context(viewport={"width": 1400, "height": 720})
            page = context.new_page()
            page.goto(server.url + "#attention")
            frame = page.frame_locator("iframe")
            frame.locator("#heatmap[data-painted]").wait_for(timeout=60_000)
            iframe = page.locator("iframe")

            def shot(name: str) -> None:
                path = os.path.join(out, name)
                page.wait_for_timeout(300)  # let the last frame settle
                iframe.screenshot(path=path)
                shrink(path)
                taken.append(path)

            # 1. The overview of the transformer, one thumbnail enlarged.
            frame.locator("#run-select").select_option(TRANSFORMER_RUN)
            frame.locator(f'#heatmap[data-run="{TRANSFORMER_RUN}"]').wait_for()
            frame.locator("#mode-overview").click()
            frame.locator("#overview[data-painted]").wait_for()
            thumb = frame.locator('#overview .thumb[data-layer="encoder/self_attention_2"]').nth(1)
            box = thumb.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            frame.locator("#overview-zoom").wait_for(state="visible")
            shot("overview.png")

            # 2. A date in the detail view: a tooltip, its row and column highlighted.
            page.mouse.move(1, 1)
            frame.locator("#mode-detail").click()
            frame.locator("#run-select").select_option(DATE_RUN)
            frame.locator(f'#heatmap[data-run="{DATE_RUN}"]').wait_for()
            canvas = frame.locator("#heatmap")
            box = canvas.bounding_box()
            rows, cols = (
                int(canvas.get_attribute("data-rows")),
                int(canvas.get_attribute("data-cols")),
            )
            values = frame.locator("#attention-root").evaluate(
                """async () => {
                    const app = await (await import('./index.js')).render();
                    return Array.from(app.panels.find(p => p.role === 'main').spec.values);
                }"""
            )
            # The strongest weight of the fourth ISO character (a year digit).
            row = min(3, rows - 1)
            col = int(np.argmax(np.reshape(values, (rows, cols))[row]))
            page.mouse.move(
                box["x"] + (col + 0.5) * box["width"] / cols,
                box["y"] + (row + 0.5) * box["height"] / rows,
            )
            frame.locator("#tooltip").wait_for(state="visible")
            shot("detail.png")

            # 3. The first logged step against the latest, and their difference.
            page.mouse.move(1, 1)
            frame.locator("#compare-toggle").check()
            frame.locator("#heatmap-diff[data-painted]").wait_for()
            shot("compare.png")
            context.close()
    return taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "images"))
    parser.add_argument(
        "--keep-logdir", help="write the logs here and keep them (default: a temporary folder)"
    )
    args = parser.parse_args()
    logdir = args.keep_logdir or tempfile.mkdtemp(prefix="attention-screenshots-")
    try:
        if not os.path.isdir(os.path.join(logdir, TRANSFORMER_RUN)):
            train_transformer(logdir)
        if not os.path.isdir(os.path.join(logdir, "date_translation")):
            train_dates(logdir)
        for path in photograph(logdir, args.out):
            print(f"{path}: {os.path.getsize(path) // 1024} kB")
    finally:
        if not args.keep_logdir:
            shutil.rmtree(logdir, ignore_errors=True)


if __name__ == "__main__":
    main()
