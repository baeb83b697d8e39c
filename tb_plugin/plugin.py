"""The TensorBoard attention plugin: HTTP routes over attention summaries, and its frontend.

Routes, under `/data/plugin/attention/` (documented in the README):

* `tags`: `{run: {tag: {description, max_step, num_steps, shape, heads}}}`
* `steps?run=R&tag=T`: `[{step, wall_time}, ...]`, ascending
* `matrix?run=R&tag=T[&step=S][&format=json|binary|codes|stored|csv]`: one stored matrix
  (`stored`: the values blob as written, which the frontend inflates and unpacks itself)
* `overview?run=R&example=E[&step=S][&format=binary|codes]`: one step of every layer of
  probe example E, in one binary answer (JSON description, then float32 values, or with
  `codes` the stored uint16 codes, half the bytes, which the frontend widens itself)
* `entropy?run=R`: `{layer: [[step, mean entropy], ...]}` from the logger's scalars
* anything else: a file of `static/` named exactly as in a listing of that folder.

Every request that cannot be served gets a 4xx answer with a JSON body `{"error": ...}`.
Data is read only through `context.data_provider`, so both loaders work.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from tb_plugin import codec, metadata, responses
from tb_plugin.labels import describe

logger = logging.getLogger(__name__)

# How many steps per tag to read when `--samples_per_plugin` says nothing: TensorBoard's
# own default for blob sequences. `--samples_per_plugin attention=0` means all of them.
DEFAULT_DOWNSAMPLING = 10
_ALL_STEPS = 1 << 30
# How many steps' blob references the plugin remembers between requests (all tags).
MAX_REMEMBERED_STEPS = 100_000
# How many decoded headers (of tags' latest steps) the plugin keeps.
MAX_REMEMBERED_HEADERS = 10_000
# How many bytes of values (decoded uint16 codes, or blobs as stored) the plugin keeps.
MAX_CACHED_VALUE_BYTES = 64 << 20
# Most values one `overview` answer may hold (32 MiB of float32, e.g. 24 layers x 12
# heads of 170 x 170); beyond it the answer is 413, so that one request's cost is bounded.
MAX_OVERVIEW_VALUES = 1 << 23
# How long the tag names of a run, from its last full listing, stand for the run's tags
# when `overview` lists only one example's tags (the tab re-reads `tags`, a full listing,
# every 5 s): a tag that appears later shows in the overview within this time.
TAG_NAMES_SECONDS = 5.0
# Most points per layer that `entropy` returns (TensorBoard downsamples beyond it).
MAX_ENTROPY_POINTS = 10_000
# The scalar the logger writes per layer, `<layer key>/mean_entropy`, by `tf.summary.scalar`
# (whose plugin name is "scalars").
ENTROPY_SUFFIX = "/mean_entropy"
SCALARS_PLUGIN = "scalars"

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_STATIC_TYPES = {
    ".js": "application/javascript",
    ".mjs": "application/javascript",
    ".css": "text/css",
}

FORMATS = ("json", "binary", "codes", "stored", "csv")
OVERVIEW_FORMATS = ("binary", "codes")
# Values that all requests together may be decoding and formatting at once (about 2x the
# largest matrix): see _ValueBudget.
MAX_VALUES_IN_FLIGHT = 2 * codec.MAX_VALUES
_STEP_RE = re.compile(r"-?[0-9]{1,19}")
_INT64_MAX = (1 << 63) - 1


class _RequestError(Exception):
    """A request that cannot be served; becomes a JSON error response."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _shown(value: str) -> str:
    """A user-supplied value, quoted and cut short, for an error message."""
    return describe(value, limit=100)


def _json_error(request: wrappers.Request, code: int, message: str) -> wrappers.Response:
    return http_util.Respond(request, {"error": message}, "application/json", code=code)


def _json_errors(handler: Callable) -> Callable:
    """Wraps a route so that nothing it raises becomes a 5xx or a traceback."""

    @functools.wraps(handler)
    @wrappers.Request.application
    def wrapped(self, request):
        try:
            return handler(self, request)
        except _RequestError as err:
            return _json_error(request, err.code, err.message)
        except errors.NotFoundError as err:
            return _json_error(request, 404, f"not found: {err}")
        except errors.PublicError as err:
            return _json_error(request, err.http_code if err.http_code < 500 else 400, str(err))
        except Exception as err:  # noqa: BLE001 - the contract: a bad request never gets a 5xx
            logger.exception("attention plugin: unexpected error serving %s", request.full_path)
            return _json_error(
                request, 400, f"request could not be served ({type(err).__name__}: {err})"
            )

    return wrapped


