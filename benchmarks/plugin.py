"""Benchmark: the attention plugin against the stock Images plugin, on the same matrices.

What the stock tools offer for attention weights is an image summary: a colour-mapped
picture of the matrix (`tf.summary.image` of a viridis uint8 RGB image, what the Images
tab would show). For the same softmax matrices, 128 x 128 and 1024 x 1024, this measures:

1. bytes on disk per matrix: our attention summary (float16 + zlib, with labels) vs the
   image summary (8-bit PNG), each the growth of an event file over an empty one;
2. latency of the backend, with a browser's `Accept-Encoding: gzip`: opening a tag (ours:
   `matrix` of the latest step; the Images tab: its `images` listing, then the latest
   `individualImage`), and moving to another step (ours: `matrix?step=S`, binary or
   JSON; the Images tab: `individualImage`); (a) through
   TensorBoard's own WSGI app in process (Python loader, `werkzeug.test.Client`), and
   (b) over HTTP from a real `tensorboard` with its default Rust data server. Ours and
   the peer alternate, repeated; medians and the ratio of medians are printed;
3. if benchmarks/plugin_browser.py is present (the frontend's part), its `main(logdir)`
   with the same logdir: run "bench" holds tags "attention/<n>" and "image/<n>" for each
   size, written at steps 0..STEPS-1 from the same matrices.

Run: .venv/bin/python benchmarks/plugin.py [--repeats 30] [--keep DIR] [--no-server]
     [--no-browser]
Performance is measured here and never asserted in a test; the exit status is 0.
"""

from __future__ import annotations

import argparse
import contextlib
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
import urllib.request

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
    attention(
        f"attention/{n}",
        weights,
        step=step,
        input_labels=tokens(n, "in"),
        query_labels=tokens(n, "out"),
    )


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
        logdir=logdir,
        data_provider=provider,
        # The Images plugin reads `images=0` as "no images", so give it a count.
        sampling_hints={"attention": 0, "images": 1000},
    )
    plugins = [AttentionPlugin(context), images_plugin.ImagesPlugin(context)]
    return werkzeug_test.Client(application.TensorBoardWSGI(plugins, data_provider=provider))


def wsgi_fetch(client: werkzeug_test.Client):
    """GET through the WSGI app: returns (body gunzipped as a browser would, wire bytes)."""

    def fetch(url: str) -> tuple[bytes, int]:
        response = client.get(url, headers=BROWSER_HEADERS)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} -> {response.status_code}: {response.get_data()[:200]}")
        return _decoded(response.get_data(), response.headers.get("Content-Encoding"))

    return fetch


def http_fetch(base_url: str):
    """GET over HTTP from a real server: (body gunzipped, wire bytes)."""

    def fetch(url: str) -> tuple[bytes, int]:
        request = urllib.request.Request(base_url + url.lstrip("/"), headers=BROWSER_HEADERS)
        with urllib.request.urlopen(request, timeout=60) as response:
            return _decoded(response.read(), response.headers.get("Content-Encoding"))

    return fetch


def _decoded(wire: bytes, encoding: str | None) -> tuple[bytes, int]:
    if encoding == "gzip":
        return gzip.decompress(wire), len(wire)
    return wire, len(wire)


def ours_step(fetch, n: int, fmt: str, step: int) -> int:
    """Our frontend moving to another listed step: one `matrix` request."""
    query = urllib.parse.urlencode(
        {"run": RUN, "tag": f"attention/{n}", "step": step, "format": fmt}
    )
    return fetch("/data/plugin/attention/matrix?" + query)[1]


def ours_first(fetch, n: int, fmt: str) -> int:
    """Opening a tag: `matrix` without a step (the latest), which lists the steps afresh."""
    query = urllib.parse.urlencode({"run": RUN, "tag": f"attention/{n}", "format": fmt})
    return fetch("/data/plugin/attention/matrix?" + query)[1]


def image_listing(fetch, n: int) -> tuple[list, int]:
    query = urllib.parse.urlencode({"run": RUN, "tag": f"image/{n}"})
    listing, size = fetch("/data/plugin/images/images?" + query)
    return json.loads(listing), size


def images_step(fetch, n: int, step: int, listing: list) -> int:
    """The Images tab moving to another listed step: one `individualImage` request."""
    entry = next(e for e in listing if e["step"] == step)
    return fetch("/data/plugin/images/individualImage?" + entry["query"])[1]


