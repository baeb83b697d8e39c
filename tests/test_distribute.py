"""SequenceAttention under tf.distribute.MirroredStrategy with two logical CPU devices."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def report():
    worker = Path(__file__).with_name("mirrored_worker.py")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, str(worker)], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_trains_on_padded_masked_inputs_with_two_replicas(report):
    assert report["replicas"] == 2
    assert all(np.isfinite(report["losses"]))
    assert report["max_prediction_difference"] < 1e-5


def test_ragged_symbolic_inputs_get_a_clear_error(report):
    message = report["ragged_error"]
    assert message is not None
    assert "ragged" in message and "Masking" in message and "to_tensor()" in message


def test_ragged_data_padded_at_the_dataset_boundary_trains(report):
    assert len(report["ragged_dataset_losses"]) == 2
    assert all(np.isfinite(report["ragged_dataset_losses"]))
