"""`tb_plugin.records`: CRC-32C in numpy and TFRecord framing, as TensorFlow writes them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c as stub_crc32c

from tb_plugin import records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# RFC 3720 (iSCSI), appendix B.4, and the usual check value.
RFC_VECTORS = [
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (b"123456789", 0xE3069283),
]


@pytest.mark.all_backends
@pytest.mark.parametrize("data, expected", RFC_VECTORS)
def test_crc32c_gives_the_rfc_3720_check_values(data, expected):
    assert records.crc32c(data) == expected
    # The same bytes behind a megabyte of zeros and data: the vectorized path.
    assert records.crc32c(bytes(1 << 20) + data) == stub_crc32c(bytes(1 << 20) + data)


def _lengths() -> list[int]:
    """Both sides of the loop/vector threshold, of every slice count's rounding, odd tails."""
    around = [records._VECTOR_FROM - 1, records._VECTOR_FROM, records._VECTOR_FROM + 1]
    slices = [records._SLICE_BYTES * (1 << k) + d for k in range(6, 14) for d in (-1, 0, 3)]
    return [0, 1, 2, 3, 8, 255, 1000, *around, *slices, 300_001]


@pytest.mark.all_backends
def test_crc32c_equals_tensorboards_on_lengths_around_every_threshold():
    rng = np.random.default_rng(0)
    for length in _lengths():
        data = rng.integers(0, 256, size=length, dtype=np.uint8).tobytes()
        assert records.crc32c(data) == stub_crc32c(data), length


@pytest.mark.all_backends
def test_crc32c_of_many_megabytes_equals_the_byte_by_byte_loop():
    data = np.random.default_rng(1).integers(0, 256, size=(3 << 20) + 5, dtype=np.uint8)
    data = data.tobytes()  # past the largest slice count: slices longer than 32 bytes
    assert records.crc32c(data) == records._loop(0xFFFFFFFF, data) ^ 0xFFFFFFFF


def test_framed_records_are_byte_for_byte_what_tensorflow_writes(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(2)
    payloads = [b"", b"x", *(rng.bytes(n) for n in (11, 2047, 2048, 70_000, 1_000_003))]
    path = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for payload in payloads:
            writer.write(payload)
    with open(path, "rb") as stream:
        assert stream.read() == b"".join(records.frame(p) for p in payloads)


# Writes an event file the way AttentionLogger does on JAX and PyTorch: no TensorFlow.
WRITE_WITHOUT_TENSORFLOW = textwrap.dedent(
    """
    import sys
    import numpy as np
    from tb_plugin.summary import EventFile, attention

    weights = np.random.default_rng(3).dirichlet(np.ones(700), size=(4, 700))
    np.save({truth!r}, weights)
    events = EventFile({logdir!r})
    for step in range(3):
        assert attention("layer/0", weights, step=step, writer=events)
    events.close()
    print("tensorflow" in sys.modules)
    """
)


def test_an_event_file_written_without_tensorflow_passes_tensorflows_checksums(tmp_path):
    import tensorflow as tf

    logdir, truth = str(tmp_path / "run"), str(tmp_path / "truth.npy")
    out = subprocess.run(
        [sys.executable, "-c", WRITE_WITHOUT_TENSORFLOW.format(logdir=logdir, truth=truth)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"  # the writer never imported TensorFlow
    (name,) = os.listdir(logdir)
    # TensorFlow's reader checks both checksums of every record, and fails on a bad one.
    payloads = list(tf.data.TFRecordDataset(os.path.join(logdir, name)).as_numpy_iterator())
    assert len(payloads) == 4  # the file version, then three steps of ~1 MB weights
    from tb_plugin.read_logs import read_attention_logs

    weights = np.load(truth)
    read = read_attention_logs(logdir)
    assert [r.step for r in read] == [0, 1, 2]
    np.testing.assert_allclose(read[0].values, weights, atol=5e-5)


@pytest.mark.all_backends
def test_event_file_writer_records_pass_tensorboards_own_checksum_reader(tmp_path):
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New

    from tb_plugin.read_logs import read_attention_logs
    from tb_plugin.summary import attention, event_file_writer

    writer = event_file_writer(str(tmp_path))
    weights = np.random.default_rng(4).dirichlet(np.ones(300), size=300)
    assert attention("layer/0", weights, step=7, writer=writer)
    writer.close()
    (name,) = os.listdir(tmp_path)
    reader = PyRecordReader_New(str(tmp_path / name))  # checks both checksums
    reader.GetNext()  # the file version
    reader.GetNext()  # the summary: raises DataLossError on a wrong checksum
    (record,) = read_attention_logs(tmp_path)
    assert record.step == 7
    np.testing.assert_allclose(record.values, weights, atol=5e-5)


@pytest.mark.all_backends
def test_event_file_writer_puts_back_what_it_swaps_in_tensorboard_even_when_it_fails(tmp_path):
    from tensorboard.summary.writer import event_file_writer as module
    from tensorboard.summary.writer.record_writer import RecordWriter

    from tb_plugin.summary import event_file_writer

    tf_before = module.tf
    event_file_writer(str(tmp_path / "ok")).close()
    assert module.RecordWriter is RecordWriter and module.tf is tf_before
    (tmp_path / "file").write_text("not a directory")
    # OSError from TensorBoard's stub file system; TensorFlow's, when loaded, raises its own.
    with pytest.raises(Exception, match="(?i)directory|exists|not a dir"):
        event_file_writer(str(tmp_path / "file" / "run"))
    assert module.RecordWriter is RecordWriter and module.tf is tf_before