def images_first(fetch, n: int) -> int:
    """Opening a tag in the Images tab: its image listing, then the latest PNG."""
    listing, size = image_listing(fetch, n)
    return size + images_step(fetch, n, listing[-1]["step"], listing)


def timed(fn, *args) -> tuple[float, int]:
    start = time.perf_counter()
    size = fn(*args)
    return time.perf_counter() - start, size


def latency_table(fetch, repeats: int) -> list[tuple]:
    """Rows (matrix, case, median ms, bytes, ratio to its peer, runs)."""
    rows = []
    for n in SIZES:
        count = repeats if n <= 128 else max(5, repeats // 3)
        listing, _ = image_listing(fetch, n)
        # name: (request, peer's name)
        cases = {
            "ours binary, open": (lambda s, n=n: ours_first(fetch, n, "binary"), "Images, open"),
            "Images, open": (lambda s, n=n: images_first(fetch, n), "Images, open"),
            "ours binary, step": (lambda s, n=n: ours_step(fetch, n, "binary", s), "Images, step"),
            "ours json, step": (lambda s, n=n: ours_step(fetch, n, "json", s), "Images, step"),
            "Images, step": (
                lambda s, n=n, seen=listing: images_step(fetch, n, s, seen),
                "Images, step",
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        sizes: dict[str, int] = {}
        for fn, _ in cases.values():  # warm-up: caches, imports, listed steps
            fn(0)
        for i in range(count):
            # Alternate the order so that no case always runs first.
            order = list(cases) if i % 2 == 0 else list(reversed(cases))
            for name in order:
                elapsed, sizes[name] = timed(cases[name][0], i % STEPS)
                times[name].append(elapsed)
        for name, (_, peer) in cases.items():
            median = statistics.median(times[name])
            ratio = median / statistics.median(times[peer])
            rows.append((f"{n}x{n}", name, median * 1000, sizes[name], ratio, count))
    return rows


def print_latency(title: str, rows: list[tuple]) -> None:
    print(f"\n{title}")
    print(f"{'matrix':>10} {'case':<18} {'median ms':>10} {'bytes':>11} {'ratio':>7} {'runs':>5}")
    for size, name, ms, nbytes, ratio, count in rows:
        print(f"{size:>10} {name:<18} {ms:>10.2f} {nbytes:>11,} {ratio:>7.2f} {count:>5}")


@contextlib.contextmanager
def real_server(logdir: str):
    """`python -m tensorboard.main` on the logdir (tests/tb_server.py), all data loaded."""
    sys.path.insert(0, os.path.join(HERE, os.pardir, "tests"))
    from tb_server import TensorBoardServer

    def loaded() -> bool:
        tags = server.get_json("data/plugin/attention/tags").get(RUN, {})
        images = server.get_json("data/plugin/images/tags").get(RUN, {})
        return all(
            tags.get(f"attention/{n}", {}).get("num_steps") == STEPS
            and images.get(f"image/{n}", {}).get("samples") == 1
            and len(server.get_json(f"data/plugin/images/images?run={RUN}&tag=image/{n}")) == STEPS
            for n in SIZES
        )

    with TensorBoardServer(logdir, load_fast=True) as server:
        server.wait_until(loaded, timeout=120)
        yield server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--keep", help="write the logdir here and keep it")
    parser.add_argument(
        "--no-server",
        action="store_true",
        help="skip the measurement through a real TensorBoard server",
    )
    parser.add_argument(
        "--no-browser",
        action="store_true",
        help="skip benchmarks/plugin_browser.py even if present",
    )
    args = parser.parse_args(argv)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, TensorFlow {tf.__version__}"
    )
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
        print(
            "\n2. Backend latency per matrix, median. 'open': a tag's first view (ours: "
            "matrix of the latest step;\n   Images: image listing + PNG). 'step': moving to "
            "another listed step (ours: matrix?step=S;\n   Images: the PNG). ratio = ours / "
            "the Images case. Bytes as sent with gzip accepted\n   (JSON is gzipped, binary "
            "and PNG are not)."
        )
        print_latency(
            "2a. TensorBoardWSGI + Python loader, in process",
            latency_table(wsgi_fetch(wsgi_client(logdir)), args.repeats),
        )
        if not args.no_server:
            with real_server(logdir) as server:
                print_latency(
                    "2b. real TensorBoard server, Rust data server (--load_fast=true), over HTTP",
                    latency_table(http_fetch(server.url), args.repeats),
                )

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