def _param(request: wrappers.Request, name: str) -> str:
    value = request.args.get(name)
    if value is None:
        raise _RequestError(400, f"missing query parameter {name!r}: expected a {name} name")
    if not value:
        raise _RequestError(400, f"query parameter {name!r}: expected a non-empty {name} name")
    return value


def _parse_step(text: str | None) -> int | None:
    if text is None:
        return None
    if not _STEP_RE.fullmatch(text) or abs(int(text)) > _INT64_MAX:
        raise _RequestError(
            400, f"query parameter 'step': expected an integer training step, got {_shown(text)}"
        )
    return int(text)


def _cached_bytes(values: codec.Values | bytes) -> int:
    return values.codes.nbytes if isinstance(values, codec.Values) else len(values)


def _parse_format(text: str | None, formats: tuple[str, ...] = FORMATS) -> str:
    if text is None:
        return formats[0]
    if text not in formats:
        raise _RequestError(
            400,
            f"query parameter 'format': expected one of {', '.join(formats)}, got {_shown(text)}",
        )
    return text


def _unreadable(run: str, tag: str, step: int, err: Exception | str) -> _RequestError:
    return _RequestError(
        404,
        f"no readable attention data for run {_shown(run)}, tag {_shown(tag)}, step {step}: {err}",
    )


def _version_of(series) -> tuple[int, float]:
    """What changes in a tag's listing when its data does."""
    return (series.max_step, series.max_wall_time)


def _version_problem(content: bytes) -> str | None:
    """Why a tag's plugin content is not readable by this plugin, or None when it is."""
    try:
        metadata.parse_plugin_metadata(content)
    except (TypeError, ValueError) as err:
        return str(err)
    return None


class _ValueBudget:
    """Bounds how many values all requests decode and format at once.

    A request reserves its matrix's values before decoding them and gives them back when
    its body is made; requests beyond the budget wait. One request larger than the whole
    budget runs alone. So six concurrent requests for 2048 x 2048 matrices take turns
    instead of holding six bodies' worth of intermediate arrays at once.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._used = 0
        self._ready = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, count: int):
        count = min(count, self.limit)
        with self._ready:
            self._ready.wait_for(lambda: self._used + count <= self.limit)
            self._used += count
        try:
            yield
        finally:
            with self._ready:
                self._used -= count
                self._ready.notify_all()


_pools: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()
# Most headers of one tag that listing its steps reads ahead (the latest first).
MAX_HEADERS_AHEAD = 1000


def _pool(name: str, workers: int) -> concurrent.futures.ThreadPoolExecutor:
    """The process's thread pool called `name`, shared by all requests, made on first use."""
    with _pools_lock:
        if name not in _pools:
            _pools[name] = concurrent.futures.ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix=name
            )
        return _pools[name]


