"""The test run's backend is the one `make test` asked for (tests/conftest.py)."""

import os

import keras
import pytest

pytestmark = pytest.mark.all_backends


def test_keras_runs_on_the_backend_named_by_KERAS_BACKEND():
    assert keras.backend.backend() == os.environ.get("KERAS_BACKEND", "tensorflow")
