"""Starts a real TensorBoard server for tests, in a subprocess.

A subprocess (rather than `program.TensorBoard().launch()` in the test process)
keeps each server's flags and data loader apart, and it proves that TensorBoard
finds the plugin through its `tensorboard_plugins` entry point, as a user's would.

TensorBoard imports TensorFlow at start when it can: 8.8 s of a 10 s start here, against
1.2 s without it (the setup of JAX and PyTorch users). TensorFlow only changes how the
Python loader (`--load_fast=false`) reads files, so `test_plugin_server.py` and, on the
TensorFlow backend, `test_logger_end_to_end.py` start TensorBoard as it is installed,
TensorFlow included; tests about what the tab and the other tabs show, and the logger's
end-to-end test on JAX and PyTorch, start it without TensorFlow (`without=("tensorflow",)`),
as on a machine that lacks it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

_URL_RE = re.compile(r"(http://127\.0\.0\.1:\d+/)")


_BLOCKER = '''
import sys

class _Block:
    """Makes these packages unimportable, as on a machine without them."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is blocked for this test")
        return None

sys.meta_path.insert(0, _Block())
'''


def _blocker_path(packages: tuple[str, ...]) -> str:
    """A folder whose `sitecustomize.py` makes `packages` unimportable in a subprocess."""
    folder = tempfile.mkdtemp(prefix="tb_blocker_")
    with open(os.path.join(folder, "sitecustomize.py"), "w", encoding="utf-8") as f:
        f.write(_BLOCKER.format(blocked=set(packages)))
    return folder


class TensorBoardServer:
    """A TensorBoard process serving `logdir` on 127.0.0.1 with a free port.

    `without`: packages the server cannot import (e.g. `("tensorflow",)`).
    """

    def __init__(
        self,
        logdir: str,
        load_fast: bool,
        extra_args: tuple[str, ...] = (),
        without: tuple[str, ...] = (),
    ):
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
        self._blocker = _blocker_path(without) if without else None
        if self._blocker:
            paths = [self._blocker, env.get("PYTHONPATH", "")]
            env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
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
        if self._blocker:
            shutil.rmtree(self._blocker, ignore_errors=True)

    def __enter__(self) -> TensorBoardServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
