"""Benchmark: the attention plugin against the stock Images plugin, on the same matrices.

What the stock tools offer for attention weights is an image summary: a colour-mapped
picture of the matrix (`tf.summary.image` of a viridis uint8 RGB image, what the Images
tab would show). For the same softmax matrices, 128 x 128 and 1024 x 1024, this measures:

1. bytes on disk per matrix: our attention summary (format version 2: 4-decimal codes,
   with labels) vs the image summary (8-bit PNG), each the growth of an event file over
   an empty one; beside them what format version 1 stored (float16 + zlib) and the
   order-0 entropy of the 4-decimal codes (the floor for independent weights);
2. latency of the backend, with a browser's `Accept-Encoding: gzip`: opening a tag (ours:
   `matrix` of the latest step; the Images tab: its `images` listing, then the latest
   `individualImage`), and moving to another step (ours: `matrix?step=S`, in the stored
   form the tab fetches (the values blob as written, which the browser unpacks), the codes
   form (uint16 codes, what the tab fetched before), the float32 binary form, or JSON; the
   Images tab: `individualImage`); (a) through
   TensorBoard's own WSGI app in process (Python loader, `werkzeug.test.Client`), and
   (b) over HTTP from a real `tensorboard` with its default Rust data server. Ours and
   the peer alternate, repeated; medians and the ratio of medians are printed;
3. at scale: a log directory as AttentionLogger writes it for a 24-layer model, 12 heads,
   2 probe examples, 64 x 64 matrices, at --big-steps steps (500 by default), read by a
   real TensorBoard under each loader (`--samples_per_plugin attention=0`): `tags` after
   the first listing, and `overview` (one step of all 24 layers of one example, the tab's
   overview grid, in the codes form the tab fetches) at random steps; the targets are
   absolute (1 s and 200 ms);
4. memory: six concurrent `matrix` JSON requests for a 2048 x 2048 matrix, the growth of
   the server's peak resident memory (VmHWM);
5. if benchmarks/plugin_browser.py is present (the frontend's part), its `main(logdir)`
   with the same logdir: run "bench" holds tags "attention/<n>" and "image/<n>" for each
   size, written at steps 0, 1, ... from the same matrices.

Run: .venv/bin/python benchmarks/plugin.py [--repeats 30] [--keep DIR] [--no-server]
     [--no-browser] [--big-steps 500] [--no-scale]
Performance is measured here and never asserted in a test; the exit status is 0.
"""

from __future__ import annotations

import argparse
import concurrent.futures
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
import zlib

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

from tb_plugin import codec, metadata  # noqa: E402
from tb_plugin.plugin import AttentionPlugin  # noqa: E402
from tb_plugin.summary import attention  # noqa: E402

SIZES = (128, 1024)


