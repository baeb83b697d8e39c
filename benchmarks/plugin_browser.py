"""Benchmark: first painted heatmap, attention tab vs the stock Images tab, in headless Chromium.

The workload of NOTES §3: one run holding 8 tags x 20 steps of attention matrices, written
twice into the same logdir: as attention summaries (tags "attention/<k>") and as image
summaries of the same matrices rendered the way people log them for the Images tab, a
labelled matplotlib heatmap (tags "heatmap/<k>"). One real TensorBoard server (default
Rust data server, `--load_fast=true`) serves both tabs.

Measured, interleaved (the order alternates each round), each page load in a fresh browser
context (cold cache), median of --repeats rounds, on the browser's own clock:
- attention: from navigation start of http://HOST/#attention to the animation frame that
  shows the first heatmap (the canvas's data-painted-at, stamped by the tab itself);
- images: from navigation start of http://HOST/#images to the animation frame after the
  first image summary's <img> has loaded (a load listener put on every <img> by a hook
  installed before the page's own scripts run).
Both tabs share one renderer main thread with TensorBoard's own app, so both wait for it.
Also, in the attention tab: choosing a 1024 x 1024 matrix until it is painted (fetch, decode,
draw), re-painting it from the cache, and the longest main-thread task meanwhile; and a step
of it that nobody asked for before, fetched and decoded in the page (what a step move costs
before drawing) in the stored form that the tab fetches and in the codes form it fetched
before, interleaved.

The overview of a transformer (issue 10): a second logdir, run "transformer", written here
like the logger writes it: 24 layers x 12 heads x 2 probe examples x 500 steps of 64 x 64
self-attention matrices (about 0.95 GB; --transformer-steps and friends make it smaller), with
each layer's mean_entropy scalar, beside a small run "a_small" that the tab opens first. One
TensorBoard (Rust data server) serves it. Measured in the attention tab, in overview mode:
- choosing the run "transformer" until its overview (288 thumbnails and 24 entropy lines)
  is on screen (the animation frame after the paint), fresh page each time;
- moving the step slider to a step not seen yet until the overview is repainted;
- the renderer's JavaScript heap (after a forced garbage collection, through the DevTools
  protocol) while scrubbing through every step in turn, every 50 steps, with the bytes the
  tab's matrix cache holds: bounded means it levels off instead of growing with the steps.
The targets of the issue: overview < 1.5 s, step move < 300 ms, bounded memory, and the
first-paint ratio above <= 1.0.

Run: .venv/bin/python benchmarks/plugin_browser.py [--repeats 5] [--transformer-steps 500]
     [--transformer-logdir DIR (kept and reused: writing the full one takes ~8 minutes)]
benchmarks/plugin.py calls main() too (without the transformer part). Performance is
printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "tests"))
sys.path.insert(0, os.path.join(HERE, os.pardir))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

RUN = "train"
TAGS = 8
STEPS = 20
QUERIES = 12
INPUTS = 16
BIG_TAG = "large/0"
BIG = 1024
BIG_STEPS = 21  # step 0, then a fresh step for each timed fetch of each form (10 each)

# A hundred plain words for token labels.
WORDS = (
    "the of and to in is was for on that with as by at from his her it an are were be this "
    "which or had not but have one their also its after first new two has who they been more "
    "time than other into when all some most only over three made year can years state war "
    "between used under during many world would both where team season city may while later "
    "these such well being then about university people through film part four known up album "
    "school north south series john before since"
).split()


def attention_matrix(rng: np.random.Generator, m: int, n: int) -> np.ndarray:
    """A peaked softmax matrix, as trained attention looks."""
    scores = 3.0 * rng.normal(size=(m, n))
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def heatmap_png(weights: np.ndarray, inputs: list[str], queries: list[str]) -> bytes:
    """A labelled viridis heatmap with a colour bar, rendered by matplotlib, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    image = ax.imshow(weights, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(inputs)), inputs, rotation=90)
    ax.set_yticks(range(len(queries)), queries)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_logdir(logdir: str) -> None:
    import tensorflow as tf

    from tb_plugin.summary import attention

    rng = np.random.default_rng(0)
    writer = tf.summary.create_file_writer(os.path.join(logdir, RUN))
    with writer.as_default():
        for step in range(STEPS):
            for k in range(TAGS):
                inputs = list(rng.choice(WORDS, INPUTS))
                queries = list(rng.choice(WORDS, QUERIES))
                weights = attention_matrix(rng, QUERIES, INPUTS)
                attention(
                    f"attention/{k}", weights, step=step, input_labels=inputs, query_labels=queries
                )
                png = heatmap_png(weights, inputs, queries)
                tf.summary.image(f"heatmap/{k}", tf.io.decode_png(png)[None], step=step)
        for step in range(BIG_STEPS):
            attention(
                BIG_TAG,
                attention_matrix(rng, BIG, BIG),
                step=step,
                input_labels=[f"in{i}" for i in range(BIG)],
                query_labels=[f"out{i}" for i in range(BIG)],
            )
    writer.close()


