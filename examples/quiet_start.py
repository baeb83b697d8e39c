"""A quiet first screen: TensorFlow's C++ start-up lines kept off the terminal.

Importing TensorFlow and initialising its devices prints lines a newcomer cannot act on
("Could not find cuda drivers", "failed call to cuInit", absl's "All log messages before
absl::InitializeLog()"). `TF_CPP_MIN_LOG_LEVEL` silences TensorFlow's own log but not these,
which C++ writes to file descriptor 2 before any logging is set up. So the examples call
`start_quietly()` first: where TensorFlow is the backend it is imported, and its devices
listed, with descriptor 2 pointed at /dev/null; Python's own errors and warnings after that
are untouched (and an import that fails still raises, once stderr is back). On JAX and
PyTorch nothing is imported.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def _native_stderr_hidden():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def start_quietly() -> None:
    """Sets the log levels and, on the TensorFlow backend, starts TensorFlow silently."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    with _native_stderr_hidden():
        import tensorflow as tf

        tf.config.list_physical_devices()  # initialises CUDA (cuInit) here, not later
        tf.constant(0.0) + 1.0  # and the first op's own start-up lines