def runs(n: int, repeats: int) -> int:
    """Timed requests per case for an n x n matrix."""
    return repeats if n <= 128 else max(5, repeats // 3)


def steps_for(n: int, repeats: int) -> int:
    """Steps written per size: step 0 for warm-ups, then one fresh step per timed request
    of each of the four cold cases (stored, codes, binary and JSON), so that no cache serves
    them, one for "stored, again", and the latest (which opening a tag shows)."""
    return 4 * runs(n, repeats) + 3


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


def version1_bytes(n: int, weights: np.ndarray) -> int:
    """What format version 1 stored for this matrix: its JSON header and zlib float16."""
    header = {
        "version": 1,
        "shape": [n, n],
        "dtype": "<f2",
        "compression": "zlib",
        "input_labels": tokens(n, "in"),
        "query_labels": tokens(n, "out"),
    }
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    return len(text) + len(zlib.compress(weights.astype("<f2").tobytes(), 6))


def entropy_floor(n: int, weights: np.ndarray, rounding=np.rint) -> int:
    """Order-0 entropy of the 4-decimal codes, plus the labels compressed, in bytes.

    `rounding=np.floor` gives the floor of the loosest reading of "within 5e-5": bins of
    1e-4 from 0, each read back at its middle. Its bin at zero is twice as wide, so it
    costs less, but a weight then shows 4 decimals that are not its own (0.00007 as 0.0001
    from the middle 0.00005, or 0.0000 from the bin's start)."""
    codes = rounding(weights.astype(np.float64) * 10_000)
    _, counts = np.unique(codes, return_counts=True)
    p = counts / counts.sum()
    labels = json.dumps([tokens(n, "in"), tokens(n, "out")], separators=(",", ":")).encode()
    return int(-(p * np.log2(p)).sum() * weights.size / 8) + len(zlib.compress(labels, 9))


def write_logdir(logdir: str, repeats: int) -> None:
    writer = tf.summary.create_file_writer(os.path.join(logdir, RUN))
    with writer.as_default():
        for n in SIZES:
            for step in range(steps_for(n, repeats)):
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
    """Rows (matrix, case, median ms, bytes, ratio to its peer, runs).

    "step" cases ask for a step nobody asked for before (the plugin caches decoded
    steps, so this is the first visit's cost); "step again" asks for one it has served.
    """
    rows = []
    for n in SIZES:
        count = runs(n, repeats)
        listing, _ = image_listing(fetch, n)
        fresh_codes = list(range(1, count + 1))
        fresh_binary = list(range(count + 1, 2 * count + 1))
        fresh_json = list(range(2 * count + 1, 3 * count + 1))
        fresh_stored = list(range(3 * count + 1, 4 * count + 1))
        stored_again = 4 * count + 1  # first asked for in the stored form (the warm-up)
        # name: (request of the i-th round, peer's name)
        cases = {
            "ours stored, open": (lambda i, n=n: ours_first(fetch, n, "stored"), "Images, open"),
            "Images, open": (lambda i, n=n: images_first(fetch, n), "Images, open"),
            "ours codes, step": (
                lambda i, n=n, s=fresh_codes: ours_step(fetch, n, "codes", s[i]),
                "Images, step",
            ),
            "ours codes, again": (
                lambda i, n=n: ours_step(fetch, n, "codes", 0),
                "Images, step",
            ),
            "ours stored, step": (
                lambda i, n=n, s=fresh_stored: ours_step(fetch, n, "stored", s[i]),
                "Images, step",
            ),
            "ours stored, again": (
                lambda i, n=n, s=stored_again: ours_step(fetch, n, "stored", s),
                "Images, step",
            ),
            "ours binary, step": (
                lambda i, n=n, s=fresh_binary: ours_step(fetch, n, "binary", s[i]),
                "Images, step",
            ),
            "ours json, step": (
                lambda i, n=n, s=fresh_json: ours_step(fetch, n, "json", s[i]),
                "Images, step",
            ),
            "Images, step": (
                lambda i, n=n, s=fresh_binary, seen=listing: images_step(fetch, n, s[i], seen),
                "Images, step",
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        sizes: dict[str, int] = {}
        # Warm-up (imports, tables, listed steps), all on step 0.
        ours_first(fetch, n, "stored")
        images_first(fetch, n)
        ours_step(fetch, n, "codes", 0)
        ours_step(fetch, n, "binary", 0)
        ours_step(fetch, n, "json", 0)
        ours_step(fetch, n, "stored", stored_again)
        images_step(fetch, n, 0, listing)
        for i in range(count):
            # Alternate the order so that no case always runs first.
            order = list(cases) if i % 2 == 0 else list(reversed(cases))
            for name in order:
                elapsed, sizes[name] = timed(cases[name][0], i)
                times[name].append(elapsed)
        for name, (_, peer) in cases.items():
            median = statistics.median(times[name])
            ratio = median / statistics.median(times[peer])
            rows.append((f"{n}x{n}", name, median * 1000, sizes[name], ratio, count))
    return rows


def print_latency(title: str, rows: list[tuple]) -> None:
    print(f"\n{title}")
    print(f"{'matrix':>10} {'case':<19} {'median ms':>10} {'bytes':>11} {'ratio':>7} {'runs':>5}")
    for size, name, ms, nbytes, ratio, count in rows:
        print(f"{size:>10} {name:<19} {ms:>10.2f} {nbytes:>11,} {ratio:>7.2f} {count:>5}")


# The scale of issue 9: what AttentionLogger writes for a 24-layer model.
BIG_LAYERS, BIG_HEADS, BIG_N, BIG_EXAMPLES = 24, 12, 64, 2
BIG_RUN = "model"


def big_tag(layer: int, example: int) -> str:
    return f"encoder/layer_{layer}/mha/{example}"


def write_big_logdir(logdir: str, steps: int) -> None:
    """Run "model": each step, every layer's matrices of each example, in model order.

    Four encoded matrices per layer are cycled: encoding 24,000 distinct matrices would
    take minutes and change nothing the plugin reads (sizes, steps, labels).
    """
    rng = np.random.default_rng(0)
    labels = tokens(BIG_N, "tok")
    variants = []
    for _ in range(4):
        scores = 3.0 * rng.normal(size=(BIG_HEADS, BIG_N, BIG_N))
        e = np.exp(scores - scores.max(axis=-1, keepdims=True))
        variants.append(
            tf.constant(list(codec.encode(e / e.sum(-1, keepdims=True), labels, labels)))
        )
    summary_metadata = metadata.create_summary_metadata("MultiHeadAttention layer")
    writer = tf.summary.create_file_writer(os.path.join(logdir, BIG_RUN))
    with writer.as_default():
        for step in range(steps):
            for layer in range(BIG_LAYERS):
                for b in range(BIG_EXAMPLES):
                    tf.summary.write(
                        big_tag(layer, b),
                        variants[(step + layer + b) % len(variants)],
                        step=step,
                        metadata=summary_metadata,
                    )
    writer.close()


def scale_rows(logdir: str, steps: int, repeats: int) -> list[tuple]:
    """(loader, case, median ms, runs) for `tags` and `overview` under both loaders."""
    sys.path.insert(0, os.path.join(HERE, os.pardir, "tests"))
    from tb_server import TensorBoardServer

    rows = []
    for load_fast in (True, False):
        loader = "Rust (--load_fast=true)" if load_fast else "Python (--load_fast=false)"
        start = time.perf_counter()
        with TensorBoardServer(logdir, load_fast=load_fast) as server:

            def loaded() -> bool:
                tags = server.get_json("data/plugin/attention/tags").get(BIG_RUN, {})
                return len(tags) == BIG_LAYERS * BIG_EXAMPLES and all(
                    t["num_steps"] == steps for t in tags.values()
                )

            server.wait_until(loaded, timeout=3600)
            rows.append((loader, "log directory loaded (s)", time.perf_counter() - start, 1))
            tags_ms, overview_ms, size = [], [], 0
            rng = np.random.default_rng(1)
            for i in range(repeats):
                t0 = time.perf_counter()
                server.get("data/plugin/attention/tags")
                tags_ms.append((time.perf_counter() - t0) * 1000)
                query = urllib.parse.urlencode(
                    {
                        "run": BIG_RUN,
                        "example": i % BIG_EXAMPLES,
                        "step": rng.integers(steps),
                        "format": "codes",
                    }
                )
                t0 = time.perf_counter()
                status, body, _ = server.get("data/plugin/attention/overview?" + query)
                overview_ms.append((time.perf_counter() - t0) * 1000)
                assert status == 200, body[:300]
                size = len(body)
            rows.append((loader, "tags", statistics.median(tags_ms), repeats))
            rows.append(
                (
                    loader,
                    f"overview, 24 layers ({size:,} B)",
                    statistics.median(overview_ms),
                    repeats,
                )
            )
    return rows


def vm_hwm_kib(pid: int) -> int:
    """Peak resident memory of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc")


def memory_growth(root: str, n: int = 2048, clients: int = 6) -> tuple[int, int]:
    """Peak-memory growth of a real server (Rust loader) under concurrent JSON requests."""
    sys.path.insert(0, os.path.join(HERE, os.pardir, "tests"))
    from tb_server import TensorBoardServer

    logdir = tempfile.mkdtemp(dir=root)
    writer = tf.summary.create_file_writer(os.path.join(logdir, "big"))
    with writer.as_default():
        attention("matrix/0", softmax_matrix(n, seed=7), step=0)
    writer.close()
    url = "data/plugin/attention/matrix?run=big&tag=matrix/0"
    with TensorBoardServer(logdir, load_fast=True) as server:
        server.wait_until(lambda: server.get(url)[0] == 200, timeout=120)
        fetch = http_fetch(server.url)
        fetch(url)  # warm-up: tables, threads
        before = vm_hwm_kib(server._proc.pid)
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            sizes = list(pool.map(lambda _: fetch(url)[1], range(clients)))
        after = vm_hwm_kib(server._proc.pid)
    return (after - before) // 1024, sizes[0]


@contextlib.contextmanager
def real_server(logdir: str, repeats: int):
    """`python -m tensorboard.main` on the logdir (tests/tb_server.py), all data loaded."""
    sys.path.insert(0, os.path.join(HERE, os.pardir, "tests"))
    from tb_server import TensorBoardServer

    def loaded() -> bool:
        tags = server.get_json("data/plugin/attention/tags").get(RUN, {})
        images = server.get_json("data/plugin/images/tags").get(RUN, {})
        return all(
            tags.get(f"attention/{n}", {}).get("num_steps") == steps_for(n, repeats)
            and images.get(f"image/{n}", {}).get("samples") == 1
            and len(server.get_json(f"data/plugin/images/images?run={RUN}&tag=image/{n}"))
            == steps_for(n, repeats)
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
    parser.add_argument("--big-steps", type=int, default=500, help="steps of the scale test")
    parser.add_argument("--no-scale", action="store_true", help="skip the scale and memory tests")
    args = parser.parse_args(argv)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, TensorFlow {tf.__version__}"
    )
    scratch = tempfile.mkdtemp(prefix="attention-bench-")
    logdir = args.keep or os.path.join(scratch, "logdir")
    try:
        print("\n1. Bytes on disk per matrix (softmax attention, viridis PNG for the peer)")
        print(
            f"{'matrix':>10} {'attention':>11} {'image':>11} {'ratio':>7} "
            f"{'version 1':>11} {'floor':>11} {'floor ratio':>11} {'loose floor':>11}"
        )
        for n in SIZES:
            weights = softmax_matrix(n, seed=n)
            mine = bytes_per_summary(scratch, lambda n=n, w=weights: log_attention(n, w, 0))
            peer = bytes_per_summary(scratch, lambda n=n, w=weights: log_image(n, w, 0))
            old, floor = version1_bytes(n, weights), entropy_floor(n, weights)
            loose = entropy_floor(n, weights, rounding=np.floor)
            print(
                f"{n:>4}x{n:<5} {mine:>11,} {peer:>11,} {mine / peer:>7.2f} {old:>11,} "
                f"{floor:>11,} {floor / peer:>11.2f} {loose / peer:>11.2f}"
            )
        print(
            "   (ours keeps every weight to 4 decimals and the token labels; the image keeps\n"
            "   8-bit colour. version 1: float16 + zlib, header and values blobs. floor: the\n"
            "   order-0 entropy of the 4-decimal codes plus the zlib-compressed labels, the\n"
            "   least any coder of independent weights needs; these softmax rows of i.i.d.\n"
            "   Gaussian scores are independent noise from weight to weight. loose floor: the\n"
            "   same for bins of 1e-4 from 0 read back at their middle, still within 5e-5 but\n"
            "   not the weight's own 4 decimals: the floor of the loosest reading of the target)"
        )

        write_logdir(logdir, args.repeats)
        print(
            "\n2. Backend latency per matrix, median. 'open': a tag's first view (ours: "
            "matrix of the latest step;\n   Images: image listing + PNG). 'step': moving to "
            "another listed step, one never shown before (ours: matrix?step=S;\n   Images: the "
            "PNG); 'again': a step ours has served before (it keeps steps, decoded or as\n   "
            "stored). ratio = ours / the Images case. Bytes as sent with gzip accepted\n   "
            "(JSON is gzipped, binary and PNG are not)."
        )
        print_latency(
            "2a. TensorBoardWSGI + Python loader, in process",
            latency_table(wsgi_fetch(wsgi_client(logdir)), args.repeats),
        )
        if not args.no_server:
            with real_server(logdir, args.repeats) as server:
                print_latency(
                    "2b. real TensorBoard server, Rust data server (--load_fast=true), over HTTP",
                    latency_table(http_fetch(server.url), args.repeats),
                )

        if not args.no_scale:
            big = os.path.join(scratch, "big")
            start = time.perf_counter()
            write_big_logdir(big, args.big_steps)
            megabytes = _logdir_bytes(os.path.join(big, BIG_RUN)) / 1e6
            print(
                f"\n3. At scale: {BIG_LAYERS} layers x {BIG_HEADS} heads x {BIG_EXAMPLES} "
                f"examples x {args.big_steps} steps of {BIG_N}x{BIG_N} ({megabytes:.0f} MB, "
                f"written in {time.perf_counter() - start:.0f} s); real server, HTTP, medians"
            )
            print(f"{'loader':<28} {'case':<36} {'median':>10} {'runs':>5}")
            for loader, case, value, count in scale_rows(big, args.big_steps, args.repeats):
                unit = "s" if case.endswith("(s)") else "ms"
                print(f"{loader:<28} {case:<36} {value:>8.1f}{unit:>2} {count:>5}")
            shutil.rmtree(big, ignore_errors=True)
            growth, size = memory_growth(scratch)
            print(
                f"\n4. Memory: 6 concurrent matrix JSON requests for 2048x2048 ({size:,} B each, "
                f"gzip): the server's peak resident memory grew by {growth} MiB"
            )

        if not args.no_browser:
            try:
                from plugin_browser import main as browser_main
            except ImportError as err:
                print(f"\n5. Browser: skipped (benchmarks/plugin_browser.py: {err})")
            else:
                print("\n5. Browser (benchmarks/plugin_browser.py)")
                if inspect.signature(browser_main).parameters:
                    browser_main(logdir)
                else:
                    browser_main()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
