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


# The files that train models or start servers and browsers, longest first (durations of
# one run on 2 cores). `make test` runs the suite on two processes, a file at a time each
# (pytest-xdist, --dist loadfile): started first, no long file is left to run alone at the
# end while the other process idles.
LONG_FILES = (
    "test_logger_models.py",
    "test_logger_backends.py",
    "test_date_example.py",
    "test_layer_cross_backend.py",
    "test_distribute.py",
    "test_date_transformer.py",
    "test_logger_end_to_end.py",
    "test_plugin_server.py",
    "test_readme.py",
    "test_browser.py",
    "test_logger_writing.py",
    "test_browser_transformer.py",
    "test_layer_heads.py",
    "test_attention_logger.py",
)


def _long_first(item) -> int:
    name = item.path.name
    return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_long_first)  # stable: each file keeps its own order
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