# Runs in the page before its scripts: stamps window.__imagePaintedAt with the epoch time
# (performance.timeOrigin + now: one clock in every frame) of the animation frame after the
# first <img> load. TensorBoard's image loader loads each picture in a detached <img> (set
# through its src property) and inserts it when loaded, so the hook sits on that setter.
_WATCH_IMAGES = """(() => {
    const stamp = () => requestAnimationFrame(() => {
        if (window.__imagePaintedAt === undefined) {
            window.__imagePaintedAt = performance.timeOrigin + performance.now();
        }
    });
    const watch = img => img.addEventListener('load', stamp, {once: true});
    const src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, 'src');
    Object.defineProperty(HTMLImageElement.prototype, 'src', {
        configurable: true, enumerable: src.enumerable,
        get() { return src.get.call(this); },
        set(value) { watch(this); src.set.call(this, value); },
    });
    const setAttribute = Element.prototype.setAttribute;
    Element.prototype.setAttribute = function (name, value) {
        if (this instanceof HTMLImageElement && name === 'src') watch(this);
        return setAttribute.call(this, name, value);
    };
})()"""


def first_paint_ms(browser, url: str, tab: str) -> float:
    """Milliseconds from navigation start to the first painted heatmap of `tab`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        if tab == "images":
            page.add_init_script(_WATCH_IMAGES)
        page.goto(f"{url}#{tab}", wait_until="commit")
        if tab == "attention":
            frame = page.frame_locator("iframe")
            canvas = frame.locator("#heatmap[data-painted-at]")
            canvas.wait_for(timeout=60_000)
            painted = float(canvas.get_attribute("data-painted-at"))
        else:
            # TensorBoard's Images dashboard, inside its shadow DOM (Playwright's CSS
            # locators pierce it): the first image summary's <img>.
            page.locator("tf-image-loader img").first.wait_for(timeout=60_000)
            painted = page.wait_for_function(
                "() => window.__imagePaintedAt", timeout=60_000
            ).json_value()
        start = page.evaluate("performance.timeOrigin")
        return painted - start
    finally:
        context.close()


_SELECT_AND_PAINT = """async (select, value) => {
    const canvas = document.getElementById('heatmap');
    const before = Number(canvas.dataset.paintCount || 0);
    const longest = {ms: 0};
    const observer = new PerformanceObserver(list => {
        for (const entry of list.getEntries()) longest.ms = Math.max(longest.ms, entry.duration);
    });
    observer.observe({type: 'longtask'});
    const t0 = performance.now();
    const control = document.getElementById(select);
    control.value = value;
    control.dispatchEvent(new Event('change'));
    while (Number(canvas.dataset.paintCount || 0) === before) {
        await new Promise(r => setTimeout(r, 1));
    }
    await new Promise(r => requestAnimationFrame(r));
    const ms = performance.now() - t0;
    await new Promise(r => setTimeout(r, 50));  // let the observer deliver
    observer.disconnect();
    return [ms, longest.ms];
}"""


@contextlib.contextmanager
def painted_tab(browser, url: str):
    """A fresh page (cold cache) on the attention tab, once it has painted: its root."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{url}#attention")
        frame = page.frame_locator("iframe")
        frame.locator("#heatmap[data-painted]").wait_for(timeout=60_000)
        yield frame.locator("#attention-root")
    finally:
        context.close()