def _blob_readers() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that read blobs concurrently."""
    return _pool("attention-blob-reader", 16)


def _header_warmers() -> concurrent.futures.ThreadPoolExecutor:
    """Two threads that read headers ahead, apart from the readers requests wait on."""
    return _pool("attention-header-warmer", 2)


class AttentionPlugin(base_plugin.TBPlugin):
    """Serves attention summaries and the heatmap frontend to TensorBoard.

    Args:
      context: the `base_plugin.TBContext` TensorBoard passes to every plugin.
      static_dir: folder of the frontend files (default: `static/` next to this module).
    """

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext, static_dir: str | None = None):
        self._data_provider = context.data_provider
        hint = (context.sampling_hints or {}).get(self.plugin_name, DEFAULT_DOWNSAMPLING)
        self._downsample_to = _ALL_STEPS if hint <= 0 else hint
        self.static_dir = static_dir or STATIC_DIR
        # Blob references of the steps seen in recent listings, {(experiment, run, tag):
        # {step: datum}}, so that `matrix` for a known step skips a listing round trip.
        self._known: dict[tuple[str, str, str], dict[int, Any]] = {}
        # The listing's (max_step, max_wall_time) of each tag when its steps above were
        # read: while the listing says the same, those steps are still what the loader
        # holds, and `tags` and `overview` need not read them again (at 24 layers x 2
        # examples x 500 steps, reading them takes seconds).
        self._versions: dict[tuple[str, str, str], tuple[int, float]] = {}
        self._known_lock = threading.Lock()
        # Decoded headers of the latest steps, by blob key (oldest first, bounded).
        self._headers: dict[tuple[str, float], codec.Header | Exception] = {}
        # Why a tag cannot be read (None: it can), from its plugin content, which
        # TensorBoard takes from the tag's first event and never changes: (experiment,
        # run, tag) -> problem. Every route asks this before serving a tag.
        self._problems: dict[tuple[str, str, str], str | None] = {}
        self._budget = _ValueBudget(MAX_VALUES_IN_FLIGHT)
        # Values of recently served steps, {(blob key, wall time): codec.Values, or the
        # blob as stored where only the stored form was asked for}, oldest first, at most
        # MAX_CACHED_VALUE_BYTES in all: moving back and forth between steps (the slider,
        # the overview grid) then reads and decodes each step once.
        self._values: dict[tuple[str, float], codec.Values | bytes] = {}
        self._values_bytes = 0
        # The tag names of each run at its last full listing, with when that was:
        # {(experiment, run): (time.monotonic(), names)}.
        self._tag_names: dict[tuple[str, str], tuple[float, frozenset[str]]] = {}
        # Header blobs being read ahead (see _read_headers_ahead), by (blob key, wall time).
        self._headers_ahead: set[tuple[str, float]] = set()

    def get_plugin_apps(self) -> dict[str, Callable]:
        return {
            "/tags": self._serve_tags,
            "/steps": self._serve_steps,
            "/matrix": self._serve_matrix,
            "/overview": self._serve_overview,
            "/entropy": self._serve_entropy,
            "/*": self._serve_static,
        }

    def is_active(self) -> bool:
        # TensorBoard's core lists plugins with data through `data_plugin_names`.
        return False

    def data_plugin_names(self) -> tuple[str, ...]:
        # Only attention summaries activate the tab; the entropy scalars it also reads
        # belong to the Scalars plugin.
        return (metadata.PLUGIN_NAME,)

    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Attention")

    # -- data access -------------------------------------------------------------------

    def _read_sequences(self, ctx, experiment: str, run_tag_filter=None) -> dict:
        data = self._data_provider.read_blob_sequences(
            ctx,
            experiment_id=experiment,
            plugin_name=metadata.PLUGIN_NAME,
            downsample=self._downsample_to,
            run_tag_filter=run_tag_filter,
        )
        self._remember(experiment, data)
        return data

    def _remember(self, experiment: str, data: dict) -> None:
        with self._known_lock:
            for run, tags in data.items():
                for tag, series in tags.items():
                    key = (experiment, run, tag)
                    self._known.pop(key, None)  # re-inserted: now the most recent
                    self._known[key] = {datum.step: datum for datum in series}
                    # What a listing would say of this tag if nothing changed since: then
                    # `tags` and `overview` need not read its steps again (after `steps`
                    # read them for the slider, say). A listing that says otherwise makes
                    # them read again, so a wrong guess costs a read, never stale data.
                    if series:
                        self._versions[key] = (
                            max(datum.step for datum in series),
                            max(datum.wall_time for datum in series),
                        )
                    else:
                        self._versions.pop(key, None)
            total = sum(len(steps) for steps in self._known.values())
            while total > MAX_REMEMBERED_STEPS and len(self._known) > 1:
                key = next(iter(self._known))
                total -= len(self._known.pop(key))
                self._versions.pop(key, None)

    def _remembered(self, experiment: str, run: str, tag: str, step: int):
        with self._known_lock:
            return self._known.get((experiment, run, tag), {}).get(step)

    def _forget(self, experiment: str, run: str, tag: str) -> None:
        with self._known_lock:
            self._known.pop((experiment, run, tag), None)
            self._versions.pop((experiment, run, tag), None)

    def _fresh_steps(
        self, ctx, experiment: str, listed: dict[tuple[str, str], Any]
    ) -> dict[tuple[str, str], dict[int, Any]]:
        """{(run, tag): {step: datum}} (ascending) for listed tags; reads only changed ones.

        Args:
          listed: {(run, tag): BlobSequenceTimeSeries} from a listing made just before.
        """
        result, stale = {}, []
        with self._known_lock:
            for (run, tag), series in listed.items():
                key = (experiment, run, tag)
                steps = self._known.get(key)
                if steps is not None and self._versions.get(key) == _version_of(series):
                    result[(run, tag)] = steps
                else:
                    stale.append((run, tag))
        if stale:
            runs, tags = sorted({r for r, _ in stale}), sorted({t for _, t in stale})
            data = self._read_sequences(ctx, experiment, provider.RunTagFilter(runs, tags))
            with self._known_lock:
                for run, tag in stale:
                    series = data.get(run, {}).get(tag, [])
                    result[(run, tag)] = {datum.step: datum for datum in series}
                    if (experiment, run, tag) in self._known:
                        self._versions[(experiment, run, tag)] = _version_of(listed[(run, tag)])
        return result

    def _listing(self, ctx, experiment: str, run_tag_filter=None) -> dict[str, dict[str, Any]]:
        """{run: {tag: (BlobSequenceTimeSeries, problem or None)}}; remembers the problems."""
        listing = self._data_provider.list_blob_sequences(
            ctx,
            experiment_id=experiment,
            plugin_name=metadata.PLUGIN_NAME,
            run_tag_filter=run_tag_filter,
        )
        result: dict[str, dict[str, Any]] = {}
        with self._known_lock:
            if run_tag_filter is None or run_tag_filter.tags is None:
                now = time.monotonic()
                for run, tags in listing.items():
                    if run_tag_filter is None or run in (run_tag_filter.runs or ()):
                        self._tag_names[(experiment, run)] = (now, frozenset(tags))
                while len(self._tag_names) > MAX_REMEMBERED_HEADERS:
                    self._tag_names.pop(next(iter(self._tag_names)))
            for run, tags in listing.items():
                for tag, series in tags.items():
                    key = (experiment, run, tag)
                    if key not in self._problems:
                        self._problems[key] = _version_problem(series.plugin_content)
                        while len(self._problems) > MAX_REMEMBERED_HEADERS:
                            self._problems.pop(next(iter(self._problems)))
                    result.setdefault(run, {})[tag] = (series, self._problems[key])
        return result

    def _check_readable(self, ctx, experiment: str, run: str, tag: str) -> None:
        """404 unless the tag's plugin content names a format this plugin reads.

        The same rule as `tags` (which leaves such tags out) and `overview` (which lists
        them under "errors"), so that no route serves what another hides.
        """
        with self._known_lock:
            known = (experiment, run, tag) in self._problems
            problem = self._problems.get((experiment, run, tag))
        if not known:
            listed = self._listing(ctx, experiment, provider.RunTagFilter([run], [tag]))
            if tag not in listed.get(run, {}):
                raise _RequestError(
                    404, f"no attention data for run {_shown(run)} and tag {_shown(tag)}"
                )
            problem = listed[run][tag][1]
        if problem is not None:
            raise _RequestError(
                404,
                f"no readable attention data for run {_shown(run)} and tag {_shown(tag)}: "
                + problem,
            )

    def _series(self, ctx, experiment: str, run: str, tag: str) -> list:
        """The retained steps of one run/tag, ascending; 404 when there are none."""
        self._check_readable(ctx, experiment, run, tag)
        data = self._read_sequences(ctx, experiment, provider.RunTagFilter(runs=[run], tags=[tag]))
        series = data.get(run, {}).get(tag)
        if not series:
            raise _RequestError(
                404, f"no attention data for run {_shown(run)} and tag {_shown(tag)}"
            )
        self._read_headers_ahead(ctx, series)
        return series

    def _read_headers_ahead(self, ctx, series: list) -> None:
        """Reads the headers of a tag's listed steps in the background (latest first).

        Moving to a step then reads one blob (its values) instead of two: with the Rust data
        server one gRPC read in a few is held back about 40 ms (see `_read_blobs`), so each
        read a step move makes is a chance of that. Headers are small (labels, shape) and
        kept (MAX_REMEMBERED_HEADERS); at most MAX_HEADERS_AHEAD per listing, on two
        threads of their own, so that requests never queue behind them.
        """
        keys = []
        with self._known_lock:
            for datum in reversed(series):
                if len(keys) >= MAX_HEADERS_AHEAD:
                    break
                if len(datum.values) != 2:
                    continue
                key = (datum.values[0].blob_key, datum.wall_time)
                if key not in self._headers and key not in self._headers_ahead:
                    self._headers_ahead.add(key)
                    keys.append(key)

        def read(key: tuple[str, float]) -> None:
            try:
                with self._known_lock:
                    if key in self._headers:
                        return
                self._decode_header(key, self._read_blob(ctx, key[0]))
            finally:
                with self._known_lock:
                    self._headers_ahead.discard(key)

        warmers = _header_warmers()
        for key in keys:
            warmers.submit(read, key)

    def _read_blob(self, ctx, key: str) -> bytes | Exception:
        try:
            return self._data_provider.read_blob(ctx, blob_key=key)
        except Exception as err:  # noqa: BLE001 - handed to the caller to judge
            return err

    def _start_reads(self, ctx, blob_keys: list[str]) -> dict[str, concurrent.futures.Future]:
        """Starts reading blobs on the shared reader threads: {blob key: future}."""
        pool = _blob_readers()
        return {key: pool.submit(self._read_blob, ctx, key) for key in dict.fromkeys(blob_keys)}

    def _read_blobs(
        self, ctx, blob_keys: list[str], started: dict[str, concurrent.futures.Future] | None = None
    ) -> list[bytes | Exception]:
        """Reads blobs concurrently; each result is the blob or the exception it raised.

        With the Rust data server every read is a gRPC round trip, and one in a few takes
        about 40 ms more than the others (as seen here: a small answer held back until the
        previous packet is acknowledged), so reading the blobs of a request one after the
        other would add those up. `started`: reads already under way (from `_start_reads`).
        """
        started = dict(started or {})
        missing = [key for key in blob_keys if key not in started]
        if len(missing) == 1 and len(blob_keys) == 1:
            return [self._read_blob(ctx, missing[0])]
        started.update(self._start_reads(ctx, missing))
        return [started[key].result() for key in blob_keys]

    def _decoded_headers(self, ctx, data: list) -> list[codec.Header | Exception]:
        """The decoded header of each datum's step, or the error that prevented it.

        Decoded headers (and decoding errors) are kept, by blob key and wall time (a step
        rewritten after a restart has a new wall time): a `tags` request (the tab asks
        every few seconds) then reads only new steps. Whatever is wrong with a header,
        the error is returned for that step alone.
        """
        keys = [(datum.values[0].blob_key, datum.wall_time) for datum in data]
        with self._known_lock:
            cached = {key: self._headers[key] for key in keys if key in self._headers}
        missing = [key for key in keys if key not in cached]
        blobs = self._read_blobs(ctx, [blob_key for blob_key, _ in missing])
        for key, blob in zip(missing, blobs, strict=True):
            cached[key] = self._decode_header(key, blob)
        return [cached[key] for key in keys]

    def _decode_header(
        self, key: tuple[str, float], blob: bytes | Exception
    ) -> codec.Header | Exception:
        if isinstance(blob, errors.NotFoundError):
            return blob  # gone for now; not remembered
        try:
            if isinstance(blob, Exception):
                raise blob
            header: codec.Header | Exception = codec.decode_header(blob)
        except Exception as err:  # noqa: BLE001 - a bad tag must never hide the others
            header = err
        with self._known_lock:
            self._headers[key] = header
            while len(self._headers) > MAX_REMEMBERED_HEADERS:
                self._headers.pop(next(iter(self._headers)))
        return header

    def _load_steps(
        self, ctx, data: list, started: dict[str, concurrent.futures.Future] | None = None
    ) -> list[tuple[Any, Any]]:
        """(header, values) of each datum (one step's two blob references).

        All blobs that are not cached are read in one concurrent batch. Each of the pair is
        the decoded object, or the exception that prevented it (so one bad tag never
        fails the others); values come as a `codec.Values` when cached, else as the raw
        blob, decoded by `_decode_values` under the values budget. `started`: blob reads
        already under way (`_start_reads`), used instead of reading those blobs again.
        """
        wanted: list[str] = []
        with self._known_lock:
            plans = []
            for datum in data:
                header_key, values_key = (ref.blob_key for ref in datum.values)
                header = self._headers.get((header_key, datum.wall_time))
                values = self._values.get((values_key, datum.wall_time))
                if header is None:
                    wanted.append(header_key)
                if values is None:
                    wanted.append(values_key)
                plans.append((datum.wall_time, header_key, header, values_key, values))
        blobs = dict(zip(wanted, self._read_blobs(ctx, wanted, started), strict=True))
        result = []
        for wall_time, header_key, header, values_key, values in plans:
            if header is None:
                header = self._decode_header((header_key, wall_time), blobs[header_key])
            result.append((header, blobs[values_key] if values is None else values))
        return result

    def _decode_values(self, key: tuple[str, float], header: codec.Header, blob) -> codec.Values:
        """Decodes a values blob (or returns it if already decoded) and caches it.

        Raises:
          codec.DecodeError, errors.NotFoundError: as the blob or the read came.
        """
        if isinstance(blob, codec.Values):
            return blob
        if isinstance(blob, Exception):
            raise blob
        values = codec.decode_values(header, blob)
        self._keep_values(key, values)
        return values

    def _keep_values(self, key: tuple[str, float], values: codec.Values | bytes) -> None:
        """Caches a step's values, decoded or as stored (decoded ones replace stored ones)."""
        with self._known_lock:
            kept = self._values.get(key)
            if isinstance(kept, codec.Values):
                return
            if kept is not None:
                self._values_bytes -= _cached_bytes(self._values.pop(key))
            self._values[key] = values
            self._values_bytes += _cached_bytes(values)
            while self._values_bytes > MAX_CACHED_VALUE_BYTES and self._values:
                self._values_bytes -= _cached_bytes(self._values.pop(next(iter(self._values))))

    # -- routes ----------------------------------------------------------------------------

    @_json_errors
    def _serve_tags(self, request):
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        listed = {}
        for run, tags in self._listing(ctx, experiment).items():
            for tag, (series, problem) in tags.items():
                if problem is not None:
                    logger.warning("attention: skipping run %r tag %r: %s", run, tag, problem)
                else:
                    listed[(run, tag)] = series
        latest = []  # (run, tag, series, steps) whose latest header is to be read
        for (run, tag), by_step in self._fresh_steps(ctx, experiment, listed).items():
            steps = list(by_step.values())
            if steps and len(steps[-1].values) == 2:
                latest.append((run, tag, listed[(run, tag)], steps))
        headers = self._decoded_headers(ctx, [steps[-1] for *_, steps in latest])
        result: dict[str, dict[str, Any]] = {}
        for (run, tag, series, steps), header in zip(latest, headers, strict=True):
            if isinstance(header, Exception):
                logger.warning("attention: skipping run %r tag %r: %s", run, tag, header)
                continue
            result.setdefault(run, {})[tag] = {
                "description": series.description,
                "max_step": steps[-1].step,
                "num_steps": len(steps),
                "shape": list(header.shape3),
                "heads": header.heads,
            }
        return http_util.Respond(request, result, "application/json")

    @_json_errors
    def _serve_steps(self, request):
        run, tag = _param(request, "run"), _param(request, "tag")
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        series = self._series(ctx, experiment, run, tag)
        body = [{"step": d.step, "wall_time": d.wall_time} for d in series]
        return http_util.Respond(request, body, "application/json")

    def _find_step(self, ctx, experiment: str, run: str, tag: str, step: int | None):
        """The datum of `step` (the latest when None) from a fresh listing; 404 if absent."""
        series = self._series(ctx, experiment, run, tag)
        if step is None:
            return series[-1]
        datum = next((d for d in series if d.step == step), None)
        if datum is None:
            raise _RequestError(
                404,
                f"query parameter 'step': no step {step} for run {_shown(run)} and "
                f"tag {_shown(tag)}; retained steps run from {series[0].step} to "
                f"{series[-1].step} ({len(series)} steps)",
            )
        return datum

    def _read_matrix(self, ctx, run: str, tag: str, datum) -> tuple[codec.Header, Any]:
        """One step's header and values (cached, or the blob to decode); 404 if unreadable.

        Raises:
          errors.NotFoundError: when the data provider no longer has a blob.
        """
        if len(datum.values) != 2:
            raise _unreadable(
                run, tag, datum.step, f"expected 2 blobs per step, got {len(datum.values)}"
            )
        ((header, values),) = self._load_steps(ctx, [datum])
        if isinstance(header, Exception) and not isinstance(header, errors.NotFoundError):
            raise _unreadable(run, tag, datum.step, header)
        for item in (header, values):
            if isinstance(item, Exception):
                raise item
        return header, values

    @_json_errors
    def _serve_matrix(self, request):
        run, tag = _param(request, "run"), _param(request, "tag")
        step = _parse_step(request.args.get("step"))
        fmt = _parse_format(request.args.get("format"))
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        datum = None if step is None else self._remembered(experiment, run, tag, step)
        if datum is not None:
            self._check_readable(ctx, experiment, run, tag)
            try:
                header, blob = self._read_matrix(ctx, run, tag, datum)
            except (errors.NotFoundError, KeyError):
                # The loader has dropped that step (or run) since it was listed: look again.
                self._forget(experiment, run, tag)
                datum = None
        if datum is None:
            datum = self._find_step(ctx, experiment, run, tag, step)
            header, blob = self._read_matrix(ctx, run, tag, datum)
        described = {"step": datum.step, "wall_time": datum.wall_time, **responses.describe(header)}
        key = (datum.values[1].blob_key, datum.wall_time)
        streams = None
        if fmt == "stored" and not isinstance(blob, codec.Values):
            streams = codec.stated_streams(header, blob)
        if streams is not None:
            stored = bytes(blob)
            self._keep_values(key, stored)
            body = responses.stored_body(described, header, streams, stored)
            return http_util.Respond(request, body, "application/octet-stream")
        with self._budget.reserve(header.size):
            try:
                values = self._decode_values(key, header, blob)
            except codec.DecodeError as err:
                raise _unreadable(run, tag, datum.step, err) from err
            if fmt == "binary":
                body = responses.binary_body(described, [values.float32()])
                return http_util.Respond(request, body, "application/octet-stream")
            # "stored" comes here when the step is held decoded, or its header does not
            # say where its zlib streams end (only inflating, i.e. decoding, finds that).
            if fmt in ("codes", "stored"):
                body = responses.codes_body({**described, "encoding": values.encoding}, [values])
                return http_util.Respond(request, body, "application/octet-stream")
            if fmt == "csv":
                filename = responses.safe_filename("attention", run, tag, f"step{datum.step}")
                return http_util.Respond(
                    request,
                    responses.csv_body(header, values),
                    "text/csv",
                    headers=[("Content-Disposition", f'attachment; filename="{filename}.csv"')],
                )
            body = responses.json_body(described, values)
            return http_util.Respond(request, body, "application/json; charset=utf-8")

    @_json_errors
    def _serve_overview(self, request):
        run, example = _param(request, "run"), _param(request, "example")
        if "/" in example:
            raise _RequestError(
                400,
                "query parameter 'example': expected the last part of a tag (a probe "
                f"example's index, without '/'), got {_shown(example)}",
            )
        step = _parse_step(request.args.get("step"))
        fmt = _parse_format(request.args.get("format"), OVERVIEW_FORMATS)
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        body = self._overview(ctx, experiment, run, example, step, fmt)
        return http_util.Respond(request, body, "application/octet-stream")

    def _prefetch_example(
        self, ctx, experiment: str, run: str, suffix: str, step: int
    ) -> dict[str, concurrent.futures.Future]:
        """Starts reading the blobs of `step` of the example's tags as last listed.

        The listing that `overview` makes first is a gRPC round trip of its own with the
        Rust data server (often ~40 ms); reading the blobs the step had at the previous
        listing meanwhile overlaps the two. The listing still decides what is served:
        a blob read here that it no longer names is dropped.
        """
        keys = []
        with self._known_lock:
            for (known_experiment, known_run, tag), by_step in self._known.items():
                if known_experiment != experiment or known_run != run:
                    continue
                if not tag.endswith(suffix) or len(tag) <= len(suffix):
                    continue
                datum = by_step.get(step)
                if datum is None or len(datum.values) != 2:
                    continue
                header_key, values_key = (ref.blob_key for ref in datum.values)
                if (header_key, datum.wall_time) not in self._headers:
                    keys.append(header_key)
                if (values_key, datum.wall_time) not in self._values:
                    keys.append(values_key)
        return self._start_reads(ctx, keys) if keys else {}

    def _example_filter(self, experiment: str, run: str, suffix: str) -> provider.RunTagFilter:
        """What `overview` lists: the example's tags, or the whole run when not known.

        Listing costs per tag (the Python loader sizes every step of every listed tag, 0.2 s
        for 48 tags x 500 steps): the example's tags are half of a run with two probe
        examples. Their names come from the run's last full listing while it is recent
        (TAG_NAMES_SECONDS); else the whole run is listed, which renews them.
        """
        with self._known_lock:
            seen, names = self._tag_names.get((experiment, run), (None, frozenset()))
        if seen is None or time.monotonic() - seen > TAG_NAMES_SECONDS:
            return provider.RunTagFilter(runs=[run])
        tags = sorted(t for t in names if t.endswith(suffix) and len(t) > len(suffix))
        return provider.RunTagFilter(runs=[run], tags=tags or None)

    def _overview(
        self, ctx, experiment: str, run: str, example: str, step: int | None, fmt: str = "binary"
    ) -> bytes:
        suffix = "/" + example
        started = {} if step is None else self._prefetch_example(ctx, experiment, run, suffix, step)
        listed = self._listing(ctx, experiment, self._example_filter(experiment, run, suffix))
        listed = listed.get(run, {})
        candidates = {
            tag: entry
            for tag, entry in listed.items()
            if tag.endswith(suffix) and len(tag) > len(suffix)
        }
        if not candidates:
            raise _RequestError(
                404,
                f"no attention data for run {_shown(run)} and example {_shown(example)} "
                f"(tags ending in {_shown(suffix)})",
            )
        problems = [{"tag": tag, "error": p} for tag, (_, p) in candidates.items() if p]
        readable = {tag: series for tag, (series, p) in candidates.items() if p is None}
        fresh = self._fresh_steps(ctx, experiment, {(run, tag): s for tag, s in readable.items()})
        data = {tag: fresh[(run, tag)] for tag in readable}
        if step is None:
            step = max((max(by_step) for by_step in data.values() if by_step), default=None)
        if step is None:
            raise _RequestError(
                404,
                f"no readable steps for run {_shown(run)} and example {_shown(example)}"
                + "".join(f"; {_shown(e['tag'])}: {e['error']}" for e in problems[:3]),
            )
        shown, missing = [], []
        for tag in sorted(readable):
            datum = data[tag].get(step)
            if datum is None:
                missing.append(tag)
            elif len(datum.values) != 2:
                problems.append(
                    {"tag": tag, "error": f"expected 2 blobs per step, got {len(datum.values)}"}
                )
            else:
                shown.append((tag, datum))
        if len(missing) == len(readable):
            raise _RequestError(
                404,
                f"query parameter 'step': no step {step} for run {_shown(run)} and "
                f"example {_shown(example)}",
            )
        loaded = self._load_steps(ctx, [d for _, d in shown], started)
        layers = []
        for (tag, datum), (header, blob) in zip(shown, loaded, strict=True):
            if isinstance(header, Exception):
                problems.append({"tag": tag, "error": str(header)})
            else:
                layers.append((tag, datum, header, blob))
        total = sum(header.size for *_, header, _ in layers)
        if total > MAX_OVERVIEW_VALUES:
            raise _RequestError(
                413,
                f"the layers of run {_shown(run)}, example {_shown(example)}, step {step} "
                f"hold {total} values, more than one overview answer may ({MAX_OVERVIEW_VALUES});"
                " read them one tag at a time with the 'matrix' route",
            )
        # The logger writes a step's layers in model order, so wall time gives that order.
        layers.sort(key=lambda layer: (layer[1].wall_time, layer[0]))
        with self._budget.reserve(total):
            described, arrays, offset = [], [], 0
            for tag, datum, header, blob in layers:
                key = (datum.values[1].blob_key, datum.wall_time)
                try:
                    decoded = self._decode_values(key, header, blob)
                    values = decoded if fmt == "codes" else decoded.float32()
                except Exception as err:  # noqa: BLE001 - one bad tag never fails the others
                    problems.append({"tag": tag, "error": f"{type(err).__name__}: {err}"})
                    continue
                described.append(
                    {
                        "tag": tag,
                        "layer": tag[: -len(suffix)],
                        "wall_time": datum.wall_time,
                        "shape": list(header.shape3),
                        "heads": header.heads,
                        "input_labels": list(header.input_labels),
                        "query_labels": list(header.query_labels),
                        "description": readable[tag].description,
                        "offset": offset,
                        **({"encoding": decoded.encoding} if fmt == "codes" else {}),
                    }
                )
                arrays.append(values)
                offset += header.size
            problems.sort(key=lambda e: e["tag"])
            overview = {
                "run": run,
                "example": example,
                "step": step,
                "layers": described,
                "missing": missing,
                "errors": problems,
            }
            if fmt == "codes":
                return responses.codes_body(overview, arrays)
            return responses.binary_body(overview, [a.reshape(-1) for a in arrays])

    @_json_errors
    def _serve_entropy(self, request):
        run = _param(request, "run")
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        listing = self._data_provider.list_scalars(
            ctx,
            experiment_id=experiment,
            plugin_name=SCALARS_PLUGIN,
            run_tag_filter=provider.RunTagFilter(runs=[run]),
        )
        tags = [
            tag
            for tag in listing.get(run, {})
            if tag.endswith(ENTROPY_SUFFIX) and len(tag) > len(ENTROPY_SUFFIX)
        ]
        result: dict[str, list[list[float]]] = {}
        if tags:
            data = self._data_provider.read_scalars(
                ctx,
                experiment_id=experiment,
                plugin_name=SCALARS_PLUGIN,
                downsample=MAX_ENTROPY_POINTS,
                run_tag_filter=provider.RunTagFilter(runs=[run], tags=tags),
            )
            for tag, series in sorted(data.get(run, {}).items()):
                points = sorted((d.step, d.value) for d in series)
                result[tag[: -len(ENTROPY_SUFFIX)]] = [[s, float(v)] for s, v in points]
        return http_util.Respond(request, result, "application/json")

    @_json_errors
    def _serve_static(self, request):
        prefix = f"/data/plugin/{metadata.PLUGIN_NAME}/"
        path = request.path
        name = path[len(prefix) :] if path.startswith(prefix) else ""
        # Looked up by exact name among the folder's files: a user's path is never joined.
        try:
            listing = set(os.listdir(self.static_dir))
        except OSError:
            listing = set()
        mime = _STATIC_TYPES.get(os.path.splitext(name)[1])
        if (
            mime is None
            or name not in listing
            or not os.path.isfile(os.path.join(self.static_dir, name))
        ):
            raise _RequestError(404, f"no such route or file: {_shown(name)}")
        with open(os.path.join(self.static_dir, name), "rb") as f:
            content = f.read()
        return http_util.Respond(request, content, mime)
