"""Test-wide settings, and which tests run on which Keras backend.

Keras fixes its backend when it is first imported (`KERAS_BACKEND`, default TensorFlow
here), so one pytest process tests one backend. `make test` runs the whole suite on
TensorFlow, then again on JAX and on PyTorch, where only the tests marked
`all_backends` run: the ones about code that is not about ragged tensors or
TensorFlow's own summary ops. A test file marks itself with
`pytestmark = pytest.mark.all_backends`, a test with `@pytest.mark.all_backends`.
"""

import os
import time

import pytest

# Quiet TensorFlow's C++ start-up chatter in test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
_STARTED = time.monotonic()


def pytest_collection_modifyitems(config, items):
    if BACKEND == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"TensorFlow-only test (this run: KERAS_BACKEND={BACKEND})")
    for item in items:
        if item.get_closest_marker("all_backends") is None:
            item.add_marker(skip)


def pytest_report_header(config):
    return f"keras backend: {BACKEND}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    terminalreporter.write_line(
        f"keras backend {BACKEND}: the suite took {time.monotonic() - _STARTED:.0f} s"
    )
