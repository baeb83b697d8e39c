"""Starts a real TensorBoard server for tests, in a subprocess.

A subprocess (rather than `program.TensorBoard().launch()` in the test process)
keeps each server's flags and data loader apart, and it proves that TensorBoard
finds the plugin through its `tensorboard_plugins` entry point, as a user's would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

_URL_RE = re.compile(r"(http://127\.0\.0\.1:\d+/)")


class TensorBoardServer:
    """A TensorBoard process serving `logdir` on 127.0.0.1 with a free port."""

    def __init__(self, logdir: str, load_fast: bool, extra_args: tuple[str, ...] = ()):
        self.logdir = logdir
        self.load_fast = load_fast
        args = [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            logdir,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--load_fast",
            "true" if load_fast else "false",
            "--reload_interval",
            "1",
            "--samples_per_plugin",
            "attention=0,images=100000",
            *extra_args,
        ]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        self._proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.output: list[str] = []
        self.url = self._wait_for_url(timeout=120)
        # Keep draining the pipe so that a chatty server never blocks on it.
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        assert self._proc.stdout is not None
        while time.monotonic() < deadline:
            line = self._proc.stdout.readline()
            if not line:
                if self._proc.poll() is not None:
                    break
                continue
            self.output.append(line)
            match = _URL_RE.search(line)
            if match:
                return match.group(1)
        self.close()
        raise RuntimeError("TensorBoard did not start:\n" + "".join(self.output))

    def _drain(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.output.append(line)

    def get(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        """GETs `path` (relative to the server's root); returns status, body, headers."""
        try:
            with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=30) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)

    def get_json(self, path: str):
        status, body, _ = self.get(path)
        if status != 200:
            raise AssertionError(f"GET {path} -> {status}: {body[:500]!r}")
        return json.loads(body)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        """Polls `predicate` until true: the Rust loader reads the logdir asynchronously."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except (AssertionError, KeyError, ValueError) as err:
                last_error = err
            time.sleep(0.3)
        raise TimeoutError(f"condition not met in {timeout}s (last error: {last_error})")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> TensorBoardServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