def large_matrix_ms(browser, url: str, repeats: int) -> dict[str, list[float]]:
    """Choosing the 1024 x 1024 tag until painted; re-painting it from the cache."""
    results: dict[str, list[float]] = {"load": [], "repaint": [], "longest task": []}
    for _ in range(repeats):
        with painted_tab(browser, url) as root:
            load, longest = root.evaluate(
                f"(_, [s, v]) => ({_SELECT_AND_PAINT})(s, v)", ["tag-select", BIG_TAG]
            )
            repaint, longest2 = root.evaluate(
                f"(_, [s, v]) => ({_SELECT_AND_PAINT})(s, v)", ["scale-select", "unit"]
            )
        results["load"].append(load)
        results["repaint"].append(repaint)
        results["longest task"].append(max(longest, longest2))
    return results


# Fetches and decodes one step of the large tag in a form, as the tab's loading does.
_FETCH_AND_DECODE = """async ([tag, step, format]) => {
    const { parseMatrixBinary } = await import('./matrix.js');
    const t0 = performance.now();
    const url = `./matrix?run=train&tag=${encodeURIComponent(tag)}&step=${step}&format=${format}`;
    const matrix = await parseMatrixBinary(await (await fetch(url)).arrayBuffer());
    if (matrix.values.length !== matrix.rows * matrix.cols) throw new Error('short matrix');
    return performance.now() - t0;
}"""


