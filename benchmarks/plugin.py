"""Benchmark: the attention plugin against the stock Images plugin, on the same matrices.

What the stock tools offer for attention weights is an image summary: a colour-mapped
picture of the matrix (`tf.summary.image` of a viridis uint8 RGB image, what the Images
tab would show). For the same softmax matrices, 128 x 128 and 1024 x 1024, this measures:

1. bytes on disk per matrix: our attention summary (float16 + zlib, with labels) vs the
   image summary (8-bit PNG), each the growth of an event file over an empty one;
2. latency of the backend, through TensorBoard's own WSGI app (Python loader,
   `werkzeug.test.Client`, browser-like `Accept-Encoding: gzip`): our `matrix` route as
   JSON and as binary, vs what the Images tab requests to show one image (its `images`
   listing of the tag, then `individualImage`). Ours and the peer alternate, repeated;
   medians and the ratio of medians are printed;
3. if benchmarks/plugin_browser.py is present (the frontend's part), its `main(logdir)`
   with the same logdir: run "bench" holds tags "attention/<n>" and "image/<n>" for each
   size, written at steps 0..STEPS-1 from the same matrices.

Run: .venv/bin/python benchmarks/plugin.py [--repeats 30] [--keep DIR] [--no-browser]
Performance is measured here and never asserted in a test; the exit status is 0.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import inspect
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir))
sys.path.insert(0, HERE)

import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorboard.backend import application  # noqa: E402
from tensorboard.backend.event_processing import (  # noqa: E402
    data_provider,
    plugin_event_multiplexer,
)
from tensorboard.plugins import base_plugin  # noqa: E402
from tensorboard.plugins.image import images_plugin  # noqa: E402
from werkzeug import test as werkzeug_test  # noqa: E402

from tb_plugin.plugin import AttentionPlugin  # noqa: E402
from tb_plugin.summary import attention  # noqa: E402

SIZES = (128, 1024)
STEPS = 3
RUN = "bench"
BROWSER_HEADERS = {"Accept-Encoding": "gzip, deflate"}


def softmax_matrix(n: int, seed: int) -> np.ndarray:
    """A peaked attention matrix: softmax over rows of scaled Gaussian scores."""
    scores = 3.0 * np.random.default_rng(seed).normal(size=(n, n))
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def viridis_rgb(weights: np.ndarray) -> np.ndarray:
    """The matrix as the uint8 RGB picture a user would log for the Images tab."""
    scaled = (weights - weights.min()) / max(float(np.ptp(weights)), 1e-12)
    return (matplotlib.colormaps["viridis"](scaled)[..., :3] * 255).astype(np.uint8)


def tokens(n: int, prefix: str) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def log_attention(n: int, weights: np.ndarray, step: int) -> None:
    attention(f"attention/{n}", weights, step=step,
              input_labels=tokens(n, "in"), query_labels=tokens(n, "out"))


def log_image(n: int, weights: np.ndarray, step: int) -> None:
    tf.summary.image(f"image/{n}", viridis_rgb(weights)[None], step=step)


def _logdir_bytes(logdir: str) -> int:
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(logdir, "*")))


def bytes_per_summary(root: str, write) -> int:
    """How many bytes one summary adds to an event file."""
    sizes = []
    for _name, body in (("empty", lambda: None), ("full", write)):
        logdir = tempfile.mkdtemp(dir=root)
        writer = tf.summary.create_file_writer(logdir)
        with writer.as_default():
            body()
        writer.close()
        sizes.append(_logdir_bytes(logdir))
    return sizes[1] - sizes[0]


def write_logdir(logdir: str) -> None:
    writer = tf.summary.create_file_writer(os.path.join(logdir, RUN))
    with writer.as_default():
        for n in SIZES:
            for step in range(STEPS):
                weights = softmax_matrix(n, seed=1000 * n + step)
                log_attention(n, weights, step)
                log_image(n, weights, step)
    writer.close()


def wsgi_client(logdir: str) -> werkzeug_test.Client:
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={"attention": 0, "images": 0}
    )
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
    context = base_plugin.TBContext(
        logdir=logdir, data_provider=provider,
        # The Images plugin reads `images=0` as "no images", so give it a count.
        sampling_hints={"attention": 0, "images": 1000},
    )
    plugins = [AttentionPlugin(context), images_plugin.ImagesPlugin(context)]
    return werkzeug_test.Client(application.TensorBoardWSGI(plugins, data_provider=provider))


def _get(client: werkzeug_test.Client, url: str) -> tuple[bytes, int]:
    """The body (gunzipped, as a browser would) and the bytes on the wire."""
    response = client.get(url, headers=BROWSER_HEADERS)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} -> {response.status_code}: {response.get_data()[:200]}")
    wire = response.get_data()
    if response.headers.get("Content-Encoding") == "gzip":
        return gzip.decompress(wire), len(wire)
    return wire, len(wire)


def ours(client, n: int, fmt: str, step: int) -> int:
    query = urllib.parse.urlencode({"run": RUN, "tag": f"attention/{n}", "step": step,
                                    "format": fmt})
    return _get(client, "/data/plugin/attention/matrix?" + query)[1]


def images_tab(client, n: int, step: int) -> int:
    """What the Images tab fetches to show one step: the tag's listing, then the PNG."""
    query = urllib.parse.urlencode({"run": RUN, "tag": f"image/{n}"})
    listing, listing_bytes = _get(client, "/data/plugin/images/images?" + query)
    entry = next(e for e in json.loads(listing) if e["step"] == step)
    return listing_bytes + _get(client, "/data/plugin/images/individualImage?" + entry["query"])[1]