def step_forms_ms(browser, url: str) -> dict[str, list[float]]:
    """A new step of the large tag fetched and decoded in the page, stored vs codes form."""
    results: dict[str, list[float]] = {"stored": [], "codes": []}
    with painted_tab(browser, url) as root:
        for form in results:  # warm-up: modules, code tables, the tag's listing
            root.evaluate(f"(_, a) => ({_FETCH_AND_DECODE})(a)", [BIG_TAG, 0, form])
        fresh = iter(range(1, BIG_STEPS))
        for round_ in range((BIG_STEPS - 1) // 2):
            order = ("stored", "codes") if round_ % 2 == 0 else ("codes", "stored")
            for form in order:
                step = next(fresh)
                ms = root.evaluate(f"(_, a) => ({_FETCH_AND_DECODE})(a)", [BIG_TAG, step, form])
                results[form].append(ms)
    return results


def measure_first_paint(browser, url: str, repeats: int) -> dict[str, list[float]]:
    for tab in ("attention", "images"):  # warm-up: server caches, disk, fonts
        first_paint_ms(browser, url, tab)
    times: dict[str, list[float]] = {"attention": [], "images": []}
    for round_ in range(repeats):
        order = ("attention", "images") if round_ % 2 == 0 else ("images", "attention")
        for tab in order:
            times[tab].append(first_paint_ms(browser, url, tab))
    return times


def print_first_paint(times: dict[str, list[float]]) -> None:
    for tab, label in (("attention", "attention tab"), ("images", "Images tab")):
        print(
            f"  {label:<14} {statistics.median(times[tab]):7.0f} ms   "
            f"(runs: {', '.join(f'{t:.0f}' for t in times[tab])})"
        )
    ratio = statistics.median(times["attention"]) / statistics.median(times["images"])
    print(
        f"  ratio attention / images: {ratio:.2f} "
        f"({'not slower' if ratio <= 1 else 'SLOWER than the Images tab'})"
    )


def other_logdir(browser, logdir: str, repeats: int) -> None:
    """The same comparison on another logdir (benchmarks/plugin.py's: unlabelled images)."""
    from tb_server import TensorBoardServer

    with TensorBoardServer(logdir, load_fast=True) as server:
        server.wait_until(
            lambda: (
                bool(server.get_json("data/plugin/attention/tags"))
                and bool(server.get_json("data/plugin/images/tags"))
            ),
            timeout=180,
        )
        times = measure_first_paint(browser, server.url, repeats)
    print(f"\nThe same comparison on the given logdir {logdir} (median of {repeats}):")
    print_first_paint(times)


# ---- the overview of a transformer (issue 10) --------------------------------------------

T_RUN = "transformer"
T_FIRST_RUN = "a_small"  # opens first (runs are in natural order), so the transformer is chosen
T_POOL = 8  # distinct matrices per layer and example (see write_transformer_logdir)


def write_transformer_logdir(
    logdir: str, layers: int, heads: int, examples: int, steps: int, size: int
) -> None:
    """Writes what AttentionLogger writes for a transformer (see the module docstring).

    Each layer and example cycles through POOL distinct matrices, each encoded once by the
    plugin's own codec and written as the attention summary writes it: encoding 24,000
    summaries one by one would take most of an hour on a shared machine, and what is read
    back (the bytes per step, the number of blobs) is the same.
    """
    import tensorflow as tf

    from tb_plugin import codec, metadata
    from tb_plugin.summary import attention

    rng = np.random.default_rng(0)
    tokens = [f"{WORDS[i % len(WORDS)]}{i // len(WORDS) or ''}" for i in range(size)]
    writer = tf.summary.create_file_writer(os.path.join(logdir, T_FIRST_RUN))
    with writer.as_default():
        attention("small/0", attention_matrix(rng, 4, 4), step=0)
    writer.close()
    summary_metadata = metadata.create_summary_metadata()
    pool: dict[tuple[int, int], list[tuple]] = {}
    for layer in range(layers):
        for example in range(examples):
            entries = []
            for k in range(T_POOL):
                scores = (1 + k / 2) * rng.normal(size=(heads, size, size))
                e = np.exp(scores - scores.max(axis=-1, keepdims=True))
                weights = e / e.sum(axis=-1, keepdims=True)
                blobs = tf.constant(codec.encode(weights, tokens, tokens), dtype=tf.string)
                entropy = float(-np.mean(np.sum(weights * np.log(weights), axis=-1)))
                entries.append((blobs, entropy))
            pool[layer, example] = entries
    writer = tf.summary.create_file_writer(os.path.join(logdir, T_RUN))
    with writer.as_default():
        for step in range(steps):
            k = (step * T_POOL) // steps  # sharper as training goes on
            for example in range(examples):
                for layer in range(layers):
                    tf.summary.write(
                        f"encoder/layer_{layer}/self_attention/{example}",
                        pool[layer, example][k][0],
                        step=step,
                        metadata=summary_metadata,
                    )
            for layer in range(layers):
                entropy = np.mean([pool[layer, e][k][1] for e in range(examples)])
                tf.summary.scalar(
                    f"encoder/layer_{layer}/self_attention/mean_entropy", entropy, step=step
                )
    writer.close()
    with open(os.path.join(logdir, "COMPLETE"), "w") as f:
        f.write(json.dumps([layers, heads, examples, steps, size]))


# Runs in the plugin's frame: performs `action` (JS source of a function of the app's
# controls), then waits until the overview has painted again and the next animation frame
# (the one that shows it) starts; returns the milliseconds from before the action.
_ACT_AND_PAINT = """async (_, [action, arg]) => {
    const overview = document.getElementById('overview');
    const before = Number(overview.dataset.paintCount || 0);
    const t0 = performance.now();
    (new Function('arg', action))(arg);
    while (Number(overview.dataset.paintCount || 0) === before) {
        await new Promise(r => setTimeout(r, 1));
    }
    await new Promise(r => requestAnimationFrame(r));
    return performance.now() - t0;
}"""
_CHOOSE_RUN = """const s = document.getElementById('run-select');
    s.value = arg; s.dispatchEvent(new Event('change'));"""
_MOVE_STEP = """const s = document.getElementById('step-slider');
    s.value = String(arg); s.dispatchEvent(new Event('input'));"""


def open_overview_page(browser, url: str):
    """A fresh page of the tab in overview mode, on the small first run; (context, frame)."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.goto(f"{url}#attention")
    frame = page.frame_locator("iframe")
    frame.locator("#heatmap[data-painted]").wait_for(timeout=60_000)
    frame.locator("#mode-overview").click()
    frame.locator("#overview[data-painted]").wait_for(timeout=60_000)
    return context, page, frame


def transformer_overview(browser, url: str, repeats: int, steps: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"choose run": [], "step move": [], "next step": []}
    rng = np.random.default_rng(1)
    for _ in range(repeats):
        context, _, frame = open_overview_page(browser, url)
        try:
            root = frame.locator("#attention-root")
            ms = root.evaluate(_ACT_AND_PAINT, [_CHOOSE_RUN, T_RUN])
            assert frame.locator("#overview").get_attribute("data-cells") is not None
            results["choose run"].append(ms)
            # Random steps: the tab has not seen them (its neighbour prefetch does not help).
            for index in rng.choice(steps - 1, size=min(5, steps - 1), replace=False):
                results["step move"].append(root.evaluate(_ACT_AND_PAINT, [_MOVE_STEP, int(index)]))
            # The next step, as the arrow key or playback moves: prefetched while the last
            # one was shown (wait as long as a person looks at a step before moving on).
            frame.locator("#step-slider").evaluate("() => new Promise(r => setTimeout(r, 1500))")
            results["next step"].append(root.evaluate(_ACT_AND_PAINT, [_MOVE_STEP, int(index) + 1]))
        finally:
            context.close()
    return results


def transformer_scrub(browser, url: str, steps: int, every: int = 50) -> list[tuple]:
    """(steps done, JS heap MB after GC, tab cache MB, ms of the last step) while scrubbing."""
    context, page, frame = open_overview_page(browser, url)
    try:
        cdp = context.new_cdp_session(page)
        root = frame.locator("#attention-root")
        root.evaluate(_ACT_AND_PAINT, [_CHOOSE_RUN, T_RUN])

        def sample(done: int, ms: float) -> tuple:
            cdp.send("HeapProfiler.collectGarbage")
            usage = cdp.send("Runtime.getHeapUsage")
            # Objects plus ArrayBuffer backing stores (where the decoded matrices live).
            heap = (usage["usedSize"] + usage.get("backingStorageSize", 0)) / 2**20
            cache = root.evaluate("async () => (await import('./http.js')).cacheBytes()") / 2**20
            return (done, heap, cache, ms)

        samples = [sample(0, 0.0)]
        for index in range(steps):
            ms = root.evaluate(_ACT_AND_PAINT, [_MOVE_STEP, index])
            if (index + 1) % every == 0 or index + 1 == steps:
                samples.append(sample(index + 1, ms))
        return samples
    finally:
        context.close()


def transformer_main(browser, logdir: str | None, repeats: int, steps: int) -> None:
    from tb_server import TensorBoardServer

    layers, heads, examples, size = 24, 12, 2, 64
    scratch = None
    if logdir is None:
        scratch = logdir = tempfile.mkdtemp(prefix="attention-transformer-bench-")
    try:
        marker = os.path.join(logdir, "COMPLETE")
        wanted = [layers, heads, examples, steps, size]
        if not os.path.exists(marker) or json.loads(open(marker).read()) != wanted:
            shutil.rmtree(logdir, ignore_errors=True)
            os.makedirs(logdir)
            started = time.perf_counter()
            write_transformer_logdir(logdir, layers, heads, examples, steps, size)
            print(f"\nwrote the transformer logdir in {time.perf_counter() - started:.0f} s")
        print(
            f"\nOverview of run {T_RUN!r}: {layers} layers x {heads} heads x {examples} examples "
            f"x {steps} steps of {size} x {size} (logdir {logdir})"
        )
        with TensorBoardServer(logdir, load_fast=True) as server:
            tag = f"encoder/layer_{layers - 1}/self_attention/{examples - 1}"

            def loaded() -> bool:
                tags = server.get_json("data/plugin/attention/tags").get(T_RUN, {})
                return tags.get(tag, {}).get("num_steps") == steps

            started = time.perf_counter()
            server.wait_until(loaded, timeout=1800)
            took = time.perf_counter() - started
            print(f"  TensorBoard (Rust data server) had it loaded after {took:.0f} s")
            timing = transformer_overview(browser, server.url, repeats, steps)
            scrub = transformer_scrub(browser, server.url, steps)
        print(
            "  choose the run -> overview painted: "
            f"{statistics.median(timing['choose run']):6.0f} ms"
            f"   (median of {len(timing['choose run'])}; target < 1500 ms; runs: "
            f"{', '.join(f'{t:.0f}' for t in timing['choose run'])})"
        )
        print(
            "  step move -> overview repainted:    "
            f"{statistics.median(timing['step move']):6.0f} ms"
            f"   (median of {len(timing['step move'])} unseen steps; target < 300 ms)"
        )
        print(
            "  next step (prefetched) -> repainted: "
            f"{statistics.median(timing['next step']):5.0f} ms"
            f"   (median of {len(timing['next step'])})"
        )
        print("  scrubbing every step in turn (JS heap + ArrayBuffers after a forced GC):")
        print("    steps done   JS heap MB   tab cache MB   last step ms")
        for done, heap, cache, ms in scrub:
            print(f"    {done:10d}   {heap:10.1f}   {cache:12.1f}   {ms:12.0f}")
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def main(
    logdir: str | None = None,
    repeats: int = 5,
    transformer_steps: int = 0,
    transformer_logdir: str | None = None,
) -> None:
    """Runs the comparison on this benchmark's own logdir (NOTES §3's workload); with
    `logdir` (as benchmarks/plugin.py passes its own), also on that logdir; with
    `transformer_steps`, the overview of a transformer of that many steps."""
    from browser import launch_chromium
    from tb_server import TensorBoardServer

    scratch = tempfile.mkdtemp(prefix="attention-browser-bench-")
    try:
        started = time.perf_counter()
        write_logdir(scratch)
        print(
            f"logdir: run {RUN!r}, {TAGS} tags x {STEPS} steps of {QUERIES} x {INPUTS} "
            f"matrices, as attention summaries and as matplotlib heatmap images "
            f"(written in {time.perf_counter() - started:.0f} s), plus one {BIG} x {BIG}"
        )
        with launch_chromium() as browser:
            with TensorBoardServer(scratch, load_fast=True) as server:

                def loaded() -> bool:
                    tags = server.get_json("data/plugin/attention/tags").get(RUN, {})
                    images = server.get_json("data/plugin/images/tags").get(RUN, {})
                    return (
                        len(tags) == TAGS + 1
                        and len(images) == TAGS
                        and all(
                            t["num_steps"] == STEPS for name, t in tags.items() if name != BIG_TAG
                        )
                        and tags.get(BIG_TAG, {}).get("num_steps") == BIG_STEPS
                    )

                server.wait_until(loaded, timeout=180)
                times = measure_first_paint(browser, server.url, repeats)
                large = large_matrix_ms(browser, server.url, repeats)
                forms = step_forms_ms(browser, server.url)
            print(
                f"\nFirst painted heatmap after opening the tab (headless Chromium, median "
                f"of {repeats}, interleaved, cold cache):"
            )
            print_first_paint(times)
            print(f"\n{BIG} x {BIG} matrix in the attention tab (median of {repeats}):")
            print(
                f"  choose the tag -> painted (fetch, decode, draw): "
                f"{statistics.median(large['load']):6.0f} ms"
            )
            print(
                f"  re-paint from the cache (colour scale change):   "
                f"{statistics.median(large['repaint']):6.0f} ms"
            )
            print(
                f"  longest main-thread task meanwhile:               "
                f"{statistics.median(large['longest task']):6.0f} ms"
            )
            stored, codes = (statistics.median(forms[f]) for f in ("stored", "codes"))
            print(
                f"  a new step, fetched and decoded in the page (median of "
                f"{len(forms['stored'])}, interleaved): stored form {stored:.1f} ms, codes "
                f"form {codes:.1f} ms (stored / codes {stored / codes:.2f})"
            )
            if logdir:
                other_logdir(browser, logdir, repeats)
            if transformer_steps:
                transformer_main(browser, transformer_logdir, repeats, transformer_steps)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--logdir", help="also compare the two tabs on this logdir")
    parser.add_argument(
        "--transformer-steps",
        type=int,
        default=500,
        help="steps of the transformer logdir for the overview figures (0: skip them)",
    )
    parser.add_argument(
        "--transformer-logdir",
        help="where to keep the transformer logdir (reused when it matches; default: temporary)",
    )
    parser.add_argument(
        "--only-transformer", action="store_true", help="skip the first-paint comparison"
    )
    args = parser.parse_args()
    if args.only_transformer:
        from browser import launch_chromium

        with launch_chromium() as chromium:
            transformer_main(
                chromium, args.transformer_logdir, args.repeats, args.transformer_steps
            )
    else:
        main(args.logdir, args.repeats, args.transformer_steps, args.transformer_logdir)