def timed(fn, *args) -> tuple[float, int]:
    start = time.perf_counter()
    size = fn(*args)
    return time.perf_counter() - start, size


def latency_table(client, repeats: int) -> list[tuple]:
    rows = []
    for n in SIZES:
        count = repeats if n <= 128 else max(5, repeats // 3)
        cases = {
            "ours json": lambda s, n=n: ours(client, n, "json", s),
            "ours binary": lambda s, n=n: ours(client, n, "binary", s),
            "Images tab": lambda s, n=n: images_tab(client, n, s),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        sizes: dict[str, int] = {}
        for fn in cases.values():  # warm-up: caches, imports
            fn(0)
        for i in range(count):
            # Alternate the order so that no case always runs first.
            order = list(cases) if i % 2 == 0 else list(reversed(cases))
            for name in order:
                elapsed, sizes[name] = timed(cases[name], i % STEPS)
                times[name].append(elapsed)
        peer = statistics.median(times["Images tab"])
        for name in cases:
            median = statistics.median(times[name])
            rows.append((f"{n}x{n}", name, median * 1000, sizes[name], median / peer, count))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--keep", help="write the logdir here and keep it")
    parser.add_argument("--no-browser", action="store_true",
                        help="skip benchmarks/plugin_browser.py even if present")
    args = parser.parse_args(argv)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, TensorFlow {tf.__version__}")
    scratch = tempfile.mkdtemp(prefix="attention-bench-")
    logdir = args.keep or os.path.join(scratch, "logdir")
    try:
        print("\n1. Bytes on disk per matrix (softmax attention, viridis PNG for the peer)")
        print(f"{'matrix':>10} {'attention':>11} {'image':>11} {'ratio':>7}")
        for n in SIZES:
            weights = softmax_matrix(n, seed=n)
            mine = bytes_per_summary(scratch, lambda n=n, w=weights: log_attention(n, w, 0))
            peer = bytes_per_summary(scratch, lambda n=n, w=weights: log_image(n, w, 0))
            print(f"{n:>4}x{n:<5} {mine:>11,} {peer:>11,} {mine / peer:>7.2f}")
        print("   (ours keeps float16 values and token labels; the image keeps 8-bit colour)")

        write_logdir(logdir)
        client = wsgi_client(logdir)
        print("\n2. Backend latency per matrix, TensorBoardWSGI + Python loader "
              "(median; ratio = ours / Images tab)")
        print(f"{'matrix':>10} {'request':<12} {'median ms':>10} {'bytes':>11} "
              f"{'ratio':>7} {'runs':>5}")
        for size, name, ms, nbytes, ratio, count in latency_table(client, args.repeats):
            print(f"{size:>10} {name:<12} {ms:>10.2f} {nbytes:>11,} {ratio:>7.2f} {count:>5}")
        print("   (bytes as sent with gzip accepted: JSON is gzipped, binary and PNG are not)")

        if not args.no_browser:
            try:
                from plugin_browser import main as browser_main
            except ImportError as err:
                print(f"\n3. Browser: skipped (benchmarks/plugin_browser.py: {err})")
            else:
                print("\n3. Browser (benchmarks/plugin_browser.py)")
                if inspect.signature(browser_main).parameters:
                    browser_main(logdir)
                else:
                    browser_main()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
